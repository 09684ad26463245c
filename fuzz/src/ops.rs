//! Op sequences for the state-machine targets. An input is a setup value followed by ops,
//! each decoded with postcard (so wire messages inside them take real wire shapes); decoding
//! stops at the first byte that does not decode, or after [`MAX_OPS`] ops.

use std::net::SocketAddr;

use kazoo_common::wire::{PeerMessage, Request, ShareEntry};
use kazoo_common::{ContentId, NodeId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Most ops run per input (bounds the time one input takes).
pub const MAX_OPS: usize = 64;

/// Decodes `T` from the front of `data`, advancing it; `None` when it does not decode.
pub fn take<T: DeserializeOwned>(data: &mut &[u8]) -> Option<T> {
    let (value, rest) = postcard::take_from_bytes::<T>(data).ok()?;
    *data = rest;
    Some(value)
}

/// Decodes a setup value and then up to [`MAX_OPS`] ops.
pub fn decode<S: DeserializeOwned + Default, O: DeserializeOwned>(mut data: &[u8]) -> (S, Vec<O>) {
    let setup = take(&mut data).unwrap_or_default();
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        match take(&mut data) {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    (setup, ops)
}

/// Encodes a setup value and ops as an input (for seeds).
pub fn encode<S: Serialize, O: Serialize>(setup: &S, ops: &[O]) -> Vec<u8> {
    let mut out = postcard::to_stdvec(setup).expect("setup encodes");
    for op in ops {
        out.extend(postcard::to_stdvec(op).expect("op encodes"));
    }
    out
}

/// The node id of small number `n` (leaves and peers are few, so they collide often).
/// Number 0 is the supernode under test itself.
pub fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

/// An address on one of a few IPs (`ip` is reduced to 0–3), at `port`.
pub fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, ip % 4], port))
}

/// Setup of the `supernode` target: its limits (reduced into small ranges so they are hit).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SupernodeSetup {
    /// `max_leaves` = 1 + this % 8.
    pub max_leaves: u8,
    /// `max_leaves_per_ip` = 1 + this % 8.
    pub max_leaves_per_ip: u8,
    /// `max_entries_per_leaf` = 1 + this % 32.
    pub max_entries_per_leaf: u8,
    /// `max_index_entries` = 1 + this % 128 (below the config's range, so `IndexFull` is
    /// reachable from a small input).
    pub max_index_entries: u8,
}

/// One event for the `supernode` target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SupernodeOp {
    /// Leaf `leaf % 8 + 1` joins from IP `ip`, advertising `capacity`.
    Admit {
        /// Which leaf.
        leaf: u8,
        /// Which IP.
        ip: u8,
        /// Advertised capacity.
        capacity: u32,
    },
    /// A request from a leaf on its current session (`stale`: on its last replaced one).
    Request {
        /// Which leaf.
        leaf: u8,
        /// Use a replaced session's key.
        stale: bool,
        /// Through `answer` instead of `answer_from`.
        plain: bool,
        /// The request.
        request: Request,
    },
    /// A leaf's connection ends (`stale`: a replaced session's).
    Depart {
        /// Which leaf.
        leaf: u8,
        /// Use a replaced session's key.
        stale: bool,
    },
    /// One drain step.
    Drain,
    /// Time passes.
    Advance {
        /// Milliseconds.
        ms: u32,
    },
    /// The overlay's periodic work.
    Tick,
    /// The node's own shares change.
    OwnShares {
        /// Added.
        added: Vec<ShareEntry>,
        /// Removed.
        removed: Vec<ContentId>,
    },
    /// A leaf answered a dial at `port` (it may be an heir).
    Reachable {
        /// Which leaf.
        leaf: u8,
        /// Its listen port.
        port: u16,
    },
    /// A leaf answered no dial back; its connection came from `port` (it is listed there).
    Unreachable {
        /// Which leaf.
        leaf: u8,
        /// The port its connection comes from.
        port: u16,
    },
    /// The succession list is computed.
    Succession {
        /// Most heirs.
        max: u8,
    },
    /// Growth: a promote request is considered (and reported sent).
    Promote,
}

/// Setup of the `overlay` target.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverlaySetup {
    /// `max_peers` = this % 6 (0 included: a supernode that takes no peers).
    pub max_peers: u8,
    /// `hop_limit` = this % (MAX_HOPS + 1).
    pub hop_limit: u8,
    /// Flood routing instead of filters.
    pub flood: bool,
    /// `max_queries` = 1 + this % 8.
    pub max_queries: u8,
    /// `max_hosts` = 1 + this % 16.
    pub max_hosts: u8,
    /// An `auto` supernode that may demote: (below_pct % 41, after in seconds).
    pub demote: Option<(u8, u8)>,
    /// `max_leaves` = 1 + this % 8.
    pub max_leaves: u8,
}

/// One event for the `overlay` target. Peers are numbered 1–6 (0 is the node itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum OverlayOp {
    /// A peering with `peer` comes up (if the overlay wants it, as the runtime asks first).
    PeerUp {
        /// Which peer.
        peer: u8,
        /// Its address's IP and port.
        ip: u8,
        /// Its port.
        port: u16,
    },
    /// A peering ends.
    PeerDown {
        /// Which peer.
        peer: u8,
    },
    /// A message from a peer.
    Message {
        /// Which peer.
        peer: u8,
        /// The message.
        msg: PeerMessage,
    },
    /// A local search starts (if it passes `check_query`, as the runtime checks first).
    Query {
        /// Words.
        words: Vec<String>,
        /// Most results.
        max: u32,
    },
    /// Periodic work.
    Tick,
    /// Time passes.
    Advance {
        /// Milliseconds.
        ms: u32,
    },
    /// A dial failed.
    DialFailed {
        /// Which peer.
        peer: u8,
    },
    /// A known supernode from the host cache.
    AddHost {
        /// Which node (any number: hosts need not be peers).
        node: u8,
        /// Its IP.
        ip: u8,
        /// Its port.
        port: u16,
        /// Seconds since seen.
        age_secs: u32,
    },
    /// The node's own shares change (its filter with them).
    OwnShares {
        /// Added.
        added: Vec<ShareEntry>,
        /// Removed.
        removed: Vec<ContentId>,
    },
    /// A leaf joins (load changes).
    Admit {
        /// Which leaf (numbered as peers are: a promoted leaf peers back).
        leaf: u8,
        /// Its capacity.
        capacity: u32,
    },
    /// The demotion check runs.
    Demotion,
    /// Growth: a promote request is considered (and reported sent).
    Promote,
    /// A peer came up: is it the promoted leaf to hand over to?
    Handover {
        /// Which peer.
        peer: u8,
    },
}

/// Peer number `n` reduced to 1–6.
pub fn peer(n: u8) -> NodeId {
    node(1 + n % 6)
}
