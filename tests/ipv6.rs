//! IPv6, with the real binary on `::1`: a supernode and two leaves over IPv6 (hits carry the
//! v6 address, downloads verify), and IPv4 and IPv6 leaves on one dual-stack supernode, where
//! an IPv4 peer is known by its plain IPv4 address, never the v4-mapped `::ffff:…` form.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::bin::{json, json_lines, kazoo, run, until, write_config, Proc};

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
    let out = until(config, &["status", "--json"], |o| o.status.success());
    json(&out)["listen"].as_str().unwrap().parse().unwrap()
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
    hit["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["addr"].as_str().unwrap().parse().unwrap())
        .collect()
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
