//! Consumer groups against the real `weir` binary: three members share six
//! partitions; one dies without leaving; the others take its partitions
//! after its session times out, and every message is processed at least
//! once with none skipped. Committed offsets survive a broker restart.

mod common;

use common::Broker;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_client::*;

fn config(name: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        group_id: "workers".into(),
        consumer_id: name.into(),
        topics: vec!["jobs".into()],
        session_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        max_wait: Duration::from_millis(100),
        ..Default::default()
    }
}

type Seen = Arc<Mutex<Vec<(String, u32, u64, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_take_over_a_dead_members_partitions_and_nothing_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 6, replicas: 1, config: Default::default() })
        .await
        .unwrap();
    let producer = Producer::new(&client);
    let batch =
        |from: u32, to: u32| (from..to).map(|i| ProduceMessage::new("jobs", format!("m{i}")).with_partition(i % 6)).collect::<Vec<_>>();
    producer.send_batch(batch(0, 600)).await.unwrap();

    let seen: Seen = Arc::default();
    let distinct = |seen: &Seen| seen.lock().unwrap().iter().map(|s| s.3.clone()).collect::<BTreeSet<_>>().len();
    // Members run concurrently, as separate consumers would. "c" processes
    // a while with its fair share, then dies without leaving: only its
    // session timeout tells the group.
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        let seen = seen.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut gc = GroupConsumer::new(&client, config(name));
            gc.join_group().await.unwrap();
            let mut taken = BTreeSet::new();
            let mut mine = 0;
            let mut polls_with_two = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            while tokio::time::Instant::now() < deadline {
                for m in gc.poll().await.unwrap() {
                    seen.lock().unwrap().push((name.to_owned(), m.partition, m.offset, String::from_utf8_lossy(&m.value).into_owned()));
                    taken.insert(m.partition);
                    mine += 1;
                }
                // c dies holding two partitions, after processing some of
                // them, or after a while if the first member to join had
                // already processed everything (then only the later batch
                // shows the takeover).
                if name == "c" && gc.assignment().len() == 2 {
                    polls_with_two += 1;
                }
                if name == "c" && gc.assignment().len() == 2 && (mine >= 20 || polls_with_two >= 20) {
                    let (assignment, generation) = (gc.assignment(), gc.generation());
                    drop(gc);
                    return (taken, assignment, generation);
                }
                if name != "c" && distinct(&seen) >= 630 {
                    break;
                }
            }
            let (assignment, generation) = (gc.assignment(), gc.generation());
            gc.leave_group().await.unwrap();
            (taken, assignment, generation)
        }));
    }
    let doomed = tasks.pop().unwrap().await.unwrap();
    let orphaned: BTreeSet<u32> = doomed.1.iter().map(|(_, p)| *p).collect();
    producer.send_batch(batch(600, 630)).await.unwrap();
    let mut taken = BTreeSet::new();
    for t in tasks {
        let (partitions, _, generation) = t.await.unwrap();
        if generation <= doomed.2 {
            let d = Admin::new(&client).describe_group("workers").await;
            let seen = seen.lock().unwrap().len();
            panic!(
                "the group did not rebalance after c died (c's generation {}, this member's {generation}; {seen} messages seen): {d:#?}",
                doomed.2
            );
        }
        taken.extend(partitions);
    }
    for p in &orphaned {
        assert!(taken.contains(p), "partition {p} of the dead member was taken over");
    }
    let seen = seen.lock().unwrap().clone();
    let values: BTreeSet<&str> = seen.iter().map(|s| s.3.as_str()).collect();
    for i in 0..630 {
        assert!(values.contains(format!("m{i}").as_str()), "m{i} was never processed");
    }
    // No offset skipped: per partition, the offsets processed cover 0..end.
    let mut by_partition: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (_, p, o, _) in &seen {
        by_partition.entry(*p).or_default().insert(*o);
    }
    for (p, offsets) in &by_partition {
        assert_eq!(offsets.len() as u64, offsets.iter().max().unwrap() + 1, "partition {p} skipped an offset");
    }

    // Committed offsets are durable across a restart.
    let before = Admin::new(&client).describe_group("workers").await.unwrap();
    assert_eq!(before.state, "Empty");
    assert_eq!(before.offsets.iter().map(|o| o.committed).sum::<u64>(), 630, "everything processed is committed");
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let after = Admin::new(&client).describe_group("workers").await.unwrap();
    assert_eq!(after.offsets, before.offsets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_members_cannot_commit_and_resets_need_an_empty_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 2, replicas: 1, config: Default::default() })
        .await
        .unwrap();
    // Resets may only move to offsets that exist.
    Producer::new(&client)
        .send_batch((0..10).map(|i| ProduceMessage::new("jobs", format!("m{i}")).with_partition(0)).collect())
        .await
        .unwrap();
    let mut a = GroupConsumer::new(&client, config("a"));
    a.join_group().await.unwrap();
    let old_generation = a.generation();
    a.commit_offset("jobs", 0, 0).await.unwrap();
    // A second member's join starts a new generation; a rejoins at its next poll.
    let mut b = GroupConsumer::new(&client, GroupConsumerConfig { auto_commit: false, ..config("b") });
    let joining = tokio::spawn(async move {
        b.join_group().await.unwrap();
        b
    });
    let mut b = None;
    for _ in 0..100 {
        a.poll().await.unwrap();
        if joining.is_finished() {
            b = Some(joining.await.unwrap());
            break;
        }
    }
    let b = b.expect("b joined while a kept polling");
    assert!(a.generation() > old_generation);
    assert_eq!(a.assignment().len() + b.assignment().len(), 2, "two partitions, two members, one owner each");
    // A commit carrying the old generation is refused.
    let stale = weir_net::Request::OffsetCommit(weir_net::message::OffsetCommitRequest {
        group: "workers".into(),
        member: Some((a.member_id().unwrap(), old_generation)),
        offsets: vec![weir_net::message::OffsetToCommit { topic: "jobs".into(), partition: 0, offset: 9, metadata: String::new() }],
    });
    let err = client.request_once(&stale).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IllegalGeneration), "{err}");
    let admin = Admin::new(&client);
    let err = admin.set_group_offsets("workers", vec![("jobs".into(), 0, 5)]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::GroupNotEmpty));
    a.leave_group().await.unwrap();
    b.leave_group().await.unwrap();
    admin.set_group_offsets("workers", vec![("jobs".into(), 0, 5)]).await.unwrap();
    let d = admin.describe_group("workers").await.unwrap();
    assert_eq!(d.offsets.iter().find(|o| o.partition == 0).unwrap().committed, 5);
    admin.delete_group("workers").await.unwrap();
    assert!(admin.list_groups().await.unwrap().is_empty());
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_log_is_compacted_and_keeps_the_latest_commits() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("weir.toml");
    std::fs::write(&conf, "offsets_compact_bytes = 8192\npreallocate_bytes = 0\n").unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start_with(&data, None, &["--config", conf.to_str().unwrap()]);
    let client = broker.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 4, replicas: 1, config: Default::default() })
        .await
        .unwrap();
    let mut gc = GroupConsumer::new(&client, GroupConsumerConfig { auto_commit: false, ..config("a") });
    gc.join_group().await.unwrap();
    for i in 1..=1500u64 {
        gc.commit_offset("jobs", (i % 4) as u32, i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // a few coordinator ticks
    let offsets_dir = data.join("internal/offsets");
    let size = dir_bytes(&offsets_dir);
    // 1,500 commits of ~100 bytes each would be ~150 KB uncompacted.
    assert!(size < 40_000, "offsets log not compacted: {size} bytes");
    gc.leave_group().await.unwrap();
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let d = Admin::new(&client).describe_group("workers").await.unwrap();
    let committed: BTreeMap<u32, u64> = d.offsets.iter().map(|o| (o.partition, o.committed)).collect();
    assert_eq!(committed, BTreeMap::from([(0, 1500), (1, 1497), (2, 1498), (3, 1499)]));
}

/// A committed offset that retention deleted applies the member's
/// `offset_reset` (earliest here), instead of failing every start with
/// OffsetOutOfRange; an operator's reset past the end is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_offset_below_the_log_start_resets_and_resets_past_the_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), None, &["--retention-check-interval-ms", "100"]);
    let client = broker.client().await;
    let config = TopicConfig { segment_bytes: Some(4096), retention_bytes: Some(4096), retention_ms: None };
    Admin::new(&client).create_topic(CreateTopicRequest { name: "old".into(), partitions: 1, replicas: 1, config }).await.unwrap();
    let admin = Admin::new(&client);
    admin.set_group_offsets("late", vec![("old".into(), 0, 0)]).await.unwrap();
    let err = admin.set_group_offsets("late", vec![("old".into(), 0, 5)]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange), "{err}");
    let producer = Producer::new(&client);
    // Small batches, so the 4 KiB segments roll and retention has sealed ones to delete.
    for chunk in 0..40 {
        let msgs = (0..10).map(|i| ProduceMessage::new("old", format!("{:0>100}", chunk * 10 + i)).with_partition(0)).collect();
        producer.send_batch(msgs).await.unwrap();
    }
    let consumer = Consumer::new(&client);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let start = loop {
        let start = consumer.offset_for("old", 0, StartOffset::Earliest).await.unwrap();
        if start > 0 {
            break start;
        }
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut gc = GroupConsumer::new(
        &client,
        GroupConsumerConfig { group_id: "late".into(), topics: vec!["old".into()], offset_reset: OffsetReset::Earliest, ..config_for("m") },
    );
    gc.join_group().await.unwrap();
    let mut first = None;
    while first.is_none() {
        first = gc.poll().await.expect("an out-of-range position resets instead of failing").first().map(|m| m.offset);
    }
    assert!(first.unwrap() >= start, "resumed at the log start {start}, got {first:?}");
    gc.leave_group().await.unwrap();
    let err = Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "OLD".into(), partitions: 1, replicas: 1, config: Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicAlreadyExists), "names differing only in case collide on some file systems: {err}");
}

fn config_for(name: &str) -> GroupConsumerConfig {
    GroupConsumerConfig { max_wait: Duration::from_millis(100), ..config(name) }
}

/// Group deletion, a deleted topic's offsets and offsets expiry each go
/// through the offsets log like a commit: they survive a restart, and
/// nothing else is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_expiries_of_offsets_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    let admin = Admin::new(&client);
    for t in ["jobs", "gone"] {
        admin.create_topic(CreateTopicRequest { name: t.into(), partitions: 1, replicas: 1, config: Default::default() }).await.unwrap();
    }
    Producer::new(&client)
        .send_batch((0..10).map(|i| ProduceMessage::new("jobs", format!("m{i}")).with_partition(0)).collect())
        .await
        .unwrap();
    Producer::new(&client).send(ProduceMessage::new("gone", "x").with_partition(0)).await.unwrap();
    admin.set_group_offsets("deleted", vec![("jobs".into(), 0, 3)]).await.unwrap();
    admin.set_group_offsets("kept", vec![("jobs".into(), 0, 7), ("gone".into(), 0, 1)]).await.unwrap();
    admin.delete_group("deleted").await.unwrap();
    admin.delete_topic("gone").await.unwrap();
    let offsets = |d: &weir_net::message::DescribeGroupResponse| -> Vec<(String, u64)> {
        d.offsets.iter().map(|o| (o.topic.clone(), o.committed)).collect()
    };
    assert_eq!(offsets(&admin.describe_group("kept").await.unwrap()), vec![("jobs".to_owned(), 7)]);
    assert_eq!(broker.terminate(), Some(0));

    // After a restart, with offsets of empty groups expiring after 1 s.
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "offsets_retention_ms = 1000\n").unwrap();
    let mut broker = Broker::start_with(dir.path(), None, &["--config", config.to_str().unwrap()]);
    let client = broker.client().await;
    let admin = Admin::new(&client);
    let groups: Vec<String> = admin.list_groups().await.unwrap().into_iter().map(|g| g.group).collect();
    assert!(!groups.contains(&"deleted".to_owned()), "the deletion was durable: {groups:?}");
    assert_eq!(
        offsets(&admin.describe_group("kept").await.unwrap()),
        vec![("jobs".to_owned(), 7)],
        "the deleted topic's offset stays gone"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !admin.describe_group("kept").await.map(|d| d.offsets.is_empty()).unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "offsets never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(broker.terminate(), Some(0));
    broker.restart();
    let client = broker.client().await;
    let kept = Admin::new(&client).describe_group("kept").await.map(|d| offsets(&d)).unwrap_or_default();
    assert!(kept.is_empty(), "the expiry was durable: {kept:?}");
}

/// A broker restart forgets a group that has no offsets: its members hear
/// `UnknownGroup` and join again, even one that holds no partition and so
/// never commits (found by the simulation, seed 615).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_rejoin_a_group_the_restarted_broker_forgot() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    Admin::new(&client)
        .create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 1, replicas: 1, config: Default::default() })
        .await
        .unwrap();
    let mut idle = GroupConsumer::new(&client, GroupConsumerConfig { auto_commit: false, ..config("idle") });
    idle.join_group().await.unwrap();
    let before = idle.generation();
    broker.kill9();
    broker.restart();
    // The client reconnects on its own; the member notices at a heartbeat.
    let started = std::time::Instant::now();
    loop {
        idle.poll().await.unwrap_or_default();
        if idle.generation() != before && idle.member_id().is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the member never joined the forgotten group again");
    }
    assert_eq!(idle.assignment(), vec![("jobs".to_owned(), 0)], "alone again, it takes the partition");
}

/// Partitions added to a topic serve at once, a member of a group on the
/// topic is rebalanced onto them, and the count survives a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_takes_partitions_added_to_its_topic_and_the_count_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), None);
    let client = broker.client().await;
    let admin = Admin::new(&client);
    admin.create_topic(CreateTopicRequest { name: "jobs".into(), partitions: 2, replicas: 1, config: Default::default() }).await.unwrap();
    let producer = Producer::new(&client);
    producer.send_batch((0..20).map(|i| ProduceMessage::new("jobs", format!("m{i}")).with_partition(i % 2)).collect()).await.unwrap();
    let mut member = GroupConsumer::new(&client, config("a"));
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 20 {
        seen.extend(member.poll().await.unwrap().into_iter().map(|m| String::from_utf8_lossy(&m.value).into_owned()));
        assert!(tokio::time::Instant::now() < deadline, "saw {} of 20", seen.len());
    }
    assert_eq!(member.assignment().len(), 2);

    assert_eq!(admin.add_partitions("jobs", 2).await.unwrap(), 4);
    let refused = admin.create_partitions("jobs", 4).await.unwrap_err();
    assert_eq!(refused.code(), Some(weir_net::ErrorCode::InvalidPartitions), "{refused}");
    assert!(refused.to_string().contains("can only grow"), "{refused}");
    producer.send_batch((20..40).map(|i| ProduceMessage::new("jobs", format!("m{i}")).with_partition(i % 4)).collect()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 40 {
        seen.extend(member.poll().await.unwrap().into_iter().map(|m| String::from_utf8_lossy(&m.value).into_owned()));
        assert!(tokio::time::Instant::now() < deadline, "saw {} of 40 after the grow: {:?}", seen.len(), member.assignment());
    }
    assert_eq!(member.assignment().len(), 4, "the member was rebalanced onto the new partitions");
    member.commit().await.unwrap();
    member.leave_group().await.unwrap();

    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let d = Admin::new(&client).describe_topic("jobs").await.unwrap();
    assert_eq!(d.partitions.len(), 4, "the grown count is durable");
    let values: Vec<String> =
        common::read_all(&client, "jobs", 3).await.iter().map(|m| String::from_utf8_lossy(&m.value).into_owned()).collect();
    assert_eq!(values, ["m23", "m27", "m31", "m35", "m39"]);
}
