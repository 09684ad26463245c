//! Relayed connections, a leaf's side (see the wire spec, "Relay"): a downloader that
//! reaches a source no other way asks its supernode for a circuit and connects through it;
//! a source told of a circuit ([`Notice::Relay`](kazoo_common::wire::Notice::Relay)) opens
//! its end and accepts the connection that comes through, from that downloader only. Both
//! run over a second QUIC endpoint whose "socket" is the circuits ([`socket`]), so the
//! connection is end to end: the relay sees ciphertext, and pieces are verified as ever.

pub(super) mod socket;

use std::sync::Arc;
use std::time::Duration;

use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Timeouts, TransportError, HANDSHAKE_TIMEOUT};
use kazoo_common::wire::{Intent, Request, RELAY_ACCEPT_WAIT};
use kazoo_common::NodeId;
use quinn::{Connection, Endpoint, RecvStream, SendStream};

use super::{accept, Inner, Node};
use crate::client;
use socket::CircuitSocket;

/// The relay endpoint and its circuits.
pub(super) struct Relay {
    socket: Arc<CircuitSocket>,
    endpoint: Endpoint,
}

impl Relay {
    /// A relay endpoint with no circuits, accepting with `identity`.
    pub(super) fn new(identity: &Identity, timeouts: Timeouts) -> Result<Self, TransportError> {
        let socket = Arc::new(CircuitSocket::default());
        let endpoint = transport::endpoint_over(identity, timeouts, socket.clone())?;
        Ok(Relay { socket, endpoint })
    }

    /// Stops accepting and closes relayed connections.
    pub(super) fn close(&self) {
        self.endpoint.close(0u32.into(), b"node stopping");
    }
}

impl Node {
    /// Connects to `target` through a circuit its supernode and ours relay.
    pub(super) async fn relay_dial(&self, target: NodeId) -> Result<Connection, String> {
        let request = Request::Relay {
            target,
            requester: self.node_id(),
        };
        let (send, recv) = self
            .relay_leg(&request, RELAY_ACCEPT_WAIT + HANDSHAKE_TIMEOUT)
            .await?;
        let relay = &self.inner.relay;
        let addr = relay
            .socket
            .attach(target, send, recv)
            .ok_or("too many relay circuits open")?;
        let dial = transport::dial_private(
            &relay.endpoint,
            &self.inner.identity,
            addr,
            Some(target),
            self.inner.timeouts,
            self.hello(Intent::Fetch),
            self.inner.network.as_ref(),
        );
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial).await {
            Ok(Ok(link)) => {
                tracing::info!(source = %target.short(), circuit = %addr, "relayed connection up");
                Ok(link.conn)
            }
            failed => {
                relay.socket.detach(addr);
                Err(match failed {
                    Ok(Err(e)) => format!("through the relay: {e}"),
                    _ => "through the relay: handshake timed out".into(),
                })
            }
        }
    }

    /// Our supernode announces relay circuit `circuit` from downloader `from`: opens our
    /// end (counted with reverse connections against their rate), after which the relay
    /// endpoint accepts `from`'s connection through it.
    pub(super) fn accept_relay(&self, circuit: u64, from: NodeId) {
        if !self.inner.reverse.try_dial() {
            tracing::info!(from = %from.short(), "relay request over the rate; ignored");
            return;
        }
        let node = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = node.open_circuit(circuit, from).await {
                tracing::info!(from = %from.short(), reason = %e, "relay circuit not opened");
            }
        });
    }

    /// Opens a relay leg on a stream to our supernode with `request`, waiting up to `wait`
    /// for its answer (see [`client::relay_stream`]).
    async fn relay_leg(
        &self,
        request: &Request,
        wait: Duration,
    ) -> Result<(SendStream, RecvStream), String> {
        let uplink = self.inner.uplink.borrow().clone();
        let uplink = uplink.ok_or("no supernode to relay through")?;
        client::relay_stream(&uplink.conn, request, wait)
            .await
            .map_err(|e| format!("relay: {e}"))
    }

    /// Opens our end of circuit `circuit` from downloader `from`.
    async fn open_circuit(&self, circuit: u64, from: NodeId) -> Result<(), String> {
        let request = Request::RelayAccept { circuit };
        let (send, recv) = self.relay_leg(&request, HANDSHAKE_TIMEOUT).await?;
        let addr = self
            .inner
            .relay
            .socket
            .attach(from, send, recv)
            .ok_or("too many relay circuits open")?;
        tracing::debug!(from = %from.short(), circuit = %addr, "relay circuit open");
        Ok(())
    }
}

/// Accepts connections through relay circuits — download connections from the node each
/// circuit was announced for — until the node stops; a circuit ends with its connection.
pub(super) async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.relay.endpoint.accept().await {
        let remote = incoming.remote_address();
        let Some(expected) = inner.relay.socket.peer(remote) else {
            incoming.refuse();
            continue;
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            accept::handle_connection(&inner, incoming, Some(expected)).await;
            inner.relay.socket.detach(remote);
        });
    }
}
