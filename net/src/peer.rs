//! The peer protocol: Raft RPCs between brokers, on the Raft port. These are
//! Weir's own types (the node translates them to and from its Raft library),
//! so a library upgrade never changes the wire.
//!
//! One TCP connection per node pair carries every Raft group's traffic: each
//! message names its group and a call id, and one frame carries many
//! messages, so the heartbeats of every group a node leads reach a peer in one
//! frame. Frames use the client protocol's 16-byte header ([`crate::frame`])
//! with API key [`PEER_API_KEY`]; kind request carries calls, kind response
//! carries answers. The body is `postcard(PeerFrame)`, then the record
//! batches of every normal entry, in order, as a raw payload (sliced out of
//! the frame, not copied). Decoding is total: lengths are checked against
//! the payload before any slice is taken.

use crate::error::{ErrorCode, WireError};
use crate::frame::{self, Frame, FrameHeader, Kind};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The API key of peer frames (far from the client APIs' keys).
pub const PEER_API_KEY: u16 = 0x5752;
/// Version of the peer protocol spoken by this build.
pub const PEER_VERSION: u16 = 2;
/// Most messages one frame may carry.
pub const MESSAGES_PER_FRAME_MAX: usize = 1024;
/// Most entries one Append may carry.
pub const ENTRIES_PER_APPEND_MAX: usize = 4096;
/// Largest node id (node ids are stored as u32).
pub const NODE_ID_MAX: u64 = u32::MAX as u64;
/// Largest request one node forwards to another (a metadata command).
pub const FORWARD_BYTES_MAX: usize = 1 << 20;

/// A Raft log id: the term of the leader that created the entry and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}

/// A vote: a term, the node voted for, and whether a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub term: u64,
    pub node: Option<u64>,
    pub committed: bool,
}

/// A membership: the voter sets (two while changing) and every node's
/// Raft address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Membership {
    pub configs: Vec<Vec<u64>>,
    pub nodes: Vec<(u64, String)>,
}

/// What one entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryBody {
    /// A new leader's first entry.
    Blank,
    /// Record batches. `base_offset` is the offset the leader's log stamped
    /// on the first one (followers check it against their own log end).
    Normal {
        base_offset: u64,
        batches: Vec<Bytes>,
    },
    Membership(Membership),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub log_id: LogId,
    pub body: EntryBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendEntries {
    pub vote: Vote,
    pub prev_log_id: Option<LogId>,
    pub leader_commit: Option<LogId>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendEntriesReply {
    Success,
    /// Only entries up to this one were accepted.
    PartialSuccess(Option<LogId>),
    /// The follower's log does not hold `prev_log_id`.
    Conflict,
    HigherVote(Vote),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    pub vote: Vote,
    pub last_log_id: Option<LogId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReply {
    pub vote: Vote,
    pub granted: bool,
    pub last_log_id: Option<LogId>,
}

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_log_id: Option<LogId>,
    pub membership_log_id: Option<LogId>,
    pub membership: Membership,
    pub snapshot_id: String,
}

/// One chunk of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: Vec<u8>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReply {
    pub vote: Vote,
}

/// The node-level heartbeat: the groups the sender leads, with their
/// terms. One per peer per tick stands in for the heartbeats of every idle
/// group (their followers do not elect while it keeps coming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeHeartbeat {
    pub leading: Vec<(u64, u64)>,
}

/// A call to a peer's Raft group (or, for a heartbeat, to the peer node;
/// its group id is 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Append(AppendEntries),
    Vote(VoteRequest),
    Snapshot(SnapshotChunk),
    Heartbeat(NodeHeartbeat),
    /// A request this node cannot serve, for the node that can (a metadata
    /// command for the metadata group's leader): opaque to the peer
    /// protocol, at most [`FORWARD_BYTES_MAX`] bytes.
    Forward(Vec<u8>),
    /// The group's leader hands its leadership to the receiver: campaign
    /// now (the leader has stopped writing, waited until the receiver holds
    /// its whole log, and stopped vouching for the group).
    Elect,
}

/// The answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Append(AppendEntriesReply),
    Vote(VoteReply),
    Snapshot(SnapshotReply),
    /// The call could not be served (unknown group, group stopping, ...).
    Error(WireError),
    Heartbeat,
    /// The answer to a [`Call::Forward`], as opaque as its request.
    Forwarded(Vec<u8>),
    /// A heartbeat received, naming the groups of it that the receiver
    /// knows a newer term of (group, term): the sender no longer leads
    /// them, whatever it believes. [`Answer::Heartbeat`] when there are none.
    HeartbeatNewer(Vec<(u64, u64)>),
    /// A [`Call::Elect`] taken: the receiver campaigns.
    Electing,
}

/// One message in a frame: which call, to which group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<T> {
    pub call_id: u64,
    pub group: u64,
    pub body: T,
}

/// Who sends a frame, beyond its node id: the cluster it belongs to and
/// the data directory it runs on. Every frame carries it, both ways, so a
/// node whose directory was wiped or swapped (it could vote twice in one
/// term) or that belongs to another cluster is refused at once, as caller
/// and as answerer. 0 means not known yet (a new cluster has no id until
/// its first metadata leader picks one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    pub cluster: u64,
    pub incarnation: u64,
}

/// Every message of one frame, from node `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFrame<T> {
    pub from: u64,
    pub identity: Identity,
    pub messages: Vec<Message<T>>,
}

// ---- wire shapes: like the public types, with batches replaced by lengths

#[derive(Serialize, Deserialize)]
enum WireEntryBody {
    Blank,
    Normal { base_offset: u64, batch_lens: Vec<u32> },
    Membership(Membership),
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    log_id: LogId,
    body: WireEntryBody,
}

#[derive(Serialize, Deserialize)]
struct WireAppend {
    vote: Vote,
    prev_log_id: Option<LogId>,
    leader_commit: Option<LogId>,
    entries: Vec<WireEntry>,
}

#[derive(Serialize, Deserialize)]
enum WireCall {
    Append(WireAppend),
    Vote(VoteRequest),
    Snapshot(SnapshotChunk),
    Heartbeat(NodeHeartbeat),
    Forward(Vec<u8>),
    Elect,
}

#[derive(Serialize, Deserialize)]
struct WireMessage<T> {
    call_id: u64,
    group: u64,
    body: T,
}

#[derive(Serialize, Deserialize)]
struct WireFrame<T> {
    from: u64,
    identity: Identity,
    messages: Vec<WireMessage<T>>,
}

fn header(kind: Kind) -> FrameHeader {
    FrameHeader { kind, api_key: PEER_API_KEY, api_version: PEER_VERSION, correlation_id: 0 }
}

fn malformed(what: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, format!("malformed peer frame: {what}"))
}

fn check_node(node: u64) -> Result<(), WireError> {
    if node > NODE_ID_MAX {
        return Err(malformed(format_args!("node id {node} is above {NODE_ID_MAX}")));
    }
    Ok(())
}

fn check_vote(v: &Vote) -> Result<(), WireError> {
    v.node.map_or(Ok(()), check_node)
}

fn check_header(frame: &Frame, kind: Kind) -> Result<(), WireError> {
    let h = frame.header;
    if h.api_key != PEER_API_KEY {
        return Err(malformed(format_args!("API key {} is not the peer protocol's ({PEER_API_KEY})", h.api_key)));
    }
    if h.api_version != PEER_VERSION {
        return Err(WireError::new(
            ErrorCode::UnsupportedVersion,
            format!("peer protocol version {} is not spoken here ({PEER_VERSION}): run the same Weir version on every node", h.api_version),
        ));
    }
    if h.kind != kind {
        return Err(malformed(format_args!("expected a {kind:?} frame")));
    }
    Ok(())
}

impl Call {
    /// The record-batch bytes this call carries (its frame's raw payload).
    pub fn payload_len(&self) -> usize {
        match self {
            Call::Append(a) => a
                .entries
                .iter()
                .map(|e| match &e.body {
                    EntryBody::Normal { batches, .. } => batches.iter().map(|b| b.len()).sum(),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }
}

impl PeerFrame<Call> {
    /// Appends the framed calls to `out`, and returns the payload (the
    /// batches, in order) that must follow on the wire.
    pub fn encode_head(&self, out: &mut BytesMut) -> Vec<Bytes> {
        let mut payload = Vec::new();
        let messages = self
            .messages
            .iter()
            .map(|m| {
                let body = match &m.body {
                    Call::Append(a) => WireCall::Append(WireAppend {
                        vote: a.vote,
                        prev_log_id: a.prev_log_id,
                        leader_commit: a.leader_commit,
                        entries: a
                            .entries
                            .iter()
                            .map(|e| WireEntry {
                                log_id: e.log_id,
                                body: match &e.body {
                                    EntryBody::Blank => WireEntryBody::Blank,
                                    EntryBody::Membership(m) => WireEntryBody::Membership(m.clone()),
                                    EntryBody::Normal { base_offset, batches } => {
                                        payload.extend(batches.iter().cloned());
                                        WireEntryBody::Normal {
                                            base_offset: *base_offset,
                                            batch_lens: batches.iter().map(|b| b.len() as u32).collect(),
                                        }
                                    }
                                },
                            })
                            .collect(),
                    }),
                    Call::Vote(v) => WireCall::Vote(v.clone()),
                    Call::Snapshot(s) => WireCall::Snapshot(s.clone()),
                    Call::Heartbeat(h) => WireCall::Heartbeat(h.clone()),
                    Call::Forward(f) => WireCall::Forward(f.clone()),
                    Call::Elect => WireCall::Elect,
                };
                WireMessage { call_id: m.call_id, group: m.group, body }
            })
            .collect();
        let body = postcard::to_stdvec(&WireFrame { from: self.from, identity: self.identity, messages })
            .expect("postcard encoding of owned data cannot fail");
        let payload_len = payload.iter().map(|b| b.len()).sum();
        frame::encode_head(out, header(Kind::Request), &body, payload_len);
        payload
    }

    /// Encodes the whole frame into one buffer (tests, small frames).
    pub fn encode(&self, out: &mut BytesMut) {
        for b in self.encode_head(out) {
            out.extend_from_slice(&b);
        }
    }

    /// Decodes a frame of calls. Total: any frame gives calls or an error.
    pub fn decode(frame: &Frame) -> Result<PeerFrame<Call>, WireError> {
        check_header(frame, Kind::Request)?;
        let (wire, rest): (WireFrame<WireCall>, &[u8]) = postcard::take_from_bytes(&frame.body).map_err(malformed)?;
        let mut payload = frame.body.slice(frame.body.len() - rest.len()..);
        if wire.messages.len() > MESSAGES_PER_FRAME_MAX {
            return Err(malformed(format_args!("{} messages in one frame (at most {MESSAGES_PER_FRAME_MAX})", wire.messages.len())));
        }
        check_node(wire.from)?;
        let mut messages = Vec::with_capacity(wire.messages.len());
        for m in wire.messages {
            let body = match m.body {
                WireCall::Vote(v) => {
                    check_vote(&v.vote)?;
                    Call::Vote(v)
                }
                WireCall::Snapshot(s) => {
                    check_vote(&s.vote)?;
                    Call::Snapshot(s)
                }
                WireCall::Heartbeat(h) => Call::Heartbeat(h),
                WireCall::Elect => Call::Elect,
                WireCall::Forward(f) => {
                    if f.len() > FORWARD_BYTES_MAX {
                        return Err(malformed(format_args!("a forwarded request of {} bytes (at most {FORWARD_BYTES_MAX})", f.len())));
                    }
                    Call::Forward(f)
                }
                WireCall::Append(a) => {
                    check_vote(&a.vote)?;
                    if a.entries.len() > ENTRIES_PER_APPEND_MAX {
                        return Err(malformed(format_args!(
                            "{} entries in one append (at most {ENTRIES_PER_APPEND_MAX})",
                            a.entries.len()
                        )));
                    }
                    let mut entries = Vec::with_capacity(a.entries.len());
                    for e in a.entries {
                        let body = match e.body {
                            WireEntryBody::Blank => EntryBody::Blank,
                            WireEntryBody::Membership(m) => EntryBody::Membership(m),
                            WireEntryBody::Normal { base_offset, batch_lens } => {
                                let mut batches = Vec::with_capacity(batch_lens.len());
                                if batch_lens.is_empty() {
                                    return Err(malformed(format_args!("entry {} is a normal entry without batches", e.log_id.index)));
                                }
                                for len in batch_lens {
                                    let len = len as usize;
                                    if len == 0 {
                                        return Err(malformed(format_args!("entry {} holds an empty batch", e.log_id.index)));
                                    }
                                    if len > payload.len() {
                                        return Err(malformed(format_args!(
                                            "entry {} claims a batch of {len} bytes, {} remain",
                                            e.log_id.index,
                                            payload.len()
                                        )));
                                    }
                                    batches.push(payload.split_to(len));
                                }
                                EntryBody::Normal { base_offset, batches }
                            }
                        };
                        entries.push(Entry { log_id: e.log_id, body });
                    }
                    Call::Append(AppendEntries { vote: a.vote, prev_log_id: a.prev_log_id, leader_commit: a.leader_commit, entries })
                }
            };
            messages.push(Message { call_id: m.call_id, group: m.group, body });
        }
        if !payload.is_empty() {
            return Err(malformed(format_args!("{} bytes after the last batch", payload.len())));
        }
        Ok(PeerFrame { from: wire.from, identity: wire.identity, messages })
    }
}

impl PeerFrame<Answer> {
    pub fn encode(&self, out: &mut BytesMut) {
        let messages: Vec<WireMessage<&Answer>> =
            self.messages.iter().map(|m| WireMessage { call_id: m.call_id, group: m.group, body: &m.body }).collect();
        let body = postcard::to_stdvec(&WireFrame { from: self.from, identity: self.identity, messages })
            .expect("postcard encoding of owned data cannot fail");
        frame::encode(out, header(Kind::Response), &body, &[]);
    }

    /// Decodes a frame of answers. Total.
    pub fn decode(frame: &Frame) -> Result<PeerFrame<Answer>, WireError> {
        check_header(frame, Kind::Response)?;
        let (wire, rest): (WireFrame<Answer>, &[u8]) = postcard::take_from_bytes(&frame.body).map_err(malformed)?;
        if !rest.is_empty() {
            return Err(malformed(format_args!("{} bytes after the answers", rest.len())));
        }
        if wire.messages.len() > MESSAGES_PER_FRAME_MAX {
            return Err(malformed(format_args!("{} answers in one frame (at most {MESSAGES_PER_FRAME_MAX})", wire.messages.len())));
        }
        let messages = wire.messages.into_iter().map(|m| Message { call_id: m.call_id, group: m.group, body: m.body }).collect();
        Ok(PeerFrame { from: wire.from, identity: wire.identity, messages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(out: BytesMut) -> Frame {
        let mut buf = out;
        frame::decode(&mut buf, 1 << 20).unwrap().unwrap()
    }

    fn calls() -> PeerFrame<Call> {
        let vote = Vote { term: 3, node: Some(2), committed: true };
        let entries = vec![
            Entry { log_id: LogId { term: 3, index: 7 }, body: EntryBody::Blank },
            Entry {
                log_id: LogId { term: 3, index: 8 },
                body: EntryBody::Normal { base_offset: 40, batches: vec![Bytes::from_static(b"one"), Bytes::from_static(b"two!")] },
            },
            Entry {
                log_id: LogId { term: 3, index: 9 },
                body: EntryBody::Membership(Membership { configs: vec![vec![1, 2, 3]], nodes: vec![(1, "a:1".into())] }),
            },
            Entry {
                log_id: LogId { term: 3, index: 10 },
                body: EntryBody::Normal { base_offset: 45, batches: vec![Bytes::from_static(b"x")] },
            },
        ];
        PeerFrame {
            from: 2,
            identity: Identity { cluster: 7, incarnation: 9 },
            messages: vec![
                Message {
                    call_id: 1,
                    group: 9,
                    body: Call::Append(AppendEntries {
                        vote,
                        prev_log_id: Some(LogId { term: 2, index: 6 }),
                        leader_commit: None,
                        entries,
                    }),
                },
                Message { call_id: 2, group: 10, body: Call::Vote(VoteRequest { vote, last_log_id: None }) },
                Message {
                    call_id: 3,
                    group: 0,
                    body: Call::Append(AppendEntries { vote, prev_log_id: None, leader_commit: None, entries: vec![] }),
                },
                Message { call_id: 4, group: 0, body: Call::Heartbeat(NodeHeartbeat { leading: vec![(9, 3), (11, 1)] }) },
                Message { call_id: 5, group: 2, body: Call::Forward(b"command".to_vec()) },
                Message { call_id: 6, group: 7, body: Call::Elect },
            ],
        }
    }

    #[test]
    fn calls_round_trip_with_batches_in_the_payload() {
        let f = calls();
        let mut out = BytesMut::new();
        f.encode(&mut out);
        assert!(out.windows(4).any(|w| w == b"two!"), "batches travel raw");
        assert_eq!(PeerFrame::<Call>::decode(&frame_of(out)).unwrap(), f);
    }

    #[test]
    fn answers_round_trip() {
        let f = PeerFrame {
            from: 1,
            identity: Identity { cluster: 7, incarnation: 9 },
            messages: vec![
                Message {
                    call_id: 1,
                    group: 9,
                    body: Answer::Append(AppendEntriesReply::PartialSuccess(Some(LogId { term: 1, index: 2 }))),
                },
                Message { call_id: 2, group: 9, body: Answer::Error(WireError::new(ErrorCode::NotLeader, "no such group")) },
                Message { call_id: 3, group: 2, body: Answer::Forwarded(b"outcome".to_vec()) },
                Message { call_id: 4, group: 7, body: Answer::Electing },
            ],
        };
        let mut out = BytesMut::new();
        f.encode(&mut out);
        assert_eq!(PeerFrame::<Answer>::decode(&frame_of(out)).unwrap(), f);
    }

    #[test]
    fn lengths_beyond_the_payload_and_stray_bytes_are_refused() {
        let mut out = BytesMut::new();
        calls().encode(&mut out);
        let mut short = out.clone();
        short.truncate(out.len() - 1);
        let len = (short.len() - 4) as u32;
        short[..4].copy_from_slice(&len.to_le_bytes());
        assert!(PeerFrame::<Call>::decode(&frame_of(short)).is_err());
        let mut long = out.clone();
        long.extend_from_slice(b"z");
        let len = (long.len() - 4) as u32;
        long[..4].copy_from_slice(&len.to_le_bytes());
        assert!(PeerFrame::<Call>::decode(&frame_of(long)).is_err());
    }

    #[test]
    fn oversized_counts_empty_batches_and_wide_node_ids_are_refused() {
        let vote = Vote { term: 1, node: Some(1), committed: false };
        let beat = |n| Message { call_id: n, group: 0, body: Call::Heartbeat(NodeHeartbeat::default()) };
        let cases = [
            PeerFrame { from: 1, identity: Identity::default(), messages: (0..MESSAGES_PER_FRAME_MAX as u64 + 1).map(beat).collect() },
            PeerFrame { from: NODE_ID_MAX + 1, identity: Identity::default(), messages: vec![beat(1)] },
            PeerFrame {
                from: 1,
                identity: Identity { cluster: 7, incarnation: 9 },
                messages: vec![Message {
                    call_id: 1,
                    group: 1,
                    body: Call::Vote(VoteRequest { vote: Vote { node: Some(1 << 40), ..vote }, last_log_id: None }),
                }],
            },
            PeerFrame {
                from: 1,
                identity: Identity { cluster: 7, incarnation: 9 },
                messages: vec![Message {
                    call_id: 1,
                    group: 1,
                    body: Call::Append(AppendEntries {
                        vote,
                        prev_log_id: None,
                        leader_commit: None,
                        entries: vec![Entry {
                            log_id: LogId { term: 1, index: 1 },
                            body: EntryBody::Normal { base_offset: 0, batches: vec![] },
                        }],
                    }),
                }],
            },
        ];
        for f in cases {
            let mut out = BytesMut::new();
            f.encode(&mut out);
            let mut buf = out;
            let frame = frame::decode(&mut buf, 1 << 24).unwrap().unwrap();
            assert_eq!(PeerFrame::<Call>::decode(&frame).unwrap_err().code(), ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn client_frames_and_other_versions_are_refused() {
        let mut out = BytesMut::new();
        frame::encode(&mut out, FrameHeader { kind: Kind::Request, api_key: 6, api_version: 1, correlation_id: 1 }, b"", b"");
        assert_eq!(PeerFrame::<Call>::decode(&frame_of(out)).unwrap_err().code(), ErrorCode::InvalidRequest);
        let mut out = BytesMut::new();
        frame::encode(&mut out, FrameHeader { kind: Kind::Request, api_key: PEER_API_KEY, api_version: 9, correlation_id: 1 }, b"", b"");
        assert_eq!(PeerFrame::<Call>::decode(&frame_of(out)).unwrap_err().code(), ErrorCode::UnsupportedVersion);
    }

    /// The fuzzer's seed corpus is real structure: it must decode.
    #[test]
    fn fuzz_seeds_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/peer");
        for name in ["vote_and_append", "answers"] {
            let raw = std::fs::read(dir.join(name)).unwrap();
            let kind = if raw[0] == 0 { Kind::Request } else { Kind::Response };
            let mut out = BytesMut::new();
            frame::encode(&mut out, header(kind), &raw[1..], b"");
            let f = frame_of(out);
            match kind {
                Kind::Request => assert_eq!(PeerFrame::<Call>::decode(&f).unwrap().messages.len(), 2, "{name}"),
                Kind::Response => assert_eq!(PeerFrame::<Answer>::decode(&f).unwrap().messages.len(), 2, "{name}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            for kind in [Kind::Request, Kind::Response] {
                let mut out = BytesMut::new();
                frame::encode(&mut out, header(kind), &raw, b"");
                let f = frame_of(out);
                let _ = PeerFrame::<Call>::decode(&f);
                let _ = PeerFrame::<Answer>::decode(&f);
            }
        }
    }
}
