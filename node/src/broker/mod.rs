//! The broker: request dispatch, and the adapters that carry out what
//! core's state machines decide. Topics, ids and settings are decided by
//! [`MetadataState`] (here its effects become files); each partition's
//! meaning is a [`PartitionState`] driven by `partition`; groups by the
//! coordinator driven by `groups`. Sessions and sockets live in `server`;
//! this module only sees decoded requests and returns responses.

pub mod cluster;
pub mod groups;
pub mod leadership;
pub mod membership;
pub mod partition;
pub mod reassign;
pub mod store;

use crate::config::Config;
use crate::raft::RaftNode;
use crate::tasks::Tasks;
use partition::Partition;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use store::TopicRecord;
use weir_core::disk::{Disk, DiskError};
use weir_core::log::{LogConfig, PartitionLog};
use weir_core::metadata::{self, Effect, MetadataError, MetadataLimits, MetadataState, TopicSettings};
use weir_net::message::*;
use weir_net::{ErrorCode, Request, Response, WireError};

#[derive(Debug, Clone)]
pub struct Topic {
    pub id: u64,
    pub name: String,
    pub replicas: u16,
    pub log_config: LogConfig,
    /// This node's replica of each partition; `None` where only other
    /// nodes hold one (in a cluster).
    pub partitions: Vec<Option<Arc<Partition>>>,
    /// Each partition's replicas (node ids), preferred leader first.
    pub assignment: Vec<Vec<u64>>,
}

#[derive(Debug)]
pub struct Broker {
    config: Config,
    disk: Arc<dyn Disk>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion (metadata writes).
    admin: tokio::sync::Mutex<()>,
    metadata: Mutex<MetadataState>,
    advertised: Mutex<SocketAddr>,
    groups: Arc<groups::Groups>,
    /// Every background task of this broker (see `tasks`).
    tasks: Tasks,
    /// This node's Raft groups: every partition is one.
    raft: Arc<RaftNode>,
    /// The metadata group and its applied state, in a cluster.
    cluster: Option<cluster::Cluster>,
    /// This start's boot counter (a broker's incarnation).
    boot: u64,
    /// Leader balancing's memory between passes.
    balance: leadership::Balance,
    /// A single broker's cluster id for Kafka clients (from its data
    /// directory's id, read at the first Kafka request).
    kafka_cluster_id: std::sync::OnceLock<Option<String>>,
}

fn disk_error(e: DiskError) -> WireError {
    partition::log_error(e.into())
}

/// The wire form of a refused metadata command: the one place that maps them.
fn metadata_error(e: MetadataError) -> WireError {
    let code = match &e {
        MetadataError::InvalidName(_) => ErrorCode::InvalidName,
        MetadataError::InvalidPartitions { .. } | MetadataError::PartitionsCannotShrink { .. } => ErrorCode::InvalidPartitions,
        MetadataError::InvalidReplication { .. } => ErrorCode::InvalidReplication,
        MetadataError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
        MetadataError::InvalidConfig(_) | MetadataError::NodeExists(_) => ErrorCode::InvalidConfig,
        MetadataError::InvalidReplicaAssignment(_) => ErrorCode::InvalidReplicaAssignment,
        MetadataError::ReassignmentInProgress { .. } => ErrorCode::ReassignmentInProgress,
        MetadataError::NodeNotFound(_) | MetadataError::NodeRemoved(_) => ErrorCode::NodeNotFound,
        MetadataError::TopicExists(_) | MetadataError::CaseCollision { .. } => ErrorCode::TopicAlreadyExists,
        MetadataError::Busy(_) => ErrorCode::Busy,
        MetadataError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        MetadataError::IdsExhausted(_) => ErrorCode::StorageError,
        MetadataError::StaleIncarnation { .. } => ErrorCode::StaleIncarnation,
    };
    WireError::new(code, e.to_string())
}

/// The wire's topic settings as core's persisted type.
fn settings(c: &TopicConfig) -> TopicSettings {
    TopicSettings { retention_bytes: c.retention_bytes, retention_ms: c.retention_ms, segment_bytes: c.segment_bytes }
}

fn limits(config: &Config) -> MetadataLimits {
    MetadataLimits { partitions_max: config.partitions_max, brokers: 1 }
}

impl Broker {
    /// Opens every topic under the data directory, recovering each log. If
    /// it fails part-way, the partitions it started are stopped.
    pub async fn open(config: Config, disk: Arc<dyn Disk>) -> anyhow::Result<Arc<Broker>> {
        let tasks = Tasks::new();
        let opened = Self::open_with(config, disk, tasks.clone()).await;
        if opened.is_err() {
            tasks.stop();
        }
        opened
    }

    async fn open_with(config: Config, disk: Arc<dyn Disk>, tasks: Tasks) -> anyhow::Result<Arc<Broker>> {
        let raft = RaftNode::new(config.node_id, config.timing(), tasks.signal());
        for (node, addr) in &config.initial_members {
            if *node != config.node_id {
                raft.set_address(*node, addr.clone());
            }
        }
        let data_dir = config.data_dir.clone();
        store::claim_node_id(&*disk, &data_dir, config.node_id)?;
        if config.clustered() {
            let incarnation = store::data_dir_id(&*disk, &data_dir)?;
            let cluster = store::read_cluster_id(&*disk, &data_dir)?.unwrap_or(0);
            raft.set_identity(weir_net::peer::Identity { cluster, incarnation });
        }
        let topics_dir = store::topics_dir(&data_dir);
        store::ensure_dir(&*disk, &topics_dir)?;
        // Deleted topics whose removal a crash interrupted.
        let trash = store::trash_dir(&data_dir);
        if disk.exists(&trash) {
            for name in disk.list_dir(&trash)? {
                disk.remove_dir_all(&trash.join(&name))?;
            }
            disk.sync_dir(&trash)?;
        }
        let mut topics = BTreeMap::new();
        let mut records = Vec::new();
        let mut homeless = Vec::new();
        // A clustered broker's topics come from the metadata log; the two
        // layouts never meet in one directory (neither would see the other's topics).
        let single_topics = disk.list_dir(&topics_dir)?;
        let cluster_data = disk.exists(&cluster::replicas_dir(&data_dir)) || disk.exists(&data_dir.join("internal").join("metadata"));
        if config.clustered() && !single_topics.is_empty() {
            anyhow::bail!(
                "{} holds the topics of a single broker ({} of them in {}): a cluster node cannot adopt them yet; start it without --initial-members, or give the cluster node an empty --data-dir",
                data_dir.display(),
                single_topics.len(),
                topics_dir.display()
            );
        }
        if !config.clustered() && cluster_data {
            anyhow::bail!(
                "{} belongs to a cluster node (it holds internal/metadata or replicas/): start it with the cluster's --initial-members, or give a single broker another --data-dir",
                data_dir.display()
            );
        }
        let listed = if config.clustered() { Vec::new() } else { single_topics };
        for name in listed {
            let dir = topics_dir.join(&name);
            let meta = dir.join(store::TOPIC_FILE);
            if weir_core::name::validate(&name).is_err() {
                tracing::warn!(entry = %dir.display(), "ignoring an entry that is not a topic");
                continue;
            }
            if !disk.exists(&meta) {
                homeless.push((name, dir));
                continue;
            }
            let record = store::parse_topic(&store::read_small(&*disk, &meta)?, &meta)?;
            let topic = open_topic(&config, &disk, record.clone(), &tasks, &raft).await?;
            topics.insert(name, topic);
            records.push(record);
        }
        // Ids are `block << 24 | n` and the block is the boot counter:
        // continue above every producer id the data remembers, whatever
        // meta/boot says.
        let max_id = topics.values().flat_map(|t| t.partitions.iter().flatten().filter_map(|p| p.max_producer_id())).max().unwrap_or(-1);
        // Topic ids come from the same blocks: above every one recorded too.
        let max_topic_block = records.iter().map(|r| r.id >> 24).max().unwrap_or(0);
        let mut floor = ((max_id.max(0) / metadata::IDS_PER_BLOCK + 1) as u64).max(max_topic_block + 1);
        if floor > metadata::BLOCK_MAX {
            // Only data written before ids were checked at produce can hold such an id.
            tracing::error!(floor, "the data holds a producer or topic id beyond any this broker hands out: ignoring it for the id floor");
            floor = metadata::BLOCK_MAX;
        }
        let boot = store::next_boot(&*disk, &data_dir, floor)?;
        let (metadata, effects) = MetadataState::recover(config.log.clone(), limits(&config), boot, records)?;
        for effect in effects {
            if let Effect::RewriteTopic(record) = effect {
                tracing::info!(topic = %record.name, id = record.id, "recorded the topic's id in its topic.json");
                store::write_topic(&*disk, &data_dir, &record)?;
                if let Some(t) = topics.get_mut(&record.name) {
                    t.id = record.id;
                }
            }
        }
        let topics: BTreeMap<String, Arc<Topic>> = topics.into_iter().map(|(n, t)| (n, Arc::new(t))).collect();
        for (name, dir) in homeless {
            if store::holds_data(&*disk, &dir)? {
                let to = store::move_aside(&*disk, &dir, &store::quarantine_dir(&data_dir), &name, boot)?;
                tracing::error!(
                    topic = %name,
                    moved_to = %to.display(),
                    "topic directory holds data but no topic.json (its metadata was lost): moved aside, nothing deleted; to restore it, stop the broker, move it back to {} and write its topic.json (README, \"On-disk format\")",
                    dir.display()
                );
            } else {
                // Created but never committed: nothing was ever stored in it.
                tracing::warn!(topic = %name, "removing an empty topic directory without topic.json (an interrupted create)");
                disk.remove_dir_all(&dir)?;
                disk.sync_dir(&topics_dir)?;
            }
        }
        let counts: BTreeMap<String, u32> = topics.iter().map(|(n, t)| (n.clone(), t.partitions.len() as u32)).collect();
        let offsets_config = offsets_log_config(&config);
        store::ensure_dir(&*disk, &data_dir.join("internal"))?;
        let offsets_dir = groups::offsets_dir(&data_dir);
        // In a cluster the offsets log has other voters: recovery must not
        // purge past damage (those entries may be uncommitted), and a
        // damaged replica steps aside (see `Groups::open`).
        let offsets_single = !config.clustered() || groups::offsets_replicas(&config.initial_members).len() == 1;
        let (mut offsets_log, offsets_report) = partition::open_replica_log(disk.clone(), &offsets_dir, offsets_config, offsets_single)?;
        if !offsets_single && !offsets_report.damaged_segments.is_empty() {
            raft.step_aside(groups::OFFSETS_GROUP);
        }
        // A replica of the offsets log deleted here before (moved off) votes
        // as its former self, and never bootstraps the group again.
        let moved_off = crate::raft::tombstone::load(&*disk, &data_dir, groups::OFFSETS_GROUP)?.is_some();
        let floor = crate::raft::tombstone::apply(&*disk, &data_dir, groups::OFFSETS_GROUP, &mut offsets_log)?;
        raft.set_vote_floor(groups::OFFSETS_GROUP, floor);
        let groups =
            groups::Groups::open(offsets_log, &config, boot, &counts, crate::clock::Clock::new(), disk.clone(), &tasks, &raft, moved_off)
                .await
                .map_err(|e| anyhow::anyhow!("cannot load consumer offsets: {e}"))?;
        let groups = Arc::new(groups);
        groups.start_following(&tasks);
        let cluster = if config.clustered() {
            let dir = data_dir.join("internal").join("metadata");
            let single = config.initial_members.len() == 1 && !config.joined;
            let (mut log, _) = partition::open_replica_log(disk.clone(), &dir, offsets_log_config(&config), single)?;
            if !single {
                partition::give_up_leadership(&mut log, config.node_id)?;
            }
            // A node that joined gets the membership from the leader with the log.
            let first_voters = if config.joined { BTreeMap::new() } else { config.initial_members.clone() };
            let log = Partition::start(0, config.node_id, cluster::METADATA_GROUP, log, disk.clone(), &raft, first_voters, &tasks)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the metadata log: {}", e.message))?;
            let offsets = groups::offsets_replicas(&config.initial_members).into_keys().collect();
            let state =
                weir_core::metadata::cluster::ClusterMetadata::new(config.log.clone(), config.partitions_max).with_offsets_log(offsets);
            Some(cluster::Cluster::new(log, state))
        } else {
            None
        };
        tracing::info!(topics = topics.len(), boot, data_dir = %data_dir.display(), clustered = cluster.is_some(), "broker opened");
        let advertised = config.listen;
        let broker = Arc::new(Broker {
            config,
            disk,
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(()),
            metadata: Mutex::new(metadata),
            advertised: Mutex::new(advertised),
            groups,
            tasks,
            raft,
            cluster,
            boot,
            balance: leadership::Balance::default(),
            kafka_cluster_id: std::sync::OnceLock::new(),
        });
        Ok(broker)
    }

    /// Starts the broker's periodic work under its supervisor: the group
    /// coordinator's clock (session expiry, rebalance deadlines, offsets
    /// expiry and compaction) and retention. Both stop at `shutdown`.
    pub fn start_background(self: &Arc<Self>) {
        self.start_cluster();
        self.every("group-ticker", groups::TICK_INTERVAL, |b| async move { b.groups.tick().await });
        // Each partition's retention runs its file deletions on a blocking thread.
        self.every("retention", self.config.retention_check_interval, |b| async move { b.apply_retention().await });
        if self.cluster.is_some() {
            self.every("metadata-membership", membership::RECONCILE_INTERVAL, |b| async move { b.reconcile_membership().await });
            self.every("reassign", reassign::DRIVE_INTERVAL, |b| async move { b.drive_reassignments().await });
            if let Some(every) = self.config.leader_balance_interval {
                self.every("leader-balance", every, |b| async move {
                    b.balance_leaders().await;
                });
            }
        }
    }

    /// Runs `tick` with this broker every `interval` under the supervisor,
    /// until shutdown or the broker is gone (the task holds it weakly).
    fn every<F, Fut>(self: &Arc<Self>, name: &'static str, interval: Duration, tick: F)
    where
        F: Fn(Arc<Broker>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(self);
        self.tasks.every(name, interval, move || weak.upgrade().map(&tick));
    }

    /// The consumer groups (the Kafka protocol's group calls use them directly).
    pub fn groups(&self) -> &Arc<groups::Groups> {
        &self.groups
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Raft groups this node leads now, with their terms (see
    /// [`RaftNode::leaderships`]).
    pub fn raft_leaderships(&self) -> Vec<(u64, u64)> {
        self.raft.leaderships()
    }

    /// Serves Raft traffic from peers on `listener`, until shutdown.
    pub fn serve_raft(&self, listener: tokio::net::TcpListener) {
        self.raft.serve(listener, self.tasks.signal());
    }

    fn advertised(&self) -> SocketAddr {
        *self.advertised.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address clients are told to use (the bound one, once known).
    pub fn set_advertised(&self, addr: SocketAddr) {
        *self.advertised.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, WireError> {
        self.topics.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| {
            if self.cluster.as_ref().is_some_and(|c| !c.synced()) {
                return WireError::new(
                    ErrorCode::LeaderNotAvailable,
                    format!(
                        "node {} has not caught up with the cluster's metadata since it started, so it cannot tell whether topic {name:?} exists: retry",
                        self.config.node_id
                    ),
                );
            }
            WireError::new(ErrorCode::UnknownTopic, format!("topic {name:?} does not exist: create it first (weirctl topic create {name})"))
        })
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, WireError> {
        let t = self.topic(topic)?;
        let hosted = t.partitions.get(partition as usize).ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownPartition,
                format!("topic {topic:?} has partitions 0..{}, not {partition}", t.partitions.len()),
            )
        })?;
        hosted.clone().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLeader,
                format!(
                    "node {} holds no replica of {topic}/{partition} (its replicas are on nodes {:?}): refresh metadata and send it to the leader",
                    self.config.node_id, t.assignment[partition as usize]
                ),
            )
        })
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner()).values().flat_map(|t| t.partitions.iter().flatten().cloned()).collect()
    }

    /// Runs an admin command to its end under the supervisor, even if the
    /// request is dropped half-way (its connection died): a create or delete
    /// that has reserved a name must report its outcome to the metadata,
    /// or the name would stay reserved.
    async fn to_completion<T, F, Fut>(self: &Arc<Self>, name: &'static str, command: F) -> Result<T, WireError>
    where
        F: FnOnce(Arc<Broker>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, WireError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let broker = self.clone();
        self.tasks.spawn(name, async move {
            let _ = tx.send(command(broker).await);
        });
        rx.await.unwrap_or_else(|_| {
            Err(WireError::new(ErrorCode::ShuttingDown, "the broker stopped before the command finished: check the topic list and retry"))
        })
    }

    /// Answers one request. In a cluster, a request naming a topic or
    /// partition this broker does not know waits for a read barrier first:
    /// the topic may have been created (or grown) a moment ago and not
    /// reached this broker's copy of the metadata yet.
    pub async fn handle(self: &Arc<Self>, request: Request) -> Result<Response, WireError> {
        if self.cluster.is_some()
            && self.names_unknown(&request)
            && let Err(b) = self.metadata_barrier().await
        {
            tracing::debug!(error = %b.message, "metadata barrier failed; answering from this broker's copy");
        }
        self.answer(request).await
    }

    /// Whether `request` names a topic, or a partition of one, that this
    /// broker does not hold in its metadata.
    fn names_unknown(&self, request: &Request) -> bool {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let unknown = |topic: &str, partition: Option<u32>| {
            topics.get(topic).is_none_or(|t| partition.is_some_and(|p| p as usize >= t.partitions.len()))
        };
        match request {
            Request::Metadata(r) => r.topics.iter().flatten().any(|t| unknown(t, None)),
            Request::Produce(r) => unknown(&r.topic, Some(r.partition)),
            Request::Fetch(r) => unknown(&r.topic, Some(r.partition)),
            Request::ListOffsets(r) => unknown(&r.topic, Some(r.partition)),
            Request::DescribeTopic(r) => unknown(&r.name, None),
            Request::OffsetCommit(r) => r.offsets.iter().any(|o| unknown(&o.topic, Some(o.partition))),
            _ => false,
        }
    }

    async fn answer(self: &Arc<Self>, request: Request) -> Result<Response, WireError> {
        if !matches!(request, Request::ApiVersions(_) | Request::ClusterStatus(_)) && self.raft.is_removed() {
            // Its metadata stops where the cluster let it go: a client
            // that bootstrapped here would chase leaders that moved.
            return Err(WireError::new(
                ErrorCode::NodeRemoved,
                format!(
                    "node {} was removed from the cluster and serves nothing: send to another broker, and stop this one",
                    self.config.node_id
                ),
            ));
        }
        match request {
            Request::ApiVersions(r) => {
                tracing::debug!(client = %r.client, "handshake");
                Ok(Response::ApiVersions(ApiVersionsResponse::current(env!("CARGO_PKG_VERSION"))))
            }
            Request::Metadata(r) => self.metadata(r).map(Response::Metadata),
            Request::CreateTopic(r) if self.cluster.is_some() => self.cluster_create(r).await.map(Response::CreateTopic),
            Request::DeleteTopic(r) if self.cluster.is_some() => self.cluster_delete(r).await.map(Response::DeleteTopic),
            Request::InitProducerId(_) if self.cluster.is_some() => self
                .cluster_producer_id()
                .await
                .map(|id| Response::InitProducerId(InitProducerIdResponse { producer_id: id, producer_epoch: 0 })),
            Request::CreateTopic(r) => {
                self.to_completion("create-topic", |b| async move { b.create_topic(r).await }).await.map(Response::CreateTopic)
            }
            Request::DeleteTopic(r) => {
                self.to_completion("delete-topic", |b| async move { b.delete_topic(r).await }).await.map(Response::DeleteTopic)
            }
            Request::CreatePartitions(r) if self.cluster.is_some() => self.cluster_add_partitions(r).await.map(Response::CreatePartitions),
            Request::CreatePartitions(r) => {
                self.to_completion("add-partitions", |b| async move { b.add_partitions(r).await }).await.map(Response::CreatePartitions)
            }
            Request::ListTopics(_) => Ok(Response::ListTopics(self.list_topics())),
            Request::DescribeTopic(r) => self.describe_topic(&r.name).await.map(Response::DescribeTopic),
            Request::Produce(r) => self.produce(r).await.map(Response::Produce),
            Request::Fetch(r) => self.fetch(r).await.map(Response::Fetch),
            Request::ListOffsets(r) => self.list_offsets(r).await.map(Response::ListOffsets),
            Request::InitProducerId(_) => self.init_producer_id().map(Response::InitProducerId),
            Request::JoinGroup(r) => self.groups.join(r).map(Response::JoinGroup),
            Request::SyncGroup(r) => self.groups.sync(r).map(Response::SyncGroup),
            Request::Heartbeat(r) => self.groups.heartbeat(r).map(Response::Heartbeat),
            Request::LeaveGroup(r) => self.groups.leave(r).map(Response::LeaveGroup),
            Request::OffsetCommit(r) => {
                if r.member.is_none() {
                    // An operator's reset: only to offsets that exist.
                    for o in &r.offsets {
                        let hw = self.partition(&o.topic, o.partition)?.high_watermark();
                        if o.offset > hw {
                            return Err(WireError::new(
                                ErrorCode::OffsetOutOfRange,
                                format!(
                                    "offset {} is past the end of {}/{} (high watermark {hw}): reset to at most {hw}",
                                    o.offset, o.topic, o.partition
                                ),
                            ));
                        }
                    }
                }
                self.groups.commit(r).await.map(Response::OffsetCommit)
            }
            Request::OffsetFetch(r) => self.groups.fetch(r).map(Response::OffsetFetch),
            Request::ListGroups(_) => self.groups.list().map(Response::ListGroups),
            Request::FindCoordinator(_) => Ok(Response::FindCoordinator(self.find_coordinator())),
            Request::DescribeGroup(r) => {
                let hw = |t: &str, p: u32| self.partition(t, p).map_or(0, |p| p.high_watermark());
                self.groups.describe(r, hw).map(Response::DescribeGroup)
            }
            Request::DeleteGroup(r) => self.groups.delete(r).await.map(Response::DeleteGroup),
            Request::ClusterStatus(_) => Ok(Response::ClusterStatus(self.cluster_status())),
            Request::DescribeReplicas(r) => self.describe_replicas(&r.topic).await.map(Response::DescribeReplicas),
            Request::BalanceLeaders(_) => Ok(Response::BalanceLeaders(self.balance_leaders().await)),
            Request::JoinCluster(r) => self.join_cluster(r).await.map(Response::JoinCluster),
            Request::ReassignPartition(r) => self.reassign_partition(r).await.map(Response::ReassignPartition),
            Request::RemoveNode(r) => self.remove_node(r).await.map(Response::RemoveNode),
        }
    }

    /// The leader of partition `partition` of `t` as this node knows it:
    /// its replica's view, else what the leader's heartbeats say.
    fn leader_of(&self, t: &Topic, partition: u32) -> Option<u64> {
        self.leader_and_term(t, partition).0
    }

    /// A partition's leader as this broker knows it, and the term it leads
    /// in (0 if unknown): from its own replica, else from heartbeats.
    fn leader_and_term(&self, t: &Topic, partition: u32) -> (Option<u64>, u64) {
        match t.partitions.get(partition as usize) {
            // No leader in a term is news too: an election is under way.
            // A replica that knows no leader (electing, or still joining
            // the group) names the one the heartbeats say leads, if newer:
            // a client told "no leader" by its bootstrap broker asked it
            // again and again (5-broker seed 61).
            Some(Some(p)) => {
                let s = p.status();
                let heard = || group_id(t.id, partition).ok().and_then(|g| self.raft.leader_heard(g));
                match s.leader {
                    None => heard().filter(|(_, term)| *term >= s.term).map_or((None, s.term), |(node, term)| (Some(node), term)),
                    leader => (leader, s.term),
                }
            }
            _ => match group_id(t.id, partition).ok().and_then(|g| self.raft.leader_heard(g)) {
                Some((node, term)) => (Some(node), term),
                None => (None, 0),
            },
        }
    }

    fn metadata(&self, r: MetadataRequest) -> Result<MetadataResponse, WireError> {
        let addr = self.advertised();
        let node = self.config.node_id;
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let describe = |t: &Topic| TopicMetadata {
            name: t.name.clone(),
            topic_id: t.id,
            partitions: (0..t.partitions.len() as u32)
                .map(|p| {
                    let (leader, leader_term) = self.leader_and_term(t, p);
                    PartitionMetadata { partition: p, leader, replicas: t.assignment[p as usize].clone(), leader_term }
                })
                .collect(),
        };
        let list = match r.topics {
            None => topics.values().map(|t| describe(t)).collect(),
            Some(names) => {
                let mut out = Vec::new();
                for name in names {
                    let t = topics
                        .get(&name)
                        .ok_or_else(|| WireError::new(ErrorCode::UnknownTopic, format!("topic {name:?} does not exist")))?;
                    out.push(describe(t));
                }
                out
            }
        };
        let brokers = match &self.cluster {
            None => vec![BrokerInfo { node_id: node, host: addr.ip().to_string(), port: addr.port() }],
            Some(c) => c
                .state()
                .brokers()
                .filter_map(|b| {
                    let (host, port) = b.client_address.rsplit_once(':')?;
                    Some(BrokerInfo { node_id: b.id, host: host.to_owned(), port: port.parse().ok()? })
                })
                .collect(),
        };
        Ok(MetadataResponse { brokers, topics: list })
    }

    async fn create_topic(&self, r: CreateTopicRequest) -> Result<CreateTopicResponse, WireError> {
        let _guard = self.admin.lock().await;
        self.check_descriptors(r.partitions)?;
        let effect = self.lock_metadata().create_topic(&r.name, r.partitions, r.replicas, settings(&r.config)).map_err(metadata_error)?;
        let Effect::CreateTopic(record) = effect else { unreachable!("a create's effect is CreateTopic") };
        // Offsets a group kept for an earlier topic of this name would skip
        // the new topic's first records (normally forgotten at its delete).
        if let Err(e) = self.groups.forget_topic(&r.name).await {
            self.lock_metadata().create_failed(&r.name);
            return Err(e);
        }
        match self.carry_out_create(&record).await {
            Ok(topic) => {
                self.lock_metadata().topic_created(record.clone());
                self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(r.name.clone(), Arc::new(topic));
                self.groups.set_partitions(&r.name, Some(r.partitions));
                tracing::info!(topic = %r.name, id = record.id, partitions = r.partitions, "topic created");
                Ok(CreateTopicResponse { name: r.name, partitions: r.partitions })
            }
            Err(e) => {
                self.lock_metadata().create_failed(&r.name);
                Err(e)
            }
        }
    }

    /// Each partition holds one descriptor (its active segment): refuse up
    /// front `more` partitions the process could not hold open.
    fn check_descriptors(&self, more: u32) -> Result<(), WireError> {
        let Some(limit) = self.config.file_descriptors_max else { return Ok(()) };
        let held = self.all_partitions().len() as u64 + 1; // + the offsets log
        let reserved = reserved_descriptors(&self.config);
        if held + u64::from(more) + reserved > limit {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "{more} partitions need {more} more open files: the broker may open {limit} (RLIMIT_NOFILE), keeps {reserved} for connections and caches and {held} for existing partitions; raise the limit (ulimit -n) or add fewer partitions"
                ),
            ));
        }
        Ok(())
    }

    /// Grows a topic on a single node: open the new partitions, then write
    /// the grown `topic.json` (the commit point); only then do they serve.
    async fn add_partitions(&self, r: CreatePartitionsRequest) -> Result<CreatePartitionsResponse, WireError> {
        let _guard = self.admin.lock().await;
        let topic = self.topic(&r.name)?;
        // The count's own limits first, then what the process can hold open.
        let effect = self.lock_metadata().add_partitions(&r.name, r.total).map_err(metadata_error)?;
        let Effect::AddPartitions { record, from } = effect else { unreachable!("a grow's effect is AddPartitions") };
        if let Err(e) = self.check_descriptors(r.total.saturating_sub(topic.partitions.len() as u32)) {
            self.lock_metadata().add_partitions_failed(&r.name);
            return Err(e);
        }
        match self.carry_out_add(&topic, &record, from).await {
            Ok(grown) => {
                self.lock_metadata().partitions_added(record.clone());
                self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(r.name.clone(), Arc::new(grown));
                self.groups.set_partitions(&r.name, Some(record.partitions));
                tracing::info!(topic = %r.name, from, partitions = record.partitions, "partitions added");
                Ok(CreatePartitionsResponse { name: r.name, partitions: record.partitions })
            }
            Err(e) => {
                self.lock_metadata().add_partitions_failed(&r.name);
                Err(e)
            }
        }
    }

    /// A grow's effect: the new partitions' directories and logs, then the
    /// grown record. Directories left by a grow that never committed hold
    /// nothing acknowledged (their partitions never served); one that holds
    /// data anyway is moved to `quarantine/`, never deleted.
    async fn carry_out_add(&self, topic: &Topic, record: &TopicRecord, from: u32) -> Result<Topic, WireError> {
        let failed =
            |e: anyhow::Error| WireError::new(ErrorCode::StorageError, format!("cannot add partitions to topic {:?}: {e:#}", record.name));
        let (config, disk, record2) = (self.config.clone(), self.disk.clone(), record.clone());
        let boot = self.lock_metadata().newest_block();
        crate::blocking::run(move || -> anyhow::Result<()> {
            for p in from..record2.partitions {
                let dir = store::partition_dir(&config.data_dir, &record2.name, p);
                if !disk.exists(&dir) {
                    continue;
                }
                if store::holds_data(&*disk, &dir)? {
                    let aside = store::move_aside(&*disk, &dir, &store::quarantine_dir(&config.data_dir), &format!("{}-{p}", record2.name), boot)?;
                    tracing::warn!(topic = %record2.name, partition = p, to = %aside.display(), "a partition directory beyond the topic's count held data: moved to quarantine");
                } else {
                    disk.remove_dir_all(&dir)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(failed)?;
        let mut opened = Vec::new();
        for p in from..record.partitions {
            match open_partition(&self.config, &self.disk, record, &topic.log_config, p, &self.tasks, &self.raft).await {
                Ok(part) => opened.push(part),
                Err(e) => {
                    opened.iter().for_each(|p: &Arc<Partition>| p.close());
                    return Err(failed(e));
                }
            }
        }
        let (config, disk, record2) = (self.config.clone(), self.disk.clone(), record.clone());
        if let Err(e) = crate::blocking::run(move || store::write_topic(&*disk, &config.data_dir, &record2)).await {
            opened.iter().for_each(|p| p.close());
            return Err(failed(e.into()));
        }
        wait_serving(&record.name, &opened).await;
        let mut partitions = topic.partitions.clone();
        partitions.extend(opened.into_iter().map(Some));
        let assignment = vec![vec![self.config.node_id]; partitions.len()];
        Ok(Topic { partitions, assignment, ..topic.clone() })
    }

    /// A create's effect: the partitions' directories and logs, then the
    /// durable `topic.json` (the commit point). On failure nothing is
    /// committed and what was made is removed.
    async fn carry_out_create(&self, record: &TopicRecord) -> Result<Topic, WireError> {
        let dir = store::topic_dir(&self.config.data_dir, &record.name);
        let made = async {
            let (config, disk, record2) = (self.config.clone(), self.disk.clone(), record.clone());
            // Directories and files: off the async workers.
            crate::blocking::run(move || -> anyhow::Result<()> {
                let dir = store::topic_dir(&config.data_dir, &record2.name);
                if disk.exists(&dir) {
                    // Left over from an interrupted create or delete.
                    disk.remove_dir_all(&dir)?;
                }
                store::ensure_dir(&*disk, &dir)?;
                Ok(())
            })
            .await?;
            let topic = open_topic(&self.config, &self.disk, record.clone(), &self.tasks, &self.raft).await?;
            let (config, disk, record2) = (self.config.clone(), self.disk.clone(), record.clone());
            if let Err(e) = crate::blocking::run(move || store::write_topic(&*disk, &config.data_dir, &record2)).await {
                for p in topic.partitions.iter().flatten() {
                    p.close();
                }
                return Err(anyhow::Error::from(e));
            }
            Ok(topic)
        }
        .await;
        match made {
            Ok(topic) => Ok(topic),
            Err(e) => {
                // Nothing was committed (no durable topic.json): remove what was made, off the async workers.
                let (disk, topics) = (self.disk.clone(), store::topics_dir(&self.config.data_dir));
                let cleanup = crate::blocking::run(move || disk.remove_dir_all(&dir).and_then(|()| disk.sync_dir(&topics))).await;
                if let Err(cleanup) = cleanup {
                    tracing::warn!(topic = %record.name, error = %cleanup, "could not remove a failed create's directory; the next start removes it");
                }
                Err(WireError::new(ErrorCode::StorageError, format!("cannot create topic {:?}: {e:#}", record.name)))
            }
        }
    }

    fn lock_metadata(&self) -> std::sync::MutexGuard<'_, MetadataState> {
        self.metadata.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn delete_topic(&self, r: DeleteTopicRequest) -> Result<DeleteTopicResponse, WireError> {
        let _guard = self.admin.lock().await;
        let topic = self.topic(&r.name)?;
        let effect = self.lock_metadata().delete_topic(&r.name).map_err(metadata_error)?;
        let Effect::DeleteTopic(record) = effect else { unreachable!("a delete's effect is DeleteTopic") };
        let dir = store::topic_dir(&self.config.data_dir, &record.name);
        // Moving the directory into trash/ is the commit point; a crash
        // after it leaves trash that the next start removes.
        let boot = self.lock_metadata().newest_block();
        let moved = {
            let (disk, trash) = (self.disk.clone(), store::trash_dir(&self.config.data_dir));
            let name = record.name.clone();
            crate::blocking::run(move || store::move_aside(&*disk, &dir, &trash, &name, boot)).await
        };
        let trash = match moved {
            Ok(t) => t,
            Err(e) => {
                self.lock_metadata().delete_failed(&r.name);
                return Err(disk_error(e));
            }
        };
        self.lock_metadata().topic_deleted(&r.name);
        self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(&r.name);
        self.groups.set_partitions(&r.name, None);
        if let Err(e) = self.groups.forget_topic(&r.name).await {
            tracing::warn!(topic = %r.name, error = %e, "could not forget the deleted topic's committed offsets; a new topic of this name forgets them first");
        }
        for p in topic.partitions.iter().flatten() {
            p.close();
        }
        let (disk, trash_dir) = (self.disk.clone(), store::trash_dir(&self.config.data_dir));
        crate::blocking::run(move || disk.remove_dir_all(&trash).and_then(|()| disk.sync_dir(&trash_dir))).await.map_err(disk_error)?;
        tracing::info!(topic = %r.name, id = record.id, "topic deleted");
        Ok(DeleteTopicResponse {})
    }

    fn list_topics(&self) -> ListTopicsResponse {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        ListTopicsResponse {
            topics: topics
                .values()
                .map(|t| TopicSummary { name: t.name.clone(), partitions: t.partitions.len() as u32, replicas: t.replicas })
                .collect(),
        }
    }

    async fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse, WireError> {
        let t = self.topic(name)?;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (i, p) in t.partitions.iter().enumerate() {
            partitions.push(match p {
                // The replicas as the metadata places them, the preferred
                // first (the group's voters differ while a move is under way).
                Some(p) => PartitionDescription { replicas: t.assignment[i].clone(), ..p.describe().await },
                // Held by other nodes only: what this node knows of it.
                None => PartitionDescription {
                    partition: i as u32,
                    leader: self.leader_of(&t, i as u32),
                    replicas: t.assignment[i].clone(),
                    log_start_offset: 0,
                    log_end_offset: 0,
                    high_watermark: 0,
                    size_bytes: 0,
                    segments: 0,
                    offline: None,
                },
            });
        }
        Ok(DescribeTopicResponse {
            name: t.name.clone(),
            replicas: t.replicas,
            config: TopicConfig {
                retention_bytes: t.log_config.retention_bytes,
                retention_ms: t.log_config.retention_ms,
                segment_bytes: Some(t.log_config.segment_bytes_max),
            },
            partitions,
        })
    }

    async fn produce(&self, r: ProduceRequest) -> Result<ProduceResponse, WireError> {
        let p = self.partition(&r.topic, r.partition)?;
        let batch = p.validate(r.batch).await?;
        // A producer id this broker never handed out would be trusted by the
        // producer table and, after a restart, raise the id floor to it.
        let producer_id = batch.header().producer_id;
        let known = match &self.cluster {
            None => self.lock_metadata().producer_id_is_known(producer_id),
            Some(_) => self.cluster_knows_producer(producer_id).await,
        };
        if !known {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "producer id {producer_id} was never handed out by this broker: use -1 for no idempotence, or one from InitProducerId"
                ),
            ));
        }
        let max = self.config.produce_timeout_max;
        let timeout = if r.timeout_ms == 0 { max } else { Duration::from_millis(u64::from(r.timeout_ms)).min(max) };
        let a = p.produce_valid(batch, r.acks, timeout).await?;
        Ok(ProduceResponse { base_offset: a.base_offset, duplicate: a.duplicate })
    }

    async fn fetch(&self, r: FetchRequest) -> Result<FetchResponse, WireError> {
        let p = self.partition(&r.topic, r.partition)?;
        p.check_leads_reads()?;
        // Leave room for the frame header and body inside the frame limit.
        let max_bytes = (r.max_bytes as usize).clamp(1, self.config.frame_bytes_max.saturating_sub(4096).max(1));
        let wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(self.config.fetch_wait_max);
        let (result, hw, start) = p.fetch(r.offset, max_bytes, r.min_bytes as usize, wait).await?;
        Ok(FetchResponse { high_watermark: hw, log_start_offset: start, next_offset: result.next_offset, batches: result.bytes })
    }

    /// A partition's (log start, high watermark), for Kafka's answers.
    pub(crate) async fn partition_offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64), WireError> {
        self.partition(topic, partition)?.offsets().await
    }

    /// The record with the largest timestamp in a partition this broker
    /// leads: (offset, timestamp), `None` if it holds no readable record.
    pub(crate) async fn partition_max_timestamp(&self, topic: &str, partition: u32) -> Result<Option<(u64, i64)>, WireError> {
        let p = self.partition(topic, partition)?;
        p.check_leads_reads()?;
        let Some((max, at)) = p.max_timestamp_batch().await? else { return Ok(None) };
        let hw = p.high_watermark();
        let (read, _, _) = p.fetch(at, 1 << 20, 0, Duration::ZERO).await?;
        for b in weir_core::batch::decode_all(read.bytes, usize::MAX) {
            let b = b.map_err(|e| WireError::new(ErrorCode::CorruptData, e.to_string()))?;
            let h = *b.header();
            for (n, r) in b.records().enumerate() {
                let offset = h.base_offset + n as u64;
                let r = r.map_err(|e| WireError::new(ErrorCode::CorruptData, e.to_string()))?;
                if offset < hw && r.timestamp(h.first_timestamp) == max {
                    return Ok(Some((offset, max)));
                }
            }
        }
        Ok(None)
    }

    async fn list_offsets(&self, r: ListOffsetsRequest) -> Result<ListOffsetsResponse, WireError> {
        let p = self.partition(&r.topic, r.partition)?;
        p.check_leads_reads()?;
        let hw = p.high_watermark();
        let offset = match r.spec {
            OffsetSpec::Earliest => p.offsets().await?.0,
            OffsetSpec::Latest => hw,
            OffsetSpec::Timestamp(ts) => p.offset_for_timestamp(ts).await?.map_or(hw, |o| o.min(hw)),
        };
        Ok(ListOffsetsResponse { offset })
    }

    /// A create in a cluster: a command to the metadata log; the topic
    /// exists once it is applied (every broker then opens its replicas).
    async fn cluster_create(&self, r: CreateTopicRequest) -> Result<CreateTopicResponse, WireError> {
        let command = weir_core::metadata::cluster::ClusterCommand::CreateTopic {
            name: r.name.clone(),
            partitions: r.partitions,
            replicas: r.replicas,
            config: settings(&r.config),
        };
        match self.command(command).await? {
            weir_core::metadata::cluster::Outcome::Created(t) => {
                if let Err(e) = self.groups.forget_topic(&r.name).await {
                    tracing::warn!(topic = %r.name, error = %e.message, "could not forget an older topic's committed offsets");
                }
                Ok(CreateTopicResponse { name: t.record.name, partitions: t.record.partitions })
            }
            other => Err(WireError::new(ErrorCode::InvalidRequest, format!("a create got {other:?}"))),
        }
    }

    /// A grow in a cluster: a command to the metadata log; every broker
    /// opens its replicas of the new partitions as it applies it.
    async fn cluster_add_partitions(&self, r: CreatePartitionsRequest) -> Result<CreatePartitionsResponse, WireError> {
        let command = weir_core::metadata::cluster::ClusterCommand::AddPartitions { name: r.name.clone(), total: r.total };
        match self.command(command).await? {
            weir_core::metadata::cluster::Outcome::PartitionsAdded { topic, .. } => {
                Ok(CreatePartitionsResponse { name: topic.record.name, partitions: topic.record.partitions })
            }
            other => Err(WireError::new(ErrorCode::InvalidRequest, format!("a grow got {other:?}"))),
        }
    }

    async fn cluster_delete(&self, r: DeleteTopicRequest) -> Result<DeleteTopicResponse, WireError> {
        self.command(weir_core::metadata::cluster::ClusterCommand::DeleteTopic { name: r.name.clone() }).await?;
        if let Err(e) = self.groups.forget_topic(&r.name).await {
            tracing::warn!(topic = %r.name, error = %e.message, "could not forget the deleted topic's committed offsets");
        }
        Ok(DeleteTopicResponse {})
    }

    fn init_producer_id(&self) -> Result<InitProducerIdResponse, WireError> {
        let mut metadata = self.lock_metadata();
        loop {
            match metadata.allocate_producer_id().map_err(metadata_error)? {
                Ok(id) => return Ok(InitProducerIdResponse { producer_id: id, producer_epoch: 0 }),
                Err(Effect::PersistBlock(block)) => {
                    // Once per 16 M ids: a small synced write under the lock.
                    let block = store::next_boot(&*self.disk, &self.config.data_dir, block).map_err(disk_error)?;
                    metadata.block_persisted(block);
                }
                Err(other) => unreachable!("producer ids need only blocks, not {other:?}"),
            }
        }
    }

    /// Runs retention on every partition.
    pub async fn apply_retention(&self) {
        for p in self.all_partitions() {
            p.apply_retention().await;
        }
    }

    /// Flushes every partition (with its checkpoint) and stops its tasks:
    /// the last step of a graceful shutdown.
    pub async fn shutdown(&self) {
        for p in self.all_partitions() {
            if let Err(e) = p.flush_now().await {
                tracing::error!(partition = p.id, error = %e, "final flush failed");
            }
            p.close();
        }
        self.groups.shutdown().await;
        self.tasks.shutdown(Duration::from_secs(10)).await;
    }
}

/// Which log `accept_loss` acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossTarget {
    Partition {
        topic: String,
        partition: u32,
    },
    /// The internal log of committed group offsets.
    OffsetsLog,
}

impl std::fmt::Display for LossTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossTarget::Partition { topic, partition } => write!(f, "partition {partition} of topic {topic:?}"),
            LossTarget::OffsetsLog => write!(f, "the offsets log"),
        }
    }
}

/// The operator's explicit acceptance of a loss recovery reported (the
/// broker must be stopped: the caller holds the data directory's lock).
/// Returns what was done, or `None` if the log reports no loss.
pub fn accept_loss(config: &Config, disk: Arc<dyn Disk>, target: &LossTarget) -> anyhow::Result<Option<weir_core::log::AcceptedLoss>> {
    let (dir, log_config) = match target {
        LossTarget::Partition { topic, partition } => {
            weir_core::name::validate(topic)?;
            let meta = store::topic_dir(&config.data_dir, topic).join(store::TOPIC_FILE);
            if !disk.exists(&meta) {
                anyhow::bail!("topic {topic:?} does not exist in {}", config.data_dir.display());
            }
            let record = store::parse_topic(&store::read_small(&*disk, &meta)?, &meta)?;
            if *partition >= record.partitions {
                anyhow::bail!("topic {topic:?} has partitions 0..{}, not {partition}", record.partitions);
            }
            let log_config = metadata::effective_log_config(&config.log, &record.config).map_err(anyhow::Error::msg)?;
            (store::partition_dir(&config.data_dir, topic, *partition), log_config)
        }
        LossTarget::OffsetsLog => (config.data_dir.join("internal").join("offsets"), offsets_log_config(config)),
    };
    if !disk.exists(&dir) {
        anyhow::bail!("{} does not exist", dir.display());
    }
    let (mut log, _) = PartitionLog::open(disk, &dir, log_config, crate::clock::now())?;
    Ok(log.accept_loss(crate::clock::now())?)
}

fn offsets_log_config(config: &Config) -> LogConfig {
    // Offsets are never deleted by age or size (that would drop commits);
    // the log is compacted instead.
    LogConfig { retention_ms: None, retention_bytes: None, segment_bytes_max: 64 << 20, timestamp_after_max_ms: None, ..config.log.clone() }
}

/// The Raft group id of partition `partition` of topic `topic_id`. Topic
/// ids are never reused, so neither are group ids. Group 1 is the consumer
/// offsets log's.
fn group_id(topic_id: u64, partition: u32) -> anyhow::Result<u64> {
    topic_id.checked_mul(1 << 16).filter(|_| partition < 1 << 16).map(|g| g | u64::from(partition)).ok_or_else(|| {
        anyhow::anyhow!("topic id {topic_id} partition {partition} has no Raft group id (ids beyond 2^47 or partitions beyond 65535)")
    })
}

/// The first voters of a new group: this node alone (a single broker is a
/// cluster of one voter). Its Raft address is not used by a single voter.
fn single_voter(config: &Config) -> BTreeMap<u64, String> {
    BTreeMap::from([(config.node_id, config.listen.to_string())])
}

/// Opens every partition of a topic. On failure, the partitions already
/// started are closed, so nothing they opened (files, tasks, groups) leaks.
async fn open_topic(
    config: &Config,
    disk: &Arc<dyn Disk>,
    record: TopicRecord,
    tasks: &Tasks,
    raft: &Arc<RaftNode>,
) -> anyhow::Result<Topic> {
    let log_config = metadata::effective_log_config(&config.log, &record.config).map_err(anyhow::Error::msg)?;
    let mut partitions: Vec<Arc<Partition>> = Vec::with_capacity(record.partitions as usize);
    for id in 0..record.partitions {
        match open_partition(config, disk, &record, &log_config, id, tasks, raft).await {
            Ok(p) => partitions.push(p),
            Err(e) => {
                for p in &partitions {
                    p.close();
                }
                return Err(e);
            }
        }
    }
    wait_serving(&record.name, &partitions).await;
    let assignment = vec![vec![config.node_id]; partitions.len()];
    Ok(Topic {
        id: record.id,
        name: record.name,
        replicas: record.replicas,
        log_config,
        partitions: partitions.into_iter().map(Some).collect(),
        assignment,
    })
}

/// Opens and starts partition `id` of a single node's topic.
async fn open_partition(
    config: &Config,
    disk: &Arc<dyn Disk>,
    record: &TopicRecord,
    log_config: &LogConfig,
    id: u32,
    tasks: &Tasks,
    raft: &Arc<RaftNode>,
) -> anyhow::Result<Arc<Partition>> {
    let dir = store::partition_dir(&config.data_dir, &record.name, id);
    let (disk2, lc) = (disk.clone(), log_config.clone());
    let (log, report) = crate::blocking::run(move || partition::open_single_voter_log(disk2, &dir, lc)).await?;
    if report.truncated_reason.is_some() || !report.damaged_segments.is_empty() {
        tracing::warn!(topic = %record.name, partition = id, ?report, "partition recovered with repairs");
    }
    let group = group_id(record.id, id)?;
    Partition::start(id, config.node_id, group, log, disk.clone(), raft, single_voter(config), tasks).await.map_err(anyhow::Error::from)
}

/// A single voter elects itself at once: answer only once it serves, so
/// the first produce after a start, a create or a grow is not refused. An
/// offline partition never serves until its loss is accepted.
async fn wait_serving(topic: &str, partitions: &[Arc<Partition>]) {
    let online: Vec<&Arc<Partition>> = partitions.iter().filter(|p| !p.is_offline()).collect();
    let served = futures::future::join_all(online.iter().map(|p| p.wait_serving(PARTITION_START_WAIT))).await;
    if let Some(p) = served.iter().position(|s| !s).map(|i| online[i].id) {
        tracing::warn!(topic = %topic, partition = p, "partition does not serve produces yet (no leader elected): producers retry until it does");
    }
}

/// How long opening a topic waits for its partitions to serve.
const PARTITION_START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Descriptors the broker keeps for other things than partitions: every
/// connection, the file cache, and a margin for the listener, the lock,
/// short-lived opens (checkpoints, metadata) and the runtime.
fn reserved_descriptors(config: &Config) -> u64 {
    (config.connections_max + crate::disk::CACHED_FILES_MAX + 64) as u64
}
