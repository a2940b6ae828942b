//! Sparse indexes of one segment: offset → file position (`.index`) and
//! timestamp → offset (`.timeindex`). Both are kept in memory and appended to
//! their files; the files are only a cache of what a scan of the segment
//! would rebuild, so they are synced when a segment is sealed, not per flush.
//!
//! `.index` entries are 8 bytes: relative offset u32 LE, position u32 LE.
//! `.timeindex` entries are 12 bytes: max timestamp so far i64 LE, relative
//! offset u32 LE. `.raftindex` entries are 12 bytes: Raft index u64 LE,
//! position u32 LE of the first batch of that entry (the first Raft entry of
//! the segment always has one, so the file also tells where the segment's
//! Raft entries begin). Every `.index` and `.raftindex` entry points at the
//! start of a Raft entry, never inside one.

/// One `.index` entry: the batch starting at `relative_offset` begins at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One `.timeindex` entry: no record before `relative_offset` has a timestamp
/// above `timestamp`, and the batch at `relative_offset` reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// One `.raftindex` entry: the Raft entry `index` begins at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftEntry {
    pub index: u64,
    pub position: u32,
}

pub const OFFSET_ENTRY_LEN: usize = 8;
pub const TIME_ENTRY_LEN: usize = 12;
pub const RAFT_ENTRY_LEN: usize = 12;

impl RaftEntry {
    pub fn encode(&self) -> [u8; RAFT_ENTRY_LEN] {
        let mut out = [0; RAFT_ENTRY_LEN];
        out[..8].copy_from_slice(&self.index.to_le_bytes());
        out[8..].copy_from_slice(&self.position.to_le_bytes());
        out
    }

    pub fn decode_all(raw: &[u8]) -> Vec<RaftEntry> {
        raw.chunks_exact(RAFT_ENTRY_LEN)
            .map(|c| {
                let mut index = [0u8; 8];
                index.copy_from_slice(&c[..8]);
                RaftEntry { index: u64::from_le_bytes(index), position: u32::from_le_bytes([c[8], c[9], c[10], c[11]]) }
            })
            .collect()
    }
}

/// The longest prefix of `entries` that is strictly increasing in both
/// fields, has no index 0 and points inside `data_len` bytes.
pub fn valid_raft_prefix(entries: &[RaftEntry], data_len: u64) -> usize {
    let mut prev: Option<RaftEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        let ordered = prev.is_none_or(|p| e.index > p.index && e.position > p.position);
        if !ordered || e.index == 0 || u64::from(e.position) >= data_len {
            return i;
        }
        prev = Some(*e);
    }
    entries.len()
}

/// Position of the last entry at or below Raft index `index` (0 if none).
pub fn raft_floor_position(entries: &[RaftEntry], index: u64) -> u32 {
    match entries.partition_point(|e| e.index <= index) {
        0 => 0,
        n => entries[n - 1].position,
    }
}

impl OffsetEntry {
    pub fn encode(&self) -> [u8; OFFSET_ENTRY_LEN] {
        let mut out = [0; OFFSET_ENTRY_LEN];
        out[..4].copy_from_slice(&self.relative_offset.to_le_bytes());
        out[4..].copy_from_slice(&self.position.to_le_bytes());
        out
    }

    /// Decodes whole entries; a partial trailing entry (torn write) is ignored.
    pub fn decode_all(raw: &[u8]) -> Vec<OffsetEntry> {
        raw.chunks_exact(OFFSET_ENTRY_LEN)
            .map(|c| OffsetEntry {
                relative_offset: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }
}

impl TimeEntry {
    pub fn encode(&self) -> [u8; TIME_ENTRY_LEN] {
        let mut out = [0; TIME_ENTRY_LEN];
        out[..8].copy_from_slice(&self.timestamp.to_le_bytes());
        out[8..].copy_from_slice(&self.relative_offset.to_le_bytes());
        out
    }

    pub fn decode_all(raw: &[u8]) -> Vec<TimeEntry> {
        raw.chunks_exact(TIME_ENTRY_LEN)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                TimeEntry { timestamp: i64::from_le_bytes(ts), relative_offset: u32::from_le_bytes([c[8], c[9], c[10], c[11]]) }
            })
            .collect()
    }
}

/// The longest prefix of `entries` that is strictly increasing in both
/// fields and points inside `data_len` bytes: anything after a violation is
/// left over from a torn write or a crash and is dropped.
pub fn valid_offset_prefix(entries: &[OffsetEntry], data_len: u64) -> usize {
    let mut prev: Option<OffsetEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        let ordered = prev.is_none_or(|p| e.relative_offset > p.relative_offset && e.position > p.position);
        if !ordered || u64::from(e.position) >= data_len {
            return i;
        }
        prev = Some(*e);
    }
    entries.len()
}

/// As [`valid_offset_prefix`] for time entries: timestamps strictly
/// increasing, offsets strictly increasing and below `next_relative`.
pub fn valid_time_prefix(entries: &[TimeEntry], next_relative: u64) -> usize {
    let mut prev: Option<TimeEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        let ordered = prev.is_none_or(|p| e.timestamp > p.timestamp && e.relative_offset > p.relative_offset);
        if !ordered || u64::from(e.relative_offset) >= next_relative {
            return i;
        }
        prev = Some(*e);
    }
    entries.len()
}

/// Position to start scanning for `relative_offset`: the last entry at or
/// before it, or the segment start.
pub fn floor_position(entries: &[OffsetEntry], relative_offset: u32) -> u32 {
    floor_entry(entries, relative_offset).position
}

/// The last entry at or before `relative_offset`, or the segment start (a
/// batch at relative offset 0, position 0).
pub fn floor_entry(entries: &[OffsetEntry], relative_offset: u32) -> OffsetEntry {
    let i = entries.partition_point(|e| e.relative_offset <= relative_offset);
    if i == 0 { OffsetEntry { relative_offset: 0, position: 0 } } else { entries[i - 1] }
}

/// Relative offset to start scanning for the first record at or after
/// `timestamp`: the batch of the last entry whose timestamp is below it.
pub fn time_floor(entries: &[TimeEntry], timestamp: i64) -> u32 {
    let i = entries.partition_point(|e| e.timestamp < timestamp);
    if i == 0 { 0 } else { entries[i - 1].relative_offset }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(o: u32, p: u32) -> OffsetEntry {
        OffsetEntry { relative_offset: o, position: p }
    }

    #[test]
    fn floor_lookup() {
        let entries = [e(10, 1000), e(20, 2000), e(30, 3000)];
        assert_eq!(floor_position(&entries, 0), 0);
        assert_eq!(floor_position(&entries, 9), 0);
        assert_eq!(floor_position(&entries, 10), 1000);
        assert_eq!(floor_position(&entries, 25), 2000);
        assert_eq!(floor_position(&entries, 1000), 3000);
        assert_eq!(floor_position(&[], 5), 0);
    }

    #[test]
    fn time_lookup() {
        let t = |ts, o| TimeEntry { timestamp: ts, relative_offset: o };
        let entries = [t(100, 5), t(200, 9), t(300, 20)];
        assert_eq!(time_floor(&entries, 50), 0);
        assert_eq!(time_floor(&entries, 100), 0);
        assert_eq!(time_floor(&entries, 101), 5);
        assert_eq!(time_floor(&entries, 250), 9);
        assert_eq!(time_floor(&entries, 1000), 20);
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let entries = vec![e(1, 10), e(5, 90)];
        let mut raw: Vec<u8> = entries.iter().flat_map(|x| x.encode()).collect();
        raw.extend_from_slice(&[1, 2, 3]);
        assert_eq!(OffsetEntry::decode_all(&raw), entries);
        let t = TimeEntry { timestamp: -5, relative_offset: 7 };
        assert_eq!(TimeEntry::decode_all(&t.encode()), vec![t]);
    }

    #[test]
    fn prefix_validation_drops_garbage() {
        assert_eq!(valid_offset_prefix(&[e(1, 10), e(5, 90), e(0, 0)], 100), 2);
        assert_eq!(valid_offset_prefix(&[e(1, 10), e(5, 200)], 100), 1);
        assert_eq!(valid_offset_prefix(&[e(1, 10), e(1, 20)], 100), 1);
    }
}
