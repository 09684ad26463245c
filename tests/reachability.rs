//! Reachability over real QUIC on loopback: a leaf learns the address its supernode sees it
//! at and whether it can be dialled (the supernode's dial back), and a source that does not
//! answer at its advertised port is listed at the address its connection comes from — on
//! loopback, a raw endpoint advertising a port nobody answers on plays a NAT that remaps
//! ports. The NAT kinds themselves are tested in the many-host test network.

mod common;

use std::net::SocketAddr;

use common::fake::{admit_all, join_and_register};
use common::*;
use kazoo_common::wire::{self, Notice};
use kazoo_common::ContentId;
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
async fn a_source_behind_a_port_mapping_is_listed_where_it_answers() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(100_000, 3);
    let id = ContentId::from(blake3::hash(&content));
    // Advertises a port nobody answers on; its connection's own address answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let silent_port = silent.local_addr().expect("port").port();
    let (identity, endpoint) = raw_node();
    let _answering = admit_all(&identity, &endpoint, |_| {});
    let mut link = join_and_register(&sn, &identity, &endpoint, silent_port, &content).await;
    let mapped = endpoint.local_addr().expect("address");
    let (observed, answered) = reachability_notice(&mut link).await;
    assert_eq!(observed, mapped);
    assert_eq!(answered, Some(mapped), "the mapping answered the dial back");
    assert_eq!(
        Class::classify(silent_port, observed, answered),
        Class::MappedNat
    );
    let d = net.leaf("d", &sn).await;
    assert_eq!(listed_at(&d, id, identity.node_id()).await, mapped);
    for node in [d, sn] {
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
