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
        ("Produce v2 (message format 1)", request(0, 2, 1, false, &[0; 16])),
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
    assert!(got.is_empty(), "a peer speaking Kafka with Kafka off is closed, not answered in Weir frames it would misread: {got:?}");
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
    assert!(
        out.status.success(),
        "the admin script failed ({}): stderr {} stdout {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
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

/// Creates `name` with `partitions` through a native client.
async fn create(broker: &Broker, name: &str, partitions: u32) {
    let client = broker.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: name.into(), partitions, replicas: 1, config: Default::default() })
        .await
        .expect("create");
}

#[test]
fn confluent_kafka_and_kafka_python_produce_and_read_back_at_the_offsets_they_were_told() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create(&broker, "keyed", 3));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka/produce_consume.py");
    let out = Command::new(kafka_python()).args([script, &broker.addr, "keyed", "single"]).output().expect("run the script");
    assert!(
        out.status.success(),
        "the script failed ({}): stderr {} stdout {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // confluent-kafka, idempotent, acks=all: every message acknowledged, the
    // offsets of each partition 0, 1, 2, ... in send order, a key always in
    // one partition; reading back finds each value at its reported offset.
    assert_eq!(r["ck_unflushed"], 0, "{r}");
    let reports = r["ck_reports"].as_array().unwrap();
    assert_eq!(reports.len(), 300);
    let mut at = std::collections::HashMap::new();
    let mut next = [0u64; 3];
    let mut key_partition = std::collections::HashMap::new();
    let mut sent: Vec<&serde_json::Value> = reports.iter().collect();
    sent.sort_by_key(|x| x["value"].as_str().unwrap()[3..].parse::<u32>().unwrap());
    for x in &sent {
        assert!(x["error"].is_null(), "{x}");
        let (p, o) = (x["partition"].as_u64().unwrap(), x["offset"].as_u64().unwrap());
        assert_eq!(o, next[p as usize], "partition {p}: offsets in send order without gaps: {x}");
        next[p as usize] += 1;
        assert_eq!(*key_partition.entry(x["key"].as_str().unwrap().to_owned()).or_insert(p), p, "a key stays in one partition");
        at.insert((p, o), x["value"].as_str().unwrap().to_owned());
    }
    let read = r["ck_read"].as_array().unwrap();
    assert_eq!(read.len(), 300, "{r}");
    for x in read {
        let (p, o) = (x["partition"].as_u64().unwrap(), x["offset"].as_u64().unwrap());
        assert_eq!(at.get(&(p, o)).map(String::as_str), x["value"].as_str(), "the record at {p}/{o}");
    }
    for (p, n) in next.iter().enumerate() {
        assert_eq!(r["ck_watermarks"][p.to_string()], serde_json::json!([0, n]), "{r}");
    }
    // kafka-python: acks=1 at offsets 0..50, then 20 acks=0 sends; all 70 read back in order.
    assert_eq!(r["kp_offsets"], serde_json::json!((0..50).collect::<Vec<_>>()), "{r}");
    let kp: Vec<(u64, String)> = serde_json::from_value(r["kp_read"].clone()).unwrap();
    let want: Vec<(u64, String)> = (0..50).map(|i| (i, format!("kp-{i}"))).chain((0..20).map(|i| (50 + i, format!("k0-{i}")))).collect();
    assert_eq!(kp, want);
    assert_eq!((r["kp_beginning"].clone(), r["kp_end"].clone()), (serde_json::json!(0), serde_json::json!(70)));
    // By timestamp: the first record at or after record 10's time; none after every record.
    assert!(r["kp_by_time"].as_u64().is_some_and(|o| o <= 10), "{r}");
    assert!(r["kp_after_all"].is_null(), "{r}");
}

#[test]
fn kcat_and_weirctl_read_what_the_other_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create(&broker, "both", 1));
    // weirctl is another crate's binary: built beside weir by a workspace build.
    let weirctl = std::path::Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weirctl");
    assert!(weirctl.exists(), "{} is missing: build the workspace's binaries (cargo build --bins)", weirctl.display());
    let produced = Command::new(&weirctl)
        .args(["--broker", &broker.addr, "produce", "both", "--message", "from-weir", "--key", "wk"])
        .output()
        .unwrap();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    let mut kcat_in = kcat().args(["-b", &broker.addr, "-t", "both", "-P", "-K:"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    kcat_in.stdin.take().unwrap().write_all(b"kk:from-kcat\n").unwrap();
    assert!(kcat_in.wait().unwrap().success());
    let read = kcat().args(["-b", &broker.addr, "-t", "both", "-C", "-e", "-f", "%o %k %s\n"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout), "0 wk from-weir\n1 kk from-kcat\n", "{}", String::from_utf8_lossy(&read.stderr));
    let read = Command::new(&weirctl).args(["--broker", &broker.addr, "--json", "consume", "both", "--count", "2"]).output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&read.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["value"], "from-kcat", "{lines:?}");
    assert_eq!(lines[1]["key"], "kk", "{lines:?}");
}

#[test]
fn confluent_kafka_and_kafka_python_groups_commit_resume_split_and_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create(&broker, "grouped", 4));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka/groups.py");
    let weirctl = std::path::Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weirctl");
    assert!(weirctl.exists(), "{} is missing: build the workspace's binaries (cargo build --bins)", weirctl.display());
    let out =
        Command::new(kafka_python()).args([script, &broker.addr, "grouped", weirctl.to_str().unwrap()]).output().expect("run the script");
    assert!(
        out.status.success(),
        "the script failed ({}): stderr {} stdout {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["unflushed"], 0, "{r}");
    assert!(r["poll_errors"].is_null(), "{r}");
    // The first member read 25 and committed them: the commits sit one past
    // the last record it read of each partition.
    let first: Vec<(u64, u64, String)> = serde_json::from_value(r["first"].clone()).unwrap();
    assert_eq!(first.len(), 25, "{r}");
    let mut next = [0u64; 4];
    for (p, o, _) in &first {
        next[*p as usize] = next[*p as usize].max(o + 1);
    }
    let committed: Vec<(u64, i64)> = serde_json::from_value(r["first_committed"].clone()).unwrap();
    for (p, o) in committed {
        let want = if next[p as usize] == 0 { -1001 } else { next[p as usize] as i64 };
        assert_eq!(o, want, "partition {p}'s commit: {r}");
    }
    // The second member resumed exactly there: together they read every
    // record once, and nothing more came.
    let second: Vec<(u64, u64, String)> = serde_json::from_value(r["second"].clone()).unwrap();
    for (p, o, _) in &second {
        assert!(*o >= next[*p as usize], "the second member re-read {p}/{o}, below the commit: {r}");
    }
    let mut all: Vec<String> = first.iter().chain(&second).map(|x| x.2.clone()).collect();
    all.sort();
    let mut want: Vec<String> = (0..60).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(all, want, "every record read once across the two members");
    assert_eq!(r["second_extra"], serde_json::json!([]), "{r}");
    // Two members split the four partitions; when one leaves the other has them all.
    assert_eq!(r["alone"], serde_json::json!([0, 1, 2, 3]), "{r}");
    let (a, b): (Vec<u64>, Vec<u64>) = serde_json::from_value(r["split"].clone()).unwrap();
    let mut union: Vec<u64> = a.iter().chain(&b).copied().collect();
    union.sort();
    assert!(!a.is_empty() && !b.is_empty() && union == vec![0, 1, 2, 3], "disjoint and complete: {r}");
    assert_eq!(r["after_leave"], serde_json::json!([0, 1, 2, 3]), "{r}");
    // weirctl saw the split: each member subscribed to the topic, holding its part.
    let w = &r["weirctl_split"];
    assert_eq!((w["state"].as_str(), w["assignor"].as_str()), (Some("Stable"), Some("range")), "{w}");
    let mut held: Vec<u64> = Vec::new();
    for m in w["members"].as_array().unwrap() {
        assert_eq!(m["topics"], serde_json::json!(["grouped"]), "{w}");
        held.extend(m["partitions"].as_array().unwrap().iter().map(|p| p["partition"].as_u64().unwrap()));
    }
    held.sort();
    assert_eq!(held, vec![0, 1, 2, 3], "{w}");
    // kafka-python: everything read once; a new member finds the commits at the end.
    assert_eq!((r["kp_seen"].clone(), r["kp_distinct"].clone()), (serde_json::json!(60), serde_json::json!(60)), "{r}");
    assert_eq!(r["kp_committed"], r["kp_end"], "{r}");
    assert_eq!(r["admin_offsets"], r["kp_end"], "{r}");
    for g in ["ck-group", "ck-split", "kp-group"] {
        assert!(r["listed"].as_array().unwrap().iter().any(|x| x == g), "{g} listed: {r}");
    }
    assert_eq!(r["described"], serde_json::json!([["ck-group", "Empty", "consumer", 0], ["kp-group", "Empty", "consumer", 0]]), "{r}");
    // Transactions are refused at once, non-retriably, saying so.
    let txn = r["txn"].as_str().unwrap();
    assert!(txn.contains("TRANSACTIONAL_ID_AUTHORIZATION_FAILED") || txn.contains("not supported"), "{r}");
    assert!(r["txn_seconds"].as_f64().unwrap() < 10.0, "{r}");
    // The groups are the broker's: weirctl shows the committed offsets.
    let described = Command::new(&weirctl).args(["--broker", &broker.addr, "group", "describe", "kp-group"]).output().unwrap();
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(described.contains("grouped"), "{described}");
    let listed = Command::new(&weirctl).args(["--broker", &broker.addr, "group", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("ck-split"), "{listed:?}");
}

/// kcat's balanced consumer (`-G`) reads a topic by group and commits; the
/// broker is killed with SIGKILL and restarted; the group resumes exactly
/// at its commits, reading only what was produced since.
#[test]
fn kcat_by_group_resumes_at_its_commits_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create(&broker, "kg", 3));
    let produce = |addr: &str, from: u32, to: u32| {
        let mut p = kcat().args(["-b", addr, "-t", "kg", "-P", "-K:"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        let lines: String = (from..to).map(|i| format!("k{i}:m{i}\n")).collect();
        p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        assert!(p.wait().unwrap().success());
    };
    let consume = |addr: &str| {
        let out = kcat()
            .args(["-b", addr, "-G", "kcat-group", "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", "%s\n", "kg"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        got.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
        got
    };
    produce(&broker.addr, 0, 30);
    assert_eq!(consume(&broker.addr), (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>());
    broker.kill9();
    broker.restart();
    produce(&broker.addr, 30, 40);
    assert_eq!(consume(&broker.addr), (30..40).map(|i| format!("m{i}")).collect::<Vec<_>>(), "resumed at the commits");
}

/// Batches compressed with each of Kafka's codecs by kcat (librdkafka) are
/// stored as sent and read back by kcat and by weirctl (the native SDK).
#[test]
fn kcat_batches_in_every_codec_are_read_back_by_kcat_and_weirctl() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create(&broker, "codecs", 1));
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let mut p = kcat()
            .args(["-b", &broker.addr, "-t", "codecs", "-P", "-z", codec, "-X", "linger.ms=50"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines: String = (0..100).map(|i| format!("{codec} message {i} {}\n", "compressible ".repeat(8))).collect();
        p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "{codec}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let want: Vec<String> =
        codecs.iter().flat_map(|c| (0..100).map(move |i| format!("{c} message {i} {}", "compressible ".repeat(8)))).collect();
    let read = kcat().args(["-b", &broker.addr, "-t", "codecs", "-C", "-e", "-q"]).output().unwrap();
    let got: Vec<String> = String::from_utf8_lossy(&read.stdout).lines().map(str::to_owned).collect();
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&read.stderr));
    let weirctl = std::path::Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weirctl");
    let read = Command::new(&weirctl).args(["--broker", &broker.addr, "--json", "consume", "codecs", "--count", "400"]).output().unwrap();
    let got: Vec<String> = String::from_utf8_lossy(&read.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&read.stderr));
    // The batches are stored compressed: the log holds far fewer bytes than the values.
    let values: usize = want.iter().map(String::len).sum();
    let described = Command::new(&weirctl).args(["--broker", &broker.addr, "--json", "topic", "describe", "codecs"]).output().unwrap();
    let described: serde_json::Value = serde_json::from_slice(&described.stdout).unwrap();
    let logged = described["partitions"][0]["size_bytes"].as_u64().unwrap();
    assert!(logged * 2 < values as u64, "the log holds {logged} bytes for {values} bytes of values");
}
