//! Record batch decoder: total; a decoded batch's length is what it says,
//! its records decode lazily without panics, and a valid batch survives
//! re-stamping with a new offset and Raft stamp; a control batch's typed
//! body decodes without panics, and a decoded body re-encodes to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_core::batch::{self, ControlBody, RaftStamp, RecordBatch};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok((b, rest)) = RecordBatch::decode(&input, 1 << 20) else { return };
    assert_eq!(b.as_bytes().len() + rest.len(), data.len());
    assert_eq!(b.header().total_len(), b.as_bytes().len());
    if b.header().is_control() {
        let body = input.slice(b.header().header_len().min(b.as_bytes().len())..b.as_bytes().len());
        if let Ok(decoded) = ControlBody::decode(&body)
            && !body.is_empty()
        {
            assert_eq!(decoded.encode(), body.to_vec(), "control body re-encodes to its bytes");
        }
        let _ = b.control_body();
    }
    let count = b.records().filter(Result::is_ok).count();
    assert!(count <= b.header().record_count as usize);
    if b.validate().is_ok() {
        assert_eq!(count, b.header().record_count as usize);
        let mut raw = b.as_bytes().to_vec();
        batch::stamp(&mut raw, 12345, RaftStamp { term: 6, node: 7, index: 8, entry_rest: 1 });
        let (again, _) = RecordBatch::decode(&Bytes::from(raw), 1 << 20).expect("re-stamped batch stays valid");
        assert_eq!(again.base_offset(), 12345);
        assert_eq!(again.header().record_count, b.header().record_count);
        assert_eq!((again.header().raft_index, again.header().entry_rest), (8, 1));
        // What a Kafka client reads is a Kafka batch of the same records.
        if let Some(theirs) = b.kafka_bytes().expect("a valid batch re-encodes") {
            let (k, _) = RecordBatch::decode(&batch::wrap_kafka(&theirs).expect("one whole batch"), 1 << 21).expect("decodes");
            k.validate().expect("valid");
            assert_eq!(k.header().record_count, b.header().record_count);
        }
    }
});
