//! A broker that is one node of a cluster (`initial_members` given): the
//! metadata group and what every broker does with it.
//!
//! The metadata log is an internal partition (`<data_dir>/internal/metadata`)
//! whose Raft group ([`METADATA_GROUP`]) has the initial members as voters.
//! Each batch holds one `ClusterCommand`. Every broker tails its own
//! committed copy of that log (the applier), applies each command to core's
//! `ClusterMetadata` in log order, and reconciles its replicas with the
//! outcome: it opens the partitions placed on it, as Raft groups whose
//! voters are the partition's replicas, and closes and deletes those of
//! deleted topics. Outcomes are remembered by the command's offset, so the
//! broker that proposed one reads it from its own applier.
//!
//! Admin writes (create, delete, a producer-id block, a broker's
//! registration) are proposed on the metadata leader; any other broker
//! forwards them there over the peer connection (`Call::Forward`) and then
//! waits for its own applier to reach the offset the leader answers.

use super::partition::{self, Partition};
use super::{Broker, Topic, group_id, metadata_error};
use crate::blocking;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weir_core::canary::Canary;
use weir_core::metadata::IDS_PER_BLOCK;
use weir_core::metadata::cluster::{self, BrokerRecord, ClusterCommand, ClusterMetadata, ClusterTopic, Outcome};
use weir_net::message::{Acks, ClusterNode, ClusterStatusResponse, DescribeReplicasResponse, FindCoordinatorResponse, ReplicaInfo};
use weir_net::{ErrorCode, WireError};

/// The metadata log's Raft group (group 1 is the offsets log; topic groups
/// start at `1 << 16`).
pub const METADATA_GROUP: u64 = 2;
/// How long an admin write waits for its command to commit and apply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a read barrier waits for the leader's answer and the applier.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);
/// Outcomes kept for proposers that have not collected them yet.
const OUTCOMES_MAX: usize = 4096;

/// What one broker asks the metadata leader over `Call::Forward`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Forwarded {
    /// Propose this command; the answer is the offset it committed at.
    Command(ClusterCommand),
    /// The metadata log's committed end (a read barrier).
    Committed,
}

/// A clustered broker's view of the metadata.
#[derive(Debug)]
pub struct Cluster {
    /// The metadata partition (this node's replica of it).
    pub log: Arc<Partition>,
    state: Mutex<ClusterMetadata>,
    /// The offset the applier has applied the log to.
    applied: watch::Sender<u64>,
    outcomes: Mutex<BTreeMap<u64, Outcome>>,
    /// This node's current producer-id block and the next id in it.
    producer_ids: tokio::sync::Mutex<Option<(u64, i64)>>,
    /// The applier has caught up with a leader heard since this process
    /// started: until then a topic this node does not know may exist.
    synced: std::sync::atomic::AtomicBool,
}

impl Cluster {
    pub fn new(log: Arc<Partition>, state: ClusterMetadata) -> Cluster {
        Cluster {
            log,
            state: Mutex::new(state),
            applied: watch::channel(0).0,
            outcomes: Mutex::default(),
            producer_ids: tokio::sync::Mutex::new(None),
            synced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this node's metadata has caught up with the cluster's since
    /// it started (see [`Cluster::note_progress`]).
    pub fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Marks the metadata caught up once the applier has reached the
    /// commit index of a leader this node heard in its current term (or
    /// leads and serves): a restarted broker otherwise told producers that
    /// topics it had not replayed yet did not exist, a refusal they do not
    /// retry (seen in seed 4557).
    fn note_progress(&self, raft: &crate::raft::RaftNode) {
        if self.synced() {
            return;
        }
        let status = self.log.status();
        let led = match status.leader {
            Some(l) if l == raft.id => self.log.serving_term().is_some(),
            Some(l) => raft.leader_heard(METADATA_GROUP) == Some((l, status.term)),
            None => false,
        };
        if led && *self.applied.borrow() >= self.log.high_watermark() {
            self.synced.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::debug!("metadata caught up with the cluster");
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, ClusterMetadata> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the applier has applied past `offset`, up to `timeout`.
    async fn applied_past(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a > offset)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Where a clustered broker keeps partition `partition` of topic `id`: keyed
/// by topic id, so a topic created again under an old name never meets the
/// old one's data.
pub fn replica_dir(data_dir: &std::path::Path, topic_id: u64, partition: u32) -> PathBuf {
    replicas_dir(data_dir).join(topic_id.to_string()).join(partition.to_string())
}

pub(super) fn replicas_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("replicas")
}

fn not_clustered() -> WireError {
    WireError::new(ErrorCode::InvalidRequest, "this broker is not part of a cluster")
}

impl Broker {
    fn cluster(&self) -> Result<&Cluster, WireError> {
        self.cluster.as_ref().ok_or_else(not_clustered)
    }

    /// Serves forwarded commands (from the other brokers) and runs the
    /// applier and this broker's registration, under the supervisor.
    pub(super) fn start_cluster(self: &Arc<Self>) {
        if self.cluster.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        self.raft.on_forward(Arc::new(move |from, request| {
            let weak = weak.clone();
            Box::pin(async move {
                let answer: Result<u64, WireError> = match (weak.upgrade(), postcard::from_bytes::<Forwarded>(&request)) {
                    (None, _) => Err(WireError::new(ErrorCode::ShuttingDown, "the broker is stopping")),
                    (_, Err(e)) => Err(WireError::new(ErrorCode::InvalidRequest, format!("node {from} forwarded no command: {e}"))),
                    (Some(b), Ok(Forwarded::Command(command))) => b.propose_here(&command).await,
                    (Some(b), Ok(Forwarded::Committed)) => b.committed_here(),
                };
                postcard::to_stdvec(&answer).expect("answers serialise")
            })
        }));
        let weak = Arc::downgrade(self);
        let stop = self.tasks.signal();
        self.tasks.spawn("metadata-applier", async move { applier(weak, stop).await });
        let weak = Arc::downgrade(self);
        let mut stop = self.tasks.signal();
        self.tasks.spawn("register-broker", async move {
            let mut pause = Duration::from_millis(100);
            loop {
                let Some(b) = weak.upgrade() else { return };
                let record = BrokerRecord {
                    id: b.config.node_id,
                    client_address: b.client_address_to_register(),
                    // The address the cluster was configured with: it reaches
                    // this node (a listen address may be 0.0.0.0).
                    // (A node that joined: the Raft address it joined with.)
                    raft_address: b
                        .config
                        .initial_members
                        .get(&b.config.node_id)
                        .cloned()
                        .or_else(|| b.config.raft_listen.map(|a| a.to_string()))
                        .unwrap_or_default(),
                    incarnation: b.boot,
                };
                let data_dir_id = b.raft.identity().incarnation;
                // Without a rack, the command brokers before racks decode too
                // (one that cannot decode a record skips it, and its state
                // would part from the others').
                let register = match b.config.rack.clone() {
                    Some(rack) => ClusterCommand::RegisterNodeInRack { record, data_dir_id, rack: Some(rack) },
                    None => ClusterCommand::RegisterNode { record, data_dir_id },
                };
                match b.command(register).await {
                    Ok(_) => {
                        tracing::info!(node = b.config.node_id, "registered with the cluster");
                        // A block of producer ids now, so InitProducerId does not
                        // wait on the metadata group (which may be electing).
                        if let Err(e) = b.refill_producer_ids().await {
                            tracing::debug!(error = %e.message, "no producer-id block yet; the first InitProducerId asks");
                        }
                        return;
                    }
                    Err(e) if e.code() == ErrorCode::StaleIncarnation || e.code() == ErrorCode::InvalidConfig => {
                        tracing::error!(error = %e.message, "the cluster refuses this node's registration");
                    }
                    Err(e) => tracing::debug!(error = %e.message, "registration not committed yet; retrying"),
                }
                drop(b);
                tokio::select! {
                    biased;
                    _ = crate::tasks::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        });
    }

    /// Every peer must present the data directory the metadata bound it to.
    fn bind_data_dirs(&self) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let bound = cluster.state().data_dirs().clone();
        self.raft.set_bindings(bound);
    }

    /// The cluster's id, as applied: presented on every peer frame from now
    /// on and kept in `meta/cluster-id`, so that a data directory carried
    /// to another cluster is refused there (by its peers, and they by it).
    fn adopt_cluster_id(&self, id: u64) {
        let mut identity = self.raft.identity();
        if identity.cluster == id {
            return;
        }
        if identity.cluster != 0 {
            tracing::error!(
                kept = format_args!("{:016x}", identity.cluster),
                applied = format_args!("{id:016x}"),
                "this data directory's meta/cluster-id differs from its own metadata log's: it was assembled from two clusters' directories; presenting the kept id"
            );
            return;
        }
        if let Err(e) = super::store::write_cluster_id(&*self.disk, &self.config.data_dir, id) {
            tracing::warn!(error = %e, "could not record the cluster id in meta/cluster-id (the metadata log still holds it)");
        }
        identity.cluster = id;
        self.raft.set_identity(identity);
        tracing::info!(cluster = format_args!("{id:016x}"), "cluster id known");
    }

    /// Where clients reach this node: the bound client address, with an
    /// unspecified IP (0.0.0.0, ::) replaced by the host this node has in
    /// `initial_members`.
    fn client_address_to_register(&self) -> String {
        let bound = self.advertised();
        if !bound.ip().is_unspecified() {
            return bound.to_string();
        }
        let host = self
            .config
            .initial_members
            .get(&self.config.node_id)
            .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()))
            .or_else(|| self.config.raft_listen.map(|r| r.ip().to_string()));
        match host {
            Some(h) => format!("{h}:{}", bound.port()),
            None => bound.to_string(),
        }
    }

    /// Commits `command` to the metadata log (here if this node leads it,
    /// else through the leader) and answers its outcome as this broker's
    /// applier saw it.
    pub(super) async fn command(&self, command: ClusterCommand) -> Result<Outcome, WireError> {
        let cluster = self.cluster()?;
        let offset = match self.propose_here(&command).await {
            Err(e) if matches!(e.code(), ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable) => {
                self.ask_leader(Forwarded::Command(command), COMMAND_TIMEOUT).await?
            }
            other => other?,
        };
        if !cluster.applied_past(offset, COMMAND_TIMEOUT).await {
            return Err(WireError::new(
                ErrorCode::Timeout,
                "the metadata change committed but this broker has not applied it yet: check with topic list, then retry",
            ));
        }
        let outcome = cluster.outcomes.lock().unwrap_or_else(|p| p.into_inner()).remove(&offset);
        match outcome {
            Some(Outcome::Refused(e)) => Err(metadata_error(e)),
            Some(o) => Ok(o),
            None => Err(WireError::new(ErrorCode::Timeout, "the metadata change's outcome is no longer known: check with topic list")),
        }
    }

    /// Waits (a bounded while) until this broker has applied everything
    /// the metadata leader had committed when asked: a read barrier. A
    /// broker that answered "no such topic" from a copy a few milliseconds
    /// behind the leader made a client that had just created the topic (or
    /// grown it) give up on it; run before such an answer is final.
    pub(super) async fn metadata_barrier(&self) -> Result<(), WireError> {
        let cluster = self.cluster()?;
        let committed = match self.committed_here() {
            Err(e) if matches!(e.code(), ErrorCode::NotLeader) => self.ask_leader(Forwarded::Committed, BARRIER_TIMEOUT).await?,
            other => other?,
        };
        let mut rx = cluster.applied.subscribe();
        match tokio::time::timeout(BARRIER_TIMEOUT, rx.wait_for(|a| *a >= committed)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WireError::new(ErrorCode::Timeout, "this broker's metadata is behind the cluster's: retry")),
        }
    }

    /// Sends `what` to the metadata group's leader (another node) and
    /// returns its answer: a command's offset, or the committed end.
    async fn ask_leader(&self, what: Forwarded, timeout: Duration) -> Result<u64, WireError> {
        let cluster = self.cluster()?;
        let Some(leader) = cluster.log.leader().filter(|l| *l != self.config.node_id) else {
            return Err(WireError::new(
                ErrorCode::LeaderNotAvailable,
                "the metadata group has no leader (an election is under way, or a majority of the cluster is down): retry",
            ));
        };
        let request = postcard::to_stdvec(&what).expect("forwarded requests serialise");
        let answer = self.raft.forward(leader, request, timeout).await?;
        let answer: Result<u64, WireError> = postcard::from_bytes(&answer)
            .map_err(|e| WireError::new(ErrorCode::InvalidRequest, format!("node {leader} answered no offset: {e}")))?;
        answer
    }

    /// The metadata log's committed end, on its serving leader: what a
    /// [`Broker::metadata_barrier`] waits for.
    fn committed_here(&self) -> Result<u64, WireError> {
        let cluster = self.cluster()?;
        if cluster.log.serving_term().is_none() {
            return Err(WireError::new(ErrorCode::NotLeader, "this node does not lead the metadata group"));
        }
        Ok(cluster.log.high_watermark())
    }

    /// Proposes `command` to the metadata group on this node; the offset
    /// the command was committed at.
    async fn propose_here(&self, command: &ClusterCommand) -> Result<u64, WireError> {
        let cluster = self.cluster()?;
        // A hopeless command is refused before it is written; but only once
        // this copy has applied all that is committed (a delete committed and
        // acknowledged elsewhere, not yet applied here, refused a create of
        // the same name as "already exists").
        if cluster.state().check(command).is_err() {
            self.metadata_barrier().await?;
            if let Err(e) = cluster.state().check(command) {
                return Err(metadata_error(e));
            }
        }
        let batch = cluster::encode(command, crate::clock::now());
        let appended = cluster.log.produce(batch, Acks::All, COMMAND_TIMEOUT).await?;
        Ok(appended.base_offset)
    }

    /// A fresh producer id from this node's block, a new block from the
    /// metadata log when it is used up.
    pub(super) async fn cluster_producer_id(&self) -> Result<i64, WireError> {
        let cluster = self.cluster()?;
        let mut ids = cluster.producer_ids.lock().await;
        if !ids.is_some_and(|(_, next)| next < IDS_PER_BLOCK) {
            *ids = Some((self.allocate_block().await?, 0));
        }
        let (block, next) = ids.as_mut().expect("just filled");
        let id = (*block as i64) * IDS_PER_BLOCK + *next;
        *next += 1;
        Ok(id)
    }

    /// Gets this node a block of producer ids if it has none.
    async fn refill_producer_ids(&self) -> Result<(), WireError> {
        let cluster = self.cluster()?;
        let mut ids = cluster.producer_ids.lock().await;
        if ids.is_none() {
            *ids = Some((self.allocate_block().await?, 0));
        }
        Ok(())
    }

    async fn allocate_block(&self) -> Result<u64, WireError> {
        match self.command(ClusterCommand::AllocateProducerBlock { node: self.config.node_id }).await? {
            Outcome::Block { block, .. } => Ok(block),
            other => Err(WireError::new(ErrorCode::InvalidRequest, format!("a block request got {other:?}"))),
        }
    }

    /// Whether any broker could have handed out `producer_id`. A block
    /// another broker just got may not be applied here yet: wait for it up
    /// to 5 s (this node's applier may be replaying after a restart).
    pub(super) async fn cluster_knows_producer(&self, producer_id: i64) -> bool {
        let Some(cluster) = self.cluster.as_ref() else { return false };
        for _ in 0..100 {
            if cluster.state().producer_id_is_known(producer_id) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// What of an outcome replayed after a restart is carried out at once:
    /// addresses and removals; replicas wait for [`Broker::reconcile_all`].
    fn reconcile_replayed(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Registered(b) => {
                if b.id != self.config.node_id && !b.raft_address.is_empty() {
                    self.raft.set_address(b.id, b.raft_address.clone());
                }
                self.bind_data_dirs();
            }
            Outcome::ClusterId(id) => self.adopt_cluster_id(*id),
            Outcome::Removed(id) if *id != self.config.node_id => self.raft.forget_node(*id),
            _ => {}
        }
    }

    /// After the replay: opens this node's replicas of every topic as the
    /// state has them (in a partition's set, or joining it), and deletes
    /// replica data the state no longer places here (deleted topics,
    /// partitions moved away).
    async fn reconcile_all(&self) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let topics: Vec<ClusterTopic> = cluster.state().topics().cloned().collect();
        for t in &topics {
            if self.topics.read().unwrap_or_else(|p| p.into_inner()).contains_key(&t.record.name) {
                continue;
            }
            let topic = self.open_cluster_topic(t).await;
            self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(t.record.name.clone(), Arc::new(topic));
            self.groups.set_partitions(&t.record.name, Some(t.record.partitions));
        }
        self.reconcile_offsets().await;
        let me = self.config.node_id;
        let keep: BTreeMap<u64, Vec<u32>> = topics
            .iter()
            .map(|t| {
                let here = (0..t.record.partitions)
                    .filter(|p| t.assignment[*p as usize].contains(&me) || t.moving.get(p).is_some_and(|to| to.contains(&me)))
                    .collect();
                (t.record.id, here)
            })
            .collect();
        let (disk, root, data_dir, boot) =
            (self.disk.clone(), replicas_dir(&self.config.data_dir), self.config.data_dir.clone(), self.boot);
        let removed = blocking::run(move || -> Result<Vec<String>, weir_core::disk::DiskError> {
            let mut removed = Vec::new();
            if !disk.exists(&root) {
                return Ok(removed);
            }
            for topic in disk.list_dir(&root)? {
                let Ok(id) = topic.parse::<u64>() else { continue };
                let dir = root.join(&topic);
                match keep.get(&id) {
                    None => {
                        super::store::remove_via_trash(&*disk, &data_dir, &dir, &format!("replicas-{id}"), boot)?;
                        crate::raft::tombstone::remove_topic(&*disk, &data_dir, id)?;
                        removed.push(format!("topic {id} (deleted)"));
                    }
                    Some(here) => {
                        for p in disk.list_dir(&dir)? {
                            let Ok(n) = p.parse::<u32>() else { continue };
                            if here.contains(&n) {
                                continue;
                            }
                            // Its vote and log end first (see `raft::tombstone`);
                            // a log that cannot be read keeps its data.
                            let taken = group_id(id, n).map_err(|e| e.to_string()).and_then(|group| {
                                let (log, _) = weir_core::log::PartitionLog::open(
                                    disk.clone(),
                                    &dir.join(&p),
                                    weir_core::log::LogConfig::default(),
                                    crate::clock::now(),
                                )
                                .map_err(|e| e.to_string())?;
                                Ok((group, crate::raft::tombstone::Tombstone::of(&log)))
                            });
                            let saved = taken.and_then(|(group, tombstone)| {
                                crate::raft::tombstone::save(&*disk, &data_dir, group, tombstone).map_err(|e| e.to_string())
                            });
                            match saved {
                                Ok(()) => {
                                    super::store::remove_via_trash(&*disk, &data_dir, &dir.join(&p), &format!("replica-{id}-{n}"), boot)?;
                                    removed.push(format!("topic {id} partition {p} (moved away)"));
                                }
                                Err(e) => tracing::warn!(topic = id, partition = n, error = %e, "a replica moved away left no tombstone (its log or tombstone cannot be read or written): its data stays"),
                            }
                        }
                    }
                }
            }
            Ok(removed)
        })
        .await;
        match removed {
            Ok(r) if !r.is_empty() => tracing::info!(removed = ?r, "removed replica data the metadata no longer places on this node"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove replica data the metadata no longer places here"),
        }
    }

    /// Carries out one applied outcome on this node.
    async fn reconcile(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Created(t) => {
                let topic = self.open_cluster_topic(t).await;
                let name = t.record.name.clone();
                self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), Arc::new(topic));
                self.groups.set_partitions(&name, Some(t.record.partitions));
                tracing::info!(topic = %name, id = t.record.id, assignment = ?t.assignment, "topic created");
            }
            Outcome::Deleted(t) => {
                let removed = self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(&t.record.name);
                self.groups.set_partitions(&t.record.name, None);
                if self.groups.is_coordinator() {
                    // The coordinator forgets the topic's committed offsets,
                    // whichever broker took the delete: otherwise a topic
                    // created again under the name would inherit them, and
                    // its consumers would skip its first records. In the
                    // background: the applier must not wait on another group.
                    let (groups, name) = (self.groups.clone(), t.record.name.clone());
                    self.tasks.spawn("forget-offsets", async move {
                        if let Err(e) = groups.forget_topic(&name).await {
                            tracing::warn!(topic = %name, error = %e.message, "could not forget a deleted topic's committed offsets");
                        }
                    });
                }
                if let Some(topic) = removed {
                    for p in topic.partitions.iter().flatten() {
                        p.close();
                    }
                }
                let (disk, data_dir, boot, id) = (self.disk.clone(), self.config.data_dir.clone(), self.boot, t.record.id);
                let removed = blocking::run(move || {
                    let dir = replicas_dir(&data_dir).join(id.to_string());
                    super::store::remove_via_trash(&*disk, &data_dir, &dir, &format!("replicas-{id}"), boot)?;
                    // Group ids are never reused: its replicas' tombstones
                    // have nothing left to guard.
                    crate::raft::tombstone::remove_topic(&*disk, &data_dir, id)
                })
                .await;
                if let Err(e) = removed {
                    tracing::warn!(topic = %t.record.name, error = %e, "could not remove a deleted topic's data; the next start removes it");
                }
                tracing::info!(topic = %t.record.name, id = t.record.id, "topic deleted");
            }
            Outcome::PartitionsAdded { topic: t, from } => {
                let Some(old) = self.topics.read().unwrap_or_else(|p| p.into_inner()).get(&t.record.name).cloned() else {
                    tracing::error!(topic = %t.record.name, "partitions were added to a topic this node never opened");
                    return;
                };
                let mut partitions = old.partitions.clone();
                for p in *from..t.record.partitions {
                    partitions.push(self.open_cluster_partition(t, p).await);
                }
                let grown = Topic { partitions, assignment: t.assignment.clone(), ..(*old).clone() };
                self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(t.record.name.clone(), Arc::new(grown));
                self.groups.set_partitions(&t.record.name, Some(t.record.partitions));
                tracing::info!(topic = %t.record.name, from, partitions = t.record.partitions, assignment = ?&t.assignment[*from as usize..], "partitions added");
            }
            Outcome::ReassignmentStarted { topic, partition, .. } => self.replica_added(topic, *partition).await,
            Outcome::Reassigned { topic, partition, from } => self.replica_moved(topic, *partition, from).await,
            Outcome::Removing { id, moves } => {
                tracing::info!(node = id, moves = moves.len(), "a node is being removed: its replicas move");
                for (t, p, _) in moves {
                    self.replica_added(t, *p).await;
                }
                self.reconcile_offsets().await;
            }
            Outcome::OffsetsLogMoved { from, to } => {
                tracing::info!(?from, ?to, "the offsets log moved");
                self.reconcile_offsets().await;
            }
            Outcome::Removed(id) => {
                if *id == self.config.node_id {
                    tracing::error!(
                        node = id,
                        "this node was removed from the cluster: stop it; to use the machine again, wipe its data directory and join (weir --join)"
                    );
                } else {
                    self.raft.forget_node(*id);
                    tracing::info!(node = id, "a node was removed from the cluster");
                }
            }
            Outcome::Registered(b) => {
                if b.id != self.config.node_id && !b.raft_address.is_empty() {
                    self.raft.set_address(b.id, b.raft_address.clone());
                }
                self.bind_data_dirs();
            }
            Outcome::ClusterId(id) => self.adopt_cluster_id(*id),
            Outcome::Block { .. } | Outcome::Refused(_) => {}
        }
    }

    /// This node's replicas of a topic's partitions, opened and started. A
    /// replica that cannot open is logged and left out (the others serve).
    async fn open_cluster_topic(&self, t: &ClusterTopic) -> Topic {
        let mut partitions = Vec::with_capacity(t.assignment.len());
        for p in 0..t.assignment.len() as u32 {
            partitions.push(self.open_cluster_partition(t, p).await);
        }
        Topic {
            id: t.record.id,
            name: t.record.name.clone(),
            replicas: t.record.replicas,
            log_config: t.log_config.clone(),
            partitions,
            assignment: t.assignment.clone(),
        }
    }

    /// This node's replica of partition `p`, opened and started; `None` if
    /// it holds none, or if it cannot open (logged: the others serve).
    pub(super) async fn open_cluster_partition(&self, t: &ClusterTopic, p: u32) -> Option<Arc<Partition>> {
        let me = self.config.node_id;
        let replicas = &t.assignment[p as usize];
        // A replica a reassignment adds: its leader sends the membership
        // with the log (it must not bootstrap one of its own).
        let joining = !replicas.contains(&me) && t.moving.get(&p).is_some_and(|to| to.contains(&me));
        let promote_alone = joining && weir_core::canary::on(self.config.log.canary, Canary::PromoteWithoutJointConsensus);
        if !replicas.contains(&me) && !joining {
            return None;
        }
        {
            let opened = async {
                let members = match t.moving.get(&p) {
                    Some(to) if promote_alone => self.raft_addresses(to),
                    _ if joining => BTreeMap::new(),
                    _ => self.raft_addresses(replicas),
                };
                let dir = replica_dir(&self.config.data_dir, t.record.id, p);
                let (disk, lc, single) = (self.disk.clone(), t.log_config.clone(), replicas.len() == 1 && !joining);
                let me2 = me;
                let group = group_id(t.record.id, p)?;
                let data_dir = self.config.data_dir.clone();
                let (log, report, floor) = blocking::run(move || {
                    let (mut log, report) = partition::open_replica_log(disk.clone(), &dir, lc, single)?;
                    if !single {
                        // A leader of before a restart must win an election
                        // again: leadership resumed in its old term would serve
                        // from a producer table that entries in flight are not in.
                        partition::give_up_leadership(&mut log, me2)?;
                    }
                    // A replica deleted here before votes as its former self.
                    let floor = crate::raft::tombstone::apply(&*disk, &data_dir, group, &mut log)?;
                    Ok::<_, weir_core::log::LogError>((log, report, floor))
                })
                .await?;
                if report.truncated_reason.is_some() || !report.damaged_segments.is_empty() {
                    tracing::warn!(topic = %t.record.name, partition = p, ?report, "replica recovered with repairs");
                }
                if let Some(f) = &floor {
                    tracing::info!(topic = %t.record.name, partition = p, former = ?f, "a replica deleted here before: it votes only for logs reaching its former one");
                }
                self.raft.set_vote_floor(group, floor);
                if !report.damaged_segments.is_empty() && replicas.len() > 1 {
                    self.raft.step_aside(group);
                }
                Partition::start(p, me, group, log, self.disk.clone(), &self.raft, members, &self.tasks).await.map_err(anyhow::Error::from)
            }
            .await;
            match opened {
                Ok(part) => {
                    // The preferred replica of a group nobody led yet elects itself at once.
                    if !joining && replicas.first() == Some(&me) && replicas.len() > 1 && part.status().term == 0 {
                        part.lead_soon(&self.tasks);
                    }
                    let first_new = t.moving.get(&p).and_then(|to| to.iter().find(|n| !replicas.contains(n)).copied());
                    if promote_alone && first_new == Some(me) {
                        part.lead_soon(&self.tasks);
                    }
                    Some(part)
                }
                Err(e) => {
                    tracing::error!(topic = %t.record.name, partition = p, error = %e, "cannot open this node's replica: the others serve it");
                    None
                }
            }
        }
    }

    /// Raft addresses of `nodes`, from the registered brokers (else the
    /// initial members).
    pub(super) fn raft_addresses(&self, nodes: &[u64]) -> BTreeMap<u64, String> {
        let cluster = self.cluster.as_ref().expect("clustered");
        let state = cluster.state();
        nodes
            .iter()
            .map(|n| {
                let addr = state
                    .broker(*n)
                    .map(|b| b.raft_address.clone())
                    .filter(|a| !a.is_empty())
                    .or_else(|| self.config.initial_members.get(n).cloned())
                    .unwrap_or_default();
                (*n, addr)
            })
            .collect()
    }
}

impl Broker {
    /// The cluster's id as Kafka clients see it, and the node leading the
    /// metadata (Kafka's controller): a single broker is its own cluster,
    /// named by its data directory's id; a cluster by the id its first
    /// metadata leader picked (`None` until then).
    pub fn kafka_identity(&self) -> (Option<String>, Option<u64>) {
        match &self.cluster {
            None => {
                let id = self.kafka_cluster_id.get_or_init(|| match super::store::data_dir_id(&*self.disk, &self.config.data_dir) {
                    Ok(id) => Some(format!("weir-{id:016x}")),
                    Err(e) => {
                        tracing::warn!(error = %e, "no data directory id to name the cluster to Kafka clients by");
                        None
                    }
                });
                (id.clone(), Some(self.config.node_id))
            }
            Some(c) => (c.state().cluster_id().map(|id| format!("weir-{id:016x}")), c.log.status().leader),
        }
    }

    /// This node's own view of the cluster (no quorum needed).
    pub(super) fn cluster_status(&self) -> ClusterStatusResponse {
        let me = self.config.node_id;
        let (mut led, mut under) = (0, 0);
        for p in self.all_partitions() {
            let s = p.status();
            if s.is_leader {
                led += 1;
                if s.lagging > 0 {
                    under += 1;
                }
            }
        }
        let heard = self.raft.heard_ms_ago();
        let Some(cluster) = &self.cluster else {
            return ClusterStatusResponse {
                node_id: me,
                clustered: false,
                metadata_leader: Some(me),
                term: 0,
                role: "leader".into(),
                nodes: vec![ClusterNode {
                    id: me,
                    address: self.advertised().to_string(),
                    raft_address: String::new(),
                    heard_ms_ago: None,
                    rack: self.config.rack.clone(),
                }],
                partitions_led: led,
                under_replicated: under,
            };
        };
        let status = cluster.log.status();
        let mut nodes: BTreeMap<u64, ClusterNode> = self
            .config
            .initial_members
            .iter()
            .map(|(id, raft)| {
                (*id, ClusterNode { id: *id, address: String::new(), raft_address: raft.clone(), heard_ms_ago: None, rack: None })
            })
            .collect();
        // A removed initial member is no node of the cluster any more.
        nodes.retain(|id, _| !cluster.state().is_removed(*id));
        let state = cluster.state();
        for b in state.brokers() {
            let n = nodes.entry(b.id).or_insert(ClusterNode {
                id: b.id,
                address: String::new(),
                raft_address: String::new(),
                heard_ms_ago: None,
                rack: None,
            });
            n.address = b.client_address.clone();
            n.rack = state.rack(b.id).map(str::to_owned);
            if !b.raft_address.is_empty() {
                n.raft_address = b.raft_address.clone();
            }
        }
        for n in nodes.values_mut() {
            n.heard_ms_ago = if n.id == me { None } else { heard.get(&n.id).copied() };
        }
        ClusterStatusResponse {
            node_id: me,
            clustered: true,
            metadata_leader: status.leader,
            term: status.term,
            // A removed node still runs, but is no member: say so.
            role: if self.raft.is_removed() { "removed".into() } else { status.role.into() },
            nodes: nodes.into_values().collect(),
            partitions_led: led,
            under_replicated: under,
        }
    }

    /// Who coordinates consumer groups: this node, or the offsets log's
    /// leader as this node knows it (its replica, else heartbeats).
    pub(super) fn find_coordinator(&self) -> FindCoordinatorResponse {
        let me = self.config.node_id;
        let node = if self.groups.is_coordinator() {
            Some(me)
        } else {
            self.groups.offsets_leader().or_else(|| self.raft.leader_heard(super::groups::OFFSETS_GROUP).map(|(n, _)| n))
        };
        let address = match node {
            Some(n) if n == me => Some(self.advertised().to_string()),
            Some(n) => self.cluster.as_ref().and_then(|c| c.state().broker(n).map(|b| b.client_address.clone())),
            None => None,
        };
        FindCoordinatorResponse { node_id: node, address }
    }

    /// This node's own replicas of `topic`.
    pub(super) async fn describe_replicas(&self, topic: &str) -> Result<DescribeReplicasResponse, WireError> {
        let t = self.topic(topic)?;
        let mut replicas = Vec::new();
        for p in t.partitions.iter().flatten() {
            let status = p.status();
            let d = p.describe().await;
            replicas.push(ReplicaInfo {
                partition: d.partition,
                term: status.term,
                leader: status.leader,
                log_end_offset: d.log_end_offset,
                high_watermark: d.high_watermark,
                size_bytes: d.size_bytes,
            });
        }
        Ok(DescribeReplicasResponse { node_id: self.config.node_id, replicas })
    }
}

/// Applies the committed metadata log, in order, as it grows.
async fn applier(broker: std::sync::Weak<Broker>, mut stop: watch::Receiver<bool>) {
    let mut offset = 0;
    // After a restart the replicas on disk reflect the newest state this
    // node applied, not the states the log passes through on the way: the
    // log up to where it ended at the start is replayed into the state
    // alone (a replica moved away and back would otherwise be deleted
    // half-way), then this node's replicas are reconciled with the result.
    // Until the replay reaches the log end of the start (or the lowest
    // end since: an uncommitted tail a new leader cut). Not "until synced":
    // right after a start the known commit index may be far below the end,
    // and the history past it, carried out live, deleted the data of
    // replicas that moved away and back (seed 61 of five brokers).
    let mut replay_end = u64::MAX;
    let mut replaying = true;
    loop {
        let Some(b) = broker.upgrade() else { return };
        let cluster = b.cluster.as_ref().expect("clustered");
        if replaying {
            match cluster.log.read_log(|l| l.log_end_offset()).await {
                Ok(end) => replay_end = replay_end.min(end),
                Err(e) => tracing::debug!(error = %e.message, "cannot read the metadata log's end yet"),
            }
        }
        if replaying && offset >= replay_end {
            replaying = false;
            b.reconcile_all().await;
        }
        let read = tokio::select! {
            biased;
            _ = crate::tasks::stopped(&mut stop) => return,
            r = cluster.log.fetch(offset, 1 << 20, 1, Duration::from_secs(1)) => r,
        };
        let (result, _, start) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.message, offset, "cannot read the metadata log; retrying");
                drop(b);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if offset < start {
            tracing::error!(offset, start, "the metadata log starts after what this broker applied: its metadata is incomplete");
            offset = start;
            continue;
        }
        let mut stalled = false;
        let mut applied_to = offset;
        for batch in weir_core::batch::decode_all(result.bytes, usize::MAX) {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    // Skipping would leave this broker's metadata short of
                    // the others' (ids handed out again): stop here and retry.
                    tracing::error!(error = %e, offset, "unreadable metadata batch: not applying past it; retrying");
                    stalled = true;
                    break;
                }
            };
            let base = batch.base_offset();
            for command in cluster::decode(&batch) {
                match command {
                    Ok(command) => {
                        let outcome = cluster.state().apply(command);
                        if matches!(outcome, Outcome::Removed(id) if id == b.config.node_id) {
                            // Replayed at a restart too: a removed node serves nothing.
                            b.raft.mark_removed();
                        }
                        if let Outcome::Refused(e) = &outcome {
                            tracing::debug!(offset = base, error = %e, "metadata command refused");
                        }
                        if replaying {
                            b.reconcile_replayed(&outcome);
                        } else {
                            b.reconcile(&outcome).await;
                        }
                        let mut outcomes = cluster.outcomes.lock().unwrap_or_else(|p| p.into_inner());
                        outcomes.insert(base, outcome);
                        while outcomes.len() > OUTCOMES_MAX {
                            outcomes.pop_first();
                        }
                    }
                    Err(e) => tracing::error!(offset = base, error = %e, "skipping a metadata record"),
                }
            }
            applied_to = batch.next_offset();
        }
        let next = if stalled { applied_to } else { result.next_offset };
        if next > offset {
            offset = next;
            cluster.applied.send_replace(offset);
        }
        // Not while replaying: this node's replicas are not open yet, and a
        // broker that believed itself caught up told producers that topics
        // it had not reconciled did not exist.
        if !replaying {
            cluster.note_progress(&b.raft);
        }
        if stalled {
            drop(b);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
