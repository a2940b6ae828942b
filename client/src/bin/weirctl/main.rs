//! `weirctl`: the command-line tool for Weir. Human-readable tables by
//! default, `--json` for scripts (one JSON object per line).
//!
//! Exit codes: 0 success, 1 other error, 2 usage error, 3 no such topic or
//! partition, 4 no broker reachable, 5 topic already exists.

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use weir_client::*;

mod cluster;

#[derive(Parser)]
#[command(name = "weirctl", version, about = "Administer, produce to and consume from a Weir broker")]
struct Cli {
    /// Broker addresses, `host:port[,host:port...]`: the first reachable
    /// one answers, and the others are tried when it goes away.
    #[arg(long, global = true, env = "WEIR_BROKER", default_value = "127.0.0.1:9092", value_parser = parse_broker)]
    broker: String,
    /// Print JSON objects, one per line, instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Request timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 30_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send messages: `--message M [--count N]`, or one message per stdin line.
    Produce {
        topic: String,
        #[arg(long)]
        partition: Option<u32>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        message: Option<String>,
        /// Send `--message` this many times.
        #[arg(long, default_value_t = 1, requires = "message")]
        count: u64,
        /// none | leader | all
        #[arg(long, default_value = "all", value_parser = parse_acks)]
        acks: Acks,
    },
    /// Read messages from a partition (or all partitions).
    Consume {
        topic: String,
        #[arg(long)]
        partition: Option<u32>,
        /// earliest | latest | OFFSET | @TIMESTAMP_MS
        #[arg(long, default_value = "earliest", value_parser = parse_start)]
        from: StartOffset,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Keep waiting for new messages instead of stopping at the end.
        #[arg(long)]
        follow: bool,
        /// Consume as a member of this group: partitions are assigned by the
        /// group and progress is committed (`--from` applies only where the
        /// group has no committed offset: earliest or latest).
        #[arg(long)]
        group: Option<String>,
    },
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Start, stop and inspect a cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

#[derive(Subcommand)]
enum GroupCommand {
    List,
    /// State, members, assignment, committed offsets and lag.
    Describe {
        group: String,
    },
    /// Set the group's committed offsets for a topic (stop its consumers first).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest | latest | OFFSET | @TIMESTAMP_MS
        #[arg(long, value_parser = parse_start)]
        to: StartOffset,
    },
    Delete {
        group: String,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replicas: u16,
        /// -1 keeps messages forever.
        #[arg(long, allow_negative_numbers = true)]
        retention_ms: Option<i64>,
        #[arg(long)]
        retention_bytes: Option<u64>,
        #[arg(long)]
        segment_bytes: Option<u64>,
    },
    List,
    Describe {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Move a partition's replicas (a cluster): new replicas catch up from
    /// the leader's whole log, then replace the old ones, whose data is
    /// deleted. `--wait` shows progress until done.
    Reassign {
        name: String,
        #[arg(long)]
        partition: u32,
        /// The replicas to be, `1,2,4`: as many as the replication factor,
        /// the first preferred as leader.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<u64>,
        #[arg(long)]
        wait: bool,
    },
    /// Add partitions (placed as a new topic's; keys may then map to other
    /// partitions, as in Kafka). Prints the new total.
    AddPartitions {
        name: String,
        /// How many partitions to add.
        #[arg(long)]
        count: u32,
    },
}

/// `host:port` with a non-empty host and a port number: anything else is a
/// usage error (exit 2), not a connection failure.
/// Checks a `--broker` list; the list is split where it is used.
fn parse_broker(s: &str) -> Result<String, String> {
    parse_brokers(s).map(|_| s.to_owned())
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "none" | "0" => Ok(Acks::None),
        "leader" | "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        _ => Err(format!("{s:?} is not one of none, leader, all")),
    }
}

fn parse_start(s: &str) -> Result<StartOffset, String> {
    match s {
        "earliest" => Ok(StartOffset::Earliest),
        "latest" => Ok(StartOffset::Latest),
        _ if s.starts_with('@') => {
            s[1..].parse().map(StartOffset::Timestamp).map_err(|_| format!("{s:?}: expected @ followed by milliseconds since the epoch"))
        }
        _ => s.parse().map(StartOffset::Offset).map_err(|_| format!("{s:?} is not earliest, latest, an offset or @timestamp")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Connect { .. }) => 4,
                Some(c) if matches!(c.code(), Some(ErrorCode::UnknownTopic | ErrorCode::UnknownPartition | ErrorCode::UnknownGroup)) => 3,
                Some(c) if c.code() == Some(ErrorCode::TopicAlreadyExists) => 5,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Cluster(c) = cli.command {
        return cluster::run(c, &cli.broker, Duration::from_millis(cli.timeout_ms), cli.json).await;
    }
    let config = ClientConfig {
        brokers: parse_brokers(&cli.broker).map_err(anyhow::Error::msg)?,
        timeout: Duration::from_millis(cli.timeout_ms),
        ..Default::default()
    };
    let client = Client::connect(config).await.map_err(|e| match e {
        // Only a refused connection suggests that nothing is listening.
        ClientError::Connect { refused: true, .. } => {
            anyhow::Error::new(e).context("is the broker running? start one with `cargo run --release -p weir-node --bin weir`")
        }
        e => anyhow::Error::new(e),
    })?;
    match cli.command {
        Command::Topic(t) => topic(&client, t, cli.json).await,
        Command::Produce { topic, partition, key, message, count, acks } => {
            produce(&client, topic, partition, key, message, count, acks, cli.json).await
        }
        Command::Consume { topic, group: Some(group), from, count, follow, .. } => {
            consume_group(&client, topic, group, from, count, follow, cli.json).await
        }
        Command::Consume { topic, partition, from, count, follow, group: None } => {
            consume(&client, topic, partition, from, count, follow, cli.json).await
        }
        Command::Group(g) => group(&client, g, cli.json).await,
        Command::Cluster(_) => unreachable!("answered before connecting"),
    }
}

/// Every replica of `topic` that answers, by (node, partition): each broker
/// describes its own. Brokers that do not answer (down, or older) are left out.
async fn replica_status(client: &Client, topic: &str) -> std::collections::BTreeMap<(u64, u32), ReplicaInfo> {
    let admin = Admin::new(client);
    let brokers = client.refresh_brokers().await.unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for addr in brokers.values() {
        if let Ok(r) = admin.describe_replicas_at(addr, topic).await {
            for info in r.replicas {
                out.insert((r.node_id, info.partition), info);
            }
        }
    }
    out
}

/// Completes a partition's description from its replicas' own answers
/// where the broker that described it holds no replica (it knows the
/// placement, not the log): the leader as the newest term names it, and
/// the end, high watermark and size of the leader's replica.
fn fill_from_replicas(p: &mut PartitionDescription, status: &std::collections::BTreeMap<(u64, u32), ReplicaInfo>) {
    let views = || status.iter().filter(|((_, q), _)| *q == p.partition).map(|(_, r)| r);
    if p.leader.is_none() {
        p.leader = views().filter(|r| r.leader.is_some()).max_by_key(|r| r.term).and_then(|r| r.leader);
    }
    let described_here = p.segments > 0 || p.log_end_offset > 0;
    if let Some(l) = p.leader.and_then(|l| status.get(&(l, p.partition)))
        && !described_here
    {
        p.log_end_offset = l.log_end_offset;
        p.high_watermark = l.high_watermark;
        p.size_bytes = l.size_bytes;
    }
}

/// A warning when `replicas` span fewer racks than the cluster's
/// registered nodes would allow (a node without a rack counts as a rack of
/// its own).
fn rack_note(status: &weir_net::message::ClusterStatusResponse, replicas: &[u64]) -> Option<String> {
    let rack = |id: u64| status.nodes.iter().find(|n| n.id == id).and_then(|n| n.rack.clone()).unwrap_or_else(|| format!("node {id}"));
    if status.nodes.iter().all(|n| n.rack.is_none()) {
        return None;
    }
    let used: std::collections::BTreeSet<String> = replicas.iter().map(|n| rack(*n)).collect();
    // Registered nodes only (an initial member that never registered has no address).
    let all: std::collections::BTreeSet<String> = status.nodes.iter().filter(|n| !n.address.is_empty()).map(|n| rack(n.id)).collect();
    let possible = replicas.len().min(all.len());
    (used.len() < possible).then(|| {
        format!(
            "note: these replicas span {} rack(s) ({}) where {possible} could be used: losing one rack may lose more than one replica",
            used.len(),
            used.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Waits until partition `partition` of `topic` is on `to`, printing each
/// new replica's progress every second: bytes on disk against the
/// leader's (and offsets, which a broker of an older version alone gives).
async fn wait_reassigned(client: &Client, admin: &Admin, topic: &str, partition: u32, to: &[u64], json: bool) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let d = admin.describe_topic(topic).await?;
        let p = d.partitions.iter().find(|p| p.partition == partition).context("the partition is gone")?;
        if p.replicas == to {
            if json {
                println!("{}", json!({"topic": topic, "partition": partition, "replicas": to, "done": true}));
            } else {
                println!("{topic}/{partition} is on {to:?}");
            }
            return Ok(());
        }
        let status = replica_status(client, topic).await;
        let rows: Vec<(u64, Option<&ReplicaInfo>)> =
            to.iter().filter(|n| !p.replicas.contains(n)).map(|n| (*n, status.get(&(*n, partition)))).collect();
        // Against the leader's own replica: the broker that answered the
        // describe may be the new replica itself, which may not know the
        // leader yet either (then the replicas' newest view names it).
        let leader = p.leader.or_else(|| {
            status
                .iter()
                .filter(|((_, q), r)| *q == partition && r.leader.is_some())
                .max_by_key(|(_, r)| r.term)
                .and_then(|(_, r)| r.leader)
        });
        let (leader_end, leader_size) =
            leader.and_then(|l| status.get(&(l, partition))).map_or((p.log_end_offset, p.size_bytes), |r| (r.log_end_offset, r.size_bytes));
        let line = if json {
            let nodes: Vec<_> = rows
                .iter()
                .map(|(n, r)| {
                    json!({"node": n, "log_end_offset": r.map(|r| r.log_end_offset), "size_bytes": r.map(|r| r.size_bytes),
                        "leader_log_end_offset": leader_end, "leader_size_bytes": leader_size})
                })
                .collect();
            json!({"topic": topic, "partition": partition, "replicas": to, "done": false, "new_replicas": nodes}).to_string()
        } else {
            let mb = |b: u64| b as f64 / 1e6;
            let parts: Vec<String> = rows
                .iter()
                .map(|(n, r)| match r {
                    // Offsets alone from a broker too old to report sizes, or before the first byte.
                    Some(r) if r.size_bytes > 0 && leader_size > 0 => format!(
                        "node {n}: {:.1} of {:.1} MB ({:.1} MB to go), offset {} of {}",
                        mb(r.size_bytes),
                        mb(leader_size),
                        mb(leader_size.saturating_sub(r.size_bytes)),
                        r.log_end_offset,
                        leader_end
                    ),
                    Some(r) => format!(
                        "node {n}: {} of {} offsets ({} to go)",
                        r.log_end_offset,
                        leader_end,
                        leader_end.saturating_sub(r.log_end_offset)
                    ),
                    None => format!("node {n}: not started"),
                })
                .collect();
            format!("moving: {}", parts.join("; "))
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn topic(client: &Client, cmd: TopicCommand, json: bool) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match cmd {
        TopicCommand::Create { name, partitions, replicas, retention_ms, retention_bytes, segment_bytes } => {
            let config = TopicConfig { retention_ms, retention_bytes, segment_bytes };
            let r = admin.create_topic(CreateTopicRequest { name, partitions, replicas, config }).await?;
            if json {
                println!("{}", json!({"name": r.name, "partitions": r.partitions}));
            } else {
                println!("created topic {} with {} partition(s)", r.name, r.partitions);
            }
        }
        TopicCommand::Reassign { name, partition, replicas, wait } => {
            let started = admin.reassign_partition(&name, partition, replicas.clone()).await?;
            if json {
                println!("{}", json!({"topic": name, "partition": partition, "replicas": replicas, "started": started}));
            } else if started {
                println!("moving {name}/{partition} onto {replicas:?}");
            } else {
                println!("{name}/{partition} is on {replicas:?} already");
            }
            if !started {
                return Ok(());
            }
            if let Ok(status) = admin.cluster_status().await
                && let Some(note) = rack_note(&status, &replicas)
            {
                eprintln!("{note}");
            }
            if wait {
                wait_reassigned(client, &admin, &name, partition, &replicas, json).await?;
            }
        }
        TopicCommand::AddPartitions { name, count } => {
            if count == 0 {
                anyhow::bail!("--count must be at least 1");
            }
            let total = admin.add_partitions(&name, count).await?;
            if json {
                println!("{}", json!({"name": name, "partitions": total}));
            } else {
                println!("topic {name} now has {total} partition(s)");
            }
        }
        TopicCommand::List => {
            let topics = admin.list_topics().await?;
            if json {
                for t in topics {
                    println!("{}", json!({"name": t.name, "partitions": t.partitions, "replicas": t.replicas}));
                }
            } else {
                println!("{:<40} {:>10} {:>8}", "TOPIC", "PARTITIONS", "REPLICAS");
                for t in topics {
                    println!("{:<40} {:>10} {:>8}", t.name, t.partitions, t.replicas);
                }
            }
        }
        TopicCommand::Describe { name } => {
            let mut d = admin.describe_topic(&name).await?;
            let replicas = replica_status(client, &name).await;
            for p in &mut d.partitions {
                fill_from_replicas(p, &replicas);
            }
            if json {
                let parts: Vec<_> = d
                    .partitions
                    .iter()
                    .map(|p| {
                        // Each replica's own log end (null: its node did not answer), and the term its leader leads in.
                        let status: Vec<_> = p
                            .replicas
                            .iter()
                            .map(|node| json!({"node": node, "log_end_offset": replicas.get(&(*node, p.partition)).map(|r| r.log_end_offset)}))
                            .collect();
                        let term = p.leader.and_then(|l| replicas.get(&(l, p.partition))).map(|r| r.term);
                        json!({"partition": p.partition, "leader": p.leader, "leader_term": term, "replicas": p.replicas, "replica_status": status,
                               "log_start_offset": p.log_start_offset, "log_end_offset": p.log_end_offset, "high_watermark": p.high_watermark,
                               "size_bytes": p.size_bytes, "segments": p.segments,
                               "status": if p.offline.is_some() { "offline" } else { "online" }, "offline_reason": p.offline})
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"name": d.name, "replicas": d.replicas, "config": {"retention_ms": d.config.retention_ms, "retention_bytes": d.config.retention_bytes, "segment_bytes": d.config.segment_bytes}, "partitions": parts})
                );
            } else {
                let opt = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
                println!(
                    "topic {}  replicas {}  retention.ms {}  retention.bytes {}  segment.bytes {}",
                    d.name,
                    d.replicas,
                    opt(d.config.retention_ms.map(|v| v.to_string())),
                    opt(d.config.retention_bytes.map(|v| v.to_string())),
                    opt(d.config.segment_bytes.map(|v| v.to_string()))
                );
                println!(
                    "{:>9} {:>7} {:>14} {:>14} {:>14} {:>12} {:>8}  STATUS",
                    "PARTITION", "LEADER", "START", "END", "HIGH-WATER", "BYTES", "SEGMENTS"
                );
                let mut reasons = Vec::new();
                for p in d.partitions {
                    println!(
                        "{:>9} {:>7} {:>14} {:>14} {:>14} {:>12} {:>8}  {}",
                        p.partition,
                        p.leader.map_or("-".to_owned(), |l| l.to_string()),
                        p.log_start_offset,
                        p.log_end_offset,
                        p.high_watermark,
                        p.size_bytes,
                        p.segments,
                        if p.offline.is_some() { "OFFLINE" } else { "online" }
                    );
                    if let Some(why) = p.offline {
                        reasons.push((p.partition, why));
                    }
                }
                for (p, why) in reasons {
                    println!("partition {p} is offline: {why}");
                }
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            if json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted topic {name}");
            }
        }
    }
    Ok(())
}

fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(n) if n >= 1000 => ProgressBar::new(n),
        _ => return ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Messages waiting for acknowledgement at once.
const PRODUCE_WINDOW: usize = 10_000;

#[allow(clippy::too_many_arguments)]
async fn produce(
    client: &Client,
    topic: String,
    partition: Option<u32>,
    key: Option<String>,
    message: Option<String>,
    count: u64,
    acks: Acks,
    json: bool,
) -> anyhow::Result<()> {
    // A message not acknowledged within twice --timeout-ms fails (the SDK's own
    // default would keep retrying for two minutes, silently).
    let timeout = client.config().timeout;
    let producer = Producer::with_config(
        client,
        // The whole produce, retries included, fails within --timeout-ms.
        ProducerConfig { acks, request_timeout: timeout, delivery_timeout: timeout, ..Default::default() },
    );
    let make = |value: String| {
        let mut m = ProduceMessage::new(topic.clone(), value);
        m.partition = partition;
        m.key = key.clone().map(Bytes::from);
        m
    };
    let mut window = FuturesOrdered::new();
    let mut acked = 0u64;
    let bar = progress(message.as_ref().map(|_| count), "producing");
    let mut report = |r: ProduceResult| {
        acked += 1;
        bar.inc(1);
        if json {
            bar.suspend(|| println!("{}", json!({"topic": r.topic, "partition": r.partition, "offset": r.offset})));
        }
    };
    let send = |m: ProduceMessage| {
        let p = producer.clone();
        async move { p.send(m).await }
    };
    if let Some(value) = message {
        for _ in 0..count {
            window.push_back(send(make(value.clone())));
            if window.len() >= PRODUCE_WINDOW
                && let Some(r) = window.next().await
            {
                report(r?);
            }
        }
    } else {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                biased;
                Some(r) = window.next(), if !window.is_empty() => report(r?),
                line = lines.next_line(), if window.len() < PRODUCE_WINDOW => match line.context("reading stdin")? {
                    Some(l) => window.push_back(send(make(l))),
                    None => break,
                },
            }
        }
    }
    while let Some(r) = window.next().await {
        report(r?);
    }
    bar.finish_and_clear();
    if !json {
        println!("produced {acked} message(s) to {topic}");
    }
    Ok(())
}

async fn consume(
    client: &Client,
    topic: String,
    partition: Option<u32>,
    from: StartOffset,
    count: Option<u64>,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let consumer = Consumer::new(client);
    let partitions: Vec<u32> = match partition {
        Some(p) => vec![p],
        None => (0..client.topic_metadata(&topic).await?.partitions.len() as u32).collect(),
    };
    // Without --follow, stop at the end as it is now.
    let mut ends = std::collections::HashMap::new();
    if !follow {
        for &p in &partitions {
            ends.insert(p, consumer.offset_for(&topic, p, StartOffset::Latest).await?);
        }
    }
    let mut streams = Vec::new();
    for &p in &partitions {
        let start = consumer.offset_for(&topic, p, from).await?;
        if !follow && start >= ends[&p] {
            continue;
        }
        streams.push(consumer.subscribe(&topic, p, StartOffset::Offset(start)).await?);
    }
    let mut done_partitions = 0;
    let live = streams.len();
    let mut all = futures::stream::select_all(streams);
    let bar = progress(count, "consuming");
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) && (follow || done_partitions < live) {
        let Some(m) = all.next().await else { break };
        let m = m?;
        seen += 1;
        bar.inc(1);
        bar.suspend(|| print_message(&m, json));
        if !follow && m.offset + 1 >= ends[&m.partition] {
            done_partitions += 1;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

async fn consume_group(
    client: &Client,
    topic: String,
    group: String,
    from: StartOffset,
    count: Option<u64>,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let offset_reset = match from {
        StartOffset::Latest => OffsetReset::Latest,
        StartOffset::Earliest => OffsetReset::Earliest,
        _ => anyhow::bail!(
            "with --group, --from must be earliest or latest (it applies where the group has no committed offset); use `weirctl group reset-offsets` to move a group"
        ),
    };
    // Commit exactly what was printed (not everything fetched).
    let config = GroupConsumerConfig {
        group_id: group,
        consumer_id: "weirctl".into(),
        topics: vec![topic],
        offset_reset,
        auto_commit: false,
        ..Default::default()
    };
    let mut gc = GroupConsumer::new(client, config);
    gc.join_group().await?;
    let bar = progress(count, "consuming");
    let mut seen = 0u64;
    let mut idle = 0;
    let mut printed: std::collections::BTreeMap<(std::sync::Arc<str>, u32), u64> = std::collections::BTreeMap::new();
    'outer: while count.is_none_or(|c| seen < c) {
        let generation = gc.generation();
        let msgs = gc.poll().await?;
        if gc.generation() != generation {
            // A rebalance: commits for the old generation would be refused;
            // the new owners start from what was committed before.
            printed.clear();
        }
        if msgs.is_empty() {
            idle += 1;
            // Without --follow, stop once every assigned partition came back empty.
            if !follow && idle > gc.assignment().len().max(1) {
                break;
            }
            continue;
        }
        idle = 0;
        for m in msgs {
            seen += 1;
            bar.inc(1);
            bar.suspend(|| print_message(&m, json));
            printed.insert((m.topic.clone(), m.partition), m.offset + 1);
            if count.is_some_and(|c| seen >= c) {
                break 'outer;
            }
        }
        if seen.is_multiple_of(1000) {
            commit_printed(&gc, &printed).await?;
        }
    }
    bar.finish_and_clear();
    commit_printed(&gc, &printed).await?;
    gc.leave_group().await?;
    Ok(())
}

async fn commit_printed(gc: &GroupConsumer, printed: &std::collections::BTreeMap<(std::sync::Arc<str>, u32), u64>) -> anyhow::Result<()> {
    for ((topic, partition), offset) in printed {
        gc.commit_offset(topic, *partition, *offset).await?;
    }
    Ok(())
}

async fn group(client: &Client, cmd: GroupCommand, json: bool) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match cmd {
        GroupCommand::List => {
            let groups = admin.list_groups().await?;
            if json {
                for g in groups {
                    println!("{}", json!({"group": g.group, "state": g.state, "members": g.members}));
                }
            } else {
                println!("{:<40} {:<20} {:>8}", "GROUP", "STATE", "MEMBERS");
                for g in groups {
                    println!("{:<40} {:<20} {:>8}", g.group, g.state, g.members);
                }
            }
        }
        GroupCommand::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            if json {
                let members: Vec<_> = d
                    .members
                    .iter()
                    .map(|m| json!({"member_id": m.member_id, "client_id": m.client_id, "topics": m.topics, "partitions": m.partitions.iter().map(|p| json!({"topic": p.topic, "partition": p.partition})).collect::<Vec<_>>()}))
                    .collect();
                let offsets: Vec<_> = d
                    .offsets
                    .iter()
                    .map(|o| json!({"topic": o.topic, "partition": o.partition, "committed": o.committed, "high_watermark": o.high_watermark, "lag": o.high_watermark.saturating_sub(o.committed)}))
                    .collect();
                println!(
                    "{}",
                    json!({"group": d.group, "state": d.state, "generation": d.generation, "assignor": d.assignor, "leader": d.leader, "members": members, "offsets": offsets})
                );
            } else {
                println!(
                    "group {}  state {}  generation {}  assignor {}",
                    d.group,
                    d.state,
                    d.generation,
                    d.assignor.as_deref().unwrap_or("-")
                );
                println!("{:<40} {:<20} PARTITIONS", "MEMBER", "CLIENT");
                for m in &d.members {
                    let parts: Vec<String> = m.partitions.iter().map(|p| format!("{}/{}", p.topic, p.partition)).collect();
                    println!("{:<40} {:<20} {}", m.member_id, m.client_id, parts.join(" "));
                }
                println!("{:<30} {:>9} {:>14} {:>14} {:>10}", "TOPIC", "PARTITION", "COMMITTED", "HIGH-WATER", "LAG");
                for o in &d.offsets {
                    println!(
                        "{:<30} {:>9} {:>14} {:>14} {:>10}",
                        o.topic,
                        o.partition,
                        o.committed,
                        o.high_watermark,
                        o.high_watermark.saturating_sub(o.committed)
                    );
                }
            }
        }
        GroupCommand::ResetOffsets { group, topic, to } => {
            let consumer = Consumer::new(client);
            let partitions = client.topic_metadata(&topic).await?.partitions.len() as u32;
            let mut offsets = Vec::new();
            for p in 0..partitions {
                offsets.push((topic.clone(), p, consumer.offset_for(&topic, p, to).await?));
            }
            admin.set_group_offsets(&group, offsets.clone()).await?;
            for (t, p, o) in offsets {
                if json {
                    println!("{}", json!({"group": group, "topic": t, "partition": p, "offset": o}));
                } else {
                    println!("{group} {t}/{p} -> {o}");
                }
            }
        }
        GroupCommand::Delete { group } => {
            admin.delete_group(&group).await?;
            if json {
                println!("{}", json!({"deleted": group}));
            } else {
                println!("deleted group {group}");
            }
        }
    }
    Ok(())
}

fn print_message(m: &Message, json: bool) {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    if json {
        let headers: serde_json::Map<String, serde_json::Value> = m.headers.iter().map(|(k, v)| (k.clone(), json!(text(v)))).collect();
        println!(
            "{}",
            json!({"topic": &*m.topic, "partition": m.partition, "offset": m.offset, "timestamp": m.timestamp,
                   "key": m.key.as_ref().map(text), "value": text(&m.value), "headers": headers})
        );
    } else {
        match &m.key {
            Some(k) => println!("{}/{} [{}] {}", m.partition, m.offset, text(k), text(&m.value)),
            None => println!("{}/{} {}", m.partition, m.offset, text(&m.value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_net::message::{ClusterNode, ClusterStatusResponse};

    fn status(racks: &[Option<&str>]) -> ClusterStatusResponse {
        ClusterStatusResponse {
            node_id: 1,
            clustered: true,
            metadata_leader: Some(1),
            term: 1,
            role: "leader".into(),
            nodes: racks
                .iter()
                .enumerate()
                .map(|(i, r)| ClusterNode {
                    id: i as u64 + 1,
                    address: format!("h:{}", i + 1),
                    raft_address: String::new(),
                    heard_ms_ago: None,
                    rack: r.map(str::to_owned),
                })
                .collect(),
            partitions_led: 0,
            under_replicated: 0,
        }
    }

    #[test]
    fn a_reassignment_within_one_rack_is_noted() {
        let s = status(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        let note = rack_note(&s, &[1, 2]).expect("both in rack a");
        assert!(note.contains("1 rack(s) (a) where 2 could be used"), "{note}");
        assert_eq!(rack_note(&s, &[1, 3]), None);
        assert_eq!(rack_note(&status(&[None, None, None]), &[1, 2]), None, "no racks named: nothing to say");
        assert!(rack_note(&status(&[Some("a"), Some("a"), None]), &[1, 2]).is_some(), "node 3 is a rack of its own");
    }
}
