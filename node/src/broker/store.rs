//! The broker's metadata on disk: one `topic.json` per topic (written last
//! on create and removed first on delete, so it is the commit point) and the
//! boot counter that makes producer ids unique across restarts.
//!
//! ```text
//! data_dir/
//!   .lock                        held by the running broker (see `lock`)
//!   meta/boot                    boot counter, decimal (the id block)
//!   topics/<topic>/topic.json    id, name, partitions, replicas, config
//!   topics/<topic>/<partition>/  the partition log's segments
//!   trash/<topic>.<boot>.<n>/    a deleted topic, being removed
//!   quarantine/<topic>.<boot>/   a topic directory found without topic.json
//! ```
//!
//! Deleting a topic renames its directory into `trash/` (the commit point)
//! and then removes it, so at start-up a topic directory without
//! `topic.json` is either an interrupted create (no data: removed) or lost
//! metadata (data: moved to `quarantine/`, never deleted).

use std::path::{Path, PathBuf};
pub use weir_core::disk::write_atomic;
use weir_core::disk::{Disk, DiskError};
pub use weir_core::metadata::TopicRecord;

pub const TOPIC_FILE: &str = "topic.json";
/// Largest metadata file read back; anything bigger is not ours.
const META_FILE_BYTES_MAX: u64 = 1 << 20;

pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics")
}

pub fn topic_dir(data_dir: &Path, topic: &str) -> PathBuf {
    topics_dir(data_dir).join(topic)
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    topic_dir(data_dir, topic).join(partition.to_string())
}

const DATA_DIR_ID_FILE: &str = "data-dir-id";
const CLUSTER_ID_FILE: &str = "cluster-id";

/// Creates `dir` (and parents) durably.
pub fn ensure_dir(disk: &dyn Disk, dir: &Path) -> Result<(), DiskError> {
    weir_core::disk::create_dir_durably(disk, dir)
}

pub fn read_small(disk: &dyn Disk, path: &Path) -> Result<Vec<u8>, DiskError> {
    weir_core::disk::read_small(disk, path, META_FILE_BYTES_MAX)?.ok_or_else(|| DiskError::NotFound(path.to_path_buf()))
}

/// Parses a `topic.json`, or says how to repair it.
pub fn parse_topic(raw: &[u8], path: &Path) -> anyhow::Result<TopicRecord> {
    serde_json::from_slice(raw).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid topic metadata ({e}): restore it (see the README, \"On-disk format\"), or move the topic's directory out of {}",
            path.display(),
            path.parent().and_then(Path::parent).map_or_else(String::new, |p| p.display().to_string())
        )
    })
}

/// Makes `record` the topic's durable metadata: the commit point of a create.
pub fn write_topic(disk: &dyn Disk, data_dir: &Path, record: &TopicRecord) -> Result<(), DiskError> {
    let json = serde_json::to_vec_pretty(record).expect("topic record serialises");
    write_atomic(disk, &topic_dir(data_dir, &record.name), TOPIC_FILE, &json)
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

/// Deletes directory `dir` so that a crash at any instant leaves it whole
/// or gone: it is renamed into `trash/` first (which the next start
/// empties), then removed. A directory half deleted would look to
/// recovery like a log that lost data.
pub fn remove_via_trash(disk: &dyn Disk, data_dir: &Path, dir: &Path, name: &str, boot: u64) -> Result<(), DiskError> {
    if !disk.exists(dir) {
        return Ok(());
    }
    let trash = trash_dir(data_dir);
    let moved = move_aside(disk, dir, &trash, name, boot)?;
    disk.remove_dir_all(&moved)?;
    disk.sync_dir(&trash)
}

/// Moves `from` to a fresh name `<name>.<boot>[.<n>]` under `into`, durably.
pub fn move_aside(disk: &dyn Disk, from: &Path, into: &Path, name: &str, boot: u64) -> Result<PathBuf, DiskError> {
    ensure_dir(disk, into)?;
    let mut to = into.join(aside_name(name, &format!(".{boot}")));
    let mut n = 0;
    while disk.exists(&to) {
        n += 1;
        to = into.join(aside_name(name, &format!(".{boot}.{n}")));
    }
    disk.rename(from, &to)?;
    if let Some(parent) = from.parent() {
        disk.sync_dir(parent)?;
    }
    disk.sync_dir(into)?;
    Ok(to)
}

/// `name` with `suffix`, the name shortened so the whole fits a file name
/// (255 bytes): a topic name may already take 249. Topic names are ASCII.
fn aside_name(name: &str, suffix: &str) -> String {
    const FILE_NAME_BYTES_MAX: usize = 255;
    let keep = name.len().min(FILE_NAME_BYTES_MAX.saturating_sub(suffix.len()));
    format!("{}{suffix}", name.get(..keep).unwrap_or(name))
}

/// Bumps and persists the boot counter to at least `floor`; returns the
/// new value. The floor comes from the data (the producer ids its batches
/// carry), so a lost or stale counter never repeats a boot.
/// Why a data directory cannot be opened by this node.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "data directory {dir} belongs to node {found}, and this broker is node {configured}: give every node its own --data-dir, or start this one with --node-id {found}"
    )]
    OtherNode { dir: PathBuf, found: u64, configured: u64 },
    #[error(
        "{path} holds {found:?}, not a node id: restore it (it holds the id this data directory was created with) or remove it to let the next broker claim the directory"
    )]
    Unreadable { path: PathBuf, found: String },
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Records `node_id` in a new data directory (`meta/node`), or checks that
/// an existing one belongs to it: two nodes on one directory's copies would
/// vote and hand out offsets as one. A directory from before node ids
/// (no file) is claimed by whichever node opens it first.
pub fn claim_node_id(disk: &dyn Disk, data_dir: &Path, node_id: u64) -> Result<(), IdentityError> {
    let dir = data_dir.join("meta");
    ensure_dir(disk, &dir)?;
    let path = dir.join("node");
    if disk.exists(&path) {
        let raw = read_small(disk, &path)?;
        let text = String::from_utf8_lossy(&raw).trim().to_owned();
        let found =
            text.parse::<u64>().map_err(|_| IdentityError::Unreadable { path: path.clone(), found: text.chars().take(40).collect() })?;
        if found != node_id {
            return Err(IdentityError::OtherNode { dir: data_dir.to_path_buf(), found, configured: node_id });
        }
        return Ok(());
    }
    write_atomic(disk, &dir, "node", node_id.to_string().as_bytes())?;
    Ok(())
}

/// The data directory's random id (`meta/data-dir-id`), made durable on
/// first use: the incarnation a cluster binds its node to, so a wiped or
/// swapped directory is told apart from the one that voted.
pub fn data_dir_id(disk: &dyn Disk, data_dir: &Path) -> anyhow::Result<u64> {
    let meta = data_dir.join("meta");
    let path = meta.join(DATA_DIR_ID_FILE);
    if disk.exists(&path) {
        let raw = read_small(disk, &path)?;
        let text = String::from_utf8_lossy(&raw).trim().to_owned();
        return text.parse().map_err(|_| {
            anyhow::anyhow!("{} holds {text:?}, not an id: restore it, or remove the node and join it again", path.display())
        });
    }
    let id = crate::raft::random_u64().max(1);
    ensure_dir(disk, &meta)?;
    write_atomic(disk, &meta, DATA_DIR_ID_FILE, id.to_string().as_bytes())?;
    Ok(id)
}

/// The cluster id this data directory was last part of (`meta/cluster-id`), if known.
pub fn read_cluster_id(disk: &dyn Disk, data_dir: &Path) -> anyhow::Result<Option<u64>> {
    let path = data_dir.join("meta").join(CLUSTER_ID_FILE);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let raw = read_small(disk, &path)?;
    let text = String::from_utf8_lossy(&raw).trim().to_owned();
    u64::from_str_radix(&text, 16)
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{} holds {text:?}, not a cluster id: restore it (the hex id other members log)", path.display()))
}

pub fn write_cluster_id(disk: &dyn Disk, data_dir: &Path, id: u64) -> Result<(), DiskError> {
    let meta = data_dir.join("meta");
    ensure_dir(disk, &meta)?;
    write_atomic(disk, &meta, CLUSTER_ID_FILE, format!("{id:016x}").as_bytes())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_remembers_its_node_id_and_refuses_another() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = crate::disk::RealDisk::default();
        let dir = tmp.path();
        claim_node_id(&disk, dir, 2).unwrap();
        claim_node_id(&disk, dir, 2).unwrap();
        let err = claim_node_id(&disk, dir, 5).unwrap_err();
        assert!(matches!(err, IdentityError::OtherNode { found: 2, configured: 5, .. }), "{err}");
        assert!(err.to_string().contains("--node-id 2"), "{err}");
    }

    #[test]
    fn a_name_moved_aside_fits_a_file_name_however_long_the_topic_name() {
        let long = "y".repeat(249);
        let moved = aside_name(&long, ".549755813888.12");
        assert_eq!(moved.len(), 255);
        assert!(moved.ends_with(".549755813888.12"));
        assert_eq!(aside_name("orders", ".3"), "orders.3");
    }

    #[test]
    fn a_topic_json_written_before_topic_ids_still_opens() {
        // As the broker wrote it from the wire type, before core owned it.
        let old = br#"{
  "name": "orders",
  "partitions": 3,
  "replicas": 1,
  "config": { "retention_bytes": null, "retention_ms": 3600000, "segment_bytes": 1048576 }
}"#;
        let r = parse_topic(old, Path::new("/d/topics/orders/topic.json")).unwrap();
        assert_eq!((r.id, r.name.as_str(), r.partitions, r.replicas), (0, "orders", 3, 1));
        assert_eq!((r.config.retention_ms, r.config.segment_bytes, r.config.retention_bytes), (Some(3_600_000), Some(1 << 20), None));
        let again = parse_topic(&serde_json::to_vec(&TopicRecord { id: 5, ..r.clone() }).unwrap(), Path::new("x")).unwrap();
        assert_eq!(again.id, 5);
        assert!(parse_topic(b"{ not json", Path::new("/d/topics/t/topic.json")).unwrap_err().to_string().contains("restore it"));
    }
}
