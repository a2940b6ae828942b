//! The broker's metadata on disk: one `topic.json` per topic (written last
//! on create and removed first on delete, so it is the commit point) and the
//! boot counter that makes producer ids unique across restarts.
//!
//! ```text
//! data_dir/
//!   .lock                        held by the running broker (see `lock`)
//!   meta/boot                    boot counter, decimal
//!   topics/<topic>/topic.json    name, partitions, replicas, config
//!   topics/<topic>/<partition>/  the partition log's segments
//!   trash/<topic>.<boot>.<n>/    a deleted topic, being removed
//!   quarantine/<topic>.<boot>/   a topic directory found without topic.json
//! ```
//!
//! Deleting a topic renames its directory into `trash/` (the commit point)
//! and then removes it, so at start-up a topic directory without
//! `topic.json` is either an interrupted create (no data: removed) or lost
//! metadata (data: moved to `quarantine/`, never deleted).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use weir_core::disk::{Disk, DiskError};
use weir_net::message::TopicConfig;

pub const TOPIC_FILE: &str = "topic.json";
/// Largest metadata file read back; anything bigger is not ours.
const META_FILE_BYTES_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub partitions: u32,
    pub replicas: u16,
    pub config: TopicConfig,
}

pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics")
}

pub fn topic_dir(data_dir: &Path, topic: &str) -> PathBuf {
    topics_dir(data_dir).join(topic)
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    topic_dir(data_dir, topic).join(partition.to_string())
}

/// Creates `dir` (and parents) durably.
pub fn ensure_dir(disk: &dyn Disk, dir: &Path) -> Result<(), DiskError> {
    // The empty path is the parent of a relative top-level name: the current directory.
    if dir.as_os_str().is_empty() || disk.exists(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(disk, parent)?;
    }
    disk.create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        disk.sync_dir(if parent.as_os_str().is_empty() { Path::new(".") } else { parent })?;
    }
    Ok(())
}

/// Replaces `dir/name` with `bytes` atomically and durably: write a temp
/// file, sync it, rename over, sync the directory.
pub fn write_atomic(disk: &dyn Disk, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DiskError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let f = disk.open(&tmp, true)?;
    f.set_len(0)?;
    f.write_at(bytes, 0)?;
    f.sync_data()?;
    disk.rename(&tmp, &dir.join(name))?;
    disk.sync_dir(dir)
}

pub fn read_small(disk: &dyn Disk, path: &Path) -> Result<Vec<u8>, DiskError> {
    let f = disk.open(path, false)?;
    let len = f.len()?;
    if len > META_FILE_BYTES_MAX {
        return Err(DiskError::io(path, format!("metadata file of {len} bytes is larger than {META_FILE_BYTES_MAX}")));
    }
    let mut buf = vec![0; len as usize];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

pub fn trash_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("trash")
}

pub fn quarantine_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("quarantine")
}

/// Whether any segment file under `dir` (a topic directory) holds bytes:
/// an interrupted create never appended, so it has none.
pub fn holds_data(disk: &dyn Disk, dir: &Path) -> Result<bool, DiskError> {
    for entry in disk.list_dir(dir)? {
        let path = dir.join(&entry);
        if entry.ends_with(".log") {
            if disk.open(&path, false)?.len()? > 0 {
                return Ok(true);
            }
        } else if !entry.contains('.') && disk.list_dir(&path).is_ok() && holds_data(disk, &path)? {
            // A partition directory (file names all have an extension).
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves `from` to a fresh name `<name>.<boot>[.<n>]` under `into`, durably.
pub fn move_aside(disk: &dyn Disk, from: &Path, into: &Path, name: &str, boot: u64) -> Result<PathBuf, DiskError> {
    ensure_dir(disk, into)?;
    let mut to = into.join(format!("{name}.{boot}"));
    let mut n = 0;
    while disk.exists(&to) {
        n += 1;
        to = into.join(format!("{name}.{boot}.{n}"));
    }
    disk.rename(from, &to)?;
    if let Some(parent) = from.parent() {
        disk.sync_dir(parent)?;
    }
    disk.sync_dir(into)?;
    Ok(to)
}

/// Bumps and persists the boot counter to at least `floor`; returns the
/// new value. The floor comes from the data (the producer ids its batches
/// carry), so a lost or stale counter never repeats a boot.
pub fn next_boot(disk: &dyn Disk, data_dir: &Path, floor: u64) -> Result<u64, DiskError> {
    let dir = data_dir.join("meta");
    ensure_dir(disk, &dir)?;
    let path = dir.join("boot");
    let current = if disk.exists(&path) {
        let raw = read_small(disk, &path)?;
        String::from_utf8_lossy(&raw).trim().parse::<u64>().map_err(|_| DiskError::io(&path, "boot counter is not a number"))?
    } else {
        0
    };
    if floor > current + 1 {
        tracing::warn!(
            counter = current,
            floor,
            "the boot counter is behind the producer ids in the data (meta/boot lost?): continuing above them"
        );
    }
    let next = (current + 1).max(floor);
    write_atomic(disk, &dir, "boot", next.to_string().as_bytes())?;
    Ok(next)
}
