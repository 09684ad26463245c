//! Helpers the benchmarks share: deterministic random numbers, made-up node ids and
//! addresses for in-memory networks, percentiles.
#![allow(dead_code, unused_imports)]

pub use kazoo_supernode::sim::{addr, node, Rng};

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
