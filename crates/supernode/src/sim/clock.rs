//! The simulator's virtual clock: a queue of events due at virtual times, popped in time
//! order and, at equal times, in the order they were scheduled (so two messages sent on one
//! link with the same latency arrive in the order they were sent).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Events due at virtual times.
#[derive(Debug)]
pub struct Clock<E> {
    base: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Due<E>>,
}

#[derive(Debug)]
struct Due<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Due<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Due<E> {}
impl<E> PartialOrd for Due<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Due<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest first out of the max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Clock<E> {
    /// A clock at virtual time zero, `base` standing for it as an `Instant`.
    pub fn new(base: Instant) -> Self {
        Clock {
            base,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// Now, as the `Instant` the core is given.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Schedules `event` after `delay`.
    pub fn at(&mut self, delay: Duration, event: E) {
        self.seq += 1;
        self.queue.push(Due {
            at: self.now + delay,
            seq: self.seq,
            event,
        });
    }

    /// The next event due no later than `until`, advancing the clock to it.
    pub fn next_until(&mut self, until: Duration) -> Option<E> {
        if self.queue.peek().is_some_and(|d| d.at <= until) {
            let due = self.queue.pop()?;
            self.now = due.at;
            return Some(due.event);
        }
        None
    }

    /// Moves the clock to `until` (no event is due before it).
    pub fn advance_to(&mut self, until: Duration) {
        self.now = self.now.max(until);
    }
}
