//! openraft's network for one group: every RPC becomes a call on the shared
//! peer connection to the target node ([`super::peer`]), tagged with the
//! group id, bounded by the timeout openraft asks for.

use super::peer::{PeerError, Peers};
use super::{TypeConfig, convert};
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use std::sync::Arc;
use weir_net::peer::{Answer, Call};

/// Makes the per-target clients of one group.
#[derive(Debug, Clone)]
pub struct Network {
    pub peers: Arc<Peers>,
    pub group: u64,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Client {
        self.peers.set_address(target, node.addr.clone());
        Client { peers: self.peers.clone(), group: self.group, target }
    }
}

/// One group's RPCs to one target node.
#[derive(Debug)]
pub struct Client {
    peers: Arc<Peers>,
    group: u64,
    target: u64,
}

/// Why a call failed, as openraft's error (a remote refusal is reported as
/// unreachable: openraft then backs off and retries).
fn rpc_error<E: std::error::Error>(e: PeerError) -> RPCError<u64, BasicNode, E> {
    match e {
        PeerError::Timeout { .. } => RPCError::Network(NetworkError::new(&e)),
        PeerError::UnknownNode(_) | PeerError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

fn unexpected<E: std::error::Error>(target: u64, answer: Answer) -> RPCError<u64, BasicNode, E> {
    let why = match answer {
        Answer::Error(e) => e.to_string(),
        other => format!("answered with the wrong kind of reply: {other:?}"),
    };
    RPCError::Unreachable(Unreachable::new(&PeerError::Unreachable { node: target, why }))
}

impl Client {
    async fn call(&self, call: Call, option: &RPCOption) -> Result<Answer, PeerError> {
        self.peers.call(self.target, self.group, call, option.hard_ttl()).await
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(Call::Append(convert::append_to_wire(&rpc)), &option).await.map_err(rpc_error)? {
            Answer::Append(r) => Ok(convert::append_reply_from_wire(r)),
            other => Err(unexpected(self.target, other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        match self.call(Call::Snapshot(convert::snapshot_to_wire(&rpc)), &option).await.map_err(rpc_error)? {
            Answer::Snapshot(r) => Ok(InstallSnapshotResponse { vote: convert::vote_from_wire(r.vote) }),
            other => Err(unexpected(self.target, other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(Call::Vote(convert::vote_request_to_wire(&rpc)), &option).await.map_err(rpc_error)? {
            Answer::Vote(r) => Ok(convert::vote_reply_from_wire(r)),
            other => Err(unexpected(self.target, other)),
        }
    }
}
