//! Helpers the benchmarks share: deterministic random numbers, made-up node ids and
//! addresses for in-memory networks, percentiles.
#![allow(dead_code)]

use std::net::SocketAddr;

use kazoo_common::NodeId;

/// Deterministic pseudo-random numbers (xorshift).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The id of in-memory node `n`.
pub fn node(n: usize) -> NodeId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
    id[8] = 0x5a;
    NodeId(id)
}

/// The (never dialled) address of in-memory node `n`.
pub fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 4710))
}

/// The `p` quantile of sorted values (NaN for none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Resident memory of this process, KiB (0 where /proc is unavailable).
pub fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}
