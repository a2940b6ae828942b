//! The node tick: liveness for every group at the cost of one message per
//! peer, not one per group (CockroachDB-style coalesced heartbeats).
//!
//! openraft's own heartbeat and election timers are off. Every tick a node
//! sends each peer one [`NodeHeartbeat`] listing the groups it leads with
//! their terms, and asks openraft for a per-group heartbeat only for groups
//! that changed since the last tick (so followers learn the commit index
//! once writes stop). A follower whose group's leader has been heard lately,
//! leading that group in the follower's term, stays quiet; otherwise, after
//! its group's election timeout, the tick makes it campaign. Idle groups
//! thus cost nothing per group on the wire. The timeout of each group is
//! spread over [election_min, election_max] by a hash of (node, group,
//! attempt) plus a random draw from the runtime's RNG (madsim's under
//! simulation, so a seed replays): candidates rarely collide, and which node
//! campaigns first changes from one election to the next.

use super::{Registry, Timing};
use openraft::ServerState;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use weir_net::ErrorCode;
use weir_net::peer::{Answer, Call, NodeHeartbeat};

/// What one node heard from another.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    pub at: Option<Instant>,
    /// Groups it leads, and in which term.
    pub leading: HashMap<u64, u64>,
}

/// A peer's answer to one of this node's heartbeats.
#[derive(Debug, Clone)]
pub struct Acked {
    /// When the answered heartbeat was sent.
    pub sent: Instant,
    /// Groups of that heartbeat the peer knows a newer term of, with it.
    pub newer: HashMap<u64, u64>,
    /// The groups that heartbeat vouched for: the answer speaks for them only.
    pub listed: std::collections::HashSet<u64>,
}

/// Per-group state of the tick.
#[derive(Debug, Default)]
struct GroupTick {
    deadline: Option<Instant>,
    attempt: u64,
    /// (last log index, last applied) at the last tick, while leading.
    seen: Option<(Option<u64>, Option<u64>)>,
    /// The term at the last tick. A new term (this node voted for a
    /// candidate, or saw one) restarts the election timeout, as granting a
    /// vote does in Raft: otherwise a follower whose timeout was about to
    /// run out deposes the leader it just elected.
    term: u64,
}

fn election_timeout(timing: &Timing, node: u64, group: u64, attempt: u64) -> Duration {
    use openraft::AsyncRuntime;
    use rand::Rng;
    let spread = timing.election_max_ms.saturating_sub(timing.election_min_ms).max(1);
    // A fixed mix (splitmix64) of the ids, so nodes differ even on equal draws.
    let mut x = node.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ group.rotate_left(17) ^ attempt.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    let draw: u64 = super::runtime::Runtime::thread_rng().gen_range(0..spread);
    Duration::from_millis(timing.election_min_ms + (x ^ draw) % spread)
}

/// Runs the tick until `stop` (or the registry is gone).
pub async fn run(registry: Weak<Registry>, timing: Timing, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(timing.heartbeat_ms);
    let fresh_for = Duration::from_millis(timing.election_min_ms);
    let mut groups: HashMap<u64, GroupTick> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = crate::tasks::stopped(&mut stop) => break,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(registry) = registry.upgrade() else { break };
        let me = registry.node_id();
        let now = Instant::now();
        let heard = registry.heard();
        let mut leading = Vec::new();
        let rafts = registry.all();
        groups.retain(|g, _| rafts.iter().any(|(id, _)| id == g));
        for (g, raft) in rafts {
            let t = groups.entry(g).or_default();
            let (running, state, term, leader, last_log, applied, voters, acked_ms) = {
                let m = raft.metrics();
                let m = m.borrow();
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                (
                    m.running_state.is_ok(),
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied.map(|a| a.index),
                    voters,
                    m.millis_since_quorum_ack,
                )
            };
            if !running || (state == ServerState::Leader && voters.len() == 1) {
                // Stopped (a storage fault; its owner reports it), or a
                // quorum of one: no follower to keep quiet or inform.
                continue;
            }
            if state == ServerState::Leader {
                // Vouch only for a working group: idle (everything applied),
                // or acknowledged by a quorum lately. A leader stuck on a
                // hung disk with entries pending is not listed, so its
                // followers elect another.
                let idle = last_log == applied;
                // A replica that stepped aside does not vouch for itself: its followers elect another.
                // And only while a majority answers this node's heartbeats: a
                // leader cut off from its followers in one direction would
                // otherwise keep them from electing another (they refuse
                // candidates while a leader vouches) though it cannot commit.
                let answered = registry.acked_by_majority(&voters, g, term, fresh_for, false);
                // Nor while handing the group to another voter (`RaftNode::hand_off`).
                if !registry.is_aside(g)
                    && !registry.is_handing_off(g)
                    && answered
                    && (idle || acked_ms.is_some_and(|ms| ms < timing.election_min_ms))
                {
                    leading.push((g, term));
                }
                t.deadline = None;
                t.attempt = 0;
                let now_seen = (last_log, applied);
                if t.seen != Some(now_seen) {
                    t.seen = Some(now_seen);
                    let _ = raft.trigger().heartbeat().await;
                }
                continue;
            }
            t.seen = None;
            if term != t.term {
                t.term = term;
                t.deadline = Some(now + election_timeout(&timing, me, g, t.attempt));
            }
            if !voters.contains(&me) || registry.is_aside(g) || registry.removed_self.load(Ordering::Relaxed) {
                continue; // learners, replicas with a damaged log, and a removed node never campaign
            }
            // When the leader last vouched for this group in this term, if
            // lately; or else any peer vouching for it lately in this term or
            // a newer one (this node may not know the newest yet): its voters
            // would refuse this node, and a campaign only disturbs the group.
            let leader_heard_at = leader
                .filter(|l| *l != me)
                .and_then(|l| heard.get(&l).filter(|h| h.leading.get(&g) == Some(&term)).and_then(|h| h.at))
                .or_else(|| {
                    heard.iter().filter(|(n, h)| **n != me && h.leading.get(&g).is_some_and(|t| *t >= term)).filter_map(|(_, h)| h.at).max()
                })
                .filter(|at| now.duration_since(*at) < fresh_for);
            if let Some(at) = leader_heard_at {
                // The election timeout runs from the last heartbeat, not from
                // this tick: a dead leader is replaced 1–2 s after it fell
                // silent, not after its heartbeats went stale as well.
                t.attempt = 0;
                t.deadline = Some(at + election_timeout(&timing, me, g, 0));
                continue;
            }
            // Alone in the group: no one to wait for.
            let deadline =
                if voters.len() == 1 { now } else { *t.deadline.get_or_insert(now + election_timeout(&timing, me, g, t.attempt)) };
            if now >= deadline {
                t.attempt += 1;
                t.deadline = Some(now + election_timeout(&timing, me, g, t.attempt));
                tracing::debug!(node = me, group = g, term, attempt = t.attempt, ?leader, "no live leader: campaigning");
                let _ = raft.trigger().elect().await;
            }
        }
        *registry.vouching.lock().unwrap_or_else(|p| p.into_inner()) = leading.iter().map(|(g, _)| *g).collect();
        let beat = NodeHeartbeat { leading };
        for peer in registry.peers().known() {
            if peer == me {
                continue;
            }
            let (registry, beat) = (Arc::downgrade(&registry), beat.clone());
            tokio::spawn(async move {
                let sent = Instant::now();
                let listed = beat.leading.iter().map(|(g, _)| *g).collect();
                let Some(peers) = registry.upgrade().map(|r| r.peers().clone()) else { return };
                let newer = match peers.call(peer, 0, Call::Heartbeat(beat), fresh_for).await {
                    Ok(Answer::Heartbeat) => HashMap::new(),
                    Ok(Answer::HeartbeatNewer(newer)) => newer.into_iter().collect(),
                    Ok(Answer::Error(e)) if e.code() == ErrorCode::NodeRemoved => {
                        if let Some(registry) = registry.upgrade()
                            && !registry.removed_self.swap(true, Ordering::Relaxed)
                        {
                            tracing::error!(
                                node = me,
                                peer,
                                "a peer says the cluster removed this node: it serves clients nothing more; stop it"
                            );
                        }
                        return;
                    }
                    _ => return,
                };
                if let Some(registry) = registry.upgrade() {
                    record_ack(&registry.acked, peer, Acked { sent, newer, listed });
                }
            });
        }
    }
}

/// Records a node heartbeat from `from`.
pub fn record(heard: &std::sync::Mutex<HashMap<u64, Heard>>, from: u64, beat: NodeHeartbeat) {
    let mut h = heard.lock().unwrap_or_else(|p| p.into_inner());
    h.insert(from, Heard { at: Some(Instant::now()), leading: beat.leading.into_iter().collect() });
}

/// Keeps the newest answered heartbeat (answers can arrive out of order).
pub fn record_ack(acked: &std::sync::Mutex<HashMap<u64, Acked>>, peer: u64, ack: Acked) {
    let mut a = acked.lock().unwrap_or_else(|p| p.into_inner());
    if a.get(&peer).is_none_or(|old| old.sent <= ack.sent) {
        a.insert(peer, ack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_spread_over_the_range_and_differ_by_node() {
        let timing = Timing::default();
        let all: Vec<Duration> = (0..200).map(|g| election_timeout(&timing, 1, g, 0)).collect();
        assert!(all.iter().all(|d| (1000..2000).contains(&(d.as_millis() as u64))));
        assert!(all.iter().any(|d| d.as_millis() < 1300) && all.iter().any(|d| d.as_millis() > 1700));
        let differ = (0..200).filter(|g| election_timeout(&timing, 1, *g, 0) != election_timeout(&timing, 2, *g, 0)).count();
        assert!(differ > 190);
        let again = (0..200).filter(|g| election_timeout(&timing, 1, *g, 0) != election_timeout(&timing, 1, *g, 0)).count();
        assert!(again > 190, "draws vary from one election to the next");
    }
}
