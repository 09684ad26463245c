//! Routing filters and reach: keeping each peer's filter and reach, our own reach (the peers'
//! filters folded), the patches that tell peers about changes, and which peers may match a
//! query.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use kazoo_common::wire::{PeerMessage, MAX_FILTER_PATCH};
use kazoo_common::NodeId;

use super::{Action, Overlay, Peer, Routing};
use crate::filter::{fold, FILTER_BITS, MAX_FILTER_SET, MAX_REACH_SET};
use crate::index::Index;
use crate::query::Query;

impl Overlay {
    /// Sends a whole position set as `reset` + patches of at most `MAX_FILTER_PATCH`.
    pub(super) fn send_positions(
        &mut self,
        to: NodeId,
        reach: bool,
        positions: Vec<u32>,
        actions: &mut Vec<Action>,
    ) {
        let mut chunks: Vec<Vec<u32>> = positions
            .chunks(MAX_FILTER_PATCH)
            .map(|c| c.to_vec())
            .collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        for (i, add) in chunks.into_iter().enumerate() {
            let reset = i == 0;
            let msg = if reach {
                PeerMessage::Reach {
                    reset,
                    add,
                    remove: Vec::new(),
                }
            } else {
                PeerMessage::Filter {
                    reset,
                    add,
                    remove: Vec::new(),
                }
            };
            self.send(to, msg, actions);
        }
    }

    /// Our reach: every position some peer's filter folds to.
    pub(super) fn reach_positions(&self) -> Vec<u32> {
        self.reach_live.positions().collect()
    }

    /// A peer's `Filter` patch, or its `Reach` patch if `reach`.
    pub(super) fn on_patch(
        &mut self,
        from: NodeId,
        reach: bool,
        reset: bool,
        add: Vec<u32>,
        remove: Vec<u32>,
        now: Instant,
    ) -> Vec<Action> {
        if add.len() > MAX_FILTER_PATCH || remove.len() > MAX_FILTER_PATCH {
            let reason = if reach {
                "oversized reach patch"
            } else {
                "oversized filter patch"
            };
            return self.penalize(from, reason, now);
        }
        if reach {
            self.apply_reach(from, reset, add, remove);
        } else if self.apply_filter(from, reset, add, remove) > MAX_FILTER_SET {
            // Not believed: it would match (almost) every query. Its positions leave our
            // reach with it.
            return self.penalize(from, "filter over the density bound", now);
        }
        Vec::new()
    }

    /// Applies a peer's filter patch and counts its changes into our reach; returns how many
    /// positions its filter has now.
    fn apply_filter(
        &mut self,
        from: NodeId,
        reset: bool,
        add: Vec<u32>,
        remove: Vec<u32>,
    ) -> usize {
        let Some(peer) = self.peers.get_mut(&from) else {
            return 0;
        };
        let mut gone: Vec<u32> = Vec::new();
        if reset {
            gone.extend(peer.filter.drain());
            if !peer.filter_ready {
                peer.filter_ready = true;
                self.peers_dirty = true;
            }
        }
        gone.extend(remove.iter().copied().filter(|p| peer.filter.remove(p)));
        let fresh: Vec<u32> = add
            .into_iter()
            .filter(|p| *p < (1 << FILTER_BITS) && peer.filter.insert(*p))
            .collect();
        let set = peer.filter.len();
        for pos in gone {
            self.reach_dec(pos);
        }
        for pos in fresh {
            self.reach_inc(pos);
        }
        set
    }

    /// Applies a peer's reach patch.
    fn apply_reach(&mut self, from: NodeId, reset: bool, add: Vec<u32>, remove: Vec<u32>) {
        if let Some(peer) = self.peers.get_mut(&from) {
            if reset {
                peer.reach.clear();
            }
            for pos in remove {
                peer.reach.set(pos, false);
            }
            for pos in add {
                peer.reach.set(pos, true);
            }
        }
    }

    /// Counts one more peer filter position; its reach position is new when it was at 0.
    pub(super) fn reach_inc(&mut self, pos: u32) {
        let slot = &mut self.reach_counts[fold(pos) as usize];
        *slot = slot.saturating_add(1);
        if *slot == 1 {
            self.reach_live.set(pos, true);
            self.reach_add.push(fold(pos));
        }
    }

    /// Counts one peer filter position less; its reach position is gone when it hits 0.
    pub(super) fn reach_dec(&mut self, pos: u32) {
        let slot = &mut self.reach_counts[fold(pos) as usize];
        if *slot > 0 {
            *slot -= 1;
            if *slot == 0 {
                self.reach_live.set(pos, false);
                self.reach_remove.push(fold(pos));
            }
        }
    }

    /// Sends `to` the changes of our index's filter and of our reach since the last tick.
    pub(super) fn send_patches(
        &mut self,
        index: &mut Index,
        to: &[NodeId],
        actions: &mut Vec<Action>,
    ) {
        let patch = index.take_filter_patch();
        let reach_add = std::mem::take(&mut self.reach_add);
        let reach_remove = std::mem::take(&mut self.reach_remove);
        // A position may have come and gone (or gone and come back) within the tick.
        let reach_add: Vec<u32> = reach_add
            .into_iter()
            .filter(|p| self.reach_counts[*p as usize] > 0)
            .collect();
        let reach_remove: Vec<u32> = reach_remove
            .into_iter()
            .filter(|p| self.reach_counts[*p as usize] == 0)
            .collect();
        for &peer in to {
            for (add, remove) in chunk_patch(&patch.add, &patch.remove) {
                self.send(
                    peer,
                    PeerMessage::Filter {
                        reset: false,
                        add,
                        remove,
                    },
                    actions,
                );
            }
            for (add, remove) in chunk_patch(&reach_add, &reach_remove) {
                self.send(
                    peer,
                    PeerMessage::Reach {
                        reset: false,
                        add,
                        remove,
                    },
                    actions,
                );
            }
        }
    }

    /// Positions a query must find in a filter: one of these lists whole (see
    /// [`Query::alternatives`]); none for a query that does not parse.
    fn query_positions(words: &[String]) -> Vec<Vec<u32>> {
        Query::parse(words)
            .map(|q| q.alternatives())
            .unwrap_or_default()
    }

    /// Peers to forward a query with `hops` hops left to (before decrementing). `via` is the
    /// origin's list when the query came straight from its origin: a peer in it already has
    /// the query, and a peer adjacent to several of its members is left to the smallest.
    pub(super) fn targets(
        &self,
        words: &[String],
        hops: u8,
        exclude: &[NodeId],
        via: Option<&[NodeId]>,
    ) -> Vec<NodeId> {
        if hops == 0 {
            return Vec::new();
        }
        let me = self.me;
        let designated = |node: &NodeId, peer: &Peer| match via {
            _ if self.config.routing == Routing::Flood => true,
            None => true,
            Some(via) => {
                !via.contains(node)
                    && via
                        .iter()
                        .filter(|v| **v == me || peer.peers.contains(v))
                        .min()
                        .is_none_or(|first| *first == me)
            }
        };
        let candidates = self
            .peers
            .iter()
            .filter(|(n, p)| !exclude.contains(n) && designated(n, p));
        let mut targets: Vec<NodeId> = match self.config.routing {
            Routing::Flood => candidates.map(|(n, _)| *n).collect(),
            Routing::Filters => {
                let positions = Self::query_positions(words);
                if positions.is_empty() {
                    return Vec::new();
                }
                candidates
                    .filter(|(_, p)| {
                        p.filter_matches(&positions) || (hops >= 2 && p.reach_matches(&positions))
                    })
                    .map(|(n, _)| *n)
                    .collect()
            }
        };
        // In id order, not hash order: the same inputs give the same actions (a simulated
        // run replays exactly).
        targets.sort();
        targets
    }

    /// Drops peers the origin would send a query to only as intermediates when none of their
    /// peers could be the reason their reach matched and be left to them. A two-hop supernode
    /// `q` can be the reason only if every one of our peers adjacent to `q` has a matching
    /// reach (its filter is in all their reaches); it is left to the smallest of them. Peers
    /// whose own filter matches, or whose peer list is unknown, are always kept.
    pub(super) fn prune_intermediates(
        &self,
        words: &[String],
        targets: Vec<NodeId>,
    ) -> Vec<NodeId> {
        let positions = Self::query_positions(words);
        let reach_match: HashSet<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.reach_matches(&positions))
            .map(|(n, _)| *n)
            .collect();
        let mut adjacent: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for (x, peer) in &self.peers {
            for q in &peer.peers {
                if *q != self.me && !self.peers.contains_key(q) {
                    adjacent.entry(*q).or_default().push(*x);
                }
            }
        }
        targets
            .into_iter()
            .filter(|t| {
                let Some(peer) = self.peers.get(t) else {
                    return false;
                };
                if peer.filter_matches(&positions) || peer.peers.is_empty() {
                    return true;
                }
                peer.peers.iter().any(|q| {
                    adjacent.get(q).is_some_and(|adj| {
                        adj.iter().all(|x| reach_match.contains(x)) && adj.iter().min() == Some(t)
                    })
                })
            })
            .collect()
    }
}

impl Peer {
    /// Whether its filter has every position of one of the alternatives (a filter over
    /// [`MAX_FILTER_SET`] never lasts: its peer is disconnected).
    fn filter_matches(&self, alternatives: &[Vec<u32>]) -> bool {
        alternatives
            .iter()
            .any(|positions| positions.iter().all(|x| self.filter.contains(x)))
    }

    /// Whether its reach is believed (at most [`MAX_REACH_SET`] positions) and has every
    /// position of one of the alternatives.
    fn reach_matches(&self, alternatives: &[Vec<u32>]) -> bool {
        self.reach.len() <= MAX_REACH_SET
            && alternatives
                .iter()
                .any(|positions| positions.iter().all(|x| self.reach.contains(*x)))
    }
}

/// Splits a patch into messages of at most `MAX_FILTER_PATCH` positions per list.
fn chunk_patch(add: &[u32], remove: &[u32]) -> Vec<(Vec<u32>, Vec<u32>)> {
    let n = add
        .len()
        .div_ceil(MAX_FILTER_PATCH)
        .max(remove.len().div_ceil(MAX_FILTER_PATCH));
    (0..n)
        .map(|i| {
            let part = |v: &[u32]| {
                v.iter()
                    .skip(i * MAX_FILTER_PATCH)
                    .take(MAX_FILTER_PATCH)
                    .copied()
                    .collect()
            };
            (part(add), part(remove))
        })
        .collect()
}
