//! A connection's request streams, whatever the role: one task per stream under the
//! connection's [`Limits`], manifests and pieces served here, index and search requests from
//! a joined leaf handed to the supernode role (`supernode_role/requests.rs`). A peer that
//! sends a malformed, oversized or unknown frame has its connection closed with
//! `PROTOCOL_VIOLATION`; a download connection without a request for [`FETCH_IDLE`] is closed.

use std::sync::Arc;

use kazoo_common::transport::{self, Link};
use kazoo_common::wire::{
    self, CloseCode, ErrorCode, Intent, Request, Response, BROWSE_PAGE, FETCH_IDLE, INDEX_RATE,
    LEAF_QUERY_RATE, REQUEST_TIMEOUT,
};
use kazoo_common::NodeId;
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;

use super::request_limits::{Limits, StreamError};
use super::supernode_role::{relaying, requests, Session};
use super::Inner;
use crate::serve::{RateLimit, MAX_UPLOADS_PER_PEER};

/// Serves request streams until the connection ends.
pub(in crate::node) async fn serve_link(inner: &Arc<Inner>, link: Link, leaf: Option<&Session>) {
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
                    tracing::warn!(peer = %peer.short(), remote = %kazoo_common::addr::canonical(conn.remote_address()), %reason, "protocol violation; closing connection");
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
            .piece(peer, id, *index, limits.uploads, &mut send)
            .await
            .map_err(|e| StreamError::Stream(e.to_string()))?,
        Request::Relay { target, requester } => {
            let Some(session) = leaf else {
                return refuse_relay(&mut send).await;
            };
            let asker = relaying::Asker::Leaf(peer);
            return relaying::relay(&session.sn, asker, *target, *requester, send, recv).await;
        }
        Request::RelayAccept { circuit } => {
            let Some(session) = leaf else {
                return refuse_relay(&mut send).await;
            };
            return relaying::accept(&session.sn, peer, *circuit, send, recv).await;
        }
        Request::Browse { start } => {
            let answer = browse_page(inner, *start, limits.queries);
            wire::write_frame(&mut send, &answer).await?;
        }
        Request::DialBack { .. } => {
            let refusal = Response::error(
                ErrorCode::BadRequest,
                "DialBack is a peer's request, on a stream of the peering",
            );
            wire::write_frame(&mut send, &refusal).await?;
        }
        Request::Register { .. }
        | Request::Unregister { .. }
        | Request::Search { .. }
        | Request::Lookup { .. }
        | Request::ReportUnreachable { .. }
        | Request::Connect { .. } => {
            requests::answer(inner, peer, limits, leaf, &request, &mut send).await?
        }
    }
    let _ = send.finish();
    Ok(())
}

/// Refuses a relay request on a connection that is no joined leaf's.
async fn refuse_relay(send: &mut SendStream) -> Result<(), StreamError> {
    let refusal = Response::error(
        ErrorCode::NotSupernode,
        "relays need a joined leaf connection to a supernode",
    );
    wire::write_frame(send, &refusal).await?;
    Ok(())
}

/// The answer to `Browse { start }`: a page of this node's sorted listing, unless it opted
/// out (`share.browsable = false`) or the connection is over its request rate.
fn browse_page(inner: &Inner, start: u32, rate: &RateLimit) -> Response {
    if !inner.config.share.browsable {
        return Response::error(
            ErrorCode::NotBrowsable,
            "this node does not let others list its files (share.browsable = false)",
        );
    }
    if !rate.try_take(1) {
        return Response::error(ErrorCode::Busy, "request rate exceeded; slow down");
    }
    let listing = inner.shares.listing();
    let entries = listing
        .iter()
        .skip(start as usize)
        .take(BROWSE_PAGE)
        .cloned()
        .collect();
    Response::Files {
        entries,
        total: u32::try_from(listing.len()).unwrap_or(u32::MAX),
    }
}
