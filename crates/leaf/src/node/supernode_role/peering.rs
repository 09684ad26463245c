//! The overlay over QUIC: peer links between supernodes, carrying out the overlay's actions,
//! routed searches for local leaves, the persisted host cache.
//!
//! Each peering is one connection whose control stream carries `PeerMessage` frames both
//! ways: a writer task drains a bounded queue ([`PEER_QUEUE`]) onto it and a reader feeds the
//! overlay. When two supernodes dial each other at once, both keep the connection dialled by
//! the smaller node id.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kazoo_common::transport::{self, Link, Pending};
use kazoo_common::wire::{self, CloseCode, ErrorCode, Hit, Intent, PeerMessage, Provider};
use kazoo_common::NodeId;
use kazoo_supernode::timing::OVERLAY_TICK;
use kazoo_supernode::Action;
use quinn::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::SupernodeRole;
use crate::node::{hello, Node};

/// Messages queued for one peer; a peer that falls further behind is disconnected.
pub const PEER_QUEUE: usize = 4096;
/// Hits and completions buffered for one routed search.
const QUERY_QUEUE: usize = 256;
/// How often the host cache is written to `data_dir`.
const SAVE_EVERY: Duration = Duration::from_secs(30);
/// File name of the host cache in `data_dir`.
pub const HOST_CACHE: &str = "hostcache.json";
/// Largest host cache read back: far more than the core's `max_hosts` (1000 by default)
/// entries of about 150 bytes each; a longer file is ignored with a warning.
const MAX_HOST_CACHE_BYTES: u64 = 1 << 20;

/// One event of a routed search.
#[derive(Debug)]
enum QueryEvent {
    Hits(Vec<Hit>),
    Done,
}

struct PeerLink {
    tx: mpsc::Sender<PeerMessage>,
    conn: Connection,
    dialer: NodeId,
    generation: u64,
}

/// Live peer links and routed searches in progress.
#[derive(Default)]
pub(in crate::node) struct Peering {
    links: Mutex<HashMap<NodeId, PeerLink>>,
    queries: Mutex<HashMap<u64, mpsc::Sender<QueryEvent>>>,
    generation: AtomicU64,
    /// Held while the host cache is written (the periodic save, a demotion and a shutdown
    /// may meet, and they share one temporary file).
    saving: tokio::sync::Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct CachedHost {
    node: NodeId,
    addr: std::net::SocketAddr,
    age_secs: u64,
}

impl Peering {
    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, PeerLink>> {
        crate::lock(&self.links)
    }

    /// The connection of the peering with `peer`, if it is up.
    pub(super) fn conn(&self, peer: &NodeId) -> Option<Connection> {
        self.links().get(peer).map(|l| l.conn.clone())
    }

    fn queries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<QueryEvent>>> {
        crate::lock(&self.queries)
    }

    /// Some peer whose peering is up, with its connection (a dial-back witness).
    pub(super) fn any(&self) -> Option<(NodeId, Connection)> {
        self.links()
            .iter()
            .next()
            .map(|(id, l)| (*id, l.conn.clone()))
    }

    /// Closes the peering with `peer`, if any.
    fn close(&self, peer: &NodeId, code: u32, reason: &str) {
        if let Some(link) = self.links().get(peer) {
            transport::close(&link.conn, code, reason);
        }
    }

    /// Closes every peering (this node stops being a supernode).
    pub(in crate::node) fn close_all(&self, reason: &str) {
        for (_, link) in self.links().drain() {
            transport::close(&link.conn, CloseCode::NORMAL, reason);
        }
    }
}

impl Node {
    /// A supernode asks to peer with this node: admitted if this node is a supernode (not
    /// retired) whose overlay wants the peer; the peering then runs until it ends.
    pub(in crate::node) async fn accept_peer(&self, pending: Pending) {
        let peer = pending.hello().node_id;
        let remote = pending.remote();
        let Some(sn) = self.supernode().filter(|sn| !sn.core().is_retired()) else {
            pending
                .refuse(ErrorCode::NotSupernode, "this node is not a supernode")
                .await;
            return;
        };
        let wanted = sn.core().overlay().wants_peer(&peer, Instant::now());
        if !wanted {
            pending
                .refuse(
                    ErrorCode::Busy,
                    "no room for another peer (or already peered)",
                )
                .await;
            return;
        }
        match pending.admit(hello(&self.inner, Intent::Fetch)).await {
            Ok(link) => self.run_peer(sn, link, false).await,
            Err(e) => {
                tracing::info!(peer = %peer.short(), %remote, reason = %e, "peering handshake failed")
            }
        }
    }

    /// Carries out overlay actions.
    pub(in crate::node) fn execute(&self, sn: &Arc<SupernodeRole>, actions: Vec<Action>) {
        let peering = &sn.peering;
        for action in actions {
            match action {
                Action::Send(to, msg) => {
                    let links = peering.links();
                    if let Some(link) = links.get(&to) {
                        if link.tx.try_send(msg).is_err() {
                            tracing::warn!(peer = %to.short(), "peer is not keeping up; disconnecting");
                            transport::close(&link.conn, CloseCode::NORMAL, "send queue full");
                        }
                    }
                }
                Action::Dial(provider) => {
                    let node = self.clone();
                    let sn = Arc::clone(sn);
                    tokio::spawn(async move {
                        node.dial_peer(sn, provider.addr, Some(provider.node)).await
                    });
                }
                Action::Shed(peer) => {
                    tracing::info!(peer = %peer.short(), reason = "over max_peers, and so is the peer", "shedding a peering");
                    peering.close(&peer, CloseCode::NORMAL, "shedding: over max_peers");
                }
                Action::Disconnect(peer, reason) => {
                    self.note_peer_violation(peer, &reason);
                    peering.close(&peer, CloseCode::PROTOCOL_VIOLATION, &reason);
                }
                Action::Hits(query, hits) => {
                    if let Some(tx) = peering.queries().get(&query) {
                        let _ = tx.try_send(QueryEvent::Hits(hits));
                    }
                }
                Action::Done(query) => {
                    if let Some(tx) = peering.queries().remove(&query) {
                        let _ = tx.try_send(QueryEvent::Done);
                    }
                }
                Action::Connect { leaf, to } => sn.ask_reverse(leaf, to),
            }
        }
    }

    /// Logs that peer `peer` broke the protocol and is being disconnected, and notes it as
    /// the last error (`reason` is this node's own words, never the peer's).
    pub(in crate::node) fn note_peer_violation(&self, peer: NodeId, reason: &str) {
        tracing::warn!(peer = %peer.short(), %reason, "disconnecting misbehaving supernode");
        self.note_error(format!("disconnected supernode {}: {reason}", peer.short()));
    }

    /// Dials a supernode to peer with it (`expected` pins its id when known).
    pub(super) async fn dial_peer(
        &self,
        sn: Arc<SupernodeRole>,
        addr: std::net::SocketAddr,
        expected: Option<NodeId>,
    ) {
        match self.dial(addr, expected, Intent::Peer).await {
            Ok(link) => self.run_peer(sn, link, true).await,
            Err(e) => {
                tracing::debug!(%addr, reason = %e, "peering dial failed");
                if let Some(node) = expected {
                    sn.core()
                        .overlay_mut()
                        .on_dial_failed(&node, Instant::now());
                }
            }
        }
    }

    /// Runs one peering until it ends.
    pub(super) async fn run_peer(&self, sn: Arc<SupernodeRole>, link: Link, dialed_by_me: bool) {
        let me = self.node_id();
        let peer = link.peer();
        // The address we dialled, or the one an incoming peer advertises.
        let addr = if dialed_by_me {
            link.remote()
        } else {
            link.advertised()
        };
        let Link {
            conn,
            control_send: mut send,
            control_recv: mut recv,
            ..
        } = link;
        let dialer = if dialed_by_me { me } else { peer };
        let (tx, mut rx) = mpsc::channel::<PeerMessage>(PEER_QUEUE);
        let generation = sn.peering.generation.fetch_add(1, Ordering::SeqCst);
        if !self.supernode().is_some_and(|s| Arc::ptr_eq(&s, &sn)) {
            // This node demoted (and maybe promoted again) while the peering was set up.
            transport::close(&conn, CloseCode::NORMAL, "not that supernode any more");
            return;
        }
        let replaced = {
            let mut links = sn.peering.links();
            if let Some(existing) = links.get(&peer) {
                if existing.dialer == me.min(peer) {
                    drop(links);
                    transport::close(&conn, CloseCode::NORMAL, "duplicate peering");
                    return;
                }
                transport::close(&existing.conn, CloseCode::NORMAL, "duplicate peering");
            }
            let replaced = links.insert(
                peer,
                PeerLink {
                    tx,
                    conn: conn.clone(),
                    dialer,
                    generation,
                },
            );
            replaced.is_some()
        };
        let now = Instant::now();
        if replaced {
            let actions = sn.core().peer_down(&peer, now);
            self.execute(&sn, actions);
        }
        tracing::info!(node = %me.short(), peer = %peer.short(), %addr, "supernode peering up");
        let actions = sn.core().peer_up(peer, addr, now);
        self.execute(&sn, actions);
        sn.hand_over(peer, addr);
        let relay_streams = tokio::spawn(super::peer_streams::serve(
            self.clone(),
            Arc::clone(&sn),
            peer,
            conn.clone(),
        ));
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if wire::write_frame(&mut send, &msg).await.is_err() {
                    break;
                }
            }
        });
        let reason = loop {
            match wire::read_frame::<PeerMessage>(&mut recv).await {
                Ok(msg) => {
                    let (actions, answered) = {
                        let mut core = sn.core();
                        let before = core.overlay().stats().queries_answered;
                        let actions = core.peer_message(peer, msg, Instant::now());
                        let after = core.overlay().stats().queries_answered;
                        (actions, after.saturating_sub(before))
                    };
                    crate::metrics::Counters::add(&self.counters().peer_queries, answered);
                    self.execute(&sn, actions);
                }
                Err(e) if e.is_violation() => {
                    let reason = format!("malformed peer message: {e}");
                    let actions = sn
                        .core()
                        .overlay_mut()
                        .penalize(peer, &reason, Instant::now());
                    self.execute(&sn, actions);
                    transport::close(&conn, CloseCode::PROTOCOL_VIOLATION, &reason);
                    break reason;
                }
                Err(e) => break e.to_string(),
            }
        };
        writer.abort();
        relay_streams.abort();
        let current = {
            let mut links = sn.peering.links();
            let current = links.get(&peer).is_some_and(|l| l.generation == generation);
            if current {
                links.remove(&peer);
            }
            current
        };
        if current {
            tracing::info!(node = %me.short(), peer = %peer.short(), %reason, "supernode peering down");
            let actions = sn.core().peer_down(&peer, Instant::now());
            self.execute(&sn, actions);
        }
    }

    /// Runs a search through the overlay, passing hits to `on_hits` as they arrive.
    pub(in crate::node) async fn routed_search(
        &self,
        sn: &Arc<SupernodeRole>,
        words: &[String],
        max: u32,
        mut on_hits: impl FnMut(Vec<Hit>),
    ) {
        let (tx, mut rx) = mpsc::channel(QUERY_QUEUE);
        crate::metrics::Counters::add(&self.counters().queries, 1);
        let (query, actions) = sn.core().start_query(words, max, Instant::now());
        sn.peering.queries().insert(query, tx);
        self.execute(sn, actions);
        let limit = {
            let core = sn.core();
            let config = core.overlay().config();
            config.hop_timeout * (u32::from(config.hop_limit) + 2)
        };
        let collect = async {
            while let Some(event) = rx.recv().await {
                match event {
                    QueryEvent::Hits(hits) => on_hits(hits),
                    QueryEvent::Done => break,
                }
            }
        };
        let _ = tokio::time::timeout(limit, collect).await;
        sn.peering.queries().remove(&query);
    }

    /// Ticks the overlay, dials address-only bootstrap entries, saves the host cache.
    pub(super) async fn overlay_loop(self, sn: Arc<SupernodeRole>) {
        let path = self.inner.config.node.data_dir.join(HOST_CACHE);
        let now = Instant::now();
        let saved =
            crate::state_file::read_bounded(&path, MAX_HOST_CACHE_BYTES).and_then(|bytes| {
                bytes
                    .map(|b| {
                        serde_json::from_slice::<Vec<CachedHost>>(&b).map_err(std::io::Error::other)
                    })
                    .transpose()
            });
        match saved {
            Ok(None) => {}
            Ok(Some(hosts)) => {
                let mut core = sn.core();
                for h in hosts {
                    let provider = Provider::new(h.node, h.addr);
                    core.overlay_mut()
                        .add_host(provider, Duration::from_secs(h.age_secs), now);
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "host cache unreadable; ignored")
            }
        }
        let mut tick = tokio::time::interval(OVERLAY_TICK);
        let mut last_save = Instant::now();
        let mut last_bootstrap: Option<Instant> = None;
        let mut bootstrap_round: Option<tokio::task::JoinHandle<()>> = None;
        let pinned_known = Arc::new(std::sync::Mutex::new(HashSet::new()));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let actions = sn.core().tick(now);
            self.execute(&sn, actions);
            let idle = bootstrap_round.as_ref().is_none_or(|r| r.is_finished());
            if idle && last_bootstrap.is_none_or(|t| now.duration_since(t) > Duration::from_secs(5))
            {
                last_bootstrap = Some(now);
                // In a task of its own: resolving a name may take a while.
                let round = self
                    .clone()
                    .dial_bootstrap(Arc::clone(&sn), Arc::clone(&pinned_known));
                bootstrap_round = Some(tokio::spawn(round));
            }
            if now.duration_since(last_save) > SAVE_EVERY {
                last_save = now;
                save_hosts(&self.inner.config.node.data_dir, &sn).await;
            }
        }
    }
}

impl Node {
    /// One round over the bootstrap entries (names resolved again: dynamic DNS): a pinned
    /// entry at an address not seen before becomes a host like any other; address-only
    /// ones not peered with are dialled. `pinned_known`: the pinned (address, id) pairs
    /// added so far (at most one per resolved address of each entry).
    async fn dial_bootstrap(
        self,
        sn: Arc<SupernodeRole>,
        pinned_known: Arc<std::sync::Mutex<HashSet<(std::net::SocketAddr, NodeId)>>>,
    ) {
        let targets = self.bootstrap_targets().await;
        let now = Instant::now();
        let mut unpinned = Vec::new();
        for (addr, node) in targets {
            match node {
                Some(node) => {
                    if crate::lock(&pinned_known).insert((addr, node)) {
                        let provider = Provider::new(node, addr);
                        sn.core()
                            .overlay_mut()
                            .add_host(provider, Duration::ZERO, now);
                    }
                }
                None => unpinned.push(addr),
            }
        }
        let connected: Vec<std::net::SocketAddr> = sn
            .peering
            .links()
            .values()
            .map(|l| kazoo_common::addr::canonical(l.conn.remote_address()))
            .collect();
        for addr in unpinned
            .into_iter()
            .filter(|a| !connected.contains(a) && *a != self.inner.listen)
        {
            let node = self.clone();
            let sn = Arc::clone(&sn);
            tokio::spawn(async move { node.dial_peer(sn, addr, None).await });
        }
    }
}

/// Writes the host cache to [`HOST_CACHE`] in `data_dir` (atomically, on a blocking
/// thread); savers take turns, each writing the hosts known when its turn came.
pub(in crate::node) async fn save_hosts(data_dir: &std::path::Path, sn: &SupernodeRole) {
    let _saving = sn.peering.saving.lock().await;
    let hosts: Vec<CachedHost> = sn
        .core()
        .overlay()
        .hosts(Instant::now())
        .into_iter()
        .map(|(p, age)| CachedHost {
            node: p.node,
            addr: p.addr,
            age_secs: age.as_secs(),
        })
        .collect();
    let path = data_dir.join(HOST_CACHE);
    let write = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&hosts).map_err(std::io::Error::other)?;
            crate::state_file::write_atomic(&path, &bytes)
        })
    };
    let result = write
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not save host cache");
    }
}
