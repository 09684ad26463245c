//! The download's contacts: who it may still dial, who is banned or unreachable (and the
//! reports of those that never delivered pieces), and reporting to the supernode the sources
//! that could not be reached or served bad data.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use kazoo_common::wire::{CloseCode, Provider, MAX_REPORTED};
use kazoo_common::NodeId;
use quinn::Connection;

use super::dial::Dialer;
use super::worker::Ctx;
use super::{Network, Path, SourceReport, MAX_FAILURES};

/// Who this download may still dial, and what became of those that never delivered pieces.
pub(super) struct Contacts<'a> {
    pub(super) network: &'a dyn Network,
    pub(super) dialer: Dialer<'a>,
    /// Could not be dialled: not dialled again in this download.
    unreachable: HashSet<NodeId>,
    /// Unreachable or banned sources not yet reported to the supernode.
    unreported: Vec<NodeId>,
    /// Banned for this download: a bad manifest or piece, or [`MAX_FAILURES`] failures.
    banned: HashSet<NodeId>,
    /// Failures before the piece phase (no manifest), by node.
    failures: HashMap<NodeId, usize>,
    /// Sources that never delivered pieces (unreachable, bad or no manifest).
    pub(super) reports: Vec<SourceReport>,
    /// How each connected source was reached.
    pub(super) paths: HashMap<NodeId, Path>,
    /// When the first source connected.
    pub(super) first_connected: Option<Instant>,
}

impl<'a> Contacts<'a> {
    pub(super) fn new(network: &'a dyn Network) -> Self {
        Contacts {
            network,
            dialer: Dialer::new(network),
            unreachable: HashSet::new(),
            unreported: Vec::new(),
            banned: HashSet::new(),
            failures: HashMap::new(),
            reports: Vec::new(),
            paths: HashMap::new(),
            first_connected: None,
        }
    }

    /// Source `node` connected, reached by `path`.
    pub(super) fn connected(&mut self, node: NodeId, path: Path) {
        self.paths.insert(node, path);
        self.first_connected.get_or_insert_with(Instant::now);
    }

    /// Queues `providers` for dialling, except those live, banned or unreachable.
    pub(super) fn offer(&mut self, providers: Vec<Provider>, live: &HashSet<NodeId>) {
        let fresh: Vec<Provider> = providers
            .into_iter()
            .filter(|p| {
                !live.contains(&p.node)
                    && !self.banned.contains(&p.node)
                    && !self.unreachable.contains(&p.node)
            })
            .collect();
        self.dialer.offer(fresh);
    }

    pub(super) fn dial_failed(&mut self, provider: Provider, error: String) {
        tracing::warn!(source = %provider.node.short(), addr = %provider.addr, %error, "source unreachable");
        if self.unreachable.insert(provider.node) {
            self.unreported.push(provider.node);
            self.reports.push(SourceReport {
                node: provider.node,
                bytes: 0,
                bad_pieces: 0,
                slow_pieces: 0,
                dropped: Some(format!("unreachable: {error}")),
                reached: None,
            });
        }
        // One report per round of dials.
        if self.dialer.running() == 0 || self.unreported.len() >= MAX_REPORTED {
            self.flush();
        }
    }

    /// Reports the sources found unreachable since the last report.
    pub(super) fn flush(&mut self) {
        while !self.unreported.is_empty() {
            let take = self.unreported.len().min(MAX_REPORTED);
            let nodes: Vec<NodeId> = self.unreported.drain(..take).collect();
            tracing::info!(count = nodes.len(), "reporting unreachable sources");
            self.network.report_unreachable(nodes);
        }
    }

    /// A source failed before delivering pieces; `ban` for good (a bad manifest).
    pub(super) fn failed(
        &mut self,
        provider: Provider,
        conn: &Connection,
        reason: String,
        ban: bool,
    ) {
        conn.close(CloseCode::NORMAL.into(), b"no usable manifest");
        *self.failures.entry(provider.node).or_default() += 1;
        if ban && self.banned.insert(provider.node) {
            self.unreported.push(provider.node);
        }
        match self.reports.iter_mut().find(|r| r.node == provider.node) {
            Some(report) => report.dropped = Some(reason),
            None => self.reports.push(SourceReport {
                node: provider.node,
                bytes: 0,
                bad_pieces: 0,
                slow_pieces: 0,
                dropped: Some(reason),
                reached: None,
            }),
        }
    }

    /// Bans sources that sent a bad piece or failed [`MAX_FAILURES`] times.
    pub(super) fn update_bans(&mut self, ctx: &Ctx) {
        let mut failures = self.failures.clone();
        for source in ctx.sources() {
            if source.dead.load(Ordering::SeqCst) {
                *failures.entry(source.node).or_default() += 1;
            }
            if source.bad.load(Ordering::SeqCst) > 0 && self.banned.insert(source.node) {
                self.unreported.push(source.node);
            }
        }
        self.banned.extend(
            failures
                .into_iter()
                .filter(|(_, n)| *n >= MAX_FAILURES)
                .map(|(node, _)| node),
        );
    }
}
