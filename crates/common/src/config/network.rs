//! The `[network]` section: bootstrap supernodes (`ADDR` or `NODEID@ADDR`, where `ADDR` is an
//! IP literal or `HOST:PORT`) and the QUIC timing it maps to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::HostAddr;
use crate::NodeId;

/// `[network]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Supernodes to contact first: `ADDR` or `NODEID@ADDR`. Default: none.
    pub bootstrap: Vec<BootstrapEntry>,
    /// A peer silent this long (ms) is dead; keep-alives go out every quarter of it.
    /// Default 2000 (a dead supernode is noticed within ~2 s); range
    /// [`super::validate::NETWORK_IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: u64,
    /// Seconds an `auto` node whose bootstrap entries never answered (mistyped, or down)
    /// keeps trying, with a warning in the log and in `kazoo status`, before it becomes a
    /// network of its own. Default 60; 0: after its first failed round. Range
    /// [`super::validate::NETWORK_BOOTSTRAP_WAIT_SECS`].
    pub bootstrap_wait_secs: u64,
    /// A private network's shared secret: only nodes with the same secret connect (join,
    /// peer, download); it never goes over the wire (each side proves it knows it, see
    /// `transport::private`). Default: none (an open network). At least
    /// [`MIN_SECRET_LEN`] bytes.
    pub secret: Option<String>,
    /// An allowlist of node ids: when set, only these nodes may join, peer with or download
    /// from this node, and this node connects to no other (refused on both sides with
    /// `NotAllowed`). Default: none (any node of the network). Non-empty, at most
    /// [`MAX_ALLOW`] ids.
    pub allow: Option<Vec<NodeId>>,
}

/// Most node ids in `network.allow`.
pub const MAX_ALLOW: usize = 10_000;

/// Shortest `network.secret` accepted.
pub const MIN_SECRET_LEN: usize = 16;

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bootstrap: Vec::new(),
            idle_timeout_ms: 2000,
            bootstrap_wait_secs: 60,
            secret: None,
            allow: None,
        }
    }
}

impl NetworkConfig {
    /// The private network's key, if `secret` is set.
    pub fn network_key(&self) -> Option<crate::transport::NetworkKey> {
        self.secret
            .as_deref()
            .map(crate::transport::NetworkKey::from_secret)
    }

    /// Whether `node` may connect with this node (see [`Self::allow`]).
    pub fn allows(&self, node: &NodeId) -> bool {
        self.allow.as_ref().is_none_or(|allow| allow.contains(node))
    }

    /// See [`Self::bootstrap_wait_secs`].
    pub fn bootstrap_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.bootstrap_wait_secs)
    }

    /// The QUIC timing this section asks for.
    pub fn timeouts(&self) -> crate::transport::Timeouts {
        let idle = std::time::Duration::from_millis(self.idle_timeout_ms);
        crate::transport::Timeouts {
            keep_alive: idle / 4,
            idle,
        }
    }
}

/// A bootstrap supernode: an address, optionally with the node id it must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapEntry {
    /// The expected node id, if given as `NODEID@ADDR`.
    pub node: Option<NodeId>,
    /// The UDP address, or a host name resolved whenever it is dialled.
    pub addr: HostAddr,
}

impl FromStr for BootstrapEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (node, addr) = match s.split_once('@') {
            Some((id, addr)) => (Some(id.parse::<NodeId>().map_err(|e| e.to_string())?), addr),
            None => (None, s),
        };
        let addr = addr.parse()?;
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
