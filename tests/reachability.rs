//! Reachability over real QUIC on loopback: a leaf learns the address its supernode sees it
//! at and whether it can be dialled (the supernode's dial back), and a source that does not
//! answer at its advertised port is listed at the address its connection comes from — on
//! loopback, a raw endpoint advertising a port nobody answers on plays a NAT that remaps
//! ports and filters. A source nobody can dial is reached by a reverse connection: it dials the
//! downloader when its supernode asks. The NAT kinds themselves are tested in the many-host
//! test network.

mod common;

use std::net::SocketAddr;

use common::fake::{answer, join_and_register};
use common::*;
use kazoo_common::hash::hash_reader;
use kazoo_common::transport::{self, Timeouts};
use kazoo_common::wire::{self, Hello, Intent, Notice, Role};
use kazoo_common::ContentId;
use kazoo_leaf::download::Path;
use kazoo_leaf::reachability::Class;
use kazoo_leaf::Node;

/// Reads notices from a raw leaf's control stream until the reachability one.
async fn reachability_notice(
    link: &mut kazoo_common::transport::Link,
) -> (SocketAddr, Option<SocketAddr>) {
    let read = async {
        loop {
            match wire::read_frame::<Notice>(&mut link.control_recv).await {
                Ok(Notice::Reachability { observed, answered }) => return (observed, answered),
                Ok(_) => continue,
                Err(e) => panic!("control stream ended before the reachability notice: {e}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a reachability notice in time")
}

/// Where `d`'s supernode lists the sources of `id`.
async fn listed_at(d: &Node, id: ContentId, source: kazoo_common::NodeId) -> SocketAddr {
    eventually("the source listed", || async {
        let hits = d.search(&[id.to_hex()], 1).await.ok()?;
        let hit = hits.first()?;
        hit.providers
            .iter()
            .find(|p| p.node == source)
            .map(|p| p.addr)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_learns_its_observed_address_and_that_it_is_reachable() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let leaf = net.leaf("l", &sn).await;
    let reachability = eventually("the leaf hears its reachability", || {
        let r = leaf.status().reachability;
        async move { r }
    })
    .await;
    assert_eq!(reachability.class, Class::Reachable);
    assert_eq!(reachability.observed, leaf.listen_addr());
    assert_eq!(reachability.answered, Some(leaf.listen_addr()));
    for node in [leaf, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_answers_nowhere_is_listed_at_its_observed_address() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(100_000, 4);
    let id = ContentId::from(blake3::hash(&content));
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let silent_port = silent.local_addr().expect("port").port();
    // Its endpoint accepts nothing: neither address answers the dial back.
    let (identity, endpoint) = raw_node();
    let mut link = join_and_register(&sn, &identity, &endpoint, silent_port, &content).await;
    let observed_here = endpoint.local_addr().expect("address");
    let (observed, answered) = reachability_notice(&mut link).await;
    assert_eq!(observed, observed_here);
    assert_eq!(answered, None);
    assert_eq!(Class::classify(silent_port, observed, answered), Class::Nat);
    let d = net.leaf("d", &sn).await;
    assert_eq!(listed_at(&d, id, identity.node_id()).await, observed_here);
    for node in [d, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_nobody_can_dial_is_reached_by_a_reverse_connection() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(3 << 20, 5);
    let id = ContentId::from(blake3::hash(&content));
    let (_, manifest) = hash_reader(&content[..], content.len() as u64).expect("manifest");
    // A source that accepts nothing (a NAT that drops unsolicited packets) but dials out
    // when its supernode asks, and then serves the file.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let silent_port = silent.local_addr().expect("port").port();
    let (identity, endpoint) = raw_node();
    let link = join_and_register(&sn, &identity, &endpoint, silent_port, &content).await;
    let source = identity.node_id();
    let (asked_tx, mut asked) = tokio::sync::mpsc::channel(4);
    let serving = {
        let content = content.clone();
        tokio::spawn(async move {
            let mut recv = link.control_recv;
            while let Ok(notice) = wire::read_frame::<Notice>(&mut recv).await {
                let Notice::Connect { to } = notice else {
                    continue;
                };
                let _ = asked_tx.try_send(to);
                let hello = Hello::new(identity.node_id(), Role::Leaf, Intent::Reverse);
                let dialled = transport::dial(
                    &endpoint,
                    &identity,
                    to.addr,
                    Some(to.node),
                    Timeouts::default(),
                    hello,
                )
                .await;
                let Ok(back) = dialled else { continue };
                while let Ok((send, recv)) = back.conn.accept_bi().await {
                    let (manifest, content) = (manifest.clone(), content.clone());
                    tokio::spawn(
                        async move { answer(&manifest, Some(&content), send, recv).await },
                    );
                }
            }
        })
    };
    let d = net.leaf("d", &sn).await;
    listed_at(&d, id, source).await;
    let report = d
        .get(id, None, no_progress())
        .await
        .expect("download over the reverse connection");
    assert!(
        std::fs::read(&report.path).expect("saved file") == content,
        "bytes equal"
    );
    let used = report.sources.iter().find(|r| r.node == source);
    assert_eq!(
        used.map(|r| r.bytes),
        Some(content.len() as u64),
        "{:?}",
        report.sources
    );
    assert_eq!(used.and_then(|r| r.reached), Some(Path::Reverse));
    // It was asked to dial the downloader where the downloader's supernode sees it.
    let to = asked.recv().await.expect("asked to connect back");
    assert_eq!(to.node, d.node_id());
    assert_eq!(to.addr, d.listen_addr());
    serving.abort();
    for node in [d, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverse_connection_nobody_asked_for_is_refused() {
    let net = Net::new();
    let leaf = net.supernode("l").await;
    let (result, _endpoint) = raw_dial(&leaf, Intent::Reverse).await;
    let refused = result.expect_err("an unasked reverse connection is refused");
    assert!(
        refused.to_string().contains("no reverse connection"),
        "{refused}"
    );
    leaf.shutdown().await;
}
