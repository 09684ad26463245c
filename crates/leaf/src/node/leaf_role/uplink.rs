//! A leaf's connection to its supernode: join through the bootstrap list, register the full
//! share list in batches, then send adds and removes as the share list changes. When the
//! supernode goes away the leaf re-joins (with back-off) and re-registers everything; the
//! election decisions are [`LeafElection`]'s (plain state, shared with the failover harness).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use kazoo_common::config::RoleSetting;
use kazoo_common::transport::{self, Link, TransportError};
use kazoo_common::wire::{
    self, CloseCode, ErrorCode, Intent, Notice, Provider, Request, Response, ShareEntry, MAX_BATCH,
    MAX_SUCCESSION,
};
use kazoo_common::{ContentId, NodeId};
use kazoo_supernode::election::{LeafElection, Redirect, Step};
use quinn::Connection;

use kazoo_supernode::timing::{JOIN_TIMEOUT, SESSION_CHECK};

use super::LeafRole;
use crate::client;
use crate::node::{Node, Uplink};
use crate::reachability::{Class, Reachability};

/// What changed between what a supernode has and what is shared now: (to add, to remove).
pub(in crate::node) fn diff(
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

/// Joins a supernode and stays joined; the decisions (whom to dial, when to promote) are
/// [`LeafElection`]'s. When the supernode is lost the leaf re-homes: to the heirs of the
/// succession list, the other supernodes it was told of, then the bootstrap list, all tried
/// at once. An eligible `auto` node that is heir `k` promotes itself once `k` ×
/// `election.heir_delay_ms` has passed without joining anyone; an `auto` node that never
/// reached any supernode promotes itself as the first of its network. A redirect (from a
/// supernode handing leaves over or demoting, or `first` for a node that just demoted) is
/// followed first: its first target alone, then the rest at once.
pub(super) async fn uplink_loop(
    node: Node,
    role: Arc<LeafRole>,
    setting: RoleSetting,
    first: Option<Redirect>,
) {
    let me = node.node_id();
    let config = &node.inner.config;
    // A node its supernode could not dial back never promotes itself: nobody could reach
    // it as a supernode. Before any dial back (the first node of a network) it may.
    let eligible = || setting == RoleSetting::Auto && node.inner.score() > 0 && role.reachable();
    let configured = !config.network.bootstrap.is_empty();
    let heir_delay = config.election.heir_delay();
    let mut election = LeafElection::new(me, eligible(), heir_delay, Vec::new())
        .with_bootstrap_wait(config.network.bootstrap_wait());
    if let Some((from, to, reason)) = first {
        election.on_redirected(from, to, reason);
    }
    loop {
        // Host names are resolved again for every round of dials (dynamic DNS).
        election.set_bootstrap(node.bootstrap_targets().await, configured);
        let (heirs, supernodes) = role.succession();
        // The score grows with uptime: a node may become eligible while it runs.
        election.set_eligible(eligible());
        let (groups, why) = match election.step(Instant::now(), &heirs, &supernodes) {
            Step::Promote { reason, hosts } => {
                if election.unanswered() {
                    tracing::warn!(node = %me.short(), bootstrap = %node.bootstrap_list(), %reason, "no bootstrap entry ever answered: becoming a network of its own");
                }
                node.promote(&reason);
                node.learn_supernodes(&hosts);
                return;
            }
            Step::Join { groups, reason } => (groups, reason),
        };
        // What the Hello of this round will advertise (a node that becomes eligible later
        // re-joins to say so).
        let eligible_at_join = node.inner.score() > 0;
        let mut refusals = Refusals::default();
        let mut joined = None;
        for group in groups.iter().filter(|g| !g.is_empty()) {
            joined = join_first(&node, group, &mut refusals).await;
            if joined.is_some() {
                break;
            }
        }
        if joined.is_none() && !refusals.redirect.is_empty() {
            // A full supernode named others to try.
            let others = election.redirect_targets(&refusals.redirect);
            joined = join_first(&node, &others, &mut refusals).await;
        }
        election.on_refused(&refusals.by);
        if refusals.answered {
            election.on_answered();
        }
        let Some((addr, link)) = joined else {
            if election.unanswered() && eligible() {
                tracing::warn!(node = %me.short(), bootstrap = %node.bootstrap_list(), wait_secs = config.network.bootstrap_wait_secs, "no bootstrap entry answers; an auto node becomes a network of its own after network.bootstrap_wait_secs");
            }
            if let Some(wait) = election.on_join_failed(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            continue;
        };
        let sn = link.peer();
        election.on_joined(addr, sn);
        tracing::info!(node = %me.short(), supernode = %sn.short(), %addr, reason = %why, "joined supernode; registering shares");
        let sn_addr = link.remote();
        // `kazoo status` shows the supernode once it has the whole share list.
        let attached = Uplink {
            conn: link.conn.clone(),
            node: sn,
            reason: why,
        };
        let registered = || {
            tracing::info!(node = %me.short(), supernode = %sn.short(), "attached: shares registered");
            node.note_attached();
            node.inner.uplink.send_replace(Some(attached));
        };
        let end = stay_joined(&node, &role, link, eligible_at_join, registered).await;
        node.inner.uplink.send_replace(None);
        if eligible() && role.promote_asked.swap(false, Ordering::SeqCst) {
            let why = format!("asked by supernode {}, which is full", sn.short());
            node.promote(&why);
            node.learn_supernodes(&[Provider::new(sn, sn_addr)]);
            return;
        }
        if let Some((to, why)) = role.take_redirect() {
            tracing::info!(node = %me.short(), supernode = %sn.short(), reason = %why, "redirected; re-homing");
            election.on_redirected(sn, to, why);
            continue;
        }
        let lost = Provider::new(sn, sn_addr);
        match end {
            Ended::SessionLost(reason) => {
                tracing::warn!(node = %me.short(), supernode = %sn.short(), %reason, "supernode lost this leaf's session; joining again");
                election.on_session_lost(lost);
            }
            Ended::Lost(reason) => {
                tracing::warn!(node = %me.short(), supernode = %sn.short(), %reason, "lost supernode; re-homing");
                crate::metrics::Counters::add(&node.counters().failovers, 1);
                election.on_lost(lost, Instant::now());
            }
        }
    }
}

/// Supernodes that refused a round of join attempts, and where they said to go instead.
#[derive(Default)]
struct Refusals {
    by: Vec<Provider>,
    redirect: Vec<Provider>,
    /// Some node answered (refused), so the network exists.
    answered: bool,
}

/// Dials every candidate at once; returns the first that accepts this node as its leaf.
/// Supernodes that refuse (full, demoting) are noted in `refusals` with where to go instead.
async fn join_first(
    node: &Node,
    candidates: &[(SocketAddr, Option<NodeId>)],
    refusals: &mut Refusals,
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
        let answer = match &result {
            Ok(Err(TransportError::Refused {
                code: ErrorCode::WrongNetwork,
                reason,
                ..
            })) => Err(format!("refused, not the same network: {reason}")),
            Ok(Ok(_)) | Ok(Err(TransportError::Refused { .. })) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        node.note_bootstrap(addr, answer);
        match result {
            Ok(Ok(link)) => return Some((addr, link)),
            Ok(Err(TransportError::Refused {
                node: by,
                code,
                redirect,
                reason,
            })) => {
                if code == ErrorCode::WrongNetwork {
                    // Not this node's network: it neither exists for us nor answers.
                    tracing::warn!(%addr, %reason, "join refused: not the same network (network.secret)");
                    continue;
                }
                if code == ErrorCode::NotAllowed {
                    tracing::warn!(%addr, %reason, "join refused: not in the supernode's network.allow");
                    node.note_error(format!("join refused by {addr}: {reason}"));
                    continue;
                }
                refusals.answered = true;
                tracing::debug!(%addr, %reason, "join refused");
                if code == wire::ErrorCode::Busy {
                    refusals.by.push(Provider::new(by, addr));
                }
                refusals
                    .redirect
                    .extend(redirect.into_iter().take(MAX_SUCCESSION));
            }
            Ok(Err(e @ (TransportError::WrongNetwork(_) | TransportError::NotAllowed(_)))) => {
                tracing::warn!(%addr, reason = %e, "could not join supernode");
                node.note_error(format!("could not join {addr}: {e}"));
            }
            Ok(Err(e)) => tracing::debug!(%addr, reason = %e, "could not join supernode"),
            Err(_) => tracing::debug!(%addr, "join attempt timed out"),
        }
    }
    None
}

/// Why a leaf's session with its supernode ended.
enum Ended {
    /// The connection ended (the supernode died, or closed it).
    Lost(String),
    /// The supernode is alive but no longer has this session (`UnknownLeaf`, or closed as
    /// superseded by a newer one): join it again.
    SessionLost(String),
}

/// Registers shares and keeps them in sync until the connection ends; returns why it ended.
/// `registered` runs once the whole share list is registered. Meanwhile the supernode's
/// notices (succession list, promote, redirect) are recorded; a close with
/// [`CloseCode::REDIRECTED`] is recorded as a redirect to the other supernodes it named; a
/// node that has become eligible since it joined re-joins to advertise its score.
async fn stay_joined(
    node: &Node,
    role: &Arc<LeafRole>,
    link: Link,
    joined_eligible: bool,
    registered: impl FnOnce(),
) -> Ended {
    let (sn, sn_addr) = (link.peer(), link.remote());
    let Link {
        conn,
        control_send: _keep_open,
        control_recv: mut recv,
        ..
    } = link;
    let notices = {
        let node = node.clone();
        let role = Arc::clone(role);
        let conn = conn.clone();
        tokio::spawn(async move {
            let violation = |why: &str| {
                tracing::warn!(supernode = %sn.short(), reason = why, "protocol violation; closing");
                transport::close(&conn, CloseCode::PROTOCOL_VIOLATION, why);
            };
            loop {
                match wire::read_frame::<Notice>(&mut recv).await {
                    Ok(Notice::Succession { heirs, supernodes }) => {
                        if heirs.len() > MAX_SUCCESSION || supernodes.len() > MAX_SUCCESSION {
                            return violation("oversized succession notice");
                        }
                        role.set_succession(heirs, supernodes);
                    }
                    Ok(Notice::Redirect { to, reason }) => {
                        if to.len() > MAX_SUCCESSION {
                            return violation("oversized redirect notice");
                        }
                        role.set_redirect(to, reason);
                        transport::close(&conn, CloseCode::NORMAL, "redirected");
                        return;
                    }
                    Ok(Notice::Reachability { observed, answered }) => {
                        let class = Class::classify(node.inner.listen.port(), observed, answered);
                        tracing::info!(%observed, reachability = class.describe(), "supernode observed this node");
                        role.set_reachability(Reachability {
                            observed,
                            answered,
                            class,
                        });
                    }
                    Ok(Notice::Connect { to }) => node.connect_back(to),
                    Ok(Notice::Relay { circuit, from }) => node.accept_relay(circuit, from),
                    Ok(Notice::Promote { reason }) => {
                        if node.inner.score() > 0 {
                            tracing::info!(%reason, "supernode asks this leaf to promote");
                            role.promote_asked.store(true, Ordering::SeqCst);
                            transport::close(&conn, CloseCode::NORMAL, "promoting");
                        }
                    }
                    Err(e) if e.is_violation() => return violation(&e.to_string()),
                    Err(_) => return,
                }
            }
        })
    };
    let mut version = node.inner.shares.subscribe();
    let mut indexed: HashMap<ContentId, ShareEntry> = HashMap::new();
    let mut check = tokio::time::interval(SESSION_CHECK);
    let mut registered = Some(registered);
    let end = loop {
        let (added, removed) = diff(&indexed, node.inner.shares.entries());
        if let Err(e) = sync(&conn, &mut indexed, added, removed).await {
            break e;
        }
        if let Some(registered) = registered.take() {
            registered();
        }
        tokio::select! {
            changed = version.changed() => if changed.is_err() { break Ended::Lost("node stopping".into()) },
            closed = conn.closed() => break Ended::Lost(closed.to_string()),
            _ = check.tick() => {
                // Does the supernode still have this session, and all of it?
                match answer_total(&conn, &Request::Unregister { ids: Vec::new() }).await {
                    Ok(Some(total)) if total != indexed.len() as u64 => {
                        break Ended::SessionLost(format!(
                            "supernode counts {total} entries, {} registered",
                            indexed.len()
                        ));
                    }
                    Ok(_) => {}
                    Err(end) => break end,
                }
                if !joined_eligible && node.inner.score() > 0 {
                    let again = vec![Provider::new(sn, sn_addr)];
                    role.set_redirect(again, "became eligible; re-joining to advertise it".into());
                    transport::close(&conn, CloseCode::NORMAL, "re-joining");
                    break Ended::Lost("re-joining".into());
                }
            }
        }
    };
    notices.abort();
    let _ = notices.await;
    // However the loop ended (a request failing counts), a close with REDIRECTED is a
    // redirect to the other supernodes we were told of, not a death.
    let code = match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => Some(c.error_code),
        _ => None,
    };
    if code == Some(CloseCode::REDIRECTED.into()) {
        let (_, supernodes) = role.succession();
        role.set_redirect_if_none(supernodes, "closed by supernode with a redirect".into());
    }
    if code == Some(CloseCode::SUPERSEDED.into()) {
        return Ended::SessionLost("session superseded by a newer one".into());
    }
    end
}

/// Sends removals then additions in batches; records what the supernode accepted.
async fn sync(
    conn: &Connection,
    indexed: &mut HashMap<ContentId, ShareEntry>,
    added: Vec<ShareEntry>,
    removed: Vec<ContentId>,
) -> Result<(), Ended> {
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
/// the share list changes); Err: the session is over.
async fn answer(conn: &Connection, request: &Request) -> Result<bool, Ended> {
    answer_total(conn, request)
        .await
        .map(|total| total.is_some())
}

/// Like [`answer`], with the supernode's count of this leaf's entries when it accepted.
async fn answer_total(conn: &Connection, request: &Request) -> Result<Option<u64>, Ended> {
    match client::call(conn, request).await {
        Ok(Response::Registered { total }) => {
            tracing::debug!(total, "supernode index updated");
            Ok(Some(total))
        }
        Ok(other) => Err(Ended::Lost(format!("unexpected answer {other:?}"))),
        Err(client::RequestError::Remote {
            code: ErrorCode::UnknownLeaf,
            message,
        }) => Err(Ended::SessionLost(message)),
        Err(client::RequestError::Remote { code, message }) => {
            tracing::warn!(?code, %message, "supernode refused part of the share list");
            Ok(None)
        }
        Err(e) => Err(Ended::Lost(e.to_string())),
    }
}
