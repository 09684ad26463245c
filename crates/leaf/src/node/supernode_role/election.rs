//! The supernode side of the election, over QUIC: asking the best eligible leaf to promote
//! when full, handing part of the leaves to it once it peers back (growth), dialling eligible
//! leaves back (only a leaf that answers is an heir), and demoting an under-used `auto`
//! supernode (shrink). Every decision and timing rule is the core's
//! ([`kazoo_supernode::election`], [`kazoo_supernode::timing`]); this module carries them out
//! and logs each with its reason. The leaf side is in `leaf_role/uplink.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use kazoo_common::transport;
use kazoo_common::wire::{CloseCode, Notice, Provider, DIAL_BACK_TIMEOUT};
use kazoo_common::NodeId;
use kazoo_supernode::timing::DEMOTE_CHECK_EVERY;
use kazoo_supernode::{Demotion, LeafKey};

use super::{peering, witness, SupernodeRole};
use crate::node::leaf_role::{self, LeafRole};
use crate::node::{Node, Role};

impl SupernodeRole {
    /// A full supernode asks its best eligible leaf to become a supernode (growth), when the
    /// core says so.
    pub(super) fn request_promotion(&self) {
        let now = Instant::now();
        let Some((heir, reason)) = self.core().promotion_request(now) else {
            return;
        };
        let notices = crate::lock(&self.notices);
        if let Some(leaf) = notices.get(&heir) {
            tracing::info!(leaf = %heir.short(), %reason, "asking best eligible leaf to promote");
            if leaf.tx.try_send(Notice::Promote { reason }).is_ok() {
                self.core().promotion_asked(heir, now);
            }
        }
    }

    /// A peering with `peer` came up: if the core hands leaves over to it (it is the leaf
    /// this supernode asked to promote), they are redirected there.
    pub(super) fn hand_over(&self, peer: NodeId, addr: SocketAddr) {
        let Some((moved, reason)) = self.core().handover_on_peering(peer, Instant::now()) else {
            return;
        };
        tracing::info!(to = %peer.short(), leaves = moved.len(), %reason, "handing leaves over");
        let to = vec![Provider::new(peer, addr)];
        for leaf in moved {
            self.redirect_leaf(leaf, to.clone(), &reason);
        }
    }
}

impl Node {
    /// Dials a joined leaf back at the address it advertises (the IP it is seen at) from a
    /// socket at an address it never sent to: a peer's, when there is a peering (a witness
    /// at another IP, see the wire spec's "Reachability"), else a fresh socket of our own.
    /// Only a leaf that answers (with the right key) is an heir (if eligible) and a verified
    /// source; one that does not is listed at the address its connection comes from (a
    /// NAT's mapping of its listening socket, where a reverse connection or punch aims). The
    /// leaf is told what was found. The observed address itself is not dialled: from this
    /// supernode's socket that is the join connection's own path, which any NAT lets
    /// through, so an answer there would prove nothing.
    pub(super) async fn check_reachable(
        &self,
        sn: &SupernodeRole,
        leaf: NodeId,
        key: LeafKey,
        advertised: SocketAddr,
        observed: SocketAddr,
    ) {
        let addr = advertised;
        let witnessed = match sn.peering.any() {
            Some((peer, conn)) => match witness::ask(&conn, leaf, addr).await {
                Ok(answered) => {
                    tracing::info!(leaf = %leaf.short(), %addr, witness = %peer.short(), answered, "dial back by a peer");
                    Some(answered)
                }
                Err(reason) => {
                    tracing::info!(leaf = %leaf.short(), witness = %peer.short(), %reason, "no dial back by a peer; dialling back ourselves");
                    None
                }
            },
            None => None,
        };
        let answered = match witnessed {
            Some(answered) => answered,
            None => self.answers_dial_back(addr, leaf).await,
        };
        let answered = answered.then_some(addr);
        match answered {
            Some(addr) => sn.core().set_reachable(leaf, key, addr),
            None => {
                tracing::info!(leaf = %leaf.short(), %observed, "leaf not reachable; not an heir, listed at its observed address");
                sn.core().set_unreachable(leaf, key, observed);
            }
        }
        if let Some(notices) = crate::lock(&sn.notices).get(&leaf) {
            let _ = notices
                .tx
                .try_send(Notice::Reachability { observed, answered });
        }
    }

    /// Whether `leaf` answers, with its key, a dial to `addr` from a fresh socket within
    /// [`DIAL_BACK_TIMEOUT`].
    pub(super) async fn answers_dial_back(&self, addr: SocketAddr, leaf: NodeId) -> bool {
        match tokio::time::timeout(DIAL_BACK_TIMEOUT, self.dial_back(addr, leaf)).await {
            Ok(Ok(link)) => {
                transport::close(&link.conn, CloseCode::NORMAL, "reachability checked");
                true
            }
            Ok(Err(e)) => {
                tracing::info!(leaf = %leaf.short(), %addr, reason = %e, "dial back failed");
                false
            }
            Err(_) => {
                tracing::info!(leaf = %leaf.short(), %addr, "dial back not answered");
                false
            }
        }
    }

    /// Checks every [`DEMOTE_CHECK_EVERY`] whether this supernode should demote; does so.
    pub(super) async fn demotion_loop(self, sn: Arc<SupernodeRole>) {
        let mut tick = tokio::time::interval(DEMOTE_CHECK_EVERY);
        loop {
            tick.tick().await;
            let plan = sn.core().demotion(Instant::now());
            if let Some(plan) = plan {
                self.demote(&sn, plan).await;
                return;
            }
        }
    }

    /// Becomes a leaf again: sends every leaf where the plan says, closes the peerings,
    /// ends the supernode role and joins one of the peers that had room.
    async fn demote(&self, sn: &SupernodeRole, plan: Demotion) {
        let me = self.node_id();
        tracing::info!(node = %me.short(), leaves = plan.moves.len(), reason = %plan.reason, "demoting to leaf");
        // The core has retired (no new leaves or peers; leaves still joining are sent on).
        peering::save_hosts(&self.inner.config.node.data_dir, sn).await;
        let reason = format!("demoted: {}", plan.reason);
        for (leaf, to) in plan.moves {
            sn.redirect_leaf(leaf, to, &reason);
        }
        let leaf = LeafRole::new(plan.supernodes.clone());
        // Swapping the role stops the supernode's tasks, this one included (it returns
        // without awaiting again).
        self.set_role(Role::Leaf(Arc::clone(&leaf)), &reason);
        let first = Some((me, plan.supernodes, reason));
        leaf_role::start(self, &leaf, first);
    }
}
