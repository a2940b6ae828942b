//! Kafka's group APIs on the broker: its client-assigned groups run on the
//! same coordinator and offsets log as native groups (core's
//! `group::client_assigned` keeps the rules). A JoinGroup is held until
//! its generation forms and a SyncGroup until the leader's assignment
//! arrives; while held, the member is kept alive, and the wait ends when
//! the connection closes.

use crate::broker::Broker;
use crate::broker::groups::state_name;
use bytes::BytesMut;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weir_core::group::client_assigned::Joined;
use weir_core::group::{GroupError, JoinParams, Protocol, TopicPartition};
use weir_net::kafka::code;
use weir_net::kafka::group::{self as wire, CoordinatorView, FetchedOffset, GroupRequest, GroupView, JoinView, MemberView, code as gcode};
use weir_net::kafka::request::Header;
use weir_net::kafka::response::EncodeError;
use weir_net::{ErrorCode, WireError};

/// How often a held request re-checks at the least (it is woken on every
/// change to a group, so this only bounds a missed one).
const HELD_POLL: Duration = Duration::from_secs(1);
/// Longest rebalance timeout taken (Kafka's clients send 300 s by default).
const REBALANCE_TIMEOUT_MAX_MS: u32 = 30 * 60 * 1000;
/// Longest metadata kept with a committed offset (Kafka's default bound).
const COMMIT_METADATA_BYTES_MAX: usize = 4096;
/// Offsets one commit may carry.
const OFFSETS_PER_COMMIT_MAX: usize = 10_000;
/// The protocol type native groups are listed under.
const NATIVE_PROTOCOL_TYPE: &str = "weir";

/// The Kafka code for a group call the coordinator refused.
fn group_code(e: &GroupError) -> i16 {
    match e {
        GroupError::UnknownGroup(_) | GroupError::UnknownMember(_) => gcode::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration { .. } => gcode::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => gcode::REBALANCE_IN_PROGRESS,
        GroupError::InvalidSessionTimeout { .. } => gcode::INVALID_SESSION_TIMEOUT,
        GroupError::InconsistentAssignors { .. } | GroupError::InconsistentProtocol(_) => gcode::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::NotEmpty(_) => gcode::NON_EMPTY_GROUP,
        GroupError::Invalid(_) => code::INVALID_REQUEST,
        GroupError::UnknownPartition { .. } => code::UNKNOWN_TOPIC_OR_PARTITION,
        GroupError::ChangePending(_) => gcode::COORDINATOR_LOAD_IN_PROGRESS,
        GroupError::GroupFull { .. } => gcode::GROUP_MAX_SIZE_REACHED,
        GroupError::TooManyGroups { .. } => code::INVALID_REQUEST,
    }
}

/// The Kafka code for a broker-side failure of a group call (retriable:
/// the client finds the coordinator again).
fn wire_code(e: &WireError) -> i16 {
    match e.code() {
        ErrorCode::NotCoordinator => gcode::NOT_COORDINATOR,
        _ => {
            tracing::warn!(error = %e.message, "a Kafka group call failed on the broker");
            gcode::COORDINATOR_NOT_AVAILABLE
        }
    }
}

/// Why a held request stops waiting.
enum Held<T> {
    Done(T),
    Refused(i16),
}

/// Runs `check` on the coordinator until it answers, waking on every
/// change and every [`HELD_POLL`]; gives up when `gone` turns true (the
/// connection is closing) or after `deadline`.
async fn hold<T>(
    broker: &Broker,
    gone: &mut watch::Receiver<bool>,
    deadline: Duration,
    mut check: impl FnMut(&mut weir_core::group::GroupCoordinator, weir_core::Now) -> Result<Option<T>, GroupError>,
) -> Held<T> {
    let until = tokio::time::Instant::now() + deadline;
    let mut first = true;
    loop {
        let groups = broker.groups();
        let changed = groups.changed();
        // Only the first check can change what others wait for (a leader's sync).
        let checked = if first { groups.with_coordinator(&mut check) } else { groups.inspect_coordinator(&mut check) };
        first = false;
        match checked {
            Err(e) => return Held::Refused(wire_code(&e)),
            Ok(Err(e)) => return Held::Refused(group_code(&e)),
            Ok(Ok(Some(v))) => return Held::Done(v),
            Ok(Ok(None)) => {}
        }
        if *gone.borrow() || tokio::time::Instant::now() >= until {
            return Held::Refused(gcode::REBALANCE_IN_PROGRESS);
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(HELD_POLL) => {}
            _ = gone.changed() => {}
        }
    }
}

/// Answers one group request.
pub(super) async fn answer(
    broker: &Arc<Broker>,
    h: &Header,
    request: GroupRequest,
    peer: SocketAddr,
    mut gone: watch::Receiver<bool>,
) -> Result<BytesMut, EncodeError> {
    let (id, v) = (h.correlation_id, h.api_version);
    match request {
        GroupRequest::FindCoordinator { key, key_type } => wire::find_coordinator(id, v, &find_coordinator(broker, &key, key_type).await),
        GroupRequest::Join(j) => wire::join_group(id, v, &join(broker, h, j, peer, &mut gone).await),
        GroupRequest::Sync(s) => {
            let (error, protocol, assignment) = sync(broker, s, &mut gone).await;
            wire::sync_group(id, v, error, protocol.as_ref().map(|(t, n)| (t.as_str(), n.as_str())), &assignment)
        }
        GroupRequest::Heartbeat { group, generation, member_id } => {
            let error = match u32::try_from(generation) {
                Err(_) => gcode::ILLEGAL_GENERATION,
                Ok(generation) => match broker.groups().with_coordinator(|c, now| c.heartbeat(&group, &member_id, generation, now)) {
                    Err(e) => wire_code(&e),
                    Ok(Err(e)) => group_code(&e),
                    Ok(Ok(())) => code::NONE,
                },
            };
            wire::heartbeat(id, v, error)
        }
        GroupRequest::Leave { group, members } => {
            let results: Vec<(String, i16)> = members
                .into_iter()
                .map(|m| {
                    let error = match broker.groups().with_coordinator(|c, now| c.leave(&group, &m, now)) {
                        Err(e) => wire_code(&e),
                        Ok(Err(e)) => group_code(&e),
                        Ok(Ok(())) => code::NONE,
                    };
                    (m, error)
                })
                .collect();
            // Before version 3 one member leaves, and its error is the answer's.
            let top = if v < 3 { results.first().map_or(code::NONE, |r| r.1) } else { code::NONE };
            wire::leave_group(id, v, top, &results)
        }
        GroupRequest::Commit(c) => wire::offset_commit(id, v, &commit(broker, c).await),
        GroupRequest::OffsetFetch { group, topics } => {
            let (error, topics) = offset_fetch(broker, &group, topics);
            wire::offset_fetch(id, v, error, &topics)
        }
        GroupRequest::Describe { groups } => wire::describe_groups(id, v, &describe(broker, groups)),
        GroupRequest::List { states } => {
            let (error, groups) = list(broker, &states);
            wire::list_groups(id, v, error, &groups)
        }
    }
}

async fn find_coordinator(broker: &Arc<Broker>, key: &str, key_type: i8) -> CoordinatorView {
    let refuse = |error, message: String| CoordinatorView { error, message: Some(message), node_id: -1, host: String::new(), port: -1 };
    if key_type != 0 {
        return refuse(
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            format!("transactions are not supported by Weir (transactional id {key:?}): use a producer without transactional.id"),
        );
    }
    match broker.handle(weir_net::Request::FindCoordinator(weir_net::message::FindCoordinatorRequest {})).await {
        Ok(weir_net::Response::FindCoordinator(r)) => {
            let hostport = r.address.as_deref().and_then(|a| a.rsplit_once(':')).and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)));
            match (r.node_id, hostport) {
                (Some(n), Some((host, port))) => {
                    CoordinatorView { error: code::NONE, message: None, node_id: super::admin::node(n), host, port }
                }
                _ => refuse(gcode::COORDINATOR_NOT_AVAILABLE, "no broker coordinates consumer groups right now: retry shortly".into()),
            }
        }
        Ok(_) => refuse(gcode::COORDINATOR_NOT_AVAILABLE, "the broker answered FindCoordinator with another response".into()),
        Err(e) => refuse(gcode::COORDINATOR_NOT_AVAILABLE, e.message),
    }
}

async fn join(broker: &Arc<Broker>, h: &Header, j: wire::Join, peer: SocketAddr, gone: &mut watch::Receiver<bool>) -> JoinView {
    let refuse = |error, member_id: &str| JoinView { error, generation: -1, member_id: member_id.to_owned(), ..JoinView::default() };
    if j.group.is_empty() {
        return refuse(gcode::INVALID_GROUP_ID, &j.member_id);
    }
    if j.instance_id.is_some() {
        // Static membership is not kept: the member joins as a dynamic one.
        tracing::debug!(group = %j.group, "a Kafka member sent a group.instance.id: joined as a dynamic member");
    }
    let session = u32::try_from(j.session_timeout_ms).unwrap_or(0);
    let rebalance = u32::try_from(j.rebalance_timeout_ms).unwrap_or(session).clamp(session, REBALANCE_TIMEOUT_MAX_MS.max(session));
    let params = JoinParams {
        member_id: Some(j.member_id.clone()).filter(|m| !m.is_empty()),
        client_id: h.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        protocol: Protocol::ClientAssigned {
            protocol_type: j.protocol_type,
            protocols: j.protocols.into_iter().map(|(n, b)| (n, b.to_vec())).collect(),
        },
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
    };
    let group = j.group;
    let joined = match broker.groups().with_coordinator(|c, now| c.join(&group, params, now)) {
        Err(e) => return refuse(wire_code(&e), &j.member_id),
        Ok(Err(e)) => return refuse(group_code(&e), &j.member_id),
        Ok(Ok(r)) => r,
    };
    let member = joined.member_id;
    // The coordinator forms the generation by the rebalance deadline.
    let wait = Duration::from_millis(u64::from(rebalance)) + Duration::from_secs(5);
    let result = hold(broker, gone, wait, |c, now| {
        c.touch(&group, &member, now);
        c.joined(&group, &member, joined.generation)
    })
    .await;
    match result {
        Held::Done(Joined { generation, protocol_type, protocol, leader, members }) => JoinView {
            error: code::NONE,
            generation: i32::try_from(generation).unwrap_or(i32::MAX),
            protocol_type,
            protocol,
            leader,
            member_id: member,
            members,
        },
        Held::Refused(error) => refuse(error, &member),
    }
}

/// The sync's error, the group's protocol (type, name), and the member's assignment.
async fn sync(broker: &Arc<Broker>, s: wire::Sync, gone: &mut watch::Receiver<bool>) -> (i16, Option<(String, String)>, Vec<u8>) {
    let Ok(generation) = u32::try_from(s.generation) else { return (gcode::ILLEGAL_GENERATION, None, Vec::new()) };
    let (group, member) = (s.group, s.member_id);
    let mut assignments = Some(s.assignments.into_iter().map(|(m, b)| (m, b.to_vec())).collect::<Vec<_>>());
    let mut protocol = None;
    let held = hold(broker, gone, Duration::from_secs(300), |c, now| {
        c.touch(&group, &member, now);
        if let Some(g) = c.group(&group) {
            protocol = g.protocol_type.clone().zip(g.protocol.clone());
        }
        if let (Some((t, n)), Some(want_t), Some(want_n)) = (&protocol, &s.protocol_type, &s.protocol_name)
            && (t != want_t || n != want_n)
        {
            return Err(GroupError::InconsistentProtocol(format!("the group runs {t}/{n}, not {want_t}/{want_n}")));
        }
        // Only the first call carries the leader's assignment.
        c.sync_client_assigned(&group, &member, generation, assignments.take().unwrap_or_default(), now)
    })
    .await;
    match held {
        Held::Done(assignment) => (code::NONE, protocol, assignment),
        Held::Refused(error) => (error, protocol, Vec::new()),
    }
}

/// Each topic's partitions' errors.
async fn commit(broker: &Arc<Broker>, c: wire::Commit) -> Vec<(String, Vec<(i32, i16)>)> {
    let groups = broker.groups();
    let member = match (c.generation, c.member_id.is_empty()) {
        (-1, true) => Ok(None),
        (g, _) => u32::try_from(g).map(|g| Some((c.member_id.clone(), g))).map_err(|_| gcode::ILLEGAL_GENERATION),
    };
    let total: usize = c.topics.iter().map(|(_, ps)| ps.len()).sum();
    // Each partition's own error, or `None` while it is to be committed.
    type Outcomes = Vec<(i32, Option<i16>)>;
    let mut results: Vec<(String, Outcomes)> = Vec::with_capacity(c.topics.len());
    let mut offsets = Vec::new();
    let known = groups.with_coordinator(|coord, _| {
        c.topics
            .iter()
            .map(|(t, ps)| ps.iter().map(|(p, _, _)| u32::try_from(*p).is_ok_and(|p| coord.knows_partition(t, p))).collect::<Vec<bool>>())
            .collect::<Vec<_>>()
    });
    let refused_all = match (&member, &known) {
        (Err(e), _) => Some(*e),
        (_, Err(e)) => Some(wire_code(e)),
        _ if c.group.is_empty() => Some(gcode::INVALID_GROUP_ID),
        _ if total > OFFSETS_PER_COMMIT_MAX => Some(code::INVALID_REQUEST),
        _ => None,
    };
    let known = known.unwrap_or_default();
    for (ti, (topic, parts)) in c.topics.into_iter().enumerate() {
        let mut out = Vec::with_capacity(parts.len());
        for (pi, (partition, offset, metadata)) in parts.into_iter().enumerate() {
            let metadata = metadata.unwrap_or_default();
            let error = if let Some(e) = refused_all {
                Some(e)
            } else if !known.get(ti).and_then(|k| k.get(pi)).copied().unwrap_or(false) {
                Some(code::UNKNOWN_TOPIC_OR_PARTITION)
            } else if metadata.len() > COMMIT_METADATA_BYTES_MAX {
                Some(gcode::OFFSET_METADATA_TOO_LARGE)
            } else if offset < 0 {
                Some(gcode::INVALID_COMMIT_OFFSET_SIZE)
            } else {
                offsets.push((TopicPartition { topic: topic.clone(), partition: partition as u32 }, offset as u64, metadata));
                None
            };
            out.push((partition, error));
        }
        results.push((topic, out));
    }
    let outcome = if offsets.is_empty() {
        code::NONE
    } else {
        let member = member.ok().flatten();
        let group = c.group;
        let checked =
            groups.with_coordinator(|coord, now| coord.commit(&group, member.as_ref().map(|(m, g)| (m.as_str(), *g)), &offsets, now));
        match checked {
            Err(e) => wire_code(&e),
            // A commit from outside a group that has members.
            Ok(Err(GroupError::NotEmpty(_))) => gcode::UNKNOWN_MEMBER_ID,
            Ok(Err(e)) => group_code(&e),
            // Durable first, then visible, then acknowledged.
            Ok(Ok(pending)) => match groups.settle(pending).await {
                Ok(()) => code::NONE,
                Err(e) => wire_code(&e),
            },
        }
    };
    results.into_iter().map(|(t, ps)| (t, ps.into_iter().map(|(p, e)| (p, e.unwrap_or(outcome))).collect())).collect()
}

/// The request's error, and each topic's committed offsets (-1: none).
fn offset_fetch(broker: &Arc<Broker>, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> (i16, Vec<(String, Vec<FetchedOffset>)>) {
    let offsets = broker.groups().with_coordinator(|c, _| {
        let tps: Vec<TopicPartition> = topics
            .iter()
            .flatten()
            .flat_map(|(t, ps)| ps.iter().filter_map(|p| u32::try_from(*p).ok()).map(|p| TopicPartition { topic: t.clone(), partition: p }))
            .collect();
        // No topics asked: every offset; some asked but none valid: none.
        if topics.is_some() && tps.is_empty() { BTreeMap::new() } else { c.fetch_offsets(group, &tps) }
    });
    let found = |o: Option<&weir_core::group::CommittedOffset>, partition| match o {
        Some(o) => FetchedOffset { partition, offset: o.offset as i64, metadata: o.metadata.clone(), error: code::NONE },
        None => FetchedOffset { partition, offset: -1, metadata: String::new(), error: code::NONE },
    };
    let offsets = match offsets {
        Ok(o) => o,
        Err(e) => {
            let error = wire_code(&e);
            let topics = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    (t, ps.into_iter().map(|p| FetchedOffset { partition: p, offset: -1, metadata: String::new(), error }).collect())
                })
                .collect();
            return (error, topics);
        }
    };
    let topics = match topics {
        Some(asked) => asked
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps
                    .into_iter()
                    .map(|p| found(u32::try_from(p).ok().and_then(|u| offsets.get(&TopicPartition::new(&t, u))), p))
                    .collect();
                (t, parts)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
            for (tp, o) in &offsets {
                by_topic.entry(tp.topic.clone()).or_default().push(found(Some(o), i32::try_from(tp.partition).unwrap_or(i32::MAX)));
            }
            by_topic.into_iter().collect()
        }
    };
    (code::NONE, topics)
}

fn describe(broker: &Arc<Broker>, ids: Vec<String>) -> Vec<GroupView> {
    let described = broker.groups().with_coordinator(|c, _| {
        ids.iter()
            .map(|id| match c.group(id) {
                None => GroupView {
                    error: code::NONE,
                    group: id.clone(),
                    state: "Dead".into(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                },
                Some(g) => {
                    let protocol = g.protocol.clone().or_else(|| g.assignor.map(|a| a.name().to_owned())).unwrap_or_default();
                    let members = g
                        .members
                        .values()
                        .map(|m| MemberView {
                            member_id: m.id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, b)| b.clone()).unwrap_or_default(),
                            assignment: g.client_assignment.get(&m.id).cloned().unwrap_or_default(),
                        })
                        .collect();
                    GroupView {
                        error: code::NONE,
                        group: g.id.clone(),
                        state: state_name(g.state).to_owned(),
                        protocol_type: g.protocol_type.clone().unwrap_or_else(|| NATIVE_PROTOCOL_TYPE.to_owned()),
                        protocol,
                        members,
                    }
                }
            })
            .collect::<Vec<_>>()
    });
    match described {
        Ok(groups) => groups,
        Err(e) => {
            let error = wire_code(&e);
            ids.into_iter()
                .map(|group| GroupView {
                    error,
                    group,
                    state: String::new(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                })
                .collect()
        }
    }
}

/// The answer's error and the groups (id, protocol type, state) in one of
/// `states` (any, if empty; compared as Kafka does, ignoring case).
fn list(broker: &Arc<Broker>, states: &[String]) -> (i16, Vec<(String, String, String)>) {
    let listed = broker.groups().with_coordinator(|c, _| {
        c.groups()
            .map(|g| {
                let protocol_type = g.protocol_type.clone().unwrap_or_else(|| NATIVE_PROTOCOL_TYPE.to_owned());
                (g.id.clone(), protocol_type, state_name(g.state).to_owned())
            })
            .filter(|(_, _, state)| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state)))
            .collect()
    });
    match listed {
        Ok(groups) => (code::NONE, groups),
        Err(e) => (wire_code(&e), Vec::new()),
    }
}
