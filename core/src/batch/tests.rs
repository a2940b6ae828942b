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
    build_in(true, records, base_ts)
}

/// A batch in form 2 (`kafka`) or form 1.
fn build_in(kafka: bool, records: &[Input], base_ts: i64) -> Bytes {
    let stamp = ProducerStamp { producer_id: 7, producer_epoch: 2, base_sequence: 40 };
    let mut b = if kafka { BatchBuilder::new(stamp) } else { BatchBuilder::v1(stamp) };
    for (ts, key, value, headers) in records {
        let hs: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        b.push(base_ts + ts, key.as_deref(), value.as_deref(), &hs);
    }
    b.finish()
}

proptest! {
    #[test]
    fn round_trip(records in proptest::collection::vec(record_strategy(), 1..20), offset in 0u64..1 << 40, epoch: u64, index: u64, kafka: bool) {
        let bytes = build_in(kafka, &records, 1_700_000_000_000);
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
        prop_assert_eq!(h.is_kafka(), kafka);
        // What a Kafka client reads: the stored bytes (form 2) or a
        // re-encoding (form 1), either way the same records at the same offset.
        let theirs = batch.kafka_bytes().unwrap().unwrap();
        if kafka {
            prop_assert_eq!(&theirs[..], &raw[KAFKA_AT..]);
        }
        prop_assert_eq!(&theirs[..8], &offset.to_be_bytes()[..]);
        let (again, _) = RecordBatch::decode(&wrap_kafka(&theirs).unwrap(), usize::MAX).unwrap();
        again.validate().unwrap();
        prop_assert_eq!(again.records().map(Result::unwrap).collect::<Vec<_>>(), batch.records().map(Result::unwrap).collect::<Vec<_>>());
        prop_assert_eq!(again.header().producer_id, 7);
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
    fn any_flipped_bit_is_detected(records in proptest::collection::vec(record_strategy(), 1..5), bit in any::<prop::sample::Index>(), offset: u64, kafka: bool) {
        let mut raw = build_in(kafka, &records, 0).to_vec();
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
    fn arbitrary_records_behind_valid_crc_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), count in 0u32..50, kafka: bool) {
        let raw = behind_valid_crc(kafka, &body, count);
        let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        let _ = batch.validate();
        prop_assert!(batch.records().count() <= count as usize);
    }
}

/// A batch of either form whose records area is `body`, claiming `count`
/// records, with valid lengths and CRCs.
fn behind_valid_crc(kafka: bool, body: &[u8], count: u32) -> Bytes {
    let mut raw = build_in(kafka, &[(0, None, Some(vec![1]), vec![])], 0).to_vec();
    let header = if kafka { HEADER_LEN_KAFKA } else { HEADER_LEN_V1 };
    raw.truncate(header);
    raw.extend_from_slice(body);
    let len = (raw.len() - LENGTH_PREFIX_LEN) as u32;
    raw[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&len.to_le_bytes());
    if kafka {
        raw[kat::BATCH_LENGTH..kat::BATCH_LENGTH + 4].copy_from_slice(&(len - KAFKA_AT as u32).to_be_bytes());
        raw[kat::RECORD_COUNT..kat::RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        raw[kat::LAST_OFFSET_DELTA..kat::LAST_OFFSET_DELTA + 4].copy_from_slice(&count.saturating_sub(1).to_be_bytes());
    } else {
        raw[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&count.to_le_bytes());
    }
    seal_body(&mut raw);
    Bytes::from(raw)
}

#[test]
fn a_kafka_batch_is_wrapped_whole_and_alone() {
    let batch = build(&[(0, Some(b"k".to_vec()), Some(b"v".to_vec()), vec![])], 5);
    let kafka = &batch[KAFKA_AT..];
    let wrapped = wrap_kafka(kafka).unwrap();
    assert_eq!(&wrapped[KAFKA_AT..], kafka);
    RecordBatch::decode(&wrapped, usize::MAX).unwrap().0.validate().unwrap();
    let two = [kafka, kafka].concat();
    assert!(matches!(wrap_kafka(&two), Err(BatchError::Inconsistent(_))), "two batches for one partition");
    assert!(matches!(wrap_kafka(&kafka[..kafka.len() - 1]), Err(BatchError::Truncated { .. })));
    assert!(matches!(wrap_kafka(&kafka[..30]), Err(BatchError::Truncated { .. })));
    let mut negative = kafka.to_vec();
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(wrap_kafka(&negative).is_err());
    let mut v1 = kafka.to_vec();
    v1[16] = 1;
    assert_eq!(wrap_kafka(&v1), Err(BatchError::BadMagic(1)), "Kafka's magic 0 and 1 are not taken");
}

#[test]
fn kafka_batches_take_no_transactions_control_or_unknown_codecs() {
    let batch = build(&[(0, None, Some(vec![1]), vec![])], 0);
    for (attributes, want) in [
        (attributes::TRANSACTIONAL, BatchError::BadAttributes(attributes::TRANSACTIONAL)),
        (attributes::CONTROL, BatchError::BadAttributes(attributes::CONTROL)),
        (1 << 6, BatchError::BadAttributes(1 << 6)),
        (5, BatchError::UnsupportedCodec(5)),
    ] {
        let mut raw = batch.to_vec();
        raw[kat::ATTRIBUTES..kat::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        seal_body(&mut raw);
        assert_eq!(RecordBatch::decode(&Bytes::from(raw), usize::MAX).unwrap_err(), want);
    }
}

#[test]
fn a_kafka_record_may_precede_its_batch_timestamp() {
    // Kafka lets a record's timestamp delta be negative.
    let mut rec = vec![0u8];
    varint::put_i64(&mut rec, -5);
    varint::put_i64(&mut rec, 0);
    varint::put_i64(&mut rec, -1);
    varint::put_i64(&mut rec, 1);
    rec.push(b'v');
    varint::put_i64(&mut rec, 0);
    let mut body = Vec::new();
    varint::put_i64(&mut body, rec.len() as i64);
    body.extend_from_slice(&rec);
    let raw = behind_valid_crc(true, &body, 1);
    let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
    batch.validate().unwrap();
    let r = batch.records().next().unwrap().unwrap();
    assert_eq!(r.timestamp(batch.header().first_timestamp), batch.header().first_timestamp - 5);
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
    let mut iter = RecordIter::new(Bytes::from(body), 1, false);
    assert!(matches!(iter.next(), Some(Err(BatchError::BadRecord { .. }))));
    // The same in Kafka's framing, where every count is a zigzag varint.
    let mut rec = vec![0u8];
    varint::put_i64(&mut rec, 0);
    varint::put_i64(&mut rec, 0);
    varint::put_i64(&mut rec, -1);
    varint::put_i64(&mut rec, -1);
    varint::put_i64(&mut rec, 1 << 40);
    let mut body = Vec::new();
    varint::put_i64(&mut body, rec.len() as i64);
    body.extend_from_slice(&rec);
    let mut iter = RecordIter::new(Bytes::from(body), 1, true);
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
    // Form 2, plain and gzip-compressed, from the README's layout.
    for (seed, codec, first) in [
        (&include_bytes!("../../../fuzz/corpus/record_batch/kafka_plain")[..], codec::Codec::None, "hello".to_owned()),
        (&include_bytes!("../../../fuzz/corpus/record_batch/kafka_gzip")[..], codec::Codec::Gzip, "compressed ".repeat(20)),
    ] {
        let raw = Bytes::copy_from_slice(seed);
        let (batch, rest) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        assert!(rest.is_empty());
        batch.validate().unwrap();
        assert_eq!(batch.codec(), codec);
        let records: Vec<Record> = batch.records().map(Result::unwrap).collect();
        assert_eq!((records.len(), records[0].value.as_deref()), (2, Some(first.as_bytes())));
    }
}

/// `batch` with its records area compressed by `codec`'s encoder, its
/// attributes saying so, and both CRCs sealed again (as a Kafka producer
/// sends it).
fn compressed(batch: &Bytes, codec: codec::Codec) -> Bytes {
    use std::io::Write;
    let plain = &batch[HEADER_LEN_KAFKA..];
    let body = match codec {
        codec::Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        codec::Codec::Snappy => snap::raw::Encoder::new().compress_vec(plain).unwrap(),
        codec::Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        // zstd, as raw blocks (ruzstd only decodes).
        codec::Codec::Zstd => {
            let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0b1010_0000];
            out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
            let header = 1 | ((plain.len() as u32) << 3);
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.extend_from_slice(plain);
            out
        }
        codec::Codec::None => plain.to_vec(),
    };
    let mut raw = batch[..HEADER_LEN_KAFKA].to_vec();
    raw.extend_from_slice(&body);
    let len = (raw.len() - LENGTH_PREFIX_LEN) as u32;
    raw[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&len.to_le_bytes());
    raw[kat::BATCH_LENGTH..kat::BATCH_LENGTH + 4].copy_from_slice(&(len - KAFKA_AT as u32).to_be_bytes());
    let bits = match codec {
        codec::Codec::None => 0u16,
        codec::Codec::Gzip => 1,
        codec::Codec::Snappy => 2,
        codec::Codec::Lz4 => 3,
        codec::Codec::Zstd => 4,
    };
    raw[kat::ATTRIBUTES..kat::ATTRIBUTES + 2].copy_from_slice(&bits.to_be_bytes());
    seal_body(&mut raw);
    Bytes::from(raw)
}

const CODECS: [codec::Codec; 4] = [codec::Codec::Gzip, codec::Codec::Snappy, codec::Codec::Lz4, codec::Codec::Zstd];

proptest! {
    /// A compressed batch validates and reads back exactly the records of
    /// the same batch uncompressed; a count it does not hold is refused.
    #[test]
    fn compressed_batches_read_back_their_records(records in proptest::collection::vec(record_strategy(), 1..20), c in 0usize..4) {
        let plain = build(&records, 1_700_000_000_000);
        let (want, _) = RecordBatch::decode(&plain, usize::MAX).unwrap();
        let raw = compressed(&plain, CODECS[c]);
        let (batch, _) = RecordBatch::decode(&raw, usize::MAX).unwrap();
        prop_assert_eq!(batch.codec(), CODECS[c]);
        batch.validate().unwrap();
        let got: Vec<Record> = batch.records().collect::<Result<_, _>>().unwrap();
        let expected: Vec<Record> = want.records().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(batch.kafka_bytes().unwrap().unwrap(), raw.slice(KAFKA_AT..), "served as stored");
        // One record more than the batch holds, or one fewer.
        for count in [records.len() as u32 + 1, records.len() as u32 - 1] {
            let mut lying = raw.to_vec();
            lying[kat::RECORD_COUNT..kat::RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
            lying[kat::LAST_OFFSET_DELTA..kat::LAST_OFFSET_DELTA + 4].copy_from_slice(&count.saturating_sub(1).to_be_bytes());
            seal_body(&mut lying);
            let lying = Bytes::from(lying);
            if let Ok((b, _)) = RecordBatch::decode(&lying, usize::MAX) {
                prop_assert!(b.validate().is_err() || count == 0, "count {} accepted", count);
            }
        }
    }

    /// Any bytes behind a valid CRC with any codec's bits are refused or
    /// validate, never panic.
    #[test]
    fn garbage_under_any_codec_is_refused(body in proptest::collection::vec(any::<u8>(), 0..200), c in 0usize..4, count in 1u32..5) {
        let mut raw = behind_valid_crc(true, &body, count).to_vec();
        raw[kat::ATTRIBUTES..kat::ATTRIBUTES + 2].copy_from_slice(&(c as u16 + 1).to_be_bytes());
        seal_body(&mut raw);
        if let Ok((b, _)) = RecordBatch::decode(&Bytes::from(raw), usize::MAX) {
            let _ = b.validate();
            let _ = b.records().count();
        }
    }
}

#[test]
fn form_1_batches_are_never_compressed() {
    let mut raw = build_in(false, &[(0, None, Some(vec![1]), vec![])], 0).to_vec();
    raw[at::ATTRIBUTES..at::ATTRIBUTES + 2].copy_from_slice(&1u16.to_le_bytes());
    seal_body(&mut raw);
    assert_eq!(RecordBatch::decode(&Bytes::from(raw), usize::MAX).unwrap_err(), BatchError::UnsupportedCodec(1));
}

#[test]
fn a_compressed_batch_is_told_from_its_header_alone() {
    let plain = build(&[(0, None, Some(vec![1; 100]), vec![])], 0);
    assert!(!is_compressed(&plain));
    for c in CODECS {
        assert!(is_compressed(&compressed(&plain, c)), "{c:?}");
    }
    assert!(!is_compressed(&build_in(false, &[(0, None, Some(vec![1]), vec![])], 0)), "form 1");
    assert!(!is_compressed(&plain[..50]), "too short to tell");
}
