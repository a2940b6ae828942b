//! Moving a partition's replicas (`weirctl topic reassign`). The metadata
//! log records the target (`ReassignPartition`); the partition's leader
//! carries it out in the partition's Raft group, one idempotent step per
//! pass, so whichever node leads next picks up where the last one stopped:
//!
//! 1. every new replica opens an empty copy (its node applied the target)
//!    and the leader adds it as a learner: it receives the whole retained
//!    log;
//! 2. once every new replica is within [`CATCH_UP_ENTRIES`] of the log end,
//!    the leader replaces the voters through openraft's joint consensus
//!    (the joint configuration needs a majority of the old *and* of the
//!    new set, so no moment lets a majority of either be lost);
//! 3. a leader that is not in the new set hands its leadership to one that
//!    is; a leader in the new set reports `ReassignmentDone`, on which the
//!    old replicas close and delete their copies.

use super::Broker;
use super::cluster::{Cluster, replica_dir};
use super::leadership::HAND_OFF_TIMEOUT;
use super::partition::Partition;
use crate::blocking;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use weir_core::metadata::cluster::{ClusterCommand, ClusterTopic, Outcome};
use weir_net::message::{ReassignPartitionRequest, ReassignPartitionResponse, RemoveNodeRequest, RemoveNodeResponse};
use weir_net::{ErrorCode, WireError};

/// How often each node drives the reassignments of partitions it leads.
pub const DRIVE_INTERVAL: Duration = Duration::from_millis(500);
/// How far behind the log end a new replica may be when the voters are
/// replaced: under load it never is exactly at the end, and the joint
/// configuration waits for it anyway.
pub const CATCH_UP_ENTRIES: u64 = 64;

/// One partition on the move, as the metadata says.
struct Moving {
    topic: String,
    topic_id: u64,
    partition: u32,
    to: Vec<u64>,
}

fn moving(cluster: &Cluster) -> Vec<Moving> {
    cluster
        .state()
        .topics()
        .flat_map(|t| {
            t.moving.iter().map(|(p, to)| Moving { topic: t.record.name.clone(), topic_id: t.record.id, partition: *p, to: to.clone() })
        })
        .collect()
}

impl Broker {
    /// Records a reassignment in the metadata log (any broker forwards it).
    pub(super) async fn reassign_partition(&self, r: ReassignPartitionRequest) -> Result<ReassignPartitionResponse, WireError> {
        if self.cluster.is_none() {
            return Err(WireError::new(ErrorCode::InvalidRequest, "this broker runs alone: its partitions have one replica, on it"));
        }
        let command = ClusterCommand::ReassignPartition { name: r.name, partition: r.partition, replicas: r.replicas };
        match self.command(command).await? {
            Outcome::ReassignmentStarted { .. } => Ok(ReassignPartitionResponse { started: true }),
            Outcome::Reassigned { .. } => Ok(ReassignPartitionResponse { started: false }),
            other => Err(WireError::new(ErrorCode::InvalidRequest, format!("a reassignment got {other:?}"))),
        }
    }

    /// Records a node's removal: its replicas start moving.
    pub(super) async fn remove_node(&self, r: RemoveNodeRequest) -> Result<RemoveNodeResponse, WireError> {
        if self.cluster.is_none() {
            return Err(WireError::new(ErrorCode::InvalidRequest, "this broker runs alone: there is no other node to move to"));
        }
        match self.command(ClusterCommand::RemoveBroker { id: r.node_id }).await? {
            Outcome::Removing { moves, .. } => Ok(RemoveNodeResponse { moves: moves.len() as u32 }),
            other => Err(WireError::new(ErrorCode::InvalidRequest, format!("a removal got {other:?}"))),
        }
    }

    /// A reassignment that adds this node started: open its empty replica
    /// (no bootstrap: the leader sends the membership with the log).
    pub(super) async fn replica_added(&self, t: &ClusterTopic, p: u32) {
        let Some(old) = self.topics.read().unwrap_or_else(|e| e.into_inner()).get(&t.record.name).cloned() else { return };
        let mut topic = (*old).clone();
        if topic.partitions.get(p as usize).is_some_and(|r| r.is_none())
            && let Some(part) = self.open_cluster_partition(t, p).await
        {
            topic.partitions[p as usize] = Some(part);
            tracing::info!(topic = %t.record.name, partition = p, to = ?t.moving.get(&p), "opened a replica for a reassignment");
        }
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(t.record.name.clone(), Arc::new(topic));
    }

    /// A reassignment finished: the new assignment holds, and a replica of
    /// this node that left the set closes and deletes its copy (the group's
    /// voters were replaced before this was committed).
    pub(super) async fn replica_moved(&self, t: &ClusterTopic, p: u32, from: &[u64]) {
        let me = self.config.node_id;
        let Some(old) = self.topics.read().unwrap_or_else(|e| e.into_inner()).get(&t.record.name).cloned() else { return };
        let mut topic = (*old).clone();
        topic.assignment = t.assignment.clone();
        let now = &t.assignment[p as usize];
        let mut removed = None;
        if !now.contains(&me) {
            removed = topic.partitions.get_mut(p as usize).and_then(|r| r.take());
        } else if topic.partitions.get(p as usize).is_some_and(|r| r.is_none()) {
            topic.partitions[p as usize] = self.open_cluster_partition(t, p).await;
        }
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(t.record.name.clone(), Arc::new(topic));
        tracing::info!(topic = %t.record.name, partition = p, ?from, to = ?now, "partition reassigned");
        if from.contains(&me) && !now.contains(&me) {
            // Its vote and log end are kept before its data goes (see
            // `raft::tombstone`); a replica that is not open here (it
            // failed to) has no stopped log to take them from, so its data
            // stays (a replica moved back opens it as it is).
            let Some(part) = removed else {
                tracing::warn!(topic = %t.record.name, partition = p, "a moved replica that is not open here keeps its data until the next start, which records its tombstone and removes it");
                return;
            };
            let dir = replica_dir(&self.config.data_dir, t.record.id, p);
            if let Err(e) = self.retire_replica(&part, dir, format!("replica-{}-{p}", t.record.id)).await {
                tracing::warn!(topic = %t.record.name, partition = p, error = %e, "could not delete a moved replica's data; the next start removes it (do not delete it by hand: it would leave no tombstone)");
            }
        }
    }

    /// Closes a replica moved off this node, keeps its vote and log end
    /// (see `raft::tombstone`), then deletes its data in `dir` (through the
    /// trash, as `name`).
    async fn retire_replica(&self, part: &Arc<Partition>, dir: std::path::PathBuf, name: String) -> Result<(), weir_core::disk::DiskError> {
        part.close_and_wait().await;
        let group = part.raft_group();
        let tombstone = crate::raft::tombstone::Tombstone::of(&*group.log().lock().await);
        let (disk, data_dir, boot) = (self.disk.clone(), self.config.data_dir.clone(), self.boot);
        blocking::run(move || {
            crate::raft::tombstone::save(&*disk, &data_dir, group.id, tombstone)?;
            super::store::remove_via_trash(&*disk, &data_dir, &dir, &name, boot)
        })
        .await
    }

    /// Opens or deletes this node's replica of the consumer offsets log as
    /// the metadata places it: a move onto this node opens an empty copy
    /// (the leader sends the membership with the log); once the log moved
    /// off, the copy closes, leaves its tombstone and is deleted.
    pub(super) async fn reconcile_offsets(&self) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let me = self.config.node_id;
        let holds = cluster.state().holds_offsets_log(me);
        match (holds, self.groups.offsets_partition().is_some()) {
            (true, false) => match self.open_offsets_replica().await {
                Ok(()) => tracing::info!(to = ?cluster.state().offsets_moving(), "opened a replica of the offsets log for its move"),
                Err(e) => tracing::error!(error = %e, "cannot open a replica of the offsets log here: the others serve it"),
            },
            (false, true) => {
                let Some(part) = self.groups.release_replica() else { return };
                let dir = super::groups::offsets_dir(&self.config.data_dir);
                match self.retire_replica(&part, dir, "offsets".to_owned()).await {
                    Ok(()) => tracing::info!("the offsets log moved off this node: its copy is deleted"),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not delete this node's copy of the moved offsets log (do not delete it by hand: it would leave no tombstone)")
                    }
                }
            }
            _ => {}
        }
    }

    async fn open_offsets_replica(&self) -> anyhow::Result<()> {
        let (disk, data_dir, me) = (self.disk.clone(), self.config.data_dir.clone(), self.config.node_id);
        let log_config = super::offsets_log_config(&self.config);
        let group = super::groups::OFFSETS_GROUP;
        let (log, floor) = blocking::run(move || {
            let dir = super::groups::offsets_dir(&data_dir);
            let (mut log, _) = super::partition::open_replica_log(disk.clone(), &dir, log_config, false)?;
            super::partition::give_up_leadership(&mut log, me)?;
            let floor = crate::raft::tombstone::apply(&*disk, &data_dir, group, &mut log)?;
            Ok::<_, weir_core::log::LogError>((log, floor))
        })
        .await?;
        self.raft.set_vote_floor(group, floor);
        let start_term = log.vote().map_or(0, |v| v.term);
        let part = Partition::start(0, me, group, log, self.disk.clone(), &self.raft, Default::default(), &self.tasks).await?;
        self.groups.adopt_replica(part, start_term);
        Ok(())
    }

    /// One step of every reassignment whose partition this node leads, and
    /// of the offsets log's move if this node leads it.
    pub(super) async fn drive_reassignments(&self) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        for m in moving(cluster) {
            let replica = self
                .topics
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&m.topic)
                .and_then(|t| t.partitions.get(m.partition as usize).cloned().flatten());
            let Some(part) = replica else { continue };
            let done = ClusterCommand::ReassignmentDone { topic_id: m.topic_id, partition: m.partition, replicas: m.to.clone() };
            self.drive_move(&part, &format!("{}/{}", m.topic, m.partition), &m.to, done).await;
        }
        let offsets_to = cluster.state().offsets_moving().map(<[u64]>::to_vec);
        if let (Some(to), Some(part)) = (offsets_to, self.groups.offsets_partition()) {
            let done = ClusterCommand::OffsetsLogMoved { replicas: to.clone() };
            self.drive_move(&part, "the offsets log", &to, done).await;
        }
    }

    /// One step of moving `part`'s group onto `to` if this node leads it;
    /// `done` records it finished.
    async fn drive_move(&self, part: &Arc<Partition>, what: &str, to: &[u64], done: ClusterCommand) {
        let group = part.raft_group();
        let status = group.status();
        if !status.is_leader || group.changing_membership() {
            return;
        }
        let learners = group.learners();
        let voters: BTreeSet<u64> = status.voters.iter().copied().collect();
        let target: BTreeSet<u64> = to.iter().copied().collect();
        // 1. New replicas become learners.
        if let Some(n) = to.iter().find(|n| !voters.contains(n) && !learners.contains_key(n)) {
            let addr = self.raft_addresses(&[*n]).remove(n).unwrap_or_default();
            match group.add_learner(*n, addr).await {
                Ok(()) => tracing::info!(what = %what, node = n, "reassignment: added a new replica as a learner"),
                Err(e) => tracing::warn!(what = %what, node = n, error = %e, "reassignment: could not add a learner yet"),
            }
            return;
        }
        let skip_to_done = weir_core::canary::on(self.config.log.canary, weir_core::canary::Canary::RemoveBeforeCaughtUp);
        // 2. Caught up: the new set replaces the voters (joint consensus).
        if voters != target && !skip_to_done {
            let progress = group.progress();
            let end = status.last_log_index.unwrap_or(0);
            let caught_up = to
                .iter()
                .filter(|n| !voters.contains(n))
                // A learner that has matched nothing yet is not caught up, however short the log:
                // the joint configuration would wait on a replica that may not be reachable.
                .all(|n| progress.get(n).copied().flatten().is_some_and(|m| m + CATCH_UP_ENTRIES >= end));
            if caught_up {
                match group.replace_voters(target.clone()).await {
                    Ok(()) => tracing::info!(what = %what, ?to, "reassignment: the new replicas are the voters"),
                    Err(e) => tracing::warn!(what = %what, error = %e, "reassignment: could not replace the voters yet"),
                }
            }
            return;
        }
        // 3. A leader outside the new set hands over; one inside reports.
        if !target.contains(&self.config.node_id) && !skip_to_done {
            if let Some(next) = part.hand_off_target(to.first().copied()) {
                let _ = part.hand_off(next, HAND_OFF_TIMEOUT).await;
            }
            return;
        }
        if let Err(e) = self.command(done).await {
            tracing::warn!(what = %what, error = %e.message, "reassignment: could not record it done yet");
        }
    }
}
