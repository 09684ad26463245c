//! Throughput benchmark: hashing and loopback download, each against a ceiling measured in
//! the same run. `cargo bench --bench transfer [-- --size-mib N --sources 1,2,4]`.
//!
//! * hashing: kazoo's piece tree (content id + manifest) vs single-threaded `blake3` over the
//!   same bytes in memory, and kazoo hashing the file from disk (page cache);
//! * download: raw quinn (one connection, one stream, kazoo's transport settings, no kazoo
//!   protocol) vs `get` of the same file from 1, 2, 4, 8 sources, verification included;
//! * three sources capped at a quarter of the ceiling each, with and without a fourth source
//!   capped at a tenth of that (the slow source must not hold the download back);
//! * peak resident memory of the real `kazoo get` process downloading from 4 sources.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kazoo_common::config::{BootstrapEntry, Config, RoleSetting};
use kazoo_common::hash::{hash_file, hash_reader};
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Timeouts};
use kazoo_common::wire::ALPN;
use kazoo_common::ContentId;
use kazoo_leaf::{Node, StartOptions};

struct Args {
    size: usize,
    sources: Vec<usize>,
}

fn args() -> Args {
    let mut args = Args {
        size: 1024 << 20,
        sources: vec![1, 2, 4, 8],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--size-mib" => {
                if let Some(v) = it.next().and_then(|v| v.parse::<usize>().ok()) {
                    args.size = v << 20;
                }
            }
            "--sources" => {
                if let Some(v) = it.next() {
                    args.sources = v.split(',').filter_map(|n| n.parse().ok()).collect();
                }
            }
            _ => {}
        }
    }
    args
}

fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mbps(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

struct Row {
    what: String,
    mbps: f64,
    ceiling: f64,
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("{:<48} {:>10} {:>8}", "measurement", "MB/s", "ratio");
    for r in rows {
        println!(
            "{:<48} {:>10.0} {:>8.2}",
            r.what,
            r.mbps,
            r.mbps / r.ceiling
        );
    }
}

fn hashing(data: &[u8], path: &Path) -> Vec<Row> {
    let started = Instant::now();
    let reference = blake3::Hasher::new().update(data).finalize();
    let ceiling = mbps(data.len(), started.elapsed().as_secs_f64());
    let started = Instant::now();
    let (id, _) = hash_reader(data, data.len() as u64).expect("hash in memory");
    let tree = mbps(data.len(), started.elapsed().as_secs_f64());
    assert_eq!(id, ContentId::from(reference));
    let started = Instant::now();
    let (id, _) = hash_file(path).expect("hash file");
    let file = mbps(data.len(), started.elapsed().as_secs_f64());
    assert_eq!(id, ContentId::from(reference));
    vec![
        Row {
            what: "blake3 single-threaded, memory (ceiling)".into(),
            mbps: ceiling,
            ceiling,
        },
        Row {
            what: "kazoo piece tree, memory".into(),
            mbps: tree,
            ceiling,
        },
        Row {
            what: "kazoo piece tree, file (page cache)".into(),
            mbps: file,
            ceiling,
        },
    ]
}

/// One QUIC connection, one stream, `len` bytes, kazoo's transport settings.
async fn raw_quinn(len: usize) -> f64 {
    let timeouts = Timeouts::default();
    let server_id = Identity::generate().expect("identity");
    let server = transport::endpoint(&server_id, "127.0.0.1:0".parse().unwrap(), timeouts)
        .expect("endpoint");
    let addr = server.local_addr().expect("addr");
    let sender = tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("connection");
        let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
        let mut start = [0u8; 1];
        recv.read_exact(&mut start).await.expect("start byte");
        let block = vec![0x5au8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            send.write_all(&block[..n]).await.expect("send");
            left -= n;
        }
        send.finish().expect("finish");
        conn.closed().await;
    });
    let client_id = Identity::generate().expect("identity");
    let client = transport::endpoint(&client_id, "127.0.0.1:0".parse().unwrap(), timeouts)
        .expect("endpoint");
    let config = transport::client_config(&client_id, None, timeouts, ALPN).expect("client config");
    let conn = client
        .connect_with(config, addr, "kazoo")
        .expect("connect")
        .await
        .expect("connection");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let started = Instant::now();
    send.write_all(&[1]).await.expect("start");
    let mut got = 0;
    while let Some(chunk) = recv.read_chunk(1 << 20, true).await.expect("read") {
        got += chunk.bytes.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(got, len);
    conn.close(0u32.into(), b"done");
    let _ = sender.await;
    mbps(len, seconds)
}

fn node_config(
    root: &Path,
    name: &str,
    role: RoleSetting,
    share: Option<&Path>,
    sn: Option<SocketAddr>,
) -> Config {
    let mut config = Config::default();
    config.node.role = role;
    config.node.listen = SocketAddr::from(([127, 0, 0, 1], 0)).into();
    config.node.data_dir = root.join(name);
    config.share.dirs = share.map(|p| vec![p.to_path_buf()]).unwrap_or_default();
    config.share.rescan_secs = 3600;
    config.network.bootstrap = sn
        .map(|addr| {
            vec![BootstrapEntry {
                node: None,
                addr: addr.into(),
            }]
        })
        .unwrap_or_default();
    config
}

/// A supernode and sources sharing the bench file, each source capped at its rate (KiB/s,
/// 0 = unlimited).
struct Swarm {
    run: PathBuf,
    sn: Node,
    sources: Vec<Node>,
}

fn options() -> StartOptions {
    StartOptions {
        ..StartOptions::default()
    }
}

impl Swarm {
    async fn start(
        root: &Path,
        tag: &str,
        share: &Path,
        id: ContentId,
        rates_kib: &[u64],
    ) -> Swarm {
        let run = root.join(tag);
        let sn = Node::start(
            node_config(&run, "sn", RoleSetting::Supernode, None, None),
            options(),
        )
        .await
        .expect("supernode");
        let mut sources = Vec::new();
        for (i, rate) in rates_kib.iter().enumerate() {
            let mut config = node_config(
                &run,
                &format!("source{i}"),
                RoleSetting::Leaf,
                Some(share),
                Some(sn.listen_addr()),
            );
            config.share.upload_rate_kib = *rate;
            let node = Node::start(config, options()).await.expect("source");
            node.wait_ready(Duration::from_secs(30))
                .await
                .expect("source joins");
            sources.push(node);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let hits = sn.search(&[id.to_hex()], 1).await.unwrap_or_default();
            if hits
                .first()
                .is_some_and(|h| h.sources as usize >= rates_kib.len())
            {
                break;
            }
            assert!(Instant::now() < deadline, "sources never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Swarm { run, sn, sources }
    }

    fn getter_config(&self, name: &str) -> Config {
        node_config(
            &self.run,
            name,
            RoleSetting::Leaf,
            None,
            Some(self.sn.listen_addr()),
        )
    }

    /// Downloads in this process; returns seconds.
    async fn get(&self, id: ContentId, len: usize) -> f64 {
        let getter = Node::start(self.getter_config("getter"), options())
            .await
            .expect("getter");
        getter
            .wait_ready(Duration::from_secs(30))
            .await
            .expect("getter joins");
        let (tx, _rx) = tokio::sync::watch::channel(Default::default());
        let out = self.run.join("out.bin");
        let report = getter
            .get(id, Some(out.clone()), tx)
            .await
            .expect("download");
        assert_eq!(report.bytes as usize, len);
        getter.shutdown().await;
        let _ = std::fs::remove_file(out);
        report.seconds
    }

    /// Downloads with the real `kazoo get` in its own process; returns seconds and its peak
    /// resident memory in MiB.
    async fn get_in_process_of_its_own(&self, id: ContentId, len: usize) -> (f64, f64) {
        let config = self.getter_config("cli-getter");
        let config_path = self.run.join("cli-getter.toml");
        let text = format!(
            "[node]\nrole = \"leaf\"\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n[network]\nbootstrap = [\"{}\"]\n",
            config.node.data_dir, self.sn.listen_addr()
        );
        std::fs::write(&config_path, text).expect("config");
        let out = self.run.join("cli-out.bin");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kazoo"))
            .arg("--config")
            .arg(&config_path)
            .args(["get", "--json", &id.to_hex(), "-o"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kazoo get starts");
        let pid = child.id().expect("pid");
        let status = format!("/proc/{pid}/status");
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watcher = {
            let peak = std::sync::Arc::clone(&peak);
            tokio::spawn(async move {
                while let Ok(text) = tokio::fs::read_to_string(&status).await {
                    if let Some(kib) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        peak.fetch_max(kib, std::sync::atomic::Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let output = child.wait_with_output().await.expect("kazoo get ends");
        watcher.abort();
        assert!(output.status.success(), "kazoo get failed");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("report");
        assert_eq!(report["bytes"].as_u64(), Some(len as u64));
        let _ = std::fs::remove_file(out);
        let seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
        (
            seconds,
            peak.load(std::sync::atomic::Ordering::SeqCst) as f64 / 1024.0,
        )
    }

    async fn stop(self) {
        for node in self.sources {
            node.shutdown().await;
        }
        self.sn.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).expect("share dir");
    let data = content(args.size);
    let path = share.join("bench file.bin");
    std::fs::write(&path, &data).expect("write file");
    println!(
        "kazoo transfer benchmark: {} MiB file, {} cores",
        args.size >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    print_table("hashing", &hashing(&data, &path));
    let id = ContentId::from(blake3::hash(&data));
    drop(data);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let len = args.size;
        let ceiling = raw_quinn(len).await;
        let row = |what: String, mbps: f64| Row {
            what,
            mbps,
            ceiling,
        };
        let mut rows = vec![row(
            "raw quinn, 1 connection, 1 stream (ceiling)".into(),
            ceiling,
        )];
        for &n in &args.sources {
            let swarm = Swarm::start(dir.path(), &format!("s{n}"), &share, id, &vec![0; n]).await;
            let seconds = swarm.get(id, len).await;
            rows.push(row(
                format!("kazoo get, {n} source{}", if n == 1 { "" } else { "s" }),
                mbps(len, seconds),
            ));
            swarm.stop().await;
        }
        print_table("loopback download (verification included)", &rows);

        // Throttled: three sources at a quarter of the ceiling each, and one at a tenth of that.
        let fast = (ceiling * 1e6 / 4.0 / 1024.0) as u64;
        let three = Swarm::start(dir.path(), "fast3", &share, id, &[fast; 3]).await;
        let t3 = three.get(id, len).await;
        three.stop().await;
        let four = Swarm::start(
            dir.path(),
            "slow1",
            &share,
            id,
            &[fast, fast, fast, fast / 10],
        )
        .await;
        let t4 = four.get(id, len).await;
        four.stop().await;
        println!(
            "\nthrottled sources (fast = {:.0} MB/s each, slow = fast / 10)",
            fast as f64 * 1024.0 / 1e6
        );
        println!("{:<48} {:>10} {:>8}", "measurement", "seconds", "ratio");
        println!(
            "{:<48} {:>10.2} {:>8.2}",
            "3 fast sources (reference)", t3, 1.0
        );
        println!(
            "{:<48} {:>10.2} {:>8.2}",
            "3 fast + 1 slow source",
            t4,
            t4 / t3
        );

        // Memory: the real binary as the downloader, 4 sources.
        let swarm = Swarm::start(dir.path(), "mem", &share, id, &[0; 4]).await;
        let (seconds, peak_mib) = swarm.get_in_process_of_its_own(id, len).await;
        swarm.stop().await;
        println!("\ndownloader process (`kazoo get`, 4 sources)");
        println!("{:<48} {:>10} {:>8}", "measurement", "value", "ratio");
        println!(
            "{:<48} {:>10.0} {:>8.2}",
            "MB/s",
            mbps(len, seconds),
            mbps(len, seconds) / ceiling
        );
        println!(
            "{:<48} {:>10.1} {:>8}",
            "peak resident memory, MiB (VmHWM)", peak_mib, ""
        );
    });
}
