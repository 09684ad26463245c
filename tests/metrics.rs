//! The metrics endpoint of the real binary: a supernode and two leaves as `kazoo run`
//! processes on loopback, each with `[metrics] listen`; their `/metrics` pages are scraped
//! over TCP while a file moves from one leaf to the other.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::bin::{json, kazoo, run, until, write_config, Proc, DEADLINE};

/// Searches a supernode started (for its leaves or itself).
const LOCAL_QUERIES: &str = "kazoo_queries_total{origin=\"local\"}";
/// Searches peer supernodes forwarded to a supernode that it answered.
const PEER_QUERIES: &str = "kazoo_queries_total{origin=\"peer\"}";

/// `kazoo run` with `config`, and the metrics address it prints on stdout.
fn spawn_with_metrics(config: &Path) -> (Proc, SocketAddr) {
    let mut child = kazoo(config, &["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kazoo run starts");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("kazoo run prints its metrics address");
        if let Some(url) = line.strip_prefix("metrics at http://") {
            let addr = url.strip_suffix("/metrics").expect("a /metrics url");
            return (proc, addr.parse().expect("an address"));
        }
    }
}

/// One scrape: the samples of `GET /metrics`, by series.
fn scrape(addr: SocketAddr) -> HashMap<String, u64> {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint answers");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut samples = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("NAME VALUE");
        samples.insert(series.to_owned(), value.parse().expect("an integer"));
    }
    samples
}

/// Scrapes `addr` until `ok` accepts the samples, failing after [`DEADLINE`].
fn scrape_until(
    addr: SocketAddr,
    what: &str,
    ok: impl Fn(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let samples = scrape(addr);
        if ok(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "timed out: {what}: {samples:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leaf_config(dir: &Path, name: &str, bootstrap: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join(name).join("shared")).unwrap();
    write_config(
        dir,
        name,
        &format!(
            "[node]\nrole = \"leaf\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}/data\"\n\
             [share]\ndirs = [\"{name}/shared\"]\nrescan_secs = 1\n\
             [network]\nbootstrap = [\"{bootstrap}\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
}

#[test]
fn metrics_count_leaves_entries_queries_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn_cfg = write_config(
        dir,
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (_sn, sn_metrics) = spawn_with_metrics(&sn_cfg);
    let status = json(&until(&sn_cfg, &["status", "--json"], |o| {
        o.status.success()
    }));
    let bootstrap = format!(
        "{}@{}",
        status["node_id"].as_str().unwrap(),
        status["listen"].as_str().unwrap()
    );
    let before = scrape(sn_metrics);
    assert_eq!(before["kazoo_role{role=\"supernode\"}"], 1);
    assert_eq!(before["kazoo_leaves"], 0);
    assert_eq!(before["kazoo_index_entries"], 0);
    // Configured as a supernode: its start is no promotion.
    assert_eq!(before["kazoo_promotions_total"], 0);

    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let hash = blake3::hash(&content).to_hex().to_string();
    let alice_cfg = leaf_config(dir, "alice", &bootstrap);
    std::fs::write(dir.join("alice/shared/metrics song.ogg"), &content).unwrap();
    let bob_cfg = leaf_config(dir, "bob", &bootstrap);
    let (_alice, alice_metrics) = spawn_with_metrics(&alice_cfg);
    let (_bob, bob_metrics) = spawn_with_metrics(&bob_cfg);

    let sn = scrape_until(sn_metrics, "two leaves and alice's file", |s| {
        s["kazoo_leaves"] == 2 && s["kazoo_index_entries"] == 1
    });
    assert_eq!(sn["kazoo_index_files"], 1);
    let alice = scrape_until(alice_metrics, "alice shares her file", |s| {
        s["kazoo_shared_files"] == 1
    });
    assert_eq!(alice["kazoo_role{role=\"leaf\"}"], 1);
    assert_eq!(alice["kazoo_uploaded_bytes_total"], 0);
    let bob = scrape(bob_metrics);
    assert_eq!(bob["kazoo_downloaded_bytes_total"], 0);
    assert_eq!(bob["kazoo_downloads_active"], 0);
    let queries = sn[LOCAL_QUERIES];

    // Bob's running node downloads the file (the CLI hands the get to it).
    let got = run(&bob_cfg, &["get", "--json", &hash]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let path = json(&got)["path"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(path).unwrap(), content);

    let size = content.len() as u64;
    let bob = scrape(bob_metrics);
    assert_eq!(bob["kazoo_downloaded_bytes_total"], size);
    assert_eq!(bob["kazoo_downloads_active"], 0);
    // Every piece came from alice (a piece re-requested after a timeout would count twice).
    scrape_until(alice_metrics, "alice's upload counted", |s| {
        s["kazoo_uploaded_bytes_total"] >= size
    });
    // Bob's lookup of the hash went through the supernode; bob now shares the file too.
    let sn = scrape_until(sn_metrics, "bob's copy indexed", |s| {
        s["kazoo_index_entries"] == 2
    });
    assert!(sn[LOCAL_QUERIES] > queries, "{sn:?}");
    assert_eq!(sn["kazoo_index_files"], 1);
    assert_eq!(sn["kazoo_failovers_total"], 0);
}

#[test]
fn a_supernode_counts_the_queries_its_peers_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn_config = |name: &str, bootstrap: &str| {
        write_config(
            dir,
            name,
            &format!(
                "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}\"\n\
                 [network]\nbootstrap = [{bootstrap}]\n\
                 [metrics]\nlisten = \"127.0.0.1:0\"\n"
            ),
        )
    };
    let address = |cfg: &Path| {
        let status = json(&until(cfg, &["status", "--json"], |o| o.status.success()));
        format!(
            "{}@{}",
            status["node_id"].as_str().unwrap(),
            status["listen"].as_str().unwrap()
        )
    };
    let one_cfg = sn_config("one", "");
    let (_one, one_metrics) = spawn_with_metrics(&one_cfg);
    let one = address(&one_cfg);
    let two_cfg = sn_config("two", &format!("\"{one}\""));
    let (_two, two_metrics) = spawn_with_metrics(&two_cfg);
    let two = address(&two_cfg);
    until(&one_cfg, &["status", "--json"], |o| {
        o.status.success() && json(o)["peers"] == 1
    });

    // Alice shares on supernode one; bob, a leaf of supernode two, searches for her file:
    // two starts the search, one answers it for its peer.
    let alice_cfg = leaf_config(dir, "alice", &one);
    std::fs::write(dir.join("alice/shared/peered tune.ogg"), b"a tune").unwrap();
    let (_alice, _) = spawn_with_metrics(&alice_cfg);
    let bob_cfg = leaf_config(dir, "bob", &two);
    let (_bob, _) = spawn_with_metrics(&bob_cfg);
    scrape_until(one_metrics, "alice's file indexed", |s| {
        s["kazoo_index_entries"] == 1
    });
    let before = scrape(one_metrics);
    let found = until(&bob_cfg, &["search", "--json", "peered", "tune"], |o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("peered tune.ogg")
    });
    assert!(found.status.success());
    let one_after = scrape_until(one_metrics, "one answered a peer's query", |s| {
        s[PEER_QUERIES] > before[PEER_QUERIES]
    });
    // Nobody on one searched: its own count stays.
    assert_eq!(one_after[LOCAL_QUERIES], before[LOCAL_QUERIES]);
    let two_after = scrape(two_metrics);
    assert!(two_after[LOCAL_QUERIES] >= 1, "{two_after:?}");
    assert_eq!(two_after[PEER_QUERIES], 0, "{two_after:?}");
}

#[test]
fn metrics_are_off_unless_configured_and_a_taken_address_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Without [metrics] the node prints no metrics address.
    let quiet_cfg = write_config(
        dir,
        "quiet",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"quiet\"\n",
    );
    let mut child = kazoo(&quiet_cfg, &["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut quiet = Proc(child);
    let mut printed = String::new();
    // The metrics address would follow this line at once.
    stdout.read_line(&mut printed).unwrap();
    assert!(printed.contains("listening on"), "{printed}");
    until(&quiet_cfg, &["status"], |o| o.status.success());
    quiet.0.kill().unwrap();
    quiet.0.wait().unwrap();
    stdout.read_to_string(&mut printed).unwrap();
    assert!(!printed.contains("metrics"), "{printed}");

    // A metrics address already in use stops `kazoo run` with a clear error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_cfg = write_config(
        dir,
        "busy",
        &format!(
            "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"busy\"\n\
             [metrics]\nlisten = \"{}\"\n",
            taken.local_addr().unwrap()
        ),
    );
    let out = kazoo(&busy_cfg, &["run"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serving metrics on"), "{stderr}");
}
