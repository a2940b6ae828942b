//! Kafka's admin and metadata requests, answered from the metadata native
//! clients get: Metadata (and auto-create), CreateTopics, DeleteTopics.

use crate::broker::Broker;
use std::sync::Arc;
use weir_core::metadata::MetadataError;
use weir_core::metadata::TopicSettings;
use weir_net::Response;
use weir_net::kafka::code;
use weir_net::kafka::request::NewTopic;
use weir_net::kafka::response::{BrokerView, MetadataView, PartitionView, TopicResult, TopicView};
use weir_net::message::{CreateTopicRequest, DeleteTopicRequest, MetadataRequest, MetadataResponse, TopicConfig};
use weir_net::{ErrorCode, WireError};

/// Answers a CreateTopics: each topic created (or, `validate_only`,
/// checked) on its own; a name given twice is refused in every entry.
pub(super) async fn create_topics(broker: &Arc<Broker>, topics: Vec<NewTopic>, validate_only: bool) -> Result<Vec<TopicResult>, String> {
    let all = native_metadata(broker).await?;
    let dups = duplicates(topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(topics.len());
    for t in topics {
        results.push(match dups.contains(t.name.as_str()) {
            true => duplicate(&t.name),
            false => create_topic(broker, &all, t, validate_only).await,
        });
    }
    Ok(results)
}

/// Answers a DeleteTopics: each topic deleted on its own.
pub(super) async fn delete_topics(broker: &Arc<Broker>, names: Vec<String>) -> Vec<TopicResult> {
    let dups = duplicates(names.iter().map(String::as_str));
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        if dups.contains(name.as_str()) {
            results.push(duplicate(&name));
            continue;
        }
        let deleted = broker.handle(weir_net::Request::DeleteTopic(DeleteTopicRequest { name: name.clone() })).await;
        results.push(match deleted {
            Ok(_) => TopicResult { name, error: code::NONE, message: None },
            Err(e) => TopicResult { name, error: kafka_code(&e), message: Some(e.message) },
        });
    }
    results
}

/// The names given more than once in one request: Kafka refuses each of
/// their entries (INVALID_REQUEST) rather than act on one of them.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    let mut dups = std::collections::HashSet::new();
    for n in names {
        if !seen.insert(n) {
            dups.insert(n.to_owned());
        }
    }
    dups
}

fn duplicate(name: &str) -> TopicResult {
    TopicResult {
        name: name.to_owned(),
        error: code::INVALID_REQUEST,
        message: Some(format!("topic {name:?} is named more than once in this request: name each topic once")),
    }
}

/// Kafka node ids are i32: a Weir node id beyond that cannot be named (-1).
pub(super) fn node(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// Every topic and broker, as native clients get them.
async fn native_metadata(broker: &Arc<Broker>) -> Result<MetadataResponse, String> {
    match broker.handle(weir_net::Request::Metadata(MetadataRequest { topics: None })).await {
        Ok(Response::Metadata(m)) => Ok(m),
        Ok(_) => Err("the broker answered a metadata request with another response".to_owned()),
        Err(e) => Err(format!("metadata unavailable: {}", e.message)),
    }
}

/// The Kafka error code for a native error.
fn kafka_code(e: &WireError) -> i16 {
    match e.code() {
        ErrorCode::TopicAlreadyExists => code::TOPIC_ALREADY_EXISTS,
        ErrorCode::UnknownTopic => code::UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode::InvalidName => code::INVALID_TOPIC_EXCEPTION,
        ErrorCode::InvalidPartitions => code::INVALID_PARTITIONS,
        ErrorCode::InvalidReplication | ErrorCode::NotEnoughReplicas => code::INVALID_REPLICATION_FACTOR,
        ErrorCode::InvalidConfig => code::INVALID_CONFIG,
        ErrorCode::Timeout | ErrorCode::Busy | ErrorCode::LeaderNotAvailable | ErrorCode::NotLeader | ErrorCode::ShuttingDown => {
            code::REQUEST_TIMED_OUT
        }
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

/// The Kafka error code for a create refused on its own terms.
fn kafka_create_code(e: &MetadataError) -> i16 {
    match e {
        MetadataError::InvalidName(_) => code::INVALID_TOPIC_EXCEPTION,
        MetadataError::InvalidPartitions { .. } => code::INVALID_PARTITIONS,
        MetadataError::InvalidReplication { .. } | MetadataError::NotEnoughReplicas { .. } => code::INVALID_REPLICATION_FACTOR,
        MetadataError::InvalidConfig(_) => code::INVALID_CONFIG,
        MetadataError::TopicExists(_) | MetadataError::CaseCollision { .. } => code::TOPIC_ALREADY_EXISTS,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

/// Most replicas a CreateTopics asking for the default (-1) gets: three,
/// or as many brokers as there are.
const DEFAULT_REPLICAS_MAX: usize = 3;

/// Most topics one Metadata request creates: a client naming thousands of
/// unknown topics gets the first ones (the rest stay unknown).
const AUTO_CREATE_PER_REQUEST_MAX: usize = 64;

/// Creates the topics among `names` that do not exist, as Kafka does for a
/// Metadata request that allows it: `default_partitions`, the default
/// replication, the cluster's log settings. A name that is invalid, or a
/// create that fails, leaves the topic unknown (its Metadata entry says so).
pub(super) async fn auto_create(broker: &Arc<Broker>, names: &[String]) -> Result<(), String> {
    let all = native_metadata(broker).await?;
    let missing = names.iter().filter(|n| !all.topics.iter().any(|t| &t.name == *n)).take(AUTO_CREATE_PER_REQUEST_MAX);
    for name in missing {
        let t = NewTopic { name: name.clone(), partitions: -1, replication: -1, assignments: 0, configs: Vec::new() };
        let r = create_topic(broker, &all, t, false).await;
        match r.error {
            code::NONE => tracing::info!(topic = %name, "created a topic a Kafka client asked for (auto_create_topics)"),
            code::TOPIC_ALREADY_EXISTS => {}
            _ => tracing::warn!(topic = %name, error = ?r.message, "a topic a Kafka client asked for was not created"),
        }
    }
    Ok(())
}

/// One topic of a CreateTopics: Kafka's -1 defaults (1 partition; up to
/// three replicas), the settings Weir keeps (`retention.ms`,
/// `retention.bytes`, `segment.bytes`; any other is refused with
/// INVALID_CONFIG), and `validate_only` checked as a create would be.
async fn create_topic(broker: &Arc<Broker>, all: &MetadataResponse, t: NewTopic, validate_only: bool) -> TopicResult {
    let name = t.name.clone();
    let fail = |error: i16, message: String| TopicResult { name: name.clone(), error, message: Some(message) };
    if t.assignments > 0 {
        return fail(
            code::INVALID_REPLICA_ASSIGNMENT,
            "Weir places replicas itself: give a partition count and a replication factor (move replicas afterwards with weirctl topic reassign)".to_owned(),
        );
    }
    let partitions = match t.partitions {
        -1 => broker.config().default_partitions,
        n if n >= 1 => n as u32,
        n => return fail(code::INVALID_PARTITIONS, format!("{n} partitions: use 1 or more, or -1 for the default (default_partitions)")),
    };
    let brokers = all.brokers.len().max(1);
    let replicas = match t.replication {
        -1 => brokers.min(DEFAULT_REPLICAS_MAX) as u16,
        n if n >= 1 => n as u16,
        n => return fail(code::INVALID_REPLICATION_FACTOR, format!("replication factor {n}: use 1 or more, or -1 for the default")),
    };
    let mut config = TopicConfig::default();
    for (key, value) in &t.configs {
        let number = value.as_deref().and_then(|v| v.trim().parse::<i64>().ok());
        let bad = |want: &str| fail(code::INVALID_CONFIG, format!("{key} = {value:?}: {want}"));
        match key.as_str() {
            "retention.ms" => match number {
                Some(n) => config.retention_ms = Some(n),
                None => return bad("give milliseconds, or -1 for no time limit"),
            },
            "retention.bytes" => match number {
                Some(-1) => config.retention_bytes = None,
                Some(n) if n >= 0 => config.retention_bytes = Some(n as u64),
                _ => return bad("give bytes (0 or more), or -1 for no size limit"),
            },
            "segment.bytes" => match number {
                Some(n) if n > 0 => config.segment_bytes = Some(n as u64),
                _ => return bad("give a positive number of bytes"),
            },
            other => {
                return fail(
                    code::INVALID_CONFIG,
                    format!("topic config {other:?} is not supported: Weir takes retention.ms, retention.bytes and segment.bytes"),
                );
            }
        }
    }
    if validate_only {
        if let Some(x) = all.topics.iter().find(|x| x.name.eq_ignore_ascii_case(&t.name)) {
            return match x.name == t.name {
                true => fail(code::TOPIC_ALREADY_EXISTS, format!("topic {:?} already exists", t.name)),
                false => fail(code::TOPIC_ALREADY_EXISTS, format!("topic {:?} differs from {:?} only in case", t.name, x.name)),
            };
        }
        let cfg = broker.config();
        let settings = TopicSettings {
            retention_bytes: config.retention_bytes,
            retention_ms: config.retention_ms,
            segment_bytes: config.segment_bytes,
        };
        let brokers = u16::try_from(brokers).unwrap_or(u16::MAX);
        return match weir_core::metadata::check_create(&t.name, partitions, replicas, &settings, cfg.partitions_max, brokers, &cfg.log) {
            Ok(()) => TopicResult { name, error: code::NONE, message: None },
            Err(e) => fail(kafka_create_code(&e), e.to_string()),
        };
    }
    let created = broker.handle(weir_net::Request::CreateTopic(CreateTopicRequest { name: t.name, partitions, replicas, config })).await;
    match created {
        Ok(_) => TopicResult { name, error: code::NONE, message: None },
        Err(e) => fail(kafka_code(&e), e.message),
    }
}

/// What a Metadata answer says, from the metadata native clients get.
pub(super) async fn metadata_view(broker: &Arc<Broker>, topics: Option<Vec<String>>) -> Result<MetadataView, String> {
    let all = native_metadata(broker).await?;
    let (cluster_id, controller) = broker.kafka_identity();
    let brokers = all
        .brokers
        .iter()
        .map(|b| BrokerView { node_id: node(b.node_id), host: b.host.clone(), port: i32::from(b.port), rack: None })
        .collect();
    let describe = |t: &weir_net::message::TopicMetadata| TopicView {
        name: t.name.clone(),
        error: code::NONE,
        partitions: t
            .partitions
            .iter()
            .map(|p| {
                let replicas: Vec<i32> = p.replicas.iter().map(|n| node(*n)).collect();
                PartitionView {
                    index: i32::try_from(p.partition).unwrap_or(i32::MAX),
                    error: if p.leader.is_some() { code::NONE } else { code::LEADER_NOT_AVAILABLE },
                    leader: p.leader.map_or(-1, node),
                    // Replica lag is not in the metadata yet: every replica is listed in sync.
                    isr: replicas.clone(),
                    replicas,
                }
            })
            .collect(),
    };
    let topics = match topics {
        None => all.topics.iter().map(describe).collect(),
        Some(names) => {
            let by_name: std::collections::HashMap<&str, &weir_net::message::TopicMetadata> =
                all.topics.iter().map(|t| (t.name.as_str(), t)).collect();
            names
                .into_iter()
                .map(|name| match by_name.get(name.as_str()) {
                    Some(t) => describe(t),
                    None => {
                        let error = match weir_core::name::validate(&name) {
                            Ok(()) => code::UNKNOWN_TOPIC_OR_PARTITION,
                            Err(_) => code::INVALID_TOPIC_EXCEPTION,
                        };
                        TopicView { name, error, partitions: Vec::new() }
                    }
                })
                .collect()
        }
    };
    Ok(MetadataView { brokers, cluster_id, controller_id: controller.map_or(-1, node), topics })
}
