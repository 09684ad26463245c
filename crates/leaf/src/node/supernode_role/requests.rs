//! A joined leaf's index and search requests, answered by the core: `Register`/`Unregister`
//! entries limited to [`INDEX_RATE`](kazoo_common::wire::INDEX_RATE) per second, searches to
//! [`LEAF_QUERY_RATE`](kazoo_common::wire::LEAF_QUERY_RATE) and routed through the overlay,
//! hits streamed back as they arrive.

use std::sync::Arc;
use std::time::Instant;

use kazoo_common::wire::{self, ErrorCode, Hit, Request, Response, HITS_PER_FRAME, MAX_RESULTS};
use kazoo_common::NodeId;
use kazoo_supernode::check_query;
use quinn::SendStream;

use super::{Session, SupernodeRole};
use crate::node::request_limits::{Limits, StreamError};
use crate::node::{Inner, Node};

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
    if let Request::Connect { target } = request {
        // A reverse connection costs the leaf what a search does.
        let answer = if limits.queries.try_take(1) {
            let (answer, actions) =
                session
                    .sn
                    .core()
                    .connect(peer, session.remote, *target, Instant::now());
            let node = Node {
                inner: Arc::clone(inner),
            };
            node.execute(&session.sn, actions);
            answer
        } else {
            Response::error(ErrorCode::Busy, "request rate exceeded; slow down")
        };
        tracing::debug!(peer = %peer.short(), target = %target.short(), ?answer, "reverse connection asked");
        return Ok(wire::write_frame(send, &answer).await?);
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
