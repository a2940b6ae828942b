//! `weir-bench`: produce and consume benchmarks against a running broker,
//! through the real SDK. Prints messages/s, MB/s, latency percentiles
//! (hdrhistogram) and the machine's load average before and after.
//!
//! ```text
//! weir-bench produce --messages 200000 --size 1024 --batch 1000 --in-flight 4
//! weir-bench produce --messages 20000 --batch 1                 # one message per request
//! weir-bench produce --messages 200000 --batch 1 --producers 64 # group commit
//! weir-bench consume --topic weir-bench                        # page-cache reads
//! ```

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_client::*;

#[derive(Parser)]
#[command(name = "weir-bench", about = "Benchmark a Weir broker")]
struct Cli {
    /// Broker addresses, `host:port[,host:port...]`.
    #[arg(long, global = true, default_value = "127.0.0.1:9092", value_parser = check_brokers)]
    broker: String,
    #[arg(long, global = true, default_value = "weir-bench")]
    topic: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce `--messages` messages of `--size` bytes.
    Produce {
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Messages per batch; 1 sends one message per request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Concurrent producers, each with its own producer id.
        #[arg(long, default_value_t = 1)]
        producers: usize,
        /// Batches each producer keeps in flight.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Partitions of the topic, created if missing.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Replication factor of the topic, if it is created (a cluster's brokers).
        #[arg(long, default_value_t = 1)]
        replicas: u16,
        #[arg(long, default_value = "all")]
        acks: String,
    },
    /// Read the whole topic from the earliest offset.
    Consume {
        #[arg(long, default_value_t = 4 << 20)]
        max_bytes: u32,
    },
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn report(what: &str, messages: u64, bytes: u64, secs: f64, lat: Option<&Histogram<u64>>) {
    print!("{what}: {messages} msgs in {secs:.2}s = {:.0} msgs/s, {:.1} MB/s", messages as f64 / secs, bytes as f64 / secs / 1e6);
    if let Some(h) = lat {
        print!(
            "; latency p50 {:.3} ms p99 {:.3} ms p999 {:.3} ms max {:.3} ms",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    println!();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = Client::connect(ClientConfig { brokers: parse_brokers(&cli.broker).map_err(anyhow::Error::msg)?, ..Default::default() })
        .await
        .context("connecting")?;
    println!("load before: {}", load());
    match cli.command {
        Cmd::Produce { messages, size, batch, producers, in_flight, partitions, replicas, acks } => {
            let acks = match acks.as_str() {
                "none" => Acks::None,
                "leader" => Acks::Leader,
                _ => Acks::All,
            };
            let admin = Admin::new(&client);
            match admin.create_topic(CreateTopicRequest { name: cli.topic.clone(), partitions, replicas, config: Default::default() }).await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
            // Elections are not throughput: start the clock once every partition has a leader.
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            loop {
                client.invalidate_metadata();
                let led = client.topic_metadata(&cli.topic).await.is_ok_and(|m| m.partitions.iter().all(|p| p.leader.is_some()));
                if led || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let value = Bytes::from(vec![0x61u8; size]);
            let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
            let per_producer = messages / producers as u64;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for id in 0..producers {
                let config = ProducerConfig {
                    acks,
                    batch_bytes: (batch * (size + 32)).max(1024),
                    max_in_flight: in_flight.max(1),
                    ..Default::default()
                };
                let producer = Producer::with_config(&client, config);
                let topic = cli.topic.clone();
                let value = value.clone();
                let hist = hist.clone();
                let partition = (id as u32) % partitions;
                tasks.push(tokio::spawn(async move {
                    let mut window = FuturesUnordered::new();
                    let mut sent = 0u64;
                    let depth = if batch == 1 { 1 } else { in_flight.max(1) };
                    while sent < per_producer || !window.is_empty() {
                        while sent < per_producer && window.len() < depth {
                            let n = (batch as u64).min(per_producer - sent);
                            let msgs: Vec<ProduceMessage> =
                                (0..n).map(|_| ProduceMessage::new(topic.clone(), value.clone()).with_partition(partition)).collect();
                            let p = producer.clone();
                            window.push(async move {
                                let t = Instant::now();
                                let r = p.send_batch(msgs).await;
                                (n, t.elapsed(), r)
                            });
                            sent += n;
                        }
                        if let Some((n, took, r)) = window.next().await {
                            r?;
                            hist.lock().unwrap_or_else(|p| p.into_inner()).record_n(took.as_micros() as u64, n)?;
                        }
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let secs = start.elapsed().as_secs_f64();
            let total = per_producer * producers as u64;
            let h = hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
            report(
                &format!("produce size={size} batch={batch} producers={producers} in_flight={in_flight} acks={acks:?}"),
                total,
                total * size as u64,
                secs,
                Some(&h),
            );
        }
        Cmd::Consume { max_bytes } => {
            let consumer = Consumer::with_config(&client, ConsumerConfig { max_bytes, max_wait: Duration::ZERO });
            let parts = client.topic_metadata(&cli.topic).await?.partitions.len() as u32;
            let start = Instant::now();
            let (mut msgs, mut bytes) = (0u64, 0u64);
            for p in 0..parts {
                let end = consumer.offset_for(&cli.topic, p, StartOffset::Latest).await?;
                let mut offset = consumer.offset_for(&cli.topic, p, StartOffset::Earliest).await?;
                while offset < end {
                    let r = consumer.fetch_from(&cli.topic, p, offset).await?;
                    msgs += r.messages.len() as u64;
                    bytes += r.messages.iter().map(|m| m.value.len() as u64).sum::<u64>();
                    offset = r.next_offset;
                }
            }
            report("consume", msgs, bytes, start.elapsed().as_secs_f64(), None);
        }
    }
    println!("load after: {}", load());
    Ok(())
}

fn check_brokers(s: &str) -> Result<String, String> {
    parse_brokers(s).map(|_| s.to_owned())
}
