//! IPv6, with the real binary on `::1`: a supernode and two leaves over IPv6 (hits carry the
//! v6 address, downloads verify), and IPv4 and IPv6 leaves on one dual-stack supernode, where
//! an IPv4 peer is known by its plain IPv4 address, never the v4-mapped `::ffff:…` form.
//! And the same inside the test network (`crates/testnet`, its dual-stack public segment),
//! where every node has addresses of its own (needs root: a failure under CI=true, skipped
//! with a notice otherwise).

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::bin::{json, json_lines, kazoo, run, until, write_config, Proc};
use common::kazoo_net::{KazooNode, NodeSpec, PORT};
use kazoo_testnet::{Host, Link, Net};

/// `kazoo run` with its logs in `<dir>/<name>.log`.
fn spawn(dir: &Path, config: &Path, name: &str) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let child = kazoo(config, &["run", "--log-file", log.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn listen_of(config: &Path) -> SocketAddr {
    common::bin::listen(config).parse().unwrap()
}

/// A node `name` listening on `listen`, sharing `<name>/shared` with one file of `data`.
fn node(dir: &Path, name: &str, role: &str, listen: &str, bootstrap: &str, data: &[u8]) -> PathBuf {
    let shared = dir.join(name).join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join(format!("{name} file.bin")), data).unwrap();
    let bootstrap = if bootstrap.is_empty() {
        String::new()
    } else {
        format!("[network]\nbootstrap = [\"{bootstrap}\"]\n")
    };
    write_config(
        dir,
        name,
        &format!(
            "[node]\nrole = \"{role}\"\nlisten = \"{listen}\"\ndata_dir = \"{name}/data\"\n\
             [share]\ndirs = [\"{name}/shared\"]\nrescan_secs = 1\n{bootstrap}"
        ),
    )
}

/// The hit for `name` from a search at `config` once one lists a provider; its providers'
/// addresses.
fn providers_of(config: &Path, word: &str, name: &str) -> Vec<SocketAddr> {
    let out = until(config, &["search", "--json", word], |o| {
        o.status.success() && json_lines(o).iter().any(|h| h["name"] == name)
    });
    let hit = json_lines(&out)
        .into_iter()
        .find(|h| h["name"] == name)
        .unwrap();
    hit_providers(&hit)
}

/// `kazoo get` of `data`'s hash from `config` into `dir/out`; the bytes must be equal.
fn get_verified(config: &Path, dir: &Path, out: &str, data: &[u8]) {
    let hash = blake3::hash(data).to_hex().to_string();
    let path = dir.join(out);
    let got = run(
        config,
        &["get", "--json", &hash, "-o", path.to_str().unwrap()],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn a_supernode_and_two_leaves_over_ipv6_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn = node(dir, "sn", "supernode", "[::1]:0", "", b"sn");
    let _sn = spawn(dir, &sn, "sn");
    let sn_addr = listen_of(&sn);
    assert!(sn_addr.is_ipv6(), "{sn_addr}");
    let entry = sn_addr.to_string();
    let a_data = common::bytes(700_000, 61);
    let a = node(dir, "a", "leaf", "[::1]:0", &entry, &a_data);
    let _a = spawn(dir, &a, "a");
    let a_addr = listen_of(&a);
    let b = node(dir, "b", "leaf", "[::1]:0", &entry, b"b");
    let _b = spawn(dir, &b, "b");
    // b's search (through its supernode, over IPv6) names a at its v6 address.
    let providers = providers_of(&b, "file", "a file.bin");
    assert!(providers.contains(&a_addr), "{providers:?} lacks {a_addr}");
    get_verified(&b, dir, "from a over v6.bin", &a_data);
}

#[test]
fn ipv4_and_ipv6_leaves_on_one_dual_stack_supernode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn = node(dir, "sn", "supernode", "[::]:0", "", b"sn");
    let _sn = spawn(dir, &sn, "sn");
    let port = listen_of(&sn).port();
    let four_data = common::bytes(300_000, 4);
    let six_data = common::bytes(300_000, 6);
    let four = node(
        dir,
        "four",
        "leaf",
        "127.0.0.1:0",
        &format!("127.0.0.1:{port}"),
        &four_data,
    );
    let six = node(
        dir,
        "six",
        "leaf",
        "[::1]:0",
        &format!("[::1]:{port}"),
        &six_data,
    );
    let _four = spawn(dir, &four, "four");
    let _six = spawn(dir, &six, "six");
    let four_addr = listen_of(&four);
    let six_addr = listen_of(&six);
    // The supernode knows the IPv4 leaf by its IPv4 address (not ::ffff:127.0.0.1).
    assert_eq!(providers_of(&sn, "four", "four file.bin"), vec![four_addr]);
    assert_eq!(providers_of(&sn, "six", "six file.bin"), vec![six_addr]);
    let status = json(&until(&sn, &["status", "--json"], |o| {
        o.status.success() && json(o)["leaves"] == 2
    }));
    assert_eq!(status["leaves"], 2);
    // A dual-stack downloader gets from both.
    let any = node(
        dir,
        "any",
        "leaf",
        "[::]:0",
        &format!("[::1]:{port}"),
        b"any",
    );
    get_verified(&any, dir, "four copy.bin", &four_data);
    get_verified(&any, dir, "six copy.bin", &six_data);
}

/// A leaf on `host` listening on `ip` (port 0), joining `entry`, sharing `file` if given.
fn testnet_leaf(
    host: &Host,
    ip: IpAddr,
    entry: SocketAddr,
    file: Option<(&str, &[u8])>,
) -> KazooNode {
    let files = file
        .map(|(name, data)| vec![(name.to_owned(), data.to_vec())])
        .unwrap_or_default();
    KazooNode::start_on(host, ip, NodeSpec::leaf(vec![entry], files))
}

/// The address `node`'s supernode observed it at, once its dial back is done.
fn observed(node: &KazooNode) -> SocketAddr {
    let status = node.status_until(|s| !s["reachability"].is_null());
    assert_eq!(status["reachability"]["class"], "reachable", "{status}");
    status["reachability"]["observed"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The addresses of a hit's providers.
fn hit_providers(hit: &serde_json::Value) -> Vec<SocketAddr> {
    hit["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["addr"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// `kazoo get --json` of `data` at `node`: the bytes must be equal; how each source that
/// connected was reached.
fn testnet_get(node: &KazooNode, data: &[u8], source: &KazooNode) -> Vec<String> {
    let got = node.get(blake3::hash(data).to_hex().as_ref());
    assert!(
        got.status.success(),
        "{}\n--- source log\n{}\n--- downloader log\n{}",
        String::from_utf8_lossy(&got.stderr),
        source.log_tail(),
        node.log_tail()
    );
    let report = common::kazoo_net::json(&got);
    let path = report["path"].as_str().expect("path");
    assert_eq!(std::fs::read(path).unwrap(), data, "bytes");
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["reached"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_dual_stack_supernode_in_the_test_network_serves_both_families() {
    let Some(net) = Net::new_or_skip("ipv6_testnet") else {
        return;
    };
    let wan = Link::new().delay(Duration::from_millis(5)).rate_mbit(100);
    let hosts: Vec<Host> = ["sn", "witness", "six_a", "six_b", "four"]
        .iter()
        .map(|name| net.public_host(name, wan).unwrap())
        .collect();
    let [sn_host, witness_host, a_host, b_host, four_host] = &hosts[..] else {
        unreachable!()
    };
    let any6 = IpAddr::from(Ipv6Addr::UNSPECIFIED);
    let sn = KazooNode::start_on(sn_host, any6, NodeSpec::supernode(vec![]));
    let sn_status = sn.status();
    assert_eq!(sn_status["listen"], format!("[::]:{PORT}"), "{sn_status}");
    let sn_id = sn_status["node_id"].as_str().unwrap().to_owned();
    // Dual-stack leaves join by the supernode's IPv6 entry, the IPv4-only one by its IPv4.
    let entry6 = SocketAddr::from((sn_host.addr6().unwrap(), PORT));
    let entry4 = SocketAddr::from((sn_host.addr(), PORT));
    // A second supernode, peered over IPv6: the witness that dials each leaf back, at the
    // leaf's own family's address.
    let _witness = KazooNode::start_on(witness_host, any6, NodeSpec::supernode(vec![entry6]));
    sn.status_until(|s| s["peers"].as_u64() >= Some(1));
    let six_data = common::bytes(900_000, 66);
    let four_data = common::bytes(800_000, 44);
    let a = testnet_leaf(a_host, any6, entry6, Some(("six source.bin", &six_data)));
    let b = testnet_leaf(b_host, any6, entry6, None);
    let four = testnet_leaf(
        four_host,
        IpAddr::from([0, 0, 0, 0]),
        entry4,
        Some(("four source.bin", &four_data)),
    );
    a.wait_joined(&sn_id, 1);
    b.wait_joined(&sn_id, 0);
    four.wait_joined(&sn_id, 1);
    sn.status_until(|s| s["leaves"] == 3 && s["index_files"] == 2);

    // Each is seen at its own family's address, and the witness's dial back reached it there.
    // (One line per leaf, looked for by its id: how many lines there are is not fixed, a
    // leaf that joins again is checked again.)
    let witnessed = |leaf: &KazooNode| {
        let short = leaf.status()["node_id"].as_str().unwrap()[..8].to_owned();
        sn.log_until(&format!("a witnessed dial back of {short}"), |l| {
            l.contains("dial back by a peer")
                && l.contains(&format!("leaf={short}"))
                && l.contains("answered=true")
        });
    };
    let a_addr = observed(&a);
    assert_eq!(
        a_addr.ip(),
        IpAddr::from(a_host.addr6().unwrap()),
        "{a_addr}"
    );
    assert_eq!(observed(&b).ip(), IpAddr::from(b_host.addr6().unwrap()));
    let four_addr = observed(&four);
    assert_eq!(
        four_addr.ip(),
        IpAddr::from(four_host.addr()),
        "not v4-mapped"
    );
    for leaf in [&a, &b, &four] {
        witnessed(leaf);
    }

    // A search over IPv6 names the source at its IPv6 address; so does the IPv4-only leaf's,
    // through the one supernode.
    let hash6 = blake3::hash(&six_data).to_hex().to_string();
    let hit = b.search_until(&["six"], &hash6);
    assert_eq!(hit_providers(&hit), vec![a_addr], "{hit}");
    let hit = four.search_until(&["six"], &hash6);
    assert_eq!(hit_providers(&hit), vec![a_addr], "{hit}");
    // The dual-stack leaf downloads it over IPv6 by a plain dial; the bytes verify.
    assert_eq!(testnet_get(&b, &six_data, &a), ["direct"]);
    // And finds and downloads the IPv4 leaf's file over IPv4, at its plain IPv4 address.
    let hash4 = blake3::hash(&four_data).to_hex().to_string();
    let hit = b.search_until(&["four"], &hash4);
    assert_eq!(hit_providers(&hit), vec![four_addr], "{hit}");
    assert_eq!(testnet_get(&b, &four_data, &four), ["direct"]);
    // The IPv4-only leaf cannot dial the IPv6 addresses it is given (its socket has no
    // IPv6; b, which shares its downloads, is now a second IPv6 source), so it asks through
    // the supernode for reverse connections: a source's dual-stack socket dials the IPv4
    // address the supernode saw the downloader at.
    let reached = testnet_get(&four, &six_data, &a);
    assert!(
        !reached.is_empty() && reached.iter().all(|r| r == "reverse"),
        "{reached:?}"
    );
}

#[test]
fn a_witness_without_ipv6_leaves_an_ipv6_leafs_dial_back_to_the_supernode() {
    let Some(net) = Net::new_or_skip("ipv6_witness") else {
        return;
    };
    let wan = Link::new().delay(Duration::from_millis(5)).rate_mbit(100);
    let hosts: Vec<Host> = ["sn", "witness", "six"]
        .iter()
        .map(|name| net.public_host(name, wan).unwrap())
        .collect();
    let [sn_host, witness_host, six_host] = &hosts[..] else {
        unreachable!()
    };
    let sn6 = SocketAddr::from((sn_host.addr6().unwrap(), PORT));
    let disabled = witness_host
        .command("sysctl")
        .args([
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])
        .status()
        .expect("sysctl runs");
    assert!(disabled.success());
    let no_route = witness_host
        .run(|| std::net::UdpSocket::bind("[::]:0").and_then(|s| s.connect(sn6)))
        .expect("runs in the witness's namespace");
    assert!(no_route.is_err(), "the witness still has IPv6");

    let sn = KazooNode::start_on(
        sn_host,
        IpAddr::from(Ipv6Addr::UNSPECIFIED),
        NodeSpec::supernode(vec![]),
    );
    let entry4 = SocketAddr::from((sn_host.addr(), PORT));
    let _witness = KazooNode::start_on(
        witness_host,
        IpAddr::from([0, 0, 0, 0]),
        NodeSpec::supernode(vec![entry4]),
    );
    sn.status_until(|s| s["peers"].as_u64() >= Some(1));
    // An IPv6 leaf: the witness has no route to it, says so, and the supernode dials it
    // back itself, so the open host is found reachable (not taken for firewalled).
    let six = testnet_leaf(six_host, IpAddr::from(Ipv6Addr::UNSPECIFIED), sn6, None);
    let seen = observed(&six);
    assert_eq!(seen.ip(), IpAddr::from(six_host.addr6().unwrap()));
    sn.log_until("the witness's refusal", |l| {
        l.contains("no dial back by a peer") && l.contains("cannot reach")
    });
}
