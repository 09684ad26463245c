//! Each way of reaching a source, in the test network (`crates/testnet`, needs root): a
//! public supernode and pairs of leaves on 100 Mbit/s access links of 10 ms one way (40 ms
//! between two leaves), each pair placed so that one path is the one that works — `direct`
//! (public source), `reverse` (port-restricted source, public downloader), `punched` (both
//! port-restricted) and `relayed` (symmetric source, port-restricted downloader). For each:
//! the time to first byte of a one-piece file (from the download's start, sources known, to
//! its verified piece: the path's set-up, the manifest, the piece; as a ratio to the least it
//! can take) and the throughput of a 24 MiB file over its transfer alone (first source
//! connected to last piece, from `kazoo get --json`'s `connected_secs`), as a ratio to the
//! link rate and to the direct path measured in the same run; and the supernode's CPU time
//! per relayed MiB.
//!
//! `cargo bench --bench paths`. The supernode relays with `relay.rate_kib = 65536` here, so
//! the relay's own cost shows, not the default cap (4096 KiB/s, 0.34 of this link).

#[path = "../tests/common/kazoo_net.rs"]
#[allow(dead_code)]
mod kazoo_net;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_net::{json, KazooNode, NodeSpec, PORT};
use kazoo_testnet::{Host, Link, Nat, Net};

const LINK_MBIT: u32 = 100;
/// One way, per access link: two leaves are 2 × 10 ms apart, 40 ms round trip.
const LINK_DELAY: Duration = Duration::from_millis(10);
const BIG: usize = 24 << 20;
const SMALL: usize = 200 << 10;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based); clock ticks are 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn leaf(host: &Host, sn: SocketAddr, files: Vec<(String, Vec<u8>)>) -> KazooNode {
    KazooNode::start(host, NodeSpec::leaf(vec![sn], files))
}

/// What one `get` measured.
struct Got {
    /// Wall time of the `kazoo get` process (lookup of sources included).
    wall: f64,
    /// How the source was reached.
    reached: String,
    /// Download start (sources known) to the first verified piece.
    first_piece: f64,
    /// First source connected to the last piece verified: the transfer alone.
    transfer: f64,
}

/// A `get` of `hash` by `node`.
fn get(node: &KazooNode, hash: &str) -> Got {
    let started = Instant::now();
    let out = node.get(hash);
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "get failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log_tail()
    );
    let report = json(&out);
    let secs = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    Got {
        wall,
        reached: report["sources"][0]["reached"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        first_piece: secs("first_piece_secs"),
        transfer: secs("seconds") - secs("connected_secs"),
    }
}

fn main() {
    let Some(net) = Net::new_or_skip("bench_paths") else {
        return;
    };
    let link = Link::new().rate_mbit(LINK_MBIT).delay(LINK_DELAY);
    let sn_host = net.public_host("sn", link).unwrap();
    let sn_addr = SocketAddr::from((sn_host.addr(), PORT));
    let sn = KazooNode::start(
        &sn_host,
        NodeSpec {
            extra: "[relay]\nrate_kib = 65536\n",
            ..NodeSpec::supernode(vec![])
        },
    );
    let sn_id = sn.status()["node_id"].as_str().unwrap().to_owned();
    let link_bytes_per_sec = f64::from(LINK_MBIT) * 1e6 / 8.0;

    let kinds: [(&str, Option<Nat>, Option<Nat>); 4] = [
        ("direct", None, None),
        ("reverse", Some(Nat::PortRestricted), None),
        (
            "punched",
            Some(Nat::PortRestricted),
            Some(Nat::PortRestricted),
        ),
        ("relayed", Some(Nat::Symmetric), Some(Nat::PortRestricted)),
    ];
    let rtt = 4.0 * LINK_DELAY.as_secs_f64();
    // The least a first byte can take over a path of round trip `rtt`: the handshake, the
    // manifest and the piece request (a round trip each), and the one-piece file at the link
    // rate.
    let least_first = |rtt: f64| 3.0 * rtt + SMALL as f64 / link_bytes_per_sec;
    println!(
        "paths: {LINK_MBIT} Mbit/s links, {:.0} ms RTT between leaves; one-piece file {} KiB, big file {} MiB",
        rtt * 1000.0,
        SMALL >> 10,
        BIG >> 20
    );
    println!(
        "first byte: the one-piece file's download start (sources known) to its verified piece, \
         ÷ the least it can take (3 RTT + the piece at the link rate: {:.0} ms; relayed, through \
         the supernode, twice the RTT: {:.0} ms); `get` wall: the \
         whole `kazoo get` of it (process, source lookup, download); throughput: the big file \
         from its first source connected to its last piece verified (each `get` dials afresh, \
         so the path's set-up is left out), ÷ the configured link rate",
        least_first(rtt) * 1000.0,
        least_first(2.0 * rtt) * 1000.0
    );
    println!();
    println!(
        "| path | reached (small / big) | `get` wall (s) | first byte (s) | ÷ least | transfer (s) | throughput (MB/s) | ÷ link rate | ÷ direct |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut direct_rate = f64::NAN;
    let mut relay_cost = None;
    for (i, (kind, source_nat, downloader_nat)) in kinds.iter().enumerate() {
        let place = |side: &str, nat: &Option<Nat>| -> Host {
            let name = format!("{side}{i}");
            match nat {
                None => net.public_host(&name, link).unwrap(),
                Some(nat) => net
                    .home(&format!("r{name}"), *nat, link)
                    .unwrap()
                    .host(&name)
                    .unwrap(),
            }
        };
        let small = content(SMALL, i as u8);
        let big = content(BIG, 100 + i as u8);
        let (small_hash, big_hash) = (
            blake3::hash(&small).to_hex().to_string(),
            blake3::hash(&big).to_hex().to_string(),
        );
        let source = leaf(
            &place("s", source_nat),
            sn_addr,
            vec![("small.bin".into(), small), ("big.bin".into(), big)],
        );
        let downloader = leaf(&place("d", downloader_nat), sn_addr, vec![]);
        source.wait_joined(&sn_id, 2);
        downloader.wait_joined(&sn_id, 0);
        for node in [&source, &downloader] {
            node.status_until(|s| !s["reachability"].is_null());
        }
        let small = get(&downloader, &small_hash);
        let relayed_before = sn.status()["relay"]["relayed_bytes"].as_u64().unwrap_or(0);
        let cpu_before = cpu_secs(sn.pid());
        let big = get(&downloader, &big_hash);
        let cpu = cpu_secs(sn.pid()) - cpu_before;
        let relayed = sn.status()["relay"]["relayed_bytes"].as_u64().unwrap_or(0) - relayed_before;
        let rate = BIG as f64 / big.transfer.max(1e-3);
        if *kind == "direct" {
            direct_rate = rate;
        }
        if big.reached == "relayed" && relayed > 0 {
            relay_cost = Some((cpu, relayed));
        }
        println!(
            "| {kind} | {} / {} | {:.2} | {:.3} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |",
            small.reached,
            big.reached,
            small.wall,
            small.first_piece,
            small.first_piece / least_first(if *kind == "relayed" { 2.0 * rtt } else { rtt }),
            big.transfer,
            rate / 1e6,
            rate / link_bytes_per_sec,
            rate / direct_rate
        );
    }
    match relay_cost {
        Some((cpu, relayed)) => println!(
            "supernode CPU per relayed MiB: {:.1} ms ({cpu:.2} s for {:.1} MiB relayed, both directions)",
            cpu * 1000.0 / (relayed as f64 / f64::from(1 << 20)),
            relayed as f64 / f64::from(1 << 20)
        ),
        None => println!("supernode CPU per relayed MiB: nothing was relayed"),
    }
}
