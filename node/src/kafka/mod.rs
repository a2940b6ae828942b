//! A Kafka client's connection on the client port: frames in, answers out
//! in request order (`weir_net::kafka` decodes, checks versions and
//! encodes; this reads the socket under the same bounds as a native
//! connection and asks the broker), pipelined as native requests are. As
//! there, the buffer grows only as
//! bytes arrive, and a frame larger than a read chunk is read only once
//! the broker-wide `request_bytes_queued_max` budget holds all of it. A request this build does not answer
//! closes the connection, logged with the client, API and version.

use crate::broker::Broker;
use crate::tasks::stopped;
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use weir_net::frame::READ_CHUNK_BYTES;
use weir_net::kafka::request::{self, Refused, Request};
use weir_net::kafka::response;
use weir_net::kafka::{code, frame_len};

mod admin;
mod data;
mod groups;

/// An answer being prepared: the framed bytes (`None`: none is due) or why
/// the connection closes, with the request's response-bytes estimate and
/// the budget its frame held.
type Answer = (Result<Option<BytesMut>, String>, usize, Option<OwnedSemaphorePermit>);

/// Serves a connection whose first bytes (in `buf`) are a Kafka request.
/// Requests are pipelined as native ones are: up to
/// `in_flight_per_connection_max` are worked on at once and answered in
/// request order, while the responses they may hold stay within
/// `response_bytes_queued_per_connection_max` (a Fetch counts as a whole
/// frame). Each starts in arrival order, so produces to one partition are
/// appended in the order they were sent.
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
    let frame_max = cfg.frame_bytes_max.min(weir_net::kafka::FRAME_BYTES_MAX);
    let mut idle_deadline = Instant::now() + cfg.idle_timeout;
    let mut frame_deadline: Option<Instant> = Some(Instant::now() + cfg.frame_timeout);
    // Budget held for the large frame being read, until it is answered.
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut in_flight: FuturesOrdered<Pin<Box<dyn Future<Output = Answer> + Send>>> = FuturesOrdered::new();
    let mut response_bytes = 0usize;
    let mut closing: Option<String> = None;
    // Turns true once the connection is closing: held group requests stop waiting.
    let (gone_tx, gone) = watch::channel(false);
    tracing::debug!(%peer, "Kafka connection opened");
    loop {
        if closing.is_some() {
            gone_tx.send_replace(true);
        }
        // Start every whole frame buffered, in order, within the bounds.
        let mut partial = None;
        while closing.is_none() && in_flight.len() < cfg.in_flight_per_connection_max {
            match frame_len(&buf, frame_max) {
                Some(Err(why)) => closing = Some(format!("{why}; closing")),
                Some(Ok(n)) if buf.len() >= 4 + n => {
                    let estimate = response_estimate(&buf[4..], n, frame_max);
                    if !in_flight.is_empty() && response_bytes + estimate > cfg.response_bytes_queued_per_connection_max {
                        break;
                    }
                    let frame = buf.split_to(4 + n).split_off(4).freeze();
                    frame_deadline = None;
                    response_bytes += estimate;
                    let (broker, held, gone) = (broker.clone(), permit.take(), gone.clone());
                    in_flight.push_back(Box::pin(async move { (answer(&broker, frame, peer, gone).await, estimate, held) }));
                }
                Some(Ok(n)) => {
                    frame_deadline.get_or_insert(Instant::now() + cfg.frame_timeout);
                    partial = Some(4 + n);
                    break;
                }
                None if !buf.is_empty() => {
                    frame_deadline.get_or_insert(Instant::now() + cfg.frame_timeout);
                    break;
                }
                None => break,
            }
        }
        if closing.is_some() && in_flight.is_empty() {
            break;
        }
        // A frame larger than a read chunk is read only with budget for all of it.
        let needs_budget = partial.is_some_and(|whole| whole > READ_CHUNK_BYTES && buf.len() >= READ_CHUNK_BYTES) && permit.is_none();
        let can_read = closing.is_none() && in_flight.len() < cfg.in_flight_per_connection_max && !needs_budget;
        if can_read {
            // Grown as the frame's bytes arrive, never to a length merely announced.
            match partial {
                Some(whole) => buf.reserve((whole - buf.len()).min(READ_CHUNK_BYTES)),
                None => buf.reserve(64),
            }
        }
        tokio::select! {
            biased;
            Some((answered, estimate, held)) = in_flight.next(), if !in_flight.is_empty() => {
                response_bytes -= estimate;
                drop(held);
                match answered {
                    Ok(Some(out)) => {
                        if let Err(e) = crate::server::write_all_within(&mut wr, &out, cfg.frame_timeout).await {
                            // A client that hangs up with answers due is ordinary (a consumer closing).
                            let gone = matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset);
                            closing = Some(if gone { format!("peer closed before its answer: {e}") } else { format!("write failed: {e}") });
                            break;
                        }
                    }
                    Ok(None) => {}
                    // Later answers cannot be sent out of order: the connection closes.
                    Err(why) => {
                        closing = Some(why);
                        break;
                    }
                }
                idle_deadline = Instant::now() + cfg.idle_timeout;
            }
            p = budget.clone().acquire_many_owned(crate::server::kib(partial.unwrap_or(0))), if needs_budget && closing.is_none() => {
                permit = p.ok();
            }
            r = rd.read_buf(&mut buf), if can_read => match r {
                Ok(0) => closing = Some("peer closed".to_owned()),
                Ok(_) => idle_deadline = Instant::now() + cfg.idle_timeout,
                Err(e) => closing = Some(format!("read failed: {e}")),
            },
            _ = stopped(&mut shutdown), if closing.is_none() => closing = Some("broker shutting down".to_owned()),
            _ = tokio::time::sleep_until(frame_deadline.unwrap_or(idle_deadline)), if frame_deadline.is_some() && closing.is_none() => {
                closing = Some(format!("no complete frame within {} ms", cfg.frame_timeout.as_millis()));
            }
            _ = tokio::time::sleep_until(idle_deadline), if in_flight.is_empty() && closing.is_none() => {
                closing = Some("idle timeout".to_owned());
            }
        }
    }
    let reason = closing.unwrap_or_default();
    if reason.starts_with("peer closed") || reason.starts_with("idle") || reason.starts_with("broker shutting") {
        tracing::debug!(%peer, %reason, "Kafka connection closed");
    } else {
        tracing::warn!(%peer, %reason, "Kafka connection closed");
    }
    let _ = wr.shutdown().await;
}

/// Response bytes a request may hold: a Fetch up to a whole frame, any
/// other about its own size.
fn response_estimate(frame: &[u8], len: usize, frame_max: usize) -> usize {
    let key = frame.get(..2).map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
    if key == weir_net::kafka::versions::FETCH { frame_max } else { 2 * len + 4096 }
}

/// The framed answer to one request (`None`: none is due), or why the
/// connection closes.
async fn answer(
    broker: &Arc<Broker>,
    frame: bytes::Bytes,
    peer: SocketAddr,
    gone: watch::Receiver<bool>,
) -> Result<Option<BytesMut>, String> {
    let encoded = match request::decode(frame) {
        Ok((h, Request::ApiVersions { software })) => {
            tracing::debug!(client = %h.client(), ?software, version = h.api_version, "Kafka ApiVersions");
            response::api_versions(h.correlation_id, h.api_version, code::NONE)
        }
        Ok((h, Request::Metadata { topics, allow_auto_create })) => {
            if let Some(names) = topics.as_deref().filter(|_| allow_auto_create && broker.config().auto_create_topics) {
                admin::auto_create(broker, names).await?;
            }
            let view = admin::metadata_view(broker, topics).await?;
            response::metadata(h.correlation_id, h.api_version, &view)
        }
        Ok((h, Request::CreateTopics { topics, validate_only, .. })) => {
            let results = admin::create_topics(broker, topics, validate_only).await?;
            response::create_topics(h.correlation_id, h.api_version, &results)
        }
        Ok((h, Request::DeleteTopics { names, .. })) => {
            let results = admin::delete_topics(broker, names).await;
            response::delete_topics(h.correlation_id, h.api_version, &results)
        }
        Ok((h, Request::Produce { transactional_id, acks, timeout_ms, topics })) => {
            let results = data::produce(broker, transactional_id, acks, timeout_ms, topics).await;
            if acks == 0 {
                // Kafka answers no acks=0 produce, not even with an error.
                return Ok(None);
            }
            response::produce(h.correlation_id, h.api_version, &results)
        }
        Ok((h, Request::Fetch { max_wait_ms, min_bytes, max_bytes, topics, .. })) => {
            let cfg = broker.config();
            // Room for the response's own fields inside the frame limit.
            let frame_room = cfg.frame_bytes_max.saturating_sub(64 << 10).max(1);
            let limits = data::FetchLimits {
                max_wait: Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0)).min(cfg.fetch_wait_max),
                min_bytes: usize::try_from(min_bytes).unwrap_or(0),
                max_bytes: usize::try_from(max_bytes).unwrap_or(0).clamp(1, frame_room),
            };
            let results = data::fetch(broker, &topics, limits).await;
            response::fetch(h.correlation_id, h.api_version, &results)
        }
        Ok((h, Request::ListOffsets { topics })) => {
            let results = data::list_offsets(broker, topics).await;
            response::list_offsets(h.correlation_id, h.api_version, &results)
        }
        Ok((h, Request::InitProducerId { transactional_id })) => {
            let (error, id, epoch) = data::init_producer_id(broker, transactional_id).await;
            response::init_producer_id(h.correlation_id, h.api_version, error, id, epoch)
        }
        Ok((h, Request::Group(r))) => groups::answer(broker, &h, r, peer, gone).await,
        Err((h, Refused::ApiVersionsTooNew)) => {
            tracing::debug!(client = %h.client(), version = h.api_version, "Kafka ApiVersions newer than ours: answered at version 0");
            response::api_versions(h.correlation_id, 0, code::UNSUPPORTED_VERSION)
        }
        Err((_, Refused::Close(why))) => return Err(why),
    };
    encoded.map(Some).map_err(|e| e.to_string())
}
