//! The many-node harness: `cargo bench --bench overlay [-- --quick]`.
//!
//! 1. In-memory network, tokio's paused clock: many supernodes, each a real `Supernode`
//!    (index + overlay state machine), messages delivered after a virtual latency; leaves
//!    register through the real service path. Run once with routing filters and once with
//!    flooding.
//! 2. Real QUIC on loopback: supernodes are full `kazoo` nodes, leaves are QUIC connections
//!    that join, register and search through the wire protocol.
//! 3. One supernode, 10,000 leaves × 100 files: registration time, memory per entry, local
//!    query throughput and p99.
//!
//! For every query the harness knows which supernodes hold a match and which of them are
//! within the hop limit of the origin (breadth-first over the final peer graph), so it
//! prints recall (queries that found content within reach; share of its sources found),
//! latency, and query messages per query next to the number of supernodes holding a match.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kazoo_common::config::{Routing, SupernodeConfig};
use kazoo_common::wire::{Hit, PeerMessage, Provider, Request, ShareEntry};
use kazoo_common::{ContentId, NodeId};
use kazoo_supernode::{Action, Admission, OverlayConfig, Supernode};
use tokio::sync::{mpsc, oneshot};

#[path = "common/mod.rs"]
mod common;
use common::{addr, node, percentile, resident_kib, Rng};

const WORDS: &[&str] = &[
    "love", "night", "dance", "blue", "river", "dream", "fire", "summer", "city", "heart", "rain",
    "gold", "shadow", "light", "wild", "ocean", "road", "star", "winter", "echo", "storm",
    "velvet", "neon", "silver", "paper", "ghost", "garden", "mirror", "thunder", "honey",
];

/// A file in the generated catalogue: a unique tag word plus common words.
#[derive(Clone)]
struct File {
    entry: ShareEntry,
    tag: String,
}

fn catalogue(count: usize, rng: &mut Rng) -> Vec<File> {
    (0..count)
        .map(|i| {
            let tag = format!("t{i:x}z");
            let name = format!(
                "{} {} {} {tag}.mp3",
                WORDS[rng.below(WORDS.len())],
                WORDS[rng.below(WORDS.len())],
                WORDS[rng.below(WORDS.len())]
            );
            let entry = ShareEntry {
                id: ContentId::from(blake3::hash(name.as_bytes())),
                size: 1000 + i as u64,
                name,
            };
            File { entry, tag }
        })
        .collect()
}

/// Supernodes within `hops` of `origin` in `graph` (origin included).
fn within(graph: &HashMap<NodeId, Vec<NodeId>>, origin: NodeId, hops: u8) -> HashSet<NodeId> {
    let mut seen = HashSet::from([origin]);
    let mut frontier = VecDeque::from([(origin, 0u8)]);
    while let Some((at, d)) = frontier.pop_front() {
        if d == hops {
            continue;
        }
        for next in graph.get(&at).into_iter().flatten() {
            if seen.insert(*next) {
                frontier.push_back((*next, d + 1));
            }
        }
    }
    seen
}

/// What one run of queries measured.
#[derive(Default)]
struct Outcome {
    queries: usize,
    in_reach: usize,
    found: usize,
    sources_expected: usize,
    sources_found: usize,
    latency_ms: Vec<f64>,
    messages: Vec<f64>,
    holders: Vec<f64>,
}

impl Outcome {
    fn record(
        &mut self,
        hits: &[Hit],
        id: ContentId,
        holders_in_reach: usize,
        sources_in_reach: usize,
        ms: f64,
        messages: u64,
    ) {
        self.queries += 1;
        self.latency_ms.push(ms);
        self.messages.push(messages as f64);
        self.holders.push(holders_in_reach as f64);
        if holders_in_reach == 0 {
            return;
        }
        self.in_reach += 1;
        self.sources_expected += sources_in_reach;
        let merged = kazoo_supernode::merge_hits(hits.to_vec());
        if let Some(hit) = merged.iter().find(|h| h.id == id) {
            self.found += 1;
            self.sources_found += (hit.sources as usize).min(sources_in_reach);
        }
    }

    fn print(&self, title: &str) {
        let mut lat = self.latency_ms.clone();
        lat.sort_by(|a, b| a.total_cmp(b));
        let msgs: f64 = self.messages.iter().sum::<f64>() / self.queries.max(1) as f64;
        let holders: f64 = self.holders.iter().sum::<f64>() / self.queries.max(1) as f64;
        println!(
            "{title:<34} {:>7} {:>8.2}% {:>8.2}% {:>9.1} {:>9.1} {:>9.1} {:>9.2} {:>7.2}",
            self.queries,
            100.0 * self.found as f64 / self.in_reach.max(1) as f64,
            100.0 * self.sources_found as f64 / self.sources_expected.max(1) as f64,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            msgs,
            holders,
            msgs / holders.max(1e-9),
        );
    }
}

fn print_header(first: &str) {
    println!(
        "{first:<34} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "queries", "found", "sources", "p50 ms", "p99 ms", "msgs/q", "holders", "ratio"
    );
}

// ---------------------------------------------------------------- in-memory network

enum Event {
    PeerUp(NodeId, SocketAddr),
    PeerDown(NodeId),
    Message(NodeId, PeerMessage),
    Query(Vec<String>, oneshot::Sender<Vec<Hit>>),
}

/// One direction of an in-memory link: events with the time they are due.
type Pipe = mpsc::UnboundedSender<(tokio::time::Instant, Event)>;
/// A supernode's own queries in progress: hits so far and where to send them.
type LocalQueries = HashMap<u64, (Vec<Hit>, Option<oneshot::Sender<Vec<Hit>>>)>;

/// The in-memory network: one inbox per supernode, links as unordered pairs, and one FIFO
/// pipe per direction of a link (messages arrive in order, `latency` after being sent).
/// Locks one simulated supernode's core.
fn lock(sn: &Mutex<Supernode>) -> std::sync::MutexGuard<'_, Supernode> {
    sn.lock().unwrap_or_else(|p| p.into_inner())
}

struct Mem {
    inboxes: HashMap<NodeId, mpsc::UnboundedSender<Event>>,
    pipes: std::sync::Mutex<HashMap<(NodeId, NodeId), Pipe>>,
    sns: HashMap<NodeId, Arc<Mutex<Supernode>>>,
    addrs: HashMap<NodeId, SocketAddr>,
    links: std::sync::Mutex<HashSet<(NodeId, NodeId)>>,
    latency: Duration,
}

impl Mem {
    fn deliver(self: &Arc<Self>, from: NodeId, to: NodeId, event: Event) {
        let due = tokio::time::Instant::now() + self.latency;
        let mut pipes = self.pipes.lock().unwrap();
        let pipe = pipes.entry((from, to)).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Event)>();
            let inbox = self.inboxes.get(&to).cloned();
            tokio::spawn(async move {
                while let Some((due, event)) = rx.recv().await {
                    tokio::time::sleep_until(due).await;
                    if let Some(inbox) = &inbox {
                        let _ = inbox.send(event);
                    }
                }
            });
            tx
        });
        let _ = pipe.send((due, event));
    }

    /// Carries out `actions` of supernode `me`; hits and completions of local queries go to
    /// `local`.
    fn execute(self: &Arc<Self>, me: NodeId, actions: Vec<Action>, local: &mut LocalQueries) {
        for action in actions {
            match action {
                Action::Send(to, msg) => self.deliver(me, to, Event::Message(me, msg)),
                Action::Dial(p) => {
                    let now = tokio::time::Instant::now().into_std();
                    let key = (me.min(p.node), me.max(p.node));
                    let accepted = self
                        .sns
                        .get(&p.node)
                        .is_some_and(|sn| lock(sn).overlay().wants_peer(&me, now))
                        && self.links.lock().unwrap().insert(key);
                    if accepted {
                        self.deliver(me, p.node, Event::PeerUp(me, self.addrs[&me]));
                        self.deliver(p.node, me, Event::PeerUp(p.node, self.addrs[&p.node]));
                    } else if let Some(sn) = self.sns.get(&me) {
                        lock(sn).overlay_mut().on_dial_failed(&p.node, now);
                    }
                }
                Action::Shed(peer) => {
                    self.links
                        .lock()
                        .unwrap()
                        .remove(&(me.min(peer), me.max(peer)));
                    self.deliver(me, peer, Event::PeerDown(me));
                }
                // No downloads here: nothing dials back.
                Action::Disconnect(..) | Action::Connect { .. } => {}
                Action::Hits(q, hits) => local.entry(q).or_default().0.extend(hits),
                Action::Done(q) => {
                    if let Some((hits, Some(reply))) = local.remove(&q) {
                        let _ = reply.send(hits);
                    }
                }
            }
        }
    }
}

async fn run_supernode(net: Arc<Mem>, me: NodeId, mut inbox: mpsc::UnboundedReceiver<Event>) {
    let sn = Arc::clone(&net.sns[&me]);
    let mut local: LocalQueries = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            event = inbox.recv() => {
                let now = tokio::time::Instant::now().into_std();
                let actions = match event {
                    None => return,
                    Some(Event::PeerUp(peer, addr)) => lock(&sn).peer_up(peer, addr, now),
                    Some(Event::PeerDown(peer)) => lock(&sn).peer_down(&peer, now),
                    Some(Event::Message(from, msg)) => lock(&sn).peer_message(from, msg, now),
                    Some(Event::Query(words, reply)) => {
                        let (q, actions) = lock(&sn).start_query(&words, 50, now);
                        local.insert(q, (Vec::new(), Some(reply)));
                        actions
                    }
                };
                net.execute(me, actions, &mut local);
            }
            _ = tick.tick() => {
                let actions = lock(&sn).tick(tokio::time::Instant::now().into_std());
                net.execute(me, actions, &mut local);
            }
        }
    }
}

struct MemRun {
    sns: usize,
    leaves: usize,
    files_per_leaf: usize,
    queries: usize,
}

fn mem_network(run: &MemRun, routing: Routing, seed: u64) -> (Outcome, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut rng = Rng(seed);
        let config = SupernodeConfig {
            max_leaves: run.leaves,
            ..SupernodeConfig::default()
        };
        let overlay = OverlayConfig {
            routing,
            ..OverlayConfig::default()
        };
        let mut inboxes = HashMap::new();
        let mut receivers = Vec::new();
        let mut sns = HashMap::new();
        let mut addrs = HashMap::new();
        for n in 0..run.sns {
            let (tx, rx) = mpsc::unbounded_channel();
            inboxes.insert(node(n), tx);
            receivers.push((node(n), rx));
            sns.insert(
                node(n),
                Arc::new(Mutex::new(Supernode::new(
                    node(n),
                    config.clone(),
                    4710,
                    overlay.clone(),
                ))),
            );
            addrs.insert(node(n), addr(n));
        }
        // Leaves: each on a random supernode, sharing files from a catalogue where some
        // files are shared by several leaves.
        let unique = run.leaves * run.files_per_leaf / 2;
        let files = catalogue(unique, &mut rng);
        let mut holders: HashMap<ContentId, Vec<NodeId>> = HashMap::new();
        for leaf in 0..run.leaves {
            let sn_at = rng.below(run.sns);
            let mut sn = lock(&sns[&node(sn_at)]);
            let leaf_id = node(1_000_000 + leaf);
            let Admission::Admitted(key) =
                sn.admit(leaf_id, addr(1_000_000 + leaf), 0, Instant::now())
            else {
                panic!("leaf refused");
            };
            let entries: Vec<ShareEntry> = (0..run.files_per_leaf)
                .map(|_| files[rng.below(unique)].entry.clone())
                .collect();
            for e in &entries {
                holders.entry(e.id).or_default().push(node(sn_at));
            }
            sn.answer(key, &Request::Register { entries });
        }
        let now = tokio::time::Instant::now().into_std();
        for n in 0..run.sns {
            for _ in 0..3 {
                let other = rng.below(run.sns);
                lock(&sns[&node(n)]).overlay_mut().add_host(
                    Provider::new(node(other), addr(other)),
                    Duration::ZERO,
                    now,
                );
            }
        }
        let net = Arc::new(Mem {
            inboxes,
            pipes: Default::default(),
            sns,
            addrs,
            links: Default::default(),
            latency: Duration::from_millis(10),
        });
        for (me, rx) in receivers {
            tokio::spawn(run_supernode(Arc::clone(&net), me, rx));
        }
        // Let the mesh form and filters spread (virtual time).
        tokio::time::sleep(Duration::from_secs(30)).await;
        let graph: HashMap<NodeId, Vec<NodeId>> = net
            .sns
            .iter()
            .map(|(n, sn)| {
                (
                    *n,
                    lock(sn)
                        .overlay()
                        .peers()
                        .into_iter()
                        .map(|p| p.node)
                        .collect(),
                )
            })
            .collect();
        let filter_bytes = |net: &Mem| -> u64 {
            net.sns
                .values()
                .map(|sn| lock(sn).overlay().stats().filter_bytes_sent)
                .sum()
        };
        let queries_sent = |net: &Mem| -> u64 {
            net.sns
                .values()
                .map(|sn| lock(sn).overlay().stats().queries_sent)
                .sum()
        };
        // Filter traffic over one virtual minute with churn: every second, 1% of supernodes
        // see a leaf add a new file.
        let before = filter_bytes(&net);
        for second in 0..60 {
            for _ in 0..(run.sns / 100).max(1) {
                let mut sn = lock(&net.sns[&node(rng.below(run.sns))]);
                let leaf = node(2_000_000 + second * 1000 + rng.below(1000));
                if let Admission::Admitted(key) =
                    sn.admit(leaf, addr(2_000_000 + second * 1000), 0, Instant::now())
                {
                    let extra = catalogue(1, &mut rng).remove(0).entry;
                    sn.answer(
                        key,
                        &Request::Register {
                            entries: vec![ShareEntry {
                                name: format!("{} churn{second}", extra.name),
                                ..extra
                            }],
                        },
                    );
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let per_sn_minute = (filter_bytes(&net) - before) as f64 / run.sns as f64;
        let hop_limit = OverlayConfig::default().hop_limit;
        let mut outcome = Outcome::default();
        for _ in 0..run.queries {
            let file = &files[rng.below(unique)];
            let Some(held_by) = holders.get(&file.entry.id) else {
                continue;
            };
            let origin = node(rng.below(run.sns));
            let reach = within(&graph, origin, hop_limit);
            let holders_in_reach: HashSet<NodeId> = held_by
                .iter()
                .filter(|n| reach.contains(n))
                .copied()
                .collect();
            let sources_in_reach = held_by.iter().filter(|n| reach.contains(n)).count();
            let words = vec![
                file.tag.clone(),
                file.entry.name.split(' ').next().unwrap_or("").to_string(),
            ];
            let sent_before = queries_sent(&net);
            let started = tokio::time::Instant::now();
            let (tx, rx) = oneshot::channel();
            let _ = net.inboxes[&origin].send(Event::Query(words, tx));
            let hits = rx.await.unwrap_or_default();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let messages = queries_sent(&net) - sent_before;
            outcome.record(
                &hits,
                file.entry.id,
                holders_in_reach.len(),
                sources_in_reach,
                ms,
                messages,
            );
        }
        (outcome, per_sn_minute)
    })
}

// ---------------------------------------------------------------- one supernode at scale

fn single_supernode(leaves: usize, files: usize, queries: usize) {
    let mut rng = Rng(42);
    let config = SupernodeConfig {
        max_leaves: leaves,
        ..SupernodeConfig::default()
    };
    let mut sn = Supernode::new(node(0), config, 4710, OverlayConfig::default());
    let base = resident_kib();
    let catalogue = catalogue(leaves * files, &mut rng);
    let catalogue_kib = resident_kib().saturating_sub(base);
    let started = Instant::now();
    for leaf in 0..leaves {
        let Admission::Admitted(key) = sn.admit(node(1 + leaf), addr(1 + leaf), 0, Instant::now())
        else {
            panic!("refused")
        };
        let entries: Vec<ShareEntry> = catalogue[leaf * files..(leaf + 1) * files]
            .iter()
            .map(|f| f.entry.clone())
            .collect();
        sn.answer(key, &Request::Register { entries });
    }
    let register = started.elapsed().as_secs_f64();
    let entries = sn.stats().entries;
    let used = resident_kib().saturating_sub(base + catalogue_kib) as f64 * 1024.0;
    let mut lat = Vec::with_capacity(queries);
    let started = Instant::now();
    let mut found = 0;
    for _ in 0..queries {
        let f = &catalogue[rng.below(catalogue.len())];
        let words = vec![
            f.tag.clone(),
            f.entry.name.split(' ').next().unwrap_or("").to_string(),
        ];
        let t = Instant::now();
        let hits = sn.search(&words, 50).unwrap_or_default();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        found += usize::from(hits.iter().any(|h| h.id == f.entry.id));
    }
    let qps = queries as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!("\none supernode: {leaves} leaves x {files} files");
    println!(
        "{:<44} {:>14} {:>12} {:>8}",
        "measurement", "value", "target", "ratio"
    );
    println!(
        "{:<44} {:>14} {:>12} {:>8}",
        "index entries", entries, "1000000", ""
    );
    println!(
        "{:<44} {:>14.2} {:>12} {:>8}",
        "registration, seconds", register, "", ""
    );
    println!(
        "{:<44} {:>14.0} {:>12} {:>8.2}",
        "resident bytes per entry",
        used / entries.max(1) as f64,
        "<= 300",
        used / entries.max(1) as f64 / 300.0
    );
    println!(
        "{:<44} {:>14.0} {:>12} {:>8.2}",
        "local queries per second (one core)",
        qps,
        ">= 20000",
        qps / 20000.0
    );
    println!(
        "{:<44} {:>14.1} {:>12} {:>8.2}",
        "local query p50, microseconds",
        percentile(&lat, 0.5),
        "",
        ""
    );
    println!(
        "{:<44} {:>14.1} {:>12} {:>8.2}",
        "local query p99, microseconds",
        percentile(&lat, 0.99),
        "<= 1000",
        percentile(&lat, 0.99) / 1000.0
    );
    println!(
        "{:<44} {:>14} {:>12} {:>8}",
        "queries that found their file",
        format!("{found}/{queries}"),
        "",
        ""
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mem = if quick {
        MemRun {
            sns: 100,
            leaves: 2_000,
            files_per_leaf: 5,
            queries: 200,
        }
    } else {
        MemRun {
            sns: 500,
            leaves: 20_000,
            files_per_leaf: 5,
            queries: 500,
        }
    };
    println!(
        "kazoo overlay harness: in-memory network, {} supernodes, {} leaves x {} files, 10 ms links, paused clock, hop limit {}",
        mem.sns, mem.leaves, mem.files_per_leaf, OverlayConfig::default().hop_limit
    );
    print_header("routing");
    let (filters, filter_bytes) = mem_network(&mem, Routing::Filters, 7);
    filters.print("filters");
    let (flood, _) = mem_network(&mem, Routing::Flood, 7);
    flood.print("flood");
    println!("filter traffic per supernode per minute (1% of SNs gain a file each second): {filter_bytes:.0} bytes");
    println!(
        "(latency in virtual ms; ratio = query messages / supernodes holding a match within reach)"
    );

    quic::run(
        if quick { 20 } else { 50 },
        if quick { 200 } else { 1000 },
        if quick { 100 } else { 300 },
    );

    let (leaves, files, queries) = if quick {
        (1_000, 100, 20_000)
    } else {
        (10_000, 100, 100_000)
    };
    single_supernode(leaves, files, queries);
}

#[path = "overlay/quic.rs"]
mod quic;
