//! The recovery checkpoint (Kafka's recovery-point offset): a small file
//! beside the segments holding an offset below which everything was flushed
//! at some moment. Recovery may treat only bytes past it as a torn write;
//! damage at or below it, or a log that ends before it, is loss of
//! acknowledged data and is reported, never silently cut.
//!
//! It is written (to the page cache) after every completed flush, and made
//! durable at every roll, at a clean close, and with every
//! [`SYNC_EVERY_FLUSHES`]th flush, so the hot path pays no extra fsync. Its
//! value only ever names data that was already durable when it was written,
//! so a stale (lower) checkpoint after a power cut is safe: it protects a
//! little less, never more than is true.
//!
//! Layout (16 bytes): `magic` "WRCP", `offset` u64 LE, `crc` u32 LE (CRC32
//! of the first 12 bytes). A 16-byte write inside one sector does not tear
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
const LEN: usize = 16;
/// Flushes between two syncs of the checkpoint on the flush path.
pub const SYNC_EVERY_FLUSHES: u32 = 128;

pub fn encode(offset: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4..12].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The offset stored in `raw`, if it is a whole, valid checkpoint.
pub fn decode(raw: &[u8]) -> Option<u64> {
    if raw.len() != LEN || &raw[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(raw[12..16].try_into().ok()?);
    (crc32fast::hash(&raw[..12]) == crc).then(|| u64::from_le_bytes(raw[4..12].try_into().expect("8 bytes")))
}

/// Reads the checkpoint file: `Ok(None)` if there is none (a log written
/// before checkpoints existed) or it is unreadable (logged).
pub fn read(file: &dyn DiskFile, path: &Path) -> Result<Option<u64>, DiskError> {
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

/// Accepted loss ranges recorded in `dir`.
pub fn accepted_losses(disk: &dyn Disk, dir: &Path) -> Result<Vec<(u64, u64)>, DiskError> {
    Ok(disk.list_dir(dir)?.iter().filter_map(|n| parse_lost_file_name(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let raw = encode(12345);
        assert_eq!(decode(&raw), Some(12345));
        for i in 0..LEN {
            let mut bad = raw;
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {i}");
        }
        assert_eq!(decode(&raw[..8]), None);
        assert_eq!(parse_lost_file_name(&lost_file_name(7, 90)), Some((7, 90)));
        assert_eq!(parse_lost_file_name("lost-1-2.bin"), None);
    }
}
