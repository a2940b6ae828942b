//! Integrity against a careless operator and lost files, with the real
//! binary: one broker per data directory, metadata loss that never deletes
//! data or reuses producer ids, and recovery that reports damage to
//! acknowledged data instead of cutting it (then `weir accept-loss`).

mod common;

use common::Broker;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use weir_client::*;

async fn create(client: &Client, name: &str, partitions: u32) {
    Admin::new(client)
        .create_topic(CreateTopicRequest { name: name.into(), partitions, replicas: 1, config: Default::default() })
        .await
        .unwrap();
}

async fn produce(client: &Client, topic: &str, values: impl IntoIterator<Item = String>) -> Vec<u64> {
    let producer = Producer::new(client);
    let msgs = values.into_iter().map(|v| ProduceMessage::new(topic, v).with_partition(0)).collect();
    let offsets = producer.send_batch(msgs).await.unwrap().into_iter().map(|r| r.offset).collect();
    producer.close().await;
    offsets
}

async fn values(client: &Client, topic: &str) -> Vec<(u64, String)> {
    let consumer = Consumer::new(client);
    let end = consumer.offset_for(topic, 0, StartOffset::Latest).await.unwrap();
    let mut offset = consumer.offset_for(topic, 0, StartOffset::Earliest).await.unwrap();
    let mut out = Vec::new();
    while offset < end {
        let r = consumer.fetch_from(topic, 0, offset).await.unwrap();
        out.extend(r.messages.iter().map(|m| (m.offset, String::from_utf8_lossy(&m.value).into_owned())));
        offset = r.next_offset;
    }
    out
}

fn weir(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run weir");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_second_broker_on_one_data_dir_exits_naming_the_dir_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Broker::start(dir.path(), None);
    let started = std::time::Instant::now();
    let (code, _, err) = weir(dir.path(), &[]);
    assert_ne!(code, 0, "the second broker must not serve");
    assert!(started.elapsed() < Duration::from_secs(10), "it exits at once");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    assert!(!err.contains("stack backtrace"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_topic_json_keeps_the_data_and_a_lost_boot_counter_reuses_no_producer_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "kept", 1).await;
    create(&client, "ids", 1).await;
    produce(&client, "kept", (0..5).map(|i| format!("k{i}"))).await;
    produce(&client, "ids", ["first".to_owned()]).await;
    assert_eq!(broker.terminate(), Some(0));

    std::fs::remove_file(dir.path().join("topics/kept/topic.json")).unwrap();
    std::fs::remove_file(dir.path().join("meta/boot")).unwrap();
    broker.restart();
    let client = broker.client().await;
    let names: Vec<String> = Admin::new(&client).list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["ids"], "a topic without metadata is not served");
    let quarantined: Vec<_> = std::fs::read_dir(dir.path().join("quarantine")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(quarantined.len(), 1, "moved aside, not deleted");
    assert!(quarantined[0].join("0/00000000000000000000.log").metadata().unwrap().len() > 0, "the data is still there");

    // A new producer after the lost counter must not get the old one's id:
    // its first batch (sequence 0) would be answered as a duplicate of "first".
    produce(&client, "ids", ["second".to_owned()]).await;
    let stored: Vec<String> = values(&client, "ids").await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(stored, vec!["first", "second"]);

    // Nor a new topic an existing topic's id (found by a hostile test).
    create(&client, "after", 1).await;
    let id = |t: &str| topic_id(dir.path(), t);
    assert_ne!(id("after"), id("ids"), "topic ids are never handed out twice");
    assert_eq!(broker.terminate(), Some(0));
    std::fs::remove_file(dir.path().join("meta/boot")).unwrap();
    broker.restart();
    let client = broker.client().await;
    create(&client, "later", 1).await;
    assert!(id("later") != id("after") && id("later") != id("ids"));
}

/// The id recorded in a topic's `topic.json`.
fn topic_id(data_dir: &Path, topic: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join(format!("topics/{topic}/topic.json"))).unwrap()).unwrap();
    json["id"].as_u64().unwrap()
}

/// Found by a hostile test: with no producer ids in the data, a lost boot
/// counter let a new topic take an existing topic's id.
#[tokio::test]
async fn a_lost_boot_counter_reuses_no_topic_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    create(&broker.client().await, "x", 1).await;
    assert_eq!(broker.terminate(), Some(0));
    std::fs::remove_file(dir.path().join("meta/boot")).unwrap();
    broker.restart();
    create(&broker.client().await, "y", 1).await;
    let id = |t: &str| topic_id(dir.path(), t);
    assert_ne!(id("x"), id("y"));
}

/// How a segment file is damaged after a clean shutdown.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One flipped bit in the active segment.
    Flip,
    /// The active segment emptied.
    Empty,
    /// The active segment deleted.
    Delete,
    /// A sealed segment deleted: a hole in the log.
    DeleteSealed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_acknowledged_data_takes_the_partition_offline_until_the_loss_is_accepted() {
    for damage in [Damage::Flip, Damage::Empty, Damage::Delete, Damage::DeleteSealed] {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Broker::start_with(dir.path(), None, &["--segment-bytes", "4096"]);
        let client = broker.client().await;
        create(&client, "t", 1).await;
        for chunk in 0..20 {
            produce(&client, "t", (0..10).map(|i| format!("value-{chunk}-{i}-{}", "x".repeat(40)))).await;
        }
        assert_eq!(broker.terminate(), Some(0));
        let pdir = dir.path().join("topics/t/0");
        let mut logs: Vec<_> =
            std::fs::read_dir(&pdir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
        logs.sort();
        assert!(logs.len() >= 3, "{logs:?}");
        let active = logs.last().unwrap();
        match damage {
            Damage::Flip => {
                let mut bytes = std::fs::read(active).unwrap();
                bytes[60] ^= 0x01;
                std::fs::write(active, bytes).unwrap();
            }
            Damage::Empty => std::fs::write(active, b"").unwrap(),
            Damage::Delete => std::fs::remove_file(active).unwrap(),
            Damage::DeleteSealed => std::fs::remove_file(&logs[logs.len() - 2]).unwrap(),
        }
        broker.restart();
        let client = broker.client().await;
        let d = Admin::new(&client).describe_topic("t").await.unwrap();
        let why = d.partitions[0].offline.clone().unwrap_or_else(|| panic!("{damage:?}: the partition must be offline"));
        let range = if matches!(damage, Damage::DeleteSealed) { "missing" } else { "..200" };
        assert!(why.contains("accept-loss") && why.contains(range), "{damage:?}: {why}");
        let err = Producer::new(&client).send(ProduceMessage::new("t", "new").with_partition(0)).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::PartitionOffline), "{damage:?}: {err}");
        assert_eq!(Consumer::new(&client).fetch_from("t", 0, 0).await.unwrap().messages[0].offset, 0, "data before the damage is served");
        assert_eq!(broker.terminate(), Some(0));

        let (code, out, err) = weir(dir.path(), &["accept-loss", "t", "0"]);
        assert_eq!(code, 0, "{damage:?}: {err}");
        assert!(out.contains("continues at offset 200"), "{damage:?}: {out}");
        broker.restart();
        let client = broker.client().await;
        assert_eq!(Admin::new(&client).describe_topic("t").await.unwrap().partitions[0].offline, None);
        assert_eq!(produce(&client, "t", ["after".to_owned()]).await, vec![200], "{damage:?}: no acknowledged offset is reused");
        let stored = values(&client, "t").await;
        assert_eq!(stored.last().unwrap(), &(200, "after".to_owned()));
        assert!(stored.windows(2).all(|w| w[0].0 < w[1].0));
        let (code, _, err) = weir(dir.path(), &["accept-loss", "t", "0"]);
        assert!(code != 0 && err.contains("in use by another weir process"), "accept-loss refuses a running broker's data: {err}");
    }
}

/// A small tmpfs the test mounts (root only); unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.path().to_str().unwrap()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_prompt_storage_full_answer_and_reservations_shrink() {
    let Some(disk) = SmallDisk::mount("48m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut broker = Broker::start(&disk.0.path().join("data"), None);
    let client = broker.client().await;
    create(&client, "a", 1).await;
    create(&client, "b", 1).await;
    // The first partition reserves 32 MiB; the second must still take data.
    assert_eq!(produce(&client, "a", ["one".to_owned()]).await, vec![0]);
    assert_eq!(produce(&client, "b", ["one".to_owned()]).await, vec![0]);
    let producer = Producer::new(&client);
    let big = "x".repeat(1 << 20);
    let started = std::time::Instant::now();
    let err = loop {
        match producer.send(ProduceMessage::new("b", big.clone()).with_partition(0)).await {
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(60), "the disk never filled"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Some(ErrorCode::StorageFull), "{err}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    let failed_at = std::time::Instant::now();
    let err = producer.send(ProduceMessage::new("b", big.clone()).with_partition(0)).await.unwrap_err();
    assert!(failed_at.elapsed() < Duration::from_secs(5), "answered, not timed out: {err}");
    // Reads and small metadata requests keep working on a full disk.
    assert_eq!(values(&client, "a").await, vec![(0, "one".to_owned())]);
    // Space comes back (a topic is deleted): the partition takes writes
    // again without a restart, continuing its offsets.
    let before = values(&client, "b").await.len() as u64;
    Admin::new(&client).delete_topic("a").await.unwrap();
    let started = std::time::Instant::now();
    let offset = loop {
        match producer.send(ProduceMessage::new("b", "after".to_owned()).with_partition(0)).await {
            Ok(r) => break r.offset,
            Err(e) if e.code() == Some(ErrorCode::StorageFull) && started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("writes did not resume after space came back: {e}"),
        }
    };
    assert_eq!(offset, before, "offsets continue where the acknowledged ones end");
    assert_eq!(values(&client, "b").await.last().unwrap(), &(before, "after".to_owned()));
    assert_eq!(broker.terminate(), Some(0));
}

/// An ext4 image mounted on a loop device at a partition's directory, so a
/// test can freeze the file system under that one partition (root only).
struct FrozenFs {
    mount: std::path::PathBuf,
    frozen: bool,
}

impl FrozenFs {
    fn mount_at(dir: &Path, image: &Path) -> Option<FrozenFs> {
        let run = |cmd: &str, args: &[&str]| {
            Command::new(cmd).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        };
        let ok = run("truncate", &["-s", "64M", image.to_str()?])
            && run("mkfs.ext4", &["-q", "-F", image.to_str()?])
            && run("mount", &["-o", "loop", image.to_str()?, dir.to_str()?]);
        ok.then(|| FrozenFs { mount: dir.to_path_buf(), frozen: false })
    }

    fn freeze(&mut self, on: bool) {
        let flag = if on { "-f" } else { "-u" };
        assert!(Command::new("fsfreeze").arg(flag).arg(&self.mount).status().unwrap().success());
        self.frozen = on;
    }
}

impl Drop for FrozenFs {
    fn drop(&mut self) {
        if self.frozen {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// One stuck disk cannot stop the broker: with the file system under one
/// partition frozen, requests that touch no stuck file keep working, and
/// requests to the stuck partition are answered with an error in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_file_system_under_one_partition_stops_only_that_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    create(&client, "stuck", 1).await;
    create(&client, "fine", 1).await;
    produce(&client, "stuck", ["before".to_owned()]).await;
    assert_eq!(broker.terminate(), Some(0));
    // Move the partition onto its own file system.
    let part = dir.path().join("topics/stuck/0");
    let saved = dir.path().join("saved-0");
    std::fs::rename(&part, &saved).unwrap();
    std::fs::create_dir(&part).unwrap();
    let Some(mut fs) = FrozenFs::mount_at(&part, &dir.path().join("img")) else {
        eprintln!("skipped: cannot mount an ext4 image on a loop device here (needs root, mkfs.ext4, losetup)");
        return;
    };
    for entry in std::fs::read_dir(&saved).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), part.join(entry.file_name())).unwrap();
    }
    broker.restart();
    let client = broker.client().await;
    fs.freeze(true);

    let stuck = {
        // Its own connection: responses on one connection come back in
        // request order, so a healthy request queued behind the stuck one
        // would wait for its answer.
        let client = broker.client().await;
        tokio::spawn(async move {
            let config =
                ProducerConfig { request_timeout: Duration::from_secs(2), delivery_timeout: Duration::from_secs(4), ..Default::default() };
            let p = Producer::with_config(&client, config);
            let started = std::time::Instant::now();
            let r = p.send(ProduceMessage::new("stuck", "frozen").with_partition(0)).await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Everything else keeps working meanwhile.
    for i in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(produce(&client, "fine", [format!("m{i}")]).await, vec![i]);
        let names: Vec<String> = Admin::new(&client).list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, vec!["fine", "stuck"]);
        assert!(started.elapsed() < Duration::from_secs(3), "a request to a healthy partition took {:?}", started.elapsed());
    }
    assert_eq!(values(&client, "fine").await.len(), 20);
    let (result, took) = stuck.await.unwrap();
    let err = result.expect_err("a produce to the frozen partition cannot succeed");
    assert!(took < Duration::from_secs(15), "answered in time, took {took:?}: {err}");
    assert!(err.to_string().contains("slow or stuck") || err.to_string().contains("timed out"), "{err}");

    fs.freeze(false);
    // Thawed: the partition works again.
    let offsets = produce(&client, "stuck", ["after".to_owned()]).await;
    assert!(offsets[0] >= 1, "{offsets:?}");
    assert_eq!(broker.terminate(), Some(0));
}
