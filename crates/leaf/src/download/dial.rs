//! Connecting to a download's sources: the whole provider list, several dials at once.
//!
//! Providers wait in a queue in the order they were offered (a supernode lists sources that
//! leaves reported unreachable last) and are dialled at most [`MAX_DIALS_IN_FLIGHT`] at a
//! time. Each dial's outcome is handled as soon as it arrives, so a dead address — which
//! costs its dial the whole QUIC handshake timeout — holds up nothing but its own dial slot.

use std::collections::{HashMap, HashSet, VecDeque};

use futures_util::stream::{FuturesUnordered, StreamExt};
use kazoo_common::wire::Provider;
use kazoo_common::NodeId;
use quinn::Connection;

use super::{BoxFuture, Network, Path};

/// Most dials in flight at once for one download. A dial to a silent address lasts the
/// handshake timeout (`kazoo_common::transport::HANDSHAKE_TIMEOUT`, or the QUIC idle timeout
/// if shorter), so this bounds the packets one download sends to addresses that do not answer
/// (a list of fake sources cannot turn a downloader into a reflector) while 16 dead sources
/// in a row cost the live ones behind them at most one handshake timeout.
pub const MAX_DIALS_IN_FLIGHT: usize = 16;

/// A dial's outcome.
pub(super) type Dialled = (Provider, Result<(Connection, Path), String>);

/// Queued and running dials of one download.
pub(super) struct Dialer<'a> {
    network: &'a dyn Network,
    queue: VecDeque<Provider>,
    running: FuturesUnordered<BoxFuture<'a, Dialled>>,
    /// Queued or being dialled.
    pending: HashSet<NodeId>,
    /// Each provider's place in the order it was first offered (0 = best ranked).
    ranks: HashMap<NodeId, usize>,
}

impl<'a> Dialer<'a> {
    pub(super) fn new(network: &'a dyn Network) -> Self {
        Dialer {
            network,
            queue: VecDeque::new(),
            running: FuturesUnordered::new(),
            pending: HashSet::new(),
            ranks: HashMap::new(),
        }
    }

    /// Queues the providers that are not queued or being dialled already.
    pub(super) fn offer(&mut self, providers: impl IntoIterator<Item = Provider>) {
        for provider in providers {
            let next = self.ranks.len();
            self.ranks.entry(provider.node).or_insert(next);
            if self.pending.insert(provider.node) {
                self.queue.push_back(provider);
            }
        }
    }

    /// Starts queued dials while fewer than [`MAX_DIALS_IN_FLIGHT`] run and fewer than
    /// `room` (more sources the download can take) run.
    pub(super) fn start(&mut self, room: usize) {
        while self.running.len() < MAX_DIALS_IN_FLIGHT.min(room) {
            let Some(provider) = self.queue.pop_front() else {
                break;
            };
            let network = self.network;
            self.running.push(Box::pin(async move {
                tracing::debug!(source = %provider.node.short(), addr = %provider.addr, "dialling source");
                (provider, network.dial(provider).await)
            }));
        }
    }

    /// `node`'s place in the order providers were first offered (0 = best ranked).
    pub(super) fn rank(&self, node: &NodeId) -> usize {
        self.ranks.get(node).copied().unwrap_or(usize::MAX)
    }

    /// Dials running now.
    pub(super) fn running(&self) -> usize {
        self.running.len()
    }

    /// Nothing queued and nothing running.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.running.is_empty()
    }

    /// The next dial to finish; `None` at once if none is running.
    pub(super) async fn next(&mut self) -> Option<Dialled> {
        let done = self.running.next().await?;
        self.pending.remove(&done.0.node);
        Some(done)
    }
}
