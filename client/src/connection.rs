//! One multiplexed connection to a broker: many requests in flight, matched
//! to their responses by correlation id. A writer task coalesces queued
//! frames into large writes; a reader task completes waiting requests. When
//! either side fails, every waiting request gets `Disconnected`.

use crate::error::{ClientError, Result};
use bytes::BytesMut;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use weir_net::frame::{self, Frame};
use weir_net::message::{ApiKey, ApiVersionsResponse, VERSION_MIN, version_max};
use weir_net::{Request, Response, WireError};

/// Frames queued for the writer; beyond this `request` waits (backpressure).
const WRITE_QUEUE_MAX: usize = 1024;
/// Bytes the writer gathers into one write.
const WRITE_COALESCE_BYTES: usize = 1 << 20;

type Waiter = oneshot::Sender<Result<Frame>>;

#[derive(Debug)]
pub struct Connection {
    addr: String,
    tx: mpsc::Sender<BytesMut>,
    pending: Arc<Mutex<BTreeMap<u32, Waiter>>>,
    next_id: AtomicU32,
    closed: Arc<AtomicBool>,
    /// Why the connection closed, for requests made after it did.
    close_reason: Arc<Mutex<Option<String>>>,
    /// Largest frame sent or received (the broker's default limit).
    max_frame_bytes: usize,
    /// The newest Metadata version both sides speak (1 until the handshake
    /// says more): older brokers answer without leader terms.
    /// Per API key, the version requests go at (see `set_versions`).
    versions: Vec<std::sync::atomic::AtomicU16>,
}

impl Connection {
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub async fn connect(addr: &str, timeout: Duration, max_frame_bytes: usize) -> Result<Connection> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Disconnected { broker: addr.to_owned(), reason: format!("connect timed out after {timeout:?}") })?
            .map_err(|e| ClientError::Disconnected { broker: addr.to_owned(), reason: e.to_string() })?;
        let _ = stream.set_nodelay(true);
        // `io::split` rather than `into_split`: madsim's simulated stream has only the former.
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<BytesMut>(WRITE_QUEUE_MAX);
        let pending: Arc<Mutex<BTreeMap<u32, Waiter>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let close_reason: Arc<Mutex<Option<String>>> = Arc::default();

        let fail_all = {
            let pending = pending.clone();
            let closed = closed.clone();
            let close_reason = close_reason.clone();
            let addr = addr.to_owned();
            move |reason: String| {
                close_reason.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| reason.clone());
                closed.store(true, Ordering::SeqCst);
                let waiters: Vec<Waiter> = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner())).into_values().collect();
                for w in waiters {
                    let _ = w.send(Err(ClientError::Disconnected { broker: addr.clone(), reason: reason.clone() }));
                }
            }
        };

        let fail = fail_all.clone();
        tokio::spawn(async move {
            let mut out = BytesMut::new();
            while let Some(first) = rx.recv().await {
                out.extend_from_slice(&first);
                while out.len() < WRITE_COALESCE_BYTES {
                    match rx.try_recv() {
                        Ok(more) => out.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                // Flush: a no-op on a real socket, but simulated sockets send on flush.
                if let Err(e) = async {
                    wr.write_all(&out).await?;
                    wr.flush().await
                }
                .await
                {
                    fail(format!("write failed: {e}"));
                    return;
                }
                out.clear();
            }
            let _ = wr.shutdown().await;
        });

        let reader_pending = pending.clone();
        let peer = addr.to_owned();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(256 << 10);
            let mut answered = false;
            loop {
                loop {
                    match frame::decode(&mut buf, max_frame_bytes) {
                        // Correlation id 0 is never a request's: it is the broker
                        // refusing the connection (at a limit) before reading.
                        Ok(Some(f)) if f.header.correlation_id == 0 => {
                            let why = match Response::decode(&f) {
                                Ok(Err(e)) => format!("refused by the broker: {}", e.message),
                                _ => "the broker sent a frame for no request".to_owned(),
                            };
                            fail_all(why);
                            return;
                        }
                        Ok(Some(f)) => {
                            answered = true;
                            let waiter = reader_pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&f.header.correlation_id);
                            match waiter {
                                Some(w) => {
                                    let _ = w.send(Ok(f));
                                }
                                // A request that timed out; its late answer is dropped.
                                None => tracing::debug!(id = f.header.correlation_id, "response for no waiting request"),
                            }
                        }
                        Ok(None) => {
                            // A broker's answer: room for all of it at once.
                            if let Some(whole) = frame::partial_len(&buf) {
                                buf.reserve(whole - buf.len());
                            }
                            break;
                        }
                        Err(e) if !answered => {
                            let speaks = frame::foreign_protocol(&buf).map(|p| format!(" (it speaks {p})")).unwrap_or_default();
                            fail_all(format!("{peer} is not a Weir broker{speaks}: check the address and port ({e})"));
                            return;
                        }
                        Err(e) => {
                            fail_all(format!("bad frame from broker: {e}"));
                            return;
                        }
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        fail_all("broker closed the connection".to_owned());
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        fail_all(format!("read failed: {e}"));
                        return;
                    }
                }
            }
        });
        Ok(Connection {
            addr: addr.to_owned(),
            tx,
            pending,
            next_id: AtomicU32::new(1),
            closed,
            close_reason,
            max_frame_bytes,
            versions: (0..=ApiKey::ALL.iter().map(|k| *k as usize).max().unwrap_or(0))
                .map(|_| std::sync::atomic::AtomicU16::new(VERSION_MIN))
                .collect(),
        })
    }

    /// Takes the versions the broker's handshake named: each request goes
    /// at the newest version both sides speak.
    pub fn set_versions(&self, versions: &ApiVersionsResponse) {
        for key in ApiKey::ALL {
            let broker = versions.apis.iter().find(|r| r.api_key == *key as u16).map_or(VERSION_MIN, |r| r.max);
            self.versions[*key as usize].store(broker.min(version_max(*key)).max(VERSION_MIN), Ordering::Relaxed);
        }
    }

    fn version_for(&self, key: ApiKey) -> u16 {
        self.versions[key as usize].load(Ordering::Relaxed)
    }

    /// Why requests on this closed connection fail.
    fn closed_error(&self) -> ClientError {
        let reason = self.close_reason.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_else(|| "connection closed".to_owned());
        ClientError::Disconnected { broker: self.addr.clone(), reason }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends a request and waits up to `timeout` for its response.
    pub async fn request(&self, req: &Request, timeout: Duration) -> Result<Response> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        // Id 0 is the broker's connection-level refusal: never ours.
        let id = match self.next_id.fetch_add(1, Ordering::Relaxed) {
            0 => self.next_id.fetch_add(1, Ordering::Relaxed),
            id => id,
        };
        let mut out = BytesMut::new();
        req.encode_at(self.version_for(req.api_key()), id, &mut out);
        if out.len() > self.max_frame_bytes {
            // The broker would close the connection on it, and every retry
            // would send it again: refuse it here, once.
            return Err(ClientError::Broker(WireError::new(
                weir_net::ErrorCode::MessageTooLarge,
                format!(
                    "a request frame of {} bytes exceeds the frame limit of {} bytes: send smaller batches (or raise max_frame_bytes on the broker and the client)",
                    out.len(),
                    self.max_frame_bytes
                ),
            )));
        }
        let (wtx, wrx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, wtx);
        // The reader may have failed between the check above and the insert,
        // draining the waiters before ours was there: nobody would answer it.
        if self.is_closed() {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(self.closed_error());
        }
        let sent = async {
            self.tx
                .send(out)
                .await
                .map_err(|_| ClientError::Disconnected { broker: self.addr.clone(), reason: "writer stopped".to_owned() })?;
            wrx.await.map_err(|_| ClientError::Disconnected { broker: self.addr.clone(), reason: "connection dropped".to_owned() })?
        };
        let frame = match tokio::time::timeout(timeout, sent).await {
            Ok(r) => r,
            Err(_) => {
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                tracing::debug!(broker = %self.addr, api = ?req.api_key(), id, ?timeout, "request timed out");
                Err(ClientError::Timeout(timeout))
            }
        }?;
        let key = req.api_key() as u16;
        if frame.header.api_key != key {
            return Err(ClientError::Protocol(format!("response for API {} to a request for API {key}", frame.header.api_key)));
        }
        match Response::decode(&frame) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(ClientError::Broker(e)),
            Err(e) => Err(ClientError::Protocol(format!("cannot decode response: {}", WireError::to_string(&e)))),
        }
    }
}
