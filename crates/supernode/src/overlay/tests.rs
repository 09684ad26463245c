use std::collections::VecDeque;

use kazoo_common::wire::{ShareEntry, MAX_GOSSIP};
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
                Action::Shed(_) => {}
                Action::Dial(_) => {}
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
