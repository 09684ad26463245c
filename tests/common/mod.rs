//! Helpers for the in-process tests: nodes on 127.0.0.1:0 under one temporary directory,
//! and waiting on conditions with a deadline.
#![allow(dead_code)]

pub mod bin;
pub mod fake;
pub mod kazoo_net;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kazoo_common::config::{BootstrapEntry, Config, RoleSetting};
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Timeouts};
use kazoo_common::wire::Hit;
use kazoo_leaf::{Node, StartOptions};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A temporary directory holding every node of one test.
pub struct Net {
    pub root: tempfile::TempDir,
}

impl Net {
    pub fn new() -> Self {
        Net {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `root/<node>/shared`, created.
    pub fn share_dir(&self, node: &str) -> PathBuf {
        let dir = self.root.path().join(node).join("shared");
        std::fs::create_dir_all(&dir).expect("share dir");
        dir
    }

    pub fn download_dir(&self, node: &str) -> PathBuf {
        self.root.path().join(node).join("downloads")
    }

    pub fn config(&self, node: &str, role: RoleSetting, bootstrap: Option<SocketAddr>) -> Config {
        let mut config = Config::default();
        config.node.role = role;
        config.node.listen = SocketAddr::from(([127, 0, 0, 1], 0)).into();
        config.node.data_dir = self.root.path().join(node).join("data");
        config.share.dirs = vec![self.share_dir(node)];
        config.share.download_dir = Some(self.download_dir(node));
        config.share.rescan_secs = 1;
        config.network.bootstrap = bootstrap
            .map(|addr| {
                vec![BootstrapEntry {
                    node: None,
                    addr: addr.into(),
                }]
            })
            .unwrap_or_default();
        config
    }

    pub async fn supernode(&self, name: &str) -> Node {
        self.start(self.config(name, RoleSetting::Supernode, None))
            .await
    }

    pub async fn leaf(&self, name: &str, sn: &Node) -> Node {
        let node = self
            .start(self.config(name, RoleSetting::Leaf, Some(sn.listen_addr())))
            .await;
        node.wait_ready(DEADLINE).await.expect("leaf joins");
        node
    }

    pub async fn start(&self, config: Config) -> Node {
        // `RUST_LOG=debug cargo test` shows the nodes' logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let options = StartOptions {
            ..StartOptions::default()
        };
        Node::start(config, options).await.expect("node starts")
    }
}

/// A configured supernode bootstrapped to `bootstrap` (addresses only: ids are learned on
/// contact).
pub async fn bootstrapped_supernode(net: &Net, name: &str, bootstrap: &[SocketAddr]) -> Node {
    let mut config = net.config(name, RoleSetting::Supernode, None);
    config.network.bootstrap = bootstrap
        .iter()
        .map(|&addr| BootstrapEntry {
            node: None,
            addr: addr.into(),
        })
        .collect();
    net.start(config).await
}

/// A bare QUIC endpoint with a fresh identity (no node runtime), so a test can send anything.
pub fn raw_node() -> (Identity, quinn::Endpoint) {
    let identity = Identity::generate().expect("identity");
    let endpoint = transport::endpoint(
        &identity,
        "127.0.0.1:0".parse().unwrap(),
        Timeouts::default(),
    )
    .expect("endpoint");
    (identity, endpoint)
}

/// Dials `node` from a raw endpoint with any `Hello` (its id pinned).
pub async fn raw_dial_as(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    node: &Node,
    hello: kazoo_common::wire::Hello,
) -> Result<transport::Link, transport::TransportError> {
    transport::dial(
        endpoint,
        identity,
        node.listen_addr(),
        Some(node.node_id()),
        Timeouts::default(),
        hello,
    )
    .await
}

/// Dials `node` from a fresh raw endpoint as a leaf with `intent`; the endpoint must outlive
/// the link.
pub async fn raw_dial(
    node: &Node,
    intent: kazoo_common::wire::Intent,
) -> (
    Result<transport::Link, transport::TransportError>,
    quinn::Endpoint,
) {
    let (identity, endpoint) = raw_node();
    let hello =
        kazoo_common::wire::Hello::new(identity.node_id(), kazoo_common::wire::Role::Leaf, intent);
    let link = raw_dial_as(&endpoint, &identity, node, hello).await;
    (link, endpoint)
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `data` to `dir/name`.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write file");
    path
}

/// Searches from `node` until a hit for `words` satisfies `ok`.
pub async fn search_until(node: &Node, words: &[&str], ok: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    eventually(&format!("search {words:?}"), || {
        let words = words.clone();
        let ok = &ok;
        async move {
            let hits = node.search(&words, 50).await.ok()?;
            ok(&hits).then_some(hits)
        }
    })
    .await
}

/// A progress sender nobody listens to.
pub fn no_progress() -> tokio::sync::watch::Sender<kazoo_leaf::download::Progress> {
    tokio::sync::watch::channel(Default::default()).0
}

/// A UDP relay on loopback in front of one node, which a test can cut (every datagram
/// dropped, both ways) and heal: a network partition between the node and whoever reaches
/// it through the relay. Each client address gets its own upstream socket, so the node sees
/// one address per client. Its tasks end when it is dropped.
pub struct Partition {
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    pub async fn new(target: SocketAddr) -> Self {
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use tokio::net::UdpSocket;

        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("relay socket"));
        let addr = front.local_addr().expect("relay address");
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            let mut uplinks: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            // Dropped (with this task) aborts the return paths.
            let mut returns = tokio::task::JoinSet::new();
            let mut buf = vec![0u8; 65_536];
            while let Ok((len, client)) = front.recv_from(&mut buf).await {
                if flag.load(Ordering::SeqCst) {
                    continue;
                }
                let up = match uplinks.get(&client) {
                    Some(up) => Arc::clone(up),
                    None => {
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("uplink"));
                        uplinks.insert(client, Arc::clone(&up));
                        let (up2, front2, flag2) =
                            (Arc::clone(&up), Arc::clone(&front), Arc::clone(&flag));
                        returns.spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok((len, _)) = up2.recv_from(&mut buf).await {
                                if !flag2.load(Ordering::SeqCst) {
                                    let _ = front2.send_to(&buf[..len], client).await;
                                }
                            }
                        });
                        up
                    }
                };
                let _ = up.send_to(&buf[..len], target).await;
            }
        });
        Partition { addr, cut, task }
    }

    /// Drops every datagram from now on (`true`) or lets them through again (`false`).
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}
