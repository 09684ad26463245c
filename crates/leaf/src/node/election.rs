//! The supernode side of the election, over QUIC: asking the best eligible leaf to promote
//! when full, handing part of the leaves to it once it peers back (growth), and demoting an
//! under-used `auto` supernode (shrink). The decisions are plain state in
//! [`kazoo_supernode::election`]; this module carries them out and logs each with its reason.
//! The leaf side (succession, failover, following redirects) is in `uplink.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kazoo_common::transport;
use kazoo_common::wire::{CloseCode, Notice, Provider, Role};
use kazoo_common::NodeId;
use kazoo_supernode::{Demotion, Supernode};
use quinn::Connection;
use tokio::sync::mpsc;

use super::{peering, uplink, Inner, Node};

/// A joined leaf's notice stream (drained onto its control stream) and its connection.
pub(super) struct LeafChannel {
    /// Notices for the leaf (bounded: [`NOTICE_QUEUE`]).
    pub tx: mpsc::Sender<Notice>,
    /// The leaf's connection, closed if it ignores a redirect.
    pub conn: Connection,
    /// The session this channel belongs to.
    pub key: kazoo_supernode::LeafKey,
}

/// Notices queued for one leaf; a leaf further behind misses the extra ones (the
/// succession notice is re-sent whole when it changes).
pub(super) const NOTICE_QUEUE: usize = 4;
/// How often a full supernode may ask a leaf to promote.
const PROMOTE_EVERY: Duration = Duration::from_secs(5);
/// How long after asking a leaf to promote its peering back still triggers a handover.
const HANDOVER_WINDOW: Duration = Duration::from_secs(60);
use kazoo_common::wire::REDIRECT_GRACE;
/// How often a supernode checks whether to demote.
const DEMOTE_CHECK_EVERY: Duration = Duration::from_millis(500);

impl Inner {
    /// A full supernode asks its best eligible leaf to become a supernode (growth).
    pub(super) fn request_promotion(&self, sn: &Supernode) {
        {
            let mut last = crate::lock(&self.promote_asked_at);
            if last.is_some_and(|t| t.elapsed() < PROMOTE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Some(best) = sn.succession(1).into_iter().next() else {
            return;
        };
        let notices = crate::lock(&self.leaf_notices);
        if let Some(leaf) = notices.get(&best.node) {
            let reason = format!("supernode {} is full", sn.node_id().short());
            tracing::info!(node = %sn.node_id().short(), leaf = %best.node.short(), %reason, "asking best eligible leaf to promote");
            if leaf.tx.try_send(Notice::Promote { reason }).is_ok() {
                *crate::lock(&self.handover_to) = Some((best.node, Instant::now()));
            }
        }
    }

    /// Tells a joined leaf to go to `to` instead; closes its connection if it has not gone
    /// after [`REDIRECT_GRACE`].
    pub(super) fn redirect_leaf(&self, leaf: NodeId, to: Vec<Provider>, reason: &str) {
        let notices = crate::lock(&self.leaf_notices);
        let Some(channel) = notices.get(&leaf) else {
            return;
        };
        let notice = Notice::Redirect {
            to,
            reason: reason.to_owned(),
        };
        if channel.tx.try_send(notice).is_err() {
            tracing::debug!(leaf = %leaf.short(), "notice queue full; closing instead of redirecting");
        }
        let conn = channel.conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REDIRECT_GRACE).await;
            transport::close(&conn, CloseCode::REDIRECTED, "redirected");
        });
    }
}

use kazoo_common::wire::DIAL_BACK_TIMEOUT;

impl Node {
    /// Dials an eligible leaf back at the address it advertises; only a leaf that answers
    /// (with the right key) is listed as an heir.
    pub(super) async fn check_reachable(
        &self,
        sn: &Supernode,
        leaf: NodeId,
        key: kazoo_supernode::LeafKey,
        addr: SocketAddr,
    ) {
        let dial = self.dial(addr, Some(leaf), kazoo_common::wire::Intent::Fetch);
        match tokio::time::timeout(DIAL_BACK_TIMEOUT, dial).await {
            Ok(Ok(link)) => {
                sn.set_reachable(leaf, key, addr);
                transport::close(&link.conn, CloseCode::NORMAL, "reachability checked");
            }
            Ok(Err(e)) => {
                tracing::info!(leaf = %leaf.short(), %addr, reason = %e, "eligible leaf is not reachable; not an heir")
            }
            Err(_) => {
                tracing::info!(leaf = %leaf.short(), %addr, "eligible leaf did not answer a dial back; not an heir")
            }
        }
    }

    /// A peering came up: if it is the leaf this supernode asked to promote, half of this
    /// supernode's leaves move to it.
    pub(super) fn hand_over_to_new_supernode(
        &self,
        sn: &Supernode,
        peer: NodeId,
        addr: SocketAddr,
    ) {
        let asked = {
            let mut handover = crate::lock(&self.inner.handover_to);
            match *handover {
                Some((node, at)) if node == peer && at.elapsed() < HANDOVER_WINDOW => {
                    handover.take();
                    true
                }
                _ => false,
            }
        };
        if !asked {
            return;
        }
        let count = sn.stats().leaves / 2;
        let moved = sn.handover(peer, count);
        let reason = format!(
            "supernode {} was full; handed over to new supernode {}",
            sn.node_id().short(),
            peer.short()
        );
        tracing::info!(node = %sn.node_id().short(), to = %peer.short(), leaves = moved.len(), %reason, "handing leaves over");
        let to = vec![Provider { node: peer, addr }];
        for leaf in moved {
            self.inner.redirect_leaf(leaf, to.clone(), &reason);
        }
    }

    /// Checks every [`DEMOTE_CHECK_EVERY`] whether this supernode should demote; does so.
    pub(super) async fn demotion_loop(self, sn: Arc<Supernode>) {
        let mut tick = tokio::time::interval(DEMOTE_CHECK_EVERY);
        loop {
            tick.tick().await;
            if let Some(plan) = sn.demotion(Instant::now()) {
                self.demote(&sn, plan);
                return;
            }
        }
    }

    /// Becomes a leaf again: sends every leaf where the plan says, closes the peerings,
    /// stops the supernode tasks and joins one of the peers that had room.
    fn demote(&self, sn: &Supernode, plan: Demotion) {
        let me = self.node_id();
        tracing::info!(node = %me.short(), leaves = plan.moves.len(), reason = %plan.reason, "demoting to leaf");
        // `sn` has retired (no new leaves or peers; leaves still joining are sent on too).
        *self
            .inner
            .supernode
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
        let path = self.inner.config.node.data_dir.join(peering::HOST_CACHE);
        peering::save_hosts(&path, sn);
        let reason = format!("demoted: {}", plan.reason);
        for (leaf, to) in plan.moves {
            self.inner.redirect_leaf(leaf, to, &reason);
        }
        self.inner.peering.close_all("demoted");
        // The supernode role's tasks: overlay, own shares, this demotion check.
        super::abort_all(&self.inner.sn_tasks);
        *crate::lock(&self.inner.handover_to) = None;
        *crate::lock(&self.inner.promote_asked_at) = None;
        self.set_role(Role::Leaf, &reason);
        self.set_succession(Vec::new(), plan.supernodes.clone());
        let first = Some((me, plan.supernodes, reason));
        self.spawn(uplink::uplink_loop(self.clone(), self.inner.setting, first));
    }
}
