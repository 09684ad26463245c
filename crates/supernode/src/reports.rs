//! Reports of unreachable sources: what a supernode does with `ReportUnreachable`.
//!
//! A leaf whose download could not dial some sources tells its supernode which. A report is a
//! claim from a peer that may lie, so it never removes a source for anyone but the reporter:
//! * **the reporter** no longer gets the reported providers in its own answers (searches and
//!   lookups) for [`REPORT_WINDOW`], or until the provider joins again
//!   ([`Reports::forget_provider`]: a source that died and came back is found again by a
//!   download waiting for it); that costs nobody else anything;
//! * **everyone** gets a provider that at least [`DERANK_REPORTERS`] distinct leaves reported
//!   within the window at the *end* of its provider lists — de-ranked, never removed, so a
//!   lying leaf (or a few) cannot hide a source from the network, while a source that really
//!   is dead stops being everyone's first dial.
//!
//! Bounds: at most [`MAX_PER_REPORTER`] providers per reporter (a new report pushes out that
//! reporter's oldest) and [`MAX_REPORTERS`] reporters (a new reporter, once expired reports
//! are swept, pushes out the one that reported least recently): at most
//! [`MAX_REPORTERS`] × [`MAX_PER_REPORTER`] = 65,536 (reporter, provider) pairs, about 8 MB
//! at worst. Reporters are authenticated node ids of joined leaves, so one leaf is one
//! reporter however often it reports or re-joins.
//!
//! Plain state: time is passed in, no clock reads, no locks (the supernode service keeps it
//! behind its own mutex). Expired reports are ignored at once and swept out at most every
//! [`SWEEP_EVERY`] (and whenever the reporter table is full).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Provider, MAX_REPORTED};
use kazoo_common::NodeId;

/// How long a report counts.
pub const REPORT_WINDOW: Duration = Duration::from_secs(180);
/// Distinct reporters (within the window) that de-rank a provider for everyone.
pub const DERANK_REPORTERS: usize = 2;
/// Most providers remembered per reporter.
pub const MAX_PER_REPORTER: usize = MAX_REPORTED;
/// Most reporters remembered.
pub const MAX_REPORTERS: usize = 1024;
/// Least time between two sweeps of expired reports (unless the reporter table is full).
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Reporter {
    /// When it last reported.
    last: Instant,
    /// Provider → when this reporter last reported it.
    hidden: HashMap<NodeId, Instant>,
}

/// Unreachable-source reports held by one supernode.
#[derive(Debug, Default)]
pub struct Reports {
    by_reporter: HashMap<NodeId, Reporter>,
    /// Provider → (reporter, when): the same pairs as `by_reporter`, indexed by provider.
    by_provider: HashMap<NodeId, Vec<(NodeId, Instant)>>,
    last_sweep: Option<Instant>,
}

fn live(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < REPORT_WINDOW
}

impl Reports {
    /// No reports.
    pub fn new() -> Self {
        Self::default()
    }

    /// `reporter` could not reach `nodes` (only the first [`MAX_REPORTED`] count; itself is
    /// ignored). Returns how many were recorded.
    pub fn report(&mut self, reporter: NodeId, nodes: &[NodeId], now: Instant) -> usize {
        let nodes: Vec<NodeId> = nodes
            .iter()
            .take(MAX_REPORTED)
            .filter(|n| **n != reporter)
            .copied()
            .collect();
        if nodes.is_empty() {
            return 0;
        }
        if self
            .last_sweep
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY)
        {
            self.sweep(now);
        }
        if !self.by_reporter.contains_key(&reporter) && self.by_reporter.len() >= MAX_REPORTERS {
            self.sweep(now);
            if self.by_reporter.len() >= MAX_REPORTERS {
                let stalest = self
                    .by_reporter
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(node, _)| *node);
                if let Some(stalest) = stalest {
                    self.forget_reporter(stalest);
                }
            }
        }
        let entry = self
            .by_reporter
            .entry(reporter)
            .or_insert_with(|| Reporter {
                last: now,
                hidden: HashMap::new(),
            });
        entry.last = now;
        let mut pushed_out = Vec::new();
        for &node in &nodes {
            if !entry.hidden.contains_key(&node) && entry.hidden.len() >= MAX_PER_REPORTER {
                let oldest = entry
                    .hidden
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(n, _)| *n);
                if let Some(oldest) = oldest {
                    entry.hidden.remove(&oldest);
                    pushed_out.push(oldest);
                }
            }
            entry.hidden.insert(node, now);
        }
        for provider in pushed_out {
            if !self.hides_at_all(&reporter, &provider) {
                self.unindex(provider, reporter);
            }
        }
        for &node in &nodes {
            if !self.hides_at_all(&reporter, &node) {
                continue;
            }
            let reporters = self.by_provider.entry(node).or_default();
            match reporters.iter_mut().find(|(r, _)| *r == reporter) {
                Some(pair) => pair.1 = now,
                None => reporters.push((reporter, now)),
            }
        }
        nodes.len()
    }

    /// Whether `reporter` holds a report of `provider`, expired or not.
    fn hides_at_all(&self, reporter: &NodeId, provider: &NodeId) -> bool {
        self.by_reporter
            .get(reporter)
            .is_some_and(|r| r.hidden.contains_key(provider))
    }

    /// Whether `asker` reported `provider` within the window (it is left out of its answers).
    pub fn hides(&self, asker: &NodeId, provider: &NodeId, now: Instant) -> bool {
        self.by_reporter
            .get(asker)
            .and_then(|r| r.hidden.get(provider))
            .is_some_and(|at| live(*at, now))
    }

    /// Whether at least [`DERANK_REPORTERS`] distinct leaves reported `provider` within the
    /// window (it goes to the end of everyone's lists).
    pub fn deranked(&self, provider: &NodeId, now: Instant) -> bool {
        self.by_provider.get(provider).is_some_and(|reporters| {
            reporters
                .iter()
                .filter(|(_, at)| live(*at, now))
                .take(DERANK_REPORTERS)
                .count()
                >= DERANK_REPORTERS
        })
    }

    /// Prepares a provider list for `asker`: drops what it reported, moves de-ranked
    /// providers to the end (the others keep their order).
    pub fn rank(&self, asker: &NodeId, providers: &mut Vec<Provider>, now: Instant) {
        if self.by_provider.is_empty() {
            return;
        }
        providers.retain(|p| !self.hides(asker, &p.node, now));
        // A stable sort: false (kept in place) before true (de-ranked).
        providers.sort_by_key(|p| self.deranked(&p.node, now));
    }

    /// (reporter, provider) pairs held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.by_reporter.values().map(|r| r.hidden.len()).sum()
    }

    /// Whether no report is held.
    pub fn is_empty(&self) -> bool {
        self.by_reporter.is_empty()
    }

    /// Reporters held.
    pub fn reporters(&self) -> usize {
        self.by_reporter.len()
    }

    /// Drops every expired report.
    pub fn sweep(&mut self, now: Instant) {
        self.last_sweep = Some(now);
        self.by_reporter.retain(|_, r| {
            r.hidden.retain(|_, at| live(*at, now));
            !r.hidden.is_empty() || live(r.last, now)
        });
        self.by_provider.retain(|_, reporters| {
            reporters.retain(|(_, at)| live(*at, now));
            !reporters.is_empty()
        });
    }

    /// Forgets every report of `provider`: it has just joined (again), so what made it
    /// unreachable — a dead node, an old address — may be over. A joining node is
    /// authenticated and joins are rate-limited, so a liar gains one more dial per join.
    pub fn forget_provider(&mut self, provider: &NodeId) {
        if let Some(reporters) = self.by_provider.remove(provider) {
            for (reporter, _) in reporters {
                if let Some(r) = self.by_reporter.get_mut(&reporter) {
                    r.hidden.remove(provider);
                }
            }
        }
    }

    fn forget_reporter(&mut self, reporter: NodeId) {
        if let Some(gone) = self.by_reporter.remove(&reporter) {
            for provider in gone.hidden.into_keys() {
                self.unindex(provider, reporter);
            }
        }
    }

    fn unindex(&mut self, provider: NodeId, reporter: NodeId) {
        if let Some(reporters) = self.by_provider.get_mut(&provider) {
            reporters.retain(|(r, _)| *r != reporter);
            if reporters.is_empty() {
                self.by_provider.remove(&provider);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_that_joins_again_is_no_longer_hidden() {
        let now = Instant::now();
        let mut reports = Reports::new();
        reports.report(node(1), &[node(9), node(8)], now);
        reports.report(node(2), &[node(9)], now);
        assert!(reports.hides(&node(1), &node(9), now) && reports.deranked(&node(9), now));
        reports.forget_provider(&node(9));
        assert!(!reports.hides(&node(1), &node(9), now));
        assert!(!reports.hides(&node(2), &node(9), now));
        assert!(!reports.deranked(&node(9), now));
        assert!(reports.hides(&node(1), &node(8), now));
        assert_eq!(reports.len(), 1);
    }

    fn node(n: u16) -> NodeId {
        let mut id = [0u8; 32];
        id[..2].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    fn providers(nodes: &[u16]) -> Vec<Provider> {
        nodes
            .iter()
            .map(|&n| Provider::new(node(n), "127.0.0.1:9".parse().unwrap()))
            .collect()
    }

    fn ranked(reports: &Reports, asker: u16, list: &[u16], now: Instant) -> Vec<u16> {
        let mut list = providers(list);
        reports.rank(&node(asker), &mut list, now);
        list.iter()
            .map(|p| u16::from_be_bytes([p.node.0[0], p.node.0[1]]))
            .collect()
    }

    #[test]
    fn a_reporter_stops_getting_what_it_reported_and_nobody_else_is_affected() {
        let mut r = Reports::new();
        let t = Instant::now();
        assert_eq!(r.report(node(1), &[node(10)], t), 1);
        assert_eq!(ranked(&r, 1, &[10, 11, 12], t), [11, 12]);
        assert_eq!(
            ranked(&r, 2, &[10, 11, 12], t),
            [10, 11, 12],
            "one claim hides nothing from others"
        );
        // Reporting again, or re-joining under the same key, is still one reporter.
        r.report(node(1), &[node(10)], t);
        assert!(!r.deranked(&node(10), t));
    }

    #[test]
    fn two_distinct_reporters_derank_a_provider_for_everyone() {
        let mut r = Reports::new();
        let t = Instant::now();
        r.report(node(1), &[node(10)], t);
        r.report(node(2), &[node(10)], t + Duration::from_secs(1));
        let t = t + Duration::from_secs(2);
        assert!(r.deranked(&node(10), t));
        assert_eq!(
            ranked(&r, 3, &[10, 11, 12], t),
            [11, 12, 10],
            "moved last, not removed"
        );
        assert_eq!(ranked(&r, 1, &[10, 11, 12], t), [11, 12]);
    }

    #[test]
    fn reports_expire_after_the_window() {
        let mut r = Reports::new();
        let t = Instant::now();
        r.report(node(1), &[node(10)], t);
        r.report(node(2), &[node(10)], t + Duration::from_secs(60));
        let later = t + REPORT_WINDOW;
        assert!(!r.hides(&node(1), &node(10), later));
        assert!(
            !r.deranked(&node(10), later),
            "only one report is still in the window"
        );
        assert!(r.hides(&node(2), &node(10), later));
        r.sweep(later);
        assert_eq!(r.len(), 1);
        r.sweep(later + Duration::from_secs(60));
        assert!(r.is_empty());
        assert!(r.by_provider.is_empty());
    }

    #[test]
    fn a_reporter_keeps_only_its_newest_reports() {
        let mut r = Reports::new();
        let t = Instant::now();
        for i in 0..(MAX_PER_REPORTER as u16 + 10) {
            r.report(
                node(1),
                &[node(1000 + i)],
                t + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(r.len(), MAX_PER_REPORTER);
        let now = t + Duration::from_secs(1);
        assert!(
            !r.hides(&node(1), &node(1000), now),
            "the oldest was pushed out"
        );
        assert!(r.hides(&node(1), &node(1000 + MAX_PER_REPORTER as u16 + 9), now));
        assert_eq!(
            r.by_provider.len(),
            MAX_PER_REPORTER,
            "the provider index follows"
        );
    }

    #[test]
    fn one_report_is_bounded_and_self_reports_are_ignored() {
        let mut r = Reports::new();
        let t = Instant::now();
        let many: Vec<NodeId> = (0..200).map(|i| node(100 + i)).collect();
        assert_eq!(r.report(node(1), &many, t), MAX_REPORTED);
        assert_eq!(r.report(node(2), &[node(2)], t), 0);
        assert!(!r.hides(&node(2), &node(2), t));
    }

    #[test]
    fn the_reporter_table_is_bounded() {
        let mut r = Reports::new();
        let t = Instant::now();
        for i in 0..=(MAX_REPORTERS as u16) {
            r.report(
                node(i),
                &[node(60_000)],
                t + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(r.reporters(), MAX_REPORTERS);
        let now = t + Duration::from_secs(5);
        assert!(
            !r.hides(&node(0), &node(60_000), now),
            "least recent reporter went"
        );
        assert!(r.hides(&node(MAX_REPORTERS as u16), &node(60_000), now));
        assert_eq!(r.by_provider[&node(60_000)].len(), MAX_REPORTERS);
    }

    #[test]
    fn an_expired_reporter_makes_room_before_a_live_one_is_pushed_out() {
        let mut r = Reports::new();
        let t = Instant::now();
        for i in 0..(MAX_REPORTERS as u16) {
            r.report(node(i), &[node(60_000)], t);
        }
        // Long after, reporter 0 reports again; then a new one arrives: the expired ones are
        // swept, reporter 0 stays.
        let later = t + REPORT_WINDOW + Duration::from_secs(1);
        r.report(node(0), &[node(60_001)], later);
        r.report(node(5000), &[node(60_001)], later);
        assert_eq!(r.reporters(), 2);
        assert!(r.deranked(&node(60_001), later));
        assert!(!r.deranked(&node(60_000), later));
    }

    #[test]
    fn the_service_takes_reports_and_ranks_lookups_for_the_reporter() {
        use crate::{Admission, OverlayConfig, Supernode};
        use kazoo_common::wire::{ErrorCode, Request, Response, ShareEntry};
        use kazoo_common::ContentId;

        let mut sn = Supernode::new(node(0), Default::default(), 4710, OverlayConfig::default());
        let id = ContentId([7; 32]);
        let mut keys = Vec::new();
        for n in 1..=4 {
            let addr = format!("127.0.0.1:{}", 5000 + n).parse().unwrap();
            let Admission::Admitted(key) = sn.admit(node(n), addr, 0, Instant::now()) else {
                panic!("refused");
            };
            let entries = vec![ShareEntry {
                id,
                size: 1,
                name: "file".into(),
            }];
            sn.answer(key, &Request::Register { entries });
            keys.push(key);
        }
        let t = Instant::now();
        let lookup = |sn: &mut Supernode, asker: u16| -> Vec<u16> {
            let key = keys[usize::from(asker) - 1];
            match &sn.answer_from(node(asker), key, &Request::Lookup { id }, t)[..] {
                [Response::Providers(p)] => p
                    .iter()
                    .map(|p| u16::from_be_bytes([p.node.0[0], p.node.0[1]]))
                    .collect(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(lookup(&mut sn, 4), [1, 2, 3, 4]);
        let report = Request::ReportUnreachable {
            nodes: vec![node(1)],
        };
        assert_eq!(
            sn.answer_from(node(3), keys[2], &report, t),
            [Response::Registered { total: 0 }]
        );
        assert_eq!(lookup(&mut sn, 3), [2, 3, 4]);
        assert_eq!(lookup(&mut sn, 4), [1, 2, 3, 4]);
        sn.answer_from(node(2), keys[1], &report, t);
        assert_eq!(lookup(&mut sn, 4), [2, 3, 4, 1]);
        let oversized = Request::ReportUnreachable {
            nodes: vec![node(1); MAX_REPORTED + 1],
        };
        assert!(matches!(
            &sn.answer_from(node(4), keys[3], &oversized, t)[..],
            [Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }]
        ));
    }
}
