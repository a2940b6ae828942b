//! The simulation harness (madsim builds only): one run = one seed.
//!
//! Hosts: `weir-1` (10.0.0.1) runs the real broker from weir-node over a
//! [`SimDisk`] that lives here, outside the node, so kill and restart keep
//! what was durable; `client` (10.0.0.2) runs producers and consumers built
//! on the real weir-client. With `brokers > 1` the brokers are one cluster
//! (`weir-1..N` at 10.0.1.1.., each on its own disk, the topic replicated
//! on min(3, N) of them), and faults hit a minority at a time, sometimes
//! every node at once (power loss of the whole cluster). The main task injects faults during the safety
//! phase, then heals everything and demands convergence (liveness), reads
//! every partition back and hands the history to the checker.

use crate::checker::{self, Ack, Anomaly, History, Poll};
use crate::faults::Swarm;
use crate::trace::TraceHash;
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_client::{
    Admin, Client, ClientConfig, ClientError, Consumer, ConsumerConfig, CreateTopicRequest, ErrorCode, GroupConsumer, GroupConsumerConfig,
    OffsetReset, ProduceMessage, Producer, ProducerConfig, StartOffset,
};
use weir_core::canary::Canary;
use weir_core::disk::Disk;
use weir_core::disk::sim::{FaultConfig, SimDisk};
use weir_node::broker::Broker;
use weir_node::config::Config;

const TOPIC: &str = "sim";
const DATA_DIR: &str = "/weir";
const NODE_IP: &str = "10.0.0.1";
const CLIENT_IP: &str = "10.0.0.2";
const PORT: u16 = 9092;
const RAFT_PORT: u16 = 9192;

/// Every broker's client address, for the clients of this run (one run per process).
static BROKERS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Whether the node that joins later (index `brokers`) was started.
static JOINING: AtomicBool = AtomicBool::new(false);
/// The running broker of each node index, for the graceful restarts the
/// fault loop makes (a killed node's broker is dropped with it).
static RUNNING: Mutex<std::collections::BTreeMap<usize, std::sync::Weak<Broker>>> = Mutex::new(std::collections::BTreeMap::new());

fn broker_ip(i: usize, brokers: usize) -> IpAddr {
    if brokers == 1 { NODE_IP.parse().expect("ip") } else { IpAddr::from([10, 0, 1, i as u8 + 1]) }
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated time with faults on.
    pub safety: Duration,
    /// Simulated time allowed to converge once healed.
    pub liveness_bound: Duration,
    pub canary: Option<Canary>,
    /// Force bit flips on (the CRC canary needs corruption to show).
    pub force_bitflips: bool,
    /// Force crashes with power loss on (the offset canary needs restarts).
    pub force_crashes: bool,
    /// Force slow fsyncs, widening the window in which an acknowledgement
    /// sent before its fsync can be lost (the ack-before-fsync canary).
    pub force_slow_sync: bool,
    /// Every producer routes by key or round-robin (the send-order canary).
    pub force_unpinned: bool,
    /// Reassignments every second or so (the membership-change canaries).
    pub force_reassign: bool,
    /// Brokers in the run: 1, or a cluster of 3 or 5.
    pub brokers: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            safety: Duration::from_secs(30),
            liveness_bound: Duration::from_secs(30),
            canary: None,
            force_bitflips: false,
            force_crashes: false,
            force_slow_sync: false,
            force_unpinned: false,
            force_reassign: false,
            brokers: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    pub trace_hash: u64,
    pub anomalies: Vec<Anomaly>,
    pub acks: usize,
    pub polls: usize,
    pub crashes: u32,
    pub clogs: u32,
    pub bitflips: u32,
    pub clock_jumps: u32,
    /// Losses of acknowledged data injected below the recovery checkpoint.
    pub losses: u32,
    pub swarm: Swarm,
}

impl SimReport {
    /// The one-line command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("WEIR_SIM_SEED={} ci/sim", self.seed)
    }
}

/// Everything observed, in order, shared by the workload tasks.
#[derive(Default)]
struct Recorder {
    history: History,
    trace: TraceHash,
    /// Subscriptions started so far (ids must be per run for replay).
    consumers: u32,
}

impl Recorder {
    fn new_consumer(&mut self) -> u32 {
        self.consumers += 1;
        self.consumers
    }
}

type Rec = Arc<Mutex<Recorder>>;

fn rec_lock(rec: &Rec) -> std::sync::MutexGuard<'_, Recorder> {
    rec.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh madsim runtime for one seed: network latency drawn from
/// `latency`, and a time limit past which a run is a hang (madsim panics).
/// Resets the simulated wall clock the node reads.
pub(crate) fn runtime(seed: u64, latency: std::ops::Range<Duration>, limit: Duration) -> Runtime {
    weir_node::clock::sim_reset();
    let mut config = madsim::Config::default();
    config.net.send_latency = latency;
    let mut rt = Runtime::with_seed_and_config(seed, config);
    rt.set_time_limit(limit);
    rt
}

/// Runs one seed to completion and checks its history.
pub fn run(seed: u64, opts: &SimOptions) -> SimReport {
    let hi = fastrand::Rng::with_seed(seed ^ 0x4e45_5457).u64(1..20);
    let limit = opts.safety + opts.liveness_bound * 4 + Duration::from_secs(60);
    let rt = runtime(seed, Duration::from_micros(200)..Duration::from_millis(hi), limit);
    let opts2 = opts.clone();
    rt.block_on(async move { scenario(seed, opts2).await })
}

/// Broker `i`'s settings (of `brokers` initial members; `i == brokers` is
/// the node that joins later, through the initial members' client
/// addresses), with the run's canary (if any) injected.
fn broker_config(canary: Option<Canary>, i: usize, brokers: usize) -> Config {
    let listen = SocketAddr::new(broker_ip(i, brokers), PORT);
    let mut c = Config { node_id: i as u64 + 1, listen, data_dir: PathBuf::from(DATA_DIR), ..Config::default() };
    if brokers > 1 {
        c.raft_listen = Some(SocketAddr::new(broker_ip(i, brokers), RAFT_PORT));
        if i < brokers {
            c.initial_members =
                (0..brokers).map(|j| (j as u64 + 1, SocketAddr::new(broker_ip(j, brokers), RAFT_PORT).to_string())).collect();
        } else {
            c.join = (0..brokers).map(|j| SocketAddr::new(broker_ip(j, brokers), PORT).to_string()).collect();
            c.node_id_explicit = true;
        }
    }
    c.log.canary = canary;
    // Small segments so rolls, sealed segments and index rebuilds happen often.
    c.log.segment_bytes_max = 16 << 10;
    c.log.preallocate_bytes = 4 << 10;
    c.log.index_interval_bytes = 512;
    c.log.retention_ms = None;
    // The harness jumps the broker's clock by hours; producers' clocks stay.
    c.log.timestamp_after_max_ms = Some(48 * 3600 * 1000);
    c.log.segment_age_max_ms = 0;
    // Groups commit often: the offsets log compacts (on every replica, in a
    // cluster) many times a run, under the same faults.
    c.offsets_compact_bytes = 16 << 10;
    c.produce_timeout_max = Duration::from_secs(5);
    c.fetch_wait_max = Duration::from_secs(1);
    c.idle_timeout = Duration::from_secs(120);
    c
}

/// The node's main: open the broker on the simulated disk and serve. A
/// broker that cannot open (an injected read error during recovery) exits
/// and waits for the next restart, as an operator would restart it.
async fn broker_main(disk: SimDisk, canary: Option<Canary>, i: usize, brokers: usize) {
    if i >= brokers && !JOINING.load(Ordering::SeqCst) {
        return;
    }
    let mut config = broker_config(canary, i, brokers);
    let (listen, raft_listen) = (config.listen, config.raft_listen);
    if brokers > 1 {
        // As the binary does before it opens: a member's data directory
        // records its cluster; a new node asks to join (and retries, with
        // the same directory id, after a crash mid-way).
        if let Err(e) = weir_node::join::prepare(&mut config, &disk, listen).await {
            tracing::warn!(error = %e, "broker failed to prepare its cluster membership");
            return;
        }
    }
    let broker = match Broker::open(config, Arc::new(disk)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "broker failed to open");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "bind failed");
            return;
        }
    };
    broker.set_advertised(listen);
    if let Some(addr) = raft_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => broker.serve_raft(l),
            Err(e) => {
                tracing::warn!(error = %e, "raft bind failed");
                return;
            }
        }
    }
    let (_shutdown, rx) = weir_node::tasks::Shutdown::new();
    RUNNING.lock().unwrap_or_else(|p| p.into_inner()).insert(i, Arc::downgrade(&broker));
    broker.start_background();
    weir_node::server::serve(listener, broker, rx).await;
}

/// Connects, retrying while the node is down. A node that stays
/// unreachable for minutes of simulated time is a liveness failure: the
/// caller gets `None` and the run reports it.
async fn connect() -> Option<Client> {
    let brokers = BROKERS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let config = ClientConfig { brokers, timeout: Duration::from_secs(2), retries: 5, ..Default::default() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(config.clone()).await {
            Ok(c) => return Some(c),
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return None,
        }
    }
}

/// An operator asking a random node, now and then, to hand leaderships
/// back to their preferred replicas (`weirctl cluster balance-leaders`):
/// hand-offs under load and faults. Its own RNG, so the fault loop's draws
/// stay what they were for each seed.
async fn balancer(seed: u64, every: Duration, rec: Rec, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x4241_4c41);
    let brokers = BROKERS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let admin = Admin::new(&Client::unconnected(ClientConfig {
        brokers: brokers.clone(),
        timeout: Duration::from_secs(10),
        retries: 0,
        ..Default::default()
    }));
    while pause_unless_stopped(&mut rng, every, &stop).await {
        let i = rng.usize(0..brokers.len());
        let r = admin.balance_leaders_at(&brokers[i]).await;
        let what = r.map_or_else(|e| format!("error {:?}", e.code()), |r| format!("moved {} failed {}", r.moved, r.failed));
        tracing::info!(node_index = i, %what, "leader balance");
        rec_lock(&rec).trace.add(&format!("balance {i} {what}"));
    }
}

/// Sleeps `d`, waking every 100 ms to see whether the faults ended; false
/// once they did.
async fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let at = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < at && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !stop.load(Ordering::SeqCst)
}

/// An operator removing node `id` from the cluster (`weirctl cluster
/// remove-node`) after `after`, asking again until the cluster records
/// it: its replicas move off it under the faults, then it leaves the
/// metadata voters and is refused from then on.
async fn remover(after: Duration, id: u64, rec: Rec, stop: Arc<AtomicBool>) {
    if !sleep_unless_stopped(after, &stop).await {
        return;
    }
    let Some(client) = connect().await else { return };
    let admin = Admin::new(&client);
    while !stop.load(Ordering::SeqCst) {
        let r = admin.remove_node(id).await;
        let what = r.as_ref().map_or_else(|e| format!("error {:?}", e.code()), |moves| format!("moving {moves}"));
        tracing::info!(node = id, %what, "remove node");
        rec_lock(&rec).trace.add(&format!("remove {id} {what}"));
        match r {
            Ok(_) => return,
            Err(e) if e.code() == Some(ErrorCode::NodeNotFound) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Sleeps about `every` (exponentially drawn), waking every 100 ms to see
/// whether the faults ended; false once they did.
async fn pause_unless_stopped(rng: &mut fastrand::Rng, every: Duration, stop: &AtomicBool) -> bool {
    sleep_unless_stopped(Swarm::next_in(rng, every), stop).await
}

/// An operator moving a random partition onto a random set of nodes
/// (`weirctl topic reassign`), now and then, under the faults: learners,
/// joint consensus and old replicas deleting their copies, all while
/// producers write and nodes die.
async fn mover(seed: u64, every: Duration, partitions: Arc<AtomicU32>, n: usize, rec: Rec, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x4d4f_5645);
    let replicas = 3;
    let Some(client) = connect().await else { return };
    let admin = Admin::new(&client);
    while pause_unless_stopped(&mut rng, every, &stop).await {
        let p = rng.u32(0..partitions.load(Ordering::SeqCst));
        let mut nodes: Vec<u64> = (1..=n as u64).collect();
        rng.shuffle(&mut nodes);
        nodes.truncate(replicas);
        let r = admin.reassign_partition(TOPIC, p, nodes.clone()).await;
        let what = r.map_or_else(|e| format!("error {:?}", e.code()), |started| format!("started {started}"));
        tracing::info!(partition = p, to = ?nodes, %what, "reassign");
        rec_lock(&rec).trace.add(&format!("reassign {p} {nodes:?} {what}"));
    }
}

/// Samples, every few milliseconds, which Raft groups each running
/// broker leads and in which term, for the election-safety check: two
/// leaders of one group in one term are two disjoint majorities.
async fn leader_observer(rec: Rec, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let running: Vec<(usize, Arc<Broker>)> =
            RUNNING.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(|(i, b)| b.upgrade().map(|b| (*i, b))).collect();
        {
            let mut r = rec_lock(&rec);
            for (i, broker) in running {
                for (group, term) in broker.raft_leaderships() {
                    r.history.leaders.entry((group, term)).or_default().insert(i as u64 + 1);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An operator growing the topic now and then (`weirctl topic
/// add-partitions`), up to [`PARTITIONS_MAX`]: new replicas placed and
/// started under the faults, keyed producers remapped, the group
/// rebalancing onto them. Its own RNG, as the balancer's.
async fn grower(seed: u64, every: Duration, partitions: Arc<AtomicU32>, rec: Rec, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x4752_4f57);
    let Some(client) = connect().await else { return };
    let admin = Admin::new(&client);
    while pause_unless_stopped(&mut rng, every, &stop).await {
        if partitions.load(Ordering::SeqCst) >= PARTITIONS_MAX {
            return;
        }
        let count = rng.u32(1..=2);
        let r = admin.add_partitions(TOPIC, count).await;
        if let Ok(total) = r {
            partitions.fetch_max(total, Ordering::SeqCst);
        }
        let what = r.map_or_else(|e| format!("error {:?}", e.code()), |total| format!("total {total}"));
        tracing::info!(count, %what, "add partitions");
        rec_lock(&rec).trace.add(&format!("grow {count} {what}"));
    }
}

/// The most partitions the grower takes the topic to.
const PARTITIONS_MAX: u32 = 8;

/// Follows the topic's partition count (what the grower was told, what the
/// brokers describe, and any partition a keyed producer was acknowledged
/// in, whose grow answer was lost) and starts a consumer for each new
/// partition, until `stop`. The consumers go into `spawned`.
async fn partition_watcher(partitions: Arc<AtomicU32>, spawned: Spawned, rec: Rec, stop: Arc<AtomicBool>) {
    let Some(client) = connect().await else { return };
    let admin = Admin::new(&client);
    let mut following = partitions.load(Ordering::SeqCst);
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(t) = admin.describe_topic(TOPIC).await {
            partitions.fetch_max(t.partitions.len() as u32, Ordering::SeqCst);
        }
        let acked = rec_lock(&rec).history.acks.iter().map(|a| a.partition + 1).max().unwrap_or(0);
        let now = partitions.fetch_max(acked, Ordering::SeqCst).max(acked);
        for p in following..now {
            tracing::info!(partition = p, "following a new partition");
            let handle = tokio::spawn(consumer_task(p, rec.clone(), stop.clone()));
            spawned.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
        }
        following = following.max(now);
    }
}

/// Tasks started during the run, awaited when it ends.
type Spawned = Arc<Mutex<Vec<madsim::task::JoinHandle<()>>>>;

/// How a producer picks partitions: every path a user takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routing {
    /// `with_partition`, messages sent as one `send_batch`.
    Pinned,
    /// By key (CRC32), messages sent as concurrent `send` calls.
    Keyed,
    /// No key, no partition: round-robin, concurrent `send` calls.
    RoundRobin,
}

async fn producer_task(id: u32, seed: u64, partitions: Arc<AtomicU32>, opts: &SimOptions, rec: Rec, stop: Arc<AtomicBool>) {
    let unpinned = opts.force_unpinned;
    let Some(client) = connect().await else {
        rec_lock(&rec).history.stuck.push(format!("producer {id} could not connect"));
        return;
    };
    let config = ProducerConfig {
        request_timeout: Duration::from_secs(2),
        delivery_timeout: Duration::from_secs(8),
        canary: opts.canary,
        ..Default::default()
    };
    let producer = Producer::with_config(&client, config);
    let mut rng = fastrand::Rng::with_seed(seed ^ u64::from(id) << 32);
    let routing = [Routing::Pinned, Routing::Keyed, Routing::RoundRobin][rng.usize(usize::from(unpinned)..3)];
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let partition = rng.u32(0..partitions.load(Ordering::SeqCst));
        let n = if rng.u8(0..10) < 3 { rng.usize(2..6) } else { 1 };
        let values: Vec<(u64, String)> = (0..n)
            .map(|_| {
                seq += 1;
                (seq, format!("p{id}-{seq}"))
            })
            .collect();
        // Cold caches: the next sends must look their partitions up again,
        // concurrently, which is where later sends could overtake earlier ones.
        if routing != Routing::Pinned && rng.u8(0..3) == 0 {
            client.invalidate_metadata();
        }
        let results: Vec<Result<weir_client::ProduceResult, ClientError>> = match routing {
            Routing::Pinned => {
                let msgs = values.iter().map(|(_, v)| ProduceMessage::new(TOPIC, v.clone()).with_partition(partition)).collect();
                match producer.send_batch(msgs).await {
                    Ok(rs) => rs.into_iter().map(Ok).collect(),
                    Err(_) => Vec::new(),
                }
            }
            Routing::Keyed | Routing::RoundRobin => {
                let sends = values.iter().map(|(_, v)| {
                    let mut m = ProduceMessage::new(TOPIC, v.clone());
                    if routing == Routing::Keyed {
                        m = m.with_key(format!("k{}", rng.u8(0..8)));
                    }
                    producer.send(m)
                });
                futures::future::join_all(sends.collect::<Vec<_>>()).await
            }
        };
        {
            let mut r = rec_lock(&rec);
            for (res, (send_seq, value)) in results.into_iter().zip(values) {
                let Ok(res) = res else { continue };
                r.trace.add(&format!("ack {} {} {}", res.partition, res.offset, value));
                r.history.acks.push(Ack { partition: res.partition, offset: res.offset, value, producer: id, send_seq });
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..30))).await;
    }
    producer.close().await;
}

/// Follows one partition from offset 0 for the whole run, recording every
/// message in order. A new subscription (new consumer id) starts after
/// OffsetOutOfRange or a reported corruption.
async fn consumer_task(partition: u32, rec: Rec, stop: Arc<AtomicBool>) {
    let Some(client) = connect().await else {
        rec_lock(&rec).history.stuck.push(format!("consumer of partition {partition} could not connect"));
        return;
    };
    let consumer = Consumer::with_config(&client, ConsumerConfig { max_bytes: 64 << 10, max_wait: Duration::from_millis(300) });
    let mut id = rec_lock(&rec).new_consumer();
    let mut offset = 0u64;
    let mut corrupt_strikes = 0;
    while !stop.load(Ordering::SeqCst) {
        match consumer.fetch(TOPIC, partition, offset, Duration::from_millis(300)).await {
            Ok(r) => {
                corrupt_strikes = 0;
                let mut g = rec_lock(&rec);
                for m in r.messages {
                    let value = String::from_utf8_lossy(&m.value).into_owned();
                    g.trace.add(&format!("poll {id} {partition} {} {value}", m.offset));
                    g.history.polls.push(Poll { consumer: id, partition, offset: m.offset, value });
                }
                offset = r.next_offset;
            }
            Err(ClientError::Protocol(e)) => {
                rec_lock(&rec).history.corrupt_served.push(format!("partition {partition} offset {offset}: {e}"));
                id = rec_lock(&rec).new_consumer();
                offset += 1;
            }
            Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) => {
                // Below the start (an accepted loss of the oldest segment):
                // continue at the start; past the end: at the end.
                id = rec_lock(&rec).new_consumer();
                let earliest = consumer.offset_for(TOPIC, partition, StartOffset::Earliest).await.unwrap_or(0);
                offset = if offset < earliest {
                    earliest
                } else {
                    consumer.offset_for(TOPIC, partition, StartOffset::Latest).await.unwrap_or(0)
                };
            }
            Err(e) if e.code() == Some(ErrorCode::CorruptData) => {
                corrupt_strikes += 1;
                if corrupt_strikes >= 3 {
                    // Reported loudly; step over it under a new subscription.
                    id = rec_lock(&rec).new_consumer();
                    offset += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::debug!(partition, offset, error = %e, "consumer fetch failed");
                tokio::time::sleep(Duration::from_millis(100)).await
            }
        }
    }
}

/// A consumer group member: processes messages, then commits exactly what
/// it processed; records ownership per generation and every acknowledged
/// commit for the group invariants.
async fn group_member(name: String, rec: Rec, stop: Arc<AtomicBool>) {
    let Some(client) = connect().await else {
        rec_lock(&rec).history.stuck.push(format!("group member {name} could not connect"));
        return;
    };
    let config = GroupConsumerConfig {
        group_id: "sim-group".into(),
        consumer_id: name.clone(),
        topics: vec![TOPIC.into()],
        session_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(500),
        auto_commit: false,
        offset_reset: OffsetReset::Earliest,
        max_wait: Duration::from_millis(200),
        max_bytes: 64 << 10,
        assignors: vec!["sticky".into(), "range".into()],
    };
    let mut gc = GroupConsumer::new(&client, config);
    let mut generation = 0;
    while !stop.load(Ordering::SeqCst) {
        let msgs = match gc.poll().await {
            Ok(m) => m,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if gc.generation() != generation {
            generation = gc.generation();
            let member = gc.member_id().unwrap_or_default();
            let mut r = rec_lock(&rec);
            for (_, p) in gc.assignment() {
                r.history.group_owners.push((generation, p, member.clone()));
            }
        }
        let mut last: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
        {
            let mut r = rec_lock(&rec);
            let processed = r.history.group_processed.get_or_insert_with(Default::default);
            for m in &msgs {
                processed.insert(String::from_utf8_lossy(&m.value).into_owned());
                last.insert(m.partition, m.offset + 1);
            }
        }
        for (p, next) in last {
            let committed = gc.commit_offset(TOPIC, p, next).await;
            if committed.is_ok() {
                let mut r = rec_lock(&rec);
                r.trace.add(&format!("commit {p} {next}"));
                r.history.group_commits.push((gc.generation(), p, next));
            }
        }
    }
    let _ = gc.leave_group().await;
}

/// Where a partition lives on a single broker (the only layout that
/// injected losses and their acceptance act on).
fn partition_dir(p: u32) -> PathBuf {
    PathBuf::from(DATA_DIR).join("topics").join(TOPIC).join(p.to_string())
}

/// Damages acknowledged data of one partition below its recovery
/// checkpoint while the node is down: deletes a sealed segment, or flips a
/// bit inside a batch of the active segment that lies wholly below the
/// checkpoint. Returns the partition, or `None` if there was nothing to damage.
fn inject_loss(disk: &SimDisk, partitions: u32, rng: &mut fastrand::Rng) -> Option<u32> {
    let p = rng.u32(0..partitions);
    let dir = partition_dir(p);
    let mut logs: Vec<PathBuf> =
        disk.files().into_iter().filter(|f| f.parent() == Some(dir.as_path()) && f.extension().is_some_and(|e| e == "log")).collect();
    logs.sort();
    if logs.len() >= 2 && rng.bool() {
        let victim = &logs[rng.usize(0..logs.len() - 1)];
        for ext in ["log", "index", "timeindex"] {
            let _ = disk.remove_file(&victim.with_extension(ext));
        }
        disk.sync_dir(&dir).ok()?;
        return Some(p);
    }
    let active = logs.last()?;
    let mut raw = [0u8; 24];
    let n = disk.open(&dir.join(weir_core::log::checkpoint::FILE), false).ok()?.read_at(&mut raw, 0).ok()?;
    let checkpoint = weir_core::log::checkpoint::decode(&raw[..n])?.recovery_point;
    let file = disk.open(active, false).ok()?;
    let mut data = vec![0u8; file.len().ok()? as usize];
    let n = file.read_at(&mut data, 0).ok()?;
    data.truncate(n);
    let mut below = Vec::new();
    let mut pos = 0usize;
    while let Ok(h) = weir_core::batch::BatchHeader::parse(&data[pos..]) {
        let total = h.total_len();
        if total < h.header_len() || pos + total > data.len() || h.next_offset() > checkpoint {
            break;
        }
        if h.record_count > 0 {
            below.push((pos + h.crc_start(), pos + total));
        }
        pos += total;
    }
    let (from, to) = *below.get(rng.usize(0..below.len().max(1)))?;
    disk.flip_bit(active, Some(from as u64..to as u64))?;
    Some(p)
}

/// The operator: opens the damaged partition as the broker would, and if
/// recovery reports a loss, accepts it (`weir accept-loss`). Returns the
/// reported range.
fn accept_reported_loss(disk: &SimDisk, p: u32, canary: Option<Canary>) -> Option<(u64, u64)> {
    let faults = disk.faults();
    disk.set_faults(FaultConfig::default());
    let accepted = (|| {
        let (mut log, report) = weir_core::log::PartitionLog::open(
            Arc::new(disk.clone()),
            &partition_dir(p),
            broker_config(canary, 0, 1).log,
            weir_node::clock::now(),
        )
        .ok()?;
        report.loss?;
        let accepted = log.accept_loss(weir_node::clock::now()).ok()??;
        Some((accepted.loss.from, accepted.loss.to))
    })();
    disk.set_faults(faults);
    accepted
}

fn partition_of(path: &Path) -> Option<u32> {
    // /weir/topics/<topic>/<partition>/<base>.log, or /weir/replicas/<topic id>/<partition>/<base>.log;
    // the internal logs (offsets, metadata) are not the topic's.
    let dir = path.parent()?;
    let parent = dir.parent()?.parent()?.file_name()?.to_str()?;
    if parent != "topics" && parent != "replicas" {
        return None;
    }
    dir.file_name()?.to_str()?.parse().ok()
}

/// Flips a bit in a sealed segment (acknowledged, durable data): the
/// newest `.log` of a partition is the active one and is left alone.
fn flip_sealed(disk: &SimDisk, rng: &mut fastrand::Rng) -> Option<u32> {
    let logs: Vec<PathBuf> = disk.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
    let sealed: Vec<&PathBuf> =
        logs.iter().filter(|p| logs.iter().any(|q| q.parent() == p.parent() && q.file_name() > p.file_name())).collect();
    if sealed.is_empty() {
        return None;
    }
    let path = sealed[rng.usize(0..sealed.len())];
    disk.flip_bit(path, None)?;
    partition_of(path)
}

/// One run: set up the node, the client and the workload; inject faults
/// for the safety phase; heal and check liveness; read every partition
/// back; check the history.
async fn scenario(seed: u64, opts: SimOptions) -> SimReport {
    // Always a subscriber (filter `off` unless WEIR_SIM_LOG says): a run
    // with logging must replay the run without it.
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("WEIR_SIM_LOG").unwrap_or_else(|_| "off".to_owned())).try_init();
    let world = setup(seed, &opts).await;
    let workload = start_workload(&world).await;
    let faults = fault_loop(&world).await;
    heal_and_check_liveness(&world, workload, &faults.corrupted).await;
    final_read(&world).await;
    let mut r = rec_lock(&world.rec);
    r.history.corrupted_partitions = faults.corrupted;
    let anomalies = checker::check(&r.history);
    SimReport {
        seed,
        trace_hash: r.trace.value(),
        anomalies,
        acks: r.history.acks.len(),
        polls: r.history.polls.len(),
        crashes: faults.crashes,
        clogs: faults.clogs,
        bitflips: faults.bitflips,
        clock_jumps: faults.jumps,
        losses: faults.losses,
        swarm: world.swarm.clone(),
    }
}

/// What one run is made of: the simulated machines, the node's disk, the
/// drawn swarm and the recorded history.
struct World {
    seed: u64,
    opts: SimOptions,
    swarm: Swarm,
    handle: Handle,
    /// The brokers and their disks (which live outside them), by index.
    nodes: Vec<madsim::runtime::NodeHandle>,
    client_node: madsim::runtime::NodeHandle,
    disks: Vec<SimDisk>,
    rec: Rec,
    /// The topic's partitions at creation (the loss injection's range).
    partitions: u32,
    /// Its partitions now, as the partition watcher follows them.
    partitions_now: Arc<AtomicU32>,
    /// Consumers the partition watcher started.
    spawned: Spawned,
}

/// The client tasks, and the flags that stop them.
struct Workload {
    producers: Vec<madsim::task::JoinHandle<()>>,
    consumers: Vec<madsim::task::JoinHandle<()>>,
    stop_producers: Arc<AtomicBool>,
    stop_consumers: Arc<AtomicBool>,
}

/// What the fault loop injected.
#[derive(Default)]
struct Injected {
    crashes: u32,
    clogs: u32,
    bitflips: u32,
    jumps: u32,
    losses: u32,
    /// Partitions with a flipped bit in a sealed segment.
    corrupted: std::collections::BTreeSet<u32>,
}

/// Draws the swarm, starts the node on a fresh disk and creates the topic.
async fn setup(seed: u64, opts: &SimOptions) -> World {
    let mut swarm = Swarm::draw(seed);
    if opts.force_bitflips {
        swarm.bitflip_every = Some(Duration::from_millis(1500));
    }
    if opts.force_crashes {
        swarm.crash_every = Some(Duration::from_millis(2500));
        swarm.power_loss = true;
    }
    if opts.force_slow_sync {
        swarm.disk.sync_latency_ns = (1_000_000, 20_000_000);
    }
    if opts.force_reassign {
        swarm.reassign_every = Some(Duration::from_millis(1000));
    }
    let handle = Handle::current();
    let n = opts.brokers.max(1);
    *BROKERS.lock().unwrap_or_else(|p| p.into_inner()) = (0..n).map(|i| SocketAddr::new(broker_ip(i, n), PORT).to_string()).collect();
    RUNNING.lock().unwrap_or_else(|p| p.into_inner()).clear();
    JOINING.store(false, Ordering::SeqCst);
    // A node that joins later, in five-broker runs that draw one: idle
    // (its init returns at once) until the joiner starts it.
    let hosts = n + usize::from(n == 5 && swarm.join_after.is_some());
    // The first disk keeps the seed a single broker always had.
    let disks: Vec<SimDisk> = (0..hosts).map(|i| SimDisk::new(seed ^ (i as u64).wrapping_mul(0x9e37_79b9))).collect();
    let nodes = (0..hosts)
        .map(|i| {
            handle
                .create_node()
                .name(format!("weir-{}", i + 1))
                .ip(broker_ip(i, n))
                .init({
                    let disk = disks[i].clone();
                    let canary = opts.canary;
                    move || broker_main(disk.clone(), canary, i, n)
                })
                .build()
        })
        .collect();
    let client_node = handle.create_node().name("client").ip(CLIENT_IP.parse::<IpAddr>().expect("ip")).build();
    // Topic first (with the disks healthy), then the workload.
    let partitions = swarm.partitions;
    let replicas = n.min(3) as u16;
    client_node
        .spawn(async move {
            let client = connect().await.expect("the node starts on a healthy disk");
            loop {
                // In a cluster, refused (NotEnoughReplicas) until the brokers registered.
                let req = CreateTopicRequest { name: TOPIC.into(), partitions, replicas, config: Default::default() };
                match Admin::new(&client).create_topic(req).await {
                    Ok(_) => break,
                    Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .expect("create topic");
    let partitions_now = Arc::new(AtomicU32::new(partitions));
    World {
        seed,
        opts: opts.clone(),
        swarm,
        handle,
        nodes,
        client_node,
        disks,
        rec: Arc::default(),
        partitions,
        partitions_now,
        spawned: Arc::default(),
    }
}

/// Producers (pinned, keyed, round-robin), a consumer per partition and the group members.
async fn start_workload(w: &World) -> Workload {
    let (seed, partitions) = (w.seed, w.partitions);
    let now = &w.partitions_now;
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for id in 0..w.swarm.producers {
        let opts = w.opts.clone();
        let (rec, stop, now) = (w.rec.clone(), stop_producers.clone(), now.clone());
        producers.push(w.client_node.spawn(async move { producer_task(id, seed, now, &opts, rec, stop).await }));
    }
    let mut consumers = Vec::new();
    for p in 0..partitions {
        consumers.push(w.client_node.spawn(consumer_task(p, w.rec.clone(), stop_consumers.clone())));
    }
    if w.swarm.group_members > 0 {
        rec_lock(&w.rec).history.group_processed = Some(Default::default());
    }
    if let (Some(every), true) = (w.swarm.balance_every, w.nodes.len() > 1) {
        producers.push(w.client_node.spawn(balancer(w.seed, every, w.rec.clone(), stop_producers.clone())));
    }
    if let (Some(every), true) = (w.swarm.reassign_every, w.nodes.len() > 3) {
        producers.push(w.client_node.spawn(mover(w.seed, every, now.clone(), w.nodes.len(), w.rec.clone(), stop_producers.clone())));
    }
    if w.nodes.len() > w.opts.brokers
        && let Some(after) = w.swarm.join_after
    {
        let (handle, joiner, stop) = (w.handle.clone(), w.nodes[w.opts.brokers].id(), stop_producers.clone());
        let rec = w.rec.clone();
        producers.push(madsim::task::spawn(async move {
            if sleep_unless_stopped(after, &stop).await {
                JOINING.store(true, Ordering::SeqCst);
                handle.restart(joiner);
                tracing::info!("a new node starts and joins the cluster");
                rec_lock(&rec).trace.add("join");
            }
        }));
    }
    if let (Some(after), 5) = (w.swarm.remove_after, w.opts.brokers) {
        let id = w.swarm.remove_node.min(w.nodes.len() as u64);
        producers.push(w.client_node.spawn(remover(after, id, w.rec.clone(), stop_producers.clone())));
    }
    if let Some(every) = w.swarm.grow_every {
        producers.push(w.client_node.spawn(grower(w.seed, every, now.clone(), w.rec.clone(), stop_producers.clone())));
    }
    consumers.push(w.client_node.spawn(partition_watcher(now.clone(), w.spawned.clone(), w.rec.clone(), stop_consumers.clone())));
    if w.nodes.len() > 1 {
        consumers.push(w.client_node.spawn(leader_observer(w.rec.clone(), stop_consumers.clone())));
    }
    for i in 0..w.swarm.group_members {
        consumers.push(w.client_node.spawn(group_member(format!("g{i}"), w.rec.clone(), stop_consumers.clone())));
    }
    Workload { producers, consumers, stop_producers, stop_consumers }
}

/// The safety phase: disk faults on, and crashes (with injected losses),
/// clogs, clock jumps and bit flips at the swarm's rates until it ends. In a
/// cluster, disk faults and bit flips hit a minority of every replica set, and a
/// crash takes a minority, or now and then every broker at once.
async fn fault_loop(w: &World) -> Injected {
    let (handle, rec, swarm) = (&w.handle, &w.rec, &w.swarm);
    let n = w.nodes.len();
    let minority = (n - 1) / 2;
    let mut rng = fastrand::Rng::with_seed(w.seed ^ 0x4641_554c);
    // Which brokers' disks misbehave: the only one, or a minority of every
    // replica set (R = min(n, 3)): two damaged disks of five brokers can be
    // two of a partition's three replicas, beyond what any replication
    // survives (seed 7057).
    let faulty: Vec<usize> = if n == 1 {
        vec![0]
    } else {
        let mut all: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut all);
        all.truncate(rng.usize(1..=(n.min(3) - 1) / 2));
        all
    };
    for &i in &faulty {
        let mut faults = swarm.disk.clone();
        faults.capacity_bytes = swarm.space_left_bytes.map(|left| w.disks[i].used_bytes() + left);
        w.disks[i].set_faults(faults);
    }
    let net = NetSim::current();
    let end = tokio::time::Instant::now() + w.opts.safety;
    let mut inj = Injected::default();
    let next = |rng: &mut fastrand::Rng, every: Option<Duration>| every.map(|e| tokio::time::Instant::now() + Swarm::next_in(rng, e));
    let (mut next_crash, mut next_clog, mut next_flip) =
        (next(&mut rng, swarm.crash_every), next(&mut rng, swarm.clog_every), next(&mut rng, swarm.bitflip_every));
    let mut next_jump = next(&mut rng, swarm.clock_jump_every);
    // Graceful restarts draw from their own RNG: the other faults' draws
    // stay what they were for each seed.
    let mut grng = fastrand::Rng::with_seed(w.seed ^ 0x4752_4143);
    let mut next_graceful = if n > 1 { next(&mut grng, swarm.graceful_every) } else { None };
    loop {
        let soonest = [next_crash, next_clog, next_flip, next_jump, next_graceful].into_iter().flatten().min().unwrap_or(end).min(end);
        tokio::time::sleep_until(soonest).await;
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        if next_graceful.is_some_and(|t| t <= now) {
            let i = grng.usize(0..n);
            let broker = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).get(&i).and_then(|b| b.upgrade());
            if let Some(broker) = broker {
                // As at SIGTERM: hand off, then stop (here without the drain).
                let handed = w.nodes[i].spawn(async move { broker.hand_off_leaderships().await });
                let _ = tokio::time::timeout(Duration::from_secs(10), handed).await;
                handle.kill(w.nodes[i].id());
                tracing::info!("graceful restart of node index {i}");
                rec_lock(rec).trace.add(&format!("graceful {i}"));
                tokio::time::sleep(Duration::from_millis(grng.u64(0..1000))).await;
                handle.restart(w.nodes[i].id());
            }
            next_graceful = next(&mut grng, swarm.graceful_every);
        } else if next_crash.is_some_and(|t| t <= now) {
            inj.crashes += 1;
            let victims: Vec<usize> = if n == 1 {
                vec![0]
            } else if rng.u8(0..8) == 0 {
                (0..n).collect()
            } else {
                let mut all: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut all);
                all.truncate(rng.usize(1..=minority));
                all
            };
            for &i in &victims {
                handle.kill(w.nodes[i].id());
                if swarm.power_loss {
                    w.disks[i].crash();
                }
            }
            tracing::info!(victims = ?victims, power = swarm.power_loss, "crash {}", inj.crashes);
            rec_lock(rec).trace.add(&format!("crash {} {victims:?} power={}", inj.crashes, swarm.power_loss));
            // Losses below the checkpoint, and their acceptance, are a single broker's tooling.
            if n == 1
                && rng.f64() < swarm.loss_at_crash
                && let Some(p) = inject_loss(&w.disks[0], w.partitions, &mut rng)
            {
                inj.losses += 1;
                let reported = accept_reported_loss(&w.disks[0], p, w.opts.canary);
                let mut r = rec_lock(rec);
                r.history.loss_injected.insert(p);
                r.trace.add(&format!("loss {p} reported {reported:?}"));
                if let Some((from, to)) = reported {
                    r.history.reported_losses.push((p, from, to));
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(0..1500))).await;
            for &i in &victims {
                handle.restart(w.nodes[i].id());
            }
            next_crash = next(&mut rng, swarm.crash_every);
        } else if next_clog.is_some_and(|t| t <= now) {
            inj.clogs += 1;
            let i = if n == 1 { 0 } else { rng.usize(0..n) };
            if n > 1 && rng.bool() {
                // One direction of one broker-to-broker link: the case where
                // a leader still hears its followers but they do not hear it.
                let j = (i + rng.usize(1..n)) % n;
                let (a, b) = (w.nodes[i].id(), w.nodes[j].id());
                net.clog_link(a, b);
                tracing::info!("one-way clog {} from node index {i} to {j}", inj.clogs);
                rec_lock(rec).trace.add(&format!("clog {} {i}->{j}", inj.clogs));
                tokio::time::sleep(Duration::from_millis(rng.u64(100..3000))).await;
                net.unclog_link(a, b);
            } else {
                net.clog_node(w.nodes[i].id());
                tracing::info!("clog {} of node index {i}", inj.clogs);
                rec_lock(rec).trace.add(&format!("clog {} {i}", inj.clogs));
                tokio::time::sleep(Duration::from_millis(rng.u64(100..3000))).await;
                net.unclog_node(w.nodes[i].id());
            }
            next_clog = next(&mut rng, swarm.clog_every);
        } else if next_jump.is_some_and(|t| t <= now) {
            inj.jumps += 1;
            // One broker's clock: brokers disagree on the time, as machines do.
            let i = if n == 1 { 0 } else { rng.usize(0..n) };
            let delta = rng.i64(-3_600_000..=3_600_000);
            weir_node::clock::sim_jump(w.nodes[i].id(), delta);
            tracing::info!("clock of node index {i} jumps {delta} ms");
            rec_lock(rec).trace.add(&format!("clock {i} {delta}"));
            next_jump = next(&mut rng, swarm.clock_jump_every);
        } else if next_flip.is_some_and(|t| t <= now) {
            let i = faulty[if faulty.len() == 1 { 0 } else { rng.usize(0..faulty.len()) }];
            if let Some(p) = flip_sealed(&w.disks[i], &mut rng) {
                inj.bitflips += 1;
                inj.corrupted.insert(p);
                tracing::info!("bit flip on node index {i}, partition {p}");
                rec_lock(rec).trace.add(&format!("flip {i} {p}"));
            }
            next_flip = next(&mut rng, swarm.bitflip_every);
        }
    }
    inj
}

/// The liveness phase: heal everything (an operator restart clears any
/// partition a failed sync took offline), stop the producers, and require
/// the consumers and the group to reach the log end within the bound.
async fn heal_and_check_liveness(w: &World, workload: Workload, corrupted: &std::collections::BTreeSet<u32>) {
    for (node, disk) in w.nodes.iter().zip(&w.disks) {
        disk.set_faults(FaultConfig::default());
        NetSim::current().unclog_node(node.id());
        w.handle.kill(node.id());
        w.handle.restart(node.id());
    }
    workload.stop_producers.store(true, Ordering::SeqCst);
    for p in workload.producers {
        let _ = p.await;
    }
    let deadline = tokio::time::Instant::now() + w.opts.liveness_bound;
    let (rec2, partitions_now) = (w.rec.clone(), w.partitions_now.clone());
    let corrupted_now = corrupted.clone();
    let caught_up = w
        .client_node
        .spawn(async move {
            let Some(client) = connect().await else { return false };
            let consumer = Consumer::new(&client);
            loop {
                let mut ends = Vec::new();
                for p in 0..partitions_now.load(Ordering::SeqCst) {
                    ends.push(consumer.offset_for(TOPIC, p, StartOffset::Latest).await.ok());
                }
                let done = {
                    let r = rec_lock(&rec2);
                    let h = &r.history;
                    let consumers_done = ends.iter().enumerate().all(|(p, end)| {
                        let Some(mut end) = *end else { return false };
                        // The records of an accepted loss are not there to be seen.
                        while end > 0 && checker::excused_loss(h, p as u32, end - 1) {
                            end -= 1;
                        }
                        end == 0 || h.polls.iter().any(|m| m.partition == p as u32 && m.offset + 1 >= end)
                    });
                    // A group member stops at a reported corruption (see the checker).
                    let group_done = h.group_processed.as_ref().is_none_or(|seen| {
                        h.acks.iter().all(|a| {
                            seen.contains(&a.value)
                                || corrupted_now.contains(&a.partition)
                                || checker::excused_loss(h, a.partition, a.offset)
                        })
                    });
                    consumers_done && group_done
                };
                if done {
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .unwrap_or(false);
    if !caught_up {
        rec_lock(&w.rec)
            .history
            .stuck
            .push(format!("consumers (or the group) did not reach the log end within {:?} of healing", w.opts.liveness_bound));
    }
    workload.stop_consumers.store(true, Ordering::SeqCst);
    for c in workload.consumers {
        let _ = c.await;
    }
    let spawned: Vec<_> = std::mem::take(&mut *w.spawned.lock().unwrap_or_else(|p| p.into_inner()));
    for c in spawned {
        let _ = c.await;
    }
}

/// A partition's offset, asked until some broker answers (at most 30 s).
async fn offset_until_answered(consumer: &Consumer, partition: u32, spec: StartOffset) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.offset_for(TOPIC, partition, spec).await {
            Ok(o) => return Some(o),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(partition, error = %e, "final read: no offset yet");
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => {
                tracing::info!(partition, error = %e, "final read: no offset within 30 s");
                return None;
            }
        }
    }
}

/// The final read of every partition from its start, recorded for the checker.
async fn final_read(w: &World) {
    let (rec3, partitions) = (w.rec.clone(), w.partitions_now.load(Ordering::SeqCst));
    w.client_node
        .spawn(async move {
            let Some(client) = connect().await else {
                rec_lock(&rec3).history.stuck.push("the final reader could not connect".to_owned());
                return;
            };
            let consumer = Consumer::with_config(&client, ConsumerConfig { max_bytes: 256 << 10, max_wait: Duration::ZERO });
            for p in 0..partitions {
                // A leader may be moving (a cluster just restarted): ask until one answers.
                let (Some(start), Some(end)) = (
                    offset_until_answered(&consumer, p, StartOffset::Earliest).await,
                    offset_until_answered(&consumer, p, StartOffset::Latest).await,
                ) else {
                    rec_lock(&rec3).history.stuck.push(format!("the final reader got no offsets of partition {p} within 30 s"));
                    continue;
                };
                let mut reads = Vec::new();
                let mut offset = start;
                let mut attempts = 0;
                while offset < end && attempts < 10_000 {
                    attempts += 1;
                    match consumer.fetch_from(TOPIC, p, offset).await {
                        Ok(r) => {
                            for m in r.messages {
                                reads.push((m.offset, String::from_utf8_lossy(&m.value).into_owned()));
                            }
                            offset = r.next_offset.max(offset + 1);
                        }
                        Err(e) if e.code() == Some(ErrorCode::CorruptData) => {
                            rec_lock(&rec3).history.reported_corrupt.insert((p, offset));
                            offset += 1;
                        }
                        Err(ClientError::Protocol(e)) => {
                            rec_lock(&rec3).history.corrupt_served.push(format!("final read {p}/{offset}: {e}"));
                            offset += 1;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                tracing::info!(p, start, end, reads = reads.len(), "final read");
                let mut r = rec_lock(&rec3);
                r.history.final_starts.insert(p, start);
                r.history.final_reads.insert(p, reads);
            }
        })
        .await
        .expect("final read");
}
