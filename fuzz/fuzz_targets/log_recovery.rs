//! Log recovery over arbitrary segment bytes: opening never panics, the
//! recovered log serves only valid, dense batches up to its end, its Raft
//! entries read back whole with increasing indexes up to `last_log_id`, and
//! it accepts appends (or the next Raft entry) afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;
use weir_core::Timestamp;
use weir_core::batch::{BatchBuilder, ProducerStamp, decode_all};
use weir_core::disk::Disk;
use weir_core::disk::sim::SimDisk;
use weir_core::log::{LogConfig, LogId, PartitionLog};

fuzz_target!(|data: &[u8]| {
    let disk = SimDisk::new(1);
    let dir = Path::new("/p");
    disk.create_dir_all(dir).unwrap();
    let f = disk.open(&dir.join("00000000000000000000.log"), true).unwrap();
    f.write_at(data, 0).unwrap();
    f.sync_data().unwrap();
    let config = LogConfig { segment_bytes_max: 1 << 20, batch_bytes_max: 1 << 20, preallocate_bytes: 4096, ..LogConfig::default() };
    let Ok((mut log, _)) = PartitionLog::open(Arc::new(disk.clone()), dir, config, Timestamp(0)) else { return };
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        let r = log.read(offset, 4096, end).expect("recovered data reads back");
        for b in decode_all(r.bytes, 1 << 20) {
            let b = b.expect("recovered batches are valid");
            assert!(b.next_offset() > offset || b.header().record_count == 0);
        }
        assert!(r.next_offset > offset, "no progress at {offset}");
        offset = r.next_offset;
    }
    let entries = log.entries(1..u64::MAX, usize::MAX).expect("recovered entries read back");
    for pair in entries.windows(2) {
        assert!(pair[1].log_id.index > pair[0].log_id.index, "entry indexes increase");
        assert_eq!(pair[1].base_offset, pair[0].next_offset, "entries are contiguous");
    }
    assert_eq!(entries.last().map(|e| e.log_id), log.last_log_id(), "the last entry is the last log id");
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    b.push(0, None, Some(b"after"), &[]);
    let batch = b.finish();
    let info = match log.last_log_id() {
        Some(last) => log.append_entry(LogId { index: last.index + 1, ..last }, &[&batch], Timestamp(0)),
        None => log.append(&batch, Timestamp(0)),
    }
    .expect("append after recovery");
    assert_eq!(info.base_offset, end);
});
