//! `Notice` frames as a leaf decodes them from its supernode (`wire::read_frame`), then, if
//! within the limits the leaf enforces (`MAX_SUCCESSION` per list), applied to the leaf's
//! election state (`LeafElection`) as the uplink does: a succession list is what the next
//! step plans with after the supernode dies, a redirect is followed.
//! Checks: no panic; a decoded notice round-trips; a step never dials the leaf itself,
//! its re-home candidates are unique by node id and by address, and an heir promotes only
//! after its rank's delay.
#![no_main]

use std::time::{Duration, Instant};

use kazoo_common::wire::{Notice, Provider};
use kazoo_fuzz::{check_round_trip, decode_body, notice_limits, ops};
use kazoo_supernode::election::{LeafElection, Step};
use libfuzzer_sys::fuzz_target;

const HEIR_DELAY: Duration = Duration::from_millis(1000);

fuzz_target!(|data: &[u8]| {
    let Some(notice) = decode_body::<Notice>(data) else {
        return;
    };
    check_round_trip(&notice);
    if notice_limits(&notice).is_err() {
        return; // the leaf closes the connection as a violation
    }
    // The leaf is node 7; its supernode node 9, bootstrapped by address only.
    let me = ops::node(7);
    let sn = Provider::new(ops::node(9), ops::addr(1, 4710));
    let t0 = Instant::now();
    let mut election = LeafElection::new(me, true, HEIR_DELAY, vec![(sn.addr, None)]);
    election.on_joined(sn.addr, sn.node);
    match notice {
        Notice::Succession { heirs, supernodes } => {
            election.on_lost(sn, t0);
            for wait in [0, 1, 3, 9] {
                let now = t0 + HEIR_DELAY * wait;
                let step = election.step(now, &heirs, &supernodes);
                if let Step::Promote { ref hosts, .. } = step {
                    let rank = heirs.iter().position(|h| h.node == me);
                    if let Some(rank) = rank {
                        assert!(
                            rank as u32 <= wait,
                            "heir {rank} promoted after {wait} delays"
                        );
                    }
                    assert!(!hosts.iter().any(|h| h.node == me), "peers with itself");
                }
                check_step(&step, me);
            }
        }
        Notice::Redirect { to, reason } => {
            election.on_redirected(sn.node, to, reason);
            let step = election.step(t0, &[], &[]);
            check_step(&step, me);
        }
        Notice::Promote { reason } => {
            let _ = reason.len();
        }
        Notice::Connect { to } => {
            // The uplink hands it to the rate-limited reverse dialler; no election state.
            let _ = to;
        }
        Notice::Relay { circuit, from } => {
            // The uplink opens the circuit, rate-limited with reverse connections.
            let _ = (circuit, from);
        }
        Notice::Reachability { observed, answered } => {
            // Only recorded for `kazoo status`; nothing is decided on it.
            let _ = (observed, answered);
        }
    }
});

fn check_step(step: &Step, me: kazoo_common::NodeId) {
    let Step::Join { groups, .. } = step else {
        return;
    };
    for group in groups {
        assert!(
            !group.iter().any(|(_, node)| *node == Some(me)),
            "dials itself"
        );
    }
    if let Some(candidates) = groups.last() {
        for (i, (addr, node)) in candidates.iter().enumerate() {
            for (a, n) in &candidates[..i] {
                assert!(a != addr, "address {addr} twice");
                assert!(node.is_none() || n != node, "node {node:?} twice");
            }
        }
    }
}
