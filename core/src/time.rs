//! Wall-clock time as a value: milliseconds since the Unix epoch, passed in by
//! the caller so that core never reads a clock.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). Record timestamps, segment ages and
/// retention all use this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// `self - earlier` in milliseconds, saturating (clocks may jump back).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Monotonic milliseconds from an origin the caller picks (the node's
/// start): never moves back and is not moved when the wall clock is
/// stepped. Timers (session expiry, rebalance deadlines) use it, so a wall
/// clock that jumps an hour does not expire every session at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Monotonic(pub u64);

impl Monotonic {
    /// `self - earlier` in milliseconds (0 if `earlier` is later).
    pub fn millis_since(self, earlier: Monotonic) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn plus_millis(self, ms: u64) -> Monotonic {
        Monotonic(self.0.saturating_add(ms))
    }
}

/// The time as a state machine sees one input: the wall clock (for what is
/// recorded and compared across restarts) and the monotonic clock (for
/// timers), read together by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    pub wall: Timestamp,
    pub mono: Monotonic,
}

impl Now {
    /// Both clocks at `ms` (tests and simple callers).
    pub fn at(ms: u64) -> Now {
        Now { wall: Timestamp(ms as i64), mono: Monotonic(ms) }
    }
}
