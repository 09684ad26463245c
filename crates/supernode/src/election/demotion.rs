//! Shrink: whether an under-used `auto` supernode demotes now, and where each of its leaves
//! goes ([`plan_demotion`]).
//!
//! Invariants of a demotion plan: every leaf is assigned a peer whose room to spare
//! ([`room_to_spare`]: up to 80 % full), less the leaves already assigned to it, is still
//! positive; the demoting node itself needs one more slot; and of the under-used demotable
//! supernodes it can see (itself and its peers), only the one with the fewest leaves (ties:
//! the smallest node id) demotes. The caller demotes only when a plan has existed at every
//! check for the policy's `after`, so two neighbours never both leave on stale loads.

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
        .map(|(p, load)| (*p, room_to_spare(*load)))
        .filter(|(_, room)| *room > 0)
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

/// Leaves a peer can take from a demoting supernode: up to [`FILL_PCT`] of its
/// `max_leaves` (at least one slot below full), so a demotion never fills a supernode that
/// would then have to grow the network again.
pub fn room_to_spare(load: Load) -> u32 {
    let max = u64::from(load.max_leaves);
    let fill = (max * FILL_PCT / 100).clamp(max.min(1), max.saturating_sub(1).max(1));
    u32::try_from(fill)
        .unwrap_or(u32::MAX)
        .saturating_sub(load.leaves)
}

/// How full (percent of `max_leaves`) a demotion may make a peer.
pub const FILL_PCT: u64 = 80;
