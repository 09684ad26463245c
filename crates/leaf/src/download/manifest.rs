//! Racing sources for the manifest.
//!
//! [`MANIFEST_RACE`] connected sources are asked at once (the next one whenever one fails),
//! best ranked first, and each of the [`MANIFEST_RACE`] best-ranked sources as soon as it
//! connects even if the race is full: sources all connect at about the same time, so without
//! this the first to connect — as likely a crowd of stalling fakes as the honest sources the
//! supernode ranked first — would fill the race. If no manifest has verified [`MANIFEST_FIRST_BYTE_TIMEOUT`] after the first request went
//! out, every connected source is asked, and each that connects later: sources that stall the
//! manifest, however many, cost the download at most that short timeout, not the answer
//! timeout each. Requests already sent keep running (up to the usual answer timeout), so a
//! source that is merely slow can still win. The first manifest that verifies wins; a
//! source whose manifest does not is banned from the download. The extra copies are cheap: a
//! manifest is 32 bytes per piece, at most 128 KiB, so even [`super::MAX_SOURCES`] copies
//! are under 0.5 % of the file.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use kazoo_common::hash::Manifest;
use kazoo_common::wire::{Provider, Request, Response};
use kazoo_common::ContentId;
use quinn::Connection;

use super::contacts::Contacts;
use super::{BoxFuture, DownloadError, Job, MAX_SOURCES};
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

/// Connects to sources and races the manifest (steps 1 and 2 of the module doc). Returns the
/// verified manifest and the connected sources that may fetch pieces.
pub(super) async fn get_manifest(
    contacts: &mut Contacts<'_>,
    job: &Job,
) -> Result<(Manifest, Vec<(Provider, Connection)>), DownloadError> {
    type Asked = (Provider, Connection, Result<Manifest, RequestError>);
    let mut connected: Vec<(Provider, Connection)> = Vec::new();
    // Connected and not yet asked, best ranked first.
    let mut to_ask: Vec<(usize, Provider, Connection)> = Vec::new();
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
        while let Some(&(rank, _, _)) = to_ask.first() {
            if asking.len() >= width && rank >= MANIFEST_RACE {
                break;
            }
            let (_, provider, conn) = to_ask.remove(0);
            let id = job.id;
            race_started.get_or_insert(now);
            asking.push(Box::pin(async move {
                let result = fetch(&conn, id).await;
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
                    Ok((conn, path)) => {
                        contacts.connected(provider.node, path);
                        ever_connected = true;
                        let rank = contacts.dialer.rank(&provider.node);
                        let at = to_ask.partition_point(|(r, _, _)| *r <= rank);
                        to_ask.insert(at, (rank, provider, conn.clone()));
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
