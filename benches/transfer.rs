//! Throughput benchmark: hashing and loopback download, each against a ceiling measured in
//! the same run. `cargo bench --bench transfer [-- --size-mib N --sources 1,2,4]`.
//!
//! * hashing: kazoo's piece tree (content id + manifest) vs single-threaded `blake3` over the
//!   same bytes in memory, and kazoo hashing the file from disk (page cache);
//! * download: raw quinn (one connection, one stream, kazoo's transport settings, no kazoo
//!   protocol) vs `get` of the same file from 1, 2, 4… sources, verification included.

use std::net::SocketAddr;
use std::path::Path;
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
        sources: vec![1, 2, 4],
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
    config.node.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.node.data_dir = root.join(name);
    config.share.dirs = share.map(|p| vec![p.to_path_buf()]).unwrap_or_default();
    config.share.rescan_secs = 3600;
    config.network.bootstrap = sn
        .map(|addr| vec![BootstrapEntry { node: None, addr }])
        .unwrap_or_default();
    config
}

async fn kazoo_get(root: &Path, share: &Path, id: ContentId, sources: usize, len: usize) -> f64 {
    let options = StartOptions {
        control_socket: false,
        ..StartOptions::default()
    };
    let run = root.join(format!("run-{sources}"));
    let sn = Node::start(
        node_config(&run, "sn", RoleSetting::Supernode, None, None),
        options.clone(),
    )
    .await
    .expect("supernode");
    let mut nodes = Vec::new();
    for i in 0..sources {
        let config = node_config(
            &run,
            &format!("source{i}"),
            RoleSetting::Leaf,
            Some(share),
            Some(sn.listen_addr()),
        );
        let node = Node::start(config, options.clone()).await.expect("source");
        node.wait_ready(Duration::from_secs(30))
            .await
            .expect("source joins");
        nodes.push(node);
    }
    let getter = Node::start(
        node_config(
            &run,
            "getter",
            RoleSetting::Leaf,
            None,
            Some(sn.listen_addr()),
        ),
        options,
    )
    .await
    .expect("getter");
    getter
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("getter joins");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hits = getter.search(&[id.to_hex()], 1).await.unwrap_or_default();
        if hits.first().is_some_and(|h| h.sources as usize >= sources) {
            break;
        }
        assert!(Instant::now() < deadline, "sources never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (tx, _rx) = tokio::sync::watch::channel(Default::default());
    let report = getter
        .get(id, Some(run.join("out.bin")), tx)
        .await
        .expect("download");
    assert_eq!(report.bytes as usize, len);
    let used = report.sources.iter().filter(|s| s.bytes > 0).count();
    assert!(used >= 1);
    getter.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    sn.shutdown().await;
    let _ = std::fs::remove_dir_all(&run);
    mbps(len, report.seconds)
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
        let ceiling = raw_quinn(args.size).await;
        let mut rows = vec![Row {
            what: "raw quinn, 1 connection, 1 stream (ceiling)".into(),
            mbps: ceiling,
            ceiling,
        }];
        for &n in &args.sources {
            let rate = kazoo_get(dir.path(), &share, id, n, args.size).await;
            rows.push(Row {
                what: format!("kazoo get, {n} source{}", if n == 1 { "" } else { "s" }),
                mbps: rate,
                ceiling,
            });
        }
        print_table("loopback download (verification included)", &rows);
    });
}
