//! A three-node group over real loopback TCP and real files: replication,
//! identical logs, failover to a new leader, and a restarted node catching up.

use super::*;
use crate::disk::RealDisk;
use weir_core::batch::{BatchBuilder, ProducerStamp};
use weir_core::log::LogConfig;

const FAST: Timing = Timing { heartbeat_ms: 50, election_min_ms: 300, election_max_ms: 600 };

fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    b.push(1, None, Some(value.as_bytes()), &[]);
    b.finish()
}

struct Member {
    node: Arc<RaftNode>,
    group: Arc<Group>,
    stop: crate::tasks::Shutdown,
}

async fn start(id: u64, dir: &std::path::Path, listener: tokio::net::TcpListener, addrs: &BTreeMap<u64, String>) -> Member {
    start_with(id, dir, listener, addrs, LogConfig::default()).await
}

async fn start_with(
    id: u64,
    dir: &std::path::Path,
    listener: tokio::net::TcpListener,
    addrs: &BTreeMap<u64, String>,
    config: LogConfig,
) -> Member {
    let (stop, rx) = crate::tasks::Shutdown::new();
    let node = RaftNode::new(id, FAST, rx.clone());
    node.serve(listener, rx);
    for (n, a) in addrs {
        node.set_address(*n, a.clone());
    }
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::default());
    let (log, _) = PartitionLog::open(disk.clone(), &dir.join(format!("n{id}")), config, crate::clock::now()).unwrap();
    let group = node.open_group(7, log, disk).await.unwrap();
    Member { node, group, stop }
}

/// Three members of group 7 on loopback, each with its own log under `dir`
/// (not bootstrapped yet), and their addresses.
async fn start_three(dir: &std::path::Path, config: LogConfig) -> (Vec<Option<Member>>, BTreeMap<u64, String>) {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    let mut members = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        members.push(Some(start_with(i as u64 + 1, dir, l, &addrs, config.clone()).await));
    }
    (members, addrs)
}

/// The index of the member every live member agrees leads (node ids are
/// indexes + 1): right after a bootstrap the first node to win may be
/// deposed by a candidate of a later term, and a test proposing to it
/// then got NotLeader (seen under ci/check's load).
async fn leader_of(members: &[Option<Member>]) -> usize {
    for _ in 0..200 {
        let live = || members.iter().flatten();
        if let Some(i) = members.iter().position(|m| m.as_ref().is_some_and(|m| m.group.status().is_leader))
            && live().all(|m| m.group.status().leader == Some(i as u64 + 1))
        {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader elected");
}

async fn stored(m: &Member) -> Vec<(u64, u64, Bytes)> {
    let log = m.group.log().lock().await;
    let last = log.last_log_id().map(|l| l.index).unwrap_or(0);
    log.entries(1..last + 1, usize::MAX).unwrap().into_iter().map(|e| (e.log_id.index, e.base_offset, e.batches)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut members, addrs) = start_three(dir.path(), LogConfig::default()).await;
    for m in members.iter().flatten() {
        m.group.bootstrap(addrs.clone()).await.unwrap();
    }
    let leader = leader_of(&members).await;
    let mut next = 0;
    for i in 0..20 {
        let a = members[leader].as_ref().unwrap().group.propose(vec![batch(&format!("a{i}")), batch(&format!("b{i}"))]).await.unwrap();
        assert_eq!(a, Applied { base_offset: next, next_offset: next + 2 });
        next += 2;
    }
    // A proposal the log would refuse is refused before it reaches the
    // group (it would stop it), and the group goes on.
    let g = &members[leader].as_ref().unwrap().group;
    assert!(matches!(g.propose(vec![]).await, Err(ProposeError::Refused { .. })));
    let huge = Bytes::from(vec![0u8; LogConfig::default().batch_bytes_max + 1]);
    assert!(matches!(g.propose(vec![huge]).await, Err(ProposeError::Refused { .. })));
    assert_eq!(g.propose(vec![batch("still")]).await.unwrap().base_offset, next);
    next += 1;
    // A follower refuses with the leader's id.
    let follower = (leader + 1) % 3;
    let err = members[follower].as_ref().unwrap().group.propose(vec![batch("x")]).await.unwrap_err();
    assert_eq!(err, ProposeError::NotLeader { group: 7, leader: Some(leader as u64 + 1) });
    assert_eq!(err.to_wire().code(), ErrorCode::NotLeader);

    // Kill the leader: another is elected and commits after the old entries.
    let old = members[leader].take().unwrap();
    old.stop.trigger();
    old.node.close_group(&old.group).await;
    let old_term = old.group.status().term;
    drop(old);
    let leader2 = leader_of(&members).await;
    assert_ne!(leader2, leader);
    let g = &members[leader2].as_ref().unwrap().group;
    assert!(g.status().term > old_term);
    let a = g.propose(vec![batch("after")]).await.unwrap();
    assert_eq!(a.base_offset, next, "offsets stay dense across the failover");
    next += 1;

    // The old leader comes back on its data and catches up.
    let l = tokio::net::TcpListener::bind(&addrs[&(leader as u64 + 1)]).await.unwrap();
    members[leader] = Some(start(leader as u64 + 1, dir.path(), l, &addrs).await);
    let back = members[leader].as_ref().unwrap();
    let mut hw = back.group.high_watermark();
    tokio::time::timeout(Duration::from_secs(10), hw.wait_for(|h| *h >= next)).await.expect("caught up").unwrap();
    let reference = stored(members[leader2].as_ref().unwrap()).await;
    for m in members.iter().flatten() {
        let mine = stored(m).await;
        assert_eq!(mine.len(), reference.len());
        for (a, b) in mine.iter().zip(&reference) {
            assert_eq!((a.0, a.1), (b.0, b.1));
            assert_eq!(a.2, b.2, "entry {} differs between replicas", a.0);
        }
    }
    for m in members.iter().flatten() {
        m.stop.trigger();
        m.node.close_group(&m.group).await;
    }
}

/// The entries a replica holds after its purged point, with where each
/// starts, and the offset its log starts at.
async fn retained(m: &Member) -> (u64, Vec<(u64, u64, Bytes)>) {
    let log = m.group.log().lock().await;
    let first = log.purged_log_id().map_or(1, |p| p.index + 1);
    let last = log.last_log_id().map(|l| l.index).unwrap_or(0);
    let entries = log.entries(first..last + 1, usize::MAX).unwrap();
    (log.log_start_offset(), entries.into_iter().map(|e| (e.log_id.index, e.base_offset, e.batches)).collect())
}

/// A follower down while the leader's retention deletes what it lacks gets
/// a snapshot of only what was deleted, then every entry the leader still
/// holds: its log starts where the leader's does, not at the leader's high
/// watermark (which would lose retained records were it to lead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_receives_the_whole_retained_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_bytes_max: 2048, ..LogConfig::default() };
    let (mut members, addrs) = start_three(dir.path(), config.clone()).await;
    for m in members.iter().flatten() {
        m.group.bootstrap(addrs.clone()).await.unwrap();
    }
    let leader = leader_of(&members).await;
    let value = "v".repeat(100);
    let mut next = 0;
    let propose = |members: &Vec<Option<Member>>, i: u64| {
        let g = members[leader].as_ref().unwrap().group.clone();
        let b = batch(&format!("{i} {value}"));
        async move { g.propose(vec![b]).await.unwrap() }
    };
    for i in 0..30 {
        assert_eq!(propose(&members, i).await.base_offset, next);
        next += 1;
    }
    let behind = (leader + 1) % 3;
    let gone = members[behind].take().unwrap();
    gone.stop.trigger();
    gone.node.close_group(&gone.group).await;
    drop(gone);
    for i in 30..90 {
        assert_eq!(propose(&members, i).await.base_offset, next);
        next += 1;
    }
    // Retention on the leader deletes everything below offset 60, which
    // the stopped follower never got.
    let g = members[leader].as_ref().unwrap().group.clone();
    let purged = g.log().lock().await.prefix_purge_point(60).expect("whole segments below 60");
    // As the retention pass does: asked again until openraft purges (it
    // waits for the snapshot, and for replication in flight), and only
    // then are the segments deleted.
    for _ in 0..100 {
        g.note_purged(purged).await;
        if g.log().lock().await.purged_log_id() == Some(purged) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(g.log().lock().await.purged_log_id(), Some(purged), "purged through openraft");
    // (openraft numbers entries from 0, the log from 1.) Its metrics follow
    // the store's purge a moment later.
    let as_far = |m: &openraft::RaftMetrics<u64, BasicNode>| m.purged.is_some_and(|p| p.index + 1 == purged.index);
    assert!(g.raft.wait(Some(Duration::from_secs(5))).metrics(as_far, "purged as far").await.is_ok(), "openraft purged as far");
    let leader_start = g.log().lock().await.log_start_offset();
    assert!(leader_start > 30 && leader_start <= 60, "retention kept from {leader_start}");

    let l = tokio::net::TcpListener::bind(&addrs[&(behind as u64 + 1)]).await.unwrap();
    members[behind] = Some(start_with(behind as u64 + 1, dir.path(), l, &addrs, config.clone()).await);
    let back = members[behind].as_ref().unwrap();
    let mut hw = back.group.high_watermark();
    tokio::time::timeout(Duration::from_secs(10), hw.wait_for(|h| *h >= next)).await.expect("caught up").unwrap();
    let (start, entries) = retained(back).await;
    let (reference_start, reference) = retained(members[leader].as_ref().unwrap()).await;
    assert_eq!(start, reference_start, "the follower's log starts where the leader's does");
    assert_eq!(start, leader_start);
    assert_eq!(entries, reference, "the follower holds every entry the leader retains");
    for m in members.iter().flatten() {
        m.stop.trigger();
        m.node.close_group(&m.group).await;
    }
}

#[test]
fn entry_heads_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::default());
    let (mut log, _) = PartitionLog::open(disk, dir.path(), LogConfig::default(), crate::clock::now()).unwrap();
    let id = |i| weir_core::log::LogId { term: 1, node: 0, index: i };
    log.append_entry(id(1), &[&weir_core::batch::BatchBuilder::control(0)], crate::clock::now()).unwrap();
    log.append_entry(id(2), &[&batch("a0"), &batch("b0")], crate::clock::now()).unwrap();
    let heads = log.entry_heads(1..3, usize::MAX).unwrap();
    let lens: Vec<usize> = heads.iter().map(|e| e.batches.len()).collect();
    assert_eq!(lens[1], 2 * weir_core::batch::HEADER_LEN, "{lens:?}");
}

/// Garbage on the Raft port is refused as on the client port: the
/// connection closes (an announced length is never allocated up front),
/// and the node keeps serving its real peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_raft_port_closes_the_connection_and_peers_still_get_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_stop, rx) = crate::tasks::Shutdown::new();
    let node = RaftNode::new(1, FAST, rx.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    node.serve(l, rx.clone());
    let mut huge = (u32::MAX - 1).to_le_bytes().to_vec();
    huge.extend_from_slice(b"WE\x01\x00\x52\x57\x01\x00\x00\x00\x00\x00");
    let mut bad_body = Vec::new();
    let mut out = bytes::BytesMut::new();
    weir_net::frame::encode(
        &mut out,
        weir_net::frame::FrameHeader {
            kind: weir_net::frame::Kind::Request,
            api_key: weir_net::peer::PEER_API_KEY,
            api_version: weir_net::peer::PEER_VERSION,
            correlation_id: 0,
        },
        &[0xff; 40],
        b"",
    );
    bad_body.extend_from_slice(&out);
    for garbage in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), huge, bad_body] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&garbage).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed, not left hanging");
        assert!(matches!(n, Ok(0) | Err(_)), "garbage got an answer: {n:?}");
    }
    // A real peer still gets answers.
    let peers = Peers::new(2);
    peers.set_address(1, addr.to_string());
    let answer = peers.call(1, 0, weir_net::peer::Call::Heartbeat(Default::default()), Duration::from_secs(2)).await.unwrap();
    assert_eq!(answer, weir_net::peer::Answer::Heartbeat);
    let answer = peers
        .call(
            1,
            99,
            weir_net::peer::Call::Vote(weir_net::peer::VoteRequest {
                vote: weir_net::peer::Vote { term: 1, node: Some(2), committed: false },
                last_log_id: None,
            }),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(matches!(answer, weir_net::peer::Answer::Error(e) if e.message.contains("no Raft group 99")));
}

/// A replica created again where one was deleted refuses candidates whose
/// log ends before the one it held (its tombstone), and leaves the rest to
/// Raft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_floor_refuses_candidates_behind_the_former_log() {
    let dir = tempfile::tempdir().unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<u64, String> = [(1, l.local_addr().unwrap().to_string()), (2, "127.0.0.1:1".to_string())].into();
    let m = start(1, dir.path(), l, &addrs).await;
    m.group.bootstrap(addrs.clone()).await.unwrap();
    let floor = tombstone::Tombstone { vote_term: 3, vote_node: Some(2), last_log_id: Some(weir_net::peer::LogId { term: 5, index: 10 }) };
    m.node.set_vote_floor(7, Some(floor));
    let ask = |term, index| {
        weir_net::peer::Call::Vote(weir_net::peer::VoteRequest {
            vote: weir_net::peer::Vote { term: 50, node: Some(2), committed: false },
            last_log_id: Some(weir_net::peer::LogId { term, index }),
        })
    };
    assert!(m.node.registry.is_aside(7), "behind its former log, it does not campaign either");
    let behind = m.node.registry.dispatch(2, 7, ask(5, 9)).await;
    assert!(matches!(&behind, weir_net::peer::Answer::Error(e) if e.message.contains("longer log")), "{behind:?}");
    let behind = m.node.registry.dispatch(2, 7, ask(4, 900)).await;
    assert!(matches!(behind, weir_net::peer::Answer::Error(_)), "an older term is behind");
    // Not behind: the floor lets it through to the other rules.
    let floor_refused = |a: &weir_net::peer::Answer| matches!(a, weir_net::peer::Answer::Error(e) if e.message.contains("longer log"));
    let level = m.node.registry.dispatch(2, 7, ask(5, 10)).await;
    assert!(!floor_refused(&level), "{level:?}");
    m.node.set_vote_floor(7, None);
    let unfloored = m.node.registry.dispatch(2, 7, ask(5, 9)).await;
    assert!(!floor_refused(&unfloored), "{unfloored:?}");
    // A floor its applied log has reached goes at the first look.
    m.node.set_vote_floor(7, Some(tombstone::Tombstone { vote_term: 0, vote_node: None, last_log_id: None }));
    assert!(!m.node.registry.is_aside(7));
    assert!(m.node.registry.vote_floors.lock().unwrap().is_empty(), "reached: forgotten");
    drop(m.stop);
}
