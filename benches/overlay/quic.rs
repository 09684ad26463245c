//! The overlay harness over real QUIC on loopback.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::config::{BootstrapEntry, Config, RoleSetting};
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Link, Timeouts};
use kazoo_common::wire::{Hello, Hit, Intent, Request, Response, Role, ShareEntry};
use kazoo_common::{ContentId, NodeId};
use kazoo_leaf::{client, Node, StartOptions};

use super::{catalogue, print_header, within, Outcome, Rng};

struct Leaf {
    link: Link,
    _endpoint: quinn::Endpoint,
    sn: NodeId,
}

async fn join(sn: &Node) -> Leaf {
    let identity = Identity::generate().expect("identity");
    let endpoint = transport::endpoint(
        &identity,
        "127.0.0.1:0".parse().unwrap(),
        Timeouts::default(),
    )
    .expect("endpoint");
    let hello = Hello::new(identity.node_id(), Role::Leaf, Intent::Join);
    let link = transport::dial(
        &endpoint,
        &identity,
        sn.listen_addr(),
        Some(sn.node_id()),
        Timeouts::default(),
        hello,
    )
    .await
    .expect("leaf joins");
    Leaf {
        link,
        _endpoint: endpoint,
        sn: sn.node_id(),
    }
}

async fn search(leaf: &Leaf, words: Vec<String>) -> Vec<Hit> {
    let mut hits = Vec::new();
    let Ok(mut recv) = client::send(
        &leaf.link.conn,
        &Request::Search {
            words,
            max_results: 50,
        },
    )
    .await
    else {
        return hits;
    };
    while let Ok(Response::Hits(batch)) = client::read_answer(&mut recv).await {
        hits.extend(batch);
    }
    hits
}

pub fn run(sns: usize, leaves: usize, queries: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rng = Rng(99);
        let mut nodes: Vec<Node> = Vec::new();
        for n in 0..sns {
            let mut config = Config::default();
            config.node.role = RoleSetting::Supernode;
            config.node.listen = SocketAddr::from(([127, 0, 0, 1], 0)).into();
            config.node.data_dir = dir.path().join(format!("sn{n}"));
            config.supernode.max_leaves = leaves;
            config.network.bootstrap = (0..3.min(n))
                .map(|_| BootstrapEntry { node: None, addr: nodes[rng.below(n)].listen_addr().into() })
                .collect();
            let options = StartOptions { share: false, ..StartOptions::default() };
            nodes.push(Node::start(config, options).await.expect("supernode starts"));
        }
        let want = (sns - 1).min(40) * 3 / 4;
        let deadline = Instant::now() + Duration::from_secs(60);
        while nodes.iter().any(|n| n.status().peers.unwrap_or(0) < want) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let files_per_leaf = 5;
        let unique = leaves * files_per_leaf / 2;
        let files = catalogue(unique, &mut rng);
        let mut holders: HashMap<ContentId, Vec<NodeId>> = HashMap::new();
        let mut joined = Vec::new();
        for _ in 0..leaves {
            let sn = &nodes[rng.below(sns)];
            let leaf = join(sn).await;
            let entries: Vec<ShareEntry> = (0..files_per_leaf).map(|_| files[rng.below(unique)].entry.clone()).collect();
            for e in &entries {
                holders.entry(e.id).or_default().push(sn.node_id());
            }
            let _ = client::call(&leaf.link.conn, &Request::Register { entries }).await;
            joined.push(leaf);
        }
        // Filter patches go out on the next overlay tick.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let graph: HashMap<NodeId, Vec<NodeId>> = nodes
            .iter()
            .map(|n| (n.node_id(), n.status().peer_list.unwrap_or_default().into_iter().map(|p| p.node).collect()))
            .collect();
        let peers: Vec<usize> = graph.values().map(Vec::len).collect();
        let queries_sent = || -> u64 {
            nodes.iter().filter_map(|n| n.supernode()).map(|sn| sn.core().overlay().stats().queries_sent).sum()
        };
        let hop_limit = kazoo_supernode::OverlayConfig::default().hop_limit;
        let mut outcome = Outcome::default();
        for _ in 0..queries {
            let file = &files[rng.below(unique)];
            let Some(held_by) = holders.get(&file.entry.id) else { continue };
            let leaf = &joined[rng.below(joined.len())];
            let reach = within(&graph, leaf.sn, hop_limit);
            let holders_in_reach: HashSet<NodeId> = held_by.iter().filter(|n| reach.contains(n)).copied().collect();
            let sources_in_reach = held_by.iter().filter(|n| reach.contains(n)).count();
            let words = vec![file.tag.clone(), file.entry.name.split(' ').next().unwrap_or("").to_string()];
            let before = queries_sent();
            let started = Instant::now();
            let hits = search(leaf, words).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            outcome.record(&hits, file.entry.id, holders_in_reach.len(), sources_in_reach, ms, queries_sent() - before);
        }
        println!(
            "\nreal QUIC on loopback: {sns} supernodes (peers per SN: min {} max {}), {leaves} leaves x {files_per_leaf} files",
            peers.iter().min().unwrap_or(&0),
            peers.iter().max().unwrap_or(&0)
        );
        print_header("routing");
        outcome.print("filters (wall-clock latency)");
        for leaf in joined {
            leaf.link.conn.close(0u32.into(), b"done");
        }
        for node in nodes {
            node.shutdown().await;
        }
    });
}
