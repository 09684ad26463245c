//! Sybil download: one real file with 2 honest sources and N = 0, 10, 40, 100 fake providers
//! registered *before* them under its content id, from a few networks (127.0.3.0/24 and
//! 127.0.4.0/24; the honest sources are on 127.0.1.1 and 127.0.2.1). Three kinds of fakes:
//! **unreachable** (listed at a UDP port nobody answers on), **stalling** (completes the
//! kazoo handshake, then answers no request) and **bad pieces** (answers with the true
//! manifest, then with garbage pieces). For each: seconds from `get` to a verified file,
//! as a ratio to N = 0 (target ≤ 1.5 at N = 100), and datagrams that reached the unreachable
//! fakes per fake — from the supernode's one dial back at join (at the port each advertised),
//! and from the download (at the address each joined from, where the supernode lists a leaf
//! that did not answer its dial back).
//!
//! `cargo bench --bench sybil` (`-- --size-mib M` for another file size; default 64).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod testnet;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::config::RoleSetting;
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Timeouts};
use kazoo_common::wire::DIAL_BACK_TIMEOUT;
use kazoo_common::ContentId;
use kazoo_leaf::Node;
use testnet::fake::{join_and_register, FakeSource};
use testnet::{bytes, eventually, no_progress, write, Net};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Unreachable,
    Stalling,
    BadPieces,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Unreachable => "unreachable",
            Kind::Stalling => "stalling",
            Kind::BadPieces => "bad pieces",
        }
    }
}

/// A raw endpoint bound in network `net` (127.0.`net`.x).
fn endpoint_in(net: u8, host: u8) -> (Identity, quinn::Endpoint) {
    let identity = Identity::generate().expect("identity");
    let addr = SocketAddr::from(([127, 0, net, host], 0));
    let endpoint = transport::endpoint(&identity, addr, Timeouts::default()).expect("endpoint");
    (identity, endpoint)
}

/// Fake provider `i` of `kind` for `content`, joined to `sn`.
async fn fake(sn: &Node, content: &[u8], kind: Kind, i: usize) -> FakeSource {
    let (net, host) = (3 + (i % 2) as u8, 1 + (i / 2 % 200) as u8);
    let (identity, endpoint) = endpoint_in(net, host);
    match kind {
        Kind::Unreachable => {
            let dead = std::net::UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, net, host), 0))
                .expect("dead port");
            dead.set_nonblocking(true).expect("non-blocking");
            let port = dead.local_addr().expect("port").port();
            let link = join_and_register(sn, &identity, &endpoint, port, content).await;
            FakeSource::dead(identity.node_id(), link, endpoint, dead)
        }
        Kind::Stalling => testnet::fake::stalling_from(sn, content, identity, endpoint).await,
        Kind::BadPieces => testnet::fake::bad_pieces_from(sn, content, identity, endpoint).await,
    }
}

/// Moves each dead fake's connection to its supernode to a fresh socket and binds its dead
/// port at the address it joined from instead. A leaf that does not answer the dial back is
/// listed at that observed address (where a reverse connection or a punch would reach it
/// behind a NAT), not at the port it advertised, so that is where a download dials it.
async fn dead_at_observed(fakes: &mut [FakeSource]) {
    for fake in fakes.iter_mut().filter(|f| f.dead.is_some()) {
        let observed = fake.endpoint().local_addr().expect("fake address");
        let fresh = std::net::UdpSocket::bind((observed.ip(), 0)).expect("fresh socket");
        fake.endpoint().rebind(fresh).expect("rebind");
        // quinn keeps the old socket until a packet arrives on the new one (a keep-alive
        // answer within a second).
        let dead = eventually("the observed address is free", || async {
            std::net::UdpSocket::bind(observed).ok()
        })
        .await;
        dead.set_nonblocking(true).expect("non-blocking");
        fake.dead = Some(dead);
    }
}

/// Datagrams waiting at the dead ports (drained).
fn drain(fakes: &[FakeSource]) -> usize {
    let mut buf = [0u8; 2048];
    fakes
        .iter()
        .filter_map(|f| f.dead.as_ref())
        .map(|socket| std::iter::from_fn(|| socket.recv(&mut buf).ok()).count())
        .sum()
}

struct Outcome {
    seconds: f64,
    dial_back: usize,
    download: usize,
}

async fn run(kind: Kind, n: usize, content: &[u8]) -> Outcome {
    let id = ContentId::from(blake3::hash(content));
    let net = Net::new();
    let mut config = net.config("sn", RoleSetting::Supernode, None);
    config.supernode.max_leaves = 1000;
    config.supernode.max_leaves_per_ip = 1000;
    let sn = net.start(config).await;
    let mut fakes = Vec::new();
    for i in 0..n {
        fakes.push(fake(&sn, content, kind, i).await);
    }
    let mut honest = Vec::new();
    for (name, subnet) in [("h1", 1u8), ("h2", 2u8)] {
        write(&net.share_dir(name), "payload.bin", content);
        let mut config = net.config(name, RoleSetting::Leaf, Some(sn.listen_addr()));
        config.node.listen = SocketAddr::from(([127, 0, subnet, 1], 0)).into();
        config.share.upload_rate_kib = 0;
        let node = net.start(config).await;
        node.wait_ready(testnet::DEADLINE)
            .await
            .expect("honest source joins");
        honest.push(node);
    }
    let mut config = net.config("d", RoleSetting::Leaf, Some(sn.listen_addr()));
    config.node.listen = SocketAddr::from(([127, 0, 9, 1], 0)).into();
    let d = net.start(config).await;
    d.wait_ready(testnet::DEADLINE)
        .await
        .expect("downloader joins");
    let ids: Vec<_> = honest.iter().map(Node::node_id).collect();
    eventually("both honest sources listed", || {
        let d = d.clone();
        let ids = ids.clone();
        async move {
            let hits = d.search(&[id.to_hex()], 1).await.ok()?;
            let listed = &hits.first()?.providers;
            ids.iter()
                .all(|h| listed.iter().any(|p| p.node == *h))
                .then_some(())
        }
    })
    .await;
    // Let every dial back end, so the counts below are the download's alone.
    tokio::time::sleep(DIAL_BACK_TIMEOUT + Duration::from_secs(1)).await;
    let dial_back = drain(&fakes);
    dead_at_observed(&mut fakes).await;
    let started = Instant::now();
    let report = d.get(id, None, no_progress()).await.expect("download");
    let seconds = started.elapsed().as_secs_f64();
    let got = std::fs::read(&report.path).expect("downloaded file");
    assert!(got == content, "the file is the original");
    // Dials the download started may still be retransmitting; give them their timeout.
    tokio::time::sleep(transport::HANDSHAKE_TIMEOUT).await;
    let download = drain(&fakes);
    for node in honest.iter().chain([&d, &sn]) {
        node.shutdown().await;
    }
    Outcome {
        seconds,
        dial_back,
        download,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size_mib: usize = args
        .iter()
        .position(|a| a == "--size-mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let content = bytes(size_mib << 20, 77);
    println!(
        "sybil download: {size_mib} MiB file, 2 honest sources, N fake providers registered first"
    );
    println!();
    println!("| fakes | N | seconds to verified file | ratio to N = 0 (target ≤ 1.5 at N = 100) | datagrams per unreachable fake: dial back / download |");
    println!("|---|---|---|---|---|");
    rt.block_on(async {
        let base = run(Kind::Unreachable, 0, &content).await.seconds;
        println!("| none | 0 | {base:.2} | 1.00 | — |");
        for kind in [Kind::Unreachable, Kind::Stalling, Kind::BadPieces] {
            for n in [10, 40, 100] {
                let o = run(kind, n, &content).await;
                let datagrams = match kind {
                    Kind::Unreachable => format!(
                        "{:.1} / {:.1}",
                        o.dial_back as f64 / n as f64,
                        o.download as f64 / n as f64
                    ),
                    Kind::Stalling | Kind::BadPieces => "—".into(),
                };
                println!(
                    "| {} | {n} | {:.2} | {:.2} | {datagrams} |",
                    kind.label(),
                    o.seconds,
                    o.seconds / base
                );
            }
        }
    });
}
