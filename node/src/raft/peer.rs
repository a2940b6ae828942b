//! Peer connections: one TCP connection per node pair carries the Raft
//! traffic of every group (`weir_net::peer`). Calls queue on the
//! connection; its writer takes everything queued and sends it as one frame,
//! so the heartbeats a node tick sends for all its groups reach each peer in
//! one frame and one write. Every call has a timeout (a clogged or dead
//! peer simply never answers); a connection that fails fails its pending
//! calls at once and is replaced on the next call.
//!
//! The server side reads frames of calls, dispatches each message to its
//! group ([`super::Registry`]) concurrently, and writes the answers back,
//! again coalesced. Garbage is handled as on the client port: the frame
//! length is checked before allocating, and a frame that does not decode
//! closes the connection with a logged reason.

use super::{Registry, convert};
use crate::tasks::stopped;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use weir_net::frame::{self, READ_CHUNK_BYTES};
use weir_net::peer::{Answer, Call, Identity, MESSAGES_PER_FRAME_MAX, Message, PeerFrame};
use weir_net::{ErrorCode, WireError};

/// Largest peer frame (bytes after the length field): a replication read of
/// 4 MiB plus the frame's other messages fits with room to spare.
pub const PEER_FRAME_BYTES_MAX: usize = 64 << 20;
/// Calls queued on one connection before callers wait.
const QUEUED_CALLS_MAX: usize = 4096;
/// Batch bytes one coalesced frame carries at most (a single call may
/// exceed it alone; frames stay well under [`PEER_FRAME_BYTES_MAX`]).
const FRAME_PAYLOAD_BUDGET: usize = 16 << 20;
/// Calls from one connection served at once.
const SERVED_PER_CONNECTION_MAX: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Peer connections served at once: a cluster has at most a few dozen
/// nodes; anything beyond this is refused at accept.
const PEER_CONNECTIONS_MAX: usize = 256;
/// A served connection that brings no whole frame for this long is closed
/// (a live peer sends a heartbeat every tick).
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("node {0} has no known Raft address")]
    UnknownNode(u64),
    #[error("node {node} is unreachable: {why}")]
    Unreachable { node: u64, why: String },
    #[error("node {node} did not answer within {ms} ms")]
    Timeout { node: u64, ms: u128 },
}

type Waiter = oneshot::Sender<Answer>;

struct Outgoing {
    message: Message<Call>,
    waiter: Waiter,
}

/// One connection to a peer, as the caller sees it.
struct Conn {
    queue: mpsc::Sender<Outgoing>,
    pending: Arc<Mutex<HashMap<u64, Waiter>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

/// Who this node is on the wire, and which data directory each peer must
/// run on (from the metadata): checked on every frame, both ways.
#[derive(Debug, Default)]
pub struct Vetting {
    own: Mutex<Identity>,
    bound: Mutex<std::collections::BTreeMap<u64, u64>>,
    /// Peers whose answers were refused: no more calls go to them (a
    /// wiped node would otherwise still be sent the logs) until a frame of
    /// theirs passes again (their directory was put back).
    refused: Mutex<std::collections::BTreeMap<u64, WireError>>,
}

impl Vetting {
    pub fn own(&self) -> Identity {
        *self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As [`Vetting::check`], remembering the outcome for calls to `node`.
    fn vet(&self, node: u64, theirs: Identity) -> Result<(), WireError> {
        let checked = self.check(node, theirs);
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        match &checked {
            Ok(()) => refused.remove(&node),
            Err(e) => refused.insert(node, e.clone()),
        };
        checked
    }

    /// Why calls to `node` are not sent, if they are not.
    fn refusal(&self, node: u64) -> Option<WireError> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).get(&node).cloned()
    }

    /// Whether node `node`, presenting `theirs`, may be heard: same cluster
    /// (when both know theirs), and the data directory the cluster
    /// registered for it.
    fn check(&self, node: u64, theirs: Identity) -> Result<(), WireError> {
        let own = self.own();
        if own.cluster != 0 && theirs.cluster != 0 && own.cluster != theirs.cluster {
            return Err(WireError::new(
                ErrorCode::WrongCluster,
                format!(
                    "node {node} belongs to cluster {:016x}, this node to cluster {:016x}: it was started on another cluster's data directory; give it its own, or an empty one and weir --join",
                    theirs.cluster, own.cluster
                ),
            ));
        }
        if let Some(&bound) = self.bound.lock().unwrap_or_else(|p| p.into_inner()).get(&node)
            && bound != theirs.incarnation
        {
            return Err(WireError::new(
                ErrorCode::StaleIncarnation,
                format!(
                    "node {node} runs on data directory {:016x}, but the cluster registered {bound:016x} for it: its data was wiped or replaced, so it could vote twice; remove it (weirctl cluster remove-node {node}) and join it again with an empty data directory (weir --join)",
                    theirs.incarnation
                ),
            ));
        }
        Ok(())
    }
}

/// Every peer connection of this node.
#[derive(Debug)]
pub struct Peers {
    node_id: u64,
    vetting: Arc<Vetting>,
    addrs: Mutex<HashMap<u64, String>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_call: AtomicU64,
}

impl Peers {
    pub fn new(node_id: u64) -> Arc<Peers> {
        Arc::new(Peers { node_id, vetting: Arc::default(), addrs: Mutex::default(), conns: Mutex::default(), next_call: AtomicU64::new(1) })
    }

    pub fn vetting(&self) -> &Vetting {
        &self.vetting
    }

    /// This node's cluster id (0 until known) and data directory id.
    pub fn set_identity(&self, identity: Identity) {
        *self.vetting.own.lock().unwrap_or_else(|p| p.into_inner()) = identity;
    }

    /// The data directory every registered node is bound to.
    pub fn set_bindings(&self, bound: std::collections::BTreeMap<u64, u64>) {
        *self.vetting.bound.lock().unwrap_or_else(|p| p.into_inner()) = bound;
    }

    /// Records (or changes) a node's Raft address.
    pub fn set_address(&self, node: u64, addr: String) {
        let mut addrs = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        if addrs.get(&node) != Some(&addr) {
            addrs.insert(node, addr);
            self.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&node);
        }
    }

    /// Forgets `node`'s address and connection (a removed node).
    pub fn forget(&self, node: u64) {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).remove(&node);
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&node);
    }

    /// Every node with a known address.
    pub fn known(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.addrs.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn conn(self: &Arc<Self>, node: u64) -> Result<Arc<Conn>, PeerError> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(&node).filter(|c| !c.queue.is_closed()) {
            return Ok(c.clone());
        }
        let addr = self.addrs.lock().unwrap_or_else(|p| p.into_inner()).get(&node).cloned().ok_or(PeerError::UnknownNode(node))?;
        let (tx, rx) = mpsc::channel(QUEUED_CALLS_MAX);
        let pending: Arc<Mutex<HashMap<u64, Waiter>>> = Arc::default();
        tokio::spawn(run_conn(self.node_id, self.vetting.clone(), node, addr, rx, pending.clone()));
        let c = Arc::new(Conn { queue: tx, pending });
        conns.insert(node, c.clone());
        Ok(c)
    }

    /// Sends `call` to `group` on `node` and waits up to `timeout` for the answer.
    pub async fn call(self: &Arc<Self>, node: u64, group: u64, call: Call, timeout: Duration) -> Result<Answer, PeerError> {
        if let Some(e) = self.vetting.refusal(node) {
            return Ok(Answer::Error(e));
        }
        let conn = self.conn(node)?;
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (waiter, answer) = oneshot::channel();
        let out = Outgoing { message: Message { call_id, group, body: call }, waiter };
        let sent = tokio::time::timeout(timeout, async {
            conn.queue.send(out).await.map_err(|_| PeerError::Unreachable { node, why: "connection closed".into() })?;
            answer.await.map_err(|_| PeerError::Unreachable { node, why: "connection lost before the answer".into() })
        })
        .await;
        match sent {
            Ok(r) => r,
            Err(_) => {
                conn.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&call_id);
                Err(PeerError::Timeout { node, ms: timeout.as_millis() })
            }
        }
    }
}

/// Connects, then writes queued calls (coalesced) and routes answers to
/// their waiters until the connection fails or every caller is gone.
async fn run_conn(
    from: u64,
    vetting: Arc<Vetting>,
    node: u64,
    addr: String,
    mut rx: mpsc::Receiver<Outgoing>,
    pending: Arc<Mutex<HashMap<u64, Waiter>>>,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(node, %addr, error = %e, "peer connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(node, %addr, "peer connect timed out");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let reader_pending = pending.clone();
    let reader_vetting = vetting.clone();
    let mut reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let mut told = false;
        loop {
            match read_frame(&mut rd, &mut buf).await {
                Ok(Some(f)) => match PeerFrame::<Answer>::decode(&f) {
                    Ok(answers) => {
                        // An answer from a node on the wrong data directory
                        // (or cluster) counts for nothing: not even a vote.
                        let refused = reader_vetting.vet(node, answers.identity).err();
                        let mut p = reader_pending.lock().unwrap_or_else(|e| e.into_inner());
                        for m in answers.messages {
                            if !told {
                                told = tell_refusal(node, refused.as_ref(), &m.body);
                            }
                            if let Some(w) = p.remove(&m.call_id) {
                                let _ = w.send(refused.clone().map_or(m.body, Answer::Error));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node, error = %e, "peer sent an undecodable answer frame: closing the connection");
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(node, error = %e, "peer connection read failed");
                    break;
                }
            }
        }
        // Waiters dropped: their calls fail at once instead of timing out.
        reader_pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    });
    let mut out = BytesMut::new();
    // A call that did not fit the last frame opens the next.
    let mut carried: Option<Outgoing> = None;
    loop {
        let first = match carried.take() {
            Some(o) => o,
            None => tokio::select! {
                biased;
                _ = &mut reader => break,
                o = rx.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
            },
        };
        let mut messages = Vec::new();
        let queue = coalesce(first, &mut rx, &mut carried, |o| o.message.body.payload_len());
        {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            for o in queue {
                if o.waiter.is_closed() {
                    continue; // its caller timed out while it queued
                }
                p.insert(o.message.call_id, o.waiter);
                messages.push(o.message);
            }
        }
        if messages.is_empty() {
            continue;
        }
        out.clear();
        let payload = PeerFrame { from, identity: vetting.own(), messages }.encode_head(&mut out);
        if let Err(e) = write_pieces(&mut wr, &out, &payload).await {
            tracing::debug!(node, error = %e, "peer connection write failed");
            break;
        }
    }
    reader.abort();
    pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Logs, once per connection, that `node` is refused (`refused`) or
/// refuses this node (an identity error in `answer`); whether it did.
fn tell_refusal(node: u64, refused: Option<&WireError>, answer: &Answer) -> bool {
    if let Some(e) = refused {
        tracing::error!(node, error = %e.message, "refusing a peer's answers");
        return true;
    }
    match answer {
        Answer::Error(e) if matches!(e.code(), ErrorCode::StaleIncarnation | ErrorCode::WrongCluster) => {
            tracing::error!(node, error = %e.message, "a peer refuses this node");
            true
        }
        _ => false,
    }
}

/// `first` and whatever else is queued, as one frame's worth: at most
/// [`MESSAGES_PER_FRAME_MAX`] items and [`FRAME_PAYLOAD_BUDGET`] bytes (by
/// `bytes`); an item that does not fit is left in `carried` for the next.
fn coalesce<T>(first: T, rx: &mut mpsc::Receiver<T>, carried: &mut Option<T>, bytes: impl Fn(&T) -> usize) -> Vec<T> {
    let mut total = bytes(&first);
    let mut out = vec![first];
    while out.len() < MESSAGES_PER_FRAME_MAX {
        let Ok(item) = rx.try_recv() else { break };
        let len = bytes(&item);
        if total + len > FRAME_PAYLOAD_BUDGET {
            *carried = Some(item);
            break;
        }
        total += len;
        out.push(item);
    }
    out
}

async fn write_pieces<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, head: &[u8], payload: &[Bytes]) -> std::io::Result<()> {
    wr.write_all(head).await?;
    for p in payload {
        wr.write_all(p).await?;
    }
    wr.flush().await
}

/// Reads one whole frame; `Ok(None)` at a clean end of stream.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> std::io::Result<Option<frame::Frame>> {
    loop {
        match frame::decode(buf, PEER_FRAME_BYTES_MAX) {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
        }
        // Grow as bytes arrive, never to a length merely announced.
        let want = frame::partial_len(buf).map(|total| (total - buf.len()).min(READ_CHUNK_BYTES)).unwrap_or(READ_CHUNK_BYTES);
        buf.reserve(want);
        if rd.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed mid-frame"))
            };
        }
    }
}

/// Serves peers on `listener` until `stop`.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(%addr, limit = PEER_CONNECTIONS_MAX, "peer connection refused: at the limit");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (registry, stop) = (registry.clone(), stop.clone());
                tokio::spawn(async move {
                    serve_conn(stream, addr, registry, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(stream: TcpStream, addr: std::net::SocketAddr, registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Message<Answer>>(SERVED_PER_CONNECTION_MAX);
    let me = registry.node_id();
    let writer_registry = registry.clone();
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::new();
        // Answers carry no batches: the count alone bounds a frame.
        let mut carried = None;
        while let Some(first) = match carried.take() {
            Some(m) => Some(m),
            None => rx.recv().await,
        } {
            let messages = coalesce(first, &mut rx, &mut carried, |_| 0);
            out.clear();
            PeerFrame { from: me, identity: writer_registry.peers.vetting().own(), messages }.encode(&mut out);
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let serving = Arc::new(Semaphore::new(SERVED_PER_CONNECTION_MAX));
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut refused = false;
    loop {
        let next = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            f = tokio::time::timeout(PEER_IDLE_TIMEOUT, read_frame(&mut rd, &mut buf)) => match f {
                Ok(f) => f,
                Err(_) => {
                    tracing::warn!(%addr, "closing a peer connection that sent no whole frame for {} s", PEER_IDLE_TIMEOUT.as_secs());
                    break;
                }
            },
        };
        let calls = match next {
            Ok(Some(f)) => match PeerFrame::<Call>::decode(&f) {
                Ok(calls) => calls,
                Err(e) => {
                    let proto = frame::foreign_protocol(&f.body).map(|p| format!(" (it speaks {p})")).unwrap_or_default();
                    tracing::warn!(%addr, error = %e, "closing a peer connection that sent a bad frame{proto}");
                    break;
                }
            },
            Ok(None) => break,
            Err(e) => {
                let proto =
                    frame::foreign_protocol(&buf).map(|p| format!(": the peer speaks {p}, not the Weir peer protocol")).unwrap_or_default();
                tracing::warn!(%addr, error = %e, "closing a peer connection{proto}");
                break;
            }
        };
        if let Err(e) = registry.peers.vetting.vet(calls.from, calls.identity) {
            if !refused {
                tracing::error!(%addr, node = calls.from, error = %e.message, "refusing a peer's calls");
                refused = true;
            }
            for m in calls.messages {
                if tx.send(Message { call_id: m.call_id, group: m.group, body: Answer::Error(e.clone()) }).await.is_err() {
                    break;
                }
            }
            continue;
        }
        for m in calls.messages {
            let Ok(permit) = serving.clone().acquire_owned().await else { break };
            let (registry, tx) = (registry.clone(), tx.clone());
            tokio::spawn(async move {
                let body = registry.dispatch(calls.from, m.group, m.body).await;
                let _ = tx.send(Message { call_id: m.call_id, group: m.group, body }).await;
                drop(permit);
            });
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The answer for a call to a group this node does not run.
pub fn no_such_group(node: u64, group: u64) -> Answer {
    Answer::Error(WireError::new(ErrorCode::NotLeader, format!("node {node} runs no Raft group {group}")))
}

/// Translates a call into the openraft request for `raft`, and its reply back.
pub async fn serve_call(raft: &openraft::Raft<super::TypeConfig>, call: Call) -> Answer {
    let failed = |e: &dyn std::fmt::Display| Answer::Error(WireError::new(ErrorCode::ShuttingDown, e.to_string()));
    match call {
        Call::Append(a) => match raft.append_entries(convert::append_from_wire(a)).await {
            Ok(r) => Answer::Append(convert::append_reply_to_wire(&r)),
            Err(e) => failed(&e),
        },
        Call::Vote(v) => match raft.vote(convert::vote_request_from_wire(v)).await {
            Ok(r) => Answer::Vote(convert::vote_reply_to_wire(&r)),
            Err(e) => failed(&e),
        },
        // Node heartbeats and forwards are served by the registry, never by a group.
        Call::Heartbeat(_) => Answer::Heartbeat,
        Call::Forward(_) => Answer::Error(WireError::new(ErrorCode::InvalidRequest, "a forward is not a group's call")),
        Call::Elect => Answer::Error(WireError::new(ErrorCode::InvalidRequest, "a hand-off is the registry's call, not a group's")),
        Call::Snapshot(s) => match raft.install_snapshot(convert::snapshot_from_wire(s)).await {
            Ok(r) => Answer::Snapshot(weir_net::peer::SnapshotReply { vote: convert::vote_to_wire(&r.vote) }),
            Err(e) => failed(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_on_another_data_directory_or_cluster_is_refused() {
        let v = Vetting::default();
        let them = |cluster, incarnation| Identity { cluster, incarnation };
        assert!(v.check(2, them(0, 5)).is_ok(), "nothing known yet: heard");
        *v.own.lock().unwrap() = them(0xc1, 0xd1);
        *v.bound.lock().unwrap() = [(2, 5)].into();
        assert!(v.check(2, them(0xc1, 5)).is_ok());
        assert!(v.check(2, them(0, 5)).is_ok(), "a member that has not learnt the cluster id yet");
        let wiped = v.check(2, them(0xc1, 6)).unwrap_err();
        assert_eq!(wiped.code(), ErrorCode::StaleIncarnation);
        assert!(wiped.message.contains("remove-node 2"), "{}", wiped.message);
        assert_eq!(v.check(2, them(0xc2, 5)).unwrap_err().code(), ErrorCode::WrongCluster);
        assert!(v.check(3, them(0xc1, 9)).is_ok(), "a node not registered yet is bound at registration");
        // A refused peer gets no calls until a frame of its passes again.
        assert!(v.vet(2, them(0xc1, 6)).is_err());
        assert_eq!(v.refusal(2).map(|e| e.code()), Some(ErrorCode::StaleIncarnation));
        assert!(v.vet(2, them(0xc1, 5)).is_ok());
        assert!(v.refusal(2).is_none(), "its directory was put back");
    }
}
