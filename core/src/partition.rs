//! One partition's meaning on a replica, as a pure state machine: the
//! idempotent-producer table, the high watermark, the leader's proposals
//! and the acknowledgements waiting for commit. The log itself belongs to
//! the partition's Raft group (every replica appends what the group
//! commits); this state decides what is proposed and when a produce is
//! answered. It performs no waiting and reads no clock (quinn-proto style).
//!
//! Inputs, in any order:
//! - [`PartitionState::handle_role`]: this replica leads (and has applied
//!   an entry of its term, so everything before its term is applied) or not;
//! - [`PartitionState::handle_produce`]: a validated client batch. While
//!   leading, a retry is answered from the producer table (the applied
//!   batches plus those in flight); new data is queued for the next proposal
//!   at offsets predicted from the log end (the leader is the only writer of
//!   its term, and the log is dense). Not leading: refused as retriable;
//! - [`PartitionState::handle_role_at`]: as `handle_role`, with the log end
//!   the new leader's batches continue from;
//! - [`PartitionState::take_proposal`]: the queued batches, one entry's worth;
//!   [`PartitionState::take_more`]: what may still join the last entry taken
//!   as it is written (a single voter's group commit);
//! - [`PartitionState::handle_applied`]: an entry committed and applied, on
//!   any replica: its batches enter the producer table, the high watermark
//!   moves to its end, answers at or below it come due;
//! - [`PartitionState::handle_durable`]: only while this node is the
//!   group's only voter: its log is durable up to an offset, which is then
//!   committed too (answers come at fsync);
//! - [`PartitionState::handle_proposal_failed`]: the group did not take a
//!   proposal (leadership lost, storage failed): everything in flight is
//!   answered with the error and the replica stops serving until it leads again.
//!
//! Outputs: [`PartitionState::poll_ack`] yields each produce's answer once
//! its mode allows ([`AckMode::None`] at once, with the predicted offsets;
//! `Leader` and `All` once committed: in a Raft group both mean a majority
//! holds the batch), in the order they became due.
//!
//! The contract, checked by the unit tests and the property test: nothing is
//! acknowledged (with `Leader` or `All`) above the high watermark; the high
//! watermark never moves back; a retry is answered with the offsets of the
//! batch it repeats, once that batch is committed; an offset is never handed
//! out twice.

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
    /// At once, with the predicted offsets, before anything is durable.
    None,
    /// Once committed, as `All`: a Raft leader cannot tell "durable here"
    /// from committed in a way a client could rely on across a failover.
    Leader,
    /// Once committed (a single voter: once durable on it).
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
    /// This replica does not lead the partition (or has not yet applied
    /// its term's first entry): retriable, elsewhere or later.
    #[error("this broker does not lead the partition{}: refresh metadata and retry", leader.map(|l| format!(" (node {l} does)")).unwrap_or_default())]
    NotLeader { leader: Option<u64> },
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
    appended: Appended,
}

/// A leader's state while it serves produces in `term`.
#[derive(Debug)]
struct Serving {
    term: u64,
    /// The applied producer table plus every batch proposed since.
    producers: ProducerTable,
    /// The predicted log end: where the next proposed batch lands.
    next_offset: u64,
    /// Where the last proposal taken ends: only the entry ending there may
    /// take in more ([`PartitionState::take_more`]).
    proposed_end: u64,
}

/// Batches proposed as one entry, and where they will land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub term: u64,
    pub batches: Vec<Bytes>,
    pub base_offset: u64,
    pub next_offset: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PartitionState {
    /// Producers as the committed log has them (every replica).
    applied: ProducerTable,
    high_watermark: u64,
    serving: Option<Serving>,
    /// Batches queued for the next proposal, and their bytes.
    queued: Vec<(Bytes, u64)>,
    queued_bytes: usize,
    /// Waiting for the high watermark, in offset order.
    pending: VecDeque<Pending>,
    ready: VecDeque<Ack>,
}

/// Replays the newest batches' producer fields into a fresh table: what a
/// replica's applied producer state is after open (see
/// [`PRODUCER_REBUILD_BYTES_MAX`]).
pub fn rebuild_producers(log: &PartitionLog) -> Result<ProducerTable, LogError> {
    rebuild_producers_to(log, u64::MAX)
}

/// As [`rebuild_producers`], from batches below `end` only. A replica of a
/// group with other voters passes the end of its saved committed entry:
/// what lies past it may be an uncommitted suffix that the leader will cut
/// (its producers must not be believed), and the entries after that point
/// are recorded as they are applied.
pub fn rebuild_producers_to(log: &PartitionLog, end: u64) -> Result<ProducerTable, LogError> {
    let mut producers = ProducerTable::default();
    // An offline log serves nothing at or past its loss.
    let end = log.loss().map_or(log.log_end_offset(), |l| l.from).min(end);
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
            producers.record(batch.header(), batch.base_offset());
        }
        offset = r.next_offset;
    }
    Ok(producers)
}

impl PartitionState {
    /// A replica whose committed log ends at `high_watermark`, with the
    /// producers `applied` holds (see [`rebuild_producers`]).
    pub fn new(applied: ProducerTable, high_watermark: u64) -> PartitionState {
        PartitionState {
            applied,
            high_watermark,
            serving: None,
            queued: Vec::new(),
            queued_bytes: 0,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The committed producer state.
    pub fn producers(&self) -> &ProducerTable {
        &self.applied
    }

    /// The term this replica serves produces in, if it does.
    pub fn serving(&self) -> Option<u64> {
        self.serving.as_ref().map(|s| s.term)
    }

    /// Whether batches wait for [`PartitionState::take_proposal`].
    /// Bytes of the batches queued for the next proposal.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// This replica leads in `term` and has applied an entry of it, or
    /// (`None`) it does not lead. Losing the lead answers everything in
    /// flight with `NotLeader`: it may still commit under the next leader,
    /// and a retry is then answered from that leader's producer table.
    pub fn handle_role(&mut self, serving: Option<u64>) {
        let end = self.high_watermark;
        self.handle_role_at(serving, end);
    }

    /// As [`PartitionState::handle_role`], with the leader's log end: where
    /// its next batch lands. Everything before it is committed once the
    /// leader applied an entry of its term; it is past the high watermark
    /// only where offsets were skipped (an accepted loss continues above
    /// the damaged range), and the high watermark jumps there.
    pub fn handle_role_at(&mut self, serving: Option<u64>, log_end: u64) {
        match serving {
            Some(term) if self.serving.as_ref().is_some_and(|s| s.term == term) => {}
            Some(term) => {
                self.step_down(ProduceError::NotLeader { leader: None });
                self.high_watermark = self.high_watermark.max(log_end);
                let next_offset = self.high_watermark;
                tracing::debug!(term, next_offset, "serving");
                self.serving = Some(Serving { term, producers: self.applied.clone(), next_offset, proposed_end: next_offset });
            }
            None => self.step_down(ProduceError::NotLeader { leader: None }),
        }
    }

    fn step_down(&mut self, error: ProduceError) {
        self.serving = None;
        self.queued.clear();
        self.queued_bytes = 0;
        self.fail_pending(&error);
    }

    /// Deduplicates one validated client batch and queues it for the next
    /// proposal; its answer comes out of [`PartitionState::poll_ack`].
    pub fn handle_produce(&mut self, token: u64, batch: &ValidBatch, mode: AckMode) {
        let result = self.produce(batch);
        match result {
            Ok(appended) => {
                // A retry of a batch not yet committed waits like the original.
                if mode == AckMode::None || appended.next_offset <= self.high_watermark {
                    self.ready.push_back(Ack { token, result: Ok(appended) });
                } else {
                    self.pending.push_back(Pending { token, appended });
                }
            }
            Err(e) => self.ready.push_back(Ack { token, result: Err(e) }),
        }
    }

    fn produce(&mut self, batch: &ValidBatch) -> Result<Appended, ProduceError> {
        let Some(serving) = self.serving.as_mut() else { return Err(ProduceError::NotLeader { leader: None }) };
        let header = batch.header;
        match serving.producers.check(&header) {
            SequenceCheck::Append => {
                let base_offset = serving.next_offset;
                let next_offset = base_offset + u64::from(header.record_count);
                let mut stamped = header;
                stamped.base_offset = base_offset;
                serving.producers.record(&stamped, base_offset);
                serving.next_offset = next_offset;
                self.queued_bytes += batch.bytes.len();
                self.queued.push((batch.bytes.clone(), next_offset));
                Ok(Appended { base_offset, next_offset, duplicate: false })
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

    /// The queued batches, up to `max_bytes` of them (at least one), as one
    /// proposal, in the order they were queued.
    pub fn take_proposal(&mut self, max_bytes: usize) -> Option<Proposal> {
        let serving = self.serving.as_mut()?;
        if self.queued.is_empty() {
            return None;
        }
        let (mut n, mut bytes) = (0, 0);
        while n < self.queued.len() && (n == 0 || bytes + self.queued[n].0.len() <= max_bytes) {
            bytes += self.queued[n].0.len();
            n += 1;
        }
        let taken: Vec<(Bytes, u64)> = self.queued.drain(..n).collect();
        self.queued_bytes -= bytes;
        let next_offset = taken.last().map(|(_, next)| *next).expect("at least one");
        let records: u64 = taken.iter().map(|(b, _)| u64::from(crate::batch::BatchHeader::parse(b).map_or(0, |h| h.record_count))).sum();
        serving.proposed_end = next_offset;
        Some(Proposal {
            term: serving.term,
            batches: taken.into_iter().map(|(b, _)| b).collect(),
            base_offset: next_offset - records,
            next_offset,
        })
    }

    /// As [`PartitionState::take_proposal`], but only batches that fit in
    /// `max_bytes`, and only for the entry of `term` ending at `end` when it
    /// is the last one taken: what arrived since it was proposed may join it
    /// as it is written, sharing its write and sync, at the offsets that
    /// follow it (a later entry taken meanwhile would come before them).
    pub fn take_more(&mut self, term: u64, end: u64, max_bytes: usize) -> Option<Proposal> {
        if self.serving.as_ref().is_none_or(|s| s.term != term || s.proposed_end != end)
            || self.queued.first().is_none_or(|(b, _)| b.len() > max_bytes)
        {
            return None;
        }
        self.take_proposal(max_bytes)
    }

    /// The group did not commit `proposal` (or committed it elsewhere than
    /// predicted): stop serving, answer everything in flight with `error`.
    pub fn handle_proposal_failed(&mut self, proposal: &Proposal, error: ProduceError) {
        if self.serving.as_ref().is_some_and(|s| s.term == proposal.term) {
            tracing::debug!(term = proposal.term, base = proposal.base_offset, error = %error, "a proposal failed: not serving");
            self.step_down(error);
        }
    }

    /// An entry was committed and applied: `headers` are its data batches,
    /// stamped with their offsets; `next_offset` is where it ends.
    pub fn handle_applied(&mut self, headers: &[BatchHeader], next_offset: u64) {
        for h in headers {
            self.applied.record(h, h.base_offset);
        }
        // A single voter may have moved it ahead already (`handle_durable`).
        self.high_watermark = self.high_watermark.max(next_offset);
        if let Some(s) = &self.serving
            && s.next_offset < next_offset
        {
            // Applied past what this leader predicted: another leader's
            // entries (a stale role), so the predictions are void.
            tracing::error!(
                predicted = s.next_offset,
                applied = next_offset,
                "applied past the predicted log end: the partition stops serving until it leads again"
            );
            self.step_down(ProduceError::NotLeader { leader: None });
        }
        // Mostly in offset order, but a retry of a batch in flight queues
        // behind later ones: scan them all.
        self.release_due();
    }

    /// A group whose only voter is this replica made everything below
    /// `offset` durable: with a quorum of one, that is committed. Answers
    /// come due without waiting for the entries to be applied.
    pub fn handle_durable(&mut self, offset: u64) {
        if offset > self.high_watermark {
            self.high_watermark = offset;
            self.release_due();
        }
    }

    fn release_due(&mut self) {
        let hw = self.high_watermark;
        let mut still = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            if p.appended.next_offset <= hw {
                self.ready.push_back(Ack { token: p.token, result: Ok(p.appended) });
            } else {
                still.push_back(p);
            }
        }
        self.pending = still;
    }

    /// The next answer that is due, if any.
    pub fn poll_ack(&mut self) -> Option<Ack> {
        self.ready.pop_front()
    }

    /// Answers every waiting produce with `error` (the partition is closing,
    /// leadership moved, or its storage failed).
    pub fn fail_pending(&mut self, error: &ProduceError) {
        for p in self.pending.drain(..) {
            self.ready.push_back(Ack { token: p.token, result: Err(error.clone()) });
        }
    }
}

#[cfg(test)]
mod tests;
