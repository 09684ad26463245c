//! Racing sources for the manifest.
//!
//! Up to [`MANIFEST_RACE`] connected sources are asked at once. A source that has not
//! answered within [`MANIFEST_FIRST_BYTE_TIMEOUT`] stops holding its place in the race: the
//! next source is asked as well, while its own request keeps running (up to the usual answer
//! timeout), so a source that is merely slow can still win and one that stalls costs the
//! download at most that short timeout, not the answer timeout. The first manifest that
//! verifies wins; the download module bans a source whose manifest does not.

use std::time::Duration;

use kazoo_common::hash::Manifest;
use kazoo_common::wire::{Request, Response};
use kazoo_common::ContentId;
use quinn::Connection;

use crate::client::{self, RequestError};

/// How long a source asked for the manifest has the race to itself (with the others asked
/// at the same time) before the next source is asked too.
pub const MANIFEST_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);

/// Sources asked for the manifest at once, not counting those past
/// [`MANIFEST_FIRST_BYTE_TIMEOUT`]. More would only multiply the bytes of a large manifest
/// (up to 128 KiB for a file of 4,096 pieces).
pub const MANIFEST_RACE: usize = 4;

/// Asks `conn` for the manifest of `id` (not yet verified).
pub(super) async fn fetch(conn: &Connection, id: ContentId) -> Result<Manifest, RequestError> {
    match client::call(conn, &Request::GetManifest { id }).await? {
        Response::Manifest(manifest) => Ok(manifest),
        other => Err(RequestError::Unexpected(format!("{other:?}"))),
    }
}
