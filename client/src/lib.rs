//! weir-client: the async client SDK for Weir and the `weirctl` and
//! `weir-bench` tools.
//!
//! ```no_run
//! # async fn demo() -> weir_client::Result<()> {
//! use weir_client::*;
//! let client = Client::connect(ClientConfig::default()).await?;
//! Admin::new(&client).create_topic(CreateTopicRequest { name: "orders".into(), partitions: 3, replicas: 1, config: Default::default() }).await?;
//! let producer = Producer::new(&client);
//! let sent = producer.send(ProduceMessage::new("orders", "hello").with_partition(0)).await?;
//! let fetched = Consumer::new(&client).fetch_from("orders", 0, sent.offset).await?;
//! assert_eq!(fetched.messages[0].value, "hello");
//! # Ok(()) }
//! ```
//!
//! Producers are idempotent by default: retries after timeouts or lost
//! connections never store a message twice.

mod admin;
mod client;
mod connection;
mod consumer;
mod error;
mod group;
mod producer;

pub use admin::Admin;
pub use client::{Client, ClientConfig, parse_brokers};
pub use consumer::{Consumer, ConsumerConfig, FetchResult, Message, MessageStream, StartOffset, decode_messages};
pub use error::{ClientError, Result};
pub use group::{GroupConsumer, GroupConsumerConfig, OffsetReset};
pub use producer::{ProduceMessage, ProduceResult, Producer, ProducerConfig, partition_for_key};
pub use weir_net::ErrorCode;
pub use weir_net::message::{
    Acks, ClusterNode, ClusterStatusResponse, CreateTopicRequest, DescribeGroupResponse, DescribeReplicasResponse, DescribeTopicResponse,
    GroupSummary, PartitionDescription, ReplicaInfo, TopicConfig, TopicSummary,
};
