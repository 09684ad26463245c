//! The host cache: which supernodes we know, gossip about them, whom to dial next, and the
//! penalties that keep misbehaving peers away.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Provider, MAX_GOSSIP};
use kazoo_common::NodeId;

use super::{Action, Overlay};

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

    /// Learns of a supernode last seen `age` ago (bootstrap, host cache, gossip).
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
            self.add_host(provider, Duration::ZERO, now);
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
            let mut candidates: Vec<(NodeId, SocketAddr, Instant)> = self
                .hosts
                .iter()
                .filter(|(n, h)| {
                    !self.peers.contains_key(*n)
                        && !self.dialing.contains(*n)
                        && h.next_dial <= now
                        && self.penalties.get(*n).is_none_or(|u| *u <= now)
                })
                .map(|(n, h)| (*n, h.addr, h.last_seen))
                .collect();
            candidates.sort_by_key(|(n, _, seen)| (std::cmp::Reverse(*seen), *n));
            for (node, addr, _) in candidates.into_iter().take(room) {
                self.dialing.insert(node);
                if let Some(host) = self.hosts.get_mut(&node) {
                    host.next_dial = now + self.config.dial_backoff;
                }
                actions.push(Action::Dial(Provider::new(node, addr)));
            }
        }
    }
}
