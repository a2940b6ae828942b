//! Kafka responses, each as a whole frame (length, header, body), from
//! plain views of what the broker knows: the encoding is the crate's,
//! the contents are ours.

use super::versions::ANSWERED;
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, DeleteTopicsResponse, FetchResponse, InitProducerIdResponse,
    ListOffsetsResponse, MetadataResponse, ProduceResponse, ProducerId, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A partition as Metadata lists it (`leader` -1: none now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub index: i32,
    pub error: i16,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic as Metadata lists it (an unknown one: its error, no partitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    pub error: i16,
    pub partitions: Vec<PartitionView>,
}

/// What a Metadata answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataView {
    pub brokers: Vec<BrokerView>,
    pub cluster_id: Option<String>,
    /// -1: none now.
    pub controller_id: i32,
    pub topics: Vec<TopicView>,
}

/// A response the message types cannot carry at the version asked (a
/// bug: views hold only what every answered version can carry).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a Kafka response: {0}")]
pub struct EncodeError(String);

/// `body` encoded after a response header of `header_version`, framed.
pub(super) fn framed<E: std::fmt::Display>(
    correlation_id: i32,
    header_version: i16,
    body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<BytesMut, EncodeError> {
    framed_with(correlation_id, header_version, 256, body)
}

/// [`framed`], with room for `capacity` bytes up front.
fn framed_with<E: std::fmt::Display>(
    correlation_id: i32,
    header_version: i16,
    capacity: usize,
    body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::with_capacity(capacity);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version)
        .map_err(|e| EncodeError(e.to_string()))?;
    body(&mut out).map_err(|e| EncodeError(e.to_string()))?;
    let length = i32::try_from(out.len() - 4).map_err(|_| EncodeError(format!("{} bytes do not fit a frame", out.len())))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

/// ApiVersions at `version` (its header is always version 0), listing the
/// ranges this build answers; `error` is UNSUPPORTED_VERSION for a request
/// newer than ours (then `version` is 0).
pub fn api_versions(correlation_id: i32, version: i16, error: i16) -> Result<BytesMut, EncodeError> {
    let keys = ANSWERED.iter().map(|r| ApiVersion::default().with_api_key(r.key).with_min_version(r.min).with_max_version(r.max)).collect();
    let body = ApiVersionsResponse::default().with_error_code(error).with_api_keys(keys);
    framed(correlation_id, 0, |out| body.encode(out, version))
}

/// Metadata at `version`.
pub fn metadata(correlation_id: i32, version: i16, view: &MetadataView) -> Result<BytesMut, EncodeError> {
    let brokers = view
        .brokers
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    let topics = view
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_error_code(p.error)
                        .with_partition_index(p.index)
                        .with_leader_id(BrokerId(p.leader))
                        .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                        .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                })
                .collect();
            MetadataResponseTopic::default()
                .with_error_code(t.error)
                .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
                .with_partitions(partitions)
        })
        .collect();
    let body = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(view.cluster_id.clone().map(StrBytes::from_string))
        .with_controller_id(BrokerId(view.controller_id))
        .with_topics(topics);
    framed(correlation_id, ApiKey::Metadata.response_header_version(version), |out| body.encode(out, version))
}

/// One topic's outcome in a CreateTopics or DeleteTopics answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error: i16,
    /// Why, for an error (CreateTopics carries it; DeleteTopics from 5).
    pub message: Option<String>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// CreateTopics at `version`.
pub fn create_topics(correlation_id: i32, version: i16, results: &[TopicResult]) -> Result<BytesMut, EncodeError> {
    let topics = results
        .iter()
        .map(|r| {
            CreatableTopicResult::default()
                .with_name(topic_name(&r.name))
                .with_error_code(r.error)
                .with_error_message(r.message.clone().map(StrBytes::from_string))
        })
        .collect();
    let body = CreateTopicsResponse::default().with_topics(topics);
    framed(correlation_id, ApiKey::CreateTopics.response_header_version(version), |out| body.encode(out, version))
}

/// DeleteTopics at `version`.
pub fn delete_topics(correlation_id: i32, version: i16, results: &[TopicResult]) -> Result<BytesMut, EncodeError> {
    let responses = results
        .iter()
        .map(|r| {
            DeletableTopicResult::default()
                .with_name(Some(topic_name(&r.name)))
                .with_error_code(r.error)
                .with_error_message(r.message.clone().map(StrBytes::from_string))
        })
        .collect();
    let body = DeleteTopicsResponse::default().with_responses(responses);
    framed(correlation_id, ApiKey::DeleteTopics.response_header_version(version), |out| body.encode(out, version))
}

/// One partition's answer to a Produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub index: i32,
    pub error: i16,
    /// -1 for an error.
    pub base_offset: i64,
    pub log_start_offset: i64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResult {
    pub name: String,
    pub partitions: Vec<ProducePartitionResult>,
}

/// Produce at `version` (3-9).
pub fn produce(correlation_id: i32, version: i16, results: &[ProduceTopicResult]) -> Result<BytesMut, EncodeError> {
    let responses = results
        .iter()
        .map(|t| {
            TopicProduceResponse::default().with_name(topic_name(&t.name)).with_partition_responses(
                t.partitions
                    .iter()
                    .map(|p| {
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(p.error)
                            .with_base_offset(p.base_offset)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(p.log_start_offset)
                            .with_error_message(p.message.clone().map(StrBytes::from_string))
                    })
                    .collect(),
            )
        })
        .collect();
    let body = ProduceResponse::default().with_responses(responses);
    framed(correlation_id, ApiKey::Produce.response_header_version(version), |out| body.encode(out, version))
}

/// One partition's answer to a Fetch: whole Kafka batches as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    pub index: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResult {
    pub name: String,
    pub partitions: Vec<FetchPartitionResult>,
}

/// Fetch at `version` (4-12): no fetch sessions (id 0), the last stable
/// offset is the high watermark, no aborted transactions.
pub fn fetch(correlation_id: i32, version: i16, results: &[FetchTopicResult]) -> Result<BytesMut, EncodeError> {
    let responses = results
        .iter()
        .map(|t| {
            FetchableTopicResponse::default().with_topic(topic_name(&t.name)).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        PartitionData::default()
                            .with_partition_index(p.index)
                            .with_error_code(p.error)
                            .with_high_watermark(p.high_watermark)
                            .with_last_stable_offset(p.high_watermark)
                            .with_log_start_offset(p.log_start_offset)
                            .with_aborted_transactions(Some(Vec::new()))
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(p.records.clone()))
                    })
                    .collect(),
            )
        })
        .collect();
    let body = FetchResponse::default().with_session_id(0).with_responses(responses);
    let size: usize = results.iter().flat_map(|t| &t.partitions).map(|p| p.records.len() + 64).sum();
    framed_with(correlation_id, ApiKey::Fetch.response_header_version(version), 256 + size, |out| body.encode(out, version))
}

/// One partition's answer to a ListOffsets (`timestamp` -1 where none applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetResult {
    pub index: i32,
    pub error: i16,
    pub timestamp: i64,
    pub offset: i64,
}

/// ListOffsets at `version` (1-7).
pub fn list_offsets(correlation_id: i32, version: i16, results: &[(String, Vec<OffsetResult>)]) -> Result<BytesMut, EncodeError> {
    let topics = results
        .iter()
        .map(|(name, parts)| {
            ListOffsetsTopicResponse::default().with_name(topic_name(name)).with_partitions(
                parts
                    .iter()
                    .map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.index)
                            .with_error_code(p.error)
                            .with_timestamp(p.timestamp)
                            .with_offset(p.offset)
                            .with_leader_epoch(-1)
                    })
                    .collect(),
            )
        })
        .collect();
    let body = ListOffsetsResponse::default().with_topics(topics);
    framed(correlation_id, ApiKey::ListOffsets.response_header_version(version), |out| body.encode(out, version))
}

/// InitProducerId at `version` (0-4).
pub fn init_producer_id(correlation_id: i32, version: i16, error: i16, producer_id: i64, epoch: i16) -> Result<BytesMut, EncodeError> {
    let body =
        InitProducerIdResponse::default().with_error_code(error).with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch);
    framed(correlation_id, ApiKey::InitProducerId.response_header_version(version), |out| body.encode(out, version))
}

#[cfg(test)]
mod tests {
    use super::super::versions;
    use super::*;
    use bytes::Buf;

    #[test]
    fn api_versions_answers_carry_our_ranges_under_a_version_0_header() {
        let f = api_versions(7, 0, super::super::code::UNSUPPORTED_VERSION).unwrap();
        let mut b = &f[..];
        assert_eq!(b.get_i32() as usize, f.len() - 4);
        assert_eq!(b.get_i32(), 7, "correlation id, then no tagged fields: header v0");
        assert_eq!(b.get_i16(), 35);
        assert_eq!(b.get_i32() as usize, ANSWERED.len());
        let v3 = api_versions(8, 3, 0).unwrap();
        assert_eq!(&v3[4..8], &8i32.to_be_bytes(), "header v0 even at version 3");
    }

    #[test]
    fn topic_results_encode_at_every_version_answered() {
        let results = [
            TopicResult { name: "a".into(), error: 0, message: None },
            TopicResult { name: "b".into(), error: super::super::code::TOPIC_ALREADY_EXISTS, message: Some("exists".into()) },
        ];
        for (key, encode) in [
            (versions::CREATE_TOPICS, create_topics as fn(i32, i16, &[TopicResult]) -> Result<BytesMut, EncodeError>),
            (versions::DELETE_TOPICS, delete_topics),
        ] {
            let r = versions::answered(key).unwrap();
            for v in r.min..=r.max {
                let f = encode(9, v, &results).unwrap_or_else(|e| panic!("{} v{v}: {e}", versions::name(key)));
                assert_eq!(&f[4..8], &9i32.to_be_bytes());
            }
        }
    }

    #[test]
    fn metadata_encodes_at_every_version_answered() {
        let view = MetadataView {
            brokers: vec![BrokerView { node_id: 1, host: "127.0.0.1".into(), port: 9092, rack: Some("r1".into()) }],
            cluster_id: Some("weir-00ff".into()),
            controller_id: 1,
            topics: vec![
                TopicView {
                    name: "t".into(),
                    error: 0,
                    partitions: vec![PartitionView { index: 0, error: 0, leader: 1, replicas: vec![1], isr: vec![1] }],
                },
                TopicView { name: "gone".into(), error: super::super::code::UNKNOWN_TOPIC_OR_PARTITION, partitions: vec![] },
            ],
        };
        let r = versions::answered(versions::METADATA).unwrap();
        for v in r.min..=r.max {
            let f = metadata(3, v, &view).unwrap_or_else(|e| panic!("v{v}: {e}"));
            assert_eq!(i32::from_be_bytes(f[..4].try_into().unwrap()) as usize, f.len() - 4);
            assert_eq!(&f[4..8], &3i32.to_be_bytes());
        }
    }
}
