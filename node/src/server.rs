//! The TCP front end: accepts connections up to a bound, reads frames, runs
//! up to `max_in_flight_per_connection` requests of a connection at once and
//! writes their responses in request order. A frame that cannot be parsed
//! gets an error response when its correlation id is readable, then the
//! connection is closed with the reason logged; nothing a client sends can
//! stop the broker from serving others.

use crate::broker::Broker;
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use weir_net::frame::{self, FrameError};
use weir_net::message::ApiKey;
use weir_net::{ErrorCode, Request, Response, WireError};

/// Stops the server: accepting ends at once, connections finish what they
/// have in flight and close.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (Shutdown, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), rx)
    }

    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Serves `listener` until shutdown, then waits for connections to drain.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let limit = broker.config().max_connections;
    let connections = Arc::new(Semaphore::new(limit));
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
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit, "connection refused: at max_connections");
            tokio::spawn(refuse(stream, limit));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            connection(stream, peer, broker, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it has answered what it read.
    let _ = connections.acquire_many(limit as u32).await;
}

/// Answers a connection over the limit with one error frame, then closes.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let mut out = BytesMut::new();
    let err = WireError::new(ErrorCode::Busy, format!("the broker is at its limit of {limit} connections: retry later"));
    Response::encode(ApiKey::ApiVersions, 0, &Err(err), &mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        stream.write_all(&out).await?;
        stream.flush().await
    })
    .await;
}

/// Resolves once shutdown has been triggered (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

type Answer = (u16, u32, Result<Response, WireError>);

async fn connection(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let cfg = broker.config().clone();
    // `io::split` rather than `into_split`: madsim's simulated stream has only the former.
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut out = BytesMut::with_capacity(64 << 10);
    let mut in_flight = FuturesOrdered::new();
    let mut closing: Option<String> = None;
    let mut idle_deadline = tokio::time::Instant::now() + cfg.idle_timeout;
    tracing::debug!(%peer, "connection opened");
    loop {
        // Take every whole frame already buffered, up to the in-flight bound.
        while closing.is_none() && in_flight.len() < cfg.max_in_flight_per_connection {
            match frame::decode(&mut buf, cfg.max_frame_bytes) {
                Ok(Some(f)) => {
                    let (key, id) = (f.header.api_key, f.header.correlation_id);
                    let broker = broker.clone();
                    in_flight.push_back(Box::pin(async move {
                        let result = match Request::decode(&f) {
                            Ok(req) => broker.handle(req).await,
                            Err(e) => Err(e),
                        };
                        (key, id, result)
                    }) as std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>);
                }
                Ok(None) => break,
                Err(e) => {
                    let (key, id) = header_ids(&buf, &e);
                    if let Some(id) = id {
                        let code =
                            if matches!(e, FrameError::TooLarge { .. }) { ErrorCode::MessageTooLarge } else { ErrorCode::InvalidRequest };
                        let err = WireError::new(code, format!("{e}; closing the connection"));
                        in_flight.push_back(Box::pin(async move { (key, id, Err(err)) }));
                    }
                    closing = Some(format!("bad frame: {e}"));
                    break;
                }
            }
        }
        if closing.is_some() && in_flight.is_empty() {
            break;
        }
        let can_read = closing.is_none() && in_flight.len() < cfg.max_in_flight_per_connection;
        tokio::select! {
            biased;
            Some((key, id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                encode_answer(key, id, &result, &mut out);
                // Pick up whatever else is already done, then write once.
                while let Some(Some((key, id, result))) = futures::FutureExt::now_or_never(in_flight.next()) {
                    encode_answer(key, id, &result, &mut out);
                }
                // Flush: a no-op on a real socket, but simulated sockets send on flush.
                if let Err(e) = async { wr.write_all(&out).await?; wr.flush().await }.await {
                    tracing::debug!(%peer, error = %e, "write failed; closing");
                    return;
                }
                out.clear();
                idle_deadline = tokio::time::Instant::now() + cfg.idle_timeout;
            }
            r = rd.read_buf(&mut buf), if can_read => {
                match r {
                    Ok(0) => closing = Some("peer closed".to_owned()),
                    Ok(_) => idle_deadline = tokio::time::Instant::now() + cfg.idle_timeout,
                    Err(e) => closing = Some(format!("read failed: {e}")),
                }
            }
            _ = stopped(&mut shutdown), if closing.is_none() => closing = Some("broker shutting down".to_owned()),
            _ = tokio::time::sleep_until(idle_deadline), if in_flight.is_empty() => closing = Some("idle timeout".to_owned()),
        }
    }
    let reason = closing.unwrap_or_default();
    if reason.starts_with("bad frame") {
        tracing::warn!(%peer, %reason, "connection closed");
    } else {
        tracing::debug!(%peer, %reason, "connection closed");
    }
    let _ = wr.shutdown().await;
}

fn encode_answer(key: u16, id: u32, result: &Result<Response, WireError>, out: &mut BytesMut) {
    let key = ApiKey::from_u16(key).unwrap_or(ApiKey::ApiVersions);
    Response::encode(key, id, result, out);
}

/// The API key and correlation id of a frame that failed to parse, if its
/// header is there to read them from.
fn header_ids(buf: &[u8], e: &FrameError) -> (u16, Option<u32>) {
    if let Some(id) = e.correlation_id() {
        let key = if buf.len() >= 10 { u16::from_le_bytes([buf[8], buf[9]]) } else { 0 };
        return (key, Some(id));
    }
    if buf.len() >= frame::HEADER_LEN {
        return (u16::from_le_bytes([buf[8], buf[9]]), Some(u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]])));
    }
    (0, None)
}
