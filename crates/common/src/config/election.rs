//! The `[election]` section: whether an `auto` node may become a supernode, and the timing of
//! promotion and demotion.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;

/// `[election]`: whether an `auto` node may become a supernode.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElectionConfig {
    /// Force eligibility on or off. Default: an `auto` node is eligible when its capacity
    /// score reaches `threshold` (so auto nodes are eligible out of the box, on loopback too).
    pub eligible: Option<bool>,
    /// Upload bandwidth to advertise, KiB/s: the base of the capacity score (see
    /// [`Config::election_score`]). Default 1000.
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

/// Uptime after which the capacity score stops growing.
pub const SCORE_UPTIME: Duration = Duration::from_secs(3600);

impl Config {
    /// The capacity score an `auto` node advertises after `uptime` (0: not eligible; the
    /// caller checks the role). The score is `bandwidth_kib`, growing linearly with uptime to twice that
    /// after [`SCORE_UPTIME`] (long-lived nodes make stable supernodes); it makes the node
    /// eligible once it reaches `threshold`, unless `eligible` forces the answer. Heirs are
    /// ranked by it; that the node's listen address is reachable is checked by its supernode
    /// (it dials back before listing the node as an heir).
    pub fn election_score(&self, uptime: Duration) -> u32 {
        let e = &self.election;
        let base = u64::from(e.bandwidth_kib);
        let grown = uptime.min(SCORE_UPTIME).as_secs() * base / SCORE_UPTIME.as_secs();
        let score = u32::try_from(base + grown).unwrap_or(u32::MAX);
        if e.eligible.unwrap_or(score >= e.threshold) {
            score.max(1)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_grows_with_uptime_and_decides_eligibility() {
        let mut c = Config::default();
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(c.election_score(minutes(0)), 1000);
        assert_eq!(c.election_score(minutes(30)), 1500);
        assert_eq!(c.election_score(minutes(600)), 2000, "capped after an hour");
        c.election.threshold = 1600;
        assert_eq!(c.election_score(minutes(30)), 0, "not yet eligible");
        assert_eq!(c.election_score(minutes(40)), 1666);
        c.election.eligible = Some(true);
        assert_eq!(c.election_score(minutes(0)), 1000, "forced eligible");
        c.election.eligible = Some(false);
        assert_eq!(c.election_score(minutes(600)), 0, "forced ineligible");
        c.election = ElectionConfig {
            bandwidth_kib: 0,
            threshold: 0,
            ..ElectionConfig::default()
        };
        assert_eq!(
            c.election_score(minutes(0)),
            1,
            "an eligible score is never 0"
        );
    }
}
