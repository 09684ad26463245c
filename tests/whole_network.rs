//! A whole network in the test network (`crates/testnet`, needs root; a failure under
//! CI=true): three public supernodes and leaves behind every NAT kind on links of 10 ms
//! each way (40 ms between two hosts) with random loss, all running the real `kazoo`
//! binary. Every share is found, downloads verify whatever the NATs, a supernode killed is
//! failed over (only reachable leaves become supernodes) with every share searchable
//! again; and at 2 % loss nothing fails over that is alive.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::kazoo_net::{json, lines, KazooNode, NodeSpec, PORT};
use kazoo_testnet::{Host, Link, Nat, Net};

/// Held by each test for its whole run: the two networks (30 processes each, with their
/// links' delay threads in this process) would share two cores, and a 300 s watch for
/// false failovers is only fair to a network that is not starved by the other one.
static ONE_NETWORK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where leaf `i` lives: `None` is a public host.
fn site(i: usize) -> Option<Nat> {
    [
        Some(Nat::FullCone),
        Some(Nat::AddressRestricted),
        Some(Nat::PortRestricted),
        Some(Nat::Symmetric),
        Some(Nat::Firewall),
        None,
    ][i % 6]
}

/// The classes a peer's dial back (from another IP than the leaf's supernode) may find for a
/// leaf at `site`. An address-restricted NAT lets in every IP the leaf sent to, and a leaf
/// dials all its bootstrap supernodes at once when it joins, so the witness may be one it
/// opened the NAT to: it passes then.
fn classes(site: Option<Nat>) -> &'static [&'static str] {
    match site {
        None | Some(Nat::FullCone) => &["reachable"],
        Some(Nat::Symmetric) => &["nat"],
        Some(Nat::AddressRestricted) => &["firewalled", "reachable"],
        Some(Nat::PortRestricted | Nat::Firewall) => &["firewalled"],
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Three public supernodes, peered: the second and third bootstrap from the first.
fn supernodes(net: &Net, link: Link) -> (Vec<KazooNode>, Vec<SocketAddr>) {
    let hosts: Vec<Host> = (0..3)
        .map(|i| net.public_host(&format!("sn{i}"), link).unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = hosts
        .iter()
        .map(|h| SocketAddr::from((h.addr(), PORT)))
        .collect();
    let sns = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            KazooNode::start(
                host,
                NodeSpec::supernode(if i == 0 { vec![] } else { vec![addrs[0]] }),
            )
        })
        .collect();
    (sns, addrs)
}

/// `n` auto leaves behind the NAT kinds in turn, leaf `i` trying supernode `i % 3` first,
/// each sharing one file named with `word`; their files.
fn leaves(
    net: &Net,
    link: Link,
    sns: &[SocketAddr],
    n: usize,
    word: &str,
) -> (Vec<KazooNode>, Vec<Vec<u8>>) {
    let files: Vec<Vec<u8>> = (0..n)
        .map(|i| content(150_000 + 997 * i, i as u8))
        .collect();
    let nodes = (0..n)
        .map(|i| {
            let name = format!("l{i}");
            let host = match site(i) {
                None => net.public_host(&name, link).unwrap(),
                Some(nat) => net
                    .home(&format!("h{i}"), nat, link)
                    .unwrap()
                    .host(&name)
                    .unwrap(),
            };
            let mut bootstrap = sns.to_vec();
            bootstrap.rotate_left(i % sns.len());
            KazooNode::start(
                &host,
                NodeSpec {
                    role: "auto",
                    ..NodeSpec::leaf(
                        bootstrap,
                        vec![(format!("{word} item{i}.bin"), files[i].clone())],
                    )
                },
            )
        })
        .collect();
    (nodes, files)
}

fn node_id(node: &KazooNode) -> String {
    node.status()["node_id"].as_str().unwrap().to_owned()
}

/// Searches from `node` for `word` until every hash of `files` is among the hits.
fn find_all(node: &KazooNode, word: &str, files: &[Vec<u8>]) {
    let want: Vec<String> = files
        .iter()
        .map(|f| blake3::hash(f).to_hex().to_string())
        .collect();
    node.until(&["search", "--json", "--max", "200", word], |out| {
        let hits = lines(out);
        out.status.success()
            && want
                .iter()
                .all(|h| hits.iter().any(|hit| hit["hash"] == *h))
    });
}

#[test]
fn a_network_behind_mixed_nats_finds_every_share_and_fails_over() {
    let _alone = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(net) = Net::new_or_skip("whole_network") else {
        return;
    };
    let link = Link::new()
        .rate_mbit(100)
        .delay(Duration::from_millis(10))
        .loss_pct(1.0);
    let (sns, sn_addrs) = supernodes(&net, link);
    let sn_ids: Vec<String> = sns.iter().map(node_id).collect();
    for sn in &sns[1..] {
        sn.status_until(|s| s["peers"].as_u64() >= Some(2));
    }
    let (leaves, files) = leaves(&net, link, &sn_addrs, 21, "wholenet");
    let homes: Vec<String> = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                l.status_until(|s| {
                    s["supernode"].is_string()
                        && s["shared_files"] == 1
                        && !s["reachability"].is_null()
                })
            }));
            let s = match waited {
                Ok(s) => s,
                Err(panic) => {
                    for (k, sn) in sns.iter().enumerate() {
                        eprintln!("--- supernode {k}\n{}", sn.log_tail());
                    }
                    std::panic::resume_unwind(panic)
                }
            };
            // The supernodes are peered, so a peer at another IP dialled each leaf back.
            let class = s["reachability"]["class"].as_str().unwrap_or("none");
            assert!(
                classes(site(i)).contains(&class),
                "leaf {i} ({:?}) classed {class}: {s}",
                site(i)
            );
            s["supernode"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        sns.iter()
            .map(|sn| sn.status()["leaves"].as_u64().unwrap())
            .sum::<u64>(),
        21,
        "every leaf joined one of the three"
    );

    // Every share is found, from a leaf behind a symmetric NAT.
    find_all(&leaves[3], "wholenet", &files);
    // Downloads verify whatever the NATs: each kind downloads from the next.
    for d in 0..6 {
        let s = (d + 7) % leaves.len();
        let out = leaves[d].get(blake3::hash(&files[s]).to_hex().as_ref());
        assert!(
            out.status.success(),
            "leaf {d} from leaf {s}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            leaves[s].log_tail()
        );
        let report = json(&out);
        let path = report["path"].as_str().unwrap();
        assert_eq!(
            std::fs::read(path).unwrap(),
            files[s],
            "leaf {d} from leaf {s}"
        );
    }

    // The supernode with the most leaves dies.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for home in &homes {
        *count.entry(home.as_str()).or_default() += 1;
    }
    let victim = (0..3)
        .max_by_key(|&i| count.get(sn_ids[i].as_str()).copied().unwrap_or(0))
        .unwrap();
    let orphans = count.get(sn_ids[victim].as_str()).copied().unwrap_or(0);
    assert!(orphans > 0);
    let killed_at = Instant::now();
    let mut survivors = sns;
    drop(survivors.remove(victim));
    // Every leaf is with a live supernode again (or is one), and only leaves that answer a
    // dial back have promoted.
    for (i, leaf) in leaves.iter().enumerate() {
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            leaf.status_until(|s| {
                s["role"] == "supernode"
                    || (s["supernode"].is_string() && s["supernode"] != sn_ids[victim].as_str())
            })
        }));
        let s = match waited {
            Ok(s) => s,
            Err(panic) => {
                for (k, sn) in survivors.iter().enumerate() {
                    eprintln!("--- surviving supernode {k}\n{}", sn.log_tail());
                }
                std::panic::resume_unwind(panic)
            }
        };
        if s["role"] == "supernode" {
            assert_eq!(
                s["reachability"]["class"].as_str().unwrap_or("reachable"),
                "reachable",
                "leaf {i} ({:?}) promoted though not reachable: {s}",
                site(i)
            );
            assert!(
                matches!(site(i), None | Some(Nat::FullCone | Nat::AddressRestricted)),
                "leaf {i} behind {:?} became a supernode",
                site(i)
            );
        }
    }
    // Every share is searchable again, from a leaf of a surviving supernode.
    let asker = (0..leaves.len())
        .find(|&i| homes[i] != sn_ids[victim])
        .unwrap();
    find_all(&leaves[asker], "wholenet", &files);
    println!(
        "failover of a supernode with {orphans} leaves: every share searchable again after {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
}

/// How long the quiet network is watched (`KAZOO_QUIET_SECS`, default 300).
fn quiet_for() -> Duration {
    let secs = std::env::var("KAZOO_QUIET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

#[test]
fn at_two_percent_loss_nothing_alive_fails_over() {
    let _alone = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(net) = Net::new_or_skip("quiet_network") else {
        return;
    };
    let link = Link::new()
        .rate_mbit(100)
        .delay(Duration::from_millis(10))
        .loss_pct(2.0);
    let (sns, sn_addrs) = supernodes(&net, link);
    for sn in &sns[1..] {
        sn.status_until(|s| s["peers"].as_u64() >= Some(2));
    }
    let (leaves, _) = leaves(&net, link, &sn_addrs, 6, "quiet");
    let settled: Vec<serde_json::Value> = leaves
        .iter()
        .map(|l| {
            l.status_until(|s| {
                s["supernode"].is_string() && s["shared_files"] == 1 && !s["reachability"].is_null()
            })
        })
        .collect();
    let peers: Vec<serde_json::Value> = sns.iter().map(|sn| sn.status()["peers"].clone()).collect();
    let end = Instant::now() + quiet_for();
    let mut checks = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(5));
        checks += 1;
        for (i, (leaf, then)) in leaves.iter().zip(&settled).enumerate() {
            let now = leaf.status();
            for key in ["role", "supernode", "since", "uplink_reason"] {
                assert_eq!(
                    now[key],
                    then[key],
                    "leaf {i} ({:?}) changed {key} after {checks} checks at 2 % loss: {now}\n{}",
                    site(i),
                    leaf.log_tail()
                );
            }
        }
        for (sn, then) in sns.iter().zip(&peers) {
            let now = sn.status();
            assert_eq!(now["role"], "supernode");
            assert_eq!(now["peers"], *then, "a peering dropped: {now}");
        }
    }
}
