//! Rendezvous for reverse connections: which peer a source's hits came from (so a
//! `PeerMessage::Connect` can travel back along the hits' path to the source's supernode),
//! and checking the `Connect` messages peers send.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Hit, Provider, MAX_HOPS};
use kazoo_common::NodeId;

use super::{Action, Overlay};
use crate::hits::plausible_provider;

/// Sources remembered with the peer their hits came from (the oldest is forgotten first).
pub const MAX_ROUTES: usize = 4096;
/// How long a source's route is remembered after its last hit.
pub const ROUTE_TTL: Duration = Duration::from_secs(600);

/// Where a source's hits came from.
#[derive(Clone, Copy, Debug)]
struct Route {
    /// The peer that sent them.
    peer: NodeId,
    /// The source's address in them.
    addr: SocketAddr,
    /// When the last one came.
    at: Instant,
}

/// Routes to sources, bounded by [`MAX_ROUTES`].
#[derive(Debug, Default)]
pub(super) struct Routes {
    by_source: HashMap<NodeId, Route>,
    /// Sources in the order they were first remembered (with stale duplicates skipped).
    order: VecDeque<NodeId>,
}

impl Routes {
    /// Remembers that `hits` came from `peer`.
    pub(super) fn learn(&mut self, peer: NodeId, hits: &[Hit], now: Instant) {
        for p in hits.iter().flat_map(|h| &h.providers) {
            let route = Route {
                peer,
                addr: p.addr,
                at: now,
            };
            if self.by_source.insert(p.node, route).is_none() {
                self.order.push_back(p.node);
            }
        }
        while self.by_source.len() > MAX_ROUTES {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_source.remove(&old);
                }
                None => break,
            }
        }
    }

    /// The peer `source`'s hits came from and its address in them, if remembered lately.
    fn get(&self, source: &NodeId, now: Instant) -> Option<Route> {
        self.by_source
            .get(source)
            .filter(|r| now.saturating_duration_since(r.at) < ROUTE_TTL)
            .copied()
    }
}

impl Overlay {
    /// The peer that sent hits naming `source` lately (still a peer), and `source`'s address
    /// in them.
    pub fn route_to(&self, source: &NodeId, now: Instant) -> Option<(NodeId, SocketAddr)> {
        self.routes
            .get(source, now)
            .filter(|r| self.peers.contains_key(&r.peer))
            .map(|r| (r.peer, r.addr))
    }

    /// Checks a `Connect` from peer `from`: it costs a query token, `hops_left` is at most
    /// [`MAX_HOPS`], and the requester's address is plausible for that peer. `Err` carries
    /// the actions that drop a peer breaking those rules (empty: not a peer).
    pub fn check_connect(
        &mut self,
        from: NodeId,
        requester: &Provider,
        hops_left: u8,
        now: Instant,
    ) -> Result<(), Vec<Action>> {
        let Some(peer_addr) = self.peers.get(&from).map(|p| p.addr) else {
            return Err(Vec::new());
        };
        if !self.take_query_token(from, now) {
            return Err(self.penalize(from, "connect flood", now));
        }
        if hops_left > MAX_HOPS || !plausible_provider(requester.addr, peer_addr) {
            return Err(self.penalize(from, "connect request out of bounds", now));
        }
        if requester.node == self.me || requester.addr.ip().is_unspecified() {
            return Err(self.penalize(from, "connect request out of bounds", now));
        }
        Ok(())
    }
}
