//! The history checker. Each invariant is one function with its source; the
//! anomaly names are Jepsen's (`jepsen/src/jepsen/tests/kafka.clj`).
//!
//! A history holds what producers were told (acks: partition, offset,
//! value), what each consumer saw in order (polls), and what a final reader
//! found after the system healed. Values are unique per send, so every
//! record can be traced.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// An acknowledged record is not readable at its acknowledged offset.
    Lost,
    /// Two different values were seen at one offset.
    InconsistentOffsets,
    /// One value is stored at two offsets (an idempotent producer's retry was stored twice).
    Duplicate,
    /// A consumer saw offsets go backwards or repeat within one subscription.
    Nonmonotonic,
    /// A consumer's (or the final reader's) offsets jumped over a record.
    PollSkip,
    /// An acknowledged record no consumer saw by the end of the run.
    Unseen,
    /// The broker served bytes that failed the client's CRC check.
    CorruptServed,
    /// The system did not converge and serve within the liveness bound.
    NoProgress,
    /// A group's committed offset for a partition moved backwards.
    CommitRegressed,
    /// Two members of a group owned one partition in the same generation.
    TwoOwners,
    /// A producer's acknowledged records in a partition are stored out of send order.
    NonmonotonicSend,
    /// Two nodes led one Raft group in the same term: two majorities that
    /// do not overlap (a membership change that skipped joint consensus).
    ElectionSafety,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub detail: String,
}

/// One acknowledgement a producer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub partition: u32,
    pub offset: u64,
    pub value: String,
    /// The producer that sent it and its place in that producer's calls
    /// (the order `send` was called in).
    pub producer: u32,
    pub send_seq: u64,
}

/// One record a consumer saw; `consumer` identifies one uninterrupted
/// subscription (a consumer that restarts from a committed position gets a
/// new id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub consumer: u32,
    pub partition: u32,
    pub offset: u64,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub acks: Vec<Ack>,
    pub polls: Vec<Poll>,
    /// The final read of each partition: (offset, value) in read order.
    pub final_reads: BTreeMap<u32, Vec<(u64, String)>>,
    /// First offset of each partition's final read (its log start).
    pub final_starts: BTreeMap<u32, u64>,
    /// Offsets the broker reported as corrupt (CorruptData) in the final read.
    pub reported_corrupt: BTreeSet<(u32, u64)>,
    /// Whether disk corruption was injected into a partition's data.
    pub corrupted_partitions: BTreeSet<u32>,
    /// Partitions whose acknowledged data below the recovery checkpoint was
    /// damaged or deleted while the node was down.
    pub loss_injected: BTreeSet<u32>,
    /// Losses recovery reported (partition, from, to) and an operator then
    /// accepted: the only acknowledged records allowed to go missing, and
    /// only where a loss was injected.
    pub reported_losses: Vec<(u32, u64, u64)>,
    /// Batches the client rejected as corrupt although the broker served them.
    pub corrupt_served: Vec<String>,
    /// Liveness failures, described.
    pub stuck: Vec<String>,
    /// Acknowledged group commits, in acknowledgement order: (generation,
    /// partition, offset).
    pub group_commits: Vec<(u32, u32, u64)>,
    /// Ownership claims: (generation, partition, member).
    pub group_owners: Vec<(u32, u32, String)>,
    /// Values the group's members processed; `None` when no group ran.
    pub group_processed: Option<BTreeSet<String>>,
    /// Every node seen leading each Raft group, by (group, term), sampled
    /// through the run (clusters only).
    pub leaders: BTreeMap<(u64, u64), BTreeSet<u64>>,
}

/// Whether offset `o` of partition `p` is in a loss the broker reported
/// where one was injected (loud, accepted, not silent).
pub fn excused_loss(h: &History, p: u32, o: u64) -> bool {
    h.loss_injected.contains(&p) && h.reported_losses.iter().any(|&(lp, from, to)| lp == p && from <= o && o < to)
}

/// Runs every invariant; returns all anomalies found.
pub fn check(h: &History) -> Vec<Anomaly> {
    let mut out = Vec::new();
    lost(h, &mut out);
    inconsistent_offsets(h, &mut out);
    duplicates(h, &mut out);
    send_order(h, &mut out);
    consumer_order(h, &mut out);
    final_read_dense(h, &mut out);
    unseen(h, &mut out);
    for c in &h.corrupt_served {
        out.push(Anomaly { kind: AnomalyKind::CorruptServed, detail: c.clone() });
    }
    for s in &h.stuck {
        out.push(Anomaly { kind: AnomalyKind::NoProgress, detail: s.clone() });
    }
    election_safety(h, &mut out);
    group_commits_monotonic(h, &mut out);
    group_single_owner(h, &mut out);
    group_unseen(h, &mut out);
    out
}

/// Raft's election safety (Ongaro's thesis §3.6.3), which membership
/// changes must keep: at most one leader per term of each group. Two
/// leaders in a term mean two majorities that share no voter, as a change
/// from one voter set to another in a single step allows.
fn election_safety(h: &History, out: &mut Vec<Anomaly>) {
    for ((group, term), nodes) in &h.leaders {
        if nodes.len() > 1 {
            out.push(Anomaly { kind: AnomalyKind::ElectionSafety, detail: format!("group {group} term {term} had leaders {nodes:?}") });
        }
    }
}

/// ARCHITECTURE.md §5 "committed group offsets never move backwards": consumers commit
/// what they processed, and stale generations are refused. Commits are
/// ordered by generation, then acknowledgement: an acknowledgement can arrive
/// after a later generation's (a slow network), but the coordinator applied
/// it before that generation formed.
fn group_commits_monotonic(h: &History, out: &mut Vec<Anomaly>) {
    let mut commits = h.group_commits.clone();
    commits.sort_by_key(|(g, _, _)| *g); // stable: acknowledgement order within a generation
    let mut last: BTreeMap<u32, (u32, u64)> = BTreeMap::new();
    for (g, p, o) in commits {
        if let Some((pg, prev)) = last.insert(p, (g, o))
            && o < prev
        {
            out.push(Anomaly {
                kind: AnomalyKind::CommitRegressed,
                detail: format!("partition {p} committed {o} in generation {g} after {prev} in generation {pg}"),
            });
        }
    }
}

/// ARCHITECTURE.md §5 "no partition has two owners in one generation".
fn group_single_owner(h: &History, out: &mut Vec<Anomaly>) {
    let mut owner: BTreeMap<(u32, u32), &str> = BTreeMap::new();
    for (g, p, m) in &h.group_owners {
        if let Some(prev) = owner.insert((*g, *p), m)
            && prev != m
        {
            out.push(Anomaly { kind: AnomalyKind::TwoOwners, detail: format!("partition {p} owned by {prev} and {m} in generation {g}") });
        }
    }
}

/// Jepsen `unseen`, for the group: every acknowledged record was processed
/// by some member (at least once) by the end. A group member stops at a
/// batch the broker reports corrupt (the application must decide what to do),
/// so partitions with injected corruption are left out.
fn group_unseen(h: &History, out: &mut Vec<Anomaly>) {
    let Some(processed) = &h.group_processed else { return };
    let missing: Vec<&Ack> = h
        .acks
        .iter()
        .filter(|a| !processed.contains(&a.value))
        .filter(|a| !h.corrupted_partitions.contains(&a.partition))
        .filter(|a| !excused_loss(h, a.partition, a.offset))
        .collect();
    if !missing.is_empty() {
        out.push(Anomaly {
            kind: AnomalyKind::Unseen,
            detail: format!(
                "{} acknowledged record(s) the group never processed, first {:?}",
                missing.len(),
                missing.first().map(|a| (&a.value, a.partition, a.offset))
            ),
        });
    }
}

/// Jepsen `lost-write`; ARCHITECTURE.md §5 "every acknowledged record is readable at
/// its acknowledged offset". A loss the broker reported loudly (CorruptData
/// where corruption was injected) is not silent and is excused.
fn lost(h: &History, out: &mut Vec<Anomaly>) {
    let finals: BTreeMap<(u32, u64), &str> =
        h.final_reads.iter().flat_map(|(p, rs)| rs.iter().map(move |(o, v)| ((*p, *o), v.as_str()))).collect();
    for a in &h.acks {
        let start = h.final_starts.get(&a.partition).copied().unwrap_or(0);
        if a.offset < start {
            continue; // removed by retention, not lost
        }
        match finals.get(&(a.partition, a.offset)) {
            Some(v) if *v == a.value => {}
            _ if h.reported_corrupt.contains(&(a.partition, a.offset)) && h.corrupted_partitions.contains(&a.partition) => {}
            _ if excused_loss(h, a.partition, a.offset) => {}
            found => out.push(Anomaly {
                kind: AnomalyKind::Lost,
                detail: format!("acknowledged {:?} at {}/{} but the final read has {:?}", a.value, a.partition, a.offset, found),
            }),
        }
    }
}

/// Jepsen `inconsistent-offsets`: one offset, two values, across every
/// observation (acks, polls, final read).
fn inconsistent_offsets(h: &History, out: &mut Vec<Anomaly>) {
    let mut seen: BTreeMap<(u32, u64), BTreeSet<&str>> = BTreeMap::new();
    for a in &h.acks {
        seen.entry((a.partition, a.offset)).or_default().insert(&a.value);
    }
    for p in &h.polls {
        seen.entry((p.partition, p.offset)).or_default().insert(&p.value);
    }
    for (p, rs) in &h.final_reads {
        for (o, v) in rs {
            seen.entry((*p, *o)).or_default().insert(v);
        }
    }
    for ((p, o), values) in seen {
        if values.len() > 1 {
            out.push(Anomaly { kind: AnomalyKind::InconsistentOffsets, detail: format!("{p}/{o} holds {values:?}") });
        }
    }
}

/// Jepsen `duplicate`; ARCHITECTURE.md §5 "no duplicates from an idempotent producer,
/// however many retries".
fn duplicates(h: &History, out: &mut Vec<Anomaly>) {
    let mut at: BTreeMap<&str, Vec<(u32, u64)>> = BTreeMap::new();
    for (p, rs) in &h.final_reads {
        for (o, v) in rs {
            at.entry(v).or_default().push((*p, *o));
        }
    }
    for (v, places) in at {
        if places.len() > 1 {
            out.push(Anomaly { kind: AnomalyKind::Duplicate, detail: format!("{v:?} stored at {places:?}") });
        }
    }
}

/// Jepsen `nonmonotonic-send`: a producer's acknowledged records in one
/// partition are stored in the order the producer sent them, whatever
/// routing (key, round-robin) and metadata lookups happened in between.
fn send_order(h: &History, out: &mut Vec<Anomaly>) {
    let mut by_stream: BTreeMap<(u32, u32), Vec<&Ack>> = BTreeMap::new();
    for a in &h.acks {
        by_stream.entry((a.producer, a.partition)).or_default().push(a);
    }
    for ((producer, partition), mut acks) in by_stream {
        acks.sort_by_key(|a| a.send_seq);
        for w in acks.windows(2) {
            if w[1].offset <= w[0].offset {
                out.push(Anomaly {
                    kind: AnomalyKind::NonmonotonicSend,
                    detail: format!(
                        "producer {producer} sent {:?} before {:?} but partition {partition} stores them at {} and {}",
                        w[0].value, w[1].value, w[0].offset, w[1].offset
                    ),
                });
                break;
            }
        }
    }
}

/// Jepsen `nonmonotonic-poll` and `poll-skip`; ARCHITECTURE.md §5 "offsets in a
/// partition are dense and increasing; no reordering".
fn consumer_order(h: &History, out: &mut Vec<Anomaly>) {
    let mut last: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for p in &h.polls {
        if let Some(prev) = last.insert((p.consumer, p.partition), p.offset) {
            if p.offset <= prev {
                out.push(Anomaly {
                    kind: AnomalyKind::Nonmonotonic,
                    detail: format!("consumer {} on partition {} saw {} after {}", p.consumer, p.partition, p.offset, prev),
                });
            } else if p.offset > prev + 1 && !(prev + 1..p.offset).all(|o| excused_loss(h, p.partition, o)) {
                out.push(Anomaly {
                    kind: AnomalyKind::PollSkip,
                    detail: format!("consumer {} on partition {} jumped from {} to {}", p.consumer, p.partition, prev, p.offset),
                });
            }
        }
    }
}

/// The final read must be dense from the log start (corrupt offsets the
/// broker reported are the only holes allowed).
fn final_read_dense(h: &History, out: &mut Vec<Anomaly>) {
    for (p, rs) in &h.final_reads {
        let mut expect = h.final_starts.get(p).copied().unwrap_or(0);
        for (o, _) in rs {
            while expect < *o && (h.reported_corrupt.contains(&(*p, expect)) || excused_loss(h, *p, expect)) {
                expect += 1;
            }
            if *o != expect {
                out.push(Anomaly {
                    kind: AnomalyKind::PollSkip,
                    detail: format!("final read of partition {p} expected offset {expect}, got {o}"),
                });
                break;
            }
            expect += 1;
        }
    }
}

/// Jepsen `unseen`: acknowledged, present, yet no live consumer saw it by
/// the end (consumers follow every partition from its start).
fn unseen(h: &History, out: &mut Vec<Anomaly>) {
    let polled: BTreeSet<&str> = h.polls.iter().map(|p| p.value.as_str()).collect();
    let missing: Vec<&Ack> = h
        .acks
        .iter()
        .filter(|a| !polled.contains(a.value.as_str()))
        .filter(|a| !(h.reported_corrupt.contains(&(a.partition, a.offset)) && h.corrupted_partitions.contains(&a.partition)))
        .filter(|a| !excused_loss(h, a.partition, a.offset))
        .collect();
    if !missing.is_empty() {
        out.push(Anomaly {
            kind: AnomalyKind::Unseen,
            detail: format!(
                "{} acknowledged record(s) never polled, first {:?}",
                missing.len(),
                missing.first().map(|a| (&a.value, a.partition, a.offset))
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(p: u32, o: u64, v: &str) -> Ack {
        Ack { partition: p, offset: o, value: v.into(), producer: 0, send_seq: o }
    }

    fn poll(c: u32, p: u32, o: u64, v: &str) -> Poll {
        Poll { consumer: c, partition: p, offset: o, value: v.into() }
    }

    fn good() -> History {
        let mut h = History {
            acks: vec![ack(0, 0, "a"), ack(0, 1, "b")],
            polls: vec![poll(1, 0, 0, "a"), poll(1, 0, 1, "b")],
            ..Default::default()
        };
        h.final_reads.insert(0, vec![(0, "a".into()), (1, "b".into())]);
        h
    }

    fn kinds(h: &History) -> Vec<AnomalyKind> {
        check(h).into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(check(&good()), vec![]);
    }

    #[test]
    fn each_anomaly_is_detected() {
        let mut h = good();
        h.final_reads.insert(0, vec![(0, "a".into())]);
        assert!(kinds(&h).contains(&AnomalyKind::Lost));

        let mut h = good();
        h.polls.push(poll(2, 0, 1, "c"));
        assert!(kinds(&h).contains(&AnomalyKind::InconsistentOffsets));

        let mut h = good();
        h.final_reads.insert(0, vec![(0, "a".into()), (1, "b".into()), (2, "b".into())]);
        assert!(kinds(&h).contains(&AnomalyKind::Duplicate));

        let mut h = good();
        h.polls.push(poll(1, 0, 0, "a"));
        assert!(kinds(&h).contains(&AnomalyKind::Nonmonotonic));

        let mut h = good();
        h.polls = vec![poll(1, 0, 0, "a"), poll(1, 0, 2, "z")];
        assert!(kinds(&h).contains(&AnomalyKind::PollSkip));

        let mut h = good();
        h.polls.pop();
        assert_eq!(kinds(&h), vec![AnomalyKind::Unseen]);

        let mut h = good();
        h.acks[0].send_seq = 2;
        assert_eq!(kinds(&h), vec![AnomalyKind::NonmonotonicSend]);
        h.acks[0].producer = 1;
        assert_eq!(check(&h), vec![], "two producers' sends are not ordered with each other");

        let mut h = good();
        h.stuck.push("no leader".into());
        assert_eq!(kinds(&h), vec![AnomalyKind::NoProgress]);

        let mut h = good();
        h.group_commits = vec![(1, 0, 5), (1, 1, 2), (1, 0, 4)];
        assert_eq!(kinds(&h), vec![AnomalyKind::CommitRegressed]);
        let mut h = good();
        h.group_commits = vec![(2, 0, 5), (1, 0, 4)];
        assert_eq!(check(&h), vec![], "a late acknowledgement from an earlier generation");

        let mut h = good();
        h.group_owners = vec![(3, 0, "a".into()), (3, 0, "a".into()), (4, 0, "b".into()), (4, 0, "c".into())];
        assert_eq!(kinds(&h), vec![AnomalyKind::TwoOwners]);

        let mut h = good();
        h.group_processed = Some(["a".to_string()].into());
        assert_eq!(kinds(&h), vec![AnomalyKind::Unseen]);

        let mut h = good();
        h.leaders.insert((7, 3), [1].into());
        h.leaders.insert((7, 4), [2].into());
        h.leaders.insert((8, 3), [2].into());
        assert_eq!(check(&h), vec![], "one leader per term of each group");
        h.leaders.insert((7, 4), [2, 4].into());
        assert_eq!(kinds(&h), vec![AnomalyKind::ElectionSafety]);
    }

    #[test]
    fn a_reported_loss_is_excused_only_where_injected() {
        let mut h = good();
        h.acks.push(ack(0, 2, "c"));
        h.polls.push(poll(1, 0, 3, "d"));
        h.final_reads.insert(0, vec![(0, "a".into()), (1, "b".into()), (3, "d".into())]);
        assert!(kinds(&h).contains(&AnomalyKind::Lost), "a silent loss");
        h.reported_losses.push((0, 2, 3));
        assert!(kinds(&h).contains(&AnomalyKind::Lost), "reported, but nothing was injected there");
        h.loss_injected.insert(0);
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn reported_corruption_is_excused_only_where_injected() {
        let mut h = good();
        h.final_reads.insert(0, vec![(0, "a".into())]);
        h.polls.pop();
        h.reported_corrupt.insert((0, 1));
        assert!(kinds(&h).contains(&AnomalyKind::Lost), "no corruption was injected: a silent loss");
        h.corrupted_partitions.insert(0);
        assert_eq!(check(&h), vec![]);
    }
}
