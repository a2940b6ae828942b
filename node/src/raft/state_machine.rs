//! The state a partition group applies committed entries to: the last
//! applied id, the membership, and the high watermark (the offset after the
//! last committed record), which fetches read up to and waiters watch.
//!
//! The state is small and derived from the log, so openraft's snapshots are
//! small: what they cover and where the log starts after them. Installing
//! one resets the local log to start there ([`PartitionLog::reset`]). A
//! snapshot covers only what retention or compaction purges (the purge
//! target, or the log's purged id; not the applied id), so a replica that
//! receives it is then sent every entry
//! the leader still holds: the whole retained log, its records and producer
//! state applied as on any replica, never a log that starts at the leader's
//! high watermark. The membership is also kept in a file beside the
//! segments, written when a membership entry is applied, so a restart knows
//! it even after the entry is purged.

// openraft's trait signatures fix the error type (`StorageError`, ~200 bytes).
#![allow(clippy::result_large_err)]

use super::log_store::SharedLog;
use super::{Applied, Proposal, TypeConfig, convert};
use crate::{blocking, clock};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use weir_core::batch::BatchHeader;
use weir_core::disk::{self, Disk};
use weir_net::peer;

/// The membership file beside the segments.
pub const MEMBERSHIP_FILE: &str = "raft-membership";
/// Largest snapshot or membership file read back.
const SMALL_FILE_MAX: u64 = 1 << 20;

type Result<T> = std::result::Result<T, StorageError<u64>>;

fn sm_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::error(e.to_string())).into()
}

/// The newest entry retention or compaction asked openraft to purge up to
/// (shared with the group): snapshots are built there. The entries stay on
/// disk until openraft purges them ([`PartitionLog::purge_entries`], when
/// no replication reads them any more), so a lagging follower is never
/// sent a log with a hole in it.
pub type PurgeTarget = Arc<Mutex<Option<openraft::LogId<u64>>>>;

/// Moves the purge target forwards (never back).
pub fn raise_purge_target(target: &PurgeTarget, upto: openraft::LogId<u64>) {
    let mut t = target.lock().unwrap_or_else(|p| p.into_inner());
    if t.is_none_or(|t| t.index < upto.index) {
        *t = Some(upto);
    }
}

/// What a snapshot's bytes hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SnapshotData {
    /// The offset after the last record the snapshot covers: where the log
    /// of a replica installing it starts.
    next_offset: u64,
}

/// The membership file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MembershipFile {
    log_id: Option<peer::LogId>,
    membership: peer::Membership,
}

#[derive(Debug)]
struct State {
    applied: Option<openraft::LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine of one group (cheap to clone: shared state).
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<Mutex<State>>,
    log: SharedLog,
    disk: Arc<dyn Disk>,
    /// The log's directory (for the membership file).
    dir: std::path::PathBuf,
    /// The high watermark, which only apply and snapshot install move.
    high_watermark: watch::Sender<u64>,
    hook: Option<Arc<dyn super::ApplyHook>>,
    purge_target: PurgeTarget,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").field("hook", &self.hook.is_some()).finish()
    }
}

/// The membership file in `dir`, if there is a readable one (an
/// unreadable one is logged: the log's membership entries are used).
fn read_membership_file(disk: &dyn Disk, dir: &std::path::Path) -> std::result::Result<Option<MembershipFile>, disk::DiskError> {
    let Some(raw) = disk::read_small(disk, &dir.join(MEMBERSHIP_FILE), SMALL_FILE_MAX)? else { return Ok(None) };
    match postcard::from_bytes::<MembershipFile>(&raw) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "membership file unreadable: the log's membership entries are used");
            Ok(None)
        }
    }
}

/// Saves as the committed id the membership entry the membership file
/// names when it lies past the committed id saved (and the log reaches it).
/// The file is written when that entry is applied, so it was committed;
/// the committed id is saved only now and then. Without this, a restart
/// applies from the older committed id while the membership it reports is
/// the newer one, and openraft looks for membership entries only after the
/// applied id: should damage hide the newer entry from that scan, the
/// effective membership would be older than the applied one, which
/// openraft refuses to start with. Everything that derives from the
/// committed id (applied, producer rebuild, what is read whole) moves with
/// it, so call it before the log is rebuilt or opened as a group.
pub fn commit_applied_membership(
    log: &mut weir_core::log::PartitionLog,
    disk: &dyn Disk,
) -> std::result::Result<(), weir_core::log::LogError> {
    let Some(file) = read_membership_file(disk, log.dir())? else { return Ok(()) };
    let Some(at) = file.log_id.map(convert::log_id_from_wire).map(convert::log_id_to_log) else { return Ok(()) };
    let committed = log.committed()?;
    let reached = log.last_log_id().is_some_and(|l| l.index >= at.index);
    if reached && committed.is_none_or(|c| c.index < at.index) {
        log.save_committed(at)?;
    }
    Ok(())
}

impl StateMachine {
    /// Recovers the applied state from the log: applied is the committed id
    /// it saved (never past its end), the high watermark the end of that
    /// entry. Entries after it are applied again by openraft.
    pub async fn open(
        log: SharedLog,
        disk: Arc<dyn Disk>,
        hook: Option<Arc<dyn super::ApplyHook>>,
        purge_target: PurgeTarget,
    ) -> std::result::Result<StateMachine, weir_core::log::LogError> {
        let guard = log.clone().lock_owned().await;
        let dir = guard.dir().to_path_buf();
        let disk2 = disk.clone();
        let (applied, high_watermark, membership) = blocking::run(move || {
            let committed = guard.committed()?;
            let purged = guard.purged_log_id();
            let applied = match (committed, purged) {
                (Some(c), Some(p)) if p.index > c.index => Some(p),
                (c, p) => c.or(p),
            };
            let file = read_membership_file(&*disk2, guard.dir())?.map(|m| convert::stored_membership_from_wire(m.log_id, m.membership));
            // The file is written when a membership entry is applied; the
            // committed id is saved before entries are applied. A crash in
            // between leaves applied past a membership the file never got,
            // and openraft looks for membership entries only after applied:
            // without a file, apply everything again (the first entries of
            // a group; later membership changes rewrite the file).
            let (applied, membership) = match file {
                Some(m) => (applied, m),
                None => (purged, StoredMembership::default()),
            };
            let high_watermark = match applied {
                Some(a) if Some(a) != purged => {
                    // Heads only, past damage: the applied entry's end, or
                    // where the next readable entry starts.
                    match guard.entry_heads(a.index..u64::MAX, 1)?.first() {
                        Some(e) if e.log_id.index == a.index => e.next_offset,
                        Some(e) => e.base_offset,
                        None => guard.log_start_offset(),
                    }
                }
                // Nothing applied: the Raft entries start where data written
                // before them (a pre-cluster log) ends, all of it committed.
                // Nothing applied past the purged point: the data before
                // the first entry after it is committed (purged entries
                // were applied; data written before the Raft entries, in a
                // pre-cluster log, was acknowledged), the rest is not.
                _ => {
                    let after = purged.map_or(1, |p| p.index + 1);
                    match guard.entry_heads(after..u64::MAX, 1)?.first() {
                        Some(e) => e.base_offset,
                        None => guard.log_end_offset(),
                    }
                }
            };
            Ok::<_, weir_core::log::LogError>((applied.map(convert::log_id_to_raft), high_watermark, membership))
        })
        .await?;
        let (high_watermark, _) = watch::channel(high_watermark);
        let state = State { applied, membership, snapshot: None, snapshots_built: 0 };
        Ok(StateMachine { state: Arc::new(Mutex::new(state)), log, disk, dir, high_watermark, hook, purge_target })
    }

    /// The high watermark: committed and applied records end here.
    pub fn high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn save_membership(&self, m: &StoredMembership<u64, BasicNode>) -> Result<()> {
        let (log_id, membership) = convert::stored_membership_to_wire(m);
        let bytes = postcard::to_stdvec(&MembershipFile { log_id, membership }).expect("postcard encoding of owned data cannot fail");
        let (dir, disk) = (self.dir.clone(), self.disk.clone());
        blocking::run(move || disk::write_atomic(&*disk, &dir, MEMBERSHIP_FILE, &bytes)).await.map_err(|e| sm_error(ErrorVerb::Write, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        // Where the log's entries start once purged: the purge target (or
        // the purged id, if further), and the offset the first entry after
        // it begins at.
        let target = self.purge_target.lock().unwrap_or_else(|p| p.into_inner()).map(convert::log_id_to_log);
        let guard = self.log.clone().lock_owned().await;
        let start = blocking::run(move || {
            // The target only as the log holds it (an entry of another term
            // at its index means it was cut and written again since).
            let held = |id: weir_core::log::LogId| {
                guard.entry_heads(id.index..id.index + 1, 1).ok().and_then(|e| e.first().map(|e| e.log_id)) == Some(id)
            };
            let target = target.filter(|t| held(*t));
            let purged = [target, guard.purged_log_id()].into_iter().flatten().max_by_key(|id| id.index)?;
            let first = guard.entry_heads(purged.index + 1..u64::MAX, 1).ok()?.into_iter().next()?;
            (first.log_id.index == purged.index + 1).then_some((convert::log_id_to_raft(purged), first.base_offset))
        })
        .await;
        let mut s = self.lock();
        s.snapshots_built += 1;
        // At the purged point when the membership then was the one applied
        // now (its entry is not after it) and it was applied; otherwise (no
        // purge yet, or a membership change since) at the applied point,
        // as a snapshot of everything applied.
        let at_start = start.filter(|(purged, _)| {
            s.applied.is_some_and(|a| a.index >= purged.index) && s.membership.log_id().is_none_or(|m| m.index <= purged.index)
        });
        let (last_log_id, next_offset) = match at_start {
            Some((purged, offset)) => (Some(purged), offset),
            None => (s.applied, *self.high_watermark.borrow()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: s.membership.clone(),
            snapshot_id: format!("{}-{}", last_log_id.map(|a| a.index).unwrap_or(0), s.snapshots_built),
        };
        let data = postcard::to_stdvec(&SnapshotData { next_offset }).expect("postcard encoding of owned data cannot fail");
        // A snapshot at the purge point can lie below one built earlier at
        // the applied point. openraft keeps the newer one (the first of equals) as the current
        // snapshot and sends that one's id, so the one served must stay the
        // newer too (else a follower acks a snapshot older than the one its
        // leader sent it, which openraft asserts never happens).
        if s.snapshot.as_ref().is_none_or(|(held, _)| held.last_log_id < last_log_id) {
            s.snapshot = Some((meta.clone(), data.clone()));
        }
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<openraft::LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let s = self.lock();
        Ok((s.applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut membership = None;
        let mut hw = *self.high_watermark.borrow();
        let mut applied = None;
        let mut headers = Vec::new();
        for e in entries {
            let result = match &e.payload {
                EntryPayload::Normal(Proposal { batches, .. }) => {
                    let mut base = None;
                    for b in batches {
                        let h = BatchHeader::parse(b).map_err(|err| sm_error(ErrorVerb::Read, err))?;
                        headers.push(h);
                        base.get_or_insert(h.base_offset);
                        if h.base_offset < hw {
                            return Err(sm_error(
                                ErrorVerb::Read,
                                format!(
                                    "entry {} holds offset {} below the applied end {hw}: offsets overlap",
                                    e.log_id.index, h.base_offset
                                ),
                            ));
                        }
                        // Above it only where an accepted loss skipped offsets.
                        hw = h.next_offset();
                    }
                    // Where its first batch was stamped: above the applied
                    // end after an accepted loss skipped offsets.
                    Applied { base_offset: base.unwrap_or(hw), next_offset: hw }
                }
                EntryPayload::Blank => Applied { base_offset: hw, next_offset: hw },
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                    Applied { base_offset: hw, next_offset: hw }
                }
            };
            applied = Some(e.log_id);
            out.push(result);
        }
        if let Some(m) = &membership {
            self.save_membership(m).await?;
        }
        let mut s = self.lock();
        if let Some(m) = membership {
            s.membership = m;
        }
        if applied.is_some() {
            s.applied = applied;
        }
        drop(s);
        // The owner first (its answers come due), then fetches' watch.
        if let Some(hook) = &self.hook {
            hook.applied(&headers, hw);
        }
        // Offsets are dense from the applied end, so this never moves back.
        self.high_watermark.send_if_modified(|cur| std::mem::replace(cur, hw) != hw);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<u64, BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> Result<()> {
        let raw = snapshot.into_inner();
        let data: SnapshotData = postcard::from_bytes(&raw).map_err(|e| sm_error(ErrorVerb::Read, format!("snapshot unreadable: {e}")))?;
        let purged = meta.last_log_id.map(convert::log_id_to_log);
        let mut guard = self.log.clone().lock_owned().await;
        blocking::run(move || guard.reset(data.next_offset, purged, clock::now())).await.map_err(|e| sm_error(ErrorVerb::Write, e))?;
        self.save_membership(&meta.last_membership).await?;
        let mut s = self.lock();
        s.applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        s.snapshot = Some((meta.clone(), raw));
        drop(s);
        self.high_watermark.send_replace(data.next_offset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let s = self.lock();
        Ok(s.snapshot.clone().map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::RealDisk;
    use weir_core::log::{LogConfig, LogId, PartitionLog};

    /// The committed id saved lags the membership applied (it is saved now
    /// and then): opening moves it up to that membership, never past the
    /// log's end, never down.
    #[test]
    fn the_committed_id_moves_up_to_the_applied_membership() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(RealDisk::default());
        let (mut log, _) = PartitionLog::open(disk.clone(), dir.path(), LogConfig::default(), clock::now()).unwrap();
        let id = |i| LogId { term: 2, node: 0, index: i };
        for i in 1..=10 {
            log.append_entry(id(i), &[&weir_core::batch::BatchBuilder::control(0)], clock::now()).unwrap();
        }
        log.save_committed(id(3)).unwrap();
        let membership = |index| {
            let file = MembershipFile { log_id: Some(peer::LogId { term: 2, index }), membership: peer::Membership::default() };
            disk::write_atomic(&*disk, dir.path(), MEMBERSHIP_FILE, &postcard::to_stdvec(&file).unwrap()).unwrap();
        };
        // openraft index 6 is stored index 7.
        membership(6);
        commit_applied_membership(&mut log, &*disk).unwrap();
        assert_eq!(log.committed().unwrap(), Some(id(7)));
        membership(2);
        commit_applied_membership(&mut log, &*disk).unwrap();
        assert_eq!(log.committed().unwrap(), Some(id(7)), "never down");
        membership(40);
        commit_applied_membership(&mut log, &*disk).unwrap();
        assert_eq!(log.committed().unwrap(), Some(id(7)), "never past the log's end");
    }
}
