//! The replicated-log simulation (madsim builds only): N = 3 or 5 nodes
//! (`weir-1`.. at 10.0.1.1..) each run the real Raft module of weir-node
//! (`weir_node::raft`: openraft, the peer protocol over simulated TCP, the
//! partition log as Raft storage) for one group, each over its own
//! [`SimDisk`] living outside the node, so kills and power losses keep what
//! was durable. Proposers on every node propose unique values whenever
//! their node leads, some entries holding several batches, and record the
//! offsets each committed value was acknowledged at.
//!
//! Faults during the safety phase, drawn from the seed: kills of the
//! leader, of a random minority (with or without power loss), rarely of
//! every node at once with power loss; isolation of a node, one-way link
//! clogs, and disk errors on a minority. Then everything heals (an operator
//! restart of every node), and the checkers run, one function each:
//! election safety, a leader within the bound, replica convergence (the
//! committed prefix byte-identical on every replica) and acknowledged values
//! neither lost, moved nor duplicated.
//!
//! Not yet here: bit flips (a replica repairing corrupt data from its peers
//! is not built), clock skew (openraft's timers run on the monotonic clock,
//! which madsim keeps per run, not per node), and the broker's own
//! workloads (partitions are not yet Raft groups in the broker).

use crate::trace::TraceHash;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_core::batch::{self, BatchBuilder, ProducerStamp};
use weir_core::canary::Canary;
use weir_core::disk::Disk;
use weir_core::disk::sim::{FaultConfig, SimDisk};
use weir_core::log::{LogConfig, PartitionLog};
use weir_node::raft::{GroupStatus, RaftNode, Timing};

const GROUP: u64 = 1;
const RAFT_PORT: u16 = 9093;
const LOG_DIR: &str = "/weir/group-1";

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: u64,
    pub safety: Duration,
    pub liveness_bound: Duration,
    pub canary: Option<Canary>,
    /// Every fault is a crash with power loss, sometimes of every node.
    pub force_power_loss: bool,
    /// Raft timing of every node.
    pub timing: Timing,
}

impl ClusterOptions {
    pub fn new(nodes: u64) -> ClusterOptions {
        ClusterOptions {
            nodes,
            safety: Duration::from_secs(30),
            liveness_bound: Duration::from_secs(30),
            canary: None,
            force_power_loss: false,
            timing: Timing::default(),
        }
    }
}

/// What went wrong, by checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterAnomaly {
    /// Two leaders in one term.
    ElectionSafety,
    /// No leader, or replicas not caught up, within the bound after heal.
    NoLeader,
    /// Replicas' committed prefixes differ.
    Diverged,
    /// An acknowledged value is missing from the committed log.
    Lost,
    /// An acknowledged value is at another offset than acknowledged.
    Moved,
    /// A value is in the committed log twice.
    Duplicated,
    /// A high watermark past the commit point, or not at it after heal.
    HighWatermark,
}

#[derive(Debug, Clone)]
pub struct ClusterReport {
    pub seed: u64,
    pub nodes: u64,
    pub trace_hash: u64,
    pub anomalies: Vec<(ClusterAnomaly, String)>,
    pub acks: usize,
    pub terms: usize,
    pub crashes: u32,
    pub clogs: u32,
    pub disk_faults: u32,
}

/// What the nodes record, kept outside them (it survives their kills).
#[derive(Default)]
struct Shared {
    /// Acknowledged values and the offset each was acknowledged at.
    acks: Mutex<Vec<(String, u64)>>,
    /// Every node seen leading, by term.
    leaders: Mutex<BTreeMap<u64, BTreeSet<u64>>>,
    /// Each live node's latest status and high watermark.
    status: Mutex<BTreeMap<u64, (GroupStatus, u64)>>,
    /// The highest high watermark each node ever showed.
    max_hw: Mutex<BTreeMap<u64, u64>>,
    next_value: AtomicU64,
    stop_proposing: AtomicBool,
    trace: Mutex<TraceHash>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ip(node: u64) -> IpAddr {
    format!("10.0.1.{node}").parse().expect("ip")
}

fn raft_addr(node: u64) -> String {
    format!("10.0.1.{node}:{RAFT_PORT}")
}

fn log_config(canary: Option<Canary>) -> LogConfig {
    LogConfig { segment_bytes_max: 16 << 10, preallocate_bytes: 4 << 10, index_interval_bytes: 512, canary, ..LogConfig::default() }
}

/// Runs one seed to completion and checks it.
pub fn run(seed: u64, opts: &ClusterOptions) -> ClusterReport {
    let hi = fastrand::Rng::with_seed(seed ^ 0x434c_5553).u64(1..10);
    let limit = opts.safety + opts.liveness_bound * 4 + Duration::from_secs(60);
    let rt = crate::harness::runtime(seed, Duration::from_micros(100)..Duration::from_millis(hi), limit);
    let opts = opts.clone();
    rt.block_on(async move { scenario(seed, opts).await })
}

/// One node's main: the Raft node, its group on the simulated disk, an
/// observer and the proposers. A node whose disk fails at start waits for
/// the next restart, as an operator would restart it.
async fn node_main(id: u64, nodes: u64, disk: SimDisk, shared: Arc<Shared>, canary: Option<Canary>, timing: Timing) {
    let (_stop, rx) = weir_node::tasks::Shutdown::new();
    let node = RaftNode::new(id, timing, rx.clone());
    let listener = match tokio::net::TcpListener::bind(raft_addr(id)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "bind failed");
            return;
        }
    };
    node.serve(listener, rx);
    let members: BTreeMap<u64, String> = (1..=nodes).map(|n| (n, raft_addr(n))).collect();
    for (n, a) in &members {
        node.set_address(*n, a.clone());
    }
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let log = match PartitionLog::open(disk.clone(), Path::new(LOG_DIR), log_config(canary), weir_node::clock::now()) {
        Ok((log, _)) => log,
        Err(e) => {
            tracing::warn!(error = %e, "log failed to open");
            return;
        }
    };
    let group = match node.open_group(GROUP, log, disk).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "group failed to start");
            return;
        }
    };
    if id == 1
        && let Err(e) = group.bootstrap(members).await
    {
        tracing::warn!(error = %e, "bootstrap failed");
    }
    // The observer: who leads which term, and each node's progress.
    let observer = {
        let (group, shared) = (group.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                let s = group.status();
                if s.is_leader {
                    lock(&shared.leaders).entry(s.term).or_default().insert(id);
                }
                let hw = *group.high_watermark().borrow();
                lock(&shared.status).insert(id, (s, hw));
                {
                    let mut max = lock(&shared.max_hw);
                    let m = max.entry(id).or_default();
                    *m = (*m).max(hw);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut proposers = Vec::new();
    for p in 0..2u64 {
        let (group, shared) = (group.clone(), shared.clone());
        proposers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(id << 8 | p);
            loop {
                if shared.stop_proposing.load(Ordering::SeqCst) || !group.status().is_leader {
                    tokio::time::sleep(Duration::from_millis(rng.u64(5..50))).await;
                    continue;
                }
                let values: Vec<String> =
                    (0..rng.u64(1..=3)).map(|_| format!("v{}", shared.next_value.fetch_add(1, Ordering::SeqCst))).collect();
                let batches = values
                    .iter()
                    .map(|v| {
                        let mut b = BatchBuilder::new(ProducerStamp::NONE);
                        b.push(1, None, Some(v.as_bytes()), &[]);
                        b.finish()
                    })
                    .collect();
                match tokio::time::timeout(Duration::from_secs(5), group.propose(batches)).await {
                    Ok(Ok(a)) => {
                        {
                            let mut acks = lock(&shared.acks);
                            for (i, v) in values.into_iter().enumerate() {
                                acks.push((v, a.base_offset + i as u64));
                            }
                        }
                        // A little think time: thousands of entries a seed
                        // still, at a fraction of the simulation's cost.
                        tokio::time::sleep(Duration::from_millis(rng.u64(10..50))).await;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(rng.u64(1..20))).await,
                }
            }
        }));
    }
    let _ = observer.await;
    for p in proposers {
        let _ = p.await;
    }
}

struct World {
    seed: u64,
    opts: ClusterOptions,
    handle: Handle,
    nodes: Vec<NodeHandle>,
    disks: Vec<SimDisk>,
    shared: Arc<Shared>,
}

impl World {
    fn trace(&self, what: String) {
        tracing::info!(leaders = ?lock(&self.shared.leaders), "{what}");
        lock(&self.shared.trace).add(&what);
    }

    fn leader(&self) -> Option<u64> {
        let status = lock(&self.shared.status);
        status.iter().filter(|(_, (s, _))| s.is_leader).max_by_key(|(_, (s, _))| s.term).map(|(id, _)| *id)
    }

    /// Kills `ids`, with power loss if asked, and restarts them after a while.
    async fn crash(&self, ids: &[u64], power_loss: bool, down: Duration) {
        for &id in ids {
            self.handle.kill(self.nodes[id as usize - 1].id());
            lock(&self.shared.status).remove(&id);
            if power_loss {
                self.disks[id as usize - 1].crash();
            }
        }
        self.trace(format!("crash {ids:?} power={power_loss}"));
        tokio::time::sleep(down).await;
        for &id in ids {
            self.handle.restart(self.nodes[id as usize - 1].id());
        }
    }
}

#[derive(Default)]
struct Injected {
    crashes: u32,
    clogs: u32,
    disk_faults: u32,
}

async fn scenario(seed: u64, opts: ClusterOptions) -> ClusterReport {
    // Always a subscriber (filter `off` unless WEIR_SIM_LOG says): a run
    // with logging must replay the run without it.
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("WEIR_SIM_LOG").unwrap_or_else(|_| "off".to_owned())).try_init();
    let handle = Handle::current();
    let shared = Arc::new(Shared::default());
    let mut nodes = Vec::new();
    let mut disks = Vec::new();
    for id in 1..=opts.nodes {
        let disk = SimDisk::new(seed ^ (id << 32));
        let node = handle
            .create_node()
            .name(format!("weir-{id}"))
            .ip(ip(id))
            .init({
                let (disk, shared, canary, n, timing) = (disk.clone(), shared.clone(), opts.canary, opts.nodes, opts.timing);
                move || node_main(id, n, disk.clone(), shared.clone(), canary, timing)
            })
            .build();
        nodes.push(node);
        disks.push(disk);
    }
    let w = World { seed, opts: opts.clone(), handle, nodes, disks, shared };
    let injected = fault_loop(&w).await;
    let (committed, final_hws, mut anomalies) = match heal_and_converge(&w).await {
        Ok((c, hws)) => (c, hws, Vec::new()),
        Err(a) => (0, BTreeMap::new(), a),
    };
    anomalies.extend(check_election_safety(&lock(&w.shared.leaders)));
    if anomalies.is_empty() {
        let logs = read_logs(&w, committed);
        anomalies.extend(check_convergence(&logs));
        if let Some(log) = logs.first() {
            anomalies.extend(check_acks(&lock(&w.shared.acks), log));
            anomalies.extend(check_high_watermarks(&lock(&w.shared.max_hw), &final_hws, log));
        }
    }
    let acks = lock(&w.shared.acks).len();
    let terms = lock(&w.shared.leaders).len();
    let trace_hash = {
        let mut t = lock(&w.shared.trace);
        t.add(&format!("acks {acks} terms {terms}"));
        t.value()
    };
    ClusterReport {
        seed,
        nodes: opts.nodes,
        trace_hash,
        anomalies,
        acks,
        terms,
        crashes: injected.crashes,
        clogs: injected.clogs,
        disk_faults: injected.disk_faults,
    }
}

/// The safety phase: one fault at a time, at seeded intervals.
async fn fault_loop(w: &World) -> Injected {
    let net = NetSim::current();
    let mut rng = fastrand::Rng::with_seed(w.seed ^ 0x4641_554c);
    let n = w.opts.nodes;
    let minority = (n - 1) / 2;
    let mean_gap = Duration::from_millis(rng.u64(500..4000));
    let end = tokio::time::Instant::now() + w.opts.safety;
    let mut injected = Injected::default();
    loop {
        tokio::time::sleep(crate::faults::Swarm::next_in(&mut rng, mean_gap)).await;
        if tokio::time::Instant::now() >= end {
            break;
        }
        let power = w.opts.force_power_loss || rng.bool();
        // Often longer than the election timeout, so the others elect.
        let down = Duration::from_millis(rng.u64(0..5000));
        match rng.u8(0..100) {
            // The leader dies.
            0..30 => {
                if let Some(l) = w.leader() {
                    injected.crashes += 1;
                    w.crash(&[l], power, down).await;
                }
            }
            // A random minority dies at once.
            30..50 => {
                let mut ids: Vec<u64> = (1..=n).collect();
                rng.shuffle(&mut ids);
                ids.truncate(rng.usize(1..=minority as usize));
                injected.crashes += 1;
                w.crash(&ids, power, down).await;
            }
            // Every node loses power at once.
            50..55 => {
                injected.crashes += 1;
                w.crash(&(1..=n).collect::<Vec<_>>(), true, down).await;
            }
            // A node (often the leader) is cut off both ways.
            55..75 => {
                let id = if rng.bool() { w.leader().unwrap_or(1) } else { rng.u64(1..=n) };
                injected.clogs += 1;
                w.trace(format!("isolate {id}"));
                let h = w.nodes[id as usize - 1].id();
                net.clog_node(h);
                tokio::time::sleep(Duration::from_millis(rng.u64(200..4000))).await;
                net.unclog_node(h);
            }
            // One direction of one link stops.
            75..90 => {
                let a = rng.u64(1..=n);
                let b = (a - 1 + rng.u64(1..n)) % n + 1;
                injected.clogs += 1;
                w.trace(format!("one-way {a}->{b}"));
                let (ha, hb) = (w.nodes[a as usize - 1].id(), w.nodes[b as usize - 1].id());
                net.clog_link(ha, hb);
                tokio::time::sleep(Duration::from_millis(rng.u64(200..4000))).await;
                net.unclog_link(ha, hb);
            }
            // A minority's disks start failing some operations.
            _ => {
                let id = rng.u64(1..=n);
                let faults = FaultConfig {
                    read_error: rng.f64() * 0.01,
                    write_error: rng.f64() * 0.01,
                    sync_error: rng.f64() * 0.01,
                    sync_latency_ns: (100_000, rng.u64(200_000..10_000_000)),
                    ..FaultConfig::default()
                };
                injected.disk_faults += 1;
                w.trace(format!("disk faults {id}"));
                // One failing disk at a time: always a minority.
                for d in &w.disks {
                    d.set_faults(FaultConfig::default());
                }
                w.disks[id as usize - 1].set_faults(faults);
            }
        }
    }
    injected
}

/// Heals everything (clean disks, an operator restart of every node),
/// stops proposing, then requires a leader and every replica applied up to
/// the leader's log end within the bound. Returns the committed entries'
/// count (the last applied stored index).
async fn heal_and_converge(w: &World) -> Result<(u64, BTreeMap<u64, u64>), Vec<(ClusterAnomaly, String)>> {
    let net = NetSim::current();
    for (i, node) in w.nodes.iter().enumerate() {
        net.unclog_node(node.id());
        for other in &w.nodes {
            net.unclog_link(node.id(), other.id());
        }
        w.disks[i].set_faults(FaultConfig::default());
    }
    let all: Vec<u64> = (1..=w.opts.nodes).collect();
    w.crash(&all, false, Duration::from_millis(100)).await;
    // One more value must commit after the heal: the group is live.
    let acked_before = lock(&w.shared.acks).len();
    let deadline = tokio::time::Instant::now() + w.opts.liveness_bound;
    while lock(&w.shared.acks).len() == acked_before {
        if tokio::time::Instant::now() >= deadline {
            return Err(vec![(ClusterAnomaly::NoLeader, format!("nothing committed within {:?} after heal", w.opts.liveness_bound))]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.shared.stop_proposing.store(true, Ordering::SeqCst);
    // Proposals in flight end within their 5 s timeout; after that the
    // observed statuses (20 ms old at most) stop moving.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let committed = loop {
        let caught_up = {
            let status = lock(&w.shared.status);
            let leader = status.values().filter(|(s, _)| s.is_leader).max_by_key(|(s, _)| s.term).map(|(s, _)| s.clone());
            leader.filter(|l| {
                status.len() as u64 == w.opts.nodes
                    && status.values().all(|(s, _)| s.last_applied.is_some() && s.last_applied == l.last_log_index)
            })
        };
        // Followers learn the commit point from the leader's next
        // heartbeat: every high watermark equal too.
        let hws: BTreeMap<u64, u64> = lock(&w.shared.status).iter().map(|(id, (_, hw))| (*id, *hw)).collect();
        let hws_agree = hws.values().min() == hws.values().max();
        if let Some(l) = caught_up.filter(|_| hws_agree) {
            // openraft counts from 0, the log from 1.
            break (l.last_applied.map_or(0, |a| a + 1), hws);
        }
        if tokio::time::Instant::now() >= deadline {
            let status = lock(&w.shared.status);
            let seen: Vec<String> = status
                .iter()
                .map(|(id, (s, _))| format!("{id}: term {} leader {:?} applied {:?}", s.term, s.leader, s.last_applied))
                .collect();
            return Err(vec![(
                ClusterAnomaly::NoLeader,
                format!("replicas not caught up within {:?} after heal: {seen:?}", w.opts.liveness_bound),
            )]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Stop every node (no power loss) so the logs can be read from outside.
    for node in &w.nodes {
        w.handle.kill(node.id());
    }
    Ok(committed)
}

/// One replica's committed log: its entries' (stored index, base offset,
/// bytes), and its values by offset.
struct ReplicaLog {
    node: u64,
    entries: Vec<(u64, u64, bytes::Bytes)>,
    values: BTreeMap<u64, String>,
}

/// Every replica's first `committed` entries (entries after them are an
/// uncommitted suffix a later leader may overwrite).
fn read_logs(w: &World, committed: u64) -> Vec<ReplicaLog> {
    let mut out = Vec::new();
    for (i, disk) in w.disks.iter().enumerate() {
        let disk: Arc<dyn Disk> = Arc::new(disk.clone());
        let (log, _) = PartitionLog::open(disk, &PathBuf::from(LOG_DIR), log_config(None), weir_node::clock::now()).expect("healthy disk");
        let entries = log.entries(1..committed + 1, usize::MAX).expect("readable");
        let mut values = BTreeMap::new();
        for e in &entries {
            for b in batch::decode_all(e.batches.clone(), 1 << 20).flatten() {
                if b.header().is_control() {
                    continue;
                }
                for (k, r) in b.records().flatten().enumerate() {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                    values.insert(b.header().base_offset + k as u64, v);
                }
            }
        }
        out.push(ReplicaLog {
            node: i as u64 + 1,
            entries: entries.into_iter().map(|e| (e.log_id.index, e.base_offset, e.batches)).collect(),
            values,
        });
    }
    out
}

/// Election safety: at most one leader per term.
fn check_election_safety(leaders: &BTreeMap<u64, BTreeSet<u64>>) -> Vec<(ClusterAnomaly, String)> {
    leaders
        .iter()
        .filter(|(_, l)| l.len() > 1)
        .map(|(t, l)| (ClusterAnomaly::ElectionSafety, format!("term {t} had leaders {l:?}")))
        .collect()
}

/// Replica convergence: after heal every replica holds the same committed
/// entries, byte for byte.
fn check_convergence(logs: &[ReplicaLog]) -> Vec<(ClusterAnomaly, String)> {
    let mut out = Vec::new();
    let Some(first) = logs.first() else { return out };
    for other in &logs[1..] {
        if other.entries.len() != first.entries.len() {
            out.push((
                ClusterAnomaly::Diverged,
                format!("node {} holds {} entries, node {} holds {}", first.node, first.entries.len(), other.node, other.entries.len()),
            ));
        }
        if let Some((a, b)) = first.entries.iter().zip(&other.entries).find(|(a, b)| a != b) {
            out.push((
                ClusterAnomaly::Diverged,
                format!(
                    "entry {} (offset {}) on node {} differs from entry {} (offset {}) on node {}",
                    a.0, a.1, first.node, b.0, b.1, other.node
                ),
            ));
        }
    }
    out
}

/// The high watermark is the commit point: no node ever showed one past the
/// end of the committed log, and after heal every node shows exactly it.
fn check_high_watermarks(max_seen: &BTreeMap<u64, u64>, final_hws: &BTreeMap<u64, u64>, log: &ReplicaLog) -> Vec<(ClusterAnomaly, String)> {
    let end = log.entries.last().map_or(0, |(_, base, bytes)| {
        batch::decode_all(bytes.clone(), 1 << 20).flatten().last().map_or(*base, |b| b.header().next_offset())
    });
    let mut out = Vec::new();
    for (node, hw) in max_seen {
        if *hw > end {
            out.push((ClusterAnomaly::HighWatermark, format!("node {node} showed high watermark {hw} past the committed end {end}")));
        }
    }
    for (node, hw) in final_hws {
        if *hw != end {
            out.push((
                ClusterAnomaly::HighWatermark,
                format!("node {node} ends with high watermark {hw}, the committed log ends at {end}"),
            ));
        }
    }
    out
}

/// No acknowledged value lost, moved or duplicated.
fn check_acks(acks: &[(String, u64)], log: &ReplicaLog) -> Vec<(ClusterAnomaly, String)> {
    let mut out = Vec::new();
    let mut at: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (offset, v) in &log.values {
        at.entry(v.as_str()).or_default().push(*offset);
    }
    for (v, offsets) in &at {
        if offsets.len() > 1 {
            out.push((ClusterAnomaly::Duplicated, format!("{v} is at offsets {offsets:?}")));
        }
    }
    for (v, offset) in acks {
        match at.get(v.as_str()) {
            None => out.push((ClusterAnomaly::Lost, format!("{v} was acknowledged at offset {offset} and is not in the committed log"))),
            Some(o) if !o.contains(offset) => {
                out.push((ClusterAnomaly::Moved, format!("{v} was acknowledged at offset {offset} but is at {o:?}")))
            }
            Some(_) => {}
        }
    }
    out
}

/// Idle groups: `groups` groups on `nodes` nodes, leaders spread, nothing
/// proposed and no faults for `quiet` of simulated time. Returns how many
/// groups changed term (elected) after all had their first leader: an idle
/// cluster must never elect.
pub fn run_idle(seed: u64, nodes: u64, groups: u64, quiet: Duration) -> usize {
    let rt = crate::harness::runtime(seed, madsim::Config::default().net.send_latency, quiet + Duration::from_secs(120));
    rt.block_on(async move {
        let handle = Handle::current();
        let terms: Arc<Mutex<BTreeMap<(u64, u64), u64>>> = Arc::default();
        let mut hosts = Vec::new();
        for id in 1..=nodes {
            let disk = SimDisk::new(seed ^ (id << 32));
            let terms = terms.clone();
            hosts.push(
                handle
                    .create_node()
                    .name(format!("weir-{id}"))
                    .ip(ip(id))
                    .init(move || idle_node(id, nodes, groups, disk.clone(), terms.clone()))
                    .build(),
            );
        }
        // Every group led, then a quiet stretch.
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if lock(&terms).len() as u64 == groups * nodes && lock(&terms).values().all(|t| *t > 0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = lock(&terms).clone();
        tokio::time::sleep(quiet).await;
        let after = lock(&terms).clone();
        drop(hosts);
        (1..=groups).filter(|g| (1..=nodes).any(|n| before.get(&(n, *g)) != after.get(&(n, *g)))).count()
    })
}

async fn idle_node(id: u64, nodes: u64, groups: u64, disk: SimDisk, terms: Arc<Mutex<BTreeMap<(u64, u64), u64>>>) {
    let (_stop, rx) = weir_node::tasks::Shutdown::new();
    let node = RaftNode::new(id, Timing::default(), rx.clone());
    let listener = tokio::net::TcpListener::bind(raft_addr(id)).await.expect("bind");
    node.serve(listener, rx);
    let members: BTreeMap<u64, String> = (1..=nodes).map(|n| (n, raft_addr(n))).collect();
    for (n, a) in &members {
        node.set_address(*n, a.clone());
    }
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let mut all = Vec::new();
    for g in 1..=groups {
        let dir = PathBuf::from(format!("/weir/group-{g}"));
        let (log, _) = PartitionLog::open(disk.clone(), &dir, log_config(None), weir_node::clock::now()).expect("healthy disk");
        let group = node.open_group(g, log, disk.clone()).await.expect("group");
        if g % nodes + 1 == id {
            group.bootstrap(members.clone()).await.expect("bootstrap");
        }
        all.push(group);
    }
    loop {
        for (g, group) in (1..=groups).zip(&all) {
            lock(&terms).insert((id, g), group.status().term);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
