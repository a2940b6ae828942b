//! The producer: `send` and `send_batch`, idempotent by default.
//!
//! Each partition has a sender task that gathers queued messages into one
//! record batch (up to `batch_bytes`, waiting up to `linger` for more),
//! numbers it with the producer's sequence for that partition, and keeps up
//! to `max_in_flight` batches in flight. Responses are handled in order. On a
//! failure, the rest of the window is drained and the failed batches are
//! resent one at a time in sequence order: a retry of a batch the broker
//! already stored is answered with its original offset, so retries never
//! duplicate. A batch refused for good fails only its own messages; later
//! batches are renumbered to close the gap.
//!
//! Order: the sends of one producer reach their partition queues in the
//! order they first run (a FIFO gate held across the partition lookup), so
//! a cold metadata cache can never let a later send overtake an earlier one
//! (Kafka's `RecordAccumulator` places a record synchronously in `send()`
//! for the same reason). Within a partition the queue, the in-flight window
//! and the retry path all keep that order.

use crate::client::{Client, expect_response};
use crate::error::{ClientError, Result};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weir_core::batch::{BatchBuilder, ProducerStamp};
use weir_net::message::{Acks, InitProducerIdRequest, ProduceRequest, ProduceResponse};
use weir_net::{ErrorCode, Request};

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceMessage {
    pub topic: String,
    /// `None`: chosen by the key's hash, or round-robin without a key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProduceMessage {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProduceMessage { topic: topic.into(), value: value.into(), ..Default::default() }
    }

    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

/// Longest pause between two attempts of a failed batch.
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// Where an acknowledged message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResult {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// How long a partially filled batch waits for more messages.
    pub linger: Duration,
    /// Target size of one batch.
    pub batch_bytes: usize,
    /// Batches in flight per partition.
    pub max_in_flight: usize,
    /// Deduplicate retries on the broker (Kafka's idempotent producer).
    pub idempotent: bool,
    /// Timeout of one produce request (the broker waits at most this for durability).
    pub request_timeout: Duration,
    /// A message not acknowledged within this fails with `Timeout`.
    pub delivery_timeout: Duration,
    /// Messages queued per partition before `send` waits.
    pub queue_messages: usize,
    /// A deliberate bug for the simulator's canary tests; honoured only in
    /// simulation builds (see `weir_core::canary`).
    #[doc(hidden)]
    pub canary: Option<weir_core::canary::Canary>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::ZERO,
            batch_bytes: 1 << 20,
            max_in_flight: 5,
            idempotent: true,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            queue_messages: 100_000,
            canary: None,
        }
    }
}

struct Pending {
    key: Option<Bytes>,
    value: Bytes,
    headers: Vec<(String, Bytes)>,
    timestamp: i64,
    reply: oneshot::Sender<Result<u64>>,
    queued: Instant,
}

/// Sends messages; see the module doc. Clone to share.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    senders: Mutex<BTreeMap<(String, u32), mpsc::Sender<Pending>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    identity: Arc<tokio::sync::Mutex<Option<(i64, i16)>>>,
    round_robin: AtomicU32,
    /// The ordering gate: tokio's mutex queues waiters first come, first served.
    order: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("config", &self.inner.config).finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The partition a key maps to: CRC32 of the key bytes modulo the count.
/// Stable across releases: changing it would move keys between partitions.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    crc32fast::hash(key) % partitions.max(1)
}

impl Producer {
    pub fn new(client: &Client) -> Producer {
        Self::with_config(client, ProducerConfig::default())
    }

    pub fn with_config(client: &Client, config: ProducerConfig) -> Producer {
        Producer {
            inner: Arc::new(Inner {
                client: client.clone(),
                config,
                senders: Mutex::default(),
                tasks: Mutex::default(),
                identity: Arc::default(),
                round_robin: AtomicU32::new(0),
                order: tokio::sync::Mutex::new(()),
            }),
        }
    }

    async fn partition_of(&self, msg: &ProduceMessage) -> Result<u32> {
        if let Some(p) = msg.partition {
            return Ok(p);
        }
        let meta = self.inner.client.topic_metadata(&msg.topic).await?;
        let n = meta.partitions.len() as u32;
        if n == 0 {
            return Err(ClientError::Protocol(format!("topic {:?} has no partitions", msg.topic)));
        }
        Ok(match &msg.key {
            Some(k) => partition_for_key(k, n),
            None => self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        })
    }

    fn sender(&self, topic: &str, partition: u32) -> mpsc::Sender<Pending> {
        let mut senders = self.inner.senders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = senders.get(&(topic.to_owned(), partition)) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(self.inner.config.queue_messages.max(1));
        let task = PartitionSender {
            client: self.inner.client.clone(),
            config: self.inner.config.clone(),
            topic: topic.to_owned(),
            partition,
            rx,
            identity: self.inner.identity.clone(),
            stamp: None,
            needs_fresh_identity: false,
            next_seq: 0,
        };
        let handle = tokio::spawn(task.run());
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
        senders.insert((topic.to_owned(), partition), tx.clone());
        tx
    }

    /// Takes the ordering gate: held until a send's messages are in their
    /// partitions' queues, so a send that waits for metadata keeps every
    /// later send behind it.
    async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if weir_core::canary::on(self.inner.config.canary, weir_core::canary::Canary::UnorderedSends) {
            // The canary: no gate (and `enqueue` delays its lookup).
            return None;
        }
        Some(self.inner.order.lock().await)
    }

    /// Places one message in its partition's queue; the caller holds the gate.
    async fn enqueue(&self, msg: ProduceMessage) -> Result<(u32, oneshot::Receiver<Result<u64>>)> {
        if weir_core::canary::on(self.inner.config.canary, weir_core::canary::Canary::UnorderedSends) {
            // A lookup that takes a random while, as a cold cache's does, so
            // later sends overtake earlier ones (drawn from the value, so a
            // seed still replays).
            tokio::time::sleep(Duration::from_micros(u64::from(crc32fast::hash(&msg.value)) % 20_000)).await;
        }
        let partition = self.partition_of(&msg).await?;
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            key: msg.key,
            value: msg.value,
            headers: msg.headers,
            timestamp: msg.timestamp.unwrap_or_else(now_ms),
            reply,
            queued: Instant::now(),
        };
        self.sender(&msg.topic, partition).send(pending).await.map_err(|_| ClientError::Closed)?;
        Ok((partition, rx))
    }

    /// Sends one message and waits for its acknowledgement.
    pub async fn send(&self, msg: ProduceMessage) -> Result<ProduceResult> {
        let topic = msg.topic.clone();
        let turn = self.turn().await;
        let (partition, rx) = self.enqueue(msg).await?;
        drop(turn);
        let offset = rx.await.map_err(|_| ClientError::Closed)??;
        Ok(ProduceResult { topic, partition, offset })
    }

    /// Sends many messages (batched per partition) and waits for all; results
    /// are in the order given. The first failure is returned.
    pub async fn send_batch(&self, msgs: Vec<ProduceMessage>) -> Result<Vec<ProduceResult>> {
        let mut waiting = Vec::with_capacity(msgs.len());
        // One turn for the whole batch: its messages stay together, in order.
        let turn = self.turn().await;
        for msg in msgs {
            let topic = msg.topic.clone();
            let (partition, rx) = self.enqueue(msg).await?;
            waiting.push((topic, partition, rx));
        }
        drop(turn);
        let mut out = Vec::with_capacity(waiting.len());
        for (topic, partition, rx) in waiting {
            let offset = rx.await.map_err(|_| ClientError::Closed)??;
            out.push(ProduceResult { topic, partition, offset });
        }
        Ok(out)
    }

    /// Waits for every queued message to be acknowledged or failed, then
    /// stops the sender tasks.
    pub async fn close(self) {
        self.inner.senders.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// A batch on its way: the messages (to answer, or to rebuild the batch
/// with a new sequence) and the encoded bytes (resent unchanged on retry).
struct Batch {
    records: Vec<Pending>,
    base_seq: i32,
    bytes: Bytes,
}

struct PartitionSender {
    client: Client,
    config: ProducerConfig,
    topic: String,
    partition: u32,
    rx: mpsc::Receiver<Pending>,
    identity: Arc<tokio::sync::Mutex<Option<(i64, i16)>>>,
    /// This partition's producer id and epoch (`None` until first use).
    stamp: Option<(i64, i16)>,
    /// The shared id may not be used here any more: get a fresh one.
    needs_fresh_identity: bool,
    next_seq: i32,
}

type Reply = BoxFuture<'static, Result<ProduceResponse>>;

fn seq_add(seq: i32, n: usize) -> i32 {
    ((i64::from(seq) + n as i64) % (i64::from(i32::MAX) + 1)) as i32
}

impl PartitionSender {
    async fn run(mut self) {
        let mut window: VecDeque<Batch> = VecDeque::new();
        let mut replies: FuturesOrdered<Reply> = FuturesOrdered::new();
        let mut closed = false;
        loop {
            if closed && window.is_empty() {
                return;
            }
            tokio::select! {
                biased;
                Some(result) = replies.next(), if !replies.is_empty() => {
                    let batch = window.pop_front().expect("one batch per reply");
                    match result {
                        Ok(resp) => complete(batch, resp.base_offset),
                        Err(e) => {
                            let mut failed = vec![(batch, e)];
                            while let Some(r) = replies.next().await {
                                let b = window.pop_front().expect("one batch per reply");
                                match r {
                                    Ok(resp) => complete(b, resp.base_offset),
                                    Err(e) => failed.push((b, e)),
                                }
                            }
                            self.recover(failed).await;
                        }
                    }
                }
                first = self.rx.recv(), if !closed && window.len() < self.config.max_in_flight => {
                    let Some(first) = first else {
                        closed = true;
                        continue;
                    };
                    let records = self.gather(first).await;
                    match self.build(records).await {
                        Ok(batch) => {
                            replies.push_back(self.dispatch(&batch));
                            window.push_back(batch);
                        }
                        Err((records, e)) => fail(records, &e),
                    }
                }
            }
        }
    }

    /// Collects queued messages after `first` up to the batch size, waiting
    /// up to `linger` for more if the batch is not full.
    async fn gather(&mut self, first: Pending) -> Vec<Pending> {
        let mut bytes = BatchBuilder::record_len(first.key.as_deref(), Some(&first.value), &[]);
        let mut records = vec![first];
        let deadline = Instant::now() + self.config.linger;
        while bytes < self.config.batch_bytes {
            let next = match self.rx.try_recv() {
                Ok(p) => p,
                Err(_) if self.config.linger.is_zero() => break,
                Err(_) => match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.rx.recv()).await {
                    Ok(Some(p)) => p,
                    _ => break,
                },
            };
            bytes += BatchBuilder::record_len(next.key.as_deref(), Some(&next.value), &[])
                + next.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
            records.push(next);
        }
        records
    }

    async fn stamp(&mut self) -> Result<ProducerStamp> {
        if !self.config.idempotent {
            return Ok(ProducerStamp::NONE);
        }
        if self.stamp.is_none() && self.needs_fresh_identity {
            let r = self.client.request(&Request::InitProducerId(InitProducerIdRequest {})).await?;
            let r = expect_response!(r, InitProducerId)?;
            self.stamp = Some((r.producer_id, r.producer_epoch));
            self.needs_fresh_identity = false;
            self.next_seq = 0;
        }
        if self.stamp.is_none() {
            let mut shared = self.identity.lock().await;
            if shared.is_none() {
                let r = self.client.request(&Request::InitProducerId(InitProducerIdRequest {})).await?;
                let r = expect_response!(r, InitProducerId)?;
                *shared = Some((r.producer_id, r.producer_epoch));
            }
            self.stamp = *shared;
        }
        let (producer_id, producer_epoch) = self.stamp.expect("set above");
        Ok(ProducerStamp { producer_id, producer_epoch, base_sequence: self.next_seq })
    }

    /// A fresh producer id for this partition, sequences from 0: after the
    /// broker lost our sequence state, or after giving up on a batch whose
    /// outcome is unknown (its sequence may be stored, so it can never be
    /// reused for other data: the broker would answer new data as a
    /// duplicate of the old).
    async fn reset_identity(&mut self, why: &str) -> Result<()> {
        // Until a new id is in hand, nothing may be sent under the old one.
        self.stamp = None;
        self.needs_fresh_identity = true;
        self.next_seq = 0;
        let stamp = self.stamp().await?;
        tracing::warn!(topic = %self.topic, partition = self.partition, producer_id = stamp.producer_id, why, "continuing with a new producer id");
        Ok(())
    }

    fn encode(records: &[Pending], stamp: ProducerStamp) -> Bytes {
        let size: usize = records.iter().map(|r| r.value.len() + r.key.as_ref().map_or(0, |k| k.len()) + 16).sum();
        let mut b = BatchBuilder::with_capacity(stamp, size);
        for r in records {
            let headers: Vec<(&str, Option<&[u8]>)> = r.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_ref()))).collect();
            b.push(r.timestamp, r.key.as_deref(), Some(&r.value), &headers);
        }
        b.finish()
    }

    async fn build(&mut self, records: Vec<Pending>) -> Result<Batch, (Vec<Pending>, ClientError)> {
        let stamp = match self.stamp().await {
            Ok(s) => s,
            Err(e) => return Err((records, e)),
        };
        let bytes = Self::encode(&records, stamp);
        let base_seq = stamp.base_sequence;
        if self.config.idempotent {
            self.next_seq = seq_add(self.next_seq, records.len());
        }
        Ok(Batch { records, base_seq, bytes })
    }

    /// Re-encodes a batch with a new base sequence.
    fn renumber(&self, batch: &mut Batch, base_seq: i32) {
        if let Some((producer_id, producer_epoch)) = self.stamp.filter(|_| self.config.idempotent) {
            batch.base_seq = base_seq;
            batch.bytes = Self::encode(&batch.records, ProducerStamp { producer_id, producer_epoch, base_sequence: base_seq });
        }
    }

    fn dispatch(&self, batch: &Batch) -> Reply {
        let client = self.client.clone();
        let req = Request::Produce(ProduceRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            acks: self.config.acks,
            timeout_ms: self.config.request_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
            batch: batch.bytes.clone(),
        });
        Box::pin(async move {
            let r = client.request_once(&req).await?;
            expect_response!(r, Produce)
        })
    }

    /// Resends failed batches one at a time, in sequence order, until each
    /// is stored, refused for good, or out of time. `failed` is in sequence
    /// order and nothing else is in flight.
    async fn recover(&mut self, failed: Vec<(Batch, ClientError)>) {
        // The sequence the next batch must carry: where the first failed
        // batch started. A refused batch was not stored, so the batches after
        // it move down to close the gap.
        let mut seq = failed.first().map_or(self.next_seq, |(b, _)| b.base_seq);
        let mut backoff = self.client.config().retry_backoff;
        let mut reset_done = false;
        let mut unknown_outcome = false;
        let mut fail_all: Option<ClientError> = None;
        for (mut batch, first_error) in failed {
            if let Some(e) = &fail_all {
                fail(batch.records, e);
                continue;
            }
            let out_of_order = first_error.code() == Some(ErrorCode::OutOfOrderSequence);
            if !(first_error.is_retriable() || out_of_order) {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %first_error, "batch refused");
                fail(batch.records, &first_error);
                continue;
            }
            if batch.base_seq != seq {
                self.renumber(&mut batch, seq);
            }
            let mut last = first_error.to_string();
            loop {
                tokio::time::sleep(backoff).await;
                // Capped low: most retries wait out a leader election, and
                // the first attempt after it should not sleep a second more.
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                let oldest = batch.records.iter().map(|r| r.queued).min().unwrap_or_else(Instant::now);
                if oldest.elapsed() > self.config.delivery_timeout {
                    fail(batch.records, &ClientError::DeliveryTimeout { after: self.config.delivery_timeout, last });
                    unknown_outcome = true;
                    break;
                }
                match self.dispatch(&batch).await {
                    Ok(resp) => {
                        backoff = self.client.config().retry_backoff;
                        seq = seq_add(batch.base_seq, batch.records.len());
                        complete(batch, resp.base_offset);
                        break;
                    }
                    Err(e) if e.code() == Some(ErrorCode::OutOfOrderSequence) && self.config.idempotent && !reset_done => {
                        // The broker holds no state matching ours (it lost
                        // unacknowledged batches, or aged our state out):
                        // continue under a new producer id from sequence 0.
                        reset_done = true;
                        if let Err(e) = self.reset_identity("the broker holds no matching sequence state").await {
                            fail(batch.records, &e);
                            unknown_outcome = true;
                            break;
                        }
                        self.renumber(&mut batch, 0);
                    }
                    Err(e) if e.is_retriable() => {
                        tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "retrying batch");
                        last = e.to_string();
                    }
                    Err(e) => {
                        fail(batch.records, &e);
                        break;
                    }
                }
            }
            if unknown_outcome && self.config.idempotent {
                unknown_outcome = false;
                match self.reset_identity("gave up on a batch whose outcome is unknown").await {
                    Ok(()) => seq = 0,
                    Err(e) => {
                        // No safe identity: fail what is left rather than risk
                        // it being taken for a duplicate.
                        fail_all = Some(e);
                    }
                }
            }
        }
        if self.config.idempotent {
            self.next_seq = seq;
        }
    }
}

fn complete(batch: Batch, base_offset: u64) {
    for (i, r) in batch.records.into_iter().enumerate() {
        let _ = r.reply.send(Ok(base_offset + i as u64));
    }
}

fn fail(records: Vec<Pending>, e: &ClientError) {
    for r in records {
        let _ = r.reply.send(Err(e.clone()));
    }
}
