//! Succession: which joined leaves are heirs of their supernode, best first. The list goes to
//! every leaf in succession notices; when the supernode dies, heir `k` promotes after `k`
//! heir delays (see [`super::leaf`]).

use std::net::SocketAddr;
use std::time::Instant;

use kazoo_common::wire::Provider;
use kazoo_common::NodeId;

/// A joined leaf as the succession sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// The leaf.
    pub node: NodeId,
    /// Its advertised capacity score (0: not eligible).
    pub capacity: u32,
    /// When it joined.
    pub since: Instant,
    /// The listen address that answered the supernode's dial back (none: not an heir).
    pub reachable_at: Option<SocketAddr>,
}

/// The succession list of at most `max` heirs: eligible candidates whose listen address
/// answered, highest capacity first, then the longest attached, then by node id.
pub fn rank_heirs(candidates: impl IntoIterator<Item = Candidate>, max: usize) -> Vec<Provider> {
    let mut heirs: Vec<(u32, Instant, NodeId, SocketAddr)> = candidates
        .into_iter()
        .filter(|c| c.capacity > 0)
        .filter_map(|c| {
            c.reachable_at
                .map(|addr| (c.capacity, c.since, c.node, addr))
        })
        .collect();
    heirs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    heirs
        .into_iter()
        .take(max)
        .map(|(_, _, node, addr)| Provider::new(node, addr))
        .collect()
}
