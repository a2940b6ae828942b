//! The broker's wall clock, the one place node code reads it (through std,
//! which madsim virtualises in simulation). In simulation builds the harness
//! can also jump this clock forwards or backwards ([`sim_jump`]), as NTP
//! steps or a VM resume would, without moving the simulator's own time.

use weir_core::{Monotonic, Now, Timestamp};

#[cfg(madsim)]
thread_local! {
    static SKEW_MS: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Moves the broker's wall clock by `delta_ms` (simulation only).
#[cfg(madsim)]
pub fn sim_jump(delta_ms: i64) {
    SKEW_MS.with(|s| s.set(s.get() + delta_ms));
}

/// Resets the simulated skew (between runs on one thread).
#[cfg(madsim)]
pub fn sim_reset() {
    SKEW_MS.with(|s| s.set(0));
}

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = since.as_millis() as i64;
    #[cfg(madsim)]
    let ms = ms + SKEW_MS.with(|s| s.get());
    Timestamp(ms)
}

/// The node's clocks as one injected value: the wall clock above and a
/// monotonic clock counted from this value's creation (tokio's, so madsim
/// simulates it). State machines get both as a [`Now`]; their timers run on
/// the monotonic one, which no wall-clock step moves.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock { origin: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> Now {
        Now { wall: now(), mono: Monotonic(self.origin.elapsed().as_millis() as u64) }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
