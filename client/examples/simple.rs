//! The seed's basic example in Weir: create a topic, send one message,
//! send a batch, fetch them back. Run a broker (`cargo run --release -p
//! weir-node --bin weir`), then `cargo run -p weir-client --example simple`.
//! `WEIR_BROKER` overrides the broker address.

use std::time::Duration;
use weir_client::{Admin, Client, ClientConfig, Consumer, CreateTopicRequest, ErrorCode, ProduceMessage, Producer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = std::env::var("WEIR_BROKER").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let client = Client::connect(ClientConfig { brokers: vec![broker], timeout: Duration::from_secs(5), ..Default::default() }).await?;

    let admin = Admin::new(&client);
    match admin.create_topic(CreateTopicRequest { name: "my-topic".into(), partitions: 3, replicas: 1, config: Default::default() }).await {
        Ok(created) => println!("topic created: {}", created.name),
        Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => println!("topic exists: my-topic"),
        Err(e) => return Err(e.into()),
    }

    let producer = Producer::new(&client);
    let sent = producer.send(ProduceMessage::new("my-topic", "Hello, Weir!").with_partition(0)).await?;
    println!("message sent, offset: {}", sent.offset);

    let batch = (1..=3).map(|i| ProduceMessage::new("my-topic", format!("message {i}")).with_partition(0)).collect();
    let results = producer.send_batch(batch).await?;
    println!("batch sent, first offset: {}", results[0].offset);

    let consumer = Consumer::new(&client);
    let fetched = consumer.fetch_from("my-topic", 0, sent.offset).await?;
    for msg in &fetched.messages {
        println!("received: {} (offset {})", String::from_utf8_lossy(&msg.value), msg.offset);
    }
    Ok(())
}
