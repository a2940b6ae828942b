//! One process owns a data directory. Two brokers on one directory would
//! hand out the same offsets and overwrite each other's acknowledged data,
//! so the broker takes an exclusive `flock` on `DATA/.lock` at start and
//! holds it for its whole life (the kernel drops it when the process dies,
//! however it dies). The file holds the owner's PID, for the message a
//! second broker prints.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "data directory {dir} is in use by another weir process{}: stop it first, or give this broker its own --data-dir",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { dir: PathBuf, holder: Option<u32> },
    /// The lock file could not be created or locked.
    // The OS error is the source: printed once, after this, by the error chain.
    #[error("cannot create or lock data directory {dir} (it must be a directory this user can write)")]
    Io { dir: PathBuf, source: std::io::Error },
}

/// Held for the life of the broker; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Creates `data_dir` if needed and locks it, or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io { dir: data_dir.to_path_buf(), source };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(data_dir.join(LOCK_FILE)).map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::InUse { dir: data_dir.to_path_buf(), holder: pid.trim().parse().ok() });
            }
            Err(e) => return Err(io(e.into())),
        }
        // Best effort: the PID only improves the message a second broker prints.
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::InUse { holder: Some(p), .. } if p == std::process::id()), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
        drop(held);
        DataDirLock::acquire(dir.path()).expect("released on drop");
    }
}
