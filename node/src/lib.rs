//! weir-node: the broker. It wires weir-core and weir-net onto tokio: the real
//! [`disk::RealDisk`] adapter over files with fdatasync and directory syncs,
//! the [`broker::Broker`] state (topics, partitions, group commit, long-poll
//! fetches, idempotent producers, retention), the [`server`] that speaks the
//! protocol over TCP, [`tasks::Tasks`] (the supervisor of every background
//! task) and [`config::Config`] for the `weir` binary.

pub mod blocking;
pub mod broker;
pub mod clock;
pub mod config;
pub mod disk;
pub mod join;
pub mod kafka;
pub mod lock;
pub mod raft;
pub mod server;
pub mod tasks;
