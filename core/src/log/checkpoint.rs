//! The recovery checkpoint (Kafka's recovery-point offset): a small file
//! beside the segments holding an offset below which everything was flushed
//! at some moment. Recovery may treat only bytes past it as a torn write;
//! damage at or below it, or a log that ends before it, is loss of
//! acknowledged data and is reported, never silently cut.
//!
//! The flush thread writes it (to the page cache) after every
//! [`WRITE_EVERY_FLUSHES`]th flush and syncs it with every
//! [`SYNC_EVERY_FLUSHES`]th; it is made durable at every roll and at a
//! clean close, so the hot path pays neither an extra fsync nor a file
//! open per flush. Its
//! value only ever names data that was already durable when it was written,
//! so a stale (lower) checkpoint after a power cut is safe: it protects a
//! little less, never more than is true.
//!
//! It also holds the log start offset (Kafka's log-start-offset
//! checkpoint), written and synced before retention deletes a segment, so a
//! missing *oldest* segment is told apart from retention.
//!
//! Layout (24 bytes): `magic` "WRCP", `recovery_point` u64 LE, `log_start`
//! u64 LE, `crc` u32 LE (CRC32 of the first 20 bytes). A 16-byte write inside one sector does not tear
//! on the disks we run on; if it does, the CRC fails and recovery falls back
//! to treating the whole active segment as possibly torn (and says so).
//!
//! Accepted losses are recorded as files `lost-{from:020}-{to:020}.bin`
//! holding the bytes that were cut: a gap `from..to` between segments is
//! expected exactly when such a file exists.

use crate::disk::{Disk, DiskError, DiskFile};
use std::path::Path;

pub const FILE: &str = "recovery-point";
const MAGIC: &[u8; 4] = b"WRCP";
const LEN: usize = 24;
/// Flushes between two writes of the checkpoint on the flush path.
pub const WRITE_EVERY_FLUSHES: u32 = 16;
/// Flushes between two syncs of the checkpoint on the flush path (a
/// multiple of [`WRITE_EVERY_FLUSHES`]).
pub const SYNC_EVERY_FLUSHES: u32 = 128;

/// What the checkpoint file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Below this, everything was durable when it was written.
    pub recovery_point: u64,
    /// The log started here; retention moves it forward before deleting.
    pub log_start: u64,
}

pub fn encode(c: Checkpoint) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4..12].copy_from_slice(&c.recovery_point.to_le_bytes());
    b[12..20].copy_from_slice(&c.log_start.to_le_bytes());
    let crc = crc32fast::hash(&b[..20]);
    b[20..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The checkpoint stored in `raw`, if it is whole and valid.
pub fn decode(raw: &[u8]) -> Option<Checkpoint> {
    if raw.len() != LEN || &raw[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(raw[20..24].try_into().ok()?);
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
    (crc32fast::hash(&raw[..20]) == crc).then(|| Checkpoint { recovery_point: u64_at(4), log_start: u64_at(12) })
}

/// Writes `c` as `dir`'s checkpoint (in place: a torn write fails its CRC
/// and reads as none, which only protects less), synced if `sync`. Opened per
/// write, not held: an idle partition costs one descriptor.
pub fn write(disk: &dyn Disk, dir: &Path, c: Checkpoint, sync: bool) -> Result<(), DiskError> {
    let file = disk.open(&dir.join(FILE), true)?;
    file.write_at(&encode(c), 0)?;
    if sync { file.sync_data() } else { Ok(()) }
}

/// Reads the checkpoint file: `Ok(None)` if there is none (a log written
/// before checkpoints existed) or it is unreadable (logged).
pub fn read(file: &dyn DiskFile, path: &Path) -> Result<Option<Checkpoint>, DiskError> {
    let len = file.len()?;
    if len == 0 {
        return Ok(None);
    }
    let mut raw = [0u8; LEN];
    let n = file.read_at(&mut raw, 0)?;
    let value = decode(&raw[..n]).filter(|_| len == LEN as u64);
    if value.is_none() {
        tracing::warn!(file = %path.display(), "recovery checkpoint is damaged: the whole active segment is treated as possibly torn");
    }
    Ok(value)
}

/// Name of the file recording an accepted loss of `from..to`.
pub fn lost_file_name(from: u64, to: u64) -> String {
    format!("lost-{from:020}-{to:020}.bin")
}

/// Parses a [`lost_file_name`] back into its range.
pub fn parse_lost_file_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("lost-")?.strip_suffix(".bin")?;
    let (from, to) = rest.split_once('-')?;
    if from.len() != 20 || to.len() != 20 {
        return None;
    }
    Some((from.parse().ok()?, to.parse().ok()?))
}

/// Whether the accepted ranges together cover `from..to` (losses accepted
/// one after another may meet to make one hole).
pub fn covered(accepted: &[(u64, u64)], from: u64, to: u64) -> bool {
    let mut at = from;
    while at < to {
        match accepted.iter().filter(|&&(f, t)| f <= at && at < t).map(|&(_, t)| t).max() {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// Accepted loss ranges recorded in `dir`.
pub fn accepted_losses(disk: &dyn Disk, dir: &Path) -> Result<Vec<(u64, u64)>, DiskError> {
    Ok(disk.list_dir(dir)?.iter().filter_map(|n| parse_lost_file_name(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let c = Checkpoint { recovery_point: 12345, log_start: 77 };
        let raw = encode(c);
        assert_eq!(decode(&raw), Some(c));
        for i in 0..LEN {
            let mut bad = raw;
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {i}");
        }
        assert_eq!(decode(&raw[..8]), None);
        assert_eq!(parse_lost_file_name(&lost_file_name(7, 90)), Some((7, 90)));
        assert_eq!(parse_lost_file_name("lost-1-2.bin"), None);
        assert!(covered(&[(5, 11), (11, 15)], 5, 15), "two accepted losses meeting");
        assert!(!covered(&[(5, 11), (12, 15)], 5, 15));
        assert!(covered(&[], 7, 7));
    }
}
