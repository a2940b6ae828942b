//! The partition log: an ordered sequence of segments holding record batches
//! at dense offsets.
//!
//! Files in a partition directory: `{base_offset:020}.log` (batches),
//! `.index` (sparse offset → position) and `.timeindex` (sparse max timestamp
//! → offset) per segment. The last segment is the active one; older segments
//! are sealed: trimmed to their data, synced, never written again.
//!
//! Durability: [`PartitionLog::append`] only writes to the page cache.
//! [`PartitionLog::flush`] (or the split [`PartitionLog::begin_flush`] /
//! [`FlushJob::run`] / [`PartitionLog::complete_flush`], which lets the sync
//! run elsewhere while appends continue) makes everything appended before it
//! durable and reports up to which offset: one sync serves every producer
//! whose batch was appended before it (group commit). A failed sync poisons
//! the log (the kernel may have dropped the dirty pages): it must be reopened.
//!
//! Raft log storage (ARCHITECTURE.md §6): the log is also addressed by Raft
//! index. An **entry** is one or more batches stamped with one index
//! ([`PartitionLog::append_entry`], one write per entry); recovery never
//! keeps part of one. A sparse `.raftindex` per segment finds an index;
//! on it sit [`PartitionLog::entries`], [`PartitionLog::last_log_id`],
//! [`PartitionLog::truncate_entries`] and [`PartitionLog::purge_entries`].
//! Control batches (blank and membership entries) take no offsets. A log can
//! be reset to start at any offset ([`PartitionLog::reset`], a follower
//! installing a snapshot). The vote, the committed and the last purged log
//! id live in small files beside the segments ([`raft_state`]).
//!
//! Flushes may overlap: a flush reports durable only what every flush
//! begun before it has also made durable, so a later, faster sync never
//! claims data an earlier, slower one is still writing.

pub mod checkpoint;
mod index;
pub mod raft_state;
mod segment;

#[cfg(test)]
mod raft_tests;
#[cfg(test)]
mod tests;

use crate::Timestamp;
use crate::batch::{self, BatchError, BatchHeader};
use crate::disk::{Disk, DiskError, DiskFile};
use bytes::Bytes;
use segment::{EntryRead, Segment};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

pub use crate::batch::RaftStamp;
pub use raft_state::{Reset, Vote};
pub use segment::ScanEnd;

/// Limits and policies of one partition log. Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before the active one would exceed this.
    pub segment_bytes_max: u64,
    /// Roll when the active segment has been open this long (ms); 0 = never.
    pub segment_age_max_ms: i64,
    /// Add a sparse index entry after at least this many bytes of batches.
    pub index_interval_bytes: u64,
    /// Delete old segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this (ms).
    pub retention_ms: Option<i64>,
    /// Largest batch accepted or read back.
    pub batch_bytes_max: usize,
    /// Grow the active file in steps of this many bytes so a sync needs no
    /// size change (0 = grow with each write).
    pub preallocate_bytes: u64,
    /// Refuse batches whose newest record is stamped more than this far
    /// ahead of the broker's clock (Kafka's `message.timestamp.after.max.ms`):
    /// one record from the year 9999 would stop time retention forever.
    /// `None`: no bound.
    pub timestamp_after_max_ms: Option<i64>,
    /// A deliberate bug for the simulator's canary tests (see `canary`).
    pub canary: Option<crate::canary::Canary>,
}

impl LogConfig {
    /// Refuses a batch stamped further ahead of `now` than
    /// `timestamp_after_max_ms` (it would pin time-based retention and the
    /// time index). Checked where a batch is admitted, never where a
    /// replica appends one (its clock is not the leader's).
    pub fn check_timestamp(&self, header: &BatchHeader, now: Timestamp) -> Result<(), LogError> {
        match self.timestamp_after_max_ms {
            Some(limit_ms) if header.max_timestamp.saturating_sub(now.as_millis()) > limit_ms => {
                Err(LogError::TimestampOutOfRange { max_timestamp: header.max_timestamp, now: now.as_millis(), limit_ms })
            }
            _ => Ok(()),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 256 << 20,
            segment_age_max_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            batch_bytes_max: 16 << 20,
            preallocate_bytes: 32 << 20,
            timestamp_after_max_ms: Some(3600 * 1000),
            canary: None,
        }
    }
}

/// Errors of the partition log. `Disk` and `Failed` are storage faults;
/// the others are the caller's or the data's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    /// The requested offset is outside `start..=end`.
    #[error("offset {offset} is out of range: the log holds offsets {start}..{end}")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    /// A stored batch failed its CRC or framing; it is never served as data.
    #[error("corrupt data in {segment:?} at position {position} (offset {offset}): {reason}")]
    Corruption { segment: PathBuf, position: u64, offset: u64, reason: String },
    /// The batch handed to append is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A record is stamped too far ahead of the broker's clock.
    #[error(
        "record timestamp {max_timestamp} is {} ms ahead of the broker's clock ({now}), more than the {limit_ms} ms allowed: fix the producer's clock, or raise timestamp_after_max_ms",
        max_timestamp - now
    )]
    TimestampOutOfRange { max_timestamp: i64, now: i64, limit_ms: i64 },
    /// The batch is larger than `batch_bytes_max`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    /// Truncation must land on a batch boundary.
    #[error("offset {0} is not the start of a batch: cannot truncate there")]
    NotBatchBoundary(u64),
    /// The disk failed.
    #[error("storage error: {0}")]
    Disk(#[from] DiskError),
    /// A sync failed earlier; durability can no longer be promised until the
    /// log is reopened (which re-reads what really reached the disk).
    #[error("log is failed after an earlier storage error ({0}); reopen it")]
    Failed(String),
    /// Recovery found acknowledged data damaged or missing: the log refuses
    /// writes, and reads at or past the loss, until the loss is accepted.
    #[error("partition is offline: {0}")]
    Offline(Loss),
    /// A Raft entry out of order (its index does not follow the last), or a
    /// plain append to a log of Raft entries.
    #[error("Raft log order: {0}")]
    RaftOrder(String),
}

impl LogError {
    /// True for faults of the storage (the disk, damaged data, an offline
    /// log) rather than of the caller's request.
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, LogError::Disk(_) | LogError::Failed(_) | LogError::Corruption { .. } | LogError::Offline(_))
    }
}

/// Acknowledged data that recovery found damaged or missing: offsets
/// `from..to` (`to` is the recovery checkpoint or the next segment's base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The segment file where the valid data ends (or the missing one).
    pub file: PathBuf,
    /// Byte position in `file` where the damage starts.
    pub position: u64,
    pub from: u64,
    pub to: u64,
    pub reason: String,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged offsets {}..{} ({} record(s)) are damaged or missing in {} at byte {}: {}; \
             nothing was cut. To accept the loss and bring the partition back, stop the broker and run \
             `weir accept-loss` (see the README)",
            self.from,
            self.to,
            self.to - self.from,
            self.file.display(),
            self.position,
            self.reason
        )
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    /// Offset after the batch's last record.
    pub next_offset: u64,
    pub max_timestamp: i64,
}

/// A Raft log id as the log stores it: the term and node of the leader
/// that created the entry, and the entry's index (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LogId {
    pub term: u64,
    pub node: u32,
    pub index: u64,
}

impl LogId {
    /// The log id a batch header is stamped with (`None` outside Raft).
    pub fn of(h: &BatchHeader) -> Option<LogId> {
        (h.raft_index != 0).then_some(LogId { term: h.leader_epoch, node: h.leader_node, index: h.raft_index })
    }
}

/// One Raft entry read back: its whole stamped batches, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub log_id: LogId,
    pub batches: Bytes,
    /// Offset of the first record (the next one, for control-only entries).
    pub base_offset: u64,
    /// Offset after the entry's last record.
    pub next_offset: u64,
}

/// A flush that has begun and not yet been completed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    up_to: u64,
    log_id: Option<LogId>,
    done: bool,
}

/// Whole batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches; the first one holds the requested offset (and may
    /// start before it).
    pub bytes: Bytes,
    /// Offset after the last batch returned; where the next read continues.
    pub next_offset: u64,
}

/// What recovery found when the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Bytes cut from the active segment's tail (torn or failing CRC).
    pub truncated_bytes: u64,
    /// Why the active segment's tail was cut, if it was.
    pub truncated_reason: Option<String>,
    /// Sealed segments whose data did not scan cleanly: served up to the
    /// fault, which reads then report as corruption.
    pub damaged_segments: Vec<u64>,
    /// Stray files removed (an index without its log, a partial segment).
    pub removed_files: Vec<String>,
    /// Acknowledged data found damaged or missing: the log is offline.
    pub loss: Option<Loss>,
}

/// What [`PartitionLog::accept_loss`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedLoss {
    pub loss: Loss,
    /// Where the damaged bytes were copied.
    pub saved_to: PathBuf,
    pub saved_bytes: u64,
    /// The offset the next append gets (never one that was acknowledged).
    pub next_offset: u64,
}

/// A sync to run outside the log (possibly on another thread), covering
/// everything appended before [`PartitionLog::begin_flush`].
#[derive(Debug)]
pub struct FlushJob {
    files: Vec<Arc<dyn DiskFile>>,
    up_to: u64,
    seq: u64,
    /// Every so often the job also records `up_to` in the checkpoint file
    /// once the data is synced (and, less often, syncs it).
    checkpoint: Option<CheckpointWrite>,
}

#[derive(Debug)]
struct CheckpointWrite {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    log_start: u64,
    sync: bool,
    shared: Arc<Mutex<CheckpointState>>,
    /// `CheckpointState::generation` when the job began.
    generation: u64,
}

/// What the checkpoint file holds, shared by the log and its flush jobs
/// (which write it on other threads). Every write by the log itself (a roll,
/// a truncation, a purge, retention, a reset, a clean close) bumps the
/// generation, and a job writes only if the generation is the one it began
/// in: a job that began before a truncation or a reset never writes its
/// stale recovery point over the newer one.
#[derive(Debug, Default)]
struct CheckpointState {
    generation: u64,
    /// The recovery point last written (maybe not yet synced).
    written: u64,
}

impl FlushJob {
    /// Syncs the files, then (sometimes) writes the checkpoint. Blocking IO,
    /// run without the log's lock. The checkpoint write is best effort: one
    /// that fails only leaves it lagging, which is safe.
    pub fn run(&self) -> Result<(), DiskError> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some(c) = &self.checkpoint {
            let mut shared = c.shared.lock().unwrap_or_else(|p| p.into_inner());
            if shared.generation != c.generation {
                return Ok(()); // the log moved on (truncated, reset, rolled): not ours to record
            }
            let cp = checkpoint::Checkpoint { recovery_point: self.up_to, log_start: c.log_start };
            match checkpoint::write(&*c.disk, &c.dir, cp, c.sync) {
                Ok(()) => shared.written = shared.written.max(self.up_to),
                Err(e) => tracing::debug!(error = %e, "recovery checkpoint not updated"),
            }
        }
        Ok(())
    }

    /// Offsets below this are durable once `run` succeeds and every flush
    /// begun before this one has completed.
    pub fn up_to(&self) -> u64 {
        self.up_to
    }
}

/// Result of a retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// One partition's log. See the module documentation.
#[derive(Debug)]
pub struct PartitionLog {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<u64, Segment>,
    flushed: u64,
    failed: Option<String>,
    /// The checkpoint file's state, shared with flush jobs.
    checkpoint: Arc<Mutex<CheckpointState>>,
    flushes_since_checkpoint_sync: u32,
    loss: Option<Loss>,
    /// Flushes begun and not yet completed, oldest first.
    in_flight: VecDeque<InFlight>,
    next_flush_seq: u64,
    /// The last Raft entry known durable.
    flushed_log_id: Option<LogId>,
    /// The last Raft entry purged (covered by a snapshot).
    purged: Option<LogId>,
    vote: Option<Vote>,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir` and recovers it: see
    /// [`RecoveryReport`]. After open everything present is durable.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path, config: LogConfig, now: Timestamp) -> Result<(Self, RecoveryReport), LogError> {
        assert!(config.segment_bytes_max + config.batch_bytes_max as u64 <= u64::from(u32::MAX), "segment positions must fit u32 indexes");
        crate::disk::create_dir_durably(&*disk, dir)?;
        if let Some(reset) = raft_state::read_reset(&*disk, dir)? {
            // A reset was interrupted: finish it before looking at segments.
            tracing::warn!(dir = %dir.display(), start = reset.start_offset, "finishing an interrupted log reset");
            finish_reset(&*disk, dir, &reset)?;
        }
        let vote = raft_state::read_vote(&*disk, dir)?;
        let purged = raft_state::read_purged(&*disk, dir)?;
        let mut report = RecoveryReport::default();
        let checkpoint_path = dir.join(checkpoint::FILE);
        let saved = match disk.open(&checkpoint_path, false) {
            Ok(f) => checkpoint::read(&*f, &checkpoint_path)?,
            Err(DiskError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let recovery_point = saved.map(|c| c.recovery_point);
        let accepted = checkpoint::accepted_losses(&*disk, dir)?;
        let names = disk.list_dir(dir)?;
        let mut bases: Vec<u64> = names.iter().filter_map(|n| segment::parse_log_name(n)).collect();
        bases.sort_unstable();
        // Index files without their log belong to a segment that was deleted
        // or never fully created.
        for name in &names {
            let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
            let is_index = segment::is_index_file(name);
            if is_index && !bases.iter().any(|b| segment::file_name(*b, "log").starts_with(stem)) {
                disk.remove_file(&dir.join(name))?;
                report.removed_files.push(name.clone());
            }
        }
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (mut seg, scan) = Segment::open(&disk, dir, base, active, recovery_point, &config, now)?;
            if let Some(scan) = scan {
                if active && recovery_point.is_some_and(|rp| scan.next_offset < rp) {
                    // Intact batches after the damage were acknowledged too
                    // (the checkpoint may lag): the loss runs to the last of them.
                    let rp = recovery_point.expect("checked");
                    let intact = seg.intact_end_after(scan.position, config.batch_bytes_max)?.unwrap_or(0);
                    report.loss = Some(Loss {
                        file: dir.join(segment::file_name(base, "log")),
                        position: scan.position,
                        from: scan.next_offset,
                        to: rp.max(intact),
                        reason: scan.invalid.clone().unwrap_or_else(|| "the data ends early".to_owned()),
                    });
                } else if active {
                    report.truncated_bytes = scan.file_len - scan.position;
                    report.truncated_reason = scan.invalid.clone();
                    tracing::warn!(dir = %dir.display(), segment = base, position = scan.position, reason = ?scan.invalid, "recovery cut the active segment's tail");
                } else {
                    // A sealed segment is acknowledged data: keep it whole so
                    // that reads reach the fault and report it loudly.
                    seg.size = seg.log()?.len()?;
                    seg.next_offset = bases[i + 1];
                    report.damaged_segments.push(base);
                    tracing::error!(dir = %dir.display(), segment = base, position = scan.position, reason = ?scan.invalid, "sealed segment does not scan cleanly");
                }
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            let seg = Segment::create(&disk, dir, 0, now, config.canary)?;
            disk.sync_dir(dir)?;
            segments.insert(0, seg);
        }
        // A log that starts later than it did is a lost oldest segment
        // (retention moves the recorded start before it deletes).
        if report.loss.is_none()
            && let (Some(saved), Some(first)) = (saved, segments.values().next())
            && first.base_offset > saved.log_start
            && !checkpoint::covered(&accepted, saved.log_start, first.base_offset)
        {
            report.loss = Some(Loss {
                file: dir.join(segment::file_name(saved.log_start, "log")),
                position: 0,
                from: saved.log_start,
                to: first.base_offset,
                reason: format!(
                    "the log should start at {} but its first segment starts at {} (a segment file is missing)",
                    saved.log_start, first.base_offset
                ),
            });
        }
        // A hole between segments is a lost segment, unless it was accepted.
        if report.loss.is_none() {
            let segs: Vec<&Segment> = segments.values().collect();
            for pair in segs.windows(2) {
                let (prev, next) = (pair[0], pair[1]);
                let hole = prev.next_offset < next.base_offset;
                if hole && !checkpoint::covered(&accepted, prev.next_offset, next.base_offset) {
                    report.loss = Some(Loss {
                        file: dir.join(segment::file_name(prev.next_offset, "log")),
                        position: 0,
                        from: prev.next_offset,
                        to: next.base_offset,
                        reason: format!("no segment holds offsets {}..{} (a segment file is missing)", prev.next_offset, next.base_offset),
                    });
                    break;
                }
            }
        }
        report.segments = segments.len();
        let mut log = PartitionLog {
            disk,
            dir: dir.to_path_buf(),
            config,
            segments,
            flushed: 0,
            failed: None,
            checkpoint: Arc::new(Mutex::new(CheckpointState { generation: 0, written: recovery_point.unwrap_or(0) })),
            flushes_since_checkpoint_sync: 0,
            loss: None,
            in_flight: VecDeque::new(),
            next_flush_seq: 0,
            flushed_log_id: None,
            purged,
            vote,
        };
        log.flushed = log.log_end_offset();
        log.flushed_log_id = log.last_log_id();
        if report.loss.is_none()
            && let Some(rp) = recovery_point.filter(|rp| log.log_end_offset() < *rp)
        {
            let active = log.active();
            report.loss = Some(Loss {
                file: dir.join(segment::file_name(active.base_offset, "log")),
                position: active.size,
                from: active.next_offset,
                to: rp,
                reason: "the log ends before its recovery checkpoint (segment data was deleted or truncated)".to_owned(),
            });
        }
        if let Some(loss) = &report.loss {
            tracing::error!(dir = %dir.display(), file = %loss.file.display(), from = loss.from, to = loss.to, records = loss.to - loss.from, reason = %loss.reason, "recovery found acknowledged data damaged or missing: the partition is offline until the loss is accepted (weir accept-loss)");
            log.loss = report.loss.clone();
        } else if saved != Some(checkpoint::Checkpoint { recovery_point: log.flushed, log_start: log.log_start_offset() }) {
            // Everything present is durable now: checkpoint it.
            log.write_checkpoint(log.flushed, true)?;
            if recovery_point.is_none() {
                log.disk.sync_dir(dir)?; // the checkpoint file's name
            }
        }
        if crate::canary::on(log.config.canary, crate::canary::Canary::ReuseOffsetAfterCrash)
            && log.log_end_offset() > log.log_start_offset()
        {
            let end = log.log_end_offset();
            let last = log.read(end - 1, 1, end)?;
            if let Ok(h) = BatchHeader::parse(&last.bytes) {
                log.truncate_suffix(h.base_offset)?;
            }
        }
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// First offset still held.
    pub fn log_start_offset(&self) -> u64 {
        self.segments.values().next().map_or(0, |s| s.base_offset)
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> u64 {
        self.active().next_offset
    }

    /// Offsets below this are durable.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed
    }

    /// Bytes of data across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// True after a failed sync: the log refuses writes until reopened.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The acknowledged data recovery found missing, while not accepted.
    pub fn loss(&self) -> Option<&Loss> {
        self.loss.as_ref()
    }

    fn check_failed(&self) -> Result<(), LogError> {
        if let Some(loss) = &self.loss {
            return Err(LogError::Offline(loss.clone()));
        }
        match &self.failed {
            Some(why) => Err(LogError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Records `offset` as the recovery checkpoint (page cache; durable if
    /// `sync`). Never above what is durable.
    fn write_checkpoint(&mut self, offset: u64, sync: bool) -> Result<(), DiskError> {
        let start = self.log_start_offset();
        self.write_checkpoint_from(offset, start, sync)
    }

    fn write_checkpoint_from(&mut self, offset: u64, log_start: u64, sync: bool) -> Result<(), DiskError> {
        debug_assert!(offset <= self.flushed || self.failed.is_some(), "a checkpoint never names unflushed data");
        let checkpoint = self.checkpoint.clone();
        let mut shared = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
        // Jobs begun before this write must not overwrite it.
        shared.generation += 1;
        checkpoint::write(&*self.disk, &self.dir, checkpoint::Checkpoint { recovery_point: offset, log_start }, sync)?;
        shared.written = offset;
        drop(shared);
        if sync {
            self.flushes_since_checkpoint_sync = 0;
        }
        Ok(())
    }

    /// Makes the recovery checkpoint durable at the flushed offset (a clean
    /// close does this, so damage found after it is always reported).
    pub fn sync_checkpoint(&mut self) -> Result<(), LogError> {
        if self.loss.is_some() {
            return Ok(());
        }
        let flushed = self.flushed;
        self.write_checkpoint(flushed, true)?;
        Ok(())
    }

    /// Appends one encoded batch (as [`batch::BatchBuilder`] makes it, or as
    /// a client sent it), assigning its offsets: the stored copy is stamped
    /// with them (the caller's bytes are not copied or changed). The caller
    /// has validated the records (`RecordBatch::validate`); the log checks
    /// the framing. Volatile until a flush covers it.
    pub fn append(&mut self, batch: &[u8], now: Timestamp) -> Result<AppendInfo, LogError> {
        self.check_failed()?;
        if let Some(last) = self.last_log_id() {
            return Err(LogError::RaftOrder(format!(
                "this log holds Raft entries (up to index {}): append through append_entry",
                last.index
            )));
        }
        let header = self.check_framing(batch)?;
        self.config.check_timestamp(&header, now)?;
        self.write_batches(&[batch], vec![header], RaftStamp::default(), now)
    }

    /// Checks what the log relies on in a batch it is handed: its length
    /// matches, the magic, and the offset delta. The records were validated
    /// by the caller.
    fn check_framing(&self, batch: &[u8]) -> Result<BatchHeader, LogError> {
        let max = self.config.batch_bytes_max;
        if batch.len() > max {
            return Err(LogError::BatchTooLarge { size: batch.len(), max });
        }
        match batch::peek_total_len(batch, max)? {
            Some(total) if total == batch.len() => {}
            Some(total) => return Err(BatchError::Truncated { needed: total, available: batch.len() }.into()),
            None => return Err(BatchError::Truncated { needed: batch::HEADER_LEN, available: batch.len() }.into()),
        }
        let header = BatchHeader::parse(batch)?;
        if batch.len() < header.header_len() {
            return Err(BatchError::Truncated { needed: header.header_len(), available: batch.len() }.into());
        }
        if header.last_offset_delta != header.record_count.saturating_sub(1) {
            return Err(BatchError::Inconsistent("last_offset_delta is not record_count - 1").into());
        }
        Ok(header)
    }

    /// Appends one Raft entry: `batches` (each a whole batch, validated by
    /// the caller) stamped with `id` and offsets from the log end, in one
    /// write. `id.index` must follow the last entry (or the last purged
    /// one); an empty log takes any index (it may start anywhere). The whole
    /// entry is bounded by `batch_bytes_max`. Volatile until a flush covers
    /// it; recovery keeps all of it or none.
    pub fn append_entry(&mut self, id: LogId, batches: &[&[u8]], now: Timestamp) -> Result<AppendInfo, LogError> {
        self.check_failed()?;
        if id.index == 0 {
            return Err(LogError::RaftOrder("Raft indexes start at 1".to_owned()));
        }
        if let Some(last) = self.last_log_id()
            && (id.index != last.index + 1 || id.term < last.term)
        {
            return Err(LogError::RaftOrder(format!(
                "entry {} (term {}) does not follow the last entry {} (term {}): truncate first",
                id.index, id.term, last.index, last.term
            )));
        }
        if batches.is_empty() || batches.len() > u32::MAX as usize {
            return Err(LogError::RaftOrder(format!("an entry holds 1 to {} batches, not {}", u32::MAX, batches.len())));
        }
        let total: usize = batches.iter().map(|b| b.len()).sum();
        if total > self.config.batch_bytes_max {
            return Err(LogError::BatchTooLarge { size: total, max: self.config.batch_bytes_max });
        }
        let mut headers = Vec::with_capacity(batches.len());
        for b in batches {
            headers.push(self.check_framing(b)?);
        }
        self.write_batches(batches, headers, RaftStamp { term: id.term, node: id.node, index: id.index, entry_rest: 0 }, now)
    }

    /// Writes `batches` (with their parsed `headers`) at the log end in one
    /// append, rolling first if they do not fit: each gets its offsets and
    /// `raft`, with `entry_rest` counting down to 0 on the last, stamped
    /// into a copy of its first bytes (the caller's bytes are not copied or
    /// changed, and the producer's CRC stays valid).
    fn write_batches(
        &mut self,
        batches: &[&[u8]],
        mut headers: Vec<BatchHeader>,
        raft: RaftStamp,
        now: Timestamp,
    ) -> Result<AppendInfo, LogError> {
        let total: usize = batches.iter().map(|b| b.len()).sum();
        self.maybe_roll(total as u64, now)?;
        let base = self.log_end_offset();
        let mut next = base;
        let mut heads = Vec::with_capacity(batches.len());
        for (i, h) in headers.iter_mut().enumerate() {
            let stamp = RaftStamp { entry_rest: (batches.len() - 1 - i) as u32, ..raft };
            let mut head = [0u8; batch::STAMPED_LEN];
            head.copy_from_slice(&batches[i][..batch::STAMPED_LEN]);
            batch::stamp(&mut head, next, stamp);
            *h = BatchHeader {
                base_offset: next,
                leader_epoch: stamp.term,
                leader_node: stamp.node,
                raft_index: stamp.index,
                entry_rest: stamp.entry_rest,
                ..*h
            };
            next = h.next_offset();
            heads.push(head);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * batches.len());
        for (head, b) in heads.iter().zip(batches) {
            parts.push(head);
            parts.push(&b[batch::STAMPED_LEN..]);
        }
        let max_timestamp = headers.iter().map(|h| h.max_timestamp).max().unwrap_or(i64::MIN);
        let config = self.config.clone();
        self.active_mut().append(&parts, &headers, &config)?;
        Ok(AppendInfo { base_offset: base, next_offset: next, max_timestamp })
    }

    /// The last Raft entry held, or else the last purged one.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.segments.values().rev().find_map(|s| s.last_log_id).or(self.purged)
    }

    /// The last Raft entry purged (covered by a snapshot), if any.
    pub fn purged_log_id(&self) -> Option<LogId> {
        self.purged
    }

    /// The last Raft entry known durable: every entry up to it survives a crash.
    pub fn flushed_log_id(&self) -> Option<LogId> {
        self.flushed_log_id
    }

    /// Whole Raft entries with indexes in `range`, in order, about
    /// `max_bytes` of them (the first is returned whole whatever its size).
    /// Fewer than asked means the log holds no more (or the budget ran out).
    pub fn entries(&self, range: std::ops::Range<u64>, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        self.read_entries(range, max_bytes, EntryRead::Whole)
    }

    /// As [`PartitionLog::entries`], but each data batch is cut to its
    /// header ([`batch::HEADER_LEN`] bytes, its header CRC checked), its
    /// producer fields forgotten ([`batch::forget_producer`]: only the
    /// batch CRC, not read here, covers them): an entry's extent and
    /// offsets without reading payloads back. Control batches come whole.
    ///
    /// A sealed segment that cannot be walked (a damaged header), or a hole
    /// in the entries (a lost segment), ends the result before it, or, when
    /// nothing came before it, is skipped with a
    /// warning so the result starts after it: finding a group's membership
    /// or high watermark must not depend on old data the disk damaged,
    /// while a caller that needs exactly the range (apply) sees it short.
    /// Damage in the active segment is an error, as in
    /// [`PartitionLog::entries`].
    pub fn entry_heads(&self, range: std::ops::Range<u64>, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        self.read_entries(range, max_bytes, EntryRead::Heads)
    }

    /// As [`PartitionLog::entry_heads`], but every data batch is read whole
    /// and CRC-checked: what applying entries needs, since the producer
    /// fields it records are covered only by the batch CRC. A batch whose
    /// CRC fails comes with its producer fields forgotten and its offsets
    /// kept ([`batch::forget_producer`]).
    pub fn entry_heads_verified(&self, range: std::ops::Range<u64>, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        self.read_entries(range, max_bytes, EntryRead::CheckedHeads)
    }

    fn read_entries(&self, range: std::ops::Range<u64>, max_bytes: usize, read: EntryRead) -> Result<Vec<Entry>, LogError> {
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut from = range.start;
        for seg in self.segments.values() {
            if from >= range.end {
                break;
            }
            if seg.last_log_id.is_none_or(|l| l.index < from) {
                continue;
            }
            let before = out.len();
            let sealed = self.segments.last_key_value().is_some_and(|(base, _)| *base != seg.base_offset);
            let done = match seg.read_entries(from, range.end, &mut budget, self.config.batch_bytes_max, read, &mut out) {
                Err(LogError::Corruption { segment, position, reason, .. }) if read != EntryRead::Whole && sealed => {
                    tracing::warn!(segment = %segment.display(), position, %reason, "a damaged sealed segment's entries are skipped");
                    // What came before the damage, or what comes after it:
                    // never a result with a hole in it.
                    if !out.is_empty() {
                        break;
                    }
                    false
                }
                r => r?,
            };
            // Entries are contiguous in index: a segment that skips some
            // (damaged, or cut short) must not go unnoticed.
            if before > 0
                && let Some(first) = out.get(before)
                && first.log_id.index != out[before - 1].log_id.index + 1
            {
                if read != EntryRead::Whole {
                    // Heads end before the hole, as before damage (see
                    // `entry_heads`).
                    tracing::warn!(dir = %self.dir.display(), from = out[before - 1].log_id.index + 1, to = first.log_id.index, "Raft entries are missing: the read ends before them");
                    out.truncate(before);
                    break;
                }
                return Err(LogError::Corruption {
                    segment: self.dir.join(segment::file_name(seg.base_offset, "log")),
                    position: 0,
                    offset: first.base_offset,
                    reason: format!("Raft entries {}..{} are missing", out[before - 1].log_id.index + 1, first.log_id.index),
                });
            }
            if done {
                break;
            }
            if let Some(last) = out.last() {
                from = last.log_id.index + 1;
            }
        }
        Ok(out)
    }

    /// Removes every Raft entry with an index at or after `index`, durably
    /// (a follower dropping a conflicting uncommitted suffix), with the
    /// offsets those entries took.
    pub fn truncate_entries(&mut self, index: u64) -> Result<(), LogError> {
        self.check_failed()?;
        if let Some(p) = self.purged.filter(|p| index <= p.index) {
            return Err(LogError::RaftOrder(format!("cannot truncate at {index}: entries up to {} are purged", p.index)));
        }
        let mut at = None;
        for (base, seg) in &self.segments {
            if let Some((pos, offset)) = seg.entry_position(index, self.config.batch_bytes_max)? {
                at = Some((*base, pos, offset));
                break;
            }
        }
        let Some((base, pos, offset)) = at else { return Ok(()) };
        self.truncate_at(base, pos, offset)
    }

    /// Records `upto` as purged (durably, first), then deletes the whole
    /// sealed segments whose entries are all at or below it. The active
    /// segment stays; entries below `upto` may remain readable.
    pub fn purge_entries(&mut self, upto: LogId) -> Result<RetentionReport, LogError> {
        self.check_failed()?;
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(RetentionReport::default());
        }
        if index_of(self.flushed_log_id) < upto.index {
            // A purge covers applied, so durable, entries: a crash must not
            // leave a purged id above the log's surviving end.
            return Err(LogError::RaftOrder(format!(
                "cannot purge up to {}: entries are durable only up to {}",
                upto.index,
                index_of(self.flushed_log_id)
            )));
        }
        raft_state::save_purged(&*self.disk, &self.dir, Some(upto))?;
        self.purged = Some(upto);
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .rev()
            .skip(1)
            .rev()
            .take_while(|(_, s)| s.last_log_id.is_none_or(|l| l.index <= upto.index))
            .map(|(b, _)| *b)
            .collect();
        self.delete_segments(doomed)
    }

    /// Empties the log and makes it start at `start_offset`, with entries up
    /// to `purged` covered by a snapshot (a follower installing one). The
    /// intention is recorded first, so a crash part-way is finished by the
    /// next open. Durable when it returns.
    pub fn reset(&mut self, start_offset: u64, purged: Option<LogId>, now: Timestamp) -> Result<(), LogError> {
        // An offline log may be reset (a snapshot replaces it); a failed one
        // must be reopened first.
        if let Some(why) = &self.failed {
            return Err(LogError::Failed(why.clone()));
        }
        let reset = Reset { start_offset, purged };
        let done = raft_state::save_reset(&*self.disk, &self.dir, &reset)
            .map_err(LogError::from)
            .and_then(|()| finish_reset(&*self.disk, &self.dir, &reset))
            .and_then(|()| Segment::open(&self.disk, &self.dir, start_offset, true, Some(start_offset), &self.config, now).map(|(s, _)| s));
        let seg = match done {
            Ok(seg) => seg,
            Err(e) => {
                // Half reset: refuse everything until reopened, which
                // finishes the recorded reset.
                self.failed = Some(format!("reset to offset {start_offset} failed: {e}"));
                return Err(e);
            }
        };
        self.segments.clear();
        self.segments.insert(start_offset, seg);
        {
            let mut shared = self.checkpoint.lock().unwrap_or_else(|p| p.into_inner());
            shared.generation += 1;
            shared.written = start_offset;
        }
        self.flushed = start_offset;
        self.in_flight.clear();
        self.purged = purged;
        self.flushed_log_id = purged;
        self.loss = None;
        Ok(())
    }

    /// Persists the vote, durably, before returning.
    pub fn save_vote(&mut self, vote: Vote) -> Result<(), LogError> {
        raft_state::save_vote(&*self.disk, &self.dir, &vote)?;
        self.vote = Some(vote);
        Ok(())
    }

    pub fn vote(&self) -> Option<Vote> {
        self.vote
    }

    /// For a log whose only voter is this node: marks as purged every Raft
    /// entry up to the last hole in the entries (a `damaged` sealed segment
    /// that cannot be walked, or a range an accepted loss removed), so the
    /// Raft layer, which needs whole entries from the purged point on,
    /// starts after it. Only the Raft view moves: the data stays for
    /// fetches. With other voters, purging entries that may be uncommitted
    /// would be wrong: such a replica must be repaired from its peers.
    /// Returns the new purged id, if it moved.
    pub fn purge_past_damage(&mut self, damaged: &[u64]) -> Result<Option<LogId>, LogError> {
        // An offline log too: nothing is appended to it until the loss is
        // accepted, but its group must still start (and the partition
        // answer that it is offline), which needs whole entries from its
        // purged point on.
        if let Some(why) = &self.failed {
            return Err(LogError::Failed(why.clone()));
        }
        let mut damaged = damaged.to_vec();
        damaged.extend(self.unwalkable_segments()?);
        let mut prev_index = index_of(self.purged);
        let mut broken = false;
        let mut cut: Option<LogId> = None;
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        for base in bases {
            let seg = &self.segments[&base];
            let last = seg.last_log_id;
            if let Some(first) = seg.first_raft_index()
                && (broken || first != prev_index + 1)
            {
                // Entries are whole again from `first`: the cut goes just
                // before it, in its term (log ids only grow).
                if let Some(e) = self.entry_heads(first..first + 1, 1)?.first().filter(|e| e.log_id.index == first) {
                    cut = Some(LogId { index: first - 1, ..e.log_id });
                }
                broken = false;
            }
            if damaged.contains(&base) {
                broken = true;
            }
            if let Some(l) = last {
                prev_index = l.index;
            }
        }
        if broken {
            // Damage with no whole entry after it: up to the last entry
            // its index names.
            cut = self.segments.values().filter_map(|s| s.last_log_id).max_by_key(|l| l.index).or(cut);
        }
        let Some(cut) = cut.filter(|c| c.index > index_of(self.purged)) else { return Ok(None) };
        tracing::warn!(dir = %self.dir.display(), index = cut.index, "Raft entries up to a hole in the log are treated as purged; the data before it stays readable");
        raft_state::save_purged(&*self.disk, &self.dir, Some(cut))?;
        self.purged = Some(cut);
        if raft_state::read_committed(&*self.disk, &self.dir)?.is_none_or(|c| c.index < cut.index) {
            raft_state::save_committed(&*self.disk, &self.dir, cut)?;
        }
        Ok(Some(cut))
    }

    /// Sealed segments whose Raft entries cannot be walked by their headers
    /// (damage recovery does not look for: it scans the active segment).
    /// Reads every header, in chunks, as the Raft layer's own start does.
    fn unwalkable_segments(&self) -> Result<Vec<u64>, LogError> {
        const CHUNK_BYTES: usize = 1 << 20;
        let mut out = Vec::new();
        let active = self.segments.keys().next_back().copied();
        for (base, seg) in &self.segments {
            let (Some(mut from), Some(last)) = (seg.first_raft_index(), seg.last_log_id) else { continue };
            if Some(*base) == active {
                continue;
            }
            while from <= last.index {
                let mut budget = CHUNK_BYTES;
                let mut heads = Vec::new();
                match seg.read_entries(from, last.index + 1, &mut budget, self.config.batch_bytes_max, EntryRead::Heads, &mut heads) {
                    Err(LogError::Corruption { .. }) => {
                        out.push(*base);
                        break;
                    }
                    r => {
                        r?;
                    }
                }
                match heads.last() {
                    Some(e) => from = e.log_id.index + 1,
                    None => {
                        // The index names entries the file does not hold.
                        out.push(*base);
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Records the committed log id (not synced: it may be lost, never wrong).
    pub fn save_committed(&mut self, id: LogId) -> Result<(), LogError> {
        raft_state::save_committed(&*self.disk, &self.dir, id)?;
        Ok(())
    }

    /// The committed log id last saved, if it survived and the log still
    /// holds it (the file is not synced with the data: never past the end).
    pub fn committed(&self) -> Result<Option<LogId>, LogError> {
        let last = self.last_log_id();
        Ok(raft_state::read_committed(&*self.disk, &self.dir)?.filter(|c| last.is_some_and(|l| l.index >= c.index)))
    }

    fn maybe_roll(&mut self, incoming: u64, now: Timestamp) -> Result<(), LogError> {
        let active = self.active();
        let full = active.size > 0 && active.size + incoming > self.config.segment_bytes_max;
        let old =
            self.config.segment_age_max_ms > 0 && active.size > 0 && now.millis_since(active.opened_at) >= self.config.segment_age_max_ms;
        if full || old { self.roll(now) } else { Ok(()) }
    }

    /// Seals the active segment and starts a new one at the log end. The old
    /// segment is made durable first, so a new segment file on disk always
    /// means its predecessors are complete. A segment that holds no records
    /// (empty, or only control batches) is not rolled: the next segment
    /// would start at the same offset, under the same file name.
    pub fn roll(&mut self, now: Timestamp) -> Result<(), LogError> {
        self.check_failed()?;
        if self.active().holds_no_records() {
            return Ok(());
        }
        let end = self.log_end_offset();
        debug_assert!(!self.segments.contains_key(&end), "a roll never reuses a segment's name");
        if let Err(e) = self.active_mut().seal() {
            self.failed = Some(e.to_string());
            return Err(e.into());
        }
        self.flushed = self.flushed.max(end);
        self.flushed_log_id = self.last_log_id();
        let seg = Segment::create(&self.disk, &self.dir, end, now, self.config.canary)?;
        self.disk.sync_dir(&self.dir)?;
        self.segments.insert(end, seg);
        let flushed = self.flushed;
        self.write_checkpoint(flushed, true)?;
        Ok(())
    }

    /// Makes everything appended so far durable; returns the flushed offset.
    pub fn flush(&mut self) -> Result<u64, LogError> {
        let job = self.begin_flush()?;
        let result = job.run();
        self.complete_flush(job, result)
    }

    /// Whether anything was written since the last flush began (a flush now
    /// would have files to sync).
    pub fn needs_flush(&self) -> bool {
        self.segments.values().any(|s| s.dirty)
    }

    /// Starts a flush: collects the files with unsynced writes (no IO). Run
    /// the job (anywhere), then hand it back to [`PartitionLog::complete_flush`].
    pub fn begin_flush(&mut self) -> Result<FlushJob, LogError> {
        self.check_failed()?;
        let up_to = self.log_end_offset();
        let mut files = Vec::new();
        for seg in self.segments.values_mut().filter(|s| s.dirty) {
            seg.dirty = false;
            files.push(seg.log()?);
        }
        // The checkpoint costs a file open and write (and a sync): only every
        // so often, on the flush thread (see `checkpoint`).
        self.flushes_since_checkpoint_sync += 1;
        let mut checkpoint = None;
        // Only a job with no earlier one in flight may record its end: when
        // it has synced, everything below it is durable.
        if self.in_flight.is_empty() && self.flushes_since_checkpoint_sync.is_multiple_of(checkpoint::WRITE_EVERY_FLUSHES) {
            let sync = self.flushes_since_checkpoint_sync >= checkpoint::SYNC_EVERY_FLUSHES;
            if sync {
                self.flushes_since_checkpoint_sync = 0;
            }
            let (disk, dir, log_start) = (self.disk.clone(), self.dir.clone(), self.log_start_offset());
            let shared = self.checkpoint.clone();
            let generation = shared.lock().unwrap_or_else(|p| p.into_inner()).generation;
            checkpoint = Some(CheckpointWrite { disk, dir, log_start, sync, shared, generation });
        }
        let (seq, log_id) = (self.next_flush_seq, self.last_log_id());
        self.next_flush_seq += 1;
        self.in_flight.push_back(InFlight { seq, up_to, log_id, done: false });
        Ok(FlushJob { files, up_to, seq, checkpoint })
    }

    /// Finishes a flush: on success advances the flushed offset; on failure
    /// poisons the log (see the module doc).
    pub fn complete_flush(&mut self, job: FlushJob, result: Result<(), DiskError>) -> Result<u64, LogError> {
        // A job no longer listed was overtaken by a reset: it proves nothing,
        // and its failure concerns files that are gone.
        if !self.in_flight.iter().any(|f| f.seq == job.seq) {
            return Ok(self.flushed);
        }
        match result {
            Ok(()) => {
                if let Some(f) = self.in_flight.iter_mut().find(|f| f.seq == job.seq) {
                    f.done = true;
                }
                // Only a prefix of completed flushes counts: an earlier sync
                // still running may cover writes this one did not.
                while let Some(f) = self.in_flight.front().copied().filter(|f| f.done) {
                    self.in_flight.pop_front();
                    self.flushed = self.flushed.max(f.up_to.min(self.log_end_offset()));
                    if index_of(f.log_id) > index_of(self.flushed_log_id) {
                        self.flushed_log_id = f.log_id;
                    }
                }
                assert!(self.flushed <= self.log_end_offset(), "flushed past the log end");
                Ok(self.flushed)
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "sync failed: the partition stops accepting writes until reopened");
                self.failed = Some(e.to_string());
                self.in_flight.clear();
                Err(e.into())
            }
        }
    }

    /// Reads whole batches from `offset`, about `max_bytes` of them (the
    /// first batch is returned whole even if larger), none reaching past
    /// `upper` (the high watermark: the flushed offset on a single node, the
    /// commit index in a cluster). Reading at `upper` returns no bytes.
    pub fn read(&self, offset: u64, max_bytes: usize, upper: u64) -> Result<ReadResult, LogError> {
        if let Some(loss) = self.loss.as_ref().filter(|l| offset >= l.from) {
            return Err(LogError::Offline(loss.clone()));
        }
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let upper = upper.min(end);
        for seg in
            self.segments.range(..=offset).next_back().into_iter().map(|(_, s)| s).chain(self.segments.range(offset + 1..).map(|(_, s)| s))
        {
            if let Some((bytes, next_offset)) = seg.read(offset, max_bytes, upper, self.config.batch_bytes_max)? {
                return Ok(ReadResult { bytes, next_offset });
            }
            if seg.base_offset >= upper {
                break;
            }
        }
        Ok(ReadResult { bytes: Bytes::new(), next_offset: offset })
    }

    /// The largest record timestamp in the log and the base offset of the
    /// (latest) batch holding it; `None` for an empty log.
    pub fn max_timestamp_batch(&self) -> Option<(i64, u64)> {
        self.segments.values().filter_map(|s| s.max_timestamp_batch()).max()
    }

    /// First offset whose record timestamp is at or after `timestamp`, or
    /// `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>, LogError> {
        for seg in self.segments.values() {
            if let Some(offset) = seg.offset_for_timestamp(timestamp, self.config.batch_bytes_max)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// Removes every batch at or after `offset`, durably (Raft truncating an
    /// uncommitted suffix). `offset` must start a batch or be the log end.
    pub fn truncate_suffix(&mut self, offset: u64) -> Result<(), LogError> {
        self.check_failed()?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        if offset == end {
            return Ok(());
        }
        let (base, seg) = self.segments.range(..=offset).next_back().expect("offset >= log start has a segment");
        let pos = seg.position_of(offset, self.config.batch_bytes_max)?.ok_or(LogError::NotBatchBoundary(offset))?;
        let base = *base;
        self.truncate_at(base, pos, offset)
    }

    /// Cuts the log at byte `pos` of segment `base` (offset `offset` starts
    /// there), removing later segments, durably.
    fn truncate_at(&mut self, base: u64, pos: u64, offset: u64) -> Result<(), LogError> {
        // Lower the checkpoint first: a crash part-way must not leave one
        // that names data the cut removed (recovery would call it a loss).
        // Flush jobs begun before the cut must not record their (larger) end.
        let below = offset.min(self.flushed);
        let lower = {
            let mut shared = self.checkpoint.lock().unwrap_or_else(|p| p.into_inner());
            shared.generation += 1;
            shared.written > below
        };
        if lower {
            self.write_checkpoint(below, true)?;
        }
        let later: Vec<u64> = self.segments.range(base + 1..).map(|(b, _)| *b).collect();
        // Remove later segments newest first, so a crash part-way leaves a
        // contiguous log.
        for b in later.iter().rev() {
            let seg = self.segments.remove(b).expect("listed above");
            seg.remove_files(&*self.disk)?;
            self.disk.sync_dir(&self.dir)?;
        }
        let seg = self.active_mut();
        seg.truncate_to(offset, pos)?;
        self.flushed = self.flushed.min(offset);
        // Flushes in flight cannot vouch for what is appended after the cut.
        let last = self.last_log_id();
        for f in &mut self.in_flight {
            f.up_to = f.up_to.min(offset);
            if index_of(f.log_id) > index_of(last) {
                f.log_id = last;
            }
        }
        if index_of(self.flushed_log_id) > index_of(last) {
            // Everything left was durable already, or was synced by the cut.
            self.flushed_log_id = last;
        }
        Ok(())
    }

    /// Accepts the loss recovery reported (an operator's explicit decision):
    /// copies the damaged bytes aside into `lost-{from}-{to}.bin`, cuts the
    /// damaged tail, and moves the log end to the loss's end, so no offset
    /// that was ever acknowledged is handed out again. Reads of the lost
    /// offsets then continue at `to`. Durable when it returns.
    pub fn accept_loss(&mut self, now: Timestamp) -> Result<Option<AcceptedLoss>, LogError> {
        let Some(loss) = self.loss.clone() else { return Ok(None) };
        let saved_to = self.dir.join(checkpoint::lost_file_name(loss.from, loss.to));
        let aside = self.disk.open(&saved_to, true)?;
        aside.set_len(0)?;
        let mut saved_bytes = 0u64;
        let damaged_active =
            self.active().next_offset == loss.from && self.dir.join(segment::file_name(self.active().base_offset, "log")) == loss.file;
        if damaged_active {
            let log = self.active().log()?;
            let len = last_nonzero_end(&*log, loss.position)?;
            let mut pos = loss.position;
            let mut buf = vec![0u8; 1 << 20];
            while pos < len {
                let n = log.read_at(&mut buf[..(len - pos).min(1 << 20) as usize], pos)?;
                if n == 0 {
                    break;
                }
                aside.write_at(&buf[..n], saved_bytes)?;
                saved_bytes += n as u64;
                pos += n as u64;
            }
        }
        aside.sync_data()?;
        self.disk.sync_dir(&self.dir)?;
        if damaged_active {
            let pos = loss.position;
            self.active_mut().truncate_to(loss.from, pos)?;
        }
        if loss.to > self.log_end_offset() {
            // Continue at the loss's end: a gap of offsets nobody gets again.
            let (base, size) = (self.active().base_offset, self.active().size);
            if size == 0 {
                let seg = self.segments.remove(&base).expect("the active segment");
                seg.remove_files(&*self.disk)?;
            } else {
                self.active_mut().seal()?;
            }
            let seg = Segment::create(&self.disk, &self.dir, loss.to, now, self.config.canary)?;
            self.disk.sync_dir(&self.dir)?;
            self.segments.insert(loss.to, seg);
        }
        self.loss = None;
        self.flushed = self.log_end_offset();
        let flushed = self.flushed;
        self.write_checkpoint(flushed, true)?;
        tracing::warn!(dir = %self.dir.display(), from = loss.from, to = loss.to, saved = %saved_to.display(), "loss accepted: the partition continues at {}", flushed);
        Ok(Some(AcceptedLoss { loss, saved_to, saved_bytes, next_offset: flushed }))
    }

    /// Deletes whole segments that end at or before `offset` (never the
    /// active one). Returns what was deleted.
    pub fn purge_prefix(&mut self, offset: u64) -> Result<RetentionReport, LogError> {
        let doomed: Vec<u64> = self.segments.iter().rev().skip(1).filter(|(_, s)| s.next_offset <= offset).map(|(b, _)| *b).collect();
        self.delete_segments(doomed)
    }

    fn delete_segments(&mut self, mut bases: Vec<u64>) -> Result<RetentionReport, LogError> {
        self.check_failed()?;
        bases.sort_unstable();
        if bases.is_empty() {
            return Ok(RetentionReport::default());
        }
        // Record the new start durably first: a log found starting later
        // than its checkpoint says has lost its oldest segment.
        let new_start = self.segments.keys().find(|b| !bases.contains(b)).copied().unwrap_or_else(|| self.log_end_offset());
        // Raft entries going with them are purged: recorded first, so the
        // Raft layer never looks for an entry that is gone.
        let last_gone = bases.iter().filter_map(|b| self.segments.get(b).and_then(|s| s.last_log_id)).max_by_key(|id| id.index);
        if let Some(id) = last_gone.filter(|id| index_of(self.purged) < id.index) {
            raft_state::save_purged(&*self.disk, &self.dir, Some(id))?;
            self.purged = Some(id);
        }
        let flushed = self.flushed;
        self.write_checkpoint_from(flushed, new_start, true)?;
        let mut report = RetentionReport::default();
        // Oldest first: a crash part-way leaves a log that starts later, never one with a hole.
        for base in bases {
            let seg = self.segments.remove(&base).expect("caller lists existing segments");
            seg.remove_files(&*self.disk)?;
            report.segments_deleted += 1;
            report.bytes_deleted += seg.size;
        }
        if report.segments_deleted > 0 {
            self.disk.sync_dir(&self.dir)?;
        }
        Ok(report)
    }

    /// Applies retention by size and time at `now`, deleting whole sealed
    /// segments from the oldest. The active segment is never deleted.
    pub fn apply_retention(&mut self, now: Timestamp) -> Result<RetentionReport, LogError> {
        self.apply_retention_below(now, u64::MAX)
    }

    /// As [`PartitionLog::apply_retention`], deleting only segments that
    /// end at or below `keep_from`: a replicated log's leader keeps what a
    /// live follower has yet to receive, since a follower behind the
    /// leader's log start could only be sent a snapshot, which skips it.
    pub fn apply_retention_below(&mut self, now: Timestamp, keep_from: u64) -> Result<RetentionReport, LogError> {
        let doomed = self.retention_doomed(now, keep_from);
        self.delete_segments(doomed)
    }

    /// For a replicated log, whose entries only openraft may purge (it
    /// knows what replication still reads): the last Raft entry of the
    /// segments [`PartitionLog::apply_retention_below`] would delete, for
    /// [`PartitionLog::purge_entries`] once openraft purges up to it.
    pub fn retention_purge_point(&self, now: Timestamp, keep_from: u64) -> Option<LogId> {
        self.last_entry_of(&self.retention_doomed(now, keep_from))
    }

    /// As [`PartitionLog::retention_purge_point`], for the segments
    /// [`PartitionLog::purge_prefix`] would delete.
    pub fn prefix_purge_point(&self, offset: u64) -> Option<LogId> {
        self.last_entry_of(&self.prefix_doomed(offset))
    }

    /// The bytes of the segments [`PartitionLog::purge_prefix`] would delete.
    pub fn prefix_bytes(&self, offset: u64) -> u64 {
        self.prefix_doomed(offset).iter().filter_map(|b| self.segments.get(b)).map(|s| s.size).sum()
    }

    fn prefix_doomed(&self, offset: u64) -> Vec<u64> {
        self.segments.iter().rev().skip(1).filter(|(_, s)| s.next_offset <= offset).map(|(b, _)| *b).collect()
    }

    /// The newest Raft entry in the segments starting at `bases`, past what
    /// is purged already.
    fn last_entry_of(&self, bases: &[u64]) -> Option<LogId> {
        bases
            .iter()
            .filter_map(|b| self.segments.get(b).and_then(|s| s.last_log_id))
            .max_by_key(|id| id.index)
            .filter(|id| index_of(self.purged) < id.index)
    }

    /// The sealed segments retention deletes at `now`, oldest first, none
    /// ending past `keep_from`.
    fn retention_doomed(&self, now: Timestamp, keep_from: u64) -> Vec<u64> {
        let mut doomed = Vec::new();
        let mut total = self.size_bytes();
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        let sealed: Vec<(u64, u64, i64)> =
            self.segments.values().rev().skip(1).rev().map(|s| (s.base_offset, s.size, s.max_timestamp)).collect();
        for (i, (base, size, max_ts)) in sealed.into_iter().enumerate() {
            // A sealed segment ends where the next one starts.
            if bases[i + 1] > keep_from {
                break;
            }
            // Never go below the limit: delete a segment only if what stays is still at least that big.
            let too_big = self.config.retention_bytes.is_some_and(|limit| total - size >= limit);
            let too_old = self.config.retention_ms.is_some_and(|ms| max_ts != i64::MIN && now.as_millis().saturating_sub(max_ts) > ms);
            if !(too_big || too_old) {
                break;
            }
            doomed.push(base);
            total -= size;
        }
        doomed
    }
}

/// A log id's index, 0 for none: ids of one log compare by index.
fn index_of(id: Option<LogId>) -> u64 {
    id.map_or(0, |l| l.index)
}

/// Carries out a recorded reset: removes every segment, index and
/// checkpoint, then creates the empty segment at the start offset, records
/// the checkpoint and the purged id, and finally removes the record.
/// Idempotent, so an interrupted reset is finished by running it again.
fn finish_reset(disk: &dyn Disk, dir: &Path, reset: &Reset) -> Result<(), LogError> {
    for name in disk.list_dir(dir)? {
        let is_segment_file = segment::parse_log_name(&name).is_some() || segment::is_index_file(&name);
        if is_segment_file || name == checkpoint::FILE || name == raft_state::COMMITTED_FILE {
            disk.remove_file(&dir.join(&name))?;
        }
    }
    disk.sync_dir(dir)?;
    let log = disk.open(&dir.join(segment::file_name(reset.start_offset, "log")), true)?;
    log.sync_data()?;
    checkpoint::write(disk, dir, checkpoint::Checkpoint { recovery_point: reset.start_offset, log_start: reset.start_offset }, true)?;
    raft_state::save_purged(disk, dir, reset.purged)?;
    disk.remove_file(&dir.join(raft_state::RESET_FILE))?;
    disk.sync_dir(dir)?;
    Ok(())
}

/// The end of `file`'s data after `from`: its length without the trailing
/// run of zeros (preallocated space), which is not worth saving.
fn last_nonzero_end(file: &dyn DiskFile, from: u64) -> Result<u64, DiskError> {
    const CHUNK: u64 = 64 << 10;
    let mut end = file.len()?;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > from {
        let start = end.saturating_sub(CHUNK).max(from);
        let n = file.read_at(&mut buf[..(end - start) as usize], start)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}
