//! The supernode overlay: peering, node-cache gossip, routing filters and routed search, as
//! plain state. The node runtime (over QUIC) and the in-memory harness both drive it: they
//! report events (`on_peer_up`, `on_message`, `tick`, …) with the current time and carry out
//! the [`Action`]s it returns.
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
//! * `relays[id].waiting` holds the peers a query was forwarded to that have not sent `Done`;
//!   when it empties or the deadline passes, `Done` goes upstream (or the local query ends).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::{
    Hit, PeerMessage, Provider, HITS_PER_FRAME, MAX_FILTER_PATCH, MAX_GOSSIP, MAX_HOPS,
    MAX_LEAVES_PER_SUPERNODE, MAX_PEER_LIST, MAX_QUERY_LEN, MAX_QUERY_WORDS, MAX_VIA, PEER_PENALTY,
    PEER_QUERY_RATE,
};
use kazoo_common::{ContentId, NodeId};

use crate::filter::{fold, position, ReachMap, REACH_BITS};
use crate::index::Index;
use crate::tokenize::tokens;

pub use kazoo_common::config::Routing;

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
}

/// Counters for status and the harness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Query messages sent (forwards).
    pub queries_sent: u64,
    /// Hits messages sent.
    pub hits_sent: u64,
    /// Bytes of filter and reach patches sent (4 per position).
    pub filter_bytes_sent: u64,
    /// Peers disconnected for misbehaving.
    pub peers_dropped: u64,
}

struct TokenBucket {
    tokens: f64,
    last: Instant,
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

struct Host {
    addr: SocketAddr,
    last_seen: Instant,
    next_dial: Instant,
}

struct Relay {
    /// Upstream peer; `None` for a query started here.
    from: Option<NodeId>,
    waiting: HashSet<NodeId>,
    deadline: Instant,
}

/// A peer as shown by `kazoo status --json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
}

/// One supernode's overlay state.
pub struct Overlay {
    me: NodeId,
    config: OverlayConfig,
    peers: HashMap<NodeId, Peer>,
    hosts: HashMap<NodeId, Host>,
    dialing: HashSet<NodeId>,
    penalties: HashMap<NodeId, Instant>,
    relays: HashMap<u64, Relay>,
    seen: HashMap<u64, Instant>,
    reach_counts: Vec<u16>,
    reach_add: Vec<u32>,
    reach_remove: Vec<u32>,
    next_id: u64,
    stats: OverlayStats,
    /// This supernode's load, and whether peers have heard it yet.
    load: Load,
    load_sent: bool,
    /// Our peer list changed since it was last sent.
    peers_dirty: bool,
}

/// How long a query id is remembered.
const SEEN_FOR: Duration = Duration::from_secs(30);
/// A peering this young is never shed.
const SHED_AFTER: Duration = Duration::from_secs(10);

impl Overlay {
    /// An overlay for supernode `me`.
    pub fn new(me: NodeId, config: OverlayConfig) -> Self {
        Overlay {
            me,
            config,
            peers: HashMap::new(),
            hosts: HashMap::new(),
            dialing: HashSet::new(),
            penalties: HashMap::new(),
            relays: HashMap::new(),
            seen: HashMap::new(),
            reach_counts: vec![0; 1 << REACH_BITS],
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

    /// Number of live peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `node` is a live peer.
    pub fn is_peer(&self, node: &NodeId) -> bool {
        self.peers.contains_key(node)
    }

    /// The live peers.
    pub fn peers(&self) -> Vec<PeerView> {
        let mut list: Vec<PeerView> = self
            .peers
            .iter()
            .map(|(node, p)| PeerView {
                node: *node,
                addr: p.addr,
                filter_positions: p.filter.len(),
                peers: p.peers.len(),
                load: p.load,
            })
            .collect();
        list.sort_by_key(|p| p.node);
        list
    }

    /// Sets this supernode's load; peers hear of a change at the next tick.
    pub fn set_load(&mut self, load: Load) {
        if load != self.load {
            self.load = load;
            self.load_sent = false;
        }
    }

    /// Up to `max` peers that may take a leaf: those with room, most room first, then
    /// those whose load is not known yet. Full peers are left out.
    pub fn peers_with_room(&self, max: usize) -> Vec<(Provider, Option<Load>)> {
        let mut list = self.peers_with_load();
        list.retain(|(_, load)| load.is_none_or(|l| l.room() > 0));
        list.sort_by_key(|(p, load)| {
            let room = load.map_or(0, |l| l.room());
            (load.is_none(), std::cmp::Reverse(room), p.node)
        });
        list.truncate(max);
        list
    }

    /// Every peer and its last announced load.
    pub fn peers_with_load(&self) -> Vec<(Provider, Option<Load>)> {
        self.peers
            .iter()
            .map(|(node, p)| {
                let provider = Provider {
                    node: *node,
                    addr: p.addr,
                };
                (provider, p.load)
            })
            .collect()
    }

    /// Number of known supernodes.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Known supernodes and how long ago each was last seen (for the persisted host cache).
    pub fn hosts(&self, now: Instant) -> Vec<(Provider, Duration)> {
        self.hosts
            .iter()
            .map(|(node, h)| {
                let provider = Provider {
                    node: *node,
                    addr: h.addr,
                };
                (provider, now.saturating_duration_since(h.last_seen))
            })
            .collect()
    }

    /// Learns of a supernode last seen `age` ago (bootstrap, host cache, gossip).
    pub fn add_host(&mut self, provider: Provider, age: Duration, now: Instant) {
        if provider.node == self.me || provider.addr.ip().is_unspecified() {
            return;
        }
        let last_seen = now.checked_sub(age).unwrap_or(now);
        if let Some(host) = self.hosts.get_mut(&provider.node) {
            host.addr = provider.addr;
            host.last_seen = host.last_seen.max(last_seen);
            return;
        }
        if self.hosts.len() >= self.config.max_hosts {
            // Forget the stalest host to make room.
            let stalest = self
                .hosts
                .iter()
                .filter(|(n, _)| !self.peers.contains_key(*n))
                .min_by_key(|(_, h)| h.last_seen)
                .map(|(n, _)| *n);
            match stalest {
                Some(node) => {
                    self.hosts.remove(&node);
                }
                None => return,
            }
        }
        self.hosts.insert(
            provider.node,
            Host {
                addr: provider.addr,
                last_seen,
                next_dial: now,
            },
        );
    }

    /// Whether an incoming peering from `node` should be accepted: up to
    /// [`Self::max_incoming`] peers, so a new supernode (a promoted heir) finds room in a
    /// mesh where every supernode already has `max_peers`.
    pub fn wants_peer(&self, node: &NodeId, now: Instant) -> bool {
        *node != self.me
            && !self.peers.contains_key(node)
            && self.peers.len() < self.max_incoming()
            && self.penalties.get(node).is_none_or(|until| *until <= now)
    }

    /// Most peers once incoming peerings are counted: `max_peers` plus a quarter (at least
    /// 2 when `max_peers` > 0). A supernode dials only while it has fewer than `max_peers`.
    pub fn max_incoming(&self) -> usize {
        let max = self.config.max_peers;
        if max == 0 {
            0
        } else {
            max + (max / 4).max(2)
        }
    }

    /// A dial to `node` failed (or was refused).
    pub fn on_dial_failed(&mut self, node: &NodeId, now: Instant) {
        self.dialing.remove(node);
        if let Some(host) = self.hosts.get_mut(node) {
            host.next_dial = now + self.config.dial_backoff;
        }
    }

    /// Drops a misbehaving peer and keeps it away for `penalty`.
    pub fn penalize(&mut self, node: NodeId, reason: &str, now: Instant) -> Vec<Action> {
        self.penalties.insert(node, now + self.config.penalty);
        self.stats.peers_dropped += 1;
        let mut actions = vec![Action::Disconnect(node, reason.to_owned())];
        actions.extend(self.on_peer_down(&node, now));
        actions
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

    /// Sends a whole position set as `reset` + patches of at most `MAX_FILTER_PATCH`.
    fn send_positions(
        &mut self,
        to: NodeId,
        reach: bool,
        positions: Vec<u32>,
        actions: &mut Vec<Action>,
    ) {
        let mut chunks: Vec<Vec<u32>> = positions
            .chunks(MAX_FILTER_PATCH)
            .map(|c| c.to_vec())
            .collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        for (i, add) in chunks.into_iter().enumerate() {
            let reset = i == 0;
            let msg = if reach {
                PeerMessage::Reach {
                    reset,
                    add,
                    remove: Vec::new(),
                }
            } else {
                PeerMessage::Filter {
                    reset,
                    add,
                    remove: Vec::new(),
                }
            };
            self.send(to, msg, actions);
        }
    }

    fn reach_positions(&self) -> Vec<u32> {
        self.reach_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, _)| i as u32)
            .collect()
    }

    fn gossip_list(&self) -> Vec<Provider> {
        let mut list: Vec<Provider> = self
            .peers
            .iter()
            .map(|(node, p)| Provider {
                node: *node,
                addr: p.addr,
            })
            .collect();
        let mut others: Vec<(&NodeId, &Host)> = self
            .hosts
            .iter()
            .filter(|(n, _)| !self.peers.contains_key(*n))
            .collect();
        others.sort_by_key(|(_, h)| std::cmp::Reverse(h.last_seen));
        list.extend(others.into_iter().map(|(n, h)| Provider {
            node: *n,
            addr: h.addr,
        }));
        list.truncate(MAX_GOSSIP);
        list
    }

    fn load_message(&self) -> PeerMessage {
        PeerMessage::Load {
            leaves: self.load.leaves,
            max_leaves: self.load.max_leaves,
            demotable: self.load.demotable,
        }
    }

    fn peer_ids(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.filter_ready)
            .map(|(n, _)| *n)
            .take(MAX_PEER_LIST)
            .collect()
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
        self.add_host(Provider { node, addr }, Duration::ZERO, now);
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
                PeerMessage::Supernodes(vec![Provider { node, addr }]),
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
        let finished: Vec<u64> = self
            .relays
            .iter_mut()
            .filter_map(|(id, r)| (r.waiting.remove(node) && r.waiting.is_empty()).then_some(*id))
            .collect();
        for id in finished {
            self.finish(id, &mut actions);
        }
        // The new list goes out at the next tick, after that tick's reach patch.
        self.peers_dirty = true;
        actions
    }

    fn reach_inc(&mut self, pos: u32) {
        let slot = &mut self.reach_counts[fold(pos) as usize];
        *slot = slot.saturating_add(1);
        if *slot == 1 {
            self.reach_add.push(fold(pos));
        }
    }

    fn reach_dec(&mut self, pos: u32) {
        let slot = &mut self.reach_counts[fold(pos) as usize];
        if *slot > 0 {
            *slot -= 1;
            if *slot == 0 {
                self.reach_remove.push(fold(pos));
            }
        }
    }

    /// Positions a query must find in a filter: the id's, or every token's.
    fn query_positions(words: &[String]) -> Vec<u32> {
        if let [word] = words {
            if let Ok(id) = word.parse::<ContentId>() {
                return vec![position(id.as_bytes())];
            }
        }
        words
            .iter()
            .flat_map(|w| tokens(w))
            .map(|t| position(t.as_bytes()))
            .collect()
    }

    /// Peers to forward a query with `hops` hops left to (before decrementing). `via` is the
    /// origin's list when the query came straight from its origin: a peer in it already has
    /// the query, and a peer adjacent to several of its members is left to the smallest.
    fn targets(
        &self,
        words: &[String],
        hops: u8,
        exclude: &[NodeId],
        via: Option<&[NodeId]>,
    ) -> Vec<NodeId> {
        if hops == 0 {
            return Vec::new();
        }
        let me = self.me;
        let designated = |node: &NodeId, peer: &Peer| match via {
            _ if self.config.routing == Routing::Flood => true,
            None => true,
            Some(via) => {
                !via.contains(node)
                    && via
                        .iter()
                        .filter(|v| **v == me || peer.peers.contains(v))
                        .min()
                        .is_none_or(|first| *first == me)
            }
        };
        let candidates = self
            .peers
            .iter()
            .filter(|(n, p)| !exclude.contains(n) && designated(n, p));
        match self.config.routing {
            Routing::Flood => candidates.map(|(n, _)| *n).collect(),
            Routing::Filters => {
                let positions = Self::query_positions(words);
                if positions.is_empty() {
                    return Vec::new();
                }
                candidates
                    .filter(|(_, p)| {
                        positions.iter().all(|x| p.filter.contains(x))
                            || (hops >= 2 && positions.iter().all(|x| p.reach.contains(*x)))
                    })
                    .map(|(n, _)| *n)
                    .collect()
            }
        }
    }

    /// Drops peers the origin would send a query to only as intermediates when none of their
    /// peers could be the reason their reach matched and be left to them. A two-hop supernode
    /// `q` can be the reason only if every one of our peers adjacent to `q` has a matching
    /// reach (its filter is in all their reaches); it is left to the smallest of them. Peers
    /// whose own filter matches, or whose peer list is unknown, are always kept.
    fn prune_intermediates(&self, words: &[String], targets: Vec<NodeId>) -> Vec<NodeId> {
        let positions = Self::query_positions(words);
        let filter_match = |p: &Peer| positions.iter().all(|x| p.filter.contains(x));
        let reach_match: HashSet<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| positions.iter().all(|x| p.reach.contains(*x)))
            .map(|(n, _)| *n)
            .collect();
        let mut adjacent: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for (x, peer) in &self.peers {
            for q in &peer.peers {
                if *q != self.me && !self.peers.contains_key(q) {
                    adjacent.entry(*q).or_default().push(*x);
                }
            }
        }
        targets
            .into_iter()
            .filter(|t| {
                let Some(peer) = self.peers.get(t) else {
                    return false;
                };
                if filter_match(peer) || peer.peers.is_empty() {
                    return true;
                }
                peer.peers.iter().any(|q| {
                    adjacent.get(q).is_some_and(|adj| {
                        adj.iter().all(|x| reach_match.contains(x)) && adj.iter().min() == Some(t)
                    })
                })
            })
            .collect()
    }

    fn local_hits(index: &Index, words: &[String], max: u32) -> Vec<Hit> {
        index.search(words, max as usize).unwrap_or_default()
    }

    /// Starts a search from a local leaf; the local index's hits come first.
    pub fn start_query(
        &mut self,
        words: &[String],
        max: u32,
        index: &Index,
        now: Instant,
    ) -> (u64, Vec<Action>) {
        let mut actions = Vec::new();
        // Query ids must not collide across supernodes: hash our id with a counter.
        self.next_id += 1;
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.me.as_bytes());
        hasher.update(&self.next_id.to_le_bytes());
        let digest = hasher.finalize();
        let id = u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        self.seen.insert(id, now + SEEN_FOR);
        let local = Self::local_hits(index, words, max);
        if !local.is_empty() {
            actions.push(Action::Hits(id, local));
        }
        let hops = self.config.hop_limit.min(MAX_HOPS);
        let mut targets = self.targets(words, hops, &[], None);
        if self.config.routing == Routing::Filters && hops >= 2 {
            targets = self.prune_intermediates(words, targets);
        }
        let via: Vec<NodeId> = targets.iter().copied().take(MAX_VIA).collect();
        for &t in &targets {
            let msg = PeerMessage::Query {
                id,
                origin: self.me,
                words: words.to_vec(),
                max_results: max,
                hops_left: hops - 1,
                via: via.clone(),
            };
            self.send(t, msg, &mut actions);
        }
        if targets.is_empty() {
            actions.push(Action::Done(id));
        } else {
            let deadline =
                now + self.config.hop_timeout * u32::from(hops) + self.config.hop_timeout / 2;
            self.relays.insert(
                id,
                Relay {
                    from: None,
                    waiting: targets.into_iter().collect(),
                    deadline,
                },
            );
        }
        (id, actions)
    }

    /// Ends a relayed or local query: `Done` upstream, or to the local caller.
    fn finish(&mut self, id: u64, actions: &mut Vec<Action>) {
        if let Some(relay) = self.relays.remove(&id) {
            match relay.from {
                None => actions.push(Action::Done(id)),
                Some(from) if self.peers.contains_key(&from) => {
                    self.send(from, PeerMessage::Done { id }, actions)
                }
                Some(_) => {}
            }
        }
    }

    /// Handles one message from peer `from`.
    pub fn on_message(
        &mut self,
        from: NodeId,
        msg: PeerMessage,
        index: &Index,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.peers.contains_key(&from) {
            return actions;
        }
        match msg {
            PeerMessage::Supernodes(list) => {
                if list.len() > MAX_GOSSIP {
                    return self.penalize(from, "oversized supernode list", now);
                }
                for provider in list {
                    self.add_host(provider, Duration::ZERO, now);
                }
            }
            PeerMessage::Peers(list) => {
                if list.len() > MAX_PEER_LIST {
                    return self.penalize(from, "oversized peer list", now);
                }
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.peers = list;
                }
            }
            PeerMessage::Filter { reset, add, remove } => {
                if add.len() > MAX_FILTER_PATCH || remove.len() > MAX_FILTER_PATCH {
                    return self.penalize(from, "oversized filter patch", now);
                }
                let Some(peer) = self.peers.get_mut(&from) else {
                    return actions;
                };
                let mut gone: Vec<u32> = Vec::new();
                if reset {
                    gone.extend(peer.filter.drain());
                    if !peer.filter_ready {
                        peer.filter_ready = true;
                        self.peers_dirty = true;
                    }
                }
                gone.extend(remove.iter().copied().filter(|p| peer.filter.remove(p)));
                let fresh: Vec<u32> = add
                    .into_iter()
                    .filter(|p| *p < (1 << crate::filter::FILTER_BITS) && peer.filter.insert(*p))
                    .collect();
                for pos in gone {
                    self.reach_dec(pos);
                }
                for pos in fresh {
                    self.reach_inc(pos);
                }
            }
            PeerMessage::Reach { reset, add, remove } => {
                if add.len() > MAX_FILTER_PATCH || remove.len() > MAX_FILTER_PATCH {
                    return self.penalize(from, "oversized reach patch", now);
                }
                if let Some(peer) = self.peers.get_mut(&from) {
                    if reset {
                        peer.reach.clear();
                    }
                    for pos in remove {
                        peer.reach.set(pos, false);
                    }
                    for pos in add {
                        peer.reach.set(pos, true);
                    }
                }
            }
            PeerMessage::Query {
                id,
                origin,
                words,
                max_results,
                hops_left,
                via,
            } => {
                if via.len() > MAX_VIA {
                    return self.penalize(from, "oversized via list", now);
                }
                let via = (from == origin).then_some(via);
                return self.on_query(
                    from,
                    id,
                    origin,
                    words,
                    max_results,
                    hops_left,
                    via,
                    index,
                    now,
                );
            }
            PeerMessage::Hits { id, mut hits } => {
                if hits.len() > HITS_PER_FRAME {
                    return self.penalize(from, "oversized hits message", now);
                }
                // The peer's own shares carry no IP: it is the peer's.
                if let Some(peer) = self.peers.get(&from) {
                    for p in hits.iter_mut().flat_map(|h| h.providers.iter_mut()) {
                        if p.addr.ip().is_unspecified() {
                            p.addr.set_ip(peer.addr.ip());
                        }
                    }
                }
                let Some(relay) = self.relays.get(&id) else {
                    return actions;
                };
                if !relay.waiting.contains(&from) {
                    return actions;
                }
                match relay.from {
                    None => actions.push(Action::Hits(id, hits)),
                    Some(up) => self.send(up, PeerMessage::Hits { id, hits }, &mut actions),
                }
            }
            PeerMessage::Load {
                leaves,
                max_leaves,
                demotable,
            } => {
                if leaves > max_leaves || max_leaves as usize > MAX_LEAVES_PER_SUPERNODE {
                    return self.penalize(from, "implausible load", now);
                }
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.load = Some(Load {
                        leaves,
                        max_leaves,
                        demotable,
                    });
                }
            }
            PeerMessage::Done { id } => {
                let empty = self
                    .relays
                    .get_mut(&id)
                    .is_some_and(|r| r.waiting.remove(&from) && r.waiting.is_empty());
                if empty {
                    self.finish(id, &mut actions);
                }
            }
        }
        actions
    }

    #[allow(clippy::too_many_arguments)]
    fn on_query(
        &mut self,
        from: NodeId,
        id: u64,
        origin: NodeId,
        words: Vec<String>,
        max_results: u32,
        hops_left: u8,
        via: Option<Vec<NodeId>>,
        index: &Index,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let rate = self.config.peer_query_rate;
        let Some(peer) = self.peers.get_mut(&from) else {
            return actions;
        };
        let elapsed = now
            .saturating_duration_since(peer.bucket.last)
            .as_secs_f64();
        peer.bucket.tokens = (peer.bucket.tokens + elapsed * rate).min(2.0 * rate);
        peer.bucket.last = now;
        if peer.bucket.tokens < 1.0 {
            return self.penalize(from, "query flood", now);
        }
        peer.bucket.tokens -= 1.0;
        let bytes: usize = words.iter().map(String::len).sum();
        if hops_left > MAX_HOPS || words.len() > MAX_QUERY_WORDS || bytes > MAX_QUERY_LEN {
            return self.penalize(from, "query out of bounds", now);
        }
        if self.seen.contains_key(&id) || self.relays.len() >= self.config.max_queries {
            self.send(from, PeerMessage::Done { id }, &mut actions);
            return actions;
        }
        self.seen.insert(id, now + SEEN_FOR);
        let hits = Self::local_hits(index, &words, max_results);
        for chunk in hits.chunks(HITS_PER_FRAME) {
            self.send(
                from,
                PeerMessage::Hits {
                    id,
                    hits: chunk.to_vec(),
                },
                &mut actions,
            );
        }
        let targets = self.targets(&words, hops_left, &[from, origin], via.as_deref());
        for &t in &targets {
            let msg = PeerMessage::Query {
                id,
                origin,
                words: words.clone(),
                max_results,
                hops_left: hops_left - 1,
                via: Vec::new(),
            };
            self.send(t, msg, &mut actions);
        }
        if targets.is_empty() {
            self.send(from, PeerMessage::Done { id }, &mut actions);
        } else {
            let deadline = now + self.config.hop_timeout * u32::from(hops_left);
            self.relays.insert(
                id,
                Relay {
                    from: Some(from),
                    waiting: targets.into_iter().collect(),
                    deadline,
                },
            );
        }
        actions
    }

    /// Periodic work: time-outs, filter patches, dials.
    pub fn tick(&mut self, index: &mut Index, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let expired: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish(id, &mut actions);
        }
        self.seen.retain(|_, until| *until > now);
        self.penalties.retain(|_, until| *until > now);
        let max_age = self.config.host_max_age;
        let peers = &self.peers;
        self.hosts.retain(|n, h| {
            peers.contains_key(n) || now.saturating_duration_since(h.last_seen) < max_age
        });
        let patch = index.take_filter_patch();
        let reach_add = std::mem::take(&mut self.reach_add);
        let reach_remove = std::mem::take(&mut self.reach_remove);
        let reach_add: Vec<u32> = reach_add
            .into_iter()
            .filter(|p| self.reach_counts[*p as usize] > 0)
            .collect();
        let reach_remove: Vec<u32> = reach_remove
            .into_iter()
            .filter(|p| self.reach_counts[*p as usize] == 0)
            .collect();
        let peer_ids: Vec<NodeId> = self.peers.keys().copied().collect();
        if !self.load_sent {
            self.load_sent = true;
            let load = self.load_message();
            for &peer in &peer_ids {
                self.send(peer, load.clone(), &mut actions);
            }
        }
        for &peer in &peer_ids {
            for (add, remove) in chunk_patch(&patch.add, &patch.remove) {
                self.send(
                    peer,
                    PeerMessage::Filter {
                        reset: false,
                        add,
                        remove,
                    },
                    &mut actions,
                );
            }
            for (add, remove) in chunk_patch(&reach_add, &reach_remove) {
                self.send(
                    peer,
                    PeerMessage::Reach {
                        reset: false,
                        add,
                        remove,
                    },
                    &mut actions,
                );
            }
        }
        if self.peers.len() > self.config.max_peers {
            // Over max_peers through incoming peerings: drop one peer that is over it too,
            // the best connected first, so both keep at least max_peers.
            let max = self.config.max_peers;
            let shed = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.peers.len() > max && now.saturating_duration_since(p.since) >= SHED_AFTER
                })
                .max_by_key(|(n, p)| (p.peers.len(), **n))
                .map(|(n, _)| *n);
            if let Some(node) = shed {
                actions.push(Action::Shed(node));
                actions.extend(self.on_peer_down(&node, now));
            }
        }
        if std::mem::take(&mut self.peers_dirty) {
            let ids = self.peer_ids();
            for &peer in &peer_ids {
                self.send(peer, PeerMessage::Peers(ids.clone()), &mut actions);
            }
        }
        if self.peers.len() + self.dialing.len() < self.config.max_peers {
            let room = (self.config.max_peers - self.peers.len() - self.dialing.len())
                .min(self.config.max_dials.saturating_sub(self.dialing.len()));
            let mut candidates: Vec<(NodeId, SocketAddr, Instant)> = self
                .hosts
                .iter()
                .filter(|(n, h)| {
                    !self.peers.contains_key(*n)
                        && !self.dialing.contains(*n)
                        && h.next_dial <= now
                        && self.penalties.get(*n).is_none_or(|u| *u <= now)
                })
                .map(|(n, h)| (*n, h.addr, h.last_seen))
                .collect();
            candidates.sort_by_key(|(n, _, seen)| (std::cmp::Reverse(*seen), *n));
            for (node, addr, _) in candidates.into_iter().take(room) {
                self.dialing.insert(node);
                if let Some(host) = self.hosts.get_mut(&node) {
                    host.next_dial = now + self.config.dial_backoff;
                }
                actions.push(Action::Dial(Provider { node, addr }));
            }
        }
        actions
    }
}

/// Splits a patch into messages of at most `MAX_FILTER_PATCH` positions per list.
fn chunk_patch(add: &[u32], remove: &[u32]) -> Vec<(Vec<u32>, Vec<u32>)> {
    let n = add
        .len()
        .div_ceil(MAX_FILTER_PATCH)
        .max(remove.len().div_ceil(MAX_FILTER_PATCH));
    (0..n)
        .map(|i| {
            let part = |v: &[u32]| {
                v.iter()
                    .skip(i * MAX_FILTER_PATCH)
                    .take(MAX_FILTER_PATCH)
                    .copied()
                    .collect()
            };
            (part(add), part(remove))
        })
        .collect()
}

#[cfg(test)]
mod tests;
