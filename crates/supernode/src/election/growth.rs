//! Growth: a full supernode asks its best heir to promote (at most once per
//! [`PROMOTE_EVERY`]), and once that node has peered back as a supernode within
//! [`HANDOVER_WINDOW`], part of its leaves move to it ([`pick_handover`]).

use std::time::Instant;

use kazoo_common::NodeId;

use crate::timing::{HANDOVER_WINDOW, PROMOTE_EVERY};

/// One supernode's growth state: when it last asked a leaf to promote, and whom.
///
/// Invariant: a handover happens at most once per promotion request, and only to the node
/// that was asked, if it peers back within [`HANDOVER_WINDOW`].
#[derive(Debug, Default)]
pub struct Growth {
    asked_at: Option<Instant>,
    handover_to: Option<(NodeId, Instant)>,
}

impl Growth {
    /// Whether a full supernode may ask a leaf to promote at `now`; if so, the attempt is
    /// recorded (at most one per [`PROMOTE_EVERY`], whether or not a leaf is then asked).
    pub fn may_ask(&mut self, now: Instant) -> bool {
        if self
            .asked_at
            .is_some_and(|t| now.saturating_duration_since(t) < PROMOTE_EVERY)
        {
            return false;
        }
        self.asked_at = Some(now);
        true
    }

    /// The promote request reached `leaf` at `now`.
    pub fn asked(&mut self, leaf: NodeId, now: Instant) {
        self.handover_to = Some((leaf, now));
    }

    /// `peer` peered at `now`: whether it is the leaf asked to promote, within the window
    /// (the request is then used up).
    pub fn peered(&mut self, peer: NodeId, now: Instant) -> bool {
        match self.handover_to {
            Some((node, at))
                if node == peer && now.saturating_duration_since(at) < HANDOVER_WINDOW =>
            {
                self.handover_to = None;
                true
            }
            _ => false,
        }
    }
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
