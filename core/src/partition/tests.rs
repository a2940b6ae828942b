//! Exact outputs of the partition state machine for sequences of inputs,
//! and a property test against a model: answers only at or below the high
//! watermark, retries answered with their original offsets across changes
//! of leader, no offset handed out twice.

use super::*;
use crate::batch::{BatchBuilder, ProducerStamp, decode_all};
use proptest::prelude::*;

fn batch(producer: i64, seq: i32, values: &[&str]) -> Bytes {
    let stamp =
        if producer < 0 { ProducerStamp::NONE } else { ProducerStamp { producer_id: producer, producer_epoch: 0, base_sequence: seq } };
    let mut b = BatchBuilder::new(stamp);
    for v in values {
        b.push(0, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

/// A leader in term 1 over an empty log.
fn leader() -> PartitionState {
    let mut s = PartitionState::new(ProducerTable::default(), 0);
    s.handle_role(Some(1));
    s
}

/// Validates then hands a batch over, as the node does; a refusal by
/// validation is answered like the state's own.
fn send(s: &mut PartitionState, token: u64, batch: &Bytes, mode: AckMode) {
    match validate(batch.clone(), 1 << 20) {
        Ok(v) => s.handle_produce(token, &v, mode),
        Err(e) => s.ready.push_back(Ack { token, result: Err(e) }),
    }
}

/// The group commits `p` where it was predicted: every replica applies its
/// batches' headers, stamped with their offsets.
fn apply(s: &mut PartitionState, p: &Proposal) {
    let mut at = p.base_offset;
    let mut headers = Vec::new();
    for b in &p.batches {
        let mut h = BatchHeader::parse(b).unwrap();
        h.base_offset = at;
        at = h.next_offset();
        headers.push(h);
    }
    assert_eq!(at, p.next_offset);
    s.handle_applied(&headers, p.next_offset);
}

fn commit_all(s: &mut PartitionState) {
    while let Some(p) = s.take_proposal(1 << 20) {
        apply(s, &p);
    }
}

fn acks(s: &mut PartitionState) -> Vec<Ack> {
    std::iter::from_fn(|| s.poll_ack()).collect()
}

fn ok(token: u64, base: u64, next: u64, duplicate: bool) -> Ack {
    Ack { token, result: Ok(Appended { base_offset: base, next_offset: next, duplicate }) }
}

#[test]
fn answers_wait_for_commit_by_mode() {
    let mut s = leader();
    send(&mut s, 1, &batch(-1, -1, &["a", "b"]), AckMode::All);
    send(&mut s, 2, &batch(-1, -1, &["c"]), AckMode::None);
    send(&mut s, 3, &batch(-1, -1, &["d"]), AckMode::Leader);
    assert_eq!(acks(&mut s), vec![ok(2, 2, 3, false)], "only fire-and-forget is answered before commit");
    let p = s.take_proposal(1 << 20).unwrap();
    assert_eq!((p.base_offset, p.next_offset, p.batches.len(), p.term), (0, 4, 3, 1), "queued produces share one entry");
    assert_eq!(acks(&mut s), vec![]);
    apply(&mut s, &p);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 2, false), ok(3, 3, 4, false)]);
    assert_eq!(s.high_watermark(), 4);
}

#[test]
fn a_retry_waits_for_its_original_and_gets_its_offsets() {
    let mut s = leader();
    let b = batch(9, 0, &["x", "y"]);
    send(&mut s, 1, &b, AckMode::All);
    send(&mut s, 2, &b, AckMode::All);
    assert_eq!(acks(&mut s), vec![], "the retry is not answered before the original is committed");
    let p = s.take_proposal(1 << 20).unwrap();
    assert_eq!(p.batches.len(), 1, "a retry is never proposed again");
    apply(&mut s, &p);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 2, false), ok(2, 0, 2, true)]);
    send(&mut s, 3, &b, AckMode::All);
    assert_eq!(acks(&mut s), vec![ok(3, 0, 2, true)], "a retry of a committed batch is answered at once");
    assert!(s.take_proposal(1 << 20).is_none(), "nothing stored twice");
}

#[test]
fn refusals_are_answered_at_once_and_classified() {
    let mut s = leader();
    send(&mut s, 1, &batch(4, 0, &["a"]), AckMode::All);
    let mut other = batch(4, 0, &["b"]).to_vec();
    let value_at = other.len() - 2; // the value's byte, before the header count
    other[value_at] ^= 1; // a different body under the same sequences
    crate::batch::seal_body(&mut other);
    send(&mut s, 2, &Bytes::from(other), AckMode::All);
    send(&mut s, 3, &batch(4, 5, &["gap"]), AckMode::All);
    send(&mut s, 4, &Bytes::from_static(b"junk"), AckMode::All);
    let got = acks(&mut s);
    assert!(matches!(got[0].result, Err(ProduceError::Collision { producer_id: 4, sequence: 0, base_offset: 0 })), "{got:?}");
    assert!(matches!(got[1].result, Err(ProduceError::OutOfOrder { expected: 1, got: 5, .. })), "{got:?}");
    assert!(matches!(got[2].result, Err(ProduceError::InvalidBatch(_))), "{got:?}");
    assert!(got.iter().all(|a| a.result.as_ref().is_err_and(|e| !e.is_storage_fault())));
    commit_all(&mut s);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 1, false)]);
}

#[test]
fn a_follower_refuses_and_a_lost_lead_fails_what_is_in_flight() {
    let mut s = PartitionState::new(ProducerTable::default(), 0);
    send(&mut s, 1, &batch(7, 0, &["a"]), AckMode::All);
    assert!(matches!(&acks(&mut s)[..], [Ack { token: 1, result: Err(ProduceError::NotLeader { .. }) }]));
    s.handle_role(Some(3));
    let b = batch(7, 0, &["a"]);
    send(&mut s, 2, &b, AckMode::All);
    let p = s.take_proposal(1 << 20).unwrap();
    s.handle_role(None);
    assert!(matches!(&acks(&mut s)[..], [Ack { token: 2, result: Err(ProduceError::NotLeader { .. }) }]), "answered, not left to time out");
    // The next leader committed it; this replica applies it, then leads again.
    apply(&mut s, &p);
    s.handle_role(Some(5));
    send(&mut s, 3, &b, AckMode::All);
    assert_eq!(acks(&mut s), vec![ok(3, 0, 1, true)], "the retry finds the batch in the applied table");
    send(&mut s, 4, &batch(7, 1, &["b"]), AckMode::All);
    let p = s.take_proposal(1 << 20).unwrap();
    assert_eq!((p.term, p.base_offset), (5, 1), "predicted from the applied end");
}

#[test]
fn a_proposal_takes_whole_batches_up_to_the_byte_budget() {
    let mut s = leader();
    for i in 0..5 {
        send(&mut s, i, &batch(-1, -1, &["0123456789"]), AckMode::All);
    }
    let len = batch(-1, -1, &["0123456789"]).len();
    let p = s.take_proposal(2 * len + 1).unwrap();
    assert_eq!((p.batches.len(), p.base_offset, p.next_offset), (2, 0, 2));
    let p = s.take_proposal(1).unwrap();
    assert_eq!(p.batches.len(), 1, "one batch even above the budget");
    assert_eq!(s.take_proposal(1 << 20).unwrap().batches.len(), 2);
    assert!(!s.has_queued());
}

/// What arrives after an entry was proposed may join it as it is written:
/// only batches that fit, only for the serving term, at the offsets that
/// follow it; their answers come with the entry's commit.
#[test]
fn batches_joining_an_entry_follow_its_offsets_and_fit_its_budget() {
    let mut s = leader();
    send(&mut s, 1, &batch(-1, -1, &["a"]), AckMode::All);
    let first = s.take_proposal(1 << 20).unwrap();
    send(&mut s, 2, &batch(-1, -1, &["b", "c"]), AckMode::All);
    send(&mut s, 3, &batch(-1, -1, &["d"]), AckMode::All);
    let len = batch(-1, -1, &["b", "c"]).len();
    assert!(s.take_more(2, first.next_offset, 1 << 20).is_none(), "another term's entry takes nothing");
    assert!(s.take_more(1, first.next_offset + 1, 1 << 20).is_none(), "nor an entry that is not the last one taken");
    assert!(s.take_more(1, first.next_offset, len - 1).is_none(), "nothing above the budget, not even one batch");
    let more = s.take_more(1, first.next_offset, len).unwrap();
    assert_eq!((more.batches.len(), more.base_offset, more.next_offset), (1, first.next_offset, 3));
    // The group commits the entry with the batch that joined it.
    let joined = Proposal { batches: [first.batches.clone(), more.batches].concat(), next_offset: more.next_offset, ..first };
    apply(&mut s, &joined);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 1, false), ok(2, 1, 3, false)]);
    assert!(s.has_queued(), "the batch that did not fit waits for the next entry");
    assert!(s.take_more(1, first.next_offset, 1 << 20).is_none(), "the entry that took more is no longer the last taken");
    let next = s.take_proposal(1 << 20).unwrap();
    assert_eq!(next.base_offset, 3);
}

/// A single voter answers at fsync: durable is committed, before apply,
/// and only what is below the durable point.
#[test]
fn a_single_voter_answers_at_durable_and_apply_later_changes_nothing() {
    let mut s = leader();
    send(&mut s, 1, &batch(-1, -1, &["a"]), AckMode::All);
    send(&mut s, 2, &batch(-1, -1, &["b", "c"]), AckMode::All);
    let p = s.take_proposal(1 << 20).unwrap();
    s.handle_durable(1);
    assert_eq!(acks(&mut s), vec![ok(1, 0, 1, false)], "only what is durable");
    s.handle_durable(3);
    assert_eq!(acks(&mut s), vec![ok(2, 1, 3, false)]);
    assert_eq!(s.high_watermark(), 3);
    apply(&mut s, &p);
    assert_eq!(acks(&mut s), vec![], "nothing answered twice");
    s.handle_durable(2);
    assert_eq!(s.high_watermark(), 3, "never moves back");
}

/// A new leader continues at its log end: past the high watermark only
/// where an accepted loss skipped offsets, and the high watermark jumps.
#[test]
fn a_new_leader_continues_at_its_log_end() {
    let mut s = PartitionState::new(ProducerTable::default(), 5);
    s.handle_role_at(Some(2), 9);
    assert_eq!(s.high_watermark(), 9, "everything before the leader's log end is committed");
    send(&mut s, 1, &batch(-1, -1, &["a"]), AckMode::All);
    let p = s.take_proposal(1 << 20).unwrap();
    assert_eq!((p.term, p.base_offset, p.next_offset), (2, 9, 10));
    s.handle_role_at(Some(2), 42);
    assert_eq!(s.take_proposal(1 << 20), None, "the same term again changes nothing");
    assert_eq!(s.high_watermark(), 9);
}

#[test]
fn a_failed_proposal_of_an_old_term_is_ignored() {
    let mut s = leader();
    send(&mut s, 1, &batch(-1, -1, &["a"]), AckMode::All);
    let old = s.take_proposal(1 << 20).unwrap();
    s.handle_role(Some(2));
    let _ = acks(&mut s);
    send(&mut s, 2, &batch(-1, -1, &["b"]), AckMode::All);
    s.handle_proposal_failed(&old, ProduceError::NotLeader { leader: None });
    assert_eq!(s.serving(), Some(2));
    commit_all(&mut s);
    assert_eq!(acks(&mut s), vec![ok(2, 0, 1, false)]);
}

#[derive(Debug, Clone)]
enum Op {
    /// A new batch from producer `p` (0..3), or a retry of its `back`-th last batch.
    Send { p: u8, records: u8, retry_back: Option<u8>, mode: u8 },
    /// The group commits the oldest proposal in flight (taking one first if none).
    Commit,
    /// Leadership moves away; proposals in flight are later committed (`keep`) or lost.
    LoseLead { keep: bool },
    /// This replica leads again, in a new term.
    Lead,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 1u8..4, proptest::option::of(0u8..6), 0u8..3).prop_map(|(p, records, retry_back, mode)| Op::Send { p, records, retry_back, mode }),
        3 => Just(Op::Commit),
        1 => any::<bool>().prop_map(|keep| Op::LoseLead { keep }),
        1 => Just(Op::Lead),
    ]
}

proptest! {
    #[test]
    fn answers_match_a_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut s = leader();
        let mut term = 1;
        // The committed log, as values by offset.
        let mut log: Vec<String> = Vec::new();
        let mut in_flight: std::collections::VecDeque<Proposal> = Default::default();
        // Per producer: the next sequence and the batches sent (seq, records).
        let mut next_seq = [0i32; 3];
        let mut sent: Vec<Vec<(i32, u8)>> = vec![Vec::new(); 3];
        // Where each (producer, seq) was first answered.
        let mut placed: std::collections::BTreeMap<(u8, i32), (u64, u64)> = Default::default();
        let mut modes = std::collections::BTreeMap::new();
        let mut token = 0u64;
        for op in ops {
            match op {
                Op::Send { p, records, retry_back, mode } => {
                    token += 1;
                    let mine = &sent[p as usize];
                    let (seq, records, retry) = match retry_back.filter(|b| (*b as usize) < mine.len().min(5)) {
                        Some(b) => {
                            let (seq, records) = mine[mine.len() - 1 - b as usize];
                            (seq, records, true)
                        }
                        None => (next_seq[p as usize], records, false),
                    };
                    let values: Vec<String> = (0..records).map(|i| format!("{p}-{seq}-{i}")).collect();
                    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                    let mode = [AckMode::None, AckMode::Leader, AckMode::All][mode as usize];
                    modes.insert(token, (p, seq, retry, mode));
                    let before = s.ready.len();
                    send(&mut s, token, &batch(i64::from(p), seq, &refs), mode);
                    // A new batch counts as sent once the leader took it.
                    let refused = s.ready.len() > before && s.ready.back().is_some_and(|a| a.result.is_err());
                    if !retry && !refused {
                        sent[p as usize].push((seq, records));
                        next_seq[p as usize] = seq + i32::from(records);
                    }
                }
                Op::Commit => {
                    if in_flight.is_empty() && let Some(p) = s.take_proposal(300) {
                        in_flight.push_back(p);
                    }
                    if let Some(p) = in_flight.pop_front() {
                        prop_assert_eq!(p.base_offset, log.len() as u64, "a proposal predicted where the log does not end");
                        for b in &p.batches {
                            for r in decode_all(b.clone(), usize::MAX).next().unwrap().unwrap().records() {
                                log.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
                            }
                        }
                        apply(&mut s, &p);
                    }
                }
                Op::LoseLead { keep } => {
                    // Whatever was queued leaves as a proposal first.
                    if let Some(p) = s.take_proposal(usize::MAX) {
                        in_flight.push_back(p);
                    }
                    s.handle_role(None);
                    if !keep {
                        in_flight.clear();
                        // What was never committed is forgotten: producers
                        // continue from what the log holds.
                        for (p, mine) in sent.iter_mut().enumerate() {
                            mine.retain(|(seq, _)| log.contains(&format!("{p}-{seq}-0")));
                            next_seq[p] = mine.last().map_or(0, |(seq, r)| seq + i32::from(*r));
                        }
                        placed.retain(|_, (_, next)| *next <= log.len() as u64);
                    }
                }
                Op::Lead => {
                    // A leader serves only once everything committed is applied.
                    while let Some(p) = in_flight.pop_front() {
                        prop_assert_eq!(p.base_offset, log.len() as u64);
                        for b in &p.batches {
                            for r in decode_all(b.clone(), usize::MAX).next().unwrap().unwrap().records() {
                                log.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
                            }
                        }
                        apply(&mut s, &p);
                    }
                    term += 1;
                    s.handle_role(Some(term));
                }
            }
            let hw = s.high_watermark();
            prop_assert_eq!(hw, log.len() as u64);
            while let Some(a) = s.poll_ack() {
                let (p, seq, retry, mode) = modes[&a.token];
                let Ok(appended) = a.result else { continue };
                // Fire-and-forget answers carry predicted offsets, promised nothing.
                if mode == AckMode::None {
                    continue;
                }
                {
                    prop_assert!(appended.next_offset <= hw, "answered {:?} above the high watermark {}", appended, hw);
                    // What is answered is in the log, at those offsets.
                    prop_assert_eq!(&log[appended.base_offset as usize], &format!("{p}-{seq}-0"));
                }
                if !appended.duplicate {
                    prop_assert!(!retry || !placed.contains_key(&(p, seq)), "a retry of a placed batch stored again");
                }
                let place = (appended.base_offset, appended.next_offset);
                match placed.get(&(p, seq)) {
                    Some(first) => prop_assert_eq!(*first, place, "a retry answered with other offsets"),
                    None => {
                        placed.insert((p, seq), place);
                    }
                }
            }
        }
        // No offset handed out twice: every value in the log once.
        let mut seen = std::collections::BTreeSet::new();
        for v in &log {
            prop_assert!(seen.insert(v.clone()), "{} stored twice", v);
        }
    }
}
