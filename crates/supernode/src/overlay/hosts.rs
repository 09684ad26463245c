//! The host cache: which supernodes we know, gossip about them, whom to dial next, and the
//! penalties that keep misbehaving peers away.
//!
//! Only a supernode we have completed a peering handshake with (or one from bootstrap or the
//! saved host cache, which holds only those) is a *host*. What peers gossip is a claim: it
//! becomes a dial *candidate*, at most [`MAX_CANDIDATES_PER_PEER`] per gossiping peer and
//! [`MAX_CANDIDATES`] in all, dialled like a host, dropped after [`CANDIDATE_ATTEMPTS`]
//! failed dials, and promoted to a host when a peering with it comes up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Provider, MAX_CANDIDATES, MAX_CANDIDATES_PER_PEER, MAX_GOSSIP};
use kazoo_common::NodeId;

use super::{Action, Overlay};

/// Failed dials after which a candidate is forgotten (until gossiped again).
pub const CANDIDATE_ATTEMPTS: u32 = 3;

/// A gossiped supernode not yet handshaken with.
pub(super) struct Candidate {
    pub(super) addr: SocketAddr,
    /// The peer (or, for supernodes a leaf heard of before promoting, this node) that named it.
    pub(super) source: NodeId,
    /// When it was named.
    pub(super) added: Instant,
    /// Not dialled before this.
    pub(super) next_dial: Instant,
    /// Dials to it that failed.
    pub(super) failures: u32,
}

/// A known supernode.
pub(super) struct Host {
    pub(super) addr: SocketAddr,
    /// Newest time anyone vouched for it (never moves back).
    pub(super) last_seen: Instant,
    /// Not dialled before this (back-off after a failed dial or a lost peering).
    pub(super) next_dial: Instant,
}

impl Overlay {
    /// Number of known supernodes.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Known supernodes and how long ago each was last seen (for the persisted host cache).
    pub fn hosts(&self, now: Instant) -> Vec<(Provider, Duration)> {
        self.hosts
            .iter()
            .map(|(node, h)| {
                let provider = Provider::new(*node, h.addr);
                (provider, now.saturating_duration_since(h.last_seen))
            })
            .collect()
    }

    /// Number of gossiped supernodes waiting to be dialled (not in [`Self::hosts`]).
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// Learns of a supernode `source` named (a peer's gossip, a former supernode's notice):
    /// a dial candidate, a host only once a peering with it comes up. Ignored when it is
    /// already known, or `source` already named [`MAX_CANDIDATES_PER_PEER`]; with
    /// [`MAX_CANDIDATES`] taken, the oldest of the source naming most is evicted.
    pub fn add_candidate(&mut self, provider: Provider, source: NodeId, now: Instant) {
        let node = provider.node;
        if node == self.me
            || provider.addr.ip().is_unspecified()
            || provider.addr.port() == 0
            || self.hosts.contains_key(&node)
            || self.candidates.contains_key(&node)
        {
            return;
        }
        let mut named: std::collections::HashMap<NodeId, usize> = Default::default();
        for c in self.candidates.values() {
            *named.entry(c.source).or_default() += 1;
        }
        if named.get(&source).copied().unwrap_or(0) >= MAX_CANDIDATES_PER_PEER {
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            let busiest = named
                .iter()
                .max_by_key(|(s, n)| (**n, **s))
                .map(|(s, _)| *s);
            let oldest = self
                .candidates
                .iter()
                .filter(|(_, c)| Some(c.source) == busiest)
                .min_by_key(|(n, c)| (c.added, **n))
                .map(|(n, _)| *n);
            if let Some(oldest) = oldest {
                self.candidates.remove(&oldest);
            }
        }
        self.candidates.insert(
            node,
            Candidate {
                addr: provider.addr,
                source,
                added: now,
                next_dial: now,
                failures: 0,
            },
        );
    }

    /// Learns of a supernode last seen `age` ago that was handshaken with: a peering (now,
    /// or before a restart, from the saved host cache) or a bootstrap entry.
    pub fn add_host(&mut self, provider: Provider, age: Duration, now: Instant) {
        if provider.node == self.me || provider.addr.ip().is_unspecified() {
            return;
        }
        let last_seen = now.checked_sub(age).unwrap_or(now);
        if let Some(host) = self.hosts.get_mut(&provider.node) {
            host.addr = provider.addr;
            host.last_seen = host.last_seen.max(last_seen);
            return;
        }
        if self.hosts.len() >= self.config.max_hosts {
            // Forget the stalest host to make room.
            let stalest = self
                .hosts
                .iter()
                .filter(|(n, _)| !self.peers.contains_key(*n))
                .min_by_key(|(_, h)| h.last_seen)
                .map(|(n, _)| *n);
            match stalest {
                Some(node) => {
                    self.hosts.remove(&node);
                }
                None => return,
            }
        }
        self.hosts.insert(
            provider.node,
            Host {
                addr: provider.addr,
                last_seen,
                next_dial: now,
            },
        );
    }

    /// Whether an incoming peering from `node` should be accepted: up to
    /// [`Self::max_incoming`] peers, so a new supernode (a promoted heir) finds room in a
    /// mesh where every supernode already has `max_peers`.
    pub fn wants_peer(&self, node: &NodeId, now: Instant) -> bool {
        *node != self.me
            && !self.peers.contains_key(node)
            && self.peers.len() < self.max_incoming()
            && self.penalties.get(node).is_none_or(|until| *until <= now)
    }

    /// Most peers once incoming peerings are counted: `max_peers` plus a quarter (at least
    /// 2 when `max_peers` > 0). A supernode dials only while it has fewer than `max_peers`.
    pub fn max_incoming(&self) -> usize {
        let max = self.config.max_peers;
        if max == 0 {
            0
        } else {
            max + (max / 4).max(2)
        }
    }

    /// A dial to `node` failed (or was refused).
    pub fn on_dial_failed(&mut self, node: &NodeId, now: Instant) {
        self.dialing.remove(node);
        if let Some(host) = self.hosts.get_mut(node) {
            host.next_dial = now + self.config.dial_backoff;
        }
        if let Some(c) = self.candidates.get_mut(node) {
            c.failures += 1;
            c.next_dial = now + self.config.dial_backoff;
            if c.failures >= CANDIDATE_ATTEMPTS {
                self.candidates.remove(node);
            }
        }
    }

    /// Drops a misbehaving peer and keeps it away for `penalty`.
    pub fn penalize(&mut self, node: NodeId, reason: &str, now: Instant) -> Vec<Action> {
        self.penalties.insert(node, now + self.config.penalty);
        self.stats.peers_dropped += 1;
        let mut actions = vec![Action::Disconnect(node, reason.to_owned())];
        actions.extend(self.on_peer_down(&node, now));
        actions
    }

    /// What we gossip to a new peer: our peers first, then other hosts, freshest first.
    pub(super) fn gossip_list(&self) -> Vec<Provider> {
        let mut list: Vec<Provider> = self
            .peers
            .iter()
            .map(|(node, p)| Provider::new(*node, p.addr))
            .collect();
        let mut others: Vec<(&NodeId, &Host)> = self
            .hosts
            .iter()
            .filter(|(n, _)| !self.peers.contains_key(*n))
            .collect();
        others.sort_by_key(|(_, h)| std::cmp::Reverse(h.last_seen));
        list.extend(others.into_iter().map(|(n, h)| Provider::new(*n, h.addr)));
        list.truncate(MAX_GOSSIP);
        list
    }

    /// A peer's `Supernodes` gossip.
    pub(super) fn on_supernodes(
        &mut self,
        from: NodeId,
        list: Vec<Provider>,
        now: Instant,
    ) -> Vec<Action> {
        if list.len() > MAX_GOSSIP {
            return self.penalize(from, "oversized supernode list", now);
        }
        for provider in list {
            self.add_candidate(provider, from, now);
        }
        Vec::new()
    }

    /// Ends served penalties and forgets hosts not seen for `host_max_age` (peers are kept).
    pub(super) fn forget_hosts(&mut self, now: Instant) {
        self.penalties.retain(|_, until| *until > now);
        let max_age = self.config.host_max_age;
        let peers = &self.peers;
        self.hosts.retain(|n, h| {
            peers.contains_key(n) || now.saturating_duration_since(h.last_seen) < max_age
        });
    }

    /// Dials the freshest hosts that are due while we have fewer than `max_peers`.
    pub(super) fn dial(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.peers.len() + self.dialing.len() < self.config.max_peers {
            let room = (self.config.max_peers - self.peers.len() - self.dialing.len())
                .min(self.config.max_dials.saturating_sub(self.dialing.len()));
            let due = |n: &NodeId, next_dial: Instant| {
                !self.peers.contains_key(n)
                    && !self.dialing.contains(n)
                    && next_dial <= now
                    && self.penalties.get(n).is_none_or(|u| *u <= now)
            };
            let hosts = self
                .hosts
                .iter()
                .filter(|(n, h)| due(n, h.next_dial))
                .map(|(n, h)| (*n, h.addr, h.last_seen));
            let candidates = self
                .candidates
                .iter()
                .filter(|(n, c)| due(n, c.next_dial))
                .map(|(n, c)| (*n, c.addr, c.added));
            let mut due: Vec<(NodeId, SocketAddr, Instant)> = hosts.chain(candidates).collect();
            due.sort_by_key(|(n, _, seen)| (std::cmp::Reverse(*seen), *n));
            let next_dial = now + self.config.dial_backoff;
            for (node, addr, _) in due.into_iter().take(room) {
                self.dialing.insert(node);
                if let Some(host) = self.hosts.get_mut(&node) {
                    host.next_dial = next_dial;
                }
                if let Some(c) = self.candidates.get_mut(&node) {
                    c.next_dial = next_dial;
                }
                actions.push(Action::Dial(Provider::new(node, addr)));
            }
        }
    }
}
