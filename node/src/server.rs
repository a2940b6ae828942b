//! The TCP front end: accepts connections up to a bound (and a share of it
//! per client address), reads frames, runs up to
//! `in_flight_per_connection_max` requests of a connection at once and
//! writes their responses in request order. A frame that cannot be parsed
//! gets an error response when its correlation id is readable, then the
//! connection is closed with the reason logged; nothing a client sends can
//! stop the broker from serving others.
//!
//! Memory a client can make the broker hold is bounded three ways: a read
//! buffer grows only as bytes arrive (never to a length merely announced);
//! a frame larger than [`weir_net::frame::READ_CHUNK_BYTES`] is read only
//! once the broker-wide budget `request_bytes_queued_max` holds it; and a
//! connection's requests in progress count the bytes their responses may
//! take (`response_bytes_queued_per_connection_max`), so one that does not
//! read its responses stops being read from.

use crate::broker::Broker;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use weir_net::frame::{self, FrameFault, READ_CHUNK_BYTES};
use weir_net::message::{ApiKey, VERSION_MIN};
use weir_net::{ErrorCode, Request, Response, WireError};

pub use crate::tasks::{Shutdown, stopped};

/// A warning that may repeat fast (refused connections, accept failures):
/// logged at most once per interval, with how many were suppressed.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    const INTERVAL: Duration = Duration::from_secs(10);

    /// Returns how many were suppressed since the last log line if one may
    /// be logged now.
    fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < Self::INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Connections held per client address.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection's slot in [`PerAddress`]; released on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(table: &Arc<PerAddress>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { table: table.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// How long a quiet connection keeps a large response buffer.
const OUT_BUFFER_KEEP: Duration = Duration::from_secs(1);

/// Budget units are KiB, so a permit count fits a u32 for any budget.
pub(crate) fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as usize) as u32
}

/// Serves `listener` until shutdown, then waits for connections to drain.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let cfg = broker.config().clone();
    let limit = cfg.connections_max;
    let connections = Arc::new(Semaphore::new(limit));
    let per_address = Arc::new(PerAddress::default());
    let request_budget = Arc::new(Semaphore::new(kib(cfg.request_bytes_queued_max) as usize));
    let mut refused_log = RateLimited::default();
    let mut accept_log = RateLimited::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(suppressed) = accept_log.check() {
                    tracing::warn!(error = %e, suppressed, "accept failed; backing off");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = PerAddress::take(&per_address, peer.ip(), cfg.connections_per_ip_max) else {
            if let Some(suppressed) = refused_log.check() {
                tracing::warn!(%peer, limit = cfg.connections_per_ip_max, suppressed, "connection refused: the client's address is at connections_per_ip_max");
            }
            let why = format!("the broker is at its limit of {} connections from one address: retry later", cfg.connections_per_ip_max);
            tokio::spawn(refuse(stream, why));
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Some(suppressed) = refused_log.check() {
                tracing::warn!(%peer, limit, suppressed, "connection refused: at connections_max");
            }
            tokio::spawn(refuse(stream, format!("the broker is at its connection limit ({limit}): retry later")));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let budget = request_budget.clone();
        tokio::spawn(async move {
            connection(stream, peer, broker, budget, shutdown).await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it has answered what it read.
    let _ = connections.acquire_many(limit as u32).await;
}

/// Answers a connection over a limit with one Busy error frame, then closes.
async fn refuse(mut stream: TcpStream, why: String) {
    let mut out = BytesMut::new();
    Response::encode(ApiKey::ApiVersions, 0, &Err(WireError::new(ErrorCode::Busy, why)), &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&out).await?;
        stream.flush().await
    })
    .await;
}

/// A request's answer, and the budget it held until answered.
/// (API key, version, correlation id, result, response estimate, frame permit)
type Answer = (u16, u16, u32, Result<Response, WireError>, usize, Option<OwnedSemaphorePermit>);

/// Bytes a request's response may take, counted against the connection's
/// response budget while it is in progress.
fn response_estimate(req: &Result<Request, WireError>, frame_bytes_max: usize) -> usize {
    match req {
        Ok(Request::Fetch(f)) => (f.max_bytes as usize).min(frame_bytes_max),
        _ => READ_CHUNK_BYTES,
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>, budget: Arc<Semaphore>, mut shutdown: watch::Receiver<bool>) {
    let cfg = broker.config().clone();
    // `io::split` rather than `into_split`: madsim's simulated stream has only the former.
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = BytesMut::new();
    // Large payloads (fetched batches) go to the socket uncopied, after
    // their frame's head: the pieces of one write, in order.
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut in_flight = FuturesOrdered::new();
    let mut closing: Option<String> = None;
    let mut idle_deadline = Instant::now() + cfg.idle_timeout;
    // The first frame, and every frame once started, must complete in time.
    let mut frame_deadline = Some(Instant::now() + cfg.frame_timeout);
    // Budget held for the large frame being read.
    let mut frame_permit: Option<OwnedSemaphorePermit> = None;
    let mut response_bytes = 0usize;
    let mut first_frame = true;
    let mut last_write = Instant::now();
    tracing::debug!(%peer, "connection opened");
    if cfg.kafka_enabled {
        // The first 8 bytes tell a Kafka client from a native one (every
        // native frame is longer); a peer that sends fewer in time is the
        // loop's to time out.
        let first = async {
            while buf.len() < 8 {
                if rd.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            Ok::<_, std::io::Error>(())
        };
        let deadline = frame_deadline.unwrap_or(idle_deadline);
        let sniffed = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            r = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), first) => r,
        };
        match sniffed {
            Ok(Ok(())) if weir_net::kafka::looks_like_kafka(&buf) => {
                return crate::kafka::connection(rd, wr, buf, peer, broker, budget, shutdown).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection closed: read failed");
                return;
            }
            _ => {}
        }
    }
    loop {
        // Take every whole frame already buffered, up to the bounds.
        while closing.is_none()
            && in_flight.len() < cfg.in_flight_per_connection_max
            && (in_flight.is_empty() || response_bytes < cfg.response_bytes_queued_per_connection_max)
        {
            match frame::decode(&mut buf, cfg.frame_bytes_max) {
                Ok(Some(f)) => {
                    first_frame = false;
                    // Each frame gets its own deadline, counted from when it starts.
                    frame_deadline = None;
                    let (key, version, id) = (f.header.api_key, f.header.api_version, f.header.correlation_id);
                    let req = Request::decode(&f);
                    let estimate = response_estimate(&req, cfg.frame_bytes_max);
                    response_bytes += estimate;
                    let permit = frame_permit.take();
                    let broker = broker.clone();
                    in_flight.push_back(Box::pin(async move {
                        let result = match req {
                            Ok(req) => broker.handle(req).await,
                            Err(e) => Err(e),
                        };
                        (key, version, id, result, estimate, permit)
                    }) as std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>);
                }
                Ok(None) => break,
                Err(e) => {
                    let foreign = frame::foreign_protocol(&buf).filter(|_| first_frame);
                    let reason = match foreign {
                        Some(proto) => format!("the peer speaks {proto}, not the Weir protocol (is it pointed at the right port?)"),
                        None => format!("bad frame: {e}"),
                    };
                    // A Kafka client (Kafka off) would take a Weir error
                    // frame's bytes for a length and read on: it is only closed.
                    if let Some(ids) = e.ids.filter(|_| foreign != Some("Kafka")) {
                        let code = if matches!(e.fault, FrameFault::TooLarge { .. }) {
                            ErrorCode::MessageTooLarge
                        } else {
                            ErrorCode::InvalidRequest
                        };
                        let err = WireError::new(code, format!("{e}; closing the connection"));
                        in_flight.push_back(Box::pin(async move { (ids.api_key, VERSION_MIN, ids.correlation_id, Err(err), 0, None) }));
                    }
                    closing = Some(reason);
                    break;
                }
            }
        }
        if closing.is_some() && in_flight.is_empty() {
            break;
        }
        let partial = frame::partial_len(&buf);
        match partial {
            None if !first_frame => frame_deadline = None,
            Some(_) if frame_deadline.is_none() => frame_deadline = Some(Instant::now() + cfg.frame_timeout),
            _ => {}
        }
        // A large frame is read only with budget for all of it.
        let needs_budget = partial.is_some_and(|len| len > READ_CHUNK_BYTES && buf.len() >= READ_CHUNK_BYTES) && frame_permit.is_none();
        let can_read = closing.is_none()
            && in_flight.len() < cfg.in_flight_per_connection_max
            && (in_flight.is_empty() || response_bytes < cfg.response_bytes_queued_per_connection_max)
            && !needs_budget;
        if can_read {
            match partial {
                // A small frame, or a large one whose budget is held: room
                // for all of it at once (one allocation, no copies).
                Some(whole) if whole <= READ_CHUNK_BYTES || frame_permit.is_some() => buf.reserve(whole - buf.len()),
                _ if buf.capacity() - buf.len() < READ_CHUNK_BYTES => buf.reserve(READ_CHUNK_BYTES),
                _ => {}
            }
        }
        tokio::select! {
            biased;
            Some((key, version, id, result, estimate, permit)) = in_flight.next(), if !in_flight.is_empty() => {
                response_bytes -= estimate;
                encode_answer(key, version, id, &result, &mut out, &mut pieces);
                drop(permit);
                // Pick up whatever else is already done, then write once.
                while let Some(Some((key, version, id, result, estimate, permit))) = futures::FutureExt::now_or_never(in_flight.next()) {
                    response_bytes -= estimate;
                    encode_answer(key, version, id, &result, &mut out, &mut pieces);
                    drop(permit);
                }
                if !pieces.is_empty() && !out.is_empty() {
                    pieces.push(out.split().freeze());
                }
                // Flush: a no-op on a real socket, but simulated sockets send on flush.
                let stall = cfg.frame_timeout;
                let written = async {
                    if pieces.is_empty() { write_all_within(&mut wr, &out, stall).await } else { write_pieces(&mut wr, &mut pieces, stall).await }
                };
                if let Err(e) = written.await {
                    tracing::debug!(%peer, error = %e, "write failed; closing");
                    return;
                }
                out.clear();
                last_write = Instant::now();
                idle_deadline = last_write + cfg.idle_timeout;
            }
            permit = budget.clone().acquire_many_owned(kib(partial.unwrap_or(0))), if needs_budget && closing.is_none() => {
                frame_permit = permit.ok();
            }
            r = rd.read_buf(&mut buf), if can_read => {
                match r {
                    Ok(0) => closing = Some("peer closed".to_owned()),
                    Ok(_) => idle_deadline = Instant::now() + cfg.idle_timeout,
                    Err(e) => closing = Some(format!("read failed: {e}")),
                }
            }
            _ = stopped(&mut shutdown), if closing.is_none() => closing = Some("broker shutting down".to_owned()),
            _ = tokio::time::sleep_until(frame_deadline.unwrap_or(idle_deadline)), if frame_deadline.is_some() && closing.is_none() => {
                closing = Some(format!("no complete frame within {} ms", cfg.frame_timeout.as_millis()));
            }
            _ = tokio::time::sleep_until(idle_deadline), if in_flight.is_empty() => closing = Some("idle timeout".to_owned()),
            // A busy connection reuses its response buffer (no fresh pages per
            // response); one that goes quiet gives a large one back.
            _ = tokio::time::sleep_until(last_write + OUT_BUFFER_KEEP), if in_flight.is_empty() && out.capacity() > 4 * READ_CHUNK_BYTES => {
                out = BytesMut::new();
            }
        }
    }
    let reason = closing.unwrap_or_default();
    if reason.starts_with("bad frame") || reason.starts_with("the peer speaks") {
        tracing::warn!(%peer, %reason, "connection closed");
    } else {
        tracing::debug!(%peer, %reason, "connection closed");
    }
    let _ = wr.shutdown().await;
}

/// Payloads at least this large are written from their own buffer; smaller
/// ones are cheaper to copy next to their head.
const UNCOPIED_PAYLOAD_BYTES_MIN: usize = 64 << 10;

/// Encodes an answer into `out`, at the version its request came in; a
/// large payload becomes its own piece.
fn encode_answer(key: u16, version: u16, id: u32, result: &Result<Response, WireError>, out: &mut BytesMut, pieces: &mut Vec<Bytes>) {
    let key = ApiKey::from_u16(key).unwrap_or(ApiKey::ApiVersions);
    let payload = Response::encode_head(key, version, id, result, out);
    if payload.len() >= UNCOPIED_PAYLOAD_BYTES_MIN {
        pieces.push(out.split().freeze());
        pieces.push(payload);
    } else {
        out.extend_from_slice(&payload);
    }
}

/// Fails a write the peer has taken no byte of for `stall`: a client that
/// stops reading must not hold its connection, its budget or the broker's
/// shutdown forever.
async fn within<T>(stall: Duration, io: impl std::future::Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    match tokio::time::timeout(stall, io).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer took no bytes for {} ms (frame_timeout)", stall.as_millis()),
        )),
    }
}

/// Writes and flushes all of `buf`, failing if the peer takes no byte for
/// `stall` (flush: a no-op on a real socket, but simulated sockets send on it).
pub(crate) async fn write_all_within<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, mut buf: &[u8], stall: Duration) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = within(stall, wr.write(buf)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    within(stall, wr.flush()).await
}

/// Writes every piece, in order, with vectored writes, then flushes; empties
/// `pieces`. Fails if the peer takes no byte for `stall`.
async fn write_pieces<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, pieces: &mut Vec<Bytes>, stall: Duration) -> std::io::Result<()> {
    let mut queue: std::collections::VecDeque<Bytes> = pieces.drain(..).filter(|p| !p.is_empty()).collect();
    while !queue.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = queue.iter().take(64).map(|p| std::io::IoSlice::new(p)).collect();
        let mut n = within(stall, wr.write_vectored(&slices)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let first = queue.front_mut().expect("wrote no more than was queued");
            if n >= first.len() {
                n -= first.len();
                queue.pop_front();
            } else {
                bytes::Buf::advance(first, n);
                n = 0;
            }
        }
    }
    within(stall, wr.flush()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn pieces_are_written_whole_and_in_order_through_short_writes() {
        // A 7-byte pipe: every write is partial.
        let (mut wr, mut rd) = tokio::io::duplex(7);
        let mut pieces: Vec<Bytes> = (0..20u8).map(|i| Bytes::from(vec![i; usize::from(i) * 3])).collect();
        let want: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.unwrap();
            got
        });
        write_pieces(&mut wr, &mut pieces, Duration::from_secs(5)).await.unwrap();
        assert!(pieces.is_empty());
        drop(wr);
        assert_eq!(reader.await.unwrap(), want);
    }

    #[tokio::test]
    async fn a_peer_that_reads_nothing_fails_the_write_after_the_stall_limit() {
        let (mut wr, _rd) = tokio::io::duplex(7);
        let stall = Duration::from_millis(200);
        let started = tokio::time::Instant::now();
        let err = write_all_within(&mut wr, &[1u8; 100], stall).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("frame_timeout"), "{err}");
        assert!(started.elapsed() >= stall);
        let mut pieces = vec![Bytes::from(vec![2u8; 100])];
        let err = write_pieces(&mut wr, &mut pieces, stall).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
