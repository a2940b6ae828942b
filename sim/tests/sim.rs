//! Seeded simulations of the real node (run with `ci/sim`, which builds with
//! `--cfg madsim`). Environment: `WEIR_SIM_SEEDS` (how many, default 20),
//! `WEIR_SIM_SEED_START` (first seed, default 0), `WEIR_SIM_SEED` (exactly
//! one seed, for replay), `WEIR_SIM_SAFETY_MS` (safety phase length),
//! `WEIR_SIM_LOG` (a tracing filter, e.g. `weir_node=debug`).
//!
//! Every seed runs in a process of its own: state that outlives a madsim
//! runtime inside one process (per-thread hash keys among it) would make a
//! seed's run depend on the seeds before it, and a failure found in a batch
//! would not replay alone.

#![cfg(madsim)]

use std::process::Command;
use std::time::{Duration, Instant};
use weir_core::canary::Canary;
use weir_sim::cluster::{self, ClusterOptions};
use weir_sim::harness::{SimOptions, run};

/// What a seed runs: brokers (one, or a cluster of 3 or 5 running the
/// whole broker), or a bare 3- or 5-node Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Brokers(u64),
    Raft(u64),
}

/// The mix: `WEIR_SIM_BROKERS` forces a broker count, `WEIR_SIM_NODES` a
/// Raft group size (1 meaning a single broker).
fn kind_for(seed: u64) -> Kind {
    if let Some(n) = env_u64("WEIR_SIM_BROKERS") {
        return Kind::Brokers(n);
    }
    if let Some(n) = env_u64("WEIR_SIM_NODES") {
        return if n == 1 { Kind::Brokers(1) } else { Kind::Raft(n) };
    }
    match seed % 16 {
        0..=6 => Kind::Brokers(1),
        7..=9 => Kind::Brokers(3),
        10 => Kind::Brokers(5),
        11..=13 => Kind::Raft(3),
        _ => Kind::Raft(5),
    }
}

fn cluster_options(nodes: u64) -> ClusterOptions {
    let mut o = ClusterOptions::new(nodes);
    if let Some(ms) = env_u64("WEIR_SIM_SAFETY_MS") {
        o.safety = Duration::from_millis(ms);
    }
    o
}

/// Runs a cluster seed and prints the report line the parent parses.
fn cluster_child(seed: u64, nodes: u64, canary: Option<String>) {
    let mut opts = cluster_options(nodes);
    if let Some(name) = canary {
        opts.canary = canary_named(&name);
        opts.safety = opts.safety.min(Duration::from_secs(10));
        opts.force_power_loss = matches!(opts.canary, Some(Canary::VoteNotPersisted));
    }
    let r = cluster::run(seed, &opts);
    println!(
        "REPORT {} {:016x} {} {} {} {} {} {} {} {} {}",
        r.seed,
        r.trace_hash,
        r.acks,
        r.terms,
        r.crashes,
        r.clogs,
        r.disk_faults,
        0,
        0,
        r.anomalies.len(),
        r.nodes
    );
    for (kind, detail) in &r.anomalies {
        println!("ANOMALY {kind:?} {detail}");
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn options() -> SimOptions {
    let mut o = SimOptions::default();
    if let Some(ms) = env_u64("WEIR_SIM_SAFETY_MS") {
        o.safety = Duration::from_millis(ms);
    }
    o
}

fn canary_named(name: &str) -> Option<Canary> {
    match name {
        "ack-before-fsync" => Some(Canary::AckBeforeFsync),
        "skip-crc" => Some(Canary::SkipCrcOnRead),
        "reuse-offset" => Some(Canary::ReuseOffsetAfterCrash),
        "unordered-sends" => Some(Canary::UnorderedSends),
        "ack-before-majority" => Some(Canary::AckBeforeMajority),
        "vote-not-persisted" => Some(Canary::VoteNotPersisted),
        "remove-before-caught-up" => Some(Canary::RemoveBeforeCaughtUp),
        "promote-without-joint" => Some(Canary::PromoteWithoutJointConsensus),
        _ => None,
    }
}

/// The child side: runs the seed in `WEIR_SIM_CHILD_SEED` and prints a
/// report the parent parses. A no-op when that variable is unset.
#[test]
fn child_seed() {
    let Some(seed) = env_u64("WEIR_SIM_CHILD_SEED") else { return };
    if let Some(nodes) = env_u64("WEIR_SIM_CHILD_NODES") {
        return cluster_child(seed, nodes, std::env::var("WEIR_SIM_CHILD_CANARY").ok());
    }
    let mut opts = options();
    opts.brokers = env_u64("WEIR_SIM_CHILD_BROKERS").unwrap_or(1) as usize;
    if let Ok(name) = std::env::var("WEIR_SIM_CHILD_CANARY") {
        opts.canary = canary_named(&name);
        opts.safety = opts.safety.min(Duration::from_secs(10));
        opts.force_crashes = matches!(opts.canary, Some(Canary::AckBeforeFsync | Canary::ReuseOffsetAfterCrash));
        opts.force_unpinned = matches!(opts.canary, Some(Canary::UnorderedSends));
        opts.force_bitflips = matches!(opts.canary, Some(Canary::SkipCrcOnRead));
        opts.force_slow_sync = matches!(opts.canary, Some(Canary::AckBeforeFsync));
        opts.force_reassign = matches!(opts.canary, Some(Canary::RemoveBeforeCaughtUp | Canary::PromoteWithoutJointConsensus));
    }
    let r = run(seed, &opts);
    println!(
        "REPORT {} {:016x} {} {} {} {} {} {} {} {} {}",
        r.seed,
        r.trace_hash,
        r.acks,
        r.polls,
        r.crashes,
        r.clogs,
        r.bitflips,
        r.clock_jumps,
        r.losses,
        r.anomalies.len(),
        opts.brokers
    );
    for a in &r.anomalies {
        println!("ANOMALY {:?} {}", a.kind, a.detail);
    }
}

#[derive(Debug)]
struct ChildReport {
    seed: u64,
    line: String,
    hash: String,
    acks: u64,
    anomalies: Vec<String>,
}

fn run_child(seed: u64, kind: Kind, canary: Option<&str>) -> ChildReport {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["child_seed", "--exact", "--nocapture", "--test-threads", "1"]).env("WEIR_SIM_CHILD_SEED", seed.to_string());
    match kind {
        Kind::Raft(n) => cmd.env("WEIR_SIM_CHILD_NODES", n.to_string()),
        Kind::Brokers(n) => cmd.env("WEIR_SIM_CHILD_BROKERS", n.to_string()),
    };
    if let Some(c) = canary {
        cmd.env("WEIR_SIM_CHILD_CANARY", c);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The test harness prints "test child_seed ... " before our first line.
    let Some(line) = stdout.lines().find_map(|l| l.find("REPORT ").map(|i| &l[i..])) else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim_start().starts_with("at ") && !l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
            .take(8)
            .collect();
        // openraft's own invariant checks (a committed entry about to be
        // cut, an entry that does not follow on) are a safety violation the
        // run found, named as such.
        let kind = if stderr.contains("openraft") && stderr.contains("assertion failed") { "OpenraftAssertion " } else { "" };
        return ChildReport {
            seed,
            line: format!("seed {seed} crashed"),
            hash: String::new(),
            acks: 0,
            anomalies: vec![format!("{kind}the run panicked or hung: {}", tail.join(" | "))],
        };
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let line = match kind {
        Kind::Raft(_) => format!(
            "seed {} ({} Raft nodes) hash {}: {} acks, {} terms led, {} crashes, {} clogs, {} disk fault spells, {} anomalies",
            f[1], f[11], f[2], f[3], f[4], f[5], f[6], f[7], f[10]
        ),
        Kind::Brokers(_) => format!(
            "seed {} ({} brokers) hash {}: {} acks, {} polls, {} crashes, {} clogs, {} bit flips, {} clock jumps, {} losses below the checkpoint, {} anomalies",
            f[1], f[11], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]
        ),
    };
    ChildReport {
        seed,
        line,
        hash: f[2].to_owned(),
        acks: f[3].parse().unwrap_or(0),
        anomalies: stdout.lines().filter_map(|l| l.find("ANOMALY ").map(|i| l[i + 8..].to_owned())).collect(),
    }
}

/// Runs seeds in child processes, as many at once as there are cores, each
/// as `kind`, or as [`kind_for`] the seed.
fn run_seeds(seeds: &[u64], kind: Option<Kind>, canary: Option<&'static str>) -> Vec<ChildReport> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(seeds.len().max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
            std::thread::spawn(move || {
                mine.into_iter().map(|s| run_child(s, kind.unwrap_or_else(|| kind_for(s)), canary)).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out: Vec<ChildReport> = handles.into_iter().flat_map(|h| h.join().expect("runner thread")).collect();
    out.sort_by_key(|r| r.seed);
    out
}

#[test]
fn seeds_pass() {
    if let Some(seed) = env_u64("WEIR_SIM_SEED") {
        // Replay: one seed, in this process, with its whole report.
        let brokers = match kind_for(seed) {
            Kind::Brokers(n) => n as usize,
            Kind::Raft(_) => 0,
        };
        if let Kind::Raft(nodes) = kind_for(seed) {
            let r = cluster::run(seed, &cluster_options(nodes));
            println!(
                "seed {} ({} nodes) hash {:016x}: {} acks, {} terms led, {} crashes, {} clogs",
                r.seed, r.nodes, r.trace_hash, r.acks, r.terms, r.crashes, r.clogs
            );
            for (kind, detail) in &r.anomalies {
                println!("  {kind:?}: {detail}");
            }
            assert!(r.anomalies.is_empty(), "seed {seed} failed");
            return;
        }
        let r = run(seed, &SimOptions { brokers, ..options() });
        println!(
            "seed {} ({brokers} brokers) hash {:016x}: {} acks, {} polls, {} crashes, {} clogs, {} bit flips",
            r.seed, r.trace_hash, r.acks, r.polls, r.crashes, r.clogs, r.bitflips
        );
        println!("swarm: {:?}", r.swarm);
        for a in &r.anomalies {
            println!("  {:?}: {}", a.kind, a.detail);
        }
        assert!(r.anomalies.is_empty(), "seed {seed} failed");
        return;
    }
    let start = env_u64("WEIR_SIM_SEED_START").unwrap_or(0);
    let seeds: Vec<u64> = (start..start + env_u64("WEIR_SIM_SEEDS").unwrap_or(20)).collect();
    let t = Instant::now();
    let reports = run_seeds(&seeds, None, None);
    let secs = t.elapsed().as_secs_f64();
    let mut failed = Vec::new();
    for r in &reports {
        if !r.anomalies.is_empty() {
            println!("FAIL {}", r.line);
            for a in r.anomalies.iter().take(10) {
                println!("  {a}");
            }
            let forced: String =
                ["WEIR_SIM_BROKERS", "WEIR_SIM_NODES"].iter().filter_map(|v| std::env::var(v).ok().map(|x| format!("{v}={x} "))).collect();
            println!("  replay: {forced}WEIR_SIM_SEED={} ci/sim", r.seed);
            failed.push(r.seed);
        }
    }
    let acks: u64 = reports.iter().map(|r| r.acks).sum();
    println!(
        "{} seeds in {secs:.1}s ({:.0} seeds/min on {} cores, {:.1} simulated s of faults each), {acks} acknowledged records checked",
        reports.len(),
        reports.len() as f64 / secs * 60.0,
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        options().safety.as_secs_f64()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    assert!(acks > 0, "the workload acknowledged nothing: the harness is broken");
}

/// The same seed gives the same run, event for event (in fresh processes,
/// as a replay does).
#[test]
fn a_seed_replays_exactly() {
    let seed = env_u64("WEIR_SIM_SEED").unwrap_or(7);
    for kind in [Kind::Brokers(1), Kind::Brokers(3), Kind::Raft(3), Kind::Raft(5)] {
        let a = run_child(seed, kind, None);
        let b = run_child(seed, kind, None);
        assert!(a.acks > 0, "{}", a.line);
        assert_eq!(a.hash, b.hash, "seed {seed} as {kind:?} did not replay: {} vs {}", a.line, b.line);
        println!("seed {seed} as {kind:?} replayed with trace hash {}", a.hash);
    }
}

/// Seeds that once failed, kept as regressions.
#[test]
fn regression_seeds() {
    let reports = run_seeds(REGRESSIONS, Some(Kind::Brokers(1)), None);
    for r in reports {
        assert!(r.anomalies.is_empty(), "regression seed {}: {:?}", r.seed, r.anomalies);
    }
}

/// Seeds that failed as 3-broker clusters while that harness was written:
/// replica directories whose entries were never synced, lost with every
/// copy in a power cut of the whole cluster (124, 202, 253, 270), a follower
/// answering list-offsets with its lagging high watermark, a damaged
/// replica that kept winning elections (19), a coordinator rebuilt in a
/// term restored after a restart, handing out generations twice (5), and
/// retries stored twice: a leader serving again in its term with entries in
/// flight (1577), and a restarted replica believing the producers of an
/// uncommitted suffix the leader then cut, or forgetting those of entries
/// openraft marked committed before applying them (1008, 1104, 1417, 1858,
/// 1952), a coordinator cut off from its peers answering offset fetches
/// from a state its successor had moved past (2421), and a restarted leader
/// resuming its old term's leadership with entries in flight (4483, 4927),
/// and an old leader, back from isolation and still believing in its
/// lease because it heard its peers again, serving a fetch past its stale
/// log end: the consumer reset to the start (4347), and two candidates
/// alternating in step, the one with the better log always asking in the
/// term the other had claimed (4976), and an old leader answering a retry
/// with a sequence gap from its stale producer state, so the producer
/// sent the batch again under a new id and it was stored twice (4557), and
/// a leader panicking in openraft on a follower whose damaged log was cut
/// below what it had acknowledged (4047), and followers panicking on
/// entries that did not follow on, read across segments deleted before
/// openraft had purged them, once the offsets log compacted (4, 49, 92,
/// 139), and an offsets-log leader whose copy had a bit flip in a sealed
/// segment leading on without coordinating (14176).
const CLUSTER_REGRESSIONS: &[u64] =
    &[4, 5, 19, 49, 92, 124, 139, 202, 253, 270, 1008, 1104, 1417, 1577, 1858, 1952, 2421, 4047, 4347, 4483, 4557, 4927, 4976, 14176];

#[test]
fn cluster_regression_seeds() {
    for r in run_seeds(CLUSTER_REGRESSIONS, Some(Kind::Brokers(3)), None) {
        assert!(r.anomalies.is_empty(), "cluster regression seed {}: {:?}", r.seed, r.anomalies);
    }
}

/// Seeds that failed as 5-broker clusters once reassignments ran under the
/// faults: a replica a reassignment added (no first voters of its own)
/// taken for a single broker's partition and answering reads from its
/// empty log (51056, 51174, 51192), and a restarted node replaying the
/// metadata log deleting a replica it had moved away and back again, then
/// a follower truncating a committed membership (50005), and a replica
/// directory half deleted by a power cut, whose log then opened offline and
/// whose role task spun on its stopped group, freezing simulated time (52298);
/// a replica moved away and back whose old group's closing unregistered
/// the new one, so its leader could never reach it and the partition
/// stopped serving (61, after the identity draws moved every schedule).
/// Once nodes joined and were removed under the faults: a removed node,
/// still running and first in the clients' list, answering from the
/// metadata it had when it left, so clients chased leaders that had moved
/// (4, 12, 16); and a move onto a node being removed, which kept it a
/// replica outside the metadata group and stalled its partition (163).
/// A replica whose group stopped on a bit flip named itself leader from
/// its last metrics, and clients asked it to the end (184, once the offsets
/// log could move).
const FIVE_BROKER_REGRESSIONS: &[u64] = &[4, 12, 16, 61, 133, 163, 184, 195, 111, 548, 971, 2424, 50005, 51056, 51174, 51192, 52298];

#[test]
fn five_broker_regression_seeds() {
    for r in run_seeds(FIVE_BROKER_REGRESSIONS, Some(Kind::Brokers(5)), None) {
        assert!(r.anomalies.is_empty(), "5-broker regression seed {}: {:?}", r.seed, r.anomalies);
    }
}

/// Seeds that found bugs while the harness was written: an index write
/// failure half-appending a batch (duplicates on retry), a producer reusing
/// a sequence after giving up on a batch (acknowledged data answered as a
/// duplicate of other data), a corrupt sealed segment stopping the broker
/// from starting, a flipped base offset served at the wrong offsets, a
/// flipped record count skipping offsets (131), and group workloads meeting
/// corrupt batches (307, 525), and a late commit acknowledgement across a
/// generation change that the checker first misread as a regression (10844),
/// two accepted losses meeting in one hole that recovery took offline again
/// (626), and a lost oldest segment that looked like retention (539).
/// With partitions as Raft groups: a hole in the entries (damaged sealed
/// segment, accepted loss) keeping a group from starting (10, 19, 52), a
/// flipped producer id believed from an unverified header (1382), a start
/// that waited for a status change that never came (6341), and a group
/// member holding no partition that never rejoined a group the restarted
/// broker forgot (615).
const REGRESSIONS: &[u64] = &[2, 5, 6, 10, 12, 19, 26, 52, 131, 307, 525, 539, 615, 626, 1382, 6341, 10844];

/// A canary must be caught within 50 seeds, as one of the anomaly kinds its
/// defect causes (any anomaly would not prove the right invariant fired).
fn canary_is_caught(name: &'static str, kind: Kind, kinds: &[&str]) {
    for chunk in (0..50u64).collect::<Vec<_>>().chunks(4) {
        for r in run_seeds(chunk, Some(kind), Some(name)) {
            if let Some(a) = r.anomalies.iter().find(|a| a.split_whitespace().next().is_some_and(|k| kinds.contains(&k))) {
                println!("canary {name} caught at seed {} ({} seeds run): {a}", r.seed, r.seed + 1);
                return;
            }
        }
    }
    panic!("canary {name} was not caught as any of {kinds:?} within 50 seeds");
}

#[test]
fn canary_ack_before_fsync_is_caught() {
    canary_is_caught("ack-before-fsync", Kind::Brokers(1), &["Lost", "InconsistentOffsets"]);
}

#[test]
fn canary_skip_crc_is_caught() {
    canary_is_caught("skip-crc", Kind::Brokers(1), &["CorruptServed"]);
}

#[test]
fn canary_reused_offset_is_caught() {
    canary_is_caught("reuse-offset", Kind::Brokers(1), &["InconsistentOffsets", "Lost"]);
}

#[test]
fn canary_unordered_sends_is_caught() {
    canary_is_caught("unordered-sends", Kind::Brokers(1), &["NonmonotonicSend"]);
}

#[test]
fn canary_ack_before_majority_is_caught() {
    canary_is_caught("ack-before-majority", Kind::Raft(3), &["Lost", "Moved"]);
}

#[test]
fn canary_vote_not_persisted_is_caught() {
    canary_is_caught("vote-not-persisted", Kind::Raft(3), &["ElectionSafety", "Diverged", "Lost", "Moved", "NoLeader"]);
}

#[test]
fn canary_remove_before_caught_up_is_caught() {
    canary_is_caught("remove-before-caught-up", Kind::Brokers(5), &["Lost", "Unseen", "NoProgress"]);
}

#[test]
fn canary_promote_without_joint_consensus_is_caught() {
    canary_is_caught("promote-without-joint", Kind::Brokers(5), &["ElectionSafety", "Lost", "InconsistentOffsets", "OpenraftAssertion"]);
}

/// 200 idle groups on 3 nodes for 10 simulated minutes: not one election
/// (the node heartbeat keeps every idle group's followers quiet).
#[test]
fn idle_groups_never_elect() {
    let t = Instant::now();
    let changed = cluster::run_idle(env_u64("WEIR_SIM_SEED").unwrap_or(1), 3, 200, Duration::from_secs(600));
    println!("200 idle groups × 3 nodes, 10 simulated minutes: {changed} groups elected again ({:.1}s)", t.elapsed().as_secs_f64());
    assert_eq!(changed, 0, "idle groups elected");
}
