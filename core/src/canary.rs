//! Canary bugs for the simulator: deliberate defects that the history
//! checker must catch, proving that it can fail. A canary is injected as
//! configuration (`LogConfig::canary`, which the node's partitions read
//! too, and the SDK's `ProducerConfig::canary`), never read from global
//! state, and it is honoured only in simulation builds (`--cfg madsim`): in
//! a normal build [`on`] is always false, so no setting can turn one on.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// Acknowledge a produce before its batch is durable.
    AckBeforeFsync,
    /// Serve stored batches without verifying their CRC.
    SkipCrcOnRead,
    /// After a restart, forget the last durable batch and hand its offsets out again.
    ReuseOffsetAfterCrash,
    /// Let a producer's later sends overtake earlier ones (no ordering gate in the SDK).
    UnorderedSends,
    /// Answer a Raft proposal once the leader's own log holds it, before a
    /// majority does.
    AckBeforeMajority,
    /// Keep the Raft vote in memory only: a restarted node forgets whom it
    /// voted for.
    VoteNotPersisted,
    /// Record a reassignment done as soon as the new replicas are
    /// learners, before they caught up and before the voters changed: the
    /// old replicas delete their copies while the group still counts them.
    RemoveBeforeCaughtUp,
    /// A replica a reassignment adds makes the new replica set its group's
    /// voters on its own (and the first new one campaigns at once), instead
    /// of waiting to be promoted through joint consensus.
    PromoteWithoutJointConsensus,
}

/// Whether `configured` turns on `canary` (always false outside simulation builds).
pub fn on(configured: Option<Canary>, canary: Canary) -> bool {
    cfg!(madsim) && configured == Some(canary)
}
