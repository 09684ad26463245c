//! Outgoing dials, bounded so that nobody can turn a kazoo node into a reflector. Addresses
//! come from peers (download sources, gossiped supernodes, succession notices), and a QUIC
//! dial to an address that does not answer sends its Initial packet and a few retransmits
//! until the handshake times out. So:
//! * an address that has completed a QUIC handshake with this node is **proven** and dialled
//!   freely (configured bootstrap entries are proven from the start);
//! * an **unproven** address is dialled at most once per [`UNPROVEN_INTERVAL`], and dials to
//!   unproven addresses are limited to [`UNPROVEN_RATE`] per second across all targets;
//! * an unproven address that did not answer (the dial timed out, or its caller stopped
//!   waiting) is **silent** and not dialled again for [`SILENT_FOR`].
//!
//! A `kazoo get` whose hit names an address that never answers therefore sends it one dial's
//! packets (at most a handful of datagrams) per [`SILENT_FOR`], however many providers name it
//! and however often the get looks its sources up again. Each table holds at most
//! [`MAX_REMEMBERED`] addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kazoo_common::transport::TransportError;

use crate::serve::RateLimit;

/// Least time between two dials to one unproven address.
pub const UNPROVEN_INTERVAL: Duration = Duration::from_secs(2);
/// Dials per second to unproven addresses, across all of them (burst: twice that).
pub const UNPROVEN_RATE: u64 = 20;
/// How long an unproven address that did not answer is left alone.
pub const SILENT_FOR: Duration = Duration::from_secs(30);
/// Most addresses each table (proven, silent, recently dialled) remembers; past it the
/// oldest entry is forgotten.
pub const MAX_REMEMBERED: usize = 4096;

/// Why a dial was not attempted.
#[derive(Debug, thiserror::Error)]
pub enum DialRefused {
    /// The address did not answer a recent dial.
    #[error("{0} did not answer a dial in the last {secs} s", secs = SILENT_FOR.as_secs())]
    Silent(SocketAddr),
    /// The address was dialled less than [`UNPROVEN_INTERVAL`] ago and never answered.
    #[error("{0} was dialled moments ago and has not answered yet")]
    TooSoon(SocketAddr),
    /// Too many dials to unproven addresses this second.
    #[error("too many dials to new addresses; {0} not dialled")]
    RateLimited(SocketAddr),
}

#[derive(Default)]
struct Tables {
    proven: HashMap<SocketAddr, Instant>,
    silent: HashMap<SocketAddr, Instant>,
    dialled: HashMap<SocketAddr, Instant>,
}

/// The dial policy of one node.
pub struct DialGuard {
    tables: Mutex<Tables>,
    unproven: RateLimit,
}

impl DialGuard {
    /// A guard that trusts `proven` (configured bootstrap addresses) from the start.
    pub fn new(proven: impl IntoIterator<Item = SocketAddr>, now: Instant) -> Self {
        let mut tables = Tables::default();
        for addr in proven {
            remember(&mut tables.proven, addr, now);
        }
        DialGuard {
            tables: Mutex::new(tables),
            unproven: RateLimit::new(UNPROVEN_RATE, 2 * UNPROVEN_RATE),
        }
    }

    /// Trusts `addr` from now on (what a configured bootstrap name resolved to).
    pub fn prove(&self, addr: SocketAddr, now: Instant) {
        remember(&mut crate::lock(&self.tables).proven, addr, now);
    }

    /// Whether `addr` may be dialled at `now`; if so the dial is recorded.
    pub fn check(&self, addr: SocketAddr, now: Instant) -> Result<(), DialRefused> {
        let mut tables = crate::lock(&self.tables);
        if tables.proven.contains_key(&addr) {
            return Ok(());
        }
        if let Some(&since) = tables.silent.get(&addr) {
            if now.saturating_duration_since(since) < SILENT_FOR {
                return Err(DialRefused::Silent(addr));
            }
            tables.silent.remove(&addr);
        }
        if let Some(&at) = tables.dialled.get(&addr) {
            if now.saturating_duration_since(at) < UNPROVEN_INTERVAL {
                return Err(DialRefused::TooSoon(addr));
            }
        }
        if !self.unproven.try_take(1) {
            return Err(DialRefused::RateLimited(addr));
        }
        remember(&mut tables.dialled, addr, now);
        Ok(())
    }

    /// Records how a dial to `addr` ended (`None`: its caller stopped waiting).
    pub fn record<T>(
        &self,
        addr: SocketAddr,
        outcome: Option<&Result<T, TransportError>>,
        now: Instant,
    ) {
        let mut tables = crate::lock(&self.tables);
        if answered(outcome) {
            tables.silent.remove(&addr);
            tables.dialled.remove(&addr);
            remember(&mut tables.proven, addr, now);
        } else if !tables.proven.contains_key(&addr) {
            remember(&mut tables.silent, addr, now);
        }
    }
}

/// A dial under way: records its outcome when finished, or a silence if dropped first.
pub struct Pending<'a> {
    guard: &'a DialGuard,
    addr: SocketAddr,
    done: bool,
}

impl<'a> Pending<'a> {
    /// A dial to `addr` that `guard` allowed.
    pub fn new(guard: &'a DialGuard, addr: SocketAddr) -> Self {
        Pending {
            guard,
            addr,
            done: false,
        }
    }

    /// The dial ended with `outcome`.
    pub fn finish<T>(&mut self, outcome: &Result<T, TransportError>) {
        self.done = true;
        self.guard.record(self.addr, Some(outcome), Instant::now());
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.guard.record::<()>(self.addr, None, Instant::now());
        }
    }
}

/// Whether a dial's outcome shows a QUIC endpoint answering at the address.
fn answered<T>(outcome: Option<&Result<T, TransportError>>) -> bool {
    match outcome {
        None => false,
        Some(Ok(_)) => true,
        Some(Err(e)) => !matches!(
            e,
            TransportError::Timeout
                | TransportError::Connection(quinn::ConnectionError::TimedOut)
                | TransportError::Connect { .. }
                | TransportError::NotDialled(_)
        ),
    }
}

/// Inserts `addr` at `now`, forgetting the oldest entry when the table is full.
fn remember(table: &mut HashMap<SocketAddr, Instant>, addr: SocketAddr, now: Instant) {
    if table.len() >= MAX_REMEMBERED && !table.contains_key(&addr) {
        if let Some(oldest) = table.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
            table.remove(&oldest);
        }
    }
    table.insert(addr, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_silent_address_is_left_alone_and_a_proven_one_is_not() {
        let t0 = Instant::now();
        let guard = DialGuard::new([addr(1)], t0);
        for _ in 0..10 {
            assert!(
                guard.check(addr(1), t0).is_ok(),
                "bootstrap entries are proven"
            );
        }
        assert!(guard.check(addr(2), t0).is_ok());
        assert!(matches!(
            guard.check(addr(2), t0),
            Err(DialRefused::TooSoon(_))
        ));
        guard.record::<()>(addr(2), None, t0);
        let later = t0 + UNPROVEN_INTERVAL * 2;
        assert!(matches!(
            guard.check(addr(2), later),
            Err(DialRefused::Silent(_))
        ));
        assert!(guard
            .check(addr(2), t0 + SILENT_FOR + UNPROVEN_INTERVAL)
            .is_ok());
        guard.record(addr(2), Some(&Ok::<(), TransportError>(())), t0);
        assert!(guard.check(addr(2), t0).is_ok() && guard.check(addr(2), t0).is_ok());
    }

    #[test]
    fn dials_to_new_addresses_are_rate_limited_in_total() {
        let guard = DialGuard::new([], Instant::now());
        let now = Instant::now();
        let allowed = (0..1000u16)
            .filter(|p| guard.check(addr(*p), now).is_ok())
            .count();
        assert!(
            allowed <= 2 * UNPROVEN_RATE as usize + 1,
            "{allowed} dials allowed at once"
        );
    }

    #[test]
    fn tables_are_bounded() {
        let t0 = Instant::now();
        let guard = DialGuard::new([], t0);
        for i in 0..(MAX_REMEMBERED + 100) {
            let a = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
            guard.record::<()>(a, None, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(crate::lock(&guard.tables).silent.len(), MAX_REMEMBERED);
    }
}
