//! Election over real QUIC on loopback: the first auto node promotes; heirs take over a dead
//! supernode (a dead heir does not stall the next; leaf-only nodes never promote; an heir
//! must answer a dial back); a full supernode grows the network and hands leaves over; an
//! under-used one demotes and its leaves follow; a newcomer's claimed capacity does not
//! jump the succession; two heirs promoting at once, and a
//! partition that heals, end in one overlay with no leaf lost.

mod common;

use common::*;
use kazoo_common::config::RoleSetting;
use kazoo_leaf::Node;

async fn auto_leaf(net: &Net, name: &str, sn: &Node) -> Node {
    let node = net
        .start(net.config(name, RoleSetting::Auto, Some(sn.listen_addr())))
        .await;
    node.wait_ready(DEADLINE).await.expect("auto node joins");
    assert_eq!(node.status().role, "leaf");
    node
}

/// An auto node that joins through `relay`.
async fn auto_leaf_via(net: &Net, name: &str, relay: &Partition) -> Node {
    let node = net
        .start(net.config(name, RoleSetting::Auto, Some(relay.addr)))
        .await;
    node.wait_ready(DEADLINE).await.expect("auto node joins");
    node
}

async fn role_becomes(node: &Node, role: &str) {
    eventually(
        &format!("{} becomes {role}", node.node_id().short()),
        || {
            let now = node.status().role;
            async move { (now == role).then_some(()) }
        },
    )
    .await;
}

/// Waits until every leaf has heard a succession list of `count` heirs.
async fn heirs_known(leaves: &[&Node], count: usize) -> Vec<kazoo_common::NodeId> {
    let mut list = Vec::new();
    for leaf in leaves {
        list = eventually("succession list", || {
            let heirs = leaf.status().succession.unwrap_or_default();
            async move { (heirs.len() == count).then_some(heirs) }
        })
        .await;
    }
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_auto_node_promotes_and_the_next_joins_it() {
    let net = Net::new();
    let first = net
        .start(net.config("first", RoleSetting::Auto, None))
        .await;
    role_becomes(&first, "supernode").await;
    assert!(
        first.status().reason.contains("first node"),
        "{}",
        first.status().reason
    );
    // Its start as a supernode is no promotion (the metrics' `kazoo_promotions_total`).
    assert_eq!(first.counts().promotions, 0);
    let second = auto_leaf(&net, "second", &first).await;
    assert_eq!(second.status().supernode, Some(first.node_id()));
    second.shutdown().await;
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_heir_takes_over_and_every_share_is_searchable_again() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    write(&net.share_dir("a"), "alpha file.txt", b"alpha");
    write(&net.share_dir("b"), "bravo file.txt", b"bravo");
    write(&net.share_dir("l"), "lima file.txt", b"lima");
    let a = auto_leaf(&net, "a", &sn).await;
    let b = auto_leaf(&net, "b", &sn).await;
    let l = net.leaf("l", &sn).await;
    let heirs = heirs_known(&[&a, &b, &l], 2).await;
    search_until(&l, &["file"], |h| h.len() == 3).await;

    sn.shutdown().await;
    let (heir, other) = if heirs[0] == a.node_id() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    role_becomes(heir, "supernode").await;
    assert!(
        heir.status().reason.contains("heir 0"),
        "{}",
        heir.status().reason
    );
    let heir_id = heir.node_id();
    for leaf in [other, &l] {
        eventually("re-homed to the heir", || {
            let sn = leaf.status().supernode;
            async move { (sn == Some(heir_id)).then_some(()) }
        })
        .await;
    }
    // Every leaf re-registered: all three files are found again.
    search_until(&l, &["file"], |h| h.len() == 3).await;
    // What the metrics count: one promotion, and every leaf lost its supernode.
    assert_eq!(heir.counts().promotions, 1);
    for node in [heir, other, &l] {
        assert!(node.counts().failovers >= 1, "{:?}", node.counts());
    }
    assert_eq!(l.counts().promotions, 0);
    assert_eq!(l.status().role, "leaf", "a leaf-only node never promotes");
    assert_eq!(other.status().role, "leaf");
    for node in [l, b, a] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_heir_does_not_stall_the_next_one() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    // `a` and `b` reach the supernode through relays the test can cut, so that heir 0 can
    // die without the supernode hearing of it (and naming `second` heir 0 before it dies).
    let (relay_a, relay_b) = (
        Partition::new(sn.listen_addr()).await,
        Partition::new(sn.listen_addr()).await,
    );
    let a = auto_leaf_via(&net, "a", &relay_a).await;
    let b = auto_leaf_via(&net, "b", &relay_b).await;
    let l = net.leaf("l", &sn).await;
    let heirs = heirs_known(&[&a, &b, &l], 2).await;
    let (first, first_relay, second) = if heirs[0] == a.node_id() {
        (a, relay_a, b)
    } else {
        (b, relay_b, a)
    };
    first_relay.set_cut(true);
    first.shutdown().await;
    sn.shutdown().await;
    role_becomes(&second, "supernode").await;
    assert!(
        second.status().reason.contains("heir 1"),
        "{}",
        second.status().reason
    );
    let second_id = second.node_id();
    eventually("leaf re-homed to heir 1", || {
        let sn = l.status().supernode;
        async move { (sn == Some(second_id)).then_some(()) }
    })
    .await;
    l.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_supernode_grows_the_network() {
    let net = Net::new();
    let config = |name: &str, bootstrap: Option<std::net::SocketAddr>| {
        let mut config = net.config(name, RoleSetting::Auto, bootstrap);
        config.supernode.max_leaves = 3;
        config
    };
    let first = net.start(config("n0", None)).await;
    role_becomes(&first, "supernode").await;
    let mut nodes = vec![first];
    for i in 1..8 {
        let node = net
            .start(config(&format!("n{i}"), Some(nodes[0].listen_addr())))
            .await;
        nodes.push(node);
    }
    // Settled: every node is a supernode or attached to one, and no supernode is over 3.
    eventually("every node attached, no supernode over its limit", || {
        let statuses: Vec<_> = nodes.iter().map(|n| n.status()).collect();
        async move {
            let attached = statuses
                .iter()
                .all(|s| s.role == "supernode" || s.supernode.is_some());
            let within = statuses.iter().all(|s| s.leaves.unwrap_or(0) <= 3);
            let supernodes = statuses.iter().filter(|s| s.role == "supernode").count();
            (attached && within && supernodes >= 2).then_some(())
        }
    })
    .await;
    let reasons: Vec<String> = nodes.iter().map(|n| n.status().reason).collect();
    let grown = reasons
        .iter()
        .filter(|r| r.contains("asked by supernode"))
        .count();
    assert!(grown >= 1, "a leaf was asked to promote: {reasons:#?}");
    for node in nodes.into_iter().rev() {
        node.shutdown().await;
    }
}

/// Waits until `node` is a leaf of `sn`; returns its status.
async fn attached_to(node: &Node, sn: &Node) -> kazoo_leaf::Status {
    let sn_id = sn.node_id();
    eventually(
        &format!("{} attached to {}", node.node_id().short(), sn_id.short()),
        || {
            let status = node.status();
            async move { (status.role == "leaf" && status.supernode == Some(sn_id)).then_some(status) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_hands_part_of_a_full_supernodes_leaves_to_the_new_one() {
    let net = Net::new();
    let config = |name: &str, role: RoleSetting, bootstrap: Option<std::net::SocketAddr>| {
        let mut config = net.config(name, role, bootstrap);
        config.supernode.max_leaves = 4;
        config
    };
    let first = net.start(config("first", RoleSetting::Auto, None)).await;
    role_becomes(&first, "supernode").await;
    let mut leaves = Vec::new();
    for i in 0..4 {
        let node = net
            .start(config(
                &format!("a{i}"),
                RoleSetting::Auto,
                Some(first.listen_addr()),
            ))
            .await;
        node.wait_ready(DEADLINE).await.expect("joins");
        leaves.push(node);
    }
    assert_eq!(first.status().leaves, Some(4));
    // A fifth node finds the supernode full: its best eligible leaf is asked to promote, and
    // once it has peered back, part of the remaining leaves move to it.
    let late = net
        .start(config("late", RoleSetting::Leaf, Some(first.listen_addr())))
        .await;
    let grown = eventually("a leaf promoted on request", || {
        let promoted = leaves
            .iter()
            .find(|n| n.status().role == "supernode")
            .map(|n| (n.node_id(), n.status().reason));
        async move { promoted }
    })
    .await;
    assert!(grown.1.contains("full"), "{}", grown.1);
    let moved = eventually("a leaf handed over to the new supernode", || {
        let moved = leaves.iter().find_map(|n| {
            let s = n.status();
            (s.supernode == Some(grown.0)
                && s.uplink_reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("handed over"))
            .then_some(s.node_id)
        });
        async move { moved }
    })
    .await;
    assert_ne!(moved, grown.0);
    late.wait_ready(DEADLINE)
        .await
        .expect("the late node joins");
    eventually("every node attached, no supernode over its limit", || {
        let statuses: Vec<_> = leaves
            .iter()
            .chain([&first, &late])
            .map(|n| n.status())
            .collect();
        async move {
            let attached = statuses
                .iter()
                .all(|s| s.role == "supernode" || s.supernode.is_some());
            let within = statuses.iter().all(|s| s.leaves.unwrap_or(0) <= 4);
            (attached && within).then_some(())
        }
    })
    .await;
    late.shutdown().await;
    for node in leaves.into_iter().rev() {
        node.shutdown().await;
    }
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_underused_supernode_demotes_and_its_leaves_follow() {
    let net = Net::new();
    let mut sn_config = net.config("sn", RoleSetting::Supernode, None);
    sn_config.supernode.max_leaves = 3;
    let sn = net.start(sn_config).await;
    let fillers = [
        net.leaf("f0", &sn).await,
        net.leaf("f1", &sn).await,
        net.leaf("f2", &sn).await,
    ];
    // The bootstrap supernode is full and has no heir to ask: the auto node becomes a
    // supernode of its own, peers with it, and takes a leaf.
    let mut auto = net.config("auto", RoleSetting::Auto, Some(sn.listen_addr()));
    auto.election.demote_after_secs = 1;
    let auto = net.start(auto).await;
    role_becomes(&auto, "supernode").await;
    write(&net.share_dir("l"), "lima file.txt", b"lima");
    let l = net.leaf("l", &auto).await;
    eventually("peered with the bootstrap supernode", || {
        let peers = auto.status().peers;
        async move { (peers == Some(1)).then_some(()) }
    })
    .await;
    // While the other supernode is full the under-used one stays.
    assert_eq!(auto.status().role, "supernode");
    for filler in fillers {
        filler.shutdown().await;
    }
    // Room now: it demotes, its leaf follows the redirect, and it joins as a leaf itself.
    let status = attached_to(&auto, &sn).await;
    assert!(status.reason.contains("demoted"), "{}", status.reason);
    let status = attached_to(&l, &sn).await;
    let why = status.uplink_reason.unwrap_or_default();
    assert!(why.contains("demoted"), "{why}");
    search_until(&auto, &["lima"], |h| h.len() == 1).await;
    let counts = auto.counts();
    assert!(
        counts.promotions >= 1 && counts.demotions >= 1,
        "{counts:?}"
    );
    assert_eq!(sn.counts().demotions, 0);
    for node in [l, auto, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_heirs_promoting_at_once_converge_to_one_overlay() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let config = |name: &str| {
        let mut config = net.config(name, RoleSetting::Auto, Some(sn.listen_addr()));
        // Both heirs promote the moment the supernode dies (a split brain on purpose).
        config.election.heir_delay_ms = 0;
        config.election.demote_after_secs = 1;
        config
    };
    write(&net.share_dir("a"), "alpha file.txt", b"alpha");
    write(&net.share_dir("b"), "bravo file.txt", b"bravo");
    write(&net.share_dir("l"), "lima file.txt", b"lima");
    let a = net.start(config("a")).await;
    let b = net.start(config("b")).await;
    a.wait_ready(DEADLINE).await.expect("a joins");
    b.wait_ready(DEADLINE).await.expect("b joins");
    let l = net.leaf("l", &sn).await;
    heirs_known(&[&a, &b, &l], 2).await;
    search_until(&l, &["file"], |h| h.len() == 3).await;

    sn.shutdown().await;
    // Both promote; they peer (each knew the other as an heir), then the emptier one
    // demotes into the other: one supernode, every leaf on it, every share found.
    let (winner, loser) = eventually("one supernode left, the other demoted", || {
        let (sa, sb) = (a.status(), b.status());
        async move {
            let demoted = |s: &kazoo_leaf::Status| s.role == "leaf" && s.reason.contains("demoted");
            if sa.role == "supernode" && demoted(&sb) {
                Some((0, 1))
            } else if sb.role == "supernode" && demoted(&sa) {
                Some((1, 0))
            } else {
                None
            }
        }
    })
    .await;
    let nodes = [&a, &b];
    let (winner, loser) = (nodes[winner], nodes[loser]);
    let promoted = winner.status().reason;
    assert!(promoted.contains("heir"), "{promoted}");
    attached_to(loser, winner).await;
    attached_to(&l, winner).await;
    search_until(&l, &["file"], |h| h.len() == 3).await;
    assert_eq!(winner.status().leaves, Some(2));
    for node in [l, b, a] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_heals_ends_in_one_overlay() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    // `a` and `l` reach the supernode only through a relay the test can cut; `s` directly.
    let relay = Partition::new(sn.listen_addr()).await;
    write(&net.share_dir("a"), "alpha file.txt", b"alpha");
    write(&net.share_dir("l"), "lima file.txt", b"lima");
    write(&net.share_dir("s"), "sierra file.txt", b"sierra");
    let a = auto_leaf_via(&net, "a", &relay).await;
    let l = net
        .start(net.config("l", RoleSetting::Leaf, Some(relay.addr)))
        .await;
    l.wait_ready(DEADLINE).await.expect("l joins");
    let s = net.leaf("s", &sn).await;
    heirs_known(&[&a, &l], 1).await;
    search_until(&s, &["file"], |h| h.len() == 3).await;

    relay.set_cut(true);
    // Cut off, `a` takes over as heir and `l` follows it; the supernode keeps `s`.
    role_becomes(&a, "supernode").await;
    attached_to(&l, &a).await;
    search_until(&l, &["lima"], |h| h.len() == 1).await;
    assert_eq!(sn.status().role, "supernode");
    assert_eq!(s.status().supernode, Some(sn.node_id()));

    relay.set_cut(false);
    // Healed: the new supernode peers with the one it lost, and every share is found from
    // both sides again; no leaf was lost.
    eventually("the two supernodes peered", || {
        let (pa, ps) = (a.status().peers, sn.status().peers);
        async move { (pa == Some(1) && ps == Some(1)).then_some(()) }
    })
    .await;
    search_until(&s, &["file"], |h| h.len() == 3).await;
    search_until(&l, &["file"], |h| h.len() == 3).await;
    assert_eq!(l.status().supernode, Some(a.node_id()));
    assert_eq!(s.status().supernode, Some(sn.node_id()));
    for node in [s, l, a, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eligible_leaf_that_cannot_be_dialled_back_is_no_heir() {
    use kazoo_common::wire::{Hello, Intent, Role};

    let net = Net::new();
    let sn = net.supernode("sn").await;
    // A leaf advertising a high capacity but a listen port where nothing answers QUIC.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let (identity, endpoint) = raw_node();
    let mut hello = Hello::new(identity.node_id(), Role::Leaf, Intent::Join);
    hello.capacity = 1_000_000;
    hello.listen_port = silent.local_addr().expect("port").port();
    let _unreachable = raw_dial_as(&endpoint, &identity, &sn, hello)
        .await
        .expect("the raw leaf joins");
    let a = auto_leaf(&net, "a", &sn).await;
    // `a` was dialled back and is an heir; the unreachable one, though it claims more
    // capacity, is not.
    let heirs = heirs_known(&[&a], 1).await;
    assert_eq!(heirs, vec![a.node_id()]);
    assert_eq!(sn.status().leaves, Some(2));
    a.shutdown().await;
    sn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_claiming_the_most_capacity_does_not_jump_the_succession() {
    use kazoo_common::wire::{Hello, Intent, Role};

    let net = Net::new();
    let sn = net.supernode("sn").await;
    let a = auto_leaf(&net, "a", &sn).await;
    assert_eq!(heirs_known(&[&a], 1).await, vec![a.node_id()]);
    // A raw leaf claiming the largest capacity, whose listen port answers the dial back.
    let (identity, endpoint) = raw_node();
    let _answering = fake::admit_all(&identity, &endpoint, |_| {});
    let mut hello = Hello::new(identity.node_id(), Role::Leaf, Intent::Join);
    hello.capacity = u32::MAX;
    hello.listen_port = endpoint.local_addr().expect("port").port();
    let _liar = raw_dial_as(&endpoint, &identity, &sn, hello)
        .await
        .expect("the raw leaf joins");
    // Once the liar is an heir at all, it ranks behind the leaf that was there first.
    let heirs = heirs_known(&[&a], 2).await;
    assert_eq!(heirs, vec![a.node_id(), identity.node_id()]);
    a.shutdown().await;
    sn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_makes_an_auto_node_eligible_and_its_supernode_hears_of_it() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let mut config = net.config("a", RoleSetting::Auto, Some(sn.listen_addr()));
    // The score starts at 3600 and grows by one a second: eligible after about 6 s.
    config.election.bandwidth_kib = 3600;
    config.election.threshold = 3606;
    let a = net.start(config).await;
    a.wait_ready(DEADLINE).await.expect("joins");
    assert_eq!(a.status().role, "leaf");
    let l = net.leaf("l", &sn).await;
    // Not an heir at first; once eligible it re-joins with its score and becomes one.
    let heirs = heirs_known(&[&l], 1).await;
    assert_eq!(heirs, vec![a.node_id()]);
    let why = a.status().uplink_reason.unwrap_or_default();
    assert!(why.contains("became eligible"), "{why}");
    for node in [l, a, sn] {
        node.shutdown().await;
    }
}
