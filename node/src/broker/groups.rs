//! Consumer groups on the broker: plumbing around core's coordinator (behind
//! a lock) and its offsets log (`weir_core::group::offsets_log`: encoding,
//! replay, compaction policy), kept in an internal partition (as Kafka's
//! `__consumer_offsets`). Every change to committed offsets (commit, group
//! deletion, offsets expiry) is pending until its records are durable in
//! that log, then applied, then answered; the log is an ordinary
//! partition.
//!
//! In a cluster the offsets log is a Raft group of the first three initial
//! members (fewer if the cluster is smaller) until a node removal moves it
//! (the metadata records where it is; `reassign.rs` moves it as it moves a
//! partition), and only the node that leads it coordinates: once it serves in a term, it replays the log into a
//! fresh coordinator whose generations start from that term, so they never
//! repeat or go back after a failover. Every other broker answers
//! `NotCoordinator`, and `FindCoordinator` says who does.

use super::partition::Partition;
use crate::clock::Clock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use weir_core::group::offsets_log::{self, CompactionPolicy};
use weir_core::group::{
    Assignor, CoordinatorConfig, GroupCoordinator, GroupError, GroupState, JoinParams, PendingCommit, Protocol, TopicPartition,
};
use weir_core::log::PartitionLog;
use weir_net::message::*;
use weir_net::{ErrorCode, WireError};

/// How often sessions and rebalance deadlines are checked.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Offsets per commit request.
const OFFSETS_PER_COMMIT_MAX: usize = 10_000;
/// The Raft group of the consumer offsets log (partition groups are
/// `topic id << 16 | partition`, far above it).
pub const OFFSETS_GROUP: u64 = 1;

/// Most voters of the offsets log in a cluster.
const OFFSETS_REPLICAS_MAX: usize = 3;

#[derive(Debug)]
pub struct Groups {
    coordinator: Mutex<GroupCoordinator>,
    /// This node's replica of the offsets log (`None`: a cluster placed it
    /// elsewhere), opened at start or when a move brings it here.
    log: Mutex<Option<Arc<Partition>>>,
    /// Whether this node coordinates now: always on a single broker; in a
    /// cluster, the offsets group's term once it replayed the log as leader.
    serving: Mutex<Option<u64>>,
    /// The term the current coordinator was rebuilt in: a leader that
    /// stops serving and serves again within one term keeps it (a rebuild
    /// in the same term would hand out its generations again).
    built_in: Mutex<Option<u64>>,
    /// The offsets group's term when this process opened its replica: the
    /// coordinator of that term is gone with the old process, so this node
    /// coordinates only in a term it won since.
    start_term: Mutex<Option<u64>>,
    clustered: bool,
    coordinator_config: CoordinatorConfig,
    /// Partition counts of every topic, to give a rebuilt coordinator.
    topics: Mutex<BTreeMap<String, u32>>,
    /// Changes (commits, deletions, expiries) hold it shared; compaction
    /// holds it exclusively, so a snapshot is never written after a newer
    /// change. (A deletion or expiry and a commit to one group are never in
    /// flight together: the coordinator refuses one while the other is
    /// pending, so the log's order is the order they are applied in.)
    log_order: tokio::sync::RwLock<()>,
    compaction: Mutex<CompactionPolicy>,
    clock: Clock,
    /// Woken on every change the Kafka protocol's held joins and syncs wait for.
    changed: tokio::sync::Notify,
}

/// Aborts a checked commit unless it was applied.
struct PendingGuard<'a> {
    groups: &'a Groups,
    pending: Option<weir_core::group::PendingCommit>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let now = self.groups.clock.now();
            self.groups.lock().abort_commit(&p, now);
        }
    }
}

pub fn group_error(e: GroupError) -> WireError {
    let code = match &e {
        GroupError::UnknownGroup(_) => ErrorCode::UnknownGroup,
        GroupError::UnknownMember(_) => ErrorCode::UnknownMember,
        GroupError::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
        GroupError::RebalanceInProgress => ErrorCode::RebalanceInProgress,
        GroupError::InvalidSessionTimeout { .. } => ErrorCode::InvalidSessionTimeout,
        GroupError::InconsistentAssignors { .. } | GroupError::InconsistentProtocol(_) => ErrorCode::InconsistentAssignors,
        GroupError::GroupFull { .. } | GroupError::TooManyGroups { .. } => ErrorCode::InvalidRequest,
        GroupError::NotEmpty(_) => ErrorCode::GroupNotEmpty,
        GroupError::Invalid(_) => ErrorCode::InvalidRequest,
        GroupError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        GroupError::ChangePending(_) => ErrorCode::Busy,
    };
    WireError::new(code, e.to_string())
}

pub fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Empty => "Empty",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
        GroupState::Stable => "Stable",
        GroupState::Dead => "Dead",
    }
}

fn check_name(name: &str) -> Result<(), WireError> {
    weir_core::name::validate(name).map_err(|e| WireError::new(ErrorCode::InvalidName, e.to_string()))
}

impl Groups {
    /// Replays the offsets log into a fresh coordinator and starts the log's
    /// partition; in a cluster, starts this node's replica of the offsets
    /// group (if it holds one) and coordinates only while leading it.
    /// `boot` is the broker's boot counter (see `GroupCoordinator::new`).
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        log: PartitionLog,
        config: &crate::config::Config,
        boot: u64,
        partitions: &BTreeMap<String, u32>,
        clock: Clock,
        disk: Arc<dyn weir_core::disk::Disk>,
        tasks: &crate::tasks::Tasks,
        raft: &Arc<crate::raft::RaftNode>,
        moved_off: bool,
    ) -> Result<Groups, WireError> {
        let now = clock.now();
        let node_id = config.node_id;
        let coordinator_config = CoordinatorConfig {
            session_timeout_min_ms: config.group_session_timeout_min_ms,
            session_timeout_max_ms: config.group_session_timeout_max_ms,
            offsets_retention_ms: config.offsets_retention_ms,
            ..CoordinatorConfig::default()
        };
        let clustered = config.clustered();
        let mut coordinator = GroupCoordinator::new(coordinator_config.clone(), boot);
        let (members, serving) = if clustered {
            // The initial members bootstrap the group on their first start;
            // a replica the group moved off once (its tombstone is here)
            // never bootstraps it again, and a replica opened since takes
            // its membership from its own log.
            let initial = offsets_replicas(&config.initial_members);
            let members = if initial.contains_key(&node_id) && !moved_off { initial } else { BTreeMap::new() };
            (members, None)
        } else {
            let replay = offsets_log::replay(&mut coordinator, &log, now).map_err(super::partition::log_error)?;
            for (topic, n) in partitions {
                coordinator.set_partitions(topic, Some(*n), now);
            }
            tracing::info!(records = replay.records, unreadable = replay.unreadable, "consumer offsets loaded");
            (BTreeMap::from([(node_id, config.listen.to_string())]), Some(0))
        };
        let mut log = log;
        // Read before the group starts: a lone voter elects itself at once.
        let start_term = log.vote().map_or(0, |v| v.term);
        if clustered {
            // Leadership must be won anew, in a term no coordinator had.
            super::partition::give_up_leadership(&mut log, node_id).map_err(super::partition::log_error)?;
        }
        let log = if members.contains_key(&node_id) || log.last_log_id().is_some() {
            Some(Partition::start(0, node_id, OFFSETS_GROUP, log, disk, raft, members, tasks).await?)
        } else {
            None
        };
        let start_term = clustered.then_some(start_term);
        Ok(Groups {
            coordinator: Mutex::new(coordinator),
            log: Mutex::new(log),
            serving: Mutex::new(serving),
            built_in: Mutex::new(None),
            start_term: Mutex::new(start_term),
            clustered,
            coordinator_config,
            topics: Mutex::new(partitions.clone()),
            log_order: tokio::sync::RwLock::new(()),
            compaction: Mutex::new(CompactionPolicy { compact_bytes: config.offsets_compact_bytes, compacted_size: 0 }),
            clock,
            changed: tokio::sync::Notify::new(),
        })
    }

    /// This node's replica of the offsets log, if it holds one.
    fn replica(&self) -> Option<Arc<Partition>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes a replica opened here since the start (a move brought the
    /// offsets log onto this node): it coordinates once it leads in a term
    /// after `start_term`.
    pub fn adopt_replica(&self, log: Arc<Partition>, start_term: u64) {
        *self.start_term.lock().unwrap_or_else(|p| p.into_inner()) = Some(start_term);
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(log);
    }

    /// Gives up this node's replica (the offsets log moved off it): it
    /// stops coordinating at once; the caller closes and deletes it.
    pub fn release_replica(&self) -> Option<Arc<Partition>> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).take();
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = None;
        log
    }

    fn lock(&self) -> MutexGuard<'_, GroupCoordinator> {
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the coordinator if this node coordinates now (the Kafka
    /// protocol's group calls go straight to core), then wakes the
    /// requests held for a change.
    pub fn with_coordinator<T>(&self, f: impl FnOnce(&mut GroupCoordinator, weir_core::Now) -> T) -> Result<T, WireError> {
        let out = self.inspect_coordinator(f)?;
        self.changed.notify_waiters();
        Ok(out)
    }

    /// [`Groups::with_coordinator`] without waking held requests: for a held
    /// request's own re-checks (each waking the others would have them
    /// wake each other without end).
    pub fn inspect_coordinator<T>(&self, f: impl FnOnce(&mut GroupCoordinator, weir_core::Now) -> T) -> Result<T, WireError> {
        self.coordinating()?;
        let now = self.clock.now();
        Ok(f(&mut self.lock(), now))
    }

    /// Notified on a change to any group (a held request re-checks).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn serving(&self) -> Option<u64> {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a group request unless this node coordinates now.
    fn coordinating(&self) -> Result<(), WireError> {
        // In a cluster, only while no other coordinator can exist: a leader
        // cut off from its peers would answer from a state the new
        // coordinator has moved past (a member would start from old offsets).
        let leased = !self.clustered || self.replica().is_some_and(|l| l.holds_lease());
        match self.serving() {
            Some(_) if leased => Ok(()),
            _ => Err(WireError::new(
                ErrorCode::NotCoordinator,
                match self.offsets_leader() {
                    Some(l) => format!(
                        "this broker does not coordinate consumer groups now; node {l} leads the offsets log: ask it (FindCoordinator)"
                    ),
                    None => "no broker coordinates consumer groups right now (the offsets log has no leader): retry shortly".to_owned(),
                },
            )),
        }
    }

    /// The node leading the offsets log, as far as this node's replica knows.
    pub fn offsets_leader(&self) -> Option<u64> {
        self.replica().and_then(|l| l.leader())
    }

    /// Whether this node coordinates consumer groups now.
    pub fn is_coordinator(&self) -> bool {
        self.serving().is_some()
    }

    /// In a cluster: follows the offsets group's leadership, rebuilding the
    /// coordinator from the log each time this node starts to lead it.
    pub fn start_following(self: &Arc<Self>, tasks: &crate::tasks::Tasks) {
        if !self.clustered {
            return;
        }
        let (groups, mut stop) = (self.clone(), tasks.signal());
        tasks.spawn("coordinator", async move {
            loop {
                let term = groups.replica().and_then(|l| l.serving_term());
                if term != groups.serving() {
                    groups.become_coordinator(term).await;
                }
                tokio::select! {
                    biased;
                    _ = crate::tasks::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
    }

    /// Coordinates in `term` (replaying the offsets log first), or stops.
    async fn become_coordinator(&self, term: Option<u64>) {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let (Some(term), Some(log)) = (term, self.replica()) else { return };
        if *self.built_in.lock().unwrap_or_else(|p| p.into_inner()) == Some(term) {
            // Still the only leader of this term: nobody else wrote the log.
            *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(term);
            return;
        }
        if Some(term) <= *self.start_term.lock().unwrap_or_else(|p| p.into_inner()) {
            // A term from before the restart: its coordinator's generations
            // were handed out already (the stored vote was demoted at open,
            // so this node has to win a fresh term, which it will).
            return;
        }
        // Generations start from the term: a failover never repeats one.
        let mut coordinator = GroupCoordinator::new(self.coordinator_config.clone(), term);
        let now = self.clock.now();
        let replayed = log
            .read_log(move |l| {
                let r = offsets_log::replay(&mut coordinator, l, now);
                r.map(|r| (r, coordinator))
            })
            .await;
        match replayed {
            Ok(Ok((report, mut coordinator))) => {
                for (topic, n) in self.topics.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    coordinator.set_partitions(topic, Some(*n), now);
                }
                *self.lock() = coordinator;
                *self.built_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(term);
                *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(term);
                tracing::info!(term, records = report.records, "coordinating consumer groups");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot replay the offsets log: not coordinating");
                // Damaged here: let a healthy replica lead and coordinate
                // (it led on, coordinating nothing, and no group made
                // progress; 3-broker seed 14176, a bit flip in a sealed
                // segment of the offsets log).
                if matches!(e, weir_core::log::LogError::Corruption { .. }) && self.clustered {
                    log.step_aside();
                }
            }
            Err(e) => tracing::warn!(error = %e.message, "cannot read the offsets log: not coordinating yet"),
        }
    }

    pub fn set_partitions(&self, topic: &str, count: Option<u32>) {
        let now = self.clock.now();
        {
            let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            match count {
                Some(n) => topics.insert(topic.to_owned(), n),
                None => topics.remove(topic),
            };
        }
        self.lock().set_partitions(topic, count, now);
    }

    /// Forgets every committed offset of `topic` durably (a deleted topic,
    /// or one about to be created anew, must not inherit old offsets).
    pub async fn forget_topic(&self, topic: &str) -> Result<(), WireError> {
        self.coordinating()?;
        let pending = self.lock().forget_topic(topic);
        let mut result = Ok(());
        for p in pending {
            if let Err(e) = self.settle(p).await {
                result = Err(e);
            }
        }
        result
    }

    /// Makes records durable in the offsets log; returns once they are.
    async fn persist(&self, records: &[weir_core::group::OffsetRecord]) -> Result<(), WireError> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = offsets_log::encode(records, self.clock.now().wall);
        self.offsets_log()?.produce(batch, Acks::All, Duration::from_secs(30)).await.map(|_| ())
    }

    fn offsets_log(&self) -> Result<Arc<Partition>, WireError> {
        self.replica().ok_or_else(|| WireError::new(ErrorCode::NotCoordinator, "this broker holds no replica of the offsets log"))
    }

    /// Makes a pending change durable, then applies it; if that fails, or
    /// this future is dropped at any await (its connection died), the guard
    /// aborts it, so the group is never left waiting on it.
    pub async fn settle(&self, pending: PendingCommit) -> Result<(), WireError> {
        let mut guard = PendingGuard { groups: self, pending: Some(pending) };
        let _order = self.log_order.read().await;
        let records = guard.pending.as_ref().map(|p| p.records.clone()).unwrap_or_default();
        self.persist(&records).await?;
        if let Some(p) = guard.pending.take() {
            let now = self.clock.now();
            self.lock().apply_commit(&p, now);
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// Runs the coordinator's clock; makes offset expiries durable, then
    /// applies them; compacts the offsets log when it has grown past its
    /// threshold.
    pub async fn tick(&self) {
        if self.serving().is_none() {
            self.follow_compaction().await;
            return;
        }
        let now = self.clock.now();
        let (expired, changed) = {
            let mut c = self.lock();
            let before = shape(&c);
            let expired = c.tick(now);
            (expired, shape(&c) != before)
        };
        // Held requests wait for a generation to form or a member to go.
        if changed {
            self.changed.notify_waiters();
        }
        for pending in expired {
            if let Err(e) = self.settle(pending).await {
                tracing::warn!(error = %e, "could not persist expired offsets; the expiry is retried");
            }
        }
        let Some(log) = self.replica() else { return };
        let due = log.size_bytes().await.is_ok_and(|size| self.compaction.lock().unwrap_or_else(|p| p.into_inner()).due(size));
        if due && let Err(e) = self.compact().await {
            tracing::warn!(error = %e, "offsets log compaction failed; it is retried at the next tick");
        }
    }

    /// Rewrites the live offsets into a fresh segment and deletes the older
    /// ones. A crash at any point replays to the same state: before the
    /// purge, old records are followed by the snapshot that supersedes them.
    /// In a cluster the snapshot goes through the offsets group like any
    /// commit, then a marker naming where it starts, which the followers
    /// purge their own copies by ([`Groups::follow_compaction`]); a follower
    /// behind the leader's purge is sent the retained log, snapshot included.
    pub async fn compact(&self) -> Result<(), WireError> {
        let _order = self.log_order.write().await;
        let log = self.offsets_log()?;
        let start = log.roll_now().await?;
        let live = offsets_log::snapshot(&self.lock());
        for chunk in live.chunks(offsets_log::SNAPSHOT_RECORDS_PER_BATCH) {
            self.persist(chunk).await?;
        }
        if self.clustered {
            let marker = offsets_log::encode_compacted(start, self.clock.now().wall);
            log.produce(marker, Acks::All, Duration::from_secs(30)).await?;
        }
        // Counted before the purge: in a cluster openraft deletes the
        // segments later, and the size read now would raise every next
        // compaction's threshold.
        let size = log.size_bytes().await?;
        let freed = log.purge_before(start).await?;
        self.compaction.lock().unwrap_or_else(|p| p.into_inner()).compacted(size.saturating_sub(freed));
        tracing::info!(records = live.len(), freed_bytes = freed, "offsets log compacted");
        Ok(())
    }

    /// On a replica that does not coordinate: once its copy of the offsets
    /// log has grown past the compaction threshold, purges what the newest
    /// committed compaction marker says a snapshot supersedes (without it,
    /// followers' copies grew forever while the leader compacted its own),
    /// then rolls its segment, so the next marker finds a boundary to purge
    /// at (segments are purged whole, and this copy's boundaries are its
    /// own): a copy holds about two thresholds' worth.
    async fn follow_compaction(&self) {
        let Some(log) = self.replica().filter(|_| self.clustered) else { return };
        let due = log.size_bytes().await.is_ok_and(|size| self.compaction.lock().unwrap_or_else(|p| p.into_inner()).due(size));
        if !due {
            return;
        }
        let committed = log.high_watermark();
        let purged: Result<(u64, u64), WireError> = async {
            // As in `compact`: what openraft is asked to delete counts as gone.
            let size = log.size_bytes().await?;
            let start = log.read_log(move |l| offsets_log::last_compaction(l, committed)).await?.map_err(super::partition::log_error)?;
            let freed = match start {
                Some(start) => log.purge_before(start.min(committed)).await?,
                None => 0,
            };
            log.roll_now().await?;
            Ok((size, freed))
        }
        .await;
        match purged {
            Ok((size, freed)) => {
                self.compaction.lock().unwrap_or_else(|p| p.into_inner()).compacted(size.saturating_sub(freed));
                if freed > 0 {
                    tracing::info!(freed_bytes = freed, "offsets log purged behind the coordinator's compaction");
                }
            }
            Err(e) => tracing::warn!(error = %e.message, "could not purge the offsets log behind a compaction; retried at the next tick"),
        }
    }

    pub fn join(&self, r: JoinGroupRequest) -> Result<JoinGroupResponse, WireError> {
        self.coordinating()?;
        check_name(&r.group)?;
        let mut assignors = Vec::new();
        for name in &r.assignors {
            let a = Assignor::parse(name).ok_or_else(|| {
                WireError::new(ErrorCode::InconsistentAssignors, format!("unknown assignor {name:?}: use range, roundrobin or sticky"))
            })?;
            assignors.push(a);
        }
        let params = JoinParams {
            member_id: r.member_id,
            client_id: r.client_id,
            client_host: String::new(),
            protocol: Protocol::Assigned { topics: r.topics, assignors },
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
        };
        let now = self.clock.now();
        let j = self.lock().join(&r.group, params, now).map_err(group_error)?;
        Ok(JoinGroupResponse { member_id: j.member_id, generation: j.generation, leader: j.leader, state: state_name(j.state).to_owned() })
    }

    pub fn sync(&self, r: SyncGroupRequest) -> Result<SyncGroupResponse, WireError> {
        self.coordinating()?;
        let now = self.clock.now();
        let s = self.lock().sync(&r.group, &r.member_id, now).map_err(group_error)?;
        Ok(SyncGroupResponse {
            generation: s.generation,
            assignor: s.assignor.name().to_owned(),
            partitions: s.partitions.into_iter().map(|tp| TopicPartitionRef { topic: tp.topic, partition: tp.partition }).collect(),
        })
    }

    pub fn heartbeat(&self, r: HeartbeatRequest) -> Result<HeartbeatResponse, WireError> {
        self.coordinating()?;
        let now = self.clock.now();
        self.lock().heartbeat(&r.group, &r.member_id, r.generation, now).map_err(group_error)?;
        Ok(HeartbeatResponse {})
    }

    pub fn leave(&self, r: LeaveGroupRequest) -> Result<LeaveGroupResponse, WireError> {
        self.coordinating()?;
        let now = self.clock.now();
        self.lock().leave(&r.group, &r.member_id, now).map_err(group_error)?;
        Ok(LeaveGroupResponse {})
    }

    pub async fn commit(&self, r: OffsetCommitRequest) -> Result<OffsetCommitResponse, WireError> {
        self.coordinating()?;
        check_name(&r.group)?;
        if r.offsets.len() > OFFSETS_PER_COMMIT_MAX {
            return Err(WireError::new(ErrorCode::InvalidRequest, format!("at most {OFFSETS_PER_COMMIT_MAX} offsets per commit")));
        }
        let now = self.clock.now();
        let offsets: Vec<(TopicPartition, u64, String)> =
            r.offsets.into_iter().map(|o| (TopicPartition { topic: o.topic, partition: o.partition }, o.offset, o.metadata)).collect();
        let member = r.member.as_ref().map(|(m, g)| (m.as_str(), *g));
        let pending = self.lock().commit(&r.group, member, &offsets, now).map_err(group_error)?;
        // Durable first, then visible, then acknowledged.
        self.settle(pending).await?;
        Ok(OffsetCommitResponse {})
    }

    pub fn fetch(&self, r: OffsetFetchRequest) -> Result<OffsetFetchResponse, WireError> {
        self.coordinating()?;
        let tps: Vec<TopicPartition> =
            r.partitions.into_iter().map(|t| TopicPartition { topic: t.topic, partition: t.partition }).collect();
        let offsets = self.lock().fetch_offsets(&r.group, &tps);
        Ok(OffsetFetchResponse {
            offsets: offsets
                .into_iter()
                .map(|(tp, o)| CommittedOffsetInfo {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset: o.offset,
                    metadata: o.metadata,
                    commit_time: o.commit_time.as_millis(),
                })
                .collect(),
        })
    }

    pub fn list(&self) -> Result<ListGroupsResponse, WireError> {
        self.coordinating()?;
        let c = self.lock();
        Ok(ListGroupsResponse {
            groups: c
                .groups()
                .map(|g| GroupSummary { group: g.id.clone(), state: state_name(g.state).to_owned(), members: g.members.len() as u32 })
                .collect(),
        })
    }

    /// Describes a group; `high_watermark` gives each partition's end for lag.
    pub fn describe(&self, r: DescribeGroupRequest, high_watermark: impl Fn(&str, u32) -> u64) -> Result<DescribeGroupResponse, WireError> {
        self.coordinating()?;
        let c = self.lock();
        let g = c.group(&r.group).ok_or_else(|| WireError::new(ErrorCode::UnknownGroup, format!("group {:?} does not exist", r.group)))?;
        Ok(DescribeGroupResponse {
            group: g.id.clone(),
            state: state_name(g.state).to_owned(),
            generation: g.generation,
            assignor: g.assignor.map(|a| a.name().to_owned()).or_else(|| g.protocol.clone()),
            leader: g.leader.clone(),
            members: g
                .members
                .values()
                .map(|m| {
                    let (topics, partitions) = match g.protocol_type.as_deref() {
                        // A Kafka consumer's subscription and assignment, read from its protocol's bytes.
                        Some(_) => kafka_consumer(g, m),
                        None => (
                            m.topics.iter().cloned().collect(),
                            g.assignment
                                .get(&m.id)
                                .into_iter()
                                .flatten()
                                .map(|tp| TopicPartitionRef { topic: tp.topic.clone(), partition: tp.partition })
                                .collect(),
                        ),
                    };
                    GroupMemberInfo { member_id: m.id.clone(), client_id: m.client_id.clone(), topics, partitions }
                })
                .collect(),
            offsets: g
                .offsets
                .iter()
                .map(|(tp, o)| GroupOffsetInfo {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    committed: o.offset,
                    high_watermark: high_watermark(&tp.topic, tp.partition),
                })
                .collect(),
        })
    }

    /// Deletes an empty group: pending, durable, then applied and answered.
    pub async fn delete(&self, r: DeleteGroupRequest) -> Result<DeleteGroupResponse, WireError> {
        self.coordinating()?;
        let pending = self.lock().delete_group(&r.group).map_err(group_error)?;
        self.settle(pending).await?;
        Ok(DeleteGroupResponse {})
    }

    /// This node's replica of the offsets log, if it holds one.
    pub fn offsets_partition(&self) -> Option<Arc<Partition>> {
        self.replica()
    }

    /// Final flush of the offsets log.
    pub async fn shutdown(&self) {
        let Some(log) = self.replica() else { return };
        if let Err(e) = log.flush_now().await {
            tracing::error!(error = %e, "final flush of the offsets log failed");
        }
        log.close();
    }
}

/// What held requests wait on: each group's generation, state and members.
fn shape(c: &GroupCoordinator) -> Vec<(u32, GroupState, usize)> {
    c.groups().map(|g| (g.generation, g.state, g.members.len())).collect()
}

/// A Kafka group member's topics and partitions, as far as its
/// protocol's bytes are Kafka's consumer protocol (others show none).
fn kafka_consumer(g: &weir_core::group::Group, m: &weir_core::group::Member) -> (Vec<String>, Vec<TopicPartitionRef>) {
    use weir_net::kafka::group::{consumer_assignment, consumer_topics};
    let metadata = m.protocols.iter().find(|(n, _)| Some(n) == g.protocol.as_ref()).map(|(_, b)| b.as_slice());
    let topics = metadata.and_then(consumer_topics).unwrap_or_default();
    let partitions = g
        .client_assignment
        .get(&m.id)
        .and_then(|a| consumer_assignment(a))
        .into_iter()
        .flatten()
        .flat_map(|(topic, ps)| {
            ps.into_iter().filter_map(move |p| Some(TopicPartitionRef { topic: topic.clone(), partition: u32::try_from(p).ok()? }))
        })
        .collect();
    (topics, partitions)
}

/// Where a node keeps its replica of the offsets log.
pub fn offsets_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("internal").join("offsets")
}

/// The offsets log's first voters in a cluster: the first initial members by id.
pub fn offsets_replicas(members: &BTreeMap<u64, String>) -> BTreeMap<u64, String> {
    members.iter().take(OFFSETS_REPLICAS_MAX).map(|(id, addr)| (*id, addr.clone())).collect()
}
