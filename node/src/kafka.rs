//! A Kafka client's connection on the client port: frames in, answers out
//! in request order (`weir_net::kafka` decodes, checks versions and
//! encodes; this reads the socket under the same bounds as a native
//! connection and asks the broker). As there, the buffer grows only as
//! bytes arrive, and a frame larger than a read chunk is read only once
//! the broker-wide `request_bytes_queued_max` budget holds all of it. A request this build does not answer
//! closes the connection, logged with the client, API and version.

use crate::broker::Broker;
use crate::tasks::stopped;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use weir_core::metadata::MetadataError;
use weir_core::metadata::TopicSettings;
use weir_net::Response;
use weir_net::frame::READ_CHUNK_BYTES;
use weir_net::kafka::request::{self, NewTopic, Refused, Request};
use weir_net::kafka::response::{self, BrokerView, MetadataView, PartitionView, TopicResult, TopicView};
use weir_net::kafka::{code, frame_len};
use weir_net::message::{CreateTopicRequest, DeleteTopicRequest, MetadataRequest, MetadataResponse, TopicConfig};
use weir_net::{ErrorCode, WireError};

/// Serves a connection whose first bytes (in `buf`) are a Kafka request.
pub async fn connection<R, W>(
    mut rd: R,
    mut wr: W,
    mut buf: BytesMut,
    peer: SocketAddr,
    broker: Arc<Broker>,
    budget: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let cfg = broker.config().clone();
    let mut idle_deadline = Instant::now() + cfg.idle_timeout;
    let mut frame_deadline: Option<Instant> = Some(Instant::now() + cfg.frame_timeout);
    // Budget held for the large frame being read, until it is answered.
    let mut permit: Option<OwnedSemaphorePermit> = None;
    tracing::debug!(%peer, "Kafka connection opened");
    let reason = loop {
        // Answer every whole frame buffered, in order.
        match frame_len(&buf, cfg.frame_bytes_max.min(weir_net::kafka::FRAME_BYTES_MAX)) {
            Some(Err(why)) => break format!("{why}; closing"),
            Some(Ok(n)) if buf.len() >= 4 + n => {
                let frame = buf.split_to(4 + n).split_off(4).freeze();
                frame_deadline = None;
                match answer(&broker, frame).await {
                    Ok(Some(out)) => {
                        let written = async {
                            wr.write_all(&out).await?;
                            wr.flush().await
                        };
                        if let Err(e) = written.await {
                            break format!("write failed: {e}");
                        }
                    }
                    Ok(None) => {}
                    Err(why) => break why,
                }
                permit = None;
                idle_deadline = Instant::now() + cfg.idle_timeout;
                continue;
            }
            Some(Ok(n)) => {
                frame_deadline.get_or_insert(Instant::now() + cfg.frame_timeout);
                if 4 + n > READ_CHUNK_BYTES && buf.len() >= READ_CHUNK_BYTES && permit.is_none() {
                    let wait = budget.clone().acquire_many_owned(crate::server::kib(4 + n));
                    tokio::select! {
                        biased;
                        _ = stopped(&mut shutdown) => break "broker shutting down".to_owned(),
                        p = wait => permit = p.ok(),
                        _ = tokio::time::sleep_until(frame_deadline.unwrap_or(idle_deadline)) => {
                            break format!("no complete frame within {} ms", cfg.frame_timeout.as_millis());
                        }
                    }
                }
                // Grown as the frame's bytes arrive, never to a length merely announced.
                buf.reserve((4 + n - buf.len()).min(READ_CHUNK_BYTES));
            }
            None if !buf.is_empty() => {
                frame_deadline.get_or_insert(Instant::now() + cfg.frame_timeout);
            }
            None => buf.reserve(64),
        }
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break "broker shutting down".to_owned(),
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "peer closed".to_owned(),
                Ok(_) => idle_deadline = Instant::now() + cfg.idle_timeout,
                Err(e) => break format!("read failed: {e}"),
            },
            _ = tokio::time::sleep_until(frame_deadline.unwrap_or(idle_deadline)), if frame_deadline.is_some() => {
                break format!("no complete frame within {} ms", cfg.frame_timeout.as_millis());
            }
            _ = tokio::time::sleep_until(idle_deadline) => break "idle timeout".to_owned(),
        }
    };
    if reason.starts_with("peer closed") || reason.starts_with("idle") || reason.starts_with("broker shutting") {
        tracing::debug!(%peer, %reason, "Kafka connection closed");
    } else {
        tracing::warn!(%peer, %reason, "Kafka connection closed");
    }
    let _ = wr.shutdown().await;
}

/// The framed answer to one request (`None`: none is due), or why the
/// connection closes.
async fn answer(broker: &Arc<Broker>, frame: bytes::Bytes) -> Result<Option<BytesMut>, String> {
    let encoded = match request::decode(frame) {
        Ok((h, Request::ApiVersions { software })) => {
            tracing::debug!(client = %h.client(), ?software, version = h.api_version, "Kafka ApiVersions");
            response::api_versions(h.correlation_id, h.api_version, code::NONE)
        }
        Ok((h, Request::Metadata { topics, allow_auto_create })) => {
            if let Some(names) = topics.as_deref().filter(|_| allow_auto_create && broker.config().auto_create_topics) {
                auto_create(broker, names).await?;
            }
            let view = metadata_view(broker, topics).await?;
            response::metadata(h.correlation_id, h.api_version, &view)
        }
        Ok((h, Request::CreateTopics { topics, validate_only, .. })) => {
            let all = native_metadata(broker).await?;
            let mut results = Vec::with_capacity(topics.len());
            for t in topics {
                results.push(create_topic(broker, &all, t, validate_only).await);
            }
            response::create_topics(h.correlation_id, h.api_version, &results)
        }
        Ok((h, Request::DeleteTopics { names, .. })) => {
            let mut results = Vec::with_capacity(names.len());
            for name in names {
                let deleted = broker.handle(weir_net::Request::DeleteTopic(DeleteTopicRequest { name: name.clone() })).await;
                results.push(match deleted {
                    Ok(_) => TopicResult { name, error: code::NONE, message: None },
                    Err(e) => TopicResult { name, error: kafka_code(&e), message: Some(e.message) },
                });
            }
            response::delete_topics(h.correlation_id, h.api_version, &results)
        }
        Err((h, Refused::ApiVersionsTooNew)) => {
            tracing::debug!(client = %h.client(), version = h.api_version, "Kafka ApiVersions newer than ours: answered at version 0");
            response::api_versions(h.correlation_id, 0, code::UNSUPPORTED_VERSION)
        }
        Err((_, Refused::Close(why))) => return Err(why),
    };
    encoded.map(Some).map_err(|e| e.to_string())
}

/// Kafka node ids are i32: a Weir node id beyond that cannot be named (-1).
fn node(id: u64) -> i32 {
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
async fn auto_create(broker: &Arc<Broker>, names: &[String]) -> Result<(), String> {
    let all = native_metadata(broker).await?;
    let missing = names.iter().filter(|n| !all.topics.iter().any(|t| &t.name == *n)).take(AUTO_CREATE_PER_REQUEST_MAX);
    for name in missing {
        let t = NewTopic { name: name.clone(), partitions: -1, replication: -1, assignments: 0, configs: Vec::new() };
        let r = create_topic(broker, &all, t, false).await;
        match r.error {
            code::NONE => tracing::info!(topic = %name, "created a topic a Kafka client asked for (auto_create_topics)"),
            code::TOPIC_ALREADY_EXISTS => {}
            _ => tracing::debug!(topic = %name, error = ?r.message, "a topic a Kafka client asked for was not created"),
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
        let bad = || fail(code::INVALID_CONFIG, format!("{key} = {value:?} is not a number"));
        match key.as_str() {
            "retention.ms" => match number {
                Some(n) => config.retention_ms = Some(n),
                None => return bad(),
            },
            "retention.bytes" => match number {
                Some(-1) => config.retention_bytes = None,
                Some(n) if n >= 0 => config.retention_bytes = Some(n as u64),
                _ => return bad(),
            },
            "segment.bytes" => match number {
                Some(n) if n > 0 => config.segment_bytes = Some(n as u64),
                _ => return bad(),
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
        if all.topics.iter().any(|x| x.name == t.name) {
            return fail(code::TOPIC_ALREADY_EXISTS, format!("topic {:?} already exists", t.name));
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
async fn metadata_view(broker: &Arc<Broker>, topics: Option<Vec<String>>) -> Result<MetadataView, String> {
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
                    None => TopicView { name, error: code::UNKNOWN_TOPIC_OR_PARTITION, partitions: Vec::new() },
                })
                .collect()
        }
    };
    Ok(MetadataView { brokers, cluster_id, controller_id: controller.map_or(-1, node), topics })
}
