//! Racing sources for the manifest.
//!
//! [`MANIFEST_RACE`] connected sources are asked at once (the next one whenever one fails).
//! If no manifest has verified [`MANIFEST_FIRST_BYTE_TIMEOUT`] after the first request went
//! out, every connected source is asked, and each that connects later: sources that stall the
//! manifest, however many, cost the download at most that short timeout, not the answer
//! timeout each. Requests already sent keep running (up to the usual answer timeout), so a
//! source that is merely slow can still win. The first manifest that verifies wins; the
//! download module bans a source whose manifest does not. The extra copies are cheap: a
//! manifest is 32 bytes per piece, at most 128 KiB, so even [`super::MAX_SOURCES`] copies
//! are under 0.5 % of the file.

use std::time::Duration;

use kazoo_common::hash::Manifest;
use kazoo_common::wire::{Request, Response};
use kazoo_common::ContentId;
use quinn::Connection;

use crate::client::{self, RequestError};

/// How long the first sources asked may take to answer with a manifest before every
/// connected source is asked.
pub const MANIFEST_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);

/// Sources asked for the manifest at once until [`MANIFEST_FIRST_BYTE_TIMEOUT`] has passed.
pub const MANIFEST_RACE: usize = 4;

/// Asks `conn` for the manifest of `id` (not yet verified).
pub(super) async fn fetch(conn: &Connection, id: ContentId) -> Result<Manifest, RequestError> {
    match client::call(conn, &Request::GetManifest { id }).await? {
        Response::Manifest(manifest) => Ok(manifest),
        other => Err(RequestError::Unexpected(format!("{other:?}"))),
    }
}
