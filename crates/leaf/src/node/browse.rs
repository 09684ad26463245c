//! `kazoo browse`: listing another node's shared files over QUIC (`Request::Browse`, a page
//! of [`BROWSE_PAGE`] at a time). The node is named by address (`ADDR`), by id and address
//! (`NODEID@ADDR`, the id checked in the TLS handshake), or by id alone (`NODEID`), looked
//! up where this node's supernode finds sources: its own leaves, its peers, the sources whose
//! hits came through a peer (the same way as a reverse connection, which is then tried if a
//! direct dial fails).

use std::net::SocketAddr;
use std::str::FromStr;

use kazoo_common::wire::{ErrorCode, Intent, Provider, Request, Response, ShareEntry};
use kazoo_common::wire::{BROWSE_PAGE, MAX_ENTRIES_PER_LEAF, MAX_NAME_LEN};
use kazoo_common::NodeId;
use quinn::Connection;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::client::{self, RequestError};

/// Most files one `kazoo browse` lists (a node shares at most this many).
pub const MAX_BROWSE: usize = MAX_ENTRIES_PER_LEAF;

/// The node to browse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowseTarget {
    /// Its id (checked in the handshake; with no address: looked up).
    pub node: Option<NodeId>,
    /// Its address.
    pub addr: Option<SocketAddr>,
}

impl FromStr for BrowseTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?}: give NODEID, IP:PORT or NODEID@IP:PORT");
        if let Some((id, addr)) = s.split_once('@') {
            let node = id.parse().map_err(|_| bad())?;
            let addr = addr.parse().map_err(|_| bad())?;
            return Ok(BrowseTarget {
                node: Some(node),
                addr: Some(addr),
            });
        }
        if let Ok(addr) = s.parse() {
            return Ok(BrowseTarget {
                node: None,
                addr: Some(addr),
            });
        }
        let node = s.parse().map_err(|_| bad())?;
        Ok(BrowseTarget {
            node: Some(node),
            addr: None,
        })
    }
}

/// A node's shared files, as `kazoo browse` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The node (proven by its TLS key).
    pub node: NodeId,
    /// Where it was reached.
    pub addr: SocketAddr,
    /// How many files it says it shares.
    pub total: u32,
    /// Its files, sorted by path (at most the `max` asked for).
    pub files: Vec<ShareEntry>,
}

/// Why a browse failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The node could not be found or reached.
    #[error("{0}")]
    Unreachable(String),
    /// The node does not let others list its files.
    #[error("the node does not let others list its files: {0}")]
    NotBrowsable(String),
    /// The request failed.
    #[error("browse request: {0}")]
    Request(#[from] RequestError),
    /// The node's answer broke the protocol.
    #[error("bad answer: {0}")]
    Bad(String),
}

impl Node {
    /// Lists up to `max` (≤ [`MAX_BROWSE`]) of `target`'s shared files.
    pub async fn browse(&self, target: BrowseTarget, max: usize) -> Result<Listing, BrowseError> {
        let max = max.min(MAX_BROWSE);
        let (conn, node) = self.browse_dial(target).await?;
        let result = fetch(&conn, max).await;
        conn.close(0u32.into(), b"browsed");
        let (total, files) = result?;
        Ok(Listing {
            node,
            addr: conn.remote_address(),
            total,
            files,
        })
    }

    /// A connection to `target` and its proven id.
    async fn browse_dial(&self, target: BrowseTarget) -> Result<(Connection, NodeId), BrowseError> {
        match target {
            BrowseTarget {
                addr: Some(addr),
                node,
            } => {
                let link = self
                    .dial(addr, node, Intent::Fetch)
                    .await
                    .map_err(|e| BrowseError::Unreachable(format!("{addr}: {e}")))?;
                let peer = link.peer();
                Ok((link.conn, peer))
            }
            BrowseTarget {
                node: Some(node),
                addr: None,
            } => {
                let provider = self.locate(node).await?;
                let (conn, _) = self
                    .dial_source(provider)
                    .await
                    .map_err(|e| BrowseError::Unreachable(format!("{}: {e}", provider.addr)))?;
                Ok((conn, node))
            }
            BrowseTarget {
                node: None,
                addr: None,
            } => Err(BrowseError::Unreachable("no node given".into())),
        }
    }

    /// Where `node` is, as this supernode (or this leaf's supernode) knows it.
    async fn locate(&self, node: NodeId) -> Result<Provider, BrowseError> {
        if node == self.node_id() {
            return Ok(Provider::new(node, self.inner.listen));
        }
        if let Some(sn) = self.supernode() {
            let now = std::time::Instant::now();
            return sn.core().locate(&node, now).ok_or_else(|| {
                BrowseError::Unreachable(format!(
                    "node {} is not known here; give its address (NODEID@IP:PORT)",
                    node.short()
                ))
            });
        }
        self.ask_connect(node).await.map_err(|e| {
            BrowseError::Unreachable(format!(
                "node {} not found by the supernode ({e}); give its address (NODEID@IP:PORT)",
                node.short()
            ))
        })
    }
}

/// Fetches pages until `max` files, the node's total, or an empty page.
async fn fetch(conn: &Connection, max: usize) -> Result<(u32, Vec<ShareEntry>), BrowseError> {
    let mut files: Vec<ShareEntry> = Vec::new();
    let mut total = 0;
    while files.len() < max {
        let start = u32::try_from(files.len()).unwrap_or(u32::MAX);
        let answer = match client::call(conn, &Request::Browse { start }).await {
            Err(RequestError::Remote {
                code: ErrorCode::NotBrowsable,
                message,
            }) => return Err(BrowseError::NotBrowsable(message)),
            other => other?,
        };
        let Response::Files {
            entries,
            total: claimed,
        } = answer
        else {
            return Err(BrowseError::Bad(format!("{answer:?}")));
        };
        if entries.len() > BROWSE_PAGE {
            return Err(BrowseError::Bad(format!(
                "{} files in one answer (at most {BROWSE_PAGE})",
                entries.len()
            )));
        }
        if let Some(long) = entries.iter().find(|e| e.name.len() > MAX_NAME_LEN) {
            return Err(BrowseError::Bad(format!(
                "a name of {} bytes (at most {MAX_NAME_LEN})",
                long.name.len()
            )));
        }
        total = claimed;
        let done = entries.is_empty();
        files.extend(entries);
        if done || files.len() >= total as usize {
            break;
        }
    }
    files.truncate(max);
    Ok((total, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let id = "ab".repeat(32);
        let both: BrowseTarget = format!("{id}@127.0.0.1:4710").parse().unwrap();
        assert_eq!(both.node, Some(id.parse().unwrap()));
        assert_eq!(both.addr, Some("127.0.0.1:4710".parse().unwrap()));
        let addr: BrowseTarget = "[::1]:4710".parse().unwrap();
        assert_eq!((addr.node, addr.addr.is_some()), (None, true));
        let node: BrowseTarget = id.parse().unwrap();
        assert_eq!((node.node.is_some(), node.addr), (true, None));
        let err = "alice".parse::<BrowseTarget>().unwrap_err();
        assert!(err.contains("NODEID@IP:PORT"), "{err}");
    }
}
