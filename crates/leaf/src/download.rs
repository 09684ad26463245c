//! Downloading one file from every source that has it, in parallel, every piece verified.
//!
//! 1. Connect to all sources (their node ids are pinned in the TLS handshake).
//! 2. Fetch the manifest from the first source whose manifest hashes to the content id; a
//!    source with a bad manifest is dropped and reported.
//! 3. Pieces go to `<partial_dir>/<id>.part` at their offsets; a bitfield of verified pieces
//!    is kept in `<id>.have` so a killed download resumes (pieces marked done are re-verified
//!    from the `.part` file on resume). Scheduling is in [`scheduler`].
//! 4. Each source has [`SLOTS_PER_SOURCE`] requests in flight; total piece memory is bounded
//!    by [`MAX_INFLIGHT_BYTES`]. A piece that fails verification is re-fetched elsewhere and
//!    its source dropped (banned) for this download; a source that errors or times out gives
//!    its pieces back. Every [`REFRESH_INTERVAL`], and when every source is gone, the network
//!    is asked for sources again and new ones join (at most [`MAX_SOURCES`] at once).
//! 5. When every piece is verified the `.part` file is renamed into place.

pub mod scheduler;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kazoo_common::hash::Manifest;
use kazoo_common::wire::{CloseCode, Provider, Request, Response};
use kazoo_common::{ContentId, NodeId};
use quinn::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::{self, RequestError};
use crate::names::{safe_file_name, unused_path};
use scheduler::{Next, Scheduler};

/// Requests in flight per source.
pub const SLOTS_PER_SOURCE: usize = 8;
/// Most piece bytes held in memory by one download.
pub const MAX_INFLIGHT_BYTES: u64 = 32 << 20;
/// A piece request that takes longer than this drops its source.
pub const PIECE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most sources one download uses at once.
pub const MAX_SOURCES: usize = 32;
/// Connections to one source that may fail before it is banned from the download.
pub const MAX_FAILURES: usize = 3;
/// How often the network is asked for new sources while a download runs.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Step of incremental piece hashing (and of endgame cancellation checks).
const READ_CHUNK: usize = 64 * 1024;

/// Why a download failed. Verified pieces stay in the partial file for the next attempt.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Nobody reported having the file.
    #[error("no sources for {0}: nobody in reach shares it")]
    NoSources(ContentId),
    /// No source could be connected to.
    #[error("none of the {0} sources could be reached")]
    Unreachable(usize),
    /// No source gave a manifest that matches the content id.
    #[error("no source sent a valid manifest for {0}")]
    NoManifest(ContentId),
    /// Every source failed before the file was complete.
    #[error("all sources failed with {missing} of {total} pieces missing; run the same get again to resume")]
    Incomplete {
        /// Pieces still missing.
        missing: usize,
        /// Pieces in the file.
        total: usize,
    },
    /// Local file trouble.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DownloadError {
    let context = context.into();
    move |source| DownloadError::Io { context, source }
}

/// Where the finished file goes.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Exactly this path (`-o PATH`); an existing directory gets a fresh safe name inside.
    Path(PathBuf),
    /// A fresh safe name in this folder (the download folder).
    Folder(PathBuf),
}

/// A download to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// Content id.
    pub id: ContentId,
    /// The name the network offered (untrusted; made safe before use).
    pub name: String,
    /// The size the network reported, if known; a manifest must agree with it.
    pub size: Option<u64>,
    /// Sources.
    pub sources: Vec<Provider>,
    /// Where the finished file goes.
    pub destination: Destination,
    /// Where partial files live.
    pub partial_dir: PathBuf,
}

/// Download progress, published while it runs.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// Verified bytes (including resumed ones).
    pub bytes_done: u64,
    /// File size (0 until the manifest arrived).
    pub total: u64,
    /// Sources currently delivering.
    pub sources_active: usize,
}

/// What one source contributed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceReport {
    /// Its node id.
    pub node: NodeId,
    /// Verified bytes it delivered that were used.
    pub bytes: u64,
    /// Pieces from it that failed verification.
    pub bad_pieces: u32,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// The outcome of a finished download (also the `kazoo get --json` object).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Content id.
    pub hash: ContentId,
    /// Where the file is now.
    pub path: PathBuf,
    /// File size.
    pub bytes: u64,
    /// Bytes that were already on disk from an earlier attempt.
    pub resumed_bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Per-source contributions.
    pub sources: Vec<SourceReport>,
    /// Pieces that failed verification.
    pub bad_pieces: u32,
}

/// What the downloader needs from the network; implemented by the node runtime.
pub trait Network: Send + Sync {
    /// Connects to `provider`, pinning its node id.
    fn dial(&self, provider: Provider) -> BoxFuture<'_, Result<Connection, String>>;
    /// The current sources of `id` (asked again during the download).
    fn sources(&self, id: ContentId) -> BoxFuture<'_, Vec<Provider>>;
}

/// A boxed future, for the object-safe [`Network`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

struct Source {
    index: usize,
    node: NodeId,
    conn: Connection,
    bytes: AtomicU64,
    bad: AtomicU32,
    dead: AtomicBool,
    dropped: Mutex<Option<String>>,
}

impl Source {
    fn drop_with(&self, reason: String) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            tracing::warn!(source = %self.node.short(), %reason, "dropping source");
            self.conn
                .close(CloseCode::NORMAL.into(), b"dropped by downloader");
            *self.dropped.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        }
    }

    fn report(&self) -> SourceReport {
        SourceReport {
            node: self.node,
            bytes: self.bytes.load(Ordering::SeqCst),
            bad_pieces: self.bad.load(Ordering::SeqCst),
            dropped: self
                .dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

struct Ctx {
    id: ContentId,
    manifest: Manifest,
    part: std::fs::File,
    have: Mutex<std::fs::File>,
    sched: Mutex<Scheduler>,
    wake: Notify,
    memory: Semaphore,
    bytes_done: AtomicU64,
    progress: watch::Sender<Progress>,
    sources: Mutex<Vec<Arc<Source>>>,
}

impl Ctx {
    fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sources(&self) -> Vec<Arc<Source>> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self) {
        let active = self
            .sources()
            .iter()
            .filter(|s| !s.dead.load(Ordering::SeqCst))
            .count();
        self.progress.send_replace(Progress {
            bytes_done: self.bytes_done.load(Ordering::SeqCst),
            total: self.manifest.size,
            sources_active: active,
        });
    }

    /// Adds connected sources and starts their request slots, one slot of each source in
    /// turn so that every source gets pieces from the start.
    fn add_sources(
        self: &Arc<Self>,
        connected: Vec<(Provider, Connection)>,
        slots: &mut JoinSet<()>,
    ) {
        let added: Vec<Arc<Source>> = connected
            .into_iter()
            .map(|(provider, conn)| {
                tracing::debug!(source = %provider.node.short(), "source joins the download");
                let source = Arc::new(Source {
                    index: self.sched().add_source(),
                    node: provider.node,
                    conn,
                    bytes: AtomicU64::new(0),
                    bad: AtomicU32::new(0),
                    dead: AtomicBool::new(false),
                    dropped: Mutex::new(None),
                });
                self.sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Arc::clone(&source));
                source
            })
            .collect();
        for _ in 0..SLOTS_PER_SOURCE {
            for source in &added {
                slots.spawn(slot(Arc::clone(self), Arc::clone(source)));
            }
        }
        self.publish();
    }
}

/// Dials every provider at once; returns those that answered.
async fn dial_all(network: &dyn Network, providers: Vec<Provider>) -> Vec<(Provider, Connection)> {
    let dials = providers
        .into_iter()
        .map(|p| async move { (p, network.dial(p).await) });
    let mut connected = Vec::new();
    for (provider, result) in futures_util::future::join_all(dials).await {
        match result {
            Ok(conn) => connected.push((provider, conn)),
            Err(e) => {
                tracing::warn!(source = %provider.node.short(), addr = %provider.addr, error = %e, "source unreachable")
            }
        }
    }
    connected
}

/// Asks the network for sources again and starts the new ones (not live, not banned: a
/// source that sent a bad piece or manifest, or failed [`MAX_FAILURES`] times, is banned for
/// the rest of this download).
/// Returns how many were added.
async fn refresh(
    network: &dyn Network,
    ctx: &Arc<Ctx>,
    banned: &mut HashSet<NodeId>,
    slots: &mut JoinSet<()>,
) -> usize {
    let mut failures: HashMap<NodeId, usize> = HashMap::new();
    for source in ctx.sources() {
        if source.dead.load(Ordering::SeqCst) {
            *failures.entry(source.node).or_default() += 1;
        }
        if source.bad.load(Ordering::SeqCst) > 0 {
            banned.insert(source.node);
        }
    }
    banned.extend(
        failures
            .into_iter()
            .filter(|(_, n)| *n >= MAX_FAILURES)
            .map(|(node, _)| node),
    );
    let live: HashSet<NodeId> = ctx
        .sources()
        .iter()
        .filter(|s| !s.dead.load(Ordering::SeqCst))
        .map(|s| s.node)
        .collect();
    let room = MAX_SOURCES.saturating_sub(live.len());
    let fresh: Vec<Provider> = network
        .sources(ctx.id)
        .await
        .into_iter()
        .filter(|p| !banned.contains(&p.node) && !live.contains(&p.node))
        .take(room)
        .collect();
    if fresh.is_empty() {
        return 0;
    }
    let connected = dial_all(network, fresh).await;
    let added = connected.len();
    ctx.add_sources(connected, slots);
    added
}

/// Runs a download to completion; returns its report and the verified manifest.
pub async fn run(
    network: &dyn Network,
    job: Job,
    progress: watch::Sender<Progress>,
) -> Result<(Report, Manifest), DownloadError> {
    let started = Instant::now();
    if job.sources.is_empty() {
        return Err(DownloadError::NoSources(job.id));
    }
    let tried = job.sources.len();
    let connected = dial_all(network, job.sources.into_iter().take(MAX_SOURCES).collect()).await;
    if connected.is_empty() {
        return Err(DownloadError::Unreachable(tried));
    }
    let mut reports: Vec<SourceReport> = Vec::new();
    let mut banned = HashSet::new();
    let mut manifest = None;
    let mut usable = Vec::new();
    for (provider, conn) in connected {
        if manifest.is_none() {
            match client::call(&conn, &Request::GetManifest { id: job.id }).await {
                Ok(Response::Manifest(m))
                    if m.verify(&job.id).is_ok() && job.size.is_none_or(|s| s == m.size) =>
                {
                    manifest = Some(m)
                }
                Ok(Response::Manifest(_)) => {
                    tracing::warn!(source = %provider.node.short(), "manifest does not match the content id; dropping source");
                    conn.close(CloseCode::NORMAL.into(), b"bad manifest");
                    banned.insert(provider.node);
                    reports.push(SourceReport {
                        node: provider.node,
                        bytes: 0,
                        bad_pieces: 0,
                        dropped: Some("sent a manifest that does not match the content id".into()),
                    });
                    continue;
                }
                Ok(other) => {
                    tracing::warn!(source = %provider.node.short(), answer = ?other, "unexpected answer to GetManifest");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(source = %provider.node.short(), error = %e, "no manifest from source");
                    continue;
                }
            }
        }
        usable.push((provider, conn));
    }
    let manifest = manifest.ok_or(DownloadError::NoManifest(job.id))?;
    std::fs::create_dir_all(&job.partial_dir).map_err(io("creating the partial folder"))?;
    let part_path = job.partial_dir.join(format!("{}.part", job.id));
    let have_path = job.partial_dir.join(format!("{}.have", job.id));
    let pieces = manifest.pieces() as usize;
    let (part, have, done) = open_partial(&part_path, &have_path, &manifest, &job.id).await?;
    let resumed_bytes: u64 = done
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| manifest.piece_range(i as u64).1)
        .sum();
    if resumed_bytes > 0 {
        tracing::info!(id = %job.id, resumed_bytes, "resuming download");
    }
    let inflight_pieces = (MAX_INFLIGHT_BYTES / manifest.piece_size).max(2) as usize;
    let ctx = Arc::new(Ctx {
        id: job.id,
        part,
        have: Mutex::new(have),
        sched: Mutex::new(Scheduler::new(pieces, &done)),
        wake: Notify::new(),
        memory: Semaphore::new(inflight_pieces),
        bytes_done: AtomicU64::new(resumed_bytes),
        progress,
        sources: Mutex::new(Vec::new()),
        manifest,
    });
    let mut slots = JoinSet::new();
    ctx.add_sources(usable, &mut slots);
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.reset();
    loop {
        tokio::select! {
            joined = slots.join_next() => {
                if joined.is_some() {
                    continue;
                }
                // Every slot has ended: finished, or every source is gone.
                if ctx.sched().remaining() == 0 {
                    break;
                }
                if refresh(network, &ctx, &mut banned, &mut slots).await == 0 {
                    break;
                }
            }
            _ = tick.tick() => {
                if ctx.sched().remaining() > 0 {
                    refresh(network, &ctx, &mut banned, &mut slots).await;
                }
            }
        }
    }
    let missing = ctx.sched().remaining();
    for source in ctx.sources() {
        source
            .conn
            .close(CloseCode::NORMAL.into(), b"download over");
        let report = source.report();
        match reports.iter_mut().find(|r| r.node == report.node) {
            Some(merged) => {
                merged.bytes += report.bytes;
                merged.bad_pieces += report.bad_pieces;
                merged.dropped = merged.dropped.take().or(report.dropped);
            }
            None => reports.push(report),
        }
    }
    if missing > 0 {
        return Err(DownloadError::Incomplete {
            missing,
            total: pieces,
        });
    }
    ctx.part
        .sync_all()
        .map_err(io("syncing the partial file"))?;
    let path = finish(&part_path, &job.destination, &job.name, &job.id)?;
    let _ = std::fs::remove_file(&have_path);
    let bad_pieces = reports.iter().map(|r| r.bad_pieces).sum();
    let report = Report {
        hash: job.id,
        path,
        bytes: ctx.manifest.size,
        resumed_bytes,
        seconds: started.elapsed().as_secs_f64(),
        sources: reports,
        bad_pieces,
    };
    Ok((report, ctx.manifest.clone()))
}

/// Opens (or creates) the partial file and its bitfield; pieces marked done are re-verified.
async fn open_partial(
    part_path: &Path,
    have_path: &Path,
    manifest: &Manifest,
    id: &ContentId,
) -> Result<(std::fs::File, std::fs::File, Vec<bool>), DownloadError> {
    let part = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part_path)
        .map_err(io(format!("opening {}", part_path.display())))?;
    let have = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(have_path)
        .map_err(io(format!("opening {}", have_path.display())))?;
    let pieces = manifest.pieces() as usize;
    let len = part
        .metadata()
        .map_err(io("reading the partial file"))?
        .len();
    let mut bits = vec![0u8; pieces.div_ceil(8)];
    if len == manifest.size {
        // A short or missing bitfield just means fewer pieces are known to be done.
        let _ = have.read_exact_at(&mut bits, 0);
    } else {
        part.set_len(manifest.size)
            .map_err(io("sizing the partial file"))?;
    }
    have.set_len(bits.len() as u64)
        .map_err(io("sizing the bitfield"))?;
    let marked: Vec<bool> = (0..pieces)
        .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    if !marked.iter().any(|d| *d) {
        return Ok((part, have, marked));
    }
    let part = Arc::new(part);
    let check = Arc::clone(&part);
    let manifest = manifest.clone();
    let id = *id;
    let done = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        marked
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                if !m {
                    return false;
                }
                let (offset, len) = manifest.piece_range(i as u64);
                buf.resize(len as usize, 0);
                check.read_exact_at(&mut buf, offset).is_ok()
                    && manifest.verify_piece(&id, i as u64, &buf)
            })
            .collect::<Vec<bool>>()
    })
    .await
    .map_err(|e| DownloadError::Io {
        context: "re-verifying resumed pieces".into(),
        source: std::io::Error::other(e),
    })?;
    let part = Arc::try_unwrap(part).map_err(|_| DownloadError::Io {
        context: "re-verifying resumed pieces".into(),
        source: std::io::Error::other("partial file still in use"),
    })?;
    Ok((part, have, done))
}

/// Moves the finished partial file to its destination.
fn finish(
    part: &Path,
    destination: &Destination,
    name: &str,
    id: &ContentId,
) -> Result<PathBuf, DownloadError> {
    let target = match destination {
        Destination::Path(path) if !path.is_dir() => path.clone(),
        Destination::Path(dir) | Destination::Folder(dir) => {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            unused_path(dir, &safe_file_name(name, id))
        }
    };
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    if std::fs::rename(part, &target).is_err() {
        // Different file systems: copy, then remove the partial file.
        std::fs::copy(part, &target).map_err(io(format!("writing {}", target.display())))?;
        let _ = std::fs::remove_file(part);
    }
    Ok(target)
}

enum Fetched {
    /// The piece's bytes and whether they verified.
    Data(Vec<u8>, bool),
    /// Another source delivered the piece first (endgame).
    Cancelled,
}

/// Requests one piece, hashing it as it streams in.
async fn fetch(ctx: &Ctx, conn: &Connection, piece: u32) -> Result<Fetched, RequestError> {
    let (_, len) = ctx.manifest.piece_range(u64::from(piece));
    let request = Request::GetPiece {
        id: ctx.id,
        index: piece,
    };
    let mut recv = client::send(conn, &request).await?;
    match client::read_answer(&mut recv).await? {
        Response::Piece { len: got } if got == len => {}
        other => return Err(RequestError::Unexpected(format!("{other:?}"))),
    }
    let mut verifier = ctx.manifest.piece_verifier(u64::from(piece));
    let mut buf = Vec::with_capacity(len as usize);
    // Bytes of `buf` already hashed; hashing runs in READ_CHUNK steps so BLAKE3 gets wide
    // SIMD input rather than packet-sized slices.
    let mut hashed = 0;
    while (buf.len() as u64) < len {
        let want = len as usize - buf.len();
        let Some(chunk) = recv.read_chunk(want, true).await? else {
            return Err(RequestError::Eof);
        };
        buf.extend_from_slice(&chunk.bytes);
        if buf.len() - hashed >= READ_CHUNK {
            let end = hashed + (buf.len() - hashed) / READ_CHUNK * READ_CHUNK;
            verifier.update(&buf[hashed..end]);
            hashed = end;
            if ctx.sched().is_done(piece) {
                let _ = recv.stop(0u32.into());
                return Ok(Fetched::Cancelled);
            }
        }
    }
    verifier.update(&buf[hashed..]);
    let verified = verifier.verify(&ctx.manifest, &ctx.id);
    Ok(Fetched::Data(buf, verified))
}

async fn slot(ctx: Arc<Ctx>, src: Arc<Source>) {
    let source = src.index;
    loop {
        if src.dead.load(Ordering::SeqCst) {
            ctx.sched().drop_source(source);
            ctx.wake.notify_waiters();
            return;
        }
        // Memory first, so a piece is only assigned to a slot that can fetch it now.
        let Ok(permit) = ctx.memory.acquire().await else {
            return;
        };
        let next = ctx.sched().next(source);
        let piece = match next {
            Next::Finished => {
                ctx.wake.notify_waiters();
                return;
            }
            Next::Wait => {
                drop(permit);
                let _ = tokio::time::timeout(Duration::from_millis(200), ctx.wake.notified()).await;
                continue;
            }
            Next::Piece(piece) => piece,
        };
        let fetched = tokio::time::timeout(PIECE_TIMEOUT, fetch(&ctx, &src.conn, piece))
            .await
            .unwrap_or(Err(RequestError::Timeout));
        match fetched {
            Ok(Fetched::Data(data, verified)) => {
                if !verified {
                    src.bad.fetch_add(1, Ordering::SeqCst);
                    ctx.sched().release(source, piece);
                    src.drop_with(format!("piece {piece} failed verification"));
                    continue;
                }
                let (offset, _) = ctx.manifest.piece_range(u64::from(piece));
                let writer = Arc::clone(&ctx);
                let len = data.len() as u64;
                let written =
                    tokio::task::spawn_blocking(move || writer.part.write_all_at(&data, offset))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                drop(permit);
                if let Err(e) = written {
                    ctx.sched().release(source, piece);
                    src.drop_with(format!("writing piece {piece} failed: {e}"));
                    continue;
                }
                let first = ctx.sched().complete(source, piece);
                if first {
                    src.bytes.fetch_add(len, Ordering::SeqCst);
                    ctx.bytes_done.fetch_add(len, Ordering::SeqCst);
                    persist_bit(&ctx, piece);
                    ctx.publish();
                }
                ctx.wake.notify_waiters();
            }
            Ok(Fetched::Cancelled) => ctx.sched().release(source, piece),
            Err(e) => {
                ctx.sched().release(source, piece);
                src.drop_with(format!("request for piece {piece} failed: {e}"));
                ctx.publish();
            }
        }
    }
}

/// Writes the bitfield byte holding `piece` (its current value, so writes never go back).
fn persist_bit(ctx: &Ctx, piece: u32) {
    let have = ctx.have.lock().unwrap_or_else(|p| p.into_inner());
    let byte = ctx.sched().bitfield()[piece as usize / 8];
    if let Err(e) = have.write_all_at(&[byte], u64::from(piece / 8)) {
        tracing::warn!(error = %e, "could not record a finished piece; it will be fetched again on resume");
    }
}
