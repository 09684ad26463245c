//! Reaching sources that cannot be dialled (see the wire spec, "Reaching a source that
//! cannot be dialled"): the downloader's side — dial, then ask for a reverse connection
//! while the dial keeps trying (a hole punch) — and the source's side — dialling back a
//! downloader when its supernode asks, rate-limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kazoo_common::transport::{Link, TransportError, HANDSHAKE_TIMEOUT};
use kazoo_common::wire::{
    Intent, Provider, Request, Response, RELAY_AFTER, REVERSE_RATE, REVERSE_RETRY, REVERSE_TRIES,
};
use kazoo_common::NodeId;
use quinn::Connection;
use tokio::sync::oneshot;

use super::streams::serve_link;
use super::Node;
use crate::client;
use crate::download::{BoxFuture, Path};
use crate::serve::RateLimit;

/// How long a direct dial has before a reverse connection is asked for too (it keeps
/// trying meanwhile).
pub const DIRECT_HEAD_START: Duration = Duration::from_millis(1500);
/// How long a downloader waits for a source it asked to connect back (after asking): one
/// handshake timeout, in which the source makes its [`REVERSE_TRIES`] dials.
pub const REVERSE_WAIT: Duration = HANDSHAKE_TIMEOUT;
/// Reverse connections a node waits for at once; more sources are only dialled.
pub const MAX_REVERSE_WAITS: usize = 64;

/// Reverse connections this node waits for, and its rate of dialling back.
pub(super) struct Reverse {
    waits: Mutex<HashMap<NodeId, oneshot::Sender<Connection>>>,
    dials: RateLimit,
}

impl Default for Reverse {
    fn default() -> Self {
        Reverse {
            waits: Mutex::new(HashMap::new()),
            dials: RateLimit::new(REVERSE_RATE, 2 * REVERSE_RATE),
        }
    }
}

impl Reverse {
    /// Waits for a reverse connection from `node` (none if [`MAX_REVERSE_WAITS`] are taken);
    /// the wait ends when the returned receiver is dropped.
    fn expect(&self, node: NodeId) -> Option<Wait<'_>> {
        let mut waits = crate::lock(&self.waits);
        if waits.len() >= MAX_REVERSE_WAITS && !waits.contains_key(&node) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waits.insert(node, tx);
        Some(Wait {
            reverse: self,
            node,
            rx,
        })
    }

    /// Hands an incoming reverse connection from `node` to its waiter; false if none waits.
    pub(super) fn deliver(&self, node: NodeId, conn: Connection) -> bool {
        let waiting = crate::lock(&self.waits).remove(&node);
        waiting.is_some_and(|tx| tx.send(conn).is_ok())
    }

    /// Takes one of the dials back (reverse connections and relay circuits together) this
    /// node makes per second; false when over [`REVERSE_RATE`].
    pub(super) fn try_dial(&self) -> bool {
        self.dials.try_take(1)
    }

    /// Whether a reverse connection from `node` is awaited.
    pub(super) fn awaits(&self, node: &NodeId) -> bool {
        crate::lock(&self.waits).contains_key(node)
    }
}

/// A wait for one reverse connection; deregisters when dropped.
struct Wait<'a> {
    reverse: &'a Reverse,
    node: NodeId,
    rx: oneshot::Receiver<Connection>,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        crate::lock(&self.reverse.waits).remove(&self.node);
    }
}

impl Node {
    /// Connects to a download source: a direct dial; if it has not connected after
    /// [`DIRECT_HEAD_START`], a reverse connection is asked for through the supernode while
    /// the dial goes on (re-dialled until [`REVERSE_WAIT`] if it fails), and if neither has
    /// come up [`RELAY_AFTER`] after asking, a relay circuit too (see [`Node::relay_dial`]);
    /// whichever comes up first is used.
    pub(super) async fn dial_source(
        &self,
        provider: Provider,
    ) -> Result<(Connection, Path), String> {
        let node = Some(provider.node);
        let mut direct: BoxFuture<'_, Result<Link, TransportError>> =
            Box::pin(self.dial(provider.addr, node, Intent::Fetch));
        let first = tokio::time::timeout(DIRECT_HEAD_START, &mut direct).await;
        let failed = match first {
            Ok(Ok(link)) => return Ok((link.conn, Path::Direct)),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => None,
        };
        let asked = match self.inner.reverse.expect(provider.node) {
            Some(wait) => match self.ask_connect(provider.node).await {
                Ok(target) => Some((wait, target.addr)),
                Err(e) => {
                    tracing::debug!(source = %provider.node.short(), reason = %e, "no reverse connection");
                    None
                }
            },
            None => None,
        };
        // Without a reverse connection, the direct dial's own outcome.
        let Some((mut wait, punch_at)) = asked else {
            return match failed {
                Some(e) => Err(e),
                None => direct
                    .await
                    .map(|l| (l.conn, Path::Direct))
                    .map_err(|e| e.to_string()),
            };
        };
        tracing::debug!(source = %provider.node.short(), %punch_at, "asked for a reverse connection");
        // From here on a connection, whichever side's dial gets through, needs the source to
        // have sent towards us: a reverse connection if anyone may dial us, else both sides'
        // packets opened the way (a hole punch).
        let answered = if self.reachable() {
            Path::Reverse
        } else {
            Path::Punched
        };
        let asked_at = tokio::time::Instant::now();
        let deadline = asked_at + REVERSE_WAIT;
        let mut dialling = failed.is_none();
        let mut last_error = failed.unwrap_or_default();
        let mut relay = None;
        let mut relay_tried = false;
        loop {
            tokio::select! {
                conn = &mut wait.rx => {
                    return conn.map(|c| (c, answered)).map_err(|_| "reverse wait ended".into());
                }
                dialled = &mut direct, if dialling => match dialled {
                    Ok(link) => return Ok((link.conn, answered)),
                    Err(e) => {
                        last_error = e.to_string();
                        dialling = false;
                    }
                },
                relayed = async {
                    match relay.as_mut() {
                        Some(relaying) => relaying.await,
                        None => std::future::pending().await,
                    }
                }, if relay.is_some() => {
                    match relayed {
                        Ok(conn) => return Ok((conn, Path::Relayed)),
                        Err(e) => {
                            tracing::debug!(source = %provider.node.short(), reason = %e, "relay failed");
                            last_error = e;
                            relay = None;
                        }
                    }
                }
                _ = tokio::time::sleep_until(asked_at + RELAY_AFTER), if !relay_tried => {
                    relay_tried = true;
                    relay = Some(Box::pin(self.relay_dial(provider.node)));
                }
                _ = tokio::time::sleep(REVERSE_RETRY), if !dialling => {
                    // Past the dial guard: the first dial left this address silent, but our
                    // supernode vouches for it and has asked the source to send to us, so
                    // this is a punch (one dial per REVERSE_RETRY until REVERSE_WAIT).
                    direct = Box::pin(self.dial_recorded(punch_at, node, Intent::Fetch));
                    dialling = true;
                }
                _ = tokio::time::sleep_until(deadline), if relay.is_none() && relay_tried => {
                    return Err(format!("not reachable directly, by reverse connection, punch or relay: {last_error}"));
                }
            }
        }
    }

    /// Whether this node's supernode found it reachable by a dial from outside (a
    /// supernode, or a leaf not told yet, counts as reachable).
    fn reachable(&self) -> bool {
        self.leaf().is_none_or(|leaf| leaf.reachable())
    }

    /// Asks this leaf's supernode (a supernode: its own core) for a reverse connection from
    /// `target`; the target as its supernode lists it.
    pub(super) async fn ask_connect(&self, target: NodeId) -> Result<Provider, String> {
        let answer = if let Some(sn) = self.supernode() {
            // A supernode asks its own core, as its leaves' requests do, to be dialled at
            // the address its connections arrive at.
            let seen_at = sn
                .own_addr(&target, self.inner.listen.port())
                .ok_or("no connection tells this supernode's own address")?;
            let now = std::time::Instant::now();
            let (answer, actions) = sn.core().connect(self.node_id(), seen_at, target, now);
            self.execute(&sn, actions);
            answer
        } else {
            let uplink = self.inner.uplink.borrow().clone();
            let uplink = uplink.ok_or("no supernode to ask")?;
            client::call(&uplink.conn, &Request::Connect { target })
                .await
                .map_err(|e| e.to_string())?
        };
        match answer {
            Response::Connecting { target, .. } => Ok(target),
            Response::Error { message, .. } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Our supernode asks us to dial `to` (a downloader that cannot dial us): dials it from
    /// the listening socket, up to [`REVERSE_TRIES`] times, and serves its requests. At most
    /// [`REVERSE_RATE`] per second; the dial guard limits dials to silent addresses.
    pub(super) fn connect_back(&self, to: Provider) {
        if !self.inner.reverse.try_dial() {
            tracing::info!(to = %to.addr, "reverse connection request over the rate; ignored");
            return;
        }
        let node = self.clone();
        self.inner.tasks.spawn(async move {
            for attempt in 1..=REVERSE_TRIES {
                let dial = node.dial(to.addr, Some(to.node), Intent::Reverse);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial).await {
                    Ok(Ok(link)) => {
                        tracing::info!(to = %to.node.short(), addr = %to.addr, attempt, "reverse connection up");
                        serve_link(&node.inner, link, None).await;
                        return;
                    }
                    Ok(Err(e)) => tracing::debug!(to = %to.addr, attempt, reason = %e, "reverse dial failed"),
                    Err(_) => tracing::debug!(to = %to.addr, attempt, "reverse dial timed out"),
                }
                tokio::time::sleep(REVERSE_RETRY).await;
            }
        });
    }
}
