//! The configuration schema (TOML). Every key is optional; the defaults are documented on
//! each field and in the README. Unknown keys are an error that names the key.
//!
//! ```toml
//! [node]
//! role = "auto"                 # "auto" | "leaf" | "supernode"
//! listen = "0.0.0.0:4710"       # UDP address for QUIC
//! data_dir = "~/.local/share/kazoo"
//!
//! [share]
//! dirs = ["~/Music"]
//! download_dir = "~/.local/share/kazoo/downloads"
//! rescan_secs = 2
//! upload_rate_kib = 0           # 0 = unlimited
//!
//! [network]
//! bootstrap = ["203.0.113.7:4710", "<64 hex digits>@198.51.100.2:4710"]
//! idle_timeout_ms = 2000        # a silent peer is dead after this; keep-alive every 1/4
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
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::wire::{MAX_ENTRIES_PER_LEAF, MAX_LEAVES_PER_SUPERNODE};
use crate::NodeId;

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
        /// The allowed range.
        reason: &'static str,
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
}

/// `[election]`: whether an `auto` node may become a supernode.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElectionConfig {
    /// Force eligibility on or off. Default: an `auto` node is eligible when its capacity
    /// score reaches `threshold` (so auto nodes are eligible out of the box, on loopback too).
    pub eligible: Option<bool>,
    /// Upload bandwidth to advertise, KiB/s: the base of the capacity score (see
    /// [`Config::election_score`]). Default 1000.
    pub bandwidth_kib: u32,
    /// Lowest score that makes an `auto` node eligible. Default 1.
    pub threshold: u32,
    /// Heir `k` of a dead supernode waits `k` × this (ms) for the heirs before it, then
    /// promotes itself. Default 1000; range 0–10000 (0: every heir promotes at once).
    pub heir_delay_ms: u64,
    /// An `auto` supernode with fewer leaves than this percentage of `max_leaves` is
    /// under-used. Default 25; range 0–40 (0: never demote; above 40 the two halves of a
    /// growth handover would both be under-used).
    pub demote_below_pct: u8,
    /// Seconds a demotion plan must hold (under-used, the fewest leaves among its
    /// under-used peers, room at its peers) before an `auto` supernode demotes. Default 30;
    /// range 1–3600.
    pub demote_after_secs: u64,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            eligible: None,
            bandwidth_kib: 1000,
            threshold: 1,
            heir_delay_ms: 1000,
            demote_below_pct: 25,
            demote_after_secs: 30,
        }
    }
}

impl ElectionConfig {
    /// How long heir `k` waits, per rank, before promoting.
    pub fn heir_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.heir_delay_ms)
    }

    /// How long a supernode must stay under-used before it may demote.
    pub fn demote_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.demote_after_secs)
    }
}

/// Uptime after which the capacity score stops growing.
pub const SCORE_UPTIME: std::time::Duration = std::time::Duration::from_secs(3600);

impl Config {
    /// The capacity score an `auto` node advertises after `uptime` (0: not eligible; the
    /// caller checks the role). The score is `bandwidth_kib`, growing linearly with uptime to twice that
    /// after [`SCORE_UPTIME`] (long-lived nodes make stable supernodes); it makes the node
    /// eligible once it reaches `threshold`, unless `eligible` forces the answer. Heirs are
    /// ranked by it; that the node's listen address is reachable is checked by its supernode
    /// (it dials back before listing the node as an heir).
    pub fn election_score(&self, uptime: std::time::Duration) -> u32 {
        let e = &self.election;
        let base = u64::from(e.bandwidth_kib);
        let grown = uptime.min(SCORE_UPTIME).as_secs() * base / SCORE_UPTIME.as_secs();
        let score = u32::try_from(base + grown).unwrap_or(u32::MAX);
        if e.eligible.unwrap_or(score >= e.threshold) {
            score.max(1)
        } else {
            0
        }
    }
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
    /// UDP address to listen on. Default `0.0.0.0:4710`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Key, hash cache, partial downloads and the control socket.
    /// Default `$XDG_DATA_HOME/kazoo` or `~/.local/share/kazoo`.
    pub data_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            role: RoleSetting::Auto,
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            data_dir: default_data_dir(),
        }
    }
}

/// `[share]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareConfig {
    /// Directories shared recursively. Default: none (the download dir is always shared).
    pub dirs: Vec<PathBuf>,
    /// Where finished downloads go. Default `<data_dir>/downloads`.
    pub download_dir: Option<PathBuf>,
    /// Seconds between checks of the share dirs for added, removed or changed files.
    /// Default 2; range 1–3600.
    pub rescan_secs: u64,
    /// Upload rate cap for the whole node, in KiB/s; 0 (default) means unlimited.
    pub upload_rate_kib: u64,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            dirs: Vec::new(),
            download_dir: None,
            rescan_secs: 2,
            upload_rate_kib: 0,
        }
    }
}

/// `[network]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Supernodes to contact first: `ADDR` or `NODEID@ADDR`. Default: none.
    pub bootstrap: Vec<BootstrapEntry>,
    /// A peer silent this long (ms) is dead; keep-alives go out every quarter of it.
    /// Default 2000 (a dead supernode is noticed within ~2 s); range 500–60000.
    pub idle_timeout_ms: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bootstrap: Vec::new(),
            idle_timeout_ms: 2000,
        }
    }
}

impl NetworkConfig {
    /// The QUIC timing this section asks for.
    pub fn timeouts(&self) -> crate::transport::Timeouts {
        let idle = std::time::Duration::from_millis(self.idle_timeout_ms);
        crate::transport::Timeouts {
            keep_alive: idle / 4,
            idle,
        }
    }
}

/// `[supernode]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupernodeConfig {
    /// Most leaves served at once. Default 200; range 1–10000.
    pub max_leaves: usize,
    /// Peer supernodes kept connected. Default 40; range 30–50 (lower for small tests: 0–50).
    pub max_peers: usize,
    /// Most index entries per leaf. Default and maximum 100000.
    pub max_entries_per_leaf: usize,
    /// Most index entries of all leaves together (the supernode's own included); a
    /// registration past it is refused with `IndexFull`. Default 2,000,000; range
    /// 1000–50,000,000.
    pub max_index_entries: usize,
    /// Most accounted index memory in MiB (an estimate within ~1.5× of the heap used); a
    /// registration past it is refused with `IndexFull`. Default 1024; range 16–65536.
    pub max_index_mib: usize,
    /// Most leaves joined at once from one IP address (home routers and carrier-grade NAT
    /// put several users behind one). Default 64; range 1–10000.
    pub max_leaves_per_ip: usize,
    /// Hops a search travels between supernodes. Default 2 (with 30–50 peers each, two hops
    /// reach ~1000–2500 supernodes); range 0–4.
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

/// A bootstrap supernode: an address, optionally with the node id it must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapEntry {
    /// The expected node id, if given as `NODEID@ADDR`.
    pub node: Option<NodeId>,
    /// The UDP address.
    pub addr: SocketAddr,
}

impl FromStr for BootstrapEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (node, addr) = match s.split_once('@') {
            Some((id, addr)) => (Some(id.parse::<NodeId>().map_err(|e| e.to_string())?), addr),
            None => (None, s),
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP:PORT address"))?;
        Ok(BootstrapEntry { node, addr })
    }
}

impl fmt::Display for BootstrapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node {
            Some(node) => write!(f, "{node}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl<'de> Deserialize<'de> for BootstrapEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for BootstrapEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kazoo"),
        _ => home().join(".local/share/kazoo"),
    }
}

/// Expands a leading `~/` to the home directory.
fn expand(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

impl Config {
    /// Parses TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        config.resolve_paths(None);
        Ok(config)
    }

    /// Loads a config file; relative paths in it are taken relative to the file's directory
    /// (made absolute).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: origin.clone(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        config.validate(&origin)?;
        let base = path.parent().map(|dir| match std::env::current_dir() {
            Ok(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir.to_path_buf(),
        });
        config.resolve_paths(base.as_deref());
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let range = |key, value: String, reason| ConfigError::Range {
            path: origin.to_owned(),
            key,
            value,
            reason,
        };
        let sn = &self.supernode;
        if !(1..=MAX_LEAVES_PER_SUPERNODE).contains(&sn.max_leaves) {
            return Err(range(
                "supernode.max_leaves",
                sn.max_leaves.to_string(),
                "1-10000",
            ));
        }
        if sn.max_peers > 50 {
            return Err(range(
                "supernode.max_peers",
                sn.max_peers.to_string(),
                "0-50",
            ));
        }
        if !(1..=MAX_ENTRIES_PER_LEAF).contains(&sn.max_entries_per_leaf) {
            return Err(range(
                "supernode.max_entries_per_leaf",
                sn.max_entries_per_leaf.to_string(),
                "1-100000",
            ));
        }
        if !(1000..=50_000_000).contains(&sn.max_index_entries) {
            return Err(range(
                "supernode.max_index_entries",
                sn.max_index_entries.to_string(),
                "1000-50000000",
            ));
        }
        if !(16..=65_536).contains(&sn.max_index_mib) {
            return Err(range(
                "supernode.max_index_mib",
                sn.max_index_mib.to_string(),
                "16-65536",
            ));
        }
        if !(1..=MAX_LEAVES_PER_SUPERNODE).contains(&sn.max_leaves_per_ip) {
            return Err(range(
                "supernode.max_leaves_per_ip",
                sn.max_leaves_per_ip.to_string(),
                "1-10000",
            ));
        }
        if !(500..=60_000).contains(&self.network.idle_timeout_ms) {
            return Err(range(
                "network.idle_timeout_ms",
                self.network.idle_timeout_ms.to_string(),
                "500-60000",
            ));
        }
        if sn.hop_limit > crate::wire::MAX_HOPS {
            return Err(range(
                "supernode.hop_limit",
                sn.hop_limit.to_string(),
                "0-4",
            ));
        }
        let e = &self.election;
        if e.heir_delay_ms > 10_000 {
            return Err(range(
                "election.heir_delay_ms",
                e.heir_delay_ms.to_string(),
                "0-10000",
            ));
        }
        // A handover leaves both supernodes about half full: above 40 % they would both be
        // under-used at once, and shrink would undo growth.
        if e.demote_below_pct > 40 {
            return Err(range(
                "election.demote_below_pct",
                e.demote_below_pct.to_string(),
                "0-40",
            ));
        }
        if !(1..=3600).contains(&e.demote_after_secs) {
            return Err(range(
                "election.demote_after_secs",
                e.demote_after_secs.to_string(),
                "1-3600",
            ));
        }
        if !(1..=3600).contains(&self.share.rescan_secs) {
            return Err(range(
                "share.rescan_secs",
                self.share.rescan_secs.to_string(),
                "1-3600",
            ));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: Option<&Path>) {
        let fix = |p: &Path| {
            let p = expand(p);
            match base {
                Some(base) if p.is_relative() => base.join(p),
                _ => p,
            }
        };
        self.node.data_dir = fix(&self.node.data_dir);
        self.share.dirs = self.share.dirs.iter().map(|d| fix(d)).collect();
        self.share.download_dir = self.share.download_dir.as_deref().map(fix);
    }

    /// The download directory (explicit, or `<data_dir>/downloads`).
    pub fn download_dir(&self) -> PathBuf {
        self.share
            .download_dir
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("downloads"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_grows_with_uptime_and_decides_eligibility() {
        let mut c = Config::default();
        let minutes = |m: u64| std::time::Duration::from_secs(60 * m);
        assert_eq!(c.election_score(minutes(0)), 1000);
        assert_eq!(c.election_score(minutes(30)), 1500);
        assert_eq!(c.election_score(minutes(600)), 2000, "capped after an hour");
        c.election.threshold = 1600;
        assert_eq!(c.election_score(minutes(30)), 0, "not yet eligible");
        assert_eq!(c.election_score(minutes(40)), 1666);
        c.election.eligible = Some(true);
        assert_eq!(c.election_score(minutes(0)), 1000, "forced eligible");
        c.election.eligible = Some(false);
        assert_eq!(c.election_score(minutes(600)), 0, "forced ineligible");
        c.election = ElectionConfig {
            bandwidth_kib: 0,
            threshold: 0,
            ..ElectionConfig::default()
        };
        assert_eq!(
            c.election_score(minutes(0)),
            1,
            "an eligible score is never 0"
        );
    }

    #[test]
    fn empty_config_has_defaults() {
        let c = Config::from_toml("", "test").unwrap();
        assert_eq!(c.node.role, RoleSetting::Auto);
        assert_eq!(c.node.listen.port(), DEFAULT_PORT);
        assert_eq!(c.supernode.max_peers, 40);
        assert!(c.network.bootstrap.is_empty());
    }

    #[test]
    fn full_config_parses() {
        let id = "ab".repeat(32);
        let text = format!(
            r#"
            [node]
            role = "supernode"
            listen = "127.0.0.1:0"
            data_dir = "/tmp/k"
            [share]
            dirs = ["/srv/music"]
            download_dir = "/tmp/dl"
            [network]
            bootstrap = ["127.0.0.1:4710", "{id}@[::1]:5000"]
            [supernode]
            max_leaves = 3
            max_peers = 30
            "#
        );
        let c = Config::from_toml(&text, "test").unwrap();
        assert_eq!(c.node.role, RoleSetting::Supernode);
        assert_eq!(c.network.bootstrap[0].node, None);
        assert_eq!(c.network.bootstrap[1].node.unwrap().to_hex(), id);
        assert_eq!(c.network.bootstrap[1].addr.port(), 5000);
        assert_eq!(c.download_dir(), PathBuf::from("/tmp/dl"));
        assert_eq!(c.supernode.max_leaves, 3);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[node]\nrolle = \"leaf\"\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("rolle"), "{err}");
        let err = Config::from_toml("[nodes]\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("nodes"), "{err}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::from_toml("[node]\nrole = \"king\"\n", "x").is_err());
        assert!(Config::from_toml("[network]\nbootstrap = [\"nope\"]\n", "x").is_err());
        let err = Config::from_toml("[supernode]\nmax_peers = 99\n", "x").unwrap_err();
        assert!(err.to_string().contains("supernode.max_peers"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[node]\ndata_dir = \"data\"\n[share]\ndirs = [\"music\"]\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.node.data_dir, dir.path().join("data"));
        assert_eq!(c.share.dirs, vec![dir.path().join("music")]);
    }
}
