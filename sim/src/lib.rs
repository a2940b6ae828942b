//! weir-sim: deterministic simulation of the real Weir node under faults.
//!
//! The harness ([`harness`], only in `--cfg madsim` builds) starts the real
//! broker from weir-node on a simulated host, with the simulated disk from
//! weir-core living outside the node so it survives kill and restart, and
//! drives it with the real weir-client: idempotent producers whose every
//! value is unique and traceable, and consumers following each partition.
//! A fault schedule drawn from the seed ([`faults`], swarm style) crashes
//! and restarts the node (losing or tearing unsynced writes), corrupts and
//! fails the disk, and clogs the network; then everything heals and the
//! system must converge (liveness). The [`checker`] reads the recorded
//! history and reports anomalies by Jepsen's names. Every run has a seed and
//! a trace hash ([`trace`]); the same seed gives the same hash.
//!
//! [`cluster`] runs the replicated log (the node's Raft module) at 3 and 5
//! nodes under kills, power loss, partitions and disk faults.
//!
//! Run: `ci/sim [SEEDS]`; replay one seed: `WEIR_SIM_SEED=<seed> ci/sim`.

pub mod checker;
#[cfg(madsim)]
pub mod cluster;
pub mod faults;
#[cfg(madsim)]
pub mod harness;
pub mod trace;

pub use weir_core::disk::sim::{FaultConfig, SimDisk};
