//! The consumer group coordinator: a pure state machine. Inputs are join,
//! sync, heartbeat, leave, commit and fetch calls and [`GroupCoordinator::tick`]
//! with the current time; outputs are responses and the offset records the
//! caller must make durable before acknowledging a commit. No clock, no IO.
//!
//! The protocol is eager with assignment on the coordinator: a member joins
//! (getting a member id), the group prepares a rebalance until every known
//! member has rejoined or the rebalance timeout passes, then the coordinator
//! computes the assignment with the agreed [`Assignor`] and bumps the
//! generation. Members fetch their partitions with `sync`; heartbeats tell
//! them to rejoin when a rebalance starts. Commits carry the generation and
//! are refused from stale generations or non-members, so within a
//! generation no partition has two owners and no stale commit lands.
//!
//! Call order: after any input, or periodically, call `tick(now)`. Every
//! change to committed offsets (a commit, a group deletion, an offsets
//! expiry decided by `tick`) is a [`PendingCommit`]: its records must be
//! durable before `apply_commit`, and nothing is visible until then.
//! Time comes as [`Now`]: sessions, rebalance deadlines and offsets
//! retention run on its monotonic clock, so a stepped wall clock expires
//! nothing; commit times record the wall clock. [`offsets_log`] owns the
//! records' durable form, replay and compaction.
//!
//! A group is one of two kinds, fixed while it has members
//! ([`Protocol`]): Weir's, where the coordinator assigns partitions, or
//! Kafka's, where members' metadata and the leader's assignment are opaque
//! bytes ([`client_assigned`]: join answers wait for the generation, sync
//! answers for the leader's assignment). Both share commits, offsets,
//! sessions and generations.

mod assign;
pub mod client_assigned;
pub mod offsets_log;
#[cfg(test)]
mod tests;

pub use assign::{Assignment, Assignor, assign};

use crate::{Monotonic, Now, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: u32) -> Self {
        TopicPartition { topic: topic.to_owned(), partition }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    /// No members (committed offsets may remain).
    Empty,
    /// Waiting for members to (re)join before a new generation.
    PreparingRebalance,
    /// Assignment being computed (instantaneous here: assignment is on the coordinator).
    CompletingRebalance,
    /// Members hold their assignment for the current generation.
    Stable,
    /// Deleted.
    Dead,
}

/// Why a group call was refused; each maps to a wire error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupError {
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("member {0:?} is not in the group (it left or its session expired): rejoin")]
    UnknownMember(String),
    #[error("generation {got} is not the group's current generation {current}: rejoin")]
    IllegalGeneration { got: u32, current: u32 },
    #[error("the group is rebalancing: rejoin (or wait for the new assignment)")]
    RebalanceInProgress,
    #[error("session timeout {got} ms is outside {min}..={max} ms")]
    InvalidSessionTimeout { got: u32, min: u32, max: u32 },
    #[error("no assignor is supported by every member: this member offers {offered:?}, the group uses {group:?}")]
    InconsistentAssignors { offered: Vec<Assignor>, group: Vec<Assignor> },
    /// A member of another kind (Weir's or Kafka's), protocol type or set
    /// of protocols than the group's members.
    #[error("{0}")]
    InconsistentProtocol(String),
    #[error("group {group:?} is full ({max} members)")]
    GroupFull { group: String, max: usize },
    #[error("the coordinator holds {max} groups: no more can be created (delete unused groups)")]
    TooManyGroups { max: usize },
    #[error("group {0:?} has active members: stop them first")]
    NotEmpty(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An offset for a topic or partition the coordinator does not know:
    /// it would outlive the topic and apply to a new one of the same name.
    #[error("topic {topic:?} has no partition {partition}: nothing was committed")]
    UnknownPartition { topic: String, partition: u32 },
    /// A change to the group's offsets that excludes this one is not yet
    /// durable (a deletion or expiry, or commits before a deletion).
    #[error("group {0:?} has a change to its offsets in progress (a commit, deletion or expiry): retry shortly")]
    ChangePending(String),
}

/// Coordinator limits. Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    pub session_timeout_min_ms: u32,
    pub session_timeout_max_ms: u32,
    /// Delete the offsets of a group empty this long; `None` keeps them forever.
    pub offsets_retention_ms: Option<i64>,
    /// Members per group; joins beyond it are refused.
    pub members_max: usize,
    /// Opaque bytes (members' metadata and assignments) one client-assigned
    /// group may hold; a join or assignment beyond it is refused.
    pub group_opaque_bytes_max: usize,
    /// Opaque bytes all groups together may hold.
    pub opaque_bytes_max: usize,
    /// Groups the coordinator holds; at the bound, a join that would create
    /// one first forgets groups with no members, offsets or pending changes.
    pub groups_max: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            session_timeout_min_ms: 1_000,
            session_timeout_max_ms: 300_000,
            offsets_retention_ms: None,
            members_max: 1_000,
            group_opaque_bytes_max: 4 << 20,
            opaque_bytes_max: 256 << 20,
            groups_max: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub assignors: Vec<Assignor>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub last_heartbeat: Monotonic,
    /// Rejoined for the rebalance in progress.
    pub joined: bool,
    /// Client-assigned groups: the protocols the member supports, in its
    /// order of preference, each with its metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Where the member connects from (for describe).
    pub client_host: String,
}

/// A committed offset with what the application attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: u64,
    pub metadata: String,
    pub commit_time: Timestamp,
}

/// One durable record of the offsets log: a commit, or a deletion
/// (`offset: None`) when offsets expire or a group is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub group: String,
    pub tp: TopicPartition,
    pub offset: Option<CommittedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: u32,
    pub assignor: Option<Assignor>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    pub assignment: Assignment,
    pub offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// `Some`: a client-assigned group of this protocol type (Kafka's
    /// `consumer`), with `protocol` the one chosen for the generation and
    /// `client_assignment` what its leader assigned each member.
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub client_assignment: BTreeMap<String, Vec<u8>>,
    /// The leader the current generation formed with (`leader` may move
    /// on when it leaves; the generation's answers keep naming this one).
    pub generation_leader: Option<String>,
    rebalance_deadline: Option<Monotonic>,
    /// When the group last became empty (monotonic: offsets retention is
    /// measured on this node's clock, not a wall clock that may step).
    empty_since: Option<Monotonic>,
    /// Commits checked but not yet durable. A new generation waits for them:
    /// otherwise a new owner could read the offset before an in-flight commit
    /// lands, and its own later commit would move the offset backwards.
    pending_commits: u32,
    /// One of the pending changes removes offsets (a deletion or an
    /// expiry): no commit is accepted until it is applied, so a removal and
    /// a commit are never in flight together and the log's order is the
    /// order they are applied in.
    removal_pending: bool,
}

impl Group {
    fn new(id: &str, now: Now, first_generation: u32) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: first_generation,
            assignor: None,
            leader: None,
            members: BTreeMap::new(),
            assignment: BTreeMap::new(),
            offsets: BTreeMap::new(),
            protocol_type: None,
            protocol: None,
            client_assignment: BTreeMap::new(),
            generation_leader: None,
            rebalance_deadline: None,
            empty_since: Some(now.mono),
            pending_commits: 0,
            removal_pending: false,
        }
    }

    /// Assignors every member supports, in the leader's order of preference.
    fn common_assignors(&self) -> Vec<Assignor> {
        let Some(first) = self.leader.as_ref().and_then(|l| self.members.get(l)).or_else(|| self.members.values().next()) else {
            return Vec::new();
        };
        first.assignors.iter().copied().filter(|a| self.members.values().all(|m| m.assignors.contains(a))).collect()
    }

    fn start_rebalance(&mut self, now: Now) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.assignment.clear();
            self.client_assignment.clear();
            self.rebalance_deadline = None;
            self.empty_since = Some(now.mono);
            return;
        }
        if self.state != GroupState::PreparingRebalance {
            for m in self.members.values_mut() {
                m.joined = false;
            }
            let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
            self.rebalance_deadline = Some(now.mono.plus_millis(u64::from(timeout)));
            self.state = GroupState::PreparingRebalance;
            // The old assignment stays for the sticky assignor; `sync`
            // serves nothing until the new generation is formed.
        }
    }
}

/// What a join answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub member_id: String,
    /// The group's generation now; a newer one follows if a rebalance is pending.
    pub generation: u32,
    pub leader: Option<String>,
    pub state: GroupState,
}

/// What a sync answers: the member's partitions in a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub generation: u32,
    pub assignor: Assignor,
    pub partitions: Vec<TopicPartition>,
}

/// A join request's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinParams {
    pub member_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol: Protocol,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
}

/// How a member's partitions are decided: a group's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Weir's: the coordinator assigns the subscribed topics' partitions.
    Assigned { topics: Vec<String>, assignors: Vec<Assignor> },
    /// Kafka's: the leader assigns; metadata and assignments are opaque.
    /// `protocols` are (name, metadata), in the member's preference order.
    ClientAssigned { protocol_type: String, protocols: Vec<(String, Vec<u8>)> },
}

/// A commit checked against the group and ready to be made durable; hand
/// it back to `apply_commit` (durable) or `abort_commit` (failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommit {
    pub group: String,
    pub records: Vec<OffsetRecord>,
    /// A group deletion: once applied, the group is gone (if still empty).
    pub removes_group: bool,
    /// Removes offsets (a deletion or an expiry).
    pub removal: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    partitions: BTreeMap<String, u32>,
    next_member: u64,
    /// Distinguishes this coordinator's life from earlier ones (the broker's
    /// boot counter): member ids and generations never repeat across
    /// restarts, so a member of a group as it was before a crash cannot pass
    /// for a member of the group as it is now.
    epoch: u64,
    /// One above the highest generation handed out.
    generation_floor: u32,
}

/// Generations of one coordinator life start at `epoch << GENERATION_EPOCH_SHIFT`
/// (the epoch taken modulo 2^15, so every generation is a positive i32, as
/// Kafka's protocol carries them).
const GENERATION_EPOCH_SHIFT: u32 = 16;

impl GroupCoordinator {
    /// `epoch` must grow with every restart (the broker passes its boot counter).
    pub fn new(config: CoordinatorConfig, epoch: u64) -> Self {
        GroupCoordinator { config, epoch, ..Default::default() }
    }

    /// Where a new (or re-created) group's generations start: above every
    /// generation this coordinator handed out, so a group deleted and
    /// created again never repeats one.
    fn first_generation(&self) -> u32 {
        (((self.epoch as u32) & 0x7fff) << GENERATION_EPOCH_SHIFT).max(self.generation_floor)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Tells the coordinator a topic's partition count (on start, create,
    /// delete or growth); groups subscribed to a topic whose count changed
    /// rebalance.
    pub fn set_partitions(&mut self, topic: &str, count: Option<u32>, now: Now) {
        let old = match count {
            Some(n) => self.partitions.insert(topic.to_owned(), n),
            None => self.partitions.remove(topic),
        };
        if old != count {
            for g in self.groups.values_mut() {
                if g.members.values().any(|m| m.topics.contains(topic)) {
                    g.start_rebalance(now);
                }
            }
            self.advance(now);
        }
    }

    pub fn join(&mut self, group_id: &str, p: JoinParams, now: Now) -> Result<JoinResult, GroupError> {
        let (min, max) = (self.config.session_timeout_min_ms, self.config.session_timeout_max_ms);
        if !(min..=max).contains(&p.session_timeout_ms) {
            return Err(GroupError::InvalidSessionTimeout { got: p.session_timeout_ms, min, max });
        }
        match &p.protocol {
            Protocol::Assigned { topics, assignors } => {
                if topics.is_empty() {
                    return Err(GroupError::Invalid("a member must subscribe to at least one topic".into()));
                }
                if assignors.is_empty() {
                    return Err(GroupError::Invalid("a member must support at least one assignor".into()));
                }
            }
            Protocol::ClientAssigned { protocol_type, protocols } => {
                if protocol_type.is_empty() || protocols.is_empty() {
                    return Err(GroupError::Invalid("a member must name its protocol type and at least one protocol".into()));
                }
            }
        }
        let (members_max, opaque_max) = (self.config.members_max, self.config.group_opaque_bytes_max);
        self.room_for(group_id)?;
        let others_opaque: usize = match p.protocol {
            Protocol::ClientAssigned { .. } => {
                self.groups.iter().filter(|(id, _)| *id != group_id).map(|(_, g)| client_assigned::opaque_bytes(g)).sum()
            }
            Protocol::Assigned { .. } => 0,
        };
        let opaque_max = opaque_max.min(self.config.opaque_bytes_max.saturating_sub(others_opaque));
        let first = self.first_generation();
        let group = self.groups.entry(group_id.to_owned()).or_insert_with(|| Group::new(group_id, now, first));
        if group.state == GroupState::Dead {
            *group = Group::new(group_id, now, first);
        }
        let (topics, assignors, protocols) = match p.protocol {
            Protocol::Assigned { topics, assignors } => {
                if !group.members.is_empty() && group.protocol_type.is_some() {
                    return Err(GroupError::InconsistentProtocol(format!(
                        "group {group_id:?} is a Kafka group with members: a Weir consumer cannot join it (use another group)"
                    )));
                }
                let common_now = group.common_assignors();
                if !group.members.is_empty() && !assignors.iter().any(|a| common_now.contains(a)) {
                    return Err(GroupError::InconsistentAssignors { offered: assignors, group: common_now });
                }
                group.protocol_type = None;
                (topics.into_iter().collect::<BTreeSet<String>>(), assignors, Vec::new())
            }
            Protocol::ClientAssigned { protocol_type, protocols } => {
                client_assigned::check_join(group, &protocol_type, &protocols, p.member_id.as_deref(), opaque_max)?;
                group.protocol_type = Some(protocol_type);
                (BTreeSet::new(), Vec::new(), protocols)
            }
        };
        let member_id = match p.member_id.filter(|id| !id.is_empty()) {
            Some(id) if group.members.contains_key(&id) => id,
            Some(id) => return Err(GroupError::UnknownMember(id)),
            None => {
                if group.members.len() >= members_max {
                    return Err(GroupError::GroupFull { group: group_id.to_owned(), max: members_max });
                }
                self.next_member += 1;
                format!("{}-{}-{}", p.client_id, self.epoch, self.next_member)
            }
        };
        let existing = group.members.get(&member_id).cloned();
        let unchanged = existing.as_ref().is_some_and(|m| m.topics == topics && m.assignors == assignors && m.protocols == protocols);
        // Kafka's leader rejoins to have a topic change it saw reassigned.
        let leader_rejoins = group.protocol_type.is_some() && group.leader.as_deref() == Some(member_id.as_str());
        let member = Member {
            id: member_id.clone(),
            client_id: p.client_id,
            topics,
            assignors,
            session_timeout_ms: p.session_timeout_ms,
            rebalance_timeout_ms: p.rebalance_timeout_ms.max(p.session_timeout_ms),
            last_heartbeat: now.mono,
            joined: true,
            protocols,
            client_host: p.client_host,
        };
        group.members.insert(member_id.clone(), member);
        group.empty_since = None;
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader = Some(member_id.clone());
        }
        // A stable member rejoining with the same subscription needs no rebalance.
        if !(unchanged && !leader_rejoins && group.state == GroupState::Stable) {
            group.start_rebalance(now);
            if let Some(m) = group.members.get_mut(&member_id) {
                m.joined = true;
            }
        }
        self.advance(now);
        let g = &self.groups[group_id];
        Ok(JoinResult { member_id, generation: g.generation, leader: g.leader.clone(), state: g.state })
    }

    /// Refuses a group that would be created beyond `groups_max`, after
    /// forgetting the groups that hold nothing (as if never made).
    fn room_for(&mut self, group_id: &str) -> Result<(), GroupError> {
        if !self.groups.contains_key(group_id) && self.groups.len() >= self.config.groups_max {
            self.groups.retain(|_, g| !g.members.is_empty() || !g.offsets.is_empty() || g.pending_commits > 0);
            if self.groups.len() >= self.config.groups_max {
                return Err(GroupError::TooManyGroups { max: self.config.groups_max });
            }
        }
        Ok(())
    }

    /// The member's partitions in the current generation, once the group is stable.
    pub fn sync(&mut self, group_id: &str, member_id: &str, now: Now) -> Result<SyncResult, GroupError> {
        let g = self.groups.get_mut(group_id).ok_or_else(|| GroupError::UnknownGroup(group_id.to_owned()))?;
        let m = g.members.get_mut(member_id).ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        m.last_heartbeat = now.mono;
        if g.state != GroupState::Stable {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(SyncResult {
            generation: g.generation,
            assignor: g.assignor.unwrap_or(Assignor::Range),
            partitions: g.assignment.get(member_id).cloned().unwrap_or_default(),
        })
    }

    /// Keeps a member's session alive. `RebalanceInProgress` tells it to
    /// rejoin (unless it already has, in which case it waits in `sync`).
    pub fn heartbeat(&mut self, group_id: &str, member_id: &str, generation: u32, now: Now) -> Result<(), GroupError> {
        let g = self.groups.get_mut(group_id).ok_or_else(|| GroupError::UnknownGroup(group_id.to_owned()))?;
        let m = g.members.get_mut(member_id).ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        m.last_heartbeat = now.mono;
        match g.state {
            // Kafka's members rejoin on this; their joins are held meanwhile.
            GroupState::PreparingRebalance if g.protocol_type.is_some() => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance if g.protocol_type.is_some() && generation == g.generation => Ok(()),
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                if m.joined {
                    Ok(())
                } else {
                    Err(GroupError::RebalanceInProgress)
                }
            }
            _ if generation != g.generation => Err(GroupError::IllegalGeneration { got: generation, current: g.generation }),
            _ => Ok(()),
        }
    }

    pub fn leave(&mut self, group_id: &str, member_id: &str, now: Now) -> Result<(), GroupError> {
        let g = self.groups.get_mut(group_id).ok_or_else(|| GroupError::UnknownGroup(group_id.to_owned()))?;
        if g.members.remove(member_id).is_none() {
            return Err(GroupError::UnknownMember(member_id.to_owned()));
        }
        if g.leader.as_deref() == Some(member_id) {
            g.leader = g.members.keys().next().cloned();
        }
        if g.members.is_empty() || g.state != GroupState::PreparingRebalance {
            g.start_rebalance(now);
        }
        self.advance(now);
        Ok(())
    }

    /// Checks a commit: from a member of the current generation, or with no
    /// member at all only while the group is empty (an admin reset). The
    /// returned records must be made durable, then passed to `apply_commit`.
    pub fn commit(
        &mut self,
        group_id: &str,
        member: Option<(&str, u32)>,
        offsets: &[(TopicPartition, u64, String)],
        now: Now,
    ) -> Result<PendingCommit, GroupError> {
        match (self.groups.get(group_id), member) {
            // A commit from outside creates the group: it counts.
            (None, None) => self.room_for(group_id)?,
            (None, Some((m, _))) => return Err(GroupError::UnknownMember(m.to_owned())),
            (Some(g), _) if g.removal_pending => return Err(GroupError::ChangePending(g.id.clone())),
            (Some(g), None) if g.members.is_empty() => {}
            (Some(g), None) => return Err(GroupError::NotEmpty(g.id.clone())),
            (Some(g), Some((m, generation))) => {
                if !g.members.contains_key(m) {
                    return Err(GroupError::UnknownMember(m.to_owned()));
                }
                if generation != g.generation {
                    return Err(GroupError::IllegalGeneration { got: generation, current: g.generation });
                }
                // The generation's owners are not known until its leader assigns.
                if g.state == GroupState::CompletingRebalance {
                    return Err(GroupError::RebalanceInProgress);
                }
            }
        }
        // An offset for a topic that does not exist (or no longer does) would
        // outlive it and apply to a new topic of the same name.
        if let Some((tp, _, _)) = offsets.iter().find(|(tp, _, _)| self.partitions.get(&tp.topic).is_none_or(|n| tp.partition >= *n)) {
            return Err(GroupError::UnknownPartition { topic: tp.topic.clone(), partition: tp.partition });
        }
        let records = offsets
            .iter()
            .map(|(tp, offset, metadata)| OffsetRecord {
                group: group_id.to_owned(),
                tp: tp.clone(),
                offset: Some(CommittedOffset { offset: *offset, metadata: metadata.clone(), commit_time: now.wall }),
            })
            .collect();
        if let Some(g) = self.groups.get_mut(group_id) {
            g.pending_commits += 1;
        }
        Ok(PendingCommit { group: group_id.to_owned(), records, removes_group: false, removal: false })
    }

    fn finish_commit(&mut self, pending: &PendingCommit) {
        if let Some(g) = self.groups.get_mut(&pending.group) {
            g.pending_commits = g.pending_commits.saturating_sub(1);
            if pending.removal {
                g.removal_pending = false;
            }
        }
    }

    /// A commit that could not be made durable: nothing changes.
    pub fn abort_commit(&mut self, pending: &PendingCommit, now: Now) {
        self.finish_commit(pending);
        self.advance(now);
    }

    /// Applies records that are now durable (also used to load the offsets
    /// log on start).
    pub fn apply(&mut self, record: &OffsetRecord, now: Now) {
        let first = self.first_generation();
        let g = self.groups.entry(record.group.clone()).or_insert_with(|| Group::new(&record.group, now, first));
        if g.state == GroupState::Dead {
            *g = Group::new(&record.group, now, first);
        }
        match &record.offset {
            Some(o) => {
                g.offsets.insert(record.tp.clone(), o.clone());
            }
            None => {
                g.offsets.remove(&record.tp);
                // A group left with nothing (no offsets, members or changes
                // in flight) is gone, as it is when the log is replayed.
                if g.offsets.is_empty() && g.members.is_empty() && g.pending_commits == 0 {
                    self.groups.remove(&record.group);
                }
            }
        }
    }

    /// Applies a pending commit, deletion or expiry whose records are now durable.
    pub fn apply_commit(&mut self, pending: &PendingCommit, now: Now) {
        self.finish_commit(pending);
        for r in &pending.records {
            self.apply(r, now);
        }
        if pending.removes_group && self.groups.get(&pending.group).is_some_and(|g| g.members.is_empty() && g.pending_commits == 0) {
            self.groups.remove(&pending.group);
        }
        self.advance(now);
    }

    /// Committed offsets of a group (all of them if `partitions` is empty).
    pub fn fetch_offsets(&self, group_id: &str, partitions: &[TopicPartition]) -> BTreeMap<TopicPartition, CommittedOffset> {
        let Some(g) = self.groups.get(group_id) else { return BTreeMap::new() };
        if partitions.is_empty() {
            return g.offsets.clone();
        }
        partitions.iter().filter_map(|tp| g.offsets.get(tp).map(|o| (tp.clone(), o.clone()))).collect()
    }

    /// Forgets every committed offset of `topic` (deleted, or about to be
    /// created anew): one pending change per group that holds some, to make
    /// durable and apply like a commit. Commits to a topic the coordinator
    /// does not know are refused, so none can race these.
    pub fn forget_topic(&mut self, topic: &str) -> Vec<PendingCommit> {
        let mut out = Vec::new();
        for g in self.groups.values_mut() {
            let records: Vec<OffsetRecord> = g
                .offsets
                .keys()
                .filter(|tp| tp.topic == topic)
                .map(|tp| OffsetRecord { group: g.id.clone(), tp: tp.clone(), offset: None })
                .collect();
            if !records.is_empty() {
                g.pending_commits += 1;
                out.push(PendingCommit { group: g.id.clone(), records, removes_group: false, removal: false });
            }
        }
        out
    }

    /// Checks the deletion of an empty group. Like a commit, nothing changes
    /// until the returned deletions are durable and passed to
    /// `apply_commit` (or `abort_commit`).
    pub fn delete_group(&mut self, group_id: &str) -> Result<PendingCommit, GroupError> {
        let g = self.groups.get_mut(group_id).ok_or_else(|| GroupError::UnknownGroup(group_id.to_owned()))?;
        if !g.members.is_empty() {
            return Err(GroupError::NotEmpty(group_id.to_owned()));
        }
        if g.pending_commits > 0 {
            return Err(GroupError::ChangePending(group_id.to_owned()));
        }
        let records = g.offsets.keys().map(|tp| OffsetRecord { group: group_id.to_owned(), tp: tp.clone(), offset: None }).collect();
        g.pending_commits += 1;
        g.removal_pending = true;
        Ok(PendingCommit { group: group_id.to_owned(), records, removes_group: true, removal: true })
    }

    /// Advances time: expires members whose session lapsed, completes
    /// rebalances that are ready or past their deadline, and (if
    /// configured) decides to expire the offsets of long-empty groups,
    /// returning those deletions as pending commits: make them durable,
    /// then `apply_commit` them (until then the offsets stay visible).
    pub fn tick(&mut self, now: Now) -> Vec<PendingCommit> {
        self.advance(now);
        let mut deletions = Vec::new();
        let Some(ms) = self.config.offsets_retention_ms else { return deletions };
        for g in self.groups.values_mut() {
            if let Some(since) = g.empty_since
                && g.members.is_empty()
                && g.pending_commits == 0
                && now.mono.millis_since(since) > ms.max(0) as u64
                && !g.offsets.is_empty()
            {
                let records = g.offsets.keys().map(|tp| OffsetRecord { group: g.id.clone(), tp: tp.clone(), offset: None }).collect();
                g.pending_commits += 1;
                g.removal_pending = true;
                deletions.push(PendingCommit { group: g.id.clone(), records, removes_group: false, removal: true });
            }
        }
        deletions
    }

    /// Expires members whose session lapsed and completes rebalances that
    /// are ready or past their deadline (every input does this).
    fn advance(&mut self, now: Now) {
        for g in self.groups.values_mut() {
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| now.mono.millis_since(m.last_heartbeat) > u64::from(m.session_timeout_ms))
                .map(|m| m.id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    g.members.remove(id);
                }
                if g.leader.as_ref().is_some_and(|l| expired.contains(l)) {
                    g.leader = g.members.keys().next().cloned();
                }
                if g.members.is_empty() || g.state != GroupState::PreparingRebalance {
                    g.start_rebalance(now);
                }
            }
            if g.state == GroupState::PreparingRebalance {
                let all_joined = g.members.values().all(|m| m.joined);
                let late = g.rebalance_deadline.is_some_and(|d| now.mono >= d);
                if late && !all_joined {
                    // Members that did not rejoin in time are out.
                    g.members.retain(|_, m| m.joined);
                    if g.leader.as_ref().is_some_and(|l| !g.members.contains_key(l)) {
                        g.leader = g.members.keys().next().cloned();
                    }
                }
                if (all_joined || late) && g.pending_commits == 0 {
                    Self::complete_rebalance(g, &self.partitions, now);
                    self.generation_floor = self.generation_floor.max(g.generation.saturating_add(1));
                }
            }
        }
    }

    fn complete_rebalance(g: &mut Group, partitions: &BTreeMap<String, u32>, now: Now) {
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.assignment.clear();
            g.empty_since = Some(now.mono);
            g.rebalance_deadline = None;
            return;
        }
        if g.protocol_type.is_some() {
            client_assigned::complete_rebalance(g, now);
            return;
        }
        g.state = GroupState::CompletingRebalance;
        let assignor = g.common_assignors().first().copied().unwrap_or(Assignor::Range);
        let subs: BTreeMap<String, BTreeSet<String>> = g.members.iter().map(|(id, m)| (id.clone(), m.topics.clone())).collect();
        let previous = std::mem::take(&mut g.assignment);
        g.assignment = assign(assignor, &subs, partitions, &previous);
        g.assignor = Some(assignor);
        g.generation += 1;
        g.rebalance_deadline = None;
        for m in g.members.values_mut() {
            m.joined = false;
        }
        g.state = GroupState::Stable;
    }
}
