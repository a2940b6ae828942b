//! Where replicas go: the replica sets of new partitions, and the node that
//! takes over a leaving node's replica. Racks are spread first, load second.
//!
//! A node without a rack counts as a rack of its own, so a cluster that
//! names no racks places exactly as one rack per node would: partition `p`
//! of topic `t` takes `R` consecutive nodes from `(t + p) mod n`.

use std::collections::{BTreeMap, BTreeSet};

/// Longest rack name a node may register.
pub const RACK_BYTES_MAX: usize = 64;

/// What is wrong with `rack` as a rack name, if anything: 1 to
/// [`RACK_BYTES_MAX`] bytes of ASCII letters, digits, `.`, `_` and `-`
/// (it is shown in tables and logs, so nothing that could break a line).
pub fn check_rack(rack: &str) -> Result<(), String> {
    if rack.is_empty() || rack.len() > RACK_BYTES_MAX {
        return Err(format!("a rack name is 1 to {RACK_BYTES_MAX} bytes, not {}", rack.len()));
    }
    if let Some(c) = rack.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("rack {rack:?} holds {c:?}: use letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// A node's rack as placement sees it: a named one, or the node alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Rack<'a> {
    Named(&'a str),
    Own(u64),
}

fn rack_of<'a>(racks: &'a BTreeMap<u64, String>, node: u64) -> Rack<'a> {
    racks.get(&node).map_or(Rack::Own(node), |r| Rack::Named(r))
}

/// `nodes` (sorted ids) in the order placement walks them: the first node
/// of every rack, then the second of every rack, and so on (racks by name,
/// nodes within one by id), so consecutive nodes are in different racks
/// wherever the racks allow it.
fn rack_alternating(nodes: &[u64], racks: &BTreeMap<u64, String>) -> Vec<u64> {
    let mut by_rack: BTreeMap<Rack, Vec<u64>> = BTreeMap::new();
    for n in nodes {
        by_rack.entry(rack_of(racks, *n)).or_default().push(*n);
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest).flat_map(|k| by_rack.values().filter_map(move |members| members.get(k).copied())).collect()
}

/// Replica sets for `partitions` new partitions of topic `topic_id` over
/// `nodes` (sorted ids), each of `replicas` nodes (fewer if there are fewer
/// nodes), the first the preferred leader. Partition `p` walks the
/// rack-alternating order from `(topic_id + p) mod n` and takes each node
/// whose rack it does not hold yet, then, if racks run out, the nodes it
/// passed. Deterministic; preferred leaders rotate over the nodes, and
/// with equal racks (or none) each node holds the same number of replicas
/// within one.
pub fn place(nodes: &[u64], racks: &BTreeMap<u64, String>, topic_id: u64, partitions: u32, replicas: u16) -> Vec<Vec<u64>> {
    let order = rack_alternating(nodes, racks);
    let n = order.len();
    if n == 0 {
        return vec![Vec::new(); partitions as usize];
    }
    let want = usize::from(replicas).min(n);
    let start = (topic_id % n as u64) as usize;
    (0..partitions as usize)
        .map(|p| {
            let walk: Vec<u64> = (0..n).map(|k| order[(start + p + k) % n]).collect();
            let mut chosen: Vec<u64> = Vec::with_capacity(want);
            let mut used = BTreeSet::new();
            for node in &walk {
                if chosen.len() < want && used.insert(rack_of(racks, *node)) {
                    chosen.push(*node);
                }
            }
            for node in &walk {
                if chosen.len() < want && !chosen.contains(node) {
                    chosen.push(*node);
                }
            }
            chosen
        })
        .collect()
}

/// The node that takes the place of `leaving` in replica set `set`: among
/// `load` (candidate → replicas it holds) and outside `set`, one in a rack
/// the rest of the set does not use if there is one, then the least
/// loaded, then the lowest id.
pub fn replacement(set: &[u64], leaving: u64, load: &BTreeMap<u64, usize>, racks: &BTreeMap<u64, String>) -> Option<u64> {
    let kept: BTreeSet<Rack> = set.iter().filter(|n| **n != leaving).map(|n| rack_of(racks, *n)).collect();
    load.iter().filter(|(n, _)| !set.contains(n)).min_by_key(|(n, l)| (kept.contains(&rack_of(racks, **n)), **l, **n)).map(|(n, _)| *n)
}

/// How many distinct racks `set` spans.
pub fn racks_spanned(set: &[u64], racks: &BTreeMap<u64, String>) -> usize {
    set.iter().map(|n| rack_of(racks, *n)).collect::<BTreeSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_racks() -> BTreeMap<u64, String> {
        BTreeMap::new()
    }

    fn racks(of: &[(u64, &str)]) -> BTreeMap<u64, String> {
        of.iter().map(|(n, r)| (*n, r.to_string())).collect()
    }

    #[test]
    fn placement_is_balanced_and_prefers_a_rotating_first_replica() {
        let nodes = [1, 2, 3];
        let a = place(&nodes, &no_racks(), 7, 6, 3);
        assert_eq!(a[0], vec![2, 3, 1]);
        assert_eq!(a[1], vec![3, 1, 2]);
        for r in &a {
            let mut sorted = r.clone();
            sorted.sort();
            assert_eq!(sorted, vec![1, 2, 3], "three distinct replicas");
        }
        let leaders: Vec<u64> = a.iter().map(|r| r[0]).collect();
        for n in nodes {
            assert_eq!(leaders.iter().filter(|l| **l == n).count(), 2, "each node prefers two of six");
        }
        let b = place(&[1, 2, 3, 4, 5], &no_racks(), 1, 10, 2);
        for n in 1..=5u64 {
            assert_eq!(b.iter().filter(|r| r.contains(&n)).count(), 4, "20 replicas over 5 nodes");
        }
        assert_eq!(place(&nodes, &no_racks(), 7, 6, 3), a, "deterministic");
    }

    #[test]
    fn replicas_spread_over_racks_and_stay_balanced() {
        // Two racks of three: a rack-blind walk 1,2,3,... would put two
        // replicas of most partitions in one rack and some in three.
        let r = racks(&[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "b")]);
        let nodes = [1, 2, 3, 4, 5, 6];
        let placed = place(&nodes, &r, 3, 30, 2);
        for set in &placed {
            assert_eq!(racks_spanned(set, &r), 2, "{set:?} spans both racks");
        }
        for n in nodes {
            assert_eq!(placed.iter().filter(|s| s.contains(&n)).count(), 10, "60 replicas over 6 nodes");
            assert_eq!(placed.iter().filter(|s| s[0] == n).count(), 5, "each node prefers 5 of 30");
        }
        // Uneven racks: three replicas still take three racks.
        let uneven = racks(&[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "c")]);
        for set in place(&[1, 2, 3, 4, 5], &uneven, 1, 20, 3) {
            assert_eq!(racks_spanned(&set, &uneven), 3, "{set:?}");
        }
        // More replicas than racks: every rack, then the rest.
        for set in place(&[1, 2, 3, 4], &racks(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]), 2, 8, 3) {
            assert_eq!(set.len(), 3);
            assert_eq!(racks_spanned(&set, &racks(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")])), 2);
        }
    }

    #[test]
    fn a_replacement_prefers_a_rack_the_set_lacks_then_the_least_loaded() {
        let r = racks(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c")]);
        let load: BTreeMap<u64, usize> = [(1, 0), (3, 9), (4, 1), (5, 7)].into();
        // Set {1, 2, 5}, node 2 (rack a) leaves: racks a and c stay, so a
        // rack b node, the less loaded one.
        assert_eq!(replacement(&[1, 2, 5], 2, &load, &r), Some(4));
        // Without racks: the least loaded outside the set.
        assert_eq!(replacement(&[1, 2, 5], 2, &load, &no_racks()), Some(4));
        assert_eq!(replacement(&[3, 2, 5], 2, &[(1, 5), (4, 0)].into(), &r), Some(1), "rack a beats a lighter b");
        assert_eq!(replacement(&[1, 2], 2, &[(1, 0)].into(), &r), None, "no candidate outside the set");
    }

    #[test]
    fn rack_names_are_checked() {
        assert!(check_rack("eu-west-1a").is_ok());
        assert!(check_rack("rack_2.row3").is_ok());
        for bad in ["", "a b", "../x", "r\n", "ü", &"r".repeat(65)] {
            assert!(check_rack(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever the racks, every set holds distinct nodes, as many as
        /// asked (or every node), as many racks as possible, and without
        /// racks the placement is the plain rotation.
        #[test]
        fn placement_spreads_racks_as_far_as_they_go(
            count in 1usize..9,
            rack_of_node in proptest::collection::vec(proptest::option::of(0u8..4), 9),
            topic_id in 0u64..1000,
            partitions in 1u32..20,
            replicas in 1u16..5,
        ) {
            let nodes: Vec<u64> = (1..=count as u64).collect();
            let r: BTreeMap<u64, String> = nodes.iter().filter_map(|n| rack_of_node[*n as usize - 1].map(|k| (*n, format!("r{k}")))).collect();
            let distinct_racks = racks_spanned(&nodes, &r);
            for set in place(&nodes, &r, topic_id, partitions, replicas) {
                let want = usize::from(replicas).min(count);
                prop_assert_eq!(set.len(), want);
                prop_assert_eq!(set.iter().collect::<BTreeSet<_>>().len(), want, "distinct nodes");
                prop_assert_eq!(racks_spanned(&set, &r), want.min(distinct_racks), "as many racks as possible");
            }
            let plain = place(&nodes, &no_racks(), topic_id, partitions, replicas);
            let n = count as u64;
            for (p, set) in plain.iter().enumerate() {
                let expected: Vec<u64> = (0..u64::from(replicas).min(n)).map(|k| nodes[((topic_id % n + p as u64 + k) % n) as usize]).collect();
                prop_assert_eq!(set, &expected);
            }
        }
    }
}
