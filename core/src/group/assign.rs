//! Partition assignment strategies: range, round-robin and sticky. Each is
//! a pure function of the members' subscriptions, the partition counts and
//! (for sticky) the previous assignment; all iterate in sorted order, so the
//! same inputs always give the same assignment.

use super::TopicPartition;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// An assignment strategy. A group uses the first one (in its first
/// member's order of preference) that every member supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to members in id order.
    Range,
    /// All partitions, in order, dealt to subscribed members in turn.
    RoundRobin,
    /// Keeps partitions where they were as far as balance allows.
    Sticky,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
        }
    }

    pub fn parse(s: &str) -> Option<Assignor> {
        match s {
            "range" => Some(Assignor::Range),
            "roundrobin" | "round-robin" => Some(Assignor::RoundRobin),
            "sticky" => Some(Assignor::Sticky),
            _ => None,
        }
    }
}

pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Assigns the partitions of every subscribed topic to the members.
/// `members` maps member id to its subscribed topics; `partitions` gives each
/// topic's partition count (topics missing there have no partitions yet).
pub fn assign(
    assignor: Assignor,
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let mut out: Assignment = members.keys().map(|m| (m.clone(), Vec::new())).collect();
    match assignor {
        Assignor::Range => range(members, partitions, &mut out),
        Assignor::RoundRobin => round_robin(members, partitions, &mut out),
        Assignor::Sticky => sticky(members, partitions, previous, &mut out),
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn subscribed_topics<'a>(members: &'a BTreeMap<String, BTreeSet<String>>, partitions: &BTreeMap<String, u32>) -> BTreeSet<&'a String> {
    members.values().flatten().filter(|t| partitions.contains_key(*t)).collect()
}

fn range(members: &BTreeMap<String, BTreeSet<String>>, partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    for topic in subscribed_topics(members, partitions) {
        let subs: Vec<&String> = members.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect();
        let n = partitions[topic];
        let m = subs.len() as u32;
        let (each, extra) = (n / m, n % m);
        let mut next = 0;
        for (i, member) in subs.iter().enumerate() {
            let take = each + u32::from((i as u32) < extra);
            for p in next..next + take {
                out.get_mut(*member).expect("member listed").push(TopicPartition::new(topic, p));
            }
            next += take;
        }
    }
}

fn round_robin(members: &BTreeMap<String, BTreeSet<String>>, partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    let ids: Vec<&String> = members.keys().collect();
    let mut turn = 0usize;
    for topic in subscribed_topics(members, partitions) {
        for p in 0..partitions[topic] {
            // The next member in turn that subscribes to this topic.
            for step in 0..ids.len() {
                let m = ids[(turn + step) % ids.len()];
                if members[m].contains(topic) {
                    out.get_mut(m).expect("member listed").push(TopicPartition::new(topic, p));
                    turn = (turn + step + 1) % ids.len();
                    break;
                }
            }
        }
    }
}

fn sticky(members: &BTreeMap<String, BTreeSet<String>>, partitions: &BTreeMap<String, u32>, previous: &Assignment, out: &mut Assignment) {
    let all: BTreeSet<TopicPartition> = subscribed_topics(members, partitions)
        .into_iter()
        .flat_map(|t| (0..partitions[t]).map(move |p| TopicPartition::new(t, p)))
        .collect();
    let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
    // 1. Keep every still-valid previous ownership (first claim wins).
    for (m, tps) in previous {
        let Some(subs) = members.get(m) else { continue };
        for tp in tps {
            if all.contains(tp) && subs.contains(&tp.topic) && !owner.contains_key(tp) {
                owner.insert(tp.clone(), m.clone());
            }
        }
    }
    let mut count: BTreeMap<&String, usize> = members.keys().map(|m| (m, 0)).collect();
    for m in owner.values() {
        *count.get_mut(m).expect("owner is a member") += 1;
    }
    // 2. Give each unowned partition to the least-loaded eligible member.
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        let m = members
            .iter()
            .filter(|(_, t)| t.contains(&tp.topic))
            .map(|(m, _)| m)
            .min_by_key(|m| (count[m], *m))
            .expect("topic is subscribed");
        *count.get_mut(m).expect("member") += 1;
        owner.insert(tp.clone(), m.clone());
    }
    // 3. Move partitions from the most to the least loaded eligible member
    // until no move narrows a gap of two or more. Each move lowers the sum
    // of squared loads, so this ends; the bound is a guard.
    for _ in 0..all.len() * members.len().max(1) {
        let mut moved = false;
        for tp in all.iter() {
            let from = owner[tp].clone();
            let target = members
                .iter()
                .filter(|(m, t)| **m != from && t.contains(&tp.topic))
                .map(|(m, _)| m)
                .min_by_key(|m| (count[m], *m))
                .cloned();
            if let Some(to) = target
                && count[&to] + 1 < count[&from]
            {
                *count.get_mut(&from).expect("member") -= 1;
                *count.get_mut(&to).expect("member") += 1;
                owner.insert(tp.clone(), to);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    for (tp, m) in owner {
        out.get_mut(&m).expect("member listed").push(tp);
    }
}
