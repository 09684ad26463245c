//! The leaf-facing supernode service: admission of leaves (bounded by `max_leaves`) and the
//! answers to `Register`, `Unregister`, `Search` and `Lookup`.
//!
//! It is plain state (the runtime holds it under one lock): the node runtime calls [`Supernode::admit`] when a
//! joining `Hello` arrives, [`Supernode::answer`] for each request, and
//! [`Supernode::depart`] when the connection ends.
//!
//! One session per leaf: a leaf that joins again replaces its older session (whose key then
//! answers [`ErrorCode::UnknownLeaf`]; the runtime closes its connection), and only the
//! current session's end removes the leaf. A leaf that leaves is detached at once and its
//! entries are drained in steps of [`DRAIN_STEP`] ([`Supernode::drain_step`]), so the lock is
//! never held for long whatever a leaf shared.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::index::Budget;

use kazoo_common::config::SupernodeConfig;
use kazoo_common::wire::{
    ErrorCode, Hit, PeerMessage, Provider, Request, Response, ShareEntry, HITS_PER_FRAME,
    MAX_BATCH, MAX_HOPS, MAX_QUERY_LEN, MAX_QUERY_WORDS, MAX_REPORTED,
};
use kazoo_common::{ContentId, NodeId};

use crate::election::growth::Growth;
use crate::election::succession::{rank_heirs, Candidate};
use crate::election::{self, DemotePolicy, Demotion};
use crate::index::{Index, IndexError, LeafKey};
use crate::overlay::{Action, Load, Overlay, OverlayConfig};
use crate::reports::Reports;

/// Entries of departed leaves removed per [`Supernode::drain_step`] (a few milliseconds of
/// work under the lock at most).
pub const DRAIN_STEP: usize = 512;
/// Pause between drain steps, so requests waiting for the lock go first (a 100,000-entry
/// leaf drains in about a second).
pub const DRAIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Outcome of a leaf asking to join.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Joined; use this key for its requests and its departure.
    Admitted(LeafKey),
    /// No room; the reason is sent to the leaf.
    Full(String),
}

#[derive(Clone, Copy)]
struct Joined {
    key: LeafKey,
    capacity: u32,
    /// When it joined (heirs of equal capacity: the longest attached first).
    since: Instant,
    /// The listen address that answered a dial from this supernode (an heir must be
    /// reachable there; none yet: not an heir).
    reachable_at: Option<SocketAddr>,
    /// The IP it connects from (for `max_leaves_per_ip`).
    ip: std::net::IpAddr,
}

/// Why a relay is refused ([`Supernode::relay_route`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayRefusal {
    /// The error code to answer with.
    pub code: ErrorCode,
    /// Why, for the asker.
    pub message: &'static str,
}

impl RelayRefusal {
    /// The answer to send.
    pub fn response(self) -> Response {
        Response::error(self.code, self.message)
    }
}

/// The next hop of a relay circuit ([`Supernode::relay_route`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayHop {
    /// The target is this supernode's leaf: ask it with `Notice::Relay`.
    Leaf(NodeId),
    /// Pass the relay on to this peer, where the target's hits came from.
    Peer(NodeId),
}

/// One supernode's state: its index, its leaves, its place in the overlay and its part in
/// the election. Plain state: the runtime holds it under one lock and passes time in.
pub struct Supernode {
    node_id: NodeId,
    config: SupernodeConfig,
    index: Index,
    overlay: Overlay,
    /// Every joined leaf: its current key (a re-joining node replaces its old key), address
    /// and advertised capacity (> 0: eligible to become a supernode).
    leaves: HashMap<NodeId, Joined>,
    /// This node's own shares, indexed like a leaf's.
    own: LeafKey,
    /// Set for an `auto` supernode: when it counts as under-used and may demote.
    demote: Option<DemotePolicy>,
    /// Since when a demotion plan has existed without a break.
    underused_since: Option<Instant>,
    /// Set when it demotes: where leaves that still arrive are sent.
    retired: Option<Vec<Provider>>,
    /// Growth: when it last asked a leaf to promote, and whom (see [`Growth`]).
    growth: Growth,
    /// Unreachable-source reports (see [`crate::reports`]).
    reports: Reports,
}

/// A joined leaf as `kazoo status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafView {
    /// Its node id.
    pub node: NodeId,
    /// Where its files are listed (where it answered the dial back, else its observed
    /// address).
    pub addr: SocketAddr,
    /// Whether its listen address answered this supernode's dial back.
    pub reachable: bool,
    /// When its current session began.
    pub since: Instant,
    /// Index entries it has registered.
    pub entries: usize,
}

/// Counts shown by `kazoo status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupernodeStats {
    /// Joined leaves.
    pub leaves: usize,
    /// Peer supernodes.
    pub peers: usize,
    /// Known supernodes (host cache).
    pub known: usize,
    /// Index entries (leaf, file), own shares included.
    pub entries: usize,
    /// Distinct files.
    pub files: usize,
}

impl Supernode {
    /// A supernode whose own shares are served from port `own_port` of its address.
    pub fn new(
        node_id: NodeId,
        config: SupernodeConfig,
        own_port: u16,
        overlay: OverlayConfig,
    ) -> Self {
        let mut index = Index::new();
        index.set_budget(Budget {
            max_entries: config.max_index_entries,
            max_bytes: config.max_index_mib << 20,
        });
        let own_addr = SocketAddr::from(([0, 0, 0, 0], own_port));
        let own = index.add_leaf(node_id, own_addr);
        index.set_verified(own, own_addr);
        let mut sn = Supernode {
            node_id,
            config,
            index,
            overlay: Overlay::new(node_id, overlay),
            leaves: HashMap::new(),
            own,
            demote: None,
            underused_since: None,
            retired: None,
            growth: Growth::default(),
            reports: Reports::new(),
        };
        sn.refresh_load();
        sn
    }

    /// Tells the overlay (and so the peers) the current load.
    fn refresh_load(&mut self) {
        let load = Load {
            leaves: self.leaves.len() as u32,
            max_leaves: self.config.max_leaves as u32,
            demotable: self.demote.is_some_and(|p| p.below_pct > 0),
        };
        self.overlay.set_load(load);
    }

    /// Lets this (`auto`) supernode demote when under-used, as `policy` says.
    pub fn set_demote_policy(&mut self, policy: DemotePolicy) {
        self.demote = Some(policy);
        self.refresh_load();
    }

    /// Whether to demote now: a plan (see [`election::plan_demotion`]) must have existed at
    /// every check for the policy's `after`, so loads have long been exchanged and two
    /// neighbours cannot both think they have the fewest leaves. A returned plan retires
    /// this supernode (see [`Supernode::is_retired`]).
    pub fn demotion(&mut self, now: Instant) -> Option<Demotion> {
        let policy = self.demote?;
        let mine = Load {
            leaves: self.leaves.len() as u32,
            max_leaves: self.config.max_leaves as u32,
            demotable: policy.below_pct > 0,
        };
        // Sorted: the plan (and so a simulated run) does not depend on hash order.
        let mut leaves: Vec<NodeId> = self.leaves.keys().copied().collect();
        leaves.sort();
        let peers = self.overlay.peers_with_load();
        let Some(plan) = election::plan_demotion(self.node_id, mine, &leaves, &peers, policy)
        else {
            self.underused_since = None;
            return None;
        };
        let since = *self.underused_since.get_or_insert(now);
        if now.saturating_duration_since(since) < policy.after {
            return None;
        }
        // Retired under the same lock that listed the leaves: a leaf admitted from here on
        // is refused, none slips in between the plan and the demotion.
        self.retired = Some(plan.supernodes.clone());
        Some(plan)
    }

    /// A peering with `node` came up.
    pub fn peer_up(&mut self, node: NodeId, addr: SocketAddr, now: Instant) -> Vec<Action> {
        self.overlay.on_peer_up(node, addr, &self.index, now)
    }

    /// A peering ended.
    pub fn peer_down(&mut self, node: &NodeId, now: Instant) -> Vec<Action> {
        self.overlay.on_peer_down(node, now)
    }

    /// A message from a peer.
    pub fn peer_message(&mut self, from: NodeId, msg: PeerMessage, now: Instant) -> Vec<Action> {
        match msg {
            PeerMessage::Connect {
                target,
                requester,
                hops_left,
            } => self.on_connect(from, target, requester, hops_left, now),
            msg => self.overlay.on_message(from, msg, &self.index, now),
        }
    }

    /// Joined leaf `requester`, whose connection comes from `seen_at`, asks for a reverse
    /// connection from `target` (`Request::Connect`): its own leaf is asked directly; else
    /// the peer `target`'s hits came from is. The answer, and the actions to carry out.
    pub fn connect(
        &mut self,
        requester: NodeId,
        seen_at: SocketAddr,
        target: NodeId,
        now: Instant,
    ) -> (Response, Vec<Action>) {
        let to = Provider::new(requester, seen_at);
        if target == requester {
            let refusal = Response::error(ErrorCode::BadRequest, "a node cannot connect to itself");
            return (refusal, Vec::new());
        }
        if let Some(listed) = self.listed_leaf(&target) {
            let answer = Response::Connecting {
                target: listed,
                requester: to,
            };
            return (answer, vec![Action::Connect { leaf: target, to }]);
        }
        match self.overlay.route_to(&target, now) {
            Some((peer, addr)) => {
                let msg = PeerMessage::Connect {
                    target,
                    requester: to,
                    hops_left: MAX_HOPS,
                };
                let answer = Response::Connecting {
                    target: Provider::new(target, addr),
                    requester: to,
                };
                (answer, vec![Action::Send(peer, msg)])
            }
            _ => (
                Response::error(ErrorCode::NotFound, "no way to that source is known here"),
                Vec::new(),
            ),
        }
    }

    /// Where a relay from `requester` to `target` goes (see the wire spec, "Relay"): this
    /// supernode's own leaf, or — for a request from a local leaf (`via_peer` `None`) — the
    /// peer the target's hits came from. A relay passed on by peer `via_peer` costs it a
    /// query token and must end here, so a circuit crosses at most one link between
    /// supernodes. `Err`: the refusal to send.
    pub fn relay_route(
        &mut self,
        requester: NodeId,
        target: NodeId,
        via_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<RelayHop, RelayRefusal> {
        if let Some(peer) = via_peer {
            if !self.overlay.take_query_token(peer, now) {
                return Err(RelayRefusal {
                    code: ErrorCode::Busy,
                    message: "query rate exceeded; slow down",
                });
            }
        }
        if target == requester {
            return Err(RelayRefusal {
                code: ErrorCode::BadRequest,
                message: "a node cannot relay to itself",
            });
        }
        if self.listed_leaf(&target).is_some() {
            return Ok(RelayHop::Leaf(target));
        }
        match self.overlay.route_to(&target, now) {
            Some((peer, _)) if via_peer.is_none() && peer != requester => Ok(RelayHop::Peer(peer)),
            _ => Err(RelayRefusal {
                code: ErrorCode::NotFound,
                message: "no way to that source is known here",
            }),
        }
    }

    /// Whether peer `peer` may have this supernode dial one of its leaves back
    /// (`Request::DialBack`): each costs it a query token, like a query.
    pub fn admit_dial_back(&mut self, peer: NodeId, now: Instant) -> bool {
        self.overlay.is_peer(&peer) && self.overlay.take_query_token(peer, now)
    }

    /// A peer's `Connect`: checked (see [`Overlay::check_connect`]), then passed to our
    /// leaf, or on towards where the target's hits came from while hops are left.
    fn on_connect(
        &mut self,
        from: NodeId,
        target: NodeId,
        requester: Provider,
        hops_left: u8,
        now: Instant,
    ) -> Vec<Action> {
        if let Err(actions) = self.overlay.check_connect(from, &requester, hops_left, now) {
            return actions;
        }
        if self.listed_leaf(&target).is_some() {
            return vec![Action::Connect {
                leaf: target,
                to: requester,
            }];
        }
        match self.overlay.route_to(&target, now) {
            Some((peer, _)) if hops_left > 0 && peer != from => {
                let msg = PeerMessage::Connect {
                    target,
                    requester,
                    hops_left: hops_left - 1,
                };
                vec![Action::Send(peer, msg)]
            }
            _ => Vec::new(),
        }
    }

    /// A joined leaf (not this node), at the address its entries are listed at.
    fn listed_leaf(&self, node: &NodeId) -> Option<Provider> {
        let joined = self.leaves.get(node)?;
        self.index
            .leaf_addr(joined.key)
            .map(|addr| Provider::new(*node, addr))
    }

    /// Where node `node` can be reached, as far as this supernode knows: its own leaf where
    /// it is listed, a peer supernode, or a source whose hits came through a peer (at the
    /// address the hits gave).
    pub fn locate(&self, node: &NodeId, now: Instant) -> Option<Provider> {
        if let Some(listed) = self.listed_leaf(node) {
            return Some(listed);
        }
        if let Some(peer) = self.overlay.peers().into_iter().find(|p| p.node == *node) {
            return Some(Provider::new(peer.node, peer.addr));
        }
        self.overlay
            .route_to(node, now)
            .map(|(_, addr)| Provider::new(*node, addr))
    }

    /// Starts a routed search for a local leaf (or this node).
    pub fn start_query(&mut self, words: &[String], max: u32, now: Instant) -> (u64, Vec<Action>) {
        self.overlay.start_query(words, max, &self.index, now)
    }

    /// Periodic overlay work.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.overlay.tick(&mut self.index, now)
    }

    /// The overlay (peers, hosts, loads).
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The overlay, to record dial outcomes, penalties and hosts.
    pub fn overlay_mut(&mut self) -> &mut Overlay {
        &mut self.overlay
    }

    /// This supernode's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Whether this supernode has retired (a demotion plan was returned): it takes no more
    /// leaves or peers.
    pub fn is_retired(&self) -> bool {
        self.retired.is_some()
    }

    /// Where leaves go if this supernode has retired (demoted).
    pub fn retired_to(&self) -> Option<Vec<Provider>> {
        self.retired.clone()
    }

    /// Where a leaf this supernode cannot take should go: its retirement targets, or up to
    /// `max` peers with room.
    pub fn redirect_list(&self, max: usize) -> Vec<Provider> {
        match self.retired_to() {
            Some(mut to) => {
                to.truncate(max);
                to
            }
            None => self.providers_with_room(max, None),
        }
    }

    /// Admits a leaf connecting from `addr` at `now` with `capacity` (> 0: eligible to
    /// succeed this supernode) unless `max_leaves` are already joined, `max_leaves_per_ip`
    /// are joined from its IP, or this supernode has retired. A leaf already joined is
    /// admitted again (unless it now comes from another IP that is at its limit): the new
    /// session replaces the old one (see the module doc).
    pub fn admit(
        &mut self,
        node: NodeId,
        addr: SocketAddr,
        capacity: u32,
        now: Instant,
    ) -> Admission {
        if self.retired.is_some() {
            return Admission::Full(format!("supernode {} is demoting", self.node_id.short()));
        }
        let old = self.leaves.get(&node).map(|j| j.key);
        if old.is_none() && self.leaves.len() >= self.config.max_leaves {
            return Admission::Full(format!(
                "supernode {} is full ({} leaves)",
                self.node_id.short(),
                self.config.max_leaves
            ));
        }
        // A re-joining leaf counts against its new IP too (its old session is not counted):
        // otherwise re-joining from another address would carry any number of leaves past
        // that address's limit.
        let from_ip = self
            .leaves
            .iter()
            .filter(|(n, j)| **n != node && j.ip == addr.ip())
            .count();
        if from_ip >= self.config.max_leaves_per_ip {
            return Admission::Full(format!(
                "supernode {} has {from_ip} leaves from {} already",
                self.node_id.short(),
                addr.ip()
            ));
        }
        if let Some(old) = old {
            self.index.detach_leaf(old);
        }
        // Reports of it were about a session that is over.
        self.reports.forget_provider(&node);
        let key = self.index.add_leaf(node, addr);
        self.leaves.insert(
            node,
            Joined {
                key,
                capacity,
                since: now,
                reachable_at: None,
                ip: addr.ip(),
            },
        );
        self.refresh_load();
        Admission::Admitted(key)
    }

    /// Up to `max` of this supernode's peers with room, most room first, whose peering has
    /// lasted [`crate::timing::PEER_TENURE`] at `now`: the supernodes a succession notice
    /// names.
    pub fn peer_providers(&self, max: usize, now: Instant) -> Vec<Provider> {
        match now.checked_sub(crate::timing::PEER_TENURE) {
            Some(up_by) => self.providers_with_room(max, Some(up_by)),
            None => Vec::new(),
        }
    }

    /// Up to `max` peers with room (see [`Overlay::peers_with_room`]).
    fn providers_with_room(&self, max: usize, up_by: Option<Instant>) -> Vec<Provider> {
        self.overlay
            .peers_with_room(max, up_by)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// Records that joined leaf `node` (under `key`) answered a dial at `addr`, its listen
    /// address: it may be an heir, and that is where the others will find it.
    /// Its entries are then listed before those of leaves whose address never answered.
    pub fn set_reachable(&mut self, node: NodeId, key: LeafKey, addr: SocketAddr) {
        if let Some(joined) = self.leaves.get_mut(&node) {
            if joined.key == key {
                joined.reachable_at = Some(addr);
                self.index.set_verified(key, addr);
            }
        }
    }

    /// Leaf `node`'s session `key` did not answer a dial back: its entries are listed at
    /// `observed`, the address its connection comes from (behind a NAT, the mapping of its
    /// listening socket — the address a reverse connection or a hole punch aims at).
    pub fn set_unreachable(&mut self, node: NodeId, key: LeafKey, observed: SocketAddr) {
        if self
            .leaves
            .get(&node)
            .is_some_and(|joined| joined.key == key)
        {
            self.index.set_address(key, observed);
        }
    }

    /// The succession list at `now` (see [`election::succession`]): at most `max` heirs,
    /// best first.
    pub fn succession(&self, max: usize, now: Instant) -> Vec<Provider> {
        let candidates = self.leaves.iter().map(|(node, j)| Candidate {
            node: *node,
            capacity: j.capacity,
            since: j.since,
            reachable_at: j.reachable_at,
        });
        rank_heirs(candidates, max, now)
    }

    /// Growth: whether to ask a leaf to promote now, this supernode being full — the best
    /// heir and the reason to tell it (at most one request per
    /// [`crate::timing::PROMOTE_EVERY`]). Report a request that went out with
    /// [`Self::promotion_asked`].
    pub fn promotion_request(&mut self, now: Instant) -> Option<(NodeId, String)> {
        if !self.growth.may_ask(now) {
            return None;
        }
        let best = self.succession(1, now).into_iter().next()?;
        Some((
            best.node,
            format!("supernode {} is full", self.node_id.short()),
        ))
    }

    /// The promote request of [`Self::promotion_request`] reached `leaf` at `now`.
    pub fn promotion_asked(&mut self, leaf: NodeId, now: Instant) {
        self.growth.asked(leaf, now);
    }

    /// A peering with `peer` came up at `now`: if it is the leaf this supernode asked to
    /// promote (within [`crate::timing::HANDOVER_WINDOW`]), half of its leaves move to it —
    /// the leaves to redirect and why.
    pub fn handover_on_peering(
        &mut self,
        peer: NodeId,
        now: Instant,
    ) -> Option<(Vec<NodeId>, String)> {
        if !self.growth.peered(peer, now) {
            return None;
        }
        let leaves: Vec<(NodeId, u32)> =
            self.leaves.iter().map(|(n, j)| (*n, j.capacity)).collect();
        let moved = election::pick_handover(&leaves, peer, self.leaves.len() / 2);
        let reason = format!(
            "supernode {} was full; handed over to new supernode {}",
            self.node_id.short(),
            peer.short()
        );
        Some((moved, reason))
    }

    /// Forgets a leaf whose session `key` ended (a replaced session's end changes nothing);
    /// returns how many entries it had. They leave the index in [`Self::drain_step`]s.
    pub fn depart(&mut self, node: NodeId, key: LeafKey) -> usize {
        if self.leaves.get(&node).map(|j| j.key) != Some(key) {
            return 0;
        }
        self.leaves.remove(&node);
        self.refresh_load();
        self.index.detach_leaf(key)
    }

    /// The current session of a joined leaf.
    pub fn session(&self, node: &NodeId) -> Option<LeafKey> {
        self.leaves.get(node).map(|j| j.key)
    }

    /// Drains up to [`DRAIN_STEP`] entries of departed (or replaced) leaves; returns whether
    /// more are left. The runtime calls it until it returns false, [`DRAIN_PAUSE`] apart.
    pub fn drain_step(&mut self) -> bool {
        self.index.drain(DRAIN_STEP)
    }

    /// Replaces this node's own share list in its index.
    pub fn set_own_shares(&mut self, added: &[ShareEntry], removed: &[ContentId]) {
        let own = self.own;
        // Own shares are bounded by the share scanner, not by the per-leaf limit.
        let _ = self.index.register(own, added, usize::MAX);
        let _ = self.index.unregister(own, removed);
    }

    /// Current counts.
    pub fn stats(&self) -> SupernodeStats {
        SupernodeStats {
            leaves: self.leaves.len(),
            peers: self.overlay.peer_count(),
            known: self.overlay.host_count(),
            entries: self.index.entry_count(),
            files: self.index.file_count(),
        }
    }

    /// The joined leaves, by node id.
    pub fn leaf_list(&self) -> Vec<LeafView> {
        let mut list: Vec<LeafView> = self
            .leaves
            .iter()
            .filter_map(|(node, joined)| {
                Some(LeafView {
                    node: *node,
                    addr: self.index.leaf_addr(joined.key)?,
                    reachable: joined.reachable_at.is_some(),
                    since: joined.since,
                    entries: self.index.leaf_entries(joined.key),
                })
            })
            .collect();
        list.sort_by_key(|l| l.node);
        list
    }

    /// Accounted bytes of the index (see [`crate::index::Budget`]).
    pub fn accounted_bytes(&self) -> usize {
        self.index.accounted_bytes()
    }

    /// Searches this supernode's index (see [`Index::search`]).
    pub fn search(&self, words: &[String], max: usize) -> Result<Vec<Hit>, IndexError> {
        self.index.search(words, max)
    }

    /// Answers one request from joined leaf `key` from this supernode's own index: the frames
    /// to send back, in order. (The node runtime routes `Search` through the overlay instead.)
    pub fn answer(&mut self, key: LeafKey, request: &Request) -> Vec<Response> {
        match request {
            Request::Register { entries } => {
                if entries.len() > MAX_BATCH {
                    return vec![Response::error(
                        ErrorCode::BadRequest,
                        format!("batch of {} entries exceeds {MAX_BATCH}", entries.len()),
                    )];
                }
                let limit = self.config.max_entries_per_leaf;
                vec![registered(self.index.register(key, entries, limit))]
            }
            Request::Unregister { ids } => {
                if ids.len() > MAX_BATCH {
                    return vec![Response::error(
                        ErrorCode::BadRequest,
                        format!("batch of {} ids exceeds {MAX_BATCH}", ids.len()),
                    )];
                }
                vec![registered(self.index.unregister(key, ids))]
            }
            Request::Search { words, max_results } => {
                if let Err(e) = check_query(words) {
                    return vec![Response::error(ErrorCode::BadRequest, e)];
                }
                match self.search(words, *max_results as usize) {
                    Ok(hits) => {
                        let mut frames: Vec<Response> = hits
                            .chunks(HITS_PER_FRAME)
                            .map(|c| Response::Hits(c.to_vec()))
                            .collect();
                        frames.push(Response::End);
                        frames
                    }
                    Err(e) => vec![Response::error(ErrorCode::BadRequest, e.to_string())],
                }
            }
            Request::Lookup { id } => vec![Response::Providers(self.index.providers(id))],
            Request::ReportUnreachable { .. } => vec![Response::error(
                ErrorCode::Internal,
                "reports need the reporter's node id (Supernode::answer_from)",
            )],
            Request::Connect { .. } => vec![Response::error(
                ErrorCode::Internal,
                "reverse connections need the requester's address (Supernode::connect)",
            )],
            Request::Relay { .. } | Request::RelayAccept { .. } => vec![Response::error(
                ErrorCode::Internal,
                "relays are streams the runtime joins (Supernode::relay_route)",
            )],
            Request::GetManifest { .. }
            | Request::GetPiece { .. }
            | Request::Browse { .. }
            | Request::DialBack { .. } => {
                vec![Response::error(
                    ErrorCode::BadRequest,
                    "not an index request",
                )]
            }
        }
    }

    /// [`Supernode::answer`] for joined leaf `node`: also takes its `ReportUnreachable`, and
    /// ranks the providers of its `Lookup` for it (see [`crate::reports`]).
    pub fn answer_from(
        &mut self,
        node: NodeId,
        key: LeafKey,
        request: &Request,
        now: Instant,
    ) -> Vec<Response> {
        if let Request::ReportUnreachable { nodes } = request {
            if nodes.len() > MAX_REPORTED {
                return vec![Response::error(
                    ErrorCode::BadRequest,
                    format!("report of {} nodes exceeds {MAX_REPORTED}", nodes.len()),
                )];
            }
            self.report_unreachable(node, nodes, now);
            return vec![Response::Registered { total: 0 }];
        }
        let mut frames = self.answer(key, request);
        for frame in &mut frames {
            if let Response::Providers(providers) = frame {
                self.reports.rank(&node, providers, now);
            }
        }
        frames
    }

    /// `reporter` could not reach `nodes` (see [`crate::reports`]).
    pub fn report_unreachable(&mut self, reporter: NodeId, nodes: &[NodeId], now: Instant) {
        let recorded = self.reports.report(reporter, nodes, now);
        tracing::info!(reporter = %reporter.short(), reported = nodes.len(), recorded, "sources reported unreachable");
    }

    /// Ranks the providers of `hits` for `asker`: those it reported unreachable are left
    /// out, those several leaves reported go last (see [`crate::reports`]).
    pub fn rank_hits(&self, asker: NodeId, hits: &mut [Hit], now: Instant) {
        let reports = &self.reports;
        for hit in hits {
            reports.rank(&asker, &mut hit.providers, now);
        }
    }
}

/// Checks a query's bounds and that it parses with a word to search for (see
/// [`crate::query::Query::parse`]).
pub fn check_query(words: &[String]) -> Result<(), String> {
    let bytes: usize = words.iter().map(String::len).sum();
    if words.len() > MAX_QUERY_WORDS || bytes > MAX_QUERY_LEN {
        return Err(format!(
            "query exceeds {MAX_QUERY_WORDS} words or {MAX_QUERY_LEN} bytes"
        ));
    }
    crate::query::Query::parse(words)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Merges results from several supernodes (see [`crate::hits::merge_results`]), ranked by
/// sources, then name; the other names of each file are dropped.
pub fn merge_hits(hits: Vec<Hit>) -> Vec<Hit> {
    crate::hits::merge_results(None, hits)
        .into_iter()
        .map(|found| found.hit)
        .collect()
}

fn registered(result: Result<usize, IndexError>) -> Response {
    match result {
        Ok(total) => Response::Registered {
            total: total as u64,
        },
        Err(e) => {
            let code = match e {
                IndexError::TooManyEntries { .. } => ErrorCode::TooManyEntries,
                IndexError::NameTooLong(_) => ErrorCode::NameTooLong,
                IndexError::UnknownLeaf => ErrorCode::UnknownLeaf,
                IndexError::IndexFull { .. } => ErrorCode::IndexFull,
                _ => ErrorCode::BadRequest,
            };
            Response::error(code, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kazoo_common::wire::MAX_PROVIDERS;

    fn sn(max_leaves: usize) -> Supernode {
        let config = SupernodeConfig {
            max_leaves,
            ..Default::default()
        };
        Supernode::new(NodeId([0; 32]), config, 4710, OverlayConfig::default())
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn admission_is_bounded_and_rejoin_replaces() {
        let mut sn = sn(2);
        let Admission::Admitted(a) = sn.admit(NodeId([1; 32]), addr(), 0, Instant::now()) else {
            panic!("first leaf refused");
        };
        assert!(matches!(
            sn.admit(NodeId([2; 32]), addr(), 0, Instant::now()),
            Admission::Admitted(_)
        ));
        assert!(matches!(
            sn.admit(NodeId([3; 32]), addr(), 0, Instant::now()),
            Admission::Full(_)
        ));
        let Admission::Admitted(a2) = sn.admit(NodeId([1; 32]), addr(), 0, Instant::now()) else {
            panic!("re-join refused");
        };
        assert_eq!(
            sn.depart(NodeId([1; 32]), a),
            0,
            "stale key must not evict the new one"
        );
        assert_eq!(sn.stats().leaves, 2);
        sn.depart(NodeId([1; 32]), a2);
        assert_eq!(sn.stats().leaves, 1);
    }

    #[test]
    fn rejoining_from_another_ip_respects_that_ips_limit() {
        let config = SupernodeConfig {
            max_leaves: 3,
            max_leaves_per_ip: 1,
            ..Default::default()
        };
        let mut sn = Supernode::new(NodeId([0; 32]), config, 4710, OverlayConfig::default());
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let now = Instant::now();
        assert!(matches!(
            sn.admit(NodeId([1; 32]), a, 0, now),
            Admission::Admitted(_)
        ));
        assert!(matches!(
            sn.admit(NodeId([2; 32]), b, 0, now),
            Admission::Admitted(_)
        ));
        // Leaf 1 moving to b would make two leaves from b.
        assert!(matches!(
            sn.admit(NodeId([1; 32]), b, 0, now),
            Admission::Full(_)
        ));
        // Re-joining from its own IP is still fine, and a freed IP takes it.
        assert!(matches!(
            sn.admit(NodeId([1; 32]), a, 0, now),
            Admission::Admitted(_)
        ));
        assert!(matches!(
            sn.admit(NodeId([3; 32]), b, 0, now),
            Admission::Full(_)
        ));
    }

    #[test]
    fn merging_dedups_and_caps_each_answers_providers_and_recounts_sources() {
        let provider = |n: u8| Provider::new(NodeId([n; 32]), addr());
        let hit = |sources, providers: Vec<Provider>| Hit {
            id: ContentId([9; 32]),
            size: 1,
            name: "x".into(),
            sources,
            providers,
        };
        // One answer alone: its duplicate and excess providers go.
        let mut listed = vec![provider(1), provider(1)];
        listed.extend((0..=MAX_PROVIDERS as u8).map(provider));
        let merged = merge_hits(vec![hit(u32::MAX, listed), hit(5, vec![provider(2)])]);
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].sources, MAX_PROVIDERS as u32,
            "claimed counts are not believed"
        );
        assert_eq!(merged[0].providers.len(), MAX_PROVIDERS);
        let mut nodes: Vec<NodeId> = merged[0].providers.iter().map(|p| p.node).collect();
        nodes.dedup();
        assert_eq!(nodes.len(), MAX_PROVIDERS);
    }

    #[test]
    fn search_streams_hits_then_end_and_own_shares_count() {
        let mut sn = sn(5);
        let Admission::Admitted(key) = sn.admit(NodeId([1; 32]), addr(), 0, Instant::now()) else {
            panic!("refused");
        };
        let id = ContentId([5; 32]);
        sn.set_own_shares(
            &[ShareEntry {
                id,
                size: 3,
                name: "own file".into(),
            }],
            &[],
        );
        let frames = sn.answer(
            key,
            &Request::Search {
                words: vec!["own".into()],
                max_results: 10,
            },
        );
        assert!(matches!(&frames[..], [Response::Hits(h), Response::End] if h[0].id == id));
        let big = Request::Search {
            words: vec!["w".into(); MAX_QUERY_WORDS + 1],
            max_results: 1,
        };
        assert!(matches!(
            &sn.answer(key, &big)[..],
            [Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }]
        ));
    }

    #[test]
    fn a_forged_source_count_does_not_outrank_real_providers() {
        let id = |n: u8| ContentId([n; 32]);
        let provider = |n: u8| Provider::new(NodeId([n; 32]), addr());
        let hit = |content: u8, name: &str, sources: u32, providers: Vec<Provider>| Hit {
            id: id(content),
            size: 1,
            name: name.into(),
            sources,
            providers,
        };
        let forged = hit(
            1,
            "\u{1b}[31mfree\u{1b}[0m",
            4_000_000_000,
            vec![provider(9)],
        );
        // Two supernodes each know one provider of the honest file.
        let honest_a = hit(2, "honest", 1, vec![provider(1)]);
        let honest_b = hit(2, "honest", 1, vec![provider(2), provider(1)]);
        let merged = merge_hits(vec![forged, honest_a, honest_b]);
        assert_eq!(merged[0].id, id(2));
        assert_eq!(
            merged[0].sources, 2,
            "distinct providers, not claims added up"
        );
        assert_eq!(merged[1].sources, 1);
        assert_eq!(merged[1].name, "\u{fffd}[31mfree\u{fffd}[0m");
    }

    #[test]
    fn succession_notices_name_only_peers_of_some_tenure() {
        let mut sn = sn(10);
        let t0 = Instant::now();
        let peer = NodeId([7; 32]);
        sn.peer_up(peer, addr(), t0);
        let tenure = crate::timing::PEER_TENURE;
        assert!(sn.peer_providers(8, t0).is_empty());
        assert!(sn.peer_providers(8, t0 + tenure / 2).is_empty());
        let named: Vec<NodeId> = sn
            .peer_providers(8, t0 + tenure)
            .iter()
            .map(|p| p.node)
            .collect();
        assert_eq!(named, vec![peer]);
        // A full supernode still redirects refused leaves to any peer with room.
        assert_eq!(sn.redirect_list(8).len(), 1);
    }
}
