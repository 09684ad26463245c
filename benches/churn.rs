//! Churn benchmark: `cargo bench --bench churn`.
//!
//! Real `kazoo run` processes on loopback: 3 configured supernodes (`role = "supernode"`) and
//! 24 `auto` nodes, every one with `supernode.max_leaves = 8` (so the network must grow by
//! promoting auto nodes) and `share.rescan_secs = 1`. Each node shares a folder of files of
//! random content (unique content ids) whose names carry a word only that node uses.
//!
//! For 10 minutes (`-- --minutes N`; `-- --quick`: 1 minute and a shorter settle) a seeded
//! random stream of events (`-- --seed S`; the seed is printed), one every 0.5–2.5 s:
//! SIGKILL a supernode (any live node whose status says supernode), SIGKILL a leaf, restart a
//! killed node (same data dir, so the same key, and the same address), add a file to a live
//! node's share folder, delete one. At most a quarter of the nodes are down at once.
//! Meanwhile, one at a time, a random live node downloads a random file another live node
//! shares with the real `kazoo get --json HASH -o PATH` and the bytes are checked against the
//! hash. Then the events stop; every 5 s an audit pass runs until two in a row are clean or
//! the settle time (120 s; quick: 45 s) is over; the final audit counts a file lost only
//! after every other live node searched for it (definitions in `churn/audit.rs`).
//!
//! Measured while churning:
//! * after each supernode kill: the leaves its status named as their supernode (orphans);
//!   the seconds until every file of every orphan still alive is found from another node;
//! * after each delete: the seconds until searches from two different nodes in a row no
//!   longer list the owner as a provider of that content id;
//! * after each add: the seconds until a search from another node lists it.
//!
//! `-- --keep` keeps the run's folder (configs, data dirs, one log per node) and prints it.
//! The benchmark talks to nodes over their control sockets with the code the `kazoo` CLI
//! uses (no process per poll on a small machine); downloads run the real CLI.

#[path = "churn/audit.rs"]
mod audit;
#[path = "churn/cluster.rs"]
mod cluster;
#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{percentile, Rng};
use kazoo_common::{ContentId, NodeId};

use cluster::{lock, Shared, World};

/// Files each node starts with.
const FILES_AT_START: usize = 5;
/// Most files in one share folder (adds go elsewhere beyond it).
const MAX_FILES: usize = 16;
/// Seconds a tracker waits before giving up (samples count as this long).
const GIVE_UP: Duration = Duration::from_secs(60);
/// Poll period of the trackers.
const POLL: Duration = Duration::from_millis(250);
/// Longest a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// QUIC idle timeout (the default): a dead supernode cannot be noticed sooner.
const IDLE_TIMEOUT_S: f64 = 2.0;

struct Args {
    minutes: f64,
    settle: Duration,
    seed: u64,
    supernodes: usize,
    autos: usize,
    keep: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        minutes: 10.0,
        settle: Duration::from_secs(120),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000_007)
            .unwrap_or(1),
        supernodes: 3,
        autos: 24,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> f64 {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                args.minutes = 1.0;
                args.settle = Duration::from_secs(45);
            }
            "--minutes" => args.minutes = number("--minutes", it.next()),
            "--settle" => args.settle = Duration::from_secs_f64(number("--settle", it.next())),
            "--seed" => args.seed = number("--seed", it.next()) as u64,
            "--supernodes" => args.supernodes = (number("--supernodes", it.next()) as usize).max(1),
            "--autos" => args.autos = number("--autos", it.next()) as usize,
            "--keep" => args.keep = true,
            _ => {} // `cargo bench` passes `--bench`
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("kazoo-churn-")
        .tempdir()
        .expect("temp dir");
    eprintln!(
        "churn: seed {} ({} supernodes + {} auto nodes, {} min of churn), folder {}",
        args.seed,
        args.supernodes,
        args.autos,
        args.minutes,
        root.path().display()
    );
    let bin = cluster::install_binary(root.path()).expect("copying the kazoo binary");
    eprintln!("churn: running {}", bin.display());
    let world: Shared = Arc::new(Mutex::new(World::new(
        root.path(),
        args.supernodes,
        args.autos,
        FILES_AT_START,
        args.seed,
    )));
    let guard = cluster::Guard(Arc::clone(&world));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(&world, &args, started));
    drop(runtime);
    drop(guard);
    if args.keep {
        let kept = root.keep();
        println!(
            "kept the run's folder (configs, data, node logs): {}",
            kept.display()
        );
    }
}

async fn run(world: &Shared, args: &Args, started: Instant) {
    // Start-up: the supernodes, then the auto nodes, each once it answers.
    let count = lock(world).nodes.len();
    let starting = Instant::now();
    for i in 0..count {
        cluster::start(world, i).await.expect("start-up");
    }
    eprintln!(
        "churn: {count} nodes started one after another in {:.1} s",
        starting.elapsed().as_secs_f64()
    );
    let boot = Instant::now();
    let mut pass;
    loop {
        pass = audit::audit(world, false).await;
        if pass.clean() || boot.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "churn: network {} {:.1} s after the last start: {}",
        if pass.clean() {
            "converged"
        } else {
            "NOT converged"
        },
        boot.elapsed().as_secs_f64(),
        pass.summary()
    );
    let initial = pass;

    // Churn.
    let churn_until = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    lock(world).t0 = Instant::now();
    let downloads = tokio::spawn(download_loop(Arc::clone(world), churn_until, args.seed));
    let mut trackers = Vec::new();
    let mut rng = Rng(args.seed.wrapping_mul(6_364_136_223_846_793_005) | 1);
    while Instant::now() < churn_until {
        let pause = 500 + rng.below(2000);
        tokio::time::sleep(Duration::from_millis(pause as u64)).await;
        cluster::refresh(world).await;
        if let Some(task) = event(world, &mut rng).await {
            trackers.push(task);
        }
    }
    let churn_secs = lock(world).t();
    eprintln!("churn: events stop at t={churn_secs:.1}s; settling");
    let _ = downloads.await;

    // Settle: an audit pass every 5 s until two in a row are clean (the first of them at
    // least 10 s after the last event: five idle timeouts, ten rescans) or the settle time
    // is over. Then the final, thorough audit.
    let settle_start = Instant::now();
    let mut settled = None;
    let mut clean_since: Option<f64> = None;
    loop {
        let at = settle_start.elapsed().as_secs_f64();
        let pass = audit::audit(world, false).await;
        eprintln!("churn: settle +{at:.0}s: {}", pass.summary());
        if pass.clean() && at >= 10.0 {
            if let Some(first) = clean_since {
                settled = Some(first);
                break;
            }
            clean_since = Some(at);
        } else {
            clean_since = None;
        }
        if settle_start.elapsed() + Duration::from_secs(5) > args.settle {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let fin = audit::audit(world, true).await;
    for task in trackers {
        let _ = task.await;
    }
    report(world, args, &initial, &fin, churn_secs, settled, started);
}

/// One random event; a tracker task when the event is measured.
async fn event(world: &Shared, rng: &mut Rng) -> Option<tokio::task::JoinHandle<()>> {
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        KillSn,
        KillLeaf,
        Restart,
        Add,
        Delete,
    }
    const WEIGHTS: [(Kind, usize); 5] = [
        (Kind::KillSn, 10),
        (Kind::KillLeaf, 15),
        (Kind::Restart, 25),
        (Kind::Add, 25),
        (Kind::Delete, 25),
    ];
    let (live, sns, leaves, dead, addable, deletable, max_dead) = {
        let mut w = lock(world);
        let live = w.live();
        let sns: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| w.nodes[i].is_sn())
            .collect();
        let leaves: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| w.nodes[i].status.as_ref().is_some_and(|s| s.role == "leaf"))
            .collect();
        let dead: Vec<usize> = (0..w.nodes.len()).filter(|i| !live.contains(i)).collect();
        let addable: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| w.nodes[i].files.len() < MAX_FILES)
            .collect();
        let deletable: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| w.nodes[i].files.values().filter(|f| f.busy == 0).count() > 1)
            .collect();
        let max_dead = w.nodes.len() / 4;
        (live, sns, leaves, dead, addable, deletable, max_dead)
    };
    let feasible = |k: Kind| match k {
        Kind::KillSn => !sns.is_empty() && dead.len() < max_dead,
        Kind::KillLeaf => !leaves.is_empty() && dead.len() < max_dead,
        Kind::Restart => !dead.is_empty(),
        Kind::Add => !addable.is_empty(),
        Kind::Delete => !deletable.is_empty(),
    };
    let total: usize = WEIGHTS
        .iter()
        .filter(|(k, _)| feasible(*k))
        .map(|(_, w)| w)
        .sum();
    if total == 0 {
        return None;
    }
    let mut roll = rng.below(total);
    let kind = WEIGHTS
        .iter()
        .filter(|(k, _)| feasible(*k))
        .find(|(_, w)| {
            if roll < *w {
                true
            } else {
                roll -= w;
                false
            }
        })
        .map(|(k, _)| *k)?;
    let pick = |v: &[usize], rng: &mut Rng| v[rng.below(v.len())];
    match kind {
        Kind::KillSn => {
            let victim = pick(&sns, rng);
            let mut w = lock(world);
            let victim_id = w.nodes[victim].id?;
            // Its orphans, by their last status (taken just before this event).
            let orphans: Vec<Orphan> = live
                .iter()
                .copied()
                .filter(|&i| {
                    w.nodes[i]
                        .status
                        .as_ref()
                        .is_some_and(|s| s.role == "leaf" && s.supernode == Some(victim_id))
                })
                .filter_map(|i| {
                    let n = &w.nodes[i];
                    Some((
                        i,
                        n.generation,
                        n.id?,
                        n.tag.clone(),
                        n.files.values().map(|f| f.hash).collect(),
                    ))
                })
                .collect();
            w.nodes[victim].kill();
            w.stats.sn_kills += 1;
            w.stats.orphans_total += orphans.len();
            let names: Vec<&str> = orphans.iter().map(|o| w.nodes[o.0].name.as_str()).collect();
            eprintln!(
                "churn: t={:.1}s kill -9 supernode {} (orphans: {})",
                w.t(),
                w.nodes[victim].name,
                names.join(" ")
            );
            if orphans.is_empty() {
                w.stats.orphan_none += 1;
                return None;
            }
            Some(tokio::spawn(track_orphans(
                Arc::clone(world),
                Instant::now(),
                orphans,
            )))
        }
        Kind::KillLeaf => {
            let victim = pick(&leaves, rng);
            let mut w = lock(world);
            w.nodes[victim].kill();
            w.stats.leaf_kills += 1;
            eprintln!(
                "churn: t={:.1}s kill -9 leaf {}",
                w.t(),
                w.nodes[victim].name
            );
            None
        }
        Kind::Restart => {
            let node = pick(&dead, rng);
            let result = cluster::start(world, node).await;
            let mut w = lock(world);
            match result {
                Ok(()) => w.stats.restarts += 1,
                Err(e) => {
                    eprintln!("churn: restart failed: {e}");
                    w.stats.restart_failures += 1;
                }
            }
            eprintln!("churn: t={:.1}s restarted {}", w.t(), w.nodes[node].name);
            None
        }
        Kind::Add => {
            let owner = pick(&addable, rng);
            let mut w = lock(world);
            let World {
                nodes,
                rng: wrng,
                stats,
                ..
            } = &mut *w;
            let name = nodes[owner].add_file(wrng).ok()?;
            stats.adds += 1;
            let hash = nodes[owner].files[&name].hash;
            let (gen, id) = (nodes[owner].generation, nodes[owner].id?);
            Some(tokio::spawn(track_add(
                Arc::clone(world),
                owner,
                gen,
                id,
                hash,
                Instant::now(),
            )))
        }
        Kind::Delete => {
            let owner = pick(&deletable, rng);
            let mut w = lock(world);
            let free: Vec<String> = w.nodes[owner]
                .files
                .iter()
                .filter(|(_, f)| f.busy == 0)
                .map(|(n, _)| n.clone())
                .collect();
            let name = free[w.rng.below(free.len())].clone();
            let rec = w.nodes[owner].delete_file(&name).ok()?;
            w.stats.deletes += 1;
            let id = w.nodes[owner].id?;
            Some(tokio::spawn(track_delete(
                Arc::clone(world),
                owner,
                id,
                rec.hash,
                Instant::now(),
            )))
        }
    }
}

/// The next node to search from (other than `exclude`), and its data dir.
fn searcher(
    world: &Shared,
    exclude: &[usize],
    not: Option<usize>,
) -> Option<(usize, std::path::PathBuf)> {
    let mut w = lock(world);
    let s = w.searchers(exclude).into_iter().find(|&s| Some(s) != not)?;
    Some((s, w.nodes[s].data.clone()))
}

/// An orphan of a killed supernode: index, generation, id, tag word, files at the kill.
type Orphan = (usize, u32, NodeId, String, Vec<ContentId>);

/// After a supernode kill: until every file of every orphan still alive (same process) is
/// found from a node that is not an orphan.
async fn track_orphans(world: Shared, killed: Instant, orphans: Vec<Orphan>) {
    let exclude: Vec<usize> = orphans.iter().map(|o| o.0).collect();
    loop {
        if killed.elapsed() > GIVE_UP {
            let mut w = lock(&world);
            w.stats.orphan_times.push(GIVE_UP.as_secs_f64());
            w.stats.orphan_gave_up += 1;
            return;
        }
        tokio::time::sleep(POLL).await;
        // The orphans still running since the kill, and their files still on disk.
        let checks: Vec<(NodeId, String, Vec<ContentId>)> = {
            let mut w = lock(&world);
            orphans
                .iter()
                .filter_map(|(i, gen, id, tag, files)| {
                    let node = &mut w.nodes[*i];
                    if !node.alive() || node.generation != *gen {
                        return None;
                    }
                    let now: Vec<ContentId> = files
                        .iter()
                        .copied()
                        .filter(|h| node.files.values().any(|f| f.hash == *h))
                        .collect();
                    Some((*id, tag.clone(), now))
                })
                .collect()
        };
        if checks.is_empty() {
            lock(&world).stats.orphan_none += 1;
            return;
        }
        let Some((_, data)) = searcher(&world, &exclude, None) else {
            continue;
        };
        let mut all = true;
        for (id, tag, files) in &checks {
            match cluster::search(&data, std::slice::from_ref(tag), 200).await {
                Ok(hits) => {
                    let found = cluster::found_by(&hits, *id);
                    if !files.iter().all(|h| found.contains(h)) {
                        all = false;
                        break;
                    }
                }
                Err(_) => {
                    all = false;
                    break;
                }
            }
        }
        if all {
            let secs = killed.elapsed().as_secs_f64();
            lock(&world).stats.orphan_times.push(secs);
            return;
        }
    }
}

/// After a delete: until two searches in a row, from two different nodes, no longer list
/// the owner as a provider of the content id. The time is that of the first of the two.
async fn track_delete(
    world: Shared,
    owner: usize,
    owner_id: NodeId,
    hash: ContentId,
    deleted: Instant,
) {
    let mut gone: Option<(f64, usize)> = None;
    loop {
        if deleted.elapsed() > GIVE_UP {
            let mut w = lock(&world);
            w.stats.linger.push(GIVE_UP.as_secs_f64());
            w.stats.linger_gave_up += 1;
            return;
        }
        let at = deleted.elapsed().as_secs_f64();
        if let Some((s, data)) = searcher(&world, &[owner], gone.map(|g| g.1)) {
            if let Ok(hits) = cluster::search(&data, &[hash.to_hex()], 50).await {
                let listed = hits
                    .iter()
                    .any(|h| h.hash == hash && h.providers.iter().any(|p| p.node == owner_id));
                match (listed, gone) {
                    (true, _) => gone = None,
                    (false, None) => gone = Some((at, s)),
                    (false, Some((first, by))) if by != s => {
                        lock(&world).stats.linger.push(first);
                        return;
                    }
                    (false, Some(_)) => {}
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// After an add: until a search from another node lists the owner as a provider. Dropped
/// when the owner dies meanwhile.
async fn track_add(
    world: Shared,
    owner: usize,
    gen: u32,
    owner_id: NodeId,
    hash: ContentId,
    added: Instant,
) {
    loop {
        if added.elapsed() > GIVE_UP {
            let mut w = lock(&world);
            w.stats.add_visible.push(GIVE_UP.as_secs_f64());
            w.stats.add_gave_up += 1;
            return;
        }
        tokio::time::sleep(POLL).await;
        {
            let mut w = lock(&world);
            let node = &mut w.nodes[owner];
            if !node.alive()
                || node.generation != gen
                || !node.files.values().any(|f| f.hash == hash)
            {
                return;
            }
        }
        let Some((_, data)) = searcher(&world, &[owner], None) else {
            continue;
        };
        if let Ok(hits) = cluster::search(&data, &[hash.to_hex()], 50).await {
            if cluster::found_by(&hits, owner_id).contains(&hash) {
                lock(&world)
                    .stats
                    .add_visible
                    .push(added.elapsed().as_secs_f64());
                return;
            }
        }
    }
}

/// A short, id-free form of an error message, for counting kinds of failures.
fn error_kind(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)");
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| {
            let hexish = w.chars().filter(|c| c.is_ascii_hexdigit()).count();
            if hexish >= 8 && hexish * 10 >= w.len() * 8 {
                "<id>".to_owned()
            } else if w.chars().any(|c| c.is_ascii_digit()) && w.contains(['.', ':']) {
                "<n>".to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect();
    words.join(" ").chars().take(110).collect()
}

/// One download at a time: a random live node fetches a random file another live node has
/// shared for at least 3 s, with `kazoo get --json HASH -o PATH`; verified by exit code and
/// BLAKE3 of the bytes written.
async fn download_loop(world: Shared, until: Instant, seed: u64) {
    let mut rng = Rng(seed.wrapping_add(0x2545_f491_4f6c_dd1d) | 1);
    let mut n = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000) as u64)).await;
        let picked = {
            let mut w = lock(&world);
            let live = w.live();
            let sources: Vec<(usize, String)> = live
                .iter()
                .flat_map(|&i| {
                    w.nodes[i]
                        .files
                        .iter()
                        .filter(|(_, f)| f.added.elapsed() >= Duration::from_secs(3))
                        .map(move |(name, _)| (i, name.clone()))
                })
                .collect();
            if live.len() < 2 || sources.is_empty() {
                continue;
            }
            let (src, name) = sources[rng.below(sources.len())].clone();
            let others: Vec<usize> = live.into_iter().filter(|&i| i != src).collect();
            let dst = others[rng.below(others.len())];
            let file = w.nodes[src].files.get_mut(&name).expect("picked");
            file.busy += 1;
            let hash = file.hash;
            n += 1;
            let out = w.root.join("downloads").join(format!("dl{n}.bin"));
            let gens = (w.nodes[src].generation, w.nodes[dst].generation);
            (src, dst, name, hash, out, gens, w.nodes[dst].config.clone())
        };
        let (src, dst, name, hash, out, gens, config) = picked;
        let run = tokio::process::Command::new(cluster::bin())
            .arg("--config")
            .arg(&config)
            .args(["get", "--json", &hash.to_hex(), "-o"])
            .arg(&out)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output();
        let result = tokio::time::timeout(DOWNLOAD_TIMEOUT, run).await;
        let verdict: Result<(), String> = match result {
            Err(_) => Err("timed out".into()),
            Ok(Err(e)) => Err(format!("could not run kazoo get: {e}")),
            Ok(Ok(o)) if !o.status.success() => {
                Err(error_kind(&String::from_utf8_lossy(&o.stderr)))
            }
            Ok(Ok(_)) => match std::fs::read(&out) {
                Ok(bytes) if ContentId::from(blake3::hash(&bytes)) == hash => Ok(()),
                Ok(_) => Err("exit 0 but the bytes do not match the hash".into()),
                Err(e) => Err(format!("exit 0 but no file: {e}")),
            },
        };
        let _ = std::fs::remove_file(&out);
        let mut w = lock(&world);
        let stable = w.nodes[src].alive()
            && w.nodes[dst].alive()
            && (w.nodes[src].generation, w.nodes[dst].generation) == gens;
        if let Some(f) = w.nodes[src].files.get_mut(&name) {
            f.busy -= 1;
        }
        if let Err(e) = &verdict {
            // Who was involved, as their last statuses saw it.
            let role = |i: usize| match &w.nodes[i].status {
                Some(st) if st.role == "supernode" => "supernode".to_owned(),
                Some(st) => match st.supernode {
                    Some(sn) => format!("leaf of {}", w.name_of(sn)),
                    None => "unattached leaf".to_owned(),
                },
                None => "down".to_owned(),
            };
            let line = format!(
                "t={:.1}s {} ({}) from {} ({}) {name:?}: {e}",
                w.t(),
                w.nodes[dst].name,
                role(dst),
                w.nodes[src].name,
                role(src)
            );
            w.stats.dl_failures.push(line);
        }
        let s = &mut w.stats;
        s.dl_attempted += 1;
        s.dl_stable_attempted += usize::from(stable);
        match verdict {
            Ok(()) => {
                s.dl_verified += 1;
                s.dl_stable_verified += usize::from(stable);
            }
            Err(e) => {
                let kind = if stable { e } else { format!("(churned) {e}") };
                *s.dl_errors.entry(kind).or_default() += 1;
            }
        }
    }
}

fn ratio(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.3}", a as f64 / b as f64)
    }
}

fn report(
    world: &Shared,
    args: &Args,
    initial: &audit::Audit,
    fin: &audit::Audit,
    churn_secs: f64,
    settled: Option<f64>,
    started: Instant,
) {
    let diagnostics = audit::diagnose(world, fin, 10);
    let mut w = lock(world);
    let s = &mut w.stats;
    for v in [&mut s.orphan_times, &mut s.linger, &mut s.add_visible] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!(
        "\nchurn: {} supernodes + {} auto nodes as `kazoo run` processes on loopback (max_leaves {}, rescan {} s), seed {}",
        args.supernodes, args.autos, cluster::MAX_LEAVES, cluster::RESCAN_SECS, args.seed
    );
    println!(
        "{:.1} min of churn: {} supernode kills, {} leaf kills, {} restarts ({} failed, {} moved port), {} adds, {} deletes; {} node processes exited by themselves",
        churn_secs / 60.0,
        s.sn_kills,
        s.leaf_kills,
        s.restarts,
        s.restart_failures,
        s.port_changes,
        s.adds,
        s.deletes,
        s.crashes.len()
    );
    println!(
        "before churn: {}; after churn: settle {}",
        initial.summary(),
        match settled {
            Some(t) => format!("clean from {t:.0} s on"),
            None => format!("not clean after {:.0} s", args.settle.as_secs_f64()),
        }
    );
    let row = |m: &str, v: String, t: &str, r: String| println!("{m:<58} {v:>12} {t:>8} {r:>8}");
    row("measurement", "value".into(), "target", "ratio".into());
    row(
        "files lost (on a live node's disk, found from no other)",
        format!("{}/{}", fin.lost_files(), fin.files),
        "0",
        ratio(fin.lost_files(), fin.files),
    );
    row(
        "  nodes with lost files",
        fin.lost.len().to_string(),
        "0",
        String::new(),
    );
    row(
        "  files only `kazoo search` found (audit suspect if > 0)",
        fin.found_by_cli.to_string(),
        "0",
        String::new(),
    );
    if fin.unverifiable > 0 {
        row(
            "  files no node could search for",
            fin.unverifiable.to_string(),
            "0",
            String::new(),
        );
    }
    row(
        "ghost leaves (counted by a supernode, not attached to it)",
        fin.ghost.to_string(),
        "0",
        String::new(),
    );
    row(
        "uncounted leaves (attached, not counted by the supernode)",
        fin.uncounted.to_string(),
        "0",
        String::new(),
    );
    row(
        "leaves unattached at the audit",
        format!("{}/{}", fin.unattached.len(), fin.leaves),
        "0",
        ratio(fin.unattached.len(), fin.leaves),
    );
    row(
        "leaves naming a supernode that is not a live supernode",
        fin.stale_uplink.len().to_string(),
        "0",
        String::new(),
    );
    row(
        "supernodes over max_leaves (counted or attached)",
        format!("{}/{}", fin.over_cap, fin.sns.len()),
        "0",
        String::new(),
    );
    row(
        "downloads verified / attempted",
        format!("{}/{}", s.dl_verified, s.dl_attempted),
        "all",
        ratio(s.dl_verified, s.dl_attempted),
    );
    row(
        "  ... source and downloader alive throughout",
        format!("{}/{}", s.dl_stable_verified, s.dl_stable_attempted),
        "all",
        ratio(s.dl_stable_verified, s.dl_stable_attempted),
    );
    let secs = |v: &[f64], p: f64| format!("{:.2}", percentile(v, p));
    row(
        "supernode kill -> orphans' files findable, p50 s",
        secs(&s.orphan_times, 0.5),
        "",
        format!("{:.2}", percentile(&s.orphan_times, 0.5) / IDLE_TIMEOUT_S),
    );
    row(
        "supernode kill -> orphans' files findable, p99 s",
        secs(&s.orphan_times, 0.99),
        "<= 3",
        format!("{:.2}", percentile(&s.orphan_times, 0.99) / 3.0),
    );
    row(
        "  kills measured / not found within 60 s / no orphans left",
        format!(
            "{}/{}/{}",
            s.orphan_times.len(),
            s.orphan_gave_up,
            s.orphan_none
        ),
        "",
        String::new(),
    );
    row(
        "deleted file still listed, p50 s",
        secs(&s.linger, 0.5),
        "",
        format!(
            "{:.2}",
            percentile(&s.linger, 0.5) / cluster::RESCAN_SECS as f64
        ),
    );
    row(
        "deleted file still listed, p99 s",
        secs(&s.linger, 0.99),
        "",
        String::new(),
    );
    row(
        "deleted file still listed, max s",
        format!("{:.2}", s.linger.last().copied().unwrap_or(f64::NAN)),
        "",
        String::new(),
    );
    row(
        "  deletes measured / still listed after 60 s",
        format!("{}/{}", s.linger.len(), s.linger_gave_up),
        "0",
        String::new(),
    );
    row(
        "added file findable from another node, p50 s",
        secs(&s.add_visible, 0.5),
        "",
        format!(
            "{:.2}",
            percentile(&s.add_visible, 0.5) / cluster::RESCAN_SECS as f64
        ),
    );
    row(
        "added file findable from another node, p99 s",
        secs(&s.add_visible, 0.99),
        "",
        String::new(),
    );
    row(
        "  adds measured / not findable after 60 s",
        format!("{}/{}", s.add_visible.len(), s.add_gave_up),
        "0",
        String::new(),
    );
    println!(
        "(ratios: files, leaves and downloads to their totals; kill p50 to the 2 s QUIC idle timeout, the detection floor; kill p99 to the 3 s target; delete and add p50 to the {} s rescan period, their floor. Give-ups count as 60 s.)",
        cluster::RESCAN_SECS
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "wall time {:.1} min; load average at the end (1/5/15 min) {} on {} cores",
        started.elapsed().as_secs_f64() / 60.0,
        load.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !s.dl_errors.is_empty() {
        println!("\ndownload failures:");
        for (kind, n) in &s.dl_errors {
            println!("  {n:>4}  {kind}");
        }
        for line in s.dl_failures.iter().take(20) {
            println!("        {line}");
        }
    }
    if !s.crashes.is_empty() {
        println!("\nnode processes that exited by themselves:");
        for c in &s.crashes {
            println!("  {c}");
        }
    }
    drop(w);
    if !diagnostics.is_empty() {
        println!("\nat the final audit:");
        for line in diagnostics {
            println!("  {line}");
        }
    }
}
