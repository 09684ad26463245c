//! Notices to joined leaves over their control streams: the succession list whenever it
//! changes (checked every [`NOTICE_EVERY`]), redirects, and promote requests. Also which
//! connection is each leaf's current session: a leaf that joins again supersedes its older
//! session, whose connection is closed with [`CloseCode::SUPERSEDED`].

use kazoo_common::transport;
use kazoo_common::wire::{self, CloseCode, Notice, Provider, MAX_SUCCESSION, REDIRECT_GRACE};
use kazoo_common::NodeId;
use kazoo_supernode::timing::NOTICE_EVERY;
use kazoo_supernode::LeafKey;
use quinn::{Connection, SendStream};
use tokio::sync::mpsc;

use super::SupernodeRole;
use std::sync::Arc;

/// A joined leaf's notice stream (drained onto its control stream) and its connection.
pub(in crate::node) struct LeafChannel {
    /// Notices for the leaf (bounded: [`NOTICE_QUEUE`]).
    pub tx: mpsc::Sender<Notice>,
    /// The leaf's connection, closed if it ignores a redirect.
    pub conn: Connection,
    /// The session this channel belongs to.
    pub key: LeafKey,
}

/// Notices queued for one leaf; a leaf further behind misses the extra ones (the
/// succession notice is re-sent whole when it changes).
pub(in crate::node) const NOTICE_QUEUE: usize = 8;

impl SupernodeRole {
    /// Tells a joined leaf to go to `to` instead; closes its connection if it has not gone
    /// after [`REDIRECT_GRACE`].
    pub(in crate::node) fn redirect_leaf(&self, leaf: NodeId, to: Vec<Provider>, reason: &str) {
        let notices = crate::lock(&self.notices);
        let Some(channel) = notices.get(&leaf) else {
            return;
        };
        let notice = Notice::Redirect {
            to,
            reason: reason.to_owned(),
        };
        if channel.tx.try_send(notice).is_err() {
            tracing::debug!(leaf = %leaf.short(), "notice queue full; closing instead of redirecting");
        }
        let conn = channel.conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REDIRECT_GRACE).await;
            transport::close(&conn, CloseCode::REDIRECTED, "redirected");
        });
    }

    /// Asks joined leaf `leaf` to dial `to` (a reverse connection); dropped if its notice
    /// queue is full.
    pub(in crate::node) fn ask_reverse(&self, leaf: NodeId, to: Provider) {
        let notices = crate::lock(&self.notices);
        let Some(channel) = notices.get(&leaf) else {
            return;
        };
        tracing::debug!(leaf = %leaf.short(), to = %to.addr, "asking a leaf for a reverse connection");
        if channel.tx.try_send(Notice::Connect { to }).is_err() {
            tracing::debug!(leaf = %leaf.short(), "notice queue full; reverse connection request dropped");
        }
    }

    /// Tells joined leaf `leaf` of relay circuit `circuit` from downloader `from`; dropped
    /// if its notice queue is full (the relay then times out).
    pub(in crate::node) fn ask_relay(&self, leaf: NodeId, circuit: u64, from: NodeId) {
        let notices = crate::lock(&self.notices);
        let Some(channel) = notices.get(&leaf) else {
            return;
        };
        tracing::debug!(leaf = %leaf.short(), from = %from.short(), "announcing a relay circuit");
        if channel
            .tx
            .try_send(Notice::Relay { circuit, from })
            .is_err()
        {
            tracing::debug!(leaf = %leaf.short(), "notice queue full; relay circuit not announced");
        }
    }

    /// Closes the connection of leaf `peer`'s older session, now that `key` has replaced it.
    pub(super) fn close_superseded(&self, peer: NodeId, key: LeafKey) {
        let mut channels = crate::lock(&self.notices);
        if channels.get(&peer).is_some_and(|c| c.key != key) {
            if let Some(old) = channels.remove(&peer) {
                tracing::info!(peer = %peer.short(), "leaf joined again; closing its older session");
                transport::close(
                    &old.conn,
                    CloseCode::SUPERSEDED,
                    "superseded by a newer session",
                );
            }
        }
    }

    /// Makes `conn` the notice channel of leaf `peer` for session `key` and starts sending
    /// it notices on `send`; closes an older session's connection with
    /// [`CloseCode::SUPERSEDED`]. Returns `None` (and closes `conn`) if a newer session has
    /// replaced this one already.
    pub(in crate::node) fn open_channel(
        self: &Arc<Self>,
        peer: NodeId,
        key: LeafKey,
        conn: &Connection,
        send: SendStream,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut channels = crate::lock(&self.notices);
        if self.core().session(&peer) != Some(key) {
            drop(channels);
            tracing::info!(peer = %peer.short(), "leaf session superseded before it started; closing");
            transport::close(
                conn,
                CloseCode::SUPERSEDED,
                "a newer session of this leaf exists",
            );
            return None;
        }
        if let Some(old) = channels.get(&peer) {
            if old.conn.stable_id() != conn.stable_id() {
                tracing::info!(peer = %peer.short(), "leaf joined again; closing its older session");
                transport::close(
                    &old.conn,
                    CloseCode::SUPERSEDED,
                    "superseded by a newer session",
                );
            }
        }
        let (tx, rx) = mpsc::channel(NOTICE_QUEUE);
        let channel = LeafChannel {
            tx,
            conn: conn.clone(),
            key,
        };
        channels.insert(peer, channel);
        drop(channels);
        let retired_to = self.core().retired_to();
        if let Some(to) = retired_to {
            // The supernode demoted while this leaf was joining.
            self.redirect_leaf(peer, to, "supernode demoted");
        }
        Some(tokio::spawn(send_notices(Arc::clone(self), send, rx)))
    }

    /// Forgets leaf `peer`'s notice channel if it is still the one of connection `conn` (a
    /// leaf that re-joined has a newer one).
    pub(in crate::node) fn close_channel(&self, peer: NodeId, conn: &Connection) {
        let mut channels = crate::lock(&self.notices);
        if channels
            .get(&peer)
            .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
        {
            channels.remove(&peer);
        }
    }
}

/// Keeps a leaf's succession notice current, and passes on other notices from `extra`.
async fn send_notices(
    sn: Arc<SupernodeRole>,
    mut send: SendStream,
    mut extra: mpsc::Receiver<Notice>,
) {
    let mut last: Option<Notice> = None;
    let mut tick = tokio::time::interval(NOTICE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            notice = extra.recv() => {
                match notice {
                    Some(notice) => {
                        if wire::write_frame(&mut send, &notice).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                }
                continue;
            }
        }
        let notice = {
            let core = sn.core();
            let now = std::time::Instant::now();
            Notice::Succession {
                heirs: core.succession(MAX_SUCCESSION, now),
                supernodes: core.peer_providers(MAX_SUCCESSION, now),
            }
        };
        if last.as_ref() != Some(&notice) {
            if wire::write_frame(&mut send, &notice).await.is_err() {
                return;
            }
            last = Some(notice);
        }
    }
}
