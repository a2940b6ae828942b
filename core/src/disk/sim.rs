//! An in-memory [`Disk`] that models the page cache and injects faults.
//!
//! Writes, size changes and directory changes are volatile until synced, as on
//! a real kernel. [`SimDisk::crash`] models power loss: each file keeps a
//! random prefix of its unsynced operations and the last kept write may be
//! torn at any byte; each directory keeps a random prefix of its unsynced
//! namespace changes. Handles opened before a crash fail afterwards, so a
//! restarted node cannot write through its dead predecessor's files.
//!
//! Faults: bit flips in a chosen or random region ([`SimDisk::flip_bit`]),
//! read and write errors (EIO) and sync failures at configured rates, ENOSPC
//! past a capacity, and latency that an async caller can pay with
//! [`Disk::take_latency`]. All randomness comes from the seed given to
//! [`SimDisk::new`], so a run replays exactly.

use super::{Disk, DiskError, DiskFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Fault rates; all zero by default (a perfect disk that can still crash).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Probability that a read fails with EIO.
    pub read_error: f64,
    /// Probability that a write fails with EIO (nothing is written).
    pub write_error: f64,
    /// Probability that a sync fails with EIO (nothing becomes durable).
    pub sync_error: f64,
    /// Total bytes the disk holds; writes beyond it fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Latency added per sync, uniformly drawn from this range (ns).
    pub sync_latency_ns: (u64, u64),
    /// Latency added per read or write (ns).
    pub io_latency_ns: (u64, u64),
    /// Changing operations (writes, size changes, syncs, namespace changes)
    /// that succeed before every later one fails: the process dies part-way
    /// through whatever it was doing. Tests follow it with [`SimDisk::crash`]
    /// to check that recovery copes with every intermediate state.
    pub ops_left: Option<u64>,
}

type FileId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(FileId),
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum NameOp {
    Put(PathBuf, Entry),
    Remove(PathBuf),
    /// A rename of an entry with everything below it (a directory's
    /// children move with it, as one directory entry does on a real disk).
    Move(PathBuf, PathBuf),
}

/// Re-keys `from` and every name below it to live under `to`.
fn move_subtree(names: &mut BTreeMap<PathBuf, Entry>, from: &Path, to: &Path) {
    let moved: Vec<(PathBuf, Entry)> = names.iter().filter(|(p, _)| p.starts_with(from)).map(|(p, e)| (p.clone(), e.clone())).collect();
    for (p, e) in moved {
        names.remove(&p);
        let rest = p.strip_prefix(from).expect("filtered by prefix");
        names.insert(if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) }, e);
    }
}

impl NameOp {
    fn touches(&self, dir: &Path) -> bool {
        match self {
            NameOp::Put(p, _) | NameOp::Remove(p) => p.parent() == Some(dir),
            NameOp::Move(from, to) => from.parent() == Some(dir) || to.parent() == Some(dir),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, Entry>) {
        match self {
            NameOp::Put(p, e) => {
                names.insert(p.clone(), e.clone());
            }
            NameOp::Remove(p) => {
                names.remove(p);
            }
            NameOp::Move(from, to) => move_subtree(names, from, to),
        }
    }
}

#[derive(Debug, Default)]
struct FileState {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

fn apply_op(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { pos, data } => {
            let pos = *pos as usize;
            if content.len() < pos + data.len() {
                content.resize(pos + data.len(), 0);
            }
            content[pos..pos + data.len()].copy_from_slice(data);
        }
        FileOp::SetLen(len) => content.resize(*len as usize, 0),
    }
}

#[derive(Debug)]
struct State {
    rng: fastrand::Rng,
    generation: u64,
    names: BTreeMap<PathBuf, Entry>,
    durable_names: BTreeMap<PathBuf, Entry>,
    pending_names: Vec<NameOp>,
    files: BTreeMap<FileId, FileState>,
    next_id: FileId,
    faults: FaultConfig,
    latency_owed_ns: u64,
    stats: SimDiskStats,
}

/// Counters for reports and for tests that check faults really fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub syncs: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub lost_ops: u64,
    pub bit_flips: u64,
    pub injected_errors: u64,
}

/// The simulated disk. Cheap to clone; clones share one state, which lives
/// outside any node so it survives a node's crash and restart.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    pub fn new(seed: u64) -> Self {
        let mut names = BTreeMap::new();
        names.insert(PathBuf::from("/"), Entry::Dir);
        let state = State {
            rng: fastrand::Rng::with_seed(seed),
            generation: 0,
            durable_names: names.clone(),
            names,
            pending_names: Vec::new(),
            files: BTreeMap::new(),
            next_id: 1,
            faults: FaultConfig::default(),
            latency_owed_ns: 0,
            stats: SimDiskStats::default(),
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a test failure already; keep going
        // with the state as it is so the report is about the first failure.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.lock().faults = faults;
    }

    /// The fault rates in force.
    pub fn faults(&self) -> FaultConfig {
        self.lock().faults.clone()
    }

    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats
    }

    /// Power loss: every unsynced operation is kept or lost as described in
    /// the module doc. Handles opened before the crash stop working.
    pub fn crash(&self) {
        let mut s = self.lock();
        let s = &mut *s;
        s.generation += 1;
        s.stats.crashes += 1;
        // Namespace: a random prefix of the unsynced changes survives.
        let keep = s.rng.usize(0..=s.pending_names.len());
        s.stats.lost_ops += (s.pending_names.len() - keep) as u64;
        for op in s.pending_names.drain(..).take(keep) {
            op.apply(&mut s.durable_names);
        }
        // Entries whose parent directory vanished vanish too.
        let dirs: Vec<PathBuf> = s.durable_names.iter().filter(|(_, e)| **e == Entry::Dir).map(|(p, _)| p.clone()).collect();
        s.durable_names.retain(|p, _| p.parent().is_none_or(|parent| dirs.iter().any(|d| d == parent)));
        s.names = s.durable_names.clone();
        // File contents: a random prefix of unsynced operations, last write torn.
        let live: Vec<FileId> = s.names.values().filter_map(|e| if let Entry::File(id) = e { Some(*id) } else { None }).collect();
        s.files.retain(|id, _| live.contains(id));
        for file in s.files.values_mut() {
            let keep = s.rng.usize(0..=file.pending.len());
            s.stats.lost_ops += (file.pending.len() - keep) as u64;
            let mut ops: Vec<FileOp> = file.pending.drain(..).take(keep).collect();
            if let Some(FileOp::Write { data, .. }) = ops.last_mut()
                && !data.is_empty()
                && s.rng.bool()
            {
                data.truncate(s.rng.usize(0..data.len()));
                s.stats.torn_writes += 1;
            }
            for op in &ops {
                apply_op(&mut file.durable, op);
            }
            file.current = file.durable.clone();
        }
    }

    /// Flips one bit in `path`, at a random position within `range` (or the
    /// whole file), in both the durable and the cached content, as a latent
    /// media error would. Returns the byte position flipped, if the file had
    /// bytes there.
    pub fn flip_bit(&self, path: &Path, range: Option<std::ops::Range<u64>>) -> Option<u64> {
        let mut s = self.lock();
        let s = &mut *s;
        let Some(Entry::File(id)) = s.names.get(path).cloned() else { return None };
        let file = s.files.get_mut(&id)?;
        let len = file.current.len() as u64;
        let range = range.unwrap_or(0..len);
        let (start, end) = (range.start.min(len), range.end.min(len));
        if start >= end {
            return None;
        }
        let pos = s.rng.u64(start..end);
        let bit = 1u8 << s.rng.u8(0..8);
        file.current[pos as usize] ^= bit;
        if let Some(b) = file.durable.get_mut(pos as usize) {
            *b ^= bit;
        }
        s.stats.bit_flips += 1;
        Some(pos)
    }

    /// Names of every file, for a fault schedule to pick from.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().names.iter().filter(|(_, e)| matches!(e, Entry::File(_))).map(|(p, _)| p.clone()).collect()
    }

    /// Bytes held, counting the current (cached) content of every file.
    pub fn used_bytes(&self) -> u64 {
        self.lock().files.values().map(|f| f.current.len() as u64).sum()
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl State {
    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    fn owe(&mut self, range: (u64, u64)) {
        if range.1 > 0 {
            self.latency_owed_ns += self.rng.u64(range.0..=range.1.max(range.0));
        }
    }

    /// Spends one changing operation of `ops_left`; true once none are left.
    fn halted(&mut self) -> bool {
        match &mut self.faults.ops_left {
            Some(0) => true,
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }

    fn injected(&mut self, path: &Path, what: &str) -> DiskError {
        self.stats.injected_errors += 1;
        DiskError::io(path, format!("injected {what} error (EIO)"))
    }

    fn put_name(&mut self, path: PathBuf, entry: Entry) {
        self.names.insert(path.clone(), entry.clone());
        self.pending_names.push(NameOp::Put(path, entry));
    }

    fn remove_name(&mut self, path: &Path) {
        self.names.remove(path);
        self.pending_names.push(NameOp::Remove(path.to_path_buf()));
    }

    fn parent_is_dir(&self, path: &Path) -> bool {
        path.parent().is_some_and(|p| self.names.get(p) == Some(&Entry::Dir))
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    id: FileId,
    path: PathBuf,
    generation: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, FileId) -> Result<T, DiskError>) -> Result<T, DiskError> {
        let mut s = self.disk.lock();
        if s.generation != self.generation {
            return Err(DiskError::io(&self.path, "file handle used after a simulated crash"));
        }
        f(&mut s, self.id)
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize, DiskError> {
        self.with(|s, id| {
            let p = s.faults.io_latency_ns;
            s.owe(p);
            if s.roll(s.faults.read_error) {
                return Err(s.injected(&self.path, "read"));
            }
            let content = &s.files[&id].current;
            let start = (pos as usize).min(content.len());
            let n = buf.len().min(content.len() - start);
            buf[..n].copy_from_slice(&content[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&self, data: &[u8], pos: u64) -> Result<(), DiskError> {
        self.with(|s, id| {
            let p = s.faults.io_latency_ns;
            s.owe(p);
            if s.halted() {
                return Err(s.injected(&self.path, "write (halted)"));
            }
            if s.roll(s.faults.write_error) {
                return Err(s.injected(&self.path, "write"));
            }
            let end = pos + data.len() as u64;
            if let Some(cap) = s.faults.capacity_bytes {
                let len = s.files[&id].current.len() as u64;
                let used: u64 = s.files.values().map(|f| f.current.len() as u64).sum();
                if end > len && used + (end - len) > cap {
                    s.stats.injected_errors += 1;
                    return Err(DiskError::NoSpace(self.path.clone()));
                }
            }
            let op = FileOp::Write { pos, data: data.to_vec() };
            let file = s.files.get_mut(&id).expect("open file has state");
            apply_op(&mut file.current, &op);
            file.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        self.with(|s, id| {
            let p = s.faults.sync_latency_ns;
            s.owe(p);
            if s.halted() {
                return Err(s.injected(&self.path, "sync (halted)"));
            }
            if s.roll(s.faults.sync_error) {
                return Err(s.injected(&self.path, "sync"));
            }
            s.stats.syncs += 1;
            let file = s.files.get_mut(&id).expect("open file has state");
            file.pending.clear();
            file.durable = file.current.clone();
            Ok(())
        })
    }

    fn len(&self) -> Result<u64, DiskError> {
        self.with(|s, id| Ok(s.files[&id].current.len() as u64))
    }

    fn set_len(&self, len: u64) -> Result<(), DiskError> {
        self.with(|s, id| {
            if s.halted() {
                return Err(s.injected(&self.path, "size change (halted)"));
            }
            if let Some(cap) = s.faults.capacity_bytes {
                let cur = s.files[&id].current.len() as u64;
                let used: u64 = s.files.values().map(|f| f.current.len() as u64).sum();
                if len > cur && used + (len - cur) > cap {
                    s.stats.injected_errors += 1;
                    return Err(DiskError::NoSpace(self.path.clone()));
                }
            }
            let op = FileOp::SetLen(len);
            let file = s.files.get_mut(&id).expect("open file has state");
            apply_op(&mut file.current, &op);
            file.pending.push(op);
            Ok(())
        })
    }

    fn preallocate(&self, len: u64) -> Result<(), DiskError> {
        // Modelled as a zero-filled extension, which is what a reader sees
        // (and what recovery must tell apart from data) after fallocate.
        if len > self.len()? { self.set_len(len) } else { Ok(()) }
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        let path = normalize(path);
        let mut s = self.lock();
        if s.halted() {
            return Err(s.injected(&path, "namespace change (halted)"));
        }
        let mut cur = PathBuf::from("/");
        for c in path.components().skip(1) {
            cur.push(c);
            match s.names.get(&cur) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => return Err(DiskError::io(&cur, "a file is in the way of a directory")),
                None => s.put_name(cur.clone(), Entry::Dir),
            }
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        let dir = normalize(dir);
        let s = self.lock();
        if s.names.get(&dir) != Some(&Entry::Dir) {
            return Err(DiskError::NotFound(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> Result<Arc<dyn DiskFile>, DiskError> {
        let path = normalize(path);
        let mut s = self.lock();
        let id = match s.names.get(&path) {
            Some(Entry::File(id)) => *id,
            Some(Entry::Dir) => return Err(DiskError::io(&path, "is a directory")),
            None if create => {
                if s.halted() {
                    return Err(s.injected(&path, "create (halted)"));
                }
                if !s.parent_is_dir(&path) {
                    return Err(DiskError::NotFound(path));
                }
                let id = s.next_id;
                s.next_id += 1;
                s.files.insert(id, FileState::default());
                s.put_name(path.clone(), Entry::File(id));
                id
            }
            None => return Err(DiskError::NotFound(path)),
        };
        let generation = s.generation;
        drop(s);
        Ok(Arc::new(SimFile { disk: self.clone(), id, path, generation }))
    }

    fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        let path = normalize(path);
        let mut s = self.lock();
        if s.halted() {
            return Err(s.injected(&path, "namespace change (halted)"));
        }
        match s.names.get(&path) {
            Some(Entry::File(_)) => {
                s.remove_name(&path);
                Ok(())
            }
            Some(Entry::Dir) => Err(DiskError::io(&path, "is a directory")),
            None => Err(DiskError::NotFound(path)),
        }
    }

    fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        let path = normalize(path);
        let mut s = self.lock();
        if s.halted() {
            return Err(s.injected(&path, "namespace change (halted)"));
        }
        if s.names.get(&path) != Some(&Entry::Dir) {
            return Err(DiskError::NotFound(path));
        }
        if s.names.keys().any(|p| p.parent() == Some(path.as_path())) {
            return Err(DiskError::io(&path, "directory not empty"));
        }
        s.remove_name(&path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        let path = normalize(path);
        let mut s = self.lock();
        if s.halted() {
            return Err(s.injected(&path, "namespace change (halted)"));
        }
        if s.names.get(&path) != Some(&Entry::Dir) {
            return Err(DiskError::NotFound(path));
        }
        // Deepest first, so every removal names an entry whose parent still exists.
        let mut doomed: Vec<PathBuf> = s.names.keys().filter(|p| p.starts_with(&path)).cloned().collect();
        doomed.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in doomed {
            s.remove_name(&p);
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        let (from, to) = (normalize(from), normalize(to));
        let mut s = self.lock();
        if s.halted() {
            return Err(s.injected(&from, "rename (halted)"));
        }
        let Some(entry) = s.names.get(&from).cloned() else { return Err(DiskError::NotFound(from)) };
        if !s.parent_is_dir(&to) {
            return Err(DiskError::NotFound(to));
        }
        if entry == Entry::Dir {
            if s.names.contains_key(&to) {
                return Err(DiskError::io(&to, "rename onto an existing directory"));
            }
            move_subtree(&mut s.names, &from, &to);
            s.pending_names.push(NameOp::Move(from, to));
            return Ok(());
        }
        s.remove_name(&from);
        s.put_name(to, entry);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), DiskError> {
        let dir = normalize(dir);
        let mut s = self.lock();
        let p = s.faults.sync_latency_ns;
        s.owe(p);
        if s.halted() {
            return Err(s.injected(&dir, "directory sync (halted)"));
        }
        if s.names.get(&dir) != Some(&Entry::Dir) {
            return Err(DiskError::NotFound(dir));
        }
        let (mine, rest): (Vec<NameOp>, Vec<NameOp>) = s.pending_names.drain(..).partition(|op| op.touches(&dir));
        s.pending_names = rest;
        for op in &mine {
            op.apply(&mut s.durable_names);
        }
        s.stats.syncs += 1;
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(&normalize(path))
    }

    fn take_latency(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(std::mem::take(&mut self.lock().latency_owed_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_may_not() {
        for seed in 0..50 {
            let disk = SimDisk::new(seed);
            disk.create_dir_all(Path::new("/d")).unwrap();
            let f = disk.open(Path::new("/d/a"), true).unwrap();
            disk.sync_dir(Path::new("/d")).unwrap();
            disk.sync_dir(Path::new("/")).unwrap();
            f.write_at(b"hello", 0).unwrap();
            f.sync_data().unwrap();
            f.write_at(b" world", 5).unwrap();
            disk.crash();
            assert!(f.read_at(&mut [0; 4], 0).is_err(), "stale handle must fail");
            let f = disk.open(Path::new("/d/a"), false).unwrap();
            let mut buf = vec![0; 64];
            let n = f.read_at(&mut buf, 0).unwrap();
            assert!(n >= 5 && &buf[..5] == b"hello");
            assert!(b" world".starts_with(&buf[5..n]), "only a prefix of the unsynced write");
        }
    }

    #[test]
    fn crash_outcomes_vary_with_the_seed_and_repeat_with_it() {
        let run = |seed| {
            let disk = SimDisk::new(seed);
            let f = disk.open(Path::new("/a"), true).unwrap();
            disk.sync_dir(Path::new("/")).unwrap();
            for i in 0..10u8 {
                f.write_at(&[i; 10], u64::from(i) * 10).unwrap();
            }
            disk.crash();
            disk.open(Path::new("/a"), false).unwrap().len().unwrap()
        };
        let lens: Vec<u64> = (0..20).map(run).collect();
        assert_eq!(lens, (0..20).map(run).collect::<Vec<_>>());
        assert!(lens.iter().any(|&l| l != lens[0]), "crashes should differ: {lens:?}");
    }

    #[test]
    fn unsynced_file_creation_can_vanish() {
        let vanished = (0..40).any(|seed| {
            let disk = SimDisk::new(seed);
            disk.open(Path::new("/new"), true).unwrap();
            disk.crash();
            !disk.exists(Path::new("/new"))
        });
        assert!(vanished);
        let disk = SimDisk::new(1);
        disk.open(Path::new("/kept"), true).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        disk.crash();
        assert!(disk.exists(Path::new("/kept")));
    }

    #[test]
    fn enospc_and_bit_flips() {
        let disk = SimDisk::new(3);
        disk.set_faults(FaultConfig { capacity_bytes: Some(8), ..Default::default() });
        let f = disk.open(Path::new("/a"), true).unwrap();
        f.write_at(&[1; 8], 0).unwrap();
        assert!(matches!(f.write_at(&[1; 1], 8), Err(DiskError::NoSpace(_))));
        f.write_at(&[2; 4], 0).unwrap(); // overwrite needs no space
        let pos = disk.flip_bit(Path::new("/a"), Some(2..3)).unwrap();
        assert_eq!(pos, 2);
        let mut buf = [0; 8];
        f.read_at(&mut buf, 0).unwrap();
        assert_ne!(buf[2], 2);
    }
}
