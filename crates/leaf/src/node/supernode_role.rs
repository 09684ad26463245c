//! The supernode role's I/O: the runtime side of [`kazoo_supernode::Supernode`], which decides
//! everything and is held here under one lock. This module owns what the role has while it
//! lasts — the core, the joined leaves' notice channels, the peer links, the role's tasks —
//! and carries out the core's decisions over QUIC:
//! * [`admission`]: leaves joining and their sessions;
//! * [`requests`]: a joined leaf's index and search requests;
//! * [`notices`]: succession, redirect and promote notices to joined leaves;
//! * [`peering`]: peer links to other supernodes, routed searches, the host cache;
//! * [`relaying`]: relay circuits between leaves that reach each other no other way;
//! * [`peer_streams`]: the request streams a peer opens on its peering;
//! * [`witness`]: dial backs asked of a peer (at another IP) and answered for peers;
//! * [`election`]: growth (asking a leaf to promote, handing leaves over), dial-backs to
//!   eligible leaves, and demotion.

pub(super) mod admission;
pub(super) mod election;
pub(super) mod notices;
pub(super) mod peer_streams;
pub(super) mod peering;
pub(super) mod relaying;
pub(super) mod requests;
pub(super) mod witness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use kazoo_common::config::RoleSetting;
use kazoo_common::NodeId;
use kazoo_supernode::{DemotePolicy, LeafKey, OverlayConfig, QueryKey, Supernode};

use super::{Node, Tasks};
use crate::share::ShareStore;

/// A joined leaf's session: the supernode role it joined and its key there.
#[derive(Clone)]
pub(in crate::node) struct Session {
    /// The supernode role the leaf joined.
    pub sn: Arc<SupernodeRole>,
    /// The leaf's current session key.
    pub key: LeafKey,
    /// Where the leaf's connection comes from (its listening socket as seen here).
    pub remote: std::net::SocketAddr,
}

/// What a node has while it is a supernode; dropped whole when it demotes.
pub struct SupernodeRole {
    /// The decisions (index, leaves, overlay, election), under the role's one lock.
    core: Mutex<Supernode>,
    /// Each joined leaf's notice stream and connection.
    notices: Mutex<HashMap<NodeId, notices::LeafChannel>>,
    /// Peer links and routed searches.
    peering: peering::Peering,
    /// Relay circuits.
    relays: relaying::Relays,
    /// The role's tasks (overlay, own shares, demotion check), aborted when it ends.
    tasks: Tasks,
}

impl SupernodeRole {
    /// Where this supernode is dialled by those it talks to: the local IP a connection of
    /// target `leaf` (if it is ours) or of some peer arrives at, with `port`. `None` when no
    /// connection tells.
    pub(in crate::node) fn own_addr(&self, leaf: &NodeId, port: u16) -> Option<SocketAddr> {
        let conn = crate::lock(&self.notices)
            .get(leaf)
            .map(|l| l.conn.clone())
            .or_else(|| self.peering.any().map(|(_, conn)| conn))?;
        let ip = kazoo_common::addr::canonical_ip(conn.local_ip()?);
        Some(SocketAddr::new(ip, port))
    }

    /// The core, locked. Never held across an `.await`, and every core call does bounded
    /// work (see [`kazoo_supernode::service`]).
    pub fn core(&self) -> MutexGuard<'_, Supernode> {
        crate::lock(&self.core)
    }

    /// What it relays now.
    pub fn relay_stats(&self) -> super::RelayStats {
        self.relays.stats()
    }

    /// Ends the role: closes its peerings and stops its tasks.
    pub(super) fn stop(&self, reason: &str) {
        self.peering.close_all(reason);
        self.tasks.abort_all();
    }
}

impl Node {
    /// Becomes a supernode (its own shares go into its index).
    pub(super) fn promote(&self, reason: &str) {
        let config = &self.inner.config.supernode;
        let overlay = OverlayConfig {
            max_peers: config.max_peers,
            hop_limit: config.hop_limit,
            routing: config.routing,
            query_key: QueryKey(crate::os_random()),
            ..OverlayConfig::default()
        };
        let mut core = Supernode::new(
            self.node_id(),
            config.clone(),
            self.inner.listen.port(),
            overlay,
        );
        if self.inner.setting == RoleSetting::Auto {
            let election = &self.inner.config.election;
            core.set_demote_policy(DemotePolicy {
                below_pct: election.demote_below_pct,
                after: election.demote_after(),
            });
        }
        let role = Arc::new(SupernodeRole {
            core: Mutex::new(core),
            notices: Mutex::new(HashMap::new()),
            peering: peering::Peering::default(),
            relays: relaying::Relays::new(&self.inner.config.relay),
            tasks: Tasks::default(),
        });
        self.set_role(super::Role::Supernode(Arc::clone(&role)), reason);
        role.tasks.spawn(own_shares_loop(
            Arc::clone(&self.inner.shares),
            Arc::clone(&role),
        ));
        role.tasks
            .spawn(self.clone().overlay_loop(Arc::clone(&role)));
        role.tasks
            .spawn(self.clone().demotion_loop(Arc::clone(&role)));
    }
}

/// Keeps a supernode's own shares in its index.
async fn own_shares_loop(shares: Arc<ShareStore>, sn: Arc<SupernodeRole>) {
    let mut version = shares.subscribe();
    let mut indexed = HashMap::new();
    loop {
        let (added, removed) = super::leaf_role::uplink::diff(&indexed, shares.entries());
        sn.core().set_own_shares(&added, &removed);
        for id in &removed {
            indexed.remove(id);
        }
        indexed.extend(added.into_iter().map(|e| (e.id, e)));
        if version.changed().await.is_err() {
            return;
        }
    }
}
