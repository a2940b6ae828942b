//! Unit tests of the partition log and the crash model test against a plain
//! in-memory model.

use super::*;
use crate::batch::{BatchBuilder, ProducerStamp, RecordBatch, decode_all};
use crate::disk::Disk;
use crate::disk::sim::SimDisk;
use proptest::prelude::*;
use std::path::PathBuf;

const DIR: &str = "/data/topic-0";

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 2048,
        segment_age_max_ms: 0,
        index_interval_bytes: 128,
        retention_bytes: None,
        retention_ms: None,
        batch_bytes_max: 64 << 10,
        preallocate_bytes: 512,
        timestamp_after_max_ms: None,
        canary: None,
    }
}

fn batch(ts: i64, values: &[&[u8]]) -> Vec<u8> {
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    for v in values {
        b.push(ts, None, Some(v), &[]);
    }
    b.finish().to_vec()
}

fn open(disk: &SimDisk, config: LogConfig) -> (PartitionLog, RecoveryReport) {
    PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config, Timestamp(0)).unwrap()
}

/// Every record value at and after `from`, in order, reading up to the log end.
fn values_from(log: &PartitionLog, mut from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let end = log.log_end_offset();
    while from < end {
        let r = log.read(from, 300, end).unwrap();
        assert!(!r.bytes.is_empty(), "read at {from} returned nothing below the end {end}");
        for b in decode_all(r.bytes, usize::MAX) {
            let b = b.unwrap();
            for (i, rec) in b.records().enumerate() {
                let off = b.base_offset() + i as u64;
                if off >= from {
                    out.push((off, rec.unwrap().value.unwrap().to_vec()));
                }
            }
        }
        assert!(r.next_offset > from);
        from = r.next_offset;
    }
    out
}

#[test]
fn offsets_are_dense_and_reads_find_every_record_through_the_index() {
    let disk = SimDisk::new(1);
    let (mut log, _) = open(&disk, small_config());
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let n = 1 + (i % 3) as usize;
        let vals: Vec<Vec<u8>> = (0..n).map(|j| format!("v{i}-{j}").into_bytes()).collect();
        let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
        let info = log.append(&batch(i as i64, &refs), Timestamp(0)).unwrap();
        assert_eq!(info.base_offset, expected.len() as u64);
        for v in vals {
            expected.push(v);
        }
        assert_eq!(info.next_offset, expected.len() as u64);
    }
    assert!(log.segment_count() > 3, "small segments must have rolled");
    assert!(log.segments.values().all(|s| s.index_len() > 0 || s.size < 256), "sparse index maintained");
    for start in [0u64, 1, 7, 100, 250, expected.len() as u64 - 1] {
        let got = values_from(&log, start);
        let want: Vec<(u64, Vec<u8>)> = expected.iter().cloned().enumerate().skip(start as usize).map(|(i, v)| (i as u64, v)).collect();
        assert_eq!(got, want, "reading from {start}");
    }
    let end = log.log_end_offset();
    assert!(matches!(log.read(end + 1, 100, end), Err(LogError::OffsetOutOfRange { .. })));
    assert!(log.read(end, 100, end).unwrap().bytes.is_empty());
}

#[test]
fn read_respects_the_upper_bound_and_max_bytes_but_returns_one_whole_batch() {
    let disk = SimDisk::new(2);
    let (mut log, _) = open(&disk, LogConfig { segment_bytes_max: 1 << 20, ..small_config() });
    let big = vec![7u8; 1000];
    for _ in 0..5 {
        log.append(&batch(1, &[&big]), Timestamp(0)).unwrap();
    }
    let r = log.read(0, 10, 5).unwrap();
    assert_eq!(r.next_offset, 1, "one whole batch even though it exceeds max_bytes");
    let r = log.read(0, 1 << 20, 3).unwrap();
    assert_eq!(r.next_offset, 3, "nothing at or past the upper bound");
    assert!(log.read(3, 1 << 20, 3).unwrap().bytes.is_empty());
}

#[test]
fn segment_rolls_exactly_at_the_size_boundary() {
    let disk = SimDisk::new(3);
    let one = batch(0, &[b"x"]);
    let len = one.len() as u64;
    let (mut log, _) = open(&disk, LogConfig { segment_bytes_max: len * 4, ..small_config() });
    for _ in 0..4 {
        log.append(&one.clone(), Timestamp(0)).unwrap();
    }
    assert_eq!(log.segment_count(), 1, "four batches fill the segment exactly");
    log.append(&one.clone(), Timestamp(0)).unwrap();
    assert_eq!(log.segment_bases(), vec![0, 4]);
    let names = disk.list_dir(Path::new(DIR)).unwrap();
    assert!(names.contains(&"00000000000000000004.log".to_owned()), "{names:?}");
    // The sealed segment was trimmed to its data and synced.
    let sealed = disk.open(&Path::new(DIR).join("00000000000000000000.log"), false).unwrap();
    assert_eq!(sealed.len().unwrap(), len * 4);
    assert_eq!(log.flushed_offset(), 4, "sealing makes the old segment durable");
}

#[test]
fn segment_rolls_by_age() {
    let disk = SimDisk::new(4);
    let (mut log, _) = open(&disk, LogConfig { segment_age_max_ms: 1000, segment_bytes_max: 1 << 20, ..small_config() });
    log.append(&batch(0, &[b"a"]), Timestamp(0)).unwrap();
    log.append(&batch(0, &[b"b"]), Timestamp(999)).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(0, &[b"c"]), Timestamp(1000)).unwrap();
    assert_eq!(log.segment_bases(), vec![0, 2]);
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after() {
    let disk = SimDisk::new(5);
    let (mut log, _) = open(&disk, small_config());
    // Timestamps 0, 10, 20, ... with one out-of-order record.
    for i in 0..100i64 {
        let ts = if i == 50 { 5 } else { i * 10 };
        log.append(&batch(ts, &[b"0123456789"]), Timestamp(0)).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(250).unwrap(), Some(25));
    assert_eq!(log.offset_for_timestamp(495).unwrap(), Some(51), "offset 50 holds the late record");
    assert_eq!(log.offset_for_timestamp(990).unwrap(), Some(99));
    assert_eq!(log.offset_for_timestamp(991).unwrap(), None);
}

#[test]
fn torn_tail_is_cut_on_recovery_and_appends_continue() {
    let mut cut_seen = false;
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        let (mut log, _) = open(&disk, LogConfig { segment_bytes_max: 1 << 20, ..small_config() });
        for i in 0..10 {
            log.append(&batch(i, &[b"durable"]), Timestamp(0)).unwrap();
        }
        log.flush().unwrap();
        for i in 0..10 {
            log.append(&batch(i, &[b"volatile-record"]), Timestamp(0)).unwrap();
        }
        drop(log);
        disk.crash();
        let (mut log, report) = open(&disk, LogConfig { segment_bytes_max: 1 << 20, ..small_config() });
        cut_seen |= report.truncated_reason.is_some();
        let end = log.log_end_offset();
        assert!((10..=20).contains(&end), "end {end}");
        let vals = values_from(&log, 0);
        assert_eq!(vals.len() as u64, end);
        assert!(vals[..10].iter().all(|(_, v)| v == b"durable"));
        assert!(vals[10..].iter().all(|(_, v)| v == b"volatile-record"));
        let info = log.append(&batch(0, &[b"after"]), Timestamp(0)).unwrap();
        assert_eq!(info.base_offset, end);
    }
    assert!(cut_seen, "some seed must tear a write");
}

#[test]
fn corrupt_batch_in_the_middle_is_reported_not_served() {
    let disk = SimDisk::new(6);
    let config = LogConfig { segment_bytes_max: 1 << 20, ..small_config() };
    let (mut log, _) = open(&disk, config.clone());
    let one = batch(0, &[b"payload-payload-payload"]);
    let len = one.len() as u64;
    for _ in 0..20 {
        log.append(&one.clone(), Timestamp(0)).unwrap();
    }
    log.flush().unwrap();
    // Flip a bit inside batch 5's CRC-covered bytes.
    let path = Path::new(DIR).join("00000000000000000000.log");
    disk.flip_bit(&path, Some(5 * len + 50..5 * len + 60)).unwrap();
    let err = log.read(5, 1 << 20, 20).unwrap_err();
    assert!(matches!(err, LogError::Corruption { offset: 5, .. }), "{err}");
    // A read from before the fault serves the good prefix only.
    let r = log.read(0, 1 << 20, 20).unwrap();
    assert_eq!(r.next_offset, 5);
    assert!(log.read(6, 1 << 20, 20).is_ok(), "batches after the fault are still served");
}

#[test]
fn retention_deletes_whole_old_segments_and_their_files() {
    let disk = SimDisk::new(7);
    let config = LogConfig { retention_bytes: Some(4096), ..small_config() };
    let (mut log, _) = open(&disk, config);
    for i in 0..100 {
        log.append(&batch(i, &[&[1u8; 100]]), Timestamp(0)).unwrap();
    }
    let before = log.segment_count();
    let report = log.apply_retention(Timestamp(0)).unwrap();
    assert!(report.segments_deleted > 0);
    assert_eq!(log.segment_count(), before - report.segments_deleted);
    assert!(log.size_bytes() >= 4096, "never below the limit");
    let start = log.log_start_offset();
    assert!(start > 0);
    let names = disk.list_dir(Path::new(DIR)).unwrap();
    assert_eq!(names.iter().filter(|n| n.ends_with(".log")).count(), log.segment_count());
    assert!(!names.contains(&"00000000000000000000.log".to_owned()));
    assert!(!names.contains(&"00000000000000000000.index".to_owned()));
    assert!(matches!(log.read(0, 100, 100), Err(LogError::OffsetOutOfRange { .. })));
    assert_eq!(values_from(&log, start).first().map(|(o, _)| *o), Some(start));

    // By time: everything sealed is older than a day at `now`.
    let config = LogConfig { retention_ms: Some(86_400_000), ..small_config() };
    let (mut log, _) = PartitionLog::open(Arc::new(disk.clone()), Path::new("/data/t2"), config, Timestamp(0)).unwrap();
    for i in 0..50 {
        log.append(&batch(i, &[&[1u8; 100]]), Timestamp(0)).unwrap();
    }
    assert_eq!(log.apply_retention(Timestamp(1000)).unwrap().segments_deleted, 0);
    let r = log.apply_retention(Timestamp(86_400_000 + 100)).unwrap();
    assert_eq!(r.segments_deleted, log.segment_count() + r.segments_deleted - 1, "all but the active segment");
}

#[test]
fn retention_below_a_bound_keeps_every_segment_reaching_past_it() {
    let disk = SimDisk::new(17);
    let config = LogConfig { retention_bytes: Some(1), ..small_config() };
    let (mut log, _) = open(&disk, config);
    for i in 0..100 {
        log.append(&batch(i, &[&[1u8; 100]]), Timestamp(0)).unwrap();
    }
    assert!(log.segment_count() > 3);
    let keep_from = 40;
    let r = log.apply_retention_below(Timestamp(0), keep_from).unwrap();
    assert!(r.segments_deleted > 0, "segments wholly below the bound go");
    let start = log.log_start_offset();
    assert!(start > 0 && start <= keep_from, "log start {start} is not past the bound");
    assert_eq!(values_from(&log, start).first().map(|(o, _)| *o), Some(start));
    assert!(log.read(keep_from, 100, 100).is_ok(), "the bound's offset is still held");
    // Below the first segment's end: nothing at all.
    let again = log.apply_retention_below(Timestamp(0), start).unwrap();
    assert_eq!(again.segments_deleted, 0);
    // No bound: down to the active segment, as before.
    let all = log.apply_retention(Timestamp(0)).unwrap();
    assert!(all.segments_deleted > 0);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn truncate_suffix_is_durable_and_offsets_are_reused() {
    let disk = SimDisk::new(8);
    let (mut log, _) = open(&disk, small_config());
    for i in 0..60 {
        log.append(&batch(i, &[format!("a{i}").as_bytes()]), Timestamp(0)).unwrap();
    }
    log.flush().unwrap();
    assert!(matches!(log.truncate_suffix(61), Err(LogError::OffsetOutOfRange { .. })));
    log.truncate_suffix(20).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.flushed_offset(), 20);
    log.append(&batch(0, &[b"b20"]), Timestamp(0)).unwrap();
    log.flush().unwrap();
    drop(log);
    disk.crash();
    let (log, _) = open(&disk, small_config());
    let vals = values_from(&log, 0);
    assert_eq!(vals.len(), 21);
    assert_eq!(vals[20].1, b"b20");
    assert_eq!(vals[19].1, b"a19");
}

#[test]
fn damaged_index_is_rebuilt() {
    let disk = SimDisk::new(9);
    let (mut log, _) = open(&disk, LogConfig { segment_bytes_max: 1 << 20, ..small_config() });
    for i in 0..50 {
        log.append(&batch(i, &[b"0123456789"]), Timestamp(0)).unwrap();
    }
    log.flush().unwrap();
    // Sealing writes the index (an active segment's lives in memory).
    log.roll(Timestamp(0)).unwrap();
    drop(log);
    let idx = disk.open(&Path::new(DIR).join("00000000000000000000.index"), false).unwrap();
    idx.write_at(&[0xff; 16], 8).unwrap();
    idx.sync_data().unwrap();
    let (log, _) = open(&disk, LogConfig { segment_bytes_max: 1 << 20, ..small_config() });
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(values_from(&log, 33).len(), 17);
}

#[test]
fn failed_sync_poisons_the_log_until_reopened() {
    let disk = SimDisk::new(10);
    let (mut log, _) = open(&disk, small_config());
    log.append(&batch(0, &[b"x"]), Timestamp(0)).unwrap();
    disk.set_faults(crate::disk::sim::FaultConfig { sync_error: 1.0, ..Default::default() });
    assert!(log.flush().is_err());
    assert!(matches!(log.append(&batch(0, &[b"y"]), Timestamp(0)), Err(LogError::Failed(_))));
    assert_eq!(log.flushed_offset(), 0);
}

#[test]
fn control_batches_take_no_offsets() {
    let disk = SimDisk::new(11);
    let (mut log, _) = open(&disk, small_config());
    let id = |index| LogId { term: 3, node: 1, index };
    log.append_entry(id(1), &[&batch(0, &[b"a"])], Timestamp(0)).unwrap();
    let control = BatchBuilder::control(0).to_vec();
    let info = log.append_entry(id(2), &[&control], Timestamp(0)).unwrap();
    assert_eq!((info.base_offset, info.next_offset), (1, 1));
    log.append_entry(id(3), &[&batch(0, &[b"b"])], Timestamp(0)).unwrap();
    assert_eq!(values_from(&log, 1), vec![(1, b"b".to_vec())]);
    let r = log.read(0, 1 << 20, 2).unwrap();
    let batches: Vec<RecordBatch> = decode_all(r.bytes, usize::MAX).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[1].header().raft_index, 2);
    assert_eq!(batches[1].header().leader_epoch, 3);
    assert_eq!(batches[1].base_offset(), batches[2].base_offset(), "a control batch shares the next batch's offset");
}

// ---- crash model test ----

#[derive(Debug, Clone)]
enum Op {
    Append { records: u8, size: u16, ts_jitter: i8 },
    Flush,
    Read { at: u16 },
    Roll,
    Retention,
    Truncate { at: u16 },
    TimeLookup { ts: u16 },
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..6, 0u16..300, any::<i8>()).prop_map(|(records, size, ts_jitter)| Op::Append { records, size, ts_jitter }),
        3 => Just(Op::Flush),
        3 => any::<u16>().prop_map(|at| Op::Read { at }),
        1 => Just(Op::Roll),
        1 => Just(Op::Retention),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|ts| Op::TimeLookup { ts }),
        2 => Just(Op::CrashReopen),
    ]
}

/// A batch as the model remembers it: its offsets, record values and
/// timestamps, and its exact stored bytes.
#[derive(Debug, Clone)]
struct ModelBatch {
    base: u64,
    values: Vec<(i64, Vec<u8>)>,
    bytes: Vec<u8>,
}

impl ModelBatch {
    fn next(&self) -> u64 {
        self.base + self.values.len() as u64
    }
}

fn model_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 3000,
        segment_age_max_ms: 0,
        index_interval_bytes: 200,
        retention_bytes: Some(6000),
        retention_ms: None,
        batch_bytes_max: 64 << 10,
        preallocate_bytes: 1024,
        timestamp_after_max_ms: None,
        canary: None,
    }
}

fn check_matches(log: &PartitionLog, model: &[ModelBatch]) -> Result<(), TestCaseError> {
    let start = log.log_start_offset();
    let mut offset = start;
    let end = log.log_end_offset();
    prop_assert_eq!(end, model.last().map_or(start, |b| b.next()));
    let mut expected = model.iter().filter(|b| b.next() > start || b.values.is_empty() && b.base >= start);
    while offset < end {
        let r = log.read(offset, 1 << 20, end).unwrap();
        for batch in decode_all(r.bytes, usize::MAX) {
            let batch = batch.unwrap();
            let want = expected.next().expect("log holds a batch the model does not");
            prop_assert_eq!(batch.as_bytes().as_ref(), want.bytes.as_slice(), "batch at {} differs", want.base);
        }
        offset = r.next_offset;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// After every crash and reopen, everything flushed is present and
    /// byte-identical, whatever survived beyond it is a prefix of what was
    /// appended, nothing else appears, and offsets stay dense.
    #[test]
    fn log_matches_model_across_crashes(seed: u64, ops in proptest::collection::vec(op(), 1..120)) {
        let disk = SimDisk::new(seed);
        let dir = Path::new(DIR);
        let reopen = |disk: &SimDisk| PartitionLog::open(Arc::new(disk.clone()), dir, model_config(), Timestamp(0)).unwrap().0;
        let mut log = reopen(&disk);
        let mut model: Vec<ModelBatch> = Vec::new();
        let mut flushed = 0u64;
        let mut now = 1_000i64;
        let mut counter = 0u64;
        for op in ops {
            match op {
                Op::Append { records, size, ts_jitter } => {
                    now += 10;
                    let mut b = BatchBuilder::new(ProducerStamp::NONE);
                    let mut values = Vec::new();
                    for _ in 0..records {
                        counter += 1;
                        let mut v = counter.to_le_bytes().to_vec();
                        v.resize(8 + size as usize, (counter % 251) as u8);
                        let ts = now + i64::from(ts_jitter);
                        b.push(ts, None, Some(&v), &[]);
                        values.push((ts, v));
                    }
                    let mut bytes = b.finish().to_vec();
                    let info = log.append(&bytes, Timestamp(now)).unwrap();
                    crate::batch::stamp(&mut bytes, info.base_offset, RaftStamp::default());
                    prop_assert_eq!(info.base_offset, model.last().map_or(log.log_start_offset(), |b| b.next()));
                    // Model timestamps as the batch stores them (clamped to the first).
                    let first = values[0].0;
                    for v in &mut values { v.0 = v.0.max(first); }
                    model.push(ModelBatch { base: info.base_offset, values, bytes });
                }
                Op::Flush => {
                    flushed = log.flush().unwrap();
                    prop_assert_eq!(flushed, log.log_end_offset());
                }
                Op::Read { at } => {
                    let start = log.log_start_offset();
                    let end = log.log_end_offset();
                    let offset = start + u64::from(at) % (end - start + 1);
                    let r = log.read(offset, 1 << 20, end).unwrap();
                    if offset < end {
                        let first = RecordBatch::decode(&r.bytes, usize::MAX).unwrap().0;
                        let want = model.iter().find(|b| b.next() > offset).unwrap();
                        prop_assert_eq!(first.as_bytes().as_ref(), want.bytes.as_slice());
                    } else {
                        prop_assert!(r.bytes.is_empty());
                    }
                }
                Op::Roll => {
                    log.roll(Timestamp(now)).unwrap();
                    flushed = log.flushed_offset();
                }
                Op::Retention => {
                    log.apply_retention(Timestamp(now)).unwrap();
                    let start = log.log_start_offset();
                    prop_assert!(start <= flushed.max(log.flushed_offset()), "retention removed unflushed data");
                    model.retain(|b| b.base >= start);
                }
                Op::Truncate { at } => {
                    if model.is_empty() { continue; }
                    let i = usize::from(at) % model.len();
                    let offset = model[i].base;
                    if model[..i].iter().any(|b| b.base == offset) { continue; }
                    log.truncate_suffix(offset).unwrap();
                    model.truncate(i);
                    flushed = flushed.min(offset);
                    prop_assert_eq!(log.log_end_offset(), offset);
                }
                Op::TimeLookup { ts } => {
                    let ts = 1_000 + i64::from(ts % 2000);
                    let want = model.iter().flat_map(|b| b.values.iter().enumerate().map(move |(i, v)| (b.base + i as u64, v.0))).find(|(_, t)| *t >= ts).map(|(o, _)| o);
                    prop_assert_eq!(log.offset_for_timestamp(ts).unwrap(), want);
                }
                Op::CrashReopen => {
                    drop(log);
                    disk.crash();
                    log = reopen(&disk);
                    let end = log.log_end_offset();
                    prop_assert!(end >= flushed, "flushed offset {} lost: log ends at {}", flushed, end);
                    // What survived past the flushed point is a prefix of what was appended.
                    let keep = model.iter().take_while(|b| b.next() <= end).count();
                    model.truncate(keep);
                    prop_assert_eq!(model.last().map_or(log.log_start_offset(), |b| b.next()), end, "recovered end is not a batch boundary of the appended history");
                    flushed = end;
                }
            }
            prop_assert!(log.flushed_offset() >= flushed.min(log.log_end_offset()) || log.flushed_offset() == flushed);
        }
        check_matches(&log, &model)?;
        drop(log);
        disk.crash();
        let log = reopen(&disk);
        prop_assert!(log.log_end_offset() >= flushed);
        let keep = model.iter().take_while(|b| b.next() <= log.log_end_offset()).count();
        model.truncate(keep);
        check_matches(&log, &model)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any single flipped bit anywhere in a segment's data: every read either
    /// returns exactly the batches that were stored (holding the offset asked
    /// for) or reports corruption. Damage is never served, and offsets are
    /// never skipped or shifted.
    #[test]
    fn a_flipped_bit_is_reported_never_served(seed: u64, which in 0usize..3, at in any::<prop::sample::Index>(), reopen: bool) {
        let disk = SimDisk::new(seed);
        let config = LogConfig { segment_bytes_max: 1500, preallocate_bytes: 0, ..small_config() };
        let (mut log, _) = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config.clone(), Timestamp(0)).unwrap();
        let mut stored = Vec::new();
        for i in 0..40u32 {
            let n = 1 + (i % 4) as usize;
            let vals: Vec<Vec<u8>> = (0..n).map(|j| format!("{i}-{j}").into_bytes()).collect();
            let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
            let mut bytes = batch(i64::from(i), &refs);
            let info = log.append(&bytes, Timestamp(0)).unwrap();
            crate::batch::stamp(&mut bytes, info.base_offset, RaftStamp::default());
            stored.push((info.base_offset, info.next_offset, bytes));
        }
        log.flush().unwrap();
        let bases = log.segment_bases();
        let seg = bases[which.min(bases.len() - 2)];
        let path = Path::new(DIR).join(format!("{seg:020}.log"));
        let len = disk.open(&path, false).unwrap().len().unwrap();
        let pos = at.index(len as usize) as u64;
        disk.flip_bit(&path, Some(pos..pos + 1)).unwrap();
        if reopen {
            drop(log);
            log = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config, Timestamp(0)).unwrap().0;
        }
        let end = log.log_end_offset();
        prop_assert_eq!(end, stored.last().unwrap().1);
        for offset in 0..end {
            match log.read(offset, 200, end) {
                Ok(r) => {
                    let mut first = true;
                    for b in decode_all(r.bytes.clone(), usize::MAX) {
                        let b = b.expect("served bytes decode");
                        let want = stored.iter().find(|s| s.0 == b.base_offset()).expect("served batch was stored");
                        prop_assert_eq!(b.as_bytes().as_ref(), want.2.as_slice());
                        if first {
                            prop_assert!(b.base_offset() <= offset && offset < b.next_offset(), "read at {} served {}", offset, b.base_offset());
                            first = false;
                        }
                    }
                    prop_assert!(!first, "read at {} below the end returned nothing", offset);
                }
                Err(LogError::Corruption { .. }) => {}
                Err(e) => prop_assert!(false, "read at {} failed with {}", offset, e),
            }
        }
    }
}

/// A log of `n` one-record batches, flushed and closed cleanly (checkpoint synced).
fn clean_log(disk: &SimDisk, config: &LogConfig, n: u64) {
    let (mut log, _) = open(disk, config.clone());
    for i in 0..n {
        log.append(&batch(i as i64, &[format!("v{i}").as_bytes()]), Timestamp(0)).unwrap();
    }
    log.flush().unwrap();
    log.sync_checkpoint().unwrap();
}

fn seg_path(base: u64) -> PathBuf {
    Path::new(DIR).join(format!("{base:020}.log"))
}

#[test]
fn a_flipped_byte_in_the_active_segment_after_a_clean_close_is_a_loss_not_a_torn_tail() {
    let disk = SimDisk::new(3);
    let config = LogConfig { segment_bytes_max: 1 << 20, ..small_config() };
    clean_log(&disk, &config, 20);
    let one = batch(0, &[b"v0"]).len() as u64;
    // Damage batch 5 of 20: before checkpoints, recovery cut 5..20 durably and reused the offsets.
    disk.flip_bit(&seg_path(0), Some(5 * one + 50..5 * one + 51)).unwrap();
    let (mut log, report) = open(&disk, config.clone());
    let loss = report.loss.clone().expect("the damage is reported");
    assert_eq!((loss.from, loss.to), (5, 20));
    assert_eq!(report.truncated_bytes, 0, "nothing is cut");
    assert!(matches!(log.append(&batch(0, &[b"new"]), Timestamp(0)), Err(LogError::Offline(_))));
    assert!(matches!(log.read(7, 1 << 20, 20), Err(LogError::Offline(_))));
    assert_eq!(values_from(&log, 0).len(), 5, "the good prefix is still served");
    // Reopening without accepting changes nothing.
    drop(log);
    let (mut log, report) = open(&disk, config.clone());
    assert_eq!(report.loss.map(|l| (l.from, l.to)), Some((5, 20)));
    let accepted = log.accept_loss(Timestamp(0)).unwrap().expect("there was a loss");
    assert_eq!(accepted.next_offset, 20, "no acknowledged offset is handed out again");
    assert!(accepted.saved_bytes >= 15 * one, "the damaged bytes are kept: {}", accepted.saved_bytes);
    assert!(accepted.saved_bytes <= 15 * one + 64, "preallocated zeros are not: {}", accepted.saved_bytes);
    assert!(disk.exists(&accepted.saved_to));
    let info = log.append(&batch(0, &[b"after"]), Timestamp(0)).unwrap();
    assert_eq!(info.base_offset, 20);
    log.flush().unwrap();
    let r = log.read(5, 1 << 20, 21).unwrap();
    assert_eq!(RecordBatch::decode(&r.bytes, usize::MAX).unwrap().0.base_offset(), 20, "reads step over the accepted loss");
    drop(log);
    let (log, report) = open(&disk, config);
    assert_eq!(report.loss, None, "an accepted loss stays accepted");
    assert_eq!(log.log_end_offset(), 21);
}

#[test]
fn an_emptied_or_deleted_active_segment_is_a_loss() {
    let config = LogConfig { segment_bytes_max: 1 << 20, ..small_config() };
    for delete in [false, true] {
        let disk = SimDisk::new(4);
        clean_log(&disk, &config, 10);
        if delete {
            disk.remove_file(&seg_path(0)).unwrap();
        } else {
            disk.open(&seg_path(0), false).unwrap().set_len(0).unwrap();
        }
        let (mut log, report) = open(&disk, config.clone());
        assert_eq!(report.loss.as_ref().map(|l| (l.from, l.to)), Some((0, 10)), "delete={delete}");
        assert!(log.append(&batch(0, &[b"x"]), Timestamp(0)).is_err());
        log.accept_loss(Timestamp(0)).unwrap();
        assert_eq!(log.append(&batch(0, &[b"x"]), Timestamp(0)).unwrap().base_offset, 10, "delete={delete}");
    }
}

#[test]
fn a_missing_oldest_segment_is_a_loss_but_retention_is_not() {
    let disk = SimDisk::new(6);
    let config = LogConfig { retention_bytes: Some(4096), ..small_config() };
    clean_log(&disk, &config, 200);
    let (mut log, _) = open(&disk, config.clone());
    log.apply_retention(Timestamp(0)).unwrap();
    let bases = log.segment_bases();
    assert!(bases[0] > 0, "retention deleted the oldest segments");
    drop(log);
    assert_eq!(open(&disk, config.clone()).1.loss, None, "retention moved the recorded start first");
    disk.remove_file(&seg_path(bases[0])).unwrap();
    let (mut log, report) = open(&disk, config.clone());
    assert_eq!(report.loss.map(|l| (l.from, l.to)), Some((bases[0], bases[1])));
    log.accept_loss(Timestamp(0)).unwrap();
    drop(log);
    assert_eq!(open(&disk, config).1.loss, None);
}

#[test]
fn a_missing_sealed_segment_is_a_loss() {
    let disk = SimDisk::new(5);
    let config = small_config();
    clean_log(&disk, &config, 200);
    let (log, _) = open(&disk, config.clone());
    let bases = log.segment_bases();
    assert!(bases.len() >= 3, "{bases:?}");
    drop(log);
    disk.remove_file(&seg_path(bases[1])).unwrap();
    let (mut log, report) = open(&disk, config.clone());
    let loss = report.loss.expect("the hole is reported");
    assert_eq!((loss.from, loss.to), (bases[1], bases[2]));
    log.accept_loss(Timestamp(0)).unwrap();
    assert_eq!(log.log_end_offset(), 200);
    let r = log.read(bases[1], 1 << 20, 200).unwrap();
    assert_eq!(RecordBatch::decode(&r.bytes, usize::MAX).unwrap().0.base_offset(), bases[2]);
    drop(log);
    assert_eq!(open(&disk, config).1.loss, None);
}

#[test]
fn a_record_stamped_far_in_the_future_is_refused() {
    let disk = SimDisk::new(9);
    let config = LogConfig { timestamp_after_max_ms: Some(3_600_000), ..small_config() };
    let (mut log, _) = open(&disk, config);
    let now = Timestamp(1_700_000_000_000);
    let year_9999 = 253_402_300_799_000;
    let err = log.append(&batch(year_9999, &[b"v"]), now).unwrap_err();
    assert!(matches!(err, LogError::TimestampOutOfRange { .. }), "{err}");
    assert_eq!(log.log_end_offset(), 0);
    log.append(&batch(now.as_millis() + 3_600_000, &[b"v"]), now).expect("within the bound");
    log.append(&batch(0, &[b"v"]), now).expect("old timestamps are not bounded");
}

#[test]
fn an_idle_partition_holds_one_file_and_sealed_segments_open_on_demand() {
    let disk = SimDisk::new(10);
    let (mut log, _) = open(&disk, small_config());
    for i in 0..200 {
        log.append(&batch(i, &[format!("v{i}").as_bytes()]), Timestamp(0)).unwrap();
    }
    log.flush().unwrap();
    assert!(log.segment_count() > 3);
    let sealed = log.segment_bases()[0];
    assert!(disk.exists(&Path::new(DIR).join(format!("{sealed:020}.index"))), "sealing writes the index");
    let active = *log.segment_bases().last().unwrap();
    assert!(!disk.exists(&Path::new(DIR).join(format!("{active:020}.index"))), "the active index lives in memory");
    assert_eq!(values_from(&log, 0).len(), 200, "sealed segments are read through files opened on demand");
}
