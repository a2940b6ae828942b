//! Integration tests against the real `weir` binary.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Broker, read_all};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;
use weir_client::*;
use weir_core::batch::{BatchBuilder, ProducerStamp};
use weir_net::message::{FetchRequest, ProduceRequest};
use weir_net::{Request, Response};

async fn create(client: &Client, name: &str, partitions: u32) {
    Admin::new(client)
        .create_topic(CreateTopicRequest { name: name.into(), partitions, replicas: 1, config: Default::default() })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_produce_consume_and_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "t", 2).await;
    let admin = Admin::new(&client);
    let topics = admin.list_topics().await.unwrap();
    assert_eq!(topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["t"]);
    let err = admin
        .create_topic(CreateTopicRequest { name: "../x".into(), partitions: 1, replicas: 1, config: Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidName));
    let err = admin
        .create_topic(CreateTopicRequest { name: "t".into(), partitions: 1, replicas: 1, config: Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicAlreadyExists));

    let producer = Producer::new(&client);
    let r = producer.send(ProduceMessage::new("t", "first").with_partition(1).with_key("k").with_header("h", "v")).await.unwrap();
    assert_eq!((r.partition, r.offset), (1, 0));
    let rs = producer.send_batch((0..10).map(|i| ProduceMessage::new("t", format!("m{i}")).with_partition(1)).collect()).await.unwrap();
    assert_eq!(rs.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..11).collect::<Vec<_>>());

    let consumer = Consumer::new(&client);
    let f = consumer.fetch_from("t", 1, 0).await.unwrap();
    assert_eq!(f.messages.len(), 11);
    assert_eq!(f.messages[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(f.messages[0].headers, vec![("h".to_owned(), Bytes::from_static(b"v"))]);
    assert_eq!(f.next_offset, 11);
    let f = consumer.fetch_from("t", 1, 5).await.unwrap();
    assert_eq!(f.messages[0].offset, 5, "records before the requested offset are skipped");

    // Specific errors for unknown topic, partition and offset.
    assert_eq!(consumer.fetch_from("nope", 0, 0).await.unwrap_err().code(), Some(ErrorCode::UnknownTopic));
    assert_eq!(consumer.fetch_from("t", 7, 0).await.unwrap_err().code(), Some(ErrorCode::UnknownPartition));
    assert_eq!(consumer.fetch_from("t", 1, 99).await.unwrap_err().code(), Some(ErrorCode::OffsetOutOfRange));

    // Long poll: a fetch waiting at the end returns the message produced meanwhile.
    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.fetch("t", 0, 0, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    producer.send(ProduceMessage::new("t", "late").with_partition(0)).await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.messages.len(), 1, "long poll must return the new message, not time out empty");
    assert_eq!(got.messages[0].value, "late");

    // Subscribe from a timestamp and from latest.
    let mut sub = consumer.subscribe("t", 1, StartOffset::Timestamp(0)).await.unwrap();
    use futures::StreamExt;
    assert_eq!(sub.next().await.unwrap().unwrap().offset, 0);
    let mut latest = consumer.subscribe("t", 1, StartOffset::Latest).await.unwrap();
    producer.send(ProduceMessage::new("t", "new").with_partition(1)).await.unwrap();
    let m = latest.next().await.unwrap().unwrap();
    assert_eq!((m.offset, &m.value[..]), (11, &b"new"[..]));

    // Key-hash partitioning is stable.
    let a = producer.send(ProduceMessage::new("t", "x").with_key("user-1")).await.unwrap();
    let b = producer.send(ProduceMessage::new("t", "y").with_key("user-1")).await.unwrap();
    assert_eq!(a.partition, b.partition);
    assert_eq!(a.partition, partition_for_key(b"user-1", 2));

    admin.delete_topic("t").await.unwrap();
    assert!(admin.list_topics().await.unwrap().is_empty());
    assert!(!dir.path().join("topics/t").exists(), "deleted topic's files are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "keep", 1).await;
    let producer = Producer::with_config(&client, ProducerConfig { acks: Acks::None, ..Default::default() });
    producer.send_batch((0..500).map(|i| ProduceMessage::new("keep", format!("v{i}")).with_partition(0)).collect()).await.unwrap();
    // acks=none sends get no answer: one request answered after them on the
    // same connection shows the broker has read them (what it has not read
    // by SIGTERM is not the broker's; on a loaded machine that was most). A
    // ListOffsets goes to the partition's leader as the produces did (a
    // ListTopics took the bootstrap connection, and proved nothing).
    let list = weir_net::message::ListOffsetsRequest { topic: "keep".into(), partition: 0, spec: weir_net::message::OffsetSpec::Latest };
    client.request(&Request::ListOffsets(list)).await.unwrap();
    assert_eq!(broker.terminate(), Some(0), "SIGTERM exits 0");
    broker.restart();
    let client = broker.client().await;
    let all = read_all(&client, "keep", 0).await;
    assert_eq!(all.len(), 500, "acks=none messages are flushed by a graceful shutdown");
    for (i, m) in all.iter().enumerate() {
        assert_eq!((m.offset, m.value.clone()), (i as u64, Bytes::from(format!("v{i}"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "load", 2).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let client = client.clone();
        let tx = tx.clone();
        writers.push(tokio::spawn(async move {
            let producer =
                Producer::with_config(&client, ProducerConfig { delivery_timeout: Duration::from_secs(3), ..Default::default() });
            for i in 0u32.. {
                let value = format!("w{w}-{i}");
                let batch: Vec<ProduceMessage> =
                    (0..10).map(|j| ProduceMessage::new("load", format!("{value}-{j}")).with_partition(w % 2)).collect();
                match producer.send_batch(batch).await {
                    Ok(rs) => {
                        for (j, r) in rs.into_iter().enumerate() {
                            let _ = tx.send((r.partition, r.offset, format!("{value}-{j}")));
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.kill9();
    for w in writers {
        let _ = w.await;
    }
    drop(tx);
    let mut acked = Vec::new();
    while let Some(a) = rx.recv().await {
        acked.push(a);
    }
    assert!(acked.len() > 100, "the load ran: {} acknowledged", acked.len());
    broker.restart();
    let client = broker.client().await;
    for p in 0..2 {
        let all = read_all(&client, "load", p).await;
        let by_offset: BTreeMap<u64, Bytes> = all.iter().map(|m| (m.offset, m.value.clone())).collect();
        for (i, m) in all.iter().enumerate() {
            assert_eq!(m.offset, i as u64, "offsets are dense");
        }
        let mut values: Vec<&Bytes> = by_offset.values().collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), all.len(), "no message stored twice");
        for (part, offset, value) in acked.iter().filter(|a| a.0 == p) {
            assert_eq!(by_offset.get(offset).map(|v| &v[..]), Some(value.as_bytes()), "acknowledged {value} missing at {part}/{offset}");
        }
    }
}

fn idempotent_batch(producer_id: i64, seq: i32, value: &str) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp { producer_id, producer_epoch: 0, base_sequence: seq });
    b.push(1, None, Some(value.as_bytes()), &[]);
    b.push(1, None, Some(value.as_bytes()), &[]);
    b.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_a_restart_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "idem", 1).await;
    let produce =
        |batch: Bytes| Request::Produce(ProduceRequest { topic: "idem".into(), partition: 0, acks: Acks::All, timeout_ms: 5000, batch });
    let pid = 4242;
    let first = idempotent_batch(pid, 0, "a");
    let second = idempotent_batch(pid, 2, "b");
    let Response::Produce(r1) = client.request_once(&produce(first.clone())).await.unwrap() else { panic!() };
    let Response::Produce(r2) = client.request_once(&produce(second.clone())).await.unwrap() else { panic!() };
    assert_eq!((r1.base_offset, r1.duplicate, r2.base_offset, r2.duplicate), (0, false, 2, false));
    // The acknowledgement was "lost"; the broker dies; the producer retries.
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let Response::Produce(again) = client.request_once(&produce(second.clone())).await.unwrap() else { panic!() };
    assert_eq!((again.base_offset, again.duplicate), (2, true), "the retry is answered with the original offset");
    let Response::Produce(again) = client.request_once(&produce(first)).await.unwrap() else { panic!() };
    assert_eq!((again.base_offset, again.duplicate), (0, true));
    let err = client.request_once(&produce(idempotent_batch(pid, 9, "gap"))).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OutOfOrderSequence));
    assert_eq!(read_all(&client, "idem", 0).await.len(), 4, "nothing stored twice");
}

/// A record stamped far ahead of the broker's clock is refused at
/// admission (it would pin time-based retention), with nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_the_far_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "clock", 1).await;
    let stamped = |ts: i64| {
        let mut b = BatchBuilder::new(ProducerStamp::NONE);
        b.push(ts, None, Some(b"v".as_slice()), &[]);
        Request::Produce(ProduceRequest { topic: "clock".into(), partition: 0, acks: Acks::All, timeout_ms: 5000, batch: b.finish() })
    };
    let year_9999 = 253_402_300_799_000;
    let err = client.request_once(&stamped(year_9999)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidTimestamp), "{err}");
    assert!(err.to_string().contains("timestamp_after_max_ms"), "{err}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let Response::Produce(r) = client.request_once(&stamped(now)).await.unwrap() else { panic!() };
    assert_eq!(r.base_offset, 0, "nothing was stored for the refused batch");
}

/// Sends raw bytes on a new connection and returns whatever comes back
/// before the broker closes it (or a timeout).
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_oversized_frames_do_not_hurt_others() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "ok", 1).await;
    let producer = Producer::new(&client);
    producer.send(ProduceMessage::new("ok", "before").with_partition(0)).await.unwrap();

    // HTTP at a Weir port ("GET " reads as a huge length): an error frame, then closed.
    let answer = raw_exchange(&broker.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = BytesMut::from(&answer[..]);
    let f = weir_net::frame::decode(&mut buf, 1 << 20).unwrap().expect("an error frame before the close");
    let err = Response::decode(&f).unwrap().unwrap_err();
    assert!(matches!(err.code(), ErrorCode::MessageTooLarge | ErrorCode::InvalidRequest), "{err}");
    // An oversized length prefix with a readable header: MessageTooLarge, then closed.
    let mut big = BytesMut::new();
    big.put_u32_le(u32::MAX);
    big.put_slice(b"WE\x01\x00\x06\x00\x01\x00\x07\x00\x00\x00");
    let answer = raw_exchange(&broker.addr, &big);
    let mut buf = BytesMut::from(&answer[..]);
    let f = weir_net::frame::decode(&mut buf, 1 << 20).unwrap().expect("an error frame");
    assert_eq!(f.header.correlation_id, 7);
    assert_eq!(Response::decode(&f).unwrap().unwrap_err().code(), ErrorCode::MessageTooLarge);
    // A valid header with a body that is not a request: an error, connection stays usable.
    let mut bad = BytesMut::new();
    weir_net::frame::encode(
        &mut bad,
        weir_net::FrameHeader { kind: weir_net::Kind::Request, api_key: 7, api_version: 1, correlation_id: 9 },
        b"\xff\xff\xff",
        b"",
    );
    Request::Fetch(FetchRequest { topic: "ok".into(), partition: 0, offset: 0, max_bytes: 1024, max_wait_ms: 0, min_bytes: 0 })
        .encode(10, &mut bad);
    let mut s = std::net::TcpStream::connect(&broker.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&bad).unwrap();
    let mut got = BytesMut::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&chunk[..n]);
        while let Some(f) = weir_net::frame::decode(&mut got, 1 << 20).unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(Response::decode(&frames[0]).unwrap().unwrap_err().code(), ErrorCode::InvalidRequest);
    assert_eq!(frames[1].header.correlation_id, 10, "responses in request order");
    assert!(Response::decode(&frames[1]).unwrap().is_ok());
    // A truncated frame then a hang-up.
    let mut partial = BytesMut::new();
    Request::Fetch(FetchRequest { topic: "ok".into(), partition: 0, offset: 0, max_bytes: 1024, max_wait_ms: 0, min_bytes: 0 })
        .encode(1, &mut partial);
    raw_exchange_truncated(&broker.addr, &partial[..partial.len() / 2]);
    // Random garbage of many shapes.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..50 {
        let len = (seed % 200) as usize;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        raw_exchange_truncated(&broker.addr, &junk);
    }
    // The original client still works, and so does a new one.
    producer.send(ProduceMessage::new("ok", "after").with_partition(0)).await.unwrap();
    let fresh = broker.client().await;
    assert_eq!(read_all(&fresh, "ok", 0).await.len(), 2);
}

fn raw_exchange_truncated(addr: &str, bytes: &[u8]) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// The README's command: `weir` with no arguments but the port, started in
/// an empty directory, keeps its data in `./weir-data` there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_no_configuration_in_the_current_directory() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("weir listening on ").unwrap_or_else(|| panic!("broker did not start: {line:?}")).to_owned();
    let client = Client::connect(ClientConfig { brokers: vec![addr], ..Default::default() }).await.unwrap();
    create(&client, "here", 1).await;
    Producer::new(&client).send(ProduceMessage::new("here", "x").with_partition(0)).await.unwrap();
    assert!(dir.path().join("weir-data/topics/here/0/00000000000000000000.log").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}
