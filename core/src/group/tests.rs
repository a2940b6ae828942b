//! Property tests of the coordinator against its invariants, under random
//! joins, rejoins, heartbeats, leaves, clock advances and commits.

use super::*;
use proptest::prelude::*;

const SESSION_MS: u32 = 10_000;

fn params(member_id: Option<String>, topics: &[&str], assignors: Vec<Assignor>) -> JoinParams {
    JoinParams {
        member_id,
        client_id: "c".into(),
        client_host: String::new(),
        protocol: Protocol::Assigned { topics: topics.iter().map(|t| t.to_string()).collect(), assignors },
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: SESSION_MS,
    }
}

fn coordinator(now: Now) -> GroupCoordinator {
    let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 0);
    c.set_partitions("a", Some(6), now);
    c.set_partitions("b", Some(3), now);
    c
}

#[test]
fn three_members_share_six_partitions_and_a_leaver_is_replaced() {
    let mut now = Now::at(0);
    let mut c = coordinator(now);
    let ids: Vec<String> = (0..3).map(|_| c.join("g", params(None, &["a"], vec![Assignor::Range]), now).unwrap().member_id).collect();
    // The first two must rejoin for the rebalance the third triggered.
    for id in &ids {
        c.join("g", params(Some(id.clone()), &["a"], vec![Assignor::Range]), now).unwrap();
    }
    let g = c.group("g").unwrap();
    assert_eq!(g.state, GroupState::Stable);
    let counts: Vec<usize> = ids.iter().map(|id| c.sync("g", id, now).unwrap().partitions.len()).collect();
    assert_eq!(counts, vec![2, 2, 2]);
    // One member stops heartbeating; after its session the others rejoin and take over.
    now = Now::at(u64::from(SESSION_MS) / 2);
    for id in &ids[..2] {
        c.heartbeat("g", id, c.group("g").unwrap().generation, now).unwrap();
    }
    now = Now::at(u64::from(SESSION_MS) + 1);
    c.tick(now);
    assert!(!c.group("g").unwrap().members.contains_key(&ids[2]));
    for id in &ids[..2] {
        assert_eq!(c.heartbeat("g", id, 1, now), Err(GroupError::RebalanceInProgress));
        c.join("g", params(Some(id.clone()), &["a"], vec![Assignor::Range]), now).unwrap();
    }
    let counts: Vec<usize> = ids[..2].iter().map(|id| c.sync("g", id, now).unwrap().partitions.len()).collect();
    assert_eq!(counts, vec![3, 3]);
}

#[test]
fn commits_from_stale_generations_and_strangers_are_refused() {
    let now = Now::at(0);
    let mut c = coordinator(now);
    let a = c.join("g", params(None, &["a"], vec![Assignor::Sticky]), now).unwrap().member_id;
    let generation = c.sync("g", &a, now).unwrap().generation;
    let tp = TopicPartition::new("a", 0);
    let pending = c.commit("g", Some((&a, generation)), &[(tp.clone(), 5, String::new())], now).unwrap();
    c.apply_commit(&pending, now);
    assert_eq!(c.fetch_offsets("g", std::slice::from_ref(&tp))[&tp].offset, 5);
    let b = c.join("g", params(None, &["a"], vec![Assignor::Sticky]), now).unwrap().member_id;
    c.join("g", params(Some(a.clone()), &["a"], vec![Assignor::Sticky]), now).unwrap();
    assert!(matches!(
        c.commit("g", Some((&a, generation)), &[(tp.clone(), 1, String::new())], now),
        Err(GroupError::IllegalGeneration { .. })
    ));
    assert!(matches!(c.commit("g", Some(("nobody", 2)), &[(tp.clone(), 1, String::new())], now), Err(GroupError::UnknownMember(_))));
    assert!(matches!(c.commit("g", None, &[(tp.clone(), 1, String::new())], now), Err(GroupError::NotEmpty(_))));
    assert!(c.sync("g", &b, now).is_ok());
}

#[test]
fn the_group_agrees_on_an_assignor_all_members_support() {
    let now = Now::at(0);
    let mut c = coordinator(now);
    let a = c.join("g", params(None, &["a"], vec![Assignor::Sticky, Assignor::RoundRobin]), now).unwrap().member_id;
    let b = c.join("g", params(None, &["a"], vec![Assignor::RoundRobin]), now).unwrap().member_id;
    c.join("g", params(Some(a.clone()), &["a"], vec![Assignor::Sticky, Assignor::RoundRobin]), now).unwrap();
    assert_eq!(c.sync("g", &b, now).unwrap().assignor, Assignor::RoundRobin);
    assert!(matches!(c.join("g", params(None, &["a"], vec![Assignor::Range]), now), Err(GroupError::InconsistentAssignors { .. })));
}

#[test]
fn sticky_keeps_partitions_in_place() {
    let subs: BTreeMap<String, BTreeSet<String>> = ["m1", "m2", "m3"].iter().map(|m| (m.to_string(), ["a".to_string()].into())).collect();
    let parts: BTreeMap<String, u32> = [("a".to_string(), 9)].into();
    let first = assign(Assignor::Sticky, &subs, &parts, &BTreeMap::new());
    let mut fewer = subs.clone();
    fewer.remove("m3");
    let second = assign(Assignor::Sticky, &fewer, &parts, &first);
    for m in ["m1", "m2"] {
        for tp in &first[m] {
            assert!(second[m].contains(tp), "{m} lost {tp:?} though it stayed");
        }
    }
    assert_eq!(second["m1"].len() + second["m2"].len(), 9);
    assert!(second["m1"].len().abs_diff(second["m2"].len()) <= 1);
}

#[derive(Debug, Clone)]
enum Op {
    Join { topics: u8, assignors: u8 },
    Rejoin(u8),
    Heartbeat(u8),
    Sync(u8),
    Leave(u8),
    Advance(u16),
    Commit { member: u8, stale: bool, offset: u16 },
    Resize(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..4, 1u8..8).prop_map(|(topics, assignors)| Op::Join { topics, assignors }),
        3 => any::<u8>().prop_map(Op::Rejoin),
        4 => any::<u8>().prop_map(Op::Heartbeat),
        4 => any::<u8>().prop_map(Op::Sync),
        1 => any::<u8>().prop_map(Op::Leave),
        3 => (0u16..8000).prop_map(Op::Advance),
        3 => (any::<u8>(), any::<bool>(), any::<u16>()).prop_map(|(member, stale, offset)| Op::Commit { member, stale, offset }),
        1 => (1u8..8).prop_map(Op::Resize),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..150)) {
        let mut now = Now::at(0);
        let mut c = coordinator(now);
        // What clients know: member id, subscription, assignors, last synced generation.
        let mut clients: Vec<(String, Vec<&str>, Vec<Assignor>, u32)> = Vec::new();
        let mut owners: BTreeMap<(u32, TopicPartition), String> = BTreeMap::new();
        let mut committed: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut last_generation = 0;
        let all = [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky];
        for op in ops {
            match op {
                Op::Join { topics, assignors } => {
                    let t: Vec<&str> = [(1, "a"), (2, "b")].iter().filter(|(bit, _)| topics & bit != 0).map(|(_, t)| *t).collect();
                    let mut a: Vec<Assignor> = all.iter().enumerate().filter(|(i, _)| assignors & (1 << i) != 0).map(|(_, a)| *a).collect();
                    a.push(Assignor::Range); // keep a common one most of the time
                    a.dedup();
                    if let Ok(r) = c.join("g", params(None, &t, a.clone()), now) {
                        clients.push((r.member_id, t, a, 0));
                    }
                }
                Op::Rejoin(i) if !clients.is_empty() => {
                    let (id, t, a, _) = clients[i as usize % clients.len()].clone();
                    let _ = c.join("g", params(Some(id), &t, a), now);
                }
                Op::Heartbeat(i) if !clients.is_empty() => {
                    let k = i as usize % clients.len();
                    let _ = c.heartbeat("g", &clients[k].0, clients[k].3, now);
                }
                Op::Sync(i) if !clients.is_empty() => {
                    let k = i as usize % clients.len();
                    if let Ok(s) = c.sync("g", &clients[k].0, now) {
                        clients[k].3 = s.generation;
                        for tp in s.partitions {
                            // Within a generation no partition has two owners.
                            let prev = owners.insert((s.generation, tp.clone()), clients[k].0.clone());
                            prop_assert!(prev.is_none_or(|p| p == clients[k].0), "{:?} has two owners in generation {}", tp, s.generation);
                        }
                    }
                }
                Op::Leave(i) if !clients.is_empty() => {
                    let k = i as usize % clients.len();
                    let _ = c.leave("g", &clients[k].0, now);
                    clients.remove(k);
                }
                Op::Advance(ms) => now = Now::at(now.mono.0 + u64::from(ms)),
                Op::Commit { member, stale, offset } if !clients.is_empty() => {
                    let k = member as usize % clients.len();
                    let current = c.group("g").map_or(0, |g| g.generation);
                    let generation = if stale { clients[k].3.saturating_sub(1) } else { clients[k].3 };
                    let tp = TopicPartition::new("a", u32::from(offset % 6));
                    if let Ok(p) = c.commit("g", Some((&clients[k].0, generation)), &[(tp.clone(), u64::from(offset), String::new())], now) {
                        prop_assert_eq!(generation, current, "a commit from generation {} was accepted in {}", generation, current);
                        c.apply_commit(&p, now);
                        committed.insert(tp, u64::from(offset));
                    }
                }
                Op::Resize(n) => c.set_partitions("a", Some(u32::from(n)), now),
                _ => {}
            }
            c.tick(now);
            let Some(g) = c.group("g") else { continue };
            prop_assert!(g.generation >= last_generation, "generations never go back");
            last_generation = g.generation;
            // Timed-out members are gone after a tick.
            for m in g.members.values() {
                prop_assert!(now.mono.millis_since(m.last_heartbeat) <= u64::from(m.session_timeout_ms), "member {} outlived its session", m.id);
            }
            if g.state == GroupState::Stable && !g.members.is_empty() {
                // Every partition of a subscribed topic is assigned, once.
                let mut seen = BTreeSet::new();
                for tps in g.assignment.values() {
                    for tp in tps {
                        prop_assert!(seen.insert(tp.clone()), "{:?} assigned twice", tp);
                    }
                }
                for m in g.members.values() {
                    for t in &m.topics {
                        for p in 0..c.partitions.get(t).copied().unwrap_or(0) {
                            prop_assert!(seen.contains(&TopicPartition::new(t, p)), "{}/{} unassigned", t, p);
                        }
                    }
                }
            }
            // A generation-valid commit is never lost.
            let fetched = c.fetch_offsets("g", &[]);
            for (tp, o) in &committed {
                prop_assert_eq!(fetched.get(tp).map(|c| c.offset), Some(*o));
            }
        }
    }
}

#[test]
fn offsets_of_long_empty_groups_expire_only_when_configured_and_durable() {
    let mut now = Now::at(0);
    for retention in [None, Some(60_000)] {
        let mut c = GroupCoordinator::new(CoordinatorConfig { offsets_retention_ms: retention, ..CoordinatorConfig::default() }, 1);
        c.set_partitions("a", Some(1), now);
        let tp = TopicPartition::new("a", 0);
        let p = c.commit("g", None, &[(tp.clone(), 7, String::new())], now).unwrap();
        c.apply_commit(&p, now);
        now = Now::at(now.mono.0 + 120_000);
        let deleted = c.tick(now);
        match retention {
            None => {
                assert!(deleted.is_empty());
                assert_eq!(c.fetch_offsets("g", &[]).len(), 1, "kept forever by default");
            }
            Some(_) => {
                assert_eq!(deleted.len(), 1);
                assert_eq!(deleted[0].records, vec![OffsetRecord { group: "g".into(), tp: tp.clone(), offset: None }]);
                assert_eq!(c.fetch_offsets("g", &[]).len(), 1, "visible until the deletion is durable");
                assert!(c.tick(now).is_empty(), "decided once, not again while pending");
                c.apply_commit(&deleted[0], now);
                assert!(c.fetch_offsets("g", &[]).is_empty());
            }
        }
    }
}

#[test]
fn a_group_deletion_applies_only_once_durable_and_an_aborted_one_changes_nothing() {
    let now = Now::at(0);
    let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 1);
    c.set_partitions("a", Some(1), now);
    let tp = TopicPartition::new("a", 0);
    let p = c.commit("g", None, &[(tp.clone(), 7, String::new())], now).unwrap();
    c.apply_commit(&p, now);
    let del = c.delete_group("g").unwrap();
    assert!(del.removes_group);
    assert_eq!(c.fetch_offsets("g", &[]).len(), 1, "still visible while the deletion is not durable");
    c.abort_commit(&del, now);
    assert_eq!(c.fetch_offsets("g", &[]).len(), 1, "an aborted deletion changes nothing");
    let del = c.delete_group("g").unwrap();
    // While it is pending, no commit is accepted (it could be reordered against the deletion).
    assert!(matches!(c.commit("g", None, &[(tp.clone(), 9, String::new())], now), Err(GroupError::ChangePending(_))));
    c.apply_commit(&del, now);
    assert!(c.group("g").is_none());
    // And a deletion waits for commits in flight.
    let p = c.commit("g", None, &[(tp.clone(), 7, String::new())], now).unwrap();
    c.apply_commit(&p, now);
    let p = c.commit("g", None, &[(tp, 8, String::new())], now).unwrap();
    assert!(matches!(c.delete_group("g"), Err(GroupError::ChangePending(_))));
    c.apply_commit(&p, now);
    assert!(c.delete_group("g").is_ok());
}

#[test]
fn a_wall_clock_jump_expires_no_session() {
    let mut now = Now::at(0);
    let mut c = coordinator(now);
    let id = c.join("g", params(None, &["a"], vec![Assignor::Range]), now).unwrap().member_id;
    let generation = c.group("g").unwrap().generation;
    // The wall clock steps an hour ahead; only a second passes.
    now = Now { wall: Timestamp(3_600_000), mono: Monotonic(1_000) };
    c.tick(now);
    assert!(c.group("g").unwrap().members.contains_key(&id), "the session is measured on the monotonic clock");
    c.heartbeat("g", &id, generation, now).unwrap();
    // And back two hours: still nothing expires, commit times record the wall clock.
    now = Now { wall: Timestamp(-3_600_000), mono: Monotonic(2_000) };
    c.tick(now);
    assert!(c.group("g").unwrap().members.contains_key(&id));
    let p = c.commit("g", Some((&id, generation)), &[(TopicPartition::new("a", 0), 1, String::new())], now).unwrap();
    assert_eq!(p.records[0].offset.as_ref().unwrap().commit_time, Timestamp(-3_600_000));
}

/// Found by a hostile test: offsets committed for a deleted topic applied
/// to a new topic of the same name, skipping its first records.
#[test]
fn offsets_of_a_deleted_topic_are_forgotten_and_commits_to_unknown_topics_refused() {
    let now = Now::at(0);
    let mut c = coordinator(now);
    let tp = TopicPartition::new("a", 0);
    let p = c.commit("g", None, &[(tp.clone(), 3, String::new()), (TopicPartition::new("b", 1), 5, String::new())], now).unwrap();
    c.apply_commit(&p, now);
    c.set_partitions("a", None, now);
    assert!(matches!(c.commit("g", None, &[(tp.clone(), 4, String::new())], now), Err(GroupError::UnknownPartition { .. })));
    assert!(matches!(
        c.commit("g", None, &[(TopicPartition::new("b", 9), 1, String::new())], now),
        Err(GroupError::UnknownPartition { .. })
    ));
    let forget = c.forget_topic("a");
    assert_eq!(forget.len(), 1);
    assert_eq!(c.fetch_offsets("g", &[]).len(), 2, "visible until durable");
    c.apply_commit(&forget[0], now);
    let left: Vec<String> = c.fetch_offsets("g", &[]).keys().map(|tp| tp.topic.clone()).collect();
    assert_eq!(left, vec!["b".to_owned()]);
}

#[test]
fn a_group_deleted_and_created_again_never_repeats_a_generation() {
    let now = Now::at(0);
    let mut c = coordinator(now);
    let id = c.join("g", params(None, &["a"], vec![Assignor::Range]), now).unwrap().member_id;
    let first = c.group("g").unwrap().generation;
    c.leave("g", &id, now).unwrap();
    let del = c.delete_group("g").unwrap();
    c.apply_commit(&del, now);
    assert!(c.group("g").is_none());
    c.join("g", params(None, &["a"], vec![Assignor::Range]), now).unwrap();
    assert!(c.group("g").unwrap().generation > first, "generations of a re-created group start above the old ones");
}
