//! Incoming connections: handshake, admission of joining leaves, and one task per request
//! stream. A peer that sends a malformed, oversized or unknown frame has its connection
//! closed with `PROTOCOL_VIOLATION`; everyone else is unaffected.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kazoo_common::transport::{self, Link};
use kazoo_common::wire::{self, CloseCode, ErrorCode, FrameError, Intent, Request, Response};
use kazoo_common::NodeId;
use kazoo_supernode::{Admission, LeafKey, Supernode};
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;

use crate::serve::MAX_UPLOADS_PER_PEER;

use super::{hello, Inner, MAX_DOWNLOADER_CONNECTIONS};

/// How long a peer may take to send its request after opening a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the endpoint closes.
pub(super) async fn accept_loop(inner: Arc<Inner>) {
    let limit = inner.config.supernode.max_leaves
        + inner.config.supernode.max_peers
        + MAX_DOWNLOADER_CONNECTIONS;
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.connections.load(Ordering::SeqCst) >= limit {
            tracing::warn!(remote = %incoming.remote_address(), limit, "connection refused: too many connections");
            incoming.refuse();
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
    let sn = inner
        .supernode
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let leaf = match (joining, &sn) {
        (false, _) => None,
        (true, None) => {
            tracing::info!(peer = %peer.short(), %remote, "join refused: not a supernode");
            pending
                .refuse(ErrorCode::NotSupernode, "this node is not a supernode")
                .await;
            return;
        }
        (true, Some(sn)) => match sn.admit(peer, remote) {
            Admission::Admitted(key) => Some((Arc::clone(sn), key)),
            Admission::Full(reason) => {
                tracing::info!(peer = %peer.short(), %remote, %reason, "join refused");
                pending.refuse(ErrorCode::Busy, &reason).await;
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
            }
            return;
        }
    };
    if leaf.is_some() {
        tracing::info!(peer = %peer.short(), %remote, "leaf joined");
    }
    serve_link(inner, link, leaf.as_ref()).await;
    if let Some((sn, key)) = leaf {
        let dropped = sn.depart(peer, key);
        tracing::info!(peer = %peer.short(), %remote, entries = dropped, "leaf left; its entries dropped");
    }
}

/// Serves request streams until the connection ends.
async fn serve_link(inner: &Arc<Inner>, link: Link, leaf: Option<&(Arc<Supernode>, LeafKey)>) {
    let Link {
        conn,
        hello,
        control_send: _control_send,
        mut control_recv,
    } = link;
    let peer = hello.node_id;
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
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(peer = %peer.short(), reason = %e, "connection closed");
                break;
            }
        };
        let inner = Arc::clone(inner);
        let conn = conn.clone();
        let leaf = leaf.cloned();
        let peer_slots = Arc::clone(&peer_slots);
        tokio::spawn(async move {
            match serve_stream(&inner, peer, &peer_slots, send, recv, leaf.as_ref()).await {
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
    inner: &Inner,
    peer: NodeId,
    peer_slots: &Semaphore,
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
            .piece(id, *index, peer_slots, &mut send)
            .await
            .map_err(|e| StreamError::Stream(e.to_string()))?,
        Request::Register { .. }
        | Request::Unregister { .. }
        | Request::Search { .. }
        | Request::Lookup { .. } => {
            let frames = match leaf {
                Some((sn, key)) => sn.answer(*key, &request),
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
