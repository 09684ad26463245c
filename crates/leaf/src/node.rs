//! The node runtime: one QUIC endpoint, the share store, the uploads server, and the role it
//! plays now — a value swapped whole under one lock on promotion and demotion:
//! * [`leaf_role`]: the uplink to a supernode (joining, registering shares, re-homing);
//! * [`supernode_role`]: the supernode core under its lock and its I/O (admission of leaves,
//!   peering, notices, growth and demotion).
//!
//! Incoming connections of any kind arrive in `accept.rs`; their request streams are
//! served by `streams.rs`. [`Node::start`] spawns the tasks;
//! the returned handle answers status, search and get, and is what the control socket and
//! the tests drive.

mod accept;
mod bootstrap;
pub mod browse;
pub mod dial_guard;
pub mod leaf_role;
mod relay;
pub mod reload;
mod request_limits;
pub mod reverse;
mod streams;
pub mod supernode_role;

pub use accept::{FETCH_IDLE, HANDSHAKE_RATE, INDEX_RATE, MAX_FETCH_PER_IP};
pub use leaf_role::LeafRole;
pub use supernode_role::SupernodeRole;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kazoo_common::config::{Config, RoleSetting};
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Link, Timeouts};
use kazoo_common::wire::{
    CloseCode, Hello, Hit, Intent, Provider, Request, Response, HITS_PER_FRAME, MAX_RESULTS,
};
use kazoo_common::{ContentId, NodeId};
use kazoo_supernode::election::score::capacity_score;
use kazoo_supernode::hits::{merge_results, Found};
use kazoo_supernode::query::Query;
use kazoo_supernode::{check_query, validate_hit};
use quinn::{Connection, Endpoint};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{self, RequestError};
use crate::download::{self, Destination, DownloadError, Job, Progress, Report};
use crate::metrics::{Counters, Counts};
use crate::serve::activity::UploadView;
use crate::serve::Uploads;
use crate::share::{FolderView, ShareLayout, ShareStore};

/// What a search found (see [`Node::find`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    /// The results, best first.
    pub results: Vec<Found>,
    /// More files matched than `results` holds (or it holds [`MAX_RESULTS`], and there may
    /// be more): a larger `max`, or more words, would show others.
    pub more: bool,
}

/// How a node is started (beyond its config).
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// QUIC keep-alive and idle timeout (default: from `[network] idle_timeout_ms`).
    pub timeouts: Option<Timeouts>,
    /// Scan and share `share.dirs` (off for a short-lived CLI leaf).
    pub share: bool,
    /// Override the configured role.
    pub role: Option<RoleSetting>,
    /// Override the configured listen address.
    pub listen: Option<SocketAddr>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            timeouts: None,
            share: true,
            role: None,
            listen: None,
        }
    }
}

/// Errors of node operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Start-up failed.
    #[error("{0}")]
    Start(String),
    /// The node has no supernode to ask.
    #[error("not connected to a supernode (bootstrap: {0})")]
    NoSupernode(String),
    /// The supernode request failed.
    #[error("supernode request failed: {0}")]
    Request(#[from] RequestError),
    /// The query was refused.
    #[error("{0}")]
    Query(String),
    /// The download failed.
    #[error("{0}")]
    Download(#[from] DownloadError),
}

/// What `kazoo status` shows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// `"leaf"` or `"supernode"`.
    pub role: String,
    /// This node's id.
    pub node_id: NodeId,
    /// Bound UDP address.
    pub listen: SocketAddr,
    /// Unix seconds of the last role change.
    pub since: u64,
    /// Why the node has its role.
    pub reason: String,
    /// Leaf: its supernode's id (null when not connected).
    pub supernode: Option<NodeId>,
    /// Leaf: its supernode's address.
    pub supernode_addr: Option<SocketAddr>,
    /// Supernode: joined leaves.
    pub leaves: Option<usize>,
    /// Supernode: connected peer supernodes.
    pub peers: Option<usize>,
    /// Supernode: its peers, by node id (the human output shows a few).
    pub peer_list: Option<Vec<PeerStatus>>,
    /// Supernode: its joined leaves, by node id (the human output shows a few).
    #[serde(default)]
    pub leaf_list: Option<Vec<LeafStatus>>,
    /// Supernode: supernodes known (host cache).
    pub known_supernodes: Option<usize>,
    /// Leaf: its supernode's succession list (heirs, best first).
    pub succession: Option<Vec<NodeId>>,
    /// Leaf: its address as its supernode sees it, and whether others can dial it (from the
    /// supernode's dial back; null until told).
    pub reachability: Option<crate::reachability::Reachability>,
    /// Leaf: why it is with its current supernode (joined, re-homed after a death,
    /// redirected by a full or demoting supernode).
    pub uplink_reason: Option<String>,
    /// Distinct files shared by this node.
    pub shared_files: usize,
    /// Each share folder with its file and byte counts (see [`ShareStore::folders`]).
    #[serde(default)]
    pub folders: Vec<FolderView>,
    /// Uploads in progress: who downloads what from this node, how fast.
    #[serde(default)]
    pub uploads: Vec<UploadView>,
    /// Supernode: index entries (leaf, file).
    pub index_entries: Option<usize>,
    /// Supernode: distinct files in the index.
    pub index_files: Option<usize>,
    /// What is wrong now, one line each: share folders missing or unreadable, bootstrap
    /// supernodes not answering (empty when all is well).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Supernode: relay circuits open now and bytes relayed since it became a supernode.
    #[serde(default)]
    pub relay: Option<RelayStats>,
    /// Download jobs not finished yet: queued, running, waiting for sources or paused.
    #[serde(default)]
    pub downloads: Vec<crate::jobs::JobView>,
    /// The last thing that went wrong, and when (it may be over: see `problems` for what
    /// is wrong now).
    #[serde(default)]
    pub last_error: Option<LastError>,
}

/// What a supernode relays (see `supernode_role/relaying.rs`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayStats {
    /// Circuits open (or waiting for their target) now.
    pub circuits: usize,
    /// Bytes relayed so far, both directions.
    pub relayed_bytes: u64,
}

/// A peer supernode in [`Status::peer_list`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its node id.
    pub node: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// Unix seconds since the peering is up.
    pub since: u64,
    /// Positions set in its routing filter.
    pub filter_positions: usize,
    /// Its own peer count, as it last told.
    pub peers: usize,
    /// Its load, as it last told.
    pub load: Option<kazoo_supernode::Load>,
}

/// A joined leaf in [`Status::leaf_list`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeafStatus {
    /// Its node id.
    pub node: NodeId,
    /// Where its files are listed.
    pub addr: SocketAddr,
    /// Unix seconds since its session began.
    pub since: u64,
    /// Files (index entries) it has registered.
    pub entries: usize,
    /// Whether its listen address answered the dial back.
    pub reachable: bool,
}

/// The last error a node met (see [`Status::last_error`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    /// Unix seconds when it happened (first, if it repeated since).
    pub at: u64,
    /// What happened.
    pub message: String,
}
/// The connection to this leaf's supernode.
#[derive(Clone, Debug)]
struct Uplink {
    conn: Connection,
    node: NodeId,
    /// Why the leaf is with this supernode (joined, re-homed, redirected).
    reason: String,
}

/// The role a node plays now, with the role's own state and tasks.
#[derive(Clone)]
enum Role {
    /// A leaf, with its uplink.
    Leaf(Arc<LeafRole>),
    /// A supernode, with its core and its I/O.
    Supernode(Arc<SupernodeRole>),
}

impl Role {
    fn wire(&self) -> kazoo_common::wire::Role {
        match self {
            Role::Leaf(_) => kazoo_common::wire::Role::Leaf,
            Role::Supernode(_) => kazoo_common::wire::Role::Supernode,
        }
    }

    /// Ends the role: its tasks stop, a supernode's peerings close.
    fn stop(&self, reason: &str) {
        match self {
            Role::Leaf(leaf) => leaf.stop(),
            Role::Supernode(sn) => sn.stop(reason),
        }
    }
}

/// The role, since when, and why; swapped whole on promotion and demotion.
struct Current {
    role: Role,
    since: u64,
    reason: String,
}

/// Tasks owned by a node or a role, aborted together.
#[derive(Default)]
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    /// Spawns `task` and keeps its handle (forgetting tasks that have ended).
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = crate::lock(&self.0);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Aborts every task and forgets them.
    fn abort_all(&self) {
        let tasks: Vec<_> = crate::lock(&self.0).drain(..).collect();
        for task in tasks {
            task.abort();
        }
    }
}

struct Inner {
    config: Config,
    identity: Identity,
    endpoint: Endpoint,
    listen: SocketAddr,
    timeouts: Timeouts,
    shares: Arc<ShareStore>,
    uploads: Uploads,
    /// The role now; the one lock a promotion or demotion swaps it under.
    role: Mutex<Current>,
    /// Leaf role: the supernode this leaf is attached to (`wait_ready` watches it).
    uplink: watch::Sender<Option<Uplink>>,
    connections: AtomicUsize,
    /// Download connections accepted now, per IP (see `accept::MAX_FETCH_PER_IP`).
    fetch_per_ip: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// The configured role (or the start option overriding it).
    setting: RoleSetting,
    /// Content ids being downloaded now (one download per id at a time).
    downloads: Mutex<HashSet<ContentId>>,
    /// The node's own tasks (accept loop, rescans).
    tasks: Tasks,
    /// Download jobs handed to the node (see [`crate::jobs`]).
    jobs: crate::jobs::Jobs,
    /// Which addresses may be dialled now (see [`dial_guard`]).
    dials: dial_guard::DialGuard,
    /// Reverse connections awaited, and the rate of dialling back (see [`reverse`]).
    reverse: reverse::Reverse,
    /// Connections through relay circuits (see [`relay`]).
    relay: relay::Relay,
    /// When the node started (its uptime counts towards its capacity score).
    started: std::time::Instant,
    /// The private network's key (`network.secret`), if any.
    network: Option<transport::NetworkKey>,
    /// Configured bootstrap addresses not answering now: since when (unix seconds) and why.
    bootstrap_down: Mutex<std::collections::BTreeMap<SocketAddr, (u64, String)>>,
    /// The last error met (see [`Status::last_error`]).
    last_error: Mutex<Option<LastError>>,
    /// Event counters for the metrics endpoint (see [`crate::metrics`]).
    counters: Arc<Counters>,
    /// The bootstrap entries and the listen address as resolved (see [`bootstrap`]).
    resolver: bootstrap::Resolver,
    /// The node-wide download cap (`share.download_rate_kib`; a reload changes it).
    download_cap: Arc<crate::rate_cap::RateCap>,
    /// Whether this node shares its folders (not a short-lived CLI leaf).
    sharing: bool,
}

impl Inner {
    /// The capacity score this node advertises now (0: not eligible to be a supernode).
    fn score(&self) -> u32 {
        if self.setting != RoleSetting::Auto {
            return 0;
        }
        capacity_score(&self.config.election, self.started.elapsed())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        crate::lock(&self.role)
    }
}

/// Marks a content id as being downloaded until dropped.
struct ActiveDownload<'a> {
    set: &'a Mutex<HashSet<ContentId>>,
    id: ContentId,
}

impl<'a> ActiveDownload<'a> {
    fn claim(set: &'a Mutex<HashSet<ContentId>>, id: ContentId) -> Result<Self, NodeError> {
        if !crate::lock(set).insert(id) {
            return Err(NodeError::Query(format!(
                "{id} is already being downloaded"
            )));
        }
        Ok(ActiveDownload { set, id })
    }
}

impl Drop for ActiveDownload<'_> {
    fn drop(&mut self) {
        crate::lock(self.set).remove(&self.id);
    }
}

/// The reason of a leaf until it has joined (then [`Node::note_attached`] replaces it).
const JOINING: &str = "joining a supernode";
/// The reason of the placeholder role a node has before its first real one.
const STARTING: &str = "starting";

/// Most incoming connections at once, beyond `max_leaves` + `max_peers` (downloaders).
pub const MAX_DOWNLOADER_CONNECTIONS: usize = 256;

/// When a problem started, as `kazoo status` shows it: the local time (of day, or the date
/// when not today) and the age, e.g. `12:03:04 (3 min ago)`.
fn local_since(secs: u64) -> String {
    let now = now_secs();
    format!(
        "{} ({})",
        kazoo_common::clock::local_short(secs, now),
        kazoo_common::clock::age(secs, now)
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.inner.identity.node_id())
            .field("listen", &self.inner.listen)
            .finish()
    }
}

impl Node {
    /// Starts a node: identity, endpoint, sharing, role, control socket.
    pub async fn start(config: Config, options: StartOptions) -> Result<Node, NodeError> {
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| NodeError::Start(format!("creating {}: {e}", data_dir.display())))?;
        // The key and the control socket live here: only the owner may enter.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| NodeError::Start(format!("securing {}: {e}", data_dir.display())))?;
        }
        let identity =
            Identity::load_or_create(&data_dir).map_err(|e| NodeError::Start(e.to_string()))?;
        let resolver = bootstrap::Resolver::new(config.network.bootstrap.clone());
        let listen = match options.listen {
            Some(listen) => listen,
            None => resolver.listen_addr(&config.node.listen).await,
        };
        let timeouts = options
            .timeouts
            .unwrap_or_else(|| config.network.timeouts());
        let endpoint = transport::endpoint(&identity, listen, timeouts)
            .map_err(|e| NodeError::Start(e.to_string()))?;
        let listen = endpoint
            .local_addr()
            .map_err(|e| NodeError::Start(format!("reading bound address: {e}")))?;
        let relay = relay::Relay::new(&identity, timeouts)
            .map_err(|e| NodeError::Start(format!("relay endpoint: {e}")))?;
        let layout = if options.share {
            ShareLayout::from_config(&config)
        } else {
            ShareLayout::default()
        };
        if let Some(downloads) = &layout.download_dir {
            if let Err(e) = std::fs::create_dir_all(downloads) {
                tracing::warn!(dir = %downloads.display(), error = %e, "cannot create the download folder");
            }
        }
        let shares = Arc::new(ShareStore::with_layout(
            layout,
            data_dir.join("hashcache.bin"),
        ));
        let setting = options.role.unwrap_or(config.node.role);
        let inner = Arc::new(Inner {
            identity,
            endpoint,
            listen,
            timeouts,
            uploads: Uploads::new(Arc::clone(&shares), config.share.upload_rate_kib),
            shares,
            role: Mutex::new(Current {
                role: Role::Leaf(LeafRole::new(Vec::new())),
                since: now_secs(),
                reason: STARTING.into(),
            }),
            uplink: watch::channel(None).0,
            connections: AtomicUsize::new(0),
            fetch_per_ip: Mutex::new(std::collections::HashMap::new()),
            setting,
            downloads: Mutex::new(HashSet::new()),
            tasks: Tasks::default(),
            jobs: crate::jobs::Jobs::default(),
            reverse: reverse::Reverse::default(),
            relay,
            dials: dial_guard::DialGuard::new(
                config.network.bootstrap.iter().filter_map(|b| b.addr.ip()),
                std::time::Instant::now(),
            ),
            resolver,
            download_cap: Arc::new(crate::rate_cap::RateCap::new(
                config.share.download_rate_kib,
            )),
            sharing: options.share,
            started: std::time::Instant::now(),
            bootstrap_down: Mutex::default(),
            last_error: Mutex::default(),
            network: config.network.network_key(),
            counters: Arc::default(),
            config,
        });
        let node = Node { inner };
        tracing::info!(node = %node.node_id(), listen = %listen, role = ?setting, "node starting");
        if options.share {
            node.spawn(rescan_loop(Arc::clone(&node.inner)));
        }
        node.spawn(accept::accept_loop(Arc::clone(&node.inner)));
        node.spawn(relay::accept_loop(Arc::clone(&node.inner)));
        let bootstrap_empty = node.inner.config.network.bootstrap.is_empty();
        match setting {
            RoleSetting::Supernode => node.promote("configured as supernode"),
            RoleSetting::Auto if bootstrap_empty => {
                node.promote("auto: no bootstrap supernodes configured, first node of its network")
            }
            RoleSetting::Auto | RoleSetting::Leaf => {
                let leaf = LeafRole::new(Vec::new());
                node.set_role(Role::Leaf(Arc::clone(&leaf)), JOINING);
                leaf_role::start(&node, &leaf, None);
            }
        }
        Ok(node)
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn(task);
    }

    /// Swaps in `role`; the old one ends (its tasks stop, a supernode's peerings close).
    fn set_role(&self, role: Role, reason: &str) {
        tracing::info!(node = %self.node_id().short(), role = role.wire().as_str(), reason, "role set");
        let to_supernode = matches!(role, Role::Supernode(_));
        let new = Current {
            role,
            since: now_secs(),
            reason: reason.to_owned(),
        };
        let old = std::mem::replace(&mut *self.inner.current(), new);
        let counters = &self.inner.counters;
        match (&old.role, to_supernode) {
            (Role::Leaf(_), true) if old.reason != STARTING => {
                Counters::add(&counters.promotions, 1)
            }
            (Role::Supernode(_), false) => Counters::add(&counters.demotions, 1),
            _ => {}
        }
        old.role.stop(reason);
    }

    /// The leaf role, while this node is a leaf.
    fn leaf(&self) -> Option<Arc<LeafRole>> {
        match &self.inner.current().role {
            Role::Leaf(leaf) => Some(Arc::clone(leaf)),
            Role::Supernode(_) => None,
        }
    }

    /// The supernode this leaf is joined to, as a place to send others.
    fn uplink_provider(&self) -> Option<Provider> {
        self.inner.uplink.borrow().as_ref().map(|u| {
            Provider::new(
                u.node,
                kazoo_common::addr::canonical(u.conn.remote_address()),
            )
        })
    }

    /// The last succession notice while a leaf: (heirs, other supernodes).
    fn succession(&self) -> (Vec<Provider>, Vec<Provider>) {
        self.leaf().map(|l| l.succession()).unwrap_or_default()
    }

    /// Tells this (new) supernode's overlay about other supernodes to peer with (dial
    /// candidates until a peering with them comes up).
    fn learn_supernodes(&self, supernodes: &[Provider]) {
        if let Some(sn) = self.supernode() {
            let now = std::time::Instant::now();
            let mut core = sn.core();
            for p in supernodes {
                core.overlay_mut().add_candidate(*p, self.node_id(), now);
            }
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.identity.node_id()
    }

    /// The bound UDP address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The config it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The share store.
    pub fn shares(&self) -> &Arc<ShareStore> {
        &self.inner.shares
    }

    /// The supernode role (its core and I/O), while this node is a supernode.
    pub fn supernode(&self) -> Option<Arc<SupernodeRole>> {
        match &self.inner.current().role {
            Role::Supernode(sn) => Some(Arc::clone(sn)),
            Role::Leaf(_) => None,
        }
    }

    /// Current status.
    pub fn status(&self) -> Status {
        let (role, since, reason) = {
            let current = self.inner.current();
            (current.role.clone(), current.since, current.reason.clone())
        };
        let uplink = self.inner.uplink.borrow().clone();
        let now = std::time::Instant::now();
        let unix_now = now_secs();
        // Unix seconds of an instant in the past.
        let unix = |at: std::time::Instant| {
            unix_now.saturating_sub(now.saturating_duration_since(at).as_secs())
        };
        let (peer_list, leaf_list, sn) = match &role {
            Role::Supernode(sn) => {
                let core = sn.core();
                let peers = core.overlay().peers().into_iter().map(|p| PeerStatus {
                    node: p.node,
                    addr: p.addr,
                    since: unix(p.since),
                    filter_positions: p.filter_positions,
                    peers: p.peers,
                    load: p.load,
                });
                let leaves = core.leaf_list().into_iter().map(|l| LeafStatus {
                    node: l.node,
                    addr: l.addr,
                    since: unix(l.since),
                    entries: l.entries,
                    reachable: l.reachable,
                });
                (
                    Some(peers.collect()),
                    Some(leaves.collect()),
                    Some(core.stats()),
                )
            }
            Role::Leaf(_) => (None, None, None),
        };
        let (succession, reachability) = match &role {
            Role::Leaf(leaf) => (
                Some(leaf.succession().0.into_iter().map(|p| p.node).collect()),
                leaf.reachability(),
            ),
            Role::Supernode(_) => (None, None),
        };
        Status {
            role: role.wire().as_str().to_owned(),
            node_id: self.node_id(),
            listen: self.inner.listen,
            since,
            reason,
            supernode: uplink.as_ref().map(|u| u.node),
            supernode_addr: uplink
                .as_ref()
                .map(|u| kazoo_common::addr::canonical(u.conn.remote_address())),
            leaves: sn.map(|s| s.leaves),
            peers: sn.map(|s| s.peers),
            peer_list,
            leaf_list,
            known_supernodes: sn.map(|s| s.known),
            uplink_reason: uplink.as_ref().map(|u| u.reason.clone()),
            succession,
            reachability,
            shared_files: self.inner.shares.len(),
            folders: self.inner.shares.folders(),
            uploads: self.inner.uploads.in_progress(),
            index_entries: sn.map(|s| s.entries),
            index_files: sn.map(|s| s.files),
            problems: self.problems(),
            relay: self.supernode().map(|sn| sn.relay_stats()),
            downloads: self.inner.jobs.unfinished(),
            last_error: crate::lock(&self.inner.last_error).clone(),
        }
    }

    /// Records `message` as the last error (see [`Status::last_error`]); the same message
    /// again keeps its first time.
    pub(crate) fn note_error(&self, message: String) {
        let mut last = crate::lock(&self.inner.last_error);
        if last.as_ref().is_some_and(|l| l.message == message) {
            return;
        }
        *last = Some(LastError {
            at: now_secs(),
            message,
        });
    }

    /// Once joined: a leaf whose reason still says it is joining says why it is a leaf.
    pub(crate) fn note_attached(&self) {
        let mut current = self.inner.current();
        if matches!(current.role, Role::Leaf(_)) && current.reason == JOINING {
            current.reason = match self.inner.setting {
                RoleSetting::Leaf => "configured as leaf".into(),
                _ => "auto: joined a supernode of the network".into(),
            };
        }
    }

    /// The counters and transfer figures the metrics endpoint shows.
    pub fn counts(&self) -> Counts {
        Counts::read(
            &self.inner.counters,
            self.inner.uploads.bytes_sent(),
            crate::lock(&self.inner.downloads).len() as u64,
        )
    }

    /// The node's event counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// What is wrong now (see [`Status::problems`]).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.inner.shares.problems();
        problems.extend(self.inner.resolver.problems());
        for (addr, (since, why)) in crate::lock(&self.inner.bootstrap_down).iter() {
            problems.push(format!(
                "bootstrap {} not answering since {} ({why})",
                self.inner.resolver.describe(*addr),
                local_since(*since)
            ));
        }
        problems
    }

    /// Records whether a configured bootstrap address answered a dial (`Err`: why not); a
    /// bootstrap that stops answering is logged at once, and again when it is back.
    fn note_bootstrap(&self, addr: SocketAddr, answer: Result<(), String>) {
        if !self.inner.resolver.is_bootstrap(addr) {
            return;
        }
        let mut down = crate::lock(&self.inner.bootstrap_down);
        let name = self.inner.resolver.describe(addr);
        match answer {
            Ok(()) => {
                if down.remove(&addr).is_some() {
                    tracing::info!(addr = %name, "bootstrap supernode answers again");
                }
            }
            Err(why) => {
                if !down.contains_key(&addr) {
                    tracing::warn!(addr = %name, error = %why, "bootstrap supernode not answering");
                    self.note_error(format!("bootstrap {name} not answering: {why}"));
                }
                let since = down.get(&addr).map_or_else(now_secs, |(since, _)| *since);
                down.insert(addr, (since, why));
            }
        }
    }

    /// Waits until this node is a supernode or joined to one.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), NodeError> {
        let mut uplink = self.inner.uplink.subscribe();
        let ready = async {
            loop {
                if self.supernode().is_some() || uplink.borrow_and_update().is_some() {
                    return;
                }
                if uplink.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, ready)
            .await
            .map_err(|_| NodeError::NoSupernode(self.bootstrap_list()))
    }

    /// Whom to dial among the bootstrap entries this round (names resolved now).
    async fn bootstrap_targets(&self) -> Vec<(SocketAddr, Option<NodeId>)> {
        let inner = &self.inner;
        inner.resolver.targets(inner.listen, &inner.dials).await
    }

    /// The configured bootstrap entries, comma-separated (or "none configured").
    fn bootstrap_list(&self) -> String {
        let list = &self.inner.config.network.bootstrap;
        if list.is_empty() {
            "none configured".into()
        } else {
            list.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Searches the network (through this node's supernode, or its own index): the best
    /// `max` files, each under its best-matching name (see [`Self::find`]).
    pub async fn search(&self, words: &[String], max: u32) -> Result<Vec<Hit>, NodeError> {
        let found = self.find(words, max).await?;
        Ok(found.results.into_iter().map(|f| f.hit).collect())
    }

    /// Searches the network: at most `max` (≤ [`MAX_RESULTS`]) files, merged by content id
    /// with the names they are shared under, ranked (name matches, then folder matches, then
    /// by distinct sources), and whether more matched than are returned.
    pub async fn find(&self, words: &[String], max: u32) -> Result<Findings, NodeError> {
        check_query(words).map_err(NodeError::Query)?;
        let query = Query::parse(words).map_err(|e| NodeError::Query(e.to_string()))?;
        let max = max.min(MAX_RESULTS as u32);
        // One more than shown, to know whether there are more.
        let ask = (max + 1).min(MAX_RESULTS as u32);
        let mut results = if let Some(sn) = self.supernode() {
            let mut hits = Vec::new();
            self.routed_search(&sn, words, ask, |batch| hits.extend(batch))
                .await;
            let mut results = merge_results(Some(&query), hits);
            for found in &mut results {
                sn.core().rank_hits(
                    self.node_id(),
                    std::slice::from_mut(&mut found.hit),
                    std::time::Instant::now(),
                );
                resolve(
                    &mut found.hit.providers,
                    std::net::Ipv4Addr::LOCALHOST.into(),
                );
            }
            results
        } else {
            let uplink = self
                .inner
                .uplink
                .borrow()
                .clone()
                .ok_or_else(|| NodeError::NoSupernode(self.bootstrap_list()))?;
            let request = Request::Search {
                words: words.to_vec(),
                max_results: ask,
            };
            let mut recv = client::send(&uplink.conn, &request).await?;
            let mut hits = Vec::new();
            loop {
                match client::read_answer(&mut recv).await {
                    Ok(Response::Hits(batch)) => hits.extend(batch),
                    Ok(Response::End) => break,
                    Ok(other) => {
                        return Err(RequestError::Unexpected(format!("{other:?}")).into());
                    }
                    Err(RequestError::Remote { message, .. }) => {
                        return Err(NodeError::Query(message))
                    }
                    Err(e) => return Err(e.into()),
                }
                // Several supernodes answer; the stream is bounded all the same.
                if hits.len() > 4 * ask as usize + HITS_PER_FRAME {
                    break;
                }
            }
            // What the supernode sent is checked like a peer's hits, then merged.
            let sn_addr = kazoo_common::addr::canonical(uplink.conn.remote_address());
            let hits = hits.into_iter().filter_map(|h| validate_hit(h, sn_addr));
            let mut results = merge_results(Some(&query), hits.collect());
            for found in &mut results {
                resolve(&mut found.hit.providers, sn_addr.ip());
            }
            results
        };
        let more = results.len() > max as usize || results.len() >= MAX_RESULTS;
        results.truncate(max as usize);
        Ok(Findings { results, more })
    }

    /// The name, size and sources (other than this node) of `id`, from an exact-id search.
    async fn providers(&self, id: ContentId) -> Result<Option<(Hit, Vec<Provider>)>, NodeError> {
        let hits = self.search(&[id.to_hex()], 1).await?;
        let me = self.node_id();
        Ok(hits.into_iter().find(|h| h.id == id).map(|h| {
            let sources = h
                .providers
                .iter()
                .filter(|p| p.node != me)
                .copied()
                .collect();
            (h, sources)
        }))
    }

    /// [`Self::providers`], asked again (after waiting for a supernode) when the lookup fails
    /// or finds no source: the supernode may have died mid-request, or the sources may be
    /// re-homing after theirs did. At most [`LOOKUP_ATTEMPTS`] lookups, [`LOOKUP_RETRY`]
    /// apart.
    async fn providers_retrying(
        &self,
        id: ContentId,
    ) -> Result<Option<(Hit, Vec<Provider>)>, NodeError> {
        let mut attempt = 1;
        loop {
            let found = self.providers(id).await;
            let retry = match &found {
                Ok(Some((_, sources))) => sources.is_empty(),
                Ok(None) => true,
                Err(NodeError::Request(_)) | Err(NodeError::NoSupernode(_)) => true,
                Err(_) => false,
            };
            if !retry || attempt >= LOOKUP_ATTEMPTS {
                return found;
            }
            tracing::info!(%id, attempt, "no sources yet; looking up again");
            attempt += 1;
            tokio::time::sleep(LOOKUP_RETRY).await;
            let _ = self.wait_ready(LOOKUP_RETRY * 2).await;
        }
    }

    /// Downloads `id` to `output` (or the download folder), publishing progress; looks its
    /// sources up again while none answer (see [`Self::providers_retrying`]).
    pub async fn get(
        &self,
        id: ContentId,
        output: Option<PathBuf>,
        progress: watch::Sender<Progress>,
    ) -> Result<Report, NodeError> {
        let found = self.providers_retrying(id).await?;
        self.fetch(id, found, output, progress).await
    }

    /// One lookup of `id`'s name, size and sources (other than this node); `None` when nobody
    /// in reach shares it.
    pub async fn lookup(&self, id: ContentId) -> Result<Option<(Hit, Vec<Provider>)>, NodeError> {
        self.providers(id).await
    }

    /// Downloads `id` from the sources `found` by a lookup (none: fails with
    /// [`DownloadError::NoSources`]) to `output` (or the download folder), publishing
    /// progress; the finished file is shared. One download per content id at a time.
    pub async fn fetch(
        &self,
        id: ContentId,
        found: Option<(Hit, Vec<Provider>)>,
        output: Option<PathBuf>,
        progress: watch::Sender<Progress>,
    ) -> Result<Report, NodeError> {
        let _active = ActiveDownload::claim(&self.inner.downloads, id)?;
        let (name, size, sources) = match found {
            Some((hit, sources)) => (hit.name, Some(hit.size), sources),
            None => (String::new(), None, Vec::new()),
        };
        let destination = match output {
            Some(path) => Destination::Path(path),
            None => Destination::Folder(self.inner.config.download_dir()),
        };
        let job = Job {
            id,
            name,
            size,
            sources,
            destination,
            partial_dir: partial_dir(&self.inner.config),
        };
        tracing::info!(id = %id, sources = job.sources.len(), "download starting");
        let (report, manifest) = download::run(self, job, progress).await?;
        tracing::info!(id = %id, path = %report.path.display(), seconds = report.seconds, "download finished");
        self.inner
            .shares
            .add_file(report.path.clone(), id, manifest)
            .await;
        Ok(report)
    }

    /// The downloads this node manages (`kazoo get` through the control socket).
    pub fn jobs(&self) -> &crate::jobs::Jobs {
        &self.inner.jobs
    }

    /// Stops the node: closes every connection and ends its tasks.
    pub async fn shutdown(&self) {
        if let Some(sn) = self.supernode() {
            supernode_role::peering::save_hosts(&self.inner.config.node.data_dir, &sn).await;
        }
        self.inner.jobs.stop_all();
        let current = self.inner.current().role.clone();
        current.stop("shutting down");
        self.inner.tasks.abort_all();
        self.inner.relay.close();
        self.inner
            .endpoint
            .close(CloseCode::SHUTDOWN.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Our `Hello`.
    fn hello(&self, intent: Intent) -> Hello {
        hello(&self.inner, intent)
    }

    /// Dials `addr` (pinning `expected` if known).
    async fn dial(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
        intent: Intent,
    ) -> Result<Link, transport::TransportError> {
        self.inner
            .dials
            .check(addr, std::time::Instant::now())
            .map_err(|refused| transport::TransportError::NotDialled(refused.to_string()))?;
        self.dial_recorded(addr, expected, intent).await
    }

    /// Dials a joined leaf back at its advertised port on the IP it connected from (one dial
    /// per join; joins are bounded by the handshake rate), outside the guard's rate limits,
    /// which are for addresses peers name. The dial comes from a fresh socket: a NAT or a
    /// firewall lets the answers of the leaf's own connection to us in, so a dial from our
    /// listening socket would get through any NAT that keeps the port, filtering or not.
    async fn dial_back(
        &self,
        addr: SocketAddr,
        leaf: NodeId,
    ) -> Result<Link, transport::TransportError> {
        let bind = fresh_bind(addr);
        let probe = Endpoint::client(bind)
            .map_err(|source| transport::TransportError::Bind { addr: bind, source })?;
        let mut pending = dial_guard::Pending::new(&self.inner.dials, addr);
        let result = transport::dial_private(
            &probe,
            &self.inner.identity,
            addr,
            Some(leaf),
            self.inner.timeouts,
            self.hello(Intent::Fetch),
            self.inner.network.as_ref(),
        )
        .await;
        pending.finish(&result);
        result
    }

    /// Dials `addr`, recording in the dial guard whether it answered.
    async fn dial_recorded(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
        intent: Intent,
    ) -> Result<Link, transport::TransportError> {
        let guard = &self.inner.dials;
        // Recorded as silent if the caller stops waiting before the dial ends.
        let mut pending = dial_guard::Pending::new(guard, addr);
        let result = transport::dial_private(
            &self.inner.endpoint,
            &self.inner.identity,
            addr,
            expected,
            self.inner.timeouts,
            self.hello(intent),
            self.inner.network.as_ref(),
        )
        .await;
        pending.finish(&result);
        let link = result?;
        if !self.inner.config.network.allows(&link.peer()) {
            let reason = format!("node {} is not in this node's network.allow", link.peer());
            transport::close(&link.conn, CloseCode::REFUSED, &reason);
            return Err(transport::TransportError::NotAllowed(reason));
        }
        Ok(link)
    }
}

/// This node's `Hello`: its role now, listen port and capacity score.
fn hello(inner: &Inner, intent: Intent) -> Hello {
    let role = inner.current().role.wire();
    Hello {
        listen_port: inner.listen.port(),
        capacity: inner.score(),
        ..Hello::new(inner.identity.node_id(), role, intent)
    }
}

impl download::Network for Node {
    fn dial(
        &self,
        provider: Provider,
    ) -> download::BoxFuture<'_, Result<(Connection, download::Path), String>> {
        Box::pin(self.dial_source(provider))
    }

    fn sources(&self, id: ContentId) -> download::BoxFuture<'_, Vec<Provider>> {
        Box::pin(async move {
            match self.providers(id).await {
                Ok(Some((_, sources))) => sources,
                _ => Vec::new(),
            }
        })
    }

    fn download_counters(&self) -> Option<Arc<Counters>> {
        Some(Arc::clone(&self.inner.counters))
    }

    fn download_cap(&self) -> Option<Arc<crate::rate_cap::RateCap>> {
        Some(Arc::clone(&self.inner.download_cap))
    }

    fn report_unreachable(&self, nodes: Vec<NodeId>) {
        if let Some(sn) = self.supernode() {
            sn.core()
                .report_unreachable(self.node_id(), &nodes, std::time::Instant::now());
            return;
        }
        let Some(uplink) = self.inner.uplink.borrow().clone() else {
            tracing::debug!(
                count = nodes.len(),
                "no supernode to report unreachable sources to"
            );
            return;
        };
        tokio::spawn(async move {
            let count = nodes.len();
            let request = Request::ReportUnreachable { nodes };
            match client::call(&uplink.conn, &request).await {
                Ok(_) => tracing::debug!(count, "unreachable sources reported"),
                Err(e) => {
                    tracing::debug!(count, error = %e, "reporting unreachable sources failed")
                }
            }
        });
    }
}

/// Where a fresh socket towards `addr` binds: the unspecified address of its family, any
/// port.
pub(crate) fn fresh_bind(addr: SocketAddr) -> SocketAddr {
    let unspecified: std::net::IpAddr = match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(unspecified, 0)
}

/// Replaces unspecified provider IPs ("the node that answered") with `ip`.
fn resolve(providers: &mut [Provider], ip: std::net::IpAddr) {
    for p in providers {
        if p.addr.ip().is_unspecified() {
            p.addr.set_ip(ip);
        }
    }
}

/// Lookups of a download's sources before it gives up (see `Node::providers_retrying`).
const LOOKUP_ATTEMPTS: u32 = 4;
/// Wait between those lookups (a supernode's death is noticed and re-homed in ~2–3 s).
const LOOKUP_RETRY: Duration = Duration::from_secs(2);

/// Where partial downloads live.
pub fn partial_dir(config: &Config) -> PathBuf {
    config.node.data_dir.join("partial")
}

/// Scans the share dirs at once (in the background: hashing a large share takes a while),
/// then every `share.rescan_secs`.
async fn rescan_loop(inner: Arc<Inner>) {
    let first = inner.shares.rescan().await;
    tracing::info!(
        files = inner.shares.len(),
        hashed = first.hashed,
        "shares scanned"
    );
    let period = Duration::from_secs(inner.config.share.rescan_secs);
    loop {
        tokio::time::sleep(period).await;
        inner.shares.rescan().await;
    }
}
