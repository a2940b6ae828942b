//! Building a batch: the client side of the format (and the log's tests).

use super::{ControlBody, HEADER_LEN_KAFKA, HEADER_LEN_V1, KAFKA_AT, KAFKA_MAGIC, MAGIC_KAFKA, MAGIC_V1, at, attributes, kat, varint};
use bytes::{BufMut, Bytes, BytesMut};

/// Idempotence fields a producer stamps on its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerStamp {
    /// No idempotence: the broker will not deduplicate this batch.
    pub const NONE: ProducerStamp = ProducerStamp { producer_id: -1, producer_epoch: -1, base_sequence: -1 };
}

/// Accumulates records into one encoded batch. Offsets are left at zero for
/// the log to stamp; the CRC is computed by [`BatchBuilder::finish`]. Data
/// batches are built in form 2 (a Kafka RecordBatch v2 in the envelope);
/// control batches, and [`BatchBuilder::v1`], in form 1.
pub struct BatchBuilder {
    buf: BytesMut,
    producer: ProducerStamp,
    first_timestamp: Option<i64>,
    max_timestamp: i64,
    count: u32,
    attributes: u16,
    kafka: bool,
}

impl BatchBuilder {
    pub fn new(producer: ProducerStamp) -> Self {
        Self::with_capacity(producer, 256)
    }

    pub fn with_capacity(producer: ProducerStamp, bytes: usize) -> Self {
        Self::form(producer, bytes, true)
    }

    /// A builder of form 1 batches, Weir's first format: what data written
    /// before form 2 looks like (for tests and tools).
    pub fn v1(producer: ProducerStamp) -> Self {
        Self::form(producer, 256, false)
    }

    fn form(producer: ProducerStamp, bytes: usize, kafka: bool) -> Self {
        let header = if kafka { HEADER_LEN_KAFKA } else { HEADER_LEN_V1 };
        let mut buf = BytesMut::with_capacity(header + bytes);
        buf.put_bytes(0, header);
        Self { buf, producer, first_timestamp: None, max_timestamp: i64::MIN, count: 0, attributes: 0, kafka }
    }

    /// A blank control batch (a Raft blank entry): no data records.
    pub fn control(timestamp: i64) -> Bytes {
        Self::control_with(timestamp, &ControlBody::Blank)
    }

    /// A control batch carrying `body` (Raft blank or membership entry).
    pub fn control_with(timestamp: i64, body: &ControlBody) -> Bytes {
        let mut b = Self::v1(ProducerStamp::NONE);
        b.attributes |= attributes::CONTROL;
        b.first_timestamp = Some(timestamp);
        b.max_timestamp = timestamp;
        b.buf.put_slice(&body.encode());
        b.finish()
    }

    /// Marks the timestamps as the log's (Kafka's LogAppendTime), not the producer's.
    pub fn set_log_append_time(&mut self, on: bool) {
        match on {
            true => self.attributes |= attributes::LOG_APPEND_TIME,
            false => self.attributes &= !attributes::LOG_APPEND_TIME,
        }
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch occupies so far.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes a record would add at most (in either form), for callers that
    /// cap batch sizes.
    pub fn record_len(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> usize {
        let body = Self::body_len(true, 0, 0, key, value, headers);
        varint::len_i64(body as i64) + body
    }

    /// A count in this form: an unsigned varint (form 1) or zigzag (Kafka).
    fn count_len(kafka: bool, n: u64) -> usize {
        if kafka { varint::len_i64(n as i64) } else { varint::len_u64(n) }
    }

    fn put_count(&mut self, n: u64) {
        match self.kafka {
            true => varint::put_i64(&mut self.buf, n as i64),
            false => varint::put_u64(&mut self.buf, n),
        }
    }

    fn body_len(
        kafka: bool,
        ts_delta: i64,
        off_delta: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> usize {
        let nullable = |b: Option<&[u8]>| match b {
            None => varint::len_i64(-1),
            Some(b) => varint::len_i64(b.len() as i64) + b.len(),
        };
        let mut len = 1 + varint::len_i64(ts_delta) + Self::count_len(kafka, u64::from(off_delta)) + nullable(key) + nullable(value);
        len += Self::count_len(kafka, headers.len() as u64);
        for (k, v) in headers {
            len += Self::count_len(kafka, k.len() as u64) + k.len() + nullable(*v);
        }
        len
    }

    /// Appends a record with the given timestamp (ms since epoch).
    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) {
        let first = *self.first_timestamp.get_or_insert(timestamp);
        // Timestamps earlier than the first record are clamped so deltas stay
        // non-negative and the header's range stays truthful.
        let timestamp = timestamp.max(first);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let ts_delta = timestamp - first;
        let body = Self::body_len(self.kafka, ts_delta, self.count, key, value, headers);
        self.put_count(body as u64);
        self.buf.put_u8(0);
        varint::put_i64(&mut self.buf, ts_delta);
        self.put_count(u64::from(self.count));
        put_nullable(&mut self.buf, key);
        put_nullable(&mut self.buf, value);
        self.put_count(headers.len() as u64);
        for (k, v) in headers {
            self.put_count(k.len() as u64);
            self.buf.put_slice(k.as_bytes());
            put_nullable(&mut self.buf, *v);
        }
        self.count += 1;
    }

    /// Writes the header and CRC and returns the encoded batch.
    pub fn finish(mut self) -> Bytes {
        let first = self.first_timestamp.unwrap_or(0);
        let max = if self.count == 0 && self.max_timestamp == i64::MIN { first } else { self.max_timestamp };
        let total = self.buf.len();
        let last_delta = self.count.saturating_sub(1);
        let p = self.producer;
        let b = &mut self.buf[..];
        b[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&((total - super::LENGTH_PREFIX_LEN) as u32).to_le_bytes());
        if self.kafka {
            b[at::MAGIC] = MAGIC_KAFKA;
            b[kat::BATCH_LENGTH..kat::BATCH_LENGTH + 4]
                .copy_from_slice(&((total - KAFKA_AT - super::LENGTH_PREFIX_LEN) as u32).to_be_bytes());
            b[kat::LEADER_EPOCH..kat::LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
            b[kat::MAGIC] = KAFKA_MAGIC;
            b[kat::ATTRIBUTES..kat::ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_be_bytes());
            b[kat::LAST_OFFSET_DELTA..kat::LAST_OFFSET_DELTA + 4].copy_from_slice(&last_delta.to_be_bytes());
            b[kat::FIRST_TIMESTAMP..kat::FIRST_TIMESTAMP + 8].copy_from_slice(&first.to_be_bytes());
            b[kat::MAX_TIMESTAMP..kat::MAX_TIMESTAMP + 8].copy_from_slice(&max.to_be_bytes());
            b[kat::PRODUCER_ID..kat::PRODUCER_ID + 8].copy_from_slice(&p.producer_id.to_be_bytes());
            b[kat::PRODUCER_EPOCH..kat::PRODUCER_EPOCH + 2].copy_from_slice(&p.producer_epoch.to_be_bytes());
            b[kat::BASE_SEQUENCE..kat::BASE_SEQUENCE + 4].copy_from_slice(&p.base_sequence.to_be_bytes());
            b[kat::RECORD_COUNT..kat::RECORD_COUNT + 4].copy_from_slice(&self.count.to_be_bytes());
        } else {
            b[at::MAGIC] = MAGIC_V1;
            b[at::ATTRIBUTES..at::ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_le_bytes());
            b[at::LAST_OFFSET_DELTA..at::LAST_OFFSET_DELTA + 4].copy_from_slice(&last_delta.to_le_bytes());
            b[at::FIRST_TIMESTAMP..at::FIRST_TIMESTAMP + 8].copy_from_slice(&first.to_le_bytes());
            b[at::MAX_TIMESTAMP..at::MAX_TIMESTAMP + 8].copy_from_slice(&max.to_le_bytes());
            b[at::PRODUCER_ID..at::PRODUCER_ID + 8].copy_from_slice(&p.producer_id.to_le_bytes());
            b[at::PRODUCER_EPOCH..at::PRODUCER_EPOCH + 2].copy_from_slice(&p.producer_epoch.to_le_bytes());
            b[at::BASE_SEQUENCE..at::BASE_SEQUENCE + 4].copy_from_slice(&p.base_sequence.to_le_bytes());
            b[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&self.count.to_le_bytes());
        }
        super::seal_body(b);
        self.buf.freeze()
    }
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::put_i64(buf, -1),
        Some(b) => {
            varint::put_i64(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}
