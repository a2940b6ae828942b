//! Who belongs to the metadata group. A node joining (`weir --join`, see
//! `crate::join`) asks the metadata leader, which registers it
//! (`ClusterCommand::JoinBroker`) and adds it as a learner; the leader's
//! reconciler then promotes caught-up learners to voters through openraft's
//! joint consensus, up to [`METADATA_VOTERS_MAX`]; further brokers stay
//! learners of the metadata group and still host partitions. The
//! reconciler works from the committed registrations alone, one change
//! per pass, so a join whose leader failed half-way is finished by the
//! next leader.

use super::Broker;
use super::cluster::METADATA_GROUP;
use super::metadata_error;
use std::time::Duration;
use weir_core::metadata::cluster::{ClusterCommand, Outcome};
use weir_net::message::{JoinClusterRequest, JoinClusterResponse};
use weir_net::{ErrorCode, WireError};

/// Most voters of the metadata group: a majority of 3 of 5 survives two
/// failures, and more voters only slow every metadata commit.
pub const METADATA_VOTERS_MAX: usize = 5;
/// How often the metadata leader reconciles the group's membership.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// `ID@HOST:PORT,...`, as `initial_members` is written.
pub fn format_members(members: &std::collections::BTreeMap<u64, String>) -> String {
    members.iter().map(|(id, addr)| format!("{id}@{addr}")).collect::<Vec<_>>().join(",")
}

fn check_address(what: &str, addr: &str) -> Result<(), WireError> {
    if crate::config::is_host_port(addr) {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::InvalidConfig,
            format!("the joining node's {what} {addr:?} is not HOST:PORT: fix its --listen / --raft-listen"),
        ))
    }
}

impl Broker {
    /// Takes a new node in (this node must lead the metadata group).
    pub(super) async fn join_cluster(&self, r: JoinClusterRequest) -> Result<JoinClusterResponse, WireError> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Err(WireError::new(ErrorCode::InvalidRequest, "this broker runs alone, not in a cluster: it takes no members"));
        };
        let group = cluster.log.raft_group();
        if !group.status().is_leader {
            let leader = group.status().leader.map_or_else(|| "no node (an election is under way)".to_owned(), |l| format!("node {l}"));
            return Err(WireError::new(
                ErrorCode::NotLeader,
                format!("node {} does not lead the metadata group, {leader} does: send the join there", self.config.node_id),
            ));
        }
        check_address("client address", &r.client_address)?;
        check_address("Raft address", &r.raft_address)?;
        let command = ClusterCommand::JoinBroker {
            node_id: r.node_id,
            client_address: r.client_address,
            raft_address: r.raft_address,
            data_dir_id: r.data_dir_id,
        };
        let b = match self.command(command).await? {
            Outcome::Registered(b) => b,
            Outcome::Refused(e) => return Err(metadata_error(e)),
            other => return Err(WireError::new(ErrorCode::InvalidRequest, format!("a join got {other:?}"))),
        };
        // A learner now; the reconciler adds it too should this leader fail first.
        let status = group.status();
        if !status.voters.contains(&b.id)
            && !group.learners().contains_key(&b.id)
            && let Err(e) = group.add_learner(b.id, b.raft_address.clone()).await
        {
            tracing::warn!(node = b.id, error = %e, "could not add the joining node as a learner yet: the reconciler retries");
        }
        tracing::info!(node = b.id, raft = %b.raft_address, "a node joined the cluster");
        Ok(JoinClusterResponse { node_id: b.id, initial_members: format_members(&self.config.initial_members) })
    }

    /// One reconciliation of the metadata group's membership, on its
    /// leader: a registered broker the group lacks becomes a learner; a
    /// learner that holds the whole log becomes a voter while there are
    /// fewer than [`METADATA_VOTERS_MAX`]. One change per pass.
    pub(super) async fn reconcile_membership(&self) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let group = cluster.log.raft_group();
        let status = group.status();
        if !status.is_leader || group.changing_membership() {
            return;
        }
        if cluster.state().cluster_id().is_none() && cluster.synced() {
            // A new cluster's first leader names it (a racing second
            // proposal changes nothing: the first applied stays).
            let cluster_id = crate::raft::random_u64().max(1);
            if let Err(e) = self.command(ClusterCommand::SetClusterId { cluster_id }).await {
                tracing::debug!(error = %e.message, "could not record the cluster id yet");
            }
            return;
        }
        let learners = group.learners();
        let registered: Vec<(u64, String)> = cluster.state().brokers().map(|b| (b.id, b.raft_address.clone())).collect();
        let leaving: Vec<(u64, bool)> = {
            let state = cluster.state();
            state.leaving().map(|id| (id, state.holds_replicas(id))).collect()
        };
        // A leaving node with no replica left leaves the group, then the cluster.
        for (id, holds) in &leaving {
            if *holds {
                continue;
            }
            let member = status.voters.contains(id) || learners.contains_key(id);
            if *id == self.config.node_id {
                // The leader itself: another voter takes over, and removes it.
                if let Some(to) = cluster.log.hand_off_target(None) {
                    let _ = cluster.log.hand_off(to, super::leadership::HAND_OFF_TIMEOUT).await;
                }
                return;
            }
            if member {
                match group.remove_member(*id).await {
                    Ok(()) => tracing::info!(node = id, "removed a leaving node from the metadata group"),
                    Err(e) => tracing::warn!(node = id, error = %e, "could not remove a leaving node from the metadata group yet"),
                }
            } else if let Err(e) = self.command(ClusterCommand::BrokerRemoved { id: *id }).await {
                tracing::warn!(node = id, error = %e.message, "could not record a node's removal yet");
            }
            return;
        }
        for (id, addr) in &registered {
            if leaving.iter().any(|(l, _)| l == id) {
                continue;
            }
            if !status.voters.contains(id) && !learners.contains_key(id) && !addr.is_empty() {
                match group.add_learner(*id, addr.clone()).await {
                    Ok(()) => {
                        tracing::info!(node = id, group = METADATA_GROUP, "added a registered node as a learner of the metadata group")
                    }
                    Err(e) => tracing::warn!(node = id, error = %e, "could not add a registered node as a learner"),
                }
                return;
            }
        }
        if status.voters.len() >= METADATA_VOTERS_MAX {
            return;
        }
        let progress = group.progress();
        let caught_up = learners.keys().copied().find(|id| progress.get(id).copied().flatten() == status.last_log_index);
        if let Some(id) = caught_up {
            match group.add_voter(id).await {
                Ok(()) => tracing::info!(
                    node = id,
                    voters = status.voters.len() + 1,
                    "promoted a caught-up learner to a voter of the metadata group"
                ),
                Err(e) => tracing::warn!(node = id, error = %e, "could not promote a learner to voter"),
            }
        }
    }
}
