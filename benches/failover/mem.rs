//! The failover run on an in-memory network: a discrete-event simulation on a virtual clock
//! that drives the same plain-state protocol logic as the QUIC path — `Supernode` (index,
//! overlay, succession, demotion) for every supernode and `LeafElection` for every leaf —
//! with messages delivered after a one-way latency, in order per link.
//!
//! What the simulation stands in for: a dial is answered after two round trips (QUIC + the
//! `Hello` exchange), a dead node's dial times out after 2 s like `JOIN_TIMEOUT`, a killed
//! node is noticed by each connected node after the QUIC idle timeout less the time since its
//! last keep-alive (uniform in [idle − keep-alive, idle]), succession notices go out every
//! 500 ms when they change, and the overlay ticks every 100 ms — the QUIC path's timings.
//! Growth (a full supernode asking a leaf to promote) does not occur: no supernode is full.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::config::{ElectionConfig, SupernodeConfig};
use kazoo_common::wire::{Hit, PeerMessage, Provider, Request, ShareEntry, MAX_SUCCESSION};
use kazoo_common::{ContentId, NodeId};
use kazoo_supernode::election::{LeafElection, Redirect, Step, Target};
use kazoo_supernode::{Action, Admission, DemotePolicy, LeafKey, OverlayConfig, Supernode};

use crate::common::{addr, node, Rng};

/// Size and shape of one run.
pub struct MemRun {
    /// Configured supernodes at the start.
    pub supernodes: usize,
    /// Auto leaves per supernode.
    pub leaves_per_sn: usize,
    /// Supernodes killed one after another.
    pub kills: usize,
    /// One-way latency of every link.
    pub latency: Duration,
}

/// What the run measured.
pub struct MemOutcome {
    /// Seconds from each kill until every orphan was attached and its files searchable.
    pub times: Vec<f64>,
    /// Files indexed by no live supernode at the end.
    pub lost: usize,
    /// Files a search from the observer found at the end (the hop limit may leave a few
    /// supernodes out of reach), of `files`.
    pub found: usize,
    /// Files shared in all.
    pub files: usize,
    /// Leaves that promoted themselves.
    pub promoted: usize,
    /// Supernodes that demoted again (under-used).
    pub demoted: usize,
    /// Events processed and wall-clock seconds the simulation took.
    pub events: u64,
    pub wall: f64,
}

const TICK: Duration = Duration::from_millis(100);
const NOTICE_EVERY: Duration = Duration::from_millis(500);
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);
const GIVE_UP: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_millis(2000);
const KEEP_ALIVE: Duration = Duration::from_millis(500);

/// How long after a kill a connected node notices it.
fn detect(rng: &mut Rng) -> Duration {
    IDLE - KEEP_ALIVE + Duration::from_micros(rng.next() % KEEP_ALIVE.as_micros() as u64)
}

enum Event {
    Tick(NodeId, u64),
    Notify(NodeId, u64),
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
}

struct Due {
    at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest first out of the max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Sn {
    sn: Supernode,
    /// Tick loops of an earlier incarnation stop when this changes.
    generation: u64,
    members: HashMap<NodeId, LeafKey>,
    notice: (Vec<Provider>, Vec<Provider>),
    notice_version: u64,
}

struct Leaf {
    election: LeafElection,
    attached: Option<(NodeId, LeafKey)>,
    seen_notice: (NodeId, u64),
    heirs: Vec<Provider>,
    supernodes: Vec<Provider>,
    entries: Vec<ShareEntry>,
    stepping: bool,
}

struct Sim {
    now: Duration,
    base: Instant,
    seq: u64,
    queue: BinaryHeap<Due>,
    rng: Rng,
    latency: Duration,
    config: SupernodeConfig,
    election: ElectionConfig,
    sns: HashMap<NodeId, Sn>,
    dead: HashSet<NodeId>,
    leaves: HashMap<NodeId, Leaf>,
    addrs: HashMap<NodeId, SocketAddr>,
    by_addr: HashMap<SocketAddr, NodeId>,
    /// Local queries of the observer: hits so far, done.
    queries: HashMap<u64, (Vec<Hit>, bool)>,
    generation: u64,
    events: u64,
    promoted: usize,
    demoted: usize,
}

impl Sim {
    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn at(&mut self, delay: Duration, event: Event) {
        self.seq += 1;
        self.queue.push(Due {
            at: self.now + delay,
            seq: self.seq,
            event,
        });
    }

    fn start_sn(&mut self, id: NodeId, auto: bool, own: &[ShareEntry]) {
        let overlay = OverlayConfig {
            max_peers: self.config.max_peers,
            hop_limit: self.config.hop_limit,
            ..OverlayConfig::default()
        };
        let sn = Supernode::new(id, self.config.clone(), 4710, overlay);
        if auto {
            sn.set_demote_policy(DemotePolicy {
                below_pct: self.election.demote_below_pct,
                after: self.election.demote_after(),
            });
        }
        sn.set_own_shares(own, &[]);
        self.generation += 1;
        let generation = self.generation;
        self.sns.insert(
            id,
            Sn {
                sn,
                generation,
                members: HashMap::new(),
                notice: (Vec::new(), Vec::new()),
                notice_version: 0,
            },
        );
        let phase = Duration::from_micros(self.rng.next() % 100_000);
        self.at(phase, Event::Tick(id, generation));
        self.at(phase, Event::Notify(id, generation));
    }

    fn execute(&mut self, me: NodeId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(to, msg) => self.at(self.latency, Event::Peer(me, to, msg)),
                Action::Dial(p) => self.at(self.latency, Event::DialArrives(me, p.node)),
                Action::Shed(peer) => self.at(self.latency, Event::PeerDown(peer, me)),
                Action::Disconnect(peer, _) => {
                    self.at(self.latency, Event::PeerDown(peer, me));
                    self.at(Duration::ZERO, Event::PeerDown(me, peer));
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
            }
        }
    }

    /// One round of join attempts, as `join_first` does it over QUIC: each group dialled at
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
            let others = self.leaves[&leaf].election.redirect_targets(&redirects);
            let (won, took) = self.dial_group(leaf, &others, &mut Vec::new());
            elapsed += took;
            winner = won;
        }
        match winner {
            Some((sn, key, addr)) => self.at(elapsed, Event::Joined(leaf, sn, key, addr)),
            None => self.at(elapsed, Event::JoinFailed(leaf)),
        }
    }

    fn dial_group(
        &mut self,
        leaf: NodeId,
        group: &[Target],
        redirects: &mut Vec<Provider>,
    ) -> (Option<(NodeId, LeafKey, SocketAddr)>, Duration) {
        let round_trips = self.latency * 4;
        let now = self.instant();
        let mut any_dead = false;
        for &(at, expected) in group {
            let Some(&target) = self.by_addr.get(&at) else {
                any_dead = true;
                continue;
            };
            if expected.is_some_and(|e| e != target) {
                continue;
            }
            if self.dead.contains(&target) {
                any_dead = true;
                continue;
            }
            let leaf_addr = self.addrs[&leaf];
            let capacity = self.election.bandwidth_kib;
            let Some(sn) = self.sns.get_mut(&target) else {
                continue;
            };
            match sn.sn.admit(leaf, leaf_addr, capacity, now) {
                Admission::Admitted(key) => {
                    // Every simulated leaf answers the supernode's dial back.
                    sn.sn.set_reachable(leaf, key, leaf_addr);
                    sn.members.insert(leaf, key);
                    return (Some((target, key, at)), round_trips);
                }
                Admission::Full(_) => {
                    redirects.extend(sn.sn.peer_providers(MAX_SUCCESSION));
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
        let now = self.instant();
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
                self.promoted += 1;
                self.start_sn(id, true, &own);
                let now = self.instant();
                if let Some(sn) = self.sns.get(&id) {
                    sn.sn.with_overlay(|o| {
                        for p in &hosts {
                            o.add_host(*p, Duration::ZERO, now);
                        }
                    });
                }
            }
            Step::Join { groups, .. } => {
                leaf.stepping = true;
                self.try_join(id, groups);
            }
        }
    }

    fn schedule_step(&mut self, id: NodeId, after: Duration) {
        if let Some(leaf) = self.leaves.get_mut(&id) {
            if !leaf.stepping {
                leaf.stepping = true;
                self.at(after, Event::Step(id));
            }
        }
    }

    fn demote(&mut self, id: NodeId, plan: kazoo_supernode::Demotion) {
        let Some(sn) = self.sns.remove(&id) else {
            return;
        };
        self.demoted += 1;
        for peer in sn.sn.with_overlay(|o| o.peers()) {
            self.at(self.latency, Event::PeerDown(peer.node, id));
        }
        for (leaf, to) in plan.moves {
            let redirect = (id, to, plan.reason.clone());
            self.at(self.latency, Event::Redirected(leaf, redirect));
        }
        let delay = self.election.heir_delay();
        let bootstrap = Vec::new();
        if let Some(leaf) = self.leaves.get_mut(&id) {
            leaf.election = LeafElection::new(id, true, delay, bootstrap);
            leaf.election
                .on_redirected(id, plan.supernodes.clone(), plan.reason);
            leaf.heirs.clear();
            leaf.supernodes = plan.supernodes;
            leaf.stepping = false;
        }
        self.schedule_step(id, Duration::ZERO);
    }

    fn handle(&mut self, event: Event) {
        self.events += 1;
        let now = self.instant();
        match event {
            Event::Tick(id, generation) => {
                let Some(sn) = self.sns.get(&id).filter(|s| s.generation == generation) else {
                    return;
                };
                let actions = sn.sn.tick(now);
                self.execute(id, actions);
                self.at(TICK, Event::Tick(id, generation));
            }
            Event::Notify(id, generation) => {
                let Some(sn) = self.sns.get_mut(&id).filter(|s| s.generation == generation) else {
                    return;
                };
                if let Some(plan) = sn.sn.demotion(now) {
                    self.demote(id, plan);
                    return;
                }
                let notice = (
                    sn.sn.succession(MAX_SUCCESSION),
                    sn.sn.peer_providers(MAX_SUCCESSION),
                );
                if notice != sn.notice {
                    sn.notice = notice;
                    sn.notice_version += 1;
                }
                let version = sn.notice_version;
                let notice = sn.notice.clone();
                let members: Vec<NodeId> = sn.members.keys().copied().collect();
                for leaf_id in members {
                    let Some(leaf) = self.leaves.get_mut(&leaf_id) else {
                        continue;
                    };
                    if leaf.seen_notice != (id, version) {
                        leaf.seen_notice = (id, version);
                        let (heirs, supernodes) = notice.clone();
                        self.at(
                            self.latency,
                            Event::Succession(leaf_id, id, heirs, supernodes),
                        );
                    }
                }
                self.at(NOTICE_EVERY, Event::Notify(id, generation));
            }
            Event::Peer(from, to, msg) => {
                if let Some(sn) = self.sns.get(&to) {
                    let actions = sn.sn.peer_message(from, msg, now);
                    self.execute(to, actions);
                }
            }
            Event::DialArrives(from, to) => {
                let accepted = self.sns.contains_key(&from)
                    && self
                        .sns
                        .get(&to)
                        .is_some_and(|sn| sn.sn.with_overlay(|o| o.wants_peer(&from, now)));
                if accepted {
                    // The dialler hears of the peering before any message the acceptor
                    // sends on it (same due time, earlier in the queue).
                    self.at(self.latency, Event::PeerUp(from, to));
                    self.handle(Event::PeerUp(to, from));
                } else {
                    let took = if self.dead.contains(&to) {
                        JOIN_TIMEOUT
                    } else {
                        self.latency
                    };
                    self.at(took, Event::DialFailed(from, to));
                }
            }
            Event::PeerUp(at, peer) => {
                if self.sns.contains_key(&peer) {
                    if let Some(sn) = self.sns.get(&at) {
                        let actions = sn.sn.peer_up(peer, self.addrs[&peer], now);
                        self.execute(at, actions);
                    }
                }
            }
            Event::DialFailed(at, peer) => {
                if let Some(sn) = self.sns.get(&at) {
                    sn.sn.with_overlay(|o| o.on_dial_failed(&peer, now));
                }
            }
            Event::PeerDown(at, peer) => {
                if let Some(sn) = self.sns.get(&at) {
                    let actions = sn.sn.peer_down(&peer, now);
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
                if !self.sns.contains_key(&sn) {
                    self.handle(Event::JoinFailed(leaf_id));
                    return;
                }
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    leaf.stepping = false;
                    leaf.attached = Some((sn, key));
                    leaf.election.on_joined(at, sn);
                    self.at(self.latency, Event::Register(leaf_id, sn, key));
                }
            }
            Event::Register(leaf_id, sn_id, key) => {
                let (Some(sn), Some(leaf)) = (self.sns.get(&sn_id), self.leaves.get(&leaf_id))
                else {
                    return;
                };
                let entries = leaf.entries.clone();
                sn.sn.answer(key, &Request::Register { entries });
            }
            Event::JoinFailed(leaf_id) => {
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    leaf.stepping = false;
                    let wait = leaf.election.on_join_failed(now).unwrap_or(Duration::ZERO);
                    self.schedule_step(leaf_id, wait);
                }
            }
            Event::Redirected(leaf_id, (from, to, reason)) => {
                if let Some(leaf) = self.leaves.get_mut(&leaf_id) {
                    if leaf.attached.is_some_and(|(sn, _)| sn == from) {
                        leaf.attached = None;
                        leaf.election.on_redirected(from, to, reason);
                        self.schedule_step(leaf_id, Duration::ZERO);
                    }
                }
            }
        }
    }

    fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        while self.queue.peek().is_some_and(|d| d.at <= until) {
            let Some(due) = self.queue.pop() else { break };
            self.now = due.at;
            self.handle(due.event);
        }
        self.now = until;
    }

    fn kill(&mut self, id: NodeId) {
        let Some(sn) = self.sns.remove(&id) else {
            return;
        };
        self.dead.insert(id);
        for leaf in sn.members.keys() {
            let after = detect(&mut self.rng);
            self.at(after, Event::Lost(*leaf, id));
        }
        for peer in sn.sn.with_overlay(|o| o.peers()) {
            let after = detect(&mut self.rng);
            self.at(after, Event::PeerDown(peer.node, id));
        }
    }

    /// A routed search from supernode `from`; the distinct files found.
    fn search(&mut self, from: NodeId, word: &str) -> usize {
        let now = self.instant();
        let Some(sn) = self.sns.get(&from) else {
            return 0;
        };
        let (q, actions) = sn.sn.start_query(&[word.to_owned()], 50, now);
        self.queries.insert(q, (Vec::new(), false));
        self.execute(from, actions);
        let limit = self.now + Duration::from_secs(10);
        while !self.queries[&q].1 && self.now < limit {
            self.run_for(self.latency);
        }
        let (hits, _) = self.queries.remove(&q).unwrap_or_default();
        let ids: HashSet<ContentId> = hits.iter().map(|h| h.id).collect();
        ids.len()
    }

    fn attached(&self, leaf: &NodeId) -> bool {
        self.sns.contains_key(leaf)
            || self.leaves[leaf]
                .attached
                .is_some_and(|(sn, _)| self.sns.contains_key(&sn))
    }
}

/// Runs the failover sequence on the in-memory network.
pub fn run(run: &MemRun) -> MemOutcome {
    let started = Instant::now();
    let config = SupernodeConfig::default();
    let mut sim = Sim {
        now: Duration::ZERO,
        base: Instant::now(),
        seq: 0,
        queue: BinaryHeap::new(),
        rng: Rng(0x2545_f491_4f6c_dd1d),
        latency: run.latency,
        config,
        election: ElectionConfig::default(),
        sns: HashMap::new(),
        dead: HashSet::new(),
        leaves: HashMap::new(),
        addrs: HashMap::new(),
        by_addr: HashMap::new(),
        queries: HashMap::new(),
        generation: 0,
        events: 0,
        promoted: 0,
        demoted: 0,
    };
    for n in 0..run.supernodes {
        sim.addrs.insert(node(n), addr(n));
        sim.by_addr.insert(addr(n), node(n));
        sim.start_sn(node(n), false, &[]);
    }
    let now = sim.instant();
    for n in 0..run.supernodes {
        for _ in 0..3 {
            let other = sim.rng.below(run.supernodes);
            let provider = Provider::new(node(other), addr(other));
            sim.sns[&node(n)]
                .sn
                .with_overlay(|o| o.add_host(provider, Duration::ZERO, now));
        }
    }
    let leaf_count = run.supernodes * run.leaves_per_sn;
    for i in 0..leaf_count {
        let home = i % run.supernodes;
        let id = node(1_000_000 + i);
        sim.addrs.insert(id, addr(1_000_000 + i));
        sim.by_addr.insert(addr(1_000_000 + i), id);
        let name = format!("group{home} file{i}.bin");
        let entry = ShareEntry {
            id: ContentId::from(blake3::hash(name.as_bytes())),
            size: 100,
            name,
        };
        let bootstrap = vec![(addr(home), Some(node(home)))];
        let election = LeafElection::new(id, true, sim.election.heir_delay(), bootstrap);
        sim.leaves.insert(
            id,
            Leaf {
                election,
                attached: None,
                seen_notice: (id, 0),
                heirs: Vec::new(),
                supernodes: Vec::new(),
                entries: vec![entry],
                stepping: false,
            },
        );
        let start = Duration::from_micros(sim.rng.next() % 1_000_000);
        sim.schedule_step(id, start);
    }
    // Let the mesh form, leaves join and register, filters spread.
    sim.run_for(Duration::from_secs(30));
    let observer = node(run.supernodes - 1);
    let mut times = Vec::new();
    for victim in 0..run.kills.min(run.supernodes - 1) {
        let victim_id = node(victim);
        let orphans: Vec<NodeId> = sim
            .sns
            .get(&victim_id)
            .map(|sn| sn.members.keys().copied().collect())
            .unwrap_or_default();
        let word = format!("group{victim}");
        sim.kill(victim_id);
        let killed = sim.now;
        let done = loop {
            sim.run_for(Duration::from_millis(50));
            if sim.now - killed > GIVE_UP {
                break None;
            }
            if orphans.iter().all(|o| sim.attached(o))
                && sim.search(observer, &word) >= run.leaves_per_sn
            {
                break Some(sim.now - killed);
            }
        };
        times.push(done.unwrap_or(GIVE_UP).as_secs_f64());
    }
    // At the end: is every file still indexed by a live supernode, and found by a search?
    sim.run_for(Duration::from_secs(5));
    let mut lost = 0;
    let mut found = 0;
    for group in 0..run.supernodes {
        let words = [format!("group{group}")];
        let indexed: HashSet<ContentId> = sim
            .sns
            .values()
            .flat_map(|s| s.sn.search(&words, 50).unwrap_or_default())
            .map(|h| h.id)
            .collect();
        lost += run.leaves_per_sn.saturating_sub(indexed.len());
        found += sim.search(observer, &words[0]);
    }
    MemOutcome {
        times,
        lost,
        found,
        files: leaf_count,
        promoted: sim.promoted,
        demoted: sim.demoted,
        events: sim.events,
        wall: started.elapsed().as_secs_f64(),
    }
}
