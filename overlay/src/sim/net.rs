//! The network model: latency, jitter, loss, duplication, reordering, partitions.

/// Link behaviour (times in nanoseconds, probabilities in [0, 1]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// Base one-way latency.
    pub latency: u64,
    /// Each link adds a fixed extra latency in [0, spread), from a hash of its ends.
    pub spread: u64,
    /// Per-datagram jitter in [0, jitter).
    pub jitter: u64,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by up to `reorder_delay` (reordering it).
    pub reorder: f64,
    /// Extra delay of a reordered datagram, at most.
    pub reorder_delay: u64,
}

impl Default for NetConfig {
    /// A LAN-like network: 0.5 ms + up to 0.5 ms per link, 0.2 ms jitter, no faults.
    fn default() -> Self {
        NetConfig {
            latency: 500_000,
            spread: 500_000,
            jitter: 200_000,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: 0,
        }
    }
}

impl NetConfig {
    /// The fixed extra latency of the link `a → b`.
    pub fn link_extra(&self, a: u32, b: u32) -> u64 {
        if self.spread == 0 {
            return 0;
        }
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        let h = ((x as u64) << 32 | y as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 17) % self.spread
    }
}
