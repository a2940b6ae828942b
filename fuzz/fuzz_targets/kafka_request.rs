//! A Kafka connection's first bytes through the detector, the frame length
//! check, the version firewall and the decoders: total (no panic, no
//! allocation beyond a small multiple of the input under the RSS limit),
//! and an answer encodes for every request decoded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_net::kafka::request::{self, Request};
use weir_net::kafka::group::{self, GroupRequest};
use weir_net::kafka::{frame_len, looks_like_kafka, response};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_kafka(data);
    let Some(Ok(n)) = frame_len(data, 1 << 20) else { return };
    let Some(frame) = data.get(4..4 + n) else { return };
    match request::decode(Bytes::copy_from_slice(frame)) {
        Ok((h, Request::ApiVersions { .. })) => {
            response::api_versions(h.correlation_id, h.api_version, 0).expect("encodes");
        }
        Ok((h, Request::Metadata { topics, .. })) => {
            let view = response::MetadataView {
                brokers: vec![],
                cluster_id: None,
                controller_id: -1,
                topics: topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|name| response::TopicView { name, error: 3, partitions: vec![] })
                    .collect(),
            };
            response::metadata(h.correlation_id, h.api_version, &view).expect("encodes");
        }
        Ok((h, Request::CreateTopics { topics, .. })) => {
            let results: Vec<_> = topics.into_iter().map(|t| response::TopicResult { name: t.name, error: 0, message: None }).collect();
            response::create_topics(h.correlation_id, h.api_version, &results).expect("encodes");
        }
        Ok((h, Request::DeleteTopics { names, .. })) => {
            let results: Vec<_> =
                names.into_iter().map(|name| response::TopicResult { name, error: 3, message: Some("gone".into()) }).collect();
            response::delete_topics(h.correlation_id, h.api_version, &results).expect("encodes");
        }
        Ok((h, Request::Produce { topics, .. })) => {
            // Each partition's records through what the broker does with them.
            let mut results = Vec::new();
            for t in topics {
                let mut partitions = Vec::new();
                for (index, records) in t.partitions {
                    if let Some(records) = records
                        && let Ok(wrapped) = weir_core::batch::wrap_kafka(&records)
                        && let Ok((b, _)) = weir_core::batch::RecordBatch::decode(&wrapped, usize::MAX)
                        && b.validate().is_ok()
                    {
                        assert_eq!(b.kafka_bytes().expect("valid").expect("data").as_ref(), records.as_ref(), "stored as sent");
                    }
                    partitions.push(response::ProducePartitionResult {
                        index,
                        error: 0,
                        base_offset: 0,
                        log_start_offset: 0,
                        message: None,
                    });
                }
                results.push(response::ProduceTopicResult { name: t.name, partitions });
            }
            response::produce(h.correlation_id, h.api_version, &results).expect("encodes");
        }
        Ok((h, Request::Fetch { topics, .. })) => {
            let results: Vec<_> = topics
                .into_iter()
                .map(|t| response::FetchTopicResult {
                    name: t.name,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| response::FetchPartitionResult {
                            index: p.index,
                            error: 0,
                            high_watermark: p.offset,
                            log_start_offset: 0,
                            records: bytes::Bytes::new(),
                        })
                        .collect(),
                })
                .collect();
            response::fetch(h.correlation_id, h.api_version, &results).expect("encodes");
        }
        Ok((h, Request::ListOffsets { topics })) => {
            let results: Vec<_> = topics
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partitions
                        .iter()
                        .map(|(index, ts)| response::OffsetResult { index: *index, error: 0, timestamp: *ts, offset: 0 })
                        .collect();
                    (t.name, parts)
                })
                .collect();
            response::list_offsets(h.correlation_id, h.api_version, &results).expect("encodes");
        }
        Ok((h, Request::InitProducerId { .. })) => {
            response::init_producer_id(h.correlation_id, h.api_version, 0, 1, 0).expect("encodes");
        }
        Ok((h, Request::Group(r))) => group_answer(&h, r),
        Err(_) => {}
    }
});

/// An answer to a decoded group request, echoing what it carried, encodes.
fn group_answer(h: &request::Header, r: GroupRequest) {
    let (id, v) = (h.correlation_id, h.api_version);
    let encoded = match r {
        GroupRequest::FindCoordinator { key, .. } => {
            group::find_coordinator(id, v, &group::CoordinatorView { error: 0, message: Some(key), node_id: 1, host: "h".into(), port: 1 })
        }
        GroupRequest::Join(j) => {
            let members = j.protocols.iter().map(|(n, b)| (n.clone(), b.to_vec())).collect();
            let view = group::JoinView { member_id: j.member_id, leader: j.group, protocol_type: j.protocol_type, members, ..Default::default() };
            group::join_group(id, v, &view)
        }
        GroupRequest::Sync(s) => {
            let assignment = s.assignments.first().map(|a| a.1.to_vec()).unwrap_or_default();
            group::sync_group(id, v, 0, Some(("consumer", "range")), &assignment)
        }
        GroupRequest::Heartbeat { .. } => group::heartbeat(id, v, 0),
        GroupRequest::Leave { members, .. } => group::leave_group(id, v, 0, &members.into_iter().map(|m| (m, 0)).collect::<Vec<_>>()),
        GroupRequest::Commit(c) => {
            let results: Vec<_> = c.topics.into_iter().map(|(t, ps)| (t, ps.into_iter().map(|p| (p.0, 0)).collect())).collect();
            group::offset_commit(id, v, &results)
        }
        GroupRequest::OffsetFetch { topics, .. } => {
            let topics: Vec<_> = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    (t, ps.into_iter().map(|p| group::FetchedOffset { partition: p, offset: -1, metadata: String::new(), error: 0 }).collect())
                })
                .collect();
            group::offset_fetch(id, v, 0, &topics)
        }
        GroupRequest::Describe { groups } => {
            let views: Vec<_> = groups
                .into_iter()
                .map(|g| group::GroupView {
                    error: 0,
                    group: g,
                    state: "Dead".into(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: vec![],
                })
                .collect();
            group::describe_groups(id, v, &views)
        }
        GroupRequest::List { states } => {
            let groups: Vec<_> = states.into_iter().map(|s| (s.clone(), "consumer".to_owned(), s)).collect();
            group::list_groups(id, v, 0, &groups)
        }
    };
    encoded.expect("encodes");
}
