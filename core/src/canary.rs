//! Canary bugs for the simulator: deliberate defects that the history
//! checker must catch, proving that it can fail. This module exists only in
//! simulation builds (`--cfg madsim`); a normal build has no trace of it.
//! The switch is per thread because madsim runs each simulation on one
//! thread and tests run simulations on several.

use std::cell::Cell;

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
}

thread_local! {
    static ACTIVE: Cell<Option<Canary>> = const { Cell::new(None) };
}

/// Turns a canary on (or all off with `None`) for simulations on this thread.
pub fn set(canary: Option<Canary>) {
    ACTIVE.with(|c| c.set(canary));
}

pub fn is(canary: Canary) -> bool {
    ACTIVE.with(|c| c.get()) == Some(canary)
}
