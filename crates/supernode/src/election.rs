//! Election decisions a supernode takes about its own leaves, as plain functions of its
//! state (the node runtime carries them out over QUIC):
//! * **growth**: when a leaf it asked to promote has peered back, which of its leaves move
//!   to the new supernode ([`pick_handover`]);
//! * **shrink**: whether an under-used `auto` supernode demotes now, and where each of its
//!   leaves goes ([`plan_demotion`]).
//!
//! Invariants of a demotion plan: every leaf is assigned a peer whose announced room, less
//! the leaves already assigned to it, is still positive; the demoting node itself needs one
//! more slot; and of the under-used demotable supernodes it can see (itself and its peers),
//! only the one with the fewest leaves (ties: the smallest node id) demotes, so two
//! neighbours never both leave.

use std::time::Duration;

use kazoo_common::wire::{Provider, MAX_SUCCESSION};
use kazoo_common::NodeId;

use crate::overlay::Load;

/// When an `auto` supernode counts as under-used, and for how long before it demotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemotePolicy {
    /// Under-used below this percentage of `max_leaves` (0: never).
    pub below_pct: u8,
    /// How long it must stay under-used.
    pub after: Duration,
}

impl DemotePolicy {
    /// Whether a supernode with `load` is under-used.
    pub fn underused(&self, load: Load) -> bool {
        u64::from(load.leaves) * 100 < u64::from(self.below_pct) * u64::from(load.max_leaves)
    }
}

/// A decision to demote: where each leaf goes, and where the node itself joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demotion {
    /// Why (logged, and shown by `kazoo status`).
    pub reason: String,
    /// Each leaf and where it is sent, best first (≤ [`MAX_SUCCESSION`]).
    pub moves: Vec<(NodeId, Vec<Provider>)>,
    /// Where the demoted node joins as a leaf, best first.
    pub supernodes: Vec<Provider>,
}

/// Decides whether supernode `me` (with `mine` load and these `leaves`) demotes, given its
/// peers and their last announced loads. `None`: it stays, because it is not under-used,
/// has no peer, does not know every peer's load yet, another under-used supernode has
/// fewer leaves, or its peers lack room for its leaves and itself.
pub fn plan_demotion(
    me: NodeId,
    mine: Load,
    leaves: &[NodeId],
    peers: &[(Provider, Option<Load>)],
    policy: DemotePolicy,
) -> Option<Demotion> {
    if policy.below_pct == 0 || !mine.demotable || !policy.underused(mine) || peers.is_empty() {
        return None;
    }
    let mut known: Vec<(Provider, Load)> = Vec::with_capacity(peers.len());
    for (provider, load) in peers {
        known.push((*provider, (*load)?));
    }
    let me_rank = (mine.leaves, me);
    let outranked = known.iter().any(|(p, load)| {
        load.demotable && policy.underused(*load) && (load.leaves, p.node) < me_rank
    });
    if outranked {
        return None;
    }
    let mut room: Vec<(Provider, u32)> = known
        .iter()
        .filter(|(_, load)| load.room() > 0)
        .map(|(p, load)| (*p, load.room()))
        .collect();
    let total: u64 = room.iter().map(|(_, r)| u64::from(*r)).sum();
    if total < leaves.len() as u64 + 1 {
        return None;
    }
    room.sort_by_key(|(p, r)| (std::cmp::Reverse(*r), p.node));
    let by_room: Vec<Provider> = room.iter().map(|(p, _)| *p).collect();
    let mut moves = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        // The peer with the most room left takes the next leaf.
        let best = room
            .iter_mut()
            .filter(|(_, r)| *r > 0)
            .max_by_key(|(p, r)| (*r, std::cmp::Reverse(p.node)))?;
        best.1 -= 1;
        let first = best.0;
        let mut to = vec![first];
        to.extend(by_room.iter().filter(|p| p.node != first.node).copied());
        to.truncate(MAX_SUCCESSION);
        moves.push((*leaf, to));
    }
    let mut supernodes: Vec<Provider> = room
        .iter()
        .filter(|(_, r)| *r > 0)
        .map(|(p, _)| *p)
        .collect();
    supernodes.truncate(MAX_SUCCESSION);
    Some(Demotion {
        reason: format!(
            "under-used: {} of {} leaves, fewest among {} peer supernodes with room for them",
            mine.leaves,
            mine.max_leaves,
            known.len()
        ),
        moves,
        supernodes,
    })
}

/// Which `count` of `leaves` (node, capacity) move to a new supernode: the least capable
/// first, so the best heirs stay; never `exclude` (the new supernode itself).
pub fn pick_handover(leaves: &[(NodeId, u32)], exclude: NodeId, count: usize) -> Vec<NodeId> {
    let mut list: Vec<(NodeId, u32)> = leaves
        .iter()
        .filter(|(n, _)| *n != exclude)
        .copied()
        .collect();
    list.sort_by_key(|(n, capacity)| (*capacity, std::cmp::Reverse(*n)));
    list.into_iter().take(count).map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests;
