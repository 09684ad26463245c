//! Incoming connections, whatever the role: handshake, then by intent — a peering or a
//! joining leaf goes to the supernode role (`supernode_role/`), a download connection's
//! request streams to `streams.rs`.
//!
//! Connections are bounded fairly: all together by the node's connection limit; handshakes
//! arriving faster than [`HANDSHAKE_RATE`] must first prove their address (QUIC Retry);
//! download connections by [`MAX_FETCH_PER_IP`] per IP and closed after [`FETCH_IDLE`]
//! without a request; leaves by `max_leaves` and `max_leaves_per_ip`; a leaf's
//! `Register`/`Unregister` entries by [`INDEX_RATE`]. A leaf that joins again supersedes
//! its older session, which is closed with [`CloseCode::SUPERSEDED`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kazoo_common::transport;
use kazoo_common::wire::{ErrorCode, Intent};
pub use kazoo_common::wire::{FETCH_IDLE, HANDSHAKE_RATE, INDEX_RATE, MAX_FETCH_PER_IP};
use kazoo_common::NodeId;

use crate::serve::RateLimit;

use super::streams::serve_link;
use super::supernode_role::admission;
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
            tracing::warn!(remote = %kazoo_common::addr::canonical(incoming.remote_address()), limit, "connection refused: too many connections");
            incoming.refuse();
            continue;
        }
        if !incoming.remote_address_validated() && !handshakes.try_take(1) {
            tracing::debug!(remote = %kazoo_common::addr::canonical(incoming.remote_address()), "handshake rate exceeded: asking for address validation");
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        inner.connections.fetch_add(1, Ordering::SeqCst);
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let remote = kazoo_common::addr::canonical(incoming.remote_address());
            handle_connection(&inner, incoming, None).await;
            inner.connections.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(%remote, "connection ended");
        });
    }
}

/// Handles one incoming connection to its end. `relayed`: it came through a relay circuit
/// announced for that node, which may only download.
pub(super) async fn handle_connection(
    inner: &Arc<Inner>,
    incoming: quinn::Incoming,
    relayed: Option<NodeId>,
) {
    let remote = kazoo_common::addr::canonical(incoming.remote_address());
    let pending = match transport::accept_private(incoming, inner.network.clone()).await {
        Ok(pending) => pending,
        Err(e @ transport::TransportError::WrongNetwork(_)) => {
            tracing::warn!(%remote, reason = %e, "refused a node of another network (network.secret)");
            let node = Node {
                inner: Arc::clone(inner),
            };
            node.note_error(format!("refused a node at {remote}: {e}"));
            return;
        }
        Err(e) => {
            tracing::info!(%remote, reason = %e, "handshake failed");
            return;
        }
    };
    let node = Node {
        inner: Arc::clone(inner),
    };
    let peer = pending.hello().node_id;
    if !inner.config.network.allows(&peer) {
        tracing::warn!(peer = %peer, %remote, "refused a node not in network.allow");
        node.note_error(format!(
            "refused node {} at {remote}: not in network.allow",
            peer.short()
        ));
        pending
            .refuse(
                ErrorCode::NotAllowed,
                &format!("node {peer} is not in this node's network.allow"),
            )
            .await;
        return;
    }
    if let Some(expected) = relayed {
        if peer != expected || pending.hello().intent != Intent::Fetch {
            tracing::info!(peer = %peer.short(), expected = %expected.short(), "relayed connection refused: not the announced downloader");
            pending
                .refuse(
                    ErrorCode::BadRequest,
                    "a relay circuit carries only the announced download",
                )
                .await;
            return;
        }
    }
    match pending.hello().intent {
        Intent::Reverse => {
            if !inner.reverse.awaits(&peer) {
                tracing::info!(peer = %peer.short(), %remote, "reverse connection refused: none was asked of it");
                pending
                    .refuse(
                        ErrorCode::BadRequest,
                        "no reverse connection was asked of you",
                    )
                    .await;
                return;
            }
            match pending.admit(hello(inner, Intent::Fetch)).await {
                Ok(link) => {
                    if !inner.reverse.deliver(peer, link.conn.clone()) {
                        tracing::debug!(peer = %peer.short(), "reverse connection arrived after its wait ended");
                    }
                }
                Err(e) => {
                    tracing::info!(peer = %peer.short(), %remote, reason = %e, "handshake failed")
                }
            }
        }
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
