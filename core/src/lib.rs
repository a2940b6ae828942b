//! weir-core: the sans-IO heart of Weir.
//!
//! This crate owns the record batch format (the unit of append, replication,
//! CRC and compression), the segment-based partition log with its offset and
//! time indexes, and the [`disk::Disk`] adapter trait through which every byte
//! reaches storage, together with a simulated disk that models the page
//! cache and injects faults. Nothing here opens a file or a socket, reads a
//! clock, spawns a thread or draws from a global random generator: time comes
//! in as a [`Timestamp`] value, storage through the adapter, randomness from a
//! seed the caller passes.

pub mod batch;
pub mod canary;
pub mod disk;
pub mod group;
pub mod log;
pub mod metadata;
pub mod name;
pub mod partition;
pub mod producer;
mod time;

pub use time::{Monotonic, Now, Timestamp};
