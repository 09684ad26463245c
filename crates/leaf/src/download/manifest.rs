//! Fetching a manifest with a short first-byte timeout, so that the race between sources
//! (see the download module doc) moves on quickly from one that stalls.

use std::time::Duration;

use kazoo_common::hash::Manifest;
use kazoo_common::wire::{self, Request, Response};
use kazoo_common::ContentId;
use quinn::Connection;
use tokio::io::AsyncReadExt;

use crate::client::{self, RequestError, ANSWER_TIMEOUT};

/// How long a source may take to start answering `GetManifest` (request sent, first bytes
/// of the answer back) before the download stops waiting for it; the rest of the answer
/// (up to 128 KiB for a file of 4,096 pieces) then has the usual answer timeout.
pub const MANIFEST_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);

/// Sources asked for the manifest at once; the first manifest that verifies wins. More would
/// only multiply the bytes of a large manifest; a source that stalls or fails makes room for
/// the next.
pub const MANIFEST_RACE: usize = 4;

/// Asks `conn` for the manifest of `id` (not yet verified).
pub(super) async fn fetch(conn: &Connection, id: ContentId) -> Result<Manifest, RequestError> {
    let start = async {
        let mut recv = client::send(conn, &Request::GetManifest { id }).await?;
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.map_err(|e| match e {
            quinn::ReadExactError::FinishedEarly(_) => RequestError::Eof,
            quinn::ReadExactError::ReadError(e) => RequestError::Read(e),
        })?;
        Ok::<_, RequestError>((prefix, recv))
    };
    let (prefix, mut recv) = tokio::time::timeout(MANIFEST_FIRST_BYTE_TIMEOUT, start)
        .await
        .map_err(|_| RequestError::Timeout)??;
    let mut framed = (&prefix[..]).chain(&mut recv);
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, wire::read_frame::<Response>(&mut framed))
        .await
        .map_err(|_| RequestError::Timeout)??;
    match answer {
        Response::Manifest(manifest) => Ok(manifest),
        Response::Error { code, message } => Err(RequestError::Remote { code, message }),
        other => Err(RequestError::Unexpected(format!("{other:?}"))),
    }
}
