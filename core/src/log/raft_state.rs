//! The small durable files a Raft log keeps beside its segments:
//!
//! | file | holds | written |
//! | --- | --- | --- |
//! | `raft-vote` | the vote: term, voted-for node (or none), committed flag | atomically (temp, sync, rename, dir sync) before `save_vote` returns |
//! | `raft-committed` | the last committed log id | in place, not synced: Raft may lose it (it only saves work at start-up) |
//! | `raft-purged` | the last purged log id | atomically, before any segment is deleted by a purge |
//! | `reset` | a start offset and purged log id a reset is moving the log to | atomically, before a reset deletes anything; removed once it is done |
//!
//! Each is a fixed little-endian record followed by a CRC32 of it. A vote
//! or purged id that fails its CRC is an error, never "none": forgetting a
//! vote could let a node vote twice in one term. A committed id that fails
//! its CRC (a torn in-place write) is read as none.

use super::LogId;
use crate::disk::{self, Disk, DiskError};
use std::path::Path;

pub const VOTE_FILE: &str = "raft-vote";
pub const COMMITTED_FILE: &str = "raft-committed";
pub const PURGED_FILE: &str = "raft-purged";
pub const RESET_FILE: &str = "reset";

/// A Raft vote as the log stores it (the Raft layer maps its own type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vote {
    pub term: u64,
    /// The node voted for (or leading) in `term`; `None`: no vote yet.
    pub node: Option<u32>,
    /// A quorum granted it: `node` is the term's leader.
    pub committed: bool,
}

/// Where a reset is taking the log: empty, starting at `start_offset`, with
/// everything up to `purged` already covered by a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    pub start_offset: u64,
    pub purged: Option<LogId>,
}

const LOG_ID_LEN: usize = 20;

fn put_log_id(out: &mut Vec<u8>, id: Option<LogId>) {
    let id = id.unwrap_or_default();
    out.extend_from_slice(&id.term.to_le_bytes());
    out.extend_from_slice(&id.node.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

fn get_log_id(raw: &[u8]) -> Option<LogId> {
    let term = u64::from_le_bytes(raw[..8].try_into().ok()?);
    let node = u32::from_le_bytes(raw[8..12].try_into().ok()?);
    let index = u64::from_le_bytes(raw[12..20].try_into().ok()?);
    // Raft indexes start at 1: index 0 is "none".
    (index != 0).then_some(LogId { term, node, index })
}

fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The record's body if its length and CRC hold.
fn open_record(raw: &[u8], body_len: usize) -> Option<&[u8]> {
    if raw.len() != body_len + 4 {
        return None;
    }
    let (body, crc) = raw.split_at(body_len);
    (crc32fast::hash(body).to_le_bytes() == crc).then_some(body)
}

fn read(disk: &dyn Disk, dir: &Path, name: &str) -> Result<Option<Vec<u8>>, DiskError> {
    disk::read_small(disk, &dir.join(name), 64)
}

fn damaged(dir: &Path, name: &str) -> DiskError {
    DiskError::io(
        &dir.join(name),
        "the file is damaged (wrong length or CRC): Raft state cannot be trusted; restore it or remove this replica and re-add it",
    )
}

pub fn encode_vote(v: &Vote) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(&v.term.to_le_bytes());
    out.extend_from_slice(&v.node.unwrap_or(0).to_le_bytes());
    out.push(u8::from(v.node.is_some()));
    out.push(u8::from(v.committed));
    seal(out)
}

/// Decodes a vote record; total.
pub fn decode_vote(raw: &[u8]) -> Option<Vote> {
    let body = open_record(raw, 14)?;
    if body[12] > 1 || body[13] > 1 {
        return None;
    }
    let term = u64::from_le_bytes(body[..8].try_into().ok()?);
    let node = u32::from_le_bytes(body[8..12].try_into().ok()?);
    Some(Vote { term, node: (body[12] == 1).then_some(node), committed: body[13] == 1 })
}

pub fn save_vote(disk: &dyn Disk, dir: &Path, v: &Vote) -> Result<(), DiskError> {
    disk::write_atomic(disk, dir, VOTE_FILE, &encode_vote(v))
}

pub fn read_vote(disk: &dyn Disk, dir: &Path) -> Result<Option<Vote>, DiskError> {
    match read(disk, dir, VOTE_FILE)? {
        None => Ok(None),
        Some(raw) => decode_vote(&raw).map(Some).ok_or_else(|| damaged(dir, VOTE_FILE)),
    }
}

pub fn encode_log_id(id: Option<LogId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_ID_LEN + 4);
    put_log_id(&mut out, id);
    seal(out)
}

pub fn decode_log_id(raw: &[u8]) -> Option<Option<LogId>> {
    open_record(raw, LOG_ID_LEN).map(get_log_id)
}

/// Written in place and not synced (see the module doc).
pub fn save_committed(disk: &dyn Disk, dir: &Path, id: LogId) -> Result<(), DiskError> {
    let f = disk.open(&dir.join(COMMITTED_FILE), true)?;
    f.write_at(&encode_log_id(Some(id)), 0)
}

pub fn read_committed(disk: &dyn Disk, dir: &Path) -> Result<Option<LogId>, DiskError> {
    Ok(read(disk, dir, COMMITTED_FILE)?.and_then(|raw| decode_log_id(&raw)).flatten())
}

pub fn save_purged(disk: &dyn Disk, dir: &Path, id: Option<LogId>) -> Result<(), DiskError> {
    disk::write_atomic(disk, dir, PURGED_FILE, &encode_log_id(id))
}

pub fn read_purged(disk: &dyn Disk, dir: &Path) -> Result<Option<LogId>, DiskError> {
    match read(disk, dir, PURGED_FILE)? {
        None => Ok(None),
        Some(raw) => decode_log_id(&raw).ok_or_else(|| damaged(dir, PURGED_FILE)),
    }
}

pub fn encode_reset(r: &Reset) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + LOG_ID_LEN + 4);
    out.extend_from_slice(&r.start_offset.to_le_bytes());
    put_log_id(&mut out, r.purged);
    seal(out)
}

pub fn decode_reset(raw: &[u8]) -> Option<Reset> {
    let body = open_record(raw, 8 + LOG_ID_LEN)?;
    Some(Reset { start_offset: u64::from_le_bytes(body[..8].try_into().ok()?), purged: get_log_id(&body[8..]) })
}

pub fn save_reset(disk: &dyn Disk, dir: &Path, r: &Reset) -> Result<(), DiskError> {
    disk::write_atomic(disk, dir, RESET_FILE, &encode_reset(r))
}

/// A reset that a crash interrupted. A damaged record is one whose write
/// never completed (it is renamed into place only once synced), so it
/// cannot be: report it.
pub fn read_reset(disk: &dyn Disk, dir: &Path) -> Result<Option<Reset>, DiskError> {
    match read(disk, dir, RESET_FILE)? {
        None => Ok(None),
        Some(raw) => decode_reset(&raw).map(Some).ok_or_else(|| damaged(dir, RESET_FILE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_any_damage_is_detected() {
        let votes =
            [Vote::default(), Vote { term: 7, node: Some(3), committed: true }, Vote { term: u64::MAX, node: None, committed: false }];
        for v in votes {
            let raw = encode_vote(&v);
            assert_eq!(decode_vote(&raw), Some(v));
            for i in 0..raw.len() {
                let mut bad = raw.clone();
                bad[i] ^= 0x10;
                assert_eq!(decode_vote(&bad), None, "flip at {i} detected");
            }
            assert_eq!(decode_vote(&raw[..raw.len() - 1]), None);
        }
        let id = LogId { term: 4, node: 2, index: 99 };
        assert_eq!(decode_log_id(&encode_log_id(Some(id))), Some(Some(id)));
        assert_eq!(decode_log_id(&encode_log_id(None)), Some(None));
        let r = Reset { start_offset: 1234, purged: Some(id) };
        assert_eq!(decode_reset(&encode_reset(&r)), Some(r));
    }
}
