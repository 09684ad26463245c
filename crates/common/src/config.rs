//! The configuration schema (TOML). Every key is optional; the defaults are documented on
//! each field and in the README. Unknown keys are an error that names the key.
//!
//! ```toml
//! [node]
//! role = "auto"                 # "auto" | "leaf" | "supernode"
//! listen = "[::]:4710"          # UDP address for QUIC (IP or host name; dual-stack default)
//! data_dir = "~/.local/share/kazoo"
//! control_socket = "/run/kazoo/control.sock"  # default <data_dir>/control.sock
//! control_group = "kazoo"       # the socket's group (mode 0660): its members may use the CLI
//!
//! [share]
//! dirs = ["~/Music"]
//! download_dir = "~/.local/share/kazoo/downloads"
//! rescan_secs = 2
//! upload_rate_kib = 0           # 0 = unlimited
//! download_rate_kib = 0         # 0 = unlimited
//! share_downloads = true        # the download folder is shared
//! share_saved_elsewhere = false # files saved with `get -o` outside the share folders are not
//! follow_symlinks = false       # symlinks to files outside the share folders are skipped
//! browsable = true              # others may list this node's shared files (`kazoo browse`)
//!
//! [network]
//! bootstrap = ["203.0.113.7:4710", "<64 hex digits>@home.example.net:4710", "[2001:db8::7]:4710"]
//! idle_timeout_ms = 2000        # a silent peer is dead after this; keep-alive every 1/4
//! bootstrap_wait_secs = 60      # an auto node whose bootstraps never answered waits this long
//! secret = "…"                  # a private network: only nodes with this secret connect
//! allow = ["<64 hex digits>"]   # only these nodes may join, peer or download (unset: anyone)
//!
//! [supernode]
//! max_leaves = 200
//! max_peers = 40
//! max_entries_per_leaf = 100000
//! max_index_entries = 2000000   # all leaves together; more is refused (IndexFull)
//! max_index_mib = 1024          # accounted index memory; more is refused (IndexFull)
//! max_leaves_per_ip = 64        # leaves joined at once from one IP address
//! hop_limit = 2
//! routing = "filters"           # or "flood"
//!
//! [election]
//! eligible = true               # default: auto nodes whose score reaches the threshold
//! bandwidth_kib = 1000          # upload KiB/s: the capacity score, doubling over the first hour of uptime
//! threshold = 1
//! heir_delay_ms = 1000          # heir k of a dead supernode waits k × this, then promotes
//! demote_below_pct = 25         # an auto supernode under this % of max_leaves is under-used
//! demote_after_secs = 30        # … and demotes after being under-used this long (0 % = never)
//!
//! [relay]                       # what a supernode relays between leaves behind NATs
//! max_circuits = 32             # at once (0: relay nothing)
//! rate_kib = 4096               # KiB/s, all circuits together
//! max_secs = 600                # a circuit's longest life
//! [metrics]
//! listen = "127.0.0.1:9710"     # Prometheus text format at GET /metrics; unset (default): off
//!
//! The schema (the sections and their defaults) is here; reading a file or text and resolving
//! its paths is in `parse`, the range checks in [`validate`], the `[network]` section and its
//! QUIC timing in `network`, the `[election]` section and the capacity score in `election`,
//! and the `[relay]` section in `relay`.

mod election;
pub mod host;
mod network;
mod parse;
mod relay;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use election::ElectionConfig;
pub use host::HostAddr;
pub use network::{BootstrapEntry, NetworkConfig};
use parse::default_data_dir;
pub use relay::RelayConfig;

use crate::wire::MAX_ENTRIES_PER_LEAF;

/// Default UDP port.
pub const DEFAULT_PORT: u16 = 4710;

/// Errors loading a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The config file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys / bad values.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: String,
        /// What toml said (names the key).
        message: String,
    },
    /// A value is out of its documented range.
    #[error("{path}: {key} = {value}: {reason}")]
    Range {
        /// The config file.
        path: String,
        /// The offending key.
        key: &'static str,
        /// Its value.
        value: String,
        /// The allowed range, `MIN-MAX` (from its [`validate::Bounded`] constant).
        reason: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[node]`
    pub node: NodeConfig,
    /// `[share]`
    pub share: ShareConfig,
    /// `[network]`
    pub network: NetworkConfig,
    /// `[supernode]`
    pub supernode: SupernodeConfig,
    /// `[election]`
    pub election: ElectionConfig,
    /// `[relay]`
    pub relay: RelayConfig,
    /// `[metrics]`
    pub metrics: MetricsConfig,
}

/// Which role a node takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleSetting {
    /// Leaf, promoted to supernode when no supernode is reachable (default).
    #[default]
    Auto,
    /// Always a leaf.
    Leaf,
    /// Always a supernode.
    Supernode,
}

/// `[node]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Role setting. Default `"auto"`.
    pub role: RoleSetting,
    /// UDP address to listen on: an IP literal or `HOST:PORT` (resolved at start). Default
    /// `[::]:4710`, every interface over IPv4 and IPv6 (`0.0.0.0:4710` where IPv6 is
    /// unavailable); port 0 picks a free port.
    pub listen: HostAddr,
    /// Key, hash cache, partial downloads and (by default) the control socket.
    /// Default `$XDG_DATA_HOME/kazoo` or `~/.local/share/kazoo`.
    pub data_dir: PathBuf,
    /// The control socket the CLI talks to. Default `<data_dir>/control.sock`.
    pub control_socket: Option<PathBuf>,
    /// Group of the control socket (a name or a numeric id): the socket is created mode
    /// 0660 and its members may use the CLI against this node. Default: the node user's
    /// own group (only that user, as the data dir is private anyway).
    pub control_group: Option<String>,
}

impl NodeConfig {
    /// Where the control socket is (see [`Self::control_socket`]).
    pub fn control_socket_path(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join(CONTROL_SOCKET))
    }
}

/// File name of the control socket in `data_dir`, unless `node.control_socket` says otherwise.
pub const CONTROL_SOCKET: &str = "control.sock";

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            role: RoleSetting::Auto,
            listen: HostAddr::Ip(SocketAddr::from(([0u16; 8], DEFAULT_PORT))),
            data_dir: default_data_dir(),
            control_socket: None,
            control_group: None,
        }
    }
}

/// `[share]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareConfig {
    /// Directories shared recursively. Default: none. A kazoo data dir (any node's, recognised
    /// by its mark file or its `node.key`) and key files are never shared.
    pub dirs: Vec<PathBuf>,
    /// Where finished downloads go. Default `<data_dir>/downloads`.
    pub download_dir: Option<PathBuf>,
    /// Seconds between checks of the share dirs for added, removed or changed files.
    /// Default 2; range [`validate::SHARE_RESCAN_SECS`].
    pub rescan_secs: u64,
    /// Upload rate cap for the whole node, in KiB/s; 0 (default) means unlimited. Range
    /// [`validate::SHARE_UPLOAD_RATE_KIB`].
    pub upload_rate_kib: u64,
    /// Download rate cap for the whole node (all downloads together), in KiB/s; 0 (default)
    /// means unlimited. Range [`validate::SHARE_DOWNLOAD_RATE_KIB`].
    pub download_rate_kib: u64,
    /// Whether the download folder is shared (as if listed in `dirs`). Default `true`: what a
    /// node fetched, it offers (KaZaA's "My Shared Folder"); `false` keeps it private even
    /// when it lies inside a share folder.
    pub share_downloads: bool,
    /// Whether a file saved with `kazoo get -o PATH` outside every share folder is shared.
    /// Default `false`: a file goes where the user put it and nothing more.
    pub share_saved_elsewhere: bool,
    /// Whether a symlink to a file outside every share folder is shared. Default `false`
    /// (a link to `/etc/passwd` dropped into a share folder stays private); links to files
    /// inside a share folder are always followed, symlinked directories never are.
    pub follow_symlinks: bool,
    /// Whether other nodes may list this node's shared files (`kazoo browse`). Default
    /// `true`: what is shared can be found by search anyway, and browsing a source is how a
    /// user finds more of what they like; `false` answers every browse with
    /// `NotBrowsable`.
    pub browsable: bool,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            dirs: Vec::new(),
            download_dir: None,
            rescan_secs: 2,
            upload_rate_kib: 0,
            download_rate_kib: 0,
            share_downloads: true,
            share_saved_elsewhere: false,
            follow_symlinks: false,
            browsable: true,
        }
    }
}

/// `[supernode]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupernodeConfig {
    /// Most leaves served at once. Default 200; range [`validate::SUPERNODE_MAX_LEAVES`].
    pub max_leaves: usize,
    /// Peer supernodes kept connected. Default 40; 30–50 is the documented range, and lower
    /// values are accepted for small tests ([`validate::SUPERNODE_MAX_PEERS`]).
    pub max_peers: usize,
    /// Most index entries per leaf. Default and maximum [`MAX_ENTRIES_PER_LEAF`]
    /// ([`validate::SUPERNODE_MAX_ENTRIES_PER_LEAF`]).
    pub max_entries_per_leaf: usize,
    /// Most index entries of all leaves together (the supernode's own included); a
    /// registration past it is refused with `IndexFull`. Default 2,000,000; range
    /// [`validate::SUPERNODE_MAX_INDEX_ENTRIES`].
    pub max_index_entries: usize,
    /// Most accounted index memory in MiB (an estimate within ~1.5× of the heap used); a
    /// registration past it is refused with `IndexFull`. Default 1024; range
    /// [`validate::SUPERNODE_MAX_INDEX_MIB`].
    pub max_index_mib: usize,
    /// Most leaves joined at once from one IP address (home routers and carrier-grade NAT
    /// put several users behind one). Default 64; range
    /// [`validate::SUPERNODE_MAX_LEAVES_PER_IP`].
    pub max_leaves_per_ip: usize,
    /// Hops a search travels between supernodes. Default 2 (with 30–50 peers each, two hops
    /// reach ~1000–2500 supernodes); range [`validate::SUPERNODE_HOP_LIMIT`].
    pub hop_limit: u8,
    /// Forwarding rule: `"filters"` (default; only to peers whose routing filter may match)
    /// or `"flood"` (every peer, for comparison).
    pub routing: Routing,
}

/// How a supernode forwards searches to its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Only to peers whose routing filter (or, with hops to spare, reach) may match.
    #[default]
    Filters,
    /// To every peer while hops are left.
    Flood,
}

impl Default for SupernodeConfig {
    fn default() -> Self {
        SupernodeConfig {
            max_leaves: 200,
            max_peers: 40,
            max_entries_per_leaf: MAX_ENTRIES_PER_LEAF,
            max_index_entries: 2_000_000,
            max_index_mib: 1024,
            max_leaves_per_ip: 64,
            hop_limit: 2,
            routing: Routing::Filters,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP address serving the metrics in Prometheus text format at `GET /metrics` (plain
    /// HTTP, no authentication: keep it on loopback, e.g. `127.0.0.1:9710`). Default: unset,
    /// no endpoint.
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// The download directory (explicit, or `<data_dir>/downloads`).
    pub fn download_dir(&self) -> PathBuf {
        self.share
            .download_dir
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("downloads"))
    }
}
