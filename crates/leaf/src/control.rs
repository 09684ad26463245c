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
//! → {"op":"get","targets":[{"hash":"<64 hex>"},{"result":3}],"out":null}
//! ← [{"event":"notice","message":"..."}] {"event":"job","job":{...}} ... {"event":"end"}
//! → {"op":"downloads"}                     ← {"event":"jobs","jobs":[...]}
//! → {"op":"pause","jobs":["3","af1349b9"]} ← {"event":"jobs","jobs":[...]}  (also resume, cancel)
//! → {"op":"partials"}                      ← {"event":"partials","partials":[...]}
//! → {"op":"clean_partials","hashes":[]}    ← {"event":"cleaned","removed":[...],"kept":[...]}
//! → {"op":"browse","target":{"node":"<64 hex>","addr":null},"max":1000}
//! ← {"event":"listing","listing":{...}}
//! ```
//! Any request may end with `{"event":"error","message":"..."}`. A `get` hands its files to
//! the node's jobs ([`crate::jobs`]) and follows them: a `job` line whenever one changes
//! (checked every [`FOLLOW_TICK`]) until each is done, failed, cancelled or paused; the jobs
//! go on if the client leaves. A search's results are remembered for `get` by number
//! ([`crate::jobs::last_search`]).

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

use crate::download::partial::PartialFile;
use crate::jobs::last_search::{LastSearch, Remembered};
use crate::jobs::{JobView, Target};
use crate::node::browse::{BrowseTarget, Listing};
use crate::node::{partial_dir, Node, Status};

/// File name of the socket in `data_dir` (unless `node.control_socket` says otherwise).
pub const SOCKET: &str = kazoo_common::config::CONTROL_SOCKET;
/// Mode of the socket file: its owner and its group may connect.
pub const SOCKET_MODE: u32 = 0o660;
/// Longest request line accepted.
const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Control connections served at once (a following `get` holds one until its jobs end).
const MAX_CONTROL_CLIENTS: usize = 32;
/// How often a following `get` checks its jobs.
pub const FOLLOW_TICK: Duration = Duration::from_millis(200);

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
    /// Download files (at most [`crate::jobs::MAX_PER_REQUEST`]) and follow them.
    Get {
        /// Content ids or result numbers of the last search.
        targets: Vec<Target>,
        /// Output path (absolute; a folder for several files), or the download folder when
        /// null.
        out: Option<PathBuf>,
    },
    /// List the download jobs.
    Downloads,
    /// Pause jobs (by number or hash prefix of 8+ hex digits).
    Pause {
        /// Job numbers or hash prefixes.
        jobs: Vec<String>,
    },
    /// Resume paused or failed jobs.
    Resume {
        /// Job numbers or hash prefixes.
        jobs: Vec<String>,
    },
    /// Cancel jobs and remove their partial files.
    Cancel {
        /// Job numbers or hash prefixes.
        jobs: Vec<String>,
    },
    /// List partial files.
    Partials,
    /// Remove partial files no job uses (only these content ids, when some are given).
    CleanPartials {
        /// Content ids (empty: every unused partial file).
        #[serde(default)]
        hashes: Vec<ContentId>,
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
    /// A download job now (while a `get` follows it).
    Job {
        /// The job.
        job: JobView,
    },
    /// Download jobs (answer to `downloads`, `pause`, `resume`, `cancel`).
    Jobs {
        /// The jobs.
        jobs: Vec<JobView>,
    },
    /// Partial files (answer to `partials`).
    Partials {
        /// The files.
        partials: Vec<PartialFile>,
    },
    /// Answer to `clean_partials`.
    Cleaned {
        /// Files removed.
        removed: Vec<PartialFile>,
        /// Files kept because a job uses them.
        kept: Vec<PartialFile>,
    },
    /// Something to tell the user (e.g. a `get` joined a running download).
    Notice {
        /// The message.
        message: String,
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
    // The rest of the connection is only watched for the client leaving.
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
                    let results: Vec<SearchResult> = findings
                        .results
                        .into_iter()
                        .map(SearchResult::from)
                        .collect();
                    remember(&node.config().node.data_dir, &words, &results);
                    for hit in results {
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
        ControlRequest::Get { targets, out } => {
            if out.as_ref().is_some_and(|o| o.is_relative()) {
                let message = "the output path must be absolute".to_owned();
                return send(&mut write, &ControlEvent::Error { message }).await;
            }
            let submitted = match node.jobs().submit(&node, &targets, out) {
                Ok(submitted) => submitted,
                Err(e) => return send(&mut write, &ControlEvent::failed(e)).await,
            };
            for s in submitted.iter().filter(|s| s.joined) {
                let message = format!(
                    "{} is already being downloaded (download {}): following it",
                    s.hash, s.id
                );
                send(&mut write, &ControlEvent::Notice { message }).await?;
            }
            let mut ids: Vec<u32> = Vec::with_capacity(submitted.len());
            for s in &submitted {
                if !ids.contains(&s.id) {
                    ids.push(s.id);
                }
            }
            follow(&node, ids, &mut reader, &mut write).await
        }
        ControlRequest::Downloads => {
            let jobs = node.jobs().list();
            send(&mut write, &ControlEvent::Jobs { jobs }).await
        }
        ControlRequest::Pause { jobs } => {
            let answer = node.jobs().pause(&jobs).await;
            send(&mut write, &jobs_event(answer)).await
        }
        ControlRequest::Resume { jobs } => {
            let answer = node.jobs().resume(&node, &jobs);
            send(&mut write, &jobs_event(answer)).await
        }
        ControlRequest::Cancel { jobs } => {
            let answer = node.jobs().cancel(&jobs, &partial_dir(node.config())).await;
            send(&mut write, &jobs_event(answer)).await
        }
        ControlRequest::Partials => {
            let event = match node.jobs().partials(&partial_dir(node.config())) {
                Ok(partials) => ControlEvent::Partials { partials },
                Err(e) => ControlEvent::failed(e),
            };
            send(&mut write, &event).await
        }
        ControlRequest::CleanPartials { hashes } => {
            let dir = partial_dir(node.config());
            let event = match node.jobs().clean_partials(&dir, &hashes) {
                Ok((removed, kept)) => ControlEvent::Cleaned { removed, kept },
                Err(e) => ControlEvent::failed(e),
            };
            send(&mut write, &event).await
        }
    }
}

/// Remembers a search's results for `kazoo get N` (best effort: a failure is logged).
pub fn remember(data_dir: &Path, words: &[String], results: &[SearchResult]) {
    let remembered = results.iter().map(|r| Remembered {
        hash: r.hash,
        name: r.name.clone(),
        size: r.size,
    });
    if let Err(e) = LastSearch::new(words, remembered).save(data_dir) {
        tracing::warn!(error = %e, "could not remember the search for `kazoo get N`");
    }
}

fn jobs_event(answer: Result<Vec<JobView>, crate::jobs::JobError>) -> ControlEvent {
    match answer {
        Ok(jobs) => ControlEvent::Jobs { jobs },
        Err(e) => ControlEvent::failed(e),
    }
}

/// Sends a `job` line whenever one of `ids` changes, until each is done, failed, cancelled
/// or paused (or forgotten), then `end`; stops early when the client hangs up.
async fn follow(
    node: &Node,
    ids: Vec<u32>,
    reader: &mut (impl AsyncBufReadExt + Unpin),
    write: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<()> {
    let mut last: Vec<Option<JobView>> = vec![None; ids.len()];
    let mut open: Vec<bool> = vec![true; ids.len()];
    let mut tick = tokio::time::interval(FOLLOW_TICK);
    let mut scratch = [0u8; 64];
    while open.iter().any(|o| *o) {
        tokio::select! {
            _ = tick.tick() => {}
            // The client sends nothing more: any read that ends means it left.
            _ = reader.read(&mut scratch) => return Ok(()),
        }
        for (i, id) in ids.iter().enumerate() {
            if !open[i] {
                continue;
            }
            let Some(view) = node.jobs().view(*id) else {
                open[i] = false;
                continue;
            };
            let ended = view.state.finished() || view.state == crate::jobs::JobState::Paused;
            // The rate and ETA change all the time; a line goes out when anything shown
            // changed.
            if last[i].as_ref() != Some(&view) {
                last[i] = Some(view.clone());
                send(write, &ControlEvent::Job { job: view }).await?;
            }
            if ended {
                open[i] = false;
            }
        }
    }
    send(write, &ControlEvent::End).await
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
