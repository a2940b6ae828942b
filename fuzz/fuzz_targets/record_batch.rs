//! Record batch decoder: total; a decoded batch's length is what it says,
//! its records decode lazily without panics, and a valid batch survives
//! re-stamping with a new offset.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_core::batch::{self, RecordBatch};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok((b, rest)) = RecordBatch::decode(&input, 1 << 20) else { return };
    assert_eq!(b.as_bytes().len() + rest.len(), data.len());
    assert_eq!(b.header().total_len(), b.as_bytes().len());
    let count = b.records().filter(Result::is_ok).count();
    assert!(count <= b.header().record_count as usize);
    if b.validate().is_ok() {
        assert_eq!(count, b.header().record_count as usize);
        let mut raw = b.as_bytes().to_vec();
        batch::stamp(&mut raw, 12345, 6, 7, 8);
        let (again, _) = RecordBatch::decode(&Bytes::from(raw), 1 << 20).expect("re-stamped batch stays valid");
        assert_eq!(again.base_offset(), 12345);
        assert_eq!(again.header().record_count, b.header().record_count);
    }
});
