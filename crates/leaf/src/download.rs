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
//!
//! The node-wide download cap (`share.download_rate_kib`, [`Network::download_cap`]) is kept
//! by the request slots: a slot takes a piece's bytes from the cap before it asks for the
//! piece, so waiting for the cap does not count towards the piece's time (the slow-source
//! checks and [`PIECE_TIMEOUT`] see only the transfer). Pieces then arrive at link speed:
//! the cap holds on average over pieces (a piece is 16 KiB–4 MiB).
//!
//! Where each part lives: dialling in `dial`, who may be dialled and who is banned in
//! `contacts`, the manifest race in [`manifest`], the piece phase's loop in `run`, the request
//! slots of each source in `worker` (paced by [`pace`], fed by [`scheduler`]), and the
//! partial file and its bitfield in `partial`.

mod contacts;
mod dial;
pub mod manifest;
pub mod pace;
pub mod partial;
mod run;
pub mod scheduler;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use kazoo_common::hash::Manifest;
use kazoo_common::wire::Provider;
use kazoo_common::{ContentId, NodeId};
use quinn::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use contacts::Contacts;
pub use dial::MAX_DIALS_IN_FLIGHT;
pub use manifest::{MANIFEST_FIRST_BYTE_TIMEOUT, MANIFEST_RACE};

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
    /// Of those, bytes already on disk when this run started (a resumed download): rates
    /// and ETAs count only `bytes_done - resumed_bytes`.
    #[serde(default)]
    pub resumed_bytes: u64,
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
    /// How it was reached (none: never connected).
    #[serde(default)]
    pub reached: Option<Path>,
}

/// How a downloader reached a source (see the wire spec, "Reaching a source that cannot be
/// dialled").
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// A dial to its listed address.
    Direct,
    /// It dialled the downloader, asked through the supernodes.
    Reverse,
    /// The downloader's dial got through once the source had dialled it too (hole punch).
    Punched,
    /// Through a supernode's relay.
    Relayed,
}

/// The outcome of a finished download (also the `kazoo get --json` object).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Content id.
    pub hash: ContentId,
    /// Where the file is now.
    pub path: PathBuf,
    /// File size.
    pub bytes: u64,
    /// Bytes that were already on disk from an earlier attempt.
    pub resumed_bytes: u64,
    /// Wall time, from the start of the download (sources known) to the last piece.
    pub seconds: f64,
    /// Seconds from the start until the first source was connected (none: never); the
    /// transfer alone is `seconds - connected_secs`.
    #[serde(default)]
    pub connected_secs: Option<f64>,
    /// Seconds from the start until the first piece of this run verified (time to first
    /// byte; none: every piece was on disk already).
    #[serde(default)]
    pub first_piece_secs: Option<f64>,
    /// Per-source contributions.
    pub sources: Vec<SourceReport>,
    /// Pieces that failed verification.
    pub bad_pieces: u32,
}

/// What the downloader needs from the network; implemented by the node runtime.
pub trait Network: Send + Sync {
    /// Connects to `provider`, pinning its node id; says how it got through.
    fn dial(&self, provider: Provider) -> BoxFuture<'_, Result<(Connection, Path), String>>;
    /// The current sources of `id` (asked again during the download).
    fn sources(&self, id: ContentId) -> BoxFuture<'_, Vec<Provider>>;
    /// Tells the supernode that `nodes` (at most [`kazoo_common::wire::MAX_REPORTED`]) could
    /// not be reached; returns at once (the report is sent in the background, best effort).
    fn report_unreachable(&self, nodes: Vec<NodeId>);
    /// Where verified piece bytes are counted (`downloaded_bytes`), if anywhere.
    fn download_counters(&self) -> Option<std::sync::Arc<crate::metrics::Counters>> {
        None
    }

    /// The node-wide download rate cap, if the node has one (see the module doc).
    fn download_cap(&self) -> Option<std::sync::Arc<crate::rate_cap::RateCap>> {
        None
    }
}

/// A boxed future, for the object-safe [`Network`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

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
    let result = run::download(&mut contacts, job, progress).await;
    contacts.flush();
    result
}
