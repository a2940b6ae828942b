//! Raft, behind one module: the only importer of openraft (pinned at
//! 0.9.25; 0.10 is alpha). Everything else in the node sees [`RaftNode`]
//! (this node's peer connections and groups) and [`Group`] (one replicated
//! log: propose batches, watch the high watermark, read the status).
//!
//! - Leader-id mode: `single-term-leader`. At most one leader per term, so
//!   "one leader per term" is an invariant the simulation checks, and a log
//!   id is (term, index).
//! - Storage: each group's log is core's `PartitionLog` ([`log_store`]):
//!   one Raft entry is one append of its batches, offsets stamped at
//!   append, followers checking the leader's stamps against their own log
//!   end. The state machine ([`state_machine`]) keeps the applied id, the
//!   membership and the high watermark (the commit point as an offset).
//! - Network: Weir's own peer protocol (`weir_net::peer`) over one
//!   connection per node pair ([`peer`]), the group id in every message.
//! - Heartbeats and elections: openraft's own timers are off. The node tick
//!   ([`tick`]) sends each peer one node heartbeat listing the groups this
//!   node leads, and makes followers of a silent leader campaign: idle
//!   groups cost nothing per group on the wire.
//! - Runtime: tokio in production, madsim under `--cfg madsim`
//!   ([`runtime`]), so a simulation seed replays elections exactly.

mod convert;
mod log_store;
mod network;
pub mod peer;
mod runtime;
mod state_machine;
pub mod tombstone;
pub use state_machine::commit_applied_membership;
mod tick;

pub use log_store::SharedLog;
pub use peer::Peers;
pub use weir_net::peer::NODE_ID_MAX;

use bytes::Bytes;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use weir_core::batch::BatchHeader;
use weir_core::canary::{self, Canary};
use weir_core::disk::Disk;
use weir_core::log::PartitionLog;
use weir_net::peer::{Answer, Call};
use weir_net::{ErrorCode, WireError};

openraft::declare_raft_types!(
    /// The types Weir's Raft groups run with.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = runtime::Runtime,
);

/// What a leader proposes: whole record batches, validated by the caller,
/// appended as one entry. `base_offset` is set on entries read back from a
/// log (the offset it stamped), never on a fresh proposal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub base_offset: Option<u64>,
    pub batches: Vec<Bytes>,
}

/// Where an applied entry's records landed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub base_offset: u64,
    pub next_offset: u64,
}

/// Raft timing. Units are in the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { heartbeat_ms: 100, election_min_ms: 1000, election_max_ms: 2000 }
    }
}

/// What a group's owner learns as committed entries are applied, on every
/// replica, in log order.
pub trait ApplyHook: Send + Sync + 'static {
    /// Entries were applied: the headers of their data batches (stamped with
    /// their offsets) and the offset after the last of them.
    fn applied(&self, headers: &[BatchHeader], next_offset: u64);

    /// Only while this node is the group's only voter (a quorum of one):
    /// everything below `next_offset` is durable, hence committed, before
    /// it is applied. Lets a single broker answer at fsync, as fast as a
    /// direct append.
    fn durable(&self, _next_offset: u64) {}

    /// Only while this node is the group's only voter, just before one of
    /// its own entries of `term`, ending at offset `end`, is written: more
    /// batches (at most `budget` bytes, at the offsets that follow `end`) to
    /// write and sync with it. The owner gives them only if no later entry
    /// was proposed.
    fn extend(&self, _term: u64, _end: u64, _budget: usize) -> Vec<Bytes> {
        Vec::new()
    }
}

/// A group's role and position, for status displays and routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub term: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub last_applied: Option<u64>,
    pub last_log_index: Option<u64>,
    pub voters: Vec<u64>,
    /// `leader`, `follower`, `candidate`, `learner` or `stopped`.
    pub role: &'static str,
    /// While leading: voters whose replicated log is behind what this
    /// leader applied (or unknown).
    pub lagging: usize,
}

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this node does not lead group {group}{}", leader.map(|l| format!(" (node {l} does)")).unwrap_or_else(|| " (no leader is known: an election may be under way)".into()))]
    NotLeader { group: u64, leader: Option<u64> },
    #[error("group {group} stopped: {why}")]
    Stopped { group: u64, why: String },
    /// Refused before reaching the group (a bad proposal would otherwise
    /// fail the log's append and stop the group).
    #[error("an entry holds 1 to {max} bytes of whole batches, not {size} bytes in {batches} batches")]
    Refused { size: usize, batches: usize, max: usize },
}

impl ProposeError {
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            ProposeError::NotLeader { leader: Some(_), .. } => ErrorCode::NotLeader,
            ProposeError::NotLeader { leader: None, .. } => ErrorCode::LeaderNotAvailable,
            ProposeError::Stopped { .. } => ErrorCode::StorageError,
            ProposeError::Refused { .. } => ErrorCode::MessageTooLarge,
        };
        WireError::new(code, self.to_string())
    }
}

/// Serves a request another node forwarded (`Call::Forward`): its bytes
/// in, the answer's bytes out. Opaque to the Raft layer.
pub type ForwardHandler = Arc<dyn Fn(u64, Vec<u8>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>> + Send + Sync>;

/// A random id from the runtime's RNG (madsim's under simulation, so a
/// seed replays).
pub fn random_u64() -> u64 {
    use openraft::AsyncRuntime;
    use rand::Rng;
    runtime::Runtime::thread_rng().r#gen()
}

/// How many terms a node skips at most to outrun a candidate with an
/// older log (see `Registry::outrun`); a term further ahead is left to
/// the election timeout.
const OUTRUN_TERMS_MAX: u64 = 3;

/// The groups this node runs, by id: where peer calls are dispatched.
pub struct Registry {
    node_id: u64,
    /// Each group with the serial of its instance: a group closed and
    /// opened again (a replica moved away and back) is a new instance, and
    /// the old one's closing must not unregister it.
    groups: RwLock<HashMap<u64, (u64, Raft<TypeConfig>)>>,
    next_instance: std::sync::atomic::AtomicU64,
    peers: Arc<Peers>,
    timing: Timing,
    /// The last node heartbeat from each peer.
    heard: std::sync::Mutex<HashMap<u64, tick::Heard>>,
    /// The newest of this node's heartbeats each peer answered.
    acked: std::sync::Mutex<HashMap<u64, tick::Acked>>,
    forward: RwLock<Option<ForwardHandler>>,
    /// Groups whose replica here found its log damaged: it never campaigns
    /// and never vouches for itself as leader, so a healthy replica leads.
    aside: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// The groups this node's last tick vouched for as their leader.
    vouching: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Nodes removed from the cluster: their calls are refused.
    removed: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Whether the cluster removed this node: it applied its own removal,
    /// or a peer refused it as removed (it may never apply that: it was
    /// down or cut off when the cluster committed it). It then serves
    /// clients no stale metadata and never campaigns.
    removed_self: AtomicBool,
    /// Groups whose leadership this node is handing to another voter
    /// ([`RaftNode::hand_off`]): it does not vouch for them, so their
    /// voters stop refusing candidates.
    handing_off: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// When this node started: it forgot which leaders vouched before.
    started: tokio::time::Instant,
    /// Groups whose replica here was deleted and created again: a
    /// candidate whose log ends before this id gets no vote (see
    /// [`tombstone`]).
    vote_floors: std::sync::Mutex<HashMap<u64, tombstone::Tombstone>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("Registry").field("node_id", &self.node_id).field("groups", &groups).finish()
    }
}

impl Registry {
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    fn get(&self, group: u64) -> Option<Raft<TypeConfig>> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).get(&group).map(|(_, r)| r.clone())
    }

    /// Serves one peer call from node `from`.
    pub async fn dispatch(&self, from: u64, group: u64, call: Call) -> Answer {
        if self.removed.lock().unwrap_or_else(|p| p.into_inner()).contains(&from) {
            return Answer::Error(WireError::new(
                ErrorCode::NodeRemoved,
                format!("node {from} was removed from the cluster: wipe its data directory and join it again (weir --join)"),
            ));
        }
        let call = match call {
            Call::Heartbeat(beat) => {
                let newer: Vec<(u64, u64)> = beat
                    .leading
                    .iter()
                    .filter_map(|(g, term)| Some((*g, self.get(*g)?.metrics().borrow().current_term)).filter(|(_, t)| t > term))
                    .collect();
                tick::record(&self.heard, from, beat);
                return if newer.is_empty() { Answer::Heartbeat } else { Answer::HeartbeatNewer(newer) };
            }
            Call::Vote(v) if self.below_floor(group, v.last_log_id) => {
                tracing::debug!(
                    node = self.node_id,
                    group,
                    candidate = from,
                    "no vote: the candidate's log ends before this replica's former one"
                );
                return Answer::Error(WireError::new(
                    ErrorCode::NotLeader,
                    format!(
                        "node {}'s replica of group {group} held a longer log before it was moved off and back: no vote for node {from}",
                        self.node_id
                    ),
                ));
            }
            Call::Vote(_) if self.get(group).is_some() && self.refuses_votes(group, from) => {
                tracing::debug!(node = self.node_id, group, candidate = from, "a live leader vouches for the group: no vote");
                // Raft's defence against disruptive candidates (thesis
                // §4.2.3): while a live leader vouches for the group, a
                // candidate that cannot hear it gets no vote. It is also what
                // makes a leader's lease sound (see `RaftNode::holds_lease`).
                return Answer::Error(WireError::new(
                    ErrorCode::NotLeader,
                    format!("node {} hears a live leader of group {group}: no vote for node {from}", self.node_id),
                ));
            }
            Call::Elect => return self.elect_now(from, group),
            Call::Forward(request) => {
                let handler = self.forward.read().unwrap_or_else(|p| p.into_inner()).clone();
                return match handler {
                    Some(h) => Answer::Forwarded(h(from, request).await),
                    None => {
                        Answer::Error(WireError::new(ErrorCode::NotLeader, format!("node {} serves no forwarded requests", self.node_id)))
                    }
                };
            }
            call => call,
        };
        let Some(raft) = self.get(group) else { return peer::no_such_group(self.node_id, group) };
        let asked = match &call {
            Call::Vote(v) => Some(v.vote.term),
            _ => None,
        };
        let answer = peer::serve_call(&raft, call).await;
        if let (Some(asked), Answer::Vote(reply)) = (asked, &answer)
            && !reply.granted
        {
            self.outrun(group, &raft, asked);
        }
        answer
    }

    /// After refusing a candidate of a term above this node's (openraft
    /// refuses an older log without taking the newer term, as Raft would):
    /// campaigns now, past the candidate's term, if this node may lead.
    /// Otherwise the better log always campaigns in the term the worse one
    /// already claimed and is refused, and the two can alternate for as long
    /// as their timeouts stay in step (seed 4976: 30 s with no leader).
    fn outrun(&self, group: u64, raft: &Raft<TypeConfig>, asked: u64) {
        let (term, voter) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.current_term, m.membership_config.membership().voter_ids().any(|v| v == self.node_id))
        };
        if asked <= term || !voter || self.is_aside(group) || asked - term > OUTRUN_TERMS_MAX {
            return;
        }
        tracing::debug!(node = self.node_id, group, term, asked, "refused a candidate with an older log: campaigning past its term");
        let raft = raft.clone();
        tokio::spawn(async move {
            for _ in 0..=(asked - term) {
                if raft.trigger().elect().await.is_err() {
                    return;
                }
            }
        });
    }

    /// `from`, the group's leader, hands its leadership to this node: it
    /// campaigns now if it may lead (a voter whose log is not damaged).
    fn elect_now(&self, from: u64, group: u64) -> Answer {
        let Some(raft) = self.get(group) else { return peer::no_such_group(self.node_id, group) };
        let voter = raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == self.node_id);
        if !voter || self.is_aside(group) {
            return Answer::Error(WireError::new(
                ErrorCode::NotLeader,
                format!("node {} may not lead group {group} (not a voter, or its copy is damaged): hand it to another", self.node_id),
            ));
        }
        tracing::info!(node = self.node_id, group, from, "leadership handed to this node: campaigning");
        tokio::spawn(async move {
            let _ = raft.trigger().elect().await;
        });
        Answer::Electing
    }

    fn is_handing_off(&self, group: u64) -> bool {
        self.handing_off.lock().unwrap_or_else(|p| p.into_inner()).contains(&group)
    }

    fn all(&self) -> Vec<(u64, Raft<TypeConfig>)> {
        let mut all: Vec<(u64, Raft<TypeConfig>)> =
            self.groups.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(g, (_, r))| (*g, r.clone())).collect();
        // In id order: a simulation replays the same sequence of calls.
        all.sort_unstable_by_key(|(g, _)| *g);
        all
    }

    /// Whether this node's replica of `group` must not lead: its log is
    /// damaged ([`RaftNode::step_aside`]), or it was deleted and created
    /// again and has not applied up to its former log's end yet (a
    /// [`tombstone`]: with a shorter log than its former self, it could win
    /// with the votes of old members as far behind). The floor goes once
    /// it is reached.
    fn is_aside(&self, group: u64) -> bool {
        if self.aside.lock().unwrap_or_else(|p| p.into_inner()).contains(&group) {
            return true;
        }
        let Some(floor) = self.vote_floors.lock().unwrap_or_else(|p| p.into_inner()).get(&group).copied() else { return false };
        let applied = self.get(group).and_then(|r| r.metrics().borrow().last_applied).map(convert::log_id_to_wire);
        if floor.refuses(applied) {
            return true;
        }
        tracing::info!(node = self.node_id, group, "a re-created replica has applied past its former log: it may lead again");
        self.vote_floors.lock().unwrap_or_else(|p| p.into_inner()).remove(&group);
        false
    }

    fn heard(&self) -> HashMap<u64, tick::Heard> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a candidate of `group` whose log ends at `last` is behind
    /// the log this node's replica held before it was deleted.
    fn below_floor(&self, group: u64, last: Option<weir_net::peer::LogId>) -> bool {
        self.vote_floors.lock().unwrap_or_else(|p| p.into_inner()).get(&group).is_some_and(|t| t.refuses(last))
    }

    /// Whether `candidate` gets no vote for `group` now: a peer other than
    /// `candidate` vouched for the group as its leader within three quarters
    /// of the shortest election timeout, or this node vouches for it itself,
    /// or this node started within that window (it forgot who vouched, and
    /// a leader may hold a lease on its earlier answers).
    fn refuses_votes(&self, group: u64, candidate: u64) -> bool {
        let window = Duration::from_millis(self.timing.election_min_ms * 3 / 4);
        let now = tokio::time::Instant::now();
        now.duration_since(self.started) < window || self.vouches_for(group) || self.vouched_for_by_other(group, candidate, window)
    }

    fn vouches_for(&self, group: u64) -> bool {
        self.vouching.lock().unwrap_or_else(|p| p.into_inner()).contains(&group)
    }

    /// Whether a peer other than `candidate` vouched for `group` as its
    /// leader within `window`.
    fn vouched_for_by_other(&self, group: u64, candidate: u64, window: Duration) -> bool {
        let now = tokio::time::Instant::now();
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(node, h)| *node != candidate && h.leading.contains_key(&group) && h.at.is_some_and(|at| now.duration_since(at) < window))
    }

    /// Whether a majority of `voters` (this node counted) answered a
    /// heartbeat of this node's sent within `fresh`, none of them knowing a
    /// term of `group` newer than `term`; with `vouched`, only heartbeats
    /// that vouched for `group` count (the others' answers say nothing of it).
    fn acked_by_majority(&self, voters: &[u64], group: u64, term: u64, fresh: Duration, vouched: bool) -> bool {
        // Read in place: every fetch and every led group at every tick asks,
        // and each answer holds the sets of groups its heartbeat named.
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let alive = voters
            .iter()
            .filter(|v| {
                **v == self.node_id
                    || acked.get(v).is_some_and(|a| {
                        now.duration_since(a.sent) < fresh
                            && (!vouched || a.listed.contains(&group))
                            && a.newer.get(&group).is_none_or(|t| *t <= term)
                    })
            })
            .count();
        alive * 2 > voters.len()
    }

    fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }
}

/// This node's Raft side: its id, peer connections and groups.
#[derive(Debug)]
pub struct RaftNode {
    pub id: u64,
    timing: Timing,
    registry: Arc<Registry>,
}

impl RaftNode {
    /// A node with no groups yet. Spawns its heartbeat tick (until `stop`).
    pub fn new(id: u64, timing: Timing, stop: watch::Receiver<bool>) -> Arc<RaftNode> {
        assert!(id <= NODE_ID_MAX, "node ids are validated by the configuration");
        let peers = Peers::new(id);
        let registry = Arc::new(Registry {
            node_id: id,
            groups: RwLock::default(),
            next_instance: std::sync::atomic::AtomicU64::new(1),
            peers: peers.clone(),
            timing,
            heard: Default::default(),
            acked: Default::default(),
            forward: RwLock::default(),
            aside: Default::default(),
            vouching: Default::default(),
            handing_off: Default::default(),
            removed: Default::default(),
            removed_self: AtomicBool::new(false),
            started: tokio::time::Instant::now(),
            vote_floors: Default::default(),
        });
        let node = Arc::new(RaftNode { id, timing, registry });
        tokio::spawn(tick::run(Arc::downgrade(&node.registry), timing, stop));
        node
    }

    /// The groups this node leads now, with their terms, by group id:
    /// what the simulator's observer samples to check that no term of
    /// any group ever has two leaders.
    pub fn leaderships(&self) -> Vec<(u64, u64)> {
        let groups = self.registry.groups.read().unwrap_or_else(|p| p.into_inner());
        let mut led: Vec<(u64, u64)> = groups
            .iter()
            .filter_map(|(id, (_, raft))| {
                let m = raft.metrics();
                let m = m.borrow();
                (m.state == ServerState::Leader && m.running_state.is_ok()).then_some((*id, m.current_term))
            })
            .collect();
        led.sort_unstable();
        led
    }

    /// Serves peer calls on `listener` until `stop`.
    pub fn serve(&self, listener: tokio::net::TcpListener, stop: watch::Receiver<bool>) {
        tokio::spawn(peer::serve(listener, self.registry.clone(), stop));
    }

    /// Candidates of `group` whose log ends before the one `floor` records
    /// get no vote from this node, and it does not lead until it applied
    /// past that point (`None`: Raft's own rules only). See [`tombstone`].
    pub fn set_vote_floor(&self, group: u64, floor: Option<tombstone::Tombstone>) {
        let mut floors = self.registry.vote_floors.lock().unwrap_or_else(|p| p.into_inner());
        match floor {
            Some(f) => floors.insert(group, f),
            None => floors.remove(&group),
        };
    }

    /// This node's replica of `group` found its log damaged: from now on
    /// (until the process restarts) it follows and votes but never leads,
    /// so a replica whose disk returns corruption never serves it while
    /// its peers can. Repair from the peers is not built yet.
    pub fn step_aside(&self, group: u64) {
        if self.registry.aside.lock().unwrap_or_else(|p| p.into_inner()).insert(group) {
            tracing::error!(
                group,
                "this replica's log is damaged: it steps aside (follows, never leads) until restarted; replace or repair its disk"
            );
        }
    }

    /// Serves requests other nodes forward to this one with `handler`.
    pub fn on_forward(&self, handler: ForwardHandler) {
        *self.registry.forward.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Forwards `request` to node `node` (its answer's bytes), within `timeout`.
    pub async fn forward(&self, node: u64, request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, WireError> {
        match self.registry.peers.call(node, 0, Call::Forward(request), timeout).await {
            Ok(Answer::Forwarded(answer)) => Ok(answer),
            Ok(Answer::Error(e)) => Err(e),
            Ok(other) => Err(WireError::new(ErrorCode::InvalidRequest, format!("node {node} answered a forward with {other:?}"))),
            Err(e) => Err(WireError::new(ErrorCode::LeaderNotAvailable, format!("cannot reach node {node}: {e}"))),
        }
    }

    /// The peer whose heartbeats say it leads `group`, in the newest term
    /// heard: for routing requests about groups this node holds no replica of.
    pub fn leader_heard(&self, group: u64) -> Option<(u64, u64)> {
        let fresh_for = Duration::from_millis(self.timing.election_max_ms);
        let now = tokio::time::Instant::now();
        self.registry
            .heard()
            .into_iter()
            .filter(|(_, h)| h.at.is_some_and(|at| now.duration_since(at) < fresh_for))
            .filter_map(|(node, h)| h.leading.get(&group).map(|term| (node, *term)))
            .max_by_key(|(node, term)| (*term, *node))
    }

    /// Whether this node, leading `group` in `term`, holds its lease: a
    /// majority of `voters` answered one of its heartbeats vouching for
    /// the group, sent within half the shortest election timeout, none
    /// knowing a newer term. Each of
    /// them refuses other candidates for three quarters of that timeout
    /// after it heard this node vouch for the group (see `Registry::
    /// dispatch`), so no other leader can exist yet, and this one may
    /// answer reads from its own state. (Hearing from a majority is not
    /// enough: with one direction of a link cut, or a peer that already
    /// moved to a newer term, the leader still hears them.) Only while this
    /// node's last tick vouched for the group: one that stopped vouching
    /// (stepped aside, or lost its majority) is being replaced.
    pub fn holds_lease(&self, group: u64, term: u64, voters: &[u64]) -> bool {
        voters.len() <= 1
            || self.registry.vouches_for(group)
                && self.registry.acked_by_majority(voters, group, term, Duration::from_millis(self.timing.election_min_ms / 2), true)
    }

    /// Whether a majority of `voters` (this node counted if it is one) has
    /// been heard within the election timeout: a leader without one cannot
    /// commit, and says so at once instead of letting a write time out.
    pub fn hears_majority(&self, voters: &[u64]) -> bool {
        self.heard_majority_within(voters, self.timing.election_max_ms)
    }

    fn heard_majority_within(&self, voters: &[u64], fresh: u64) -> bool {
        let heard = self.heard_ms_ago();
        let alive = voters.iter().filter(|v| **v == self.id || heard.get(v).is_some_and(|ms| *ms < fresh)).count();
        alive * 2 > voters.len()
    }

    /// Whether `node` was heard within the longest election timeout.
    pub fn heard_lately(&self, node: u64) -> bool {
        self.heard_ms_ago().get(&node).is_some_and(|ms| *ms < self.timing.election_max_ms)
    }

    /// When each peer was last heard (milliseconds ago).
    pub fn heard_ms_ago(&self) -> BTreeMap<u64, u64> {
        let now = tokio::time::Instant::now();
        self.registry.heard().into_iter().filter_map(|(n, h)| Some((n, now.duration_since(h.at?).as_millis() as u64))).collect()
    }

    /// Whether the cluster removed this node (see [`RaftNode::mark_removed`]).
    pub fn is_removed(&self) -> bool {
        self.registry.removed_self.load(Ordering::Relaxed)
    }

    /// This node applied its own removal from the cluster.
    pub fn mark_removed(&self) {
        self.registry.removed_self.store(true, Ordering::Relaxed);
    }

    /// Node `node` was removed from the cluster: its calls are refused and
    /// it gets no more heartbeats.
    pub fn forget_node(&self, node: u64) {
        self.registry.removed.lock().unwrap_or_else(|p| p.into_inner()).insert(node);
        self.registry.peers.forget(node);
    }

    /// This node's cluster id (0 until known) and data directory id, as
    /// every frame it sends presents them.
    pub fn set_identity(&self, identity: weir_net::peer::Identity) {
        self.registry.peers.set_identity(identity);
    }

    pub fn identity(&self) -> weir_net::peer::Identity {
        self.registry.peers.vetting().own()
    }

    /// The data directory each registered node must present (from the
    /// metadata): a peer presenting another is refused both ways.
    pub fn set_bindings(&self, bound: std::collections::BTreeMap<u64, u64>) {
        self.registry.peers.set_bindings(bound);
    }

    /// Records a node's Raft address.
    pub fn set_address(&self, node: u64, addr: String) {
        self.registry.peers.set_address(node, addr);
    }

    /// Hands the leadership of `group`, which this node leads, to voter
    /// `target` (openraft 0.9 has no transfer call): stop vouching for the
    /// group, so its voters stop refusing candidates; wait until `target`
    /// holds the whole log, everything is applied, and nothing was sent for
    /// openraft's lease (voters refuse candidates for that long after the
    /// leader's last append); then ask `target` to campaign and wait for the
    /// new term. The caller stops proposing first (a target chasing new
    /// entries never catches up). Failing (the target lagging, refusing, or
    /// losing), this node goes on leading. Elections stay Raft's: the
    /// target wins only with a majority's votes.
    pub async fn hand_off(&self, group: &Group, target: u64, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let g = group.id;
        let start = group.status();
        if !start.is_leader {
            return Err(format!("node {} does not lead group {g}", self.id));
        }
        if target == self.id || !start.voters.contains(&target) {
            return Err(format!("node {target} is not another voter of group {g} (voters {:?})", start.voters));
        }
        self.registry.handing_off.lock().unwrap_or_else(|p| p.into_inner()).insert(g);
        self.registry.vouching.lock().unwrap_or_else(|p| p.into_inner()).remove(&g);
        let result = self.hand_off_steps(group, target, start.term, deadline).await;
        self.registry.handing_off.lock().unwrap_or_else(|p| p.into_inner()).remove(&g);
        match &result {
            Ok(()) => tracing::info!(group = g, from = self.id, to = target, term = start.term, "leadership handed off"),
            Err(e) => tracing::info!(group = g, to = target, error = %e, "leadership not handed off: leading on"),
        }
        result
    }

    async fn hand_off_steps(&self, group: &Group, target: u64, term: u64, deadline: tokio::time::Instant) -> Result<(), String> {
        let g = group.id;
        // Quiet for openraft's lease, plus a tick: the tick's last heartbeat
        // (sent when the applied end moved) touches the voters' lease too.
        let quiet = Duration::from_millis(self.openraft_lease_ms() + self.timing.heartbeat_ms + 20);
        let mut seen = None;
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            let s = group.status();
            if !s.is_leader || s.term != term {
                // The target may have won on its own (its election timeout).
                return if s.leader == Some(target) { Ok(()) } else { Err(format!("group {g} changed leader meanwhile")) };
            }
            let matched = group.matched().get(&target).copied().flatten();
            let now_seen = (s.last_log_index, s.last_applied, matched);
            let now = tokio::time::Instant::now();
            if seen != Some(now_seen) {
                seen = Some(now_seen);
                quiet_since = now;
            }
            let caught_up = matched == s.last_log_index && s.last_applied == s.last_log_index;
            if caught_up && now.duration_since(quiet_since) >= quiet {
                break;
            }
            if now >= deadline {
                return Err(format!(
                    "node {target} did not catch up with group {g} in time (it holds {matched:?} of {:?})",
                    s.last_log_index
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(100));
        match self.registry.peers.call(target, g, Call::Elect, left).await {
            Ok(Answer::Electing) => {}
            Ok(Answer::Error(e)) => return Err(e.message),
            Ok(other) => return Err(format!("node {target} answered a hand-off with {other:?}")),
            Err(e) => return Err(format!("cannot reach node {target}: {e}")),
        }
        let mut m = group.raft.metrics();
        let moved = tokio::time::timeout(deadline.saturating_duration_since(tokio::time::Instant::now()), async {
            loop {
                if m.borrow_and_update().current_term > term {
                    return true;
                }
                if m.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match moved {
            Ok(true) => Ok(()),
            _ => Err(format!("node {target} did not take over group {g} in time")),
        }
    }

    /// How long openraft's voters refuse candidates after their leader's
    /// last append (its `election_timeout_max`). Our own refusal while a
    /// leader vouches (`Registry::refuses_votes`) is what guards elections
    /// and leases; openraft's is kept just above the append timeout, so a
    /// hand-off waits only that long.
    fn openraft_lease_ms(&self) -> u64 {
        self.append_timeout_ms() + 2
    }

    /// openraft's `heartbeat_interval`: to openraft only its own tick
    /// period (×1.5) and every AppendEntries' timeout, which must outlast a
    /// slow follower's fsync of a 4 MiB read: half the election timeout.
    fn append_timeout_ms(&self) -> u64 {
        self.timing.heartbeat_ms.max(self.timing.election_min_ms / 2)
    }

    fn config(&self, group: u64) -> Result<Arc<openraft::Config>, String> {
        let config = openraft::Config {
            cluster_name: format!("weir-group-{group}"),
            // Our node tick sends heartbeats (`timing.heartbeat_ms`).
            heartbeat_interval: self.append_timeout_ms(),
            // openraft's own elections are off (the node tick runs them);
            // these set only its vote timeout and its lease (the max).
            election_timeout_min: self.openraft_lease_ms() - 1,
            election_timeout_max: self.openraft_lease_ms(),
            // The node tick keeps groups alive and runs their elections
            // (see `tick`): one message per peer per tick, not per group.
            enable_heartbeat: false,
            enable_elect: false,
            max_payload_entries: 256,
            // Snapshots are tiny and built on demand; the log is purged only
            // by retention, at segment boundaries, never automatically.
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            ..Default::default()
        };
        config.validate().map(Arc::new).map_err(|e| e.to_string())
    }

    /// Opens group `group` on `log` (its storage) and starts it. It joins
    /// the peer traffic at once; call [`Group::bootstrap`] on a new group.
    pub async fn open_group(self: &Arc<Self>, group: u64, log: PartitionLog, disk: Arc<dyn Disk>) -> Result<Arc<Group>, String> {
        self.open_group_with(group, log, disk, None).await
    }

    /// As [`RaftNode::open_group`], telling `hook` about every applied entry.
    pub async fn open_group_with(
        self: &Arc<Self>,
        group: u64,
        log: PartitionLog,
        disk: Arc<dyn Disk>,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> Result<Arc<Group>, String> {
        let config = self.config(group)?;
        let canary = log.config().canary;
        let batch_bytes_max = log.config().batch_bytes_max;
        // Entries up to the committed id saved before this open were
        // applied in an earlier life (their producers come from the log's
        // rebuild); everything after it is applied from now on, read whole.
        let applied_before = log.committed().map_err(|e| e.to_string())?.map_or(0, |c| c.index + 1);
        let log: SharedLog = Arc::new(Mutex::new(log));
        let alone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fault = log_store::StorageFault::default();
        let store = log_store::LogStore::new(
            log.clone(),
            disk.clone(),
            canary,
            self.id,
            hook.clone(),
            alone.clone(),
            fault.clone(),
            applied_before,
        );
        let purge_target = state_machine::PurgeTarget::default();
        let sm = state_machine::StateMachine::open(log.clone(), disk, hook, purge_target.clone()).await.map_err(|e| e.to_string())?;
        let high_watermark = sm.high_watermark();
        let network = network::Network { peers: self.registry.peers.clone(), group };
        let raft = Raft::new(self.id, config, network, store, sm).await.map_err(|e| e.to_string())?;
        {
            // The membership the log holds now; later membership entries
            // update the flag as they are appended.
            let m = raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            let voters: Vec<u64> = mem.voter_ids().collect();
            alone.store(mem.get_joint_config().len() == 1 && voters == [self.id], std::sync::atomic::Ordering::SeqCst);
        }
        let instance = self.registry.next_instance.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.registry.groups.write().unwrap_or_else(|p| p.into_inner()).insert(group, (instance, raft.clone()));
        Ok(Arc::new(Group {
            id: group,
            instance,
            node: self.id,
            raft,
            high_watermark,
            log,
            canary,
            batch_bytes_max,
            canary_serial: Mutex::new(()),
            fault,
            alone,
            purge_target,
        }))
    }

    /// Stops a group and forgets it.
    pub async fn close_group(&self, group: &Group) {
        {
            let mut groups = self.registry.groups.write().unwrap_or_else(|p| p.into_inner());
            if groups.get(&group.id).is_some_and(|(instance, _)| *instance == group.instance) {
                groups.remove(&group.id);
            }
        }
        let _ = group.raft.shutdown().await;
    }
}

/// A group's role as it changes.
pub struct StatusWatch {
    all: watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    /// Role, term and leader only: while serving, nothing else matters, and
    /// the full metrics change with every entry.
    server: watch::Receiver<openraft::metrics::RaftServerMetrics<u64, BasicNode>>,
    serving: bool,
}

impl StatusWatch {
    /// Waits for a change that may matter to [`StatusWatch::serving_term`];
    /// false once the group is gone.
    pub async fn changed(&mut self) -> bool {
        if self.serving { self.server.changed().await.is_ok() } else { self.all.changed().await.is_ok() }
    }

    /// The term this node leads in, once it has applied an entry of that
    /// term (so every entry before its term is applied too): only then may
    /// it serve writes whose checks depend on applied state.
    pub fn serving_term(&mut self) -> Option<u64> {
        self.server.borrow_and_update();
        let m = self.all.borrow_and_update();
        let term = (m.running_state.is_ok()
            && m.state == ServerState::Leader
            && m.last_applied.is_some_and(|a| a.leader_id.term == m.current_term))
        .then_some(m.current_term);
        self.serving = term.is_some();
        term
    }

    pub fn leader(&self) -> Option<u64> {
        self.all.borrow().current_leader
    }

    /// Wakes on every change until the next [`StatusWatch::serving_term`]
    /// (a leader waiting for its applied end to reach its log end).
    pub fn watch_all(&mut self) {
        self.serving = false;
    }
}

/// One replicated log on this node.
pub struct Group {
    pub id: u64,
    /// Which opening of the group this is (see `Registry::groups`).
    instance: u64,
    node: u64,
    raft: Raft<TypeConfig>,
    high_watermark: watch::Receiver<u64>,
    log: SharedLog,
    canary: Option<Canary>,
    batch_bytes_max: usize,
    /// Serialises proposals under the ack-before-majority canary.
    canary_serial: Mutex<()>,
    fault: log_store::StorageFault,
    /// This node is the group's only voter (see [`ApplyHook::durable`]).
    alone: Arc<std::sync::atomic::AtomicBool>,
    /// Where retention or compaction would purge to ([`Group::note_purged`]).
    purge_target: state_machine::PurgeTarget,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("id", &self.id).field("node", &self.node).finish()
    }
}

impl Group {
    /// Makes a new group's first membership: `members` (node id → Raft
    /// address) as voters. A group that already has one is left alone.
    /// Every first voter calls it with the same members.
    pub async fn bootstrap(&self, members: BTreeMap<u64, String>) -> Result<(), String> {
        if members.is_empty() {
            // A joining replica: its leader sends the membership with the log.
            return Ok(());
        }
        // Asked first: openraft logs a refused initialize as an error.
        if self.raft.is_initialized().await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        let nodes: BTreeMap<u64, BasicNode> = members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Proposes `batches` as one entry and waits until it is committed and
    /// applied; answers where its records landed.
    pub async fn propose(&self, batches: Vec<Bytes>) -> Result<Applied, ProposeError> {
        self.check(&batches)?;
        if canary::on(self.canary, Canary::AckBeforeMajority) {
            return self.propose_canary(batches).await;
        }
        let result = self.raft.client_write(Proposal { base_offset: None, batches }).await;
        self.answer(result.map(|r| r.data))
    }

    /// What the log's append would refuse, refused here: an empty entry or
    /// one above the log's batch limit. (Framing and CRCs are the caller's
    /// to validate, as for any append.)
    fn check(&self, batches: &[Bytes]) -> Result<(), ProposeError> {
        let size: usize = batches.iter().map(|b| b.len()).sum();
        if batches.is_empty() || size > self.batch_bytes_max {
            return Err(ProposeError::Refused { size, batches: batches.len(), max: self.batch_bytes_max });
        }
        Ok(())
    }

    fn answer(&self, result: Result<Applied, RaftError<u64, ClientWriteError<u64, BasicNode>>>) -> Result<Applied, ProposeError> {
        match result {
            Ok(r) => Ok(r),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { group: self.id, leader: f.leader_id.filter(|l| *l != self.node) })
            }
            Err(RaftError::APIError(e)) => Err(ProposeError::Stopped { group: self.id, why: e.to_string() }),
            Err(RaftError::Fatal(e)) => Err(ProposeError::Stopped { group: self.id, why: e.to_string() }),
        }
    }

    /// The ack-before-majority canary: answers as soon as this node's own
    /// log has flushed the proposal, committed or not.
    async fn propose_canary(&self, batches: Vec<Bytes>) -> Result<Applied, ProposeError> {
        let _serial = self.canary_serial.lock().await;
        let base = self.log.lock().await.log_end_offset();
        let records: u64 = batches.iter().filter_map(|b| BatchHeader::parse(b).ok()).map(|h| u64::from(h.record_count)).sum();
        let mut rx = match self.raft.client_write_ff(Proposal { base_offset: None, batches }).await {
            Ok(rx) => rx,
            Err(e) => return Err(ProposeError::Stopped { group: self.id, why: e.to_string() }),
        };
        loop {
            if let Ok(r) = rx.try_recv() {
                return self.answer(r.map(|r| r.data).map_err(RaftError::APIError));
            }
            if self.log.lock().await.flushed_offset() >= base + records && self.status().is_leader {
                return Ok(Applied { base_offset: base, next_offset: base + records });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Hands `batches` to the group as one entry, in call order (calls
    /// awaited one after another are appended in that order), and returns
    /// the wait for its commit.
    pub async fn submit(
        &self,
        batches: Vec<Bytes>,
    ) -> Result<impl std::future::Future<Output = Result<Applied, ProposeError>> + use<>, ProposeError> {
        self.check(&batches)?;
        let (group, node) = (self.id, self.node);
        let rx = self
            .raft
            .client_write_ff(Proposal { base_offset: None, batches })
            .await
            .map_err(|e| ProposeError::Stopped { group, why: e.to_string() })?;
        Ok(async move {
            match rx.await {
                Ok(Ok(r)) => Ok(r.data),
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    Err(ProposeError::NotLeader { group, leader: f.leader_id.filter(|l| *l != node) })
                }
                Ok(Err(e)) => Err(ProposeError::Stopped { group, why: e.to_string() }),
                Err(_) => Err(ProposeError::Stopped { group, why: "the group stopped before answering".into() }),
            }
        })
    }

    /// The storage fault that stopped this group, if one did.
    pub fn storage_fault(&self) -> Option<weir_core::log::LogError> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Watches the group's role.
    pub fn watch(&self) -> StatusWatch {
        StatusWatch { all: self.raft.metrics(), server: self.raft.server_metrics(), serving: false }
    }

    /// The high watermark: offsets below it are committed.
    pub fn high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.clone()
    }

    /// The storage, for reads (fetches read up to the high watermark).
    pub fn log(&self) -> &SharedLog {
        &self.log
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics();
        let m = m.borrow();
        // A stopped group's last metrics may still name a leader, even
        // itself: it leads nothing now, and naming it sent clients to a
        // replica that could not serve (5-broker seed 184, a bit flip in a
        // moved-in replica that had just won an election).
        let stopped = m.running_state.is_err() || m.state == ServerState::Shutdown;
        GroupStatus {
            term: m.current_term,
            leader: m.current_leader.filter(|_| !stopped),
            is_leader: m.state == ServerState::Leader && !stopped,
            last_applied: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            voters: m.membership_config.membership().voter_ids().collect(),
            role: match m.state {
                _ if m.running_state.is_err() => "stopped",
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "stopped",
            },
            lagging: m.replication.as_ref().map_or(0, |r| {
                let applied = m.last_applied.map(|l| l.index);
                r.iter().filter(|(node, matched)| **node != self.node && matched.map(|l| l.index) < applied).count()
            }),
        }
    }

    /// Asks openraft to purge the log's entries up to `upto` (retention or
    /// compaction would delete their segments): it does once no replication
    /// reads them, and the log store then deletes the segments
    /// ([`PartitionLog::purge_entries`]). A follower behind them is sent a
    /// snapshot, then the rest. openraft purges only what a snapshot covers,
    /// so one is built at `upto` first; the next pass asks again if the
    /// purge did not happen.
    pub async fn note_purged(&self, upto: weir_core::log::LogId) {
        // The log numbers entries from 1, openraft from 0.
        if upto.index == 0 {
            return;
        }
        let upto = convert::log_id_to_raft(upto);
        let index = upto.index;
        // Where the next snapshot is built, so openraft may purge up to it.
        state_machine::raise_purge_target(&self.purge_target, upto);
        let (purged, snapshot) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.purged.map(|p| p.index), m.snapshot.map(|s| s.index))
        };
        if purged.is_some_and(|k| k >= index) {
            return;
        }
        if snapshot.is_none_or(|s| s < index) {
            let _ = self.raft.trigger().snapshot().await;
            // The snapshot is built in the background, and a purge asked
            // before it exists is dropped: a replica whose openraft still
            // believed in deleted entries read past the hole once it led,
            // and its followers panicked on entries that did not follow on.
            let built = |m: &openraft::RaftMetrics<u64, BasicNode>| m.snapshot.is_some_and(|s| s.index >= index);
            let _ = self.raft.wait(Some(Duration::from_secs(5))).metrics(built, "snapshot covering the purge").await;
        }
        // Once asked, openraft purges as soon as no replication reads the
        // entries (it tries again at every replication answer).
        let _ = self.raft.trigger().purge_log(index).await;
    }

    /// On the leader: the last entry index each other voter holds (`None`
    /// for one that holds nothing yet); empty on any other replica.
    pub fn matched(&self) -> BTreeMap<u64, Option<u64>> {
        let voters = self.status().voters;
        self.progress().into_iter().filter(|(n, _)| voters.contains(n)).collect()
    }

    /// On the leader: the last entry index every other member (voters and
    /// learners) holds; empty on any other replica.
    pub fn progress(&self) -> BTreeMap<u64, Option<u64>> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.replication
            .as_ref()
            .map_or_else(BTreeMap::new, |r| r.iter().filter(|(n, _)| **n != self.node).map(|(n, l)| (*n, l.map(|l| l.index))).collect())
    }

    /// The group's core stopped (a storage fault; see
    /// [`Group::storage_fault`]): it takes nothing until it is opened again.
    pub fn stopped(&self) -> bool {
        self.raft.metrics().borrow().running_state.is_err()
    }

    /// This node is the group's only voter: durable means committed.
    pub fn alone(&self) -> bool {
        self.alone.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Campaigns at once if this node is the group's only voter and nobody
    /// leads (a single broker starting): no election timeout to wait out.
    pub async fn campaign_if_alone(&self) {
        let (alone, led) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            (voters == [self.node], m.current_leader.is_some())
        };
        if alone && !led {
            let _ = self.raft.trigger().elect().await;
        }
    }

    /// For a new group's preferred replica: campaigns at once, and again
    /// every `every` while nobody leads, up to `attempts` times (its peers
    /// may not have opened the group yet), instead of waiting out an
    /// election timeout. Stops early if the replica stepped aside.
    pub async fn campaign_until_led(&self, attempts: u32, every: Duration) {
        for _ in 0..attempts {
            let led = self.raft.metrics().borrow().current_leader.is_some();
            if led || self.stopped() {
                return;
            }
            let _ = self.raft.trigger().elect().await;
            tokio::time::sleep(every).await;
        }
    }

    /// On the leader: adds `node` (reached at `addr`) as a learner, which
    /// receives the whole log; returns once the change is committed.
    pub async fn add_learner(&self, node: u64, addr: String) -> Result<(), String> {
        self.raft.add_learner(node, BasicNode { addr }, false).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// On the leader: makes learner `node` a voter, through openraft's
    /// joint consensus (the joint configuration commits on a majority of
    /// the old and of the new voters, then the new one alone).
    pub async fn add_voter(&self, node: u64) -> Result<(), String> {
        let change = openraft::ChangeMembers::AddVoterIds(std::collections::BTreeSet::from([node]));
        self.raft.change_membership(change, false).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// On the leader: makes `voters` (learners already, or voters) the
    /// group's voters, through joint consensus; members left out are
    /// removed from the group.
    pub async fn replace_voters(&self, voters: std::collections::BTreeSet<u64>) -> Result<(), String> {
        self.raft.change_membership(openraft::ChangeMembers::ReplaceAllVoters(voters), false).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// On the leader: removes `node` from the group (a voter through joint
    /// consensus, or a learner).
    pub async fn remove_member(&self, node: u64) -> Result<(), String> {
        let set = std::collections::BTreeSet::from([node]);
        let voter = self.status().voters.contains(&node);
        let change = if voter { openraft::ChangeMembers::RemoveVoters(set) } else { openraft::ChangeMembers::RemoveNodes(set) };
        self.raft.change_membership(change, false).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// The group's members that are not voters, with their Raft addresses.
    pub fn learners(&self) -> BTreeMap<u64, String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership.nodes().filter(|(id, _)| !voters.contains(id)).map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// Whether the newest membership the log holds is joint (a change is
    /// under way): no other change may start.
    pub fn changing_membership(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().get_joint_config().len() > 1
    }

    /// Waits until the group has a leader (this node or another), up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        let mut m = self.raft.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(l) = m.borrow_and_update().current_leader {
                    return Some(l);
                }
                if m.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        found.ok().flatten()
    }
}

#[cfg(all(test, not(madsim)))]
mod tests;
