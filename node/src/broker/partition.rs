//! One partition on this broker: the plumbing around core's
//! [`PartitionState`] (which owns the log, the producer table, the high
//! watermark and the pending acknowledgements). Here live only the tasks and
//! channels: an appender that hands queued produce requests to the state in
//! one go, a flusher that gives them one shared fdatasync (group commit),
//! the watch that long-polling fetches wait on, and the error mapping onto
//! the wire.
//!
//! No disk IO runs on an async worker: every call into the state that may
//! touch a file runs on a blocking thread ([`blocking::run`]) holding the
//! state's lock, which is acquired asynchronously. A stuck disk therefore
//! holds one partition's lock and one thread, not the broker: requests to
//! that partition wait without blocking anything and time out with an error
//! that says so, and everything else keeps working.

use crate::tasks::Tasks;
use crate::{blocking, clock};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedRwLockReadGuard, RwLock, oneshot, watch};
use weir_core::disk::Disk;
use weir_core::log::{LogError, ReadResult};
use weir_core::partition::{Ack, AckMode, Appended, PartitionState, ProduceError, ValidBatch};
use weir_net::message::{Acks, PartitionDescription};
use weir_net::{ErrorCode, WireError};

/// Longest a request waits for a partition whose storage is busy (a slow
/// or stuck disk holding its lock) before it is answered with an error.
pub const STORAGE_WAIT_MAX: Duration = Duration::from_secs(10);

type Waiter = oneshot::Sender<Result<Appended, ProduceError>>;

/// A produce request waiting for the appender.
#[derive(Debug)]
struct Incoming {
    token: u64,
    batch: ValidBatch,
    mode: AckMode,
}

#[derive(Debug)]
pub struct Partition {
    pub id: u32,
    node_id: u64,
    batch_bytes_max: usize,
    state: Arc<RwLock<PartitionState>>,
    high_watermark: watch::Sender<u64>,
    incoming: Mutex<Vec<Incoming>>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    next_token: AtomicU64,
    wake_appender: Notify,
    dirty: Notify,
    closed: watch::Sender<bool>,
    /// A sync failed: the log refuses writes until the broker restarts.
    failed: AtomicBool,
    /// The log's canary (simulation builds; see `weir_core::canary`).
    canary: Option<weir_core::canary::Canary>,
    /// The disk adapter, for the latency a simulated disk charges.
    disk: Arc<dyn Disk>,
}

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

impl Partition {
    /// Wraps an opened partition state and starts its appender and flusher
    /// under the supervisor.
    /// `disk` is the adapter under the log: a simulated disk's latency is
    /// charged from it, not passed up through the log.
    pub fn start(id: u32, node_id: u64, state: PartitionState, disk: Arc<dyn Disk>, tasks: &Tasks) -> Arc<Partition> {
        let (high_watermark, _) = watch::channel(state.high_watermark());
        let (closed, _) = watch::channel(false);
        let p = Arc::new(Partition {
            id,
            node_id,
            batch_bytes_max: state.log().config().batch_bytes_max,
            canary: state.log().config().canary,
            disk,
            state: Arc::new(RwLock::new(state)),
            high_watermark,
            incoming: Mutex::default(),
            waiters: Mutex::default(),
            next_token: AtomicU64::new(1),
            wake_appender: Notify::new(),
            dirty: Notify::new(),
            closed,
            failed: AtomicBool::new(false),
        });
        tasks.spawn("appender", appender(p.clone(), tasks.signal()));
        tasks.spawn("flusher", flusher(p.clone(), tasks.signal()));
        p
    }

    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// The largest producer id this partition's recent batches carry (at
    /// start, before any request can hold the state).
    pub fn max_producer_id(&self) -> Option<i64> {
        self.state.try_read().ok().and_then(|s| s.producers().max_producer_id())
    }

    /// The state for reading, waiting at most [`STORAGE_WAIT_MAX`].
    async fn read(&self) -> Result<OwnedRwLockReadGuard<PartitionState>, WireError> {
        tokio::time::timeout(STORAGE_WAIT_MAX, self.state.clone().read_owned()).await.map_err(|_| self.stuck(STORAGE_WAIT_MAX))
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

    /// Tells long-polling fetches about a new high watermark.
    fn publish(&self, hw: u64) {
        self.high_watermark.send_if_modified(|current| {
            let moved = hw > *current;
            *current = (*current).max(hw);
            moved
        });
    }

    fn deliver(&self, acks: Vec<Ack>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for a in acks {
            if let Some(w) = waiters.remove(&a.token) {
                let _ = w.send(a.result);
            }
        }
    }

    /// Queues one batch for the appender and waits for its answer as `acks`
    /// asks, up to `timeout`.
    pub async fn produce(&self, batch: Bytes, acks: Acks, timeout: Duration) -> Result<Appended, WireError> {
        let batch = self.validate(batch)?;
        self.produce_valid(batch, acks, timeout).await
    }

    /// The one validation path for a client's batch (see
    /// `weir_core::partition::validate`): CPU work (CRC, records), run on the
    /// request's own task, in parallel, outside the lock.
    pub fn validate(&self, batch: Bytes) -> Result<ValidBatch, WireError> {
        weir_core::partition::validate(batch, self.batch_bytes_max).map_err(produce_error)
    }

    /// As [`Partition::produce`], for a batch already validated.
    pub async fn produce_valid(&self, batch: ValidBatch, acks: Acks, timeout: Duration) -> Result<Appended, WireError> {
        let mut mode = ack_mode(acks);
        if weir_core::canary::on(self.canary, weir_core::canary::Canary::AckBeforeFsync) {
            mode = AckMode::None;
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(token, tx);
        self.incoming.lock().unwrap_or_else(|p| p.into_inner()).push(Incoming { token, batch, mode });
        self.wake_appender.notify_one();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result.map_err(produce_error),
            Ok(Err(_)) => Err(WireError::new(ErrorCode::ShuttingDown, "the partition closed before the batch became durable: retry")),
            Err(_) => {
                self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
                if self.failed.load(Ordering::SeqCst) {
                    return Err(WireError::new(ErrorCode::StorageError, "the partition's disk failed before the batch became durable"));
                }
                Err(self.stuck(timeout))
            }
        }
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
        let mut rx = self.high_watermark.subscribe();
        loop {
            let hw = *rx.borrow_and_update();
            let state = self.read().await?;
            let (result, start) = blocking::run(move || (state.log().read(offset, max_bytes, hw), state.log().log_start_offset())).await;
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

    /// (log start, log end).
    pub async fn offsets(&self) -> Result<(u64, u64), WireError> {
        let s = self.read().await?;
        Ok((s.log().log_start_offset(), s.log().log_end_offset()))
    }

    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>, WireError> {
        let s = self.read().await?;
        blocking::run(move || s.log().offset_for_timestamp(ts)).await.map_err(log_error)
    }

    pub async fn describe(&self) -> PartitionDescription {
        let mut d = PartitionDescription {
            partition: self.id,
            leader: Some(self.node_id),
            replicas: vec![self.node_id],
            log_start_offset: 0,
            log_end_offset: 0,
            high_watermark: self.high_watermark(),
            size_bytes: 0,
            segments: 0,
            offline: None,
        };
        match self.read().await {
            Ok(s) => {
                let log = s.log();
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

    /// Runs retention on this partition's log.
    pub async fn apply_retention(&self) {
        // A partition whose storage is stuck is skipped until the next pass.
        let Ok(s) = tokio::time::timeout(STORAGE_WAIT_MAX, self.state.clone().write_owned()).await else {
            tracing::warn!(partition = self.id, "retention skipped: the partition's storage is not answering");
            return;
        };
        blocking::run(move || {
            let mut s = s;
            let log = s.log_mut();
            match log.apply_retention(clock::now()) {
                Ok(r) if r.segments_deleted > 0 => {
                    tracing::info!(dir = %log.dir().display(), segments = r.segments_deleted, bytes = r.bytes_deleted, "retention deleted segments");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(dir = %log.dir().display(), error = %e, "retention failed"),
            }
        })
        .await
    }

    /// Bytes held.
    pub async fn size_bytes(&self) -> Result<u64, WireError> {
        Ok(self.read().await?.log().size_bytes())
    }

    /// Runs `f` on the log on a blocking thread, holding the state's lock.
    async fn with_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut weir_core::log::PartitionLog) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, WireError> {
        let s = self.state.clone().write_owned().await;
        blocking::run(move || {
            let mut s = s;
            f(s.log_mut())
        })
        .await
        .map_err(log_error)
    }

    /// Starts a new segment at the log end and returns its base offset.
    pub async fn roll_now(&self) -> Result<u64, WireError> {
        self.with_log(|log| log.roll(clock::now()).map(|()| log.log_end_offset())).await
    }

    /// Deletes whole segments that end at or before `offset`.
    pub async fn purge_before(&self, offset: u64) -> Result<u64, WireError> {
        self.with_log(move |log| log.purge_prefix(offset).map(|r| r.bytes_deleted)).await
    }

    /// Stops the appender and flusher; waiters are released.
    pub fn close(&self) {
        let _ = self.closed.send(true);
        self.dirty.notify_one();
        self.wake_appender.notify_one();
    }

    /// Final flush and checkpoint, for shutdown.
    pub async fn flush_now(&self) -> Result<u64, WireError> {
        let s = self.state.clone().write_owned().await;
        let (flushed, acks) = blocking::run(move || {
            let mut s = s;
            if s.log().loss().is_some() {
                return (Ok(s.log().flushed_offset()), Vec::new());
            }
            let flushed = s.log_mut().flush().and_then(|f| s.log_mut().sync_checkpoint().map(|()| f));
            if let Ok(f) = flushed {
                s.handle_flushed(f);
            }
            (flushed, std::iter::from_fn(|| s.poll_ack()).collect())
        })
        .await;
        self.deliver(acks);
        let flushed = flushed.map_err(log_error)?;
        self.publish(flushed);
        Ok(flushed)
    }
}

/// Hands every queued produce request to the state in one blocking call:
/// many producers' batches share one thread handoff and one lock.
async fn appender(p: Arc<Partition>, mut stop: watch::Receiver<bool>) {
    let mut closed = p.closed.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = crate::tasks::stopped(&mut closed) => break,
            _ = crate::tasks::stopped(&mut stop) => break,
            _ = p.wake_appender.notified() => {}
        }
        loop {
            let queued = std::mem::take(&mut *p.incoming.lock().unwrap_or_else(|e| e.into_inner()));
            if queued.is_empty() {
                break;
            }
            let state = p.state.clone().write_owned().await;
            let (acks, hw) = blocking::run(move || {
                let mut s = state;
                let now = clock::now();
                for i in queued {
                    s.handle_produce(i.token, &i.batch, i.mode, now);
                }
                (std::iter::from_fn(|| s.poll_ack()).collect::<Vec<_>>(), s.high_watermark())
            })
            .await;
            // A roll during the appends makes data durable without the flusher.
            p.publish(hw);
            p.deliver(acks);
            p.dirty.notify_one();
        }
    }
    // Closed (topic deleted, broker stopping): whoever still waits is told
    // at once (`ShuttingDown`), not left to time out.
    p.waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Group commit: whenever the partition has unflushed appends, sync them all
/// with one fdatasync on a blocking thread while new appends continue, then
/// publish the new high watermark and release the answers it makes due.
async fn flusher(p: Arc<Partition>, mut stop: watch::Receiver<bool>) {
    let mut closed = p.closed.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = crate::tasks::stopped(&mut closed) => break,
            _ = crate::tasks::stopped(&mut stop) => break,
            _ = p.dirty.notified() => {}
        }
        let job = {
            // In memory only: no IO under this lock on an async worker.
            let mut s = p.state.write().await;
            // Nothing written since the last flush began (control batches
            // take no offsets, so the offsets alone cannot tell).
            if !s.log().needs_flush() {
                continue;
            }
            match s.log_mut().begin_flush() {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(error = %e, "partition cannot flush");
                    break;
                }
            }
        };
        // A simulated disk's fsync latency is paid here, delaying the acks.
        let (job, result) = blocking::run_flush(job, &*p.disk).await;
        // In memory only (the job wrote the checkpoint): inline.
        let (flushed, hw, acks) = {
            let mut s = p.state.write().await;
            let flushed = s.log_mut().complete_flush(job, result);
            match &flushed {
                Ok(up_to) => s.handle_flushed(*up_to),
                Err(e) => s.fail_pending(&ProduceError::Log(e.clone())),
            }
            (flushed, s.high_watermark(), std::iter::from_fn(|| s.poll_ack()).collect::<Vec<_>>())
        };
        p.publish(hw);
        p.deliver(acks);
        if flushed.is_err() {
            // Logged by the log; the partition refuses writes until restart.
            p.failed.store(true, Ordering::SeqCst);
            break;
        }
    }
}
