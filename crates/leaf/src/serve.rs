//! Serving shared files to other nodes: manifests and pieces.
//!
//! Piece reads are bounded by a node-wide semaphore ([`MAX_CONCURRENT_UPLOADS`] pieces in
//! memory at once) and per peer connection ([`MAX_UPLOADS_PER_PEER`]), so one greedy
//! downloader cannot take every slot; request streams per connection are bounded by QUIC
//! stream credit ([`kazoo_common::wire::MAX_CONCURRENT_STREAMS`]). An optional node-wide
//! rate cap (`share.upload_rate_kib`, changeable on a config reload) paces piece data. Before each piece the file's size and
//! mtime are checked against what was hashed: a file changed on disk is not served (the
//! downloader would reject it anyway) and is dropped from the share list for re-hashing.
//! What goes out is counted per peer and file ([`activity`], shown by `kazoo status`).

pub mod activity;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kazoo_common::wire::{self, ErrorCode, FrameError, Response};
use kazoo_common::{ContentId, NodeId};
use quinn::SendStream;
use tokio::sync::Semaphore;

use crate::rate_cap::RateCap;
use crate::share::{ShareStore, SharedFile};

/// Most piece uploads in progress at once on this node.
pub const MAX_CONCURRENT_UPLOADS: usize = 32;
/// Most piece uploads in progress at once for one peer connection.
pub const MAX_UPLOADS_PER_PEER: usize = 8;
/// Longest time one piece upload may take before its stream is reset.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Granularity of rate-capped sending.
const PACE_CHUNK: usize = 64 * 1024;

/// A token bucket: `rate` units per second, bursts of at most `burst` units.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RateLimit {
    /// A limit of `rate` per second (must be > 0) with bursts up to `burst`; the bucket
    /// starts full.
    pub fn new(rate: u64, burst: u64) -> Self {
        RateLimit {
            rate: rate as f64,
            burst: burst as f64,
            state: std::sync::Mutex::new((burst as f64, std::time::Instant::now())),
        }
    }

    /// The bucket's level now, after refilling since the last use.
    fn refill(&self, state: &mut (f64, std::time::Instant)) -> f64 {
        let now = std::time::Instant::now();
        let level =
            (state.0 + now.duration_since(state.1).as_secs_f64() * self.rate).min(self.burst);
        *state = (level, now);
        level
    }

    /// Takes `amount` now if available (no waiting); false when over the rate.
    pub fn try_take(&self, amount: u64) -> bool {
        let mut state = crate::lock(&self.state);
        let level = self.refill(&mut state);
        let ok = level >= amount as f64;
        if ok {
            state.0 = level - amount as f64;
        }
        ok
    }

    /// Waits until `amount` may be used (the bucket may go negative: later callers wait).
    pub async fn take(&self, amount: usize) {
        let wait = {
            let mut state = crate::lock(&self.state);
            let left = self.refill(&mut state) - amount as f64;
            state.0 = left;
            (left < 0.0).then(|| std::time::Duration::from_secs_f64(-left / self.rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Errors while answering (the stream is dropped; the connection lives on).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Writing the answer failed.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// Writing piece data failed.
    #[error("sending piece: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Serves manifests and pieces of `shares`.
#[derive(Debug)]
pub struct Uploads {
    shares: Arc<ShareStore>,
    slots: Semaphore,
    limit: RateCap,
    activity: activity::Activity,
    /// Piece bytes handed to QUIC since start.
    sent: AtomicU64,
}

impl Uploads {
    /// A server over `shares`, capped at `rate_kib` KiB/s (0: unlimited).
    pub fn new(shares: Arc<ShareStore>, rate_kib: u64) -> Self {
        Uploads {
            shares,
            slots: Semaphore::new(MAX_CONCURRENT_UPLOADS),
            limit: RateCap::new(rate_kib),
            activity: activity::Activity::default(),
            sent: AtomicU64::new(0),
        }
    }

    /// Piece bytes sent since start (written to QUIC streams).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The uploads in progress now (see [`activity`]).
    pub fn in_progress(&self) -> Vec<activity::UploadView> {
        self.activity.uploads(std::time::Instant::now())
    }

    /// The upload cap (a reloaded config changes it).
    pub fn rate_cap(&self) -> &RateCap {
        &self.limit
    }

    /// Sends a piece header and its bytes, paced by the rate cap; each chunk is counted as
    /// sent to `peer` once quinn has taken it.
    async fn send_piece(
        &self,
        send: &mut SendStream,
        data: Vec<u8>,
        peer: NodeId,
        file: &SharedFile,
    ) -> Result<(), ServeError> {
        let len = data.len() as u64;
        wire::write_frame(send, &Response::Piece { len }).await?;
        let mut data = bytes::Bytes::from(data);
        while !data.is_empty() {
            let chunk = if self.limit.is_capped() {
                let chunk = data.split_to(data.len().min(PACE_CHUNK));
                self.limit.take(chunk.len()).await;
                chunk
            } else {
                data.split_to(data.len())
            };
            // Hands the buffer to quinn without copying it.
            let len = chunk.len() as u64;
            send.write_chunk(chunk).await?;
            self.activity.sent(
                peer,
                file.id,
                &file.name,
                file.size,
                len,
                std::time::Instant::now(),
            );
            self.sent.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Answers `GetManifest`.
    pub async fn manifest(&self, id: &ContentId, send: &mut SendStream) -> Result<(), ServeError> {
        let answer = match self.shares.get(id) {
            Some(file) => Response::Manifest((*file.manifest).clone()),
            None => Response::error(ErrorCode::NotFound, format!("{id} is not shared here")),
        };
        wire::write_frame(send, &answer).await?;
        Ok(())
    }

    /// Answers `GetPiece` from `peer`; `peer_slots` bounds this peer's concurrent uploads.
    pub async fn piece(
        &self,
        peer: NodeId,
        id: &ContentId,
        index: u32,
        peer_slots: &Semaphore,
        send: &mut SendStream,
    ) -> Result<(), ServeError> {
        let Some(file) = self.shares.get(id) else {
            let answer = Response::error(ErrorCode::NotFound, format!("{id} is not shared here"));
            return Ok(wire::write_frame(send, &answer).await?);
        };
        let index = u64::from(index);
        if index >= file.manifest.pieces().max(1) {
            let answer = Response::error(ErrorCode::BadRequest, format!("no piece {index}"));
            return Ok(wire::write_frame(send, &answer).await?);
        }
        let Ok(_peer_permit) = peer_slots.acquire().await else {
            return Ok(());
        };
        let Ok(_permit) = self.slots.acquire().await else {
            return Ok(());
        };
        let (offset, len) = file.manifest.piece_range(index);
        let path = file.path.clone();
        let check = file.clone();
        let data = tokio::task::spawn_blocking(move || {
            if !check.unchanged_on_disk() {
                return Err(std::io::Error::other(
                    "file changed on disk since it was hashed",
                ));
            }
            let mut buf = vec![0u8; len as usize];
            std::fs::File::open(&path)?.read_exact_at(&mut buf, offset)?;
            Ok(buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match data {
            Ok(data) => {
                match tokio::time::timeout(SEND_TIMEOUT, self.send_piece(send, data, peer, &file))
                    .await
                {
                    Ok(sent) => sent?,
                    Err(_) => {
                        // A peer that stops reading must not hold upload slots forever.
                        let _ = send.reset(0u32.into());
                        tracing::info!(id = %id, index, "piece upload timed out; stream reset");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(path = %file.path.display(), error = %e, "cannot serve piece");
                self.shares.forget_changed(&file.path);
                let answer = Response::error(ErrorCode::NotFound, e.to_string());
                wire::write_frame(send, &answer).await?;
            }
        }
        Ok(())
    }
}
