//! The failover run on the simulator ([`kazoo_supernode::sim`]): the same `Supernode` and
//! `LeafElection` decisions as the QUIC path, on a virtual clock with the runtime's timings.
//! Growth does not occur here: no supernode is full.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Provider, ShareEntry};
use kazoo_common::{ContentId, NodeId};
use kazoo_supernode::sim::{addr, node, Sim, SimConfig};

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

/// A scenario gives up on an orphan after this long.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Runs the failover sequence on the simulated network.
pub fn run(run: &MemRun) -> MemOutcome {
    let started = Instant::now();
    let mut sim = Sim::new(SimConfig {
        seed: 0x2545_f491_4f6c_dd1d,
        latency: run.latency,
        ..SimConfig::default()
    });
    for n in 0..run.supernodes {
        let hosts: Vec<Provider> = (0..3)
            .map(|_| {
                let other = sim.rng().below(run.supernodes);
                Provider::new(node(other), addr(other))
            })
            .collect();
        sim.add_supernode(node(n), addr(n), false, &hosts);
    }
    let leaf_count = run.supernodes * run.leaves_per_sn;
    for i in 0..leaf_count {
        let home = i % run.supernodes;
        let name = format!("group{home} file{i}.bin");
        let entry = ShareEntry {
            id: ContentId::from(blake3::hash(name.as_bytes())),
            size: 100,
            name,
        };
        let bootstrap = vec![(addr(home), Some(node(home)))];
        let start = Duration::from_micros(sim.rng().next_u64() % 1_000_000);
        let id = node(1_000_000 + i);
        sim.add_leaf(id, addr(1_000_000 + i), true, vec![entry], bootstrap, start);
    }
    // Let the mesh form, leaves join and register, filters spread.
    sim.run_for(Duration::from_secs(30));
    let observer = node(run.supernodes - 1);
    let mut times = Vec::new();
    for victim in 0..run.kills.min(run.supernodes - 1) {
        let victim_id = node(victim);
        let orphans: Vec<NodeId> = sim.members(&victim_id);
        let word = format!("group{victim}");
        sim.kill(victim_id);
        let killed = sim.elapsed();
        let done = loop {
            sim.run_for(Duration::from_millis(50));
            if sim.elapsed() - killed > GIVE_UP {
                break None;
            }
            if orphans.iter().all(|o| sim.attached(o))
                && sim.search(observer, &word) >= run.leaves_per_sn
            {
                break Some(sim.elapsed() - killed);
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
        let indexed: HashSet<ContentId> = sim.indexed(&words);
        lost += run.leaves_per_sn.saturating_sub(indexed.len());
        found += sim.search(observer, &words[0]);
    }
    let stats = sim.stats();
    MemOutcome {
        times,
        lost,
        found,
        files: leaf_count,
        promoted: stats.promoted,
        demoted: stats.demoted,
        events: stats.events,
        wall: started.elapsed().as_secs_f64(),
    }
}
