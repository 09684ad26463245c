//! Leaves joining this node, over QUIC: admission by the core (bounded by `max_leaves` and
//! `max_leaves_per_ip`; a full supernode refuses with where to go and asks its best heir to
//! promote), and the session's life: a dial back, then its requests served until the
//! connection ends (the answers are in `requests.rs`), then its departure and the draining
//! of its entries.
//! A node that is not a supernode refuses joins and names its own supernode instead.

use std::sync::Arc;
use std::time::Instant;

use kazoo_common::transport::Pending;
use kazoo_common::wire::{ErrorCode, Intent, Provider, MAX_SUCCESSION};
use kazoo_supernode::service::DRAIN_PAUSE;
use kazoo_supernode::Admission;

use super::{Session, SupernodeRole};
use crate::node::streams::serve_link;
use crate::node::{hello, Node};

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
    // leaf's entries are listed before those of leaves that never answered. The leaf's
    // notice channel opens in `serve_link` before its first await, so it exists before the
    // dial back (a QUIC handshake away) can report.
    {
        let (node, sn) = (node.clone(), Arc::clone(&sn));
        tokio::spawn(async move {
            node.check_reachable(&sn, peer, key, advertised, remote)
                .await
        });
    }
    let session = Session {
        sn: Arc::clone(&sn),
        key,
        remote,
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
