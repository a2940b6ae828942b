//! Consumer groups on the broker: the core coordinator behind a lock, and
//! its committed offsets kept durably in an internal partition log (as
//! Kafka's `__consumer_offsets`), replayed on start. A commit is answered
//! only after its records are durable in that log, so an acknowledged commit
//! survives a crash; the log is an ordinary partition, so it will be
//! replicated like any other once the cluster lands.

use super::partition::Partition;
use crate::clock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use weir_core::Timestamp;
use weir_core::batch::{BatchBuilder, ProducerStamp, decode_all};
use weir_core::group::{Assignor, CoordinatorConfig, GroupCoordinator, GroupError, GroupState, JoinParams, OffsetRecord, TopicPartition};
use weir_core::log::{LogError, PartitionLog};
use weir_net::message::*;
use weir_net::{ErrorCode, WireError};

/// How often sessions and rebalance deadlines are checked.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Offsets per commit request.
const OFFSETS_PER_COMMIT_MAX: usize = 10_000;

#[derive(Debug)]
pub struct Groups {
    coordinator: Mutex<GroupCoordinator>,
    log: Arc<Partition>,
    /// Commits hold it shared; compaction holds it exclusively, so a
    /// snapshot of the offsets is never written after a newer commit.
    log_order: tokio::sync::RwLock<()>,
    /// Compact the offsets log once it has grown this many bytes past its
    /// size after the last compaction (so a large live set does not make
    /// every tick compact).
    compact_bytes: u64,
    compacted_size: std::sync::atomic::AtomicU64,
}

/// Aborts a checked commit unless it was applied.
struct PendingGuard<'a> {
    groups: &'a Groups,
    pending: Option<weir_core::group::PendingCommit>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            self.groups.lock().abort_commit(&p, clock::now());
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
        GroupError::InconsistentAssignors { .. } => ErrorCode::InconsistentAssignors,
        GroupError::NotEmpty(_) => ErrorCode::GroupNotEmpty,
        GroupError::Invalid(_) => ErrorCode::InvalidRequest,
    };
    WireError::new(code, e.to_string())
}

fn state_name(s: GroupState) -> &'static str {
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
    /// partition.
    /// `boot` is the broker's boot counter (see `GroupCoordinator::new`).
    pub fn open(
        log: PartitionLog,
        config: &crate::config::Config,
        boot: u64,
        partitions: &BTreeMap<String, u32>,
    ) -> Result<Groups, LogError> {
        let now = clock::now();
        let node_id = config.node_id;
        let coordinator_config = CoordinatorConfig {
            session_timeout_min_ms: config.group_session_timeout_min_ms,
            session_timeout_max_ms: config.group_session_timeout_max_ms,
            offsets_retention_ms: config.offsets_retention_ms,
            ..CoordinatorConfig::default()
        };
        let mut coordinator = GroupCoordinator::new(coordinator_config, boot);
        // An offsets log with a reported loss replays up to it.
        let end = log.loss().map_or(log.flushed_offset(), |l| l.from.min(log.flushed_offset()));
        let mut offset = log.log_start_offset();
        let mut records = 0usize;
        while offset < end {
            let r = log.read(offset, 1 << 20, end)?;
            if r.bytes.is_empty() {
                break;
            }
            for batch in decode_all(r.bytes, usize::MAX) {
                let batch = batch?;
                for record in batch.records() {
                    let value = record?.value.unwrap_or_default();
                    match postcard::from_bytes::<OffsetRecord>(&value) {
                        Ok(rec) => {
                            coordinator.apply(&rec, now);
                            records += 1;
                        }
                        Err(e) => tracing::error!(error = %e, "skipping an unreadable offsets record"),
                    }
                }
            }
            offset = r.next_offset;
        }
        for (topic, n) in partitions {
            coordinator.set_partitions(topic, Some(*n), now);
        }
        tracing::info!(records, "consumer offsets loaded");
        Ok(Groups {
            coordinator: Mutex::new(coordinator),
            log: Partition::start(0, node_id, weir_core::partition::PartitionState::new(log)?),
            log_order: tokio::sync::RwLock::new(()),
            compact_bytes: config.offsets_compact_bytes,
            compacted_size: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GroupCoordinator> {
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_partitions(&self, topic: &str, count: Option<u32>) {
        self.lock().set_partitions(topic, count, clock::now());
    }

    /// Makes records durable in the offsets log; returns once they are.
    async fn persist(&self, records: &[OffsetRecord], now: Timestamp) -> Result<(), WireError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut b = BatchBuilder::new(ProducerStamp::NONE);
        for r in records {
            let value = postcard::to_stdvec(r).expect("offset records serialise");
            b.push(now.as_millis(), Some(r.group.as_bytes()), Some(&value), &[]);
        }
        self.log.produce(b.finish(), Acks::All, Duration::from_secs(30)).await.map(|_| ())
    }

    /// Runs the coordinator's clock; persists offset expiries; compacts the
    /// offsets log when it has grown past its threshold.
    pub async fn tick(&self) {
        let now = clock::now();
        let expired = self.lock().tick(now);
        if !expired.is_empty() {
            let _order = self.log_order.read().await;
            if let Err(e) = self.persist(&expired, now).await {
                tracing::warn!(error = %e, "could not persist expired offsets; they come back after a restart");
            }
        }
        let floor = self.compacted_size.load(std::sync::atomic::Ordering::Relaxed);
        if self.log.size_bytes().await.unwrap_or(0) > floor + self.compact_bytes
            && let Err(e) = self.compact().await
        {
            tracing::warn!(error = %e, "offsets log compaction failed; it is retried at the next tick");
        }
    }

    /// Rewrites the live offsets into a fresh segment and deletes the older
    /// ones. A crash at any point replays to the same state: before the
    /// purge, old records are followed by the snapshot that supersedes them.
    pub async fn compact(&self) -> Result<(), WireError> {
        let _order = self.log_order.write().await;
        let start = self.log.roll_now().await?;
        let now = clock::now();
        let live: Vec<OffsetRecord> = {
            let c = self.lock();
            c.groups()
                .flat_map(|g| g.offsets.iter().map(|(tp, o)| OffsetRecord { group: g.id.clone(), tp: tp.clone(), offset: Some(o.clone()) }))
                .collect()
        };
        for chunk in live.chunks(1000) {
            self.persist(chunk, now).await?;
        }
        let freed = self.log.purge_before(start).await?;
        self.compacted_size.store(self.log.size_bytes().await?, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(records = live.len(), freed_bytes = freed, "offsets log compacted");
        Ok(())
    }

    pub fn join(&self, r: JoinGroupRequest) -> Result<JoinGroupResponse, WireError> {
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
            topics: r.topics,
            assignors,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
        };
        let j = self.lock().join(&r.group, params, clock::now()).map_err(group_error)?;
        Ok(JoinGroupResponse { member_id: j.member_id, generation: j.generation, leader: j.leader, state: state_name(j.state).to_owned() })
    }

    pub fn sync(&self, r: SyncGroupRequest) -> Result<SyncGroupResponse, WireError> {
        let s = self.lock().sync(&r.group, &r.member_id, clock::now()).map_err(group_error)?;
        Ok(SyncGroupResponse {
            generation: s.generation,
            assignor: s.assignor.name().to_owned(),
            partitions: s.partitions.into_iter().map(|tp| TopicPartitionRef { topic: tp.topic, partition: tp.partition }).collect(),
        })
    }

    pub fn heartbeat(&self, r: HeartbeatRequest) -> Result<HeartbeatResponse, WireError> {
        self.lock().heartbeat(&r.group, &r.member_id, r.generation, clock::now()).map_err(group_error)?;
        Ok(HeartbeatResponse {})
    }

    pub fn leave(&self, r: LeaveGroupRequest) -> Result<LeaveGroupResponse, WireError> {
        self.lock().leave(&r.group, &r.member_id, clock::now()).map_err(group_error)?;
        Ok(LeaveGroupResponse {})
    }

    pub async fn commit(&self, r: OffsetCommitRequest) -> Result<OffsetCommitResponse, WireError> {
        check_name(&r.group)?;
        if r.offsets.len() > OFFSETS_PER_COMMIT_MAX {
            return Err(WireError::new(ErrorCode::InvalidRequest, format!("at most {OFFSETS_PER_COMMIT_MAX} offsets per commit")));
        }
        let now = clock::now();
        let offsets: Vec<(TopicPartition, u64, String)> =
            r.offsets.into_iter().map(|o| (TopicPartition { topic: o.topic, partition: o.partition }, o.offset, o.metadata)).collect();
        let member = r.member.as_ref().map(|(m, g)| (m.as_str(), *g));
        let pending = self.lock().commit(&r.group, member, &offsets, now).map_err(group_error)?;
        let _order = self.log_order.read().await;
        // If this future is dropped mid-way (its connection died), the guard
        // releases the pending commit so the group's next rebalance is not held up.
        let mut guard = PendingGuard { groups: self, pending: Some(pending) };
        // Durable first, then visible, then acknowledged.
        let records = guard.pending.as_ref().map(|p| p.records.clone()).unwrap_or_default();
        self.persist(&records, now).await?;
        if let Some(p) = guard.pending.take() {
            self.lock().apply_commit(&p, clock::now());
        }
        Ok(OffsetCommitResponse {})
    }

    pub fn fetch(&self, r: OffsetFetchRequest) -> OffsetFetchResponse {
        let tps: Vec<TopicPartition> =
            r.partitions.into_iter().map(|t| TopicPartition { topic: t.topic, partition: t.partition }).collect();
        let offsets = self.lock().fetch_offsets(&r.group, &tps);
        OffsetFetchResponse {
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
        }
    }

    pub fn list(&self) -> ListGroupsResponse {
        let c = self.lock();
        ListGroupsResponse {
            groups: c
                .groups()
                .map(|g| GroupSummary { group: g.id.clone(), state: state_name(g.state).to_owned(), members: g.members.len() as u32 })
                .collect(),
        }
    }

    /// Describes a group; `high_watermark` gives each partition's end for lag.
    pub fn describe(&self, r: DescribeGroupRequest, high_watermark: impl Fn(&str, u32) -> u64) -> Result<DescribeGroupResponse, WireError> {
        let c = self.lock();
        let g = c.group(&r.group).ok_or_else(|| WireError::new(ErrorCode::UnknownGroup, format!("group {:?} does not exist", r.group)))?;
        Ok(DescribeGroupResponse {
            group: g.id.clone(),
            state: state_name(g.state).to_owned(),
            generation: g.generation,
            assignor: g.assignor.map(|a| a.name().to_owned()),
            leader: g.leader.clone(),
            members: g
                .members
                .values()
                .map(|m| GroupMemberInfo {
                    member_id: m.id.clone(),
                    client_id: m.client_id.clone(),
                    topics: m.topics.iter().cloned().collect(),
                    partitions: g
                        .assignment
                        .get(&m.id)
                        .into_iter()
                        .flatten()
                        .map(|tp| TopicPartitionRef { topic: tp.topic.clone(), partition: tp.partition })
                        .collect(),
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

    pub async fn delete(&self, r: DeleteGroupRequest) -> Result<DeleteGroupResponse, WireError> {
        let _order = self.log_order.read().await;
        let records = self.lock().delete_group(&r.group).map_err(group_error)?;
        self.persist(&records, clock::now()).await?;
        Ok(DeleteGroupResponse {})
    }

    /// Final flush of the offsets log.
    pub async fn shutdown(&self) {
        if let Err(e) = self.log.flush_now().await {
            tracing::error!(error = %e, "final flush of the offsets log failed");
        }
        self.log.close();
    }
}
