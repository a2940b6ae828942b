//! Client-assigned groups, as Kafka's clients run them: the coordinator
//! picks a protocol every member supports, hands the leader every member's
//! metadata for it, and relays the leader's assignment to each member. The
//! bytes are opaque here; the rules are the coordinator's.
//!
//! A join is answered once its generation forms ([`GroupCoordinator::joined`]
//! says when); a sync once the leader's assignment arrives
//! ([`GroupCoordinator::sync_client_assigned`] gives `None` until then).
//! The caller holds those requests and calls [`GroupCoordinator::touch`]
//! while it does, so a member waiting on a held request is not expired.

use super::{Group, GroupCoordinator, GroupError, GroupState};
use crate::Now;
use std::collections::BTreeMap;

/// A join answer: the generation formed, the protocol chosen, the leader,
/// and (for the leader only) every member's metadata for that protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: u32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: Vec<(String, Vec<u8>)>,
}

pub(super) fn opaque_bytes(g: &Group) -> usize {
    let metadata: usize = g.members.values().flat_map(|m| &m.protocols).map(|(n, b)| n.len() + b.len()).sum();
    metadata + g.client_assignment.values().map(Vec::len).sum::<usize>()
}

/// Protocols every member supports, in `first`'s order of preference.
fn candidates<'a>(g: &'a Group, first: &'a [(String, Vec<u8>)]) -> impl Iterator<Item = &'a str> + 'a {
    first.iter().map(|(n, _)| n.as_str()).filter(move |n| g.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == n)))
}

/// Whether a member offering `protocols` may join `g` (as `member_id`, or
/// new): the same protocol type as its members, a protocol in common, and
/// room under the group's bound on opaque bytes.
pub(super) fn check_join(
    g: &Group,
    protocol_type: &str,
    protocols: &[(String, Vec<u8>)],
    member_id: Option<&str>,
    opaque_max: usize,
) -> Result<(), GroupError> {
    let others = g.members.values().filter(|m| Some(m.id.as_str()) != member_id);
    if g.members.is_empty() {
        // An empty group takes the kind of whoever joins it.
    } else if g.protocol_type.is_none() {
        return Err(GroupError::InconsistentProtocol(format!(
            "group {:?} is a Weir group with members: a Kafka consumer cannot join it (use another group id)",
            g.id
        )));
    } else if g.protocol_type.as_deref() != Some(protocol_type) {
        return Err(GroupError::InconsistentProtocol(format!(
            "group {:?} runs protocol type {:?}, not {protocol_type:?}",
            g.id,
            g.protocol_type.as_deref().unwrap_or_default()
        )));
    }
    let mut others_peek = others.clone().peekable();
    if others_peek.peek().is_some() {
        let shared = protocols.iter().any(|(n, _)| others.clone().all(|m| m.protocols.iter().any(|(p, _)| p == n)));
        if !shared {
            let offered: Vec<&str> = protocols.iter().map(|(n, _)| n.as_str()).collect();
            return Err(GroupError::InconsistentProtocol(format!(
                "group {:?}: no protocol of {offered:?} is supported by every member: use an assignor the group's members share",
                g.id
            )));
        }
    }
    let own_old: usize = member_id.and_then(|id| g.members.get(id)).map_or(0, |m| m.protocols.iter().map(|(n, b)| n.len() + b.len()).sum());
    let own_new: usize = protocols.iter().map(|(n, b)| n.len() + b.len()).sum();
    if opaque_bytes(g) - own_old + own_new > opaque_max {
        return Err(GroupError::Invalid(format!(
            "group {:?} would hold more than {opaque_max} bytes of member metadata: subscribe with less metadata or use more groups",
            g.id
        )));
    }
    Ok(())
}

/// Forms the generation: the protocol most members prefer among those all
/// support (ties to the leader's preference), every session restarted (a
/// member whose join was held did not heartbeat), and the leader's
/// assignment awaited.
pub(super) fn complete_rebalance(g: &mut Group, now: Now) {
    let leader = g.leader.clone().and_then(|l| g.members.get(&l)).or_else(|| g.members.values().next());
    let chosen = leader.and_then(|first| {
        let mut best: Option<(&str, usize)> = None;
        for name in candidates(g, &first.protocols) {
            let votes = g.members.values().filter(|m| candidates(g, &m.protocols).next() == Some(name)).count();
            if best.is_none_or(|(_, b)| votes > b) {
                best = Some((name, votes));
            }
        }
        best.map(|(n, _)| n.to_owned())
    });
    g.protocol = chosen;
    g.generation_leader = leader.map(|m| m.id.clone());
    g.generation += 1;
    g.rebalance_deadline = None;
    g.assignment.clear();
    g.client_assignment.clear();
    for m in g.members.values_mut() {
        m.joined = false;
        m.last_heartbeat = now.mono;
    }
    g.state = GroupState::CompletingRebalance;
}

impl GroupCoordinator {
    /// Keeps alive a member whose join or sync is being held.
    pub fn touch(&mut self, group_id: &str, member_id: &str, now: Now) {
        if let Some(m) = self.groups.get_mut(group_id).and_then(|g| g.members.get_mut(member_id)) {
            m.last_heartbeat = now.mono;
        }
    }

    /// The answer to a client-assigned join made in `joined_in` (the
    /// generation its [`super::JoinResult`] gave), once a later generation
    /// formed or the group is past preparing one; `None` while it waits.
    /// A query (held requests poll it): time moves by `tick` and inputs.
    pub fn joined(&self, group_id: &str, member_id: &str, joined_in: u32) -> Result<Option<Joined>, GroupError> {
        let g = self.groups.get(group_id).ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        if !g.members.contains_key(member_id) {
            return Err(GroupError::UnknownMember(member_id.to_owned()));
        }
        if g.state == GroupState::PreparingRebalance && g.generation <= joined_in {
            return Ok(None);
        }
        let leader = g.generation_leader.clone().unwrap_or_default();
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            g.members
                .values()
                .map(|m| (m.id.clone(), m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, b)| b.clone()).unwrap_or_default()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some(Joined { generation: g.generation, protocol_type: g.protocol_type.clone().unwrap_or_default(), protocol, leader, members }))
    }

    /// A client-assigned sync: the leader's carries every member's
    /// assignment and completes the generation; a member's own assignment
    /// once it has, `None` until then.
    pub fn sync_client_assigned(
        &mut self,
        group_id: &str,
        member_id: &str,
        generation: u32,
        assignments: Vec<(String, Vec<u8>)>,
        now: Now,
    ) -> Result<Option<Vec<u8>>, GroupError> {
        let opaque_max = self.config.group_opaque_bytes_max;
        let g = self.groups.get_mut(group_id).ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        let m = g.members.get_mut(member_id).ok_or_else(|| GroupError::UnknownMember(member_id.to_owned()))?;
        m.last_heartbeat = now.mono;
        if g.protocol_type.is_none() {
            return Err(GroupError::InconsistentProtocol(format!("group {group_id:?} is a Weir group: it has no Kafka sync")));
        }
        if generation != g.generation {
            return Err(GroupError::IllegalGeneration { got: generation, current: g.generation });
        }
        match g.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance if g.generation_leader.as_deref() == Some(member_id) => {
                // Assignments for members no longer here are dropped.
                let assignment: BTreeMap<String, Vec<u8>> = assignments.into_iter().filter(|(id, _)| g.members.contains_key(id)).collect();
                let metadata = opaque_bytes(g);
                let total = metadata + assignment.values().map(Vec::len).sum::<usize>();
                if total > opaque_max {
                    return Err(GroupError::Invalid(format!(
                        "group {group_id:?}: the assignment would make the group hold more than {opaque_max} bytes: assign less metadata"
                    )));
                }
                g.client_assignment = assignment;
                g.state = GroupState::Stable;
                Ok(Some(g.client_assignment.get(member_id).cloned().unwrap_or_default()))
            }
            GroupState::CompletingRebalance => Ok(None),
            GroupState::Stable => Ok(Some(g.client_assignment.get(member_id).cloned().unwrap_or_default())),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMember(member_id.to_owned())),
        }
    }

    /// Whether `topic` has a partition `partition` the coordinator knows
    /// (commits to others are refused).
    pub fn knows_partition(&self, topic: &str, partition: u32) -> bool {
        self.partitions.get(topic).is_some_and(|n| partition < *n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CoordinatorConfig, JoinParams, Protocol, TopicPartition};
    use super::*;

    fn kafka(member_id: Option<&str>, protocols: &[(&str, &[u8])]) -> JoinParams {
        JoinParams {
            member_id: member_id.map(str::to_owned),
            client_id: "rdkafka".into(),
            client_host: "/127.0.0.1".into(),
            protocol: Protocol::ClientAssigned {
                protocol_type: "consumer".into(),
                protocols: protocols.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect(),
            },
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
        }
    }

    #[test]
    fn a_lone_member_forms_a_generation_at_once_and_its_assignment_is_relayed() {
        let now = Now::at(0);
        let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 1);
        let j = c.join("g", kafka(None, &[("range", b"m1")]), now).unwrap();
        let joined = c.joined("g", &j.member_id, j.generation).unwrap().unwrap();
        assert_eq!((joined.protocol.as_str(), joined.leader.as_str()), ("range", j.member_id.as_str()));
        assert_eq!(joined.members, vec![(j.member_id.clone(), b"m1".to_vec())]);
        assert!(joined.generation > 0 && i32::try_from(joined.generation).is_ok());
        assert_eq!(c.group("g").unwrap().state, GroupState::CompletingRebalance);
        let mine = c.sync_client_assigned("g", &j.member_id, joined.generation, vec![(j.member_id.clone(), b"a1".to_vec())], now);
        assert_eq!(mine.unwrap(), Some(b"a1".to_vec()));
        assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
        c.heartbeat("g", &j.member_id, joined.generation, now).unwrap();
    }

    #[test]
    fn followers_wait_for_the_leaders_assignment_and_the_protocol_is_voted() {
        let now = Now::at(0);
        let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 1);
        let a = c.join("g", kafka(None, &[("range", b"a"), ("roundrobin", b"a")]), now).unwrap();
        let ja = c.joined("g", &a.member_id, a.generation).unwrap().unwrap();
        c.sync_client_assigned("g", &a.member_id, ja.generation, vec![], now).unwrap();
        // A second member prefers roundrobin: its join waits for the first to rejoin.
        let b = c.join("g", kafka(None, &[("roundrobin", b"b"), ("range", b"b")]), now).unwrap();
        assert_eq!(c.joined("g", &b.member_id, b.generation).unwrap(), None);
        assert_eq!(c.heartbeat("g", &a.member_id, ja.generation, now), Err(GroupError::RebalanceInProgress));
        // Commits of the old generation still land while it rebalances.
        let a2 = c.join("g", kafka(Some(&a.member_id), &[("range", b"a"), ("roundrobin", b"a")]), now).unwrap();
        let ja2 = c.joined("g", &a.member_id, a2.generation).unwrap().unwrap();
        let jb = c.joined("g", &b.member_id, b.generation).unwrap().unwrap();
        assert_eq!(ja2.generation, ja.generation + 1);
        assert_eq!(ja2.protocol, "range", "one vote each: the leader's preference");
        assert_eq!(ja2.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty(), "a follower sees none");
        assert_eq!(c.sync_client_assigned("g", &b.member_id, jb.generation, vec![], now), Ok(None), "held");
        assert_eq!(c.commit("g", Some((&b.member_id, jb.generation)), &[], now).unwrap_err(), GroupError::RebalanceInProgress);
        let assigned = vec![(a.member_id.clone(), b"x".to_vec()), (b.member_id.clone(), b"y".to_vec()), ("gone".into(), b"z".to_vec())];
        assert_eq!(c.sync_client_assigned("g", &a.member_id, ja2.generation, assigned, now), Ok(Some(b"x".to_vec())));
        assert_eq!(c.sync_client_assigned("g", &b.member_id, jb.generation, vec![], now), Ok(Some(b"y".to_vec())));
        assert!(!c.group("g").unwrap().client_assignment.contains_key("gone"));
        assert_eq!(
            c.sync_client_assigned("g", &b.member_id, jb.generation - 1, vec![], now),
            Err(GroupError::IllegalGeneration { got: jb.generation - 1, current: jb.generation })
        );
        // Leaving rebalances at once; the one left forms the next generation alone.
        c.leave("g", &b.member_id, now).unwrap();
        let a3 = c.join("g", kafka(Some(&a.member_id), &[("range", b"a")]), now).unwrap();
        assert_eq!(c.joined("g", &a.member_id, a3.generation).unwrap().unwrap().generation, ja2.generation + 1);
    }

    #[test]
    fn kinds_protocol_types_and_protocols_do_not_mix() {
        let now = Now::at(0);
        let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 1);
        c.set_partitions("t", Some(2), now);
        c.join("g", kafka(None, &[("range", b"")]), now).unwrap();
        let native = JoinParams {
            protocol: Protocol::Assigned { topics: vec!["t".into()], assignors: vec![super::super::Assignor::Range] },
            ..kafka(None, &[])
        };
        assert!(matches!(c.join("g", native.clone(), now), Err(GroupError::InconsistentProtocol(_))));
        assert!(matches!(c.join("g", kafka(None, &[("sticky", b"")]), now), Err(GroupError::InconsistentProtocol(_))));
        let mut other_type = kafka(None, &[("range", b"")]);
        other_type.protocol = Protocol::ClientAssigned { protocol_type: "connect".into(), protocols: vec![("range".into(), vec![])] };
        assert!(matches!(c.join("g", other_type, now), Err(GroupError::InconsistentProtocol(_))));
        let w = c.join("w", native, now).unwrap();
        assert!(matches!(c.join("w", kafka(None, &[("range", b"")]), now), Err(GroupError::InconsistentProtocol(_))));
        // Once empty, a group may change kind; its offsets stay.
        c.leave("w", &w.member_id, now).unwrap();
        c.join("w", kafka(None, &[("range", b"")]), now).unwrap();
    }

    #[test]
    fn a_held_member_is_kept_alive_and_a_silent_leader_is_replaced() {
        let mut now = Now::at(0);
        let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 1);
        let a = c.join("g", kafka(None, &[("range", b"")]), now).unwrap();
        let ja = c.joined("g", &a.member_id, a.generation).unwrap().unwrap();
        c.sync_client_assigned("g", &a.member_id, ja.generation, vec![], now).unwrap();
        let b = c.join("g", kafka(None, &[("range", b"")]), now).unwrap();
        // b's join is held past its own session while a heartbeats (told to
        // rejoin) until 8 s, then goes silent.
        let jb = loop {
            now = Now::at(now.mono.0 + 1_000);
            assert!(now.mono.0 <= 30_000, "the generation never formed");
            c.touch("g", &b.member_id, now);
            c.tick(now);
            if now.mono.0 <= 8_000 {
                c.heartbeat("g", &a.member_id, ja.generation, now).unwrap_err();
            }
            if let Some(j) = c.joined("g", &b.member_id, b.generation).unwrap() {
                break j;
            }
        };
        // It formed once a's session lapsed, alone, with b leading.
        assert_eq!(now.mono.0, 19_000);
        assert_eq!((jb.leader.as_str(), jb.members.len()), (b.member_id.as_str(), 1));
        // b does not sync within its session: it is expired in turn.
        now = Now::at(now.mono.0 + 11_000);
        c.tick(now);
        assert_eq!(c.group("g").unwrap().state, GroupState::Empty);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize, bool),
        Joined(usize),
        Sync(usize),
        Heartbeat(usize),
        Leave(usize),
        Commit(usize),
        Wait(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0usize..4, any::<bool>()).prop_map(|(k, rr)| Op::Join(k, rr)),
            (0usize..4).prop_map(Op::Joined),
            (0usize..4).prop_map(Op::Sync),
            (0usize..4).prop_map(Op::Heartbeat),
            (0usize..4).prop_map(Op::Leave),
            (0usize..4).prop_map(Op::Commit),
            (0u64..12_000).prop_map(Op::Wait),
        ]
    }

    proptest::proptest! {
        /// Under any interleaving of joins (preferring range or roundrobin),
        /// polls, syncs, heartbeats, leaves, commits and time: generations
        /// are positive i32s that never go back; one leader per generation;
        /// a member is handed exactly what that generation's leader assigned
        /// it; commits land only from a member of the current generation
        /// once its assignment is out.
        #[test]
        fn client_assigned_groups_keep_their_invariants(ops in proptest::collection::vec(op(), 1..120)) {
            let mut now = Now::at(0);
            let mut c = GroupCoordinator::new(CoordinatorConfig::default(), 7);
            c.set_partitions("t", Some(4), now);
            // Per client: member id, the generation its join was made in, the generation it last joined.
            let mut clients: Vec<(Option<String>, u32, Option<u32>)> = vec![(None, 0, None); 4];
            let mut leaders: BTreeMap<u32, String> = BTreeMap::new();
            let mut last_generation = 0u32;
            for op in ops {
                match op {
                    Op::Join(k, rr) => {
                        let protocols: &[(&str, &[u8])] = if rr { &[("roundrobin", b"r"), ("range", b"r")] } else { &[("range", b"g"), ("roundrobin", b"g")] };
                        match c.join("g", kafka(clients[k].0.as_deref(), protocols), now) {
                            Ok(j) => clients[k] = (Some(j.member_id), j.generation, None),
                            Err(GroupError::UnknownMember(_)) => clients[k] = (None, 0, None),
                            Err(e) => proptest::prop_assert!(false, "join refused: {e:?}"),
                        }
                    }
                    Op::Joined(k) => {
                        let Some(id) = clients[k].0.clone() else { continue };
                        if let Ok(Some(j)) = c.joined("g", &id, clients[k].1) {
                            proptest::prop_assert!(j.generation > 0 && i32::try_from(j.generation).is_ok());
                            let leader = leaders.entry(j.generation).or_insert_with(|| j.leader.clone());
                            proptest::prop_assert_eq!(&*leader, &j.leader, "two leaders in generation {}", j.generation);
                            if j.leader == id {
                                proptest::prop_assert!(j.members.iter().any(|(m, _)| *m == id), "the leader sees itself");
                            } else {
                                proptest::prop_assert!(j.members.is_empty());
                            }
                            clients[k].2 = Some(j.generation);
                        }
                    }
                    Op::Sync(k) => {
                        let (Some(id), Some(generation)) = (clients[k].0.clone(), clients[k].2) else { continue };
                        let members: Vec<String> = c.group("g").map(|g| g.members.keys().cloned().collect()).unwrap_or_default();
                        let assignments = members.iter().map(|m| (m.clone(), format!("{generation}:{m}").into_bytes())).collect();
                        if let Ok(Some(mine)) = c.sync_client_assigned("g", &id, generation, assignments, now) {
                            // The leader of this generation assigned every member "{generation}:{member}".
                            proptest::prop_assert_eq!(mine, format!("{generation}:{id}").into_bytes());
                        }
                    }
                    Op::Heartbeat(k) => {
                        if let (Some(id), Some(generation)) = (clients[k].0.clone(), clients[k].2) {
                            let _ = c.heartbeat("g", &id, generation, now);
                        }
                    }
                    Op::Leave(k) => {
                        if let Some(id) = clients[k].0.take() {
                            let _ = c.leave("g", &id, now);
                        }
                    }
                    Op::Commit(k) => {
                        let (Some(id), Some(generation)) = (clients[k].0.clone(), clients[k].2) else { continue };
                        let tp = TopicPartition::new("t", 0);
                        if let Ok(p) = c.commit("g", Some((&id, generation)), &[(tp, 1, String::new())], now) {
                            let g = c.group("g").unwrap();
                            proptest::prop_assert_eq!(g.generation, generation, "a commit from an old generation");
                            proptest::prop_assert!(g.state != GroupState::CompletingRebalance, "a commit before the assignment");
                            c.apply_commit(&p, now);
                        }
                    }
                    Op::Wait(ms) => {
                        now = Now::at(now.mono.0 + ms);
                        c.tick(now);
                    }
                }
                if let Some(g) = c.group("g") {
                    proptest::prop_assert!(g.generation >= last_generation, "generations never go back");
                    last_generation = g.generation;
                }
            }
        }
    }

    #[test]
    fn the_coordinator_bounds_its_groups_and_their_bytes() {
        let now = Now::at(0);
        let config = CoordinatorConfig { groups_max: 2, opaque_bytes_max: 150, ..CoordinatorConfig::default() };
        let mut c = GroupCoordinator::new(config, 1);
        let a = c.join("a", kafka(None, &[("range", &[0; 70])]), now).unwrap();
        c.join("b", kafka(None, &[("range", &[0; 70])]), now).unwrap();
        assert_eq!(c.join("c", kafka(None, &[("range", b"")]), now).unwrap_err(), GroupError::TooManyGroups { max: 2 });
        assert!(matches!(c.join("b", kafka(None, &[("range", &[0; 70])]), now), Err(GroupError::Invalid(_))), "150 bytes in all");
        // A group left with nothing is forgotten to make room.
        c.leave("a", &a.member_id, now).unwrap();
        c.join("c", kafka(None, &[("range", b"")]), now).unwrap();
        assert!(c.group("a").is_none());
        // Commits from outside a group create one too, and are bounded alike.
        c.set_partitions("t", Some(1), now);
        let offsets = [(TopicPartition::new("t", 0), 1, String::new())];
        assert_eq!(c.commit("d", None, &offsets, now).unwrap_err(), GroupError::TooManyGroups { max: 2 });
    }

    #[test]
    fn the_group_bounds_its_opaque_bytes() {
        let now = Now::at(0);
        let config = CoordinatorConfig { group_opaque_bytes_max: 100, ..CoordinatorConfig::default() };
        let mut c = GroupCoordinator::new(config, 1);
        let big = vec![0u8; 60];
        c.join("g", kafka(None, &[("range", &big)]), now).unwrap();
        assert!(matches!(c.join("g", kafka(None, &[("range", &big)]), now), Err(GroupError::Invalid(_))));
    }
}
