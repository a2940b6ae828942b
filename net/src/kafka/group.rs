//! Kafka's group APIs as Weir reads and answers them: FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! DescribeGroups and ListGroups. Bodies are walked against their schemas
//! ([`super::walk`]) before the crate decodes them; answers are built from
//! plain views, encoded by the crate.

use super::response::{EncodeError, framed};
use super::versions;
use super::walk::{Field, Field::*, walk};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const FIND_COORDINATOR_0: &[Field] = &[Str];
const FIND_COORDINATOR_1: &[Field] = &[Str, Fixed(1), Tagged];

const PROTOCOLS: Field = Array(&[Str, Bytes, Tagged]);
/// JoinGroup: group, session timeout, [rebalance timeout 1+], member,
/// [instance id 5+], protocol type, protocols (name, metadata).
const JOIN_GROUP_0: &[Field] = &[Str, Fixed(4), Str, Str, PROTOCOLS];
const JOIN_GROUP_1: &[Field] = &[Str, Fixed(4), Fixed(4), Str, Str, PROTOCOLS];
const JOIN_GROUP_5: &[Field] = &[Str, Fixed(4), Fixed(4), Str, Str, Str, PROTOCOLS, Tagged];

const ASSIGNMENTS: Field = Array(&[Str, Bytes, Tagged]);
/// SyncGroup: group, generation, member, [instance id 3+], [protocol type
/// and name 5+], assignments (member, bytes).
const SYNC_GROUP_0: &[Field] = &[Str, Fixed(4), Str, ASSIGNMENTS];
const SYNC_GROUP_3: &[Field] = &[Str, Fixed(4), Str, Str, ASSIGNMENTS, Tagged];
const SYNC_GROUP_5: &[Field] = &[Str, Fixed(4), Str, Str, Str, Str, ASSIGNMENTS, Tagged];

const HEARTBEAT_0: &[Field] = &[Str, Fixed(4), Str];
const HEARTBEAT_3: &[Field] = &[Str, Fixed(4), Str, Str, Tagged];

const LEAVE_GROUP_0: &[Field] = &[Str, Str];
const LEAVE_GROUP_3: &[Field] = &[Str, Array(&[Str, Str, Tagged]), Tagged];

/// OffsetCommit: group, generation, member, [instance id 7+], [retention
/// 2-4], topics (name, partitions (index, offset, [leader epoch 6+], metadata)).
const COMMIT_P2: &[Field] = &[Fixed(4), Fixed(8), Str];
const COMMIT_P6: &[Field] = &[Fixed(4), Fixed(8), Fixed(4), Str, Tagged];
const OFFSET_COMMIT_2: &[Field] = &[Str, Fixed(4), Str, Fixed(8), Array(&[Str, Array(COMMIT_P2)])];
const OFFSET_COMMIT_5: &[Field] = &[Str, Fixed(4), Str, Array(&[Str, Array(COMMIT_P2)])];
const OFFSET_COMMIT_6: &[Field] = &[Str, Fixed(4), Str, Array(&[Str, Array(COMMIT_P6), Tagged]), Tagged];
const OFFSET_COMMIT_7: &[Field] = &[Str, Fixed(4), Str, Str, Array(&[Str, Array(COMMIT_P6), Tagged]), Tagged];

/// OffsetFetch: group, topics (name, partition indexes), [require stable 7+].
const OFFSET_FETCH: &[Field] = &[Str, Array(&[Str, Array(&[Fixed(4)]), Tagged]), Tagged];
const OFFSET_FETCH_7: &[Field] = &[Str, Array(&[Str, Array(&[Fixed(4)]), Tagged]), Fixed(1), Tagged];

/// DescribeGroups: groups, [include authorized operations 3+].
const DESCRIBE_GROUPS_0: &[Field] = &[Array(&[Str])];
const DESCRIBE_GROUPS_3: &[Field] = &[Array(&[Str]), Fixed(1), Tagged];
const LIST_GROUPS_4: &[Field] = &[Array(&[Str]), Tagged];

/// Longest group id, member id or instance id taken.
pub const ID_BYTES_MAX: usize = 1024;

/// A group request this broker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    /// `key_type` 0: a group; 1: a transactional id.
    FindCoordinator {
        key: String,
        key_type: i8,
    },
    Join(Join),
    Sync(Sync),
    Heartbeat {
        group: String,
        generation: i32,
        member_id: String,
    },
    /// One member (before version 3) or several.
    Leave {
        group: String,
        members: Vec<String>,
    },
    Commit(Commit),
    /// `topics` `None`: every committed offset of the group.
    OffsetFetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe {
        groups: Vec<String>,
    },
    /// Empty `states`: every group.
    List {
        states: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub group: String,
    pub session_timeout_ms: i32,
    /// Version 0 has none: the session timeout stands in.
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub group: String,
    /// -1 with an empty member id: a commit from outside the group.
    pub generation: i32,
    pub member_id: String,
    /// (topic, its partitions' offsets).
    pub topics: Vec<(String, Vec<CommitOffset>)>,
}

/// (partition, offset, metadata).
pub type CommitOffset = (i32, i64, Option<String>);

/// Whether `key` is one of the group APIs decoded here.
pub fn is_group_api(key: i16) -> bool {
    matches!(
        key,
        versions::FIND_COORDINATOR
            | versions::JOIN_GROUP
            | versions::SYNC_GROUP
            | versions::HEARTBEAT
            | versions::LEAVE_GROUP
            | versions::OFFSET_COMMIT
            | versions::OFFSET_FETCH
            | versions::DESCRIBE_GROUPS
            | versions::LIST_GROUPS
    )
}

fn s(b: &StrBytes) -> String {
    b.to_string()
}

fn too_long(what: &str, v: &str) -> Result<(), String> {
    if v.len() > ID_BYTES_MAX { Err(format!("a {what} of {} bytes: at most {ID_BYTES_MAX} are taken", v.len())) } else { Ok(()) }
}

/// Decodes the body of group API `key` at `version` (the firewall passed it).
pub fn decode(key: i16, version: i16, frame: &mut Bytes) -> Result<GroupRequest, String> {
    let checked = |schema: &[Field], flexible_from: i16| walk(frame, schema, version >= flexible_from);
    let request = match key {
        versions::FIND_COORDINATOR => {
            checked(if version == 0 { FIND_COORDINATOR_0 } else { FIND_COORDINATOR_1 }, 3)?;
            let r = FindCoordinatorRequest::decode(frame, version).map_err(|e| e.to_string())?;
            GroupRequest::FindCoordinator { key: s(&r.key), key_type: r.key_type }
        }
        versions::JOIN_GROUP => {
            checked(
                match version {
                    0 => JOIN_GROUP_0,
                    1..=4 => JOIN_GROUP_1,
                    _ => JOIN_GROUP_5,
                },
                6,
            )?;
            let r = JoinGroupRequest::decode(frame, version).map_err(|e| e.to_string())?;
            let rebalance_timeout_ms = if version == 0 { r.session_timeout_ms } else { r.rebalance_timeout_ms };
            GroupRequest::Join(Join {
                group: r.group_id.0.to_string(),
                session_timeout_ms: r.session_timeout_ms,
                rebalance_timeout_ms,
                member_id: s(&r.member_id),
                instance_id: r.group_instance_id.as_ref().map(s),
                protocol_type: s(&r.protocol_type),
                protocols: r.protocols.into_iter().map(|p| (s(&p.name), p.metadata)).collect(),
            })
        }
        versions::SYNC_GROUP => {
            checked(
                match version {
                    0..=2 => SYNC_GROUP_0,
                    3..=4 => SYNC_GROUP_3,
                    _ => SYNC_GROUP_5,
                },
                4,
            )?;
            let r = SyncGroupRequest::decode(frame, version).map_err(|e| e.to_string())?;
            GroupRequest::Sync(Sync {
                group: r.group_id.0.to_string(),
                generation: r.generation_id,
                member_id: s(&r.member_id),
                protocol_type: r.protocol_type.as_ref().map(s),
                protocol_name: r.protocol_name.as_ref().map(s),
                assignments: r.assignments.into_iter().map(|a| (s(&a.member_id), a.assignment)).collect(),
            })
        }
        versions::HEARTBEAT => {
            checked(if version < 3 { HEARTBEAT_0 } else { HEARTBEAT_3 }, 4)?;
            let r = HeartbeatRequest::decode(frame, version).map_err(|e| e.to_string())?;
            GroupRequest::Heartbeat { group: r.group_id.0.to_string(), generation: r.generation_id, member_id: s(&r.member_id) }
        }
        versions::LEAVE_GROUP => {
            checked(if version < 3 { LEAVE_GROUP_0 } else { LEAVE_GROUP_3 }, 4)?;
            let r = LeaveGroupRequest::decode(frame, version).map_err(|e| e.to_string())?;
            let members = if version < 3 { vec![s(&r.member_id)] } else { r.members.iter().map(|m| s(&m.member_id)).collect() };
            GroupRequest::Leave { group: r.group_id.0.to_string(), members }
        }
        versions::OFFSET_COMMIT => {
            checked(
                match version {
                    2..=4 => OFFSET_COMMIT_2,
                    5 => OFFSET_COMMIT_5,
                    6 => OFFSET_COMMIT_6,
                    _ => OFFSET_COMMIT_7,
                },
                8,
            )?;
            let r = OffsetCommitRequest::decode(frame, version).map_err(|e| e.to_string())?;
            GroupRequest::Commit(Commit {
                group: r.group_id.0.to_string(),
                generation: r.generation_id_or_member_epoch,
                member_id: s(&r.member_id),
                topics: r
                    .topics
                    .into_iter()
                    .map(|t| {
                        let parts = t
                            .partitions
                            .into_iter()
                            .map(|p| (p.partition_index, p.committed_offset, p.committed_metadata.as_ref().map(s)))
                            .collect();
                        (t.name.0.to_string(), parts)
                    })
                    .collect(),
            })
        }
        versions::OFFSET_FETCH => {
            checked(if version >= 7 { OFFSET_FETCH_7 } else { OFFSET_FETCH }, 6)?;
            let r = OffsetFetchRequest::decode(frame, version).map_err(|e| e.to_string())?;
            let topics = r.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            GroupRequest::OffsetFetch { group: r.group_id.0.to_string(), topics }
        }
        versions::DESCRIBE_GROUPS => {
            checked(if version >= 3 { DESCRIBE_GROUPS_3 } else { DESCRIBE_GROUPS_0 }, 5)?;
            let r = DescribeGroupsRequest::decode(frame, version).map_err(|e| e.to_string())?;
            GroupRequest::Describe { groups: r.groups.into_iter().map(|g| g.0.to_string()).collect() }
        }
        versions::LIST_GROUPS => {
            if version >= 4 {
                checked(LIST_GROUPS_4, 3)?;
            }
            let r = ListGroupsRequest::decode(frame, version).map_err(|e| e.to_string())?;
            GroupRequest::List { states: r.states_filter.iter().map(s).collect() }
        }
        _ => return Err(format!("API {key} is not a group API")),
    };
    match &request {
        GroupRequest::Join(j) => {
            too_long("group id", &j.group)?;
            too_long("member id", &j.member_id)?;
        }
        GroupRequest::Sync(x) => {
            too_long("group id", &x.group)?;
            too_long("member id", &x.member_id)?;
        }
        GroupRequest::Heartbeat { group, member_id, .. } => {
            too_long("group id", group)?;
            too_long("member id", member_id)?;
        }
        GroupRequest::Commit(c) => too_long("group id", &c.group)?,
        GroupRequest::OffsetFetch { group, .. } => too_long("group id", group)?,
        _ => {}
    }
    Ok(request)
}

/// What a member of a `consumer` group sends as its metadata: topics,
/// user data, [owned partitions 1+], [generation 2+], [rack 3+].
const SUBSCRIPTION_0: &[Field] = &[Array(&[Str]), Bytes];
const SUBSCRIPTION_1: &[Field] = &[Array(&[Str]), Bytes, Array(&[Str, Array(&[Fixed(4)])])];
const SUBSCRIPTION_2: &[Field] = &[Array(&[Str]), Bytes, Array(&[Str, Array(&[Fixed(4)])]), Fixed(4)];
const SUBSCRIPTION_3: &[Field] = &[Array(&[Str]), Bytes, Array(&[Str, Array(&[Fixed(4)])]), Fixed(4), Str];
/// What a `consumer` group's leader assigns a member: partitions, user data.
const ASSIGNMENT: &[Field] = &[Array(&[Str, Array(&[Fixed(4)])]), Bytes];

/// The version at the front of Kafka's consumer protocol bytes (a newer
/// one reads as the newest known, as Kafka's clients read it).
fn consumer_protocol_version(b: &mut Bytes, newest: i16) -> Option<i16> {
    if b.len() < 2 {
        return None;
    }
    let v = i16::from_be_bytes([b[0], b[1]]);
    *b = b.slice(2..);
    (v >= 0).then_some(v.min(newest))
}

/// The topics a `consumer` group member subscribes to, from its metadata
/// (`None`: not Kafka's consumer protocol).
pub fn consumer_topics(metadata: &[u8]) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    let mut b = Bytes::copy_from_slice(metadata);
    let v = consumer_protocol_version(&mut b, 3)?;
    walk(&b, [SUBSCRIPTION_0, SUBSCRIPTION_1, SUBSCRIPTION_2, SUBSCRIPTION_3][v as usize], false).ok()?;
    let s = ConsumerProtocolSubscription::decode(&mut b, v).ok()?;
    Some(s.topics.iter().map(|t| t.to_string()).collect())
}

/// The partitions a `consumer` group's leader assigned a member, by topic
/// (`None`: not Kafka's consumer protocol).
pub fn consumer_assignment(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    let mut b = Bytes::copy_from_slice(assignment);
    let v = consumer_protocol_version(&mut b, 3)?;
    walk(&b, ASSIGNMENT, false).ok()?;
    let a = ConsumerProtocolAssignment::decode(&mut b, v).ok()?;
    Some(a.assigned_partitions.into_iter().map(|tp| (tp.topic.0.to_string(), tp.partitions)).collect())
}

/// Kafka's group error codes.
pub mod code {
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
}

/// Where FindCoordinator points (`node_id` -1 with an error: nobody now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorView {
    pub error: i16,
    pub message: Option<String>,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

fn sb(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

pub fn find_coordinator(correlation_id: i32, version: i16, v: &CoordinatorView) -> Result<BytesMut, EncodeError> {
    let mut body = FindCoordinatorResponse::default()
        .with_error_code(v.error)
        .with_node_id(BrokerId(v.node_id))
        .with_host(sb(&v.host))
        .with_port(v.port);
    if version >= 1 {
        body = body.with_error_message(v.message.as_deref().map(sb));
    }
    framed(correlation_id, ApiKey::FindCoordinator.response_header_version(version), |out| body.encode(out, version))
}

/// A join's answer (`members` for the leader only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinView {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<(String, Vec<u8>)>,
}

pub fn join_group(correlation_id: i32, version: i16, v: &JoinView) -> Result<BytesMut, EncodeError> {
    let members = v
        .members
        .iter()
        .map(|(id, metadata)| JoinGroupResponseMember::default().with_member_id(sb(id)).with_metadata(Bytes::copy_from_slice(metadata)))
        .collect();
    let mut body = JoinGroupResponse::default()
        .with_error_code(v.error)
        .with_generation_id(v.generation)
        .with_protocol_name(Some(sb(&v.protocol)))
        .with_leader(sb(&v.leader))
        .with_member_id(sb(&v.member_id))
        .with_members(members);
    if version >= 7 {
        body = body.with_protocol_type(Some(sb(&v.protocol_type)));
    }
    framed(correlation_id, ApiKey::JoinGroup.response_header_version(version), |out| body.encode(out, version))
}

pub fn sync_group(
    correlation_id: i32,
    version: i16,
    error: i16,
    protocol: Option<(&str, &str)>,
    assignment: &[u8],
) -> Result<BytesMut, EncodeError> {
    let mut body = SyncGroupResponse::default().with_error_code(error).with_assignment(Bytes::copy_from_slice(assignment));
    if version >= 5
        && let Some((t, n)) = protocol
    {
        body = body.with_protocol_type(Some(sb(t))).with_protocol_name(Some(sb(n)));
    }
    framed(correlation_id, ApiKey::SyncGroup.response_header_version(version), |out| body.encode(out, version))
}

pub fn heartbeat(correlation_id: i32, version: i16, error: i16) -> Result<BytesMut, EncodeError> {
    let body = HeartbeatResponse::default().with_error_code(error);
    framed(correlation_id, ApiKey::Heartbeat.response_header_version(version), |out| body.encode(out, version))
}

/// `members`: each leaver's result (version 3+ lists them).
pub fn leave_group(correlation_id: i32, version: i16, error: i16, members: &[(String, i16)]) -> Result<BytesMut, EncodeError> {
    let mut body = LeaveGroupResponse::default().with_error_code(error);
    if version >= 3 {
        body =
            body.with_members(members.iter().map(|(id, e)| MemberResponse::default().with_member_id(sb(id)).with_error_code(*e)).collect());
    }
    framed(correlation_id, ApiKey::LeaveGroup.response_header_version(version), |out| body.encode(out, version))
}

/// Per topic, each partition's error.
pub fn offset_commit(correlation_id: i32, version: i16, results: &[(String, Vec<(i32, i16)>)]) -> Result<BytesMut, EncodeError> {
    let topics = results
        .iter()
        .map(|(name, parts)| {
            OffsetCommitResponseTopic::default().with_name(TopicName(sb(name))).with_partitions(
                parts.iter().map(|(i, e)| OffsetCommitResponsePartition::default().with_partition_index(*i).with_error_code(*e)).collect(),
            )
        })
        .collect();
    let body = OffsetCommitResponse::default().with_topics(topics);
    framed(correlation_id, ApiKey::OffsetCommit.response_header_version(version), |out| body.encode(out, version))
}

/// A committed offset as OffsetFetch answers it (-1: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub metadata: String,
    pub error: i16,
}

/// `error` is the request's (version 2+ carry it; before, every partition does).
pub fn offset_fetch(
    correlation_id: i32,
    version: i16,
    error: i16,
    topics: &[(String, Vec<FetchedOffset>)],
) -> Result<BytesMut, EncodeError> {
    let topics = topics
        .iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(sb(name))).with_partitions(
                parts
                    .iter()
                    .map(|p| {
                        let mut r = OffsetFetchResponsePartition::default()
                            .with_partition_index(p.partition)
                            .with_committed_offset(p.offset)
                            .with_metadata(Some(sb(&p.metadata)))
                            .with_error_code(if version < 2 && error != 0 { error } else { p.error });
                        if version >= 5 {
                            r = r.with_committed_leader_epoch(-1);
                        }
                        r
                    })
                    .collect(),
            )
        })
        .collect();
    let mut body = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        body = body.with_error_code(error);
    }
    framed(correlation_id, ApiKey::OffsetFetch.response_header_version(version), |out| body.encode(out, version))
}

/// A member as DescribeGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// A group as DescribeGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub error: i16,
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

pub fn describe_groups(correlation_id: i32, version: i16, groups: &[GroupView]) -> Result<BytesMut, EncodeError> {
    let groups = groups
        .iter()
        .map(|g| {
            let members = g
                .members
                .iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(sb(&m.member_id))
                        .with_client_id(sb(&m.client_id))
                        .with_client_host(sb(&m.client_host))
                        .with_member_metadata(Bytes::copy_from_slice(&m.metadata))
                        .with_member_assignment(Bytes::copy_from_slice(&m.assignment))
                })
                .collect();
            let mut d = DescribedGroup::default()
                .with_error_code(g.error)
                .with_group_id(GroupId(sb(&g.group)))
                .with_group_state(sb(&g.state))
                .with_protocol_type(sb(&g.protocol_type))
                .with_protocol_data(sb(&g.protocol))
                .with_members(members);
            if version >= 3 {
                d = d.with_authorized_operations(i32::MIN);
            }
            d
        })
        .collect();
    let body = DescribeGroupsResponse::default().with_groups(groups);
    framed(correlation_id, ApiKey::DescribeGroups.response_header_version(version), |out| body.encode(out, version))
}

/// `groups`: (id, protocol type, state).
pub fn list_groups(correlation_id: i32, version: i16, error: i16, groups: &[(String, String, String)]) -> Result<BytesMut, EncodeError> {
    let groups = groups
        .iter()
        .map(|(id, protocol_type, state)| {
            let mut l = ListedGroup::default().with_group_id(GroupId(sb(id))).with_protocol_type(sb(protocol_type));
            if version >= 4 {
                l = l.with_group_state(sb(state));
            }
            l
        })
        .collect();
    let body = ListGroupsResponse::default().with_error_code(error).with_groups(groups);
    framed(correlation_id, ApiKey::ListGroups.response_header_version(version), |out| body.encode(out, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn string(b: &mut Vec<u8>, v: &str) {
        b.put_i16(v.len() as i16);
        b.put_slice(v.as_bytes());
    }

    #[test]
    fn a_join_at_version_0_and_5_reads_its_protocols() {
        let mut v0 = Vec::new();
        string(&mut v0, "g");
        v0.put_i32(10_000);
        string(&mut v0, "");
        string(&mut v0, "consumer");
        v0.put_i32(1);
        string(&mut v0, "range");
        v0.put_i32(2);
        v0.put_slice(b"md");
        let r = decode(versions::JOIN_GROUP, 0, &mut Bytes::from(v0)).unwrap();
        let GroupRequest::Join(j) = r else { panic!("{r:?}") };
        assert_eq!((j.rebalance_timeout_ms, j.protocols), (10_000, vec![("range".into(), Bytes::from_static(b"md"))]));
        let mut v5 = Vec::new();
        string(&mut v5, "g");
        v5.put_i32(10_000);
        v5.put_i32(300_000);
        string(&mut v5, "m-1");
        v5.put_i16(-1); // no instance id
        string(&mut v5, "consumer");
        v5.put_i32(0);
        let GroupRequest::Join(j) = decode(versions::JOIN_GROUP, 5, &mut Bytes::from(v5)).unwrap() else { panic!() };
        assert_eq!((j.rebalance_timeout_ms, j.member_id.as_str(), j.instance_id), (300_000, "m-1", None));
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_before_decoding() {
        let mut sync = Vec::new();
        string(&mut sync, "g");
        sync.put_i32(1);
        string(&mut sync, "m");
        sync.put_i32(i32::MAX); // assignments
        assert!(decode(versions::SYNC_GROUP, 0, &mut Bytes::from(sync)).unwrap_err().contains("entries"));
        let mut commit = Vec::new();
        string(&mut commit, "g");
        commit.put_i32(-1);
        string(&mut commit, "");
        commit.put_i64(-1);
        commit.put_i32(1);
        string(&mut commit, "t");
        commit.put_i32(1_000_000); // partitions
        assert!(decode(versions::OFFSET_COMMIT, 2, &mut Bytes::from(commit)).is_err());
        let mut long = Vec::new();
        string(&mut long, &"g".repeat(ID_BYTES_MAX + 1));
        long.put_i32(1);
        string(&mut long, "m");
        assert!(decode(versions::HEARTBEAT, 0, &mut Bytes::from(long)).unwrap_err().contains("group id"));
        let mut negative = Vec::new();
        negative.put_i16(-7);
        assert!(decode(versions::FIND_COORDINATOR, 0, &mut Bytes::from(negative)).is_err());
    }

    #[test]
    fn answers_encode_at_every_version_answered() {
        let join = JoinView { generation: 1, protocol: "range".into(), members: vec![("m".into(), vec![1])], ..JoinView::default() };
        let group = GroupView {
            error: 0,
            group: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![MemberView {
                member_id: "m".into(),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                metadata: vec![],
                assignment: vec![],
            }],
        };
        let coordinator = CoordinatorView { error: 0, message: None, node_id: 1, host: "localhost".into(), port: 9092 };
        let fetched = vec![("t".to_owned(), vec![FetchedOffset { partition: 0, offset: -1, metadata: String::new(), error: 0 }])];
        for key in [
            versions::FIND_COORDINATOR,
            versions::JOIN_GROUP,
            versions::SYNC_GROUP,
            versions::HEARTBEAT,
            versions::LEAVE_GROUP,
            versions::OFFSET_COMMIT,
            versions::OFFSET_FETCH,
            versions::DESCRIBE_GROUPS,
            versions::LIST_GROUPS,
        ] {
            let r = versions::answered(key).expect("answered");
            for v in r.min..=r.max {
                let out = match key {
                    versions::FIND_COORDINATOR => find_coordinator(1, v, &coordinator),
                    versions::JOIN_GROUP => join_group(1, v, &join),
                    versions::SYNC_GROUP => sync_group(1, v, 0, Some(("consumer", "range")), b"a"),
                    versions::HEARTBEAT => heartbeat(1, v, 0),
                    versions::LEAVE_GROUP => leave_group(1, v, 0, &[("m".into(), 0)]),
                    versions::OFFSET_COMMIT => offset_commit(1, v, &[("t".into(), vec![(0, 0)])]),
                    versions::OFFSET_FETCH => offset_fetch(1, v, 0, &fetched),
                    versions::DESCRIBE_GROUPS => describe_groups(1, v, std::slice::from_ref(&group)),
                    _ => list_groups(1, v, 0, &[("g".into(), "consumer".into(), "Stable".into())]),
                };
                let out = out.unwrap_or_else(|e| panic!("{} v{v}: {e}", versions::name(key)));
                assert_eq!(i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize, out.len() - 4);
            }
        }
    }

    /// What Kafka's clients send, as the crate encodes it at every version
    /// answered, walks and decodes to what was sent.
    #[test]
    fn requests_the_crate_encodes_at_every_version_decode() {
        use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
        use kafka_protocol::messages::leave_group_request::MemberIdentity;
        use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
        let g = || GroupId(sb("g"));
        for key in [8i16, 9, 10, 11, 12, 13, 14, 15, 16] {
            let r = versions::answered(key).unwrap();
            for v in r.min..=r.max {
                let mut b = BytesMut::new();
                let encoded = match key {
                    versions::FIND_COORDINATOR => FindCoordinatorRequest::default().with_key(sb("g")).encode(&mut b, v),
                    versions::JOIN_GROUP => JoinGroupRequest::default()
                        .with_group_id(g())
                        .with_session_timeout_ms(6000)
                        .with_rebalance_timeout_ms(9000)
                        .with_protocol_type(sb("consumer"))
                        .with_protocols(vec![
                            JoinGroupRequestProtocol::default().with_name(sb("range")).with_metadata(Bytes::from_static(b"m")),
                        ])
                        .encode(&mut b, v),
                    versions::SYNC_GROUP => SyncGroupRequest::default()
                        .with_group_id(g())
                        .with_generation_id(3)
                        .with_member_id(sb("m"))
                        .with_protocol_type(if v >= 5 { Some(sb("consumer")) } else { None })
                        .with_protocol_name(if v >= 5 { Some(sb("range")) } else { None })
                        .with_assignments(vec![
                            SyncGroupRequestAssignment::default().with_member_id(sb("m")).with_assignment(Bytes::from_static(b"a")),
                        ])
                        .encode(&mut b, v),
                    versions::HEARTBEAT => {
                        HeartbeatRequest::default().with_group_id(g()).with_generation_id(3).with_member_id(sb("m")).encode(&mut b, v)
                    }
                    versions::LEAVE_GROUP if v < 3 => {
                        LeaveGroupRequest::default().with_group_id(g()).with_member_id(sb("m")).encode(&mut b, v)
                    }
                    versions::LEAVE_GROUP => LeaveGroupRequest::default()
                        .with_group_id(g())
                        .with_members(vec![MemberIdentity::default().with_member_id(sb("m"))])
                        .encode(&mut b, v),
                    versions::OFFSET_COMMIT => OffsetCommitRequest::default()
                        .with_group_id(g())
                        .with_generation_id_or_member_epoch(3)
                        .with_member_id(sb("m"))
                        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(sb("t"))).with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(1)
                                    .with_committed_offset(7)
                                    .with_committed_metadata(Some(sb("x"))),
                            ])])
                        .encode(&mut b, v),
                    versions::OFFSET_FETCH => OffsetFetchRequest::default()
                        .with_group_id(g())
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopic::default().with_name(TopicName(sb("t"))).with_partition_indexes(vec![1, 2]),
                        ]))
                        .with_require_stable(v >= 7)
                        .encode(&mut b, v),
                    versions::DESCRIBE_GROUPS => {
                        DescribeGroupsRequest::default().with_groups(vec![g()]).with_include_authorized_operations(v >= 3).encode(&mut b, v)
                    }
                    _ => {
                        ListGroupsRequest::default().with_states_filter(if v >= 4 { vec![sb("Stable")] } else { vec![] }).encode(&mut b, v)
                    }
                };
                encoded.unwrap_or_else(|e| panic!("{} v{v}: {e}", versions::name(key)));
                let got = decode(key, v, &mut b.freeze()).unwrap_or_else(|e| panic!("{} v{v}: {e}", versions::name(key)));
                let ok = match &got {
                    GroupRequest::FindCoordinator { key, key_type } => key == "g" && *key_type == 0,
                    GroupRequest::Join(j) => j.group == "g" && j.protocols.len() == 1 && j.session_timeout_ms == 6000,
                    GroupRequest::Sync(s) => s.generation == 3 && s.assignments.len() == 1,
                    GroupRequest::Heartbeat { generation, member_id, .. } => *generation == 3 && member_id == "m",
                    GroupRequest::Leave { members, .. } => members == &["m"],
                    GroupRequest::Commit(c) => c.topics == vec![("t".to_owned(), vec![(1, 7, Some("x".to_owned()))])],
                    GroupRequest::OffsetFetch { topics, .. } => topics == &Some(vec![("t".to_owned(), vec![1, 2])]),
                    GroupRequest::Describe { groups } => groups == &["g"],
                    GroupRequest::List { states } => states.len() == usize::from(v >= 4),
                };
                assert!(ok, "{} v{v}: {got:?}", versions::name(key));
            }
        }
    }

    #[test]
    fn consumer_protocol_metadata_and_assignments_are_read_for_describe() {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as Assigned;
        use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
        for v in 0..=3i16 {
            let mut b = BytesMut::new();
            b.extend_from_slice(&v.to_be_bytes());
            ConsumerProtocolSubscription::default().with_topics(vec![sb("a"), sb("b")]).encode(&mut b, v).unwrap();
            assert_eq!(consumer_topics(&b), Some(vec!["a".to_owned(), "b".to_owned()]), "v{v}");
            let mut b = BytesMut::new();
            b.extend_from_slice(&v.to_be_bytes());
            let tp = Assigned::default().with_topic(TopicName(sb("a"))).with_partitions(vec![0, 2]);
            ConsumerProtocolAssignment::default().with_assigned_partitions(vec![tp]).encode(&mut b, v).unwrap();
            assert_eq!(consumer_assignment(&b), Some(vec![("a".to_owned(), vec![0, 2])]), "v{v}");
        }
        assert_eq!(consumer_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None, "a count the bytes cannot hold");
        assert_eq!(consumer_assignment(&[0xff, 0xff]), None);
        assert_eq!(consumer_assignment(b""), None);
    }

    proptest::proptest! {
        #[test]
        fn consumer_protocol_bytes_read_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = consumer_topics(&bytes);
            let _ = consumer_assignment(&bytes);
        }

        #[test]
        fn any_body_decodes_or_is_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96), k in 0usize..9, version in 0i16..9) {
            // Only answered versions get here: the firewall refuses the rest.
            let keys = [8, 9, 10, 11, 12, 13, 14, 15, 16];
            let r = versions::answered(keys[k]).unwrap();
            let version = r.min + version % (r.max - r.min + 1);
            let _ = decode(keys[k], version, &mut Bytes::from(bytes));
        }
    }
}
