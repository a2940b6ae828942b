//! A Kafka connection's first bytes through the detector, the frame length
//! check, the version firewall and the decoders: total (no panic, no
//! allocation beyond a small multiple of the input under the RSS limit),
//! and an answer encodes for every request decoded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_net::kafka::request::{self, Request};
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
            let results: Vec<_> = names.into_iter().map(|name| response::TopicResult { name, error: 3, message: Some("gone".into()) }).collect();
            response::delete_topics(h.correlation_id, h.api_version, &results).expect("encodes");
        }
        Err(_) => {}
    }
});
