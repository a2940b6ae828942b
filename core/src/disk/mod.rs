//! The disk adapter: every byte the log stores goes through [`Disk`] and
//! [`DiskFile`]. The node implements them over real files; [`sim::SimDisk`]
//! implements them in memory with a page-cache fault model for tests and the
//! simulator.
//!
//! Durability contract, stated per method: a write is *volatile* (it may
//! vanish or tear on a crash) until a later [`DiskFile::sync_data`] on the
//! same file returns. A name (create, remove, rename) is volatile until
//! [`Disk::sync_dir`] on its parent returns. Implementations must not add a
//! default that hides a missing durability step.

#[cfg(any(test, feature = "sim-disk"))]
pub mod sim;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// What went wrong with storage. The log maps these onto its own errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiskError {
    /// The file or directory does not exist.
    #[error("not found: {0}")]
    NotFound(PathBuf),
    /// The device is full (ENOSPC): free space or raise retention limits.
    #[error("no space left on device writing {0}")]
    NoSpace(PathBuf),
    /// The device failed a read or write (EIO) or another OS error.
    #[error("I/O error on {path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl DiskError {
    pub fn io(path: &Path, message: impl Into<String>) -> Self {
        DiskError::Io { path: path.to_path_buf(), message: message.into() }
    }
}

/// An open file. Handles are shared (`Arc`) so that a flush can run on
/// another thread while appends continue.
#[allow(clippy::len_without_is_empty)] // a file's length is an IO call, not a container size
pub trait DiskFile: Send + Sync + std::fmt::Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read,
    /// fewer only at end of file. Sees every write made before it, synced or not.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize, DiskError>;
    /// Writes all of `data` at `pos`, extending the file if needed. Volatile
    /// until `sync_data` returns.
    fn write_at(&self, data: &[u8], pos: u64) -> Result<(), DiskError>;
    /// Makes every write issued before this call durable, including a size
    /// change (fdatasync). Returns only once that holds.
    fn sync_data(&self) -> Result<(), DiskError>;
    /// Current length in bytes, including volatile writes.
    fn len(&self) -> Result<u64, DiskError>;
    /// Truncates or extends (with zeros) to `len`. Volatile until `sync_data`.
    fn set_len(&self, len: u64) -> Result<(), DiskError>;
    /// Extends the file to at least `len` bytes that read as zeros, with the
    /// space reserved (fallocate mode 0), so that later writes below `len`
    /// need no size change at sync time. Volatile until `sync_data`. Callers
    /// must not rely on the length afterwards: an implementation without
    /// preallocation may leave the file as it is.
    fn preallocate(&self, len: u64) -> Result<(), DiskError>;
}

/// A file system rooted wherever the paths point.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates a directory and its parents. Durable after `sync_dir` of each
    /// new directory's parent.
    fn create_dir_all(&self, path: &Path) -> Result<(), DiskError>;
    /// Names of the entries (files and directories) directly in `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> Result<Vec<String>, DiskError>;
    /// Opens a file for reading and writing, creating it empty if `create`
    /// and it does not exist. A new name is durable after `sync_dir(parent)`.
    fn open(&self, path: &Path, create: bool) -> Result<Arc<dyn DiskFile>, DiskError>;
    /// Removes a file. Durable after `sync_dir(parent)`.
    fn remove_file(&self, path: &Path) -> Result<(), DiskError>;
    /// Removes an empty directory. Durable after `sync_dir(parent)`.
    fn remove_dir(&self, path: &Path) -> Result<(), DiskError>;
    /// Removes a directory and everything below it. Durable after
    /// `sync_dir(parent)`.
    fn remove_dir_all(&self, path: &Path) -> Result<(), DiskError>;
    /// Atomically renames `from` to `to`, replacing `to`. Durable after
    /// `sync_dir` of both parents.
    fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError>;
    /// Makes the creations, removals and renames of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> Result<(), DiskError>;
    /// True if `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// Simulated latency that operations since the last call owe, for an
    /// async caller to sleep on (the trait is synchronous). A real disk's
    /// latency is already paid inside its calls: it returns zero.
    fn take_latency(&self) -> std::time::Duration;
}

/// Replaces `dir/name` with `bytes` atomically and durably: write a temp
/// file, sync it, rename it over, sync the directory. A crash at any point
/// leaves the old contents or the new, never a mix.
pub fn write_atomic(disk: &dyn Disk, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DiskError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let f = disk.open(&tmp, true)?;
    f.set_len(0)?;
    f.write_at(bytes, 0)?;
    f.sync_data()?;
    disk.rename(&tmp, &dir.join(name))?;
    disk.sync_dir(dir)
}

/// A whole small file (at most `max_bytes`), or `None` if it does not exist.
pub fn read_small(disk: &dyn Disk, path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, DiskError> {
    let f = match disk.open(path, false) {
        Ok(f) => f,
        Err(DiskError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.len()?;
    if len > max_bytes {
        return Err(DiskError::io(path, format!("file of {len} bytes is larger than the {max_bytes} expected")));
    }
    let mut buf = vec![0; len as usize];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(Some(buf))
}

/// Creates `dir` and every missing ancestor, syncing each new entry's
/// parent: a directory whose own entry was never synced can vanish in a
/// power cut with every synced file inside it.
pub fn create_dir_durably(disk: &dyn Disk, dir: &Path) -> Result<(), DiskError> {
    if dir.as_os_str().is_empty() || disk.exists(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(disk, parent)?;
    }
    disk.create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        // A relative top-level name's parent is the current directory.
        disk.sync_dir(if parent.as_os_str().is_empty() { Path::new(".") } else { parent })?;
    }
    Ok(())
}
