//! The supernode overlay (`Supernode::peer_up` / `peer_message` / `peer_down` /
//! `start_query` / `tick`, over `Overlay`) driven by a sequence of events from up to six
//! peers — decoded `PeerMessage`s among them — with time advancing, plus host-cache
//! entries, dial failures, own-share changes (the routing filter), leaves joining (the
//! load), growth, handover and demotion (see `kazoo_fuzz::ops::OverlayOp`).
//!
//! Checks: no panic; at most `max_incoming` peers, `max_hosts` hosts and `max_leaves`
//! leaves; every message it sends is within the limits a conforming peer enforces (so a
//! well-behaved supernode is never disconnected by another) and encodes within
//! `MAX_FRAME`; it never sends to or dials itself, and never dials a current peer; a peer
//! that sends a message outside those limits is disconnected, and one that does not is
//! disconnected only for flooding queries (or for a reverse-connection request naming an
//! implausible address); a reverse connection is asked only of a joined leaf; a disconnected or shed peer is gone; results and
//! `Done` are reported only for local queries still open, `Done` once each; every local
//! query is done once time has passed its deadline; a demotion plan sends each joined leaf
//! once to peers, and a handover moves at most half of the joined leaves, never the new
//! supernode itself.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kazoo_common::config::{Routing, SupernodeConfig};
use kazoo_common::wire::{self, PeerMessage, Provider, MAX_BATCH, MAX_SUCCESSION};
use kazoo_common::NodeId;
use kazoo_fuzz::ops::{self, OverlayOp, OverlaySetup};
use kazoo_fuzz::peer_message_limits;
use kazoo_supernode::{check_query, Action, Admission, DemotePolicy, OverlayConfig, Supernode};
use libfuzzer_sys::fuzz_target;

struct Model {
    sn: Supernode,
    me: NodeId,
    now: Instant,
    max_leaves: usize,
    max_hosts: usize,
    /// Local queries started and not yet done.
    open: HashSet<u64>,
    /// Leaves joined (by node).
    leaves: HashSet<NodeId>,
}

fuzz_target!(|data: &[u8]| {
    let (setup, ops): (OverlaySetup, Vec<OverlayOp>) = ops::decode(data);
    let max_peers = usize::from(setup.max_peers % 6);
    let hop_limit = setup.hop_limit % (wire::MAX_HOPS + 1);
    let routing = if setup.flood {
        Routing::Flood
    } else {
        Routing::Filters
    };
    let max_hosts = 1 + usize::from(setup.max_hosts % 16);
    let overlay = OverlayConfig {
        max_peers,
        hop_limit,
        routing,
        max_queries: 1 + usize::from(setup.max_queries % 8),
        // Low, so a flood is reachable within one input (burst: twice this).
        peer_query_rate: 2.0,
        max_hosts,
        ..OverlayConfig::default()
    };
    let max_leaves = 1 + usize::from(setup.max_leaves % 8);
    let config = SupernodeConfig {
        max_leaves,
        max_peers,
        hop_limit,
        routing,
        ..SupernodeConfig::default()
    };
    let me = ops::node(0);
    let mut sn = Supernode::new(me, config, 4710, overlay);
    if let Some((pct, after)) = setup.demote {
        sn.set_demote_policy(DemotePolicy {
            below_pct: pct % 41,
            after: Duration::from_secs(u64::from(after % 60)),
        });
    }
    let mut m = Model {
        sn,
        me,
        now: Instant::now(),
        max_leaves,
        max_hosts,
        open: HashSet::new(),
        leaves: HashSet::new(),
    };
    for op in ops {
        m.run(op);
        m.check();
    }
    // Long after every deadline, every local query is done.
    for _ in 0..2 {
        m.now += Duration::from_secs(3600);
        let actions = m.sn.tick(m.now);
        m.actions(actions);
    }
    assert!(m.open.is_empty(), "local queries never done: {:?}", m.open);
});

impl Model {
    fn run(&mut self, op: OverlayOp) {
        let now = self.now;
        match op {
            OverlayOp::PeerUp { peer, ip, port } => {
                let node = ops::peer(peer);
                // The runtime asks first (and refuses a peering the overlay does not want).
                if self.sn.overlay().wants_peer(&node, now) {
                    let actions = self.sn.peer_up(node, ops::addr(ip, port.max(1)), now);
                    assert!(self.sn.overlay().is_peer(&node));
                    self.actions(actions);
                }
            }
            OverlayOp::PeerDown { peer } => {
                let node = ops::peer(peer);
                let actions = self.sn.peer_down(&node, now);
                assert!(!self.sn.overlay().is_peer(&node));
                self.actions(actions);
            }
            OverlayOp::Message { peer, msg } => {
                let node = ops::peer(peer);
                let was_peer = self.sn.overlay().is_peer(&node);
                let within = peer_message_limits(&msg);
                // Queries may be dropped as a flood; reverse-connection requests as a flood
                // or for an implausible requester address (it depends on the peer's).
                let query = matches!(msg, PeerMessage::Query { .. } | PeerMessage::Connect { .. });
                let actions = self.sn.peer_message(node, msg, now);
                let dropped = actions
                    .iter()
                    .any(|a| matches!(a, Action::Disconnect(n, _) if *n == node));
                if !was_peer {
                    assert!(actions.is_empty(), "acted on a non-peer's message");
                } else if let Err(limit) = within {
                    assert!(dropped, "a peer over the {limit} limit was kept");
                } else if dropped {
                    assert!(query, "a peer within the limits disconnected: {actions:?}");
                }
                self.actions(actions);
            }
            OverlayOp::Query { words, max } => {
                if check_query(&words).is_ok() {
                    let (id, actions) = self.sn.start_query(&words, max, now);
                    assert!(self.open.insert(id), "query id {id} reused");
                    self.actions(actions);
                }
            }
            OverlayOp::Tick => {
                let actions = self.sn.tick(now);
                self.actions(actions);
            }
            OverlayOp::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms % 120_000));
            }
            OverlayOp::DialFailed { peer } => {
                self.sn.overlay_mut().on_dial_failed(&ops::peer(peer), now);
            }
            OverlayOp::AddHost {
                node,
                ip,
                port,
                age_secs,
            } => {
                let provider = Provider::new(ops::node(node % 8), ops::addr(ip, port));
                let age = Duration::from_secs(u64::from(age_secs));
                self.sn.overlay_mut().add_host(provider, age, now);
            }
            OverlayOp::OwnShares { added, removed } => {
                let added: Vec<_> = added.into_iter().take(MAX_BATCH).collect();
                self.sn.set_own_shares(&added, &removed);
            }
            OverlayOp::Admit { leaf, capacity } => {
                let node = ops::peer(leaf);
                let addr = ops::addr(leaf, 5000);
                if let Admission::Admitted(key) = self.sn.admit(node, addr, capacity, now) {
                    self.leaves.insert(node);
                    // Eligible leaves answer the dial-back.
                    if capacity > 0 {
                        self.sn.set_reachable(node, key, addr);
                    }
                }
            }
            OverlayOp::Demotion => {
                let was_retired = self.sn.is_retired();
                if let Some(plan) = self.sn.demotion(now) {
                    assert!(!was_retired || self.sn.is_retired());
                    assert!(self.sn.is_retired(), "a demotion plan without retiring");
                    let mut moved = HashSet::new();
                    for (leaf, to) in &plan.moves {
                        assert!(self.leaves.contains(leaf), "moves a leaf not joined");
                        assert!(moved.insert(*leaf), "moves a leaf twice");
                        assert!(!to.is_empty() && to.len() <= MAX_SUCCESSION);
                        for p in to {
                            assert!(self.sn.overlay().is_peer(&p.node), "moves to a non-peer");
                        }
                    }
                    assert_eq!(moved.len(), self.leaves.len(), "every leaf is moved");
                    assert!(!plan.supernodes.iter().any(|p| p.node == self.me));
                }
            }
            OverlayOp::Promote => {
                if let Some((leaf, _)) = self.sn.promotion_request(now) {
                    assert!(self.leaves.contains(&leaf));
                    self.sn.promotion_asked(leaf, now);
                }
            }
            OverlayOp::Handover { peer } => {
                let node = ops::peer(peer);
                if let Some((moved, reason)) = self.sn.handover_on_peering(node, now) {
                    assert!(!reason.is_empty());
                    assert!(moved.len() <= self.leaves.len() / 2, "moves more than half");
                    assert!(!moved.contains(&node), "hands the new supernode to itself");
                    let distinct: HashSet<_> = moved.iter().collect();
                    assert_eq!(distinct.len(), moved.len());
                    for leaf in &moved {
                        assert!(self.leaves.contains(leaf), "moves a leaf not joined");
                    }
                }
            }
        }
    }

    /// Checks what the overlay asks the runtime to do.
    fn actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(to, msg) => {
                    assert_ne!(to, self.me, "sends to itself");
                    if let Err(limit) = peer_message_limits(&msg) {
                        panic!("sends a message over the {limit} limit: {msg:?}");
                    }
                    wire::encode_frame(&msg).expect("a sent message encodes within MAX_FRAME");
                }
                Action::Dial(p) => {
                    assert_ne!(p.node, self.me, "dials itself");
                    assert!(
                        !p.addr.ip().is_unspecified(),
                        "dials an unspecified address"
                    );
                    assert!(!self.sn.overlay().is_peer(&p.node), "dials a peer");
                }
                Action::Disconnect(node, reason) => {
                    assert!(!reason.is_empty());
                    assert!(!self.sn.overlay().is_peer(&node), "disconnected peer kept");
                }
                Action::Shed(node) => {
                    assert!(!self.sn.overlay().is_peer(&node), "shed peer kept");
                }
                Action::Hits(id, _) => {
                    assert!(self.open.contains(&id), "hits for query {id} not open");
                }
                Action::Done(id) => {
                    assert!(self.open.remove(&id), "done for query {id} not open");
                }
                Action::Connect { leaf, to } => {
                    assert!(self.leaves.contains(&leaf), "asks a leaf not joined");
                    assert_ne!(to.node, self.me, "asks a leaf to dial this supernode");
                    assert!(!to.addr.ip().is_unspecified(), "an unspecified address");
                }
            }
        }
    }

    fn check(&self) {
        let overlay = self.sn.overlay();
        assert!(overlay.peer_count() <= overlay.max_incoming());
        assert!(
            overlay.host_count() <= self.max_hosts,
            "host cache over max_hosts"
        );
        let stats = self.sn.stats();
        assert_eq!(stats.peers, overlay.peer_count());
        assert!(stats.leaves <= self.max_leaves);
        assert_eq!(stats.leaves, self.leaves.len());
        for view in overlay.peers() {
            assert!(view.filter_positions <= kazoo_supernode::filter::MAX_FILTER_POSITIONS);
            assert!(view.peers <= kazoo_fuzz::MAX_PEER_LIST);
            if let Some(load) = view.load {
                assert!(load.leaves <= load.max_leaves);
            }
        }
    }
}
