use std::net::SocketAddr;

use proptest::prelude::*;

use std::time::{Duration, Instant};

use kazoo_common::wire::{Provider, MAX_SUCCESSION};
use kazoo_common::NodeId;

use super::leaf::{FIRST_BACKOFF, REHOME_RETRY, STRANDED_STAGGER};
use super::*;
use crate::overlay::Load;

fn id(n: usize) -> NodeId {
    NodeId([n as u8 + 1; 32])
}

fn provider(n: usize) -> Provider {
    Provider::new(id(n), SocketAddr::from(([127, 0, 0, 1], 6000 + n as u16)))
}

fn load(leaves: u32, max_leaves: u32) -> Load {
    Load {
        leaves,
        max_leaves,
        demotable: true,
    }
}

const POLICY: DemotePolicy = DemotePolicy {
    below_pct: 25,
    after: Duration::from_secs(1),
};

#[test]
fn underused_is_below_the_percentage() {
    assert!(POLICY.underused(load(0, 3)));
    assert!(!POLICY.underused(load(1, 3)));
    assert!(POLICY.underused(load(49, 200)));
    assert!(!POLICY.underused(load(50, 200)));
    let never = DemotePolicy {
        below_pct: 0,
        ..POLICY
    };
    assert!(!never.underused(load(0, 200)));
}

#[test]
fn the_emptier_of_two_underused_supernodes_demotes_and_the_other_stays() {
    let a = id(10);
    let b = id(11);
    let leaves_a = [id(20)];
    let leaves_b = [id(21), id(22)];
    let peer_b = Provider::new(b, provider(11).addr);
    let peer_a = Provider::new(a, provider(10).addr);
    let plan = plan_demotion(
        a,
        load(1, 10),
        &leaves_a,
        &[(peer_b, Some(load(2, 10)))],
        POLICY,
    )
    .expect("a has fewer leaves: it demotes");
    assert_eq!(plan.moves, vec![(id(20), vec![peer_b])]);
    assert_eq!(plan.supernodes, vec![peer_b]);
    assert_eq!(
        plan_demotion(
            b,
            load(2, 10),
            &leaves_b,
            &[(peer_a, Some(load(1, 10)))],
            POLICY
        ),
        None
    );
}

#[test]
fn ties_go_to_the_smaller_node_id() {
    let p0 = provider(0);
    let p1 = provider(1);
    assert!(plan_demotion(id(0), load(0, 10), &[], &[(p1, Some(load(0, 10)))], POLICY).is_some());
    assert!(plan_demotion(id(1), load(0, 10), &[], &[(p0, Some(load(0, 10)))], POLICY).is_none());
}

#[test]
fn no_demotion_without_room_peers_or_known_loads() {
    let leaves = [id(20), id(21)];
    let me = id(0);
    // Not under-used.
    assert!(plan_demotion(
        me,
        load(5, 10),
        &leaves,
        &[(provider(1), Some(load(9, 10)))],
        POLICY
    )
    .is_none());
    // No peers.
    assert!(plan_demotion(me, load(2, 10), &leaves, &[], POLICY).is_none());
    // A peer whose load is unknown.
    assert!(plan_demotion(me, load(2, 10), &leaves, &[(provider(1), None)], POLICY).is_none());
    // Room for the leaves but not for the node itself.
    assert!(plan_demotion(
        me,
        load(2, 10),
        &leaves,
        &[(provider(1), Some(load(8, 10)))],
        POLICY
    )
    .is_none());
    // A configured supernode never demotes.
    let fixed = Load {
        demotable: false,
        ..load(0, 10)
    };
    assert!(plan_demotion(me, fixed, &[], &[(provider(1), Some(load(5, 10)))], POLICY).is_none());
    // A full, non-demotable peer does not outrank; room elsewhere suffices.
    let busy = Load {
        demotable: false,
        ..load(0, 10)
    };
    assert!(plan_demotion(
        me,
        load(2, 10),
        &leaves,
        &[(provider(1), Some(busy))],
        POLICY
    )
    .is_some());
}

#[test]
fn a_demotion_leaves_every_peer_below_full() {
    assert_eq!(room_to_spare(load(0, 200)), 160);
    assert_eq!(room_to_spare(load(150, 200)), 10);
    assert_eq!(room_to_spare(load(170, 200)), 0);
    assert_eq!(room_to_spare(load(0, 3)), 2);
    assert_eq!(room_to_spare(load(0, 2)), 1);
    assert_eq!(room_to_spare(load(2, 2)), 0);
}

#[test]
fn handover_keeps_the_best_heirs() {
    let leaves = [
        (id(1), 500),
        (id(2), 0),
        (id(3), 1000),
        (id(4), 0),
        (id(5), 900),
    ];
    let moved = pick_handover(&leaves, id(3), 3);
    assert_eq!(moved.len(), 3);
    assert!(!moved.contains(&id(3)), "the new supernode is not moved");
    assert!(moved.contains(&id(2)) && moved.contains(&id(4)) && moved.contains(&id(1)));
}

proptest! {
    /// Every leaf is sent somewhere with room, and no peer gets more than its room.
    #[test]
    fn a_demotion_plan_respects_every_peers_room(
        rooms in proptest::collection::vec(0u32..12, 1..8),
        leaf_count in 0usize..12,
    ) {
        let peers: Vec<(Provider, Option<Load>)> = rooms
            .iter()
            .enumerate()
            .map(|(i, room)| (provider(i + 1), Some(Load { leaves: 20 - room, max_leaves: 20, demotable: false })))
            .collect();
        let leaves: Vec<NodeId> = (0..leaf_count).map(|i| id(100 + i)).collect();
        let spare: Vec<u32> = peers.iter().map(|(_, l)| room_to_spare(l.unwrap_or_default())).collect();
        let total: u32 = spare.iter().sum();
        let plan = plan_demotion(id(0), load(leaf_count as u32, 100), &leaves, &peers, POLICY);
        prop_assert_eq!(plan.is_some(), total as usize > leaf_count);
        if let Some(plan) = plan {
            prop_assert_eq!(plan.moves.len(), leaf_count);
            for (i, (provider, _)) in peers.iter().enumerate() {
                let sent = plan.moves.iter().filter(|(_, to)| to[0].node == provider.node).count();
                prop_assert!(sent as u32 <= spare[i] && spare[i] <= rooms[i]);
            }
            prop_assert!(!plan.supernodes.is_empty());
        }
    }
}

fn joins(step: Step) -> Vec<Vec<Target>> {
    match step {
        Step::Join { groups, .. } => groups,
        other => panic!("expected a join, got {other:?}"),
    }
}

fn promotes(step: Step) -> String {
    match step {
        Step::Promote { reason, .. } => reason,
        other => panic!("expected a promotion, got {other:?}"),
    }
}

#[test]
fn an_eligible_node_that_reaches_nobody_is_the_first_of_its_network() {
    let now = Instant::now();
    let boot = provider(9);
    let mut e = LeafElection::new(id(0), true, Duration::from_secs(1), vec![(boot.addr, None)]);
    assert_eq!(joins(e.step(now, &[], &[])), vec![vec![(boot.addr, None)]]);
    assert_eq!(e.on_join_failed(now), None);
    assert!(promotes(e.step(now, &[], &[])).contains("first node"));
    // A leaf-only node keeps trying, backing off.
    let mut leaf = LeafElection::new(
        id(0),
        false,
        Duration::from_secs(1),
        vec![(boot.addr, None)],
    );
    joins(leaf.step(now, &[], &[]));
    let first = leaf.on_join_failed(now).expect("waits");
    let second = leaf.on_join_failed(now).expect("waits");
    assert!(second > first && second <= MAX_BACKOFF);
}

#[test]
fn a_node_whose_bootstrap_never_answers_waits_before_it_is_a_network_of_its_own() {
    let t0 = Instant::now();
    let boot = provider(9);
    let wait = Duration::from_secs(60);
    let new = || {
        LeafElection::new(id(0), true, Duration::from_secs(1), vec![(boot.addr, None)])
            .with_bootstrap_wait(wait)
    };
    let mut e = new();
    let mut now = t0;
    while now < t0 + wait {
        joins(e.step(now, &[], &[]));
        let next = e.on_join_failed(now).expect("keeps trying");
        assert!(next <= MAX_BACKOFF && now + next <= t0 + wait.max(MAX_BACKOFF));
        now += next.max(Duration::from_millis(1));
    }
    // Past the wait (and the stranded time long before it): a network of its own, saying why.
    assert!(e.unanswered());
    assert_eq!(e.on_join_failed(now), None);
    assert!(promotes(e.step(now, &[], &[])).contains("no bootstrap entry answered"));

    // A bootstrap node that answered (a leaf refusing the join): the first node at once.
    let mut e = new();
    joins(e.step(t0, &[], &[]));
    e.on_answered();
    assert_eq!(e.on_join_failed(t0), None);
    assert!(promotes(e.step(t0, &[], &[])).contains("first node of its network"));
}

#[test]
fn heir_k_promotes_after_k_delays_and_never_dials_the_dead_supernode() {
    let t0 = Instant::now();
    let delay = Duration::from_secs(1);
    let dead = provider(9);
    let heirs = [provider(1), provider(2), provider(3)];
    let other_sn = [provider(7)];
    let mut heir2 = LeafElection::new(id(3), true, delay, vec![(dead.addr, Some(dead.node))]);
    heir2.on_joined(dead.addr, dead.node);
    heir2.on_lost(dead, t0);
    let groups = joins(heir2.step(t0 + delay, &heirs, &other_sn));
    let dialled: Vec<Option<NodeId>> = groups[0].iter().map(|t| t.1).collect();
    assert_eq!(dialled, vec![Some(id(1)), Some(id(2)), Some(id(7))]);
    assert_eq!(heir2.on_join_failed(t0 + delay), Some(REHOME_RETRY));
    let reason = promotes(heir2.step(t0 + 2 * delay, &heirs, &other_sn));
    assert!(reason.contains("heir 2"), "{reason}");
    // Heir 0 promotes at once and peers with the others and the lost supernode.
    let mut heir0 = LeafElection::new(id(1), true, delay, Vec::new());
    heir0.on_joined(dead.addr, dead.node);
    heir0.on_lost(dead, t0);
    match heir0.step(t0, &heirs, &other_sn) {
        Step::Promote { hosts, .. } => {
            let ids: Vec<NodeId> = hosts.iter().map(|h| h.node).collect();
            assert_eq!(ids, vec![id(7), id(2), id(3), dead.node]);
        }
        other => panic!("heir 0 should promote, got {other:?}"),
    }
    // A node that is not eligible never promotes.
    let mut leaf = LeafElection::new(id(1), false, delay, Vec::new());
    leaf.on_joined(dead.addr, dead.node);
    leaf.on_lost(dead, t0);
    joins(leaf.step(t0 + 10 * delay, &heirs, &other_sn));
}

#[test]
fn a_redirect_is_followed_first_and_is_no_death() {
    let t0 = Instant::now();
    let sn = provider(9);
    let to = vec![provider(4), provider(5)];
    let mut e = LeafElection::new(id(1), true, Duration::ZERO, vec![(sn.addr, Some(sn.node))]);
    e.on_joined(sn.addr, sn.node);
    e.on_redirected(sn.node, to.clone(), "demoting".into());
    // Heir 0 of the redirecting supernode: still no promotion.
    let step = e.step(t0, &[provider(1)], &[]);
    match step {
        Step::Join { groups, reason } => {
            assert!(reason.contains("demoting"), "{reason}");
            assert_eq!(groups[0], vec![(to[0].addr, Some(to[0].node))]);
            assert_eq!(groups[1], vec![(to[1].addr, Some(to[1].node))]);
            assert_eq!(groups[2], vec![(sn.addr, Some(sn.node))]);
        }
        other => panic!("expected a join, got {other:?}"),
    }
}

#[test]
fn a_redirected_or_stranded_node_promotes_only_after_a_long_wait() {
    let t0 = Instant::now();
    let sn = provider(9);
    let to = vec![provider(4)];
    // A node that just demoted: redirected by itself to a peer that turns out to be gone.
    let mut e = LeafElection::new(id(1), true, Duration::from_secs(1), Vec::new());
    e.on_redirected(id(1), to.clone(), "demoted".into());
    joins(e.step(t0, &[], &to));
    assert!(e.on_join_failed(t0).is_some(), "no first-node promotion");
    joins(e.step(t0 + STRANDED_AFTER / 2, &[], &to));
    e.on_join_failed(t0 + STRANDED_AFTER / 2);
    // id(1)'s first byte is 2: a stagger of two steps.
    joins(e.step(t0 + STRANDED_AFTER, &[], &to));
    let reason = promotes(e.step(t0 + STRANDED_AFTER + 2 * STRANDED_STAGGER, &[], &to));
    assert!(reason.contains("no supernode reachable"), "{reason}");
    // A join in between starts the wait over.
    let mut e = LeafElection::new(id(1), true, Duration::from_secs(1), Vec::new());
    e.on_joined(sn.addr, sn.node);
    e.on_lost(sn, t0);
    e.on_join_failed(t0);
    e.on_joined(sn.addr, sn.node);
    e.on_lost(sn, t0 + STRANDED_AFTER);
    joins(e.step(t0 + STRANDED_AFTER, &[], &[]));
    // A long heir delay stretches the stranded time beyond the last heir's wait.
    let mut slow = LeafElection::new(id(1), true, Duration::from_secs(10), Vec::new());
    slow.on_redirected(id(1), to.clone(), "demoted".into());
    slow.on_join_failed(t0);
    joins(slow.step(t0 + Duration::from_secs(89), &[], &to));
    promotes(slow.step(t0 + Duration::from_secs(91), &[], &to));
}

#[test]
fn candidates_are_unique_by_node_and_by_address() {
    let t0 = Instant::now();
    let sn = provider(9);
    let other = provider(8);
    // The bootstrap entry names the same supernode as the succession notice, once by
    // address only and once pinned: it is dialled once, with its id.
    let mut e = LeafElection::new(
        id(1),
        false,
        Duration::from_secs(1),
        vec![
            (sn.addr, None),
            (other.addr, Some(other.node)),
            (sn.addr, Some(sn.node)),
        ],
    );
    let groups = joins(e.step(t0, &[], &[sn, other, sn]));
    assert_eq!(
        groups[0],
        vec![(sn.addr, Some(sn.node)), (other.addr, Some(other.node))]
    );
}

#[test]
fn a_lost_supernode_is_dialled_again_when_it_is_the_only_one_or_after_the_window() {
    let t0 = Instant::now();
    let delay = Duration::from_secs(1);
    let sn = provider(9);
    // A leaf with one bootstrap entry keeps dialling it (it may restart at the same address).
    let mut e = LeafElection::new(id(1), false, delay, vec![(sn.addr, None)]);
    e.on_joined(sn.addr, sn.node);
    e.on_lost(sn, t0);
    assert_eq!(
        joins(e.step(t0, &[], &[])),
        vec![vec![(sn.addr, Some(sn.node))]]
    );
    assert_eq!(e.on_join_failed(t0), Some(REHOME_RETRY));
    // With others to try it is left out, but only during the re-home window.
    let other = provider(8);
    assert_eq!(
        joins(e.step(t0, &[], &[other])),
        vec![vec![(other.addr, Some(other.node))]]
    );
    let later = t0 + delay * (MAX_SUCCESSION as u32 + 1);
    assert_eq!(
        joins(e.step(later, &[], &[other])),
        vec![vec![
            (other.addr, Some(other.node)),
            (sn.addr, Some(sn.node))
        ]]
    );
    // After the window, waits back off with jitter up to MAX_BACKOFF × 1.25.
    let mut waits = Vec::new();
    for _ in 0..12 {
        waits.push(e.on_join_failed(later).expect("waits"));
    }
    assert!(waits[0] >= FIRST_BACKOFF.mul_f64(0.75) && waits[0] < FIRST_BACKOFF.mul_f64(1.25));
    assert!(waits[3] > waits[0]);
    assert!(waits.iter().all(|w| *w < MAX_BACKOFF.mul_f64(1.25)));
    assert!(waits[11] >= MAX_BACKOFF.mul_f64(0.75));
    // Joining resets the back-off.
    e.on_joined(sn.addr, sn.node);
    assert!(e.on_join_failed(later).expect("waits") < FIRST_BACKOFF.mul_f64(1.25));
}

#[test]
fn a_lost_session_rejoins_the_same_supernode_and_no_heir_promotes() {
    let t0 = Instant::now();
    let sn = provider(9);
    let mut heir0 = LeafElection::new(id(1), true, Duration::ZERO, Vec::new());
    heir0.on_joined(sn.addr, sn.node);
    heir0.on_session_lost(sn);
    let groups = joins(heir0.step(t0, &[provider(1)], &[]));
    assert_eq!(groups[0], vec![(sn.addr, Some(sn.node))]);
}

#[test]
fn a_node_refused_by_a_full_supernode_is_not_the_first_of_a_network() {
    let t0 = Instant::now();
    let full = provider(9);
    let mut e = LeafElection::new(id(1), true, Duration::from_secs(1), vec![(full.addr, None)]);
    joins(e.step(t0, &[], &[]));
    e.on_refused(&[full]);
    assert!(e.on_join_failed(t0).is_some(), "waits for room");
    joins(e.step(t0 + REFUSED_WAIT / 2, &[], &[]));
    e.on_join_failed(t0 + REFUSED_WAIT / 2);
    // Still no room after the wait (and its stagger): it promotes and peers with the full one.
    match e.step(t0 + REFUSED_WAIT + 16 * STRANDED_STAGGER, &[], &[]) {
        Step::Promote { hosts, reason } => {
            assert_eq!(hosts, vec![full]);
            assert!(reason.contains("full"), "{reason}");
        }
        other => panic!("expected a promotion, got {other:?}"),
    }
}

#[test]
fn an_heir_never_peers_with_itself_whatever_the_notice_says() {
    let me = provider(1);
    let sn = provider(9);
    let t0 = Instant::now();
    let mut election =
        LeafElection::new(me.node, true, Duration::from_secs(1), vec![(sn.addr, None)]);
    election.on_joined(sn.addr, sn.node);
    election.on_lost(sn, t0);
    // A supernode's notice named this leaf among the other supernodes too.
    let step = election.step(t0, &[me], &[me, provider(2)]);
    let Step::Promote { hosts, .. } = step else {
        panic!("heir 0 promotes at once: {step:?}");
    };
    assert!(!hosts.iter().any(|h| h.node == me.node), "{hosts:?}");
    assert!(hosts.iter().any(|h| h.node == provider(2).node));
}
