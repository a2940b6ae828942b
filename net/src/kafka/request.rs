//! Kafka requests as Weir reads them: the header's api key and version go
//! through the firewall ([`super::versions::check`]) before anything else
//! is decoded, and a body is walked against its schema ([`super::walk`])
//! before the crate decodes it.

use super::versions::{self, Verdict};
use super::walk::{Field, Field::*, walk};
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest,
};
use kafka_protocol::protocol::{Decodable, decode_request_header_from_buffer};

/// Metadata 0-9: the topics (each a name, and tagged fields once flexible).
const METADATA: &[Field] = &[Array(&[Str, Tagged])];
/// CreateTopics 2-5: topics (name, partitions, replication, assignments of
/// broker ids, configs), timeout, validate_only.
const CREATE_TOPICS: &[Field] = &[
    Array(&[Str, Fixed(4), Fixed(2), Array(&[Fixed(4), Array(&[Fixed(4)]), Tagged]), Array(&[Str, Str, Tagged]), Tagged]),
    Fixed(4),
    Fixed(1),
    Tagged,
];
/// DeleteTopics 1-4: topic names, timeout.
const DELETE_TOPICS: &[Field] = &[Array(&[Str]), Fixed(4), Tagged];

/// Produce 3-9: transactional id, acks, timeout, topics (name, partitions
/// (index, records)).
const PRODUCE: &[Field] = &[Str, Fixed(2), Fixed(4), Array(&[Str, Array(&[Fixed(4), Bytes, Tagged]), Tagged]), Tagged];

/// Fetch partitions: index, [current leader epoch 9+], offset, [last
/// fetched epoch 12+], [log start 5+], max bytes.
const FETCH_P4: &[Field] = &[Fixed(4), Fixed(8), Fixed(4), Tagged];
const FETCH_P5: &[Field] = &[Fixed(4), Fixed(8), Fixed(8), Fixed(4), Tagged];
const FETCH_P9: &[Field] = &[Fixed(4), Fixed(4), Fixed(8), Fixed(8), Fixed(4), Tagged];
const FETCH_P12: &[Field] = &[Fixed(4), Fixed(4), Fixed(8), Fixed(4), Fixed(8), Fixed(4), Tagged];
const FORGOTTEN: Field = Array(&[Str, Array(&[Fixed(4)]), Tagged]);
/// Fetch 4-12: replica, max wait, min bytes, max bytes, isolation,
/// [session id and epoch 7+], topics, [forgotten topics 7+], [rack 11+].
const FETCH_4: &[Field] = &[Fixed(4), Fixed(4), Fixed(4), Fixed(4), Fixed(1), Array(&[Str, Array(FETCH_P4), Tagged]), Tagged];
const FETCH_5: &[Field] = &[Fixed(4), Fixed(4), Fixed(4), Fixed(4), Fixed(1), Array(&[Str, Array(FETCH_P5), Tagged]), Tagged];
const FETCH_7: &[Field] =
    &[Fixed(4), Fixed(4), Fixed(4), Fixed(4), Fixed(1), Fixed(4), Fixed(4), Array(&[Str, Array(FETCH_P5), Tagged]), FORGOTTEN, Tagged];
const FETCH_9: &[Field] =
    &[Fixed(4), Fixed(4), Fixed(4), Fixed(4), Fixed(1), Fixed(4), Fixed(4), Array(&[Str, Array(FETCH_P9), Tagged]), FORGOTTEN, Tagged];
const FETCH_11: &[Field] =
    &[Fixed(4), Fixed(4), Fixed(4), Fixed(4), Fixed(1), Fixed(4), Fixed(4), Array(&[Str, Array(FETCH_P9), Tagged]), FORGOTTEN, Str, Tagged];
const FETCH_12: &[Field] = &[
    Fixed(4),
    Fixed(4),
    Fixed(4),
    Fixed(4),
    Fixed(1),
    Fixed(4),
    Fixed(4),
    Array(&[Str, Array(FETCH_P12), Tagged]),
    FORGOTTEN,
    Str,
    Tagged,
];

fn fetch_schema(version: i16) -> &'static [Field] {
    match version {
        ..=4 => FETCH_4,
        5..=6 => FETCH_5,
        7..=8 => FETCH_7,
        9..=10 => FETCH_9,
        11 => FETCH_11,
        _ => FETCH_12,
    }
}

/// ListOffsets 1-7: replica, [isolation 2+], topics (name, partitions
/// (index, [current leader epoch 4+], timestamp)).
const LIST_OFFSETS_1: &[Field] = &[Fixed(4), Array(&[Str, Array(&[Fixed(4), Fixed(8), Tagged]), Tagged]), Tagged];
const LIST_OFFSETS_2: &[Field] = &[Fixed(4), Fixed(1), Array(&[Str, Array(&[Fixed(4), Fixed(8), Tagged]), Tagged]), Tagged];
const LIST_OFFSETS_4: &[Field] = &[Fixed(4), Fixed(1), Array(&[Str, Array(&[Fixed(4), Fixed(4), Fixed(8), Tagged]), Tagged]), Tagged];

fn list_offsets_schema(version: i16) -> &'static [Field] {
    match version {
        ..=1 => LIST_OFFSETS_1,
        2..=3 => LIST_OFFSETS_2,
        _ => LIST_OFFSETS_4,
    }
}

/// InitProducerId 0-4: transactional id, timeout, [producer id and epoch 3+].
const INIT_PRODUCER_ID_0: &[Field] = &[Str, Fixed(4), Tagged];
const INIT_PRODUCER_ID_3: &[Field] = &[Str, Fixed(4), Fixed(8), Fixed(2), Tagged];

/// Longest client id kept for logs.
const CLIENT_ID_BYTES_MAX: usize = 256;

/// A request's header, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

impl Header {
    /// Who sent it, for logs: its client id, else "a Kafka client".
    pub fn client(&self) -> String {
        self.client_id.as_deref().map_or_else(|| "a Kafka client".to_owned(), |c| format!("Kafka client {c:?}"))
    }
}

/// A request this broker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ApiVersions {
        /// The client's software name and version (ApiVersions 3+).
        software: Option<String>,
    },
    Metadata {
        /// Topics asked about; `None`: every topic.
        topics: Option<Vec<String>>,
        /// Whether the client allows topics it names to be created.
        allow_auto_create: bool,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
        timeout_ms: i32,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
        timeout_ms: i32,
    },
    Produce {
        transactional_id: Option<String>,
        /// 0: no answer; 1: the leader's; -1: every replica's.
        acks: i16,
        timeout_ms: i32,
        topics: Vec<ProduceTopic>,
    },
    Fetch {
        max_wait_ms: i32,
        min_bytes: i32,
        max_bytes: i32,
        /// 0 read uncommitted, 1 read committed (the same here: no transactions).
        isolation_level: i8,
        session_id: i32,
        session_epoch: i32,
        topics: Vec<FetchTopic>,
    },
    ListOffsets {
        topics: Vec<OffsetsTopic>,
    },
    InitProducerId {
        transactional_id: Option<String>,
    },
    Group(super::group::GroupRequest),
}

/// One topic's data in a Produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    /// (partition, its records: one Kafka RecordBatch, as sent).
    pub partitions: Vec<(i32, Option<Bytes>)>,
}

/// One topic's partitions in a Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    pub index: i32,
    pub offset: i64,
    pub max_bytes: i32,
}

/// One topic's partitions in a ListOffsets: (partition, timestamp; -1
/// latest, -2 earliest, -3 the record with the largest timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsTopic {
    pub name: String,
    pub partitions: Vec<(i32, i64)>,
}

/// A topic a CreateTopics request asks for (-1: the broker's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication: i16,
    /// How many partitions the request places by hand (refused: Weir places them).
    pub assignments: usize,
    /// Settings, as (name, value).
    pub configs: Vec<(String, Option<String>)>,
}

/// Why a request is not answered as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// ApiVersions newer than ours: answered at version 0 with
    /// UNSUPPORTED_VERSION and our ranges.
    ApiVersionsTooNew,
    /// Not answerable: the connection closes, and this says why.
    Close(String),
}

/// Reads one request from a frame's bytes (after its length field; at
/// least 8 bytes, see [`super::frame_len`]). Total: any bytes give a
/// request or a refusal, never a panic or an allocation beyond a small
/// multiple of the frame.
pub fn decode(mut frame: Bytes) -> Result<(Header, Request), (Header, Refused)> {
    let mut header = Header { api_key: 0, api_version: 0, correlation_id: 0, client_id: None };
    if frame.len() < 8 {
        return Err((header, Refused::Close(format!("a Kafka request of {} bytes is shorter than its header", frame.len()))));
    }
    header.api_key = i16::from_be_bytes([frame[0], frame[1]]);
    header.api_version = i16::from_be_bytes([frame[2], frame[3]]);
    header.correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let verdict = versions::check(header.api_key, header.api_version);
    if verdict == Verdict::ApiVersionsTooNew {
        return Err((header, Refused::ApiVersionsTooNew));
    }
    // The crate knows every header version; the client id helps the log.
    let decoded = decode_request_header_from_buffer(&mut frame);
    if let Ok(h) = &decoded {
        header.client_id = h.client_id.as_ref().map(|c| c.chars().take(CLIENT_ID_BYTES_MAX).collect());
    }
    if verdict == Verdict::Unsupported {
        let why = format!(
            "{} asked for {} version {}, which this broker does not answer (it answers {})",
            header.client(),
            versions::name(header.api_key),
            header.api_version,
            versions::answered_summary()
        );
        return Err((header, Refused::Close(why)));
    }
    if let Err(e) = decoded {
        return Err((header, Refused::Close(format!("malformed Kafka request header: {e}"))));
    }
    if header.api_key == versions::PRODUCE && header.api_version < versions::PRODUCE_DECODED_MIN {
        let why = format!(
            "{} sent Produce version {} (message format 0 or 1), which this broker does not store: use a client that sends Produce {} or newer",
            header.client(),
            header.api_version,
            versions::PRODUCE_DECODED_MIN
        );
        return Err((header, Refused::Close(why)));
    }
    let version = header.api_version;
    let body = match header.api_key {
        versions::API_VERSIONS => {
            ApiVersionsRequest::decode(&mut frame, version).map_err(|e| e.to_string()).map(|r| Request::ApiVersions {
                software: (version >= 3).then(|| format!("{} {}", &*r.client_software_name, &*r.client_software_version)),
            })
        }
        versions::METADATA => {
            walk(&frame, METADATA, version >= 9).and_then(|()| MetadataRequest::decode(&mut frame, version).map_err(|e| e.to_string())).map(
                |r| {
                    Request::Metadata {
                        // Version 0 has no null list: an empty one means every topic.
                        topics: r
                            .topics
                            .filter(|ts| version > 0 || !ts.is_empty())
                            .map(|ts| ts.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
                        // Versions before 4 have no such field: they always allow it.
                        allow_auto_create: version < 4 || r.allow_auto_topic_creation,
                    }
                },
            )
        }
        versions::CREATE_TOPICS => walk(&frame, CREATE_TOPICS, version >= 5)
            .and_then(|()| CreateTopicsRequest::decode(&mut frame, version).map_err(|e| e.to_string()))
            .map(|r| Request::CreateTopics {
                topics: r
                    .topics
                    .into_iter()
                    .map(|t| NewTopic {
                        name: t.name.0.to_string(),
                        partitions: t.num_partitions,
                        replication: t.replication_factor,
                        assignments: t.assignments.len(),
                        configs: t.configs.into_iter().map(|c| (c.name.to_string(), c.value.map(|v| v.to_string()))).collect(),
                    })
                    .collect(),
                timeout_ms: r.timeout_ms,
                validate_only: r.validate_only,
            }),
        versions::DELETE_TOPICS => walk(&frame, DELETE_TOPICS, version >= 4)
            .and_then(|()| DeleteTopicsRequest::decode(&mut frame, version).map_err(|e| e.to_string()))
            .map(|r| Request::DeleteTopics {
                names: r.topic_names.into_iter().map(|n| n.0.to_string()).collect(),
                timeout_ms: r.timeout_ms,
            }),
        versions::PRODUCE => walk(&frame, PRODUCE, version >= 9)
            .and_then(|()| ProduceRequest::decode(&mut frame, version).map_err(|e| e.to_string()))
            .map(|r| Request::Produce {
                transactional_id: r.transactional_id.map(|t| t.0.to_string()),
                acks: r.acks,
                timeout_ms: r.timeout_ms,
                topics: r
                    .topic_data
                    .into_iter()
                    .map(|t| ProduceTopic {
                        name: t.name.0.to_string(),
                        partitions: t.partition_data.into_iter().map(|p| (p.index, p.records)).collect(),
                    })
                    .collect(),
            }),
        versions::FETCH => walk(&frame, fetch_schema(version), version >= 12)
            .and_then(|()| FetchRequest::decode(&mut frame, version).map_err(|e| e.to_string()))
            .map(|r| Request::Fetch {
                max_wait_ms: r.max_wait_ms,
                min_bytes: r.min_bytes,
                max_bytes: r.max_bytes,
                isolation_level: r.isolation_level,
                session_id: r.session_id,
                session_epoch: r.session_epoch,
                topics: r
                    .topics
                    .into_iter()
                    .map(|t| FetchTopic {
                        name: t.topic.0.to_string(),
                        partitions: t
                            .partitions
                            .into_iter()
                            .map(|p| FetchPartition { index: p.partition, offset: p.fetch_offset, max_bytes: p.partition_max_bytes })
                            .collect(),
                    })
                    .collect(),
            }),
        versions::LIST_OFFSETS => walk(&frame, list_offsets_schema(version), version >= 6)
            .and_then(|()| ListOffsetsRequest::decode(&mut frame, version).map_err(|e| e.to_string()))
            .map(|r| Request::ListOffsets {
                topics: r
                    .topics
                    .into_iter()
                    .map(|t| OffsetsTopic {
                        name: t.name.0.to_string(),
                        partitions: t.partitions.into_iter().map(|p| (p.partition_index, p.timestamp)).collect(),
                    })
                    .collect(),
            }),
        versions::INIT_PRODUCER_ID => walk(&frame, if version >= 3 { INIT_PRODUCER_ID_3 } else { INIT_PRODUCER_ID_0 }, version >= 2)
            .and_then(|()| InitProducerIdRequest::decode(&mut frame, version).map_err(|e| e.to_string()))
            .map(|r| Request::InitProducerId { transactional_id: r.transactional_id.map(|t| t.0.to_string()) }),
        key if super::group::is_group_api(key) => super::group::decode(key, version, &mut frame).map(Request::Group),
        _ => unreachable!("the firewall lets through only the keys matched here"),
    };
    match body {
        Ok(r) => Ok((header, r)),
        Err(e) => {
            let why = format!("malformed Kafka {} v{version} request: {e}", versions::name(header.api_key));
            Err((header, Refused::Close(why)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn head(key: i16, version: i16, id: i32, client: Option<&str>, flexible: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(id);
        match client {
            Some(c) => {
                b.put_i16(c.len() as i16);
                b.put_slice(c.as_bytes());
            }
            None => b.put_i16(-1),
        }
        if flexible {
            b.put_u8(0); // no tagged fields
        }
        b
    }

    #[test]
    fn api_versions_of_every_version_we_speak_and_newer_ones() {
        let mut v0 = head(18, 0, 7, Some("kcat"), false);
        let (h, r) = decode(Bytes::from(v0.clone())).unwrap();
        assert_eq!((h.correlation_id, h.client_id.as_deref(), r), (7, Some("kcat"), Request::ApiVersions { software: None }));
        let mut v3 = head(18, 3, 8, Some("rdkafka"), true);
        v3.extend_from_slice(&[8, b'l', b'i', b'b', b'r', b'd', b'k', b'f', 6, b'2', b'.', b'0', b'.', b'2', 0]);
        let (_, r) = decode(Bytes::from(v3)).unwrap();
        assert_eq!(r, Request::ApiVersions { software: Some("librdkf 2.0.2".into()) });
        v0[3] = 99;
        let (h, refused) = decode(Bytes::from(v0)).unwrap_err();
        assert_eq!((h.correlation_id, refused), (7, Refused::ApiVersionsTooNew));
    }

    #[test]
    fn metadata_for_all_topics_or_some_at_old_and_flexible_versions() {
        let mut v1 = head(3, 1, 1, None, false);
        v1.put_i32(-1);
        assert_eq!(decode(Bytes::from(v1)).unwrap().1, Request::Metadata { topics: None, allow_auto_create: true });
        let mut v4 = head(3, 4, 1, None, false);
        v4.put_i32(1);
        v4.put_i16(3);
        v4.put_slice(b"abc");
        v4.put_u8(0);
        assert_eq!(decode(Bytes::from(v4)).unwrap().1, Request::Metadata { topics: Some(vec!["abc".into()]), allow_auto_create: false });
        let mut v9 = head(3, 9, 1, Some("c"), true);
        v9.extend_from_slice(&[2, 4, b'a', b'b', b'c', 0, 1, 0, 0, 0]);
        assert_eq!(decode(Bytes::from(v9)).unwrap().1, Request::Metadata { topics: Some(vec!["abc".into()]), allow_auto_create: true });
    }

    #[test]
    fn create_and_delete_topics_at_old_and_flexible_versions() {
        let mut v2 = head(19, 2, 1, None, false);
        v2.put_i32(1);
        v2.put_i16(1);
        v2.put_slice(b"t");
        v2.put_i32(3);
        v2.put_i16(-1);
        v2.put_i32(0); // no assignments
        v2.put_i32(1);
        v2.put_i16(12);
        v2.put_slice(b"retention.ms");
        v2.put_i16(4);
        v2.put_slice(b"1000");
        v2.put_i32(5000);
        v2.put_u8(1);
        let want = NewTopic {
            name: "t".into(),
            partitions: 3,
            replication: -1,
            assignments: 0,
            configs: vec![("retention.ms".into(), Some("1000".into()))],
        };
        assert_eq!(decode(Bytes::from(v2)).unwrap().1, Request::CreateTopics { topics: vec![want], timeout_ms: 5000, validate_only: true });
        let mut v5 = head(19, 5, 1, None, true);
        v5.extend_from_slice(&[2, 2, b't', 0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0x13, 0x88, 0, 0]);
        let Request::CreateTopics { topics, .. } = decode(Bytes::from(v5)).unwrap().1 else { panic!() };
        assert_eq!((topics[0].partitions, topics[0].replication), (1, 1));
        let mut d1 = head(20, 1, 1, None, false);
        d1.put_i32(2);
        for n in [&b"a"[..], b"bc"] {
            d1.put_i16(n.len() as i16);
            d1.put_slice(n);
        }
        d1.put_i32(100);
        assert_eq!(decode(Bytes::from(d1)).unwrap().1, Request::DeleteTopics { names: vec!["a".into(), "bc".into()], timeout_ms: 100 });
        let mut nested = head(19, 2, 1, None, false);
        nested.put_i32(1);
        nested.put_i16(1);
        nested.put_slice(b"t");
        nested.put_i32(3);
        nested.put_i16(1);
        nested.put_i32(i32::MAX); // assignments
        assert!(matches!(decode(Bytes::from(nested)).unwrap_err().1, Refused::Close(w) if w.contains("entries")), "a nested count");
    }

    #[test]
    fn hostile_counts_and_unknown_apis_are_refused_without_allocating() {
        let mut huge = head(3, 1, 1, None, false);
        huge.put_i32(i32::MAX);
        let (_, r) = decode(Bytes::from(huge)).unwrap_err();
        assert!(matches!(&r, Refused::Close(why) if why.contains("entries in 0 bytes")), "{r:?}");
        let mut huge = head(3, 9, 1, None, true);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode(Bytes::from(huge)).is_err());
        let mut endless = head(3, 9, 1, None, true);
        endless.extend_from_slice(&[0xff; 9]);
        assert!(matches!(decode(Bytes::from(endless)).unwrap_err().1, Refused::Close(w) if w.contains("varint")));
        let commit = head(8, 1, 5, Some("p"), false);
        let (h, r) = decode(Bytes::from(commit)).unwrap_err();
        assert_eq!(h.client_id.as_deref(), Some("p"));
        assert!(matches!(&r, Refused::Close(w) if w.contains("OffsetCommit version 1") && w.contains("Metadata 0-9")), "{r:?}");
        // Produce 0-2 are advertised (librdkafka needs 0 in range) but close.
        let (_, r) = decode(Bytes::from(head(0, 2, 5, None, false))).unwrap_err();
        assert!(matches!(&r, Refused::Close(w) if w.contains("Produce 3 or newer")), "{r:?}");
        assert!(decode(Bytes::from(head(999, 0, 1, None, false))).is_err());
        assert!(decode(Bytes::from_static(&[0, 3, 0])).is_err(), "short");
        let mut bad_client = head(3, 1, 1, None, false);
        bad_client[8..10].copy_from_slice(&i16::MAX.to_be_bytes());
        assert!(decode(Bytes::from(bad_client)).is_err(), "a client id longer than the frame");
    }

    /// The fuzzer's seed corpus is what kcat sends: every seed must decode.
    #[test]
    fn the_seed_corpus_decodes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/kafka_request");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let n = super::super::frame_len(&bytes, 1 << 20).unwrap().unwrap();
            let (h, _) = decode(Bytes::copy_from_slice(&bytes[4..4 + n])).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(h.client_id.as_deref(), Some("kcat"));
            seen += 1;
        }
        assert_eq!(seen, 7);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), key in 0i16..20, version in -1i16..12) {
            let mut frame = head(key, version, 1, None, version >= 9);
            frame.extend_from_slice(&bytes);
            let _ = decode(Bytes::from(frame));
            let _ = decode(Bytes::from(bytes));
        }
    }
}
