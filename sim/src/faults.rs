//! The fault schedule, drawn from the seed swarm-style (TigerBeetle's VOPR):
//! first each fault kind is switched on or off and given a rate, then events
//! are drawn from those rates. So some seeds hammer one fault, others mix a
//! few, and the space explored is wider than one fixed mix would reach.

use std::time::Duration;
use weir_core::disk::sim::FaultConfig;

/// Per-seed fault rates and workload shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Swarm {
    pub partitions: u32,
    pub producers: u32,
    /// Mean time between node crashes (`None`: no crashes).
    pub crash_every: Option<Duration>,
    /// Whether a crash also loses the page cache (power failure) or only the process.
    pub power_loss: bool,
    /// Mean time between client↔node network clogs.
    pub clog_every: Option<Duration>,
    /// Mean time between bit flips in sealed (acknowledged, durable) segment data.
    pub bitflip_every: Option<Duration>,
    /// Disk error rates and latency while faults are on.
    pub disk: FaultConfig,
    /// Bytes the disk may grow by during the safety phase before it is full
    /// (ENOSPC); `None`: unlimited.
    pub space_left_bytes: Option<u64>,
    /// Members of a consumer group reading the topic (0: no group workload).
    pub group_members: u32,
    /// Mean time between jumps of the broker's wall clock (up to an hour,
    /// either way).
    pub clock_jump_every: Option<Duration>,
    /// Chance that a crash also damages acknowledged data below a
    /// partition's recovery checkpoint (a lost sealed segment, or a flipped
    /// bit in the active one), which recovery must report, never cut.
    pub loss_at_crash: f64,
    /// Mean time between leader-balancing passes an operator asks a random
    /// node for (clusters only): leaderships handed back to preferred
    /// replicas in the middle of the faults.
    pub balance_every: Option<Duration>,
    /// Mean time between graceful restarts (clusters only): a node hands
    /// off its leaderships, as at SIGTERM, then stops and starts again.
    pub graceful_every: Option<Duration>,
    /// Mean time between partition reassignments an operator asks for
    /// (clusters only): replicas moved onto a random set of nodes.
    pub reassign_every: Option<Duration>,
    /// Mean time between grows of the topic by one or two partitions.
    pub grow_every: Option<Duration>,
    /// When a sixth node starts and joins a five-broker cluster.
    pub join_after: Option<Duration>,
    /// When an operator removes node [`Swarm::remove_node`] from a
    /// five-broker cluster (the sixth, if one joined, or any other).
    pub remove_after: Option<Duration>,
    pub remove_node: u64,
}

impl Swarm {
    /// Draws the rates for `seed`.
    pub fn draw(seed: u64) -> Swarm {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5741_524d);
        let on = |rng: &mut fastrand::Rng| rng.bool();
        let every = |rng: &mut fastrand::Rng, lo_ms: u64, hi_ms: u64| Duration::from_millis(rng.u64(lo_ms..=hi_ms));
        let crash_every = on(&mut rng).then(|| every(&mut rng, 1_000, 8_000));
        let power_loss = on(&mut rng);
        let clog_every = on(&mut rng).then(|| every(&mut rng, 500, 5_000));
        let bitflip_every = (rng.u8(0..4) == 0).then(|| every(&mut rng, 2_000, 10_000));
        let mut disk = FaultConfig::default();
        if on(&mut rng) {
            disk.read_error = rng.f64() * 0.01;
        }
        if on(&mut rng) {
            disk.write_error = rng.f64() * 0.005;
        }
        if rng.u8(0..4) == 0 {
            disk.sync_error = rng.f64() * 0.005;
        }
        if on(&mut rng) {
            let hi = rng.u64(100_000..5_000_000);
            disk.sync_latency_ns = (hi / 10, hi);
        }
        let space_left_bytes = (rng.u8(0..4) == 0).then(|| rng.u64(16 << 10..1 << 20));
        let group_members = if rng.bool() { rng.u32(1..=3) } else { 0 };
        let clock_jump_every = (rng.u8(0..3) == 0).then(|| every(&mut rng, 2_000, 10_000));
        // Drawn last, so the draws above stay what they were for each seed.
        let loss_at_crash = if rng.u8(0..3) == 0 { 0.3 } else { 0.0 };
        let partitions = rng.u32(1..=3);
        let producers = rng.u32(1..=4);
        let balance_every = on(&mut rng).then(|| every(&mut rng, 1_000, 6_000));
        let graceful_every = on(&mut rng).then(|| every(&mut rng, 2_000, 8_000));
        let reassign_every = on(&mut rng).then(|| every(&mut rng, 2_000, 8_000));
        let grow_every = (rng.u8(0..3) == 0).then(|| every(&mut rng, 3_000, 10_000));
        let join_after = on(&mut rng).then(|| every(&mut rng, 1_000, 15_000));
        let remove_after = on(&mut rng).then(|| every(&mut rng, 2_000, 20_000));
        let remove_node = rng.u64(1..=6);
        Swarm {
            join_after,
            remove_after,
            remove_node,
            grow_every,
            loss_at_crash,
            clock_jump_every,
            group_members,
            partitions,
            producers,
            balance_every,
            graceful_every,
            reassign_every,
            crash_every,
            power_loss,
            clog_every,
            bitflip_every,
            disk,
            space_left_bytes,
        }
    }

    /// Waiting time until the next event of a kind with mean `every`
    /// (exponentially distributed).
    pub fn next_in(rng: &mut fastrand::Rng, every: Duration) -> Duration {
        let u = rng.f64().max(1e-9);
        Duration::from_secs_f64(-u.ln() * every.as_secs_f64()).min(every * 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_drawn_per_seed_and_replay() {
        let draws: Vec<Swarm> = (0..64).map(Swarm::draw).collect();
        assert_eq!(draws, (0..64).map(Swarm::draw).collect::<Vec<_>>());
        assert!(draws.iter().any(|s| s.crash_every.is_some()) && draws.iter().any(|s| s.crash_every.is_none()));
        assert!(draws.iter().any(|s| s.bitflip_every.is_some()));
        assert!(draws.iter().any(|s| s.disk.sync_error > 0.0));
        assert!(draws.iter().any(|s| s.space_left_bytes.is_some()));
        assert!(draws.iter().any(|s| s.clock_jump_every.is_some()));
        assert!(draws.iter().any(|s| s.loss_at_crash > 0.0));
        assert!(draws.iter().any(|s| s.grow_every.is_some()) && draws.iter().any(|s| s.grow_every.is_none()));
    }
}
