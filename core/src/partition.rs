//! One partition's meaning, as a pure state machine: the log, the
//! idempotent-producer table, the high watermark and the acknowledgements
//! waiting for durability. The node feeds it inputs and drains its outputs;
//! it performs no waiting and reads no clock (quinn-proto style).
//!
//! Inputs, in any order:
//! - [`PartitionState::handle_produce`]: validates a client's batch once,
//!   answers retries from the producer table, appends new data (to the page
//!   cache) and queues the acknowledgement;
//! - [`PartitionState::handle_flushed`]: a flush made everything below an
//!   offset durable on this node;
//! - [`PartitionState::handle_committed`]: the seam for replication: a
//!   majority holds everything below an offset. A single node never calls it,
//!   and then committed means flushed.
//!
//! Outputs: [`PartitionState::poll_ack`] yields each produce's answer once
//! its mode allows (at once for [`AckMode::None`]; once flushed for
//! [`AckMode::Leader`]; once below the high watermark for [`AckMode::All`]),
//! in the order they became due. Call `poll_ack` after every input.
//!
//! The contract, asserted here: nothing is acknowledged (with `Leader` or
//! `All`) above the durable point; the high watermark never moves back and
//! never passes the flushed offset on this node; a retry is answered with
//! the offsets of the batch it repeats, once that batch is durable.

use crate::Timestamp;
use crate::batch::{BatchHeader, RecordBatch};
use crate::log::{LogError, PartitionLog};
use crate::producer::{ProducerTable, SequenceCheck};
use bytes::Bytes;
use std::collections::VecDeque;
use thiserror::Error;

/// Bytes read back at start to rebuild the producer table: the newest part of
/// the log, where any batch a producer could still be retrying lives.
pub const PRODUCER_REBUILD_BYTES_MAX: u64 = 256 << 20;

/// When a produce is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Once appended, before it is durable.
    None,
    /// Once durable on this node.
    Leader,
    /// Once committed (a single node: durable on it).
    All,
}

/// Where a produce landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub next_offset: u64,
    /// A retry of a stored batch, answered with its original offsets.
    pub duplicate: bool,
}

/// Why a produce was refused. [`ProduceError::is_storage_fault`] separates
/// the storage's faults from the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProduceError {
    /// The batch is larger than the partition accepts.
    #[error("batch of {size} bytes exceeds the partition's limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The bytes are not one valid record batch.
    #[error("{0}")]
    InvalidBatch(String),
    /// Clients may not write control batches.
    #[error("clients cannot write control batches")]
    ControlBatch,
    /// A sequence gap or reordering.
    #[error("producer {producer_id} expected sequence {expected}, got {got}: restart the producer")]
    OutOfOrder { producer_id: i64, expected: i32, got: i32 },
    /// A newer instance of the producer exists.
    #[error("producer {producer_id} epoch {got} was fenced by epoch {current_epoch}")]
    Fenced { producer_id: i64, current_epoch: i16, got: i16 },
    /// The sequences of a stored batch with other bytes: two producers hold one id.
    #[error(
        "producer {producer_id} sequence {sequence} is already stored at offset {base_offset} with different bytes: another producer holds this id; restart the producer for a new id (nothing was stored)"
    )]
    Collision { producer_id: i64, sequence: i32, base_offset: u64 },
    /// The log refused or failed (see [`LogError`]).
    #[error(transparent)]
    Log(#[from] LogError),
}

impl ProduceError {
    /// True for faults of the storage rather than of the request.
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, ProduceError::Log(e) if e.is_storage_fault())
    }
}

/// A client batch that passed [`validate`]: parsed once, its header kept.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl ValidBatch {
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
}

/// The one validation path for a client's batch: size, framing, CRC,
/// records, and no control batches. Pure and stateless, so callers may run
/// it in parallel, outside any lock, before [`PartitionState::handle_produce`].
pub fn validate(batch: Bytes, batch_bytes_max: usize) -> Result<ValidBatch, ProduceError> {
    if batch.len() > batch_bytes_max {
        return Err(ProduceError::TooLarge { size: batch.len(), max: batch_bytes_max });
    }
    let (decoded, rest) = RecordBatch::decode(&batch, batch_bytes_max).map_err(|e| ProduceError::InvalidBatch(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProduceError::InvalidBatch("a produce request carries exactly one record batch".to_owned()));
    }
    decoded.validate().map_err(|e| ProduceError::InvalidBatch(e.to_string()))?;
    let header = *decoded.header();
    if header.is_control() {
        return Err(ProduceError::ControlBatch);
    }
    Ok(ValidBatch { bytes: batch, header })
}

/// A produce's answer, for the request that `token` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub token: u64,
    pub result: Result<Appended, ProduceError>,
}

#[derive(Debug)]
struct Pending {
    token: u64,
    mode: AckMode,
    appended: Appended,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PartitionState {
    log: PartitionLog,
    producers: ProducerTable,
    /// Below this, durable on this node.
    flushed: u64,
    /// Below this, committed by replication; `None` on a single node.
    committed: Option<u64>,
    high_watermark: u64,
    /// Waiting for durability, in append order (so in offset order).
    pending: VecDeque<Pending>,
    ready: VecDeque<Ack>,
}

impl PartitionState {
    /// Wraps an opened log and rebuilds the producer table from it.
    pub fn new(log: PartitionLog) -> Result<PartitionState, LogError> {
        let flushed = log.flushed_offset();
        let mut state = PartitionState {
            log,
            producers: ProducerTable::default(),
            flushed,
            committed: None,
            high_watermark: flushed,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
        };
        state.rebuild()?;
        Ok(state)
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The log, for operations that do not change what is acknowledged
    /// (flush jobs, retention, rolls).
    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn producers(&self) -> &ProducerTable {
        &self.producers
    }

    /// Replays the newest batches' producer fields into a fresh table: after
    /// open, or after the log was truncated.
    pub fn rebuild(&mut self) -> Result<(), LogError> {
        self.producers = ProducerTable::default();
        let log = &self.log;
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
                // A damaged old batch must not keep the partition from opening:
                // its producers' state is skipped (at worst one of them must
                // restart with a new id) and reads of it keep reporting it.
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
            for batch in crate::batch::decode_all(r.bytes, usize::MAX).map_while(Result::ok) {
                self.producers.record(batch.header(), batch.base_offset());
            }
            offset = r.next_offset;
        }
        Ok(())
    }

    /// Deduplicates and appends one validated client batch; its answer
    /// comes out of [`PartitionState::poll_ack`].
    pub fn handle_produce(&mut self, token: u64, batch: &ValidBatch, mode: AckMode, now: Timestamp) {
        let result = self.produce(batch, now);
        // A roll syncs the sealed segment: what it covered is durable now.
        if self.log.flushed_offset() > self.flushed {
            self.handle_flushed(self.log.flushed_offset());
        }
        match result {
            Ok(appended) => {
                // A retry of a batch not yet durable waits like the original.
                let due = match mode {
                    AckMode::None => true,
                    AckMode::Leader => appended.next_offset <= self.flushed,
                    AckMode::All => appended.next_offset <= self.high_watermark,
                };
                if due {
                    self.ready.push_back(Ack { token, result: Ok(appended) });
                } else {
                    self.pending.push_back(Pending { token, mode, appended });
                }
            }
            Err(e) => self.ready.push_back(Ack { token, result: Err(e) }),
        }
    }

    fn produce(&mut self, batch: &ValidBatch, now: Timestamp) -> Result<Appended, ProduceError> {
        let header = batch.header;
        match self.producers.check(&header) {
            SequenceCheck::Append => {
                // The log stamps the offsets (and the Raft fields): the one
                // place that knows the header layout.
                let info = self.log.append(&batch.bytes, now)?;
                let mut stamped = header;
                stamped.base_offset = info.base_offset;
                self.producers.record(&stamped, info.base_offset);
                Ok(Appended { base_offset: info.base_offset, next_offset: info.next_offset, duplicate: false })
            }
            SequenceCheck::Duplicate { base_offset, next_offset } => Ok(Appended { base_offset, next_offset, duplicate: true }),
            SequenceCheck::OutOfOrder { expected, got } => Err(ProduceError::OutOfOrder { producer_id: header.producer_id, expected, got }),
            SequenceCheck::Fenced { current_epoch, got } => {
                Err(ProduceError::Fenced { producer_id: header.producer_id, current_epoch, got })
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
                Err(ProduceError::Collision { producer_id: header.producer_id, sequence: header.base_sequence, base_offset })
            }
        }
    }

    /// Everything below `up_to` is durable on this node.
    pub fn handle_flushed(&mut self, up_to: u64) {
        assert!(up_to <= self.log.log_end_offset(), "flushed {up_to} past the log end {}", self.log.log_end_offset());
        self.flushed = self.flushed.max(up_to);
        self.advance();
    }

    /// Everything below `offset` is committed by a majority (replication).
    pub fn handle_committed(&mut self, offset: u64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
        self.advance();
    }

    /// The next answer that is due, if any.
    pub fn poll_ack(&mut self) -> Option<Ack> {
        self.ready.pop_front()
    }

    fn advance(&mut self) {
        let hw = self.committed.map_or(self.flushed, |c| c.min(self.flushed));
        assert!(hw >= self.high_watermark, "the high watermark moved back from {} to {hw}", self.high_watermark);
        self.high_watermark = hw;
        let (flushed, hw) = (self.flushed, self.high_watermark);
        // Pending answers are in offset order, but modes differ: scan all.
        let mut still = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            let durable = match p.mode {
                AckMode::None => true,
                AckMode::Leader => p.appended.next_offset <= flushed,
                AckMode::All => p.appended.next_offset <= hw,
            };
            if durable {
                self.ready.push_back(Ack { token: p.token, result: Ok(p.appended) });
            } else {
                still.push_back(p);
            }
        }
        self.pending = still;
    }

    /// Answers every waiting produce with `error` (the partition is closing
    /// or its storage failed).
    pub fn fail_pending(&mut self, error: &ProduceError) {
        for p in self.pending.drain(..) {
            self.ready.push_back(Ack { token: p.token, result: Err(error.clone()) });
        }
    }
}

#[cfg(test)]
mod tests;
