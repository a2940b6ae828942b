//! Requests and responses. Each API has a key (stable forever) and a version
//! range; every body is postcard. Produce requests and fetch responses carry
//! record batches as a raw payload after the postcard body, so batches are
//! sliced out of the frame without copying or re-encoding.
//!
//! A response body is `postcard(Result<T, WireError>)`: `0x00` then the
//! response, or `0x01` then the error code and message.

use crate::error::{ErrorCode, WireError};
use crate::frame::{self, Frame, FrameHeader, Kind};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Raw bytes carried after the postcard body.
trait Payload {
    fn payload(&self) -> &[u8] {
        &[]
    }
    /// The payload as shared bytes (a cheap clone), for sending it uncopied.
    fn payload_bytes(&self) -> Bytes {
        Bytes::new()
    }
    /// Takes the payload; returns false if this message has none.
    fn set_payload(&mut self, payload: Bytes) -> bool {
        payload.is_empty()
    }
}

macro_rules! apis {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $req:ident => $resp:ident;)*) => {
        /// API keys. Numbers are stable forever.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ApiKey { $($(#[$doc])* $name = $num,)* }

        impl ApiKey {
            pub fn from_u16(n: u16) -> Option<ApiKey> {
                match n { $($num => Some(ApiKey::$name),)* _ => None }
            }
            pub const ALL: &'static [ApiKey] = &[$(ApiKey::$name,)*];
        }

        /// A request of any API.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request { $($name($req),)* }

        /// A successful response of any API.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response { $($name($resp),)* }

        impl Request {
            pub fn api_key(&self) -> ApiKey {
                match self { $(Request::$name(_) => ApiKey::$name,)* }
            }

            /// Appends the framed request to `out`, at the newest version
            /// of its API this build speaks.
            pub fn encode(&self, correlation_id: u32, out: &mut BytesMut) {
                self.encode_at(version_max(self.api_key()), correlation_id, out)
            }

            /// As [`Request::encode`], at `version` (what the broker speaks:
            /// request bodies are the same at every version so far, only the
            /// answer differs).
            pub fn encode_at(&self, version: u16, correlation_id: u32, out: &mut BytesMut) {
                let header = FrameHeader { kind: Kind::Request, api_key: self.api_key() as u16, api_version: version, correlation_id };
                match self { $(Request::$name(r) => encode_parts(out, header, r),)* }
            }

            /// Decodes a request frame. Errors are what to answer with.
            pub fn decode(frame: &Frame) -> Result<Request, WireError> {
                let h = frame.header;
                if h.kind != Kind::Request {
                    return Err(WireError::new(ErrorCode::InvalidRequest, "expected a request frame, got a response"));
                }
                let key = ApiKey::from_u16(h.api_key).ok_or_else(|| WireError::new(ErrorCode::UnknownApi, format!("unknown API key {}: this broker knows keys 0..={}", h.api_key, ApiKey::ALL.len() - 1)))?;
                check_version(key, h.api_version)?;
                match key { $(ApiKey::$name => decode_parts(&frame.body).map(Request::$name),)* }
            }
        }

        impl Response {
            pub fn api_key(&self) -> ApiKey {
                match self { $(Response::$name(_) => ApiKey::$name,)* }
            }

            /// Appends the framed response (or error) to `out`, at the
            /// newest version of its API.
            pub fn encode(key: ApiKey, correlation_id: u32, result: &Result<Response, WireError>, out: &mut BytesMut) {
                Response::encode_at(key, version_max(key), correlation_id, result, out)
            }

            /// As [`Response::encode`], at the version the request came in.
            pub fn encode_at(key: ApiKey, version: u16, correlation_id: u32, result: &Result<Response, WireError>, out: &mut BytesMut) {
                let header = FrameHeader { kind: Kind::Response, api_key: key as u16, api_version: version, correlation_id };
                if let (Ok(Response::Metadata(m)), 1) = (result, version) {
                    return encode_result(out, header, Ok(&MetadataResponseV1::from(m)));
                }
                if let (Ok(Response::ClusterStatus(c)), 1) = (result, version) {
                    return encode_result(out, header, Ok(&ClusterStatusResponseV1::from(c)));
                }
                if let (Ok(Response::DescribeReplicas(d)), 1) = (result, version) {
                    return encode_result(out, header, Ok(&DescribeReplicasResponseV1::from(d)));
                }
                match result {
                    $(Ok(Response::$name(r)) => encode_result(out, header, Ok(r)),)*
                    Err(e) => encode_result::<ApiVersionsResponse>(out, header, Err(e)),
                }
            }

            /// As [`Response::encode`], but appends only the frame's header
            /// and body, and returns the payload that must follow them on
            /// the wire (empty if none).
            pub fn encode_head(key: ApiKey, version: u16, correlation_id: u32, result: &Result<Response, WireError>, out: &mut BytesMut) -> Bytes {
                let header = FrameHeader { kind: Kind::Response, api_key: key as u16, api_version: version, correlation_id };
                if let (Ok(Response::Metadata(m)), 1) = (result, version) {
                    return encode_result_head(out, header, Ok(&MetadataResponseV1::from(m)));
                }
                if let (Ok(Response::ClusterStatus(c)), 1) = (result, version) {
                    return encode_result_head(out, header, Ok(&ClusterStatusResponseV1::from(c)));
                }
                if let (Ok(Response::DescribeReplicas(d)), 1) = (result, version) {
                    return encode_result_head(out, header, Ok(&DescribeReplicasResponseV1::from(d)));
                }
                match result {
                    $(Ok(Response::$name(r)) => encode_result_head(out, header, Ok(r)),)*
                    Err(e) => encode_result_head::<ApiVersionsResponse>(out, header, Err(e)),
                }
            }

            /// Decodes a response frame to the API named in its header.
            pub fn decode(frame: &Frame) -> Result<Result<Response, WireError>, WireError> {
                let h = frame.header;
                if h.kind != Kind::Response {
                    return Err(WireError::new(ErrorCode::InvalidRequest, "expected a response frame, got a request"));
                }
                let key = ApiKey::from_u16(h.api_key).ok_or_else(|| WireError::new(ErrorCode::UnknownApi, format!("response for unknown API key {}", h.api_key)))?;
                if key == ApiKey::Metadata && h.api_version == 1 {
                    return decode_result::<MetadataResponseV1>(&frame.body).map(|r| r.map(|m| Response::Metadata(m.into())));
                }
                if key == ApiKey::ClusterStatus && h.api_version == 1 {
                    return decode_result::<ClusterStatusResponseV1>(&frame.body).map(|r| r.map(|c| Response::ClusterStatus(c.into())));
                }
                if key == ApiKey::DescribeReplicas && h.api_version == 1 {
                    return decode_result::<DescribeReplicasResponseV1>(&frame.body).map(|r| r.map(|d| Response::DescribeReplicas(d.into())));
                }
                match key { $(ApiKey::$name => decode_result(&frame.body).map(|r| r.map(Response::$name)),)* }
            }
        }
    };
}

/// The oldest version of every API.
pub const VERSION_MIN: u16 = 1;

/// The newest version of `key` this build speaks. Metadata 2 adds each
/// partition's leader term and each topic's id; ClusterStatus 2 each
/// node's rack; DescribeReplicas 2 each replica's size on disk.
pub fn version_max(key: ApiKey) -> u16 {
    match key {
        ApiKey::Metadata | ApiKey::ClusterStatus | ApiKey::DescribeReplicas => 2,
        _ => 1,
    }
}

fn check_version(key: ApiKey, version: u16) -> Result<(), WireError> {
    let max = version_max(key);
    if (VERSION_MIN..=max).contains(&version) {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::UnsupportedVersion,
            format!("{key:?} version {version} is not supported: this broker speaks {VERSION_MIN}..={max}"),
        ))
    }
}

fn encode_parts<T: Serialize + Payload>(out: &mut BytesMut, header: FrameHeader, msg: &T) {
    let body = postcard::to_stdvec(msg).expect("postcard encoding of owned data cannot fail");
    frame::encode(out, header, &body, msg.payload());
}

fn encode_result<T: Serialize + Payload>(out: &mut BytesMut, header: FrameHeader, result: Result<&T, &WireError>) {
    let body = postcard::to_stdvec(&result).expect("postcard encoding of owned data cannot fail");
    let payload = match result {
        Ok(r) => r.payload(),
        Err(_) => &[],
    };
    frame::encode(out, header, &body, payload);
}

fn encode_result_head<T: Serialize + Payload>(out: &mut BytesMut, header: FrameHeader, result: Result<&T, &WireError>) -> Bytes {
    let body = postcard::to_stdvec(&result).expect("postcard encoding of owned data cannot fail");
    let payload = match result {
        Ok(r) => r.payload_bytes(),
        Err(_) => Bytes::new(),
    };
    frame::encode_head(out, header, &body, payload.len());
    payload
}

fn invalid(what: &str, e: postcard::Error) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, format!("malformed {what} body: {e}"))
}

fn decode_parts<T: DeserializeOwned + Payload>(body: &Bytes) -> Result<T, WireError> {
    let (mut msg, rest): (T, &[u8]) = postcard::take_from_bytes(body).map_err(|e| invalid("request", e))?;
    let payload = body.slice(body.len() - rest.len()..);
    if !msg.set_payload(payload) {
        return Err(WireError::new(ErrorCode::InvalidRequest, "unexpected bytes after the request body"));
    }
    Ok(msg)
}

fn decode_result<T: DeserializeOwned + Payload>(body: &Bytes) -> Result<Result<T, WireError>, WireError> {
    let (result, rest): (Result<T, WireError>, &[u8]) = postcard::take_from_bytes(body).map_err(|e| invalid("response", e))?;
    let payload = body.slice(body.len() - rest.len()..);
    match result {
        Ok(mut msg) => {
            if !msg.set_payload(payload) {
                return Err(WireError::new(ErrorCode::InvalidRequest, "unexpected bytes after the response body"));
            }
            Ok(Ok(msg))
        }
        Err(e) if payload.is_empty() => Ok(Err(e)),
        Err(_) => Err(WireError::new(ErrorCode::InvalidRequest, "unexpected bytes after an error response")),
    }
}

apis! {
    /// Handshake: which APIs and versions the broker speaks.
    ApiVersions = 0, ApiVersionsRequest => ApiVersionsResponse;
    /// Brokers, topics, partitions and their leaders.
    Metadata = 1, MetadataRequest => MetadataResponse;
    CreateTopic = 2, CreateTopicRequest => CreateTopicResponse;
    DeleteTopic = 3, DeleteTopicRequest => DeleteTopicResponse;
    ListTopics = 4, ListTopicsRequest => ListTopicsResponse;
    DescribeTopic = 5, DescribeTopicRequest => DescribeTopicResponse;
    /// Append one record batch to a partition.
    Produce = 6, ProduceRequest => ProduceResponse;
    /// Read batches from a partition, optionally waiting for data (long poll).
    Fetch = 7, FetchRequest => FetchResponse;
    /// Earliest, latest, or first offset at or after a timestamp.
    ListOffsets = 8, ListOffsetsRequest => ListOffsetsResponse;
    /// Obtain an idempotent producer id and epoch.
    InitProducerId = 9, InitProducerIdRequest => InitProducerIdResponse;
    /// Join (or rejoin) a consumer group.
    JoinGroup = 10, JoinGroupRequest => JoinGroupResponse;
    /// Fetch this member's partitions once the group is stable.
    SyncGroup = 11, SyncGroupRequest => SyncGroupResponse;
    Heartbeat = 12, HeartbeatRequest => HeartbeatResponse;
    LeaveGroup = 13, LeaveGroupRequest => LeaveGroupResponse;
    /// Commit offsets (durably) for a group.
    OffsetCommit = 14, OffsetCommitRequest => OffsetCommitResponse;
    OffsetFetch = 15, OffsetFetchRequest => OffsetFetchResponse;
    ListGroups = 16, ListGroupsRequest => ListGroupsResponse;
    DescribeGroup = 17, DescribeGroupRequest => DescribeGroupResponse;
    DeleteGroup = 18, DeleteGroupRequest => DeleteGroupResponse;
    /// This broker's view of the cluster: the metadata group's leader and
    /// term, the brokers and when each was last heard, what this node leads.
    /// Answered from local state, so it answers without a quorum.
    ClusterStatus = 19, ClusterStatusRequest => ClusterStatusResponse;
    /// This broker's own replicas of a topic's partitions: term, leader,
    /// log end and high watermark of each (ask every broker for them all).
    DescribeReplicas = 20, DescribeReplicasRequest => DescribeReplicasResponse;
    /// Which broker coordinates consumer groups (group requests go there).
    FindCoordinator = 21, FindCoordinatorRequest => FindCoordinatorResponse;
    /// Grow a topic to a new total number of partitions (never shrink).
    CreatePartitions = 22, CreatePartitionsRequest => CreatePartitionsResponse;
    /// Hand the partitions this broker leads back to their preferred
    /// (first) replicas where those are caught up (ask every broker).
    BalanceLeaders = 23, BalanceLeadersRequest => BalanceLeadersResponse;
    /// A new node asks to join the cluster (sent to the metadata leader).
    JoinCluster = 24, JoinClusterRequest => JoinClusterResponse;
    /// Move a partition's replicas onto other nodes (answered once the move
    /// is recorded; it completes in the background: watch DescribeTopic).
    ReassignPartition = 25, ReassignPartitionRequest => ReassignPartitionResponse;
    /// Move every replica off a node, then remove it from the cluster
    /// (answered once recorded; watch ClusterStatus for it to go).
    RemoveNode = 26, RemoveNodeRequest => RemoveNodeResponse;
}

macro_rules! no_payload {
    ($($t:ty),*) => { $(impl Payload for $t {})* };
}

no_payload!(
    ApiVersionsRequest,
    ApiVersionsResponse,
    MetadataRequest,
    MetadataResponse,
    CreateTopicRequest,
    CreateTopicResponse,
    DeleteTopicRequest,
    DeleteTopicResponse,
    ListTopicsRequest,
    ListTopicsResponse,
    DescribeTopicRequest,
    DescribeTopicResponse,
    ProduceResponse,
    FetchRequest,
    ListOffsetsRequest,
    ListOffsetsResponse,
    InitProducerIdRequest,
    InitProducerIdResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    SyncGroupRequest,
    SyncGroupResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    DescribeGroupRequest,
    DescribeGroupResponse,
    DeleteGroupRequest,
    DeleteGroupResponse,
    ClusterStatusRequest,
    ClusterStatusResponse,
    DescribeReplicasRequest,
    DescribeReplicasResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    BalanceLeadersRequest,
    BalanceLeadersResponse,
    JoinClusterRequest,
    JoinClusterResponse,
    ReassignPartitionRequest,
    ReassignPartitionResponse,
    RemoveNodeRequest,
    RemoveNodeResponse
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ApiVersionsRequest {
    /// Free-form client name and version, for the broker's logs.
    pub client: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ApiVersionRange {
    pub api_key: u16,
    pub min: u16,
    pub max: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ApiVersionsResponse {
    pub broker_version: String,
    pub apis: Vec<ApiVersionRange>,
}

impl ApiVersionsResponse {
    /// What this build speaks.
    pub fn current(broker_version: &str) -> Self {
        ApiVersionsResponse {
            broker_version: broker_version.to_owned(),
            apis: ApiKey::ALL.iter().map(|k| ApiVersionRange { api_key: *k as u16, min: VERSION_MIN, max: version_max(*k) }).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MetadataRequest {
    /// Topics to describe; `None` means all.
    pub topics: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BrokerInfo {
    pub node_id: u64,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PartitionMetadata {
    pub partition: u32,
    /// Node id of the leader, `None` while there is none.
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    /// The Raft term `leader` leads in (0: unknown, as from a version 1
    /// answer). A client never trades a known leader for one of an older
    /// term: a broker that has not heard of a failover yet names the old one.
    pub leader_term: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TopicMetadata {
    pub name: String,
    pub partitions: Vec<PartitionMetadata>,
    /// The topic's id, never reused (0: unknown, as from a version 1
    /// answer): leader terms compare only within one id, since a topic
    /// deleted and created again starts its terms over.
    pub topic_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MetadataResponse {
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicMetadata>,
}

/// A partition as Metadata version 1 encodes it: (partition, leader, replicas).
type PartitionV1 = (u32, Option<u64>, Vec<u64>);

/// Metadata as version 1 encodes it: partitions without leader terms,
/// topics without ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MetadataResponseV1 {
    brokers: Vec<BrokerInfo>,
    topics: Vec<(String, Vec<PartitionV1>)>,
}

impl Payload for MetadataResponseV1 {}

impl From<&MetadataResponse> for MetadataResponseV1 {
    fn from(m: &MetadataResponse) -> Self {
        let topics = m
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.iter().map(|p| (p.partition, p.leader, p.replicas.clone())).collect()))
            .collect();
        MetadataResponseV1 { brokers: m.brokers.clone(), topics }
    }
}

impl From<MetadataResponseV1> for MetadataResponse {
    fn from(m: MetadataResponseV1) -> Self {
        let topics = m
            .topics
            .into_iter()
            .map(|(name, partitions)| TopicMetadata {
                name,
                topic_id: 0,
                partitions: partitions
                    .into_iter()
                    .map(|(partition, leader, replicas)| PartitionMetadata { partition, leader, replicas, leader_term: 0 })
                    .collect(),
            })
            .collect();
        MetadataResponse { brokers: m.brokers, topics }
    }
}

/// Per-topic settings; `None` takes the broker's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TopicConfig {
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<i64>,
    pub segment_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CreateTopicRequest {
    pub name: String,
    pub partitions: u32,
    pub replicas: u16,
    pub config: TopicConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CreateTopicResponse {
    pub name: String,
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeleteTopicRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeleteTopicResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListTopicsRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub replicas: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListTopicsResponse {
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DescribeTopicRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PartitionDescription {
    pub partition: u32,
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    /// Offsets below this are committed (durable) and readable.
    pub high_watermark: u64,
    pub size_bytes: u64,
    pub segments: u32,
    /// Why the partition is offline (damaged acknowledged data awaiting
    /// `weir accept-loss`); `None` when it serves normally.
    pub offline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DescribeTopicResponse {
    pub name: String,
    pub replicas: u16,
    /// The effective settings, defaults filled in.
    pub config: TopicConfig,
    pub partitions: Vec<PartitionDescription>,
}

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Acks {
    /// Fire and forget: answered once appended, before it is durable.
    None,
    /// Answered once durable on the leader.
    Leader,
    /// Answered once durable on a majority of replicas (a single node: itself).
    #[default]
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProduceRequest {
    pub topic: String,
    pub partition: u32,
    pub acks: Acks,
    pub timeout_ms: u32,
    /// One record batch (weir-core's format), sent as the frame's payload.
    #[serde(skip)]
    #[cfg_attr(test, proptest(strategy = "tests::bytes()"))]
    pub batch: Bytes,
}

impl Payload for ProduceRequest {
    fn payload(&self) -> &[u8] {
        &self.batch
    }
    fn set_payload(&mut self, payload: Bytes) -> bool {
        self.batch = payload;
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProduceResponse {
    pub base_offset: u64,
    /// True when the batch was a retry of one already stored: `base_offset`
    /// is where the original landed and nothing was appended.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub max_bytes: u32,
    /// Wait up to this long for `min_bytes` to be available.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FetchResponse {
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// Where the next fetch should continue.
    pub next_offset: u64,
    /// Whole record batches, sent as the frame's payload. The first may start
    /// before the requested offset; skip records below it.
    #[serde(skip)]
    #[cfg_attr(test, proptest(strategy = "tests::bytes()"))]
    pub batches: Bytes,
}

impl Payload for FetchResponse {
    fn payload(&self) -> &[u8] {
        &self.batches
    }
    fn payload_bytes(&self) -> Bytes {
        self.batches.clone()
    }
    fn set_payload(&mut self, payload: Bytes) -> bool {
        self.batches = payload;
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// First offset whose timestamp (ms) is at or after this.
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListOffsetsRequest {
    pub topic: String,
    pub partition: u32,
    pub spec: OffsetSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListOffsetsResponse {
    /// The offset; for a timestamp after every record, the latest offset.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct InitProducerIdRequest {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct InitProducerIdResponse {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TopicPartitionRef {
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct JoinGroupRequest {
    pub group: String,
    /// `None` (or empty) to join as a new member.
    pub member_id: Option<String>,
    pub client_id: String,
    pub topics: Vec<String>,
    /// Assignors this member supports, preferred first: "range", "roundrobin", "sticky".
    pub assignors: Vec<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct JoinGroupResponse {
    pub member_id: String,
    pub generation: u32,
    pub leader: Option<String>,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SyncGroupRequest {
    pub group: String,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SyncGroupResponse {
    pub generation: u32,
    pub assignor: String,
    pub partitions: Vec<TopicPartitionRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HeartbeatRequest {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HeartbeatResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeaveGroupRequest {
    pub group: String,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeaveGroupResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: u32,
    /// The next offset to consume (one past the last processed record).
    pub offset: u64,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OffsetCommitRequest {
    pub group: String,
    /// The committing member and its generation; `None` only for an empty
    /// group (an administrative reset).
    pub member: Option<(String, u32)>,
    pub offsets: Vec<OffsetToCommit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OffsetCommitResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OffsetFetchRequest {
    pub group: String,
    /// Empty: every partition the group has committed.
    pub partitions: Vec<TopicPartitionRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CommittedOffsetInfo {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
    pub commit_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OffsetFetchResponse {
    /// Only partitions with a committed offset appear.
    pub offsets: Vec<CommittedOffsetInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListGroupsRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GroupSummary {
    pub group: String,
    pub state: String,
    pub members: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListGroupsResponse {
    pub groups: Vec<GroupSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DescribeGroupRequest {
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GroupMemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    pub partitions: Vec<TopicPartitionRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GroupOffsetInfo {
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    /// The partition's high watermark now, for lag.
    pub high_watermark: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DescribeGroupResponse {
    pub group: String,
    pub state: String,
    pub generation: u32,
    pub assignor: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<GroupMemberInfo>,
    pub offsets: Vec<GroupOffsetInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeleteGroupRequest {
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeleteGroupResponse {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClusterStatusRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClusterStatusResponse {
    /// The node answering.
    pub node_id: u64,
    /// False for a single broker (no `initial_members`).
    pub clustered: bool,
    /// The metadata group's leader and term as this node knows them.
    pub metadata_leader: Option<u64>,
    pub term: u64,
    /// This node's role in the metadata group: `leader`, `follower`,
    /// `candidate`, `learner` or `stopped`.
    pub role: String,
    /// Every broker this node knows of.
    pub nodes: Vec<ClusterNode>,
    /// Partitions this node leads, and how many of them have a replica
    /// behind the committed end (under-replicated).
    pub partitions_led: u32,
    pub under_replicated: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClusterNode {
    pub id: u64,
    /// Where clients reach it (empty until it registered).
    pub address: String,
    pub raft_address: String,
    /// Milliseconds since the answering node last heard its heartbeat
    /// (`None`: never, or it is the answering node).
    pub heard_ms_ago: Option<u64>,
    /// The rack it registered with (`None`: none, or a version 1 answer).
    pub rack: Option<String>,
}

/// A node as ClusterStatus version 1 encodes it: (id, address,
/// raft_address, heard_ms_ago), no rack.
type ClusterNodeV1 = (u64, String, String, Option<u64>);

/// ClusterStatus as version 1 encodes it: nodes without racks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClusterStatusResponseV1 {
    node_id: u64,
    clustered: bool,
    metadata_leader: Option<u64>,
    term: u64,
    role: String,
    nodes: Vec<ClusterNodeV1>,
    partitions_led: u32,
    under_replicated: u32,
}

impl Payload for ClusterStatusResponseV1 {}

impl From<&ClusterStatusResponse> for ClusterStatusResponseV1 {
    fn from(c: &ClusterStatusResponse) -> Self {
        ClusterStatusResponseV1 {
            node_id: c.node_id,
            clustered: c.clustered,
            metadata_leader: c.metadata_leader,
            term: c.term,
            role: c.role.clone(),
            nodes: c.nodes.iter().map(|n| (n.id, n.address.clone(), n.raft_address.clone(), n.heard_ms_ago)).collect(),
            partitions_led: c.partitions_led,
            under_replicated: c.under_replicated,
        }
    }
}

impl From<ClusterStatusResponseV1> for ClusterStatusResponse {
    fn from(c: ClusterStatusResponseV1) -> Self {
        ClusterStatusResponse {
            node_id: c.node_id,
            clustered: c.clustered,
            metadata_leader: c.metadata_leader,
            term: c.term,
            role: c.role,
            nodes: c
                .nodes
                .into_iter()
                .map(|(id, address, raft_address, heard_ms_ago)| ClusterNode { id, address, raft_address, heard_ms_ago, rack: None })
                .collect(),
            partitions_led: c.partitions_led,
            under_replicated: c.under_replicated,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DescribeReplicasRequest {
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DescribeReplicasResponse {
    pub node_id: u64,
    /// Only the partitions this node holds a replica of.
    pub replicas: Vec<ReplicaInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReplicaInfo {
    pub partition: u32,
    /// The partition group's term and leader as this replica sees them.
    pub term: u64,
    pub leader: Option<u64>,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    /// The replica's log on disk, in bytes (0 in a version 1 answer): a
    /// moving partition's new replica against its leader is the progress
    /// of the move.
    pub size_bytes: u64,
}

/// A replica as DescribeReplicas version 1 encodes it: (partition, term,
/// leader, log_end_offset, high_watermark), no size.
type ReplicaInfoV1 = (u32, u64, Option<u64>, u64, u64);

/// DescribeReplicas as version 1 encodes it: replicas without sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DescribeReplicasResponseV1 {
    node_id: u64,
    replicas: Vec<ReplicaInfoV1>,
}

impl Payload for DescribeReplicasResponseV1 {}

impl From<&DescribeReplicasResponse> for DescribeReplicasResponseV1 {
    fn from(d: &DescribeReplicasResponse) -> Self {
        let replicas = d.replicas.iter().map(|r| (r.partition, r.term, r.leader, r.log_end_offset, r.high_watermark)).collect();
        DescribeReplicasResponseV1 { node_id: d.node_id, replicas }
    }
}

impl From<DescribeReplicasResponseV1> for DescribeReplicasResponse {
    fn from(d: DescribeReplicasResponseV1) -> Self {
        let replicas = d
            .replicas
            .into_iter()
            .map(|(partition, term, leader, log_end_offset, high_watermark)| ReplicaInfo {
                partition,
                term,
                leader,
                log_end_offset,
                high_watermark,
                size_bytes: 0,
            })
            .collect();
        DescribeReplicasResponse { node_id: d.node_id, replicas }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FindCoordinatorRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FindCoordinatorResponse {
    /// The coordinating node and where clients reach it; `None` while no
    /// node coordinates (an election of the offsets log is under way).
    pub node_id: Option<u64>,
    pub address: Option<String>,
}

/// The topic's new partition count, not how many to add: a retry of a
/// request that took effect is refused (`InvalidPartitions`, the topic
/// already has them) rather than adding them twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CreatePartitionsRequest {
    pub name: String,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CreatePartitionsResponse {
    pub name: String,
    /// The topic's partition count now.
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BalanceLeadersRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BalanceLeadersResponse {
    pub node_id: u64,
    /// Leaderships this broker handed to their preferred replicas.
    pub moved: u32,
    /// Hand-offs that did not complete (this broker leads on).
    pub failed: u32,
}

/// `weir --join`: sent by a node with an empty data directory to the
/// metadata group's leader (others answer `NotLeader`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct JoinClusterRequest {
    /// The id it wants (`--node-id`), or 0 for a fresh one.
    pub node_id: u64,
    pub client_address: String,
    pub raft_address: String,
    /// The random id of its data directory: a retried join gets the same answer.
    pub data_dir_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct JoinClusterResponse {
    /// The id the node is registered under.
    pub node_id: u64,
    /// The cluster's `initial_members` (`ID@HOST:PORT,...`): the layout its
    /// internal logs were placed by.
    pub initial_members: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReassignPartitionRequest {
    pub name: String,
    pub partition: u32,
    /// The replicas to be, the first preferred as leader; as many as the
    /// topic's replication factor.
    pub replicas: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReassignPartitionResponse {
    /// False when the partition is on those replicas already.
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RemoveNodeRequest {
    pub node_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RemoveNodeResponse {
    /// Partitions whose replica on the node started moving (0 when asked again).
    pub moves: u32,
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
