//! One segment: a `.log` file of whole batches named by its base offset, with
//! its sparse `.index`, `.timeindex` and `.raftindex`. The segment knows where its valid
//! data ends (`size`); the file may be longer because it is preallocated, and
//! recovery finds the end by CRC.
//!
//! File handles are budgeted: only the active segment holds its `.log` open.
//! Indexes live in memory and are written whole when the segment is sealed
//! (an active segment's index files are never trusted: recovery rebuilds
//! them by a scan), and a sealed segment's `.log` is opened on demand
//! through the disk adapter, which may keep a bounded cache of open files.
//! So an idle partition costs one file descriptor, however many segments
//! it has.

use super::index::{self, OFFSET_ENTRY_LEN, OffsetEntry, RAFT_ENTRY_LEN, RaftEntry, TIME_ENTRY_LEN, TimeEntry};
use super::{Entry, LogError, LogId};
use crate::Timestamp;
use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN, RecordBatch};
use crate::disk::{Disk, DiskError, DiskFile};
use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Batches up to this size are copied into one buffer and written at once;
/// larger ones are written as two slices without copying the payload.
const SMALL_BATCH_BYTES: usize = 64 << 10;
/// Bytes read at a time when scanning a segment.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub fn file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// The extensions of a segment's index files, beside its `.log`.
pub const INDEX_EXTENSIONS: [&str; 3] = ["index", "timeindex", "raftindex"];

/// Whether `name` is one of a segment's index files (by its extension).
pub fn is_index_file(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| INDEX_EXTENSIONS.contains(&ext))
}

/// Parses `{base:020}.log` back into a base offset.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Where and why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEnd {
    pub position: u64,
    pub next_offset: u64,
    /// `None` if the scan reached its limit; otherwise why the bytes at
    /// `position` are not the next valid batch.
    pub invalid: Option<String>,
    /// Length of the file scanned (set by `Segment::open`).
    pub file_len: u64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: u64,
    pub next_offset: u64,
    /// Bytes of valid data.
    pub size: u64,
    /// Length of the file (≥ size when preallocated).
    allocated: u64,
    pub max_timestamp: i64,
    /// When this segment became active, for rolling by age.
    pub opened_at: Timestamp,
    /// Has writes that no sync has covered yet.
    pub dirty: bool,
    /// The `.log` file while active; `None` once sealed (see the module doc).
    file: Option<Arc<dyn DiskFile>>,
    disk: Arc<dyn Disk>,
    index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
    /// Relative offset of the batch holding `max_timestamp`.
    max_timestamp_relative: u32,
    /// Sparse Raft index → position of entry starts (see `index`).
    raft_index: Vec<RaftEntry>,
    bytes_since_raft_index: u64,
    /// The last whole Raft entry held (`None`: none, or only index-0 data).
    pub last_log_id: Option<LogId>,
    /// The last batch noted has more batches of its entry after it.
    in_entry: bool,
    /// The log's canary (simulation builds; see `canary`).
    canary: Option<crate::canary::Canary>,
    dir: PathBuf,
}

/// How much of each Raft entry a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRead {
    /// Every batch whole, CRC-checked.
    Whole,
    /// Data batches cut to their headers, producer fields forgotten.
    Heads,
    /// Data batches cut to their headers after a whole read and CRC check.
    CheckedHeads,
}

impl Segment {
    /// The index of the first Raft entry starting here (index-0 data,
    /// written before the log held Raft entries, is not one).
    pub fn first_raft_index(&self) -> Option<u64> {
        self.raft_index.iter().map(|e| e.index).find(|i| *i > 0)
    }

    fn paths(dir: &Path, base: u64) -> [PathBuf; 4] {
        let [idx, time, raft] = INDEX_EXTENSIONS;
        ["log", idx, time, raft].map(|ext| dir.join(file_name(base, ext)))
    }

    /// Creates an empty (active) segment. The caller syncs the directory.
    pub fn create(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: u64,
        now: Timestamp,
        canary: Option<crate::canary::Canary>,
    ) -> Result<Self, DiskError> {
        let [log, idx, time, raft] = Self::paths(dir, base_offset);
        let log = disk.open(&log, true)?;
        // A leftover file with this name (from a truncated suffix) must not leak old bytes.
        log.set_len(0)?;
        for stale in [idx, time, raft] {
            match disk.remove_file(&stale) {
                Ok(()) | Err(DiskError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Self::empty(base_offset, now, log, disk.clone(), dir, canary))
    }

    fn empty(
        base_offset: u64,
        now: Timestamp,
        log: Arc<dyn DiskFile>,
        disk: Arc<dyn Disk>,
        dir: &Path,
        canary: Option<crate::canary::Canary>,
    ) -> Self {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            allocated: 0,
            max_timestamp: i64::MIN,
            opened_at: now,
            dirty: false,
            file: Some(log),
            disk,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            max_timestamp_relative: 0,
            raft_index: Vec::new(),
            bytes_since_raft_index: 0,
            last_log_id: None,
            in_entry: false,
            canary,
            dir: dir.to_path_buf(),
        }
    }

    /// Opens an existing segment and finds where its valid data ends.
    ///
    /// A sealed segment is scanned from its last index entry that still
    /// points at a valid batch, and its indexes are extended if they fall
    /// short of the data. The active segment is scanned from its start;
    /// everything after the first torn or CRC-failing batch is cut off
    /// (durably), and its indexes are rewritten to match.
    pub fn open(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: u64,
        active: bool,
        recovery_point: Option<u64>,
        config: &super::LogConfig,
        now: Timestamp,
    ) -> Result<(Self, Option<ScanEnd>), LogError> {
        let (seg, end, raft_index_loaded) = Self::open_scanning(disk, dir, base_offset, active, recovery_point, config, now, false)?;
        // A sealed segment holding Raft entries whose `.raftindex` gave
        // nothing usable (lost or damaged; it always has the segment's
        // first entry): rebuild every index by a full scan.
        if !active && !raft_index_loaded && seg.last_log_id.is_some() {
            let (seg, end, _) = Self::open_scanning(disk, dir, base_offset, active, recovery_point, config, now, true)?;
            return Ok((seg, end));
        }
        Ok((seg, end))
    }

    #[allow(clippy::too_many_arguments)]
    fn open_scanning(
        disk: &Arc<dyn Disk>,
        dir: &Path,
        base_offset: u64,
        active: bool,
        recovery_point: Option<u64>,
        config: &super::LogConfig,
        now: Timestamp,
        full_scan: bool,
    ) -> Result<(Self, Option<ScanEnd>, bool), LogError> {
        let [log_path, idx_path, time_path, raft_path] = Self::paths(dir, base_offset);
        let log = disk.open(&log_path, false)?;
        let file_len = log.len()?;
        let mut seg = Self::empty(base_offset, now, log, disk.clone(), dir, config.canary);
        seg.allocated = file_len;
        seg.size = file_len;

        // The active segment's indexes were never synced, and a lost time
        // entry cannot be detected, so they are rebuilt by a full scan
        // (bounded by `segment_bytes_max`). Sealed segments' indexes were
        // synced when sealed and are only checked.
        let trust_files = !active && !full_scan;
        let index_bytes = if trust_files { read_if_exists(&**disk, &idx_path)? } else { Vec::new() };
        let mut entries = OffsetEntry::decode_all(&index_bytes);
        entries.truncate(index::valid_offset_prefix(&entries, file_len));
        // Back off to the last entry that points at a real batch.
        let mut start: Option<(usize, u64, u64)> = None; // (entries kept, position, offset)
        while let Some(last) = entries.last().copied() {
            let want = base_offset + u64::from(last.relative_offset);
            if seg.batch_at(u64::from(last.position), want, config.batch_bytes_max).is_ok() {
                start = Some((entries.len(), u64::from(last.position), want));
                break;
            }
            entries.pop();
        }
        let (position, offset) = start.map(|(_, p, o)| (p, o)).unwrap_or((0, base_offset));
        seg.index = entries;
        let time_bytes = if trust_files { read_if_exists(&**disk, &time_path)? } else { Vec::new() };
        let mut times = TimeEntry::decode_all(&time_bytes);
        times.truncate(index::valid_time_prefix(&times, offset - base_offset + 1));
        times.retain(|t| u64::from(t.relative_offset) <= offset - base_offset);
        if let Some(t) = times.last() {
            seg.max_timestamp = t.timestamp;
            seg.max_timestamp_relative = t.relative_offset;
        }
        seg.time_index = times;
        let raft_bytes = if trust_files { read_if_exists(&**disk, &raft_path)? } else { Vec::new() };
        let mut rafts = RaftEntry::decode_all(&raft_bytes);
        rafts.truncate(index::valid_raft_prefix(&rafts, file_len));
        rafts.retain(|e| u64::from(e.position) <= position);
        while let Some(last) = rafts.last().copied() {
            match seg.header_at(u64::from(last.position)) {
                Ok(Some(h)) if h.raft_index == last.index => break,
                _ => {
                    rafts.pop();
                }
            }
        }
        let raft_index_loaded = !rafts.is_empty();
        seg.raft_index = rafts;
        let index_len_before = seg.index.len();
        let time_len_before = seg.time_index.len();
        let raft_len_before = seg.raft_index.len();

        // Rebuild everything after the start point from the data itself.
        seg.size = position;
        seg.next_offset = offset;
        seg.bytes_since_index = 0;
        seg.bytes_since_raft_index = 0;
        let mut end = seg.scan(position, offset, file_len, config.batch_bytes_max, |seg, header, pos| {
            seg.note_batch(header, pos, config.index_interval_bytes);
        })?;
        end.file_len = file_len;
        seg.size = end.position;
        seg.next_offset = end.next_offset;
        let rebuilt =
            seg.index.len() != index_len_before || seg.time_index.len() != time_len_before || seg.raft_index.len() != raft_len_before;
        if !active
            && (rebuilt
                || end.invalid.is_some()
                || index_bytes.len() != seg.index.len() * OFFSET_ENTRY_LEN
                || time_bytes.len() != seg.time_index.len() * TIME_ENTRY_LEN
                || raft_bytes.len() != seg.raft_index.len() * RAFT_ENTRY_LEN)
        {
            seg.persist_indexes()?;
        }
        if active && end.invalid.is_some() && recovery_point.is_some_and(|rp| end.next_offset < rp) {
            // Damage below the recovery checkpoint is acknowledged data, not
            // a torn write: keep every byte for the operator to decide.
            return Ok((seg, Some(end), raft_index_loaded));
        }
        if active {
            // Cut stale bytes after the valid end so they can never be
            // mistaken for data, and make what was recovered durable.
            let log = seg.log()?;
            if file_len != seg.size {
                log.set_len(seg.size)?;
                seg.allocated = seg.size;
            }
            log.sync_data()?;
            return Ok((seg, end.invalid.is_some().then_some(end), raft_index_loaded));
        }
        seg.file = None;
        let report = if end.invalid.is_some() || end.position != file_len { Some(end) } else { None };
        Ok((seg, report, raft_index_loaded))
    }

    /// The end (next offset) of the last intact batch anywhere at or after
    /// `position`, found by trying every byte as a batch start: after damage
    /// below the recovery checkpoint, intact acknowledged batches may follow
    /// the damaged one, and their offsets must never be handed out again.
    pub fn intact_end_after(&self, position: u64, batch_bytes_max: usize) -> Result<Option<u64>, DiskError> {
        let log = self.log()?;
        let len = log.len()?;
        let mut data = vec![0u8; len.saturating_sub(position) as usize];
        let n = log.read_at(&mut data, position)?;
        data.truncate(n);
        let data = Bytes::from(data);
        let mut best: Option<u64> = None;
        let mut i = 0usize;
        while i + batch::HEADER_LEN_MIN <= data.len() {
            // Cheap filters first: the magic byte and the header's own CRC.
            if batch::header_crc_ok(&data[i..])
                && let Ok(h) = BatchHeader::parse(&data[i..])
                && h.total_len() >= h.header_len()
                && h.total_len() <= batch_bytes_max
                && i + h.total_len() <= data.len()
                && RecordBatch::decode(&data.slice(i..i + h.total_len()), batch_bytes_max).is_ok()
            {
                best = Some(best.map_or(h.next_offset(), |b| b.max(h.next_offset())));
                i += h.total_len();
                continue;
            }
            i += 1;
        }
        Ok(best)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_offset, "log"))
    }

    /// The `.log` file: held while active, opened on demand once sealed.
    pub fn log(&self) -> Result<Arc<dyn DiskFile>, DiskError> {
        match &self.file {
            Some(f) => Ok(f.clone()),
            None => self.disk.open(&self.log_path(), false),
        }
    }

    /// Reads and checks the batch at `pos`, expecting `base_offset`.
    fn batch_at(&self, pos: u64, base_offset: u64, batch_bytes_max: usize) -> Result<RecordBatch, String> {
        let log = self.log().map_err(|e| e.to_string())?;
        let mut head = [0u8; batch::LENGTH_PREFIX_LEN];
        let n = log.read_at(&mut head, pos).map_err(|e| e.to_string())?;
        let total = batch::peek_total_len(&head[..n], batch_bytes_max).map_err(|e| e.to_string())?.ok_or("end of file")?;
        let mut buf = BytesMut::zeroed(total);
        let n = log.read_at(&mut buf, pos).map_err(|e| e.to_string())?;
        if n < total {
            return Err(format!("batch truncated at {n} of {total} bytes"));
        }
        let (batch, _) = RecordBatch::decode(&buf.freeze(), batch_bytes_max).map_err(|e| e.to_string())?;
        if batch.base_offset() != base_offset {
            return Err(format!("expected base offset {base_offset}, found {}", batch.base_offset()));
        }
        Ok(batch)
    }

    /// Walks whole, CRC-valid, offset-contiguous batches from `pos` up to
    /// `limit`, calling `visit` for each; stops at the first that is not. A
    /// run of zero bytes (preallocated space) is a clean end, not an error.
    ///
    /// Batches are visited a whole Raft entry at a time: the end reported is
    /// always an entry boundary, so a torn tail never leaves part of an entry
    /// behind. The batches of one entry share its index, term and node and
    /// count `entry_rest` down to 0; entries' indexes increase (index 0,
    /// data outside Raft, only before any Raft entry).
    fn scan(
        &mut self,
        mut pos: u64,
        mut expected: u64,
        limit: u64,
        batch_bytes_max: usize,
        mut visit: impl FnMut(&mut Self, &BatchHeader, u64),
    ) -> Result<ScanEnd, DiskError> {
        // The batches of the entry being read, not yet visited.
        let mut pending: Vec<(BatchHeader, u64)> = Vec::new();
        let mut entry_start = (pos, expected);
        let mut last_index: Option<u64> = None;
        let end = |pending: &Vec<(BatchHeader, u64)>, start: (u64, u64), position, next_offset, invalid: Option<String>| {
            let Some((h, _)) = pending.last() else {
                return Ok(ScanEnd { position, next_offset, invalid, file_len: 0 });
            };
            // Back off to the start of the incomplete entry.
            let why = format!("Raft entry {} is incomplete ({} more batch(es) expected)", h.raft_index, h.entry_rest);
            Ok(ScanEnd { position: start.0, next_offset: start.1, invalid: Some(invalid.unwrap_or(why)), file_len: 0 })
        };
        let mut buf = Bytes::new();
        let mut buf_pos = pos;
        while pos < limit {
            let mut off = (pos - buf_pos) as usize;
            if buf.len() < off + batch::LENGTH_PREFIX_LEN && buf_pos + (buf.len() as u64) < limit {
                buf = self.read_chunk(pos, (limit - pos).min(SCAN_CHUNK_BYTES as u64) as usize)?;
                buf_pos = pos;
                off = 0;
            }
            let rest = &buf[off.min(buf.len())..];
            if rest.len() < batch::LENGTH_PREFIX_LEN {
                let torn = rest.iter().any(|&b| b != 0);
                return end(&pending, entry_start, pos, expected, torn.then(|| "partial batch header at the end of the file".to_owned()));
            }
            if rest[..batch::LENGTH_PREFIX_LEN].iter().all(|&b| b == 0) {
                return end(&pending, entry_start, pos, expected, None);
            }
            let total = match batch::peek_total_len(rest, batch_bytes_max) {
                Ok(Some(total)) => total,
                Ok(None) => return end(&pending, entry_start, pos, expected, Some("partial batch header".to_owned())),
                Err(e) => return end(&pending, entry_start, pos, expected, Some(e.to_string())),
            };
            if pos + total as u64 > limit {
                return end(&pending, entry_start, pos, expected, Some(format!("batch of {total} bytes runs past the end of the data")));
            }
            if off + total > buf.len() {
                let want = (total as u64).max((limit - pos).min(SCAN_CHUNK_BYTES as u64)) as usize;
                buf = self.read_chunk(pos, want)?;
                buf_pos = pos;
                off = 0;
                if buf.len() < total {
                    return end(&pending, entry_start, pos, expected, Some("short read".to_owned()));
                }
            }
            let header = match self.check(&buf.slice(off..off + total), expected, batch_bytes_max) {
                Ok(header) => header,
                Err(reason) => return end(&pending, entry_start, pos, expected, Some(reason)),
            };
            if let Err(reason) = entry_continues(pending.last().map(|(h, _)| h), last_index, &header) {
                return end(&pending, entry_start, pos, expected, Some(reason));
            }
            if pending.is_empty() {
                entry_start = (pos, expected);
            }
            // An entry is bounded like a batch (see `append_entry`): a longer
            // run is damage, and must not make the scan hold unbounded state.
            if pos + total as u64 - entry_start.0 > batch_bytes_max as u64 {
                let why = format!("Raft entry {} is longer than {batch_bytes_max} bytes", header.raft_index);
                return end(&pending, entry_start, entry_start.0, entry_start.1, Some(why));
            }
            pending.push((header, pos));
            expected = header.next_offset();
            pos += total as u64;
            if header.entry_rest == 0 {
                last_index = Some(header.raft_index);
                for (h, p) in pending.drain(..) {
                    visit(self, &h, p);
                }
            }
        }
        end(&pending, entry_start, pos, expected, None)
    }

    fn read_chunk(&self, pos: u64, len: usize) -> Result<Bytes, DiskError> {
        let mut buf = BytesMut::zeroed(len);
        let n = self.log()?.read_at(&mut buf, pos)?;
        buf.truncate(n);
        Ok(buf.freeze())
    }

    fn check(&self, bytes: &Bytes, expected: u64, batch_bytes_max: usize) -> Result<BatchHeader, String> {
        if crate::canary::on(self.canary, crate::canary::Canary::SkipCrcOnRead) {
            let h = BatchHeader::parse(bytes).map_err(|e| e.to_string())?;
            return if h.base_offset == expected {
                Ok(h)
            } else {
                Err(format!("expected base offset {expected}, found {}", h.base_offset))
            };
        }
        let (batch, _) = RecordBatch::decode(bytes, batch_bytes_max).map_err(|e: BatchError| e.to_string())?;
        let h = *batch.header();
        if h.base_offset != expected {
            return Err(format!("expected base offset {expected}, found {}", h.base_offset));
        }
        if h.last_offset_delta != h.record_count.saturating_sub(1) {
            return Err("last_offset_delta disagrees with record_count".to_owned());
        }
        Ok(h)
    }

    /// Records a batch just placed at `pos` in the in-memory indexes and the
    /// segment's counters; returns the index entries to persist.
    fn note_batch(&mut self, h: &BatchHeader, pos: u64, interval: u64) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let relative = (h.base_offset - self.base_offset) as u32;
        let len = h.total_len() as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_relative = relative;
        }
        let mut added = (None, None);
        // Index entries point only at entry starts, and offsets in `.index`
        // strictly increase (a control batch shares the next batch's offset).
        let entry_start = !self.in_entry;
        let newer = self.index.last().is_none_or(|e| relative > e.relative_offset);
        if h.raft_index != 0 {
            if entry_start && (self.raft_index.is_empty() || self.bytes_since_raft_index >= interval) {
                if self.raft_index.last().is_none_or(|e| h.raft_index > e.index && pos > u64::from(e.position)) {
                    self.raft_index.push(RaftEntry { index: h.raft_index, position: pos as u32 });
                }
                self.bytes_since_raft_index = 0;
            }
            self.bytes_since_raft_index += len;
        }
        self.in_entry = h.entry_rest > 0;
        if let Some(id) = LogId::of(h) {
            self.last_log_id = Some(id);
        }
        if self.bytes_since_index >= interval && pos > 0 && entry_start && newer {
            let entry = OffsetEntry { relative_offset: relative, position: pos as u32 };
            self.index.push(entry);
            added.0 = Some(entry);
            if self.time_index.last().is_none_or(|t| t.timestamp < self.max_timestamp) && self.max_timestamp > i64::MIN {
                let t = TimeEntry { timestamp: self.max_timestamp, relative_offset: self.max_timestamp_relative };
                if self.time_index.last().is_none_or(|l| l.relative_offset < t.relative_offset) {
                    self.time_index.push(t);
                    added.1 = Some(t);
                }
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.next_offset = h.next_offset();
        self.size = pos + len;
        added
    }

    /// Writes `parts` (one or more whole stamped batches, in order, whose
    /// headers are `headers`) at the end. Volatile until the file is synced.
    pub fn append(&mut self, parts: &[&[u8]], headers: &[BatchHeader], config: &super::LogConfig) -> Result<(), DiskError> {
        let pos = self.size;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let end = pos + total as u64;
        let log = self.log()?;
        // Control batches alone (Raft's blank and membership entries, which
        // every new partition writes) reserve nothing: 10,000 idle
        // partitions must not reserve 10,000 preallocations.
        let data = headers.iter().any(|h| !h.is_control());
        if config.preallocate_bytes > 0 && end > self.allocated && data {
            let target = end.max(self.allocated + config.preallocate_bytes).min(config.segment_bytes_max.max(end));
            match log.preallocate(target) {
                Ok(()) => self.allocated = target,
                // Short of space: reserve only what this batch needs, so the
                // last free bytes still take data instead of a reservation.
                Err(DiskError::NoSpace(_)) if target > end => {
                    log.preallocate(end)?;
                    self.allocated = end;
                }
                Err(e) => return Err(e),
            }
        }
        if total <= SMALL_BATCH_BYTES {
            // One write for small batches: a copy is cheaper than a syscall.
            let mut whole = Vec::with_capacity(total);
            for p in parts {
                whole.extend_from_slice(p);
            }
            log.write_at(&whole, pos)?;
        } else {
            let mut at = pos;
            for p in parts {
                log.write_at(p, at)?;
                at += p.len() as u64;
            }
        }
        // Index entries are kept in memory and written at seal.
        let mut at = pos;
        for h in headers {
            self.note_batch(h, at, config.index_interval_bytes);
            at += h.total_len() as u64;
        }
        debug_assert_eq!(at, end, "headers describe the parts written");
        self.dirty = true;
        Ok(())
    }

    /// Writes both index files whole from memory, cut to the entries held,
    /// and syncs them. Written to a fresh name and renamed over, so a crash
    /// part-way leaves the old file or the new one, never a mix.
    fn persist_indexes(&self) -> Result<(), DiskError> {
        let [_, idx, time, raft] = Self::paths(&self.dir, self.base_offset);
        let offsets: Vec<u8> = self.index.iter().flat_map(|e| e.encode()).collect();
        let times: Vec<u8> = self.time_index.iter().flat_map(|e| e.encode()).collect();
        let rafts: Vec<u8> = self.raft_index.iter().flat_map(|e| e.encode()).collect();
        for (path, bytes) in [(idx, offsets), (time, times), (raft, rafts)] {
            let f = self.disk.open(&path, true)?;
            f.set_len(0)?;
            f.write_at(&bytes, 0)?;
            f.sync_data()?;
        }
        Ok(())
    }

    /// Seals the segment: trims preallocated space, makes data and indexes
    /// durable. After this the file length is the data length.
    pub fn seal(&mut self) -> Result<(), DiskError> {
        // A last time entry at the segment's maximum makes the time index
        // alone tell the segment's newest timestamp after a restart.
        let t = TimeEntry { timestamp: self.max_timestamp, relative_offset: self.max_timestamp_relative };
        if self.max_timestamp > i64::MIN
            && self.time_index.last().is_none_or(|l| l.timestamp < t.timestamp && l.relative_offset < t.relative_offset)
        {
            self.time_index.push(t);
        }
        let log = self.log()?;
        if self.allocated != self.size {
            log.set_len(self.size)?;
            self.allocated = self.size;
        }
        log.sync_data()?;
        self.dirty = false;
        self.persist_indexes()?;
        // Sealed: the descriptor goes back; reads open the file on demand.
        self.file = None;
        Ok(())
    }

    /// Position of the batch whose base offset is `offset`, if there is one.
    pub fn position_of(&self, offset: u64, batch_bytes_max: usize) -> Result<Option<u64>, DiskError> {
        if offset == self.next_offset {
            return Ok(Some(self.size));
        }
        let mut pos = u64::from(index::floor_position(&self.index, (offset - self.base_offset) as u32));
        while pos < self.size {
            let h = self.header_at(pos)?;
            let Some(h) = h else { return Ok(None) };
            if h.base_offset == offset {
                return Ok(Some(pos));
            }
            if h.base_offset > offset || h.total_len() > batch_bytes_max {
                return Ok(None);
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// The largest record timestamp held and the base offset of the batch
    /// holding it (`None`: empty).
    pub fn max_timestamp_batch(&self) -> Option<(i64, u64)> {
        (self.next_offset > self.base_offset && self.max_timestamp != i64::MIN)
            .then(|| (self.max_timestamp, self.base_offset + u64::from(self.max_timestamp_relative)))
    }

    fn header_at(&self, pos: u64) -> Result<Option<BatchHeader>, DiskError> {
        let mut head = [0u8; HEADER_LEN];
        let n = self.log()?.read_at(&mut head, pos)?;
        Ok(BatchHeader::parse(&head[..n]).ok())
    }

    /// Cuts the segment so that `offset` (a batch boundary at `pos`) is its
    /// end, durably, and drops index entries past it.
    pub fn truncate_to(&mut self, offset: u64, pos: u64) -> Result<(), DiskError> {
        // The segment is (again) the active one: it holds its file.
        let log = self.log()?;
        log.set_len(pos)?;
        log.sync_data()?;
        self.file = Some(log);
        self.allocated = pos;
        self.size = pos;
        self.next_offset = offset;
        self.index.retain(|e| u64::from(e.position) < pos);
        self.time_index.retain(|e| u64::from(e.relative_offset) < offset - self.base_offset);
        self.raft_index.retain(|e| u64::from(e.position) < pos);
        self.max_timestamp = self.time_index.last().map_or(i64::MIN, |t| t.timestamp);
        self.max_timestamp_relative = self.time_index.last().map_or(0, |t| t.relative_offset);
        self.bytes_since_index = 0;
        self.bytes_since_raft_index = 0;
        self.dirty = false;
        self.last_log_id = None;
        self.in_entry = false;
        // The truncated batches may have held a larger max timestamp than any
        // index entry remembers, and the last Raft entry changed: recompute
        // both from the batches that remain (from the earliest of the last
        // offset and Raft index entries: earlier batches are older).
        let from_offsets = self.index.last().map_or(0, |e| u64::from(e.position));
        let from_rafts = self.raft_index.last().map_or(0, |e| u64::from(e.position));
        let mut p = from_offsets.min(from_rafts);
        while p < self.size {
            let Some(h) = self.header_at(p)? else { break };
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.max_timestamp_relative = (h.base_offset - self.base_offset) as u32;
            }
            if let Some(id) = LogId::of(&h) {
                self.last_log_id = Some(id);
            }
            p += h.total_len() as u64;
        }
        Ok(())
    }

    /// Position and base offset of the first batch of the first Raft entry
    /// whose index is at least `index`, if this segment holds one.
    pub fn entry_position(&self, index: u64, batch_bytes_max: usize) -> Result<Option<(u64, u64)>, LogError> {
        if self.last_log_id.is_none_or(|l| l.index < index) {
            return Ok(None);
        }
        let log = self.log()?;
        let mut pos = u64::from(index::raft_floor_position(&self.raft_index, index));
        let mut expected: Option<u64> = None;
        while pos < self.size {
            let h = self.checked_header_at(&*log, pos, expected, batch_bytes_max)?;
            if h.raft_index >= index {
                return Ok(Some((pos, h.base_offset)));
            }
            expected = Some(h.next_offset());
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// A header whose own CRC holds (and whose base offset is `expected`,
    /// if given); anything else is reported as corruption.
    ///
    /// The header fields before the CRC (the base offset among them) are
    /// not covered by the body CRC: a walk checks each header against the
    /// offset it expects, so a damaged header is reported instead of served
    /// at the wrong offsets.
    fn checked_header_at(
        &self,
        log: &dyn DiskFile,
        pos: u64,
        expected: Option<u64>,
        batch_bytes_max: usize,
    ) -> Result<BatchHeader, LogError> {
        self.checked_head_at(log, pos, expected, batch_bytes_max).map(|(h, _)| h)
    }

    /// As [`Segment::checked_header_at`], with the header's bytes.
    fn checked_head_at(
        &self,
        log: &dyn DiskFile,
        pos: u64,
        expected: Option<u64>,
        batch_bytes_max: usize,
    ) -> Result<(BatchHeader, [u8; HEADER_LEN]), LogError> {
        let mut head = [0u8; HEADER_LEN];
        let n = log.read_at(&mut head, pos)?;
        let at = expected.unwrap_or(self.base_offset);
        let Ok(h) = BatchHeader::parse(&head[..n]) else {
            return Err(self.corrupt(pos, at, "unreadable batch header".to_owned()));
        };
        if h.total_len() > batch_bytes_max || h.total_len() < h.header_len() {
            return Err(self.corrupt(pos, at, format!("batch length {} is invalid", h.batch_length)));
        }
        if expected.is_some_and(|e| e != h.base_offset) {
            return Err(self.corrupt(pos, at, format!("batch header says base offset {}, expected {at}", h.base_offset)));
        }
        if !batch::header_crc_ok(&head[..n]) {
            return Err(self.corrupt(pos, at, "batch header CRC mismatch".to_owned()));
        }
        Ok((h, head))
    }

    /// An entry's batches with data batches cut to their (CRC-checked)
    /// headers; control batches are small and read whole, CRC-checked.
    /// The walk already read (and checked) every header: only control
    /// batches are read again, whole, and data batches come with their
    /// producer fields forgotten (the header CRC does not cover them),
    /// unless `verify`: then data batches are
    /// read whole too, and one whose CRC fails comes with its producer
    /// fields forgotten ([`batch::forget_producer`]), its offsets kept (the
    /// header CRC vouches for them), so applying it moves past it while
    /// reads of it keep reporting the damage.
    fn read_heads(
        &self,
        log: &dyn DiskFile,
        walk: &[(u64, BatchHeader, [u8; HEADER_LEN])],
        batch_bytes_max: usize,
        verify: bool,
    ) -> Result<Bytes, LogError> {
        let mut buf = BytesMut::new();
        for (p, h, head) in walk {
            if !h.is_control() {
                let mut head = *head;
                if !verify {
                    // Unverified producer fields are never handed out.
                    batch::forget_producer(&mut head);
                } else {
                    let mut whole = BytesMut::zeroed(h.total_len());
                    let n = log.read_at(&mut whole, *p)?;
                    let checked = if n < h.total_len() {
                        Err("batch truncated".to_owned())
                    } else {
                        self.check(&whole.freeze(), h.base_offset, batch_bytes_max).map(|_| ())
                    };
                    if let Err(reason) = checked {
                        tracing::error!(segment = self.base_offset, position = *p, offset = h.base_offset, %reason, "a damaged batch is applied without its producer fields");
                        batch::forget_producer(&mut head);
                    }
                }
                buf.extend_from_slice(&head[..h.header_len()]);
                continue;
            }
            let start = buf.len();
            buf.resize(start + h.total_len(), 0);
            let n = log.read_at(&mut buf[start..], *p)?;
            if n < h.total_len() {
                return Err(self.corrupt(*p, h.base_offset, format!("batch at offset {} truncated", h.base_offset)));
            }
            let whole = Bytes::copy_from_slice(&buf[start..]);
            self.check(&whole, h.base_offset, batch_bytes_max).map_err(|reason| self.corrupt(*p, h.base_offset, reason))?;
        }
        Ok(buf.freeze())
    }

    /// Appends to `out` the whole Raft entries of this segment with indexes
    /// in `from..to`, in order, each CRC-checked, while `budget` bytes last
    /// (the first entry of a read is taken whole whatever its size). Returns
    /// true when the read is complete: `to` was reached or the budget spent.
    pub fn read_entries(
        &self,
        from: u64,
        to: u64,
        budget: &mut usize,
        batch_bytes_max: usize,
        read: EntryRead,
        out: &mut Vec<Entry>,
    ) -> Result<bool, LogError> {
        let Some((mut pos, mut offset)) = self.entry_position(from, batch_bytes_max)? else { return Ok(false) };
        let log = self.log()?;
        while pos < self.size {
            // Find the entry's extent from its headers, then read it whole.
            let (first, first_head) = self.checked_head_at(&*log, pos, Some(offset), batch_bytes_max)?;
            if first.raft_index >= to {
                return Ok(true);
            }
            let mut len = first.total_len() as u64;
            let mut last = first;
            let mut walk = vec![(pos, first, first_head)];
            while last.entry_rest > 0 {
                let (h, head) = self.checked_head_at(&*log, pos + len, Some(last.next_offset()), batch_bytes_max)?;
                last = h;
                walk.push((pos + len, last, head));
                len += last.total_len() as u64;
            }
            if read != EntryRead::Whole {
                let heads = self.read_heads(&*log, &walk, batch_bytes_max, read == EntryRead::CheckedHeads)?;
                *budget = budget.saturating_sub(heads.len());
                out.push(Entry {
                    log_id: LogId::of(&first).expect("entries are read only from Raft indexes"),
                    batches: heads,
                    base_offset: offset,
                    next_offset: last.next_offset(),
                });
                pos += len;
                offset = last.next_offset();
                if *budget == 0 {
                    return Ok(true);
                }
                continue;
            }
            if !out.is_empty() && len as usize > *budget {
                return Ok(true);
            }
            let mut buf = BytesMut::zeroed(len as usize);
            let n = log.read_at(&mut buf, pos)?;
            if (n as u64) < len {
                return Err(self.corrupt(pos, offset, format!("Raft entry {} truncated at {n} of {len} bytes", first.raft_index)));
            }
            let bytes = buf.freeze();
            let mut at = 0usize;
            let mut expected = offset;
            while at < bytes.len() {
                let total = batch::peek_total_len(&bytes[at..], batch_bytes_max)
                    .map_err(|e| self.corrupt(pos + at as u64, expected, e.to_string()))?
                    .ok_or_else(|| self.corrupt(pos + at as u64, expected, "partial batch".to_owned()))?;
                let h = self
                    .check(&bytes.slice(at..(at + total).min(bytes.len())), expected, batch_bytes_max)
                    .map_err(|reason| self.corrupt(pos + at as u64, expected, reason))?;
                if h.raft_index != first.raft_index {
                    return Err(self.corrupt(pos + at as u64, expected, "a batch of the entry changed under the read".to_owned()));
                }
                expected = h.next_offset();
                at += total;
            }
            *budget = budget.saturating_sub(len as usize);
            out.push(Entry {
                log_id: LogId::of(&first).expect("entries are read only from Raft indexes"),
                batches: bytes,
                base_offset: offset,
                next_offset: expected,
            });
            pos += len;
            offset = expected;
            if *budget == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (but always the first batch whole), stopping before any
    /// batch that reaches past `upper`. Returns `None` if this segment has
    /// nothing at or after `offset` below `upper`.
    pub fn read(&self, offset: u64, max_bytes: usize, upper: u64, batch_bytes_max: usize) -> Result<Option<(Bytes, u64)>, LogError> {
        // A read from below this segment (across an accepted loss) starts at its base.
        let offset = offset.max(self.base_offset);
        if offset >= self.next_offset || offset >= upper {
            return Ok(None);
        }
        let floor = index::floor_entry(&self.index, (offset - self.base_offset) as u32);
        let log = self.log()?;
        let mut pos = u64::from(floor.position);
        // Each header is checked against the offset the walk expects,
        // starting from what the index says (see `checked_header_at`).
        let mut expected = self.base_offset + u64::from(floor.relative_offset);
        let first = loop {
            if pos >= self.size {
                // `offset` is below `next_offset`, so it is in this segment:
                // walking off the end means a damaged length sent us astray.
                return Err(self.corrupt(pos, expected, format!("offset {offset} not found before the end of the segment")));
            }
            let h = self.checked_header_at(&*log, pos, Some(expected), batch_bytes_max)?;
            expected = h.next_offset();
            if h.next_offset() > offset {
                break h;
            }
            pos += h.total_len() as u64;
        };
        // `first`'s record count is not trusted until its CRC is checked
        // below: a damaged count must not make the batch look past `upper`.
        let avail = self.size - pos;
        let want = (max_bytes as u64).max(first.total_len() as u64).min(avail) as usize;
        let mut buf = BytesMut::zeroed(want);
        let n = log.read_at(&mut buf, pos)?;
        buf.truncate(n);
        let buf = buf.freeze();
        let mut at = 0usize;
        let mut expected = first.base_offset;
        while at < buf.len() {
            let Ok(Some(total)) = batch::peek_total_len(&buf[at..], batch_bytes_max) else { break };
            if at + total > buf.len() {
                break;
            }
            let header = match self.check(&buf.slice(at..at + total), expected, batch_bytes_max) {
                Ok(h) => h,
                Err(reason) if at == 0 => return Err(self.corrupt(pos, expected, reason)),
                // Serve the good prefix; the next read reports the bad batch.
                Err(_) => break,
            };
            if header.next_offset() > upper {
                if at == 0 {
                    return Ok(None);
                }
                break;
            }
            expected = header.next_offset();
            at += total;
        }
        if at == 0 {
            return Err(self.corrupt(pos, expected, "first batch could not be read whole".to_owned()));
        }
        Ok(Some((buf.slice(..at), expected)))
    }

    fn corrupt(&self, position: u64, offset: u64, reason: String) -> LogError {
        LogError::Corruption { segment: self.dir.join(file_name(self.base_offset, "log")), position, offset, reason }
    }

    /// First offset in this segment whose record timestamp is ≥ `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64, batch_bytes_max: usize) -> Result<Option<u64>, LogError> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start = self.base_offset + u64::from(index::time_floor(&self.time_index, timestamp));
        let mut offset = start;
        while offset < self.next_offset {
            let Some((bytes, next)) = self.read(offset, 1 << 20, u64::MAX, batch_bytes_max)? else { break };
            for batch in batch::decode_all(bytes, batch_bytes_max) {
                let batch = batch.map_err(|e| self.corrupt(0, offset, e.to_string()))?;
                if batch.header().max_timestamp < timestamp {
                    continue;
                }
                let first_ts = batch.header().first_timestamp;
                for record in batch.records() {
                    let record = record.map_err(|e| self.corrupt(0, batch.base_offset(), e.to_string()))?;
                    let at = batch.base_offset() + u64::from(record.offset_delta);
                    if at >= offset && record.timestamp(first_ts) >= timestamp {
                        return Ok(Some(at));
                    }
                }
            }
            offset = next;
        }
        Ok(None)
    }

    pub fn remove_files(&self, disk: &dyn Disk) -> Result<(), DiskError> {
        for path in Self::paths(&self.dir, self.base_offset) {
            match disk.remove_file(&path) {
                Ok(()) | Err(DiskError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sparse offset index entries held (for tests of index maintenance).
    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    /// Holds no records (only control batches, or nothing): rolling it would
    /// create a segment with the same base offset, and so the same file name.
    pub fn holds_no_records(&self) -> bool {
        self.next_offset == self.base_offset
    }
}

/// Whether `h` may follow `prev` (the previous batch of an unfinished
/// entry, if any) given the last whole entry's index `last_index`.
fn entry_continues(prev: Option<&BatchHeader>, last_index: Option<u64>, h: &BatchHeader) -> Result<(), String> {
    if let Some(p) = prev {
        if h.raft_index != p.raft_index || h.leader_epoch != p.leader_epoch || h.leader_node != p.leader_node {
            return Err(format!("Raft entry {} is cut short: the next batch belongs to entry {}", p.raft_index, h.raft_index));
        }
        if p.entry_rest.checked_sub(1) != Some(h.entry_rest) {
            return Err(format!("Raft entry {} counts {} batch(es) left after {}", p.raft_index, h.entry_rest, p.entry_rest));
        }
        return Ok(());
    }
    if h.raft_index == 0 && h.entry_rest != 0 {
        return Err("a batch outside Raft claims more batches in its entry".to_owned());
    }
    match last_index {
        Some(last) if h.raft_index == 0 && last != 0 => Err(format!("a batch outside Raft follows Raft entry {last}")),
        Some(last) if h.raft_index != 0 && h.raft_index <= last => {
            Err(format!("Raft entry {} follows entry {last}: indexes must increase", h.raft_index))
        }
        _ => Ok(()),
    }
}

/// A whole small file, or nothing if it does not exist.
fn read_if_exists(disk: &dyn Disk, path: &Path) -> Result<Vec<u8>, DiskError> {
    let file = match disk.open(path, false) {
        Ok(f) => f,
        Err(DiskError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.len()? as usize;
    let mut buf = vec![0; len];
    let n = file.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}
