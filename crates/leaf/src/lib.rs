//! The kazoo node runtime: a leaf that shares files, searches through its supernode and
//! downloads from every source in parallel — and, when its role says so, runs the supernode
//! service in-process.
//!
//! * [`node`] — start a node, its tasks, status, search, get.
//! * [`share`] — the shared files, the hash cache, rescans.
//! * [`serve`] — answering manifest and piece requests.
//! * [`rate_cap`] — the node-wide upload and download rate caps.
//! * [`download`] — the parallel, verified, resumable downloader.
//! * [`jobs`] — the downloads the node manages (queue, wait for sources, pause, resume).
//! * [`control`] — the local control socket the CLI talks to.
//! * [`demo`] — a three-node network in one process (`kazoo demo`).
//! * [`names`] — keeping names from the network inside the download folder.
//! * [`metrics`] — the Prometheus metrics endpoint (`[metrics] listen`).
//! * [`state_file`] — small files in the data dir, written atomically, read bounded.

#![warn(missing_docs)]

pub mod client;
pub mod control;
pub mod demo;
pub mod download;
pub mod jobs;
pub mod metrics;
pub mod names;
pub mod node;
pub mod rate_cap;
pub mod reachability;
pub mod serve;
pub mod share;
pub mod state_file;

pub use node::{Findings, Node, RelayStats, StartOptions, Status};

/// Locks a std mutex, recovering the data if a panic poisoned it: every lock in the runtime
/// guards state that stays consistent between statements, so the node keeps serving.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `N` bytes from the OS CSPRNG, for secrets and ids a peer must not guess (query-id keys,
/// relay circuit ids). Should the OS fail (not expected on any supported OS) the bytes come
/// from the clock and a process-wide counter, logged as an error: still unique, no longer
/// unpredictable.
pub(crate) fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(e) = getrandom::fill(&mut bytes) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        tracing::error!(error = %e, "OS randomness unavailable; falling back to the clock");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let count = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&nanos.to_le_bytes());
        hasher.update(&count.to_le_bytes());
        hasher.finalize_xof().fill(&mut bytes);
    }
    bytes
}
