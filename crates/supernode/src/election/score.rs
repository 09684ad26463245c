//! The capacity score an eligible (`auto`) node advertises in its `Hello`: what makes it
//! eligible to become a supernode, and a tie-breaker among heirs.

use std::time::Duration;

use kazoo_common::config::ElectionConfig;

/// Uptime after which the capacity score stops growing.
pub const SCORE_UPTIME: Duration = Duration::from_secs(3600);

/// The capacity score an `auto` node advertises after `uptime` (0: not eligible; the caller
/// checks the role). The score is `bandwidth_kib`, growing linearly with uptime to twice that
/// after [`SCORE_UPTIME`] (long-lived nodes make stable supernodes); it makes the node
/// eligible once it reaches `threshold`, unless `eligible` forces the answer. That the node's
/// listen address is reachable is checked by its supernode (it dials back before listing the
/// node as an heir).
pub fn capacity_score(election: &ElectionConfig, uptime: Duration) -> u32 {
    let base = u64::from(election.bandwidth_kib);
    let grown = uptime.min(SCORE_UPTIME).as_secs() * base / SCORE_UPTIME.as_secs();
    let score = u32::try_from(base + grown).unwrap_or(u32::MAX);
    if election.eligible.unwrap_or(score >= election.threshold) {
        score.max(1)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_grows_with_uptime_and_decides_eligibility() {
        let mut e = ElectionConfig::default();
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(capacity_score(&e, minutes(0)), 1000);
        assert_eq!(capacity_score(&e, minutes(30)), 1500);
        assert_eq!(
            capacity_score(&e, minutes(600)),
            2000,
            "capped after an hour"
        );
        e.threshold = 1600;
        assert_eq!(capacity_score(&e, minutes(30)), 0, "not yet eligible");
        assert_eq!(capacity_score(&e, minutes(40)), 1666);
        e.eligible = Some(true);
        assert_eq!(capacity_score(&e, minutes(0)), 1000, "forced eligible");
        e.eligible = Some(false);
        assert_eq!(capacity_score(&e, minutes(600)), 0, "forced ineligible");
        let e = ElectionConfig {
            bandwidth_kib: 0,
            threshold: 0,
            ..ElectionConfig::default()
        };
        assert_eq!(
            capacity_score(&e, minutes(0)),
            1,
            "an eligible score is never 0"
        );
    }
}
