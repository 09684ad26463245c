//! Incoming connections, whatever the role: handshake, then by intent — a peering or a
//! joining leaf goes to the supernode role (`supernode_role/`), a download connection is
//! served here — and one task per request stream. A peer that sends a malformed, oversized or unknown frame has its connection
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
    self, CloseCode, ErrorCode, FrameError, Intent, Request, REQUEST_TIMEOUT,
};
pub use kazoo_common::wire::{FETCH_IDLE, HANDSHAKE_RATE, INDEX_RATE, MAX_FETCH_PER_IP};
use kazoo_common::NodeId;
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;

use crate::serve::{RateLimit, MAX_UPLOADS_PER_PEER};

use super::supernode_role::admission::{self, Session};
use super::{hello, Inner, Node, MAX_DOWNLOADER_CONNECTIONS};

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
    let node = Node {
        inner: Arc::clone(inner),
    };
    let peer = pending.hello().node_id;
    match pending.hello().intent {
        Intent::Peer => node.accept_peer(pending).await,
        Intent::Join => admission::join(&node, pending).await,
        Intent::Fetch => {
            let Some(_slot) = FetchSlot::claim(inner, remote.ip()) else {
                tracing::info!(peer = %peer.short(), %remote, "download connection refused: too many from this IP");
                pending
                    .refuse(
                        ErrorCode::Busy,
                        "too many download connections from this IP",
                    )
                    .await;
                return;
            };
            match pending.admit(hello(inner, Intent::Fetch)).await {
                Ok(link) => serve_link(inner, link, None).await,
                Err(e) => {
                    tracing::info!(peer = %peer.short(), %remote, reason = %e, "handshake failed")
                }
            }
        }
    }
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
pub(super) async fn serve_link(inner: &Arc<Inner>, link: Link, leaf: Option<&Session>) {
    let Link {
        conn,
        hello,
        control_send,
        mut control_recv,
    } = link;
    let peer = hello.node_id;
    // A leaf hears of its succession list on the control stream; for other connections the
    // stream just stays open.
    let notices = match leaf {
        Some(session) => match session
            .sn
            .open_channel(peer, session.key, &conn, control_send)
        {
            Some(notices) => Some(notices),
            None => return,
        },
        None => None,
    };
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
    let queries = Arc::new(RateLimit::new(
        admission::LEAF_QUERY_RATE,
        admission::LEAF_QUERY_RATE,
    ));
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
    if let (Some(notices), Some(session)) = (notices, leaf) {
        notices.abort();
        session.sn.close_channel(peer, &conn);
    }
}

/// Per-connection limits.
#[derive(Clone, Copy)]
pub(super) struct Limits<'a> {
    /// Concurrent piece uploads to this peer.
    uploads: &'a Semaphore,
    /// Searches per second from this leaf.
    pub queries: &'a RateLimit,
    /// `Register`/`Unregister` entries per second from this leaf.
    pub index: &'a RateLimit,
}

/// Why serving a request stream ended early.
pub(super) enum StreamError {
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
    leaf: Option<&Session>,
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
        Request::Register { .. }
        | Request::Unregister { .. }
        | Request::Search { .. }
        | Request::Lookup { .. }
        | Request::ReportUnreachable { .. } => {
            admission::answer(inner, peer, limits, leaf, &request, &mut send).await?
        }
    }
    let _ = send.finish();
    Ok(())
}
