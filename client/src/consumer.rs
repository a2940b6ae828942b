//! The consumer: `fetch_from` for one read, `subscribe` for a stream that
//! long-polls the broker and yields messages in offset order.

use crate::client::{Client, expect_response};
use crate::error::{ClientError, Result};
use bytes::Bytes;
use futures::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use weir_core::batch::{self, RecordBatch};
use weir_net::Request;
use weir_net::message::{FetchRequest, ListOffsetsRequest, OffsetSpec};

/// One consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

/// What one fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub messages: Vec<Message>,
    /// Where the next fetch should start.
    pub next_offset: u64,
    /// Offsets below this are durable and readable.
    pub high_watermark: u64,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    Offset(u64),
    /// First message at or after this many ms since the epoch.
    Timestamp(i64),
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bytes asked for per fetch.
    pub max_bytes: u32,
    /// How long a subscription's fetch waits for new data.
    pub max_wait: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig { max_bytes: 1 << 20, max_wait: Duration::from_millis(500) }
    }
}

#[derive(Debug, Clone)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
}

/// A stream of messages from a subscription.
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<Message>> + Send>>;

impl Consumer {
    pub fn new(client: &Client) -> Consumer {
        Self::with_config(client, ConsumerConfig::default())
    }

    pub fn with_config(client: &Client, config: ConsumerConfig) -> Consumer {
        Consumer { client: client.clone(), config }
    }

    /// Reads what is available at `offset` without waiting.
    pub async fn fetch_from(&self, topic: &str, partition: u32, offset: u64) -> Result<FetchResult> {
        self.fetch(topic, partition, offset, Duration::ZERO).await
    }

    /// Reads at `offset`, waiting up to `max_wait` for data to arrive.
    pub async fn fetch(&self, topic: &str, partition: u32, offset: u64, max_wait: Duration) -> Result<FetchResult> {
        let req = Request::Fetch(FetchRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes: self.config.max_bytes,
            max_wait_ms: max_wait.as_millis().min(u128::from(u32::MAX)) as u32,
            min_bytes: 1,
        });
        let resp = expect_response!(self.client.request(&req).await?, Fetch)?;
        let topic: Arc<str> = Arc::from(topic);
        let messages = decode_messages(&topic, partition, offset, resp.batches)?;
        let next_offset = messages.last().map_or(resp.next_offset.max(offset), |m| m.offset + 1);
        Ok(FetchResult { messages, next_offset, high_watermark: resp.high_watermark })
    }

    /// Resolves a start position to an offset.
    pub async fn offset_for(&self, topic: &str, partition: u32, start: StartOffset) -> Result<u64> {
        let spec = match start {
            StartOffset::Offset(o) => return Ok(o),
            StartOffset::Earliest => OffsetSpec::Earliest,
            StartOffset::Latest => OffsetSpec::Latest,
            StartOffset::Timestamp(ts) => OffsetSpec::Timestamp(ts),
        };
        let req = Request::ListOffsets(ListOffsetsRequest { topic: topic.to_owned(), partition, spec });
        Ok(expect_response!(self.client.request(&req).await?, ListOffsets)?.offset)
    }

    /// Follows a partition from `start`, yielding messages as they become
    /// durable. The stream ends after a non-retriable error, which it yields.
    pub async fn subscribe(&self, topic: &str, partition: u32, start: StartOffset) -> Result<MessageStream> {
        let offset = self.offset_for(topic, partition, start).await?;
        let state = Sub { consumer: self.clone(), topic: topic.to_owned(), partition, offset, buffer: VecDeque::new(), done: false };
        Ok(Box::pin(futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            loop {
                if let Some(m) = s.buffer.pop_front() {
                    return Some((Ok(m), s));
                }
                match s.consumer.fetch(&s.topic, s.partition, s.offset, s.consumer.config.max_wait).await {
                    Ok(r) => {
                        s.offset = r.next_offset;
                        s.buffer.extend(r.messages);
                    }
                    Err(e) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                }
            }
        })))
    }
}

struct Sub {
    consumer: Consumer,
    topic: String,
    partition: u32,
    offset: u64,
    buffer: VecDeque<Message>,
    done: bool,
}

/// Turns fetched batches into messages at or after `from`.
pub fn decode_messages(topic: &Arc<str>, partition: u32, from: u64, batches: Bytes) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    for b in batch::decode_all(batches, usize::MAX) {
        let b: RecordBatch = b.map_err(|e| ClientError::Protocol(format!("fetched batch is invalid: {e}")))?;
        if b.header().is_control() {
            continue;
        }
        let first_ts = b.header().first_timestamp;
        for r in b.records() {
            let r = r.map_err(|e| ClientError::Protocol(format!("fetched record is invalid: {e}")))?;
            let offset = b.base_offset() + u64::from(r.offset_delta);
            if offset < from {
                continue;
            }
            out.push(Message {
                topic: topic.clone(),
                partition,
                offset,
                timestamp: r.timestamp(first_ts),
                key: r.key,
                value: r.value.unwrap_or_default(),
                headers: r.headers.into_iter().map(|h| (h.key, h.value.unwrap_or_default())).collect(),
            });
        }
    }
    Ok(out)
}
