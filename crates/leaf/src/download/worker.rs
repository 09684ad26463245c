//! The request slots of each source: a slot fetches one piece at a time (hashing it as it
//! streams in), writes it to the partial file once it verifies, and hands a piece back when it
//! fails, is cancelled by a faster copy, or is overdue; [`Ctx`] is the state the slots share.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kazoo_common::hash::Manifest;
use kazoo_common::wire::{CloseCode, Provider, Request, Response};
use kazoo_common::{ContentId, NodeId};
use quinn::Connection;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::pace::{Lanes, PieceTimes};
use super::scheduler::{Next, Scheduler};
use super::{partial, Progress, SourceReport, PIECE_TIMEOUT};
use crate::client::{self, RequestError};

/// Step of incremental piece hashing (and of endgame cancellation checks).
const READ_CHUNK: usize = 64 * 1024;
/// How often a piece in flight is checked for being overdue, and a waiting slot looks again.
const RECHECK: Duration = Duration::from_millis(200);

/// A connected source of the piece phase.
pub(super) struct Source {
    pub(super) index: usize,
    pub(super) node: NodeId,
    pub(super) conn: Connection,
    pub(super) bytes: AtomicU64,
    pub(super) bad: AtomicU32,
    pub(super) slow: AtomicU32,
    pub(super) lanes: Lanes,
    pub(super) dead: AtomicBool,
    pub(super) dropped: Mutex<Option<String>>,
}

impl Source {
    pub(super) fn drop_with(&self, reason: String) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            tracing::warn!(source = %self.node.short(), %reason, "dropping source");
            self.conn
                .close(CloseCode::NORMAL.into(), b"dropped by downloader");
            *crate::lock(&self.dropped) = Some(reason);
        }
    }

    pub(super) fn report(&self) -> SourceReport {
        SourceReport {
            node: self.node,
            bytes: self.bytes.load(Ordering::SeqCst),
            bad_pieces: self.bad.load(Ordering::SeqCst),
            slow_pieces: self.slow.load(Ordering::SeqCst),
            dropped: crate::lock(&self.dropped).clone(),
            reached: None,
        }
    }
}

/// The state of a download's piece phase, shared by its slots and its run loop.
pub(super) struct Ctx {
    pub(super) id: ContentId,
    pub(super) manifest: Manifest,
    pub(super) part: std::fs::File,
    pub(super) have: Mutex<std::fs::File>,
    pub(super) sched: Mutex<Scheduler>,
    pub(super) times: Mutex<PieceTimes>,
    pub(super) wake: Notify,
    pub(super) memory: Semaphore,
    pub(super) bytes_done: AtomicU64,
    /// When the first piece of this run verified.
    pub(super) first_piece: OnceLock<Instant>,
    /// Bytes already verified on disk when this run started.
    pub(super) resumed_bytes: u64,
    pub(super) progress: watch::Sender<Progress>,
    pub(super) sources: Mutex<Vec<Arc<Source>>>,
    /// Request slots per source: [`super::SLOTS_PER_SOURCE`], or half the pieces that fit in memory
    /// if fewer (large pieces), so one stalled source cannot hold every memory permit.
    pub(super) lanes: usize,
    /// The node's counters (verified bytes are added to `downloaded_bytes`).
    pub(super) counters: Option<Arc<crate::metrics::Counters>>,
    /// The node's download cap (see the module doc of `download`).
    pub(super) rate_cap: Option<Arc<crate::rate_cap::RateCap>>,
}

impl Ctx {
    pub(super) fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        crate::lock(&self.sched)
    }

    pub(super) fn times(&self) -> std::sync::MutexGuard<'_, PieceTimes> {
        crate::lock(&self.times)
    }

    pub(super) fn sources(&self) -> Vec<Arc<Source>> {
        crate::lock(&self.sources).clone()
    }

    /// Node ids of the sources still delivering.
    pub(super) fn live(&self) -> HashSet<NodeId> {
        self.sources()
            .iter()
            .filter(|s| !s.dead.load(Ordering::SeqCst))
            .map(|s| s.node)
            .collect()
    }

    pub(super) fn publish(&self) {
        self.progress.send_replace(Progress {
            bytes_done: self.bytes_done.load(Ordering::SeqCst),
            resumed_bytes: self.resumed_bytes,
            total: self.manifest.size,
            sources_active: self.live().len(),
        });
    }

    /// Adds connected sources and starts their request slots, one slot of each source in
    /// turn so that every source gets pieces from the start.
    pub(super) fn add_sources(
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
        if let Some(cap) = &ctx.rate_cap {
            // Before the request, so the piece's time counts only its transfer.
            let (_, len) = ctx.manifest.piece_range(u64::from(piece));
            cap.take(len as usize).await;
        }
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
                    ctx.first_piece.get_or_init(Instant::now);
                    if let Some(counters) = &ctx.counters {
                        crate::metrics::Counters::add(&counters.downloaded_bytes, len);
                    }
                    partial::persist_bit(&ctx.have, &ctx.sched, piece);
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
