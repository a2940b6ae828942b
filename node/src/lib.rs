//! weir-node: the broker. It wires weir-core and weir-net onto tokio: the real
//! [`disk::RealDisk`] adapter over files with fdatasync and directory syncs,
//! the [`broker::Broker`] state (topics, partitions, group commit, long-poll
//! fetches, idempotent producers, retention), the [`server`] that speaks the
//! protocol over TCP, and [`config::Config`] for the `weir` binary.

pub mod blocking;
pub mod broker;
pub mod clock;
pub mod config;
pub mod disk;
pub mod lock;
pub mod server;

use std::sync::Arc;

/// Starts the retention task: every `retention_check_interval`, old
/// segments of every partition are deleted per their topic's policy.
pub fn spawn_retention(broker: Arc<broker::Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let every = broker.config().retention_check_interval;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = server::stopped(&mut shutdown) => break,
                _ = tokio::time::sleep(every) => {}
            }
            // Each partition's retention runs its file deletions on a blocking thread.
            broker.apply_retention().await;
        }
    })
}
