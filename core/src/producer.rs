//! Idempotent producer state of one partition: for each producer id, its
//! epoch and the sequence ranges of its last few batches, so that a retried
//! batch is answered with its original offset instead of being stored twice.
//!
//! Rules (as Kafka's): a batch from a newer epoch must start at sequence 0; an
//! older epoch is fenced; a batch equal to a cached one is a duplicate; any
//! other batch must start right after the last cached one. A producer the
//! table does not know must start at sequence 0; if it does not, its state
//! was lost (aged out of the rebuild window) and it must restart with a new
//! id, as with Kafka's `UNKNOWN_PRODUCER_ID`.
//!
//! A retry is answered as a duplicate only if it is the stored batch: same
//! sequences *and* the same body CRC. The same sequences with other bytes
//! mean two producers hold one id (ids handed out twice after lost
//! metadata): that is refused loudly, never acknowledged as stored.

use crate::batch::BatchHeader;
use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer: how far back a retry is recognised.
pub const CACHED_BATCHES_MAX: usize = 5;
/// Producers remembered per partition; the least recently written is
/// forgotten first, so memory stays bounded whatever clients do.
pub const PRODUCERS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
    next_offset: u64,
    /// The stored batch's body CRC: a retry carries the same one.
    crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    last_write: u64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data in order: append it.
    Append,
    /// A retry of a stored batch: answer with where it landed.
    Duplicate { base_offset: u64, next_offset: u64 },
    /// Sequence gap or reordering: refuse.
    OutOfOrder { expected: i32, got: i32 },
    /// A newer instance of this producer exists.
    Fenced { current_epoch: i16, got: i16 },
    /// The sequences of a stored batch with different bytes: two producers
    /// share this id. Refuse; acknowledging would lose the new data.
    Collision { base_offset: u64, stored_crc: u32, got_crc: u32 },
}

/// Sequence numbers wrap from `i32::MAX` to 0.
fn seq_add(seq: i32, n: u32) -> i32 {
    ((i64::from(seq) + i64::from(n)) % (i64::from(i32::MAX) + 1)) as i32
}

fn last_seq(h: &BatchHeader) -> i32 {
    seq_add(h.base_sequence, h.record_count.saturating_sub(1))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    producers: BTreeMap<i64, ProducerEntry>,
    writes: u64,
}

impl ProducerTable {
    /// Decides what to do with a batch (not yet appended).
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if h.producer_id < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0, got: h.base_sequence }
            };
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Fenced { current_epoch: entry.epoch, got: h.producer_epoch };
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0, got: h.base_sequence }
            };
        }
        let last = last_seq(h);
        if let Some(b) = entry.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last) {
            if b.crc != h.crc {
                return SequenceCheck::Collision { base_offset: b.base_offset, stored_crc: b.crc, got_crc: h.crc };
            }
            return SequenceCheck::Duplicate { base_offset: b.base_offset, next_offset: b.next_offset };
        }
        let expected = entry.batches.back().map_or(h.base_sequence, |b| seq_add(b.last_seq, 1));
        if h.base_sequence == expected { SequenceCheck::Append } else { SequenceCheck::OutOfOrder { expected, got: h.base_sequence } }
    }

    /// Remembers a batch that was appended at `base_offset` (also used when
    /// rebuilding the table from the log on start).
    pub fn record(&mut self, h: &BatchHeader, base_offset: u64) {
        if h.producer_id < 0 {
            return;
        }
        self.writes += 1;
        let writes = self.writes;
        let entry = self.producers.entry(h.producer_id).or_insert(ProducerEntry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_write: writes,
        });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_write = writes;
        // Recording a batch again (a replica re-applying entries after a
        // restart) changes nothing.
        if entry.batches.iter().any(|b| b.base_offset == base_offset && b.first_seq == h.base_sequence) {
            return;
        }
        entry.batches.push_back(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset,
            next_offset: h.next_offset(),
            crc: h.crc,
        });
        while entry.batches.len() > CACHED_BATCHES_MAX {
            entry.batches.pop_front();
        }
        if self.producers.len() > PRODUCERS_MAX {
            let oldest = self.producers.iter().min_by_key(|(_, e)| e.last_write).map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.producers.remove(&id);
            }
        }
    }

    /// Forgets batches at or after `offset` (the log lost or truncated them).
    pub fn truncate(&mut self, offset: u64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.base_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// The largest producer id the table knows: ids up to it must never be
    /// handed out again (a new producer with an old id would have its
    /// batches taken for the old one's).
    pub fn max_producer_id(&self) -> Option<i64> {
        self.producers.keys().next_back().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, ProducerStamp, RecordBatch};

    fn header(id: i64, epoch: i16, seq: i32, records: usize, base: u64) -> BatchHeader {
        let mut b = BatchBuilder::new(ProducerStamp { producer_id: id, producer_epoch: epoch, base_sequence: seq });
        for _ in 0..records {
            b.push(0, None, Some(b"v"), &[]);
        }
        let mut raw = b.finish().to_vec();
        crate::batch::stamp(&mut raw, base, crate::batch::RaftStamp::default());
        *RecordBatch::decode(&raw.into(), usize::MAX).unwrap().0.header()
    }

    #[test]
    fn retries_are_duplicates_and_gaps_are_refused() {
        let mut t = ProducerTable::default();
        let a = header(1, 0, 0, 3, 10);
        assert_eq!(t.check(&a), SequenceCheck::Append);
        t.record(&a, 10);
        assert_eq!(t.check(&a), SequenceCheck::Duplicate { base_offset: 10, next_offset: 13 });
        assert_eq!(t.check(&header(1, 0, 5, 1, 0)), SequenceCheck::OutOfOrder { expected: 3, got: 5 });
        let b = header(1, 0, 3, 2, 13);
        assert_eq!(t.check(&b), SequenceCheck::Append);
        t.record(&b, 13);
        assert_eq!(t.check(&a), SequenceCheck::Duplicate { base_offset: 10, next_offset: 13 }, "older cached batch still recognised");
        assert_eq!(t.check(&header(-1, -1, -1, 1, 0)), SequenceCheck::Append, "non-idempotent batches are never checked");
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut t = ProducerTable::default();
        t.record(&header(1, 2, 0, 1, 0), 0);
        assert_eq!(t.check(&header(1, 1, 1, 1, 0)), SequenceCheck::Fenced { current_epoch: 2, got: 1 });
        assert_eq!(t.check(&header(1, 3, 7, 1, 0)), SequenceCheck::OutOfOrder { expected: 0, got: 7 });
        assert_eq!(t.check(&header(1, 3, 0, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_few_batches_are_remembered_and_truncation_forgets() {
        let mut t = ProducerTable::default();
        for i in 0..10 {
            t.record(&header(1, 0, i, 1, i as u64), i as u64);
        }
        assert!(matches!(t.check(&header(1, 0, 9, 1, 0)), SequenceCheck::Duplicate { base_offset: 9, .. }));
        assert!(matches!(t.check(&header(1, 0, 2, 1, 0)), SequenceCheck::OutOfOrder { .. }));
        t.truncate(8);
        assert_eq!(t.check(&header(1, 0, 8, 1, 0)), SequenceCheck::Append);
        t.truncate(0);
        assert_eq!(t.check(&header(1, 0, 8, 1, 0)), SequenceCheck::OutOfOrder { expected: 0, got: 8 }, "unknown producers start at 0");
    }

    #[test]
    fn same_sequences_with_other_bytes_are_a_collision_not_a_duplicate() {
        let mut t = ProducerTable::default();
        let a = header(7, 0, 0, 2, 0);
        t.record(&a, 0);
        let mut other = a;
        other.crc ^= 1;
        assert_eq!(t.check(&other), SequenceCheck::Collision { base_offset: 0, stored_crc: a.crc, got_crc: other.crc });
        assert!(matches!(t.check(&a), SequenceCheck::Duplicate { .. }));
        assert_eq!(t.max_producer_id(), Some(7));
        t.record(&header(3, 0, 0, 1, 2), 2);
        assert_eq!(t.max_producer_id(), Some(7));
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(seq_add(i32::MAX, 1), 0);
        let mut t = ProducerTable::default();
        t.record(&header(1, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(t.check(&header(1, 0, 0, 1, 2)), SequenceCheck::Append);
    }
}
