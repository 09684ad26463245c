//! The `[election]` section: whether an `auto` node may become a supernode, and the timing of
//! promotion and demotion.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[election]`: whether an `auto` node may become a supernode.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElectionConfig {
    /// Force eligibility on or off. Default: an `auto` node is eligible when its capacity
    /// score reaches `threshold` (so auto nodes are eligible out of the box, on loopback too).
    pub eligible: Option<bool>,
    /// Upload bandwidth to advertise, KiB/s: the base of the capacity score (see
    /// `kazoo_supernode::election::score`). Default 1000.
    pub bandwidth_kib: u32,
    /// Lowest score that makes an `auto` node eligible. Default 1.
    pub threshold: u32,
    /// Heir `k` of a dead supernode waits `k` × this (ms) for the heirs before it, then
    /// promotes itself. Default 1000; range [`super::validate::ELECTION_HEIR_DELAY_MS`]
    /// (0: every heir promotes at once).
    pub heir_delay_ms: u64,
    /// An `auto` supernode with fewer leaves than this percentage of `max_leaves` is
    /// under-used. Default 25; range [`super::validate::ELECTION_DEMOTE_BELOW_PCT`] (0: never
    /// demote; the bound says why it stops there).
    pub demote_below_pct: u8,
    /// Seconds a demotion plan must hold (under-used, the fewest leaves among its
    /// under-used peers, room at its peers) before an `auto` supernode demotes. Default 30;
    /// range [`super::validate::ELECTION_DEMOTE_AFTER_SECS`].
    pub demote_after_secs: u64,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            eligible: None,
            bandwidth_kib: 1000,
            threshold: 1,
            heir_delay_ms: 1000,
            demote_below_pct: 25,
            demote_after_secs: 30,
        }
    }
}

impl ElectionConfig {
    /// How long heir `k` waits, per rank, before promoting.
    pub fn heir_delay(&self) -> Duration {
        Duration::from_millis(self.heir_delay_ms)
    }

    /// How long a supernode must stay under-used before it may demote.
    pub fn demote_after(&self) -> Duration {
        Duration::from_secs(self.demote_after_secs)
    }
}
