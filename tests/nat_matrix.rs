//! Every pair of (source, downloader) among a public host and the five NAT kinds of the
//! test network (`crates/testnet`): the real `kazoo` binary downloads each leaf's file from
//! each other leaf, the bytes verify, and the source was reached the way the pair allows —
//! a dial when the source is reachable, a reverse connection or a hole punch when the
//! source's side must help, the supernode's relay when no punch can work — and each leaf's
//! reachability class is what a dial back from a second supernode (a witness at another IP)
//! finds. Needs root (a failure under CI=true; skipped with a notice otherwise).

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::kazoo_net::{json, KazooNode, NodeSpec, PORT};
use kazoo_testnet::{Host, Link, Nat, Net};

/// Where a leaf lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Site {
    Public,
    Behind(Nat),
}

const SITES: [Site; 6] = [
    Site::Public,
    Site::Behind(Nat::FullCone),
    Site::Behind(Nat::AddressRestricted),
    Site::Behind(Nat::PortRestricted),
    Site::Behind(Nat::Symmetric),
    Site::Behind(Nat::Firewall),
];

impl Site {
    fn name(self) -> &'static str {
        match self {
            Site::Public => "public",
            Site::Behind(Nat::FullCone) => "fullcone",
            Site::Behind(Nat::AddressRestricted) => "addr",
            Site::Behind(Nat::PortRestricted) => "port",
            Site::Behind(Nat::Symmetric) => "sym",
            Site::Behind(Nat::Firewall) => "fw",
        }
    }

    /// Anyone may dial it at its listed address.
    fn dialable(self) -> bool {
        matches!(self, Site::Public | Site::Behind(Nat::FullCone))
    }

    /// The class its supernode finds, by asking its peer (at another IP) to dial it back:
    /// an address-restricted NAT lets in only IPs the leaf sent to, so it does not pass.
    fn class(self) -> &'static str {
        match self {
            Site::Public | Site::Behind(Nat::FullCone) => "reachable",
            Site::Behind(Nat::Symmetric) => "nat",
            Site::Behind(Nat::AddressRestricted | Nat::PortRestricted | Nat::Firewall) => {
                "firewalled"
            }
        }
    }

    /// Filters by the sender's port: a packet from a port it never sent to is dropped.
    fn filters_ports(self) -> bool {
        matches!(
            self,
            Site::Behind(Nat::PortRestricted | Nat::Symmetric | Nat::Firewall)
        )
    }
}

/// How `downloader` reaches `source`: directly if the source is dialable; else, after asking
/// through the supernode, a relay when one side maps each destination to a new port
/// (symmetric) and the other filters by port, so neither side's packets can open the way;
/// else a reverse connection if the downloader counts as reachable, a punch if not.
fn expected(source: Site, downloader: Site) -> &'static str {
    let symmetric = Site::Behind(Nat::Symmetric);
    if source.dialable() {
        "direct"
    } else if (source == symmetric && downloader.filters_ports())
        || (downloader == symmetric && source.filters_ports())
    {
        "relayed"
    } else if downloader.class() == "reachable" {
        "reverse"
    } else {
        "punched"
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Starts a leaf sharing `file` on `host`, joining the supernode at `sn`.
fn leaf(host: &Host, sn: SocketAddr, file: Option<&[u8]>) -> KazooNode {
    KazooNode::start(
        host,
        NodeSpec::leaf(
            vec![sn],
            file.map(|f| vec![(format!("matrix {}.bin", host.name()), f.to_vec())])
                .unwrap_or_default(),
        ),
    )
}

/// Waits until `node` has joined supernode `sn` with `files` shared and been told its
/// reachability, which must be `site`'s class.
fn check_joined(node: &KazooNode, site: Site, sn: &str, files: usize) {
    node.wait_joined(sn, files);
    let seen = node.status_until(|s| !s["reachability"].is_null());
    assert_eq!(
        seen["reachability"]["class"],
        site.class(),
        "{}: {seen}",
        site.name()
    );
}

/// A source, a downloader, and the file the source shares.
type Pair = (KazooNode, KazooNode, Vec<u8>);

/// Downloads each pair's file at its downloader, the pairs at once: each downloader is of
/// its pair's kind, every source of kind `source_kind`. How each source was reached.
fn download_each(pairs: &[(&Pair, Site)], source_kind: Site) -> Vec<(Site, Site, String)> {
    thread::scope(|scope| {
        let runs: Vec<_> = pairs
            .iter()
            .map(|&((src, dst, file), downloader)| {
                scope.spawn(move || {
                    let hash = blake3::hash(file).to_hex().to_string();
                    let pair = format!("{} from {}", downloader.name(), source_kind.name());
                    let got = dst.get(&hash);
                    assert!(
                        got.status.success(),
                        "{pair}: {}\n--- source log\n{}\n--- downloader log\n{}",
                        String::from_utf8_lossy(&got.stderr),
                        src.log_tail(),
                        dst.log_tail()
                    );
                    let report = json(&got);
                    let path = report["path"].as_str().expect("path");
                    assert_eq!(&std::fs::read(path).unwrap(), file, "{pair}: bytes");
                    let reached = report["sources"][0]["reached"].as_str().unwrap_or("?");
                    (source_kind, downloader, reached.to_owned())
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a pair's download"))
            .collect()
    })
}

#[test]
fn every_pair_of_nat_kinds_downloads_by_the_path_it_allows() {
    let Some(net) = Net::new_or_skip("nat_matrix") else {
        return;
    };
    let wan = Link::new().delay(Duration::from_millis(5)).rate_mbit(100);
    let sn_host = net.public_host("sn", wan).unwrap();
    let sn_addr = SocketAddr::from((sn_host.addr(), PORT));
    let sn = KazooNode::start(&sn_host, NodeSpec::supernode(vec![]));
    let sn_id = sn.status()["node_id"].as_str().unwrap().to_owned();
    // A second supernode, peered with the first: the dial-back witness, at another IP.
    let witness_host = net.public_host("witness", wan).unwrap();
    let witness_addr = SocketAddr::from((witness_host.addr(), PORT));
    let witness = KazooNode::start(&witness_host, NodeSpec::supernode(vec![sn_addr]));
    sn.status_until(|s| s["peers"].as_u64() >= Some(1));
    // Two homes of each kind, one for sources and one for downloaders, and a fresh host in
    // them for every pair: no pair finds a NAT opened by another pair's traffic.
    let homes = |side: &str| -> Vec<Option<kazoo_testnet::Home>> {
        SITES
            .iter()
            .map(|site| match site {
                Site::Public => None,
                Site::Behind(nat) => Some(
                    net.home(&format!("{side}{}", site.name()), *nat, wan)
                        .unwrap(),
                ),
            })
            .collect()
    };
    let (source_homes, downloader_homes) = (homes("s"), homes("d"));
    let host = |homes: &[Option<kazoo_testnet::Home>], i: usize, name: &str| match &homes[i] {
        None => net.public_host(name, wan).unwrap(),
        Some(home) => home.host(name).unwrap(),
    };

    let mut outcomes: Vec<(Site, Site, String)> = Vec::new();
    for (s, &source) in SITES.iter().enumerate() {
        // One batch per source kind: a source and a downloader for each downloader kind.
        let pairs: Vec<Pair> = SITES
            .iter()
            .enumerate()
            .map(|(d, _)| {
                let file = content(200_000 + 1000 * (6 * s + d), (6 * s + d) as u8);
                let src = leaf(
                    &host(&source_homes, s, &format!("s{s}{d}")),
                    sn_addr,
                    Some(&file),
                );
                let dst = leaf(
                    &host(&downloader_homes, d, &format!("d{s}{d}")),
                    sn_addr,
                    None,
                );
                (src, dst, file)
            })
            .collect();
        for ((src, dst, _), downloader) in pairs.iter().zip(SITES) {
            check_joined(src, source, &sn_id, 1);
            check_joined(dst, downloader, &sn_id, 0);
        }
        // Three downloads at a time: each path kind has its moment (1.5 s before asking for
        // a reverse connection, 2.5 s more before a relay), which a machine running six
        // handshakes at once on two cores could overrun.
        let runs: Vec<_> = pairs.iter().zip(SITES).collect();
        for three in runs.chunks(3) {
            outcomes.extend(download_each(three, source));
        }
    }

    let mut table = String::from("source -> downloader: reached (expected)\n");
    let mut wrong = 0;
    for (source, downloader, reached) in &outcomes {
        let want = expected(*source, *downloader);
        wrong += usize::from(reached != want);
        table.push_str(&format!(
            "{:>9} -> {:<9} {reached} ({want})\n",
            source.name(),
            downloader.name()
        ));
    }
    println!("{table}");
    assert_eq!(outcomes.len(), SITES.len() * SITES.len());
    assert_eq!(wrong, 0, "paths differ from the expected ones:\n{table}");
    let relayed = sn.status()["relay"]["relayed_bytes"].as_u64().unwrap_or(0);
    let relayed_pairs = outcomes.iter().filter(|o| o.2 == "relayed").count();
    assert!(
        relayed_pairs > 0 && relayed >= relayed_pairs as u64 * 200_000,
        "the supernode relayed {relayed} bytes for {relayed_pairs} relayed downloads"
    );

    // A supernode downloads too, from leaves behind a NAT that filters by port: its own
    // leaf by a direct dial (from the listening socket its leaf's NAT saw packets go to),
    // the witness's leaf by a reverse connection its own core (not an uplink) asks for.
    let witness_id = witness.status()["node_id"].as_str().unwrap().to_owned();
    for (k, (joins, joins_id, path)) in [
        (sn_addr, &sn_id, "direct"),
        (witness_addr, &witness_id, "reverse"),
    ]
    .into_iter()
    .enumerate()
    {
        let file = content(300_000 + k, 200 + k as u8);
        let src = leaf(
            &host(&source_homes, 3, &format!("sn_src{k}")),
            joins,
            Some(&file),
        );
        check_joined(&src, Site::Behind(Nat::PortRestricted), joins_id, 1);
        let hash = blake3::hash(&file).to_hex().to_string();
        let got = sn.until(&["get", "--json", &hash], |o| o.status.success());
        let report = json(&got);
        assert_eq!(
            std::fs::read(report["path"].as_str().unwrap()).unwrap(),
            file,
            "the supernode's download {k}"
        );
        assert_eq!(
            report["sources"][0]["reached"], path,
            "the supernode reached its source {k}: {report}"
        );
    }
}
