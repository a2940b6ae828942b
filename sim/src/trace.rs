//! The trace hash: a running FNV-1a over every event of a run (acks, polls,
//! faults) in the order they happened. Equal seeds must give equal hashes;
//! CI checks it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn add(&mut self, event: &str) {
        for b in event.bytes().chain(std::iter::once(0xff)) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_content_matter() {
        let (mut a, mut b, mut c) = (TraceHash::default(), TraceHash::default(), TraceHash::default());
        a.add("x");
        a.add("y");
        b.add("y");
        b.add("x");
        c.add("xy");
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut d = TraceHash::default();
        d.add("x");
        d.add("y");
        assert_eq!(a, d);
    }
}
