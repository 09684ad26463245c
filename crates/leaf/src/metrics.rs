//! The Prometheus metrics endpoint (`[metrics] listen`, off by default): a node's gauges
//! (role, leaves, peers, index, shares, downloads) and counters since start (queries, bytes
//! up and down, promotions, demotions, failovers) in the Prometheus text format, served at
//! `GET /metrics` over plain HTTP/1.x.
//!
//! The server is deliberately minimal and bounded: [`MAX_CONNECTIONS`] connections at once
//! (more are closed at once), a request head of at most [`MAX_REQUEST_BYTES`], and
//! [`CONNECTION_TIMEOUT`] for a whole exchange; one response per connection. It has no
//! authentication, so it belongs on loopback (`127.0.0.1:9710`); a scraper elsewhere should
//! come through an SSH tunnel or a reverse proxy.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::node::{Node, Status};

/// Most metrics connections served at once; more are closed without an answer.
pub const MAX_CONNECTIONS: usize = 4;
/// Longest request head (request line and headers) read; longer gets `431`.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Longest a connection may take from accept to the last byte of the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Event counters of a node since it started, bumped where the events happen (relaxed
/// atomics: a scrape may see one a moment late).
#[derive(Debug, Default)]
pub struct Counters {
    /// Searches this node started through the overlay as a supernode (its leaves' and its
    /// own).
    pub queries: AtomicU64,
    /// Searches peer supernodes forwarded to this supernode that it answered from its index
    /// (duplicates of a query already seen, and queries refused, not counted).
    pub peer_queries: AtomicU64,
    /// Verified piece bytes downloaded (each piece once, written to the partial file).
    pub downloaded_bytes: AtomicU64,
    /// Times this node became a supernode after starting (a node configured or started as
    /// one does not count its start).
    pub promotions: AtomicU64,
    /// Times this node went from supernode back to leaf.
    pub demotions: AtomicU64,
    /// Times this leaf lost its supernode (it died or went silent) and re-homed.
    pub failovers: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A node's counters and transfer figures, read for one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// See [`Counters::queries`].
    pub queries: u64,
    /// See [`Counters::peer_queries`].
    pub peer_queries: u64,
    /// Piece bytes sent to downloaders.
    pub uploaded_bytes: u64,
    /// See [`Counters::downloaded_bytes`].
    pub downloaded_bytes: u64,
    /// See [`Counters::promotions`].
    pub promotions: u64,
    /// See [`Counters::demotions`].
    pub demotions: u64,
    /// See [`Counters::failovers`].
    pub failovers: u64,
    /// Downloads running now.
    pub downloads_active: u64,
}

impl Counts {
    /// Reads `counters`; the other figures come from their owners.
    pub fn read(counters: &Counters, uploaded_bytes: u64, downloads_active: u64) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            queries: get(&counters.queries),
            peer_queries: get(&counters.peer_queries),
            uploaded_bytes,
            downloaded_bytes: get(&counters.downloaded_bytes),
            promotions: get(&counters.promotions),
            demotions: get(&counters.demotions),
            failovers: get(&counters.failovers),
            downloads_active,
        }
    }
}

/// A node's gauges now, read for one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Whether the node is a supernode now.
    pub supernode: bool,
    /// Supernode: joined leaves.
    pub leaves: usize,
    /// Supernode: connected peer supernodes.
    pub peers: usize,
    /// Supernode: supernodes in its host cache.
    pub known_supernodes: usize,
    /// Supernode: index entries (leaf, file).
    pub index_entries: usize,
    /// Supernode: distinct files in the index.
    pub index_files: usize,
    /// Distinct files this node shares.
    pub shared_files: usize,
    /// Problems `kazoo status` shows now.
    pub problems: usize,
}

impl From<&Status> for Gauges {
    fn from(status: &Status) -> Self {
        Gauges {
            supernode: status.role == "supernode",
            leaves: status.leaves.unwrap_or(0),
            peers: status.peers.unwrap_or(0),
            known_supernodes: status.known_supernodes.unwrap_or(0),
            index_entries: status.index_entries.unwrap_or(0),
            index_files: status.index_files.unwrap_or(0),
            shared_files: status.shared_files,
            problems: status.problems.len(),
        }
    }
}

/// One metric family: name, type, help and its samples (`labels`, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render(gauges: &Gauges, counts: &Counts) -> String {
    let mut out = String::with_capacity(2048);
    let supernode = u64::from(gauges.supernode);
    family(
        &mut out,
        "kazoo_role",
        "gauge",
        "The role this node plays now (1 for the current one).",
        &[
            ("{role=\"leaf\"}", 1 - supernode),
            ("{role=\"supernode\"}", supernode),
        ],
    );
    let gauges = [
        (
            "kazoo_leaves",
            "Leaves joined to this supernode (0 on a leaf).",
            gauges.leaves,
        ),
        (
            "kazoo_peers",
            "Peer supernodes connected (0 on a leaf).",
            gauges.peers,
        ),
        (
            "kazoo_known_supernodes",
            "Supernodes in this supernode's host cache (0 on a leaf).",
            gauges.known_supernodes,
        ),
        (
            "kazoo_index_entries",
            "Index entries (leaf, file) of this supernode (0 on a leaf).",
            gauges.index_entries,
        ),
        (
            "kazoo_index_files",
            "Distinct files in this supernode's index (0 on a leaf).",
            gauges.index_files,
        ),
        (
            "kazoo_shared_files",
            "Distinct files this node shares.",
            gauges.shared_files,
        ),
        (
            "kazoo_problems",
            "Problems shown by `kazoo status` now (missing share folders, silent bootstraps).",
            gauges.problems,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help, &[("", value as u64)]);
    }
    family(
        &mut out,
        "kazoo_downloads_active",
        "gauge",
        "Downloads running now.",
        &[("", counts.downloads_active)],
    );
    family(
        &mut out,
        "kazoo_queries_total",
        "counter",
        "Searches this supernode answered: started here (origin=\"local\": its leaves' and its \
         own) or forwarded by a peer supernode (origin=\"peer\"); their sum is its queries/s.",
        &[
            ("{origin=\"local\"}", counts.queries),
            ("{origin=\"peer\"}", counts.peer_queries),
        ],
    );
    let counters = [
        (
            "kazoo_uploaded_bytes_total",
            "Piece bytes sent to downloaders.",
            counts.uploaded_bytes,
        ),
        (
            "kazoo_downloaded_bytes_total",
            "Verified piece bytes downloaded.",
            counts.downloaded_bytes,
        ),
        (
            "kazoo_promotions_total",
            "Times this node became a supernode after starting.",
            counts.promotions,
        ),
        (
            "kazoo_demotions_total",
            "Times this node went from supernode back to leaf.",
            counts.demotions,
        ),
        (
            "kazoo_failovers_total",
            "Times this leaf lost its supernode and re-homed.",
            counts.failovers,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help, &[("", value)]);
    }
    out
}

/// A running metrics endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `node`'s metrics there.
    pub async fn serve(node: Node, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        Self::serve_with(addr, move || {
            render(&Gauges::from(&node.status()), &node.counts())
        })
        .await
    }

    /// Binds `addr` and serves what `metrics` renders at `/metrics`.
    pub async fn serve_with(
        addr: SocketAddr,
        metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics endpoint is not on loopback: anyone who reaches it reads this node's metrics");
        }
        tracing::info!(%addr, "serving metrics at /metrics");
        let task = tokio::spawn(accept_loop(Arc::new(metrics), listener));
        Ok(MetricsServer { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renders the metrics for one scrape.
type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

async fn accept_loop(metrics: RenderFn, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics connection refused: too many at once");
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, exchange(&*metrics, stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
            }
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn exchange(
    metrics: &(dyn Fn() -> String + Send + Sync),
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head_end(&head).is_some() {
            break true;
        }
        if head.len() >= MAX_REQUEST_BYTES {
            break false;
        }
        let want = buf.len().min(MAX_REQUEST_BYTES - head.len());
        let n = stream.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let answer = if complete {
        answer(&head, metrics)
    } else {
        response(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        )
    };
    stream.write_all(&answer).await?;
    stream.shutdown().await
}

/// Where the request head ends (after its blank line), if it has.
fn head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// The answer to request head `head`; `metrics` renders the body of `GET /metrics`.
fn answer(head: &[u8], metrics: impl FnOnce() -> String) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return response(400, "Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return response(400, "Bad Request", "HTTP/1.x only\n");
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return response(404, "Not Found", "the metrics are at /metrics\n");
    }
    match method {
        "GET" => response(200, "OK", &metrics()),
        "HEAD" => {
            let mut head = response(200, "OK", &metrics());
            if let Some(end) = head_end(&head) {
                head.truncate(end);
            }
            head
        }
        _ => response(405, "Method Not Allowed", "GET only\n"),
    }
}

/// A complete HTTP/1.1 response that closes the connection.
fn response(code: u16, reason: &str, body: &str) -> Vec<u8> {
    let kind = if code == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supernode() -> Gauges {
        Gauges {
            supernode: true,
            leaves: 3,
            peers: 2,
            known_supernodes: 5,
            index_entries: 40,
            index_files: 30,
            shared_files: 7,
            problems: 1,
        }
    }

    /// Every sample belongs to a family announced by `# HELP` and `# TYPE` lines before it.
    fn check_format(text: &str) -> std::collections::HashMap<String, u64> {
        let mut typed = std::collections::HashSet::new();
        let mut samples = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "gauge" || kind == "counter", "{line}");
                assert!(name.starts_with("kazoo_"), "{line}");
                assert!(kind != "counter" || name.ends_with("_total"), "{line}");
                typed.insert(name.to_owned());
            } else if line.starts_with("# HELP ") {
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(typed.contains(name), "sample before its TYPE: {line}");
                samples.insert(series.to_owned(), value.parse().unwrap());
            }
        }
        samples
    }

    #[test]
    fn a_supernode_renders_every_family_with_help_and_type() {
        let counts = Counts {
            queries: 11,
            peer_queries: 4,
            uploaded_bytes: 1 << 20,
            downloaded_bytes: 12345,
            promotions: 1,
            demotions: 0,
            failovers: 2,
            downloads_active: 1,
        };
        let samples = check_format(&render(&supernode(), &counts));
        let want = [
            ("kazoo_role{role=\"supernode\"}", 1),
            ("kazoo_role{role=\"leaf\"}", 0),
            ("kazoo_leaves", 3),
            ("kazoo_peers", 2),
            ("kazoo_known_supernodes", 5),
            ("kazoo_index_entries", 40),
            ("kazoo_index_files", 30),
            ("kazoo_shared_files", 7),
            ("kazoo_problems", 1),
            ("kazoo_downloads_active", 1),
            ("kazoo_queries_total{origin=\"local\"}", 11),
            ("kazoo_queries_total{origin=\"peer\"}", 4),
            ("kazoo_uploaded_bytes_total", 1 << 20),
            ("kazoo_downloaded_bytes_total", 12345),
            ("kazoo_promotions_total", 1),
            ("kazoo_demotions_total", 0),
            ("kazoo_failovers_total", 2),
        ];
        for (series, value) in want {
            assert_eq!(samples.get(series), Some(&value), "{series}");
        }
        assert_eq!(samples.len(), want.len());
    }

    #[test]
    fn a_leaf_reports_zero_supernode_gauges() {
        let leaf = Gauges {
            shared_files: 7,
            ..Gauges::default()
        };
        let samples = check_format(&render(&leaf, &Counts::default()));
        assert_eq!(samples["kazoo_role{role=\"leaf\"}"], 1);
        assert_eq!(samples["kazoo_leaves"], 0);
        assert_eq!(samples["kazoo_index_entries"], 0);
    }

    fn answered(head: &str) -> String {
        String::from_utf8(answer(head.as_bytes(), || "kazoo_x 1\n".into())).unwrap()
    }

    #[test]
    fn only_get_and_head_of_metrics_are_answered() {
        let ok = answered("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("version=0.0.4"), "{ok}");
        assert!(ok.contains("Content-Length: 10\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nkazoo_x 1\n"), "{ok}");
        let query = answered("GET /metrics?x=1 HTTP/1.0\n\n");
        assert!(query.starts_with("HTTP/1.1 200"), "{query}");
        let head = answered("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with("Content-Length: 10\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        assert!(answered("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let post = answered("POST /metrics HTTP/1.1\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET"),
            "{post}"
        );
        assert!(answered("GET /metrics\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(answered("GET /metrics SPDY/3\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(answered("\u{0}\u{ff}\r\n\r\n").starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    /// Sends `request` on a new connection and reads the answer to its end.
    async fn fetch(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may close before reading all of an oversized request.
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn the_server_answers_and_bounds_requests_and_connections() {
        let server =
            MetricsServer::serve_with("127.0.0.1:0".parse().unwrap(), || "kazoo_x 1\n".into())
                .await
                .unwrap();
        let addr = server.local_addr();
        let ok = fetch(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("kazoo_x 1\n"),
            "{ok}"
        );
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.resize(MAX_REQUEST_BYTES + 4096, b'a');
        let big = fetch(addr, &huge).await;
        assert!(big.starts_with("HTTP/1.1 431"), "{big}");
        // Idle connections take every slot: the next one is closed unanswered.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET /met").await.unwrap();
            idle.push(stream);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            // The server counts a connection once it has accepted it: retry until it has
            // accepted the idle ones.
            let refused = fetch(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if refused.is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never refused");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(idle);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let back = fetch(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if back.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "slots never came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
