//! Records inside a batch: varint framing, decoded lazily and zero-copy.
//! Form 1 frames lengths, offset deltas and header counts as unsigned
//! varints; Kafka's form (2) frames every integer as a zigzag varint.

use super::BatchError;
use super::varint;
use bytes::Bytes;

/// A key/value header on a record. Keys are UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One decoded record; key and value are slices of the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: u32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Absolute timestamp given the batch's first timestamp.
    pub fn timestamp(&self, first_timestamp: i64) -> i64 {
        first_timestamp.saturating_add(self.timestamp_delta)
    }
}

/// Iterator over the records of a batch; yields at most `count` items and
/// stops after the first error.
pub struct RecordIter {
    buf: Bytes,
    left: u32,
    index: u32,
    failed: bool,
    kafka: bool,
    error: Option<BatchError>,
}

impl RecordIter {
    pub(super) fn new(buf: Bytes, count: u32, kafka: bool) -> Self {
        Self { buf, left: count, index: 0, failed: false, kafka, error: None }
    }

    /// An iterator that yields `error` and ends (records that could not be
    /// decompressed).
    pub(super) fn failing(error: BatchError) -> Self {
        Self { buf: Bytes::new(), left: 1, index: 0, failed: false, kafka: true, error: Some(error) }
    }

    /// True when every byte of the records area has been consumed.
    pub fn remaining_is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn bad(&mut self, reason: &'static str) -> Option<Result<Record, BatchError>> {
        self.failed = true;
        Some(Err(BatchError::BadRecord { index: self.index, reason }))
    }
}

/// A cursor over one record's bytes; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    kafka: bool,
}

impl Cursor<'_> {
    /// A count or length that cannot be negative: an unsigned varint in
    /// form 1, a zigzag varint in Kafka's.
    fn count(&mut self) -> Option<u64> {
        match self.kafka {
            true => self.ivarint().and_then(|v| u64::try_from(v).ok()),
            false => self.uvarint(),
        }
    }

    fn uvarint(&mut self) -> Option<u64> {
        let (v, used) = varint::get_u64(&self.buf[self.pos..self.end])?;
        self.pos += used;
        Some(v)
    }

    fn ivarint(&mut self) -> Option<i64> {
        let (v, used) = varint::get_i64(&self.buf[self.pos..self.end])?;
        self.pos += used;
        Some(v)
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf[..self.end].get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, len: usize) -> Option<Bytes> {
        if self.end - self.pos < len {
            return None;
        }
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Some(out)
    }

    /// A zigzag length where -1 means null.
    fn nullable(&mut self) -> Result<Option<Bytes>, &'static str> {
        match self.ivarint().ok_or("truncated length")? {
            -1 => Ok(None),
            len if len < 0 => Err("negative length"),
            len => {
                let len = usize::try_from(len).map_err(|_| "length too large")?;
                self.take(len).map(Some).ok_or("length runs past the record")
            }
        }
    }
}

/// Smallest possible header encoding: empty key length, null value.
const HEADER_BYTES_MIN: usize = 2;

/// One record's fields from `buf[pos..end]` (after its length).
fn parse(buf: &Bytes, pos: usize, end: usize, kafka: bool) -> Result<Record, &'static str> {
    let mut c = Cursor { buf, pos, end, kafka };
    let _attributes = c.u8().ok_or("truncated attributes")?;
    let timestamp_delta = c.ivarint().ok_or("truncated timestamp delta")?;
    let offset_delta = c.count().ok_or("truncated or negative offset delta")?;
    let offset_delta = u32::try_from(offset_delta).map_err(|_| "offset delta too large")?;
    let key = c.nullable()?;
    let value = c.nullable()?;
    let header_count = c.count().ok_or("truncated or negative header count")?;
    // Bound the allocation by the bytes actually present.
    if header_count > ((c.end - c.pos) / HEADER_BYTES_MIN) as u64 {
        return Err("header count larger than the record");
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let klen = c.count().ok_or("truncated or negative header key length")?;
        let klen = usize::try_from(klen).map_err(|_| "header key too large")?;
        let key = c.take(klen).ok_or("header key runs past the record")?;
        let key = std::str::from_utf8(&key).map_err(|_| "header key is not UTF-8")?.to_owned();
        let value = c.nullable()?;
        headers.push(Header { key, value });
    }
    if c.pos != c.end {
        return Err("bytes left over inside the record");
    }
    Ok(Record { offset_delta, timestamp_delta, key, value, headers })
}

/// Checks `count` Kafka records read from `r` (a decompressor), one at a
/// time, so memory stays one record's worth: each record's framing,
/// offset deltas 0, 1, 2, ..., and nothing after the last. `cap` bounds
/// any one record (the reader caps their total).
pub(super) fn validate_stream(r: impl std::io::Read, count: u32, cap: usize, codec: super::codec::Codec) -> Result<(), BatchError> {
    use std::io::Read;
    let mut r = std::io::BufReader::with_capacity(64 << 10, r);
    let io = |e: std::io::Error| super::codec::from_io(codec, e, cap);
    let bad = |index: u32, reason: &'static str| BatchError::BadRecord { index, reason };
    for index in 0..count {
        // A zigzag varint length, a byte at a time (at most 10).
        let (mut raw, mut shift) = (0u64, 0u32);
        loop {
            let mut b = [0u8; 1];
            if r.read(&mut b).map_err(io)? == 0 {
                return Err(bad(index, "the decompressed records end before record_count records"));
            }
            if shift > 63 {
                return Err(bad(index, "record length varint too long"));
            }
            raw |= u64::from(b[0] & 0x7f) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let len = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
        let len = usize::try_from(len).map_err(|_| bad(index, "negative record length"))?;
        if len > cap {
            return Err(BatchError::DecompressedTooLarge { max: cap });
        }
        let mut body = Vec::new();
        (&mut r).take(len as u64).read_to_end(&mut body).map_err(io)?;
        if body.len() != len {
            return Err(bad(index, "record length runs past the decompressed records"));
        }
        let record = parse(&Bytes::from(body), 0, len, true).map_err(|reason| bad(index, reason))?;
        if record.offset_delta != index {
            return Err(bad(index, "offset deltas must be 0, 1, 2, ..."));
        }
    }
    let mut probe = [0u8; 1];
    if r.read(&mut probe).map_err(io)? != 0 {
        return Err(BatchError::Inconsistent("bytes left over after the last record"));
    }
    Ok(())
}

impl Iterator for RecordIter {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.left == 0 {
            return None;
        }
        if let Some(e) = self.error.take() {
            self.failed = true;
            return Some(Err(e));
        }
        let framed = match self.kafka {
            true => varint::get_i64(&self.buf).and_then(|(v, used)| Some((u64::try_from(v).ok()?, used))),
            false => varint::get_u64(&self.buf),
        };
        let Some((len, used)) = framed else {
            return self.bad("truncated or negative record length");
        };
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(used)) else {
            return self.bad("record length too large");
        };
        if end > self.buf.len() {
            return self.bad("record length runs past the batch");
        }
        let parsed = parse(&self.buf, used, end, self.kafka);
        match parsed {
            Ok(record) => {
                self.buf = self.buf.slice(end..);
                self.left -= 1;
                self.index += 1;
                Some(Ok(record))
            }
            Err(reason) => self.bad(reason),
        }
    }
}
