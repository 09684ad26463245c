//! The local control channel: a Unix socket at `<data_dir>/control.sock` (mode 0600) over
//! which the CLI talks to a running node. One JSON request line per connection; the node
//! answers with JSON event lines and closes.
//!
//! ```text
//! → {"op":"status"}
//! ← {"event":"status","status":{...}}
//! → {"op":"search","words":["daft","punk"],"max_results":50}
//! ← {"event":"hit","hit":{...}} ... [{"event":"more","max":200}] {"event":"end"}
//! → {"op":"get","hash":"<64 hex>","out":null}
//! ← {"event":"progress","progress":{...}} ... {"event":"done","report":{...}}
//! → {"op":"browse","target":{"node":"<64 hex>","addr":null},"max":1000}
//! ← {"event":"listing","listing":{...}}
//! ```
//! Any request may end with `{"event":"error","message":"..."}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kazoo_common::wire::{Hit, Provider, MAX_RESULTS};
use kazoo_common::ContentId;
use kazoo_supernode::hits::Found;
use kazoo_supernode::tokenize::split_path;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::download::{Progress, Report};
use crate::node::browse::{BrowseTarget, Listing};
use crate::node::{Node, Status};

/// File name of the socket in `data_dir`.
pub const SOCKET: &str = "control.sock";
/// Longest request line accepted.
const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Control connections served at once.
const MAX_CONTROL_CLIENTS: usize = 16;

/// A request from the CLI.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Node status.
    Status,
    /// Search the network.
    Search {
        /// Query words.
        words: Vec<String>,
        /// Most results.
        max_results: u32,
    },
    /// Download a file.
    Get {
        /// Content id.
        hash: ContentId,
        /// Output path (absolute), or the download folder when null.
        out: Option<PathBuf>,
    },
    /// List another node's shared files.
    Browse {
        /// The node.
        target: BrowseTarget,
        /// Most files listed.
        max: u32,
    },
}

/// One search result as the CLI shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SearchResult {
    /// Content id.
    pub hash: ContentId,
    /// File name (of its best-matching path).
    pub name: String,
    /// Folder of that path below the sharer's share root (`""`: the root).
    #[serde(default)]
    pub folder: String,
    /// Other paths (`folder/name`) the same content is shared under.
    #[serde(default)]
    pub other_names: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// Known sources.
    pub sources: u32,
    /// Some of the sources.
    pub providers: Vec<Provider>,
}

impl From<Found> for SearchResult {
    fn from(found: Found) -> Self {
        let mut result = SearchResult::from(found.hit);
        result.other_names = found.names;
        result
    }
}

impl From<Hit> for SearchResult {
    fn from(hit: Hit) -> Self {
        let (name, folder) = split_path(&hit.name);
        SearchResult {
            hash: hit.id,
            name: name.to_owned(),
            folder: folder.to_owned(),
            other_names: Vec::new(),
            size: hit.size,
            sources: hit.sources,
            providers: hit.providers,
        }
    }
}

/// An answer line from the node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ControlEvent {
    /// Answer to `status`.
    Status {
        /// The status.
        status: Box<Status>,
    },
    /// One search result.
    Hit {
        /// The result.
        hit: SearchResult,
    },
    /// Download progress.
    Progress {
        /// The progress.
        progress: Progress,
    },
    /// Download finished and verified.
    Done {
        /// The report.
        report: Report,
    },
    /// More results matched than were sent (before `end`): ask with a larger
    /// `max_results` (at most `max`) or more words.
    More {
        /// The most results one search returns.
        max: u32,
    },
    /// End of search results.
    End,
    /// Answer to `browse`.
    Listing {
        /// The node's files.
        listing: Listing,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

impl ControlEvent {
    /// An `error` event.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        ControlEvent::Error {
            message: error.to_string(),
        }
    }
}

/// One JSON line.
fn json_line(value: &impl Serialize) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// Path of the control socket for `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// The control socket of a running node, served while this value lives; dropping it stops
/// serving and removes the socket file. The binary owns it (the node knows nothing of it).
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Binds the control socket in `node`'s data_dir and serves it (fails if another node
    /// already serves one there).
    pub async fn serve(node: Node) -> std::io::Result<ControlSocket> {
        let path = socket_path(&node.config().node.data_dir);
        let serving = bind(&path, node).await?;
        Ok(ControlSocket {
            path,
            task: tokio::spawn(serving),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket at `path` and returns the task that serves it.
async fn bind(
    path: &Path,
    node: Node,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "a node is already running with this data_dir ({})",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let clients = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CLIENTS));
    Ok(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors or similar: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = std::sync::Arc::clone(&clients).acquire_owned().await else {
                return;
            };
            let node = node.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_client(node, stream).await {
                    tracing::debug!(error = %e, "control client ended");
                }
                drop(permit);
            });
        }
    })
}

async fn send(out: &mut (impl AsyncWriteExt + Unpin), event: &ControlEvent) -> std::io::Result<()> {
    out.write_all(&json_line(event)?).await
}

async fn serve_client(node: Node, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_LINE as u64);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let request: ControlRequest = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("bad control request: {e}");
            return send(&mut write, &ControlEvent::Error { message }).await;
        }
    };
    match request {
        ControlRequest::Status => {
            let status = Box::new(node.status());
            send(&mut write, &ControlEvent::Status { status }).await
        }
        ControlRequest::Search { words, max_results } => {
            match node.find(&words, max_results).await {
                Ok(findings) => {
                    for found in findings.results {
                        let hit = SearchResult::from(found);
                        send(&mut write, &ControlEvent::Hit { hit }).await?;
                    }
                    if findings.more {
                        let max = MAX_RESULTS as u32;
                        send(&mut write, &ControlEvent::More { max }).await?;
                    }
                    send(&mut write, &ControlEvent::End).await
                }
                Err(e) => send(&mut write, &ControlEvent::failed(e)).await,
            }
        }
        ControlRequest::Browse { target, max } => match node.browse(target, max as usize).await {
            Ok(listing) => send(&mut write, &ControlEvent::Listing { listing }).await,
            Err(e) => send(&mut write, &ControlEvent::failed(e)).await,
        },
        ControlRequest::Get { hash, out } => {
            let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
            let get = node.get(hash, out, tx);
            tokio::pin!(get);
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let result = loop {
                tokio::select! {
                    result = &mut get => break result,
                    _ = tick.tick() => {
                        if rx.has_changed().unwrap_or(false) {
                            let progress = *rx.borrow_and_update();
                            send(&mut write, &ControlEvent::Progress { progress }).await?;
                        }
                    }
                }
            };
            match result {
                Ok(report) => send(&mut write, &ControlEvent::Done { report }).await,
                Err(e) => send(&mut write, &ControlEvent::failed(e)).await,
            }
        }
    }
}

/// Sends `request` to the node running with `data_dir`; `None` if no node is running there.
/// Each answer line is passed to `on_event`.
pub async fn request(
    data_dir: &Path,
    request: &ControlRequest,
    mut on_event: impl FnMut(ControlEvent),
) -> Option<std::io::Result<()>> {
    let stream = UnixStream::connect(socket_path(data_dir)).await.ok()?;
    let result = async {
        let (read, mut write) = stream.into_split();
        write.write_all(&json_line(request)?).await?;
        let mut lines = BufReader::new(read).lines();
        while let Some(line) = lines.next_line().await? {
            let event: ControlEvent = serde_json::from_str(&line).map_err(std::io::Error::other)?;
            on_event(event);
        }
        Ok(())
    }
    .await;
    Some(result)
}
