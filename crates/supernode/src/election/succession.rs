//! Succession: which joined leaves are heirs of their supernode, best first. The list goes to
//! every leaf in succession notices; when the supernode dies, heir `k` promotes after `k`
//! heir delays (see [`super::leaf`]); when it is full, heir 0 is asked to promote (see
//! [`super::growth`]).
//!
//! Rank comes from what the supernode observed, not from what a leaf claims: only a leaf
//! whose listen address answered the supernode's dial back (at the IP it is seen at) is an
//! heir at all, and heirs are ranked by how long they have been attached, in whole
//! [`TENURE_STEP`]s; the capacity a leaf claims in its `Hello` only breaks ties within a step,
//! and counts at most [`CLAIM_CAP`]. A newcomer therefore never jumps the list, whatever it
//! claims.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::Provider;
use kazoo_common::NodeId;

/// Granularity of attached time in heir ranking: leaves attached for the same number of
/// whole steps are ordered by their (capped) claimed capacity.
pub const TENURE_STEP: Duration = Duration::from_secs(60);
/// The most claimed capacity counts for: twice the default score after an hour of uptime
/// (an honest node's score is `bandwidth_kib`, doubled by uptime).
pub const CLAIM_CAP: u32 = 4000;

/// A joined leaf as the succession sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// The leaf.
    pub node: NodeId,
    /// Its claimed capacity score (0: not eligible).
    pub capacity: u32,
    /// When it joined (observed).
    pub since: Instant,
    /// The listen address that answered the supernode's dial back (none: not an heir).
    pub reachable_at: Option<SocketAddr>,
}

/// The succession list at `now` of at most `max` heirs: eligible candidates whose listen
/// address answered, longest attached (in whole [`TENURE_STEP`]s) first, then by claimed
/// capacity up to [`CLAIM_CAP`] (from the second step on), then the longest attached, then by
/// node id.
pub fn rank_heirs(
    candidates: impl IntoIterator<Item = Candidate>,
    max: usize,
    now: Instant,
) -> Vec<Provider> {
    let step = TENURE_STEP.as_secs().max(1);
    let mut heirs: Vec<(u64, u32, Instant, NodeId, SocketAddr)> = candidates
        .into_iter()
        .filter(|c| c.capacity > 0)
        .filter_map(|c| {
            let tenure = now.saturating_duration_since(c.since).as_secs() / step;
            // Observation first: a claim counts once the leaf has stayed a whole step.
            let claim = if tenure == 0 {
                0
            } else {
                c.capacity.min(CLAIM_CAP)
            };
            c.reachable_at
                .map(|addr| (tenure, claim, c.since, c.node, addr))
        })
        .collect();
    heirs.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    heirs
        .into_iter()
        .take(max)
        .map(|(_, _, _, node, addr)| Provider::new(node, addr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(n: u8, capacity: u32, since: Instant) -> Candidate {
        Candidate {
            node: NodeId([n; 32]),
            capacity,
            since,
            reachable_at: Some(SocketAddr::from(([127, 0, 0, 1], 5000 + u16::from(n)))),
        }
    }

    #[test]
    fn a_newcomer_claiming_everything_does_not_jump_the_list() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(600);
        let honest = candidate(1, 1000, t0);
        let also = candidate(2, 1500, t0 + Duration::from_secs(30));
        let liar = candidate(3, u32::MAX, now - Duration::from_secs(5));
        let list = rank_heirs([liar, also, honest], 3, now);
        let order: Vec<u8> = list.iter().map(|p| p.node.0[0]).collect();
        assert_eq!(order, [1, 2, 3], "tenure first: the liar is last");
    }

    #[test]
    fn claims_break_ties_within_a_tenure_step_and_are_capped() {
        let t0 = Instant::now();
        let now = t0 + TENURE_STEP + Duration::from_secs(30);
        let modest = candidate(1, 1000, t0);
        let capped = candidate(2, CLAIM_CAP, t0 + Duration::from_secs(1));
        let huge = candidate(3, u32::MAX, t0 + Duration::from_secs(2));
        let order: Vec<u8> = rank_heirs([modest, capped, huge], 3, now)
            .iter()
            .map(|p| p.node.0[0])
            .collect();
        assert_eq!(
            order,
            [2, 3, 1],
            "a claim above the cap counts as the cap; then seniority"
        );
    }

    #[test]
    fn within_the_first_step_claims_do_not_count() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(30);
        let first = candidate(1, 1000, t0);
        let liar = candidate(2, u32::MAX, t0 + Duration::from_secs(1));
        let order: Vec<u8> = rank_heirs([liar, first], 2, now)
            .iter()
            .map(|p| p.node.0[0])
            .collect();
        assert_eq!(order, [1, 2], "seniority alone among newcomers");
    }

    #[test]
    fn unreachable_or_ineligible_leaves_are_never_heirs() {
        let t0 = Instant::now();
        let mut silent = candidate(1, 1000, t0);
        silent.reachable_at = None;
        let ineligible = candidate(2, 0, t0);
        assert!(rank_heirs([silent, ineligible], 5, t0).is_empty());
    }
}
