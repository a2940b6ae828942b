//! The cluster's metadata as a pure state machine: topics with their ids,
//! partition counts, replication and effective log settings, and the blocks
//! producer ids and topic ids are handed out from. On a single node the
//! broker runs it directly; the metadata Raft group will run the same
//! commands in log order on every voter.
//!
//! Discipline (as for group commits): a command validates and *reserves*,
//! returning the [`Effect`]s the caller must make durable; only then does
//! the caller report them done ([`MetadataState::topic_created`],
//! [`MetadataState::topic_deleted`], [`MetadataState::block_persisted`]),
//! and only then is the change visible. A failed effect is reported with
//! [`MetadataState::create_failed`]; nothing is half-applied.
//!
//! Ids are never handed out twice: producer ids and topic ids are
//! `block << 24 | n`, and a block number (the node's boot counter) is
//! durable before any id from it is used (see [`IdBlocks`]).

pub mod cluster;
mod placement;
mod records;
#[cfg(test)]
mod tests;

pub use records::{TopicRecord, TopicSettings};

use crate::log::LogConfig;
use std::collections::BTreeMap;
use thiserror::Error;

/// Ids per block: `block << 24 | n`.
pub const IDS_PER_BLOCK: i64 = 1 << 24;
/// The last block whose ids fit an `i64`: past it, no id is handed out
/// (rather than one that wraps negative, which would mean "no producer").
pub const BLOCK_MAX: u64 = (i64::MAX / IDS_PER_BLOCK) as u64 - 1;

/// What the node's configuration bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Most partitions one topic may have.
    pub partitions_max: u32,
    /// Brokers that can hold replicas (1 on a single node).
    pub brokers: u16,
}

/// Why a metadata command was refused. Each says what to do instead; the
/// node maps them onto wire codes in one place.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    #[error("{0}")]
    InvalidName(String),
    #[error("partitions must be 1..={max}, got {got}")]
    InvalidPartitions { got: u32, max: u32 },
    #[error("replication factor {got} is not possible with {brokers} broker(s): use 1..={brokers}")]
    InvalidReplication { got: u16, brokers: u16 },
    #[error(
        "replication factor {got} needs {got} brokers, and {brokers} can hold replicas (nodes being removed cannot): add brokers, or use at most {brokers}"
    )]
    NotEnoughReplicas { got: u16, brokers: u16 },
    #[error("{0}")]
    InvalidConfig(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {name:?} differs from the existing topic {existing:?} only in case: choose another name")]
    CaseCollision { name: String, existing: String },
    #[error("topic {0:?} is being created or deleted: retry shortly")]
    Busy(String),
    #[error("topic {0:?} does not exist: create it first (weirctl topic create {0})")]
    UnknownTopic(String),
    #[error("node {0} is already a member of the cluster: join with another --node-id, or without one to get a fresh id")]
    NodeExists(u64),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("partition {partition} of topic {topic:?} is being moved to nodes {to:?} already: wait for that to finish, then retry")]
    ReassignmentInProgress { topic: String, partition: u32, to: Vec<u64> },
    #[error("node {0} is not registered in the cluster: check weirctl cluster status")]
    NodeNotFound(u64),
    #[error("node {0} was removed from the cluster: wipe its data directory and join it again (weir --join) to use the machine")]
    NodeRemoved(u64),
    #[error(
        "node {node} presented data directory {presented:016x}, but the cluster registered {registered:016x} for it: its data was wiped or replaced, so it could vote twice; remove the node (weirctl cluster remove-node {node}) and join it again with an empty data directory (weir --join)"
    )]
    StaleIncarnation { node: u64, registered: u64, presented: u64 },
    /// A partition count only grows: its records' keys map to partitions.
    #[error(
        "topic {name:?} has {current} partition(s): a topic's partition count can only grow, ask for more than {current} (at most {max})"
    )]
    PartitionsCannotShrink { name: String, current: u32, got: u32, max: u32 },
    /// Every id block is used (the boot counter reached `BLOCK_MAX`).
    #[error("no ids are left to hand out (block {0} is the last): the data directory's boot counter was pushed to its end")]
    IdsExhausted(u64),
}

/// What the caller must make durable before reporting a command done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create the topic's partitions, then write its record: the record
    /// being durable is the create's commit point.
    CreateTopic(TopicRecord),
    /// Create partitions `from..record.partitions` of the topic, then write
    /// its record: the record being durable is the commit point.
    AddPartitions { record: TopicRecord, from: u32 },
    /// Remove the topic and its data; moving it aside is the commit point.
    DeleteTopic(TopicRecord),
    /// Persist this id block (the boot counter) before any id from it is used.
    PersistBlock(u64),
    /// Rewrite a record recovered without an id, now that it has one.
    RewriteTopic(TopicRecord),
}

/// A topic as metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub record: TopicRecord,
    /// The topic's settings applied over the node's defaults.
    pub log_config: LogConfig,
}

/// Hands out ids `block << 24 | n` from the current block; a block must be
/// persisted before its first id is used, and is never used again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdBlocks {
    block: Option<u64>,
    next: i64,
}

impl IdBlocks {
    fn starting_at(block: u64) -> Self {
        IdBlocks { block: Some(block), next: 0 }
    }

    /// The next id, or the block that must be persisted first (`None`:
    /// every block is used).
    fn next(&mut self, newest_block: u64) -> Result<i64, Option<u64>> {
        match self.block {
            Some(b) if self.next < IDS_PER_BLOCK && b <= BLOCK_MAX => {
                let id = (b as i64) * IDS_PER_BLOCK + self.next;
                self.next += 1;
                Ok(id)
            }
            _ => Err((newest_block < BLOCK_MAX).then_some(newest_block + 1)),
        }
    }
}

/// The metadata state machine. See the module documentation.
#[derive(Debug)]
pub struct MetadataState {
    defaults: LogConfig,
    limits: MetadataLimits,
    topics: BTreeMap<String, TopicMeta>,
    /// Creates and deletes whose effects are under way, by topic name.
    pending: BTreeMap<String, u64>,
    /// The newest block persisted (the boot counter).
    newest_block: u64,
    producer_ids: IdBlocks,
    topic_ids: IdBlocks,
}

impl MetadataState {
    /// The state after a start: `block` is the boot counter just persisted
    /// (above every producer id the data holds), `records` the topics found
    /// on disk. Records from before topic ids get one now; the returned
    /// effects rewrite them.
    pub fn recover(
        defaults: LogConfig,
        limits: MetadataLimits,
        block: u64,
        records: Vec<TopicRecord>,
    ) -> Result<(Self, Vec<Effect>), MetadataError> {
        let mut state = MetadataState {
            defaults,
            limits,
            topics: BTreeMap::new(),
            pending: BTreeMap::new(),
            newest_block: block,
            producer_ids: IdBlocks::starting_at(block),
            topic_ids: IdBlocks::starting_at(block),
        };
        // Ids from this block must not meet recorded ones: the caller
        // persists a block above them (the broker raises its floor).
        if let Some(r) = records.iter().find(|r| r.id != 0 && (r.id >> 24) >= block) {
            return Err(MetadataError::InvalidConfig(format!(
                "topic {:?} has id {} from block {}, not below the current block {block}: ids would repeat",
                r.name,
                r.id,
                r.id >> 24
            )));
        }
        let mut effects = Vec::new();
        for mut record in records {
            let log_config = effective_log_config(&state.defaults, &record.config).map_err(MetadataError::InvalidConfig)?;
            if record.id == 0 {
                record.id = state.topic_ids.next(block).map_err(|_| MetadataError::IdsExhausted(block))? as u64;
                effects.push(Effect::RewriteTopic(record.clone()));
            }
            state.topics.insert(record.name.clone(), TopicMeta { record, log_config });
        }
        Ok((state, effects))
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicMeta> {
        self.topics.values()
    }

    /// Validates a create and reserves the name and an id. On `Ok`, carry
    /// out the effect, then call `topic_created` (or `create_failed`).
    pub fn create_topic(&mut self, name: &str, partitions: u32, replicas: u16, config: TopicSettings) -> Result<Effect, MetadataError> {
        check_create(name, partitions, replicas, &config, self.limits.partitions_max, self.limits.brokers, &self.defaults)?;
        if self.pending.contains_key(name) {
            return Err(MetadataError::Busy(name.to_owned()));
        }
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_owned()));
        }
        let clash = self.topics.keys().chain(self.pending.keys()).find(|n| n.eq_ignore_ascii_case(name));
        if let Some(existing) = clash {
            // Their directories would be one on a case-insensitive file system.
            return Err(MetadataError::CaseCollision { name: name.to_owned(), existing: existing.clone() });
        }
        let id = match self.topic_ids.next(self.newest_block) {
            Ok(id) => id as u64,
            // 16 M creates in one boot: the next start gives a new block.
            Err(_) => return Err(MetadataError::Busy(name.to_owned())),
        };
        self.pending.insert(name.to_owned(), id);
        Ok(Effect::CreateTopic(TopicRecord { id, name: name.to_owned(), partitions, replicas, config }))
    }

    /// The create's record is durable: the topic exists.
    pub fn topic_created(&mut self, record: TopicRecord) {
        assert_eq!(self.pending.remove(&record.name), Some(record.id), "only a reserved create completes");
        let log_config = effective_log_config(&self.defaults, &record.config).expect("validated when reserved");
        self.topics.insert(record.name.clone(), TopicMeta { record, log_config });
    }

    /// The create's effects failed: nothing was committed. The id stays used.
    pub fn create_failed(&mut self, name: &str) {
        self.pending.remove(name);
    }

    /// Validates growing `name` to `total` partitions and reserves the
    /// topic. On `Ok`, carry out the effect, then call `partitions_added`
    /// (or `add_partitions_failed`).
    pub fn add_partitions(&mut self, name: &str, total: u32) -> Result<Effect, MetadataError> {
        if self.pending.contains_key(name) {
            return Err(MetadataError::Busy(name.to_owned()));
        }
        let meta = self.topics.get(name).ok_or_else(|| MetadataError::UnknownTopic(name.to_owned()))?;
        let from = meta.record.partitions;
        check_add_partitions(name, from, total, self.limits.partitions_max)?;
        self.pending.insert(name.to_owned(), meta.record.id);
        Ok(Effect::AddPartitions { record: TopicRecord { partitions: total, ..meta.record.clone() }, from })
    }

    /// The grown record is durable: the new partitions exist.
    pub fn partitions_added(&mut self, record: TopicRecord) {
        assert_eq!(self.pending.remove(&record.name), Some(record.id), "only a reserved change completes");
        let meta = self.topics.get_mut(&record.name).expect("a reserved topic stays until its change completes");
        assert!(record.partitions > meta.record.partitions, "partition counts only grow");
        meta.record = record;
    }

    /// The grow's effects failed: the topic keeps its partitions.
    pub fn add_partitions_failed(&mut self, name: &str) {
        self.pending.remove(name);
    }

    /// Reserves a delete. On `Ok`, carry out the effect, then call `topic_deleted`.
    pub fn delete_topic(&mut self, name: &str) -> Result<Effect, MetadataError> {
        if self.pending.contains_key(name) {
            return Err(MetadataError::Busy(name.to_owned()));
        }
        let meta = self.topics.get(name).ok_or_else(|| MetadataError::UnknownTopic(name.to_owned()))?;
        self.pending.insert(name.to_owned(), meta.record.id);
        Ok(Effect::DeleteTopic(meta.record.clone()))
    }

    /// The delete is committed: the topic is gone.
    pub fn topic_deleted(&mut self, name: &str) {
        self.pending.remove(name);
        self.topics.remove(name);
    }

    /// The delete's commit failed: the topic stays.
    pub fn delete_failed(&mut self, name: &str) {
        self.pending.remove(name);
    }

    /// A fresh producer id, or `Ok(Err(Effect::PersistBlock(b)))`: persist
    /// it, call `block_persisted(b)` and ask again.
    pub fn allocate_producer_id(&mut self) -> Result<Result<i64, Effect>, MetadataError> {
        match self.producer_ids.next(self.newest_block) {
            Ok(id) => Ok(Ok(id)),
            Err(Some(block)) => Ok(Err(Effect::PersistBlock(block))),
            Err(None) => Err(MetadataError::IdsExhausted(self.newest_block)),
        }
    }

    /// Whether `producer_id` could have been handed out (by this node, in
    /// this or an earlier boot): -1 means no idempotence; any other negative
    /// id, or one from a block not yet reached, was never handed out.
    pub fn producer_id_is_known(&self, producer_id: i64) -> bool {
        producer_id == -1 || (producer_id >= 0 && (producer_id / IDS_PER_BLOCK) as u64 <= self.newest_block)
    }

    /// Block `block` is durable: producer ids continue from it.
    pub fn block_persisted(&mut self, block: u64) {
        assert!(block > self.newest_block, "blocks only move forward");
        self.newest_block = block;
        self.producer_ids = IdBlocks::starting_at(block);
    }

    /// The newest block persisted (the boot counter).
    pub fn newest_block(&self) -> u64 {
        self.newest_block
    }
}

/// What is wrong with a create on its own terms (name, partition count,
/// replication, settings), whatever topics exist: one check for the single
/// node and the cluster.
pub fn check_create(
    name: &str,
    partitions: u32,
    replicas: u16,
    config: &TopicSettings,
    partitions_max: u32,
    brokers: u16,
    defaults: &LogConfig,
) -> Result<(), MetadataError> {
    crate::name::validate(name).map_err(|e| MetadataError::InvalidName(e.to_string()))?;
    let max = partitions_max.min(PARTITIONS_LIMIT);
    if partitions == 0 || partitions > max {
        return Err(MetadataError::InvalidPartitions { got: partitions, max });
    }
    if replicas == 0 || replicas > brokers {
        return Err(MetadataError::InvalidReplication { got: replicas, brokers });
    }
    effective_log_config(defaults, config).map_err(MetadataError::InvalidConfig)?;
    Ok(())
}

/// Most partitions a topic can have: a partition's Raft group id holds its
/// number in 16 bits.
pub const PARTITIONS_LIMIT: u32 = 1 << 16;

/// What is wrong with growing topic `name` from `current` to `total`
/// partitions: one check for the single node and the cluster.
pub fn check_add_partitions(name: &str, current: u32, total: u32, partitions_max: u32) -> Result<(), MetadataError> {
    let max = partitions_max.min(PARTITIONS_LIMIT);
    if total <= current {
        return Err(MetadataError::PartitionsCannotShrink { name: name.to_owned(), current, got: total, max });
    }
    if total > max {
        return Err(MetadataError::InvalidPartitions { got: total, max });
    }
    Ok(())
}

/// A topic's settings applied over the node's defaults, or what is wrong
/// with them.
pub fn effective_log_config(defaults: &LogConfig, c: &TopicSettings) -> Result<LogConfig, String> {
    let mut log = defaults.clone();
    if let Some(b) = c.segment_bytes {
        if !(4096..=2 << 30).contains(&b) {
            return Err(format!("segment_bytes must be between 4096 and {}, got {b}", 2u64 << 30));
        }
        log.segment_bytes_max = b;
    }
    if let Some(ms) = c.retention_ms {
        log.retention_ms = ms_or_unbounded("retention_ms", ms)?;
    }
    if let Some(b) = c.retention_bytes {
        log.retention_bytes = Some(b);
    }
    Ok(log)
}

/// A duration setting where -1 means "forever" (or "no bound"): any other
/// negative value means nothing and is refused.
pub fn ms_or_unbounded(name: &str, ms: i64) -> Result<Option<i64>, String> {
    match ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(ms)),
        ms => Err(format!("{name} must be -1 (no limit) or at least 0, got {ms}")),
    }
}
