//! A leaf's connection to its supernode: join through the bootstrap list, register the full
//! share list in batches, then send adds and removes as the share list changes. When the
//! supernode goes away the leaf re-joins (with back-off) and re-registers everything.

use std::collections::HashMap;
use std::time::Duration;

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use kazoo_common::config::RoleSetting;
use std::sync::atomic::Ordering;

use kazoo_common::transport::{Link, TransportError};
use kazoo_common::wire::{
    self, Intent, Notice, Provider, Request, Response, ShareEntry, MAX_BATCH, MAX_SUCCESSION,
};
use kazoo_common::{ContentId, NodeId};
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

/// How long one join attempt may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a supernode sent this node, and why: (who sent it, where to go, best first, reason).
pub(super) type Redirect = (NodeId, Vec<Provider>, String);

/// Joins a supernode and stays joined. When the supernode is lost the leaf re-homes: to the
/// heirs of the succession list, the other supernodes it was told of, then the bootstrap
/// list, all tried at once. An eligible `auto` node that is heir `k` promotes itself once
/// `k` × `election.heir_delay_ms` has passed without joining anyone; an `auto` node that
/// never reached any supernode promotes itself as the first of its network. A redirect
/// (from a supernode handing leaves over or demoting, or `first` for a node that just
/// demoted) is followed first: its first target alone, then the rest at once.
pub(super) async fn uplink_loop(node: Node, setting: RoleSetting, first: Option<Redirect>) {
    let me = node.node_id();
    let eligible = setting == RoleSetting::Auto && node.inner.config.election_capacity() > 0;
    let heir_delay = node.inner.config.election.heir_delay();
    let mut backoff = Duration::from_millis(250);
    let mut ever_joined = false;
    // Ids learned on first contact with `ADDR` entries, then required (pinned).
    let mut pinned: HashMap<SocketAddr, NodeId> = HashMap::new();
    // The supernode lost last: its id, address, and when.
    let mut lost: Option<(NodeId, SocketAddr, Instant)> = None;
    let mut redirect = first;
    loop {
        let (heirs, supernodes) = node.succession();
        if let (Some((dead, dead_addr, since)), true) = (lost, eligible) {
            if let Some(rank) = heirs.iter().position(|h| h.node == me) {
                if since.elapsed() >= heir_delay * rank as u32 {
                    let reason = format!("heir {rank} of supernode {}, which died", dead.short());
                    node.promote(&reason);
                    // Peer with the supernodes it was told of, the other heirs (one may have
                    // promoted at the same time) and the lost supernode (it may only have
                    // been cut off): a healed split ends in one overlay.
                    let mut hosts = supernodes.clone();
                    hosts.extend(heirs.iter().filter(|h| h.node != me).copied());
                    hosts.push(Provider {
                        node: dead,
                        addr: dead_addr,
                    });
                    node.learn_supernodes(&hosts);
                    return;
                }
            }
        }
        let mut joined = None;
        let mut why = match lost {
            Some((dead, _, _)) => format!("re-homed after supernode {} died", dead.short()),
            None => "joined".to_string(),
        };
        if let Some((from, to, reason)) = redirect.take() {
            let to: Vec<(SocketAddr, Option<NodeId>)> = to
                .iter()
                .filter(|p| p.node != me)
                .map(|p| (p.addr, Some(p.node)))
                .collect();
            let split = to.len().min(1);
            joined = join_first(&node, &to[..split], &mut Vec::new()).await;
            if joined.is_none() && to.len() > split {
                joined = join_first(&node, &to[split..], &mut Vec::new()).await;
            }
            why = format!("redirected by supernode {}: {reason}", from.short());
        }
        if joined.is_none() {
            let mut candidates: Vec<(SocketAddr, Option<NodeId>)> = Vec::new();
            let lost_node = lost.map(|(n, _, _)| n);
            for p in heirs.iter().chain(&supernodes) {
                if p.node != me && Some(p.node) != lost_node {
                    candidates.push((p.addr, Some(p.node)));
                }
            }
            for entry in &node.inner.config.network.bootstrap {
                let expected = entry.node.or_else(|| pinned.get(&entry.addr).copied());
                if expected.is_none_or(|n| n != me && Some(n) != lost_node) {
                    candidates.push((entry.addr, expected));
                }
            }
            candidates.dedup();
            let mut redirects = Vec::new();
            joined = join_first(&node, &candidates, &mut redirects).await;
            if joined.is_none() && !redirects.is_empty() {
                // A full supernode named others to try.
                let others: Vec<(SocketAddr, Option<NodeId>)> = redirects
                    .iter()
                    .filter(|p| p.node != me)
                    .map(|p| (p.addr, Some(p.node)))
                    .collect();
                joined = join_first(&node, &others, &mut Vec::new()).await;
            }
        }
        match joined {
            Some((addr, link)) => {
                let sn = link.peer();
                pinned.insert(addr, sn);
                ever_joined = true;
                backoff = Duration::from_millis(250);
                tracing::info!(node = %me.short(), supernode = %sn.short(), %addr, reason = %why, "joined supernode");
                node.inner.uplink.send_replace(Some(Uplink {
                    conn: link.conn.clone(),
                    node: sn,
                    reason: why.clone(),
                }));
                let sn_addr = link.remote();
                let reason = stay_joined(&node, link).await;
                node.inner.uplink.send_replace(None);
                if eligible && node.inner.promote_asked.swap(false, Ordering::SeqCst) {
                    let why = format!("asked by supernode {}, which is full", sn.short());
                    node.promote(&why);
                    node.learn_supernodes(&[Provider {
                        node: sn,
                        addr: sn_addr,
                    }]);
                    return;
                }
                if let Some((to, why)) = node.take_redirect() {
                    tracing::info!(node = %me.short(), supernode = %sn.short(), reason = %why, "redirected; re-homing");
                    redirect = Some((sn, to, why));
                    lost = None;
                    continue;
                }
                tracing::warn!(node = %me.short(), supernode = %sn.short(), %reason, "lost supernode; re-homing");
                lost = Some((sn, sn_addr, Instant::now()));
            }
            None => {
                if setting == RoleSetting::Auto && !ever_joined && eligible {
                    node.promote("auto: no bootstrap supernode reachable");
                    return;
                }
                let wait = if lost.is_some() {
                    Duration::from_millis(100)
                } else {
                    backoff
                };
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Dials every candidate at once; returns the first that accepts this node as its leaf.
/// Supernodes that refuse because they are full add where to go instead to `redirects`.
async fn join_first(
    node: &Node,
    candidates: &[(SocketAddr, Option<NodeId>)],
    redirects: &mut Vec<Provider>,
) -> Option<(SocketAddr, Link)> {
    let mut attempts: FuturesUnordered<_> = candidates
        .iter()
        .map(|&(addr, expected)| async move {
            let result =
                tokio::time::timeout(JOIN_TIMEOUT, node.dial(addr, expected, Intent::Join)).await;
            (addr, result)
        })
        .collect();
    while let Some((addr, result)) = attempts.next().await {
        match result {
            Ok(Ok(link)) => return Some((addr, link)),
            Ok(Err(TransportError::Refused {
                redirect, reason, ..
            })) => {
                tracing::debug!(%addr, %reason, "join refused");
                redirects.extend(redirect);
            }
            Ok(Err(e)) => tracing::debug!(%addr, reason = %e, "could not join supernode"),
            Err(_) => tracing::debug!(%addr, "join attempt timed out"),
        }
    }
    None
}

/// Registers shares and keeps them in sync until the connection ends; returns why it ended.
/// Meanwhile the supernode's notices (the succession list) are recorded.
async fn stay_joined(node: &Node, link: Link) -> String {
    let Link {
        conn,
        control_send: _keep_open,
        control_recv: mut recv,
        ..
    } = link;
    let notices = {
        let node = node.clone();
        let conn_for_notices = conn.clone();
        tokio::spawn(async move {
            loop {
                match wire::read_frame::<Notice>(&mut recv).await {
                    Ok(Notice::Succession { heirs, supernodes }) => {
                        if heirs.len() > MAX_SUCCESSION || supernodes.len() > MAX_SUCCESSION {
                            return;
                        }
                        node.set_succession(heirs, supernodes);
                    }
                    Ok(Notice::Redirect { to, reason }) => {
                        if to.len() > MAX_SUCCESSION {
                            return;
                        }
                        node.set_redirect(to, reason);
                        conn_for_notices.close(0u32.into(), b"redirected");
                        return;
                    }
                    Ok(Notice::Promote { reason }) => {
                        if node.inner.config.node.role == RoleSetting::Auto
                            && node.inner.config.election_capacity() > 0
                        {
                            tracing::info!(%reason, "supernode asks this leaf to promote");
                            node.inner.promote_asked.store(true, Ordering::SeqCst);
                            conn_for_notices.close(0u32.into(), b"promoting");
                        }
                    }
                    Err(_) => return,
                }
            }
        })
    };
    let mut version = node.inner.shares.subscribe();
    let mut indexed: HashMap<ContentId, ShareEntry> = HashMap::new();
    let reason = loop {
        let (added, removed) = diff(&indexed, node.inner.shares.entries());
        if let Err(e) = sync(&conn, &mut indexed, added, removed).await {
            break e;
        }
        tokio::select! {
            changed = version.changed() => if changed.is_err() { break "node stopping".into() },
            reason = conn.closed() => break reason.to_string(),
        }
    };
    notices.abort();
    reason
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
