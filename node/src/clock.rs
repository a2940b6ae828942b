//! The broker's wall clock, the one place node code reads it (through std,
//! which madsim virtualises in simulation). In simulation builds the harness
//! can also jump one node's clock forwards or backwards ([`sim_jump`]), as
//! NTP steps or a VM resume would, without moving the simulator's own time
//! or the other nodes' clocks: each simulated machine has its own skew.

use weir_core::{Monotonic, Now, Timestamp};

#[cfg(madsim)]
thread_local! {
    /// Each simulated machine's clock skew (a run's nodes share a thread).
    /// A BTreeMap: a HashMap draws its keys from madsim's RNG the first
    /// time, which shifted every later draw and broke replay.
    static SKEW_MS: std::cell::RefCell<std::collections::BTreeMap<madsim::task::NodeId, i64>> = Default::default();
}

/// Moves simulated machine `node`'s wall clock by `delta_ms` (simulation
/// only); it keeps the skew across restarts, as a real machine would.
#[cfg(madsim)]
pub fn sim_jump(node: madsim::task::NodeId, delta_ms: i64) {
    SKEW_MS.with(|s| *s.borrow_mut().entry(node).or_default() += delta_ms);
}

/// Resets the simulated skews (between runs on one thread).
#[cfg(madsim)]
pub fn sim_reset() {
    SKEW_MS.with(|s| s.borrow_mut().clear());
}

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = since.as_millis() as i64;
    #[cfg(madsim)]
    let ms = ms + SKEW_MS.with(|s| s.borrow().get(&madsim::plugin::node()).copied().unwrap_or(0));
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
