//! A deterministic simulator of a kazoo network, for tests and benchmarks: every supernode is
//! a [`Supernode`] core and every leaf a [`LeafElection`] — the same decisions the QUIC
//! runtime carries out — on a virtual clock ([`clock`]), with seeded randomness ([`Rng`]) and
//! links that deliver messages in order after a fixed one-way latency. A run replays exactly
//! from its seed.
//!
//! What it stands in for, with the runtime's timings ([`crate::timing`]):
//! * a dial is answered after two round trips (QUIC and the `Hello` exchange); a dial to a
//!   dead node fails after [`JOIN_TIMEOUT`];
//! * a killed node is noticed by each connected node after the QUIC idle timeout less the
//!   time since its last keep-alive (uniform in [idle − keep-alive, idle], see `kazoo_common::transport::Timeouts`);
//! * succession notices go out every [`NOTICE_EVERY`] when they change, the overlay ticks
//!   every [`OVERLAY_TICK`], demotion is checked every [`DEMOTE_CHECK_EVERY`];
//! * growth: a full supernode asks its best heir to promote (paced by the core), the heir
//!   promotes and peers back, and the core's handover redirects part of the leaves to it;
//! * a redirected leaf leaves its supernode (which drains its entries) and joins where it
//!   was sent; every simulated leaf answers its supernode's dial back.

pub mod clock;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::config::{ElectionConfig, SupernodeConfig};
use kazoo_common::transport::Timeouts;
use kazoo_common::wire::{
    Hit, PeerMessage, Provider, Request, Response, ShareEntry, MAX_SUCCESSION,
};
use kazoo_common::{ContentId, NodeId};

use crate::election::{LeafElection, Redirect, Step, Target};
use crate::timing::{DEMOTE_CHECK_EVERY, JOIN_TIMEOUT, NOTICE_EVERY, OVERLAY_TICK};
use crate::{
    Action, Admission, DemotePolicy, Demotion, LeafKey, OverlayConfig, QueryKey, Supernode,
};
use clock::Clock;

/// Deterministic pseudo-random numbers (xorshift; a zero seed is replaced).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = 0x2545_f491_4f6c_dd1d;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The id of simulated node `n`.
pub fn node(n: usize) -> NodeId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
    id[8] = 0x5a;
    NodeId(id)
}

/// The (never dialled) address of simulated node `n`.
pub fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 4710))
}

/// How a simulated network is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// One-way latency of every link.
    pub latency: Duration,
    /// Every supernode's config.
    pub supernode: SupernodeConfig,
    /// Every node's election config.
    pub election: ElectionConfig,
    /// The QUIC keep-alive and idle timeout the simulated links stand in for.
    pub timeouts: Timeouts,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: Duration::from_millis(10),
            supernode: SupernodeConfig::default(),
            election: ElectionConfig::default(),
            timeouts: Timeouts::default(),
        }
    }
}

enum Event {
    Tick(NodeId, u64),
    Notify(NodeId, u64),
    DemoteCheck(NodeId, u64),
    Peer(NodeId, NodeId, PeerMessage),
    DialArrives(NodeId, NodeId),
    PeerUp(NodeId, NodeId),
    DialFailed(NodeId, NodeId),
    PeerDown(NodeId, NodeId),
    Succession(NodeId, NodeId, Vec<Provider>, Vec<Provider>),
    Lost(NodeId, NodeId),
    Step(NodeId),
    Joined(NodeId, NodeId, LeafKey, SocketAddr),
    Register(NodeId, NodeId, LeafKey),
    JoinFailed(NodeId),
    Redirected(NodeId, Redirect),
    PromoteAsked(NodeId, NodeId),
    Depart(NodeId, NodeId, LeafKey),
}

struct Sn {
    core: Supernode,
    /// Timers of an earlier incarnation stop when this changes.
    generation: u64,
    members: HashMap<NodeId, LeafKey>,
    notice: (Vec<Provider>, Vec<Provider>),
    notice_version: u64,
}

struct Leaf {
    election: LeafElection,
    eligible: bool,
    attached: Option<(NodeId, LeafKey)>,
    seen_notice: (NodeId, u64),
    heirs: Vec<Provider>,
    supernodes: Vec<Provider>,
    entries: Vec<ShareEntry>,
    stepping: bool,
}

/// What happened in a run so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Leaves that promoted themselves.
    pub promoted: usize,
    /// Supernodes that demoted.
    pub demoted: usize,
    /// Leaves handed over to a new supernode (growth).
    pub handed_over: usize,
    /// `Query` messages sent between supernodes.
    pub query_messages: u64,
}

/// A simulated network.
pub struct Sim {
    clock: Clock<Event>,
    rng: Rng,
    config: SimConfig,
    sns: HashMap<NodeId, Sn>,
    dead: HashSet<NodeId>,
    leaves: HashMap<NodeId, Leaf>,
    addrs: HashMap<NodeId, SocketAddr>,
    by_addr: HashMap<SocketAddr, NodeId>,
    /// Local queries: hits so far, done.
    queries: HashMap<u64, (Vec<Hit>, bool)>,
    /// Reverse connections asked of leaves: (supernode, leaf, whom to dial).
    connects: Vec<(NodeId, NodeId, Provider)>,
    generation: u64,
    stats: SimStats,
}

impl Sim {
    /// An empty network.
    pub fn new(config: SimConfig) -> Self {
        Sim {
            clock: Clock::new(Instant::now()),
            rng: Rng(config.seed),
            config,
            sns: HashMap::new(),
            dead: HashSet::new(),
            leaves: HashMap::new(),
            addrs: HashMap::new(),
            by_addr: HashMap::new(),
            queries: HashMap::new(),
            connects: Vec::new(),
            generation: 0,
            stats: SimStats::default(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Counts so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The seeded randomness of the run (for a scenario's own choices).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn place(&mut self, id: NodeId, at: SocketAddr) {
        self.addrs.insert(id, at);
        self.by_addr.insert(at, id);
    }

    /// Starts supernode `id` at `at`, knowing `hosts`; `auto`: an `auto` node that may
    /// demote (and then joins as a leaf), else a configured supernode.
    pub fn add_supernode(&mut self, id: NodeId, at: SocketAddr, auto: bool, hosts: &[Provider]) {
        self.place(id, at);
        if auto {
            let heir_delay = self.config.election.heir_delay();
            self.leaves.insert(
                id,
                Leaf {
                    election: LeafElection::new(id, true, heir_delay, Vec::new()),
                    eligible: true,
                    attached: None,
                    seen_notice: (id, 0),
                    heirs: Vec::new(),
                    supernodes: Vec::new(),
                    entries: Vec::new(),
                    // A supernode does not step; a demotion starts it.
                    stepping: true,
                },
            );
        }
        self.start_sn(id, auto, &[]);
        self.learn(id, hosts);
    }

    /// Starts a leaf `id` at `at` sharing `entries`, joining through `bootstrap`
    /// (`eligible`: an `auto` node that may promote), after `delay`.
    pub fn add_leaf(
        &mut self,
        id: NodeId,
        at: SocketAddr,
        eligible: bool,
        entries: Vec<ShareEntry>,
        bootstrap: Vec<Target>,
        delay: Duration,
    ) {
        self.place(id, at);
        let heir_delay = self.config.election.heir_delay();
        self.leaves.insert(
            id,
            Leaf {
                election: LeafElection::new(id, eligible, heir_delay, bootstrap),
                eligible,
                attached: None,
                seen_notice: (id, 0),
                heirs: Vec::new(),
                supernodes: Vec::new(),
                entries,
                stepping: false,
            },
        );
        self.schedule_step(id, delay);
    }

    /// Kills node `id` (a supernode or a leaf) as `kill -9` would.
    pub fn kill(&mut self, id: NodeId) {
        self.dead.insert(id);
        let attached = self.leaves.get_mut(&id).and_then(|leaf| {
            leaf.stepping = true;
            leaf.attached.take()
        });
        if let Some((sn, key)) = attached {
            let after = self.detect();
            self.clock.at(after, Event::Depart(sn, id, key));
        }
        let Some(sn) = self.sns.remove(&id) else {
            return;
        };
        // Sorted, so the random delays go to the same nodes in every replay.
        let mut members: Vec<NodeId> = sn.members.keys().copied().collect();
        members.sort();
        for leaf in members {
            let after = self.detect();
            self.clock.at(after, Event::Lost(leaf, id));
        }
        let mut peers: Vec<NodeId> = sn.core.overlay().peers().iter().map(|p| p.node).collect();
        peers.sort();
        for peer in peers {
            let after = self.detect();
            self.clock.at(after, Event::PeerDown(peer, id));
        }
    }

    /// Runs the network for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let until = self.clock.elapsed() + span;
        while let Some(event) = self.clock.next_until(until) {
            self.handle(event);
        }
        self.clock.advance_to(until);
    }

    /// The live supernodes' ids.
    pub fn supernodes(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.sns.keys().copied().collect();
        ids.sort();
        ids
    }

    /// The core of live supernode `id`.
    pub fn supernode(&self, id: &NodeId) -> Option<&Supernode> {
        self.sns.get(id).map(|s| &s.core)
    }

    /// The leaves joined to live supernode `id` (as the simulator delivered them).
    pub fn members(&self, id: &NodeId) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .sns
            .get(id)
            .map(|s| s.members.keys().copied().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Whether node `id` is a live supernode or a leaf attached to one.
    pub fn attached(&self, id: &NodeId) -> bool {
        self.sns.contains_key(id)
            || self
                .leaves
                .get(id)
                .and_then(|l| l.attached)
                .is_some_and(|(sn, _)| self.sns.contains_key(&sn))
    }

    /// Distinct files the live supernodes' indexes hold under `words` (no routing).
    pub fn indexed(&self, words: &[String]) -> HashSet<ContentId> {
        self.sns
            .values()
            .flat_map(|s| s.core.search(words, 1000).unwrap_or_default())
            .map(|h| h.id)
            .collect()
    }

    /// A routed search for `word` from supernode `from`: the distinct files found (waiting
    /// up to 10 s of virtual time for the query to finish).
    pub fn search(&mut self, from: NodeId, word: &str) -> usize {
        let hits = self.find(from, &[word.to_owned()], 50);
        let ids: HashSet<ContentId> = hits.iter().map(|h| h.id).collect();
        ids.len()
    }

    /// A routed search for `words` from supernode `from`: every hit received (waiting up to
    /// 10 s of virtual time for the query to finish).
    pub fn find(&mut self, from: NodeId, words: &[String], max: u32) -> Vec<Hit> {
        let now = self.clock.instant();
        let Some(sn) = self.sns.get_mut(&from) else {
            return Vec::new();
        };
        let (q, actions) = sn.core.start_query(words, max, now);
        self.queries.insert(q, (Vec::new(), false));
        self.execute(from, actions);
        let limit = self.clock.elapsed() + Duration::from_secs(10);
        while !self.queries.get(&q).is_some_and(|e| e.1) && self.clock.elapsed() < limit {
            self.run_for(self.config.latency);
        }
        let (hits, _) = self.queries.remove(&q).unwrap_or_default();
        hits
    }

    /// Leaf `requester` of supernode `from`, seen at `seen_at`, asks for a reverse connection
    /// from `target` (`Request::Connect`); runs one second of virtual time for the request
    /// to travel. The answer, and the reverse connections asked of leaves so far: (their
    /// supernode, the leaf, whom to dial).
    pub fn connect(
        &mut self,
        from: NodeId,
        requester: NodeId,
        seen_at: SocketAddr,
        target: NodeId,
    ) -> (Response, Vec<(NodeId, NodeId, Provider)>) {
        let now = self.clock.instant();
        let Some(sn) = self.sns.get_mut(&from) else {
            return (Response::End, Vec::new());
        };
        let (answer, actions) = sn.core.connect(requester, seen_at, target, now);
        self.execute(from, actions);
        self.run_for(Duration::from_secs(1));
        (answer, self.connects.clone())
    }

    /// Supernode `at`'s next hop for a relay from `requester` to `target`.
    pub fn relay_route(
        &mut self,
        at: NodeId,
        requester: NodeId,
        target: NodeId,
        via_peer: Option<NodeId>,
    ) -> Option<Result<crate::RelayHop, crate::RelayRefusal>> {
        let now = self.clock.instant();
        let sn = self.sns.get_mut(&at)?;
        Some(sn.core.relay_route(requester, target, via_peer, now))
    }

    /// Whether supernode `at` dials a leaf back for `peer` now (`Request::DialBack`).
    pub fn admit_dial_back(&mut self, at: NodeId, peer: NodeId) -> Option<bool> {
        let now = self.clock.instant();
        let sn = self.sns.get_mut(&at)?;
        Some(sn.core.admit_dial_back(peer, now))
    }

    /// How long after a kill a connected node notices it.
    fn detect(&mut self) -> Duration {
        let t = self.config.timeouts;
        let window = t.keep_alive.as_micros().max(1) as u64;
        t.idle.saturating_sub(t.keep_alive) + Duration::from_micros(self.rng.next_u64() % window)
    }

    fn learn(&mut self, id: NodeId, hosts: &[Provider]) {
        let now = self.clock.instant();
        if let Some(sn) = self.sns.get_mut(&id) {
            for p in hosts.iter().filter(|p| p.node != id) {
                sn.core.overlay_mut().add_candidate(*p, id, now);
            }
        }
    }

    fn start_sn(&mut self, id: NodeId, auto: bool, own: &[ShareEntry]) {
        let config = &self.config.supernode;
        // Drawn from the run's seed (not from `rng`, whose stream the scenarios' other
        // choices use): the same seed, the same query ids.
        let mut key = blake3::Hasher::new();
        key.update(&self.config.seed.to_le_bytes());
        key.update(id.as_bytes());
        let overlay = OverlayConfig {
            max_peers: config.max_peers,
            hop_limit: config.hop_limit,
            routing: config.routing,
            query_key: QueryKey(*key.finalize().as_bytes()),
            ..OverlayConfig::default()
        };
        let mut core = Supernode::new(id, config.clone(), 4710, overlay);
        if auto {
            let election = &self.config.election;
            core.set_demote_policy(DemotePolicy {
                below_pct: election.demote_below_pct,
                after: election.demote_after(),
            });
        }
        core.set_own_shares(own, &[]);
        self.generation += 1;
        let generation = self.generation;
        self.sns.insert(
            id,
            Sn {
                core,
                generation,
                members: HashMap::new(),
                notice: (Vec::new(), Vec::new()),
                notice_version: 0,
            },
        );
        let phase = Duration::from_micros(self.rng.next_u64() % 100_000);
        self.clock.at(phase, Event::Tick(id, generation));
        self.clock.at(phase, Event::Notify(id, generation));
        self.clock.at(phase, Event::DemoteCheck(id, generation));
    }

    fn execute(&mut self, me: NodeId, actions: Vec<Action>) {
        let latency = self.config.latency;
        for action in actions {
            match action {
                Action::Send(to, msg) => {
                    if matches!(msg, PeerMessage::Query { .. }) {
                        self.stats.query_messages += 1;
                    }
                    self.clock.at(latency, Event::Peer(me, to, msg))
                }
                Action::Dial(p) => self.clock.at(latency, Event::DialArrives(me, p.node)),
                Action::Shed(peer) => self.clock.at(latency, Event::PeerDown(peer, me)),
                Action::Disconnect(peer, _) => {
                    self.clock.at(latency, Event::PeerDown(peer, me));
                    self.clock.at(Duration::ZERO, Event::PeerDown(me, peer));
                }
                Action::Hits(q, hits) => {
                    if let Some(entry) = self.queries.get_mut(&q) {
                        entry.0.extend(hits);
                    }
                }
                Action::Done(q) => {
                    if let Some(entry) = self.queries.get_mut(&q) {
                        entry.1 = true;
                    }
                }
                Action::Connect { leaf, to } => self.connects.push((me, leaf, to)),
            }
        }
    }

    /// One round of join attempts, as the runtime's uplink does it: each group dialled at
    /// once, the first supernode with room wins; then the redirect lists the refusals carried.
    fn try_join(&mut self, leaf: NodeId, groups: Vec<Vec<Target>>) {
        let mut elapsed = Duration::ZERO;
        let mut redirects: Vec<Provider> = Vec::new();
        let mut winner = None;
        for group in groups.iter().filter(|g| !g.is_empty()) {
            let (won, took) = self.dial_group(leaf, group, &mut redirects);
            elapsed += took;
            if won.is_some() {
                winner = won;
                break;
            }
        }
        if winner.is_none() && !redirects.is_empty() {
            let others = match self.leaves.get(&leaf) {
                Some(l) => l.election.redirect_targets(&redirects),
                None => Vec::new(),
            };
            let (won, took) = self.dial_group(leaf, &others, &mut Vec::new());
            elapsed += took;
            winner = won;
        }
        match winner {
            Some((sn, key, addr)) => self.clock.at(elapsed, Event::Joined(leaf, sn, key, addr)),
            None => self.clock.at(elapsed, Event::JoinFailed(leaf)),
        }
    }

    fn dial_group(
        &mut self,
        leaf: NodeId,
        group: &[Target],
        redirects: &mut Vec<Provider>,
    ) -> (Option<(NodeId, LeafKey, SocketAddr)>, Duration) {
        let round_trips = self.config.latency * 4;
        let now = self.clock.instant();
        let mut any_dead = false;
        for &(at, expected) in group {
            let Some(&target) = self.by_addr.get(&at) else {
                any_dead = true;
                continue;
            };
            if expected.is_some_and(|e| e != target) {
                continue;
            }
            if self.dead.contains(&target) || !self.sns.contains_key(&target) {
                any_dead |= self.dead.contains(&target);
                continue;
            }
            let leaf_addr = self.addrs[&leaf];
            let capacity = match self.leaves.get(&leaf) {
                Some(l) if l.eligible => self.config.election.bandwidth_kib.max(1),
                _ => 0,
            };
            let Some(sn) = self.sns.get_mut(&target) else {
                continue;
            };
            match sn.core.admit(leaf, leaf_addr, capacity, now) {
                Admission::Admitted(key) => {
                    // Every simulated leaf answers the supernode's dial back.
                    sn.core.set_reachable(leaf, key, leaf_addr);
                    sn.members.insert(leaf, key);
                    return (Some((target, key, at)), round_trips);
                }
                Admission::Full(_) => {
                    redirects.extend(sn.core.redirect_list(MAX_SUCCESSION));
                    let ask = if sn.core.is_retired() {
                        None
                    } else {
                        sn.core.promotion_request(now)
                    };
                    if let Some((heir, _)) = ask {
                        if sn.members.contains_key(&heir) {
                            sn.core.promotion_asked(heir, now);
                            self.clock
                                .at(self.config.latency, Event::PromoteAsked(heir, target));
                        }
                    }
                    if let Some(l) = self.leaves.get_mut(&leaf) {
                        l.election.on_refused(&[Provider::new(target, at)]);
                    }
                }
            }
        }
        let took = if any_dead { JOIN_TIMEOUT } else { round_trips };
        (None, took)
    }

    fn step(&mut self, id: NodeId) {
        let now = self.clock.instant();
        if self.dead.contains(&id) {
            return;
        }
        let Some(leaf) = self.leaves.get_mut(&id) else {
            return;
        };
        leaf.stepping = false;
        if leaf.attached.is_some() || self.sns.contains_key(&id) {
            return;
        }
        let (heirs, supernodes) = (leaf.heirs.clone(), leaf.supernodes.clone());
        match leaf.election.step(now, &heirs, &supernodes) {
            Step::Promote { hosts, .. } => {
                let own = leaf.entries.clone();
                self.promote(id, &own, &hosts);
            }
            Step::Join { groups, .. } => {
                leaf.stepping = true;
                self.try_join(id, groups);
            }
        }
    }

    fn promote(&mut self, id: NodeId, own: &[ShareEntry], hosts: &[Provider]) {
        self.stats.promoted += 1;
        self.start_sn(id, true, own);
        self.learn(id, hosts);
    }

    fn schedule_step(&mut self, id: NodeId, after: Duration) {
        if let Some(leaf) = self.leaves.get_mut(&id) {
            if !leaf.stepping {
                leaf.stepping = true;
                self.clock.at(after, Event::Step(id));
            }
        }
    }

    /// Leaf `leaf` leaves its supernode on its own (redirected, or promoting).
    fn leave(&mut self, leaf: NodeId) {
        let attached = self.leaves.get_mut(&leaf).and_then(|l| l.attached.take());
        if let Some((sn, key)) = attached {
            self.clock
                .at(self.config.latency, Event::Depart(sn, leaf, key));
        }
    }

    fn demote(&mut self, id: NodeId, plan: Demotion) {
        let Some(sn) = self.sns.remove(&id) else {
            return;
        };
        self.stats.demoted += 1;
        for peer in sn.core.overlay().peers() {
            self.clock
                .at(self.config.latency, Event::PeerDown(peer.node, id));
        }
        for (leaf, to) in plan.moves {
            let redirect = (id, to, plan.reason.clone());
            self.clock
                .at(self.config.latency, Event::Redirected(leaf, redirect));
        }
        let delay = self.config.election.heir_delay();
        if let Some(leaf) = self.leaves.get_mut(&id) {
            leaf.election = LeafElection::new(id, leaf.eligible, delay, Vec::new());
            leaf.election
                .on_redirected(id, plan.supernodes.clone(), plan.reason);
            leaf.heirs.clear();
            leaf.supernodes = plan.supernodes;
            leaf.stepping = false;
        }
        self.schedule_step(id, Duration::ZERO);
    }

    fn handle(&mut self, event: Event) {
        self.stats.events += 1;
        let now = self.clock.instant();
        let latency = self.config.latency;
        match event {
            Event::Tick(id, generation) => {
                let Some(sn) = self.sns.get_mut(&id).filter(|s| s.generation == generation) else {
                    return;
                };
                let actions = sn.core.tick(now);
                self.execute(id, actions);
                self.clock.at(OVERLAY_TICK, Event::Tick(id, generation));
            }
            Event::DemoteCheck(id, generation) => {
                let Some(sn) = self.sns.get_mut(&id).filter(|s| s.generation == generation) else {
                    return;
                };
                match sn.core.demotion(now) {
                    Some(plan) => self.demote(id, plan),
                    None => self
                        .clock
                        .at(DEMOTE_CHECK_EVERY, Event::DemoteCheck(id, generation)),
                }
            }
            Event::Notify(id, generation) => {
                let Some(sn) = self.sns.get_mut(&id).filter(|s| s.generation == generation) else {
                    return;
                };
                let notice = (
                    sn.core.succession(MAX_SUCCESSION, now),
                    sn.core.peer_providers(MAX_SUCCESSION, now),
                );
                if notice != sn.notice {
                    sn.notice = notice;
                    sn.notice_version += 1;
                }
                let version = sn.notice_version;
                let notice = sn.notice.clone();
                let mut members: Vec<NodeId> = sn.members.keys().copied().collect();
                members.sort();
                for leaf_id in members {
                    let Some(leaf) = self.leaves.get_mut(&leaf_id) else {
                        continue;
                    };
                    if leaf.seen_notice != (id, version) {
                        leaf.seen_notice = (id, version);
                        let (heirs, supernodes) = notice.clone();
                        self.clock
                            .at(latency, Event::Succession(leaf_id, id, heirs, supernodes));
                    }
                }
                self.clock.at(NOTICE_EVERY, Event::Notify(id, generation));
            }
            Event::Peer(from, to, msg) => {
                if let Some(sn) = self.sns.get_mut(&to) {
                    let actions = sn.core.peer_message(from, msg, now);
                    self.execute(to, actions);
                }
            }
            Event::DialArrives(from, to) => {
                let accepted = self.sns.contains_key(&from)
                    && self.sns.get(&to).is_some_and(|sn| {
                        !sn.core.is_retired() && sn.core.overlay().wants_peer(&from, now)
                    });
                if accepted {
                    // The dialler hears of the peering before any message the acceptor
                    // sends on it (same due time, earlier in the queue).
                    self.clock.at(latency, Event::PeerUp(from, to));
                    self.handle(Event::PeerUp(to, from));
                } else {
                    let took = if self.dead.contains(&to) {
                        JOIN_TIMEOUT
                    } else {
                        latency
                    };
                    self.clock.at(took, Event::DialFailed(from, to));
                }
            }
            Event::PeerUp(at, peer) => {
                if !self.sns.contains_key(&peer) {
                    return;
                }
                let peer_addr = self.addrs[&peer];
                let Some(sn) = self.sns.get_mut(&at) else {
                    return;
                };
                let actions = sn.core.peer_up(peer, peer_addr, now);
                let handover = sn.core.handover_on_peering(peer, now);
                self.execute(at, actions);
                if let Some((moved, reason)) = handover {
                    self.stats.handed_over += moved.len();
                    let to = vec![Provider::new(peer, peer_addr)];
                    for leaf in moved {
                        let redirect = (at, to.clone(), reason.clone());
                        self.clock.at(latency, Event::Redirected(leaf, redirect));
                    }
                }
            }
            Event::DialFailed(at, peer) => {
                if let Some(sn) = self.sns.get_mut(&at) {
                    sn.core.overlay_mut().on_dial_failed(&peer, now);
                }
            }
            Event::PeerDown(at, peer) => {
                if let Some(sn) = self.sns.get_mut(&at) {
                    let actions = sn.core.peer_down(&peer, now);
                    self.execute(at, actions);
                }
            }
            Event::Succession(leaf_id, from, heirs, supernodes) => {
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    if leaf.attached.is_some_and(|(sn, _)| sn == from) {
                        leaf.heirs = heirs;
                        leaf.supernodes = supernodes;
                    }
                }
            }
            Event::Lost(leaf_id, sn) => {
                let addr = self.addrs[&sn];
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    if leaf.attached.is_some_and(|(at, _)| at == sn) {
                        leaf.attached = None;
                        leaf.election.on_lost(Provider::new(sn, addr), now);
                        self.schedule_step(leaf_id, Duration::ZERO);
                    }
                }
            }
            Event::Step(id) => self.step(id),
            Event::Joined(leaf_id, sn, key, at) => {
                if !self.sns.contains_key(&sn) || self.dead.contains(&leaf_id) {
                    self.handle(Event::JoinFailed(leaf_id));
                    return;
                }
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    leaf.stepping = false;
                    leaf.attached = Some((sn, key));
                    leaf.election.on_joined(at, sn);
                    self.clock.at(latency, Event::Register(leaf_id, sn, key));
                }
            }
            Event::Register(leaf_id, sn_id, key) => {
                let (Some(sn), Some(leaf)) = (self.sns.get_mut(&sn_id), self.leaves.get(&leaf_id))
                else {
                    return;
                };
                let entries = leaf.entries.clone();
                sn.core.answer(key, &Request::Register { entries });
            }
            Event::JoinFailed(leaf_id) => {
                if self.dead.contains(&leaf_id) {
                    return;
                }
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    leaf.stepping = false;
                    let wait = leaf.election.on_join_failed(now).unwrap_or(Duration::ZERO);
                    self.schedule_step(leaf_id, wait);
                }
            }
            Event::Redirected(leaf_id, (from, to, reason)) => {
                let follows = self
                    .leaves
                    .get(&leaf_id)
                    .is_some_and(|l| l.attached.is_some_and(|(sn, _)| sn == from));
                if follows {
                    self.leave(leaf_id);
                    if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                        leaf.election.on_redirected(from, to, reason);
                    }
                    self.schedule_step(leaf_id, Duration::ZERO);
                }
            }
            Event::PromoteAsked(leaf_id, from) => {
                let asked = self
                    .leaves
                    .get(&leaf_id)
                    .is_some_and(|l| l.eligible && l.attached.is_some_and(|(sn, _)| sn == from));
                if !asked || self.sns.contains_key(&leaf_id) {
                    return;
                }
                self.leave(leaf_id);
                let own = self.leaves.get(&leaf_id).map(|l| l.entries.clone());
                let host = Provider::new(from, self.addrs[&from]);
                self.promote(leaf_id, &own.unwrap_or_default(), &[host]);
            }
            Event::Depart(sn_id, leaf_id, key) => {
                if let Some(sn) = self.sns.get_mut(&sn_id) {
                    if sn.members.get(&leaf_id) == Some(&key) {
                        sn.members.remove(&leaf_id);
                    }
                    sn.core.depart(leaf_id, key);
                    while sn.core.drain_step() {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
