//! The record batch: the unit of append, replication, CRC and compression.
//!
//! A batch is a fixed 85-byte header followed by varint-framed records. All
//! integers are little-endian. The first 36 bytes are stamped by the broker
//! when it appends (offset, Raft term, node and index) and are covered by
//! their own `header_crc`, so the CRC a producer computed over the rest stays
//! valid while nothing in the batch goes unprotected. Both are CRC32 (IEEE,
//! `crc32fast`).
//!
//! | at | bytes | field | meaning |
//! | --- | --- | --- | --- |
//! | 0 | 8 | `base_offset` u64 | offset of the first record; assigned by the log |
//! | 8 | 4 | `batch_length` u32 | bytes after this field (whole batch = 12 + length) |
//! | 12 | 8 | `leader_epoch` u64 | Raft term of the leader that appended it (0 before replication) |
//! | 20 | 4 | `leader_node` u32 | Raft node id of that leader, so a Raft `LogId` can be rebuilt |
//! | 24 | 4 | `entry_rest` u32 | batches that follow this one in the same Raft entry (0 = the entry's last) |
//! | 28 | 8 | `raft_index` u64 | Raft log index of this batch's entry (0 = not a Raft entry) |
//! | 36 | 4 | `header_crc` u32 | CRC32 of bytes 0..36, set whenever they are stamped |
//! | 40 | 1 | `magic` u8 | format version, currently 1 |
//! | 41 | 4 | `crc` u32 | CRC32 of bytes 45..end, set by the producer |
//! | 45 | 2 | `attributes` u16 | bits 0-2 codec (0 = none), bit 3 timestamp type (0 create, 1 log-append), bit 5 control |
//! | 47 | 4 | `last_offset_delta` u32 | `record_count - 1` (0 for an empty control batch) |
//! | 51 | 8 | `first_timestamp` i64 | ms since epoch of the first record |
//! | 59 | 8 | `max_timestamp` i64 | largest record timestamp |
//! | 67 | 8 | `producer_id` i64 | idempotent producer id, -1 if none |
//! | 75 | 2 | `producer_epoch` i16 | producer epoch, -1 if none |
//! | 77 | 4 | `base_sequence` i32 | sequence of the first record, -1 if none |
//! | 81 | 4 | `record_count` u32 | number of records |
//! | 85 | .. | records | `record_count` records, see [`record`] |
//!
//! Each record: `length` uvarint (bytes that follow), `attributes` u8 (0),
//! `timestamp_delta` zigzag varint (from `first_timestamp`), `offset_delta`
//! uvarint, `key_length` zigzag varint (-1 = null) and key bytes,
//! `value_length` zigzag varint (-1 = null) and value bytes, `header_count`
//! uvarint, then per header `key_length` uvarint, UTF-8 key bytes,
//! `value_length` zigzag varint (-1 = null), value bytes.
//!
//! A Raft entry is one or more batches stamped with the same `raft_index`;
//! `entry_rest` counts down to 0 on its last batch, so recovery can tell a
//! whole entry from a torn one. Data written before entries existed has 0
//! in both fields: each batch is then a whole entry of its own.
//!
//! A control batch (attribute bit 5) holds no records and takes no offsets.
//! Its body (the bytes after the header) is typed, see [`ControlBody`]:
//! empty or `0x00` is a Raft blank entry, `0x01` followed by opaque bytes is
//! a membership entry (the Raft layer's encoding).
//!
//! Decoding is total and zero-copy: [`RecordBatch::decode`] checks lengths
//! before touching data, never allocates more than the input, and hands out
//! keys and values as `Bytes` slices of the input.

mod builder;
pub mod record;
mod varint;

pub use builder::{BatchBuilder, ProducerStamp};
pub use record::{Header, Record, RecordIter};

use bytes::Bytes;
use thiserror::Error;

/// Current on-disk and on-wire batch format version.
pub const MAGIC: u8 = 1;
/// Bytes before the records.
pub const HEADER_LEN: usize = 85;
/// Bytes needed to learn a batch's total length (`base_offset` + `batch_length`).
pub const LENGTH_PREFIX_LEN: usize = 12;
/// Bytes at the front that [`stamp`] may change: the stamped fields and
/// their `header_crc`.
pub const STAMPED_LEN: usize = 40;
/// Bytes covered by `header_crc`.
pub const HEADER_CRC_COVERS: usize = 36;
/// First byte covered by the CRC.
pub const CRC_START: usize = 45;

pub(crate) mod at {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const LEADER_NODE: usize = 20;
    pub const ENTRY_REST: usize = 24;
    pub const RAFT_INDEX: usize = 28;
    pub const HEADER_CRC: usize = 36;
    pub const MAGIC: usize = 40;
    pub const CRC: usize = 41;
    pub const ATTRIBUTES: usize = 45;
    pub const LAST_OFFSET_DELTA: usize = 47;
    pub const FIRST_TIMESTAMP: usize = 51;
    pub const MAX_TIMESTAMP: usize = 59;
    pub const PRODUCER_ID: usize = 67;
    pub const PRODUCER_EPOCH: usize = 75;
    pub const BASE_SEQUENCE: usize = 77;
    pub const RECORD_COUNT: usize = 81;
}

/// Attribute bits.
pub mod attributes {
    /// Mask of the compression codec; 0 is "none", the only codec so far.
    pub const CODEC_MASK: u16 = 0b111;
    /// Set when timestamps were assigned by the log rather than the producer.
    pub const LOG_APPEND_TIME: u16 = 1 << 3;
    /// Set on control batches (Raft blank and membership entries).
    pub const CONTROL: u16 = 1 << 5;
    /// Bits this version understands; anything else is rejected.
    pub const KNOWN: u16 = CODEC_MASK | LOG_APPEND_TIME | CONTROL;
}

/// Why bytes are not a valid batch. Each variant says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// `batch_length` is smaller than a header or larger than allowed.
    #[error("batch length {length} is invalid (must be {min}..={max})")]
    BadLength { length: u64, min: u64, max: u64 },
    /// Unknown format version.
    #[error("unsupported batch magic {0} (this broker understands {MAGIC})")]
    BadMagic(u8),
    /// The CRC over the batch does not match: the bytes are corrupt.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The CRC over the stamped header fields does not match.
    #[error("batch header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrcMismatch { stored: u32, computed: u32 },
    /// A control batch's body is not a known control record.
    #[error("control batch body is invalid: {0}")]
    BadControl(&'static str),
    /// Attributes carry bits or a codec this version does not know.
    #[error("unsupported batch attributes {0:#06x}")]
    BadAttributes(u16),
    /// A record inside the batch is malformed.
    #[error("record {index} is malformed: {reason}")]
    BadRecord { index: u32, reason: &'static str },
    /// Header fields disagree with the records (count, deltas, timestamps).
    #[error("batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The header fields of a batch, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    pub batch_length: u32,
    pub leader_epoch: u64,
    pub leader_node: u32,
    pub entry_rest: u32,
    pub raft_index: u64,
    pub header_crc: u32,
    pub magic: u8,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

impl BatchHeader {
    /// Total bytes of the batch including the length prefix.
    pub fn total_len(&self) -> usize {
        LENGTH_PREFIX_LEN + self.batch_length as usize
    }

    /// Offset after the last record of this batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    /// Reads a header from the first [`HEADER_LEN`] bytes without checking the
    /// CRC. Returns `Truncated` if there are fewer.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated { needed: HEADER_LEN, available: buf.len() });
        }
        Ok(Self {
            base_offset: u64_at(buf, at::BASE_OFFSET),
            batch_length: u32_at(buf, at::BATCH_LENGTH),
            leader_epoch: u64_at(buf, at::LEADER_EPOCH),
            leader_node: u32_at(buf, at::LEADER_NODE),
            entry_rest: u32_at(buf, at::ENTRY_REST),
            raft_index: u64_at(buf, at::RAFT_INDEX),
            header_crc: u32_at(buf, at::HEADER_CRC),
            magic: buf[at::MAGIC],
            crc: u32_at(buf, at::CRC),
            attributes: u16::from_le_bytes([buf[at::ATTRIBUTES], buf[at::ATTRIBUTES + 1]]),
            last_offset_delta: u32_at(buf, at::LAST_OFFSET_DELTA),
            first_timestamp: u64_at(buf, at::FIRST_TIMESTAMP) as i64,
            max_timestamp: u64_at(buf, at::MAX_TIMESTAMP) as i64,
            producer_id: u64_at(buf, at::PRODUCER_ID) as i64,
            producer_epoch: u16::from_le_bytes([buf[at::PRODUCER_EPOCH], buf[at::PRODUCER_EPOCH + 1]]) as i16,
            base_sequence: u32_at(buf, at::BASE_SEQUENCE) as i32,
            record_count: u32_at(buf, at::RECORD_COUNT),
        })
    }
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// Where the producer fields (id, epoch, base sequence) sit in a header:
/// covered by the producer's CRC, not by the header CRC.
const PRODUCER_FIELDS: std::ops::Range<usize> = 67..81;

/// Marks a header's batch as having no producer (id, epoch and sequence
/// -1): for a header whose batch CRC was not checked, or failed, so
/// unverified producer fields are never believed. The stamped part and its
/// CRC are untouched.
pub fn forget_producer(head: &mut [u8; HEADER_LEN]) {
    head[PRODUCER_FIELDS].fill(0xff);
}

/// Looks at the front of `buf` and says how long the batch there is, without
/// allocating. `Ok(None)` means more bytes are needed to tell. `max_len` bounds
/// the total length a caller is prepared to accept.
pub fn peek_total_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, BatchError> {
    if buf.len() < LENGTH_PREFIX_LEN {
        return Ok(None);
    }
    let length = u64::from(u32_at(buf, at::BATCH_LENGTH));
    let min = (HEADER_LEN - LENGTH_PREFIX_LEN) as u64;
    let max = max_len.saturating_sub(LENGTH_PREFIX_LEN) as u64;
    if length < min || length > max {
        return Err(BatchError::BadLength { length, min, max });
    }
    Ok(Some(LENGTH_PREFIX_LEN + length as usize))
}

/// The Raft fields the log stamps into a batch header at append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftStamp {
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Node id of that leader.
    pub node: u32,
    /// Raft log index of the entry (0: not a Raft entry).
    pub index: u64,
    /// Batches that follow this one in the same entry.
    pub entry_rest: u32,
}

/// Overwrites the fields the log assigns at append time and their
/// `header_crc`. They precede the body CRC, so the producer's CRC stays
/// valid. `buf` must hold at least [`STAMPED_LEN`] bytes.
pub fn stamp(buf: &mut [u8], base_offset: u64, raft: RaftStamp) {
    buf[at::BASE_OFFSET..at::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
    buf[at::LEADER_EPOCH..at::LEADER_EPOCH + 8].copy_from_slice(&raft.term.to_le_bytes());
    buf[at::LEADER_NODE..at::LEADER_NODE + 4].copy_from_slice(&raft.node.to_le_bytes());
    buf[at::ENTRY_REST..at::ENTRY_REST + 4].copy_from_slice(&raft.entry_rest.to_le_bytes());
    buf[at::RAFT_INDEX..at::RAFT_INDEX + 8].copy_from_slice(&raft.index.to_le_bytes());
    seal_header(buf);
}

/// The typed body of a control batch: what a Raft entry without records
/// carries. Encoded as the bytes after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlBody {
    /// A Raft blank entry (a new leader's first entry): no body, or `0x00`.
    Blank,
    /// A Raft membership entry: `0x01`, then the Raft layer's encoding of
    /// the membership (opaque here).
    Membership(Bytes),
}

impl ControlBody {
    const BLANK: u8 = 0;
    const MEMBERSHIP: u8 = 1;

    /// Decodes a control batch body. Total: any input gives a body or an error.
    pub fn decode(body: &Bytes) -> Result<ControlBody, BatchError> {
        match body.first() {
            None => Ok(ControlBody::Blank),
            Some(&Self::BLANK) if body.len() == 1 => Ok(ControlBody::Blank),
            Some(&Self::BLANK) => Err(BatchError::BadControl("a blank entry has no bytes after its kind")),
            Some(&Self::MEMBERSHIP) => Ok(ControlBody::Membership(body.slice(1..))),
            Some(_) => Err(BatchError::BadControl("unknown control kind (0 = blank, 1 = membership)")),
        }
    }

    /// The body's encoding (what [`ControlBody::decode`] reads).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ControlBody::Blank => vec![Self::BLANK],
            ControlBody::Membership(m) => {
                let mut out = Vec::with_capacity(1 + m.len());
                out.push(Self::MEMBERSHIP);
                out.extend_from_slice(m);
                out
            }
        }
    }
}

/// Recomputes `header_crc` over the stamped fields.
pub(crate) fn seal_header(buf: &mut [u8]) {
    let crc = crc32fast::hash(&buf[..HEADER_CRC_COVERS]);
    buf[at::HEADER_CRC..at::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A validated batch over shared bytes. Cloning is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RecordBatch {
    /// Decodes one batch from the front of `buf`: checks length, magic,
    /// attributes and CRC. Returns the batch and the bytes after it. Records
    /// are framed lazily; call [`RecordBatch::validate`] to check them all.
    pub fn decode(buf: &Bytes, max_len: usize) -> Result<(RecordBatch, Bytes), BatchError> {
        let total = match peek_total_len(buf, max_len)? {
            Some(total) => total,
            None => return Err(BatchError::Truncated { needed: LENGTH_PREFIX_LEN, available: buf.len() }),
        };
        if buf.len() < total {
            return Err(BatchError::Truncated { needed: total, available: buf.len() });
        }
        let header = BatchHeader::parse(buf)?;
        let computed = crc32fast::hash(&buf[..HEADER_CRC_COVERS]);
        if computed != header.header_crc {
            return Err(BatchError::HeaderCrcMismatch { stored: header.header_crc, computed });
        }
        if header.magic != MAGIC {
            return Err(BatchError::BadMagic(header.magic));
        }
        let computed = crc32fast::hash(&buf[CRC_START..total]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        if header.attributes & !attributes::KNOWN != 0 || header.attributes & attributes::CODEC_MASK != 0 {
            return Err(BatchError::BadAttributes(header.attributes));
        }
        let batch = RecordBatch { header, bytes: buf.slice(..total) };
        Ok((batch, buf.slice(total..)))
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch as stored and sent.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub fn next_offset(&self) -> u64 {
        self.header.next_offset()
    }

    /// The typed body of a control batch (an error for a data batch).
    pub fn control_body(&self) -> Result<ControlBody, BatchError> {
        if !self.header.is_control() {
            return Err(BatchError::BadControl("not a control batch"));
        }
        ControlBody::decode(&self.bytes.slice(HEADER_LEN..))
    }

    /// Iterates the records. Each item is a record or the error that stops
    /// iteration; the iterator ends after an error.
    pub fn records(&self) -> RecordIter {
        RecordIter::new(self.bytes.slice(HEADER_LEN..), self.header.record_count)
    }

    /// Checks every record and that the header agrees with them: exactly
    /// `record_count` records filling the batch, offset deltas 0, 1, 2, ...,
    /// `last_offset_delta` = count - 1, timestamps within
    /// `first_timestamp..=max_timestamp`. A broker runs this on every batch a
    /// client sends.
    pub fn validate(&self) -> Result<(), BatchError> {
        let h = &self.header;
        let expected_last = h.record_count.saturating_sub(1);
        if h.last_offset_delta != expected_last {
            return Err(BatchError::Inconsistent("last_offset_delta is not record_count - 1"));
        }
        if h.is_control() {
            if h.record_count != 0 {
                return Err(BatchError::Inconsistent("a control batch holds no records"));
            }
            return self.control_body().map(|_| ());
        }
        if h.record_count == 0 {
            return Err(BatchError::Inconsistent("a data batch must hold at least one record"));
        }
        if h.max_timestamp < h.first_timestamp {
            return Err(BatchError::Inconsistent("max_timestamp is before first_timestamp"));
        }
        let mut seen = 0u32;
        let mut iter = self.records();
        for record in iter.by_ref() {
            let record = record?;
            if record.offset_delta != seen {
                return Err(BatchError::BadRecord { index: seen, reason: "offset deltas must be 0, 1, 2, ..." });
            }
            let ts = record.timestamp(h.first_timestamp);
            if ts < h.first_timestamp || ts > h.max_timestamp {
                return Err(BatchError::BadRecord { index: seen, reason: "timestamp outside the batch's range" });
            }
            seen += 1;
        }
        if seen != h.record_count {
            return Err(BatchError::Inconsistent("fewer records than record_count"));
        }
        if !iter.remaining_is_empty() {
            return Err(BatchError::Inconsistent("bytes left over after the last record"));
        }
        Ok(())
    }
}

/// Iterates the batches in a buffer of whole batches (as a fetch returns
/// them), stopping with an error at the first bad one.
pub fn decode_all(mut buf: Bytes, max_len: usize) -> impl Iterator<Item = Result<RecordBatch, BatchError>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || buf.is_empty() {
            return None;
        }
        match RecordBatch::decode(&buf, max_len) {
            Ok((batch, rest)) => {
                buf = rest;
                Some(Ok(batch))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests;
