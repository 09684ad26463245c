//! The supernode core (`kazoo_supernode::Supernode`) driven by a sequence of leaf events:
//! joins, decoded `Request`s on current and replaced sessions, departures, drain steps,
//! own-share changes, dial-back results, succession and growth queries, and time passing
//! (see `kazoo_fuzz::ops::SupernodeOp`; small limits so they are reached).
//!
//! Checks, against a model of which leaf has registered which content ids: no panic; at
//! most `max_leaves` leaves, and `max_leaves_per_ip` per IP (a leaf re-joining from
//! another IP included); a refusal only when full (for a new leaf) or its IP is; a replaced or ended session's requests
//! are refused `UnknownLeaf` and its departure changes nothing; `Registered.total` is the
//! leaf's model count and at most `max_entries_per_leaf`; a failed request changes nothing;
//! a lookup lists only joined leaves that registered the id (all of them, up to
//! `MAX_PROVIDERS`, for a leaf that never reported anyone) or the node itself; search answers are
//! `Hits` frames then `End` within `max_results` and the per-frame limits, naming only joined
//! providers; every answer encodes within `MAX_FRAME`; heirs are distinct reachable leaves;
//! and once every leaf has left and been drained and the own shares are removed, the index
//! is empty down to its accounted bytes.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::config::SupernodeConfig;
use kazoo_common::wire::{
    ErrorCode, Provider, Request, Response, MAX_BATCH, MAX_PROVIDERS, MAX_REPORTED, MAX_RESULTS,
};
use kazoo_common::{ContentId, NodeId};
use kazoo_fuzz::ops::{self, SupernodeOp, SupernodeSetup};
use kazoo_fuzz::{assert_distinct, check_response_limits};
use kazoo_supernode::{Action, Admission, LeafKey, OverlayConfig, RelayHop, Supernode};
use libfuzzer_sys::fuzz_target;

const OWN_PORT: u16 = 4710;

/// A joined leaf as the model sees it.
struct Leaf {
    key: LeafKey,
    ip: u8,
    ids: HashSet<ContentId>,
    reachable: bool,
    /// Where it is listed: its advertised address, then where it answered a dial back, or
    /// (never having answered) where its connection came from.
    addr: SocketAddr,
}

struct Model {
    sn: Supernode,
    config: SupernodeConfig,
    now: Instant,
    leaves: HashMap<u8, Leaf>,
    /// Each leaf's last replaced or ended session.
    stale: HashMap<u8, LeafKey>,
    /// Leaves that have reported sources unreachable (their lookups may leave them out, in
    /// any later session too: reports are kept by node).
    reporters: HashSet<u8>,
    own: HashSet<ContentId>,
}

fuzz_target!(|data: &[u8]| {
    let (setup, ops): (SupernodeSetup, Vec<SupernodeOp>) = ops::decode(data);
    let config = SupernodeConfig {
        max_leaves: 1 + usize::from(setup.max_leaves % 8),
        max_leaves_per_ip: 1 + usize::from(setup.max_leaves_per_ip % 8),
        max_entries_per_leaf: 1 + usize::from(setup.max_entries_per_leaf % 32),
        max_index_entries: 1 + usize::from(setup.max_index_entries % 128),
        ..SupernodeConfig::default()
    };
    let overlay = OverlayConfig {
        max_peers: 0,
        ..OverlayConfig::default()
    };
    let mut m = Model {
        sn: Supernode::new(ops::node(0), config.clone(), OWN_PORT, overlay),
        config,
        now: Instant::now(),
        leaves: HashMap::new(),
        stale: HashMap::new(),
        reporters: HashSet::new(),
        own: HashSet::new(),
    };
    for op in ops {
        m.run(op);
        m.check();
    }
    m.finish();
});

/// A request on a replaced or ended session is refused `UnknownLeaf` (or `BadRequest`,
/// checked first, for an oversized batch).
fn stale_refused(error: Option<ErrorCode>, batch: usize) {
    let expected = if batch > MAX_BATCH {
        ErrorCode::BadRequest
    } else {
        ErrorCode::UnknownLeaf
    };
    assert_eq!(error, Some(expected), "a stale session's index request");
}

fn leaf_node(leaf: u8) -> NodeId {
    ops::node(1 + leaf % 8)
}

fn leaf_addr(leaf: u8, ip: u8) -> SocketAddr {
    ops::addr(ip, 5000 + u16::from(leaf % 8))
}

impl Model {
    fn run(&mut self, op: SupernodeOp) {
        match op {
            SupernodeOp::Admit { leaf, ip, capacity } => self.admit(leaf % 8, ip % 4, capacity),
            SupernodeOp::Request {
                leaf,
                stale,
                plain,
                request,
            } => self.request(leaf % 8, stale, plain, &request),
            SupernodeOp::Depart { leaf, stale } => {
                let leaf = leaf % 8;
                let node = leaf_node(leaf);
                if stale {
                    if let Some(key) = self.stale.get(&leaf) {
                        let before = self.sn.stats();
                        assert_eq!(self.sn.depart(node, *key), 0, "a stale session departed");
                        assert_eq!(self.sn.stats(), before);
                    }
                } else if let Some(joined) = self.leaves.remove(&leaf) {
                    let count = self.sn.depart(node, joined.key);
                    assert_eq!(count, joined.ids.len(), "departure count");
                    self.stale.insert(leaf, joined.key);
                }
            }
            SupernodeOp::Drain => {
                let _ = self.sn.drain_step();
            }
            SupernodeOp::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms % 600_000));
            }
            SupernodeOp::Tick => {
                let actions = self.sn.tick(self.now);
                assert!(
                    actions.is_empty(),
                    "a supernode without peers acts: {actions:?}"
                );
            }
            SupernodeOp::OwnShares { added, removed } => {
                let added: Vec<_> = added.into_iter().take(MAX_BATCH).collect();
                self.own.extend(added.iter().map(|e| e.id));
                self.sn.set_own_shares(&added, &removed);
            }
            SupernodeOp::Reachable { leaf, port } => {
                let leaf = leaf % 8;
                if let Some(joined) = self.leaves.get_mut(&leaf) {
                    let addr = ops::addr(joined.ip, port);
                    self.sn.set_reachable(leaf_node(leaf), joined.key, addr);
                    joined.reachable = true;
                    joined.addr = addr;
                }
                if let Some(key) = self.stale.get(&leaf) {
                    // A stale session's dial-back result must not mark the current one.
                    self.sn
                        .set_reachable(leaf_node(leaf), *key, ops::addr(0, port));
                }
            }
            SupernodeOp::Unreachable { leaf, port } => {
                let leaf = leaf % 8;
                if let Some(joined) = self.leaves.get_mut(&leaf) {
                    let observed = ops::addr(joined.ip, port);
                    self.sn
                        .set_unreachable(leaf_node(leaf), joined.key, observed);
                    if !joined.reachable {
                        joined.addr = observed;
                    }
                }
                if let Some(key) = self.stale.get(&leaf) {
                    // A stale session's result must not move the current one.
                    self.sn
                        .set_unreachable(leaf_node(leaf), *key, ops::addr(0, port));
                }
            }
            SupernodeOp::Succession { max } => {
                let max = usize::from(max % 12);
                let heirs = self.sn.succession(max, self.now);
                assert!(heirs.len() <= max);
                assert_distinct(&heirs);
                for heir in &heirs {
                    let joined = self
                        .leaves
                        .iter()
                        .find(|(n, _)| leaf_node(**n) == heir.node)
                        .map(|(_, l)| l);
                    assert!(
                        joined.is_some_and(|l| l.reachable),
                        "heir {:?} is not a reachable joined leaf",
                        heir.node
                    );
                }
            }
            SupernodeOp::Promote => {
                if let Some((leaf, reason)) = self.sn.promotion_request(self.now) {
                    assert!(!reason.is_empty());
                    assert!(
                        self.leaves.keys().any(|n| leaf_node(*n) == leaf),
                        "asks a leaf that is not joined to promote"
                    );
                    self.sn.promotion_asked(leaf, self.now);
                }
            }
        }
    }

    fn admit(&mut self, leaf: u8, ip: u8, capacity: u32) {
        let node = leaf_node(leaf);
        let joined_before = self.leaves.contains_key(&leaf);
        let full = self.leaves.len() >= self.config.max_leaves;
        // Leaves from its IP other than itself (a re-join replaces its own session).
        let from_ip = self
            .leaves
            .iter()
            .filter(|(n, l)| **n != leaf && l.ip == ip)
            .count();
        match self.sn.admit(node, leaf_addr(leaf, ip), capacity, self.now) {
            Admission::Admitted(key) => {
                assert!(joined_before || !full, "admitted past max_leaves");
                assert!(
                    from_ip < self.config.max_leaves_per_ip,
                    "admitted past max_leaves_per_ip"
                );
                if let Some(old) = self.leaves.remove(&leaf) {
                    assert_ne!(old.key, key, "a new session has a new key");
                    self.stale.insert(leaf, old.key);
                }
                self.leaves.insert(
                    leaf,
                    Leaf {
                        key,
                        ip,
                        ids: HashSet::new(),
                        reachable: false,
                        addr: leaf_addr(leaf, ip),
                    },
                );
            }
            Admission::Full(reason) => {
                assert!(!reason.is_empty());
                assert!(
                    (full && !joined_before) || from_ip >= self.config.max_leaves_per_ip,
                    "refused with room"
                );
            }
        }
    }

    fn request(&mut self, leaf: u8, stale: bool, plain: bool, request: &Request) {
        let node = leaf_node(leaf);
        let key = if stale {
            match self.stale.get(&leaf) {
                // A stale key that is also the current one cannot happen (keys are new).
                Some(key) => *key,
                None => return,
            }
        } else {
            match self.leaves.get(&leaf) {
                Some(joined) => joined.key,
                None => return,
            }
        };
        let before = self.sn.stats();
        let frames = if plain {
            self.sn.answer(key, request)
        } else {
            self.sn.answer_from(node, key, request, self.now)
        };
        assert!(!frames.is_empty(), "no answer");
        frames.iter().for_each(check_response_limits);
        let error = match &frames[..] {
            [Response::Error { code, message }] => {
                assert!(!message.is_empty());
                Some(*code)
            }
            _ => None,
        };
        let current = !stale;
        match request {
            Request::Register { entries } => {
                if !current {
                    stale_refused(error, entries.len());
                } else if let [Response::Registered { total }] = &frames[..] {
                    assert!(entries.len() <= MAX_BATCH);
                    let joined = self.leaves.get_mut(&leaf).expect("current leaf");
                    joined.ids.extend(entries.iter().map(|e| e.id));
                    assert_eq!(*total, joined.ids.len() as u64, "registered total");
                    assert!(*total as usize <= self.config.max_entries_per_leaf);
                } else {
                    assert!(error.is_some(), "register answered {frames:?}");
                    assert_eq!(
                        self.sn.stats(),
                        before,
                        "a refused register changed the index"
                    );
                }
            }
            Request::Unregister { ids } => {
                if !current {
                    stale_refused(error, ids.len());
                } else if let [Response::Registered { total }] = &frames[..] {
                    let joined = self.leaves.get_mut(&leaf).expect("current leaf");
                    for id in ids {
                        joined.ids.remove(id);
                    }
                    assert_eq!(*total, joined.ids.len() as u64, "unregistered total");
                } else {
                    assert!(ids.len() > MAX_BATCH, "unregister answered {frames:?}");
                    assert_eq!(error, Some(ErrorCode::BadRequest));
                }
            }
            Request::Search { max_results, .. } => {
                if error.is_some() {
                    return;
                }
                let (last, hits) = frames.split_last().expect("frames");
                assert_eq!(last, &Response::End, "search ends with End");
                let mut count = 0;
                let mut ids = HashSet::new();
                for frame in hits {
                    let Response::Hits(hits) = frame else {
                        panic!("search answered {frame:?}");
                    };
                    count += hits.len();
                    ids.extend(hits.iter().map(|h| h.id));
                    for hit in hits {
                        assert!(!hit.providers.is_empty(), "a hit with no providers");
                        for p in &hit.providers {
                            self.check_provider(p, &hit.id);
                        }
                    }
                }
                // At most `max` files, and at most `max` extra hits naming their other names.
                let max = (*max_results as usize).min(MAX_RESULTS);
                assert!(ids.len() <= max, "{} files for max {max}", ids.len());
                assert!(count <= 2 * max, "{count} hits for max {max}");
            }
            Request::Lookup { id } => {
                let [Response::Providers(list)] = &frames[..] else {
                    panic!("lookup answered {frames:?}");
                };
                for p in list {
                    self.check_provider(p, id);
                }
                let reported = self.reporters.contains(&leaf) || stale;
                let having = self.leaves.values().filter(|l| l.ids.contains(id)).count();
                if !reported && having <= MAX_PROVIDERS {
                    let leaves_listed = list.iter().filter(|p| p.node != self.sn.node_id()).count();
                    assert_eq!(leaves_listed, having, "lookup misses a provider");
                }
            }
            Request::ReportUnreachable { nodes } => {
                if plain {
                    assert_eq!(error, Some(ErrorCode::Internal));
                } else if nodes.len() > MAX_REPORTED {
                    assert_eq!(error, Some(ErrorCode::BadRequest));
                } else {
                    assert_eq!(frames, vec![Response::Registered { total: 0 }]);
                    if !nodes.is_empty() {
                        self.reporters.insert(leaf);
                    }
                }
            }
            Request::Connect { target } => {
                // Answered by `Supernode::connect`, which needs the requester's address.
                assert_eq!(error, Some(ErrorCode::Internal));
                let seen_at = ops::addr(1, 4000);
                let (answer, actions) = self.sn.connect(node, seen_at, *target, self.now);
                let joined = self
                    .leaves
                    .iter()
                    .find(|(n, _)| leaf_node(**n) == *target)
                    .map(|(_, l)| l.addr);
                match joined.filter(|_| *target != node) {
                    Some(addr) => {
                        let Response::Connecting {
                            target: listed,
                            requester,
                        } = answer
                        else {
                            panic!("a joined leaf not asked: {answer:?}");
                        };
                        assert_eq!(listed, Provider::new(*target, addr));
                        assert_eq!(requester, Provider::new(node, seen_at));
                        assert!(matches!(
                            &actions[..],
                            [Action::Connect { leaf, to }] if leaf == target && *to == requester
                        ));
                    }
                    // Itself, or (no peers here) nowhere to ask.
                    None => {
                        assert!(matches!(answer, Response::Error { .. }));
                        assert!(actions.is_empty());
                    }
                }
            }
            Request::Relay { target, .. } => {
                // Relays are streams the runtime joins; the core only says where one goes.
                assert_eq!(error, Some(ErrorCode::Internal));
                let joined = self.leaves.keys().any(|n| leaf_node(*n) == *target);
                match self.sn.relay_route(node, *target, None, self.now) {
                    Ok(RelayHop::Leaf(to)) => {
                        assert_eq!(to, *target);
                        assert!(joined && *target != node, "relayed to a leaf not joined");
                    }
                    Ok(RelayHop::Peer(peer)) => panic!("relayed to peer {peer:?} with no peers"),
                    Err(refusal) => assert!(!joined || *target == node, "{refusal:?}"),
                }
            }
            Request::RelayAccept { .. } => {
                assert_eq!(error, Some(ErrorCode::Internal));
            }
            Request::GetManifest { .. }
            | Request::GetPiece { .. }
            | Request::Browse { .. }
            | Request::DialBack { .. } => {
                assert_eq!(error, Some(ErrorCode::BadRequest));
            }
        }
    }

    /// A provider listed for `id`: a joined leaf, at its address, that registered it, or
    /// this node for its own shares.
    fn check_provider(&self, p: &Provider, id: &ContentId) {
        if p.node == self.sn.node_id() {
            assert_eq!(p.addr, SocketAddr::from(([0, 0, 0, 0], OWN_PORT)));
            assert!(self.own.contains(id), "own provider of an id never shared");
            return;
        }
        let Some((_, joined)) = self.leaves.iter().find(|(n, _)| leaf_node(**n) == p.node) else {
            panic!("provider {:?} is not a joined leaf", p.node);
        };
        assert_eq!(p.addr, joined.addr);
        assert!(
            joined.ids.contains(id),
            "provider of an id it did not register"
        );
    }

    fn check(&self) {
        let stats = self.sn.stats();
        assert_eq!(stats.leaves, self.leaves.len());
        assert!(stats.leaves <= self.config.max_leaves);
        for ip in 0..4 {
            let from_ip = self.leaves.values().filter(|l| l.ip == ip).count();
            assert!(from_ip <= self.config.max_leaves_per_ip);
        }
        let registered: usize = self.leaves.values().map(|l| l.ids.len()).sum();
        assert!(
            stats.entries >= registered,
            "entries {stats:?} < {registered}"
        );
        assert_eq!(stats.peers, 0);
    }

    fn finish(mut self) {
        let leaves: Vec<(u8, LeafKey)> = self.leaves.iter().map(|(n, l)| (*n, l.key)).collect();
        for (leaf, key) in leaves {
            self.sn.depart(leaf_node(leaf), key);
        }
        let mut steps = 0;
        while self.sn.drain_step() {
            steps += 1;
            assert!(steps < 10_000, "drain does not end");
        }
        let own: Vec<ContentId> = self.own.iter().copied().collect();
        self.sn.set_own_shares(&[], &own);
        let stats = self.sn.stats();
        assert_eq!(
            (stats.leaves, stats.entries, stats.files),
            (0, 0, 0),
            "{stats:?}"
        );
        assert_eq!(self.sn.accounted_bytes(), 0, "accounted bytes leak");
    }
}
