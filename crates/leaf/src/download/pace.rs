//! How long pieces take at each source, and when a piece in flight is overdue.
//!
//! A piece's time runs from its request to its verified last byte. Each source keeps its last
//! [`WINDOW`] piece times and their median. A piece in flight at source `s` is *overdue*
//! once it has taken longer than [`SLOW_FACTOR`] × the median piece time of the *other*
//! sources (the median of their medians), and never before [`SLOW_FLOOR`]: short hiccups on a
//! busy machine or link do not count. While no other source has [`MIN_SAMPLES`] piece times
//! there is nothing to compare with and no piece is overdue (the downloader's hard
//! `PIECE_TIMEOUT` still applies).
//!
//! The downloader takes an overdue piece back for the others (see
//! [`super::scheduler::Scheduler::reclaim`]) and halves the source's request slots; each piece
//! the source delivers in time gives it one slot more (see [`Lanes`]). A source starts with
//! one slot: it proves it delivers before it holds more pieces, so sources that stall cannot
//! take every piece (and every endgame duplicate) of a small file between them. A source far
//! slower than the others so ends up with one piece in flight at a time instead of holding
//! many pieces for many times longer than the others need.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A piece is overdue after this many times the other sources' median piece time.
pub const SLOW_FACTOR: u32 = 4;
/// A piece is never overdue sooner than this.
pub const SLOW_FLOOR: Duration = Duration::from_secs(2);
/// Piece times remembered per source.
pub const WINDOW: usize = 16;
/// Piece times another source needs before it is compared with.
pub const MIN_SAMPLES: usize = 2;

#[derive(Debug, Default)]
struct Times {
    recent: VecDeque<Duration>,
    median: Option<Duration>,
    gone: bool,
}

/// Piece times of every source of one download, by scheduler source index.
#[derive(Debug, Default)]
pub struct PieceTimes {
    sources: Vec<Times>,
}

impl PieceTimes {
    fn at(&mut self, source: usize) -> &mut Times {
        if self.sources.len() <= source {
            self.sources.resize_with(source + 1, Times::default);
        }
        &mut self.sources[source]
    }

    /// `source` delivered a verified piece that took `took`.
    pub fn record(&mut self, source: usize, took: Duration) {
        let times = self.at(source);
        if times.recent.len() == WINDOW {
            times.recent.pop_front();
        }
        times.recent.push_back(took);
        times.median = (times.recent.len() >= MIN_SAMPLES).then(|| median(&times.recent));
    }

    /// `source` left the download: its times no longer count.
    pub fn remove(&mut self, source: usize) {
        let times = self.at(source);
        times.gone = true;
        times.median = None;
    }

    /// How long a piece may be in flight at `source` before it is overdue; `None` while there
    /// is no other source to compare with.
    pub fn overdue_after(&self, source: usize) -> Option<Duration> {
        let mut others: Vec<Duration> = self
            .sources
            .iter()
            .enumerate()
            .filter(|(i, t)| *i != source && !t.gone)
            .filter_map(|(_, t)| t.median)
            .collect();
        if others.is_empty() {
            return None;
        }
        others.sort_unstable();
        let typical = others[others.len() / 2];
        Some((typical * SLOW_FACTOR).max(SLOW_FLOOR))
    }
}

fn median(times: &VecDeque<Duration>) -> Duration {
    let mut sorted: Vec<Duration> = times.iter().copied().collect();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// How many request slots of a source may be busy: starts at one, grows by one with each piece
/// it delivers in time (up to the maximum), halves when one of its pieces is overdue.
#[derive(Debug)]
pub struct Lanes {
    open: AtomicUsize,
    max: usize,
}

impl Lanes {
    /// One lane open, up to `max`.
    pub fn new(max: usize) -> Self {
        Lanes {
            open: AtomicUsize::new(1),
            max: max.max(1),
        }
    }

    /// Whether slot `lane` (0-based) may take a piece now.
    pub fn is_open(&self, lane: usize) -> bool {
        lane < self.open.load(Ordering::SeqCst)
    }

    /// A piece was overdue: half the lanes (at least one) stay open. Returns the new count.
    pub fn slow_down(&self) -> usize {
        let halve = |n: usize| Some((n / 2).max(1));
        let before = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, halve)
            .unwrap_or(1);
        (before / 2).max(1)
    }

    /// A piece arrived in time: one more lane, up to the maximum.
    pub fn speed_up(&self) {
        let max = self.max;
        let _ = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
    }

    /// Lanes open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn overdue_is_relative_to_the_other_sources_with_a_floor() {
        let mut t = PieceTimes::default();
        assert_eq!(t.overdue_after(0), None, "nothing to compare with");
        t.record(1, ms(900));
        assert_eq!(t.overdue_after(0), None, "one sample is not enough");
        t.record(1, ms(1000));
        t.record(1, ms(1100));
        assert_eq!(t.overdue_after(0), Some(ms(4000)));
        // A source is not compared with itself.
        assert_eq!(t.overdue_after(1), None);
        // Fast others: the floor holds.
        t.record(2, ms(10));
        t.record(2, ms(20));
        t.record(3, ms(10));
        t.record(3, ms(30));
        assert_eq!(t.overdue_after(0), Some(SLOW_FLOOR));
        // The slow source's own times do not raise the bar for the others... much: the
        // median of the others' medians.
        t.record(0, Duration::from_secs(60));
        t.record(0, Duration::from_secs(60));
        assert_eq!(
            t.overdue_after(2),
            Some(SLOW_FLOOR.max(ms(1000) * SLOW_FACTOR))
        );
        t.remove(1);
        t.remove(0);
        assert_eq!(t.overdue_after(2), Some(SLOW_FLOOR));
    }

    #[test]
    fn only_recent_times_count() {
        let mut t = PieceTimes::default();
        for _ in 0..WINDOW {
            t.record(1, Duration::from_secs(10));
        }
        for _ in 0..WINDOW {
            t.record(1, ms(100));
        }
        assert_eq!(t.overdue_after(0), Some(SLOW_FLOOR));
    }

    #[test]
    fn lanes_halve_and_grow_back() {
        let lanes = Lanes::new(8);
        assert!(lanes.is_open(0));
        assert!(!lanes.is_open(1), "a new source proves itself first");
        for _ in 0..7 {
            lanes.speed_up();
        }
        assert!(lanes.is_open(7));
        assert_eq!(lanes.slow_down(), 4);
        assert!(!lanes.is_open(4));
        assert_eq!(lanes.slow_down(), 2);
        assert_eq!(lanes.slow_down(), 1);
        assert_eq!(lanes.slow_down(), 1);
        assert!(lanes.is_open(0));
        for _ in 0..20 {
            lanes.speed_up();
        }
        assert_eq!(lanes.open(), 8);
    }
}
