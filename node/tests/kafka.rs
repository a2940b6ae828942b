//! Kafka clients on the client port, against the real `weir` binary: kcat
//! (librdkafka 2.0.x, installed by `ci/install-kcat`) lists brokers and
//! topics, and raw sockets probe the version firewall and the bounds.

mod common;

use common::{Broker, kcat};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use weir_client::{Admin, CreateTopicRequest};

/// kcat's metadata listing, as JSON.
fn kcat_metadata(addr: &str, topic: Option<&str>) -> serde_json::Value {
    let mut cmd = kcat();
    cmd.args(["-b", addr, "-L", "-J", "-m", "10"]);
    if let Some(t) = topic {
        cmd.args(["-t", t]);
    }
    let out = cmd.output().expect("run kcat");
    assert!(out.status.success(), "kcat -L failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("kcat printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One Kafka request frame: length, key, version, correlation id, a null
/// client id (and no tagged fields in a flexible header), then `body`.
fn request(key: i16, version: i16, id: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    if flexible {
        f.push(0);
    }
    f.extend_from_slice(body);
    let mut framed = (f.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&f);
    framed
}

/// The next response frame's bytes (after its length), or `None` once the
/// broker closed the connection.
fn response(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// Whether the broker closes the connection (after whatever error frame
/// it may send first) within the read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok() || rest.len() > 1 << 20
}

#[tokio::test]
async fn kcat_lists_the_brokers_and_topics_native_clients_see() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "orders".into(), partitions: 3, replicas: 1, config: Default::default() })
        .await
        .unwrap();
    let all = kcat_metadata(&broker.addr, None);
    assert_eq!(all["controllerid"], 1, "{all}");
    assert_eq!(all["brokers"][0]["name"], broker.addr.as_str(), "{all}");
    let topics = all["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 1, "{all}");
    assert_eq!(topics[0]["topic"], "orders");
    let partitions = topics[0]["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!((p["partition"].as_u64(), p["leader"].as_u64()), (Some(i as u64), Some(1)), "{p}");
    }
    // kcat's metadata request allows auto-creation: the topic it names is made.
    let made = kcat_metadata(&broker.addr, Some("fresh"));
    assert_eq!(made["topics"][0]["partitions"].as_array().map(Vec::len), Some(1), "{made}");
    let dir = tempfile::tempdir().unwrap();
    let strict = Broker::start_with(dir.path(), None, &["--auto-create-topics", "false"]);
    let missing = kcat_metadata(&strict.addr, Some("nope"));
    assert!(missing["topics"][0]["error"].as_str().is_some_and(|e| e.contains("Unknown topic")), "{missing}");
}

#[test]
fn the_version_firewall_answers_or_closes_and_the_broker_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    // ApiVersions newer than ours: a version 0 answer with UNSUPPORTED_VERSION and our ranges.
    let mut s = connect(&broker.addr);
    s.write_all(&request(18, 99, 41, true, &[])).unwrap();
    let r = response(&mut s).expect("an answer");
    assert_eq!(&r[..4], &41i32.to_be_bytes(), "correlation id under a version 0 header");
    assert_eq!(&r[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let keys = i32::from_be_bytes(r[6..10].try_into().unwrap()) as usize;
    let ranges: Vec<(i16, i16, i16)> = (0..keys)
        .map(|i| {
            let e = &r[10 + 6 * i..16 + 6 * i];
            (i16::from_be_bytes([e[0], e[1]]), i16::from_be_bytes([e[2], e[3]]), i16::from_be_bytes([e[4], e[5]]))
        })
        .collect();
    assert!(ranges.contains(&(18, 0, 3)) && ranges.contains(&(3, 0, 9)), "{ranges:?}");
    // The same connection then asks at a version we speak.
    s.write_all(&request(18, 0, 42, false, &[])).unwrap();
    let r = response(&mut s).expect("an answer");
    assert_eq!((&r[..4], &r[4..6]), (&42i32.to_be_bytes()[..], &0i16.to_be_bytes()[..]));

    // Unknown API, Produce (not answered yet), a huge array count, a
    // negative length, a frame beyond max_frame_bytes: closed, no answer.
    let mut huge_count = request(3, 1, 1, false, &i32::MAX.to_be_bytes());
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("unknown API", request(99, 0, 1, false, &[])),
        ("Produce", request(0, 7, 1, false, &[0; 16])),
        ("huge array count", std::mem::take(&mut huge_count)),
        ("negative length", [&(-5i32).to_be_bytes()[..], &[0, 18, 0, 0, 0, 0, 0, 1]].concat()),
        ("oversized frame", [&(i32::MAX).to_be_bytes()[..], &[0, 18, 0, 0, 0, 0, 0, 1]].concat()),
    ];
    for (what, bytes) in hostile {
        let mut s = connect(&broker.addr);
        s.write_all(&bytes).unwrap();
        assert!(closed(&mut s), "{what}: the connection stays open");
    }
    // The broker still serves both protocols.
    let mut s = connect(&broker.addr);
    s.write_all(&request(18, 3, 7, true, &[1, 1, 0])).unwrap();
    assert!(response(&mut s).is_some_and(|r| r[..4] == 7i32.to_be_bytes()), "ApiVersions v3");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = broker.client().await;
        Admin::new(&client).list_topics().await.expect("a native client is served");
    });
}

#[test]
fn with_kafka_disabled_a_kafka_client_gets_no_kafka_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), None, &["--kafka-enabled", "false"]);
    let mut s = connect(&broker.addr);
    s.write_all(&request(18, 0, 1, false, &[])).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.len() < 6 || &got[4..6] == b"WE", "a Kafka answer with Kafka off: {got:?}");
}

/// The pinned Python Kafka clients (`ci/kafka-venv` makes their venv).
fn kafka_python() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(format!("{root}/ci/kafka-venv")).output().expect("run ci/kafka-venv");
    assert!(out.status.success(), "ci/kafka-venv failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn confluent_kafka_and_kafka_python_create_list_and_delete_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka/admin.py");
    let out = Command::new(kafka_python()).args([script, &broker.addr]).output().expect("run the admin script");
    assert!(out.status.success(), "the admin script failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["create"]["ck-orders"], "ok", "{r}");
    assert_eq!(r["create"]["ck-bad"], "INVALID_CONFIG", "an unsupported config: {r}");
    assert_eq!(r["create"]["../x"], "TOPIC_EXCEPTION", "a name that would be a path: {r}");
    assert_eq!((r["listed"].clone(), r["partitions"].clone()), (serde_json::json!(["ck-orders"]), serde_json::json!(3)), "{r}");
    assert!(r["cluster_id"].as_str().is_some_and(|c| c.starts_with("weir-") && c != "weir-0000000000000000"), "{r}");
    assert_eq!(r["again"], "TOPIC_ALREADY_EXISTS", "{r}");
    assert_eq!(
        (r["dry"].clone(), r["listed_after_dry"].clone()),
        (serde_json::json!("ok"), serde_json::json!(["ck-orders"])),
        "validate_only creates nothing: {r}"
    );
    assert_eq!(
        (r["delete"].clone(), r["delete_missing"].clone()),
        (serde_json::json!("ok"), serde_json::json!("UNKNOWN_TOPIC_OR_PART")),
        "{r}"
    );
    assert_eq!(r["listed_after_delete"], serde_json::json!([]), "{r}");
    assert_eq!(
        (r["kp_listed"].clone(), r["kp_listed_after_delete"].clone()),
        (serde_json::json!(["kp-jobs"]), serde_json::json!([])),
        "{r}"
    );
    // A topic created through Kafka is a native topic.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = broker.client().await;
        assert!(Admin::new(&client).list_topics().await.unwrap().is_empty());
    });
}

/// Metadata v1 asking for topic `name` (versions before 4 always allow
/// auto-creation), or v4 with `allow` saying whether it may.
fn metadata_request(name: &str, version: i16, allow: bool) -> Vec<u8> {
    let mut body = 1i32.to_be_bytes().to_vec();
    body.extend_from_slice(&(name.len() as i16).to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    if version >= 4 {
        body.push(u8::from(allow));
    }
    request(3, version, 1, false, &body)
}

#[tokio::test]
async fn a_metadata_request_that_allows_it_creates_the_topics_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), None, &["--default-partitions", "2"]);
    let client = broker.client().await;
    let names =
        || async { Admin::new(&client).list_topics().await.unwrap().into_iter().map(|t| (t.name, t.partitions)).collect::<Vec<_>>() };
    for (topic, version, allow) in [("not-allowed", 4, false), ("auto-v1", 1, true), ("auto-v4", 4, true), ("../bad", 1, true)] {
        let mut s = connect(&broker.addr);
        s.write_all(&metadata_request(topic, version, allow)).unwrap();
        assert!(response(&mut s).is_some(), "{topic}: an answer");
    }
    assert_eq!(names().await, vec![("auto-v1".to_owned(), 2), ("auto-v4".to_owned(), 2)]);
    drop(broker);
    let dir = tempfile::tempdir().unwrap();
    let off = Broker::start_with(dir.path(), None, &["--auto-create-topics", "false"]);
    let mut s = connect(&off.addr);
    s.write_all(&metadata_request("auto-v1", 1, true)).unwrap();
    assert!(response(&mut s).is_some());
    let client = off.client().await;
    assert!(Admin::new(&client).list_topics().await.unwrap().is_empty(), "auto_create_topics = false");
}
