//! Seeded races on the simulated network: failover, demotion and growth. Each runs in a
//! fraction of a second and replays exactly from its seed.

use std::time::Duration;

use kazoo_common::wire::{ErrorCode, Provider, Response, ShareEntry};
use kazoo_common::{ContentId, NodeId};

use super::*;
use crate::{RelayHop, RelayRefusal};

fn entry(name: String) -> ShareEntry {
    ShareEntry {
        id: ContentId::from(blake3::hash(name.as_bytes())),
        size: 100,
        name,
    }
}

fn provider(n: usize) -> Provider {
    Provider::new(node(n), addr(n))
}

fn leaf(n: usize) -> usize {
    1000 + n
}

/// `sns` configured supernodes (each knowing all the others) with `per_sn` eligible leaves
/// each, sharing one file named `group{home} file{i}`; run until settled.
fn network(seed: u64, sns: usize, per_sn: usize) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let all: Vec<Provider> = (0..sns).map(provider).collect();
    for n in 0..sns {
        sim.add_supernode(node(n), addr(n), false, &all);
    }
    for i in 0..sns * per_sn {
        let home = i % sns;
        let delay = Duration::from_micros(sim.rng().next_u64() % 1_000_000);
        sim.add_leaf(
            node(leaf(i)),
            addr(leaf(i)),
            true,
            vec![entry(format!("group{home} file{i}"))],
            vec![(addr(home), Some(node(home)))],
            delay,
        );
    }
    sim.run_for(Duration::from_secs(20));
    sim
}

fn words(w: &str) -> Vec<String> {
    vec![w.to_owned()]
}

#[test]
fn a_dead_supernodes_leaves_rehome_and_no_file_is_lost() {
    for seed in 1..=4 {
        let mut sim = network(seed, 4, 8);
        let orphans = sim.members(&node(0));
        assert_eq!(orphans.len(), 8, "seed {seed}: every leaf joined its home");
        let before = sim.supernodes().len();
        sim.kill(node(0));
        sim.run_for(Duration::from_secs(10));
        for o in &orphans {
            assert!(sim.attached(o), "seed {seed}: orphan {o} re-homed");
        }
        assert_eq!(
            sim.indexed(&words("group0")).len(),
            8,
            "seed {seed}: files indexed"
        );
        assert_eq!(
            sim.search(node(3), "group0"),
            8,
            "seed {seed}: found by routing"
        );
        assert!(
            sim.stats().promoted >= 1,
            "seed {seed}: the first heir promoted"
        );
        assert_eq!(
            sim.supernodes().len(),
            before,
            "seed {seed}: one heir replaced the dead supernode, the others joined it"
        );
    }
}

#[test]
fn a_run_replays_exactly_from_its_seed() {
    let run = |seed| {
        let mut sim = network(seed, 3, 5);
        sim.kill(node(1));
        sim.run_for(Duration::from_secs(8));
        let sns = sim.supernodes();
        let members: Vec<Vec<NodeId>> = sns.iter().map(|s| sim.members(s)).collect();
        (sim.stats(), sns, members)
    };
    assert_eq!(run(7), run(7));
}

#[test]
fn of_two_underused_auto_supernodes_exactly_one_demotes() {
    for seed in 1..=3 {
        let mut sim = Sim::new(SimConfig {
            seed,
            supernode: kazoo_common::config::SupernodeConfig {
                max_leaves: 20,
                ..Default::default()
            },
            election: kazoo_common::config::ElectionConfig {
                demote_after_secs: 2,
                ..Default::default()
            },
            ..SimConfig::default()
        });
        let all = [provider(0), provider(1)];
        sim.add_supernode(node(0), addr(0), true, &all);
        sim.add_supernode(node(1), addr(1), true, &all);
        for i in 0..4 {
            let home = i % 2;
            sim.add_leaf(
                node(leaf(i)),
                addr(leaf(i)),
                false,
                vec![entry(format!("shared file{i}"))],
                vec![(addr(home), Some(node(home)))],
                Duration::from_millis(100 * i as u64),
            );
        }
        sim.run_for(Duration::from_secs(40));
        assert_eq!(sim.stats().demoted, 1, "seed {seed}");
        assert_eq!(sim.supernodes().len(), 1, "seed {seed}");
        for i in 0..4 {
            assert!(
                sim.attached(&node(leaf(i))),
                "seed {seed}: leaf {i} attached"
            );
        }
        assert!(sim.attached(&node(0)) && sim.attached(&node(1)));
        assert_eq!(
            sim.indexed(&words("shared")).len(),
            4,
            "seed {seed}: no file lost"
        );
    }
}

#[test]
fn a_full_supernode_grows_the_network_and_hands_leaves_over() {
    for seed in 1..=3 {
        let mut sim = Sim::new(SimConfig {
            seed,
            supernode: kazoo_common::config::SupernodeConfig {
                max_leaves: 10,
                ..Default::default()
            },
            ..SimConfig::default()
        });
        sim.add_supernode(node(0), addr(0), false, &[]);
        for i in 0..14 {
            sim.add_leaf(
                node(leaf(i)),
                addr(leaf(i)),
                true,
                vec![entry(format!("crowd file{i}"))],
                vec![(addr(0), Some(node(0)))],
                Duration::from_millis(200 * i as u64),
            );
        }
        sim.run_for(Duration::from_secs(60));
        let stats = sim.stats();
        assert!(sim.supernodes().len() >= 2, "seed {seed}: grew");
        assert!(stats.handed_over >= 1, "seed {seed}: leaves handed over");
        assert!(
            sim.members(&node(0)).len() <= 10,
            "seed {seed}: within max_leaves"
        );
        for i in 0..14 {
            assert!(
                sim.attached(&node(leaf(i))),
                "seed {seed}: leaf {i} attached"
            );
        }
        assert_eq!(
            sim.indexed(&words("crowd")).len(),
            14,
            "seed {seed}: no file lost"
        );
        assert_eq!(sim.search(node(0), "crowd"), 14, "seed {seed}: all found");
    }
}

#[test]
fn a_reverse_connection_request_reaches_a_remote_source_along_its_hits_path() {
    let mut sim = network(7, 4, 2);
    // Leaf 1's home is supernode 1; a leaf of supernode 3 searches, then asks for it.
    let target = node(leaf(1));
    let requester = node(leaf(3));
    let seen_at = addr(leaf(3));
    let (answer, asked) = sim.connect(node(3), requester, seen_at, target);
    assert!(
        matches!(answer, Response::Error { .. }),
        "no route before any hit: {answer:?}"
    );
    assert!(asked.is_empty());
    assert_eq!(sim.search(node(3), "group1"), 2, "found by routing");
    let (answer, asked) = sim.connect(node(3), requester, seen_at, target);
    let Response::Connecting {
        target: listed,
        requester: to,
    } = answer
    else {
        panic!("not passed on: {answer:?}");
    };
    assert_eq!(listed.node, target);
    assert_eq!(to, Provider::new(requester, seen_at));
    assert_eq!(
        asked,
        vec![(node(1), target, Provider::new(requester, seen_at))],
        "the target's own supernode asked it, once"
    );
    // A leaf of the same supernode is asked directly.
    let local = node(leaf(7));
    let (answer, asked) = sim.connect(node(3), requester, seen_at, local);
    assert!(matches!(answer, Response::Connecting { .. }), "{answer:?}");
    assert_eq!(
        asked.last(),
        Some(&(node(3), local, Provider::new(requester, seen_at)))
    );
}

#[test]
fn a_relay_goes_to_the_targets_supernode_and_no_further() {
    let mut sim = network(7, 4, 2);
    let target = node(leaf(1));
    let requester = node(leaf(3));
    let route = |sim: &mut Sim, at: usize, via: Option<usize>, to: NodeId| {
        sim.relay_route(node(at), requester, to, via.map(node))
            .expect("a supernode")
    };
    assert!(
        matches!(
            route(&mut sim, 3, None, target),
            Err(RelayRefusal {
                code: ErrorCode::NotFound,
                ..
            })
        ),
        "no route before any hit"
    );
    assert_eq!(sim.search(node(3), "group1"), 2, "found by routing");
    assert_eq!(
        route(&mut sim, 3, None, target),
        Ok(RelayHop::Peer(node(1)))
    );
    assert_eq!(
        route(&mut sim, 1, Some(3), target),
        Ok(RelayHop::Leaf(target))
    );
    // A relay passed on by a peer ends at the target's own supernode.
    assert!(
        route(&mut sim, 3, Some(1), target).is_err(),
        "one hop between supernodes"
    );
    assert_eq!(
        route(&mut sim, 3, None, node(leaf(7))),
        Ok(RelayHop::Leaf(node(leaf(7))))
    );
    assert!(
        matches!(
            route(&mut sim, 3, None, requester),
            Err(RelayRefusal {
                code: ErrorCode::BadRequest,
                ..
            })
        ),
        "not to itself"
    );
}

#[test]
fn a_dial_back_is_done_for_peers_only_and_costs_a_query_token() {
    let mut sim = network(7, 4, 2);
    assert_eq!(sim.search(node(3), "group1"), 2, "peered");
    let mut admit = |peer: NodeId| sim.admit_dial_back(node(3), peer).expect("a supernode");
    assert!(admit(node(1)), "a peer's request");
    assert!(!admit(node(leaf(7))), "a leaf is no witness's peer");
    let burst = (0..4 * kazoo_common::wire::PEER_QUERY_RATE)
        .take_while(|_| admit(node(1)))
        .count();
    assert!(
        burst < 2 * kazoo_common::wire::PEER_QUERY_RATE as usize,
        "the query rate's burst bounds dial backs: {burst}"
    );
}
