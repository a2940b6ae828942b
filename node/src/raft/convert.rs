//! Translations between openraft's types and Weir's own: the peer protocol's
//! (`weir_net::peer`) and the log's (`weir_core::log`). Only this module
//! knows both, so an openraft upgrade changes neither the wire nor the disk.

use super::{Proposal, TypeConfig};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LeaderId, Membership, StoredMembership};
use std::collections::{BTreeMap, BTreeSet};
use weir_core::log;
use weir_net::peer;

/// openraft numbers entries from 0 (its first membership entry); the log
/// from 1 (0 means "not a Raft entry"). Stored index = openraft index + 1.
pub fn log_id_to_raft(id: log::LogId) -> openraft::LogId<u64> {
    openraft::LogId::new(CommittedLeaderId::new(id.term, 0), id.index - 1)
}

/// A log id as the log stores it. With single-term leaders openraft's log
/// id has no node; the stamp's node field stays 0.
pub fn log_id_to_log(id: openraft::LogId<u64>) -> log::LogId {
    log::LogId { term: id.leader_id.term, node: 0, index: id.index + 1 }
}

/// The stored index range for an openraft index range.
pub fn index_range_to_log(range: std::ops::Range<u64>) -> std::ops::Range<u64> {
    range.start.saturating_add(1)..range.end.saturating_add(1)
}

pub fn log_id_to_wire(id: openraft::LogId<u64>) -> peer::LogId {
    peer::LogId { term: id.leader_id.term, index: id.index }
}

pub fn log_id_from_wire(id: peer::LogId) -> openraft::LogId<u64> {
    openraft::LogId::new(CommittedLeaderId::new(id.term, 0), id.index)
}

/// Node ids are u32 in the log's vote file; larger ids are refused by the
/// configuration, so this never truncates.
pub fn vote_to_log(v: &openraft::Vote<u64>) -> log::Vote {
    log::Vote { term: v.leader_id.term, node: v.leader_id.voted_for.map(|n| n as u32), committed: v.committed }
}

pub fn vote_from_log(v: log::Vote) -> openraft::Vote<u64> {
    let mut vote = openraft::Vote { leader_id: LeaderId { term: v.term, voted_for: v.node.map(u64::from) }, committed: false };
    if v.committed {
        vote.commit();
    }
    vote
}

pub fn vote_to_wire(v: &openraft::Vote<u64>) -> peer::Vote {
    peer::Vote { term: v.leader_id.term, node: v.leader_id.voted_for, committed: v.committed }
}

pub fn vote_from_wire(v: peer::Vote) -> openraft::Vote<u64> {
    let mut vote = openraft::Vote { leader_id: LeaderId { term: v.term, voted_for: v.node }, committed: false };
    if v.committed {
        vote.commit();
    }
    vote
}

pub fn membership_to_wire(m: &Membership<u64, BasicNode>) -> peer::Membership {
    peer::Membership {
        configs: m.get_joint_config().iter().map(|c| c.iter().copied().collect()).collect(),
        nodes: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
    }
}

pub fn membership_from_wire(m: peer::Membership) -> Membership<u64, BasicNode> {
    let configs: Vec<BTreeSet<u64>> = m.configs.into_iter().map(|c| c.into_iter().collect()).collect();
    let nodes: BTreeMap<u64, BasicNode> = m.nodes.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
    Membership::new(configs, nodes)
}

/// A membership as a membership entry's body stores it (postcard of the
/// peer protocol's type: Weir's format, not openraft's).
pub fn membership_to_bytes(m: &Membership<u64, BasicNode>) -> Vec<u8> {
    postcard::to_stdvec(&membership_to_wire(m)).expect("postcard encoding of owned data cannot fail")
}

pub fn membership_from_bytes(raw: &[u8]) -> Result<Membership<u64, BasicNode>, &'static str> {
    let m: peer::Membership = postcard::from_bytes(raw).map_err(|_| "a membership entry's body is not a membership")?;
    Ok(membership_from_wire(m))
}

pub fn stored_membership_to_wire(m: &StoredMembership<u64, BasicNode>) -> (Option<peer::LogId>, peer::Membership) {
    ((*m.log_id()).map(log_id_to_wire), membership_to_wire(m.membership()))
}

pub fn stored_membership_from_wire(id: Option<peer::LogId>, m: peer::Membership) -> StoredMembership<u64, BasicNode> {
    StoredMembership::new(id.map(log_id_from_wire), membership_from_wire(m))
}

pub fn entry_to_wire(e: &openraft::Entry<TypeConfig>) -> peer::Entry {
    let body = match &e.payload {
        EntryPayload::Blank => peer::EntryBody::Blank,
        EntryPayload::Membership(m) => peer::EntryBody::Membership(membership_to_wire(m)),
        EntryPayload::Normal(p) => {
            // Entries sent to followers were read back from the log, so they
            // carry the offset the log stamped.
            peer::EntryBody::Normal { base_offset: p.base_offset.unwrap_or(u64::MAX), batches: p.batches.clone() }
        }
    };
    peer::Entry { log_id: log_id_to_wire(e.log_id), body }
}

pub fn entry_from_wire(e: peer::Entry) -> openraft::Entry<TypeConfig> {
    let payload = match e.body {
        peer::EntryBody::Blank => EntryPayload::Blank,
        peer::EntryBody::Membership(m) => EntryPayload::Membership(membership_from_wire(m)),
        peer::EntryBody::Normal { base_offset, batches } => EntryPayload::Normal(Proposal { base_offset: Some(base_offset), batches }),
    };
    openraft::Entry { log_id: log_id_from_wire(e.log_id), payload }
}

pub fn append_to_wire(r: &openraft::raft::AppendEntriesRequest<TypeConfig>) -> peer::AppendEntries {
    peer::AppendEntries {
        vote: vote_to_wire(&r.vote),
        prev_log_id: r.prev_log_id.map(log_id_to_wire),
        leader_commit: r.leader_commit.map(log_id_to_wire),
        entries: r.entries.iter().map(entry_to_wire).collect(),
    }
}

pub fn append_from_wire(r: peer::AppendEntries) -> openraft::raft::AppendEntriesRequest<TypeConfig> {
    openraft::raft::AppendEntriesRequest {
        vote: vote_from_wire(r.vote),
        prev_log_id: r.prev_log_id.map(log_id_from_wire),
        leader_commit: r.leader_commit.map(log_id_from_wire),
        entries: r.entries.into_iter().map(entry_from_wire).collect(),
    }
}

pub fn append_reply_to_wire(r: &openraft::raft::AppendEntriesResponse<u64>) -> peer::AppendEntriesReply {
    use openraft::raft::AppendEntriesResponse as R;
    match r {
        R::Success => peer::AppendEntriesReply::Success,
        R::PartialSuccess(id) => peer::AppendEntriesReply::PartialSuccess(id.map(log_id_to_wire)),
        R::Conflict => peer::AppendEntriesReply::Conflict,
        R::HigherVote(v) => peer::AppendEntriesReply::HigherVote(vote_to_wire(v)),
    }
}

pub fn append_reply_from_wire(r: peer::AppendEntriesReply) -> openraft::raft::AppendEntriesResponse<u64> {
    use openraft::raft::AppendEntriesResponse as R;
    match r {
        peer::AppendEntriesReply::Success => R::Success,
        peer::AppendEntriesReply::PartialSuccess(id) => R::PartialSuccess(id.map(log_id_from_wire)),
        peer::AppendEntriesReply::Conflict => R::Conflict,
        peer::AppendEntriesReply::HigherVote(v) => R::HigherVote(vote_from_wire(v)),
    }
}

pub fn vote_request_to_wire(r: &openraft::raft::VoteRequest<u64>) -> peer::VoteRequest {
    peer::VoteRequest { vote: vote_to_wire(&r.vote), last_log_id: r.last_log_id.map(log_id_to_wire) }
}

pub fn vote_request_from_wire(r: peer::VoteRequest) -> openraft::raft::VoteRequest<u64> {
    openraft::raft::VoteRequest { vote: vote_from_wire(r.vote), last_log_id: r.last_log_id.map(log_id_from_wire) }
}

pub fn vote_reply_to_wire(r: &openraft::raft::VoteResponse<u64>) -> peer::VoteReply {
    peer::VoteReply { vote: vote_to_wire(&r.vote), granted: r.vote_granted, last_log_id: r.last_log_id.map(log_id_to_wire) }
}

pub fn vote_reply_from_wire(r: peer::VoteReply) -> openraft::raft::VoteResponse<u64> {
    openraft::raft::VoteResponse { vote: vote_from_wire(r.vote), vote_granted: r.granted, last_log_id: r.last_log_id.map(log_id_from_wire) }
}

pub fn snapshot_meta_to_wire(m: &openraft::SnapshotMeta<u64, BasicNode>) -> peer::SnapshotMeta {
    let (membership_log_id, membership) = stored_membership_to_wire(&m.last_membership);
    peer::SnapshotMeta { last_log_id: m.last_log_id.map(log_id_to_wire), membership_log_id, membership, snapshot_id: m.snapshot_id.clone() }
}

pub fn snapshot_meta_from_wire(m: peer::SnapshotMeta) -> openraft::SnapshotMeta<u64, BasicNode> {
    openraft::SnapshotMeta {
        last_log_id: m.last_log_id.map(log_id_from_wire),
        last_membership: stored_membership_from_wire(m.membership_log_id, m.membership),
        snapshot_id: m.snapshot_id,
    }
}

pub fn snapshot_to_wire(r: &openraft::raft::InstallSnapshotRequest<TypeConfig>) -> peer::SnapshotChunk {
    peer::SnapshotChunk {
        vote: vote_to_wire(&r.vote),
        meta: snapshot_meta_to_wire(&r.meta),
        offset: r.offset,
        data: r.data.clone(),
        done: r.done,
    }
}

pub fn snapshot_from_wire(r: peer::SnapshotChunk) -> openraft::raft::InstallSnapshotRequest<TypeConfig> {
    openraft::raft::InstallSnapshotRequest {
        vote: vote_from_wire(r.vote),
        meta: snapshot_meta_from_wire(r.meta),
        offset: r.offset,
        data: r.data,
        done: r.done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_and_log_ids_survive_every_translation() {
        let mut v = openraft::Vote::new(7, 3);
        for committed in [false, true] {
            if committed {
                v.commit();
            }
            assert_eq!(vote_from_log(vote_to_log(&v)), v);
            assert_eq!(vote_from_wire(vote_to_wire(&v)), v);
        }
        let id = openraft::LogId::new(CommittedLeaderId::new(5, 0), 42);
        assert_eq!(log_id_to_raft(log_id_to_log(id)), id);
        assert_eq!(log_id_from_wire(log_id_to_wire(id)), id);
    }

    #[test]
    fn memberships_round_trip_through_entry_bodies() {
        let nodes: BTreeMap<u64, BasicNode> = [(1, BasicNode::new("a:1")), (2, BasicNode::new("b:2")), (4, BasicNode::new("d:4"))].into();
        let m = Membership::new(vec![[1, 2].into(), [1, 2, 4].into()], nodes);
        assert_eq!(membership_from_bytes(&membership_to_bytes(&m)).unwrap(), m);
        assert!(membership_from_bytes(b"\xff\xff\xff").is_err());
    }
}
