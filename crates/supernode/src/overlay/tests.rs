use std::collections::VecDeque;

use kazoo_common::wire::{ShareEntry, HITS_PER_FRAME, MAX_GOSSIP};
use kazoo_common::ContentId;
use proptest::prelude::*;

use super::peers::SHED_AFTER;
use super::*;

/// Supernodes wired together in memory, messages delivered at once, in order.
struct Mesh {
    nodes: Vec<(NodeId, Overlay, Index)>,
    queue: VecDeque<(NodeId, NodeId, PeerMessage)>,
    hits: HashMap<u64, Vec<Hit>>,
    done: HashSet<u64>,
    disconnects: Vec<(NodeId, NodeId)>,
    now: Instant,
}

fn id(n: usize) -> NodeId {
    NodeId([n as u8 + 1; 32])
}

fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000 + n as u16))
}

impl Mesh {
    fn new(count: usize, routing: Routing, hop_limit: u8) -> Self {
        let config = OverlayConfig {
            routing,
            hop_limit,
            ..OverlayConfig::default()
        };
        Mesh {
            nodes: (0..count)
                .map(|n| (id(n), Overlay::new(id(n), config.clone()), Index::new()))
                .collect(),
            queue: VecDeque::new(),
            hits: HashMap::new(),
            done: HashSet::new(),
            disconnects: Vec::new(),
            now: Instant::now(),
        }
    }

    fn at(&self, node: NodeId) -> usize {
        self.nodes.iter().position(|(n, _, _)| *n == node).unwrap()
    }

    fn apply(&mut self, from: NodeId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(to, msg) => self.queue.push_back((from, to, msg)),
                Action::Hits(q, hits) => self.hits.entry(q).or_default().extend(hits),
                Action::Done(q) => {
                    self.done.insert(q);
                }
                Action::Disconnect(peer, _) => self.disconnects.push((from, peer)),
                Action::Shed(_) | Action::Dial(_) | Action::Connect { .. } => {}
            }
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        let now = self.now;
        let (ia, ib) = (id(a), id(b));
        let actions = {
            let (_, o, i) = &mut self.nodes[a];
            o.on_peer_up(ib, addr(b), i, now)
        };
        self.apply(ia, actions);
        let actions = {
            let (_, o, i) = &mut self.nodes[b];
            o.on_peer_up(ia, addr(a), i, now)
        };
        self.apply(ib, actions);
        self.run();
    }

    fn run(&mut self) {
        while let Some((from, to, msg)) = self.queue.pop_front() {
            let at = self.at(to);
            let now = self.now;
            let actions = {
                let (_, o, i) = &mut self.nodes[at];
                o.on_message(from, msg, i, now)
            };
            self.apply(to, actions);
        }
    }

    fn tick(&mut self) {
        for n in 0..self.nodes.len() {
            let now = self.now;
            let (me, o, i) = &mut self.nodes[n];
            let me = *me;
            let actions = o.tick(i, now);
            self.apply(me, actions);
        }
        self.run();
    }

    fn share(&mut self, n: usize, name: &str) -> ContentId {
        let entry = ShareEntry {
            id: ContentId::from(blake3::hash(name.as_bytes())),
            size: 1,
            name: name.into(),
        };
        let (_, _, index) = &mut self.nodes[n];
        let leaf = index.add_leaf(NodeId([200; 32]), addr(100 + n));
        index
            .register(leaf, std::slice::from_ref(&entry), 100)
            .unwrap();
        entry.id
    }

    fn search(&mut self, n: usize, words: &[&str]) -> (Vec<Hit>, u64) {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let before: u64 = self
            .nodes
            .iter()
            .map(|(_, o, _)| o.stats().queries_sent)
            .sum();
        let now = self.now;
        let (q, actions) = {
            let (_, o, i) = &mut self.nodes[n];
            o.start_query(&words, 50, i, now)
        };
        self.apply(id(n), actions);
        self.run();
        assert!(self.done.contains(&q), "query {q} not done");
        let after: u64 = self
            .nodes
            .iter()
            .map(|(_, o, _)| o.stats().queries_sent)
            .sum();
        (self.hits.remove(&q).unwrap_or_default(), after - before)
    }
}

#[test]
fn routed_search_reaches_two_hops_and_only_where_it_may_match() {
    // A line 0 - 1 - 2 - 3: node 0's query with two hops reaches 2 but not 3.
    let mut mesh = Mesh::new(4, Routing::Filters, 2);
    let far = mesh.share(2, "distant song.ogg");
    mesh.share(3, "too far away.ogg");
    mesh.share(1, "near tune.mp3");
    mesh.tick();
    for (a, b) in [(0, 1), (1, 2), (2, 3)] {
        mesh.connect(a, b);
    }
    mesh.tick();
    let (hits, sent) = mesh.search(0, &["distant", "SONG"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, far);
    assert_eq!(sent, 2, "0 -> 1 (reach) -> 2 (filter)");
    let (hits, _) = mesh.search(0, &[&far.to_hex()]);
    assert_eq!(hits.len(), 1);
    let (hits, _) = mesh.search(0, &["far", "away"]);
    assert!(hits.is_empty(), "beyond the hop limit");
    let (hits, sent) = mesh.search(0, &["nothing", "matches"]);
    assert!(hits.is_empty());
    assert_eq!(sent, 0, "no filter matches: nothing is sent");
    let (hits, sent) = mesh.search(0, &["near"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(sent, 1);
}

#[test]
fn flooding_sends_everywhere_and_loops_are_dropped() {
    // A triangle with a hop limit of 3: the query comes back around and is dropped.
    let mut mesh = Mesh::new(3, Routing::Flood, 3);
    let song = mesh.share(2, "loop song");
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        mesh.connect(a, b);
    }
    let (hits, sent) = mesh.search(0, &["loop"]);
    assert_eq!(hits.len(), 1, "answered once despite the loop: {hits:?}");
    assert_eq!(hits[0].id, song);
    assert!(sent >= 3, "flooding forwards to every peer ({sent})");
    // Each peer answered the query once (the copies 1 and 2 forward to each other are
    // duplicates); the origin answered none from a peer.
    let answered: Vec<u64> = mesh
        .nodes
        .iter()
        .map(|(_, o, _)| o.stats().queries_answered)
        .collect();
    assert_eq!(answered, [0, 1, 1]);
}

#[test]
fn filter_patches_follow_index_changes_and_peer_loss() {
    let mut mesh = Mesh::new(2, Routing::Filters, 2);
    mesh.connect(0, 1);
    let (hits, _) = mesh.search(0, &["later"]);
    assert!(hits.is_empty());
    mesh.share(1, "later file");
    mesh.tick();
    let (hits, sent) = mesh.search(0, &["later"]);
    assert_eq!((hits.len(), sent), (1, 1));
    let now = mesh.now;
    let actions = mesh.nodes[0].1.on_peer_down(&id(1), now);
    mesh.apply(id(0), actions);
    let (hits, sent) = mesh.search(0, &["later"]);
    assert_eq!((hits.len(), sent), (0, 0));
}

#[test]
fn query_floods_and_oversized_messages_drop_the_peer() {
    let mut mesh = Mesh::new(2, Routing::Filters, 2);
    mesh.connect(0, 1);
    let now = mesh.now;
    let overlay = &mut mesh.nodes[1].1;
    let index = Index::new();
    let mut dropped = false;
    for q in 0..1000u64 {
        let msg = PeerMessage::Query {
            id: q,
            origin: id(0),
            words: vec!["x".into()],
            max_results: 5,
            hops_left: 1,
            via: vec![],
        };
        let actions = overlay.on_message(id(0), msg, &index, now);
        if actions.iter().any(|a| matches!(a, Action::Disconnect(..))) {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a query flood disconnects the peer");
    assert!(!overlay.is_peer(&id(0)));
    assert!(
        !overlay.wants_peer(&id(0), now),
        "and it is not taken back at once"
    );

    let mut mesh = Mesh::new(2, Routing::Filters, 2);
    mesh.connect(0, 1);
    let big = PeerMessage::Supernodes(vec![Provider::new(id(5), addr(5)); MAX_GOSSIP + 1]);
    let actions = mesh.nodes[1].1.on_message(id(0), big, &Index::new(), now);
    assert!(actions.iter().any(|a| matches!(a, Action::Disconnect(..))));
}

#[test]
fn gossip_fills_the_host_cache_and_ticks_dial() {
    let mut mesh = Mesh::new(3, Routing::Filters, 2);
    mesh.connect(0, 1);
    mesh.connect(1, 2);
    // Node 2 learned of node 0 through node 1's gossip and dials it.
    let now = mesh.now;
    let actions = mesh.nodes[2].1.tick(&mut Index::new(), now);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Dial(p) if p.node == id(0))),
        "{actions:?}"
    );
}

proptest! {
    /// With filters, a query for content two hops away is always found (no false negatives),
    /// whatever the names.
    #[test]
    fn filters_have_no_false_negatives(names in proptest::collection::vec("[a-z]{2,8}( [a-z]{2,8}){0,2}", 1..12)) {
        let mut mesh = Mesh::new(3, Routing::Filters, 2);
        for (i, name) in names.iter().enumerate() {
            mesh.share(1 + i % 2, &format!("{name} n{i}"));
        }
        mesh.connect(0, 1);
        mesh.connect(1, 2);
        mesh.tick();
        for (i, name) in names.iter().enumerate() {
            let words: Vec<&str> = name.split(' ').chain(std::iter::once(format!("n{i}").leak() as &str)).collect();
            let (hits, _) = mesh.search(0, &words);
            prop_assert!(!hits.is_empty(), "{name} n{i} not found");
        }
    }
}

#[test]
fn a_peer_list_names_a_new_peer_only_after_the_reach_covering_it() {
    let mut mesh = Mesh::new(3, Routing::Filters, 2);
    let far = mesh.share(2, "beyond the river.ogg");
    mesh.connect(0, 1);
    mesh.tick();
    mesh.connect(1, 2);
    // Node 1 has node 2's filter now, but node 0 has neither its reach patch nor a peer list
    // naming node 2: an origin never sees the adjacency before the reach.
    let view = |mesh: &Mesh| mesh.nodes[0].1.peers()[0].peers;
    assert_eq!(view(&mesh), 1, "node 1's list still names only node 0");
    mesh.tick();
    assert_eq!(view(&mesh), 2);
    let (hits, _) = mesh.search(0, &["river"]);
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![far]);
}

#[test]
fn incoming_peerings_may_exceed_max_peers_and_the_excess_is_shed() {
    let config = OverlayConfig {
        max_peers: 2,
        ..OverlayConfig::default()
    };
    let mut overlay = Overlay::new(id(0), config);
    let index = Index::new();
    let t0 = Instant::now();
    assert_eq!(overlay.max_incoming(), 4);
    for n in 1..=4 {
        assert!(overlay.wants_peer(&id(n), t0), "room for incoming peer {n}");
        overlay.on_peer_up(id(n), addr(n), &index, t0);
    }
    assert!(
        !overlay.wants_peer(&id(5), t0),
        "the incoming cap is reached"
    );
    // Peer 1 has more peers than max_peers (it can spare one); the others do not.
    let many = PeerMessage::Peers((10..14).map(id).collect());
    overlay.on_message(id(1), many, &index, t0);
    for n in 2..=4 {
        overlay.on_message(id(n), PeerMessage::Peers(vec![id(0)]), &index, t0);
    }
    let sheds = |actions: &[Action]| -> Vec<NodeId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Shed(n) => Some(*n),
                _ => None,
            })
            .collect()
    };
    assert!(
        sheds(&overlay.tick(&mut Index::new(), t0)).is_empty(),
        "young peerings stay"
    );
    let later = t0 + SHED_AFTER;
    assert_eq!(sheds(&overlay.tick(&mut Index::new(), later)), vec![id(1)]);
    assert!(!overlay.is_peer(&id(1)));
    // No other peer can spare a peering: nobody else is shed, though still over max_peers.
    assert!(sheds(&overlay.tick(&mut Index::new(), later)).is_empty());
    assert_eq!(overlay.peer_count(), 3);
}

/// Delivers `msg` from `from` to `to` directly (a hostile peer's message, made by hand).
fn inject(mesh: &mut Mesh, from: usize, to: usize, msg: PeerMessage) -> Vec<Action> {
    let now = mesh.now;
    let (_, o, i) = &mut mesh.nodes[to];
    o.on_message(id(from), msg, i, now)
}

/// Starts a query at node `n` and returns its id and the peers it was sent to (the
/// messages are then delivered).
fn query_targets(mesh: &mut Mesh, n: usize, words: &[&str]) -> (u64, Vec<NodeId>) {
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let now = mesh.now;
    let (q, actions) = {
        let (_, o, i) = &mut mesh.nodes[n];
        o.start_query(&words, 50, i, now)
    };
    let sent = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(to, PeerMessage::Query { .. }) => Some(*to),
            _ => None,
        })
        .collect();
    mesh.apply(id(n), actions);
    (q, sent)
}

/// Every position of a `bits`-bit space, as patches.
fn all_ones(bits: u32, reach: bool) -> Vec<PeerMessage> {
    let all: Vec<u32> = (0..1u32 << bits).collect();
    all.chunks(kazoo_common::wire::MAX_FILTER_PATCH)
        .map(|add| {
            let (add, remove) = (add.to_vec(), Vec::new());
            if reach {
                PeerMessage::Reach {
                    reset: false,
                    add,
                    remove,
                }
            } else {
                PeerMessage::Filter {
                    reset: false,
                    add,
                    remove,
                }
            }
        })
        .collect()
}

#[test]
fn an_all_ones_filter_gets_its_sender_dropped_and_no_queries() {
    // Node 0 peers with honest node 1 and hostile node 2.
    let mut mesh = Mesh::new(3, Routing::Filters, 2);
    let song = mesh.share(1, "honest song.ogg");
    mesh.tick();
    mesh.connect(0, 1);
    mesh.connect(0, 2);
    let mut dropped = false;
    for msg in all_ones(crate::filter::FILTER_BITS, false) {
        let actions = inject(&mut mesh, 2, 0, msg);
        dropped = actions
            .iter()
            .any(|a| matches!(a, Action::Disconnect(n, _) if *n == id(2)));
        mesh.apply(id(0), actions);
        if dropped {
            break;
        }
    }
    assert!(dropped, "a filter over MAX_FILTER_SET is a flood");
    assert!(!mesh.nodes[0].1.is_peer(&id(2)));
    // The honest peer still gets queries (exact-id lookups too); the hostile one none.
    for words in [
        vec!["honest"],
        vec!["nowhere"],
        vec![song.to_hex().leak() as &str],
    ] {
        let (_, sent) = query_targets(&mut mesh, 0, &words);
        assert!(!sent.contains(&id(2)), "{words:?} went to the flooder");
        assert_eq!(sent.contains(&id(1)), words[0] != "nowhere", "{words:?}");
        mesh.run();
    }
    let (hits, _) = mesh.search(0, &["honest"]);
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![song]);
}

#[test]
fn an_all_ones_reach_is_never_matched() {
    let mut mesh = Mesh::new(3, Routing::Filters, 2);
    let song = mesh.share(1, "honest song.ogg");
    mesh.tick();
    mesh.connect(0, 1);
    mesh.connect(0, 2);
    // Under the bound, a reach routes two-hop queries to its peer.
    let nowhere = crate::filter::position(b"nowhere");
    let sparse = PeerMessage::Reach {
        reset: true,
        add: vec![nowhere],
        remove: Vec::new(),
    };
    assert!(inject(&mut mesh, 2, 0, sparse).is_empty());
    assert_eq!(query_targets(&mut mesh, 0, &["nowhere"]).1, vec![id(2)]);
    mesh.run();
    for msg in all_ones(crate::filter::REACH_BITS, true) {
        assert!(inject(&mut mesh, 2, 0, msg).is_empty());
    }
    for words in [vec!["nowhere"], vec![song.to_hex().leak() as &str]] {
        let (_, sent) = query_targets(&mut mesh, 0, &words);
        assert!(!sent.contains(&id(2)), "{words:?} routed by a dense reach");
        mesh.run();
    }
}

#[test]
fn gossiped_hosts_are_only_candidates_until_a_peering_comes_up() {
    let mut overlay = Overlay::new(id(0), OverlayConfig::default());
    let index = Index::new();
    let t0 = Instant::now();
    overlay.on_peer_up(id(1), addr(1), &index, t0);
    let fake = |n: u16| {
        let mut node = [0xee; 32];
        node[..2].copy_from_slice(&n.to_le_bytes());
        let ip = [10, 9, (n >> 8) as u8, n as u8];
        Provider::new(NodeId(node), SocketAddr::from((ip, 4000)))
    };
    let fakes: Vec<Provider> = (0..1000).map(fake).collect();
    for chunk in fakes.chunks(MAX_GOSSIP) {
        let msg = PeerMessage::Supernodes(chunk.to_vec());
        assert!(overlay.on_message(id(1), msg, &index, t0).is_empty());
    }
    assert_eq!(
        overlay.candidate_count(),
        kazoo_common::wire::MAX_CANDIDATES_PER_PEER
    );
    let hosts = |o: &Overlay| -> Vec<NodeId> { o.hosts(t0).iter().map(|(p, _)| p.node).collect() };
    assert_eq!(hosts(&overlay), vec![id(1)], "no gossiped host is cached");
    let dialled: Vec<Provider> = overlay
        .tick(&mut Index::new(), t0)
        .into_iter()
        .filter_map(|a| match a {
            Action::Dial(p) => Some(p),
            _ => None,
        })
        .collect();
    assert!(dialled.len() >= 2 && dialled.iter().all(|p| fakes.contains(p)));
    // A failed dial leaves it out; a peering makes it a host.
    overlay.on_dial_failed(&dialled[0].node, t0);
    overlay.on_peer_up(dialled[1].node, dialled[1].addr, &index, t0);
    assert!(!hosts(&overlay).contains(&dialled[0].node));
    assert!(hosts(&overlay).contains(&dialled[1].node));
    assert_eq!(
        overlay.candidate_count(),
        kazoo_common::wire::MAX_CANDIDATES_PER_PEER - 1
    );
    // Many gossiping peers fill the candidates only up to the total bound.
    for p in 2..40 {
        overlay.on_peer_up(id(p), addr(p), &index, t0);
        let named: Vec<Provider> = (0..16).map(|k| fake(1000 + 16 * p as u16 + k)).collect();
        overlay.on_message(id(p), PeerMessage::Supernodes(named), &index, t0);
    }
    assert_eq!(
        overlay.candidate_count(),
        kazoo_common::wire::MAX_CANDIDATES
    );
}

#[test]
fn query_ids_come_from_a_keyed_stream() {
    let index = Index::new();
    let now = Instant::now();
    let ids = |key: [u8; 32]| -> Vec<u64> {
        let config = OverlayConfig {
            query_key: QueryKey(key),
            ..OverlayConfig::default()
        };
        let mut overlay = Overlay::new(id(0), config);
        (0..16)
            .map(|_| overlay.start_query(&["x".into()], 5, &index, now).0)
            .collect()
    };
    let (a, b) = (ids([1; 32]), ids([2; 32]));
    assert_eq!(
        a,
        ids([1; 32]),
        "the same key replays (the simulator relies on it)"
    );
    assert!(a.iter().all(|q| !b.contains(q)), "another key, other ids");
    assert!(a.windows(2).all(|w| w[1] != w[0].wrapping_add(1)));
    // Not the old formula, which anyone knowing the origin's id could compute ahead.
    for (n, q) in a.iter().enumerate() {
        let mut old = blake3::Hasher::new();
        old.update(id(0).as_bytes());
        old.update(&(n as u64 + 1).to_le_bytes());
        let old = u64::from_le_bytes(old.finalize().as_bytes()[..8].try_into().unwrap());
        assert_ne!(*q, old);
    }
}

#[test]
fn hits_from_a_peer_are_validated_and_bounded() {
    let mut mesh = Mesh::new(2, Routing::Filters, 2);
    mesh.share(1, "honest song.ogg");
    mesh.tick();
    mesh.connect(0, 1);
    let (q, sent) = query_targets(&mut mesh, 0, &["honest"]);
    assert_eq!(sent, vec![id(1)]);
    // Node 1 answers (lying) before its real answer is delivered.
    let forged = |n: u8| Hit {
        id: ContentId::from(blake3::hash(&[n])),
        size: 1,
        name: "\u{1b}[2J\u{202e}evil.exe".into(),
        sources: 4_000_000_000,
        providers: vec![
            Provider::new(NodeId([n; 32]), "224.0.0.1:4000".parse().unwrap()),
            Provider::new(
                NodeId([n.wrapping_add(1); 32]),
                "0.0.0.0:4001".parse().unwrap(),
            ),
        ],
    };
    let msg = PeerMessage::Hits {
        id: q,
        hits: vec![forged(1)],
    };
    let actions = inject(&mut mesh, 1, 0, msg);
    let [Action::Hits(got_q, hits)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(*got_q, q);
    let hit = &hits[0];
    assert_eq!(hit.sources, 1, "the claimed count is not believed");
    assert_eq!(hit.providers.len(), 1, "the multicast provider is dropped");
    assert_eq!(
        hit.providers[0].addr.ip(),
        addr(1).ip(),
        "0.0.0.0: the peer"
    );
    assert!(!hit.name.chars().any(|c| c.is_control() || c == '\u{202e}'));
    // At most 2 × max_results (100) hits from one peer are kept.
    let mut kept = hits.len();
    for frame in 0..3u8 {
        let hits = (0..HITS_PER_FRAME as u8)
            .map(|n| forged(frame * 64 + n))
            .collect();
        for a in inject(&mut mesh, 1, 0, PeerMessage::Hits { id: q, hits }) {
            if let Action::Hits(_, hits) = a {
                kept += hits.len();
            }
        }
    }
    assert_eq!(kept, 100);
    // Far more than an honest relay could send is a flood.
    let frame: Vec<Hit> = (0..HITS_PER_FRAME as u8).map(forged).collect();
    let mut dropped = false;
    for _ in 0..kazoo_common::wire::MAX_PEER_HITS / HITS_PER_FRAME + 1 {
        let msg = PeerMessage::Hits {
            id: q,
            hits: frame.clone(),
        };
        let actions = inject(&mut mesh, 1, 0, msg);
        if actions.iter().any(|a| matches!(a, Action::Disconnect(..))) {
            dropped = true;
            break;
        }
    }
    assert!(dropped);
}
