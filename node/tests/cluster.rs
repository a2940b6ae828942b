//! Three real `weir` processes as one cluster: replicated topics, leader
//! routing in the SDK and weirctl, and a kill -9 of a leader mid-stream.

mod common;

use common::Broker;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_client::*;
use weir_net::message::MetadataRequest;
use weir_net::{Request, Response};

/// Ports nobody listens on right now (bound, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

struct Cluster {
    nodes: Vec<Broker>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// As [`Cluster::start`], every node also given `extra` flags.
    fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_each(n, |_| extra.iter().map(|s| s.to_string()).collect())
    }

    /// As [`Cluster::start`], node `i` (from 0) also given `extra(i)`.
    fn start_each(n: usize, extra: impl Fn(usize) -> Vec<String>) -> Cluster {
        let ports = free_ports(2 * n);
        let members: Vec<String> = (0..n).map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[n + i])).collect();
        let members = members.join(",");
        let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = (0..n)
            .map(|i| {
                let id = (i + 1).to_string();
                let addr = format!("127.0.0.1:{}", ports[i]);
                let own = extra(i);
                let mut args = vec!["--node-id", &id, "--initial-members", &members];
                args.extend(own.iter().map(String::as_str));
                Broker::start_with(dirs[i].path(), Some(&addr), &args)
            })
            .collect();
        Cluster { nodes, _dirs: dirs }
    }

    fn brokers(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    async fn client(&self) -> Client {
        Client::connect(ClientConfig { brokers: self.brokers(), timeout: Duration::from_secs(10), ..Default::default() }).await.unwrap()
    }

    /// Waits until every node is registered, as node `i` sees it.
    async fn wait_registered(&self, i: usize) {
        let client = self.nodes[i].client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Response::Metadata(m)) = client.request(&Request::Metadata(MetadataRequest { topics: None })).await
                && m.brokers.len() == self.nodes.len()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the brokers did not all register within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// (leader, log end, high watermark) of each partition, as `node` describes
/// it; empty while it does not know the topic yet (its metadata log lags).
async fn describe(node: &Broker, topic: &str) -> Vec<(Option<u64>, u64, u64)> {
    match Admin::new(&node.client().await).describe_topic(topic).await {
        Ok(d) => d.partitions.iter().map(|p| (p.leader, p.log_end_offset, p.high_watermark)).collect(),
        // A node that restarted says LeaderNotAvailable until its metadata caught up.
        Err(e) if matches!(e.code(), Some(weir_net::ErrorCode::UnknownTopic | weir_net::ErrorCode::LeaderNotAvailable)) => Vec::new(),
        Err(e) => panic!("describe: {e}"),
    }
}

/// Every message of a partition from the start, through `client`, as (offset, value).
async fn read_values(client: &Client, topic: &str, partition: u32) -> Vec<(u64, String)> {
    common::read_all(client, topic, partition)
        .await
        .into_iter()
        .map(|m| (m.offset, String::from_utf8_lossy(&m.value).into_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_survives_a_leader_kill_without_losing_or_duplicating_acks() {
    let mut cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    let created =
        admin.create_topic(CreateTopicRequest { name: "orders".into(), partitions: 2, replicas: 3, config: Default::default() }).await;
    assert!(created.is_ok(), "{created:?}");
    // R above the brokers is refused at once, with its own code.
    let err = admin.create_topic(CreateTopicRequest { name: "wide".into(), partitions: 1, replicas: 4, config: Default::default() }).await;
    assert_eq!(err.unwrap_err().code(), Some(weir_net::ErrorCode::NotEnoughReplicas));

    // Every node knows the topic, through whichever broker asked.
    for node in &cluster.nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        while describe(node, "orders").await.iter().filter(|(leader, ..)| leader.is_some()).count() < 2 {
            assert!(Instant::now() < deadline, "partitions without a leader after 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let producer = Producer::new(&client);
    let mut acked: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    let send = |i: usize| producer.send(ProduceMessage::new("orders", format!("m{i}")).with_key(format!("k{}", i % 7)));
    for i in 0..200 {
        let r = send(i).await.unwrap();
        acked.insert(format!("m{i}"), (r.partition, r.offset));
    }

    // kill -9 the leader of partition 0, mid-stream.
    let leader = describe(&cluster.nodes[0], "orders").await[0].0.unwrap();
    let victim = (leader - 1) as usize;
    cluster.nodes[victim].kill9();
    let killed_at = Instant::now();
    let r = send(200).await.unwrap();
    let failover = killed_at.elapsed();
    acked.insert("m200".into(), (r.partition, r.offset));
    for i in 201..400 {
        let r = send(i).await.unwrap();
        acked.insert(format!("m{i}"), (r.partition, r.offset));
    }
    eprintln!("kill -9 of node {leader} (leader of orders/0): next ack after {failover:?}");

    // weirctl, through the same cluster: one ack per line, in order.
    // weirctl is another crate's binary: built beside weir by a workspace build.
    let weirctl_path = std::path::Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weirctl");
    assert!(weirctl_path.exists(), "{} is missing: build the workspace's binaries (cargo build --bins)", weirctl_path.display());
    {
        let mut child = Command::new(&weirctl_path)
            .args(["--broker", &cluster.brokers().join(","), "--json", "produce", "orders", "--partition", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines: String = (0..50).map(|i| format!("w{i}\n")).collect();
        child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let acks: Vec<serde_json::Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(acks.len(), 50, "one ack per line");
        for (i, a) in acks.iter().enumerate() {
            acked.insert(format!("w{i}"), (1, a["offset"].as_u64().unwrap()));
        }
    }

    // The killed node comes back and catches up.
    cluster.nodes[victim].restart();
    let ends = |d: Vec<(Option<u64>, u64, u64)>| d.iter().map(|(_, end, _)| *end).collect::<Vec<u64>>();
    let target = ends(describe(&cluster.nodes[(victim + 1) % 3], "orders").await);
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &cluster.nodes {
        loop {
            let got = ends(describe(node, "orders").await);
            if got == target {
                break;
            }
            assert!(Instant::now() < deadline, "replica ends differ: {got:?} against {target:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Every acknowledged record is there exactly once, where it was acked,
    // and offsets are dense; the same on every node.
    for node in &cluster.nodes {
        let client = node.client().await;
        let mut seen: BTreeMap<String, (u32, u64)> = BTreeMap::new();
        for partition in 0..2 {
            let records = read_values(&client, "orders", partition).await;
            for (i, (offset, _)) in records.iter().enumerate() {
                assert_eq!(*offset, i as u64, "offsets are dense");
            }
            for (offset, value) in records {
                assert!(seen.insert(value.clone(), (partition, offset)).is_none(), "{value} is stored twice");
            }
        }
        for (value, at) in &acked {
            assert_eq!(seen.get(value), Some(at), "{value} acked at {at:?}");
        }
    }
}

/// The group's committed offsets, by partition, from its coordinator.
/// Records acknowledged by a background load: value → (partition, offset).
type Acked = BTreeMap<String, (u32, u64)>;

/// Sends `{prefix}{i}` for every `i` of `range` to partition `i % partitions`
/// of `topic`, recording where each was acknowledged.
async fn send_round_robin(producer: &Producer, topic: &str, prefix: &str, range: std::ops::Range<u32>, partitions: u32, acked: &mut Acked) {
    for i in range {
        let r = producer.send(ProduceMessage::new(topic, format!("{prefix}{i}")).with_partition(i % partitions)).await.unwrap();
        acked.insert(format!("{prefix}{i}"), (r.partition, r.offset));
    }
}

/// acks=all load in the background: `m0`, `m1`, ... to `topic`, one at a
/// time, each routed by `route`, until stopped (and at least `min`). A
/// produce that fails fails the test.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(Acked, Duration)>,
}

impl Load {
    fn start(
        client: &Client,
        topic: &'static str,
        min: u32,
        route: impl Fn(ProduceMessage, u32) -> ProduceMessage + Send + 'static,
    ) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (client, flag) = (client.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let producer = Producer::new(&client);
            let (mut acked, mut slowest) = (Acked::new(), Duration::ZERO);
            let mut i = 0u32;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) || i < min {
                let started = Instant::now();
                let r = producer.send(route(ProduceMessage::new(topic, format!("m{i}")), i)).await;
                let r = r.unwrap_or_else(|e| panic!("produce m{i} to {topic} failed: {e}"));
                slowest = slowest.max(started.elapsed());
                acked.insert(format!("m{i}"), (r.partition, r.offset));
                i += 1;
            }
            (acked, slowest)
        });
        Load { stop, task }
    }

    /// Stops the load: what was acknowledged, and the slowest produce.
    async fn finish(self) -> (Acked, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Runs weirctl (built beside weir) against `brokers`; its stdout, once it succeeded.
fn weirctl(brokers: &str, args: &[&str]) -> String {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weirctl");
    let out = Command::new(&path).args(["--broker", brokers]).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "weirctl {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

async fn committed(client: &Client, group: &str) -> BTreeMap<u32, u64> {
    let req = Request::OffsetFetch(weir_net::message::OffsetFetchRequest { group: group.into(), partitions: vec![] });
    match client.request(&req).await.unwrap() {
        Response::OffsetFetch(r) => r.offsets.into_iter().map(|o| (o.partition, o.offset)).collect(),
        other => panic!("{other:?}"),
    }
}

/// Member "a" of group "workers" on topic "jobs", with short timeouts.
fn worker_config() -> GroupConsumerConfig {
    GroupConsumerConfig {
        group_id: "workers".into(),
        consumer_id: "a".into(),
        topics: vec!["jobs".into()],
        session_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        max_wait: Duration::from_millis(100),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_follows_its_coordinator_through_a_kill_and_keeps_its_commits() {
    let mut cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 2, replicas: 3, config: Default::default() })
        .await
        .unwrap();
    let producer = Producer::new(&client);
    for i in 0..100 {
        producer.send(ProduceMessage::new("jobs", format!("j{i}")).with_partition(i % 2)).await.unwrap();
    }
    let config = worker_config();
    let member_client = cluster.client().await;
    let mut member = GroupConsumer::new(&member_client, config);
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 100 {
        seen.extend(member.poll().await.unwrap().into_iter().map(|m| String::from_utf8_lossy(&m.value).into_owned()));
        assert!(Instant::now() < deadline, "the group saw {} of 100 within 30 s", seen.len());
    }
    member.commit().await.unwrap();
    let before = committed(&client, "workers").await;
    assert_eq!(before.values().sum::<u64>(), 100, "{before:?}");

    // Kill the coordinator: the offsets log's leader.
    let find = client.request(&Request::FindCoordinator(weir_net::message::FindCoordinatorRequest {})).await.unwrap();
    let Response::FindCoordinator(f) = find else { panic!("{find:?}") };
    let coordinator = f.node_id.expect("a coordinator");
    cluster.nodes[(coordinator - 1) as usize].kill9();
    for i in 100..200 {
        producer.send(ProduceMessage::new("jobs", format!("j{i}")).with_partition(i % 2)).await.unwrap();
    }
    // The member finds the new coordinator, rejoins and continues from its commits.
    let mut after: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while after.len() < 100 {
        match member.poll().await {
            Ok(messages) => after.extend(messages.into_iter().map(|m| String::from_utf8_lossy(&m.value).into_owned())),
            Err(e) => assert!(e.is_retriable(), "{e}"),
        }
        assert!(Instant::now() < deadline, "the group saw {} of the 100 new messages within 40 s of the kill", after.len());
    }
    let old: Vec<&String> = after.iter().filter(|v| v[1..].parse::<u32>().unwrap() < 100).collect();
    assert!(old.is_empty(), "committed messages were delivered again after the failover: {old:?}");
    member.commit().await.unwrap();
    let now = committed(&client, "workers").await;
    for (p, o) in &before {
        assert!(now[p] >= *o, "partition {p}'s commit went back: {o} then {}", now[p]);
    }
    assert_eq!(now.values().sum::<u64>(), 200);
}

/// A topic created through one broker is at once known to every other: a
/// broker whose copy of the metadata is a moment behind waits for it
/// instead of answering "no such topic" (a flake of the group test above:
/// its first produce, routed by a follower's metadata, was refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_through_one_broker_is_known_at_once_to_every_other() {
    let cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let creator = cluster.nodes[0].client().await;
    let others = [&cluster.nodes[1].addr, &cluster.nodes[2].addr];
    for i in 0..20 {
        let name = format!("fresh-{i}");
        Admin::new(&creator)
            .create_topic(CreateTopicRequest { name: name.clone(), partitions: 1, replicas: 3, config: Default::default() })
            .await
            .unwrap();
        for other in &others {
            let answer = creator.request_at(other, &Request::Metadata(MetadataRequest { topics: Some(vec![name.clone()]) })).await;
            assert!(matches!(answer, Ok(Response::Metadata(_))), "{name} just created: {answer:?}");
        }
        Admin::new(&creator).add_partitions(&name, 1).await.unwrap();
        // The new partition is known (led there or elsewhere), not unknown.
        for other in &others {
            let ask =
                weir_net::message::ListOffsetsRequest { topic: name.clone(), partition: 1, spec: weir_net::message::OffsetSpec::Latest };
            let answer = creator.request_at(other, &Request::ListOffsets(ask)).await;
            let unknown = matches!(&answer, Err(e) if matches!(e.code(), Some(ErrorCode::UnknownTopic | ErrorCode::UnknownPartition)));
            assert!(!unknown, "{name}'s partition 1 just added: {answer:?}");
        }
    }
    // A topic nobody created is still refused, with what to do.
    let answer = creator.request_at(others[0], &Request::Metadata(MetadataRequest { topics: Some(vec!["never-made".into()]) })).await;
    assert!(matches!(&answer, Err(e) if e.code() == Some(ErrorCode::UnknownTopic)), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_over_racks_and_cluster_status_shows_them() {
    let racks = ["east", "east", "west", "west"];
    let cluster = Cluster::start_each(4, |i| vec!["--rack".into(), racks[i].into()]);
    cluster.wait_registered(0).await;
    // Registered with its rack: every node's rack is in the status.
    let brokers = cluster.brokers().join(",");
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let status: serde_json::Value = serde_json::from_str(&weirctl(&brokers, &["cluster", "status", "--json"])).unwrap();
        let shown: Vec<(u64, String)> = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_u64().unwrap(), n["rack"].as_str().unwrap_or("").to_owned()))
            .collect();
        if shown.iter().all(|(_, r)| !r.is_empty()) || Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected: Vec<(u64, String)> = racks.iter().enumerate().map(|(i, r)| (i as u64 + 1, r.to_string())).collect();
    assert_eq!(shown, expected);
    let table = weirctl(&brokers, &["cluster", "status"]);
    assert!(table.contains("RACK") && table.contains("east") && table.contains("west"), "{table}");
    // Nodes 1, 2 are east and 3, 4 west: a rack-blind rotation would put
    // half of the partitions on one rack only.
    let client = cluster.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "spread".into(), partitions: 8, replicas: 2, config: Default::default() })
        .await
        .unwrap();
    Admin::new(&client).add_partitions("spread", 4).await.unwrap();
    let Response::Metadata(m) = client.request(&Request::Metadata(MetadataRequest { topics: Some(vec!["spread".into()]) })).await.unwrap()
    else {
        panic!("not a metadata answer")
    };
    let partitions = &m.topics[0].partitions;
    assert_eq!(partitions.len(), 12);
    for p in partitions {
        let in_racks: std::collections::BTreeSet<&str> = p.replicas.iter().map(|n| racks[*n as usize - 1]).collect();
        assert_eq!(in_racks.len(), 2, "partition {} on {:?} spans both racks", p.partition, p.replicas);
    }
    for n in 1..=4u64 {
        assert_eq!(partitions.iter().filter(|p| p.replicas.contains(&n)).count(), 6, "24 replicas over 4 nodes");
    }
}

fn empty_dir(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { std::fs::remove_dir_all(path).unwrap() } else { std::fs::remove_file(path).unwrap() }
    }
}

/// A node whose data directory was wiped comes back as a stranger that
/// could vote twice in a term it already voted in: its peers refuse it,
/// both its calls and its answers, so it learns nothing and counts for
/// nothing, until it is removed and joins again as a new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_is_refused_until_it_is_removed_and_joins_again() {
    let mut cluster = Cluster::start(4);
    cluster.wait_registered(0).await;
    // The first metadata leader names the cluster; every member keeps the id.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.nodes.iter().all(|n| n.dir.join("meta").join("cluster-id").exists()) {
        assert!(Instant::now() < deadline, "the members did not record a cluster id within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivors = Client::connect(ClientConfig {
        brokers: cluster.nodes[..3].iter().map(|n| n.addr.clone()).collect(),
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    Admin::new(&survivors)
        .create_topic(CreateTopicRequest { name: "kept".into(), partitions: 4, replicas: 3, config: Default::default() })
        .await
        .unwrap();
    let producer = Producer::new(&survivors);
    let mut acked = Acked::new();
    send_round_robin(&producer, "kept", "k", 0..30, 4, &mut acked).await;

    cluster.nodes[3].kill9();
    empty_dir(&cluster.nodes[3].dir.clone());
    cluster.nodes[3].restart();
    // Its peers do not hear it (its heartbeats are refused) and it learns nothing.
    let restarted = Instant::now();
    let until = restarted + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(describe(&cluster.nodes[3], "kept").await.is_empty(), "the wiped node was taken back: it learnt the topic");
        assert!(!cluster.nodes[3].dir.join("meta").join("cluster-id").exists(), "the wiped node learnt the cluster id");
        let s = Admin::new(&survivors).cluster_status_at(&cluster.nodes[0].addr).await.unwrap();
        let heard = s.nodes.iter().find(|n| n.id == 4).and_then(|n| n.heard_ms_ago);
        let since = restarted.elapsed().as_millis() as u64;
        assert!(heard.is_none_or(|ms| ms >= since), "node 1 heard the wiped node {heard:?} ms ago, {since} ms after its restart");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    send_round_robin(&producer, "kept", "k", 30..60, 4, &mut acked).await;

    let brokers = format!("{},{}", cluster.nodes[0].addr, cluster.nodes[1].addr);
    weirctl(&brokers, &["cluster", "remove-node", "4", "--wait"]);
    cluster.nodes[3].kill9();
    empty_dir(&cluster.nodes[3].dir.clone());
    let raft = format!("127.0.0.1:{}", free_ports(1)[0]);
    let dir = cluster.nodes[3].dir.clone();
    cluster.nodes[3] = Broker::start_with(&dir, None, &["--join", &cluster.nodes[0].addr, "--raft-listen", &raft]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = Admin::new(&survivors).cluster_status_at(&cluster.nodes[0].addr).await.unwrap();
        let ids: Vec<u64> = s.nodes.iter().map(|n| n.id).collect();
        if ids == [1, 2, 3, 5] {
            break;
        }
        assert!(Instant::now() < deadline, "the re-joined node is not node 5 of 1, 2, 3, 5: {ids:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (value, (p, offset)) in &acked {
        assert!(read_values(&survivors, "kept", *p).await.contains(&(*offset, value.clone())), "{value} at {p}/{offset}");
    }
}

/// A data directory is one broker's or one cluster node's: started the
/// other way, the broker refuses with what to do, instead of starting
/// without the topics it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_other_mode_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut single = Broker::start(dir.path(), None);
    Admin::new(&single.client().await)
        .create_topic(CreateTopicRequest { name: "kept".into(), partitions: 1, replicas: 1, config: Default::default() })
        .await
        .unwrap();
    single.terminate();
    let run = |path: &std::path::Path, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--data-dir", path.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let port = free_ports(1)[0];
    let members = format!("1@127.0.0.1:{port}");
    let (code, err) = run(dir.path(), &["--initial-members", &members]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("holds the topics of a single broker") && err.contains("--initial-members"), "{err}");
    // The single broker's data is untouched: it starts and serves the topic.
    let single = Broker::start(dir.path(), None);
    assert!(Admin::new(&single.client().await).describe_topic("kept").await.is_ok());
    drop(single);

    let node_dir = tempfile::tempdir().unwrap();
    let mut node = Broker::start_with(node_dir.path(), None, &["--initial-members", &members]);
    node.terminate();
    // Started without flags, a member's directory says what it is.
    let mut again = Broker::start(node_dir.path(), None);
    let status = Admin::new(&again.client().await).cluster_status_at(&again.addr).await.unwrap();
    assert!(status.clustered && status.node_id == 1, "{status:?}");
    again.terminate();
    // One from before members recorded themselves is refused, saying what to do.
    std::fs::remove_file(node_dir.path().join("meta").join("cluster.json")).unwrap();
    let (code, err) = run(node_dir.path(), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("belongs to a cluster node"), "{err}");
    // Nor does a single broker's directory become a member's by being tried as one.
    assert!(!dir.path().join("meta").join("cluster.json").exists());
}

/// A cluster of one (a lone voter elects itself at once) coordinates its
/// consumer groups too, and keeps doing so after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_cluster_coordinates_groups_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let members = format!("1@127.0.0.1:{port}");
    let mut node = Broker::start_with(dir.path(), None, &["--initial-members", &members]);
    for round in 0..2 {
        let client = node.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let created = Admin::new(&client)
                .create_topic(CreateTopicRequest { name: "solo".into(), partitions: 1, replicas: 1, config: Default::default() })
                .await;
            match created {
                Ok(_) => break,
                Err(e) if e.code() == Some(weir_net::ErrorCode::TopicAlreadyExists) => break,
                Err(e) => assert!(Instant::now() < deadline, "round {round}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let config = GroupConsumerConfig { group_id: "g".into(), topics: vec!["solo".into()], ..Default::default() };
        let mut member = GroupConsumer::new(&client, config);
        let joined = tokio::time::timeout(Duration::from_secs(20), member.join_group()).await;
        assert!(matches!(joined, Ok(Ok(_))), "round {round}: {joined:?}");
        node.terminate();
        node.restart();
    }
}

/// Retention in a cluster: every replica deletes old segments on its own,
/// the leader never ahead of what its live followers hold, and a follower
/// down while the leader deleted what it lacked catches up to the same end
/// when it is back (openraft is told of the purge and sends a snapshot;
/// without that, replication read the deleted entries and retried
/// forever), the retained records readable from the log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_in_a_cluster_keeps_replicas_equal_and_what_is_retained_readable() {
    let mut cluster = Cluster::start_with(3, &["--retention-check-interval-ms", "200"]);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let config = TopicConfig { retention_bytes: Some(16 << 10), retention_ms: None, segment_bytes: Some(4096) };
    let created = Admin::new(&client).create_topic(CreateTopicRequest { name: "short".into(), partitions: 1, replicas: 3, config }).await;
    assert!(created.is_ok(), "{created:?}");
    let producer = Producer::new(&client);
    let value = "x".repeat(200);
    let send_many = |from: usize, to: usize| {
        let (producer, value) = (producer.clone(), value.clone());
        async move {
            for i in from..to {
                producer.send(ProduceMessage::new("short", format!("{i} {value}")).with_partition(0)).await.unwrap();
            }
        }
    };
    send_many(0, 400).await;
    let leader = describe(&cluster.nodes[0], "short").await[0].0.unwrap();
    let follower = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();
    cluster.nodes[follower].kill9();
    // Down long enough that the leader stops waiting for it: its retention
    // deletes what the follower lacks, which then needs a snapshot.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send_many(400, 800).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.nodes[follower].restart();

    // Every replica ends at the same offset and has deleted old segments.
    let deadline = Instant::now() + Duration::from_secs(30);
    let admin = Admin::new(&client);
    loop {
        let start = admin.describe_topic("short").await.map(|d| d.partitions[0].log_start_offset).unwrap_or(0);
        let mut ends = Vec::new();
        for node in &cluster.nodes {
            let end = admin.describe_replicas_at(&node.addr, "short").await.ok().and_then(|r| r.replicas.first().map(|i| i.log_end_offset));
            ends.push(end);
        }
        if start > 0 && ends.iter().all(|e| *e == Some(800)) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not converge with retention: start {start} ends {ends:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What the leader retains is dense and readable up to the end.
    // (Retention may move the start while this reads: begin again from it.)
    let consumer = Consumer::new(&client);
    let mut offset = consumer.offset_for("short", 0, StartOffset::Earliest).await.unwrap();
    let mut values = Vec::new();
    while offset < 800 {
        let r = match consumer.fetch_from("short", 0, offset).await {
            Ok(r) => r,
            Err(e) if e.code() == Some(weir_net::ErrorCode::OffsetOutOfRange) => {
                values.clear();
                offset = consumer.offset_for("short", 0, StartOffset::Earliest).await.unwrap();
                continue;
            }
            Err(e) => panic!("fetch at {offset}: {e}"),
        };
        assert!(!r.messages.is_empty(), "no progress at {offset}");
        offset = r.next_offset;
        values.extend(r.messages.into_iter().map(|m| (m.offset, String::from_utf8_lossy(&m.value).into_owned())));
    }
    let first = values.first().map(|(o, _)| *o).unwrap();
    assert!(first > 0, "retention deleted nothing");
    assert_eq!(values.len() as u64, 800 - first, "retained records are dense");
    assert_eq!(values.last().map(|(o, _)| *o), Some(799));
    for (o, v) in &values {
        assert!(v.starts_with(&format!("{o} ")), "offset {o} holds {v:?}");
    }
}

/// A topic deleted through a broker that does not coordinate groups, then
/// created again, starts with no committed offsets: the coordinator forgets
/// them when it applies the delete (before, only the broker that took the
/// delete tried, and it could not, so consumers of the new topic skipped
/// its first records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_never_inherits_committed_offsets() {
    let cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    let create = || CreateTopicRequest { name: "reborn".into(), partitions: 1, replicas: 3, config: Default::default() };
    admin.create_topic(create()).await.unwrap();
    let producer = Producer::new(&client);
    for i in 0..10 {
        producer.send(ProduceMessage::new("reborn", format!("r{i}")).with_partition(0)).await.unwrap();
    }
    let commit = Request::OffsetCommit(weir_net::message::OffsetCommitRequest {
        group: "g".into(),
        member: None,
        offsets: vec![weir_net::message::OffsetToCommit { topic: "reborn".into(), partition: 0, offset: 7, metadata: String::new() }],
    });
    client.request(&commit).await.unwrap();
    assert_eq!(committed(&client, "g").await.get(&0), Some(&7));

    let coordinator = match client.request(&Request::FindCoordinator(weir_net::message::FindCoordinatorRequest {})).await.unwrap() {
        Response::FindCoordinator(r) => r.node_id.expect("a coordinator"),
        other => panic!("{other:?}"),
    };
    let other = cluster.nodes.iter().enumerate().find(|(i, _)| *i as u64 + 1 != coordinator).map(|(_, n)| n.addr.clone()).unwrap();
    let deleted = client.request_at(&other, &Request::DeleteTopic(weir_net::message::DeleteTopicRequest { name: "reborn".into() })).await;
    assert!(deleted.is_ok(), "{deleted:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed(&client, "g").await.contains_key(&0) {
        assert!(Instant::now() < deadline, "the deleted topic's offsets are still committed after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.create_topic(create()).await.unwrap();
    assert_eq!(committed(&client, "g").await.get(&0), None, "the new topic inherited an old offset");
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum())
}

/// The offsets log is compacted on every replica in a cluster, not only on
/// the coordinator's (followers' copies grew forever), and a new
/// coordinator elected after a kill replays the compacted log to the same
/// committed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_log_is_compacted_on_every_replica_and_survives_a_coordinator_kill() {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("weir.toml");
    std::fs::write(&conf, "offsets_compact_bytes = 8192\npreallocate_bytes = 0\n").unwrap();
    let mut cluster = Cluster::start_with(3, &["--config", conf.to_str().unwrap()]);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 4, replicas: 3, config: Default::default() })
        .await
        .unwrap();
    let config = GroupConsumerConfig { auto_commit: false, ..worker_config() };
    let mut member = GroupConsumer::new(&client, config);
    // The coordinator may not have applied the topic's creation yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = member.join_group().await {
        assert!(Instant::now() < deadline && e.code() == Some(weir_net::ErrorCode::UnknownTopic), "join: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 1..=1500u64 {
        // On a loaded machine the offsets log may elect a new leader, a new
        // coordinator that knows no members: rejoin, as an application does.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = member.commit_offset("jobs", (i % 4) as u32, i).await {
            let rejoin = matches!(
                e.code(),
                Some(
                    weir_net::ErrorCode::UnknownMember | weir_net::ErrorCode::IllegalGeneration | weir_net::ErrorCode::RebalanceInProgress
                )
            );
            assert!(Instant::now() < deadline && (rejoin || e.is_retriable()), "commit {i}: {e}");
            if rejoin {
                let _ = member.join_group().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // 1,500 commits of ~100 bytes each would be ~150 KB uncompacted, on
    // every replica.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sizes: Vec<u64> = cluster.nodes.iter().map(|n| dir_bytes(&n.dir.join("internal/offsets"))).collect();
        if sizes.iter().all(|s| *s > 0 && *s < 60_000) {
            break;
        }
        assert!(Instant::now() < deadline, "the offsets log was not compacted on every replica: {sizes:?} bytes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    member.leave_group().await.unwrap();
    let expect = BTreeMap::from([(0, 1500), (1, 1497), (2, 1498), (3, 1499)]);
    let find = client.request(&Request::FindCoordinator(weir_net::message::FindCoordinatorRequest {})).await.unwrap();
    let Response::FindCoordinator(f) = find else { panic!("{find:?}") };
    cluster.nodes[(f.node_id.expect("a coordinator") - 1) as usize].kill9();
    // Another replica coordinates, from its own compacted copy.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(d) = Admin::new(&client).describe_group("workers").await {
            let committed: BTreeMap<u32, u64> = d.offsets.iter().map(|o| (o.partition, o.committed)).collect();
            assert_eq!(committed, expect);
            break;
        }
        assert!(Instant::now() < deadline, "no coordinator answered within 30 s of the kill");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Partitions added in a cluster get replica sets on every node, elect
/// leaders and take acks=all produces, routed by key; a restarted node
/// replays the grow from the metadata log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_in_a_cluster_are_replicated_and_survive_a_restart() {
    let mut cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "grow".into(), partitions: 1, replicas: 3, config: Default::default() }).await.unwrap();
    let producer = Producer::new(&client);
    for i in 0..20 {
        producer.send(ProduceMessage::new("grow", format!("m{i}")).with_key(format!("k{i}"))).await.unwrap();
    }
    assert_eq!(admin.add_partitions("grow", 2).await.unwrap(), 3);
    let refused = admin.create_partitions("grow", 2).await.unwrap_err();
    assert_eq!(refused.code(), Some(weir_net::ErrorCode::InvalidPartitions), "{refused}");
    let mut acked: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    for i in 20..120 {
        let r = producer.send(ProduceMessage::new("grow", format!("m{i}")).with_key(format!("k{i}"))).await.unwrap();
        acked.insert(format!("m{i}"), (r.partition, r.offset));
    }
    let used: std::collections::BTreeSet<u32> = acked.values().map(|(p, _)| *p).collect();
    assert_eq!(used.len(), 3, "keys spread over the grown count: {used:?}");

    // node 3 restarts: it learns of the grow from the metadata log again.
    cluster.nodes[2].kill9();
    cluster.nodes[2].restart();
    let target: Vec<u64> = describe(&cluster.nodes[0], "grow").await.iter().map(|(_, end, _)| *end).collect();
    assert_eq!(target.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &cluster.nodes {
        loop {
            let got: Vec<u64> = describe(node, "grow").await.iter().map(|(_, end, _)| *end).collect();
            if got == target {
                break;
            }
            assert!(Instant::now() < deadline, "replica ends differ: {got:?} against {target:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let client = cluster.nodes[2].client().await;
    for (value, (partition, offset)) in &acked {
        let records = read_values(&client, "grow", *partition).await;
        assert!(records.contains(&(*offset, value.clone())), "{value} acked at {partition}/{offset}");
    }
}

/// Partitions each node leads, as each node reports it (0 for one that does not answer).
async fn leaders_per_node(cluster: &Cluster) -> Vec<u32> {
    let mut out = Vec::new();
    for node in &cluster.nodes {
        let admin = Admin::new(&node.client().await);
        out.push(admin.cluster_status_at(&node.addr).await.map_or(0, |s| s.partitions_led));
    }
    out
}

/// A rolling restart under load: each node in turn gets SIGTERM, hands its
/// leaderships to caught-up peers before it stops, and comes back; no
/// produce fails and nothing acknowledged is lost or moved. Then
/// `weirctl cluster balance-leaders` returns every leadership to its
/// preferred replica: 10/10/10 for 30 partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request_and_leaders_balance_back() {
    let mut cluster = Cluster::start_with(3, &["--leader-balance-interval-ms", "0"]);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "roll".into(), partitions: 30, replicas: 3, config: Default::default() })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while leaders_per_node(&cluster).await.iter().sum::<u32>() < 30 {
        assert!(Instant::now() < deadline, "30 partitions not all led after 30 s: {:?}", leaders_per_node(&cluster).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Load: one producer, every partition in turn, acks=all.
    let load = Load::start(&client, "roll", 0, |m, i| m.with_partition(i % 30));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for victim in 0..3 {
        let led = leaders_per_node(&cluster).await[victim];
        let stopping = Instant::now();
        assert_eq!(cluster.nodes[victim].terminate(), Some(0), "SIGTERM exits 0");
        eprintln!("node {} (leading {led} partitions) stopped after {:?}", victim + 1, stopping.elapsed());
        cluster.nodes[victim].restart();
        // Back and caught up before the next one goes.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = Admin::new(&cluster.nodes[victim].client().await).cluster_status_at(&cluster.nodes[victim].addr).await;
            if status.is_ok_and(|s| s.metadata_leader.is_some()) && describe(&cluster.nodes[victim], "roll").await.len() == 30 {
                break;
            }
            assert!(Instant::now() < deadline, "node {} did not come back within 30 s", victim + 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (acked, slowest) = load.finish().await;
    eprintln!("{} records acknowledged through the rolling restart; slowest produce {slowest:?}", acked.len());
    assert!(acked.len() > 100, "the load ran: {} records", acked.len());

    // Leaders return to their preferred replicas on demand.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = weirctl(&cluster.brokers().join(","), &["cluster", "balance-leaders"]);
        let led = leaders_per_node(&cluster).await;
        if led.iter().all(|n| n.abs_diff(10) <= 1) && led.iter().sum::<u32>() == 30 {
            break;
        }
        assert!(Instant::now() < deadline, "leaders did not balance: {led:?}; {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every acknowledged record is where it was acknowledged.
    let mut by_partition: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for p in 0..30 {
        by_partition.insert(p, read_values(&client, "roll", p).await);
    }
    for (value, (p, offset)) in &acked {
        assert!(by_partition[p].contains(&(*offset, value.clone())), "{value} acked at {p}/{offset}");
    }
    for (p, records) in &by_partition {
        let mut values: Vec<&String> = records.iter().map(|(_, v)| v).collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), records.len(), "partition {p} holds a record twice");
    }
}

/// `weir --join`: a fourth and a fifth node join a running cluster, are
/// promoted to voters of the metadata group once caught up, host replicas
/// of topics created after, and restart as members without `--join`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_a_running_cluster_become_voters_and_host_replicas() {
    let mut cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let ports = free_ports(2);
    let raft = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut dirs = Vec::new();
    for i in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let raft_listen = raft(i);
        // Joins through a member that need not be the metadata leader.
        let node = Broker::start_with(dir.path(), None, &["--join", &cluster.nodes[i + 1].addr, "--raft-listen", &raft_listen]);
        cluster.nodes.push(node);
        dirs.push(dir);
    }
    // Every node sees five, and the newcomers end as voters.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ok = true;
        for node in &cluster.nodes {
            let s = Admin::new(&node.client().await).cluster_status_at(&node.addr).await.unwrap();
            ok &= s.nodes.len() == 5 && s.role != "learner" && s.metadata_leader.is_some();
        }
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the joined nodes did not become voters within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids: Vec<u64> = {
        let s = Admin::new(&cluster.nodes[3].client().await).cluster_status_at(&cluster.nodes[3].addr).await.unwrap();
        vec![s.node_id, Admin::new(&cluster.nodes[4].client().await).cluster_status_at(&cluster.nodes[4].addr).await.unwrap().node_id]
    };
    assert_eq!(ids, [4, 5], "fresh ids above the members'");

    // A topic created now is placed over all five.
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "wide".into(), partitions: 5, replicas: 3, config: Default::default() }).await.unwrap();
    let d = admin.describe_topic("wide").await.unwrap();
    for id in [4, 5] {
        assert!(d.partitions.iter().any(|p| p.replicas.contains(&id)), "node {id} holds a replica: {:?}", d.partitions);
    }
    let producer = Producer::new(&client);
    let mut acked = Acked::new();
    send_round_robin(&producer, "wide", "w", 0..50, 5, &mut acked).await;
    // The newcomer restarts as a member, without --join, and serves its replicas.
    cluster.nodes[3].kill9();
    let node4 = &mut cluster.nodes[3];
    let raft_listen = raft(0);
    *node4 = Broker::start_with(dirs[0].path(), Some(&node4.addr.clone()), &["--raft-listen", &raft_listen]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while describe(&cluster.nodes[3], "wide").await.len() != 5 {
        assert!(Instant::now() < deadline, "node 4 did not come back as a member");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client4 = cluster.nodes[3].client().await;
    for (value, (p, offset)) in &acked {
        assert!(read_values(&client4, "wide", *p).await.contains(&(*offset, value.clone())), "{value} at {p}/{offset}");
    }
}

/// `weirctl topic reassign --wait` moves a partition onto another node
/// under acks=all load: the new replica catches up from the whole log, the
/// old one's data is deleted, and every acknowledged record stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_onto_another_node_under_load_and_keeps_every_ack() {
    let cluster = Cluster::start(4);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "mv".into(), partitions: 1, replicas: 3, config: Default::default() }).await.unwrap();
    let old = admin.describe_topic("mv").await.unwrap().partitions[0].replicas.clone();
    let spare = (1..=4u64).find(|n| !old.contains(n)).unwrap();
    let leaving = old[2];
    let to = vec![spare, old[0], old[1]];
    // Refusals say what is wrong, and change nothing.
    for (bad, code) in [
        (vec![old[0], old[0], old[1]], weir_net::ErrorCode::InvalidReplicaAssignment),
        (vec![old[0], old[1]], weir_net::ErrorCode::InvalidReplicaAssignment),
        (vec![old[0], old[1], 9], weir_net::ErrorCode::NodeNotFound),
    ] {
        let e = admin.reassign_partition("mv", 0, bad.clone()).await.unwrap_err();
        assert_eq!(e.code(), Some(code), "{bad:?}: {e}");
    }
    let load = Load::start(&client, "mv", 200, |m, _| m.with_partition(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list: Vec<String> = to.iter().map(|n| n.to_string()).collect();
    let text =
        weirctl(&cluster.brokers().join(","), &["topic", "reassign", "mv", "--partition", "0", "--replicas", &list.join(","), "--wait"]);
    assert!(text.contains(&format!("is on {to:?}")), "{text}");
    let (acked, _) = load.finish().await;
    assert_eq!(admin.describe_topic("mv").await.unwrap().partitions[0].replicas, to);

    // The new replica holds everything; the old one's data is gone.
    let topic_id = match client.request(&Request::Metadata(MetadataRequest { topics: Some(vec!["mv".into()]) })).await.unwrap() {
        Response::Metadata(m) => m.topics[0].topic_id,
        other => panic!("{other:?}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let gone = cluster._dirs[(leaving - 1) as usize].path().join("replicas").join(topic_id.to_string()).join("0");
    while gone.exists() {
        assert!(Instant::now() < deadline, "{} still exists", gone.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It left its vote and log end behind (group id: topic id << 16 | partition).
    let tombstone = cluster._dirs[(leaving - 1) as usize].path().join("meta").join("tombstones").join((topic_id << 16).to_string());
    assert!(tombstone.exists(), "{} is missing", tombstone.display());
    let spare_client = cluster.nodes[(spare - 1) as usize].client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = Admin::new(&spare_client).describe_replicas_at(&cluster.nodes[(spare - 1) as usize].addr, "mv").await.unwrap();
        let hw = admin.describe_topic("mv").await.unwrap().partitions[0].high_watermark;
        if r.replicas.first().is_some_and(|r| r.log_end_offset >= hw) {
            break;
        }
        assert!(Instant::now() < deadline, "the new replica did not catch up: {r:?} against {hw}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let values = read_values(&client, "mv", 0).await;
    for (value, (_, offset)) in &acked {
        assert!(values.contains(&(*offset, value.clone())), "{value} acked at {offset}");
    }
    eprintln!("{} records acknowledged while partition 0 moved from {old:?} to {to:?}", acked.len());
}

/// `weirctl cluster remove-node 4 --wait` under load: every replica on
/// node 4 moves to the others, node 4 leaves the cluster, its copies are
/// deleted and no acknowledged record is lost; a removal that would leave
/// too few nodes for a topic is refused; the removed node coming back is
/// refused by its peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_hands_its_replicas_over_and_is_refused_when_it_returns() {
    let mut cluster = Cluster::start(4);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "rm".into(), partitions: 4, replicas: 3, config: Default::default() }).await.unwrap();
    let load = Load::start(&client, "rm", 100, |m, i| m.with_partition(i % 4));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = weirctl(&cluster.brokers()[..3].join(","), &["cluster", "remove-node", "4", "--wait"]);
    assert!(text.contains("node 4 is removed"), "{text}");
    let (acked, _) = load.finish().await;
    let d = admin.describe_topic("rm").await.unwrap();
    assert!(d.partitions.iter().all(|p| !p.replicas.contains(&4) && p.replicas.len() == 3), "{:?}", d.partitions);
    let replicas_dir = cluster._dirs[3].path().join("replicas");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&replicas_dir)
        .map(|d| d.flatten().any(|t| std::fs::read_dir(t.path()).is_ok_and(|mut p| p.next().is_some())))
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "node 4 still holds replica data in {}", replicas_dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in 0..4 {
        let values = read_values(&client, "rm", p).await;
        for (value, (_, offset)) in acked.iter().filter(|(_, (q, _))| *q == p) {
            assert!(values.contains(&(*offset, value.clone())), "{value} acked at {p}/{offset}");
        }
    }
    // Three nodes cannot lose one more with an R = 3 topic.
    let e = admin.remove_node(3).await.unwrap_err();
    assert_eq!(e.code(), Some(weir_net::ErrorCode::NotEnoughReplicas), "{e}");
    // Node 4 comes back: the others do not take it in again.
    cluster.nodes[3].kill9();
    cluster.nodes[3].restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = admin.cluster_status_at(&cluster.nodes[0].addr).await.unwrap();
    assert!(s.nodes.iter().all(|n| n.id != 4), "{:?}", s.nodes);
    assert!(admin.describe_topic("rm").await.unwrap().partitions.iter().all(|p| !p.replicas.contains(&4)));
    // It serves clients nothing, so one that lists it first is not misled
    // by its stale metadata: it goes on to the next broker.
    let only4 = Client::connect(ClientConfig { brokers: vec![cluster.nodes[3].addr.clone()], ..Default::default() }).await.unwrap();
    let e = Admin::new(&only4).describe_topic("rm").await.unwrap_err();
    assert_eq!(e.code(), Some(weir_net::ErrorCode::NodeRemoved), "{e}");
    let first4 =
        Client::connect(ClientConfig { brokers: vec![cluster.nodes[3].addr.clone(), cluster.nodes[0].addr.clone()], ..Default::default() })
            .await
            .unwrap();
    assert_eq!(Admin::new(&first4).describe_topic("rm").await.unwrap().partitions.len(), 4);
    let values = read_values(&first4, "rm", 0).await;
    assert!(acked.iter().filter(|(_, (q, _))| *q == 0).all(|(v, (_, o))| values.contains(&(*o, v.clone()))));
}

/// The operations of a cluster's life, in one run under acks=all load:
/// a fourth node joins and a partition moves onto it, a topic with a
/// running consumer group grows, node 1 (an initial member: a voter of the
/// metadata, a replica of the offsets log) is removed, and every other node
/// restarts in turn (SIGTERM). Every acknowledged record stays where it was
/// acknowledged, the group processes every record, and three healthy nodes
/// remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_move_grow_remove_and_roll_under_load_lose_nothing() {
    let mut cluster = Cluster::start_with(3, &["--leader-balance-interval-ms", "0"]);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 2, replicas: 3, config: Default::default() }).await.unwrap();
    // Load: acks=all, keyed (so the grow changes where keys go).
    let load = Load::start(&client, "jobs", 0, |m, i| m.with_key(format!("k{i}")));
    // A group member processing everything, until the load stopped and it is idle.
    let seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Default::default();
    let member = {
        let (client, stop, seen) = (cluster.client().await, load.stop.clone(), seen.clone());
        tokio::spawn(async move {
            let mut gc = GroupConsumer::new(&client, worker_config());
            let mut idle_after_stop = 0;
            loop {
                match gc.poll().await {
                    Ok(messages) => {
                        let empty = messages.is_empty();
                        seen.lock().unwrap().extend(messages.into_iter().map(|m| String::from_utf8_lossy(&m.value).into_owned()));
                        let _ = gc.commit().await;
                        if stop.load(std::sync::atomic::Ordering::SeqCst) && empty {
                            idle_after_stop += 1;
                            if idle_after_stop > 50 {
                                return gc.assignment().len();
                            }
                        }
                    }
                    Err(e) => {
                        assert!(e.is_retriable(), "the group member failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let three = cluster.brokers()[..3].join(",");
    let ctl = |args: &[&str]| weirctl(&three, args);

    // 1. Node 4 joins; partition 0 moves onto it.
    let dir4 = tempfile::tempdir().unwrap();
    let raft4 = format!("127.0.0.1:{}", free_ports(1)[0]);
    cluster.nodes.push(Broker::start_with(dir4.path(), None, &["--join", &cluster.nodes[0].addr, "--raft-listen", &raft4]));
    let old = admin.describe_topic("jobs").await.unwrap().partitions[0].replicas.clone();
    let to = format!("4,{},{}", old[0], old[1]);
    ctl(&["topic", "reassign", "jobs", "--partition", "0", "--replicas", &to, "--wait"]);
    // 2. The topic grows while the group runs.
    assert!(ctl(&["topic", "add-partitions", "jobs", "--count", "2"]).contains("now has 4"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 3. Node 1 leaves: its replicas and the offsets log move off it.
    assert!(ctl(&["cluster", "remove-node", "1", "--wait"]).contains("node 1 is removed"));
    let offsets1 = cluster._dirs[0].path().join("internal").join("offsets");
    let deadline = Instant::now() + Duration::from_secs(20);
    while offsets1.exists() {
        assert!(Instant::now() < deadline, "node 1 kept its copy of the offsets log after it moved off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.nodes[0].terminate();
    // 4. A rolling restart of the rest.
    for i in 1..4 {
        assert_eq!(cluster.nodes[i].terminate(), Some(0));
        cluster.nodes[i].restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        while describe(&cluster.nodes[i], "jobs").await.len() != 4 {
            assert!(Instant::now() < deadline, "node {} did not come back", i + 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (acked, _) = load.finish().await;
    let assigned = tokio::time::timeout(Duration::from_secs(90), member).await.expect("the member finishes").unwrap();
    assert_eq!(assigned, 4, "the member took the new partitions too");

    let mut stored: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for p in 0..4 {
        stored.insert(p, read_values(&client, "jobs", p).await);
    }
    for (value, (p, offset)) in &acked {
        assert!(stored[p].contains(&(*offset, value.clone())), "{value} acked at {p}/{offset}");
    }
    for (p, records) in &stored {
        for (i, (offset, _)) in records.iter().enumerate() {
            assert_eq!(*offset, i as u64, "partition {p}'s offsets are dense");
        }
    }
    let seen = seen.lock().unwrap().clone();
    let missed: Vec<&String> = acked.keys().filter(|v| !seen.contains(*v)).collect();
    assert!(missed.is_empty(), "the group never processed {} records, e.g. {:?}", missed.len(), &missed[..missed.len().min(5)]);
    let s = admin.cluster_status_at(&cluster.nodes[1].addr).await.unwrap();
    assert_eq!(s.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), vec![2, 3, 4], "{:?}", s.nodes);
    eprintln!("{} records acknowledged through join, move, grow, remove and a rolling restart", acked.len());
}

/// Kafka clients see the cluster as native ones do: every broker, the
/// metadata leader as controller, each partition's leader and replicas
/// from the cluster metadata, whichever broker they ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_metadata_is_the_cluster_metadata_through_every_broker() {
    let cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "kt".into(), partitions: 3, replicas: 3, config: Default::default() }).await.unwrap();
    let native = admin.describe_topic("kt").await.unwrap();
    for node in &cluster.nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = common::kcat().args(["-b", &node.addr, "-L", "-J", "-t", "kt", "-m", "10"]).output().expect("kcat");
            let md: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let brokers = md["brokers"].as_array().map_or(0, |b| b.len());
            let controller = md["controllerid"].as_i64().unwrap_or(-1);
            let partitions = md["topics"][0]["partitions"].as_array().cloned().unwrap_or_default();
            let leaders_known = partitions.len() == 3 && partitions.iter().all(|p| p["leader"].as_i64().is_some_and(|l| l > 0));
            if brokers == 3 && (1..=3).contains(&controller) && leaders_known {
                for p in &partitions {
                    let i = p["partition"].as_u64().unwrap() as usize;
                    let replicas: Vec<u64> = p["replicas"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
                    assert_eq!(replicas, native.partitions[i].replicas, "partition {i} through {}", node.addr);
                }
                break;
            }
            assert!(Instant::now() < deadline, "kcat through {} never saw the whole cluster: {md}", node.addr);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A Kafka group consumer bootstrapped on a broker that does not coordinate
/// groups is sent to the one that does (FindCoordinator from the cluster
/// metadata), reads by group and commits there, where native clients see
/// the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_group_consumer_finds_the_clusters_coordinator_and_commits_there() {
    let cluster = Cluster::start(3);
    cluster.wait_registered(0).await;
    let client = cluster.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "kg".into(), partitions: 3, replicas: 3, config: Default::default() })
        .await
        .unwrap();
    let producer = Producer::new(&client);
    for i in 0..30u32 {
        producer.send(ProduceMessage::new("kg", format!("m{i}")).with_partition(i % 3)).await.unwrap();
    }
    let coordinator = match client.request(&Request::FindCoordinator(weir_net::message::FindCoordinatorRequest {})).await.unwrap() {
        Response::FindCoordinator(r) => r.node_id.expect("a coordinator"),
        other => panic!("{other:?}"),
    };
    let other = cluster.nodes.iter().enumerate().find(|(i, _)| *i as u64 + 1 != coordinator).map(|(_, n)| n.addr.clone()).unwrap();
    let out = common::kcat()
        .args(["-b", &other, "-G", "kafka-readers", "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", "%s\n", "kg"])
        .output()
        .expect("kcat");
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    got.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(got, (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>(), "{}", String::from_utf8_lossy(&out.stderr));
    let offsets = committed(&client, "kafka-readers").await;
    assert_eq!(offsets, BTreeMap::from([(0, 10), (1, 10), (2, 10)]), "the commits, as native clients read them");
}
