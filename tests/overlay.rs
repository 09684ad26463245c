//! Supernodes peering over real QUIC: gossip to a full mesh, routed search and downloads
//! across supernodes, the persisted host cache, and a peer that sends garbage.

mod common;

use std::net::SocketAddr;

use common::*;
use kazoo_common::config::RoleSetting;
use kazoo_common::transport;
use kazoo_common::wire::{CloseCode, ErrorCode, Hello, Intent, Role};
use kazoo_common::ContentId;
use kazoo_leaf::Node;

async fn peers_reach(node: &Node, count: usize) {
    eventually(&format!("{} peers", count), || {
        let peers = node.status().peers.unwrap_or(0);
        async move { (peers >= count).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_six_supernodes_becomes_a_full_mesh() {
    let net = Net::new();
    let mut sns: Vec<Node> = Vec::new();
    for i in 0..6 {
        let bootstrap: Vec<SocketAddr> = sns
            .last()
            .map(|p| vec![p.listen_addr()])
            .unwrap_or_default();
        sns.push(bootstrapped_supernode(&net, &format!("sn{i}"), &bootstrap).await);
    }
    for sn in &sns {
        peers_reach(sn, 5).await;
    }
    let status = sns[0].status();
    let listed = status.peer_list.unwrap();
    assert_eq!(listed.len(), 5);
    for other in &sns[1..] {
        assert!(listed.iter().any(|p| p.node == other.node_id()));
    }
    for sn in sns {
        sn.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_download_across_three_supernodes() {
    let net = Net::new();
    let s1 = bootstrapped_supernode(&net, "s1", &[]).await;
    let s2 = bootstrapped_supernode(&net, "s2", &[s1.listen_addr()]).await;
    let s3 = bootstrapped_supernode(&net, "s3", &[s2.listen_addr()]).await;
    for sn in [&s1, &s2, &s3] {
        peers_reach(sn, 2).await;
    }
    let content = bytes(3 << 20, 11);
    let id = ContentId::from(blake3::hash(&content));
    write(&net.share_dir("b"), "Overlay Anthem.flac", &content);
    write(&net.share_dir("c"), "overlay anthem (copy).flac", &content);
    write(&net.share_dir("c"), "only on three.txt", b"three");
    let a = net.leaf("a", &s1).await;
    let b = net.leaf("b", &s2).await;
    let c = net.leaf("c", &s3).await;

    // One result per content id, with the sources under both other supernodes merged.
    let hits = search_until(&a, &["overlay", "ANTHEM"], |h| {
        h.first().is_some_and(|h| h.sources == 2)
    })
    .await;
    assert_eq!(hits.len(), 1);
    let mut nodes: Vec<_> = hits[0].providers.iter().map(|p| p.node).collect();
    nodes.sort();
    let mut expected = vec![b.node_id(), c.node_id()];
    expected.sort();
    assert_eq!(nodes, expected);
    search_until(&a, &["three"], |h| h.len() == 1).await;

    // `get` finds its sources under the other supernodes and uses both.
    let report = a
        .get(id, None, no_progress())
        .await
        .expect("download across supernodes");
    assert_eq!(std::fs::read(&report.path).unwrap(), content);
    assert_eq!(report.sources.len(), 2);
    for node in [a, b, c, s3, s2, s1] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_supernode_finds_its_peers_in_the_host_cache() {
    let net = Net::new();
    let s1 = bootstrapped_supernode(&net, "s1", &[]).await;
    let s2 = bootstrapped_supernode(&net, "s2", &[s1.listen_addr()]).await;
    peers_reach(&s2, 1).await;
    s2.shutdown().await;
    // Same data dir, no bootstrap: only the host cache knows s1.
    let again = net
        .start(net.config("s2", RoleSetting::Supernode, None))
        .await;
    peers_reach(&again, 1).await;
    assert_eq!(again.status().peer_list.unwrap()[0].node, s1.node_id());
    again.shutdown().await;
    s1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_dropped_and_kept_away() {
    let net = Net::new();
    let sn = bootstrapped_supernode(&net, "sn", &[]).await;
    let (identity, endpoint) = raw_node();
    let hello = Hello::new(identity.node_id(), Role::Supernode, Intent::Peer);
    let mut link = raw_dial_as(&endpoint, &identity, &sn, hello.clone())
        .await
        .expect("peering accepted");
    peers_reach(&sn, 1).await;
    link.control_send
        .write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let reason = tokio::time::timeout(DEADLINE, link.conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CloseCode::PROTOCOL_VIOLATION.into()),
        "{reason}"
    );
    eventually("peer dropped", || {
        let peers = sn.status().peers;
        async move { (peers == Some(0)).then_some(()) }
    })
    .await;
    let again = raw_dial_as(&endpoint, &identity, &sn, hello).await;
    assert!(
        matches!(
            &again,
            Err(transport::TransportError::Refused {
                code: ErrorCode::Busy,
                ..
            })
        ),
        "a misbehaving peer is not taken back at once: {again:?}"
    );
    sn.shutdown().await;
}
