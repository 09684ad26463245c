//! Incoming connections: handshake, admission of joining leaves, and one task per request
//! stream. A peer that sends a malformed, oversized or unknown frame has its connection
//! closed with `PROTOCOL_VIOLATION`; everyone else is unaffected.
//!
//! Connections are bounded fairly: all together by the node's connection limit; handshakes
//! arriving faster than [`HANDSHAKE_RATE`] must first prove their address (QUIC Retry);
//! download connections by [`MAX_FETCH_PER_IP`] per IP and closed after [`FETCH_IDLE`]
//! without a request; leaves by `max_leaves` and `max_leaves_per_ip`; a leaf's
//! `Register`/`Unregister` entries by [`INDEX_RATE`]. A leaf that joins again supersedes
//! its older session, which is closed with [`CloseCode::SUPERSEDED`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kazoo_common::transport::{self, Link};
use kazoo_common::wire::{
    self, CloseCode, ErrorCode, FrameError, Hit, Intent, Notice, Provider, Request, Response,
    HITS_PER_FRAME, MAX_RESULTS, MAX_SUCCESSION,
};
use kazoo_common::NodeId;
use kazoo_supernode::{check_query, Admission, LeafKey, Supernode};
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;

use crate::serve::{RateLimit, MAX_UPLOADS_PER_PEER};

use super::election::{LeafChannel, NOTICE_QUEUE};
use super::{hello, Inner, MAX_DOWNLOADER_CONNECTIONS};

use kazoo_common::wire::REQUEST_TIMEOUT;
pub use kazoo_common::wire::{FETCH_IDLE, HANDSHAKE_RATE, INDEX_RATE, MAX_FETCH_PER_IP};

/// Accepts connections until the endpoint closes.
pub(super) async fn accept_loop(inner: Arc<Inner>) {
    // Leaves and peers (a quarter over max_peers while a mesh settles) always fit next to
    // the downloaders.
    let limit = inner.config.supernode.max_leaves
        + inner.config.supernode.max_peers * 5 / 4
        + MAX_DOWNLOADER_CONNECTIONS;
    let handshakes = RateLimit::new(HANDSHAKE_RATE, 2 * HANDSHAKE_RATE);
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.connections.load(Ordering::SeqCst) >= limit {
            tracing::warn!(remote = %incoming.remote_address(), limit, "connection refused: too many connections");
            incoming.refuse();
            continue;
        }
        if !incoming.remote_address_validated() && !handshakes.try_take(1) {
            tracing::debug!(remote = %incoming.remote_address(), "handshake rate exceeded: asking for address validation");
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        inner.connections.fetch_add(1, Ordering::SeqCst);
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            handle_connection(&inner, incoming).await;
            inner.connections.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(%remote, "connection ended");
        });
    }
}

async fn handle_connection(inner: &Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let pending = match transport::accept(incoming).await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::info!(%remote, reason = %e, "handshake failed");
            return;
        }
    };
    let peer = pending.hello().node_id;
    let joining = pending.hello().intent == Intent::Join;
    let advertised = pending.advertised();
    let sn = inner
        .supernode
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if pending.hello().intent == Intent::Peer {
        let Some(sn) = sn.filter(|sn| !sn.is_retired()) else {
            pending
                .refuse(ErrorCode::NotSupernode, "this node is not a supernode")
                .await;
            return;
        };
        if !sn.with_overlay(|o| o.wants_peer(&peer, std::time::Instant::now())) {
            pending
                .refuse(
                    ErrorCode::Busy,
                    "no room for another peer (or already peered)",
                )
                .await;
            return;
        }
        match pending.admit(hello(inner, Intent::Fetch)).await {
            Ok(link) => {
                let node = super::Node {
                    inner: Arc::clone(inner),
                };
                node.run_peer(sn, link, false).await;
            }
            Err(e) => {
                tracing::info!(peer = %peer.short(), %remote, reason = %e, "peering handshake failed")
            }
        }
        return;
    }
    let _fetch_slot = if pending.hello().intent == Intent::Fetch {
        match FetchSlot::claim(inner, remote.ip()) {
            Some(slot) => Some(slot),
            None => {
                tracing::info!(peer = %peer.short(), %remote, "download connection refused: too many from this IP");
                pending
                    .refuse(
                        ErrorCode::Busy,
                        "too many download connections from this IP",
                    )
                    .await;
                return;
            }
        }
    } else {
        None
    };
    let leaf = match (joining, &sn) {
        (false, _) => None,
        (true, None) => {
            tracing::info!(peer = %peer.short(), %remote, "join refused: not a supernode");
            // Say where to go: our supernode and the others we know of (we may have demoted).
            let node = super::Node {
                inner: Arc::clone(inner),
            };
            let mut redirect: Vec<Provider> = node.uplink_provider().into_iter().collect();
            redirect.extend(node.succession().1);
            redirect.retain(|p| p.node != peer);
            redirect.truncate(MAX_SUCCESSION);
            pending
                .refuse_with(
                    ErrorCode::NotSupernode,
                    "this node is not a supernode",
                    redirect,
                )
                .await;
            return;
        }
        (true, Some(sn)) => match sn.admit(
            peer,
            advertised,
            pending.hello().capacity,
            std::time::Instant::now(),
        ) {
            Admission::Admitted(key) => {
                // A session this one replaced is closed and its entries drained.
                close_superseded(inner, peer, key);
                spawn_drain(sn);
                Some((Arc::clone(sn), key))
            }
            Admission::Full(reason) => {
                tracing::info!(peer = %peer.short(), %remote, %reason, "join refused; redirected");
                let redirect = sn.redirect_list(MAX_SUCCESSION);
                pending
                    .refuse_with(ErrorCode::Busy, &reason, redirect)
                    .await;
                if !sn.is_retired() {
                    inner.request_promotion(sn);
                }
                return;
            }
        },
    };
    let link = match pending.admit(hello(inner, Intent::Fetch)).await {
        Ok(link) => link,
        Err(e) => {
            tracing::info!(peer = %peer.short(), %remote, reason = %e, "handshake failed");
            if let Some((sn, key)) = leaf {
                sn.depart(peer, key);
                spawn_drain(&sn);
            }
            return;
        }
    };
    if let Some((sn, key)) = &leaf {
        tracing::info!(peer = %peer.short(), %remote, "leaf joined");
        if link.hello.capacity > 0 {
            let node = super::Node {
                inner: Arc::clone(inner),
            };
            let (sn, key, addr) = (Arc::clone(sn), *key, advertised);
            tokio::spawn(async move { node.check_reachable(&sn, peer, key, addr).await });
        }
    }
    serve_link(inner, link, leaf.as_ref()).await;
    if let Some((sn, key)) = leaf {
        let dropped = sn.depart(peer, key);
        spawn_drain(&sn);
        tracing::info!(peer = %peer.short(), %remote, entries = dropped, "leaf left; its entries dropped");
    }
}

/// Drains departed leaves' entries from `sn`'s index in short steps with pauses, so
/// keep-alives and other requests keep flowing.
fn spawn_drain(sn: &Arc<Supernode>) {
    let sn = Arc::clone(sn);
    tokio::spawn(async move {
        while sn.drain_step() {
            tokio::time::sleep(kazoo_supernode::service::DRAIN_PAUSE).await;
        }
    });
}

/// One of the download connections allowed from an IP ([`MAX_FETCH_PER_IP`]); released on
/// drop.
struct FetchSlot<'a> {
    inner: &'a Inner,
    ip: std::net::IpAddr,
}

impl<'a> FetchSlot<'a> {
    fn claim(inner: &'a Inner, ip: std::net::IpAddr) -> Option<Self> {
        let mut counts = crate::lock(&inner.fetch_per_ip);
        let count = counts.entry(ip).or_default();
        if *count >= MAX_FETCH_PER_IP {
            return None;
        }
        *count += 1;
        Some(FetchSlot { inner, ip })
    }
}

impl Drop for FetchSlot<'_> {
    fn drop(&mut self) {
        let mut counts = crate::lock(&self.inner.fetch_per_ip);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Serves request streams until the connection ends.
async fn serve_link(inner: &Arc<Inner>, link: Link, leaf: Option<&(Arc<Supernode>, LeafKey)>) {
    let Link {
        conn,
        hello,
        control_send,
        mut control_recv,
    } = link;
    let peer = hello.node_id;
    // A leaf hears of its succession list on the control stream; for other connections the
    // stream just stays open.
    if let Some((sn, key)) = leaf {
        if !supersede(inner, sn, peer, *key, &conn) {
            return;
        }
    }
    let notices = leaf.map(|(sn, key)| {
        let (tx, rx) = tokio::sync::mpsc::channel(NOTICE_QUEUE);
        let channel = LeafChannel {
            tx,
            conn: conn.clone(),
            key: *key,
        };
        crate::lock(&inner.leaf_notices).insert(peer, channel);
        if let Some(to) = sn.retired_to() {
            // The supernode demoted while this leaf was joining.
            inner.redirect_leaf(peer, to, "supernode demoted");
        }
        tokio::spawn(send_notices(Arc::clone(sn), control_send, rx))
    });
    // Nothing travels dialler → acceptor on the control stream in protocol version 1.
    let watch_conn = conn.clone();
    let control = tokio::spawn(async move {
        let mut byte = [0u8; 1];
        if let Ok(Some(_)) = control_recv.read(&mut byte).await {
            tracing::warn!(peer = %peer.short(), reason = "data on the control stream", "protocol violation; closing");
            transport::close(
                &watch_conn,
                CloseCode::PROTOCOL_VIOLATION,
                "unexpected data on control stream",
            );
        }
    });
    let peer_slots = Arc::new(Semaphore::new(MAX_UPLOADS_PER_PEER));
    let queries = Arc::new(RateLimit::new(LEAF_QUERY_RATE, LEAF_QUERY_RATE));
    let index_rate = Arc::new(RateLimit::new(
        INDEX_RATE,
        (wire::MAX_ENTRIES_PER_LEAF + wire::MAX_BATCH) as u64,
    ));
    // Request streams open now (a download connection idle for FETCH_IDLE is closed).
    let open = Arc::new(());
    let fetch_only = leaf.is_none() && hello.intent == Intent::Fetch;
    loop {
        let accepted = if fetch_only {
            match tokio::time::timeout(FETCH_IDLE, conn.accept_bi()).await {
                Ok(accepted) => accepted,
                Err(_) if Arc::strong_count(&open) == 1 => {
                    tracing::debug!(peer = %peer.short(), "download connection idle; closing");
                    transport::close(&conn, CloseCode::NORMAL, "idle");
                    break;
                }
                Err(_) => continue,
            }
        } else {
            conn.accept_bi().await
        };
        let (send, recv) = match accepted {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(peer = %peer.short(), reason = %e, "connection closed");
                break;
            }
        };
        let open = Arc::clone(&open);
        let index_rate = Arc::clone(&index_rate);
        let inner = Arc::clone(inner);
        let conn = conn.clone();
        let leaf = leaf.cloned();
        let peer_slots = Arc::clone(&peer_slots);
        let queries = Arc::clone(&queries);
        tokio::spawn(async move {
            let _open = open;
            let limits = Limits {
                uploads: &peer_slots,
                queries: &queries,
                index: &index_rate,
            };
            match serve_stream(&inner, peer, limits, send, recv, leaf.as_ref()).await {
                Ok(()) => {}
                Err(StreamError::Violation(reason)) => {
                    tracing::warn!(peer = %peer.short(), remote = %conn.remote_address(), %reason, "protocol violation; closing connection");
                    transport::close(&conn, CloseCode::PROTOCOL_VIOLATION, &reason);
                }
                Err(StreamError::Stream(reason)) => {
                    tracing::debug!(peer = %peer.short(), %reason, "request stream ended early");
                }
            }
        });
    }
    control.abort();
    if let Some(notices) = notices {
        notices.abort();
        let mut channels = crate::lock(&inner.leaf_notices);
        // A leaf that re-joined has a newer connection: keep its channel.
        if channels
            .get(&peer)
            .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
        {
            channels.remove(&peer);
        }
    }
}

/// Closes the connection of leaf `peer`'s older session, now that `key` has replaced it.
fn close_superseded(inner: &Inner, peer: NodeId, key: LeafKey) {
    let mut channels = crate::lock(&inner.leaf_notices);
    if channels.get(&peer).is_some_and(|c| c.key != key) {
        if let Some(old) = channels.remove(&peer) {
            tracing::info!(peer = %peer.short(), "leaf joined again; closing its older session");
            transport::close(
                &old.conn,
                CloseCode::SUPERSEDED,
                "superseded by a newer session",
            );
        }
    }
}

/// Makes `conn` the channel of leaf `peer` if `key` is its current session, closing an older
/// session's connection with [`CloseCode::SUPERSEDED`]; returns false (and closes `conn`)
/// if a newer session has replaced this one already.
fn supersede(
    inner: &Inner,
    sn: &Supernode,
    peer: NodeId,
    key: LeafKey,
    conn: &quinn::Connection,
) -> bool {
    let channels = crate::lock(&inner.leaf_notices);
    if sn.session(&peer) != Some(key) {
        drop(channels);
        tracing::info!(peer = %peer.short(), "leaf session superseded before it started; closing");
        transport::close(
            conn,
            CloseCode::SUPERSEDED,
            "a newer session of this leaf exists",
        );
        return false;
    }
    if let Some(old) = channels.get(&peer) {
        if old.conn.stable_id() != conn.stable_id() {
            tracing::info!(peer = %peer.short(), "leaf joined again; closing its older session");
            transport::close(
                &old.conn,
                CloseCode::SUPERSEDED,
                "superseded by a newer session",
            );
        }
    }
    true
}

/// How often a supernode checks whether its leaves' succession notice changed.
const NOTICE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps a leaf's succession notice current, and passes on other notices from `extra`.
async fn send_notices(
    sn: Arc<Supernode>,
    mut send: SendStream,
    mut extra: tokio::sync::mpsc::Receiver<Notice>,
) {
    let mut last: Option<Notice> = None;
    let mut tick = tokio::time::interval(NOTICE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            notice = extra.recv() => {
                match notice {
                    Some(notice) => {
                        if wire::write_frame(&mut send, &notice).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                }
                continue;
            }
        }
        let heirs = sn.succession(MAX_SUCCESSION);
        let supernodes = sn.peer_providers(MAX_SUCCESSION);
        let notice = Notice::Succession { heirs, supernodes };
        if last.as_ref() != Some(&notice) {
            if wire::write_frame(&mut send, &notice).await.is_err() {
                return;
            }
            last = Some(notice);
        }
    }
}

/// Per-connection limits.
#[derive(Clone, Copy)]
struct Limits<'a> {
    /// Concurrent piece uploads to this peer.
    uploads: &'a Semaphore,
    /// Searches per second from this leaf.
    queries: &'a RateLimit,
    /// `Register`/`Unregister` entries per second from this leaf.
    index: &'a RateLimit,
}

use kazoo_common::wire::LEAF_QUERY_RATE;

/// Answers a leaf's search through the overlay: hits stream back as they arrive, then `End`.
async fn search(
    inner: &Arc<Inner>,
    peer: NodeId,
    limits: Limits<'_>,
    sn: &Arc<Supernode>,
    words: &[String],
    max_results: u32,
    send: &mut SendStream,
) -> Result<(), StreamError> {
    if !limits.queries.try_take(1) {
        let refusal = Response::error(ErrorCode::Busy, "query rate exceeded; slow down");
        tracing::info!(peer = %peer.short(), "search refused: query rate exceeded");
        return Ok(wire::write_frame(send, &refusal).await?);
    }
    if let Err(e) = check_query(words) {
        return Ok(wire::write_frame(send, &Response::error(ErrorCode::BadRequest, e)).await?);
    }
    let node = super::Node {
        inner: Arc::clone(inner),
    };
    let cap = 2 * max_results.min(MAX_RESULTS as u32) as usize;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Hit>>(64);
    let forward = async {
        let mut sent = 0;
        while let Some(hits) = rx.recv().await {
            if sent >= cap {
                continue;
            }
            let take = hits.len().min(cap - sent);
            sent += take;
            for chunk in hits[..take].chunks(HITS_PER_FRAME) {
                wire::write_frame(send, &Response::Hits(chunk.to_vec())).await?;
            }
        }
        wire::write_frame(send, &Response::End).await
    };
    let run = async move {
        node.routed_search(sn, words, max_results, |mut hits| {
            sn.rank_hits(peer, &mut hits, std::time::Instant::now());
            let _ = tx.try_send(hits);
        })
        .await;
    };
    let (_, forwarded) = tokio::join!(run, forward);
    Ok(forwarded?)
}

enum StreamError {
    /// The peer broke the protocol: close its connection.
    Violation(String),
    /// The stream failed (reset, connection lost): nothing to do.
    Stream(String),
}

impl From<FrameError> for StreamError {
    fn from(e: FrameError) -> Self {
        if e.is_violation() {
            StreamError::Violation(e.to_string())
        } else {
            StreamError::Stream(e.to_string())
        }
    }
}

async fn serve_stream(
    inner: &Arc<Inner>,
    peer: NodeId,
    limits: Limits<'_>,
    mut send: SendStream,
    mut recv: RecvStream,
    leaf: Option<&(Arc<Supernode>, LeafKey)>,
) -> Result<(), StreamError> {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, wire::read_request(&mut recv))
        .await
        .map_err(|_| StreamError::Stream("request timed out".into()))??;
    match &request {
        Request::GetManifest { id } => inner
            .uploads
            .manifest(id, &mut send)
            .await
            .map_err(|e| StreamError::Stream(e.to_string()))?,
        Request::GetPiece { id, index } => inner
            .uploads
            .piece(id, *index, limits.uploads, &mut send)
            .await
            .map_err(|e| StreamError::Stream(e.to_string()))?,
        Request::Search { words, max_results } if leaf.is_some() => {
            if let Some((sn, _)) = leaf {
                search(inner, peer, limits, sn, words, *max_results, &mut send).await?;
            }
        }
        Request::Register { .. }
        | Request::Unregister { .. }
        | Request::Search { .. }
        | Request::Lookup { .. }
        | Request::ReportUnreachable { .. } => {
            let entries = match &request {
                Request::Register { entries } => entries.len().min(wire::MAX_BATCH),
                Request::Unregister { ids } => ids.len().min(wire::MAX_BATCH),
                _ => 0,
            };
            if leaf.is_some() && entries > 0 {
                limits.index.take(entries).await;
            }
            let frames = match leaf {
                Some((sn, key)) => sn.answer_from(peer, *key, &request, std::time::Instant::now()),
                None => vec![Response::error(
                    ErrorCode::NotSupernode,
                    "index requests need a joined leaf connection to a supernode",
                )],
            };
            for frame in &frames {
                if let Response::Error { code, message } = frame {
                    tracing::info!(peer = %peer.short(), code = ?code, %message, "request refused");
                }
                wire::write_frame(&mut send, frame).await?;
            }
        }
    }
    let _ = send.finish();
    Ok(())
}
