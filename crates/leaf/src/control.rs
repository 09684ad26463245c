//! The local control channel: a Unix socket over which the CLI talks to a running node, at
//! `node.control_socket` (default `<data_dir>/control.sock`), mode 0660 and, with
//! `node.control_group`, owned by that group, so that the group's members can use the CLI
//! against a node run by another user (a service's `DynamicUser`). The data dir is private
//! (0700), so a socket meant for a group lives outside it (e.g. `/run/kazoo/control.sock`).
//! One JSON request line per connection; the node answers with JSON event lines and closes.
//!
//! ```text
//! → {"op":"status"}
//! ← {"event":"status","status":{...}}
//! → {"op":"search","words":["daft","punk"],"max_results":50}
//! ← {"event":"hit","hit":{...}} ... [{"event":"more","max":200}] {"event":"end"}
//! → {"op":"get","hash":"<64 hex>","out":null}
//! ← {"event":"progress","progress":{...}} ... {"event":"done","report":{...}}
//! ```
//! Any request may end with `{"event":"error","message":"..."}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kazoo_common::config::NodeConfig;
use kazoo_common::wire::{Hit, Provider, MAX_RESULTS};
use kazoo_common::ContentId;
use kazoo_supernode::hits::Found;
use kazoo_supernode::tokenize::split_path;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::download::{Progress, Report};
use crate::node::{Node, Status};

/// File name of the socket in `data_dir` (unless `node.control_socket` says otherwise).
pub const SOCKET: &str = kazoo_common::config::CONTROL_SOCKET;
/// Mode of the socket file: its owner and its group may connect.
pub const SOCKET_MODE: u32 = 0o660;
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

/// Path of the control socket of a node with this `[node]` config.
pub fn socket_path(node: &NodeConfig) -> PathBuf {
    node.control_socket_path()
}

/// The group id of `group`: a number, or a group name looked up through the system's
/// group database (NSS).
pub fn group_id(group: &str) -> std::io::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(group)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in group name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: every pointer is valid for the call: `name` is NUL-terminated, `grp` and
    // `found` are locals, `buf` is writable for its length; `found` is null or points to
    // `grp`, whose fields point into `buf`, and only `gr_gid` (a plain integer) is read.
    let (rc, gid) = unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        );
        (rc, (!found.is_null()).then_some(grp.gr_gid))
    };
    match (rc, gid) {
        (0, Some(gid)) => Ok(gid),
        (0, None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no group named {group:?}"),
        )),
        (rc, _) => Err(std::io::Error::from_raw_os_error(rc)),
    }
}

/// The control socket of a running node, served while this value lives; dropping it stops
/// serving and removes the socket file. The binary owns it (the node knows nothing of it).
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Binds the control socket of `node`'s config and serves it (fails if another node
    /// already serves one there, or the configured group cannot be given to it).
    pub async fn serve(node: Node) -> std::io::Result<ControlSocket> {
        let config = &node.config().node;
        let path = socket_path(config);
        let gid = config.control_group.as_deref().map(group_id).transpose()?;
        if gid.is_some() && path.starts_with(&config.data_dir) {
            tracing::warn!(socket = %path.display(), "node.control_group is set but the control socket is inside the private data_dir, where the group cannot reach it; set node.control_socket elsewhere (e.g. /run/kazoo/control.sock)");
        }
        let serving = bind(&path, gid, node).await?;
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
    gid: Option<u32>,
    node: Node,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
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
    {
        use std::os::unix::fs::PermissionsExt;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("giving {} to group {gid}: {e}", path.display()),
                )
            })?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
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

/// Sends `request` to the node running with this `[node]` config; `None` if no node is
/// running there. Each answer line is passed to `on_event`. A socket this user may not use
/// is an error that says so (not "no node").
pub async fn request(
    node: &NodeConfig,
    request: &ControlRequest,
    mut on_event: impl FnMut(ControlEvent),
) -> Option<std::io::Result<()>> {
    let path = socket_path(node);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let message = format!(
                "the node's control socket {} is not open to this user ({e}); \
                 it is open to the group in node.control_group (check `ls -l` and `id`)",
                path.display()
            );
            return Some(Err(std::io::Error::new(e.kind(), message)));
        }
        Err(_) => return None,
    };
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
