//! A consumer group member: joins group "workers" on topic "my-topic",
//! prints what it processes and commits it, until interrupted or idle for
//! five seconds. Run it in several terminals to watch partitions move:
//! `cargo run -p weir-client --example group`. `WEIR_BROKER` overrides the
//! broker address.

use std::time::Duration;
use weir_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = std::env::var("WEIR_BROKER").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let client = Client::connect(ClientConfig { brokers: vec![broker], timeout: Duration::from_secs(5), ..Default::default() }).await?;
    let config = GroupConsumerConfig {
        group_id: "workers".into(),
        consumer_id: "example".into(),
        topics: vec!["my-topic".into()],
        auto_commit: true, // what one poll returned is committed at the next
        ..Default::default()
    };
    let mut member = GroupConsumer::new(&client, config);
    let assigned = member.join_group().await?;
    println!("joined as {:?} in generation {}: {assigned:?}", member.member_id(), member.generation());
    let mut idle = Duration::ZERO;
    while idle < Duration::from_secs(5) {
        let messages = member.poll().await?;
        if messages.is_empty() {
            idle += Duration::from_millis(500);
            continue;
        }
        idle = Duration::ZERO;
        for m in messages {
            println!("{}/{}: {}", m.partition, m.offset, String::from_utf8_lossy(&m.value));
        }
    }
    member.leave_group().await?;
    println!("left the group; committed offsets are kept by the broker");
    Ok(())
}
