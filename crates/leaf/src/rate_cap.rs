//! A node-wide rate cap that a reloaded config can change while transfers run
//! (`share.upload_rate_kib`, `share.download_rate_kib`; 0: unlimited). It is a token bucket
//! ([`RateLimit`]) with bursts of a tenth of a second's worth (at least [`MIN_BURST`]);
//! callers take what they send or fetch before they do, and wait when the bucket is empty.

use std::sync::{Arc, Mutex};

use crate::serve::RateLimit;

/// Smallest burst of a capped bucket (one pacing step of the uploader).
pub const MIN_BURST: u64 = 64 * 1024;

/// A rate cap in KiB/s, changeable at run time.
#[derive(Debug, Default)]
pub struct RateCap {
    /// The bucket (none: unlimited) and the cap it was made for.
    limit: Mutex<(u64, Option<Arc<RateLimit>>)>,
}

impl RateCap {
    /// A cap of `kib` KiB/s (0: unlimited).
    pub fn new(kib: u64) -> Self {
        let cap = RateCap::default();
        cap.set_kib(kib);
        cap
    }

    /// Changes the cap (0: unlimited); waits already begun finish at the old rate.
    pub fn set_kib(&self, kib: u64) {
        let mut limit = crate::lock(&self.limit);
        if limit.0 == kib {
            return;
        }
        let bucket = (kib > 0).then(|| {
            let rate = kib.saturating_mul(1024);
            Arc::new(RateLimit::new(rate, (rate / 10).max(MIN_BURST)))
        });
        *limit = (kib, bucket);
    }

    /// The cap in KiB/s (0: unlimited).
    pub fn kib(&self) -> u64 {
        crate::lock(&self.limit).0
    }

    /// Whether there is a cap.
    pub fn is_capped(&self) -> bool {
        crate::lock(&self.limit).1.is_some()
    }

    /// Waits until `amount` bytes fit under the cap (at once when unlimited).
    pub async fn take(&self, amount: usize) {
        let bucket = crate::lock(&self.limit).1.clone();
        if let Some(bucket) = bucket {
            bucket.take(amount).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_cap_paces_and_can_be_lifted() {
        let cap = RateCap::new(0);
        let started = Instant::now();
        cap.take(100 << 20).await;
        assert!(started.elapsed() < Duration::from_millis(50), "unlimited");
        cap.set_kib(1024);
        assert!(cap.is_capped());
        let started = Instant::now();
        // The burst (128 KiB) at once, then 1 MiB/s: 384 KiB more take ≥ 0.375 s.
        for _ in 0..8 {
            cap.take(64 << 10).await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(370),
            "{:?}",
            started.elapsed()
        );
        cap.set_kib(0);
        assert!(!cap.is_capped());
        assert_eq!(cap.kib(), 0);
    }
}
