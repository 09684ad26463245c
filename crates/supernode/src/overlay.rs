//! The supernode overlay: peering, node-cache gossip, routing filters and routed search, as
//! plain state. The node runtime (over QUIC) and the in-memory harness both drive it: they
//! report events (`on_peer_up`, `on_message`, `tick`, …) with the current time and carry out
//! the [`Action`]s it returns.
//!
//! This file holds the public types and dispatches peer up / down, messages and ticks; the
//! work is done by one module per job: `hosts` (the host cache, dialling, penalties),
//! `peers` (peer lists and load), `routing` (filters and reach: who may match a query) and
//! `relay` (starting, answering and forwarding queries, their rate limit and `Done`) and
//! `rendezvous` (where sources' hits came from, for reverse connections).
//!
//! Invariants:
//! * `peers` holds exactly the supernodes with a live peering; each peer's `filter` is the
//!   set of positions it advertised, and `reach_counts[fold(p)]` counts, over all peers, the
//!   advertised positions that fold to that reach position;
//! * a query id is in `seen` from the first time it is handled here until it expires, so a
//!   query is answered and forwarded at most once per supernode;
//! * a peer is listed in the `Peers` messages we send only once its filter has arrived, and
//!   a changed list goes out at a tick after that tick's reach patch: whoever learns that we
//!   neighbour a supernode already has our reach covering that supernode's filter (the
//!   origin prunes intermediates on exactly that assumption);
//! * `hosts` holds only supernodes a peering handshake succeeded with (now or, through the
//!   saved host cache, before) and bootstrap entries; gossip goes to `candidates` until
//!   a peering with the candidate comes up;
//! * `relays[id].waiting` holds the peers a query was forwarded to that have not sent `Done`;
//!   when it empties or the deadline passes, `Done` goes upstream (or the local query ends).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Hit, PeerMessage, Provider, PEER_PENALTY, PEER_QUERY_RATE};
use kazoo_common::NodeId;

use crate::filter::{ReachMap, REACH_BITS};
use crate::index::Index;

pub use kazoo_common::config::Routing;

mod hosts;
mod peers;
mod relay;
mod rendezvous;
mod routing;

use hosts::{Candidate, Host};
use relay::{Relay, TokenBucket};

pub use relay::QueryKey;
pub use rendezvous::{MAX_ROUTES, ROUTE_TTL};

/// Overlay limits and timings.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// Peer supernodes to keep (documented range 30–50).
    pub max_peers: usize,
    /// Hops a query travels from its origin (2 reaches ~40² supernodes with 40 peers each).
    pub hop_limit: u8,
    /// Forwarding rule.
    pub routing: Routing,
    /// How long a supernode waits for one more hop of answers.
    pub hop_timeout: Duration,
    /// Queries handled at once (own and relayed); more are answered `Done` at once.
    pub max_queries: usize,
    /// Queries per second one peer may send (burst: twice that).
    pub peer_query_rate: f64,
    /// Dials in progress at once.
    pub max_dials: usize,
    /// Wait before re-dialling a supernode that failed.
    pub dial_backoff: Duration,
    /// Wait before re-dialling a peer dropped for misbehaving.
    pub penalty: Duration,
    /// Known supernodes remembered.
    pub max_hosts: usize,
    /// Known supernodes not seen for this long are forgotten.
    pub host_max_age: Duration,
    /// The secret key of this supernode's query ids (the runtime draws it from the OS
    /// CSPRNG; see [`QueryKey`]).
    pub query_key: QueryKey,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            max_peers: 40,
            hop_limit: 2,
            routing: Routing::Filters,
            hop_timeout: Duration::from_millis(1500),
            max_queries: 1024,
            peer_query_rate: f64::from(PEER_QUERY_RATE),
            max_dials: 8,
            dial_backoff: Duration::from_secs(10),
            penalty: PEER_PENALTY,
            max_hosts: 1000,
            host_max_age: Duration::from_secs(7 * 24 * 3600),
            query_key: QueryKey::default(),
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer.
    Send(NodeId, PeerMessage),
    /// Open a peering to this supernode.
    Dial(Provider),
    /// Close a peering (misbehaviour); the reason is logged.
    Disconnect(NodeId, String),
    /// Close a peering normally: this supernode is over `max_peers` and the peer has more
    /// than `max_peers` too, so neither needs a replacement (room for newcomers returns).
    Shed(NodeId),
    /// Results for a local query.
    Hits(u64, Vec<Hit>),
    /// A local query is complete.
    Done(u64),
    /// Ask joined leaf `leaf` to dial `to` (a reverse connection, `Notice::Connect`).
    Connect {
        /// The leaf.
        leaf: NodeId,
        /// The downloader to dial.
        to: Provider,
    },
}

/// Counters for status and the harness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Query messages sent (forwards).
    pub queries_sent: u64,
    /// Queries from peers answered (searched in the local index; duplicates and queries
    /// refused as floods or out of bounds not counted).
    pub queries_answered: u64,
    /// Hits messages sent.
    pub hits_sent: u64,
    /// Bytes of filter and reach patches sent (4 per position).
    pub filter_bytes_sent: u64,
    /// Peers disconnected for misbehaving.
    pub peers_dropped: u64,
}

/// A supernode's load, as announced to its peers with [`PeerMessage::Load`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    /// Leaves joined now.
    pub leaves: u32,
    /// Its `max_leaves`.
    pub max_leaves: u32,
    /// An `auto` supernode, which may demote.
    pub demotable: bool,
}

impl Load {
    /// Leaves it can still take.
    pub fn room(&self) -> u32 {
        self.max_leaves.saturating_sub(self.leaves)
    }
}

struct Peer {
    addr: SocketAddr,
    /// The positions it advertised; each one is counted once in `Overlay::reach_counts`.
    filter: HashSet<u32>,
    reach: ReachMap,
    peers: Vec<NodeId>,
    bucket: TokenBucket,
    /// Its last `Load` (none yet: not known).
    load: Option<Load>,
    /// Its filter has arrived (it is in the peer lists we send from then on).
    filter_ready: bool,
    /// When the peering came up.
    since: Instant,
}

/// A peer as `kazoo status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// Its node id.
    pub node: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// Positions in its routing filter.
    pub filter_positions: usize,
    /// Its own peer count, as it last told us.
    pub peers: usize,
    /// Its load, as it last told us.
    pub load: Option<Load>,
    /// When the peering came up.
    pub since: Instant,
}

/// One supernode's overlay state.
pub struct Overlay {
    me: NodeId,
    config: OverlayConfig,
    /// Live peerings only (see the invariants).
    peers: HashMap<NodeId, Peer>,
    /// Handshaken supernodes (the host cache); never a gossiped one before its handshake.
    hosts: HashMap<NodeId, Host>,
    /// Gossiped supernodes to dial; none is also in `hosts` (see `hosts.rs`).
    candidates: HashMap<NodeId, Candidate>,
    dialing: HashSet<NodeId>,
    penalties: HashMap<NodeId, Instant>,
    relays: HashMap<u64, Relay>,
    /// Query ids handled here, until when they are remembered.
    seen: HashMap<u64, Instant>,
    /// Per reach position, the advertised peer filter positions that fold to it.
    reach_counts: Vec<u16>,
    /// The reach positions whose count is above 0 (kept in step with `reach_counts`), so
    /// our reach can be listed without scanning every counter.
    reach_live: ReachMap,
    /// Reach positions that went from 0 to 1 (or back) since the last tick's patch.
    reach_add: Vec<u32>,
    reach_remove: Vec<u32>,
    next_id: u64,
    stats: OverlayStats,
    /// This supernode's load, and whether peers have heard it yet.
    load: Load,
    load_sent: bool,
    /// Our peer list changed since it was last sent.
    peers_dirty: bool,
    /// Which peer each source's hits came from.
    routes: rendezvous::Routes,
}

impl Overlay {
    /// An overlay for supernode `me`.
    pub fn new(me: NodeId, config: OverlayConfig) -> Self {
        Overlay {
            me,
            config,
            peers: HashMap::new(),
            hosts: HashMap::new(),
            candidates: HashMap::new(),
            dialing: HashSet::new(),
            penalties: HashMap::new(),
            relays: HashMap::new(),
            seen: HashMap::new(),
            reach_counts: vec![0; 1 << REACH_BITS],
            reach_live: ReachMap::default(),
            routes: rendezvous::Routes::default(),
            reach_add: Vec::new(),
            reach_remove: Vec::new(),
            next_id: 0,
            stats: OverlayStats::default(),
            load: Load::default(),
            load_sent: true,
            peers_dirty: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OverlayConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> OverlayStats {
        self.stats
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage, actions: &mut Vec<Action>) {
        match &msg {
            PeerMessage::Query { .. } => self.stats.queries_sent += 1,
            PeerMessage::Hits { .. } => self.stats.hits_sent += 1,
            PeerMessage::Filter { add, remove, .. } | PeerMessage::Reach { add, remove, .. } => {
                self.stats.filter_bytes_sent += 4 * (add.len() + remove.len()) as u64 + 8;
            }
            _ => {}
        }
        actions.push(Action::Send(to, msg));
    }

    /// A peering with `node` at `addr` is up.
    pub fn on_peer_up(
        &mut self,
        node: NodeId,
        addr: SocketAddr,
        index: &Index,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.dialing.remove(&node);
        // The handshake succeeded: a candidate becomes a host.
        self.candidates.remove(&node);
        self.add_host(Provider::new(node, addr), Duration::ZERO, now);
        if self.peers.contains_key(&node) {
            return actions;
        }
        self.peers.insert(
            node,
            Peer {
                addr,
                filter: HashSet::new(),
                reach: ReachMap::default(),
                peers: Vec::new(),
                bucket: TokenBucket {
                    tokens: 2.0 * self.config.peer_query_rate,
                    last: now,
                },
                load: None,
                filter_ready: false,
                since: now,
            },
        );
        let load = self.load_message();
        self.send(node, load, &mut actions);
        let gossip = self.gossip_list();
        self.send(node, PeerMessage::Supernodes(gossip), &mut actions);
        let filter = index.filter().positions();
        self.send_positions(node, false, filter, &mut actions);
        let reach = self.reach_positions();
        self.send_positions(node, true, reach, &mut actions);
        // Tell the other peers about the newcomer; our peer list names it once its filter
        // has arrived (see the invariants).
        let others: Vec<NodeId> = self.peers.keys().copied().filter(|n| *n != node).collect();
        for other in others {
            self.send(
                other,
                PeerMessage::Supernodes(vec![Provider::new(node, addr)]),
                &mut actions,
            );
        }
        let ids = self.peer_ids();
        self.send(node, PeerMessage::Peers(ids), &mut actions);
        actions
    }

    /// A peering ended.
    pub fn on_peer_down(&mut self, node: &NodeId, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(peer) = self.peers.remove(node) else {
            return actions;
        };
        if let Some(host) = self.hosts.get_mut(node) {
            host.next_dial = host.next_dial.max(now + self.config.dial_backoff / 4);
        }
        for pos in peer.filter {
            self.reach_dec(pos);
        }
        self.stop_waiting_for(node, &mut actions);
        // The new list goes out at the next tick, after that tick's reach patch.
        self.peers_dirty = true;
        actions
    }

    /// Handles one message from peer `from`.
    pub fn on_message(
        &mut self,
        from: NodeId,
        msg: PeerMessage,
        index: &Index,
        now: Instant,
    ) -> Vec<Action> {
        if !self.peers.contains_key(&from) {
            return Vec::new();
        }
        match msg {
            PeerMessage::Supernodes(list) => self.on_supernodes(from, list, now),
            PeerMessage::Peers(list) => self.on_peers(from, list, now),
            PeerMessage::Filter { reset, add, remove } => {
                self.on_patch(from, false, reset, add, remove, now)
            }
            PeerMessage::Reach { reset, add, remove } => {
                self.on_patch(from, true, reset, add, remove, now)
            }
            PeerMessage::Query {
                id,
                origin,
                words,
                max_results,
                hops_left,
                via,
            } => self.on_query(
                from,
                id,
                origin,
                words,
                max_results,
                hops_left,
                via,
                index,
                now,
            ),
            PeerMessage::Hits { id, hits } => self.on_hits(from, id, hits, now),
            PeerMessage::Load {
                leaves,
                max_leaves,
                demotable,
            } => self.on_load(
                from,
                Load {
                    leaves,
                    max_leaves,
                    demotable,
                },
                now,
            ),
            PeerMessage::Done { id } => self.on_done(from, id),
            // The supernode handles it (it knows its leaves), after `check_connect`.
            PeerMessage::Connect { .. } => Vec::new(),
        }
    }

    /// Periodic work: time-outs, filter patches, dials.
    pub fn tick(&mut self, index: &mut Index, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.expire_queries(now, &mut actions);
        self.forget_hosts(now);
        // The peers as they are before any is shed: all of them hear this tick's messages.
        let peer_ids: Vec<NodeId> = self.peers.keys().copied().collect();
        self.send_load(&peer_ids, &mut actions);
        self.send_patches(index, &peer_ids, &mut actions);
        self.shed(now, &mut actions);
        // After the reach patch (see the invariants).
        self.send_peer_list(&peer_ids, &mut actions);
        self.dial(now, &mut actions);
        actions
    }
}

#[cfg(test)]
mod tests;
