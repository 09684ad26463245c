//! The nodes of a churn run: their folders, configs, `kazoo run` processes and shared files,
//! and the requests the benchmark sends to them over their control sockets (the client code
//! the `kazoo` CLI uses, without a process per poll).

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kazoo_common::{ContentId, NodeId};
use kazoo_leaf::control::{self, ControlEvent, ControlRequest, SearchResult};
use kazoo_leaf::Status;

use crate::common::Rng;

/// The binary under test, as built with this benchmark.
const BUILT_BIN: &str = env!("CARGO_BIN_EXE_kazoo");

static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Copies the `kazoo` binary into the run's folder and runs that copy from then on, so a
/// rebuild of the shared target directory during a long run cannot change the code under
/// test (or remove the file a restart needs).
pub fn install_binary(root: &Path) -> std::io::Result<PathBuf> {
    let copy = root.join("kazoo");
    std::fs::copy(BUILT_BIN, &copy)?;
    let _ = BIN.set(copy.clone());
    Ok(copy)
}

/// The binary to run.
pub fn bin() -> &'static Path {
    BIN.get()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new(BUILT_BIN))
}
/// `share.rescan_secs` of every node: adds and deletes are noticed within this.
pub const RESCAN_SECS: u64 = 1;
/// `supernode.max_leaves` of every node: small, so the network must grow by promotion.
pub const MAX_LEAVES: usize = 8;
/// How long a started process may take to answer on its control socket.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Longest wait for a `status` answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a search answer.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Words the file names are made of (none starts like a node tag).
const WORDS: &[&str] = &[
    "amber", "blue", "night", "river", "song", "live", "remix", "demo", "tape", "session", "piano",
    "drums", "summer", "winter", "echo", "velvet", "static", "radio", "morning", "dust",
];

/// A file the benchmark put in a node's share folder.
#[derive(Clone, Debug)]
pub struct FileRec {
    /// BLAKE3 of the content (unique: random bytes).
    pub hash: ContentId,
    /// When it was written.
    pub added: Instant,
    /// Downloads of it in flight (it is not deleted meanwhile).
    pub busy: usize,
}

/// One node of the network: a `kazoo run` process when alive.
pub struct NodeSlot {
    /// `sn0`.. for the configured supernodes, `au00`.. for the auto nodes.
    pub name: String,
    /// A search word that only this node's file names contain (`kzn07`).
    pub tag: String,
    /// `role = "supernode"` (else `"auto"`).
    pub fixed_sn: bool,
    pub config: PathBuf,
    pub data: PathBuf,
    pub share: PathBuf,
    pub log: PathBuf,
    pub listen: SocketAddr,
    pub bootstrap: Vec<SocketAddr>,
    child: Option<Child>,
    /// Learned from its first status (the key persists in `data`, so restarts keep it).
    pub id: Option<NodeId>,
    /// Files in its share folder, by file name.
    pub files: BTreeMap<String, FileRec>,
    seq: u32,
    /// Incremented at every start: "alive throughout" means the same generation.
    pub generation: u32,
    /// The last status it answered (cleared when it dies).
    pub status: Option<Status>,
    /// When it was killed.
    pub died: Option<Instant>,
}

impl NodeSlot {
    /// Whether its process runs.
    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether the process ended without being killed by the benchmark (reaps it).
    pub fn exited_by_itself(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                self.died = Some(Instant::now());
                self.status = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// `kill -9` (SIGKILL) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.died = Some(Instant::now());
            self.status = None;
        }
    }

    fn write_config(&self) -> std::io::Result<()> {
        let role = if self.fixed_sn { "supernode" } else { "auto" };
        let bootstrap: Vec<String> = self.bootstrap.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "[node]\nrole = \"{role}\"\nlisten = \"{}\"\ndata_dir = {:?}\n\n\
             [share]\ndirs = [{:?}]\nrescan_secs = {RESCAN_SECS}\n\n\
             [network]\nbootstrap = [{}]\n\n\
             [supernode]\nmax_leaves = {MAX_LEAVES}\n",
            self.listen,
            self.data.display().to_string(),
            self.share.display().to_string(),
            bootstrap.join(", ")
        );
        std::fs::write(&self.config, text)
    }

    fn spawn(&mut self, t: f64) -> std::io::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(
            log,
            "=== churn bench: start {} of {} at t={t:.1}s on {}",
            self.generation + 1,
            self.name,
            self.listen
        )?;
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.generation += 1;
        self.died = None;
        Ok(())
    }

    /// Writes a new file of random content (1 KiB to 600 KiB: one to three pieces) into the
    /// share folder, atomically (a hidden temp file renamed into place).
    pub fn add_file(&mut self, rng: &mut Rng) -> std::io::Result<String> {
        self.seq += 1;
        let name = format!(
            "{} f{:04} {} {}.bin",
            self.tag,
            self.seq,
            WORDS[rng.below(WORDS.len())],
            WORDS[rng.below(WORDS.len())]
        );
        let size = 1024 + rng.below(600 * 1024);
        let mut content = Vec::with_capacity(size + 8);
        while content.len() < size {
            content.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        content.truncate(size);
        let tmp = self.share.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &content)?;
        std::fs::rename(&tmp, self.share.join(&name))?;
        self.files.insert(
            name.clone(),
            FileRec {
                hash: blake3::hash(&content).into(),
                added: Instant::now(),
                busy: 0,
            },
        );
        Ok(name)
    }

    /// Deletes a file from the share folder.
    pub fn delete_file(&mut self, name: &str) -> std::io::Result<FileRec> {
        std::fs::remove_file(self.share.join(name))?;
        Ok(self.files.remove(name).expect("a recorded file"))
    }

    /// Files in the share folder now (from disk), with their content ids.
    pub fn files_on_disk(&self) -> Vec<(String, ContentId)> {
        let Ok(dir) = std::fs::read_dir(&self.share) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let hash = match self.files.get(&name) {
                Some(rec) => rec.hash,
                None => match std::fs::read(entry.path()) {
                    Ok(bytes) => blake3::hash(&bytes).into(),
                    Err(_) => continue,
                },
            };
            files.push((name, hash));
        }
        files.sort();
        files
    }

    /// Whether the last status says attached to a supernode or being one.
    pub fn attached_or_sn(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.role == "supernode" || s.supernode.is_some())
    }

    /// Whether the last status says supernode.
    pub fn is_sn(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.role == "supernode")
    }
}

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Counters and samples gathered during the run.
#[derive(Default)]
pub struct Stats {
    pub sn_kills: usize,
    pub leaf_kills: usize,
    pub restarts: usize,
    pub restart_failures: usize,
    pub port_changes: usize,
    pub adds: usize,
    pub deletes: usize,
    pub crashes: Vec<String>,
    /// Seconds from a supernode kill until all its surviving orphans' files were found
    /// from elsewhere (give-ups recorded as the give-up time).
    pub orphan_times: Vec<f64>,
    pub orphan_gave_up: usize,
    /// Supernode kills with no leaf attached, or whose orphans all died before being found.
    pub orphan_none: usize,
    pub orphans_total: usize,
    /// Seconds from a delete until searches (two in a row, from two nodes) stop listing the
    /// owner as a provider.
    pub linger: Vec<f64>,
    pub linger_gave_up: usize,
    /// Seconds from an add until a search from another node lists the owner.
    pub add_visible: Vec<f64>,
    pub add_gave_up: usize,
    pub dl_attempted: usize,
    pub dl_verified: usize,
    /// Attempts whose downloader and source both stayed alive throughout.
    pub dl_stable_attempted: usize,
    pub dl_stable_verified: usize,
    pub dl_errors: BTreeMap<String, usize>,
    /// Each failed download: when, who from whom, their roles, the error.
    pub dl_failures: Vec<String>,
}

/// Everything the tasks of the run share.
pub struct World {
    pub nodes: Vec<NodeSlot>,
    pub root: PathBuf,
    pub t0: Instant,
    /// For searcher choice and other incidental picks (the event stream has its own).
    pub rng: Rng,
    pub stats: Stats,
    used_ports: HashSet<u16>,
}

pub type Shared = Arc<Mutex<World>>;

pub fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

/// A UDP port free on loopback now (bound once, then released), never handed out twice.
fn free_port(used: &mut HashSet<u16>) -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("binding a loopback UDP port")
            .port();
        if used.insert(port) {
            return port;
        }
    }
}

impl World {
    /// Lays out `supernodes` + `autos` nodes under `root`, each with `files` files; nothing
    /// runs yet.
    pub fn new(root: &Path, supernodes: usize, autos: usize, files: usize, seed: u64) -> World {
        let mut used_ports = HashSet::new();
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1);
        let sn_addrs: Vec<SocketAddr> = (0..supernodes)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port(&mut used_ports))))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..supernodes + autos {
            let fixed_sn = i < supernodes;
            let name = if fixed_sn {
                format!("sn{i}")
            } else {
                format!("au{:02}", i - supernodes)
            };
            let dir = root.join(&name);
            let listen = if fixed_sn {
                sn_addrs[i]
            } else {
                SocketAddr::from(([127, 0, 0, 1], free_port(&mut used_ports)))
            };
            let bootstrap = sn_addrs.iter().copied().filter(|a| *a != listen).collect();
            let mut node = NodeSlot {
                tag: format!("kzn{i:02}"),
                name,
                fixed_sn,
                config: dir.join("kazoo.toml"),
                data: dir.join("data"),
                share: dir.join("shared"),
                log: dir.join("node.log"),
                listen,
                bootstrap,
                child: None,
                id: None,
                files: BTreeMap::new(),
                seq: 0,
                generation: 0,
                status: None,
                died: None,
            };
            std::fs::create_dir_all(&node.share).expect("share dir");
            node.write_config().expect("config");
            for _ in 0..files {
                node.add_file(&mut rng).expect("initial file");
            }
            nodes.push(node);
        }
        std::fs::create_dir_all(root.join("downloads")).expect("scratch dir");
        World {
            nodes,
            root: root.to_path_buf(),
            t0: Instant::now(),
            rng,
            stats: Stats::default(),
            used_ports,
        }
    }

    /// Seconds since the run started.
    pub fn t(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Indexes of live nodes.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive())
            .collect()
    }

    /// Live nodes to search from (not in `exclude`), attached or supernodes first, in random
    /// order.
    pub fn searchers(&mut self, exclude: &[usize]) -> Vec<usize> {
        let mut live: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|i| !exclude.contains(i))
            .collect();
        for k in (1..live.len()).rev() {
            let j = self.rng.below(k + 1);
            live.swap(k, j);
        }
        live.sort_by_key(|&i| !self.nodes[i].attached_or_sn());
        live
    }

    /// The node with this id.
    pub fn by_id(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == Some(id))
    }

    /// A node's name for an id (short hex if unknown).
    pub fn name_of(&self, id: NodeId) -> String {
        match self.by_id(id) {
            Some(i) => self.nodes[i].name.clone(),
            None => format!("?{}", id.short()),
        }
    }

    /// Kills every process (the run's end, or a panic).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// Kills every node process when dropped (the end of the run, or a panic).
pub struct Guard(pub Shared);

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.0).kill_all();
    }
}

/// Sends one control request; the events, or why not.
async fn control(
    data: &Path,
    request: ControlRequest,
    timeout: Duration,
) -> Result<Vec<ControlEvent>, String> {
    let mut events = Vec::new();
    let node = kazoo_common::config::NodeConfig {
        data_dir: data.to_path_buf(),
        ..Default::default()
    };
    let asked = tokio::time::timeout(
        timeout,
        control::request(&node, &request, |e| events.push(e)),
    )
    .await;
    match asked {
        Err(_) => Err("control request timed out".into()),
        Ok(None) => Err("no node running".into()),
        Ok(Some(Err(e))) => Err(e.to_string()),
        Ok(Some(Ok(()))) => Ok(events),
    }
}

/// `kazoo status --json`, through the control socket.
pub async fn status(data: &Path) -> Result<Status, String> {
    control(data, ControlRequest::Status, STATUS_TIMEOUT)
        .await?
        .into_iter()
        .find_map(|e| match e {
            ControlEvent::Status { status } => Some(*status),
            _ => None,
        })
        .ok_or_else(|| "no status in the answer".into())
}

/// `kazoo search --json WORDS`, through the control socket (with providers).
pub async fn search(data: &Path, words: &[String], max: u32) -> Result<Vec<SearchResult>, String> {
    let request = ControlRequest::Search {
        words: words.to_vec(),
        max_results: max,
    };
    let mut hits = Vec::new();
    for event in control(data, request, SEARCH_TIMEOUT).await? {
        match event {
            ControlEvent::Hit { hit } => hits.push(hit),
            ControlEvent::Error { message } => return Err(message),
            _ => {}
        }
    }
    Ok(hits)
}

/// The content ids that `hits` list with `owner` among the providers.
pub fn found_by(hits: &[SearchResult], owner: NodeId) -> HashSet<ContentId> {
    hits.iter()
        .filter(|h| h.providers.iter().any(|p| p.node == owner))
        .map(|h| h.hash)
        .collect()
}

/// Asks every live node for its status and records it; returns the statuses.
pub async fn refresh(world: &Shared) -> Vec<(usize, Option<Status>)> {
    let targets: Vec<(usize, PathBuf)> = {
        let mut w = lock(world);
        let t = w.t();
        for i in 0..w.nodes.len() {
            if let Some(how) = w.nodes[i].exited_by_itself() {
                let line = format!("t={t:.1}s {} exited by itself: {how}", w.nodes[i].name);
                eprintln!("churn: {line}");
                w.stats.crashes.push(line);
            }
        }
        w.live()
            .into_iter()
            .map(|i| (i, w.nodes[i].data.clone()))
            .collect()
    };
    let mut asks = tokio::task::JoinSet::new();
    for (i, data) in targets {
        asks.spawn(async move { (i, status(&data).await.ok()) });
    }
    let mut out = Vec::new();
    while let Some(done) = asks.join_next().await {
        if let Ok(answer) = done {
            out.push(answer);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    let mut w = lock(world);
    for (i, s) in &out {
        let node = &mut w.nodes[*i];
        if let Some(s) = s {
            node.id.get_or_insert(s.node_id);
        }
        node.status = s.clone();
    }
    out
}

/// Starts node `i` and waits until it answers on its control socket. If the process exits
/// at once (its port was taken meanwhile), it is moved to a new port.
pub async fn start(world: &Shared, i: usize) -> Result<(), String> {
    for _attempt in 0..3 {
        let data = {
            let mut w = lock(world);
            let t = w.t();
            let node = &mut w.nodes[i];
            node.spawn(t)
                .map_err(|e| format!("spawning {}: {e}", node.name))?;
            node.data.clone()
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(s) = status(&data).await {
                let mut w = lock(world);
                let node = &mut w.nodes[i];
                node.id.get_or_insert(s.node_id);
                node.status = Some(s);
                return Ok(());
            }
            let exited = {
                let mut w = lock(world);
                !w.nodes[i].alive()
            };
            if exited {
                break;
            }
            if Instant::now() > deadline {
                let mut w = lock(world);
                w.nodes[i].kill();
                return Err(format!(
                    "{} did not answer within {START_DEADLINE:?}",
                    w.nodes[i].name
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut w = lock(world);
        let port = free_port(&mut w.used_ports);
        w.stats.port_changes += 1;
        let node = &mut w.nodes[i];
        node.kill();
        eprintln!(
            "churn: {} exited at start on {}; moving it to port {port}",
            node.name, node.listen
        );
        node.listen.set_port(port);
        node.write_config()
            .map_err(|e| format!("config of {}: {e}", node.name))?;
    }
    Err(format!("{} did not start", lock(world).nodes[i].name))
}

/// The last `n` lines of a node's log that tell about its uplink and role (or, with
/// `about`, that mention that text, e.g. a leaf's short id in its supernode's log). Runs of
/// the same message are shown once with their count.
pub fn log_tail(log: &Path, n: usize, about: Option<&str>) -> Vec<String> {
    const KEYS: &[&str] = &[
        "churn bench",
        "joined supernode",
        "lost supernode",
        "re-homing",
        "refused",
        "role set",
        "promote",
        "demoting",
        "violation",
        "unknown leaf",
        "leaf left",
    ];
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let keep = match about {
            Some(about) => line.contains(about),
            None => KEYS.iter().any(|k| line.contains(k)),
        };
        if !keep {
            continue;
        }
        let line = strip_ansi(line);
        // The message without its timestamp, to fold repeats.
        let message = line
            .split_once(' ')
            .map(|(_, m)| m)
            .unwrap_or(&line)
            .to_owned();
        match lines.last_mut() {
            Some((last, count)) if last.split_once(' ').map(|(_, m)| m) == Some(&message) => {
                *count += 1
            }
            _ => lines.push((line, 1)),
        }
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|(line, count)| match count {
            1 => line.clone(),
            _ => format!("{line}  (x{count} in a row; the first shown)"),
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
