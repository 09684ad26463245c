//! Election: the first auto node promotes, heirs take over a dead supernode, a dead heir
//! does not stall the next, leaf-only nodes never promote.

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
    let a = auto_leaf(&net, "a", &sn).await;
    let b = auto_leaf(&net, "b", &sn).await;
    let l = net.leaf("l", &sn).await;
    let heirs = heirs_known(&[&a, &b, &l], 2).await;
    let (first, second) = if heirs[0] == a.node_id() {
        (a, b)
    } else {
        (b, a)
    };
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
    let grown = nodes
        .iter()
        .filter(|n| n.status().reason.contains("full"))
        .count();
    assert!(grown >= 1, "a leaf was asked to promote");
    for node in nodes.into_iter().rev() {
        node.shutdown().await;
    }
}
