//! One partition on this broker: the plumbing around core's
//! [`PartitionState`] (producer table, high watermark, proposals, pending
//! answers) and the partition's Raft group ([`crate::raft::Group`], which
//! owns the log). Here live only the tasks and channels:
//!
//! - produce: a validated batch goes through the state (deduplicated,
//!   queued at its predicted offsets); the proposer hands everything queued
//!   to the group as one entry (group commit above Raft), several entries in
//!   flight at once;
//! - commit: the group applies entries on every replica and tells the state
//!   ([`ApplyHook`]): the high watermark moves and answers come due;
//! - role: a watcher tells the state when this replica may serve produces
//!   (it leads and has applied an entry of its term) and when it may not;
//! - fetch: long polls read the log up to the high watermark.
//!
//! No disk IO runs on an async worker: reads and retention run on a
//! blocking thread ([`blocking::run`]) holding the log's lock, acquired
//! asynchronously with a deadline. A stuck disk therefore holds one
//! partition's lock and one thread, not the broker: requests to that
//! partition time out with an error that says so.

use crate::raft::{ApplyHook, Group, ProposeError, RaftNode};
use crate::tasks::Tasks;
use crate::{blocking, clock};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedMutexGuard, Semaphore, oneshot, watch};
use weir_core::batch::BatchHeader;
use weir_core::disk::Disk;
use weir_core::log::{LogError, PartitionLog, ReadResult};
use weir_core::partition::{Ack, AckMode, Appended, PartitionState, ProduceError, Proposal, ValidBatch};
use weir_net::message::{Acks, PartitionDescription};
use weir_net::{ErrorCode, WireError};

/// Longest a request waits for a partition whose storage is busy (a slow
/// or stuck disk holding its lock) before it is answered with an error.
pub const STORAGE_WAIT_MAX: Duration = Duration::from_secs(10);
/// Entries a leader has proposed and not yet seen committed, per partition.
/// A group whose only voter is this node has one entry in flight, until it
/// is applied: openraft writes and syncs one entry at a time, and whatever
/// arrives meanwhile joins the next one as it is written (group commit;
/// see [`ApplyHook::extend`]). Measured: two in flight, or giving the
/// permit back at fsync, cut each entry earlier and smaller. A group of
/// several voters keeps up to this many in flight, but see
/// [`PIPELINE_BYTES_MIN`].
const PROPOSALS_IN_FLIGHT_MAX: u32 = 4;

/// With several voters, a second entry goes in flight only once this many
/// bytes are queued: large batches are pipelined (one entry at a time
/// halved batched throughput on 3 nodes, 164 → 96 MB/s), while small ones
/// wait for the entry in flight and go as one larger entry (64
/// single-message producers: +13 % over proposing each at once).
const PIPELINE_BYTES_MIN: usize = 256 << 10;

type Waiter = oneshot::Sender<Result<Appended, ProduceError>>;

/// The wire form of a log error: the one place that maps them.
pub fn log_error(e: LogError) -> WireError {
    let code = match &e {
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::Corruption { .. } => ErrorCode::CorruptData,
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::NotBatchBoundary(_) | LogError::RaftOrder(_) => ErrorCode::InvalidRequest,
        LogError::Disk(weir_core::disk::DiskError::NoSpace(_)) => ErrorCode::StorageFull,
        LogError::Disk(_) | LogError::Failed(_) => ErrorCode::StorageError,
        LogError::Offline(_) => ErrorCode::PartitionOffline,
        LogError::TimestampOutOfRange { .. } => ErrorCode::InvalidTimestamp,
    };
    if e.is_storage_fault() || code == ErrorCode::StorageFull {
        tracing::error!(error = %e, "storage fault");
    }
    let message = match &e {
        LogError::Disk(weir_core::disk::DiskError::NoSpace(path)) => format!(
            "the broker's disk is full (no space left writing {}): nothing was stored; free space, lower retention or delete topics, then retry",
            path.display()
        ),
        _ => e.to_string(),
    };
    WireError::new(code, message)
}

/// The wire form of a refused produce.
pub fn produce_error(e: ProduceError) -> WireError {
    let code = match &e {
        ProduceError::Log(e) => return log_error(e.clone()),
        ProduceError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        ProduceError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        ProduceError::ControlBatch => ErrorCode::InvalidRequest,
        ProduceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequence,
        ProduceError::Fenced { .. } => ErrorCode::InvalidProducerEpoch,
        ProduceError::Collision { .. } => ErrorCode::ProducerIdCollision,
        ProduceError::NotLeader { leader: Some(_) } => ErrorCode::NotLeader,
        ProduceError::NotLeader { leader: None } => ErrorCode::LeaderNotAvailable,
    };
    WireError::new(code, e.to_string())
}

fn ack_mode(acks: Acks) -> AckMode {
    match acks {
        Acks::None => AckMode::None,
        Acks::Leader => AckMode::Leader,
        Acks::All => AckMode::All,
    }
}

/// What the proposer, the apply hook and the request tasks share.
struct Shared {
    state: Mutex<PartitionState>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// The state's high watermark, for long-polling fetches: reads see what
    /// was acknowledged as soon as it was.
    high_watermark: watch::Sender<u64>,
    /// The permits of the entry in flight while this node is the group's
    /// only voter, with the offset it ends at: given back when the entry is
    /// applied ([`ApplyHook::applied`]), before its commit is answered.
    held: Mutex<Option<(u64, tokio::sync::OwnedSemaphorePermit)>>,
    /// Wakes the proposer task (a permit came back).
    wake_proposer: Notify,
}

impl Shared {
    /// Runs `f` on the state, then delivers every answer it made due.
    fn with_state<T>(&self, f: impl FnOnce(&mut PartitionState) -> T) -> T {
        let (out, acks) = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut s);
            let hw = s.high_watermark();
            self.high_watermark.send_if_modified(|cur| {
                let moved = hw > *cur;
                *cur = (*cur).max(hw);
                moved
            });
            (out, std::iter::from_fn(|| s.poll_ack()).collect::<Vec<Ack>>())
        };
        if !acks.is_empty() {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            for a in acks {
                if let Some(w) = waiters.remove(&a.token) {
                    let _ = w.send(a.result);
                }
            }
        }
        out
    }
}

impl Shared {
    /// A fresh state for a group just opened: the producers the log holds,
    /// the high watermark where the applied log ends (entries after it are
    /// applied again), never below the one already published.
    fn restart_state(&self, producers: weir_core::producer::ProducerTable, group: &Group) {
        let hw = *group.high_watermark().borrow();
        self.with_state(|s| *s = PartitionState::new(producers, hw.max(s.high_watermark())));
    }
}

fn producers_of(shared: &Shared) -> weir_core::producer::ProducerTable {
    shared.state.lock().unwrap_or_else(|p| p.into_inner()).producers().clone()
}

impl ApplyHook for Shared {
    fn applied(&self, headers: &[BatchHeader], next_offset: u64) {
        self.with_state(|s| s.handle_applied(headers, next_offset));
        self.release_held_at(next_offset);
    }

    fn durable(&self, next_offset: u64) {
        self.with_state(|s| s.handle_durable(next_offset));
    }

    fn extend(&self, term: u64, end: u64, budget: usize) -> Vec<Bytes> {
        self.with_state(|s| s.take_more(term, end, budget)).map(|p| p.batches).unwrap_or_default()
    }
}

impl Shared {
    fn release_held_at(&self, next_offset: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref().is_some_and(|(end, _)| next_offset >= *end) {
            *held = None;
            drop(held);
            self.wake_proposer.notify_one();
        }
    }
}

pub struct Partition {
    pub id: u32,
    node_id: u64,
    batch_bytes_max: usize,
    /// The log's settings (the admission checks of a produce).
    log_config: weir_core::log::LogConfig,
    shared: Arc<Shared>,
    /// The partition's group: replaced when a storage fault stopped it
    /// (see [`Partition::reopen_group`]).
    group: std::sync::RwLock<Arc<Group>>,
    raft: Arc<RaftNode>,
    disk: Arc<dyn Disk>,
    /// The first voters, should the group be new when it is opened again.
    members: BTreeMap<u64, String>,
    high_watermark: watch::Receiver<u64>,
    next_token: AtomicU64,
    /// Entries in flight (see [`PROPOSALS_IN_FLIGHT_MAX`]).
    in_flight: Arc<Semaphore>,
    /// Held while taking and submitting an entry.
    proposing: tokio::sync::Mutex<()>,
    closed: watch::Sender<bool>,
    /// The log's canary (simulation builds; see `weir_core::canary`).
    canary: Option<weir_core::canary::Canary>,
    /// Recovery found acknowledged data damaged: no writes until an
    /// operator accepts the loss (`weir accept-loss`).
    offline: Option<weir_core::log::Loss>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("id", &self.id).field("group", &self.group().id).finish()
    }
}

fn propose_error(e: ProposeError) -> ProduceError {
    match e {
        ProposeError::NotLeader { leader, .. } => ProduceError::NotLeader { leader },
        ProposeError::Stopped { why, .. } => ProduceError::Log(LogError::Failed(why)),
        ProposeError::Refused { size, max, .. } => ProduceError::TooLarge { size, max },
    }
}

impl Partition {
    /// Opens partition `id` as Raft group `group_id` on `log`, with
    /// `members` (node id → Raft address) as its first voters if the group
    /// is new, and starts its proposer and role watcher under the supervisor.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        id: u32,
        node_id: u64,
        group_id: u64,
        log: PartitionLog,
        disk: Arc<dyn Disk>,
        raft: &Arc<RaftNode>,
        members: BTreeMap<u64, String>,
        tasks: &Tasks,
    ) -> Result<Arc<Partition>, WireError> {
        let batch_bytes_max = log.config().batch_bytes_max;
        let log_config = log.config().clone();
        let canary = log.config().canary;
        let offline = log.loss().cloned();
        let single = members.len() == 1;
        let settle = disk.clone();
        let (producers, log) = blocking::run(move || {
            let mut log = log;
            let producers =
                crate::raft::commit_applied_membership(&mut log, &*settle).and_then(|()| rebuild_applied_producers(&log, single));
            (producers, log)
        })
        .await;
        let producers = producers.map_err(log_error)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(PartitionState::new(producers, 0)),
            waiters: Mutex::default(),
            high_watermark: watch::channel(0).0,
            held: Mutex::new(None),
            wake_proposer: Notify::new(),
        });
        let hook: Arc<dyn ApplyHook> = shared.clone();
        let group =
            raft.open_group_with(group_id, log, disk.clone(), Some(hook)).await.map_err(|e| WireError::new(ErrorCode::StorageError, e))?;
        let high_watermark = shared.high_watermark.subscribe();
        shared.restart_state(producers_of(&shared), &group);
        if let Err(e) = group.bootstrap(members.clone()).await {
            raft.close_group(&group).await;
            return Err(WireError::new(ErrorCode::StorageError, e));
        }
        group.campaign_if_alone().await;
        let (closed, _) = watch::channel(false);
        let p = Arc::new(Partition {
            id,
            node_id,
            batch_bytes_max,
            log_config,
            shared,
            group: std::sync::RwLock::new(group),
            raft: raft.clone(),
            disk,
            members,
            high_watermark,
            next_token: AtomicU64::new(1),
            in_flight: Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX as usize)),
            proposing: tokio::sync::Mutex::new(()),
            closed,
            canary,
            offline,
        });
        tasks.spawn("proposer", proposer(p.clone(), tasks.signal()));
        tasks.spawn("role", role(p.clone(), tasks.signal()));
        Ok(p)
    }

    /// Recovery found acknowledged data damaged: no writes until the loss is
    /// accepted (`weir accept-loss`).
    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    /// Whether other nodes hold replicas: not a single broker's partition.
    /// A replica that joined a group (no first voters of its own: a
    /// reassignment added it) counts as replicated, whatever its log says yet.
    fn replicated(&self) -> bool {
        self.members.len() != 1
    }

    /// The partition's Raft group id.
    pub fn group_id(&self) -> u64 {
        self.group().id
    }

    /// The partition's Raft group as it is now.
    fn group(&self) -> Arc<Group> {
        self.group.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The partition's Raft group (membership changes are made on it).
    pub fn raft_group(&self) -> Arc<Group> {
        self.group()
    }

    /// Opens the group again after a storage fault stopped it (a full disk,
    /// a failed write or sync): the log is reopened from disk, so recovery
    /// sees what really reached it, and the group continues from there.
    async fn reopen_group(&self, old: &Arc<Group>) -> Result<Arc<Group>, String> {
        let (dir, config) = {
            let log = old.log().lock().await;
            (log.dir().to_path_buf(), log.config().clone())
        };
        self.raft.close_group(old).await;
        let disk = self.disk.clone();
        let single = self.members.len() == 1;
        // The state learns the producers from the log as it is on disk: an
        // entry whose sync failed may be there after all, and a retry of
        // one of its batches must be answered as a duplicate.
        let me = self.node_id;
        let (log, producers, damaged) = blocking::run(move || {
            let (mut log, report) = open_replica_log(disk.clone(), &dir, config, single)?;
            if !single {
                // It just failed: it must win an election again before it
                // leads, not resume leadership from its stored vote.
                give_up_leadership(&mut log, me)?;
            }
            crate::raft::commit_applied_membership(&mut log, &*disk)?;
            let producers = rebuild_applied_producers(&log, single)?;
            Ok::<_, LogError>((log, producers, !report.damaged_segments.is_empty()))
        })
        .await
        .map_err(|e| e.to_string())?;
        if damaged && !single {
            self.raft.step_aside(old.id);
        }
        let hook: Arc<dyn ApplyHook> = self.shared.clone();
        let group = self.raft.open_group_with(old.id, log, self.disk.clone(), Some(hook)).await?;
        self.shared.restart_state(producers, &group);
        if let Err(e) = group.bootstrap(self.members.clone()).await {
            self.raft.close_group(&group).await;
            return Err(e);
        }
        group.campaign_if_alone().await;
        *self.group.write().unwrap_or_else(|p| p.into_inner()) = group.clone();
        Ok(group)
    }

    /// The term this replica serves produces in (it leads and has applied
    /// an entry of its term, so it holds everything committed before).
    pub fn serving_term(&self) -> Option<u64> {
        self.shared.with_state(|s| s.serving())
    }

    /// Runs `f` on the log, on a blocking thread (replays, scans).
    pub async fn read_log<T: Send + 'static>(&self, f: impl FnOnce(&PartitionLog) -> T + Send + 'static) -> Result<T, WireError> {
        let log = self.log().await?;
        Ok(blocking::run(move || f(&log)).await)
    }

    /// Reads and offsets of a replicated partition are answered by its
    /// serving leader only, and only while it holds its lease: a
    /// follower's high watermark lags (after a restart it may be far
    /// behind), and so does an isolated old leader's, which serves in its
    /// term while a newer leader commits more. A reader told a stale end
    /// would miss what was acknowledged, or, asking past it, be told its
    /// position is out of range and reset (seed 4347).
    pub fn check_leads_reads(&self) -> Result<(), WireError> {
        if !self.replicated() || (self.serving_term().is_some() && self.holds_lease()) {
            return Ok(());
        }
        Err(match self.leader().filter(|l| *l != self.node_id) {
            Some(l) => WireError::new(
                ErrorCode::NotLeader,
                format!("node {} does not lead partition {}; node {l} does: refresh metadata", self.node_id, self.id),
            ),
            None => WireError::new(
                ErrorCode::LeaderNotAvailable,
                format!("partition {} has no serving leader yet (an election is under way): retry", self.id),
            ),
        })
    }

    /// A new partition's preferred replica elects itself without waiting
    /// out an election timeout (in the background; see
    /// [`Group::campaign_until_led`]).
    pub fn lead_soon(self: &Arc<Self>, tasks: &Tasks) {
        let group = self.group();
        tasks.spawn("first-election", async move { group.campaign_until_led(10, Duration::from_millis(150)).await });
    }

    /// This replica leads and holds its lease: no other leader can exist
    /// (see [`RaftNode::holds_lease`]).
    pub fn holds_lease(&self) -> bool {
        let status = self.status();
        // Peers heard, and none of them claims this group in a newer term (a
        // leader whose disk hangs is not vouched for, and its followers elect
        // another while it still hears them).
        let group = self.group().id;
        let newer = self.raft.leader_heard(group).is_some_and(|(node, term)| node != self.node_id && term > status.term);
        status.is_leader && !newer && self.raft.holds_lease(group, status.term, &status.voters)
    }

    /// The node this replica believes leads the partition.
    pub fn leader(&self) -> Option<u64> {
        self.status().leader
    }

    /// The partition group's role and position on this replica.
    pub fn status(&self) -> crate::raft::GroupStatus {
        self.group().status()
    }

    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// Waits (up to `timeout`) until this replica serves produces; false if
    /// it does not by then (another node leads, or no election finished).
    pub async fn wait_serving(&self, timeout: Duration) -> bool {
        let mut watch = self.group().watch();
        let served = tokio::time::timeout(timeout, async {
            loop {
                if watch.serving_term().is_some() {
                    if self.shared.with_state(|s| s.serving().is_some()) {
                        return true;
                    }
                    // The role task tells the state right after the group
                    // changed, and the group may not change again.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                if !watch.changed().await {
                    return false;
                }
            }
        })
        .await;
        served.unwrap_or(false)
    }

    /// The largest producer id this partition's committed batches carry.
    pub fn max_producer_id(&self) -> Option<i64> {
        self.shared.with_state(|s| s.producers().max_producer_id())
    }

    /// The log for reading, waiting at most [`STORAGE_WAIT_MAX`].
    async fn log(&self) -> Result<OwnedMutexGuard<PartitionLog>, WireError> {
        tokio::time::timeout(STORAGE_WAIT_MAX, self.group().log().clone().lock_owned()).await.map_err(|_| self.stuck(STORAGE_WAIT_MAX))
    }

    fn stuck(&self, waited: Duration) -> WireError {
        WireError::new(
            ErrorCode::Timeout,
            format!(
                "partition {} did not answer within {} ms: its storage is slow or stuck (see the broker log); retry later (a produce is not duplicated)",
                self.id,
                waited.as_millis()
            ),
        )
    }

    /// Queues one batch and waits for its answer as `acks` asks, up to `timeout`.
    pub async fn produce(self: &Arc<Self>, batch: Bytes, acks: Acks, timeout: Duration) -> Result<Appended, WireError> {
        let batch = self.validate(batch).await?;
        self.produce_valid(batch, acks, timeout).await
    }

    /// The one validation path for a client's batch (see
    /// `weir_core::partition::validate`): CPU work (CRC, records), run on the
    /// request's own task, in parallel, outside any lock; a compressed
    /// batch's (decompression, many times a CRC's work) off the async
    /// workers, so a few of them cannot stall every connection.
    pub async fn validate(&self, batch: Bytes) -> Result<ValidBatch, WireError> {
        let max = self.batch_bytes_max;
        if weir_core::batch::is_compressed(&batch) {
            return crate::blocking::run(move || weir_core::partition::validate(batch, max)).await.map_err(produce_error);
        }
        weir_core::partition::validate(batch, max).map_err(produce_error)
    }

    /// As [`Partition::produce`], for a batch already validated.
    pub async fn produce_valid(self: &Arc<Self>, batch: ValidBatch, acks: Acks, timeout: Duration) -> Result<Appended, WireError> {
        if let Some(loss) = &self.offline {
            return Err(log_error(LogError::Offline(loss.clone())));
        }
        if let Some(fault) = self.group().storage_fault() {
            // The group stopped on this fault; it serves again after a restart.
            return Err(log_error(fault));
        }
        let status = self.group().status();
        if status.is_leader && status.voters.len() > 1 && !self.raft.hears_majority(&status.voters) {
            return Err(WireError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "partition {} cannot commit: its leader (node {}) hears fewer than a majority of its replicas {:?}; bring brokers back, then retry",
                    self.id, self.node_id, status.voters
                ),
            ));
        }
        // Admitted here, by the leader's clock: replicas append what it took.
        self.log_config.check_timestamp(batch.header(), clock::now()).map_err(log_error)?;
        let mut mode = ack_mode(acks);
        if weir_core::canary::on(self.canary, weir_core::canary::Canary::AckBeforeFsync) {
            mode = AckMode::None;
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(token, tx);
        let queued = self.shared.with_state(|s| {
            s.handle_produce(token, &batch, mode);
            s.has_queued()
        });
        if queued {
            self.propose_queued(false).await;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result.map_err(|e| self.produce_refusal(e)),
            Ok(Err(_)) => Err(WireError::new(ErrorCode::ShuttingDown, "the partition closed before the batch was committed: retry")),
            Err(_) => {
                self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
                Err(self.stuck(timeout))
            }
        }
    }

    /// The answer to a refused produce. A sequence gap is the producer's to
    /// act on (it continues under a new producer id, so the batch is sent
    /// again): answered only by a leader that holds its lease, whose
    /// producer state is exact. An old leader that does not know it was
    /// replaced judges by a state its successor moved past, and the batch
    /// it calls out of order may be stored already (seed 4557: stored twice).
    fn produce_refusal(&self, e: ProduceError) -> WireError {
        if matches!(e, ProduceError::OutOfOrder { .. }) && self.replicated() && !self.holds_lease() {
            tracing::debug!(partition = self.id, error = %e, "a sequence gap seen without the lease: answered as no leader");
            return WireError::new(
                ErrorCode::LeaderNotAvailable,
                format!("partition {}: node {} cannot confirm it still leads: retry", self.id, self.node_id),
            );
        }
        produce_error(e)
    }

    /// Reads from `offset` up to the high watermark, waiting up to `max_wait`
    /// for at least `min_bytes` (long poll). Returns the read, the high
    /// watermark and the log start.
    pub async fn fetch(
        &self,
        offset: u64,
        max_bytes: usize,
        min_bytes: usize,
        max_wait: Duration,
    ) -> Result<(ReadResult, u64, u64), WireError> {
        let mut deadline = tokio::time::Instant::now() + max_wait;
        let mut rx = self.high_watermark.clone();
        loop {
            let hw = *rx.borrow_and_update();
            let log = self.log().await?;
            let (result, start) = blocking::run(move || (log.read(offset, max_bytes, hw), log.log_start_offset())).await;
            let result = result.map_err(log_error)?;
            if result.bytes.len() >= min_bytes.max(1) || tokio::time::Instant::now() >= deadline {
                return Ok((result, hw, start));
            }
            let woke = tokio::time::timeout(deadline.saturating_duration_since(tokio::time::Instant::now()), rx.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                // Closed or timed out: the next pass answers with what there is.
                deadline = tokio::time::Instant::now();
            }
        }
    }

    /// (log start, high watermark): what a reader can see.
    pub async fn offsets(&self) -> Result<(u64, u64), WireError> {
        let start = self.log().await?.log_start_offset();
        Ok((start, self.high_watermark()))
    }

    /// The largest record timestamp and the batch holding it, below the
    /// high watermark (`None`: nothing readable).
    pub async fn max_timestamp_batch(&self) -> Result<Option<(i64, u64)>, WireError> {
        let log = self.log().await?;
        let hw = self.high_watermark();
        Ok(log.max_timestamp_batch().filter(|(_, at)| *at < hw))
    }

    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>, WireError> {
        let log = self.log().await?;
        blocking::run(move || log.offset_for_timestamp(ts)).await.map_err(log_error)
    }

    pub async fn describe(&self) -> PartitionDescription {
        let status = self.group().status();
        let mut d = PartitionDescription {
            partition: self.id,
            leader: status.leader,
            replicas: if status.voters.is_empty() { vec![self.node_id] } else { status.voters.clone() },
            log_start_offset: 0,
            log_end_offset: 0,
            high_watermark: self.high_watermark(),
            size_bytes: 0,
            segments: 0,
            offline: None,
        };
        match self.log().await {
            Ok(log) => {
                d.log_start_offset = log.log_start_offset();
                d.log_end_offset = log.log_end_offset();
                d.size_bytes = log.size_bytes();
                d.segments = log.segment_count() as u32;
                d.offline = log.loss().map(|l| l.to_string());
            }
            Err(e) => d.offline = Some(e.message),
        }
        d
    }

    /// Runs retention on this partition's log (whole sealed segments; the
    /// Raft entries in them are recorded as purged first). A leader keeps
    /// what a follower it heard lately has not received yet (a follower
    /// behind the leader's log start is sent a snapshot and then the whole
    /// retained log: more to send). With several voters the segments are
    /// not deleted here: openraft purges their entries, and the log store
    /// deletes them, once no replication reads them (see
    /// [`Group::note_purged`]); deleting them first let a replication read
    /// skip the hole, and a follower given entries that did not follow on
    /// panicked.
    pub async fn apply_retention(&self) {
        let behind: Vec<Option<u64>> =
            self.group().matched().into_iter().filter(|(node, _)| self.raft.heard_lately(*node)).map(|(_, index)| index).collect();
        // A partition whose storage is stuck is skipped until the next pass.
        let Ok(log) = self.log().await else {
            tracing::warn!(partition = self.id, "retention skipped: the partition's storage is not answering");
            return;
        };
        let replicated = self.replicated();
        let purged = blocking::run(move || {
            let mut log = log;
            // The offset after the least a live follower holds (0 if it is
            // unknown: nothing goes).
            let keep_from = behind
                .iter()
                .map(|index| match index {
                    Some(i) => log.entry_heads(*i..*i + 1, 1).ok().and_then(|h| h.first().map(|e| e.next_offset)).unwrap_or(0),
                    None => 0,
                })
                .min()
                .unwrap_or(u64::MAX);
            if replicated {
                // openraft deletes them when no replication reads them.
                return log.retention_purge_point(clock::now(), keep_from);
            }
            match log.apply_retention_below(clock::now(), keep_from) {
                Ok(r) if r.segments_deleted > 0 => {
                    tracing::info!(dir = %log.dir().display(), segments = r.segments_deleted, bytes = r.bytes_deleted, "retention deleted segments");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(dir = %log.dir().display(), error = %e, "retention failed"),
            }
            None
        })
        .await;
        if let Some(upto) = purged {
            self.group().note_purged(upto).await;
        }
    }

    /// Bytes held.
    pub async fn size_bytes(&self) -> Result<u64, WireError> {
        Ok(self.log().await?.size_bytes())
    }

    /// Runs `f` on the log on a blocking thread, holding its lock.
    async fn with_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, WireError> {
        let log = self.group().log().clone().lock_owned().await;
        blocking::run(move || {
            let mut log = log;
            f(&mut log)
        })
        .await
        .map_err(log_error)
    }

    /// Starts a new segment at the log end and returns its base offset.
    pub async fn roll_now(&self) -> Result<u64, WireError> {
        self.with_log(|log| log.roll(clock::now()).map(|()| log.log_end_offset())).await
    }

    /// Deletes whole segments that end at or before `offset` (committed
    /// records only: the caller's to know); the bytes freed. In a group of
    /// several voters openraft deletes them, as for retention, once no
    /// replication reads them: the bytes it is asked to free.
    pub async fn purge_before(&self, offset: u64) -> Result<u64, WireError> {
        if self.replicated() {
            let (upto, bytes) = self.read_log(move |log| (log.prefix_purge_point(offset), log.prefix_bytes(offset))).await?;
            if let Some(upto) = upto {
                self.group().note_purged(upto).await;
            }
            return Ok(bytes);
        }
        self.with_log(move |log| log.purge_prefix(offset).map(|r| r.bytes_deleted)).await
    }

    /// Stops the proposer and role watcher and the group; waiters are
    /// answered at once.
    pub fn close(self: &Arc<Self>) {
        self.stop_serving();
        let p = self.clone();
        tokio::spawn(async move { p.raft.close_group(&p.group()).await });
    }

    /// As [`Partition::close`], returning once the group has stopped (its
    /// log changes no more).
    pub async fn close_and_wait(self: &Arc<Self>) {
        self.stop_serving();
        self.raft.close_group(&self.group()).await;
    }

    fn stop_serving(&self) {
        let _ = self.closed.send(true);
        self.shared.wake_proposer.notify_one();
    }

    /// Hands everything queued to the group as one entry, then again while
    /// permits last ([`PROPOSALS_IN_FLIGHT_MAX`]; one entry until applied
    /// for a group whose only voter is this node; with several voters, a
    /// further entry only for [`PIPELINE_BYTES_MIN`]). One proposer at a time,
    /// so entries go in the order their offsets were predicted. A produce
    /// calls it with `wait` false and so proposes its own batch without a
    /// task switch when nothing is in flight; whatever it leaves queued goes
    /// when a permit comes back, which wakes the proposer task.
    async fn propose_queued(self: &Arc<Self>, wait: bool) {
        let proposing = if wait {
            self.proposing.lock().await
        } else {
            match self.proposing.try_lock() {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        loop {
            let alone = self.group().alone();
            let permits = if alone { PROPOSALS_IN_FLIGHT_MAX } else { 1 };
            let busy = self.in_flight.available_permits() < PROPOSALS_IN_FLIGHT_MAX as usize;
            if busy && !alone && self.shared.with_state(|s| s.queued_bytes()) < PIPELINE_BYTES_MIN {
                break; // proposed when the entry in flight comes back
            }
            let Ok(permit) = self.in_flight.clone().try_acquire_many_owned(permits) else { break };
            let Some(proposal) = self.shared.with_state(|s| s.take_proposal(self.batch_bytes_max)) else {
                // Nothing queued, with a permit free: a produce queued from
                // now until the lock is dropped finds it held and leaves its
                // batch to the proposer, and perhaps no entry is in flight
                // to wake it when it comes back. Wake it now if so (a
                // single message stood queued until its producer's 30 s
                // timeout sent it again).
                drop(permit);
                drop(proposing);
                if self.shared.with_state(|s| s.has_queued() && s.serving().is_some()) {
                    self.shared.wake_proposer.notify_one();
                }
                return;
            };
            // A single voter's permits wait where the apply hook finds
            // them (before the entry can become durable).
            let permit = if alone {
                *self.shared.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((proposal.next_offset, permit));
                None
            } else {
                Some(permit)
            };
            let submitted = self.group().submit(proposal.batches.clone()).await;
            let p = self.clone();
            // A storage fault stops the group: answer with the fault itself
            // (a full disk is StorageFull, not a generic failure).
            let fail = move |p: &Partition, proposal: &Proposal, e: ProduceError| {
                let e = match (e, p.group().storage_fault()) {
                    (ProduceError::Log(LogError::Failed(_)), Some(fault)) => ProduceError::Log(fault),
                    (e, _) => e,
                };
                p.shared.with_state(|s| s.handle_proposal_failed(proposal, e))
            };
            match submitted {
                Err(e) => {
                    drop(permit);
                    self.release_held(proposal.next_offset);
                    fail(self, &proposal, propose_error(e))
                }
                Ok(commit) => {
                    tokio::spawn(async move {
                        let committed = commit.await;
                        // Committed (or failed): the permits go back, unless
                        // the apply hook gave a single voter's back already.
                        drop(permit);
                        p.release_held(proposal.next_offset);
                        match committed {
                            // Longer where batches joined it as it was written.
                            Ok(a) if a.base_offset == proposal.base_offset && a.next_offset >= proposal.next_offset => {}
                            Ok(a) => {
                                tracing::error!(
                                    predicted = ?(proposal.base_offset, proposal.next_offset),
                                    committed = ?(a.base_offset, a.next_offset),
                                    "an entry committed at other offsets than predicted: the partition stops serving until it leads again"
                                );
                                fail(&p, &proposal, ProduceError::NotLeader { leader: None });
                            }
                            Err(e) => fail(&p, &proposal, propose_error(e)),
                        }
                    });
                }
            }
        }
    }

    /// Gives back a single voter's permits held for the entry ending at
    /// `end`, if the apply hook has not, and wakes the proposer.
    fn release_held(&self, end: u64) {
        let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref().is_some_and(|(e, _)| *e == end) {
            *held = None;
        }
        drop(held);
        self.shared.wake_proposer.notify_one();
    }

    /// Hands this replica's leadership to voter `target` within `timeout`
    /// (see [`RaftNode::hand_off`]): entries in flight commit and are
    /// answered first; what produces queue meanwhile is proposed here if the
    /// hand-off fails, else answered `NotLeader` and retried at the new
    /// leader.
    pub async fn hand_off(self: &Arc<Self>, target: u64, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Holding every permit keeps the proposer from putting another entry
        // in flight: the target must not chase new entries.
        let permits = tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            self.in_flight.clone().acquire_many_owned(PROPOSALS_IN_FLIGHT_MAX),
        )
        .await
        .map_err(|_| format!("entries of partition {} still in flight after {timeout:?}", self.id))?
        .map_err(|e| e.to_string())?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = self.raft.hand_off(&self.group(), target, left).await;
        drop(permits);
        self.shared.wake_proposer.notify_one();
        result
    }

    /// Whom to hand this replica's leadership to: `preferred` if it is
    /// another voter, heard lately, else the voter heard lately that holds
    /// the most of the log; `None` if this node does not lead, or leads alone.
    pub fn hand_off_target(&self, preferred: Option<u64>) -> Option<u64> {
        let group = self.group();
        let status = group.status();
        if !status.is_leader || status.voters.len() < 2 {
            return None;
        }
        let candidates: Vec<(u64, Option<u64>)> =
            group.matched().into_iter().filter(|(n, _)| *n != self.node_id && self.raft.heard_lately(*n)).collect();
        if let Some(p) = preferred.filter(|p| candidates.iter().any(|(n, _)| n == p)) {
            return Some(p);
        }
        candidates.into_iter().max_by_key(|(n, matched)| (*matched, std::cmp::Reverse(*n))).map(|(n, _)| n)
    }

    /// Whether this replica leads its group (with other voters) and `node`,
    /// another voter, holds the whole log and was heard lately.
    pub fn leads_and_caught_up(&self, node: u64) -> bool {
        let group = self.group();
        let status = group.status();
        status.is_leader
            && node != self.node_id
            && status.voters.contains(&node)
            && self.raft.heard_lately(node)
            && group.matched().get(&node).copied().flatten() == status.last_log_index
    }

    /// This replica's log turned out damaged: it steps aside (see
    /// [`RaftNode::step_aside`]), so a healthy replica leads.
    pub fn step_aside(&self) {
        self.raft.step_aside(self.group().id);
    }

    /// Final flush and checkpoint, for shutdown: everything committed is
    /// durable already; this makes the recovery point exact.
    pub async fn flush_now(&self) -> Result<u64, WireError> {
        self.with_log(|log| {
            if log.loss().is_some() {
                return Ok(log.flushed_offset());
            }
            let flushed = log.flush()?;
            log.sync_checkpoint()?;
            Ok(flushed)
        })
        .await
    }
}

/// Proposes whatever arrives while no entry can go (see
/// [`Partition::propose_queued`]): woken when an entry's permit comes back.
async fn proposer(p: Arc<Partition>, mut stop: watch::Receiver<bool>) {
    let mut closed = p.closed.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = crate::tasks::stopped(&mut closed) => break,
            _ = crate::tasks::stopped(&mut stop) => break,
            _ = p.shared.wake_proposer.notified() => {}
        }
        p.propose_queued(true).await;
    }
    // Closed (topic deleted, broker stopping): whoever still waits is told
    // at once (`ShuttingDown`), not left to time out.
    p.shared.waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Tells the state whether this replica may serve produces, and opens the
/// group again when a storage fault stopped it (after a pause that doubles
/// while reopening fails or the fault recurs at once, up to
/// [`REOPEN_PAUSE_MAX`]).
async fn role(p: Arc<Partition>, mut stop: watch::Receiver<bool>) {
    let mut closed = p.closed.subscribe();
    let mut group = p.group();
    let mut watch = group.watch();
    let mut pause = REOPEN_PAUSE_MIN;
    loop {
        if group.stopped() && p.offline.is_some() {
            // An offline log (recovery found a loss) stopped its group at its
            // first append: nothing to reopen until an operator accepts the
            // loss. Wait for the close, not in a loop on the dead watch.
            p.shared.with_state(|s| s.handle_role(None));
            if p.replicated() {
                p.raft.step_aside(group.id);
            }
            tokio::select! {
                biased;
                _ = crate::tasks::stopped(&mut closed) => {}
                _ = crate::tasks::stopped(&mut stop) => {}
            }
            break;
        }
        if group.stopped() && p.offline.is_none() {
            p.shared.with_state(|s| s.handle_role(None));
            if p.replicated() && group.storage_fault().is_none() {
                // Stopped by what it read (corruption), not by a failed write:
                // its peers hold the data intact, so they lead from now on.
                p.raft.step_aside(group.id);
            }
            tracing::warn!(partition = p.id, group = group.id, fault = ?group.storage_fault(), pause_ms = pause.as_millis() as u64, "the partition's group stopped on a storage fault: opening it again");
            tokio::select! {
                biased;
                _ = crate::tasks::stopped(&mut closed) => break,
                _ = crate::tasks::stopped(&mut stop) => break,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(REOPEN_PAUSE_MAX);
            match p.reopen_group(&group).await {
                Ok(g) => {
                    group = g;
                    watch = group.watch();
                }
                Err(e) => tracing::error!(partition = p.id, error = %e, "cannot open the partition's group again: trying later"),
            }
            continue;
        }
        let term = watch.serving_term();
        if term.is_some() {
            pause = REOPEN_PAUSE_MIN;
        }
        let status = group.status();
        // With other voters, serve only once every entry in the log is
        // applied. After a failed proposal the state stops serving while the
        // group still leads in that term, and entries of the term may still
        // be in flight: serving again at once would start from an applied
        // table without them (a retry of one would be appended twice) and a
        // log end past the commit point.
        let in_flight = status.voters.len() > 1 && status.last_applied != status.last_log_index;
        if p.shared.with_state(|s| s.serving()) != term && !(term.is_some() && in_flight) {
            // Leading: the next batch lands at the log end.
            let end = match term {
                Some(_) => match p.log().await {
                    Ok(log) => log.log_end_offset(),
                    Err(_) => continue,
                },
                None => 0,
            };
            p.shared.with_state(|s| s.handle_role_at(term, end));
        }
        if term.is_some() && p.shared.with_state(|s| s.serving()).is_none() {
            // Waiting for the applied end: wake on every entry.
            watch.watch_all();
        }
        tokio::select! {
            biased;
            _ = crate::tasks::stopped(&mut closed) => break,
            _ = crate::tasks::stopped(&mut stop) => break,
            // Gone: stopped by a fault (opened again above), or closed.
            alive = watch.changed() => if !alive && !group.stopped() { break },
        }
    }
    p.shared.with_state(|s| s.handle_role(None));
}

/// The first pause before a stopped group is opened again, and the longest.
const REOPEN_PAUSE_MIN: Duration = Duration::from_secs(1);
const REOPEN_PAUSE_MAX: Duration = Duration::from_secs(30);

/// The producer table of what this replica has applied: everything on disk
/// for a group whose only voter is this node (durable is committed), else
/// only up to the saved committed entry; openraft applies the rest again
/// and the apply hook records it.
fn rebuild_applied_producers(log: &PartitionLog, single_voter: bool) -> Result<weir_core::producer::ProducerTable, LogError> {
    if single_voter {
        return weir_core::partition::rebuild_producers(log);
    }
    let end = match log.committed()? {
        Some(c) => log.entry_heads(c.index..c.index + 1, 1)?.first().map_or(0, |e| e.next_offset),
        None => 0,
    };
    weir_core::partition::rebuild_producers_to(log, end)
}

/// Rewrites a stored vote that made this node the term's leader as a plain
/// vote for itself, so openraft does not resume leadership from it when the
/// group opens (a replica that failed, or whose log is damaged, must not
/// lead without winning an election). Still a vote for itself in that term:
/// it grants no other candidate that term, so safety is unchanged.
pub fn give_up_leadership(log: &mut PartitionLog, me: u64) -> Result<(), LogError> {
    if let Some(v) = log.vote().filter(|v| v.committed && v.node.map(u64::from) == Some(me)) {
        log.save_vote(weir_core::log::Vote { committed: false, ..v })?;
    }
    Ok(())
}

/// Opens a replica's log: as [`open_single_voter_log`] if this node is the
/// group's only voter; otherwise as recovery left it, since entries past a
/// hole may be uncommitted and only the group can say which.
pub fn open_replica_log(
    disk: Arc<dyn Disk>,
    dir: &std::path::Path,
    config: weir_core::log::LogConfig,
    single_voter: bool,
) -> Result<(PartitionLog, weir_core::log::RecoveryReport), LogError> {
    if single_voter {
        return open_single_voter_log(disk, dir, config);
    }
    PartitionLog::open(disk, dir, config, clock::now())
}

/// Opens the log of a group whose only voter is this node. Its Raft
/// entries start after the last hole damage left in them
/// ([`PartitionLog::purge_past_damage`]): a damaged old segment or an
/// accepted loss must not keep the group from starting.
pub fn open_single_voter_log(
    disk: Arc<dyn Disk>,
    dir: &std::path::Path,
    config: weir_core::log::LogConfig,
) -> Result<(PartitionLog, weir_core::log::RecoveryReport), LogError> {
    let (mut log, report) = PartitionLog::open(disk, dir, config, clock::now())?;
    log.purge_past_damage(&report.damaged_segments)?;
    Ok((log, report))
}
