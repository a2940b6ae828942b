//! openraft's log storage over core's [`PartitionLog`]: one Raft entry is
//! one append of its batches (ARCHITECTURE.md §6), the vote and the
//! committed id live beside the segments.
//!
//! Offsets are stamped here, from the local log end. An entry read back for
//! replication carries the offset the leader stamped; a follower checks it
//! against its own log end before appending, and a mismatch (two replicas
//! disagreeing on where a committed prefix ends) stops the group loudly
//! instead of serving diverged offsets.
//!
//! Every call that touches a file runs on a blocking thread holding the
//! log's lock ([`blocking::run`]); the log is shared with the state machine
//! (which reads headers back) and with the node (which reads for fetches).

// openraft's trait signatures fix the error type (`StorageError`, ~200 bytes).
#![allow(clippy::result_large_err)]

use super::{Proposal, TypeConfig, convert};
use crate::{blocking, clock};
use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageError, StorageIOError};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Mutex;
use weir_core::batch::{BatchBuilder, BatchHeader, ControlBody, HEADER_LEN};
use weir_core::canary::{self, Canary};
use weir_core::disk::Disk;
use weir_core::log::{self, LogError, PartitionLog};

/// Most bytes of entries one replication read (one AppendEntries) carries.
pub const REPLICATION_READ_BYTES_MAX: usize = 4 << 20;

pub type SharedLog = Arc<Mutex<PartitionLog>>;

type Result<T> = std::result::Result<T, StorageError<u64>>;

fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_error(e: LogError) -> StorageError<u64> {
    io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_error(e: LogError) -> StorageError<u64> {
    io_error(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// The half-open index range a `RangeBounds` names.
fn index_range(range: &impl RangeBounds<u64>) -> std::ops::Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

/// Turns a stored entry back into openraft's. With `heads_only` the entry
/// was read by [`PartitionLog::entry_heads`]: data batches are headers only
/// (what the state machine reads).
fn to_raft_entry(e: &log::Entry, heads_only: bool) -> std::result::Result<Entry<TypeConfig>, LogError> {
    let mut batches = Vec::new();
    let mut at = 0;
    let bytes = &e.batches;
    let mut payload = None;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..])?;
        let len = if heads_only && !h.is_control() { h.header_len() } else { h.total_len() };
        if at + len > bytes.len() {
            return Err(LogError::RaftOrder(format!(
                "entry {} ends inside a batch (at {at}, {len} bytes, of {})",
                e.log_id.index,
                bytes.len()
            )));
        }
        let whole = bytes.slice(at..at + len);
        at += len;
        if h.is_control() {
            let body = weir_core::batch::RecordBatch::decode(&whole, whole.len())?.0.control_body()?;
            payload = Some(match body {
                ControlBody::Blank => EntryPayload::Blank,
                ControlBody::Membership(m) => EntryPayload::Membership(
                    convert::membership_from_bytes(&m)
                        .map_err(|why| LogError::InvalidBatch(weir_core::batch::BatchError::BadControl(why)))?,
                ),
            });
        } else {
            batches.push(whole);
        }
    }
    let payload = match payload {
        Some(p) if batches.is_empty() => p,
        Some(_) => return Err(LogError::RaftOrder(format!("entry {} mixes control and data batches", e.log_id.index))),
        None => EntryPayload::Normal(Proposal { base_offset: Some(e.base_offset), batches }),
    };
    Ok(Entry { log_id: convert::log_id_to_raft(e.log_id), payload })
}

/// `heads_before`: with `heads_only`, entries below this stored index are
/// read as heads whose producer fields are forgotten (they were applied
/// before this open); `None` reads everything whole.
async fn read_entries(
    log: &SharedLog,
    range: std::ops::Range<u64>,
    max_bytes: usize,
    heads_before: Option<u64>,
) -> Result<Vec<Entry<TypeConfig>>> {
    let heads_only = heads_before.is_some();
    let range = convert::index_range_to_log(range);
    let guard = log.clone().lock_owned().await;
    blocking::run(move || {
        // Heads only where the entries were applied before this open (up to
        // the committed id saved by then; not the one saved now, which
        // openraft moves before it applies): only finding membership reads
        // them again. Entries to be applied are read whole and CRC-checked,
        // so the producer fields apply records are vouched for (the header
        // CRC covers only the stamp); a damaged batch comes without them.
        let heads_end = heads_before.unwrap_or(0);
        let (heads, whole) = (range.start..range.end.min(heads_end), range.start.max(heads_end)..range.end);
        let read = |range: std::ops::Range<u64>, heads: bool| -> std::result::Result<Vec<log::Entry>, LogError> {
            if range.is_empty() {
                Ok(Vec::new())
            } else if heads {
                guard.entry_heads(range, max_bytes)
            } else if heads_only {
                guard.entry_heads_verified(range, max_bytes)
            } else {
                guard.entries(range, max_bytes)
            }
        };
        // A failed read stops the group: try a transient error again first.
        let mut tries = 0;
        let stored = loop {
            let stored = read(heads.clone(), true).and_then(|mut first| {
                // The whole part continues only where the heads part ended.
                if first.last().is_none_or(|l| l.log_id.index + 1 == whole.start) {
                    first.extend(read(whole.clone(), false)?);
                }
                Ok(first)
            });
            match stored {
                Err(LogError::Disk(e)) if tries < READ_TRIES => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "reading Raft entries failed: trying again");
                }
                stored => break stored,
            }
        };
        stored.map_err(read_error)?.iter().map(|e| to_raft_entry(e, heads_only).map_err(read_error)).collect()
    })
    .await
}

/// How often a read that fails with a disk error is tried again before
/// the error stops the group.
const READ_TRIES: u32 = 3;

/// The storage openraft drives for one group.
#[derive(Clone)]
pub struct LogStore {
    log: SharedLog,
    disk: Arc<dyn Disk>,
    hook: Option<Arc<dyn super::ApplyHook>>,
    /// The committed index last saved (see [`COMMITTED_SAVE_EVERY`]).
    committed_saved: Arc<std::sync::atomic::AtomicU64>,
    /// The vote, kept in memory only (the vote-not-persisted canary).
    canary_vote: Option<Option<log::Vote>>,
    /// The newest appended entries as apply reads them (heads only, by
    /// openraft index): apply usually needs no read at all.
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<Entry<TypeConfig>>>>,
    node: u64,
    /// The newest membership in the log has this node as its only voter:
    /// durable means committed (see [`super::ApplyHook::durable`]). Set by
    /// the group at open, then by every membership entry appended, before
    /// anything after it can be reported durable.
    alone: Arc<AtomicBool>,
    /// The storage fault that stopped the group, if one did (what a
    /// proposer answers its clients with).
    fault: StorageFault,
    /// Entries below this stored index were applied before this open (see `read_entries`).
    applied_before: u64,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("node", &self.node).field("alone", &self.alone).finish_non_exhaustive()
    }
}

/// The storage fault that stopped a group.
pub type StorageFault = Arc<std::sync::Mutex<Option<LogError>>>;

fn record_fault(fault: &StorageFault, e: &LogError) {
    fault.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.clone());
}

/// The committed id is saved when it moved this many entries.
const COMMITTED_SAVE_EVERY: u64 = 256;

/// Entries kept in [`LogStore::recent`].
const RECENT_ENTRIES_MAX: usize = 1024;

/// An appended entry as apply reads it back: data batches cut to their
/// headers, stamped with the offsets they took.
fn heads_of(e: &Entry<TypeConfig>, info: &log::AppendInfo) -> Entry<TypeConfig> {
    let payload = match &e.payload {
        EntryPayload::Normal(p) => {
            let mut at = info.base_offset;
            let batches = p
                .batches
                .iter()
                .map(|b| {
                    let parsed = BatchHeader::parse(b).ok();
                    let mut head = b[..parsed.map_or(b.len().min(HEADER_LEN), |h| h.header_len())].to_vec();
                    let records = parsed.map_or(0, |h| u64::from(h.record_count));
                    let id = convert::log_id_to_log(e.log_id);
                    weir_core::batch::stamp(
                        &mut head,
                        at,
                        weir_core::batch::RaftStamp { term: id.term, node: id.node, index: id.index, entry_rest: 0 },
                    );
                    at += records;
                    Bytes::from(head)
                })
                .collect();
            EntryPayload::Normal(Proposal { base_offset: Some(info.base_offset), batches })
        }
        other => other.clone(),
    };
    Entry { log_id: e.log_id, payload }
}

impl LogStore {
    /// The store of one group over `log`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        log: SharedLog,
        disk: Arc<dyn Disk>,
        canary: Option<Canary>,
        node: u64,
        hook: Option<Arc<dyn super::ApplyHook>>,
        alone: Arc<AtomicBool>,
        fault: StorageFault,
        applied_before: u64,
    ) -> LogStore {
        let canary_vote = canary::on(canary, Canary::VoteNotPersisted).then_some(None);
        LogStore {
            log,
            disk,
            hook,
            committed_saved: Arc::default(),
            canary_vote,
            recent: Arc::default(),
            node,
            alone,
            fault,
            applied_before,
        }
    }

    /// Records a finished sync, then tells the hook while this node is the
    /// only voter.
    async fn complete_flush(
        &self,
        job: log::FlushJob,
        synced: std::result::Result<(), weir_core::disk::DiskError>,
    ) -> std::result::Result<(), LogError> {
        let up_to = self.log.lock().await.complete_flush(job, synced)?;
        if let Some(hook) = &self.hook
            && self.alone.load(Ordering::SeqCst)
        {
            hook.durable(up_to);
        }
        Ok(())
    }
}

/// A reader for replication: whole entries, capped by bytes.
#[derive(Debug, Clone)]
pub struct LogReader {
    log: SharedLog,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        read_entries(&self.log, index_range(&range), usize::MAX, None).await
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>> {
        read_entries(&self.log, start..end, REPLICATION_READ_BYTES_MAX, None).await
    }
}

/// openraft reads entries through the store itself only to apply them (and
/// to find membership entries): data batches come back as headers only, so
/// applying never reads payloads back.
impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let range = index_range(&range);
        {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(first), Some(last)) = (recent.front(), recent.back())
                && first.log_id.index <= range.start
                && range.end <= last.log_id.index + 1
                && range.start < range.end
            {
                let skip = (range.start - first.log_id.index) as usize;
                return Ok(recent.iter().skip(skip).take((range.end - range.start) as usize).cloned().collect());
            }
        }
        // Apply reads through here: a read that still fails stops the
        // group, and producers are told why (not "no leader").
        read_entries(&self.log, range, usize::MAX, Some(self.applied_before))
            .await
            .inspect_err(|e| record_fault(&self.fault, &LogError::Failed(format!("reading entries to apply: {e}"))))
    }
}

/// The batches one entry is stored as. Control batches are built by each
/// replica from the entry alone, with timestamp 0, so replicas hold the
/// same bytes (and a control batch never moves the time index).
fn entry_batches(entry: &Entry<TypeConfig>) -> Vec<Bytes> {
    match &entry.payload {
        EntryPayload::Blank => vec![BatchBuilder::control_with(0, &ControlBody::Blank)],
        EntryPayload::Membership(m) => {
            vec![BatchBuilder::control_with(0, &ControlBody::Membership(convert::membership_to_bytes(m).into()))]
        }
        EntryPayload::Normal(p) => p.batches.clone(),
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let log = self.log.lock().await;
        Ok(LogState {
            last_purged_log_id: log.purged_log_id().map(convert::log_id_to_raft),
            last_log_id: log.last_log_id().map(convert::log_id_to_raft),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { log: self.log.clone() }
    }

    async fn save_vote(&mut self, vote: &openraft::Vote<u64>) -> Result<()> {
        let vote = convert::vote_to_log(vote);
        if let Some(kept) = &mut self.canary_vote {
            *kept = Some(vote);
            return Ok(());
        }
        let mut guard = self.log.clone().lock_owned().await;
        blocking::run(move || guard.save_vote(vote)).await.map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<openraft::Vote<u64>>> {
        if let Some(kept) = self.canary_vote {
            return Ok(kept.map(convert::vote_from_log));
        }
        Ok(self.log.lock().await.vote().map(convert::vote_from_log))
    }

    async fn save_committed(&mut self, committed: Option<openraft::LogId<u64>>) -> Result<()> {
        let Some(id) = committed else { return Ok(()) };
        // A file written per entry costs more than the entry: save every
        // so many (a restart applies at most that many entries again).
        let saved = self.committed_saved.load(Ordering::Relaxed);
        if id.index < saved + COMMITTED_SAVE_EVERY && saved != 0 {
            return Ok(());
        }
        self.committed_saved.store(id.index.max(1), Ordering::Relaxed);
        let mut guard = self.log.clone().lock_owned().await;
        // The saved id only shortens re-applying after a restart, and a
        // failed write leaves the older one: not worth stopping the group.
        if let Err(e) = blocking::run(move || guard.save_committed(convert::log_id_to_log(id))).await {
            tracing::warn!(error = %e, "cannot save the committed log id: a restart applies more entries again");
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<openraft::LogId<u64>>> {
        Ok(self.log.lock().await.committed().map_err(read_error)?.map(convert::log_id_to_raft))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut guard = self.log.clone().lock_owned().await;
        if let (Some(hook), true) = (&self.hook, self.alone.load(Ordering::SeqCst))
            && let Some(e) = entries.last_mut()
            && let EntryPayload::Normal(p) = &mut e.payload
            && p.base_offset.is_none()
        {
            // The leader's own entry, cut when it was proposed: what arrived
            // since joins it here, as late as it can, to share its write
            // and sync (group commit; openraft writes one entry at a time).
            let size: usize = p.batches.iter().map(|b| b.len()).sum();
            let records: u64 = p.batches.iter().map(|b| BatchHeader::parse(b).map_or(0, |h| u64::from(h.record_count))).sum();
            let end = guard.log_end_offset() + records;
            let budget = guard.config().batch_bytes_max.saturating_sub(size);
            p.batches.extend(hook.extend(e.log_id.leader_id.term, end, budget));
        }
        let recent = self.recent.clone();
        for e in &entries {
            if let EntryPayload::Membership(m) = &e.payload {
                // Raft's rule: the newest membership in the log is in force.
                let voters: Vec<u64> = m.voter_ids().collect();
                self.alone.store(m.get_joint_config().len() == 1 && voters == [self.node], Ordering::SeqCst);
            }
        }
        let written = blocking::run_disk(&*self.disk, move || {
            let log = &mut *guard;
            let now = clock::now();
            let mut heads = Vec::with_capacity(entries.len());
            for e in &entries {
                if let EntryPayload::Normal(Proposal { base_offset: Some(stamped), .. }) = &e.payload
                    && *stamped != log.log_end_offset()
                {
                    // Raft prefixes are identical, so the offsets they took
                    // must be too: this replica's log has diverged.
                    let why = format!(
                        "entry {} was stamped at offset {stamped} by the leader but this replica's log ends at {}: the replicas have diverged; this replica stops",
                        e.log_id.index,
                        log.log_end_offset()
                    );
                    tracing::error!(dir = %log.dir().display(), "{why}");
                    return Err(LogError::RaftOrder(why));
                }
                let batches = entry_batches(e);
                let parts: Vec<&[u8]> = batches.iter().map(|b| b.as_ref()).collect();
                let info = log.append_entry(convert::log_id_to_log(e.log_id), &parts, now)?;
                heads.push(heads_of(e, &info));
            }
            let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
            for h in heads {
                // Only a contiguous run is kept (a truncation empties it).
                if recent.back().is_some_and(|b| b.log_id.index + 1 != h.log_id.index) {
                    recent.clear();
                }
                recent.push_back(h);
                if recent.len() > RECENT_ENTRIES_MAX {
                    recent.pop_front();
                }
            }
            drop(recent);
            let job = log.begin_flush()?;
            // The sync runs without the log's lock: reads go on.
            drop(guard);
            let r = job.run();
            Ok((job, r))
        })
        .await;
        match written {
            Ok((job, synced)) => {
                // Written and synced in one trip to a blocking thread, and
                // reported here: openraft 0.9.25 waits for the report before
                // it does anything else (it replicates only what the leader
                // made durable), so a flusher beside the store would only
                // add task switches.
                let flushed = self.complete_flush(job, synced).await;
                if let Err(e) = &flushed {
                    record_fault(&self.fault, e);
                }
                callback.log_io_completed(flushed.map_err(|e| std::io::Error::other(e.to_string())));
                Ok(())
            }
            Err(e) => {
                record_fault(&self.fault, &e);
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: openraft::LogId<u64>) -> Result<()> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).retain(|e| e.log_id.index < log_id.index);
        let mut guard = self.log.clone().lock_owned().await;
        blocking::run(move || guard.truncate_entries(convert::log_id_to_log(log_id).index)).await.map_err(write_error)
    }

    async fn purge(&mut self, log_id: openraft::LogId<u64>) -> Result<()> {
        let upto = convert::log_id_to_log(log_id);
        let mut guard = self.log.clone().lock_owned().await;
        if guard.flushed_log_id().is_none_or(|f| f.index < upto.index) {
            // A follower about to install a snapshot past its log: openraft
            // purges first, but the log is reset only once the snapshot is
            // installed, so a crash in between loses nothing.
            return Ok(());
        }
        blocking::run(move || guard.purge_entries(upto).map(|_| ())).await.map_err(write_error)
    }
}
