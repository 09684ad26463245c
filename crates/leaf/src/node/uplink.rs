//! A leaf's connection to its supernode: join through the bootstrap list, register the full
//! share list in batches, then send adds and removes as the share list changes. When the
//! supernode goes away the leaf re-joins (with back-off) and re-registers everything.

use std::collections::HashMap;
use std::time::Duration;

use kazoo_common::config::RoleSetting;
use kazoo_common::wire::{Intent, Request, Response, ShareEntry, MAX_BATCH};
use kazoo_common::ContentId;
use quinn::Connection;

use super::{Node, Uplink};
use crate::client;

/// Longest wait between rounds of join attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What changed between what a supernode has and what is shared now: (to add, to remove).
pub(super) fn diff(
    indexed: &HashMap<ContentId, ShareEntry>,
    current: Vec<ShareEntry>,
) -> (Vec<ShareEntry>, Vec<ContentId>) {
    let current: HashMap<ContentId, ShareEntry> = current.into_iter().map(|e| (e.id, e)).collect();
    // A changed entry (same id, new name or size) is removed and added again.
    let removed = indexed
        .iter()
        .filter(|(id, old)| current.get(id) != Some(old))
        .map(|(id, _)| *id)
        .collect();
    let added = current
        .into_values()
        .filter(|e| indexed.get(&e.id) != Some(e))
        .collect();
    (added, removed)
}

/// Joins a supernode and stays joined; promotes an `auto` node that reaches none.
pub(super) async fn uplink_loop(node: Node, setting: RoleSetting) {
    let mut backoff = Duration::from_millis(250);
    let mut ever_joined = false;
    // Ids learned on first contact with `ADDR` entries, then required (pinned).
    let mut pinned: HashMap<std::net::SocketAddr, kazoo_common::NodeId> = HashMap::new();
    loop {
        let mut joined = false;
        for entry in node.inner.config.network.bootstrap.clone() {
            let expected = entry.node.or_else(|| pinned.get(&entry.addr).copied());
            match node.dial(entry.addr, expected, Intent::Join).await {
                Ok(link) => {
                    pinned.insert(entry.addr, link.peer());
                    joined = true;
                    ever_joined = true;
                    backoff = Duration::from_millis(250);
                    let sn = link.peer();
                    tracing::info!(node = %node.node_id().short(), supernode = %sn.short(), addr = %entry.addr, "joined supernode");
                    node.inner.uplink.send_replace(Some(Uplink {
                        conn: link.conn.clone(),
                        node: sn,
                    }));
                    let reason = stay_joined(&node, &link.conn).await;
                    node.inner.uplink.send_replace(None);
                    tracing::warn!(node = %node.node_id().short(), supernode = %sn.short(), %reason, "lost supernode; re-joining");
                    drop(link);
                    break;
                }
                Err(e) => {
                    tracing::info!(node = %node.node_id().short(), addr = %entry.addr, reason = %e, "could not join supernode");
                }
            }
        }
        if !joined {
            if setting == RoleSetting::Auto && !ever_joined {
                node.promote("auto: no bootstrap supernode reachable");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Registers shares and keeps them in sync until the connection ends; returns why it ended.
async fn stay_joined(node: &Node, conn: &Connection) -> String {
    let mut version = node.inner.shares.subscribe();
    let mut indexed: HashMap<ContentId, ShareEntry> = HashMap::new();
    loop {
        let (added, removed) = diff(&indexed, node.inner.shares.entries());
        if let Err(e) = sync(conn, &mut indexed, added, removed).await {
            return e;
        }
        tokio::select! {
            changed = version.changed() => if changed.is_err() { return "node stopping".into() },
            reason = conn.closed() => return reason.to_string(),
        }
    }
}

/// Sends removals then additions in batches; records what the supernode accepted.
async fn sync(
    conn: &Connection,
    indexed: &mut HashMap<ContentId, ShareEntry>,
    added: Vec<ShareEntry>,
    removed: Vec<ContentId>,
) -> Result<(), String> {
    for batch in removed.chunks(MAX_BATCH) {
        let request = Request::Unregister {
            ids: batch.to_vec(),
        };
        if answer(conn, &request).await? {
            for id in batch {
                indexed.remove(id);
            }
        }
    }
    for batch in added.chunks(MAX_BATCH) {
        let request = Request::Register {
            entries: batch.to_vec(),
        };
        if answer(conn, &request).await? {
            for entry in batch {
                indexed.insert(entry.id, entry.clone());
            }
        }
    }
    Ok(())
}

/// Sends one index request. Ok(false): the supernode refused it (logged, not retried until
/// the share list changes); Err: the connection failed.
async fn answer(conn: &Connection, request: &Request) -> Result<bool, String> {
    match client::call(conn, request).await {
        Ok(Response::Registered { total }) => {
            tracing::debug!(total, "supernode index updated");
            Ok(true)
        }
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(client::RequestError::Remote { code, message }) => {
            tracing::warn!(?code, %message, "supernode refused part of the share list");
            Ok(false)
        }
        Err(e) => Err(e.to_string()),
    }
}
