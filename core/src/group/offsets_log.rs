//! The durable form of committed offsets: records in an internal partition
//! log (as Kafka's `__consumer_offsets`), one batch per commit with the
//! group as each record's key and the [`OffsetRecord`] (postcard) as its
//! value. Replaying the log from its start in order rebuilds every group's
//! offsets; a deletion (`offset: None`) removes one. Compaction writes a
//! snapshot of the live offsets after the old records and then purges
//! those, so a crash at any point replays to the same state. In a cluster
//! the snapshot is followed by a marker record ([`encode_compacted`]) naming
//! where it starts, so every replica purges its own copy of what the
//! snapshot supersedes once the marker is committed ([`last_compaction`]);
//! replay skips markers.

use super::{GroupCoordinator, OffsetRecord};
use crate::batch::{BatchBuilder, ProducerStamp, decode_all};
use crate::log::{LogError, PartitionLog};
use crate::{Now, Timestamp};
use bytes::Bytes;

/// Records per batch when writing a compaction snapshot.
pub const SNAPSHOT_RECORDS_PER_BATCH: usize = 1000;

/// The key of a compaction marker: no group can have it (group names are
/// printable), and a build without markers skips its value as unreadable.
pub const COMPACTED_KEY: &[u8] = b"\0compacted";

/// A marker saying a complete snapshot of the offsets starts at offset
/// `start`: everything before it is superseded.
pub fn encode_compacted(start: u64, now: Timestamp) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    b.push(now.as_millis(), Some(COMPACTED_KEY), Some(&start.to_le_bytes()), &[]);
    b.finish()
}

/// Where the newest snapshot named by a marker below `end` starts, if any
/// marker is there (scanning the log from its start).
pub fn last_compaction(log: &PartitionLog, end: u64) -> Result<Option<u64>, LogError> {
    let mut found = None;
    visit(log, end, |key, value, _| {
        if key == COMPACTED_KEY
            && let Ok(raw) = <[u8; 8]>::try_from(value)
        {
            found = Some(u64::from_le_bytes(raw));
        }
    })?;
    Ok(found)
}

/// Calls `f(key, value, batch base offset)` for every record of `log` from
/// its start up to `end`, in order.
fn visit(log: &PartitionLog, end: u64, mut f: impl FnMut(&[u8], &[u8], u64)) -> Result<(), LogError> {
    let mut offset = log.log_start_offset();
    while offset < end {
        let r = log.read(offset, 1 << 20, end)?;
        if r.bytes.is_empty() {
            break;
        }
        for batch in decode_all(r.bytes, usize::MAX) {
            let batch = batch?;
            for record in batch.records() {
                let record = record?;
                f(record.key.as_deref().unwrap_or_default(), record.value.as_deref().unwrap_or_default(), batch.base_offset());
            }
        }
        offset = r.next_offset;
    }
    Ok(())
}

/// One batch holding `records`, stamped `now`.
pub fn encode(records: &[OffsetRecord], now: Timestamp) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    for r in records {
        let value = postcard::to_stdvec(r).expect("offset records serialise");
        b.push(now.as_millis(), Some(r.group.as_bytes()), Some(&value), &[]);
    }
    b.finish()
}

/// What a replay found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replay {
    pub records: usize,
    /// Records whose value did not decode (skipped, and logged).
    pub unreadable: usize,
}

/// Applies every durable record of `log` to `coordinator`, in order. A log
/// with a reported loss replays up to it.
pub fn replay(coordinator: &mut GroupCoordinator, log: &PartitionLog, now: Now) -> Result<Replay, LogError> {
    let end = log.loss().map_or(log.flushed_offset(), |l| l.from.min(log.flushed_offset()));
    let mut report = Replay::default();
    visit(log, end, |key, value, base| {
        if key == COMPACTED_KEY {
            return;
        }
        match postcard::from_bytes::<OffsetRecord>(value) {
            Ok(rec) => {
                coordinator.apply(&rec, now);
                report.records += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, offset = base, "skipping an unreadable offsets record");
                report.unreadable += 1;
            }
        }
    })?;
    Ok(report)
}

/// Every live committed offset, as the records of a compaction snapshot.
pub fn snapshot(coordinator: &GroupCoordinator) -> Vec<OffsetRecord> {
    coordinator
        .groups()
        .flat_map(|g| g.offsets.iter().map(|(tp, o)| OffsetRecord { group: g.id.clone(), tp: tp.clone(), offset: Some(o.clone()) }))
        .collect()
}

/// When to compact: once the log has grown `compact_bytes` past its size
/// after the last compaction (so a large live set does not make every
/// check compact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    pub compact_bytes: u64,
    /// The log's size after the last compaction.
    pub compacted_size: u64,
}

impl CompactionPolicy {
    pub fn due(&self, log_size: u64) -> bool {
        log_size > self.compacted_size.saturating_add(self.compact_bytes)
    }

    pub fn compacted(&mut self, log_size: u64) {
        self.compacted_size = log_size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::sim::SimDisk;
    use crate::group::{CommittedOffset, CoordinatorConfig, TopicPartition};
    use crate::log::LogConfig;
    use std::path::Path;
    use std::sync::Arc;

    fn commit(group: &str, partition: u32, offset: u64) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            tp: TopicPartition::new("t", partition),
            offset: Some(CommittedOffset { offset, metadata: String::new(), commit_time: Timestamp(5) }),
        }
    }

    #[test]
    fn replay_applies_commits_and_deletions_in_log_order_and_a_snapshot_replays_the_same() {
        let disk = SimDisk::new(1);
        let dir = Path::new("/offsets");
        let (mut log, _) = PartitionLog::open(Arc::new(disk.clone()), dir, LogConfig::default(), Timestamp(0)).unwrap();
        let delete = OffsetRecord { group: "a".into(), tp: TopicPartition::new("t", 1), offset: None };
        for records in [vec![commit("a", 0, 10), commit("a", 1, 3)], vec![commit("b", 0, 7)], vec![delete, commit("a", 0, 12)]] {
            log.append(&encode(&records, Timestamp(5)), Timestamp(5)).unwrap();
        }
        log.flush().unwrap();
        let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 1);
        let report = replay(&mut c, &log, Now::at(0)).unwrap();
        assert_eq!(report, Replay { records: 5, unreadable: 0 });
        let offsets = |c: &GroupCoordinator, g: &str| -> Vec<(u32, u64)> {
            c.fetch_offsets(g, &[]).into_iter().map(|(tp, o)| (tp.partition, o.offset)).collect()
        };
        assert_eq!(offsets(&c, "a"), vec![(0, 12)], "the deletion and the later commit applied in order");
        assert_eq!(offsets(&c, "b"), vec![(0, 7)]);
        // Compaction: the snapshot after the old records, then a purge of them.
        log.roll(Timestamp(5)).unwrap();
        let start = log.log_end_offset();
        log.append(&encode(&snapshot(&c), Timestamp(6)), Timestamp(6)).unwrap();
        log.flush().unwrap();
        log.purge_prefix(start).unwrap();
        let mut again = GroupCoordinator::new(CoordinatorConfig::default(), 2);
        replay(&mut again, &log, Now::at(0)).unwrap();
        assert_eq!(offsets(&again, "a"), vec![(0, 12)]);
        assert_eq!(offsets(&again, "b"), vec![(0, 7)]);
        // A marker names where the snapshot starts, and replay skips it.
        assert_eq!(last_compaction(&log, log.log_end_offset()).unwrap(), None);
        log.append(&encode_compacted(start, Timestamp(6)), Timestamp(6)).unwrap();
        log.append(&encode_compacted(start + 1, Timestamp(6)), Timestamp(6)).unwrap();
        log.flush().unwrap();
        let marked = log.log_end_offset();
        assert_eq!(last_compaction(&log, marked).unwrap(), Some(start + 1), "the newest marker");
        assert_eq!(last_compaction(&log, marked - 1).unwrap(), Some(start), "only below the end given");
        let mut marked_replay = GroupCoordinator::new(CoordinatorConfig::default(), 2);
        assert_eq!(replay(&mut marked_replay, &log, Now::at(0)).unwrap(), Replay { records: 2, unreadable: 0 });
        // Unflushed records are not replayed: they were never acknowledged.
        log.append(&encode(&[commit("b", 0, 99)], Timestamp(7)), Timestamp(7)).unwrap();
        let mut third = GroupCoordinator::new(CoordinatorConfig::default(), 3);
        replay(&mut third, &log, Now::at(0)).unwrap();
        assert_eq!(offsets(&third, "b"), vec![(0, 7)]);
    }

    #[test]
    fn compaction_is_due_only_after_growth_past_the_threshold() {
        let mut p = CompactionPolicy { compact_bytes: 100, compacted_size: 0 };
        assert!(!p.due(100));
        assert!(p.due(101));
        p.compacted(1000);
        assert!(!p.due(1100));
        assert!(p.due(1101));
    }
}
