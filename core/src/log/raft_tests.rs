//! Tests of the log as Raft log storage: entries, the index by Raft index,
//! truncate and purge by index, reset, the small durable files, rolls and
//! overlapping flushes; and a crash model test over all of them.

use super::index;
use super::*;
use crate::batch::{BatchBuilder, ControlBody, ProducerStamp, RecordBatch, decode_all};
use crate::disk::Disk;
use crate::disk::sim::SimDisk;
use proptest::prelude::*;

const DIR: &str = "/data/raft-0";

fn config() -> LogConfig {
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

fn data(values: &[&[u8]]) -> Vec<u8> {
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    for v in values {
        b.push(1_000, None, Some(v), &[]);
    }
    b.finish().to_vec()
}

fn id(term: u64, index: u64) -> LogId {
    LogId { term, node: 1, index }
}

fn open(disk: &SimDisk) -> PartitionLog {
    PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config(), Timestamp(0)).unwrap().0
}

fn indexes(log: &PartitionLog, from: u64) -> Vec<u64> {
    log.entries(from..u64::MAX, usize::MAX).unwrap().iter().map(|e| e.log_id.index).collect()
}

/// Written first, against the old code: a segment holding only control
/// batches has `next == base`, and rolling it recreated `{base}.log`,
/// erasing the entries in it.
#[test]
fn a_roll_never_reuses_a_segment_file_name() {
    let disk = SimDisk::new(1);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&data(&[b"a"])], Timestamp(0)).unwrap();
    log.roll(Timestamp(0)).unwrap();
    let blank = BatchBuilder::control(0).to_vec();
    log.append_entry(id(2, 2), &[&blank], Timestamp(0)).unwrap();
    log.roll(Timestamp(0)).unwrap();
    log.append_entry(id(2, 3), &[&data(&[b"b"])], Timestamp(0)).unwrap();
    log.flush().unwrap();
    assert_eq!(log.segment_bases(), vec![0, 1]);
    drop(log);
    disk.crash();
    let log = open(&disk);
    assert_eq!(indexes(&log, 1), vec![1, 2, 3], "the control-only segment's entry survives the roll");
    assert_eq!(log.last_log_id(), Some(id(2, 3)));
}

/// Written first: a second flush begun while one is in flight got an
/// empty job and reported durable before the first sync returned.
#[test]
fn overlapping_flushes_report_only_what_every_earlier_flush_made_durable() {
    let disk = SimDisk::new(2);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&data(&[b"a"])], Timestamp(0)).unwrap();
    let first = log.begin_flush().unwrap();
    let empty = log.begin_flush().unwrap();
    empty.run().unwrap();
    assert_eq!(log.complete_flush(empty, Ok(())).unwrap(), 0, "the second flush synced nothing: offset 0 is not durable yet");
    assert_eq!(log.flushed_log_id(), None);
    log.append_entry(id(1, 2), &[&data(&[b"b"])], Timestamp(0)).unwrap();
    let third = log.begin_flush().unwrap();
    third.run().unwrap();
    assert_eq!(log.complete_flush(third, Ok(())).unwrap(), 0, "the first flush is still running");
    first.run().unwrap();
    assert_eq!(log.complete_flush(first, Ok(())).unwrap(), 2, "all three done: everything is durable");
    assert_eq!(log.flushed_log_id(), Some(id(1, 2)));
    drop(log);
    disk.crash();
    assert_eq!(indexes(&open(&disk), 1), vec![1, 2]);
}

/// Written first: a control batch and the next data batch share a base
/// offset, so truncating by offset could not cut between them.
#[test]
fn truncation_by_index_cuts_between_batches_that_share_an_offset() {
    let disk = SimDisk::new(3);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&data(&[b"a"])], Timestamp(0)).unwrap();
    log.append_entry(id(2, 2), &[&BatchBuilder::control(0)], Timestamp(0)).unwrap();
    log.append_entry(id(2, 3), &[&data(&[b"b"])], Timestamp(0)).unwrap();
    log.truncate_entries(3).unwrap();
    assert_eq!(log.last_log_id(), Some(id(2, 2)));
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(indexes(&log, 1), vec![1, 2]);
    log.append_entry(id(3, 3), &[&data(&[b"c"])], Timestamp(0)).unwrap();
    log.truncate_entries(2).unwrap();
    assert_eq!(log.last_log_id(), Some(id(1, 1)));
    assert_eq!(indexes(&log, 1), vec![1]);
    assert!(matches!(log.append_entry(id(3, 5), &[&data(&[b"d"])], Timestamp(0)), Err(LogError::RaftOrder(_))));
    drop(log);
    disk.crash();
    assert_eq!(open(&disk).last_log_id(), Some(id(1, 1)), "truncation is durable");
}

#[test]
fn an_entry_of_several_batches_is_read_back_whole_and_a_torn_one_is_cut_whole() {
    let disk = SimDisk::new(4);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&data(&[b"a"])], Timestamp(0)).unwrap();
    log.flush().unwrap();
    let (b1, b2, b3) =
        (data(&[b"x", b"y"]), BatchBuilder::control_with(5, &ControlBody::Membership(b"m".as_slice().into())), data(&[b"z"]));
    let info = log.append_entry(id(1, 2), &[&b1, &b2, &b3], Timestamp(0)).unwrap();
    assert_eq!((info.base_offset, info.next_offset), (1, 4));
    let entries = log.entries(2..3, 1).unwrap();
    assert_eq!(entries.len(), 1);
    let rests: Vec<(u64, u32)> = decode_all(entries[0].batches.clone(), usize::MAX)
        .map(|b| b.unwrap())
        .map(|b| (b.header().raft_index, b.header().entry_rest))
        .collect();
    assert_eq!(rests, vec![(2, 2), (2, 1), (2, 0)]);
    assert_eq!((entries[0].base_offset, entries[0].next_offset), (1, 4));
    // Heads only: data batches cut to their headers, the control batch whole.
    let heads = log.entry_heads(2..3, usize::MAX).unwrap();
    assert_eq!((heads[0].log_id, heads[0].base_offset, heads[0].next_offset), (id(1, 2), 1, 4));
    let whole = &entries[0].batches;
    let expected: Vec<u8> =
        [&whole[..batch::HEADER_LEN], &whole[b1.len()..b1.len() + b2.len()], &whole[b1.len() + b2.len()..][..batch::HEADER_LEN]].concat();
    assert_eq!(&heads[0].batches[..], &expected[..]);
    log.flush().unwrap();
    drop(log);
    // Tear the entry after its second batch (as a crash tearing the write would).
    let path = Path::new(DIR).join("00000000000000000000.log");
    let file = disk.open(&path, false).unwrap();
    let first_len = data(&[b"a"]).len() as u64;
    file.set_len(first_len + (b1.len() + b2.len()) as u64).unwrap();
    file.sync_data().unwrap();
    // Below the recovery checkpoint this is a loss; past it, a torn tail.
    disk.remove_file(&Path::new(DIR).join(checkpoint::FILE)).unwrap();
    let (log, report) = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config(), Timestamp(0)).unwrap();
    assert!(report.truncated_reason.as_deref().is_some_and(|r| r.contains("incomplete")), "{report:?}");
    assert_eq!(log.last_log_id(), Some(id(1, 1)), "no part of entry 2 is left");
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn entries_respect_the_byte_budget_but_return_one_whole_entry() {
    let disk = SimDisk::new(5);
    let mut log = open(&disk);
    for i in 1..=40 {
        log.append_entry(id(1, i), &[&data(&[&[i as u8; 100]])], Timestamp(0)).unwrap();
    }
    assert!(log.segment_count() > 2, "the entries span segments");
    assert_eq!(indexes(&log, 1), (1..=40).collect::<Vec<_>>());
    assert_eq!(indexes(&log, 17)[0], 17);
    let one = log.entries(5..40, 1).unwrap();
    assert_eq!(one.len(), 1);
    let some = log.entries(5..40, 1000).unwrap();
    assert!(some.len() > 1 && some.len() < 35, "{}", some.len());
    assert_eq!(some.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (5..5 + some.len() as u64).collect::<Vec<_>>());
    assert_eq!(log.entries(10..12, usize::MAX).unwrap().len(), 2);
    // After a reopen the sealed segments' `.raftindex` files find the same.
    drop(log);
    let log = open(&disk);
    assert_eq!(indexes(&log, 1), (1..=40).collect::<Vec<_>>());
    assert_eq!(log.entries(33..34, 1).unwrap()[0].log_id, id(1, 33));
    // A lost `.raftindex` is rebuilt by a scan, to the same entries.
    drop(log);
    let lost = disk.files().into_iter().find(|p| p.extension().is_some_and(|e| e == "raftindex")).unwrap();
    let before = crate::disk::read_small(&disk, &lost, 1 << 20).unwrap().unwrap();
    assert!(before.len() >= 2 * index::RAFT_ENTRY_LEN, "sparse, but more than the first entry");
    disk.remove_file(&lost).unwrap();
    let log = open(&disk);
    assert_eq!(indexes(&log, 1), (1..=40).collect::<Vec<_>>());
    assert_eq!(crate::disk::read_small(&disk, &lost, 1 << 20).unwrap().unwrap(), before, "rebuilt whole");
}

/// Found in review: a flush job carrying a checkpoint write that began
/// before a truncation wrote its stale recovery point after it, so the
/// next open reported a loss.
#[test]
fn a_flush_begun_before_a_truncation_never_writes_a_stale_checkpoint() {
    let disk = SimDisk::new(10);
    let mut log = open(&disk);
    for i in 1..checkpoint::WRITE_EVERY_FLUSHES as u64 {
        log.append_entry(id(1, i), &[&data(&[b"x"])], Timestamp(0)).unwrap();
        log.flush().unwrap();
    }
    let last = checkpoint::WRITE_EVERY_FLUSHES as u64;
    log.append_entry(id(1, last), &[&data(&[b"y"])], Timestamp(0)).unwrap();
    let job = log.begin_flush().unwrap(); // this one records the checkpoint
    log.truncate_entries(last - 3).unwrap();
    let r = job.run();
    log.complete_flush(job, r).unwrap();
    drop(log);
    disk.crash();
    let (log, report) = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config(), Timestamp(0)).unwrap();
    assert_eq!(report.loss, None, "the truncation's checkpoint stands");
    assert_eq!(log.last_log_id(), Some(id(1, last - 4)));
}

/// Found in review: a reset that fails part-way left a log with no segment.
#[test]
fn a_failed_reset_refuses_writes_and_the_next_open_finishes_it() {
    let disk = SimDisk::new(11);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&data(&[b"a"])], Timestamp(0)).unwrap();
    log.flush().unwrap();
    disk.set_faults(crate::disk::sim::FaultConfig { sync_error: 1.0, ..Default::default() });
    assert!(log.reset(500, Some(id(2, 9)), Timestamp(0)).is_err());
    assert!(matches!(log.append_entry(id(2, 10), &[&data(&[b"b"])], Timestamp(0)), Err(LogError::Failed(_))));
    assert_eq!(log.log_end_offset(), 1, "still answers, from what it held");
    disk.set_faults(crate::disk::sim::FaultConfig::default());
    drop(log);
    let log = open(&disk);
    // The reset record may or may not have become durable: the log is either
    // as it was or as the reset leaves it, never a mix.
    match log.last_log_id() {
        Some(l) if l == id(1, 1) => assert_eq!(log.log_end_offset(), 1),
        other => {
            assert_eq!(other, Some(id(2, 9)));
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
        }
    }
}

#[test]
fn purge_by_index_records_the_purged_id_and_deletes_whole_segments() {
    let disk = SimDisk::new(6);
    let mut log = open(&disk);
    for i in 1..=40 {
        log.append_entry(id(1, i), &[&data(&[&[1; 100]])], Timestamp(0)).unwrap();
    }
    log.flush().unwrap();
    let segments = log.segment_count();
    let report = log.purge_entries(id(1, 25)).unwrap();
    assert!(report.segments_deleted > 0 && log.segment_count() < segments);
    assert!(indexes(&log, 1)[0] <= 26, "nothing above the purged id is gone");
    assert_eq!(log.purged_log_id(), Some(id(1, 25)));
    assert!(log.purge_entries(id(1, 99)).is_err(), "cannot purge past the end");
    log.append_entry(id(1, 41), &[&data(&[b"volatile"])], Timestamp(0)).unwrap();
    assert!(log.purge_entries(id(1, 41)).is_err(), "cannot purge what is not durable");
    drop(log);
    disk.crash();
    let log = open(&disk);
    assert_eq!(log.purged_log_id(), Some(id(1, 25)), "the purged id is durable");
    // The unflushed entry 41 may or may not have reached the disk.
    assert!(matches!(log.last_log_id(), Some(l) if l == id(1, 40) || l == id(1, 41)), "{:?}", log.last_log_id());
}

#[test]
fn a_log_starts_anywhere_after_a_reset_and_an_interrupted_reset_is_finished() {
    let disk = SimDisk::new(7);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&data(&[b"old"])], Timestamp(0)).unwrap();
    log.flush().unwrap();
    log.reset(1000, Some(id(4, 50)), Timestamp(0)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1000));
    assert_eq!(log.last_log_id(), Some(id(4, 50)));
    let info = log.append_entry(id(4, 51), &[&data(&[b"new"])], Timestamp(0)).unwrap();
    assert_eq!(info.base_offset, 1000);
    log.flush().unwrap();
    drop(log);
    disk.crash();
    let mut log = open(&disk);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1001));
    assert_eq!(indexes(&log, 51), vec![51]);
    assert_eq!(log.purged_log_id(), Some(id(4, 50)));
    // A reset recorded but not carried out (a crash right after its record).
    raft_state::save_reset(&disk, Path::new(DIR), &Reset { start_offset: 5000, purged: Some(id(5, 90)) }).unwrap();
    drop(log);
    disk.crash();
    log = open(&disk);
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.last_log_id()), (5000, 5000, Some(id(5, 90))));
    assert!(!disk.exists(&Path::new(DIR).join(raft_state::RESET_FILE)));
}

#[test]
fn vote_and_committed_survive_a_crash() {
    let disk = SimDisk::new(8);
    let mut log = open(&disk);
    assert_eq!(log.vote(), None);
    let vote = Vote { term: 3, node: Some(2), committed: false };
    log.save_vote(vote).unwrap();
    log.save_committed(id(3, 7)).unwrap();
    drop(log);
    disk.crash();
    let log = open(&disk);
    assert_eq!(log.vote(), Some(vote), "the vote is durable when save_vote returns");
    // The committed id is not synced: it may be lost, but is never wrong.
    assert!(matches!(log.committed().unwrap(), None | Some(LogId { term: 3, node: 1, index: 7 })));
    // A damaged vote is an error, not "no vote".
    drop(log);
    let path = Path::new(DIR).join(raft_state::VOTE_FILE);
    disk.flip_bit(&path, None);
    assert!(PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config(), Timestamp(0)).is_err());
}

#[test]
fn plain_appends_are_refused_once_the_log_holds_raft_entries() {
    let disk = SimDisk::new(9);
    let mut log = open(&disk);
    log.append(&data(&[b"before raft"]), Timestamp(0)).unwrap();
    log.append_entry(id(1, 1), &[&data(&[b"a"])], Timestamp(0)).unwrap();
    assert!(matches!(log.append(&data(&[b"b"]), Timestamp(0)), Err(LogError::RaftOrder(_))));
    assert!(matches!(log.append_entry(id(1, 3), &[&data(&[b"c"])], Timestamp(0)), Err(LogError::RaftOrder(_))), "index gap");
    assert!(matches!(log.append_entry(id(0, 2), &[&data(&[b"c"])], Timestamp(0)), Err(LogError::RaftOrder(_))), "term back");
    let r = log.read(0, 1 << 20, log.log_end_offset()).unwrap();
    let got: Vec<u64> = decode_all(r.bytes, usize::MAX).map(|b| b.unwrap().header().raft_index).collect();
    assert_eq!(got, vec![0, 1]);
}

// ---- crash model test for Raft entries ----

#[derive(Debug, Clone)]
enum Op {
    /// An entry of `batches` batches; a batch of 0 records is a control batch.
    Append {
        batches: Vec<u8>,
        size: u16,
    },
    /// Begin a flush and keep it in flight.
    BeginFlush,
    /// Run and complete the `which`-th flush in flight (any order).
    CompleteFlush {
        which: u8,
    },
    Roll,
    Truncate {
        at: u16,
    },
    Purge {
        at: u16,
    },
    Reset {
        gap: u16,
    },
    Vote {
        term: u8,
    },
    Read {
        at: u16,
        max: u16,
    },
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (proptest::collection::vec(0u8..4, 1..4), 0u16..300).prop_map(|(batches, size)| Op::Append { batches, size }),
        3 => Just(Op::BeginFlush),
        3 => any::<u8>().prop_map(|which| Op::CompleteFlush { which }),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::Purge { at }),
        1 => any::<u16>().prop_map(|gap| Op::Reset { gap }),
        1 => any::<u8>().prop_map(|term| Op::Vote { term }),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(at, max)| Op::Read { at, max }),
        2 => Just(Op::Crash),
    ]
}

/// An entry as the model remembers it: its id, offsets and stored bytes.
#[derive(Debug, Clone)]
struct ModelEntry {
    id: LogId,
    base: u64,
    next: u64,
    bytes: Vec<u8>,
}

/// Every entry the log returns from `from` matches the model, and the log
/// ends where the model does.
fn check(log: &PartitionLog, model: &[ModelEntry]) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.last_log_id().map(|l| l.index), model.last().map(|e| e.id.index).or(log.purged_log_id().map(|p| p.index)));
    let Some(first) = model.first() else { return Ok(()) };
    let got = log.entries(first.id.index..u64::MAX, usize::MAX).unwrap();
    prop_assert_eq!(got.len(), model.len());
    for (g, m) in got.iter().zip(model) {
        prop_assert_eq!(g.log_id, m.id);
        prop_assert_eq!((g.base_offset, g.next_offset), (m.base, m.next));
        prop_assert_eq!(g.batches.as_ref(), m.bytes.as_slice());
    }
    prop_assert_eq!(log.log_end_offset(), model.last().unwrap().next);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Across crashes at any point: every entry a flush reported durable
    /// survives; what survives beyond it is a prefix of whole entries;
    /// offsets stay dense; truncation, purge and reset are durable; a saved
    /// vote survives; overlapping flushes completed in any order never
    /// report more than is durable.
    #[test]
    fn raft_log_matches_model_across_crashes(seed: u64, ops in proptest::collection::vec(op(), 1..100)) {
        let disk = SimDisk::new(seed);
        let mut log = open(&disk);
        let mut model: Vec<ModelEntry> = Vec::new();
        let mut jobs: Vec<FlushJob> = Vec::new();
        let mut durable: u64 = 0; // highest index reported durable
        let mut vote: Option<Vote> = None;
        let mut term = 1u64;
        let mut counter = 0u64;
        for op in ops {
            match op {
                Op::Append { batches, size } => {
                    let index = log.last_log_id().map_or(1, |l| l.index + 1);
                    let mut raw = Vec::new();
                    for records in &batches {
                        if *records == 0 {
                            raw.push(BatchBuilder::control(1_000).to_vec());
                            continue;
                        }
                        let mut b = BatchBuilder::new(ProducerStamp::NONE);
                        for _ in 0..*records {
                            counter += 1;
                            let mut v = counter.to_le_bytes().to_vec();
                            v.resize(8 + size as usize, (counter % 251) as u8);
                            b.push(1_000, None, Some(&v), &[]);
                        }
                        raw.push(b.finish().to_vec());
                    }
                    let parts: Vec<&[u8]> = raw.iter().map(|b| b.as_slice()).collect();
                    let lid = LogId { term, node: 1, index };
                    let info = log.append_entry(lid, &parts, Timestamp(1_000)).unwrap();
                    prop_assert_eq!(info.base_offset, model.last().map_or(log.log_start_offset(), |e| e.next));
                    // The model's copy, stamped as the log stamps it.
                    let mut bytes = Vec::new();
                    let mut next = info.base_offset;
                    for (i, b) in raw.iter().enumerate() {
                        let mut b = b.clone();
                        let rest = (raw.len() - 1 - i) as u32;
                        crate::batch::stamp(&mut b, next, RaftStamp { term, node: 1, index, entry_rest: rest });
                        next += u64::from(RecordBatch::decode(&bytes::Bytes::from(b.clone()), usize::MAX).unwrap().0.header().record_count);
                        bytes.extend_from_slice(&b);
                    }
                    prop_assert_eq!(info.next_offset, next);
                    model.push(ModelEntry { id: lid, base: info.base_offset, next, bytes });
                }
                Op::BeginFlush => jobs.push(log.begin_flush().unwrap()),
                Op::CompleteFlush { which } => {
                    if jobs.is_empty() { continue; }
                    let job = jobs.remove(usize::from(which) % jobs.len());
                    let result = job.run();
                    log.complete_flush(job, result).unwrap();
                }
                Op::Roll => log.roll(Timestamp(1_000)).unwrap(),
                Op::Truncate { at } => {
                    if model.is_empty() { continue; }
                    let i = usize::from(at) % model.len();
                    // Raft never truncates what a snapshot covers (it is committed).
                    if log.purged_log_id().is_some_and(|p| model[i].id.index <= p.index) { continue; }
                    log.truncate_entries(model[i].id.index).unwrap();
                    model.truncate(i);
                    durable = durable.min(model.last().map_or(0, |e| e.id.index));
                    term += 1; // a new leader's entries replace the cut ones
                }
                Op::Purge { at } => {
                    if model.is_empty() { continue; }
                    let i = usize::from(at) % model.len();
                    let upto = model[i].id;
                    if log.purged_log_id().is_some_and(|p| p.index >= upto.index) { continue; }
                    if log.flushed_log_id().is_none_or(|f| f.index < upto.index) {
                        prop_assert!(log.purge_entries(upto).is_err(), "purging what is not durable is refused");
                        continue;
                    }
                    log.purge_entries(upto).unwrap();
                    let start = log.log_start_offset();
                    // Whole segments go: entries starting below the new log start.
                    model.retain(|e| e.base >= start && !(e.base == start && e.id.index <= upto.index && log.entries(e.id.index..e.id.index + 1, 1).unwrap().is_empty()));
                }
                Op::Reset { gap } => {
                    jobs.clear();
                    let start = model.last().map_or(log.log_end_offset(), |e| e.next) + u64::from(gap);
                    let purged = LogId { term, node: 1, index: log.last_log_id().map_or(0, |l| l.index) + 1 + u64::from(gap % 7) };
                    log.reset(start, Some(purged), Timestamp(1_000)).unwrap();
                    model.clear();
                    durable = purged.index;
                }
                Op::Vote { term: t } => {
                    let v = Vote { term: u64::from(t), node: Some(u32::from(t % 3)), committed: t % 2 == 0 };
                    log.save_vote(v).unwrap();
                    vote = Some(v);
                }
                Op::Read { at, max } => {
                    if model.is_empty() { continue; }
                    let i = usize::from(at) % model.len();
                    let got = log.entries(model[i].id.index..u64::MAX, usize::from(max)).unwrap();
                    prop_assert!(!got.is_empty());
                    for (g, m) in got.iter().zip(&model[i..]) {
                        prop_assert_eq!(g.log_id, m.id);
                        prop_assert_eq!(g.batches.as_ref(), m.bytes.as_slice());
                    }
                }
                Op::Crash => {
                    drop(std::mem::take(&mut jobs));
                    drop(log);
                    disk.crash();
                    log = open(&disk);
                    let last = log.last_log_id().map_or(0, |l| l.index);
                    prop_assert!(last >= durable, "entry {} was reported durable, the log ends at {}", durable, last);
                    prop_assert_eq!(log.vote(), vote, "the vote is durable");
                    model.retain(|e| e.id.index <= last);
                    durable = last;
                    check(&log, &model)?;
                }
            }
            durable = durable.max(log.flushed_log_id().map_or(0, |l| l.index));
            prop_assert!(log.flushed_offset() <= log.log_end_offset());
        }
        check(&log, &model)?;
    }
}

/// The process dies after every possible number of disk operations of a
/// truncation, a purge or a reset (then the power goes): the log always
/// opens without reporting a loss, its entries are contiguous, nothing below
/// the operation's point is gone, and it ends as before or as after (or, for
/// a truncation, anywhere between: later segments go first).
#[test]
fn a_crash_at_any_step_of_truncate_purge_or_reset_leaves_a_consistent_log() {
    use crate::disk::sim::FaultConfig;
    for op in ["truncate", "purge", "reset"] {
        for n in 0..40u64 {
            let disk = SimDisk::new(n);
            let mut log = open(&disk);
            for i in 1..=40 {
                log.append_entry(id(1, i), &[&data(&[&[i as u8; 100]])], Timestamp(0)).unwrap();
            }
            log.flush().unwrap();
            log.sync_checkpoint().unwrap();
            assert!(log.segment_count() > 3);
            disk.set_faults(FaultConfig { ops_left: Some(n), ..FaultConfig::default() });
            let done = match op {
                "truncate" => log.truncate_entries(25),
                "purge" => log.purge_entries(id(1, 25)).map(|_| ()),
                _ => log.reset(5000, Some(id(3, 90)), Timestamp(0)),
            }
            .is_ok();
            disk.set_faults(FaultConfig::default());
            drop(log);
            disk.crash();
            let (log, report) = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config(), Timestamp(0)).unwrap();
            let at = format!("{op} with {n} disk operations before the crash");
            assert_eq!(report.loss, None, "{at}: {report:?}");
            let got = log.entries(0..u64::MAX, usize::MAX).unwrap();
            let ids: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
            assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{at}: entries {ids:?} are not contiguous");
            match op {
                "truncate" => {
                    assert_eq!(ids.first(), Some(&1), "{at}");
                    let last = *ids.last().unwrap();
                    assert!((24..=40).contains(&last), "{at}: ends at {last}");
                    if done {
                        assert_eq!(last, 24, "{at}");
                    }
                }
                "purge" => {
                    assert_eq!(ids.last(), Some(&40), "{at}: nothing above the purge point goes");
                    assert!(ids[0] <= 26, "{at}");
                    if ids[0] > 1 || done {
                        assert_eq!(log.purged_log_id(), Some(id(1, 25)), "{at}: segments go only after the purged id is durable");
                    }
                }
                _ => {
                    if ids.is_empty() {
                        assert_eq!((log.log_start_offset(), log.log_end_offset()), (5000, 5000), "{at}");
                        assert_eq!(log.last_log_id(), Some(id(3, 90)), "{at}");
                    } else {
                        assert!(!done, "{at}: a reset that returned Ok left old entries");
                        assert_eq!(ids, (1..=40).collect::<Vec<_>>(), "{at}: a reset is all or nothing");
                    }
                }
            }
        }
    }
}

#[test]
fn entry_heads_walk_every_entry_of_a_range() {
    let disk = SimDisk::new(9);
    let mut log = open(&disk);
    let member = BatchBuilder::control_with(0, &ControlBody::Membership(vec![7u8; 180].into()));
    log.append_entry(id(1, 1), &[&member], Timestamp(0)).unwrap();
    log.append_entry(id(1, 2), &[&BatchBuilder::control(0)], Timestamp(0)).unwrap();
    log.append_entry(id(1, 3), &[&data(&[b"a0"]), &data(&[b"b0"])], Timestamp(0)).unwrap();
    log.append_entry(id(1, 4), &[&data(&[b"a1"]), &data(&[b"b1"])], Timestamp(0)).unwrap();
    let heads = log.entry_heads(1..5, usize::MAX).unwrap();
    let lens: Vec<usize> = heads.iter().map(|e| e.batches.len()).collect();
    assert_eq!(lens, vec![member.len(), BatchBuilder::control(0).len(), 2 * batch::HEADER_LEN, 2 * batch::HEADER_LEN]);
    let offsets: Vec<(u64, u64)> = heads.iter().map(|e| (e.base_offset, e.next_offset)).collect();
    assert_eq!(offsets, vec![(0, 0), (0, 0), (0, 2), (2, 4)]);
}

fn producer_data(id: i64, seq: i32, value: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new(ProducerStamp { producer_id: id, producer_epoch: 0, base_sequence: seq });
    b.push(1_000, None, Some(value), &[]);
    b.finish().to_vec()
}

/// Heads carry only what the header CRC vouches for: producer fields are
/// forgotten unless the whole batch was read and its CRC checked.
#[test]
fn heads_hand_out_producer_fields_only_when_the_batch_crc_vouches_for_them() {
    let disk = SimDisk::new(10);
    let mut log = open(&disk);
    log.append_entry(id(1, 1), &[&producer_data(7, 0, b"a")], Timestamp(0)).unwrap();
    log.append_entry(id(1, 2), &[&producer_data(7, 1, b"b")], Timestamp(0)).unwrap();
    let producer = |e: &Entry| batch::BatchHeader::parse(&e.batches).unwrap().producer_id;
    let heads = log.entry_heads(1..3, usize::MAX).unwrap();
    assert_eq!(heads.iter().map(producer).collect::<Vec<_>>(), vec![-1, -1]);
    let verified = log.entry_heads_verified(1..3, usize::MAX).unwrap();
    assert_eq!(verified.iter().map(producer).collect::<Vec<_>>(), vec![7, 7]);
    // A damaged payload: offsets kept (the header CRC holds), producer not.
    let len = producer_data(7, 1, b"b").len() as u64;
    disk.flip_bit(&Path::new(DIR).join(segment::file_name(0, "log")), Some(len + len - 1..len + len)).unwrap();
    let verified = log.entry_heads_verified(1..3, usize::MAX).unwrap();
    assert_eq!(verified.iter().map(producer).collect::<Vec<_>>(), vec![7, -1]);
    assert_eq!(verified.iter().map(|e| (e.base_offset, e.next_offset)).collect::<Vec<_>>(), vec![(0, 1), (1, 2)]);
}

/// A sealed segment whose headers cannot be walked, or entries an accepted
/// loss removed, must not keep a single voter's group from starting: the
/// Raft view starts after the hole, the data before it stays readable.
#[test]
fn a_hole_in_the_entries_moves_the_purged_point_past_it_and_nothing_else() {
    let disk = SimDisk::new(11);
    let mut log = open(&disk);
    let mut index = 0;
    while log.segment_bases().len() < 4 {
        index += 1;
        log.append_entry(id(2, index), &[&data(&[&[b'x'; 200]])], Timestamp(0)).unwrap();
    }
    let job = log.begin_flush().unwrap();
    let r = job.run();
    log.complete_flush(job, r).unwrap();
    let bases = log.segment_bases();
    let first_of = |log: &PartitionLog, base: u64| {
        log.entry_heads(1..u64::MAX, usize::MAX).unwrap().into_iter().find(|e| e.base_offset >= base).unwrap()
    };
    let after = first_of(&log, bases[2]);
    assert_eq!(log.purge_past_damage(&[]).unwrap(), None, "a whole log is left alone");
    drop(log);
    // Damage the stamped header of the second sealed segment's second entry.
    let one = data(&[&[b'x'; 200]]).len() as u64;
    disk.flip_bit(&Path::new(DIR).join(segment::file_name(bases[1], "log")), Some(one + 5..one + 6)).unwrap();
    let (mut log, _) = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config(), Timestamp(0)).unwrap();
    let end = log.log_end_offset();
    let cut = log.purge_past_damage(&[]).unwrap().expect("the hole is found");
    assert_eq!(cut, LogId { index: after.log_id.index - 1, ..after.log_id });
    assert_eq!(log.purged_log_id(), Some(cut));
    assert!(log.committed().unwrap().is_some_and(|c| c.index >= cut.index), "purged entries count as committed");
    assert_eq!(log.entry_heads(cut.index + 1..u64::MAX, usize::MAX).unwrap().first().map(|e| e.log_id), Some(after.log_id));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end), "no data is deleted");
    assert!(!log.read(0, 1 << 20, end).unwrap().bytes.is_empty(), "data before the damage is served");
    drop(log);
    let mut log = open(&disk);
    assert_eq!(log.purged_log_id(), Some(cut), "durable");
    assert_eq!(log.purge_past_damage(&[]).unwrap(), None, "found once");
}
