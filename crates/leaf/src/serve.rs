//! Serving shared files to other nodes: manifests and pieces.
//!
//! Piece reads are bounded by a node-wide semaphore ([`MAX_CONCURRENT_UPLOADS`] pieces in
//! memory at once); per-connection concurrency is bounded by QUIC stream credit
//! ([`kazoo_common::wire::MAX_CONCURRENT_STREAMS`]). Before each piece the file's size and
//! mtime are checked against what was hashed: a file changed on disk is not served (the
//! downloader would reject it anyway) and is dropped from the share list for re-hashing.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use kazoo_common::wire::{self, ErrorCode, FrameError, Response};
use kazoo_common::ContentId;
use quinn::SendStream;
use tokio::sync::Semaphore;

use crate::share::ShareStore;

/// Most piece uploads in progress at once on this node.
pub const MAX_CONCURRENT_UPLOADS: usize = 32;

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
}

impl Uploads {
    /// A server over `shares`.
    pub fn new(shares: Arc<ShareStore>) -> Self {
        Uploads {
            shares,
            slots: Semaphore::new(MAX_CONCURRENT_UPLOADS),
        }
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

    /// Answers `GetPiece`.
    pub async fn piece(
        &self,
        id: &ContentId,
        index: u32,
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
                wire::write_frame(send, &Response::Piece { len }).await?;
                send.write_all(&data).await?;
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
