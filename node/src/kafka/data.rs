//! Kafka's data path: Produce, Fetch, ListOffsets and InitProducerId, on
//! the partitions, producer ids and offsets native clients use.
//!
//! A produced Kafka batch is stored as it came, inside the batch envelope
//! (`weir_core::batch`, form 2): the partition validates it as any batch
//! (CRC32C, framing, sequences) and the log stamps its offset. A fetch
//! sends the stored Kafka bytes; only data written before form 2 is
//! re-encoded, and control batches (Raft's) are left out.

use crate::broker::Broker;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use weir_core::batch::{self, BatchError, RecordBatch};
use weir_net::kafka::code;
use weir_net::kafka::request::{FetchTopic, OffsetsTopic, ProduceTopic};
use weir_net::kafka::response::{FetchPartitionResult, FetchTopicResult, OffsetResult, ProducePartitionResult, ProduceTopicResult};
use weir_net::message::{Acks, FetchRequest, ListOffsetsRequest, OffsetSpec, ProduceRequest};
use weir_net::{ErrorCode, Request, Response, WireError};

/// The Kafka error code for a native error on the data path.
fn data_code(e: &WireError) -> i16 {
    match e.code() {
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode::OffsetOutOfRange => code::OFFSET_OUT_OF_RANGE,
        ErrorCode::MessageTooLarge => code::MESSAGE_TOO_LARGE,
        ErrorCode::NotLeader | ErrorCode::NodeRemoved | ErrorCode::ShuttingDown => code::NOT_LEADER_OR_FOLLOWER,
        ErrorCode::LeaderNotAvailable => code::LEADER_NOT_AVAILABLE,
        ErrorCode::Timeout | ErrorCode::Busy => code::REQUEST_TIMED_OUT,
        ErrorCode::CorruptBatch => code::CORRUPT_MESSAGE,
        ErrorCode::OutOfOrderSequence | ErrorCode::ProducerIdCollision => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode::InvalidProducerEpoch => code::INVALID_PRODUCER_EPOCH,
        ErrorCode::InvalidTimestamp => code::INVALID_TIMESTAMP,
        ErrorCode::NotEnoughReplicas => code::NOT_ENOUGH_REPLICAS,
        ErrorCode::StorageError | ErrorCode::StorageFull | ErrorCode::CorruptData | ErrorCode::PartitionOffline => {
            code::KAFKA_STORAGE_ERROR
        }
        ErrorCode::InvalidRequest => code::INVALID_REQUEST,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

/// The Kafka error code for a produced batch that is not one.
fn batch_code(e: &BatchError) -> i16 {
    match e {
        BatchError::CrcMismatch { .. } => code::CORRUPT_MESSAGE,
        BatchError::UnsupportedCodec(_) => code::UNSUPPORTED_COMPRESSION_TYPE,
        BatchError::Decompress { .. } => code::CORRUPT_MESSAGE,
        BatchError::DecompressedTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        BatchError::BadMagic(_) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        _ => code::INVALID_RECORD,
    }
}

/// A partition index from the wire, or `None` for a negative one.
fn index(i: i32) -> Option<u32> {
    u32::try_from(i).ok()
}

/// Answers a Produce: every partition of every topic at once, each its own
/// batch, answered with its base offset or its error.
pub(super) async fn produce(
    broker: &Arc<Broker>,
    transactional_id: Option<String>,
    acks: i16,
    timeout_ms: i32,
    topics: Vec<ProduceTopic>,
) -> Vec<ProduceTopicResult> {
    let acks = match acks {
        0 => Ok(Acks::None),
        1 => Ok(Acks::Leader),
        -1 => Ok(Acks::All),
        n => Err((code::INVALID_REQUIRED_ACKS, format!("acks={n}: use 0, 1 or -1 (all)"))),
    };
    let refusal = match (&transactional_id, &acks) {
        (Some(t), _) => Some((
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            format!("transactions are not supported by Weir (transactional id {t:?}): produce without a transactional.id"),
        )),
        (None, Err(e)) => Some(e.clone()),
        (None, Ok(_)) => None,
    };
    let acks = acks.unwrap_or_default();
    let timeout_ms = u32::try_from(timeout_ms).unwrap_or(0);
    let mut results = Vec::with_capacity(topics.len());
    for t in topics {
        let answers = t.partitions.into_iter().map(|(i, records)| {
            let (topic, refusal) = (t.name.clone(), refusal.clone());
            async move {
                match refusal {
                    Some((error, message)) => failed(i, error, message),
                    None => produce_one(broker, topic, i, records, acks, timeout_ms).await,
                }
            }
        });
        let partitions = futures::future::join_all(answers).await;
        results.push(ProduceTopicResult { name: t.name, partitions });
    }
    results
}

fn failed(index: i32, error: i16, message: String) -> ProducePartitionResult {
    ProducePartitionResult { index, error, base_offset: -1, log_start_offset: -1, message: Some(message) }
}

async fn produce_one(
    broker: &Arc<Broker>,
    topic: String,
    i: i32,
    records: Option<Bytes>,
    acks: Acks,
    timeout_ms: u32,
) -> ProducePartitionResult {
    let Some(partition) = index(i) else {
        return failed(i, code::UNKNOWN_TOPIC_OR_PARTITION, format!("partition {i} does not exist"));
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return failed(i, code::INVALID_RECORD, "a partition's records are missing: send one record batch".to_owned());
    };
    // Classify a bad batch here, in Kafka's terms (the partition checks it again).
    let batch = match batch::wrap_kafka(&records).and_then(|b| RecordBatch::decode(&b, usize::MAX).map(|_| b)) {
        Ok(b) => b,
        Err(e) => return failed(i, batch_code(&e), format!("the record batch is not valid: {e}")),
    };
    let request = Request::Produce(ProduceRequest { topic: topic.clone(), partition, acks, timeout_ms, batch });
    match broker.handle(request).await {
        Ok(Response::Produce(p)) => {
            let log_start = match broker.partition_offsets(&topic, partition).await {
                Ok((start, _)) => start as i64,
                Err(_) => -1,
            };
            ProducePartitionResult {
                index: i,
                error: code::NONE,
                base_offset: p.base_offset as i64,
                log_start_offset: log_start,
                message: None,
            }
        }
        Ok(other) => failed(i, code::UNKNOWN_SERVER_ERROR, format!("a produce was answered with {other:?}")),
        Err(e) => failed(i, data_code(&e), e.message),
    }
}

/// Limits a Fetch is answered under.
pub(super) struct FetchLimits {
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
}

/// Answers a Fetch: every partition asked for, data or not, whole batches
/// from the one holding the offset, within the total and per-partition
/// limits (but at least one batch); if there is less than `min_bytes`, it
/// waits up to `max_wait` for any of them to grow.
pub(super) async fn fetch(broker: &Arc<Broker>, topics: &[FetchTopic], limits: FetchLimits) -> Vec<FetchTopicResult> {
    let first = read_all(broker, topics, limits.max_bytes).await;
    let bytes: usize = first.iter().flat_map(|t| &t.partitions).map(|p| p.records.len()).sum();
    if bytes >= limits.min_bytes.max(1) || limits.max_wait.is_zero() {
        return first;
    }
    // Long poll: the first partition to receive anything ends the wait.
    let waits = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .filter_map(|(t, p)| Some((t.name.clone(), index(p.index)?, u64::try_from(p.offset).ok()?)))
        .map(|(topic, partition, offset)| {
            let wait_ms = u32::try_from(limits.max_wait.as_millis()).unwrap_or(u32::MAX);
            let request = Request::Fetch(FetchRequest { topic, partition, offset, max_bytes: 1, max_wait_ms: wait_ms, min_bytes: 1 });
            async move {
                match broker.handle(request).await {
                    Ok(Response::Fetch(f)) if !f.batches.is_empty() => Some(()),
                    _ => None,
                }
            }
        });
    let mut waits: futures::stream::FuturesUnordered<_> = waits.collect();
    let woke = tokio::time::timeout(limits.max_wait, async {
        while let Some(got) = waits.next().await {
            if got.is_some() {
                return true;
            }
        }
        false
    })
    .await;
    match woke {
        Ok(true) => read_all(broker, topics, limits.max_bytes).await,
        _ => first,
    }
}

/// One pass over every partition asked for, in order, without waiting.
async fn read_all(broker: &Arc<Broker>, topics: &[FetchTopic], max_bytes: usize) -> Vec<FetchTopicResult> {
    let mut left = max_bytes;
    let mut results = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            // KIP-74: the first non-empty partition gets at least one batch
            // however large; after the total is used up, the rest get none.
            let cap = usize::try_from(p.max_bytes).unwrap_or(0).min(left);
            let r = read_one(broker, &t.name, p.index, p.offset, cap, left == max_bytes).await;
            left = left.saturating_sub(r.records.len());
            partitions.push(r);
        }
        results.push(FetchTopicResult { name: t.name.clone(), partitions });
    }
    results
}

async fn read_one(broker: &Arc<Broker>, topic: &str, i: i32, offset: i64, cap: usize, first: bool) -> FetchPartitionResult {
    let fail = |error: i16| FetchPartitionResult { index: i, error, high_watermark: -1, log_start_offset: -1, records: Bytes::new() };
    let Some(partition) = index(i) else { return fail(code::UNKNOWN_TOPIC_OR_PARTITION) };
    let Ok(offset) = u64::try_from(offset) else { return fail(code::OFFSET_OUT_OF_RANGE) };
    // Nothing left of the total: the partition's offsets, no records.
    let max_bytes = if cap == 0 && !first { 1 } else { cap.max(1) };
    let request = Request::Fetch(FetchRequest {
        topic: topic.to_owned(),
        partition,
        offset,
        max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
        max_wait_ms: 0,
        min_bytes: 0,
    });
    match broker.handle(request).await {
        Ok(Response::Fetch(f)) => {
            let records = if cap == 0 && !first { Ok(Bytes::new()) } else { kafka_batches(f.batches) };
            match records {
                Ok(records) => FetchPartitionResult {
                    index: i,
                    error: code::NONE,
                    high_watermark: f.high_watermark as i64,
                    log_start_offset: f.log_start_offset as i64,
                    records,
                },
                Err(e) => {
                    tracing::error!(topic, partition, offset, error = %e, "a stored batch failed its checks on a Kafka fetch");
                    fail(code::KAFKA_STORAGE_ERROR)
                }
            }
        }
        Ok(_) => fail(code::UNKNOWN_SERVER_ERROR),
        Err(e) => fail(data_code(&e)),
    }
}

/// Stored batches as Kafka clients read them: each batch checked, its
/// Kafka bytes as stored (form 1 data re-encoded), control batches left out.
fn kafka_batches(stored: Bytes) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::with_capacity(stored.len());
    for b in batch::decode_all(stored, usize::MAX) {
        if let Some(k) = b?.kafka_bytes()? {
            out.extend_from_slice(&k);
        }
    }
    Ok(out.freeze())
}

/// Answers a ListOffsets: -2 the log start, -1 the high watermark, -3 the
/// record with the largest timestamp, a timestamp the first record at or
/// after it (none: -1).
pub(super) async fn list_offsets(broker: &Arc<Broker>, topics: Vec<OffsetsTopic>) -> Vec<(String, Vec<OffsetResult>)> {
    let mut results = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (i, timestamp) in t.partitions {
            partitions.push(list_one(broker, &t.name, i, timestamp).await);
        }
        results.push((t.name, partitions));
    }
    results
}

/// Kafka's ListOffsets timestamps with a meaning of their own.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

async fn list_one(broker: &Arc<Broker>, topic: &str, i: i32, timestamp: i64) -> OffsetResult {
    let fail = |error: i16| OffsetResult { index: i, error, timestamp: -1, offset: -1 };
    let Some(partition) = index(i) else { return fail(code::UNKNOWN_TOPIC_OR_PARTITION) };
    let spec = match timestamp {
        LATEST => OffsetSpec::Latest,
        EARLIEST => OffsetSpec::Earliest,
        MAX_TIMESTAMP => return max_timestamp(broker, topic, i, partition).await,
        ts if ts >= 0 => OffsetSpec::Timestamp(ts),
        _ => return fail(code::INVALID_REQUEST),
    };
    let request = Request::ListOffsets(ListOffsetsRequest { topic: topic.to_owned(), partition, spec });
    let offset = match broker.handle(request).await {
        Ok(Response::ListOffsets(r)) => r.offset,
        Ok(_) => return fail(code::UNKNOWN_SERVER_ERROR),
        Err(e) => return fail(data_code(&e)),
    };
    if !matches!(spec, OffsetSpec::Timestamp(_)) {
        return OffsetResult { index: i, error: code::NONE, timestamp: -1, offset: offset as i64 };
    }
    // The record found, with its own timestamp; none at or after: -1.
    match record_at(broker, topic, partition, offset).await {
        Some((offset, ts)) => OffsetResult { index: i, error: code::NONE, timestamp: ts, offset: offset as i64 },
        None => OffsetResult { index: i, error: code::NONE, timestamp: -1, offset: -1 },
    }
}

/// The first record at or after `offset` below the high watermark: its
/// offset and timestamp.
async fn record_at(broker: &Arc<Broker>, topic: &str, partition: u32, offset: u64) -> Option<(u64, i64)> {
    let request = Request::Fetch(FetchRequest { topic: topic.to_owned(), partition, offset, max_bytes: 1, max_wait_ms: 0, min_bytes: 0 });
    let Ok(Response::Fetch(f)) = broker.handle(request).await else { return None };
    for b in batch::decode_all(f.batches, usize::MAX) {
        let b = b.ok()?;
        let h = *b.header();
        for (n, r) in b.records().enumerate() {
            let at = h.base_offset + n as u64;
            if at >= offset && at < f.high_watermark {
                return Some((at, r.ok()?.timestamp(h.first_timestamp)));
            }
        }
    }
    None
}

/// ListOffsets -3: the record with the largest timestamp (the latest such),
/// found from the time index's last entry forward.
async fn max_timestamp(broker: &Arc<Broker>, topic: &str, i: i32, partition: u32) -> OffsetResult {
    let fail = |error: i16| OffsetResult { index: i, error, timestamp: -1, offset: -1 };
    match broker.partition_max_timestamp(topic, partition).await {
        Ok(Some((offset, ts))) => OffsetResult { index: i, error: code::NONE, timestamp: ts, offset: offset as i64 },
        Ok(None) => fail(code::NONE),
        Err(e) => fail(data_code(&e)),
    }
}

/// Answers an InitProducerId: a fresh producer id at epoch 0, as native
/// producers get; a transactional id is refused (no transactions).
pub(super) async fn init_producer_id(broker: &Arc<Broker>, transactional_id: Option<String>) -> (i16, i64, i16) {
    if let Some(t) = transactional_id {
        tracing::warn!(transactional_id = %t, "a Kafka client asked for a transactional producer: transactions are not supported");
        return (code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1);
    }
    match broker.handle(Request::InitProducerId(Default::default())).await {
        Ok(Response::InitProducerId(r)) => (code::NONE, r.producer_id, r.producer_epoch),
        Ok(_) => (code::UNKNOWN_SERVER_ERROR, -1, -1),
        Err(e) => (data_code(&e), -1, -1),
    }
}
