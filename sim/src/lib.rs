//! weir-sim: the madsim harness. It builds clusters out of the real node
//! code, drives producers, consumers and groups through the real client,
//! injects crashes, partitions, clock and disk faults from a seed, and checks
//! the history for Jepsen's anomalies. Compiled with `RUSTFLAGS="--cfg madsim"`.
//! The harness lands with the simulation issue; today it holds the simulated
//! disk's crash-model checks shared by later tests.

pub use weir_core::disk::sim::{FaultConfig, SimDisk};
