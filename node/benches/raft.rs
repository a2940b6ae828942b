//! Raft group throughput and latency on the real disk and loopback TCP:
//! 1 and 3 voters in this process, proposing through `weir_node::raft`
//! exactly as a partition leader does. Run with `cargo bench -p weir-node
//! --bench raft` (or `ci/bench-raft`); `WEIR_BENCH_DIR` chooses the
//! directory (default under `./target`), `WEIR_BENCH_SECS` each run's
//! length (default 5).
//!
//! - batched: 4 proposers, each entry one batch of 1,000 × 1 KiB records;
//! - single: 1 proposer, one 1 KiB message per entry (latency);
//! - fan-in: 64 proposers, one 1 KiB message per entry each.

use bytes::Bytes;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weir_core::batch::{BatchBuilder, ProducerStamp};
use weir_core::disk::Disk;
use weir_core::log::{LogConfig, PartitionLog};
use weir_node::disk::RealDisk;
use weir_node::raft::{Group, RaftNode, Timing};

fn batch(records: usize) -> Bytes {
    let value = vec![0x5au8; 1024];
    let mut b = BatchBuilder::with_capacity(ProducerStamp::NONE, records * 1040);
    for _ in 0..records {
        b.push(1_700_000_000_000, None, Some(&value), &[]);
    }
    b.finish()
}

async fn cluster(root: &Path, voters: u64) -> (Vec<Arc<RaftNode>>, Vec<Arc<Group>>, weir_node::tasks::Shutdown) {
    let (stop, rx) = weir_node::tasks::Shutdown::new();
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=voters {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.insert(id, l.local_addr().expect("addr").to_string());
        listeners.push(l);
    }
    let (mut nodes, mut groups) = (Vec::new(), Vec::new());
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let node = RaftNode::new(id, Timing::default(), rx.clone());
        node.serve(l, rx.clone());
        for (n, a) in &addrs {
            node.set_address(*n, a.clone());
        }
        let disk: Arc<dyn Disk> = Arc::new(RealDisk::default());
        let config = LogConfig { segment_bytes_max: 1 << 30, batch_bytes_max: 4 << 20, retention_ms: None, ..LogConfig::default() };
        let (log, _) = PartitionLog::open(disk.clone(), &root.join(format!("n{id}")), config, weir_node::clock::now()).expect("open log");
        groups.push(node.open_group(1, log, disk).await.expect("group"));
        nodes.push(node);
    }
    groups[0].bootstrap(addrs).await.expect("bootstrap");
    groups[0].wait_for_leader(Duration::from_secs(10)).await.expect("a leader");
    (nodes, groups, stop)
}

/// Runs `proposers` loops proposing `payload` for `secs`; returns (entries, bytes, latency µs).
async fn load(leader: Arc<Group>, proposers: usize, payload: Bytes, secs: u64) -> (u64, u64, Histogram<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..proposers {
        let (g, p, stop) = (leader.clone(), payload.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                g.propose(vec![p.clone()]).await.expect("committed");
                h.record(t.elapsed().as_micros() as u64).expect("record");
                n += 1;
            }
            (n, h)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut entries = 0;
    for t in tasks {
        let (n, h) = t.await.expect("proposer");
        entries += n;
        all.add(h).expect("merge");
    }
    (entries, entries * payload.len() as u64, all)
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// `groups` idle groups on 3 voters (leaders spread over the nodes): CPU
/// used per node over `secs`, and how many groups changed term meanwhile.
async fn idle(root: &Path, groups: u64, secs: u64) {
    let (stop, rx) = weir_node::tasks::Shutdown::new();
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.insert(id, l.local_addr().expect("addr").to_string());
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let node = RaftNode::new(i as u64 + 1, Timing::default(), rx.clone());
        node.serve(l, rx.clone());
        for (n, a) in &addrs {
            node.set_address(*n, a.clone());
        }
        nodes.push(node);
    }
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::default());
    let config = LogConfig { preallocate_bytes: 0, retention_ms: None, ..LogConfig::default() };
    let mut all = Vec::new();
    for g in 1..=groups {
        let mut members = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let dir = root.join(format!("n{}/g{g}", i + 1));
            let (log, _) = PartitionLog::open(disk.clone(), &dir, config.clone(), weir_node::clock::now()).expect("open log");
            members.push(node.open_group(g, log, disk.clone()).await.expect("group"));
        }
        members[(g % 3) as usize].bootstrap(addrs.clone()).await.expect("bootstrap");
        all.push(members);
    }
    for m in &all {
        m[0].wait_for_leader(Duration::from_secs(30)).await.expect("a leader");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let terms: Vec<u64> = all.iter().map(|m| m[0].status().term).collect();
    let t0 = (Instant::now(), cpu_seconds());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let used = cpu_seconds() - t0.1;
    let elapsed = t0.0.elapsed().as_secs_f64();
    let changed = all.iter().zip(&terms).filter(|(m, t)| m[0].status().term != **t).count();
    println!(
        "raft idle {groups} groups × 3 voters: {:.1} % of a core per node ({:.2} CPU s in {elapsed:.1} s for 3 nodes), {changed} groups changed term",
        used / elapsed / 3.0 * 100.0,
        used
    );
    stop.trigger();
    for m in &all {
        for (n, g) in nodes.iter().zip(m) {
            n.close_group(g).await;
        }
    }
}

fn main() {
    let base = std::env::var_os("WEIR_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&base).expect("bench dir");
    let secs: u64 = std::env::var("WEIR_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        if let Some(groups) = std::env::var("WEIR_BENCH_IDLE_GROUPS").ok().and_then(|v| v.parse().ok()) {
            let tmp = tempfile::tempdir_in(&base).expect("temp dir");
            return idle(tmp.path(), groups, secs).await;
        }
        for voters in [1u64, 3] {
            let tmp = tempfile::tempdir_in(&base).expect("temp dir");
            let (nodes, groups, stop) = cluster(tmp.path(), voters).await;
            let leader = groups.iter().find(|g| g.status().is_leader).expect("leader").clone();
            for (name, proposers, records) in [("batched", 4usize, 1000usize), ("single", 1, 1), ("fan-in", 64, 1)] {
                let (entries, bytes, h) = load(leader.clone(), proposers, batch(records), secs).await;
                let s = secs as f64;
                println!(
                    "raft {voters} voter(s) {name:8} {proposers:2} proposers: {:8.0} entries/s {:7.1} MB/s  latency p50 {:6} µs p99 {:6} µs max {:6} µs",
                    entries as f64 / s,
                    bytes as f64 / s / 1e6,
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max()
                );
            }
            stop.trigger();
            for (n, g) in nodes.iter().zip(&groups) {
                n.close_group(g).await;
            }
        }
    });
}
