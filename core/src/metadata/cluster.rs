//! The replicated metadata of a cluster: what the metadata Raft group's log
//! means. Every broker applies the same commands in log order and reaches
//! the same state. Whatever a command leaves open (a topic's id, where its
//! replicas go, which producer-id block a node gets) is decided at apply
//! from the state alone, so it comes out identical on every broker, and a
//! command proposed on a stale view is judged against the state it meets.
//!
//! The log's records are [`ClusterCommand`]s (postcard in a record's value,
//! one command per batch: [`encode`], [`decode`]). Ids are never handed out
//! twice: topic ids and producer-id blocks are counters in this state, and
//! the state only moves forward with the log.

use super::placement::replacement;
pub use super::placement::{RACK_BYTES_MAX, check_rack, place, racks_spanned};
use super::records::{TopicRecord, TopicSettings};
use super::{IDS_PER_BLOCK, MetadataError, check_add_partitions, check_create, effective_log_config};
use crate::Timestamp;
use crate::batch::{BatchBuilder, ProducerStamp, RecordBatch};
use crate::log::LogConfig;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most brokers a cluster registers (each is a voter of the metadata group
/// and a candidate for every replica set).
pub const BROKERS_MAX: usize = 64;
/// Longest address a broker may register.
pub const ADDRESS_BYTES_MAX: usize = 256;

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: u64,
    /// Where clients reach it (`host:port`).
    pub client_address: String,
    /// Where its peers reach it (`host:port`).
    pub raft_address: String,
    /// Bumped by the broker at every start (its boot counter).
    pub incarnation: u64,
}

/// One change to the cluster's metadata, as its log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// A broker (re)announces itself and its addresses.
    RegisterBroker(BrokerRecord),
    CreateTopic {
        name: String,
        partitions: u32,
        replicas: u16,
        config: TopicSettings,
    },
    DeleteTopic {
        name: String,
    },
    /// Node `node` wants a fresh block of producer ids.
    AllocateProducerBlock {
        node: u64,
    },
    /// Grow topic `name` to `total` partitions (added at the end: a log
    /// written before it existed decodes unchanged).
    AddPartitions {
        name: String,
        total: u32,
    },
    /// Move partition `partition` of topic `name` onto `replicas` (same
    /// count, registered nodes, the first preferred as leader). The
    /// partition's leader carries it out in its Raft group (learners, then
    /// joint consensus) and reports [`ClusterCommand::ReassignmentDone`].
    ReassignPartition {
        name: String,
        partition: u32,
        replicas: Vec<u64>,
    },
    /// The partition's group now has exactly `replicas` as voters: the
    /// reassignment is done (old replicas may delete their data).
    ReassignmentDone {
        topic_id: u64,
        partition: u32,
        replicas: Vec<u64>,
    },
    /// Node `id` leaves: every partition with a replica on it is moved to
    /// another node (as a reassignment each), and new topics avoid it.
    RemoveBroker {
        id: u64,
    },
    /// Node `id` holds no replica any more and has left the metadata
    /// group: it is forgotten, and refused should it come back.
    BrokerRemoved {
        id: u64,
    },
    /// A new node joins (`weir --join`): registered under `node_id`, or
    /// under a fresh id when it is 0. `data_dir_id` is the random id of the
    /// joining node's data directory: a retried join of the same directory
    /// gets the same registration, never a second id.
    JoinBroker {
        node_id: u64,
        client_address: String,
        raft_address: String,
        data_dir_id: u64,
    },
    /// A node (re)announces itself at start (as `RegisterBroker`), with the
    /// random id of its data directory. The first registration binds the
    /// node to that directory; a later one from another directory (wiped,
    /// or another node's) is refused: its votes and log are not the node's.
    /// Written by brokers before racks; applied as
    /// [`ClusterCommand::RegisterNodeInRack`] without a rack.
    RegisterNode {
        record: BrokerRecord,
        data_dir_id: u64,
    },
    /// The cluster's random id, proposed by a metadata leader that finds
    /// none: the first applied stays, later ones change nothing.
    SetClusterId {
        cluster_id: u64,
    },
    /// As [`ClusterCommand::RegisterNode`], with the node's rack (`None`:
    /// it names none). Placement spreads each partition's replicas over
    /// racks; a node's rack is what its latest registration said.
    RegisterNodeInRack {
        record: BrokerRecord,
        data_dir_id: u64,
        rack: Option<String>,
    },
    /// The consumer offsets log's group now has exactly `replicas` as
    /// voters: its move (planned by a removal) is done.
    OffsetsLogMoved {
        replicas: Vec<u64>,
    },
}

/// How the consumer offsets log is named where an error names a topic.
pub const OFFSETS_LOG_NAME: &str = "(the consumer offsets log)";

/// A topic with where its replicas live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTopic {
    pub record: TopicRecord,
    /// Per partition, its replicas' node ids; the first is preferred leader.
    pub assignment: Vec<Vec<u64>>,
    /// Per partition, the replicas it is being moved onto, if it is.
    pub moving: BTreeMap<u32, Vec<u64>>,
    /// The topic's settings over the cluster's defaults.
    pub log_config: LogConfig,
}

/// What applying one command did, for the broker that proposed it and for
/// every broker's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Registered(BrokerRecord),
    /// The cluster's id (set now, or already).
    ClusterId(u64),
    Created(ClusterTopic),
    Deleted(ClusterTopic),
    /// A reassignment started: `to` are the partition's replicas to be.
    ReassignmentStarted {
        topic: ClusterTopic,
        partition: u32,
        to: Vec<u64>,
    },
    /// A reassignment finished: the partition's replicas were `from`, are `to`.
    Reassigned {
        topic: ClusterTopic,
        partition: u32,
        from: Vec<u64>,
    },
    /// Node `id` is leaving: `moves` are the reassignments that take its
    /// replicas elsewhere (each as `ReassignmentStarted` would be).
    Removing {
        id: u64,
        moves: Vec<(ClusterTopic, u32, Vec<u64>)>,
    },
    /// Node `id` was removed.
    Removed(u64),
    /// The consumer offsets log's replicas were `from`, are `to`.
    OffsetsLogMoved {
        from: Vec<u64>,
        to: Vec<u64>,
    },
    /// The topic as grown: partitions `from..` are new.
    PartitionsAdded {
        topic: ClusterTopic,
        from: u32,
    },
    /// Producer ids `block << 24 ..` belong to `node`.
    Block {
        node: u64,
        block: u64,
    },
    /// The command was refused against the state it met; nothing changed.
    Refused(MetadataError),
}

/// The cluster's metadata state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    defaults: LogConfig,
    partitions_max: u32,
    brokers: BTreeMap<u64, BrokerRecord>,
    topics: BTreeMap<String, ClusterTopic>,
    /// The next topic id (never reused: group ids derive from it).
    next_topic_id: u64,
    /// The next producer-id block.
    next_block: u64,
    /// The node id a join without one gets: above every id ever registered
    /// (never reused, even once a node is removed).
    next_broker_id: u64,
    /// Nodes being removed: their replicas move away, new topics avoid them.
    leaving: std::collections::BTreeSet<u64>,
    /// Nodes removed: never registered again under that id.
    removed: std::collections::BTreeSet<u64>,
    /// The data directory each node is bound to (its first registration
    /// with one, or its join): also which node a joining directory became.
    data_dirs: BTreeMap<u64, u64>,
    /// The rack each node registered with (nodes without one are absent).
    racks: BTreeMap<u64, String>,
    cluster_id: Option<u64>,
    /// The consumer offsets log's replicas (a Raft group outside the
    /// topics): the first initial members until a removal moves it.
    offsets: Vec<u64>,
    /// The replicas the offsets log is being moved onto, if it is.
    offsets_moving: Option<Vec<u64>>,
}

impl ClusterMetadata {
    /// An empty cluster. `defaults` and `partitions_max` must be the same on
    /// every broker (they are part of what applying means).
    pub fn new(defaults: LogConfig, partitions_max: u32) -> Self {
        ClusterMetadata {
            defaults,
            partitions_max,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_topic_id: 1,
            next_block: 0,
            next_broker_id: 1,
            leaving: Default::default(),
            removed: Default::default(),
            data_dirs: BTreeMap::new(),
            racks: BTreeMap::new(),
            cluster_id: None,
            offsets: Vec::new(),
            offsets_moving: None,
        }
    }

    /// The same, with the consumer offsets log on `replicas` to begin with
    /// (every broker must give the same: it derives them from the initial
    /// members).
    pub fn with_offsets_log(mut self, replicas: Vec<u64>) -> Self {
        self.offsets = replicas;
        self
    }

    /// The consumer offsets log's replicas.
    pub fn offsets_replicas(&self) -> &[u64] {
        &self.offsets
    }

    /// The replicas the offsets log is being moved onto, if it is.
    pub fn offsets_moving(&self) -> Option<&[u64]> {
        self.offsets_moving.as_deref()
    }

    /// Whether node `id` holds (or is getting) a replica of the offsets log.
    pub fn holds_offsets_log(&self, id: u64) -> bool {
        self.offsets.contains(&id) || self.offsets_moving.as_ref().is_some_and(|to| to.contains(&id))
    }

    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.values()
    }

    pub fn broker(&self, id: u64) -> Option<&BrokerRecord> {
        self.brokers.get(&id)
    }

    pub fn topics(&self) -> impl Iterator<Item = &ClusterTopic> {
        self.topics.values()
    }

    pub fn topic(&self, name: &str) -> Option<&ClusterTopic> {
        self.topics.get(name)
    }

    /// Whether `producer_id` could have been handed out by any broker: -1
    /// means no idempotence; others must come from an allocated block.
    pub fn producer_id_is_known(&self, producer_id: i64) -> bool {
        producer_id == -1 || (producer_id >= 0 && ((producer_id / IDS_PER_BLOCK) as u64) < self.next_block)
    }

    /// What applying `command` now would refuse, if anything: a leader's
    /// early answer, so a hopeless command is not written to the log.
    /// Applying judges again (the state may have moved).
    pub fn check(&self, command: &ClusterCommand) -> Result<(), MetadataError> {
        self.clone().apply(command.clone()).refused().map_or(Ok(()), Err)
    }

    /// Registered nodes that new replicas may go to (not leaving).
    fn placeable(&self) -> Vec<u64> {
        self.brokers.keys().copied().filter(|n| !self.leaving.contains(n)).collect()
    }

    /// Nodes being removed.
    pub fn leaving(&self) -> impl Iterator<Item = u64> + '_ {
        self.leaving.iter().copied()
    }

    /// Whether node `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    /// Whether any partition has (or is moving) a replica on node `id`.
    pub fn holds_replicas(&self, id: u64) -> bool {
        self.holds_offsets_log(id)
            || self.topics.values().any(|t| t.assignment.iter().any(|r| r.contains(&id)) || t.moving.values().any(|r| r.contains(&id)))
    }

    /// The data directory each node is bound to.
    pub fn data_dirs(&self) -> &BTreeMap<u64, u64> {
        &self.data_dirs
    }

    /// The rack node `id` registered with, if it named one.
    pub fn rack(&self, id: u64) -> Option<&str> {
        self.racks.get(&id).map(String::as_str)
    }

    /// Every node's rack (nodes without one are absent).
    pub fn racks(&self) -> &BTreeMap<u64, String> {
        &self.racks
    }

    /// The cluster's id, once its first metadata leader picked one.
    pub fn cluster_id(&self) -> Option<u64> {
        self.cluster_id
    }

    /// Which node data directory `data_dir_id` is bound to, if any.
    pub fn node_of_data_dir(&self, data_dir_id: u64) -> Option<u64> {
        self.data_dirs.iter().find(|(_, d)| **d == data_dir_id).map(|(n, _)| *n)
    }

    /// Registers `b` if it may be: ids 1..=2^32-1, short addresses, at most
    /// [`BROKERS_MAX`] brokers.
    fn register(&mut self, b: BrokerRecord) -> Outcome {
        if self.removed.contains(&b.id) {
            return Outcome::Refused(MetadataError::NodeRemoved(b.id));
        }
        if b.id == 0 || b.id > u64::from(u32::MAX) {
            return Outcome::Refused(MetadataError::InvalidConfig(format!("broker id {} is not 1..={}", b.id, u32::MAX)));
        }
        if b.client_address.len() > ADDRESS_BYTES_MAX || b.raft_address.len() > ADDRESS_BYTES_MAX {
            return Outcome::Refused(MetadataError::InvalidConfig(format!("broker {}'s addresses are too long", b.id)));
        }
        if !self.brokers.contains_key(&b.id) && self.brokers.len() >= BROKERS_MAX {
            return Outcome::Refused(MetadataError::InvalidConfig(format!("a cluster holds at most {BROKERS_MAX} brokers")));
        }
        self.next_broker_id = self.next_broker_id.max(b.id + 1);
        self.brokers.insert(b.id, b.clone());
        Outcome::Registered(b)
    }

    /// Applies one committed command.
    pub fn apply(&mut self, command: ClusterCommand) -> Outcome {
        match command {
            ClusterCommand::RegisterBroker(b) => self.register(b),
            ClusterCommand::RegisterNode { record, data_dir_id } => {
                self.apply(ClusterCommand::RegisterNodeInRack { record, data_dir_id, rack: None })
            }
            ClusterCommand::RegisterNodeInRack { record, data_dir_id, rack } => {
                let id = record.id;
                if let Some(Err(why)) = rack.as_deref().map(check_rack) {
                    return Outcome::Refused(MetadataError::InvalidConfig(format!("node {id}: {why}")));
                }
                if let Some(&bound) = self.data_dirs.get(&id).filter(|d| **d != data_dir_id) {
                    return Outcome::Refused(MetadataError::StaleIncarnation { node: id, registered: bound, presented: data_dir_id });
                }
                if let Some(other) = self.node_of_data_dir(data_dir_id).filter(|n| *n != id) {
                    return Outcome::Refused(MetadataError::InvalidConfig(format!(
                        "data directory {data_dir_id:016x} is node {other}'s, and node {id} presented it: start node {id} on its own data directory"
                    )));
                }
                let outcome = self.register(record);
                if matches!(outcome, Outcome::Registered(_)) {
                    self.data_dirs.insert(id, data_dir_id);
                    match rack {
                        Some(r) => self.racks.insert(id, r),
                        None => self.racks.remove(&id),
                    };
                }
                outcome
            }
            ClusterCommand::SetClusterId { cluster_id } => {
                if cluster_id == 0 {
                    return Outcome::Refused(MetadataError::InvalidConfig("a cluster id is never 0".into()));
                }
                Outcome::ClusterId(*self.cluster_id.get_or_insert(cluster_id))
            }
            ClusterCommand::ReassignPartition { name, partition, replicas } => {
                let Some(topic) = self.topics.get(&name) else { return Outcome::Refused(MetadataError::UnknownTopic(name)) };
                if let Err(e) = check_reassignment(topic, partition, &replicas, &self.brokers, &self.leaving) {
                    return Outcome::Refused(e);
                }
                if topic.assignment[partition as usize] == replicas {
                    // Already there: nothing to move.
                    return Outcome::Reassigned { topic: topic.clone(), partition, from: replicas };
                }
                let topic = self.topics.get_mut(&name).expect("checked above");
                topic.moving.insert(partition, replicas.clone());
                Outcome::ReassignmentStarted { topic: topic.clone(), partition, to: replicas }
            }
            ClusterCommand::ReassignmentDone { topic_id, partition, replicas } => {
                let Some(topic) = self.topics.values_mut().find(|t| t.record.id == topic_id) else {
                    return Outcome::Refused(MetadataError::UnknownTopic(format!("id {topic_id}")));
                };
                if topic.moving.get(&partition) != Some(&replicas) {
                    return Outcome::Refused(MetadataError::InvalidReplicaAssignment(format!(
                        "partition {partition} of topic {:?} is not being moved onto {replicas:?}",
                        topic.record.name
                    )));
                }
                topic.moving.remove(&partition);
                let from = std::mem::replace(&mut topic.assignment[partition as usize], replicas);
                Outcome::Reassigned { topic: topic.clone(), partition, from }
            }
            ClusterCommand::RemoveBroker { id } => self.remove(id),
            ClusterCommand::OffsetsLogMoved { replicas } => {
                if self.offsets_moving.as_ref() != Some(&replicas) {
                    return Outcome::Refused(MetadataError::InvalidReplicaAssignment(format!(
                        "the consumer offsets log is not being moved onto {replicas:?}"
                    )));
                }
                self.offsets_moving = None;
                let from = std::mem::replace(&mut self.offsets, replicas.clone());
                Outcome::OffsetsLogMoved { from, to: replicas }
            }
            ClusterCommand::BrokerRemoved { id } => {
                if !self.leaving.contains(&id) {
                    return Outcome::Refused(MetadataError::NodeNotFound(id));
                }
                if self.holds_replicas(id) {
                    return Outcome::Refused(MetadataError::InvalidReplicaAssignment(format!("node {id} still holds replicas")));
                }
                self.leaving.remove(&id);
                self.brokers.remove(&id);
                self.data_dirs.remove(&id);
                self.racks.remove(&id);
                self.removed.insert(id);
                Outcome::Removed(id)
            }
            ClusterCommand::JoinBroker { node_id, client_address, raft_address, data_dir_id } => {
                if let Some(b) = self.node_of_data_dir(data_dir_id).and_then(|id| self.brokers.get(&id)) {
                    // A retried join: the registration it already got.
                    return Outcome::Registered(b.clone());
                }
                if node_id != 0 && self.brokers.contains_key(&node_id) {
                    return Outcome::Refused(MetadataError::NodeExists(node_id));
                }
                let id = if node_id == 0 { self.next_broker_id } else { node_id };
                let outcome = self.register(BrokerRecord { id, client_address, raft_address, incarnation: 0 });
                if matches!(outcome, Outcome::Registered(_)) {
                    self.data_dirs.insert(id, data_dir_id);
                }
                outcome
            }
            ClusterCommand::CreateTopic { name, partitions, replicas, config } => {
                let brokers = self.placeable().len().min(usize::from(u16::MAX)) as u16;
                if replicas > brokers && replicas > 0 {
                    return Outcome::Refused(MetadataError::NotEnoughReplicas { got: replicas, brokers });
                }
                if let Err(e) = check_create(&name, partitions, replicas, &config, self.partitions_max, brokers.max(1), &self.defaults) {
                    return Outcome::Refused(e);
                }
                if self.topics.contains_key(&name) {
                    return Outcome::Refused(MetadataError::TopicExists(name));
                }
                if let Some(existing) = self.topics.keys().find(|n| n.eq_ignore_ascii_case(&name)) {
                    return Outcome::Refused(MetadataError::CaseCollision { name, existing: existing.clone() });
                }
                let log_config = effective_log_config(&self.defaults, &config).expect("checked above");
                let id = self.next_topic_id;
                // Group ids are `id << 16 | partition`: past 2^47 there are none.
                if id >= 1 << 47 {
                    return Outcome::Refused(MetadataError::IdsExhausted(id));
                }
                self.next_topic_id += 1;
                let nodes = self.placeable();
                let assignment = place(&nodes, &self.racks, id, partitions, replicas);
                let topic = ClusterTopic {
                    record: TopicRecord { id, name: name.clone(), partitions, replicas, config },
                    assignment,
                    moving: BTreeMap::new(),
                    log_config,
                };
                self.topics.insert(name, topic.clone());
                Outcome::Created(topic)
            }
            ClusterCommand::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(t) => Outcome::Deleted(t),
                None => Outcome::Refused(MetadataError::UnknownTopic(name)),
            },
            ClusterCommand::AddPartitions { name, total } => {
                let nodes = self.placeable();
                let Some(topic) = self.topics.get_mut(&name) else {
                    return Outcome::Refused(MetadataError::UnknownTopic(name));
                };
                let from = topic.record.partitions;
                if let Err(e) = check_add_partitions(&name, from, total, self.partitions_max) {
                    return Outcome::Refused(e);
                }
                // Placed as a topic created now with `total` partitions
                // would place them: the rotation of preferred leaders goes on.
                let placed = place(&nodes, &self.racks, topic.record.id, total, topic.record.replicas);
                topic.assignment.extend(placed.into_iter().skip(from as usize));
                topic.record.partitions = total;
                Outcome::PartitionsAdded { topic: topic.clone(), from }
            }
            ClusterCommand::AllocateProducerBlock { node } => {
                if self.next_block > super::BLOCK_MAX {
                    return Outcome::Refused(MetadataError::IdsExhausted(self.next_block));
                }
                let block = self.next_block;
                self.next_block += 1;
                Outcome::Block { node, block }
            }
        }
    }
}

impl ClusterMetadata {
    /// Starts removing node `id`: each partition with a replica on it moves
    /// to another node not already in its set, in its place in the list: in
    /// a rack the rest of the set lacks if one can be, then the least
    /// loaded (fewest replicas), then the lowest id.
    fn remove(&mut self, id: u64) -> Outcome {
        if !self.brokers.contains_key(&id) {
            return Outcome::Refused(if self.removed.contains(&id) {
                MetadataError::NodeRemoved(id)
            } else {
                MetadataError::NodeNotFound(id)
            });
        }
        if self.leaving.contains(&id) {
            // Asked again (a retry, or after a crash): it is under way.
            return Outcome::Removing { id, moves: Vec::new() };
        }
        let remaining: Vec<u64> = self.placeable().into_iter().filter(|n| *n != id).collect();
        if remaining.is_empty() {
            return Outcome::Refused(MetadataError::InvalidConfig(format!("node {id} is the cluster's last node: it cannot be removed")));
        }
        let mut load: BTreeMap<u64, usize> = remaining.iter().map(|n| (*n, 0)).collect();
        for t in self.topics.values() {
            for (p, r) in t.assignment.iter().enumerate() {
                // A move onto the node would land after the node's own moves
                // were planned, leaving a replica on a removed node.
                let moving_to = t.moving.get(&(p as u32));
                if moving_to.is_some_and(|to| r.contains(&id) || to.contains(&id)) {
                    return Outcome::Refused(MetadataError::ReassignmentInProgress {
                        topic: t.record.name.clone(),
                        partition: p as u32,
                        to: t.moving[&(p as u32)].clone(),
                    });
                }
                if r.contains(&id) && usize::from(t.record.replicas) > remaining.len() {
                    return Outcome::Refused(MetadataError::NotEnoughReplicas {
                        got: t.record.replicas,
                        brokers: remaining.len().min(usize::from(u16::MAX)) as u16,
                    });
                }
                for n in t.moving.get(&(p as u32)).unwrap_or(r) {
                    if let Some(l) = load.get_mut(n) {
                        *l += 1;
                    }
                }
            }
        }
        if let Some(to) = self.offsets_moving.as_ref().filter(|to| self.offsets.contains(&id) || to.contains(&id)) {
            return Outcome::Refused(MetadataError::ReassignmentInProgress {
                topic: OFFSETS_LOG_NAME.to_owned(),
                partition: 0,
                to: to.clone(),
            });
        }
        if let Some(at) = self.offsets.iter().position(|n| *n == id) {
            // In its place, or (every remaining node holds it already) without it.
            let mut to = self.offsets.clone();
            match replacement(&self.offsets, id, &load, &self.racks) {
                Some(with) => to[at] = with,
                None => {
                    to.remove(at);
                }
            }
            self.offsets_moving = Some(to);
        }
        let mut moves = Vec::new();
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            let t = self.topics.get_mut(&name).expect("listed");
            for p in 0..t.assignment.len() {
                let r = &t.assignment[p];
                let Some(at) = r.iter().position(|n| *n == id) else { continue };
                let Some(with) = replacement(r, id, &load, &self.racks) else { continue };
                *load.get_mut(&with).expect("a remaining node") += 1;
                let mut to = r.clone();
                to[at] = with;
                t.moving.insert(p as u32, to.clone());
                moves.push((t.clone(), p as u32, to));
            }
        }
        self.leaving.insert(id);
        Outcome::Removing { id, moves }
    }
}

impl Outcome {
    pub fn refused(self) -> Option<MetadataError> {
        match self {
            Outcome::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// What is wrong with moving partition `partition` of `topic` onto
/// `replicas`: the partition must exist and not be moving already, the list
/// must keep the replication factor and name distinct registered brokers,
/// none of them being removed (a replica placed on a leaving node would
/// keep it from ever leaving, and it no longer follows the metadata).
fn check_reassignment(
    topic: &ClusterTopic,
    partition: u32,
    replicas: &[u64],
    brokers: &BTreeMap<u64, BrokerRecord>,
    leaving: &std::collections::BTreeSet<u64>,
) -> Result<(), MetadataError> {
    let name = &topic.record.name;
    if partition >= topic.record.partitions {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "topic {name:?} has partitions 0..{}, not {partition}",
            topic.record.partitions
        )));
    }
    if let Some(to) = topic.moving.get(&partition) {
        return Err(MetadataError::ReassignmentInProgress { topic: name.clone(), partition, to: to.clone() });
    }
    if replicas.len() != usize::from(topic.record.replicas) {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "topic {name:?} has replication factor {}, and {} replicas were listed: list exactly {} nodes",
            topic.record.replicas,
            replicas.len(),
            topic.record.replicas
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in replicas {
        if !seen.insert(*n) {
            return Err(MetadataError::InvalidReplicaAssignment(format!("node {n} is listed twice: list distinct nodes")));
        }
        if !brokers.contains_key(n) {
            return Err(MetadataError::NodeNotFound(*n));
        }
        if leaving.contains(n) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "node {n} is being removed from the cluster: list nodes that stay"
            )));
        }
    }
    Ok(())
}

/// One command as one batch (its value postcard), stamped `now`.
pub fn encode(command: &ClusterCommand, now: Timestamp) -> Bytes {
    let value = postcard::to_stdvec(command).expect("commands serialise");
    let mut b = BatchBuilder::new(ProducerStamp::NONE);
    b.push(now.as_millis(), None, Some(&value), &[]);
    b.finish()
}

/// The commands in a decoded batch; a record that is not a command is
/// reported (the log is written only by brokers, so it means damage or a
/// newer version).
pub fn decode(batch: &RecordBatch) -> Vec<Result<ClusterCommand, String>> {
    batch
        .records()
        .map(|r| {
            let r = r.map_err(|e| e.to_string())?;
            let value = r.value.unwrap_or_default();
            postcard::from_bytes::<ClusterCommand>(&value).map_err(|e| format!("not a metadata command: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: u64) -> ClusterCommand {
        ClusterCommand::RegisterBroker(BrokerRecord {
            id,
            client_address: format!("127.0.0.1:{}", 9091 + id),
            raft_address: format!("127.0.0.1:{}", 9191 + id),
            incarnation: 1,
        })
    }

    fn create(name: &str, partitions: u32, replicas: u16) -> ClusterCommand {
        ClusterCommand::CreateTopic { name: name.into(), partitions, replicas, config: TopicSettings::default() }
    }

    fn cluster(n: u64) -> ClusterMetadata {
        let mut m = ClusterMetadata::new(LogConfig::default(), 100);
        for id in 1..=n {
            assert!(matches!(m.apply(broker(id)), Outcome::Registered(_)));
        }
        m
    }

    fn register_from(id: u64, data_dir_id: u64) -> ClusterCommand {
        let ClusterCommand::RegisterBroker(record) = broker(id) else { unreachable!() };
        ClusterCommand::RegisterNode { record, data_dir_id }
    }

    #[test]
    fn a_node_is_bound_to_its_first_data_directory_and_another_is_refused() {
        let mut m = cluster(0);
        assert!(matches!(m.apply(register_from(1, 0xa)), Outcome::Registered(_)));
        assert!(matches!(m.apply(register_from(1, 0xa)), Outcome::Registered(_)), "a restart on the same directory");
        let wiped = m.apply(register_from(1, 0xb)).refused();
        assert_eq!(wiped, Some(MetadataError::StaleIncarnation { node: 1, registered: 0xa, presented: 0xb }));
        assert!(wiped.unwrap().to_string().contains("remove-node 1"), "says what to do");
        assert!(matches!(m.apply(register_from(2, 0xa)), Outcome::Refused(MetadataError::InvalidConfig(_))), "node 1's directory");
        assert_eq!(m.data_dirs(), &BTreeMap::from([(1, 0xa)]));
        // A registration without a directory (older brokers) binds nothing.
        assert!(matches!(m.apply(broker(2)), Outcome::Registered(_)));
        assert!(matches!(m.apply(register_from(2, 0xc)), Outcome::Registered(_)), "the first binding");
        // A joined node is bound to the directory it joined from.
        let join = ClusterCommand::JoinBroker { node_id: 0, client_address: "h:1".into(), raft_address: "h:2".into(), data_dir_id: 0xd };
        let Outcome::Registered(joined) = m.apply(join) else { panic!() };
        assert_eq!(m.data_dirs().get(&joined.id), Some(&0xd));
        let rejoined = ClusterCommand::RegisterNode { record: joined.clone(), data_dir_id: 0xe };
        assert!(matches!(m.apply(rejoined), Outcome::Refused(MetadataError::StaleIncarnation { .. })));
    }

    fn register_in(id: u64, rack: Option<&str>) -> ClusterCommand {
        let ClusterCommand::RegisterBroker(record) = broker(id) else { unreachable!() };
        ClusterCommand::RegisterNodeInRack { record, data_dir_id: 0x100 + id, rack: rack.map(str::to_owned) }
    }

    #[test]
    fn racks_come_with_registration_and_spread_placement_and_removal() {
        let mut m = cluster(0);
        for (id, rack) in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")] {
            assert!(matches!(m.apply(register_in(id, Some(rack))), Outcome::Registered(_)));
        }
        assert_eq!(m.rack(4), Some("b"));
        assert!(matches!(m.apply(register_in(7, Some("../x"))), Outcome::Refused(MetadataError::InvalidConfig(_))));
        assert!(m.broker(7).is_none(), "a refused registration registers nothing");
        let Outcome::Created(t) = m.apply(create("t", 12, 3)) else { panic!() };
        for set in &t.assignment {
            assert_eq!(racks_spanned(set, m.racks()), 3, "{set:?} spans the three racks");
        }
        let Outcome::PartitionsAdded { topic, .. } = m.apply(ClusterCommand::AddPartitions { name: "t".into(), total: 18 }) else {
            panic!()
        };
        assert!(topic.assignment.iter().all(|set| racks_spanned(set, m.racks()) == 3));
        // Node 4 (rack b) leaves: each of its sets keeps racks a and c, so
        // node 5, rack b's other node, takes its place whatever the load.
        let Outcome::Removing { moves, .. } = m.apply(ClusterCommand::RemoveBroker { id: 4 }) else { panic!() };
        for (_, _, to) in &moves {
            assert_eq!(racks_spanned(to, m.racks()), 3, "node 4 (rack b) is replaced by node 5 (rack b): {to:?}");
            assert!(to.contains(&5));
        }
        // A restart without a rack forgets it.
        assert!(matches!(m.apply(register_in(1, None)), Outcome::Registered(_)));
        assert_eq!(m.rack(1), None);
        // Older brokers' registrations name no rack.
        assert!(matches!(m.apply(register_from(2, 0x102)), Outcome::Registered(_)));
        assert_eq!(m.rack(2), None);
    }

    #[test]
    fn the_first_cluster_id_applied_stays() {
        let mut m = cluster(1);
        assert_eq!(m.cluster_id(), None);
        assert_eq!(m.apply(ClusterCommand::SetClusterId { cluster_id: 5 }), Outcome::ClusterId(5));
        assert_eq!(m.apply(ClusterCommand::SetClusterId { cluster_id: 6 }), Outcome::ClusterId(5), "a racing leader's id loses");
        assert!(m.apply(ClusterCommand::SetClusterId { cluster_id: 0 }).refused().is_some());
        assert_eq!(m.cluster_id(), Some(5));
    }

    #[test]
    fn every_broker_applying_the_same_log_reaches_the_same_state() {
        let log =
            [broker(1), broker(2), broker(3), create("a", 3, 3), ClusterCommand::AllocateProducerBlock { node: 2 }, create("b", 2, 2)];
        let mut x = ClusterMetadata::new(LogConfig::default(), 100);
        let mut y = ClusterMetadata::new(LogConfig::default(), 100);
        let ox: Vec<Outcome> = log.iter().cloned().map(|c| x.apply(c)).collect();
        let oy: Vec<Outcome> = log.iter().cloned().map(|c| y.apply(c)).collect();
        assert_eq!(ox, oy);
        assert_eq!(x.topic("a").unwrap().record.id, 1);
        assert_eq!(x.topic("b").unwrap().record.id, 2);
        assert_eq!(x.topic("b").unwrap().assignment, y.topic("b").unwrap().assignment);
        assert_eq!(ox[4], Outcome::Block { node: 2, block: 0 });
    }

    #[test]
    fn refusals_change_nothing_and_ids_never_repeat() {
        let mut m = cluster(3);
        assert_eq!(m.apply(create("a", 1, 4)), Outcome::Refused(MetadataError::NotEnoughReplicas { got: 4, brokers: 3 }));
        assert!(matches!(m.apply(create("../x", 1, 1)), Outcome::Refused(MetadataError::InvalidName(_))));
        assert!(matches!(m.apply(create("a", 0, 1)), Outcome::Refused(MetadataError::InvalidPartitions { .. })));
        assert!(matches!(m.apply(create("a", 1, 0)), Outcome::Refused(MetadataError::InvalidReplication { .. })));
        let Outcome::Created(a) = m.apply(create("a", 1, 3)) else { panic!() };
        assert_eq!(m.apply(create("a", 1, 3)), Outcome::Refused(MetadataError::TopicExists("a".into())));
        assert!(matches!(m.apply(create("A", 1, 3)), Outcome::Refused(MetadataError::CaseCollision { .. })));
        assert!(matches!(m.apply(ClusterCommand::DeleteTopic { name: "a".into() }), Outcome::Deleted(_)));
        assert!(matches!(m.apply(ClusterCommand::DeleteTopic { name: "a".into() }), Outcome::Refused(MetadataError::UnknownTopic(_))));
        let Outcome::Created(again) = m.apply(create("a", 1, 3)) else { panic!() };
        assert!(again.record.id > a.record.id, "a recreated name gets a new id");
        assert!(m.check(&create("a", 1, 3)).is_err());
        assert!(m.check(&create("b", 1, 3)).is_ok());
        assert!(m.topic("b").is_none(), "check changes nothing");
        assert!(!m.producer_id_is_known(0));
        let Outcome::Block { block, .. } = m.apply(ClusterCommand::AllocateProducerBlock { node: 1 }) else { panic!() };
        let Outcome::Block { block: next, .. } = m.apply(ClusterCommand::AllocateProducerBlock { node: 3 }) else { panic!() };
        assert_eq!((block, next), (0, 1));
        assert!(m.producer_id_is_known(5) && m.producer_id_is_known(IDS_PER_BLOCK + 5) && !m.producer_id_is_known(2 * IDS_PER_BLOCK));
        assert!(m.producer_id_is_known(-1) && !m.producer_id_is_known(-2));
    }

    #[test]
    fn added_partitions_are_placed_as_a_new_topic_would_place_them() {
        let mut m = cluster(3);
        let Outcome::Created(t) = m.apply(create("a", 2, 2)) else { panic!() };
        let grow = |total| ClusterCommand::AddPartitions { name: "a".into(), total };
        let Outcome::PartitionsAdded { topic, from } = m.apply(grow(5)) else { panic!() };
        assert_eq!(from, 2);
        assert_eq!(topic.record.partitions, 5);
        assert_eq!(&topic.assignment[..2], &t.assignment[..], "existing partitions stay where they are");
        assert_eq!(topic.assignment, place(&[1, 2, 3], &BTreeMap::new(), t.record.id, 5, 2));
        assert_eq!(m.topic("a").unwrap(), &topic);
        assert!(matches!(m.apply(grow(5)), Outcome::Refused(MetadataError::PartitionsCannotShrink { current: 5, got: 5, .. })));
        assert!(matches!(m.apply(grow(3)), Outcome::Refused(MetadataError::PartitionsCannotShrink { .. })));
        assert!(matches!(m.apply(grow(101)), Outcome::Refused(MetadataError::InvalidPartitions { got: 101, max: 100 })));
        assert!(matches!(
            m.apply(ClusterCommand::AddPartitions { name: "b".into(), total: 2 }),
            Outcome::Refused(MetadataError::UnknownTopic(_))
        ));
        assert_eq!(m.topic("a").unwrap().record.partitions, 5, "refusals change nothing");
    }

    #[test]
    fn a_join_gets_a_fresh_id_once_and_a_taken_id_is_refused() {
        let mut m = cluster(3);
        let join = |node_id, dir| ClusterCommand::JoinBroker {
            node_id,
            client_address: "127.0.0.1:9095".into(),
            raft_address: "127.0.0.1:9195".into(),
            data_dir_id: dir,
        };
        let Outcome::Registered(b) = m.apply(join(0, 77)) else { panic!() };
        assert_eq!(b.id, 4, "above every registered id");
        assert_eq!(m.apply(join(0, 77)), Outcome::Registered(b.clone()), "a retried join gets the same id");
        assert_eq!(m.node_of_data_dir(77), Some(4));
        assert_eq!(m.apply(join(2, 78)), Outcome::Refused(MetadataError::NodeExists(2)));
        let Outcome::Registered(c) = m.apply(join(9, 79)) else { panic!() };
        assert_eq!(c.id, 9);
        let Outcome::Registered(d) = m.apply(join(0, 80)) else { panic!() };
        assert_eq!(d.id, 10, "ids are never reused or handed out twice");
        assert_eq!(m.brokers().count(), 6);
    }

    #[test]
    fn a_reassignment_is_checked_started_once_and_finished_by_its_exact_list() {
        let mut m = cluster(4);
        let Outcome::Created(t) = m.apply(create("a", 2, 3)) else { panic!() };
        let old = t.assignment[0].clone();
        let spare = (1..=4).find(|n| !old.contains(n)).unwrap();
        let to = vec![spare, old[0], old[1]];
        let move_to = |replicas: Vec<u64>| ClusterCommand::ReassignPartition { name: "a".into(), partition: 0, replicas };
        assert!(matches!(m.apply(move_to(vec![1, 2])), Outcome::Refused(MetadataError::InvalidReplicaAssignment(_))), "R changed");
        assert!(matches!(m.apply(move_to(vec![1, 1, 2])), Outcome::Refused(MetadataError::InvalidReplicaAssignment(_))), "a node twice");
        assert_eq!(m.apply(move_to(vec![1, 2, 9])), Outcome::Refused(MetadataError::NodeNotFound(9)));
        assert!(matches!(
            m.apply(ClusterCommand::ReassignPartition { name: "a".into(), partition: 5, replicas: to.clone() }),
            Outcome::Refused(MetadataError::InvalidReplicaAssignment(_))
        ));
        assert!(matches!(m.apply(move_to(old.clone())), Outcome::Reassigned { .. }), "already there: nothing to do");
        let Outcome::ReassignmentStarted { to: started, .. } = m.apply(move_to(to.clone())) else { panic!() };
        assert_eq!(started, to);
        assert_eq!(m.topic("a").unwrap().assignment[0], old, "the assignment changes only when done");
        assert!(matches!(m.apply(move_to(to.clone())), Outcome::Refused(MetadataError::ReassignmentInProgress { .. })));
        let done = |replicas| ClusterCommand::ReassignmentDone { topic_id: t.record.id, partition: 0, replicas };
        assert!(matches!(m.apply(done(old.clone())), Outcome::Refused(_)), "only the list being moved to finishes it");
        let Outcome::Reassigned { from, topic, .. } = m.apply(done(to.clone())) else { panic!() };
        assert_eq!((from, topic.assignment[0].clone()), (old, to.clone()));
        assert!(m.topic("a").unwrap().moving.is_empty());
        assert!(matches!(m.apply(done(to)), Outcome::Refused(_)), "finished once");
    }

    #[test]
    fn a_removal_moves_every_replica_to_the_least_loaded_others_and_refuses_what_cannot_hold() {
        let mut m = cluster(4);
        let Outcome::Created(_) = m.apply(create("a", 4, 3)) else { panic!() };
        let Outcome::Created(_) = m.apply(create("b", 1, 4)) else { panic!() };
        assert_eq!(
            m.apply(ClusterCommand::RemoveBroker { id: 2 }),
            Outcome::Refused(MetadataError::NotEnoughReplicas { got: 4, brokers: 3 }),
            "topic b needs 4 nodes"
        );
        let Outcome::Deleted(_) = m.apply(ClusterCommand::DeleteTopic { name: "b".into() }) else { panic!() };
        let Outcome::Removing { id, moves } = m.apply(ClusterCommand::RemoveBroker { id: 2 }) else { panic!() };
        assert_eq!(id, 2);
        assert_eq!(moves.len(), 3, "node 2 held three of a's four partitions");
        for (t, p, to) in &moves {
            assert!(!to.contains(&2) && to.len() == 3, "{to:?}");
            let mut set = to.clone();
            set.sort();
            set.dedup();
            assert_eq!(set.len(), 3, "distinct");
            assert_eq!(t.moving.get(p), Some(to));
        }
        assert!(matches!(m.apply(ClusterCommand::RemoveBroker { id: 2 }), Outcome::Removing { moves, .. } if moves.is_empty()), "a retry");
        assert!(matches!(m.apply(ClusterCommand::BrokerRemoved { id: 2 }), Outcome::Refused(_)), "still holds replicas");
        let Outcome::Created(c) = m.apply(create("c", 3, 3)) else { panic!() };
        assert!(c.assignment.iter().all(|r| !r.contains(&2)), "new topics avoid a leaving node");
        let onto_leaving = m.apply(ClusterCommand::ReassignPartition { name: "c".into(), partition: 0, replicas: vec![1, 2, 3] });
        assert!(
            matches!(&onto_leaving, Outcome::Refused(MetadataError::InvalidReplicaAssignment(m)) if m.contains("node 2 is being removed")),
            "{onto_leaving:?}"
        );
        let a = m.topic("a").unwrap().clone();
        for (p, to) in a.moving.clone() {
            m.apply(ClusterCommand::ReassignmentDone { topic_id: a.record.id, partition: p, replicas: to });
        }
        assert!(!m.holds_replicas(2));
        assert_eq!(m.apply(ClusterCommand::BrokerRemoved { id: 2 }), Outcome::Removed(2));
        assert_eq!(m.apply(broker(2)), Outcome::Refused(MetadataError::NodeRemoved(2)), "a removed node is refused");
        assert_eq!(m.apply(ClusterCommand::RemoveBroker { id: 2 }), Outcome::Refused(MetadataError::NodeRemoved(2)));
        let mut one = cluster(1);
        assert!(
            matches!(one.apply(ClusterCommand::RemoveBroker { id: 1 }), Outcome::Refused(MetadataError::InvalidConfig(_))),
            "the last node"
        );
    }

    #[test]
    fn a_node_a_move_is_bringing_replicas_onto_is_not_removed_until_it_lands() {
        let mut m = cluster(4);
        let Outcome::Created(t) = m.apply(create("a", 1, 3)) else { panic!() };
        let spare = (1..=4).find(|n| !t.assignment[0].contains(n)).unwrap();
        let mut to = t.assignment[0].clone();
        to[0] = spare;
        let Outcome::ReassignmentStarted { .. } =
            m.apply(ClusterCommand::ReassignPartition { name: "a".into(), partition: 0, replicas: to.clone() })
        else {
            panic!()
        };
        let refused = m.apply(ClusterCommand::RemoveBroker { id: spare });
        assert!(matches!(refused, Outcome::Refused(MetadataError::ReassignmentInProgress { .. })), "{refused:?}");
        assert!(m.leaving().next().is_none(), "a refusal changes nothing");
        m.apply(ClusterCommand::ReassignmentDone { topic_id: t.record.id, partition: 0, replicas: to });
        let Outcome::Removing { moves, .. } = m.apply(ClusterCommand::RemoveBroker { id: spare }) else { panic!() };
        assert_eq!(moves.len(), 1, "the landed replica moves off again");
        assert!(!moves[0].2.contains(&spare));
    }

    #[test]
    fn removing_a_node_of_the_offsets_log_moves_the_log_and_waits_for_it() {
        let mut m = cluster(4).with_offsets_log(vec![1, 2, 3]);
        assert!(m.holds_replicas(1) && !m.holds_replicas(4), "the offsets log is a replica too");
        let Outcome::Removing { .. } = m.apply(ClusterCommand::RemoveBroker { id: 1 }) else { panic!() };
        assert_eq!((m.offsets_replicas(), m.offsets_moving()), (&[1, 2, 3][..], Some(&[4, 2, 3][..])), "in its place");
        assert!(m.holds_offsets_log(4) && m.holds_replicas(1));
        let refused = m.apply(ClusterCommand::RemoveBroker { id: 4 });
        assert!(
            matches!(&refused, Outcome::Refused(MetadataError::ReassignmentInProgress { topic, .. }) if topic == OFFSETS_LOG_NAME),
            "{refused:?}"
        );
        assert!(matches!(m.apply(ClusterCommand::BrokerRemoved { id: 1 }), Outcome::Refused(_)), "the offsets log is still on it");
        assert!(matches!(m.apply(ClusterCommand::OffsetsLogMoved { replicas: vec![2, 3, 4] }), Outcome::Refused(_)), "the exact list");
        assert_eq!(
            m.apply(ClusterCommand::OffsetsLogMoved { replicas: vec![4, 2, 3] }),
            Outcome::OffsetsLogMoved { from: vec![1, 2, 3], to: vec![4, 2, 3] }
        );
        assert_eq!((m.offsets_replicas(), m.offsets_moving()), (&[4, 2, 3][..], None));
        assert_eq!(m.apply(ClusterCommand::BrokerRemoved { id: 1 }), Outcome::Removed(1));
        // Three nodes left, all holding it: a removal shrinks it.
        let Outcome::Removing { .. } = m.apply(ClusterCommand::RemoveBroker { id: 2 }) else { panic!() };
        assert_eq!(m.offsets_moving(), Some(&[4, 3][..]));
    }

    #[test]
    fn commands_round_trip_through_a_batch() {
        let command = create("orders", 3, 3);
        let bytes = encode(&command, Timestamp(5));
        let (batch, rest) = RecordBatch::decode(&bytes, usize::MAX).unwrap();
        assert!(rest.is_empty());
        assert_eq!(decode(&batch), vec![Ok(command)]);
    }
}
