//! Exact outputs of the partition state machine for sequences of inputs,
//! and a property test against a model: answers only at or below the
//! durable point, retries answered with their original offsets.

use super::*;
use crate::batch::{BatchBuilder, ProducerStamp};
use crate::disk::sim::SimDisk;
use crate::log::LogConfig;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

fn state(seed: u64) -> PartitionState {
    let config = LogConfig { segment_bytes_max: 4096, preallocate_bytes: 0, timestamp_after_max_ms: None, ..LogConfig::default() };
    let (log, _) = PartitionLog::open(Arc::new(SimDisk::new(seed)), Path::new("/p"), config, Timestamp(0)).unwrap();
    PartitionState::new(log).unwrap()
}

fn batch(producer: i64, seq: i32, values: &[&str]) -> Bytes {
    let stamp =
        if producer < 0 { ProducerStamp::NONE } else { ProducerStamp { producer_id: producer, producer_epoch: 0, base_sequence: seq } };
    let mut b = BatchBuilder::new(stamp);
    for v in values {
        b.push(0, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

/// Validates then hands a batch over, as the node does; a refusal by
/// validation is answered like the state's own.
fn send(s: &mut PartitionState, token: u64, batch: &Bytes, mode: AckMode) {
    match validate(batch.clone(), 1 << 20) {
        Ok(v) => s.handle_produce(token, &v, mode, Timestamp(0)),
        Err(e) => s.ready.push_back(Ack { token, result: Err(e) }),
    }
}

fn flush(s: &mut PartitionState) {
    let up_to = s.log_mut().flush().unwrap();
    s.handle_flushed(up_to);
}

fn acks(s: &mut PartitionState) -> Vec<Ack> {
    std::iter::from_fn(|| s.poll_ack()).collect()
}

fn ok(token: u64, base: u64, next: u64, duplicate: bool) -> Ack {
    Ack { token, result: Ok(Appended { base_offset: base, next_offset: next, duplicate }) }
}

#[test]
fn answers_wait_for_durability_by_mode() {
    let mut s = state(1);
    send(&mut s, 1, &batch(-1, -1, &["a", "b"]), AckMode::All);
    send(&mut s, 2, &batch(-1, -1, &["c"]), AckMode::None);
    send(&mut s, 3, &batch(-1, -1, &["d"]), AckMode::Leader);
    assert_eq!(acks(&mut s), vec![ok(2, 2, 3, false)], "only fire-and-forget is answered before a flush");
    assert_eq!(s.high_watermark(), 0);
    flush(&mut s);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 2, false), ok(3, 3, 4, false)]);
    assert_eq!(s.high_watermark(), 4);
}

#[test]
fn a_retry_waits_for_its_original_and_gets_its_offsets() {
    let mut s = state(2);
    let b = batch(9, 0, &["x", "y"]);
    send(&mut s, 1, &b, AckMode::All);
    send(&mut s, 2, &b, AckMode::All);
    assert_eq!(acks(&mut s), vec![], "the retry is not answered before the original is durable");
    flush(&mut s);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 2, false), ok(2, 0, 2, true)]);
    send(&mut s, 3, &b, AckMode::All);
    assert_eq!(acks(&mut s), vec![ok(3, 0, 2, true)], "a retry of a durable batch is answered at once");
    assert_eq!(s.log().log_end_offset(), 2, "nothing stored twice");
}

#[test]
fn refusals_are_answered_at_once_and_classified() {
    let mut s = state(3);
    send(&mut s, 1, &batch(4, 0, &["a"]), AckMode::All);
    let mut other = batch(4, 0, &["b"]).to_vec();
    other[60] ^= 1; // a different body under the same sequences (CRC recomputed below)
    let crc = crc32fast::hash(&other[crate::batch::CRC_START..]);
    other[41..45].copy_from_slice(&crc.to_le_bytes());
    send(&mut s, 2, &Bytes::from(other), AckMode::All);
    send(&mut s, 3, &batch(4, 5, &["gap"]), AckMode::All);
    send(&mut s, 4, &Bytes::from_static(b"junk"), AckMode::All);
    let got = acks(&mut s);
    assert!(matches!(got[0].result, Err(ProduceError::Collision { producer_id: 4, sequence: 0, base_offset: 0 })), "{got:?}");
    assert!(matches!(got[1].result, Err(ProduceError::OutOfOrder { expected: 1, got: 5, .. })), "{got:?}");
    assert!(matches!(got[2].result, Err(ProduceError::InvalidBatch(_))), "{got:?}");
    assert!(got.iter().all(|a| a.result.as_ref().is_err_and(|e| !e.is_storage_fault())));
    flush(&mut s);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 1, false)]);
}

#[test]
fn the_high_watermark_is_the_lesser_of_committed_and_flushed() {
    let mut s = state(4);
    send(&mut s, 1, &batch(-1, -1, &["a", "b", "c"]), AckMode::All);
    s.handle_committed(3);
    assert_eq!((s.high_watermark(), acks(&mut s)), (0, vec![]), "committed elsewhere, not yet durable here");
    flush(&mut s);
    assert_eq!(s.high_watermark(), 3);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 3, false)]);
}

/// A batch the model sent: (first sequence, records, where it landed).
type Sent = (i32, u8, Option<(u64, u64)>);

#[derive(Debug, Clone)]
enum Op {
    /// A new batch from producer `p` (0..3), or a retry of its `back`-th last batch.
    Send {
        p: u8,
        records: u8,
        retry_back: Option<u8>,
        mode: u8,
    },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 1u8..4, proptest::option::of(0u8..6), 0u8..3).prop_map(|(p, records, retry_back, mode)| Op::Send { p, records, retry_back, mode }),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #[test]
    fn answers_match_a_model(seed: u64, ops in proptest::collection::vec(op(), 1..80)) {
        let mut s = state(seed);
        // Model: per producer, the batches sent (seq, records) and where they landed.
        let mut sent: Vec<Vec<Sent>> = vec![Vec::new(); 3];
        let mut token = 0u64;
        let mut modes = std::collections::BTreeMap::new();
        for op in ops {
            match op {
                Op::Send { p, records, retry_back, mode } => {
                    token += 1;
                    let mine = &mut sent[p as usize];
                    let (seq, records, retry) = match retry_back.filter(|b| (*b as usize) < mine.len().min(5)) {
                        Some(b) => {
                            let (seq, records, _) = mine[mine.len() - 1 - b as usize];
                            (seq, records, true)
                        }
                        None => {
                            let seq = mine.last().map_or(0, |(s, r, _)| s + i32::from(*r));
                            (seq, records, false)
                        }
                    };
                    let values: Vec<String> = (0..records).map(|i| format!("{p}-{seq}-{i}")).collect();
                    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                    let mode = [AckMode::None, AckMode::Leader, AckMode::All][mode as usize];
                    modes.insert(token, (p, seq, retry, mode));
                    if !retry {
                        mine.push((seq, records, None));
                    }
                    send(&mut s, token, &batch(i64::from(p), seq, &refs), mode);
                }
                Op::Flush => flush(&mut s),
            }
            // Rolls sync too: the log's flushed offset is the durable point.
            let durable = s.log().flushed_offset();
            while let Some(a) = s.poll_ack() {
                let (p, seq, retry, mode) = modes[&a.token];
                let appended = a.result.expect("the model sends only valid, in-order batches");
                prop_assert_eq!(appended.duplicate, retry);
                if mode != AckMode::None {
                    prop_assert!(appended.next_offset <= durable, "answered {:?} above the durable point {}", appended, durable);
                }
                let entry = sent[p as usize].iter_mut().find(|(s, _, _)| *s == seq).expect("sent");
                let place = (appended.base_offset, appended.next_offset);
                match entry.2 {
                    Some(first) => prop_assert_eq!(first, place, "a retry answered with other offsets"),
                    None => entry.2 = Some(place),
                }
            }
        }
        prop_assert!(s.high_watermark() <= s.log().log_end_offset());
    }
}

#[test]
fn a_roll_makes_what_it_sealed_due_without_a_flush() {
    let mut s = state(5);
    let big = "v".repeat(1500);
    send(&mut s, 1, &batch(-1, -1, &[&big, &big]), AckMode::All);
    assert_eq!(acks(&mut s), vec![]);
    // The next batch does not fit the 4 KiB segment: the roll seals (and syncs) the first.
    send(&mut s, 2, &batch(-1, -1, &[&big, &big]), AckMode::All);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 2, false)]);
    assert_eq!(s.high_watermark(), 2);
}
