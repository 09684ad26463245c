//! The piece phase of a download: opens the partial file, runs the source slots until every
//! piece is verified (dialling new sources as the network names them), and gathers the report.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kazoo_common::hash::Manifest;
use kazoo_common::wire::{CloseCode, Provider};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::contacts::Contacts;
use super::manifest::get_manifest;
use super::pace::PieceTimes;
use super::scheduler::Scheduler;
use super::worker::Ctx;
use super::{
    io, partial, BoxFuture, DownloadError, Job, Progress, Report, MAX_INFLIGHT_BYTES, MAX_SOURCES,
    REFRESH_INTERVAL, SLOTS_PER_SOURCE,
};

/// Runs a download after its sources were offered to `contacts`: the manifest, then the
/// pieces (steps 1 to 5 of the module doc).
pub(super) async fn download(
    contacts: &mut Contacts<'_>,
    job: Job,
    progress: watch::Sender<Progress>,
) -> Result<(Report, Manifest), DownloadError> {
    let started = Instant::now();
    let network = contacts.network;
    let (manifest, usable) = get_manifest(contacts, &job).await?;
    std::fs::create_dir_all(&job.partial_dir).map_err(io("creating the partial folder"))?;
    let (part_path, have_path) = partial::paths(&job.partial_dir, &job.id);
    let pieces = manifest.pieces() as usize;
    let (part, have, done) = partial::open(&part_path, &have_path, &manifest, &job.id).await?;
    let resumed_bytes = partial::resumed_bytes(&manifest, &done);
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
        first_piece: OnceLock::new(),
        resumed_bytes,
        progress,
        sources: Mutex::new(Vec::new()),
        lanes: SLOTS_PER_SOURCE.min(inflight_pieces / 2).max(1),
        counters: network.download_counters(),
        rate_cap: network.download_cap(),
        manifest,
    });
    ctx.publish();
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
                    Ok((conn, path)) => {
                        contacts.connected(provider.node, path);
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
    // Sources banned since the last refresh (bad pieces) are reported too (`download::run`
    // flushes the reports).
    contacts.update_bans(&ctx);
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
    let path = partial::finish(&part_path, &have_path, &job.destination, &job.name, &job.id)?;
    for report in &mut reports {
        report.reached = contacts.paths.get(&report.node).copied();
    }
    let bad_pieces = reports.iter().map(|r| r.bad_pieces).sum();
    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let report = Report {
        hash: job.id,
        path,
        bytes: ctx.manifest.size,
        resumed_bytes,
        seconds: started.elapsed().as_secs_f64(),
        connected_secs: contacts.first_connected.map(since),
        first_piece_secs: ctx.first_piece.get().copied().map(since),
        sources: reports,
        bad_pieces,
    };
    Ok((report, ctx.manifest.clone()))
}
