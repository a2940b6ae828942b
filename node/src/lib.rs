//! weir-node: the broker. It wires weir-core and weir-net onto tokio: the real
//! [`disk::RealDisk`] adapter over files with fdatasync and directory syncs,
//! and (with the next issue) the listener, sessions, config and the `weir`
//! binary.

pub mod disk;
