//! Peer lists and load: what we tell peers about our own peers and load, what they told us
//! about theirs, and shedding a peer when incoming peerings took us over `max_peers`.

use std::time::{Duration, Instant};

use kazoo_common::wire::{PeerMessage, Provider, MAX_LEAVES_PER_SUPERNODE, MAX_PEER_LIST};
use kazoo_common::NodeId;

use super::{Action, Load, Overlay, PeerView};

/// A peering this young is never shed.
pub(super) const SHED_AFTER: Duration = Duration::from_secs(10);

impl Overlay {
    /// Number of live peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `node` is a live peer.
    pub fn is_peer(&self, node: &NodeId) -> bool {
        self.peers.contains_key(node)
    }

    /// The live peers.
    pub fn peers(&self) -> Vec<PeerView> {
        let mut list: Vec<PeerView> = self
            .peers
            .iter()
            .map(|(node, p)| PeerView {
                node: *node,
                addr: p.addr,
                filter_positions: p.filter.len(),
                peers: p.peers.len(),
                load: p.load,
                since: p.since,
            })
            .collect();
        list.sort_by_key(|p| p.node);
        list
    }

    /// Sets this supernode's load; peers hear of a change at the next tick.
    pub fn set_load(&mut self, load: Load) {
        if load != self.load {
            self.load = load;
            self.load_sent = false;
        }
    }

    /// Up to `max` peers that may take a leaf: those with room, most room first, then
    /// those whose load is not known yet. Full peers are left out, and so are peers whose
    /// peering came up after `up_by` (when given).
    pub fn peers_with_room(
        &self,
        max: usize,
        up_by: Option<Instant>,
    ) -> Vec<(Provider, Option<Load>)> {
        let mut list = self.peers_with_load();
        list.retain(|(p, load)| {
            let up = |t: Instant| self.peers.get(&p.node).is_some_and(|peer| peer.since <= t);
            load.is_none_or(|l| l.room() > 0) && up_by.is_none_or(up)
        });
        list.sort_by_key(|(p, load)| {
            let room = load.map_or(0, |l| l.room());
            (load.is_none(), std::cmp::Reverse(room), p.node)
        });
        list.truncate(max);
        list
    }

    /// Every peer and its last announced load.
    pub fn peers_with_load(&self) -> Vec<(Provider, Option<Load>)> {
        self.peers
            .iter()
            .map(|(node, p)| {
                let provider = Provider::new(*node, p.addr);
                (provider, p.load)
            })
            .collect()
    }

    /// Our load as a message.
    pub(super) fn load_message(&self) -> PeerMessage {
        PeerMessage::Load {
            leaves: self.load.leaves,
            max_leaves: self.load.max_leaves,
            demotable: self.load.demotable,
        }
    }

    /// Our peer list as sent: only peers whose filter has arrived (see the invariants).
    pub(super) fn peer_ids(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.filter_ready)
            .map(|(n, _)| *n)
            .take(MAX_PEER_LIST)
            .collect()
    }

    /// A peer's `Peers` list.
    pub(super) fn on_peers(
        &mut self,
        from: NodeId,
        list: Vec<NodeId>,
        now: Instant,
    ) -> Vec<Action> {
        if list.len() > MAX_PEER_LIST {
            return self.penalize(from, "oversized peer list", now);
        }
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.peers = list;
        }
        Vec::new()
    }

    /// A peer's `Load`.
    pub(super) fn on_load(&mut self, from: NodeId, load: Load, now: Instant) -> Vec<Action> {
        if load.leaves > load.max_leaves || load.max_leaves as usize > MAX_LEAVES_PER_SUPERNODE {
            return self.penalize(from, "implausible load", now);
        }
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.load = Some(load);
        }
        Vec::new()
    }

    /// Tells `to` our load if it changed since it was last sent.
    pub(super) fn send_load(&mut self, to: &[NodeId], actions: &mut Vec<Action>) {
        if !self.load_sent {
            self.load_sent = true;
            let load = self.load_message();
            for &peer in to {
                self.send(peer, load.clone(), actions);
            }
        }
    }

    /// Tells `to` our peer list if it changed since it was last sent.
    pub(super) fn send_peer_list(&mut self, to: &[NodeId], actions: &mut Vec<Action>) {
        if std::mem::take(&mut self.peers_dirty) {
            let ids = self.peer_ids();
            for &peer in to {
                self.send(peer, PeerMessage::Peers(ids.clone()), actions);
            }
        }
    }

    /// Over `max_peers` through incoming peerings: drops one peer that is over it too, the
    /// best connected first, so both keep at least `max_peers`.
    pub(super) fn shed(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.peers.len() > self.config.max_peers {
            let max = self.config.max_peers;
            let shed = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.peers.len() > max && now.saturating_duration_since(p.since) >= SHED_AFTER
                })
                .max_by_key(|(n, p)| (p.peers.len(), **n))
                .map(|(n, _)| *n);
            if let Some(node) = shed {
                actions.push(Action::Shed(node));
                actions.extend(self.on_peer_down(&node, now));
            }
        }
    }
}
