//! The real [`Disk`]: files with positional IO, `fdatasync`, `fallocate`
//! preallocation and directory fsyncs after namespace changes.
//!
//! Opens of existing files go through a bounded cache of open files: the log
//! opens a sealed segment's file for each read rather than holding it, and
//! the cache keeps the descriptors held by the whole broker bounded
//! (`CACHED_FILES_MAX`) while sparing the syscalls. Every change of a name
//! (create, remove, rename) drops the entries it touches, so a cached
//! handle never reads a file that has since been replaced.

use rustix::fs::{FallocateFlags, fallocate};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use weir_core::disk::{Disk, DiskError, DiskFile};

/// Existing files kept open for reads, across all partitions.
pub const CACHED_FILES_MAX: usize = 256;

/// Files on the local file system.
#[derive(Debug, Default)]
pub struct RealDisk {
    cache: Mutex<FileCache>,
}

#[derive(Debug, Default)]
struct FileCache {
    files: HashMap<PathBuf, (Arc<RealFile>, u64)>,
    tick: u64,
}

impl FileCache {
    fn get(&mut self, path: &Path) -> Option<Arc<RealFile>> {
        self.tick += 1;
        let tick = self.tick;
        self.files.get_mut(path).map(|(f, used)| {
            *used = tick;
            f.clone()
        })
    }

    fn put(&mut self, path: &Path, file: Arc<RealFile>) {
        if self.files.len() >= CACHED_FILES_MAX
            && let Some(oldest) = self.files.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| p.clone())
        {
            self.files.remove(&oldest);
        }
        self.files.insert(path.to_path_buf(), (file, self.tick));
    }

    /// Drops `path` and everything below it.
    fn forget(&mut self, path: &Path) {
        self.files.retain(|p, _| !p.starts_with(path));
    }
}

impl RealDisk {
    fn cache(&self) -> std::sync::MutexGuard<'_, FileCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn map(path: &Path, e: std::io::Error) -> DiskError {
    match e.kind() {
        ErrorKind::NotFound => DiskError::NotFound(path.to_path_buf()),
        ErrorKind::StorageFull => DiskError::NoSpace(path.to_path_buf()),
        _ => DiskError::io(path, e.to_string()),
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
    path: PathBuf,
}

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize, DiskError> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(map(&self.path, e)),
            }
        }
        Ok(done)
    }

    fn write_at(&self, data: &[u8], pos: u64) -> Result<(), DiskError> {
        self.file.write_all_at(data, pos).map_err(|e| map(&self.path, e))
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|e| map(&self.path, e))
    }

    fn len(&self) -> Result<u64, DiskError> {
        Ok(self.file.metadata().map_err(|e| map(&self.path, e))?.len())
    }

    fn set_len(&self, len: u64) -> Result<(), DiskError> {
        self.file.set_len(len).map_err(|e| map(&self.path, e))
    }

    fn preallocate(&self, len: u64) -> Result<(), DiskError> {
        // Mode 0 allocates the blocks and moves the file size, so later
        // writes below `len` need no size change at fdatasync time.
        match fallocate(&self.file, FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // File systems without fallocate: growing with writes is correct, only slower.
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(map(&self.path, e.into())),
        }
    }
}

impl Disk for RealDisk {
    fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        std::fs::create_dir_all(path).map_err(|e| map(path, e))
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<String>, DiskError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| map(dir, e))? {
            let entry = entry.map_err(|e| map(dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> Result<Arc<dyn DiskFile>, DiskError> {
        if !create && let Some(f) = self.cache().get(path) {
            return Ok(f);
        }
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path).map_err(|e| map(path, e))?;
        let file = Arc::new(RealFile { file, path: path.to_path_buf() });
        let mut cache = self.cache();
        if create {
            // The name may now be a new file: forget any handle to an old one.
            cache.forget(path);
        } else {
            cache.put(path, file.clone());
        }
        Ok(file)
    }

    fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        self.cache().forget(path);
        std::fs::remove_file(path).map_err(|e| map(path, e))
    }

    fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        std::fs::remove_dir(path).map_err(|e| map(path, e))
    }

    fn remove_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        self.cache().forget(path);
        std::fs::remove_dir_all(path).map_err(|e| map(path, e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        let mut cache = self.cache();
        cache.forget(from);
        cache.forget(to);
        drop(cache);
        std::fs::rename(from, to).map_err(|e| map(from, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), DiskError> {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| map(dir, e))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn take_latency(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Timestamp;
    use weir_core::batch::{BatchBuilder, ProducerStamp};
    use weir_core::log::{LogConfig, PartitionLog};

    #[test]
    fn log_on_real_files_survives_reopen_with_preallocated_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let config = LogConfig { preallocate_bytes: 1 << 20, ..LogConfig::default() };
        let (mut log, _) = PartitionLog::open(Arc::new(RealDisk::default()), &dir, config.clone(), Timestamp(0)).unwrap();
        for i in 0..100u32 {
            let mut b = BatchBuilder::new(ProducerStamp::NONE);
            b.push(i64::from(i), None, Some(&i.to_le_bytes()), &[]);
            log.append(&b.finish(), Timestamp(0)).unwrap();
        }
        assert_eq!(log.flush().unwrap(), 100);
        let file_len = std::fs::metadata(dir.join("00000000000000000000.log")).unwrap().len();
        assert!(file_len >= 1 << 20, "preallocated: {file_len}");
        drop(log);
        let (log, report) = PartitionLog::open(Arc::new(RealDisk::default()), &dir, config, Timestamp(0)).unwrap();
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(report.truncated_reason, None, "zeros after the data are a clean end");
        let r = log.read(42, 1 << 20, 100).unwrap();
        let first = weir_core::batch::decode_all(r.bytes, usize::MAX).next().unwrap().unwrap();
        assert_eq!(first.base_offset(), 42);
    }
}
