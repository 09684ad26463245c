//! The rate and ETA of one download run, from the bytes fetched in this run only (bytes
//! resumed from a partial file were not transferred now and would inflate both).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The rate is measured over about this much recent time.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Samples kept (at most one per [`MIN_GAP`]).
const MAX_SAMPLES: usize = 64;
/// A sample closer than this to the last one is left out.
const MIN_GAP: Duration = Duration::from_millis(100);
/// No rate is given from less time than this (a first burst would read as a huge rate).
const MIN_SPAN: Duration = Duration::from_millis(500);

/// Samples of (when, bytes fetched this run) since the run started.
#[derive(Clone, Debug)]
pub struct Speed {
    samples: VecDeque<(Instant, u64)>,
}

impl Speed {
    /// A run starting at `now` with nothing fetched yet.
    pub fn new(now: Instant) -> Self {
        Speed {
            samples: VecDeque::from([(now, 0)]),
        }
    }

    /// Records that `fetched` bytes were fetched this run by `now`.
    pub fn sample(&mut self, now: Instant, fetched: u64) {
        let recent = self
            .samples
            .back()
            .is_some_and(|last| now.saturating_duration_since(last.0) < MIN_GAP);
        if recent && self.samples.len() > 1 {
            return;
        }
        self.samples.push_back((now, fetched));
        // Keep one sample at or before the window's start, so the window stays covered.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|s| now.saturating_duration_since(s.0) >= WINDOW)
        {
            self.samples.pop_front();
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the recent window (0 until [`MIN_SPAN`] has passed).
    pub fn rate(&self) -> u64 {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0;
        };
        let span = last.0.saturating_duration_since(first.0);
        if span < MIN_SPAN {
            return 0;
        }
        (last.1.saturating_sub(first.1) as f64 / span.as_secs_f64()) as u64
    }

    /// Time left for `remaining` bytes at the current rate (none while the rate is 0).
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0).then(|| Duration::from_secs(remaining.div_ceil(rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_only_this_runs_bytes_over_the_window() {
        let t0 = Instant::now();
        let mut speed = Speed::new(t0);
        assert_eq!(speed.rate(), 0);
        // 1 MB/s for 10 s.
        for s in 1..=100u64 {
            speed.sample(t0 + Duration::from_millis(100 * s), s * 100_000);
        }
        let rate = speed.rate();
        assert!((950_000..=1_050_000).contains(&rate), "{rate}");
        assert_eq!(speed.eta(8_000_000), Some(Duration::from_secs(8)));
        // Then stalled for 10 s: the window forgets the old rate.
        for s in 101..=200u64 {
            speed.sample(t0 + Duration::from_millis(100 * s), 10_000_000);
        }
        assert_eq!(speed.rate(), 0);
        assert_eq!(speed.eta(1), None);
    }

    #[test]
    fn a_first_burst_gives_no_rate_until_enough_time_passed() {
        let t0 = Instant::now();
        let mut speed = Speed::new(t0);
        speed.sample(t0 + Duration::from_millis(200), 50_000_000);
        assert_eq!(speed.rate(), 0);
        speed.sample(t0 + Duration::from_secs(2), 50_000_000);
        assert_eq!(speed.rate(), 25_000_000);
    }
}
