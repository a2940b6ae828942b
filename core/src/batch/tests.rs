use super::*;
use proptest::prelude::*;

type Input = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn record_strategy() -> impl Strategy<Value = Input> {
    (
        0i64..1_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10))), 0..3),
    )
}

fn build(records: &[Input], base_ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp { producer_id: 7, producer_epoch: 2, base_sequence: 40 });
    for (ts, key, value, headers) in records {
        let hs: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        b.push(base_ts + ts, key.as_deref(), value.as_deref(), &hs);
    }
    b.finish()
}

proptest! {
    #[test]
    fn round_trip(records in proptest::collection::vec(record_strategy(), 1..20), offset in 0u64..1 << 40, epoch: u64, index: u64) {
        let bytes = build(&records, 1_700_000_000_000);
        let mut raw = bytes.to_vec();
        stamp(&mut raw, offset, RaftStamp { term: epoch, node: 3, index, entry_rest: 2 });
        let raw = Bytes::from(raw);
        let (batch, rest) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        prop_assert!(rest.is_empty());
        batch.validate().unwrap();
        let h = batch.header();
        prop_assert_eq!(h.base_offset, offset);
        prop_assert_eq!(h.leader_epoch, epoch);
        prop_assert_eq!(h.raft_index, index);
        prop_assert_eq!((h.leader_node, h.entry_rest), (3, 2));
        prop_assert_eq!(h.record_count as usize, records.len());
        prop_assert_eq!(h.total_len(), raw.len());
        prop_assert_eq!(h.producer_id, 7);
        prop_assert_eq!(h.base_sequence, 40);
        let first = records[0].0;
        for (got, want) in batch.records().zip(records.iter()) {
            let got = got.unwrap();
            prop_assert_eq!(got.key.as_deref(), want.1.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.2.as_deref());
            prop_assert_eq!(got.timestamp(h.first_timestamp), 1_700_000_000_000 + want.0.max(first));
            prop_assert_eq!(got.headers.len(), want.3.len());
            for (gh, wh) in got.headers.iter().zip(want.3.iter()) {
                prop_assert_eq!(&gh.key, &wh.0);
                prop_assert_eq!(gh.value.as_deref(), wh.1.as_deref());
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let raw = Bytes::from(raw);
        for batch in decode_all(raw, 1 << 20).flatten() {
            let _ = batch.validate();
            for _ in batch.records() {}
        }
    }

    #[test]
    fn any_flipped_bit_is_detected(records in proptest::collection::vec(record_strategy(), 1..5), bit in any::<prop::sample::Index>(), offset: u64) {
        let mut raw = build(&records, 0).to_vec();
        stamp(&mut raw, offset, RaftStamp { term: 1, node: 2, index: 3, entry_rest: 0 });
        let bits = raw.len() * 8;
        let bit = bit.index(bits);
        raw[bit / 8] ^= 1 << (bit % 8);
        let raw = Bytes::from(raw);
        prop_assert!(RecordBatch::decode(&raw, usize::MAX).is_err());
    }

    /// Arbitrary record bytes behind a valid header and CRC: the record
    /// decoder must stay total, not just the envelope.
    #[test]
    fn arbitrary_records_behind_valid_crc_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), count in 0u32..50) {
        let mut raw = build(&[(0, None, Some(vec![1]), vec![])], 0).to_vec();
        raw.truncate(HEADER_LEN);
        raw.extend_from_slice(&body);
        let len = (raw.len() - LENGTH_PREFIX_LEN) as u32;
        raw[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&len.to_le_bytes());
        raw[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&raw[CRC_START..]);
        raw[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_le_bytes());
        seal_header(&mut raw);
        let raw = Bytes::from(raw);
        let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        let _ = batch.validate();
        prop_assert!(batch.records().count() <= count as usize);
    }
}

#[test]
fn control_batch_has_no_records_and_validates() {
    let raw = BatchBuilder::control(5);
    let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
    assert!(batch.header().is_control());
    assert_eq!(batch.header().record_count, 0);
    assert_eq!(batch.next_offset(), batch.base_offset());
    batch.validate().unwrap();
    assert_eq!(batch.control_body().unwrap(), ControlBody::Blank);
}

#[test]
fn control_bodies_round_trip_and_unknown_kinds_are_refused() {
    let membership = ControlBody::Membership(Bytes::from_static(b"voters 1,2,3"));
    for body in [ControlBody::Blank, membership] {
        let raw = BatchBuilder::control_with(7, &body);
        let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        batch.validate().unwrap();
        assert_eq!(batch.control_body().unwrap(), body);
        assert_eq!(batch.next_offset(), batch.base_offset(), "control batches take no offsets");
    }
    assert_eq!(ControlBody::decode(&Bytes::new()).unwrap(), ControlBody::Blank, "legacy control batches had no body");
    assert!(matches!(ControlBody::decode(&Bytes::from_static(&[0, 1])), Err(BatchError::BadControl(_))));
    assert!(matches!(ControlBody::decode(&Bytes::from_static(&[9])), Err(BatchError::BadControl(_))));
    let data = BatchBuilder::new(ProducerStamp::NONE);
    let mut data = data;
    data.push(0, None, Some(b"v"), &[]);
    let (batch, _) = RecordBatch::decode(&data.finish(), usize::MAX).unwrap();
    assert!(batch.control_body().is_err());
}

#[test]
fn empty_data_batch_is_rejected() {
    let raw = BatchBuilder::new(ProducerStamp::NONE).finish();
    let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
    assert!(matches!(batch.validate(), Err(BatchError::Inconsistent(_))));
}

#[test]
fn length_is_checked_before_anything_else() {
    let mut raw = build(&[(0, None, Some(vec![1; 10]), vec![])], 0).to_vec();
    raw[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = RecordBatch::decode(&Bytes::from(raw), 1 << 20).unwrap_err();
    assert!(matches!(err, BatchError::BadLength { .. }), "{err}");
    assert_eq!(peek_total_len(&[0; 5], 100), Ok(None));
}

#[test]
fn header_count_cannot_force_a_large_allocation() {
    // A record claiming 2^40 headers in a few bytes is refused before allocating.
    let mut body = Vec::new();
    let mut rec = vec![0u8];
    varint::put_i64(&mut rec, 0);
    varint::put_u64(&mut rec, 0);
    varint::put_i64(&mut rec, -1);
    varint::put_i64(&mut rec, -1);
    varint::put_u64(&mut rec, 1 << 40);
    varint::put_u64(&mut body, rec.len() as u64);
    body.extend_from_slice(&rec);
    let mut iter = RecordIter::new(Bytes::from(body), 1);
    assert!(matches!(iter.next(), Some(Err(BatchError::BadRecord { .. }))));
}

/// The fuzz seeds are written by `fuzz/make_seeds.py` from the documented
/// layout alone: decoding them checks the documentation against the code.
#[test]
fn batches_built_from_the_documented_layout_decode() {
    for raw in [
        &include_bytes!("../../../fuzz/corpus/record_batch/two_records")[..],
        &include_bytes!("../../../fuzz/corpus/record_batch/one_big_record")[..],
    ] {
        let raw = Bytes::copy_from_slice(raw);
        let (batch, rest) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        assert!(rest.is_empty());
        batch.validate().unwrap();
    }
    let raw = Bytes::copy_from_slice(include_bytes!("../../../fuzz/corpus/record_batch/two_records"));
    let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
    let records: Vec<Record> = batch.records().map(Result::unwrap).collect();
    assert_eq!(records[1].value.as_deref(), Some(&b"world"[..]));
    assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(records[0].headers[0].key, "h");
    assert_eq!(batch.header().producer_id, 7);
    let blank = Bytes::copy_from_slice(include_bytes!("../../../fuzz/corpus/record_batch/control_blank"));
    let (batch, _) = RecordBatch::decode(&blank, usize::MAX).unwrap();
    batch.validate().unwrap();
    assert_eq!(batch.control_body().unwrap(), ControlBody::Blank);
    assert_eq!((batch.header().leader_epoch, batch.header().leader_node, batch.header().raft_index), (1, 1, 1));
    let member = Bytes::copy_from_slice(include_bytes!("../../../fuzz/corpus/record_batch/control_membership"));
    let (batch, _) = RecordBatch::decode(&member, usize::MAX).unwrap();
    batch.validate().unwrap();
    assert_eq!(batch.control_body().unwrap(), ControlBody::Membership(Bytes::from_static(b"voters:1,2,3")));
    let entry = Bytes::copy_from_slice(include_bytes!("../../../fuzz/corpus/log_recovery/raft_entries"));
    let rests: Vec<(u64, u32)> =
        decode_all(entry, usize::MAX).map(|b| b.unwrap()).map(|b| (b.header().raft_index, b.header().entry_rest)).collect();
    assert_eq!(rests, vec![(1, 0), (2, 1), (2, 0), (3, 0)]);
}
