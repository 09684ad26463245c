//! Leaves joining this node, over QUIC: admission by the core (bounded by `max_leaves` and
//! `max_leaves_per_ip`; a full supernode refuses with where to go and asks its best heir to
//! promote), the session's life (a dial back to an eligible leaf, then its requests served
//! until the connection ends, then its departure and the draining of its entries), and the
//! answers to its index and search requests (`Register`/`Unregister` entries limited to
//! [`INDEX_RATE`](kazoo_common::wire::INDEX_RATE) per second, searches to [`LEAF_QUERY_RATE`]).
//! A node that is not a supernode refuses joins and names its own supernode instead.

use std::sync::Arc;
use std::time::Instant;

use kazoo_common::transport::Pending;
use kazoo_common::wire::{
    self, ErrorCode, Hit, Intent, Provider, Request, Response, HITS_PER_FRAME, MAX_RESULTS,
    MAX_SUCCESSION,
};
use kazoo_common::NodeId;
use kazoo_supernode::service::DRAIN_PAUSE;
use kazoo_supernode::{check_query, Admission, LeafKey};
use quinn::SendStream;

use super::SupernodeRole;
use crate::node::accept::{serve_link, Limits, StreamError};
use crate::node::{hello, Inner, Node};

pub(in crate::node) use kazoo_common::wire::LEAF_QUERY_RATE;

/// A joined leaf's session: the supernode role it joined and its key there.
#[derive(Clone)]
pub(in crate::node) struct Session {
    /// The supernode role the leaf joined.
    pub sn: Arc<SupernodeRole>,
    /// The leaf's current session key.
    pub key: LeafKey,
}

/// A leaf asks to join this node: admits it (or refuses with where to go) and serves its
/// session until the connection ends.
pub(in crate::node) async fn join(node: &Node, pending: Pending) {
    let peer = pending.hello().node_id;
    let remote = pending.remote();
    let advertised = pending.advertised();
    let Some(sn) = node.supernode() else {
        tracing::info!(peer = %peer.short(), %remote, "join refused: not a supernode");
        // Say where to go: our supernode and the others we know of (we may have demoted).
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
    };
    let capacity = pending.hello().capacity;
    let admission = sn.core().admit(peer, advertised, capacity, Instant::now());
    let key = match admission {
        Admission::Admitted(key) => key,
        Admission::Full(reason) => {
            tracing::info!(peer = %peer.short(), %remote, %reason, "join refused; redirected");
            let (redirect, retired) = {
                let core = sn.core();
                (core.redirect_list(MAX_SUCCESSION), core.is_retired())
            };
            pending
                .refuse_with(ErrorCode::Busy, &reason, redirect)
                .await;
            if !retired {
                sn.request_promotion();
            }
            return;
        }
    };
    // A session this one replaced is closed and its entries drained.
    sn.close_superseded(peer, key);
    spawn_drain(&sn);
    let link = match pending.admit(hello(&node.inner, Intent::Fetch)).await {
        Ok(link) => link,
        Err(e) => {
            tracing::info!(peer = %peer.short(), %remote, reason = %e, "handshake failed");
            sn.core().depart(peer, key);
            spawn_drain(&sn);
            return;
        }
    };
    tracing::info!(peer = %peer.short(), %remote, "leaf joined");
    // Every leaf is dialled back once: an eligible one must answer to be an heir, and any
    // leaf's entries are listed before those of leaves that never answered.
    {
        let (node, sn) = (node.clone(), Arc::clone(&sn));
        tokio::spawn(async move { node.check_reachable(&sn, peer, key, advertised).await });
    }
    let session = Session {
        sn: Arc::clone(&sn),
        key,
    };
    serve_link(&node.inner, link, Some(&session)).await;
    let dropped = sn.core().depart(peer, key);
    spawn_drain(&sn);
    tracing::info!(peer = %peer.short(), %remote, entries = dropped, "leaf left; its entries dropped");
}

/// Drains departed leaves' entries from the core's index in short steps with pauses, so
/// keep-alives and other requests keep flowing.
fn spawn_drain(sn: &Arc<SupernodeRole>) {
    let sn = Arc::clone(sn);
    tokio::spawn(async move {
        while sn.core().drain_step() {
            tokio::time::sleep(DRAIN_PAUSE).await;
        }
    });
}

/// Answers an index or search request from `peer` (`leaf`: its session, if it is a leaf
/// joined here; anyone else is told this needs one).
pub(in crate::node) async fn answer(
    inner: &Arc<Inner>,
    peer: NodeId,
    limits: Limits<'_>,
    leaf: Option<&Session>,
    request: &Request,
    send: &mut SendStream,
) -> Result<(), StreamError> {
    let Some(session) = leaf else {
        let refusal = Response::error(
            ErrorCode::NotSupernode,
            "index requests need a joined leaf connection to a supernode",
        );
        tracing::info!(peer = %peer.short(), code = ?ErrorCode::NotSupernode, "request refused");
        return Ok(wire::write_frame(send, &refusal).await?);
    };
    if let Request::Search { words, max_results } = request {
        let node = Node {
            inner: Arc::clone(inner),
        };
        return search(&node, peer, limits, &session.sn, words, *max_results, send).await;
    }
    let entries = match request {
        Request::Register { entries } => entries.len().min(wire::MAX_BATCH),
        Request::Unregister { ids } => ids.len().min(wire::MAX_BATCH),
        _ => 0,
    };
    if entries > 0 {
        limits.index.take(entries).await;
    }
    let frames = session
        .sn
        .core()
        .answer_from(peer, session.key, request, Instant::now());
    for frame in &frames {
        if let Response::Error { code, message } = frame {
            tracing::info!(peer = %peer.short(), code = ?code, %message, "request refused");
        }
        wire::write_frame(send, frame).await?;
    }
    Ok(())
}

/// Answers a leaf's search through the overlay: hits stream back as they arrive, then `End`.
async fn search(
    node: &Node,
    peer: NodeId,
    limits: Limits<'_>,
    sn: &Arc<SupernodeRole>,
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
            sn.core().rank_hits(peer, &mut hits, Instant::now());
            let _ = tx.try_send(hits);
        })
        .await;
    };
    let (_, forwarded) = tokio::join!(run, forward);
    Ok(forwarded?)
}
