//! What a replica moved off this node leaves behind when its data is
//! deleted: its last vote and the last log id it held
//! (`meta/tombstones/<group>`), so that a replica of the same group
//! created here again votes as its former self would have.
//!
//! Raft's votes are safe only from servers that never forget. A replica
//! moved back opens empty and catches up from the start of the leader's
//! log, whose old membership may name it a voter: without its former log
//! it would elect a lagging candidate of that old membership, whose
//! majority of former members could cut entries the current members
//! committed. With the tombstone it starts from its former vote (no second
//! vote in a term) and refuses candidates whose log ends before its former
//! one, until its own log is past that point (see `Registry::dispatch`).

use super::convert;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use weir_core::disk::{self, Disk, DiskError};
use weir_core::log::{LogError, PartitionLog, Vote};
use weir_net::peer;

/// A deleted replica's last vote and last log id (openraft's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tombstone {
    pub vote_term: u64,
    pub vote_node: Option<u32>,
    pub last_log_id: Option<peer::LogId>,
}

/// Largest tombstone file read back.
const TOMBSTONE_BYTES_MAX: u64 = 1024;

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("tombstones")
}

fn name(group: u64) -> String {
    group.to_string()
}

/// (term, index) order: `None` (no log) before every id.
fn key(id: Option<peer::LogId>) -> Option<(u64, u64)> {
    id.map(|l| (l.term, l.index))
}

impl Tombstone {
    /// What `log` (of a stopped group) would leave behind.
    pub fn of(log: &PartitionLog) -> Tombstone {
        let vote = log.vote().unwrap_or_default();
        Tombstone {
            vote_term: vote.term,
            vote_node: vote.node,
            last_log_id: log.last_log_id().map(|l| convert::log_id_to_wire(convert::log_id_to_raft(l))),
        }
    }

    /// The later of two: the newer vote, the longer log.
    fn max(self, other: Tombstone) -> Tombstone {
        let vote = if (other.vote_term, other.vote_node.is_some()) > (self.vote_term, self.vote_node.is_some()) { other } else { self };
        let last_log_id = if key(other.last_log_id) > key(self.last_log_id) { other.last_log_id } else { self.last_log_id };
        Tombstone { vote_term: vote.vote_term, vote_node: vote.vote_node, last_log_id }
    }

    /// Whether a candidate whose log ends at `candidate` is behind the log
    /// this replica held before (its former self would refuse it).
    pub fn refuses(&self, candidate: Option<peer::LogId>) -> bool {
        key(candidate) < key(self.last_log_id)
    }
}

/// Records `t` for `group` (durably, merged with one already there: a
/// replica moved off twice keeps the later of both) before its data goes.
pub fn save(disk: &dyn Disk, data_dir: &Path, group: u64, t: Tombstone) -> Result<(), DiskError> {
    let merged = load(disk, data_dir, group)?.map_or(t, |old| old.max(t));
    let dir = dir(data_dir);
    // Durably: a first tombstone whose directory a crash forgot would be
    // lost with the data it stands for already gone.
    disk::create_dir_durably(disk, &dir)?;
    let bytes = postcard::to_stdvec(&merged).expect("postcard encoding of owned data cannot fail");
    disk::write_atomic(disk, &dir, &name(group), &bytes)
}

/// The tombstone of `group`, if a replica of it was deleted here. An
/// unreadable one counts as a log that ended nowhere: refusing too many
/// votes is safe, granting too many is not, so it is reported instead.
pub fn load(disk: &dyn Disk, data_dir: &Path, group: u64) -> Result<Option<Tombstone>, DiskError> {
    let path = dir(data_dir).join(name(group));
    let Some(raw) = disk::read_small(disk, &path, TOMBSTONE_BYTES_MAX)? else { return Ok(None) };
    postcard::from_bytes(&raw).map(Some).map_err(|e| {
        DiskError::io(&path, format!("tombstone unreadable: {e}; delete it only if the group's replica here was never moved off"))
    })
}

/// Forgets `group`'s tombstone (its topic is gone, or the replica's own
/// log is past it).
pub fn remove(disk: &dyn Disk, data_dir: &Path, group: u64) -> Result<(), DiskError> {
    let path = dir(data_dir).join(name(group));
    match disk.remove_file(&path) {
        Ok(()) | Err(DiskError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Forgets the tombstones of every partition of topic `topic_id` (group
/// ids `topic_id << 16 | partition`): the topic is deleted, and group ids
/// are never reused.
pub fn remove_topic(disk: &dyn Disk, data_dir: &Path, topic_id: u64) -> Result<(), DiskError> {
    let dir = dir(data_dir);
    if !disk.exists(&dir) {
        return Ok(());
    }
    for group in disk.list_dir(&dir)?.iter().filter_map(|name| name.parse::<u64>().ok()) {
        if group >> 16 == topic_id {
            remove(disk, data_dir, group)?;
        }
    }
    Ok(())
}

/// Prepares a re-created replica's `log` from the tombstone of its group:
/// its vote starts at the former one (never leading: it must win an
/// election first), and the answer is the tombstone whose log candidates
/// must reach for its vote, or `None` once its own log is past the former
/// one (the tombstone is then removed).
pub fn apply(disk: &dyn Disk, data_dir: &Path, group: u64, log: &mut PartitionLog) -> Result<Option<Tombstone>, LogError> {
    let Some(t) = load(disk, data_dir, group)? else { return Ok(None) };
    let own = Tombstone::of(log);
    if key(own.last_log_id) >= key(t.last_log_id) && own.vote_term >= t.vote_term {
        remove(disk, data_dir, group)?;
        return Ok(None);
    }
    if t.vote_term > own.vote_term {
        log.save_vote(Vote { term: t.vote_term, node: t.vote_node, committed: false })?;
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::RealDisk;
    use std::sync::Arc;
    use weir_core::log::{LogConfig, LogId};

    #[test]
    fn a_recreated_replica_starts_from_its_former_vote_and_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(RealDisk::default());
        let data = dir.path();
        let id = |t, i| LogId { term: t, node: 0, index: i };
        let (mut old, _) = PartitionLog::open(disk.clone(), &data.join("old"), LogConfig::default(), crate::clock::now()).unwrap();
        for i in 1..=5 {
            old.append_entry(id(3, i), &[&weir_core::batch::BatchBuilder::control(0)], crate::clock::now()).unwrap();
        }
        old.save_vote(Vote { term: 4, node: Some(2), committed: true }).unwrap();
        save(&*disk, data, 9, Tombstone::of(&old)).unwrap();
        // An older tombstone merged in changes nothing.
        save(&*disk, data, 9, Tombstone { vote_term: 1, vote_node: Some(1), last_log_id: Some(peer::LogId { term: 1, index: 1 }) })
            .unwrap();
        let t = load(&*disk, data, 9).unwrap().unwrap();
        assert_eq!((t.vote_term, t.vote_node, t.last_log_id), (4, Some(2), Some(peer::LogId { term: 3, index: 4 })));
        assert!(t.refuses(None) && t.refuses(Some(peer::LogId { term: 3, index: 3 })));
        assert!(t.refuses(Some(peer::LogId { term: 2, index: 90 })), "an older term is behind whatever its length");
        assert!(!t.refuses(Some(peer::LogId { term: 3, index: 4 })) && !t.refuses(Some(peer::LogId { term: 4, index: 1 })));

        let (mut fresh, _) = PartitionLog::open(disk.clone(), &data.join("new"), LogConfig::default(), crate::clock::now()).unwrap();
        assert_eq!(apply(&*disk, data, 9, &mut fresh).unwrap(), Some(t));
        assert_eq!(fresh.vote(), Some(Vote { term: 4, node: Some(2), committed: false }), "the former vote, not leading");
        // Caught up past the former log: the tombstone goes.
        for i in 1..=6 {
            fresh.append_entry(id(4, i), &[&weir_core::batch::BatchBuilder::control(0)], crate::clock::now()).unwrap();
        }
        assert_eq!(apply(&*disk, data, 9, &mut fresh).unwrap(), None);
        assert_eq!(load(&*disk, data, 9).unwrap(), None);
        assert_eq!(apply(&*disk, data, 10, &mut fresh).unwrap(), None, "no tombstone: nothing to do");
        // A deleted topic's tombstones go, other topics' stay.
        for g in [5 << 16, (5 << 16) | 3, 6 << 16] {
            save(&*disk, data, g, t).unwrap();
        }
        remove_topic(&*disk, data, 5).unwrap();
        assert_eq!((load(&*disk, data, 5 << 16).unwrap(), load(&*disk, data, (5 << 16) | 3).unwrap()), (None, None));
        assert_eq!(load(&*disk, data, 6 << 16).unwrap(), Some(t));
        std::fs::write(super::dir(data).join("11"), b"\xff\xff\xff").unwrap();
        assert!(load(&*disk, data, 11).is_err(), "an unreadable tombstone is an error, not an absent one");
    }
}
