//! Error codes a client can see. The numbers are stable forever: add new
//! codes, never renumber. Each code has a default message saying what to do.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $retriable:literal, $msg:literal;)*) => {
        /// Stable error codes of the protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $num,)*
        }

        impl ErrorCode {
            /// The code for a number; unknown numbers (from a newer peer) map to `Unknown`.
            pub fn from_u16(n: u16) -> ErrorCode {
                match n {
                    $($num => ErrorCode::$name,)*
                    _ => ErrorCode::Unknown,
                }
            }

            /// Whether retrying the same request (after refreshing metadata) may succeed.
            pub fn is_retriable(self) -> bool {
                match self {
                    $(ErrorCode::$name => $retriable,)*
                }
            }

            /// What the code means and what to do about it.
            pub fn default_message(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $msg,)*
                }
            }

            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];
        }
    };
}

codes! {
    /// A code this version does not know.
    Unknown = 0, false, "unknown error from a newer broker: upgrade the client";
    UnknownTopic = 1, false, "the topic does not exist: create it first (weirctl topic create)";
    UnknownPartition = 2, false, "the partition does not exist: check the topic's partition count (weirctl topic describe)";
    OffsetOutOfRange = 3, false, "the offset is outside the log: fetch from the earliest or latest offset instead";
    MessageTooLarge = 4, false, "the batch or frame is larger than the broker accepts: send smaller batches or raise the limit";
    InvalidRequest = 5, false, "the request is malformed: this is a client bug, please report it";
    UnsupportedVersion = 6, false, "the broker does not support this API version: upgrade the broker or the client";
    NotLeader = 7, true, "this broker does not lead the partition: refresh metadata and retry";
    Timeout = 8, true, "the request did not complete in time: retry (idempotent produces are not duplicated)";
    CorruptData = 9, false, "stored data failed its checksum: the broker has logged where; restore from a replica";
    StorageError = 10, true, "the broker's disk failed: check the broker log and disk, then retry";
    TopicAlreadyExists = 11, false, "a topic with this name already exists";
    InvalidName = 12, false, "the name is invalid: use 1-249 characters from [A-Za-z0-9._-], not '.' or '..'";
    InvalidPartitions = 13, false, "the partition count is invalid: use 1 to the broker's maximum";
    OutOfOrderSequence = 14, false, "the producer skipped sequence numbers: restart the producer (a new producer id)";
    InvalidProducerEpoch = 15, false, "the producer was fenced by a newer instance with the same id";
    InvalidConfig = 16, false, "a configuration value is invalid: see the message for which";
    Busy = 17, true, "the broker is at a limit (connections, queue, memory): back off and retry";
    UnknownApi = 18, false, "the broker does not know this request type: upgrade the broker";
    ShuttingDown = 19, true, "the broker is shutting down: retry against it after restart or another broker";
    CorruptBatch = 20, false, "the record batch failed validation (CRC or framing): this is a client bug or a network fault";
    InvalidReplication = 21, false, "the replication factor is invalid: a single node supports 1 replica";
    UnknownGroup = 22, false, "the consumer group does not exist";
    UnknownMember = 23, false, "this member is not in the group (it left or its session expired): rejoin";
    IllegalGeneration = 24, false, "the group has moved to a newer generation: rejoin and use the new assignment";
    RebalanceInProgress = 25, false, "the group is rebalancing: rejoin, or wait for the new assignment";
    InvalidSessionTimeout = 26, false, "the session timeout is outside the broker's allowed range";
    InconsistentAssignors = 27, false, "no assignor is supported by every member of the group";
    GroupNotEmpty = 28, false, "the group has active members: stop them first";
    ProducerIdCollision = 29, false, "another producer holds this producer id (ids were handed out twice): restart the producer for a new id; nothing was stored";
    PartitionOffline = 30, false, "the partition is offline after recovery found damage to acknowledged data: see the broker log and `weir accept-loss`";
    InvalidTimestamp = 32, false, "a record's timestamp is too far ahead of the broker's clock: fix the producer's clock";
    StorageFull = 31, false, "the broker's disk is full: free space or delete data (retention, topic delete), then retry";
    NotEnoughReplicas = 33, true, "too few replicas are live for this request (replication factor above the live brokers, or a leader without a majority): bring brokers back or lower the replication factor";
    LeaderNotAvailable = 34, true, "the partition has no leader right now (an election is under way): refresh metadata and retry";
    NotCoordinator = 35, true, "this broker is not the group coordinator: find the coordinator again and retry";
    InvalidReplicaAssignment = 36, false, "the replica list is invalid (an unknown node, a node twice, or another replication factor): list the topic's replication factor of distinct registered nodes";
    ReassignmentInProgress = 37, false, "the partition is being reassigned already: wait for it to finish (weirctl topic reassign --wait), then retry";
    NodeNotFound = 38, false, "no such node is registered in the cluster: check weirctl cluster status";
    StaleIncarnation = 39, false, "the node's data directory is not the one the cluster registered for it (it was wiped or replaced, so the node could vote twice): remove the node (weirctl cluster remove-node ID) and join it again with an empty data directory (weir --join)";
    WrongCluster = 40, false, "the node belongs to another cluster (its data directory holds another cluster's id): give it this cluster's data directory, or an empty one and weir --join";
    NodeRemoved = 41, true, "this broker was removed from the cluster and serves nothing: send to another broker (clients do so on their own) and stop this one";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({})", self, *self as u16)
    }
}

/// An error as sent on the wire: a stable code and a message that says what
/// went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{} [{}]: {message}", ErrorCode::from_u16(*code), code)]
pub struct WireError {
    pub code: u16,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code: code as u16, message: message.into() }
    }

    /// The code's default message.
    pub fn of(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }

    pub fn code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c as u16), "duplicate number for {c:?}");
            assert_eq!(ErrorCode::from_u16(c as u16), c);
            assert!(!c.default_message().is_empty());
        }
        assert_eq!(ErrorCode::from_u16(60000), ErrorCode::Unknown);
    }

    /// Every code is in PROTOCOL.md's table, with its number and whether
    /// it is retriable, so the document cannot fall behind the code.
    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../PROTOCOL.md");
        for &c in ErrorCode::ALL {
            let row = format!("| {} | {c:?} | {} |", c as u16, if c.is_retriable() { "yes" } else { "no" });
            assert!(doc.contains(&row), "net/PROTOCOL.md lacks the row {row}");
        }
    }
}
