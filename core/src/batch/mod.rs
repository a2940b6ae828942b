//! The record batch: the unit of append, replication, CRC and compression.
//!
//! Every batch starts with a 41-byte envelope: the fields the log stamps when
//! it appends (offset, Raft term, node and index), their own `header_crc`,
//! and the format's `magic`. Two forms follow it. Form 2, what every client
//! writes now, is a Kafka RecordBatch v2, byte for byte as Kafka clients
//! send and read it, so a Kafka fetch sends stored bytes unchanged. Form 1,
//! Weir's first format, is still read (data written before form 2, and the
//! Raft control batches). The envelope's integers are little-endian.
//!
//! | at | bytes | field | meaning |
//! | --- | --- | --- | --- |
//! | 0 | 8 | `base_offset` u64 | offset of the first record; assigned by the log |
//! | 8 | 4 | `batch_length` u32 | bytes after this field (whole batch = 12 + length) |
//! | 12 | 8 | `leader_epoch` u64 | Raft term of the leader that appended it (0 before replication) |
//! | 20 | 4 | `leader_node` u32 | Raft node id of that leader, so a Raft `LogId` can be rebuilt |
//! | 24 | 4 | `entry_rest` u32 | batches that follow this one in the same Raft entry (0 = the entry's last) |
//! | 28 | 8 | `raft_index` u64 | Raft log index of this batch's entry (0 = not a Raft entry) |
//! | 36 | 4 | `header_crc` u32 | CRC32 of bytes 0..36 (form 2: and 40..62), set whenever they are stamped |
//! | 40 | 1 | `magic` u8 | the form: 1 or 2 |
//!
//! **Form 2** (Kafka RecordBatch v2, big-endian, at 41): `baseOffset` i64
//! (stamped: the batch's offset), `batchLength` i32 (= `batch_length` - 41),
//! `partitionLeaderEpoch` i32 (stamped: -1, as Metadata reports no leader
//! epochs), `magic` 2, `crc` u32 (CRC32C of bytes 62..end, the producer's),
//! `attributes` i16, `lastOffsetDelta` i32, `baseTimestamp` i64,
//! `maxTimestamp` i64, `producerId` i64, `producerEpoch` i16, `baseSequence`
//! i32, `records` i32, then the records in Kafka's framing (zigzag varints
//! throughout). Kafka leaves its first 21 bytes outside its CRC; here the
//! `header_crc` covers them, so no stored byte goes unchecked.
//!
//! **Form 1** (little-endian): at 41 `crc` u32 (CRC32 of bytes 45..end), 45
//! `attributes` u16, 47 `last_offset_delta` u32, 51 `first_timestamp` i64,
//! 59 `max_timestamp` i64, 67 `producer_id` i64, 75 `producer_epoch` i16, 77
//! `base_sequence` i32, 81 `record_count` u32, 85 records: `length` uvarint,
//! `attributes` u8 (0), `timestamp_delta` zigzag varint (from
//! `first_timestamp`), `offset_delta` uvarint, `key_length` zigzag varint
//! (-1 = null) and key bytes, `value_length` zigzag varint (-1 = null) and
//! value bytes, `header_count` uvarint, then per header `key_length`
//! uvarint, UTF-8 key bytes, `value_length` zigzag varint, value bytes.
//!
//! Attributes (both forms): bits 0-2 codec (0 = none; form 2 also takes
//! Kafka's 1 gzip, 2 snappy, 3 lz4 and 4 zstd, see [`codec`]: the records
//! after the header are then compressed as a whole), bit 3 timestamp type
//! (0 create, 1 log-append), bit 5 control.
//!
//! A Raft entry is one or more batches stamped with the same `raft_index`;
//! `entry_rest` counts down to 0 on its last batch, so recovery can tell a
//! whole entry from a torn one. Data written before entries existed has 0
//! in both fields: each batch is then a whole entry of its own.
//!
//! A control batch (form 1, attribute bit 5) holds no records and takes no
//! offsets. Its body (the bytes after the header) is typed, see
//! [`ControlBody`]: empty or `0x00` is a Raft blank entry, `0x01` followed by
//! opaque bytes is a membership entry (the Raft layer's encoding). Control
//! batches never reach Kafka clients, and none of Kafka's own (transaction
//! markers) are taken.
//!
//! Decoding is total and zero-copy: [`RecordBatch::decode`] checks lengths
//! before touching data, never allocates more than the input, and hands out
//! keys and values as `Bytes` slices of the input.

mod builder;
pub mod codec;
pub mod record;
mod varint;

pub use builder::{BatchBuilder, ProducerStamp};
pub use record::{Header, Record, RecordIter};

use bytes::Bytes;
use thiserror::Error;

/// Form 1: Weir's first batch format (still read; Raft control batches).
pub const MAGIC_V1: u8 = 1;
/// Form 2: a Kafka RecordBatch v2 inside the envelope; what clients write.
pub const MAGIC_KAFKA: u8 = 2;
/// Kafka's own magic for RecordBatch v2.
pub const KAFKA_MAGIC: u8 = 2;
/// Bytes before a form 1 batch's records.
pub const HEADER_LEN_V1: usize = 85;
/// Where a form 2 batch's Kafka RecordBatch starts.
pub const KAFKA_AT: usize = 41;
/// Bytes of a Kafka RecordBatch v2 header.
pub const KAFKA_HEADER_LEN: usize = 61;
/// Bytes before a form 2 batch's records.
pub const HEADER_LEN_KAFKA: usize = KAFKA_AT + KAFKA_HEADER_LEN;
/// Bytes enough to parse any batch's header.
pub const HEADER_LEN: usize = HEADER_LEN_KAFKA;
/// The shortest header of any form.
pub const HEADER_LEN_MIN: usize = HEADER_LEN_V1;
/// Bytes needed to learn a batch's total length (`base_offset` + `batch_length`).
pub const LENGTH_PREFIX_LEN: usize = 12;
/// Bytes at the front that [`stamp`] may change, with everything the
/// `header_crc` covers.
pub const STAMPED_LEN: usize = 62;
/// Bytes of the envelope covered by `header_crc` in every form.
pub const HEADER_CRC_COVERS: usize = 36;
/// First byte covered by a form 1 batch's CRC.
pub const CRC_START: usize = 45;
/// First byte covered by a form 2 batch's CRC (Kafka's attributes).
pub const KAFKA_CRC_START: usize = 62;
/// The Kafka fields a form 2 `header_crc` also covers (magic through crc).
const KAFKA_STAMPED: std::ops::Range<usize> = 40..62;

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

/// Where a form 2 batch's Kafka fields sit (absolute, big-endian).
pub(crate) mod kat {
    pub const BASE_OFFSET: usize = 41;
    pub const BATCH_LENGTH: usize = 49;
    pub const LEADER_EPOCH: usize = 53;
    pub const MAGIC: usize = 57;
    pub const CRC: usize = 58;
    pub const ATTRIBUTES: usize = 62;
    pub const LAST_OFFSET_DELTA: usize = 64;
    pub const FIRST_TIMESTAMP: usize = 68;
    pub const MAX_TIMESTAMP: usize = 76;
    pub const PRODUCER_ID: usize = 84;
    pub const PRODUCER_EPOCH: usize = 92;
    pub const BASE_SEQUENCE: usize = 94;
    pub const RECORD_COUNT: usize = 98;
}

/// Attribute bits.
pub mod attributes {
    /// Mask of the compression codec; 0 is "none".
    pub const CODEC_MASK: u16 = 0b111;
    /// Set when timestamps were assigned by the log rather than the producer.
    pub const LOG_APPEND_TIME: u16 = 1 << 3;
    /// Kafka: the batch belongs to a transaction (not taken).
    pub const TRANSACTIONAL: u16 = 1 << 4;
    /// Set on control batches (Raft blank and membership entries).
    pub const CONTROL: u16 = 1 << 5;
    /// Bits form 1 understands; anything else is rejected.
    pub const KNOWN: u16 = CODEC_MASK | LOG_APPEND_TIME | CONTROL;
    /// Bits a form 2 batch may carry (data only, no transactions).
    pub const KNOWN_KAFKA: u16 = CODEC_MASK | LOG_APPEND_TIME;
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
    #[error("unsupported batch magic {0} (this broker understands 1 and 2)")]
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
    /// Attributes carry bits this version does not take.
    #[error("unsupported batch attributes {0:#06x} (transactions and control batches are not taken)")]
    BadAttributes(u16),
    /// The batch is compressed with a codec this broker does not take.
    #[error("batch compression codec {0} is not supported (Kafka batches take 1 gzip, 2 snappy, 3 lz4, 4 zstd)")]
    UnsupportedCodec(u16),
    /// The records do not decompress with the batch's codec.
    #[error("the batch's {codec} records do not decompress: {reason}")]
    Decompress { codec: &'static str, reason: String },
    /// The records decompress to more than a batch may hold.
    #[error("the batch's records decompress to more than {max} bytes: send smaller batches")]
    DecompressedTooLarge { max: usize },
    /// A record inside the batch is malformed.
    #[error("record {index} is malformed: {reason}")]
    BadRecord { index: u32, reason: &'static str },
    /// Header fields disagree with the records (count, deltas, timestamps).
    #[error("batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The header fields of a batch, as plain values (of either form).
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

    /// True for form 2: a Kafka RecordBatch inside the envelope.
    pub fn is_kafka(&self) -> bool {
        self.magic == MAGIC_KAFKA
    }

    /// Bytes before the records, in this batch's form.
    pub fn header_len(&self) -> usize {
        header_len_of(self.magic)
    }

    /// First byte the producer's CRC covers, in this batch's form.
    pub fn crc_start(&self) -> usize {
        if self.is_kafka() { KAFKA_CRC_START } else { CRC_START }
    }

    /// Reads a header of either form without checking a CRC: `Truncated` if
    /// `buf` holds less than its form's header, `BadMagic` for an unknown
    /// form, `Inconsistent` for Kafka fields out of range.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        let Some(&magic) = buf.get(at::MAGIC) else {
            return Err(BatchError::Truncated { needed: HEADER_LEN_MIN, available: buf.len() });
        };
        let needed = match magic {
            MAGIC_V1 | MAGIC_KAFKA => header_len_of(magic),
            m => return Err(BatchError::BadMagic(m)),
        };
        if buf.len() < needed {
            return Err(BatchError::Truncated { needed, available: buf.len() });
        }
        let envelope = |rest: Self| Self {
            base_offset: u64_at(buf, at::BASE_OFFSET),
            batch_length: u32_at(buf, at::BATCH_LENGTH),
            leader_epoch: u64_at(buf, at::LEADER_EPOCH),
            leader_node: u32_at(buf, at::LEADER_NODE),
            entry_rest: u32_at(buf, at::ENTRY_REST),
            raft_index: u64_at(buf, at::RAFT_INDEX),
            header_crc: u32_at(buf, at::HEADER_CRC),
            magic,
            ..rest
        };
        let blank = Self {
            base_offset: 0,
            batch_length: 0,
            leader_epoch: 0,
            leader_node: 0,
            entry_rest: 0,
            raft_index: 0,
            header_crc: 0,
            magic,
            crc: 0,
            attributes: 0,
            last_offset_delta: 0,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 0,
        };
        if magic == MAGIC_V1 {
            return Ok(envelope(Self {
                crc: u32_at(buf, at::CRC),
                attributes: u16::from_le_bytes([buf[at::ATTRIBUTES], buf[at::ATTRIBUTES + 1]]),
                last_offset_delta: u32_at(buf, at::LAST_OFFSET_DELTA),
                first_timestamp: u64_at(buf, at::FIRST_TIMESTAMP) as i64,
                max_timestamp: u64_at(buf, at::MAX_TIMESTAMP) as i64,
                producer_id: u64_at(buf, at::PRODUCER_ID) as i64,
                producer_epoch: u16::from_le_bytes([buf[at::PRODUCER_EPOCH], buf[at::PRODUCER_EPOCH + 1]]) as i16,
                base_sequence: u32_at(buf, at::BASE_SEQUENCE) as i32,
                record_count: u32_at(buf, at::RECORD_COUNT),
                ..blank
            }));
        }
        let h = envelope(Self {
            crc: be32(buf, kat::CRC),
            attributes: u16::from_be_bytes([buf[kat::ATTRIBUTES], buf[kat::ATTRIBUTES + 1]]),
            last_offset_delta: u32::try_from(be32(buf, kat::LAST_OFFSET_DELTA) as i32)
                .map_err(|_| BatchError::Inconsistent("lastOffsetDelta is negative"))?,
            first_timestamp: be64(buf, kat::FIRST_TIMESTAMP) as i64,
            max_timestamp: be64(buf, kat::MAX_TIMESTAMP) as i64,
            producer_id: be64(buf, kat::PRODUCER_ID) as i64,
            producer_epoch: u16::from_be_bytes([buf[kat::PRODUCER_EPOCH], buf[kat::PRODUCER_EPOCH + 1]]) as i16,
            base_sequence: be32(buf, kat::BASE_SEQUENCE) as i32,
            record_count: u32::try_from(be32(buf, kat::RECORD_COUNT) as i32)
                .map_err(|_| BatchError::Inconsistent("the record count is negative"))?,
            ..blank
        });
        if buf[kat::MAGIC] != KAFKA_MAGIC {
            return Err(BatchError::BadMagic(buf[kat::MAGIC]));
        }
        if u64::from(be32(buf, kat::BATCH_LENGTH)) + KAFKA_AT as u64 != u64::from(h.batch_length) {
            return Err(BatchError::Inconsistent("the Kafka batchLength disagrees with the envelope's length"));
        }
        Ok(h)
    }
}

fn header_len_of(magic: u8) -> usize {
    if magic == MAGIC_KAFKA { HEADER_LEN_KAFKA } else { HEADER_LEN_V1 }
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

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(raw)
}

fn be32(buf: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(raw)
}

/// The `header_crc` the stamped bytes at the front of `buf` call for, or
/// `None` if `buf` is too short for its form's covered bytes.
pub fn header_crc_of(buf: &[u8]) -> Option<u32> {
    let mut h = crc32fast::Hasher::new();
    h.update(buf.get(..HEADER_CRC_COVERS)?);
    if buf.get(at::MAGIC) == Some(&MAGIC_KAFKA) {
        h.update(buf.get(KAFKA_STAMPED)?);
    }
    Some(h.finalize())
}

/// True when the front of `buf` holds a header whose `header_crc` matches:
/// the cheap test a recovery scan makes before trying a whole decode.
pub fn header_crc_ok(buf: &[u8]) -> bool {
    matches!(buf.get(at::MAGIC), Some(&MAGIC_V1 | &MAGIC_KAFKA))
        && buf.len() >= at::HEADER_CRC + 4
        && header_crc_of(buf) == Some(u32_at(buf, at::HEADER_CRC))
}

/// Marks a header's batch as having no producer (id, epoch and sequence
/// -1): for a header whose batch CRC was not checked, or failed, so
/// unverified producer fields are never believed. The stamped part and its
/// CRC are untouched.
pub fn forget_producer(head: &mut [u8]) {
    let fields = match head.get(at::MAGIC) {
        Some(&MAGIC_KAFKA) => kat::PRODUCER_ID..kat::RECORD_COUNT,
        _ => at::PRODUCER_ID..at::RECORD_COUNT,
    };
    if let Some(f) = head.get_mut(fields) {
        f.fill(0xff);
    }
}

/// Looks at the front of `buf` and says how long the batch there is, without
/// allocating. `Ok(None)` means more bytes are needed to tell. `max_len` bounds
/// the total length a caller is prepared to accept.
pub fn peek_total_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, BatchError> {
    if buf.len() < LENGTH_PREFIX_LEN {
        return Ok(None);
    }
    let length = u64::from(u32_at(buf, at::BATCH_LENGTH));
    let min = (HEADER_LEN_MIN - LENGTH_PREFIX_LEN) as u64;
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
/// `header_crc` (form 2: Kafka's `baseOffset` and `partitionLeaderEpoch`
/// too). They precede the body CRC, so the producer's CRC stays valid.
/// `buf` must hold at least [`STAMPED_LEN`] bytes.
pub fn stamp(buf: &mut [u8], base_offset: u64, raft: RaftStamp) {
    buf[at::BASE_OFFSET..at::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
    buf[at::LEADER_EPOCH..at::LEADER_EPOCH + 8].copy_from_slice(&raft.term.to_le_bytes());
    buf[at::LEADER_NODE..at::LEADER_NODE + 4].copy_from_slice(&raft.node.to_le_bytes());
    buf[at::ENTRY_REST..at::ENTRY_REST + 4].copy_from_slice(&raft.entry_rest.to_le_bytes());
    buf[at::RAFT_INDEX..at::RAFT_INDEX + 8].copy_from_slice(&raft.index.to_le_bytes());
    if buf[at::MAGIC] == MAGIC_KAFKA {
        buf[kat::BASE_OFFSET..kat::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
        buf[kat::LEADER_EPOCH..kat::LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    }
    seal_header(buf);
}

/// Puts a Kafka RecordBatch (one whole batch, as a Kafka producer sends it)
/// into a form 2 envelope, copying it once. Checks only the framing; the
/// caller decodes and validates the result as any batch.
pub fn wrap_kafka(kafka: &[u8]) -> Result<Bytes, BatchError> {
    if kafka.len() < KAFKA_HEADER_LEN {
        return Err(BatchError::Truncated { needed: KAFKA_HEADER_LEN, available: kafka.len() });
    }
    let declared = i64::from(be32(kafka, kat::BATCH_LENGTH - KAFKA_AT) as i32);
    let whole = declared + LENGTH_PREFIX_LEN as i64;
    if whole < KAFKA_HEADER_LEN as i64 || whole > kafka.len() as i64 {
        return Err(BatchError::Truncated { needed: whole.max(KAFKA_HEADER_LEN as i64) as usize, available: kafka.len() });
    }
    if whole < kafka.len() as i64 {
        return Err(BatchError::Inconsistent("bytes follow the batch: a partition's records are one batch"));
    }
    if kafka[kat::MAGIC - KAFKA_AT] != KAFKA_MAGIC {
        return Err(BatchError::BadMagic(kafka[kat::MAGIC - KAFKA_AT]));
    }
    let total = KAFKA_AT + kafka.len();
    let mut out = Vec::with_capacity(total);
    out.resize(KAFKA_AT, 0);
    out[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&((total - LENGTH_PREFIX_LEN) as u32).to_le_bytes());
    out[at::MAGIC] = MAGIC_KAFKA;
    out.extend_from_slice(kafka);
    seal_header(&mut out);
    Ok(Bytes::from(out))
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
    let crc = header_crc_of(buf).expect("a batch being sealed holds its stamped fields");
    buf[at::HEADER_CRC..at::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the producer's CRC over the body of a whole batch (either
/// form): for tests and tools that build or alter batches by hand.
pub fn seal_body(buf: &mut [u8]) {
    if buf[at::MAGIC] == MAGIC_KAFKA {
        let crc = crc32c::crc32c(&buf[KAFKA_CRC_START..]);
        buf[kat::CRC..kat::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    } else {
        let crc = crc32fast::hash(&buf[CRC_START..]);
        buf[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
    seal_header(buf);
}

/// A validated batch over shared bytes. Cloning is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RecordBatch {
    /// Decodes one batch from the front of `buf`: checks length, form,
    /// attributes and both CRCs. Returns the batch and the bytes after it.
    /// Records are framed lazily; call [`RecordBatch::validate`] to check
    /// them all.
    pub fn decode(buf: &Bytes, max_len: usize) -> Result<(RecordBatch, Bytes), BatchError> {
        let total = match peek_total_len(buf, max_len)? {
            Some(total) => total,
            None => return Err(BatchError::Truncated { needed: LENGTH_PREFIX_LEN, available: buf.len() }),
        };
        if buf.len() < total {
            return Err(BatchError::Truncated { needed: total, available: buf.len() });
        }
        let header = BatchHeader::parse(&buf[..total])?;
        let computed = header_crc_of(buf).expect("a parsed header holds its stamped fields");
        if computed != header.header_crc {
            return Err(BatchError::HeaderCrcMismatch { stored: header.header_crc, computed });
        }
        let computed = match header.is_kafka() {
            true => crc32c::crc32c(&buf[KAFKA_CRC_START..total]),
            false => crc32fast::hash(&buf[CRC_START..total]),
        };
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        let known = if header.is_kafka() { attributes::KNOWN_KAFKA } else { attributes::KNOWN };
        if header.attributes & !known != 0 {
            return Err(BatchError::BadAttributes(header.attributes));
        }
        // Form 2 carries Kafka's codecs; form 1 was never compressed.
        let codec = codec::Codec::from_bits(header.attributes)?;
        if codec != codec::Codec::None && !header.is_kafka() {
            return Err(BatchError::UnsupportedCodec(header.attributes & attributes::CODEC_MASK));
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
        ControlBody::decode(&self.bytes.slice(self.header.header_len()..))
    }

    /// The batch's compression codec (form 2 only; decode refused others).
    pub fn codec(&self) -> codec::Codec {
        codec::Codec::from_bits(self.header.attributes).unwrap_or(codec::Codec::None)
    }

    /// Iterates the records (decompressed first, under
    /// [`codec::cap_for`], if the batch is compressed). Each
    /// item is a record or the error that stops iteration; the iterator
    /// ends after an error.
    pub fn records(&self) -> RecordIter {
        let area = self.bytes.slice(self.header.header_len()..);
        let area = match self.codec() {
            codec::Codec::None => area,
            c => match codec::decompress(c, &area, codec::cap_for(area.len())) {
                Ok(plain) => plain,
                Err(e) => return RecordIter::failing(e),
            },
        };
        RecordIter::new(area, self.header.record_count, self.header.is_kafka())
    }

    /// The batch as a Kafka client reads it: a form 2 batch's stored Kafka
    /// bytes, unchanged; a form 1 data batch re-encoded (data written before
    /// form 2); `None` for a control batch, which Kafka clients never see.
    pub fn kafka_bytes(&self) -> Result<Option<Bytes>, BatchError> {
        let h = &self.header;
        if h.is_control() {
            return Ok(None);
        }
        if h.is_kafka() {
            return Ok(Some(self.bytes.slice(KAFKA_AT..)));
        }
        let stamp = ProducerStamp { producer_id: h.producer_id, producer_epoch: h.producer_epoch, base_sequence: h.base_sequence };
        let mut b = BatchBuilder::with_capacity(stamp, self.bytes.len());
        b.set_log_append_time(h.attributes & attributes::LOG_APPEND_TIME != 0);
        for r in self.records() {
            let r = r?;
            let headers: Vec<(&str, Option<&[u8]>)> = r.headers.iter().map(|x| (x.key.as_str(), x.value.as_deref())).collect();
            b.push(r.timestamp(h.first_timestamp), r.key.as_deref(), r.value.as_deref(), &headers);
        }
        let mut out = b.finish().to_vec();
        stamp_fields(&mut out, h.base_offset);
        Ok(Some(Bytes::from(out).slice(KAFKA_AT..)))
    }

    /// Checks every record and that the header agrees with them: exactly
    /// `record_count` records filling the batch, offset deltas 0, 1, 2, ...,
    /// `last_offset_delta` = count - 1, and (form 1) timestamps within
    /// `first_timestamp..=max_timestamp` (Kafka lets a record's timestamp
    /// precede the batch's first). A broker runs this on every batch a
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
        let check_times = !h.is_kafka();
        if check_times && h.max_timestamp < h.first_timestamp {
            return Err(BatchError::Inconsistent("max_timestamp is before first_timestamp"));
        }
        let codec = self.codec();
        if codec != codec::Codec::None {
            // Streamed, a record at a time: the broker never holds a whole
            // decompressed batch.
            let area = &self.bytes[h.header_len()..];
            let cap = codec::cap_for(area.len());
            return record::validate_stream(codec::decompressor(codec, area, cap)?, h.record_count, cap, codec);
        }
        let mut seen = 0u32;
        let mut iter = self.records();
        for record in iter.by_ref() {
            let record = record?;
            if record.offset_delta != seen {
                return Err(BatchError::BadRecord { index: seen, reason: "offset deltas must be 0, 1, 2, ..." });
            }
            let ts = record.timestamp(h.first_timestamp);
            if check_times && (ts < h.first_timestamp || ts > h.max_timestamp) {
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

/// Whether `buf` starts with a form 2 batch whose attributes name a codec
/// (before any check: to decide where to validate it).
pub fn is_compressed(buf: &[u8]) -> bool {
    buf.get(at::MAGIC) == Some(&MAGIC_KAFKA) && buf.get(kat::ATTRIBUTES + 1).is_some_and(|a| u16::from(*a) & attributes::CODEC_MASK != 0)
}

/// Stamps the offset alone (no Raft fields): a batch re-encoded for a reader.
fn stamp_fields(buf: &mut [u8], base_offset: u64) {
    stamp(buf, base_offset, RaftStamp::default());
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
