//! One partition on this broker: its log, its idempotent-producer table, the
//! high watermark (the flushed offset: what readers may see and what
//! acknowledgements wait for) and the flusher task that gives many producers
//! one shared fdatasync (group commit).

use crate::clock;
use bytes::Bytes;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use weir_core::batch::{BatchHeader, RecordBatch};
use weir_core::log::{LogError, PartitionLog, ReadResult};
use weir_core::producer::{ProducerTable, SequenceCheck};
use weir_net::message::{Acks, PartitionDescription};
use weir_net::{ErrorCode, WireError};

/// Bytes read back at start to rebuild the producer table: the newest part of
/// the log, where any batch a producer could still be retrying lives.
const PRODUCER_REBUILD_BYTES_MAX: u64 = 256 << 20;

#[derive(Debug)]
struct State {
    log: PartitionLog,
    producers: ProducerTable,
}

#[derive(Debug)]
pub struct Partition {
    pub id: u32,
    node_id: u64,
    state: RwLock<State>,
    high_watermark: watch::Sender<u64>,
    dirty: Notify,
    closed: watch::Sender<bool>,
}

/// Where a produce landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub next_offset: u64,
    pub duplicate: bool,
}

pub fn log_error(e: LogError) -> WireError {
    let code = match &e {
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::Corruption { .. } => ErrorCode::CorruptData,
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::NotBatchBoundary(_) => ErrorCode::InvalidRequest,
        LogError::Disk(weir_core::disk::DiskError::NoSpace(_)) => ErrorCode::StorageFull,
        LogError::Disk(_) | LogError::Failed(_) => ErrorCode::StorageError,
        LogError::Offline(_) => ErrorCode::PartitionOffline,
        LogError::TimestampOutOfRange { .. } => ErrorCode::InvalidTimestamp,
    };
    if matches!(code, ErrorCode::CorruptData | ErrorCode::StorageError | ErrorCode::StorageFull) {
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

impl Partition {
    /// Wraps an opened log, rebuilds the producer table from its newest
    /// batches, and starts the flusher.
    pub fn start(id: u32, node_id: u64, log: PartitionLog) -> Result<Arc<Partition>, LogError> {
        let producers = rebuild_producers(&log)?;
        let hw = log.flushed_offset();
        let (high_watermark, _) = watch::channel(hw);
        let (closed, _) = watch::channel(false);
        let p =
            Arc::new(Partition { id, node_id, state: RwLock::new(State { log, producers }), high_watermark, dirty: Notify::new(), closed });
        tokio::spawn(flusher(p.clone()));
        Ok(p)
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The largest producer id this partition's recent batches carry.
    pub fn max_producer_id(&self) -> Option<i64> {
        self.read_state().producers.max_producer_id()
    }

    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// Validates and appends one batch, then waits as `acks` asks.
    pub async fn produce(&self, batch: Bytes, acks: Acks, timeout: Duration) -> Result<Appended, WireError> {
        let max = self.read_state().log.config().batch_bytes_max;
        if batch.len() > max {
            return Err(WireError::new(
                ErrorCode::MessageTooLarge,
                format!("batch of {} bytes exceeds the partition's limit of {max} bytes", batch.len()),
            ));
        }
        let (decoded, rest) = RecordBatch::decode(&batch, max).map_err(|e| WireError::new(ErrorCode::CorruptBatch, e.to_string()))?;
        if !rest.is_empty() {
            return Err(WireError::new(ErrorCode::CorruptBatch, "a produce request carries exactly one record batch"));
        }
        decoded.validate().map_err(|e| WireError::new(ErrorCode::CorruptBatch, e.to_string()))?;
        if decoded.header().is_control() {
            return Err(WireError::new(ErrorCode::InvalidRequest, "clients cannot write control batches"));
        }
        let appended = {
            let mut state = self.write_state();
            let header: BatchHeader = *decoded.header();
            match state.producers.check(&header) {
                SequenceCheck::Append => {
                    let info = state.log.append(&batch, clock::now()).map_err(log_error)?;
                    let mut stamped = header;
                    stamped.base_offset = info.base_offset;
                    state.producers.record(&stamped, info.base_offset);
                    Appended { base_offset: info.base_offset, next_offset: info.next_offset, duplicate: false }
                }
                SequenceCheck::Duplicate { base_offset, next_offset } => Appended { base_offset, next_offset, duplicate: true },
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(WireError::new(
                        ErrorCode::OutOfOrderSequence,
                        format!("producer {} expected sequence {expected}, got {got}: restart the producer", header.producer_id),
                    ));
                }
                SequenceCheck::Collision { base_offset, stored_crc, got_crc } => {
                    tracing::error!(
                        producer_id = header.producer_id,
                        sequence = header.base_sequence,
                        base_offset,
                        stored_crc,
                        got_crc,
                        "two producers hold one producer id: refusing a batch whose sequences match a stored batch with other bytes"
                    );
                    return Err(WireError::new(
                        ErrorCode::ProducerIdCollision,
                        format!(
                            "producer {} sequence {} is already stored at offset {base_offset} with different bytes: another producer holds this id; restart the producer for a new id (nothing was stored)",
                            header.producer_id, header.base_sequence
                        ),
                    ));
                }
                SequenceCheck::Fenced { current_epoch, got } => {
                    return Err(WireError::new(
                        ErrorCode::InvalidProducerEpoch,
                        format!("producer {} epoch {got} was fenced by epoch {current_epoch}", header.producer_id),
                    ));
                }
            }
        };
        if !appended.duplicate {
            self.dirty.notify_one();
        }
        #[cfg(madsim)]
        if weir_core::canary::is(weir_core::canary::Canary::AckBeforeFsync) {
            return Ok(appended);
        }
        if acks != Acks::None {
            self.wait_durable(appended.next_offset, timeout).await?;
        }
        Ok(appended)
    }

    /// Waits until every offset below `offset` is durable.
    async fn wait_durable(&self, offset: u64, timeout: Duration) -> Result<(), WireError> {
        let mut rx = self.high_watermark.subscribe();
        let wait = rx.wait_for(|hw| *hw >= offset);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(WireError::new(ErrorCode::ShuttingDown, "the partition closed before the batch became durable: retry")),
            Err(_) => {
                if self.read_state().log.flushed_offset() < offset && self.is_failed() {
                    return Err(WireError::new(ErrorCode::StorageError, "the partition's disk failed before the batch became durable"));
                }
                Err(WireError::new(
                    ErrorCode::Timeout,
                    format!("batch not durable within {} ms: retry (it will not be duplicated)", timeout.as_millis()),
                ))
            }
        }
    }

    fn is_failed(&self) -> bool {
        self.read_state().log.is_failed()
    }

    /// Reads from `offset` up to the high watermark, waiting up to `max_wait`
    /// for at least `min_bytes` (long poll).
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
            let (result, start) = {
                let state = self.read_state();
                let r = state.log.read(offset, max_bytes, hw).map_err(log_error)?;
                (r, state.log.log_start_offset())
            };
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

    pub fn offsets(&self) -> (u64, u64) {
        let state = self.read_state();
        (state.log.log_start_offset(), state.log.log_end_offset())
    }

    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>, WireError> {
        self.read_state().log.offset_for_timestamp(ts).map_err(log_error)
    }

    pub fn describe(&self) -> PartitionDescription {
        let state = self.read_state();
        PartitionDescription {
            partition: self.id,
            leader: Some(self.node_id),
            replicas: vec![self.node_id],
            log_start_offset: state.log.log_start_offset(),
            log_end_offset: state.log.log_end_offset(),
            high_watermark: self.high_watermark(),
            size_bytes: state.log.size_bytes(),
            segments: state.log.segment_count() as u32,
            offline: state.log.loss().map(|l| l.to_string()),
        }
    }

    pub fn apply_retention(&self) {
        let mut state = self.write_state();
        match state.log.apply_retention(clock::now()) {
            Ok(r) if r.segments_deleted > 0 => {
                tracing::info!(dir = %state.log.dir().display(), segments = r.segments_deleted, bytes = r.bytes_deleted, "retention deleted segments");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(dir = %state.log.dir().display(), error = %e, "retention failed"),
        }
    }

    /// Bytes held and the log end offset.
    pub fn size_and_end(&self) -> (u64, u64) {
        let state = self.read_state();
        (state.log.size_bytes(), state.log.log_end_offset())
    }

    /// Starts a new segment at the log end and returns its base offset.
    pub fn roll_now(&self) -> Result<u64, WireError> {
        let mut state = self.write_state();
        state.log.roll(clock::now()).map_err(log_error)?;
        Ok(state.log.log_end_offset())
    }

    /// Deletes whole segments that end at or before `offset`.
    pub fn purge_before(&self, offset: u64) -> Result<u64, WireError> {
        let mut state = self.write_state();
        let r = state.log.purge_prefix(offset).map_err(log_error)?;
        Ok(r.bytes_deleted)
    }

    /// Stops the flusher after a last flush; waiters are released.
    pub fn close(&self) {
        let _ = self.closed.send(true);
        self.dirty.notify_one();
    }

    /// Final synchronous flush, for shutdown.
    pub fn flush_now(&self) -> Result<u64, WireError> {
        let mut state = self.write_state();
        if state.log.loss().is_some() {
            return Ok(state.log.flushed_offset());
        }
        let flushed = state.log.flush().map_err(log_error)?;
        state.log.sync_checkpoint().map_err(log_error)?;
        self.high_watermark.send_replace(flushed);
        Ok(flushed)
    }
}

/// Group commit: whenever the partition has unflushed appends, sync them all
/// with one fdatasync on a blocking thread while new appends continue, then
/// publish the new high watermark.
async fn flusher(p: Arc<Partition>) {
    let mut closed = p.closed.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = crate::server::stopped(&mut closed) => break,
            _ = p.dirty.notified() => {}
        }
        let job = {
            let mut state = p.write_state();
            if state.log.flushed_offset() == state.log.log_end_offset() {
                continue;
            }
            match state.log.begin_flush() {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(error = %e, "partition cannot flush");
                    break;
                }
            }
        };
        let (job, result) = crate::blocking::run(move || {
            let r = job.run();
            (job, r)
        })
        .await;
        // A simulated disk's fsync latency is paid here, delaying the acks.
        let owed = p.read_state().log.take_io_latency();
        if !owed.is_zero() {
            tokio::time::sleep(owed).await;
        }
        let flushed = {
            let mut state = p.write_state();
            state.log.complete_flush(job, result)
        };
        match flushed {
            Ok(offset) => {
                p.high_watermark.send_replace(offset);
            }
            Err(_) => break, // logged by the log; the partition refuses writes until restart
        }
    }
}

/// Replays the newest batches' producer fields into a fresh table.
fn rebuild_producers(log: &PartitionLog) -> Result<ProducerTable, LogError> {
    let mut table = ProducerTable::default();
    // An offline log serves nothing at or past its loss.
    let end = log.loss().map_or(log.log_end_offset(), |l| l.from);
    let bases = log.segment_bases();
    // Start at the oldest segment that keeps the scan within the byte budget.
    let mut from = log.log_start_offset();
    let size = log.size_bytes();
    if size > PRODUCER_REBUILD_BYTES_MAX {
        let skip = size - PRODUCER_REBUILD_BYTES_MAX;
        let avg = size / bases.len().max(1) as u64;
        let skip_segments = (skip / avg.max(1)) as usize;
        from = bases.get(skip_segments.min(bases.len() - 1)).copied().unwrap_or(from);
    }
    let mut offset = from;
    while offset < end {
        let r = match log.read(offset, 1 << 20, end) {
            Ok(r) => r,
            // A damaged old batch must not keep the broker from starting: its
            // producers' state is skipped (at worst one of them must restart
            // with a new id) and reads of it keep reporting the corruption.
            Err(e @ LogError::Corruption { .. }) => {
                tracing::error!(error = %e, "skipping a corrupt segment while rebuilding producer state");
                match bases.iter().find(|b| **b > offset) {
                    Some(next) => {
                        offset = *next;
                        continue;
                    }
                    None => break,
                }
            }
            Err(e) => return Err(e),
        };
        if r.bytes.is_empty() {
            break;
        }
        // The log verified these batches; should one still not decode, its
        // producers' state is skipped like a corrupt segment's.
        for batch in weir_core::batch::decode_all(r.bytes, usize::MAX).map_while(Result::ok) {
            table.record(batch.header(), batch.base_offset());
        }
        offset = r.next_offset;
    }
    Ok(table)
}
