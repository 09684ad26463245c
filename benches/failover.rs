//! Failover benchmark: `cargo bench --bench failover`.
//!
//! 25 supernodes run as real `kazoo run` processes; 250 auto leaves (eligible heirs) run in
//! this process over QUIC on loopback, 10 per supernode, each sharing one file named after
//! its first supernode. Twenty supernodes are killed with SIGKILL one after another; for each,
//! the time from the kill until every orphaned leaf is attached again (to an heir that
//! promoted itself, or another supernode) and every orphaned file is searchable from an
//! observer leaf elsewhere in the network. Prints p50/p99/max and the shares lost.
//!
//! Then the same sequence on the in-memory network (`failover/mem.rs`) at ten times the
//! size: 250 supernodes and 2,500 leaves, the same `Supernode` and `LeafElection` logic on a
//! virtual clock. `-- --quic` or `-- --mem` runs one of the two.

#[path = "common/mod.rs"]
mod common;
#[path = "failover/mem.rs"]
mod mem;

use common::percentile;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kazoo_common::config::{BootstrapEntry, Config, RoleSetting};
use kazoo_common::NodeId;
use kazoo_leaf::{Node, StartOptions};

const SUPERNODES: usize = 25;
const LEAVES_PER_SN: usize = 10;
const KILLS: usize = 20;
/// Supernodes killed in the in-memory run (more samples for the p99).
const MEM_KILLS: usize = 100;
const GIVE_UP: Duration = Duration::from_secs(30);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(config: &Path) -> Option<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kazoo"))
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn leaf_config(root: &Path, name: &str, role: RoleSetting, sn: SocketAddr) -> Config {
    let mut config = Config::default();
    config.node.role = role;
    config.node.listen = SocketAddr::from(([127, 0, 0, 1], 0)).into();
    config.node.data_dir = root.join(name).join("data");
    config.share.dirs = vec![root.join(name).join("shared")];
    config.share.rescan_secs = 60;
    config.network.bootstrap = vec![BootstrapEntry {
        node: None,
        addr: sn.into(),
    }];
    config
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only_mem = args.iter().any(|a| a == "--mem");
    let only_quic = args.iter().any(|a| a == "--quic");
    if !only_mem {
        quic();
    }
    if !only_quic {
        in_memory();
    }
}

fn print_times(times: &mut [f64], lost: (&str, usize), promoted: usize) {
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{:<52} {:>10} {:>8} {:>8}",
        "measurement", "value", "target", "ratio"
    );
    println!(
        "{:<52} {:>10.2} {:>8} {:>8}",
        "seconds until re-attached and searchable, p50",
        percentile(times, 0.5),
        "",
        ""
    );
    println!(
        "{:<52} {:>10.2} {:>8} {:>8.2}",
        "seconds until re-attached and searchable, p99",
        percentile(times, 0.99),
        "<= 3",
        percentile(times, 0.99) / 3.0
    );
    println!(
        "{:<52} {:>10.2} {:>8} {:>8}",
        "seconds until re-attached and searchable, max",
        times.last().copied().unwrap_or(f64::NAN),
        "",
        ""
    );
    // The floor: a dead supernode cannot be noticed before the QUIC idle timeout.
    println!(
        "{:<52} {:>10.2} {:>8} {:>8.2}",
        "p50 / QUIC idle timeout (the detection floor, 2 s)",
        percentile(times, 0.5),
        "",
        percentile(times, 0.5) / 2.0
    );
    println!("{:<52} {:>10} {:>8} {:>8}", lost.0, lost.1, "0", "");
    println!(
        "{:<52} {:>10} {:>8} {:>8}",
        "leaves that promoted themselves", promoted, "", ""
    );
}

fn in_memory() {
    let run = mem::MemRun {
        supernodes: 10 * SUPERNODES,
        leaves_per_sn: LEAVES_PER_SN,
        kills: MEM_KILLS,
        latency: Duration::from_millis(10),
    };
    let mut outcome = mem::run(&run);
    println!(
        "\nfailover, in-memory network: {} supernodes, {} auto leaves, {} supernodes killed one after another",
        run.supernodes,
        run.supernodes * run.leaves_per_sn,
        run.kills
    );
    println!(
        "(virtual clock, {} ms one-way latency; idle timeout 2 s, keep-alive 0.5 s; heir k waits k x 1 s; {} events in {:.1} s wall)",
        run.latency.as_millis(),
        outcome.events,
        outcome.wall
    );
    print_times(
        &mut outcome.times,
        ("shares lost (indexed nowhere at the end)", outcome.lost),
        outcome.promoted,
    );
    println!(
        "{:<52} {:>10} {:>8} {:>8.3}",
        "files found by one search each at the end (of all)",
        format!("{}/{}", outcome.found, outcome.files),
        "",
        outcome.found as f64 / outcome.files as f64
    );
    println!(
        "{:<52} {:>10} {:>8} {:>8}",
        "supernodes that demoted again (under-used)", outcome.demoted, "", ""
    );
}

fn quic() {
    let root = tempfile::tempdir().expect("temp dir");
    let root = root.path();
    // Supernode processes, each bootstrapped to the one before (gossip makes the mesh).
    let mut sns: Vec<(Proc, NodeId, SocketAddr)> = Vec::new();
    for i in 0..SUPERNODES {
        let dir = root.join(format!("sn{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let bootstrap = sns
            .last()
            .map(|(_, _, a)| format!("bootstrap = [\"{a}\"]\n"))
            .unwrap_or_default();
        let config = dir.join("kazoo.toml");
        std::fs::write(
            &config,
            format!("[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[network]\n{bootstrap}"),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_kazoo"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kazoo run");
        let proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let s = loop {
            if let Some(s) = status(&config) {
                break s;
            }
            assert!(Instant::now() < deadline, "supernode {i} did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let id: NodeId = s["node_id"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("node id");
        let addr: SocketAddr = s["listen"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("listen");
        sns.push((proc, id, addr));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let options = StartOptions { ..StartOptions::default() };
        let mut leaves: Vec<(Node, usize)> = Vec::new();
        for i in 0..SUPERNODES * LEAVES_PER_SN {
            let home = i % SUPERNODES;
            let name = format!("leaf{i}");
            let config = leaf_config(root, &name, RoleSetting::Auto, sns[home].2);
            std::fs::create_dir_all(&config.share.dirs[0]).expect("share dir");
            std::fs::write(config.share.dirs[0].join(format!("group{home} file{i}.bin")), name.as_bytes()).expect("file");
            let node = Node::start(config, options.clone()).await.expect("leaf");
            leaves.push((node, home));
        }
        let observer = Node::start(
            leaf_config(root, "observer", RoleSetting::Leaf, sns[SUPERNODES - 1].2),
            options.clone(),
        )
        .await
        .expect("observer");
        for (node, _) in &leaves {
            node.wait_ready(Duration::from_secs(30)).await.expect("leaf joins");
        }
        observer.wait_ready(Duration::from_secs(30)).await.expect("observer joins");
        let searchable = |group: usize| {
            let observer = observer.clone();
            async move {
                observer
                    .search(&[format!("group{group}")], 50)
                    .await
                    .map(|h| h.len())
                    .unwrap_or(0)
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for group in 0..SUPERNODES {
            while searchable(group).await < LEAVES_PER_SN {
                assert!(Instant::now() < deadline, "group {group} never became searchable");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut times = Vec::new();
        for (victim, (proc, victim_id, _)) in sns.iter_mut().enumerate().take(KILLS) {
            let victim_id = *victim_id;
            let orphans: Vec<&Node> = leaves
                .iter()
                .map(|(n, _)| n)
                .filter(|n| n.status().supernode == Some(victim_id))
                .collect();
            let _ = proc.0.kill();
            let killed = Instant::now();
            let attached = |n: &Node| {
                let s = n.status();
                s.role == "supernode" || s.supernode.is_some_and(|sn| sn != victim_id)
            };
            let mut done = None;
            while killed.elapsed() < GIVE_UP {
                if orphans.iter().all(|n| attached(n)) && searchable(victim).await >= LEAVES_PER_SN {
                    done = Some(killed.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            times.push(done.unwrap_or(GIVE_UP).as_secs_f64());
            eprintln!("kill {victim}: {} orphans, {:.2} s", orphans.len(), times.last().copied().unwrap_or(0.0));
        }
        // Every group's files, searched once more at the end.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut lost_at_end = 0;
        for group in 0..SUPERNODES {
            lost_at_end += LEAVES_PER_SN.saturating_sub(searchable(group).await);
        }
        let promoted = leaves.iter().filter(|(n, _)| n.status().role == "supernode").count();
        println!("\nfailover: {SUPERNODES} supernode processes, {} auto leaves in-process, {KILLS} supernodes killed with SIGKILL one after another", leaves.len());
        println!("(default timeouts: QUIC keep-alive 0.5 s, idle 2 s; heir k waits k x 1 s)");
        print_times(&mut times, ("shares lost (not found by a search at the end)", lost_at_end), promoted);
        observer.shutdown().await;
        for (node, _) in leaves {
            node.shutdown().await;
        }
    });
}
