//! `weirctl cluster up | down | status`: a local cluster in one command, and
//! what every node says about it.
//!
//! `up` starts `weir` processes (the binary beside weirctl, else `weir` on
//! the PATH) with data in `<dir>/node-<id>`, logs in `<dir>/node-<id>.log`
//! and process ids in `<dir>/node-<id>.pid`; client ports `P..`, Raft ports
//! `P+100..`. `down` stops what `up` started (SIGTERM, then SIGKILL after
//! 20 s). `status` asks every broker it can reach for its own view, so it
//! answers even when the cluster has no quorum.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_client::*;

/// Most nodes `cluster up` starts (a local demo, not a fleet).
const NODES_MAX: u16 = 9;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start a local cluster: node N listens for clients on P+N-1 and for
    /// Raft peers on P+100+N-1.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Where the nodes keep their data, logs and pid files.
        #[arg(long, default_value = "weir-cluster")]
        dir: PathBuf,
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
        /// Return once every node listens, leaving them running (stop them
        /// with `weirctl cluster down --dir D`); without it, Ctrl-C stops them.
        #[arg(long)]
        detach: bool,
    },
    /// Stop the nodes `cluster up` started in `--dir`.
    Down {
        #[arg(long, default_value = "weir-cluster")]
        dir: PathBuf,
    },
    /// The metadata leader and term, each node's role and reachability, the
    /// partitions each leads and how many of them are under-replicated.
    Status,
    /// Hand leaderships back to each partition's preferred (first) replica
    /// where it is caught up: asks every reachable node. Nodes also do this
    /// on their own every `leader_balance_interval_ms`.
    BalanceLeaders,
    /// Move every replica off node ID (each partition keeps its replication
    /// factor), then remove it from the cluster. Safe to run again after a
    /// crash of any node: it resumes. A removed node is refused if it comes back.
    RemoveNode {
        id: u64,
        /// Show progress until the node is gone.
        #[arg(long)]
        wait: bool,
    },
}

fn pid_file(dir: &Path, id: u16) -> PathBuf {
    dir.join(format!("node-{id}.pid"))
}

fn alive(pid: u32) -> bool {
    Command::new("kill").args(["-0", &pid.to_string()]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).stderr(Stdio::null()).status();
}

/// The `weir` binary: beside this one, else on the PATH.
fn weir_binary() -> PathBuf {
    std::env::current_exe().ok().map(|p| p.with_file_name("weir")).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("weir"))
}

/// The pid files in `dir`, with their node ids.
fn pids(dir: &Path) -> anyhow::Result<Vec<(u16, u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(id) = name.strip_prefix("node-").and_then(|n| n.strip_suffix(".pid")).and_then(|n| n.parse().ok()) else { continue };
        let pid = std::fs::read_to_string(&path)?.trim().parse().with_context(|| format!("{} holds no process id", path.display()))?;
        out.push((id, pid, path));
    }
    out.sort();
    Ok(out)
}

pub async fn run(cmd: ClusterCommand, brokers: &str, timeout: Duration, json: bool) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Up { nodes, dir, base_port, detach } => up(nodes, &dir, base_port, detach).await,
        ClusterCommand::Down { dir } => down(&dir),
        ClusterCommand::Status => status(brokers, timeout, json).await,
        ClusterCommand::BalanceLeaders => balance_leaders(brokers, timeout, json).await,
        ClusterCommand::RemoveNode { id, wait } => remove_node(brokers, timeout, id, wait, json).await,
    }
}

async fn up(nodes: u16, dir: &Path, base_port: u16, detach: bool) -> anyhow::Result<()> {
    if nodes == 0 || nodes > NODES_MAX {
        bail!("--nodes must be 1 to {NODES_MAX}, not {nodes}");
    }
    if base_port == 0 || u32::from(base_port) + 100 + u32::from(nodes) > u32::from(u16::MAX) {
        bail!("--base-port {base_port} leaves no room for {nodes} client ports and {nodes} Raft ports (P.. and P+100..)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some((id, pid, _)) = pids(dir)?.into_iter().find(|(_, pid, _)| alive(*pid)) {
        bail!(
            "node {id} of a cluster in {} is still running (pid {pid}): stop it first with `weirctl cluster down --dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let members: Vec<String> = (0..nodes).map(|i| format!("{}@127.0.0.1:{}", i + 1, base_port + 100 + i)).collect();
    let members = members.join(",");
    let weir = weir_binary();
    let mut started = Vec::new();
    for i in 0..nodes {
        let id = i + 1;
        let listen = format!("127.0.0.1:{}", base_port + i);
        let out_path = dir.join(format!("node-{id}.out"));
        let log = std::fs::File::create(dir.join(format!("node-{id}.log")))?;
        let out = std::fs::File::create(&out_path)?;
        let mut command = Command::new(&weir);
        command
            .args(["--node-id", &id.to_string(), "--listen", &listen, "--initial-members", &members])
            .arg("--data-dir")
            .arg(dir.join(format!("node-{id}")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        // Its own process group: a Ctrl-C meant for weirctl does not reach a detached node.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().with_context(|| format!("cannot start {} (build it with cargo build --release)", weir.display()))?;
        std::fs::write(pid_file(dir, id), child.id().to_string())?;
        started.push((id, child, out_path, listen));
    }
    // Every node prints `weir listening on ADDR` once it serves.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, child, out, listen) in &mut started {
        loop {
            if std::fs::read_to_string(&*out).unwrap_or_default().starts_with("weir listening on ") {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("node {id} exited ({status}) before it listened on {listen}: see {}", dir.join(format!("node-{id}.log")).display());
            }
            if Instant::now() > deadline {
                bail!("node {id} did not listen on {listen} within 30 s: see {}", dir.join(format!("node-{id}.log")).display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let addrs: Vec<String> = started.iter().map(|(_, _, _, l)| l.clone()).collect();
    wait_ready(&addrs, usize::from(nodes)).await?;
    println!("started {nodes} node(s) in {}: clients --broker {}", dir.display(), addrs.join(","));
    if detach {
        println!("stop them with: weirctl cluster down --dir {}", dir.display());
        return Ok(());
    }
    println!("Ctrl-C stops them");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        biased;
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    down(dir)
}

/// Waits (up to 30 s) until the metadata group has a leader and every node
/// has registered, so the next command (a topic create) can place replicas.
async fn wait_ready(addrs: &[String], nodes: usize) -> anyhow::Result<()> {
    let client =
        Client::unconnected(ClientConfig { brokers: addrs.to_vec(), timeout: Duration::from_secs(2), retries: 0, ..Default::default() });
    let admin = Admin::new(&client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for addr in addrs {
            if let Ok(s) = admin.cluster_status_at(addr).await
                && s.metadata_leader.is_some()
                && s.nodes.iter().filter(|n| !n.address.is_empty()).count() >= nodes
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the nodes started but did not elect a metadata leader and register within 30 s: see the node-N.log files");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let nodes = pids(dir)?;
    if nodes.is_empty() {
        bail!("no cluster was started in {} (no node-N.pid files)", dir.display());
    }
    for (_, pid, _) in &nodes {
        if alive(*pid) {
            signal(*pid, "-TERM");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (id, pid, path) in &nodes {
        while alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(*pid) {
            eprintln!("node {id} (pid {pid}) did not stop within 20 s of SIGTERM: killing it");
            signal(*pid, "-KILL");
        }
        std::fs::remove_file(path)?;
    }
    println!("stopped {} node(s) in {}", nodes.len(), dir.display());
    Ok(())
}

/// One node's answer, or why there was none.
struct Seen {
    id: Option<u64>,
    address: String,
    answer: Result<ClusterStatusResponse, String>,
}

/// Every node reachable from `brokers` (following the nodes each answer
/// names), with its status or why it did not answer.
async fn crawl(admin: &Admin, listed: Vec<String>) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    let mut queue: Vec<(Option<u64>, String)> = listed.into_iter().map(|a| (None, a)).collect();
    while let Some((id, address)) = queue.pop() {
        if seen.iter().any(|s| s.address == address) {
            continue;
        }
        let answer = admin.cluster_status_at(&address).await.map_err(|e| e.to_string());
        if let Ok(a) = &answer {
            for n in &a.nodes {
                if !n.address.is_empty() && !seen.iter().any(|s| s.address == n.address) {
                    queue.push((Some(n.id), n.address.clone()));
                }
            }
        }
        let id = answer.as_ref().ok().map(|a| a.node_id).or(id);
        seen.push(Seen { id, address, answer });
    }
    seen
}

/// A client without a first connection: every address is asked on its own.
fn unconnected(brokers: &str, timeout: Duration) -> anyhow::Result<(Admin, Vec<String>)> {
    let listed = parse_brokers(brokers).map_err(anyhow::Error::msg)?;
    let config = ClientConfig { brokers: listed.clone(), timeout, retries: 0, ..Default::default() };
    Ok((Admin::new(&Client::unconnected(config)), listed))
}

async fn balance_leaders(brokers: &str, timeout: Duration, json: bool) -> anyhow::Result<()> {
    let (admin, listed) = unconnected(brokers, timeout.min(Duration::from_secs(3)))?;
    let seen = crawl(&admin, listed).await;
    let reachable: Vec<&Seen> = seen.iter().filter(|s| s.answer.is_ok()).collect();
    if reachable.is_empty() {
        bail!("no node answered: is the cluster running? (--broker, WEIR_BROKER)");
    }
    // A pass may take a few hand-offs' time (each up to 3 s, 8 at once).
    let (admin, _) = unconnected(brokers, timeout.max(Duration::from_secs(30)))?;
    let mut rows = Vec::new();
    for s in reachable {
        match admin.balance_leaders_at(&s.address).await {
            Ok(r) => rows.push(json!({"id": r.node_id, "address": s.address, "moved": r.moved, "failed": r.failed})),
            Err(e) => rows.push(json!({"id": s.id, "address": s.address, "error": e.to_string()})),
        }
    }
    let moved: u64 = rows.iter().filter_map(|r| r["moved"].as_u64()).sum();
    if json {
        println!("{}", json!({"moved": moved, "nodes": rows}));
    } else {
        for r in &rows {
            match r["error"].as_str() {
                Some(e) => println!("node {} ({}): {e}", r["id"], r["address"].as_str().unwrap_or_default()),
                None => println!("node {}: {} leadership(s) returned to their preferred replica, {} not", r["id"], r["moved"], r["failed"]),
            }
        }
        println!("{moved} leadership(s) moved");
    }
    Ok(())
}

/// Partitions a waiting `remove-node` shows the progress of.
const STALLED_SHOWN: usize = 5;

async fn remove_node(brokers: &str, timeout: Duration, id: u64, wait: bool, json: bool) -> anyhow::Result<()> {
    let listed = parse_brokers(brokers).map_err(anyhow::Error::msg)?;
    let client = Client::connect(ClientConfig { brokers: listed, timeout, ..Default::default() }).await?;
    // Learn every broker first: once the node asked is removed it answers
    // nothing, and --wait must go on asking the others.
    client.refresh_brokers().await?;
    let admin = Admin::new(&client);
    let moves = admin.remove_node(id).await?;
    if json {
        println!("{}", json!({"node": id, "moves": moves}));
    } else {
        println!("removing node {id}: {moves} partition(s) start moving off it");
    }
    if !wait {
        return Ok(());
    }
    let mut last = String::new();
    loop {
        // Partitions still on the node, from the metadata.
        let r = client.request(&weir_net::Request::Metadata(weir_net::message::MetadataRequest { topics: None })).await?;
        let weir_net::Response::Metadata(m) = r else { bail!("a metadata request got another answer") };
        let on: usize = m.topics.iter().map(|t| t.partitions.iter().filter(|p| p.replicas.contains(&id)).count()).sum();
        let listed = m.brokers.iter().any(|b| b.node_id == id);
        if !listed && on == 0 {
            if json {
                println!("{}", json!({"node": id, "removed": true}));
            } else {
                println!("node {id} is removed");
            }
            return Ok(());
        }
        // Where the first few partitions still on the node stand: a copy
        // outside its assignment is the replica moving in (none yet: its
        // node may be down, or the partition has no leader to copy from).
        let mut stuck = Vec::new();
        for t in &m.topics {
            let on_node: Vec<_> = t.partitions.iter().filter(|p| p.replicas.contains(&id)).take(STALLED_SHOWN - stuck.len()).collect();
            if on_node.is_empty() {
                continue;
            }
            let status = super::replica_status(&client, &t.name).await;
            for p in on_node {
                let leader_size = p.leader.and_then(|l| status.get(&(l, p.partition))).map(|r| r.size_bytes);
                let incoming: Vec<String> = status
                    .iter()
                    .filter(|((n, q), _)| *q == p.partition && !p.replicas.contains(n))
                    .map(|((n, _), r)| match leader_size {
                        Some(total) => format!("node {n} has {:.1} of {:.1} MB", r.size_bytes as f64 / 1e6, total as f64 / 1e6),
                        None => format!("node {n} has {:.1} MB (no leader now)", r.size_bytes as f64 / 1e6),
                    })
                    .collect();
                stuck.push(if incoming.is_empty() {
                    format!("{}/{}: no new replica copying yet", t.name, p.partition)
                } else {
                    format!("{}/{}: {}", t.name, p.partition, incoming.join(", "))
                });
            }
            if stuck.len() >= STALLED_SHOWN {
                break;
            }
        }
        let line = if json {
            json!({"node": id, "removed": false, "partitions_on_node": on, "moving": stuck}).to_string()
        } else if on > 0 {
            format!("{on} partition(s) still on node {id}: {}", stuck.join("; "))
        } else {
            format!("node {id} holds no replica; leaving the metadata group")
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn status(brokers: &str, timeout: Duration, json: bool) -> anyhow::Result<()> {
    let (admin, listed) = unconnected(brokers, timeout.min(Duration::from_secs(3)))?;
    let seen = crawl(&admin, listed).await;
    // The newest term anyone answered names the metadata leader.
    let best = seen.iter().filter_map(|s| s.answer.as_ref().ok()).max_by_key(|a| (a.term, a.metadata_leader.is_some()));
    let Some(best) = best else {
        let why: Vec<String> =
            seen.iter().map(|s| format!("{}: {}", s.address, s.answer.as_ref().err().cloned().unwrap_or_default())).collect();
        return Err(anyhow::Error::new(ClientError::Connect {
            brokers: seen.iter().map(|s| s.address.clone()).collect(),
            reason: why.join("; "),
            refused: false,
        }));
    };
    let (leader, term) = (best.metadata_leader, best.term);
    // Every node any answer named, plus every address asked.
    let mut ids: Vec<u64> = seen.iter().filter_map(|s| s.answer.as_ref().ok()).flat_map(|a| a.nodes.iter().map(|n| n.id)).collect();
    ids.extend(seen.iter().filter_map(|s| s.id));
    ids.sort();
    ids.dedup();
    let rows: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            let own = seen.iter().find(|s| s.id == Some(*id));
            let address = own
                .map(|s| s.address.clone())
                .or_else(|| best.nodes.iter().find(|n| n.id == *id).map(|n| n.address.clone()))
                .unwrap_or_default();
            // Registered: the metadata (as the newest answer has applied it) knows its address.
            let registered = best.nodes.iter().any(|n| n.id == *id && !n.address.is_empty());
            // Its rack as the metadata holds it, else as the node itself says.
            let rack = best.nodes.iter().chain(own.and_then(|s| s.answer.as_ref().ok()).into_iter().flat_map(|a| a.nodes.iter()))
                .find(|n| n.id == *id && n.rack.is_some())
                .and_then(|n| n.rack.clone());
            match own.map(|s| &s.answer) {
                Some(Ok(a)) => json!({"id": id, "address": address, "rack": rack, "role": a.role, "reachable": true, "registered": registered,
                                      "partitions_led": a.partitions_led, "under_replicated": a.under_replicated}),
                Some(Err(e)) => {
                    json!({"id": id, "address": address, "rack": rack, "role": "unreachable", "reachable": false, "registered": registered, "error": e})
                }
                None => json!({"id": id, "address": address, "rack": rack, "role": "unreachable", "reachable": false, "registered": registered,
                               "error": "not registered yet, or its address is unknown"}),
            }
        })
        .collect();
    if json {
        println!("{}", json!({"metadata_leader": leader, "term": term, "clustered": best.clustered, "nodes": rows}));
        return Ok(());
    }
    match leader {
        Some(l) => println!("metadata leader: node {l}  term {term}"),
        None => println!("metadata leader: none (no quorum, or an election is under way)  term {term}"),
    }
    println!("{:>5} {:<22} {:<12} {:<11} {:>9} {:>10} {:>16}", "NODE", "ADDRESS", "RACK", "ROLE", "REACHABLE", "LEADS", "UNDER-REPLICATED");
    for r in rows {
        println!(
            "{:>5} {:<22} {:<12} {:<11} {:>9} {:>10} {:>16}",
            r["id"].as_u64().unwrap_or(0),
            r["address"].as_str().unwrap_or(""),
            r["rack"].as_str().unwrap_or("-"),
            r["role"].as_str().unwrap_or(""),
            if r["reachable"].as_bool() == Some(true) { "yes" } else { "no" },
            r["partitions_led"].as_u64().map_or("-".to_owned(), |v| v.to_string()),
            r["under_replicated"].as_u64().map_or("-".to_owned(), |v| v.to_string()),
        );
    }
    Ok(())
}
