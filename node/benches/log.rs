//! Partition log throughput on the real disk: appends of 1 KiB records in
//! batches, one flush (fdatasync) per batch, then a sequential read of
//! everything back. Run with `cargo bench -p weir-node --bench log`;
//! `WEIR_BENCH_DIR` chooses the directory (default: a temp dir under
//! `./target`), `WEIR_BENCH_MB` the volume (default 2048).

use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use weir_core::Timestamp;
use weir_core::batch::{BatchBuilder, ProducerStamp};
use weir_core::log::{LogConfig, PartitionLog};
use weir_node::disk::RealDisk;

fn main() {
    let base = std::env::var_os("WEIR_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let total_mb: usize = std::env::var("WEIR_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    for records_per_batch in [1000usize, 100] {
        run(tmp.path(), total_mb, records_per_batch);
    }
}

fn run(root: &std::path::Path, total_mb: usize, records_per_batch: usize) {
    let dir = root.join(format!("p-{records_per_batch}"));
    let prealloc =
        std::env::var("WEIR_BENCH_PREALLOC_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(LogConfig::default().preallocate_bytes);
    let config = LogConfig { segment_bytes_max: 1 << 30, retention_ms: None, preallocate_bytes: prealloc, ..LogConfig::default() };
    let (mut log, _) = PartitionLog::open(Arc::new(RealDisk::default()), &dir, config, Timestamp(0)).expect("open log");
    let value = vec![0x5au8; 1024];
    let mut template = BatchBuilder::with_capacity(ProducerStamp::NONE, records_per_batch * 1040);
    for _ in 0..records_per_batch {
        template.push(1_700_000_000_000, None, Some(&value), &[]);
    }
    let template = template.finish().to_vec();
    let batches = total_mb * 1024 / records_per_batch;
    let mut sync_us = Histogram::<u64>::new(3).expect("histogram");
    let mut append_us = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    for _ in 0..batches {
        let t = Instant::now();
        log.append(&template, Timestamp(0)).expect("append");
        append_us.record(t.elapsed().as_micros() as u64).expect("record");
        let t = Instant::now();
        log.flush().expect("flush");
        sync_us.record(t.elapsed().as_micros() as u64).expect("record");
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (batches * template.len()) as f64;
    println!(
        "append  {records_per_batch:>5} x 1 KiB per batch, flush per batch: {:>8.1} MB/s ({:.0} batches/s); append p50 {} us p99 {} us; fdatasync p50 {} us p99 {} us max {} us",
        bytes / secs / 1e6,
        batches as f64 / secs,
        append_us.value_at_quantile(0.5),
        append_us.value_at_quantile(0.99),
        sync_us.value_at_quantile(0.5),
        sync_us.value_at_quantile(0.99),
        sync_us.max()
    );
    let end = log.log_end_offset();
    let start = Instant::now();
    let mut offset = 0;
    let mut read = 0usize;
    while offset < end {
        let r = log.read(offset, 1 << 20, end).expect("read");
        read += r.bytes.len();
        offset = r.next_offset;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("read    {records_per_batch:>5} x 1 KiB per batch, 1 MiB reads (CRC checked): {:>8.1} MB/s", read as f64 / secs / 1e6);
}
