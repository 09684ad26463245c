//! Downloading one file from every source that has it, in parallel, every piece verified.
//!
//! 1. Sources are dialled from the whole provider list, [`dial::MAX_DIALS_IN_FLIGHT`] at a
//!    time, each joining as soon as it answers (their node ids are pinned in the TLS
//!    handshake), until [`MAX_SOURCES`] are connected. A dead address costs only its own
//!    dial. Sources that could not be reached are not dialled again in this download and
//!    are reported to the supernode ([`Network::report_unreachable`]), which leaves them out
//!    of this node's answers for a while.
//! 2. The manifest is raced ([`manifest`]): [`MANIFEST_RACE`] connected sources are asked at
//!    once (the next one whenever one fails), and every connected source once
//!    [`MANIFEST_FIRST_BYTE_TIMEOUT`] has passed without a manifest; the first manifest that
//!    verifies against the content id (and the size the network reported) wins. A source that sends a bad manifest is dropped and
//!    banned for this download; one that fails is dropped. Sources still being asked when a
//!    manifest wins fetch pieces like the others.
//! 3. Pieces go to `<partial_dir>/<id>.part` at their offsets; a bitfield of verified pieces
//!    is kept in `<id>.have` so a killed download resumes (pieces marked done are re-verified
//!    from the `.part` file on resume). Scheduling is in [`scheduler`].
//! 4. Each source has up to [`SLOTS_PER_SOURCE`] requests in flight (and at most half the
//!    pieces that fit in memory, so no single source can take it all), starting with one and
//!    gaining one per piece it delivers ([`pace`]); total piece memory is bounded by
//!    [`MAX_INFLIGHT_BYTES`]. A piece in flight far longer than the other sources
//!    take with theirs goes back to the pool and its source keeps fewer requests in flight
//!    ([`pace`]); a piece that fails verification is re-fetched elsewhere and its source
//!    dropped (banned) for this download; a source that errors or passes [`PIECE_TIMEOUT`]
//!    gives its pieces back. Every [`REFRESH_INTERVAL`], and when every source is gone, the
//!    network is asked for sources again and new ones join.
//! 5. When every piece is verified the `.part` file is renamed into place.

mod dial;
pub mod manifest;
pub mod pace;
pub mod scheduler;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use kazoo_common::hash::Manifest;
use kazoo_common::wire::{CloseCode, Provider, Request, Response, MAX_REPORTED};
use kazoo_common::{ContentId, NodeId};
use quinn::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::{self, RequestError};
use crate::names::{safe_file_name, unused_path};
use dial::Dialer;
pub use dial::MAX_DIALS_IN_FLIGHT;
pub use manifest::{MANIFEST_FIRST_BYTE_TIMEOUT, MANIFEST_RACE};
use pace::{Lanes, PieceTimes};
use scheduler::{Next, Scheduler};

/// Most requests in flight per source (fewer while it is new or slow, see [`pace`]).
pub const SLOTS_PER_SOURCE: usize = 8;
/// Most piece bytes held in memory by one download.
pub const MAX_INFLIGHT_BYTES: u64 = 32 << 20;
/// A piece request that takes longer than this drops its source (when there is no other
/// source to compare its speed with; otherwise a slow piece goes back to the pool sooner).
pub const PIECE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most sources one download uses at once (connected, or being dialled).
pub const MAX_SOURCES: usize = 32;
/// Connections to one source that may fail before it is banned from the download.
pub const MAX_FAILURES: usize = 3;
/// How often the network is asked for new sources while a download runs.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Step of incremental piece hashing (and of endgame cancellation checks).
const READ_CHUNK: usize = 64 * 1024;
/// How often a piece in flight is checked for being overdue, and a waiting slot looks again.
const RECHECK: Duration = Duration::from_millis(200);

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
    /// Pieces taken back from it for being far slower than the other sources.
    #[serde(default)]
    pub slow_pieces: u32,
    /// Why it was dropped, if it was (an unreachable source: `unreachable: ...`).
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
    /// Tells the supernode that `nodes` (at most [`MAX_REPORTED`]) could not be reached;
    /// returns at once (the report is sent in the background, best effort).
    fn report_unreachable(&self, nodes: Vec<NodeId>);
}

/// A boxed future, for the object-safe [`Network`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

struct Source {
    index: usize,
    node: NodeId,
    conn: Connection,
    bytes: AtomicU64,
    bad: AtomicU32,
    slow: AtomicU32,
    lanes: Lanes,
    dead: AtomicBool,
    dropped: Mutex<Option<String>>,
}

impl Source {
    fn drop_with(&self, reason: String) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            tracing::warn!(source = %self.node.short(), %reason, "dropping source");
            self.conn
                .close(CloseCode::NORMAL.into(), b"dropped by downloader");
            *crate::lock(&self.dropped) = Some(reason);
        }
    }

    fn report(&self) -> SourceReport {
        SourceReport {
            node: self.node,
            bytes: self.bytes.load(Ordering::SeqCst),
            bad_pieces: self.bad.load(Ordering::SeqCst),
            slow_pieces: self.slow.load(Ordering::SeqCst),
            dropped: crate::lock(&self.dropped).clone(),
        }
    }
}

struct Ctx {
    id: ContentId,
    manifest: Manifest,
    part: std::fs::File,
    have: Mutex<std::fs::File>,
    sched: Mutex<Scheduler>,
    times: Mutex<PieceTimes>,
    wake: Notify,
    memory: Semaphore,
    bytes_done: AtomicU64,
    progress: watch::Sender<Progress>,
    sources: Mutex<Vec<Arc<Source>>>,
    /// Request slots per source: [`SLOTS_PER_SOURCE`], or half the pieces that fit in memory
    /// if fewer (large pieces), so one stalled source cannot hold every memory permit.
    lanes: usize,
}

impl Ctx {
    fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        crate::lock(&self.sched)
    }

    fn times(&self) -> std::sync::MutexGuard<'_, PieceTimes> {
        crate::lock(&self.times)
    }

    fn sources(&self) -> Vec<Arc<Source>> {
        crate::lock(&self.sources).clone()
    }

    /// Node ids of the sources still delivering.
    fn live(&self) -> HashSet<NodeId> {
        self.sources()
            .iter()
            .filter(|s| !s.dead.load(Ordering::SeqCst))
            .map(|s| s.node)
            .collect()
    }

    fn publish(&self) {
        self.progress.send_replace(Progress {
            bytes_done: self.bytes_done.load(Ordering::SeqCst),
            total: self.manifest.size,
            sources_active: self.live().len(),
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
                    slow: AtomicU32::new(0),
                    lanes: Lanes::new(self.lanes),
                    dead: AtomicBool::new(false),
                    dropped: Mutex::new(None),
                });
                crate::lock(&self.sources).push(Arc::clone(&source));
                source
            })
            .collect();
        for lane in 0..self.lanes {
            for source in &added {
                slots.spawn(slot(Arc::clone(self), Arc::clone(source), lane));
            }
        }
        self.publish();
    }
}

/// Who this download may still dial, and what became of those that never delivered pieces.
struct Contacts<'a> {
    network: &'a dyn Network,
    dialer: Dialer<'a>,
    /// Could not be dialled: not dialled again in this download.
    unreachable: HashSet<NodeId>,
    /// Of those, the ones not yet reported to the supernode.
    unreported: Vec<NodeId>,
    /// Banned for this download: a bad manifest or piece, or [`MAX_FAILURES`] failures.
    banned: HashSet<NodeId>,
    /// Failures before the piece phase (no manifest), by node.
    failures: HashMap<NodeId, usize>,
    /// Sources that never delivered pieces (unreachable, bad or no manifest).
    reports: Vec<SourceReport>,
}

impl<'a> Contacts<'a> {
    fn new(network: &'a dyn Network) -> Self {
        Contacts {
            network,
            dialer: Dialer::new(network),
            unreachable: HashSet::new(),
            unreported: Vec::new(),
            banned: HashSet::new(),
            failures: HashMap::new(),
            reports: Vec::new(),
        }
    }

    /// Queues `providers` for dialling, except those live, banned or unreachable.
    fn offer(&mut self, providers: Vec<Provider>, live: &HashSet<NodeId>) {
        let fresh: Vec<Provider> = providers
            .into_iter()
            .filter(|p| {
                !live.contains(&p.node)
                    && !self.banned.contains(&p.node)
                    && !self.unreachable.contains(&p.node)
            })
            .collect();
        self.dialer.offer(fresh);
    }

    fn dial_failed(&mut self, provider: Provider, error: String) {
        tracing::warn!(source = %provider.node.short(), addr = %provider.addr, %error, "source unreachable");
        if self.unreachable.insert(provider.node) {
            self.unreported.push(provider.node);
            self.reports.push(SourceReport {
                node: provider.node,
                bytes: 0,
                bad_pieces: 0,
                slow_pieces: 0,
                dropped: Some(format!("unreachable: {error}")),
            });
        }
        // One report per round of dials.
        if self.dialer.running() == 0 || self.unreported.len() >= MAX_REPORTED {
            self.flush();
        }
    }

    /// Reports the sources found unreachable since the last report.
    fn flush(&mut self) {
        while !self.unreported.is_empty() {
            let take = self.unreported.len().min(MAX_REPORTED);
            let nodes: Vec<NodeId> = self.unreported.drain(..take).collect();
            tracing::info!(count = nodes.len(), "reporting unreachable sources");
            self.network.report_unreachable(nodes);
        }
    }

    /// A source failed before delivering pieces; `ban` for good (a bad manifest).
    fn failed(&mut self, provider: Provider, conn: &Connection, reason: String, ban: bool) {
        conn.close(CloseCode::NORMAL.into(), b"no usable manifest");
        *self.failures.entry(provider.node).or_default() += 1;
        if ban {
            self.banned.insert(provider.node);
        }
        match self.reports.iter_mut().find(|r| r.node == provider.node) {
            Some(report) => report.dropped = Some(reason),
            None => self.reports.push(SourceReport {
                node: provider.node,
                bytes: 0,
                bad_pieces: 0,
                slow_pieces: 0,
                dropped: Some(reason),
            }),
        }
    }

    /// Bans sources that sent a bad piece or failed [`MAX_FAILURES`] times.
    fn update_bans(&mut self, ctx: &Ctx) {
        let mut failures = self.failures.clone();
        for source in ctx.sources() {
            if source.dead.load(Ordering::SeqCst) {
                *failures.entry(source.node).or_default() += 1;
            }
            if source.bad.load(Ordering::SeqCst) > 0 {
                self.banned.insert(source.node);
            }
        }
        self.banned.extend(
            failures
                .into_iter()
                .filter(|(_, n)| *n >= MAX_FAILURES)
                .map(|(node, _)| node),
        );
    }
}

/// Connects to sources and races the manifest (steps 1 and 2 of the module doc). Returns the
/// verified manifest and the connected sources that may fetch pieces.
async fn get_manifest(
    contacts: &mut Contacts<'_>,
    job: &Job,
) -> Result<(Manifest, Vec<(Provider, Connection)>), DownloadError> {
    type Asked = (Provider, Connection, Result<Manifest, RequestError>);
    let mut connected: Vec<(Provider, Connection)> = Vec::new();
    let mut to_ask: std::collections::VecDeque<(Provider, Connection)> = Default::default();
    let mut asking: FuturesUnordered<BoxFuture<'static, Asked>> = FuturesUnordered::new();
    // When the first request went out; once the first-byte timeout has passed since without
    // a manifest, every connected source is asked.
    let mut race_started: Option<Instant> = None;
    let mut everyone = false;
    let mut ever_connected = false;
    loop {
        contacts
            .dialer
            .start(MAX_SOURCES.saturating_sub(connected.len()));
        let now = Instant::now();
        if !everyone
            && race_started.is_some_and(|at| now.duration_since(at) >= MANIFEST_FIRST_BYTE_TIMEOUT)
        {
            everyone = true;
            tracing::info!(
                waiting = asking.len(),
                "no manifest within the first-byte timeout; asking every source"
            );
        }
        let width = if everyone { MAX_SOURCES } else { MANIFEST_RACE };
        while asking.len() < width {
            let Some((provider, conn)) = to_ask.pop_front() else {
                break;
            };
            let id = job.id;
            race_started.get_or_insert(now);
            asking.push(Box::pin(async move {
                let result = manifest::fetch(&conn, id).await;
                (provider, conn, result)
            }));
        }
        if asking.is_empty() && contacts.dialer.is_idle() {
            break;
        }
        // When everyone is to be asked, if a source is waiting for its turn.
        let step = race_started
            .filter(|_| !everyone && !to_ask.is_empty())
            .map(|at| at + MANIFEST_FIRST_BYTE_TIMEOUT);
        tokio::select! {
            Some((provider, dialled)) = contacts.dialer.next(), if contacts.dialer.running() > 0 => {
                match dialled {
                    Ok(conn) => {
                        ever_connected = true;
                        to_ask.push_back((provider, conn.clone()));
                        connected.push((provider, conn));
                    }
                    Err(e) => contacts.dial_failed(provider, e),
                }
            }
            Some((provider, conn, answer)) = asking.next(), if !asking.is_empty() => {
                match answer {
                    Ok(m) if m.verify(&job.id).is_ok() && job.size.is_none_or(|s| s == m.size) => {
                        tracing::debug!(source = %provider.node.short(), pieces = m.pieces(), "manifest verified");
                        return Ok((m, connected));
                    }
                    Ok(_) => {
                        tracing::warn!(source = %provider.node.short(), "manifest does not match the content id; dropping source");
                        connected.retain(|(p, _)| p.node != provider.node);
                        contacts.failed(
                            provider,
                            &conn,
                            "sent a manifest that does not match the content id".into(),
                            true,
                        );
                    }
                    Err(e) => {
                        tracing::warn!(source = %provider.node.short(), error = %e, "no manifest from source");
                        connected.retain(|(p, _)| p.node != provider.node);
                        contacts.failed(provider, &conn, format!("no manifest: {e}"), false);
                    }
                }
            }
            _ = async {
                match step {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            }, if step.is_some() => {}
        }
    }
    if ever_connected {
        Err(DownloadError::NoManifest(job.id))
    } else {
        Err(DownloadError::Unreachable(job.sources.len()))
    }
}

/// Runs a download to completion; returns its report and the verified manifest.
pub async fn run(
    network: &dyn Network,
    job: Job,
    progress: watch::Sender<Progress>,
) -> Result<(Report, Manifest), DownloadError> {
    if job.sources.is_empty() {
        return Err(DownloadError::NoSources(job.id));
    }
    let mut contacts = Contacts::new(network);
    contacts.dialer.offer(job.sources.iter().copied());
    let result = download(&mut contacts, job, progress).await;
    contacts.flush();
    result
}

async fn download(
    contacts: &mut Contacts<'_>,
    job: Job,
    progress: watch::Sender<Progress>,
) -> Result<(Report, Manifest), DownloadError> {
    let started = Instant::now();
    let network = contacts.network;
    let (manifest, usable) = get_manifest(contacts, &job).await?;
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
        times: Mutex::new(PieceTimes::default()),
        wake: Notify::new(),
        memory: Semaphore::new(inflight_pieces),
        bytes_done: AtomicU64::new(resumed_bytes),
        progress,
        sources: Mutex::new(Vec::new()),
        lanes: SLOTS_PER_SOURCE.min(inflight_pieces / 2).max(1),
        manifest,
    });
    let mut slots = JoinSet::new();
    ctx.add_sources(usable, &mut slots);
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.reset();
    let mut refreshing: Option<BoxFuture<'_, Vec<Provider>>> = None;
    // Set when every source was gone and the network was asked again: if that brings no
    // source either, the download gives up.
    let mut starving = false;
    while ctx.sched().remaining() > 0 {
        contacts
            .dialer
            .start(MAX_SOURCES.saturating_sub(ctx.live().len()));
        if slots.is_empty() && contacts.dialer.is_idle() && refreshing.is_none() {
            if starving {
                break;
            }
            starving = true;
            contacts.update_bans(&ctx);
            refreshing = Some(network.sources(ctx.id));
        }
        tokio::select! {
            Some(_) = slots.join_next(), if !slots.is_empty() => {}
            Some((provider, dialled)) = contacts.dialer.next(), if contacts.dialer.running() > 0 => {
                match dialled {
                    Ok(conn) => {
                        starving = false;
                        ctx.add_sources(vec![(provider, conn)], &mut slots);
                    }
                    Err(e) => contacts.dial_failed(provider, e),
                }
            }
            found = async {
                match refreshing.as_mut() {
                    Some(sources) => sources.await,
                    None => std::future::pending().await,
                }
            }, if refreshing.is_some() => {
                refreshing = None;
                contacts.update_bans(&ctx);
                contacts.offer(found, &ctx.live());
            }
            _ = tick.tick() => {
                if refreshing.is_none() {
                    refreshing = Some(network.sources(ctx.id));
                }
            }
        }
    }
    // Stop the slots first: closing a connection under a request still in flight (an endgame
    // duplicate) would otherwise look like a source failure.
    slots.shutdown().await;
    let missing = ctx.sched().remaining();
    let mut reports = std::mem::take(&mut contacts.reports);
    for source in ctx.sources() {
        source
            .conn
            .close(CloseCode::NORMAL.into(), b"download over");
        let report = source.report();
        match reports.iter_mut().find(|r| r.node == report.node) {
            Some(merged) => {
                merged.bytes += report.bytes;
                merged.bad_pieces += report.bad_pieces;
                merged.slow_pieces += report.slow_pieces;
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

/// What became of a piece request watched for being overdue.
enum Watched {
    /// It ended (delivered, cancelled or failed).
    Ended(Result<Fetched, RequestError>),
    /// It took longer than this, far longer than the other sources take (see [`pace`]).
    Overdue(Duration),
}

/// Fetches `piece` from `src`, giving up once it is overdue compared with the other sources,
/// or after [`PIECE_TIMEOUT`].
async fn fetch_watched(ctx: &Ctx, src: &Source, piece: u32) -> Watched {
    let started = Instant::now();
    let fetching = fetch(ctx, &src.conn, piece);
    tokio::pin!(fetching);
    loop {
        let overdue = ctx
            .times()
            .overdue_after(src.index)
            .filter(|limit| *limit < PIECE_TIMEOUT);
        let limit = overdue.unwrap_or(PIECE_TIMEOUT);
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return match overdue {
                Some(limit) => Watched::Overdue(limit),
                None => Watched::Ended(Err(RequestError::Timeout)),
            };
        }
        let wait = (limit - elapsed).min(RECHECK);
        tokio::select! {
            ended = &mut fetching => return Watched::Ended(ended),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Request slot `lane` of `src`: fetches pieces one after another while the lane is open.
async fn slot(ctx: Arc<Ctx>, src: Arc<Source>, lane: usize) {
    let source = src.index;
    loop {
        if src.dead.load(Ordering::SeqCst) {
            ctx.sched().drop_source(source);
            ctx.times().remove(source);
            ctx.wake.notify_waiters();
            return;
        }
        if !src.lanes.is_open(lane) {
            let _ = tokio::time::timeout(RECHECK, ctx.wake.notified()).await;
            continue;
        }
        // Memory first, so a piece is only assigned to a slot that can fetch it now.
        let Ok(permit) = ctx.memory.acquire().await else {
            return;
        };
        if !src.lanes.is_open(lane) || src.dead.load(Ordering::SeqCst) {
            // Closed while waiting for memory: leave the permit to another source.
            continue;
        }
        let next = ctx.sched().next(source);
        let piece = match next {
            Next::Finished => {
                ctx.wake.notify_waiters();
                return;
            }
            Next::Wait => {
                drop(permit);
                let _ = tokio::time::timeout(RECHECK, ctx.wake.notified()).await;
                continue;
            }
            Next::Piece(piece) => piece,
        };
        let requested = Instant::now();
        match fetch_watched(&ctx, &src, piece).await {
            Watched::Ended(Ok(Fetched::Data(data, verified))) => {
                if !verified {
                    src.bad.fetch_add(1, Ordering::SeqCst);
                    ctx.sched().release(source, piece);
                    src.drop_with(format!("piece {piece} failed verification"));
                    continue;
                }
                let took = requested.elapsed();
                ctx.times().record(source, took);
                src.lanes.speed_up();
                tracing::trace!(source = %src.node.short(), piece, ms = took.as_millis() as u64, lanes = src.lanes.open(), "piece verified");
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
            Watched::Ended(Ok(Fetched::Cancelled)) => ctx.sched().release(source, piece),
            Watched::Ended(Err(e)) => {
                ctx.sched().release(source, piece);
                src.drop_with(format!("request for piece {piece} failed: {e}"));
                ctx.publish();
            }
            Watched::Overdue(limit) => {
                drop(permit);
                ctx.sched().reclaim(source, piece);
                src.slow.fetch_add(1, Ordering::SeqCst);
                let lanes = src.lanes.slow_down();
                tracing::info!(
                    source = %src.node.short(),
                    piece,
                    limit_ms = limit.as_millis() as u64,
                    lanes,
                    "piece overdue: back to the pool, source keeps fewer requests in flight"
                );
                ctx.wake.notify_waiters();
            }
        }
    }
}

/// Writes the bitfield byte holding `piece` (its current value, so writes never go back).
fn persist_bit(ctx: &Ctx, piece: u32) {
    let have = crate::lock(&ctx.have);
    let byte = ctx.sched().bitfield()[piece as usize / 8];
    if let Err(e) = have.write_all_at(&[byte], u64::from(piece / 8)) {
        tracing::warn!(error = %e, "could not record a finished piece; it will be fetched again on resume");
    }
}
