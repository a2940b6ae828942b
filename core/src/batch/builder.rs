//! Building a batch: the client side of the format (and the log's tests).

use super::{ControlBody, HEADER_LEN, MAGIC, at, attributes, varint};
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
/// the log to stamp; the CRC is computed by [`BatchBuilder::finish`].
pub struct BatchBuilder {
    buf: BytesMut,
    producer: ProducerStamp,
    first_timestamp: Option<i64>,
    max_timestamp: i64,
    count: u32,
    attributes: u16,
}

impl BatchBuilder {
    pub fn new(producer: ProducerStamp) -> Self {
        Self::with_capacity(producer, 256)
    }

    pub fn with_capacity(producer: ProducerStamp, bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + bytes);
        buf.put_bytes(0, HEADER_LEN);
        Self { buf, producer, first_timestamp: None, max_timestamp: i64::MIN, count: 0, attributes: 0 }
    }

    /// A blank control batch (a Raft blank entry): no data records.
    pub fn control(timestamp: i64) -> Bytes {
        Self::control_with(timestamp, &ControlBody::Blank)
    }

    /// A control batch carrying `body` (Raft blank or membership entry).
    pub fn control_with(timestamp: i64, body: &ControlBody) -> Bytes {
        let mut b = Self::new(ProducerStamp::NONE);
        b.attributes |= attributes::CONTROL;
        b.first_timestamp = Some(timestamp);
        b.max_timestamp = timestamp;
        b.buf.put_slice(&body.encode());
        b.finish()
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

    /// Bytes a record would add, for callers that cap batch sizes.
    pub fn record_len(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> usize {
        let body = Self::body_len(0, 0, key, value, headers);
        varint::len_u64(body as u64) + body
    }

    fn body_len(ts_delta: i64, off_delta: u32, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> usize {
        let nullable = |b: Option<&[u8]>| match b {
            None => varint::len_i64(-1),
            Some(b) => varint::len_i64(b.len() as i64) + b.len(),
        };
        let mut len = 1 + varint::len_i64(ts_delta) + varint::len_u64(u64::from(off_delta)) + nullable(key) + nullable(value);
        len += varint::len_u64(headers.len() as u64);
        for (k, v) in headers {
            len += varint::len_u64(k.len() as u64) + k.len() + nullable(*v);
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
        let body = Self::body_len(ts_delta, self.count, key, value, headers);
        let buf = &mut self.buf;
        varint::put_u64(buf, body as u64);
        buf.put_u8(0);
        varint::put_i64(buf, ts_delta);
        varint::put_u64(buf, u64::from(self.count));
        put_nullable(buf, key);
        put_nullable(buf, value);
        varint::put_u64(buf, headers.len() as u64);
        for (k, v) in headers {
            varint::put_u64(buf, k.len() as u64);
            buf.put_slice(k.as_bytes());
            put_nullable(buf, *v);
        }
        self.count += 1;
    }

    /// Writes the header and CRC and returns the encoded batch.
    pub fn finish(mut self) -> Bytes {
        let first = self.first_timestamp.unwrap_or(0);
        let max = if self.count == 0 && self.max_timestamp == i64::MIN { first } else { self.max_timestamp };
        let total = self.buf.len();
        let b = &mut self.buf[..];
        b[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&((total - super::LENGTH_PREFIX_LEN) as u32).to_le_bytes());
        b[at::MAGIC] = MAGIC;
        b[at::ATTRIBUTES..at::ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_le_bytes());
        b[at::LAST_OFFSET_DELTA..at::LAST_OFFSET_DELTA + 4].copy_from_slice(&self.count.saturating_sub(1).to_le_bytes());
        b[at::FIRST_TIMESTAMP..at::FIRST_TIMESTAMP + 8].copy_from_slice(&first.to_le_bytes());
        b[at::MAX_TIMESTAMP..at::MAX_TIMESTAMP + 8].copy_from_slice(&max.to_le_bytes());
        b[at::PRODUCER_ID..at::PRODUCER_ID + 8].copy_from_slice(&self.producer.producer_id.to_le_bytes());
        b[at::PRODUCER_EPOCH..at::PRODUCER_EPOCH + 2].copy_from_slice(&self.producer.producer_epoch.to_le_bytes());
        b[at::BASE_SEQUENCE..at::BASE_SEQUENCE + 4].copy_from_slice(&self.producer.base_sequence.to_le_bytes());
        b[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&b[super::CRC_START..]);
        b[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_le_bytes());
        super::seal_header(b);
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
