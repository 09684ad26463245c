//! Relaying for leaves that reach each other no other way (see the wire spec, "Relay"): a
//! circuit joins the asking stream — a joined leaf's `Relay`, or a peer's on a stream of the
//! peering — with the target's side, which is either the target leaf's own `RelayAccept`
//! stream (when it is our leaf) or a `Relay` passed on to the peer its hits came from (the
//! core decides which, [`kazoo_supernode::Supernode::relay_route`]). Then relay frames are
//! copied both ways, checked for length, paced by the supernode's byte rate, until either
//! side ends or the circuit's life is over.
//!
//! Bounds: `relay.max_circuits` circuits at once, each holding a permit from asking to its
//! end (a circuit waiting for its target's `RelayAccept` too, so announced circuits are
//! bounded the same way); `relay.rate_kib` for all circuits together; `relay.max_secs` per
//! circuit. A peer's `Relay` also costs it a query token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kazoo_common::config::RelayConfig;
use kazoo_common::transport::HANDSHAKE_TIMEOUT;
use kazoo_common::wire::{self, ErrorCode, Request, Response, MAX_RELAY_PACKET, RELAY_ACCEPT_WAIT};
use kazoo_common::NodeId;
use kazoo_supernode::RelayHop;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::{oneshot, Semaphore};

use super::SupernodeRole;
use crate::client::{self, RequestError};
use crate::node::request_limits::StreamError;
use crate::serve::RateLimit;

/// One side of a circuit: a bidirectional stream.
type Leg = (SendStream, RecvStream);

/// A circuit announced to its target leaf, waiting for the leaf's `RelayAccept`.
struct Announced {
    target: NodeId,
    accepted: oneshot::Sender<Leg>,
}

/// What a supernode relays now, and its bounds.
pub(in crate::node) struct Relays {
    circuits: Arc<Semaphore>,
    max_circuits: usize,
    rate: RateLimit,
    life: Duration,
    announced: Mutex<HashMap<u64, Announced>>,
    /// Bytes relayed so far (frame bodies, both directions).
    relayed: AtomicU64,
}

impl Relays {
    /// Relays bounded by `config`.
    pub(in crate::node) fn new(config: &RelayConfig) -> Self {
        let rate = config.rate_kib.max(1) * 1024;
        Relays {
            circuits: Arc::new(Semaphore::new(config.max_circuits)),
            max_circuits: config.max_circuits,
            // A burst of a quarter second's worth (at least a few packets).
            rate: RateLimit::new(rate, (rate / 4).max(4 * MAX_RELAY_PACKET as u64)),
            life: config.max_life(),
            announced: Mutex::new(HashMap::new()),
            relayed: AtomicU64::new(0),
        }
    }

    /// Circuits open now and bytes relayed so far.
    pub(in crate::node) fn stats(&self) -> crate::node::RelayStats {
        crate::node::RelayStats {
            circuits: self.max_circuits - self.circuits.available_permits(),
            relayed_bytes: self.relayed.load(Ordering::Relaxed),
        }
    }
}

/// Where a `Relay` came from.
#[derive(Clone, Copy)]
pub(in crate::node) enum Asker {
    /// A leaf joined here (it must be the requester).
    Leaf(NodeId),
    /// A peer supernode, relaying for one of its leaves.
    Peer(NodeId),
}

/// Answers `Relay { target, requester }` and, once both sides are there, relays.
pub(in crate::node) async fn relay(
    sn: &Arc<SupernodeRole>,
    asker: Asker,
    target: NodeId,
    requester: NodeId,
    mut send: SendStream,
    recv: RecvStream,
) -> Result<(), StreamError> {
    let refuse = |code, message: &str| Response::error(code, message);
    let via_peer = match asker {
        Asker::Leaf(leaf) if leaf != requester => {
            let refusal = refuse(ErrorCode::BadRequest, "a leaf relays only for itself");
            return Ok(wire::write_frame(&mut send, &refusal).await?);
        }
        Asker::Leaf(_) => None,
        Asker::Peer(peer) => Some(peer),
    };
    let Ok(permit) = Arc::clone(&sn.relays.circuits).try_acquire_owned() else {
        tracing::info!(requester = %requester.short(), target = %target.short(), "relay refused: no circuit free");
        let refusal = refuse(ErrorCode::Busy, "no relay circuit free here");
        return Ok(wire::write_frame(&mut send, &refusal).await?);
    };
    let route = sn
        .core()
        .relay_route(requester, target, via_peer, Instant::now());
    let other = match route {
        Err(refusal) => {
            return Ok(wire::write_frame(&mut send, &refusal.response()).await?);
        }
        Ok(RelayHop::Leaf(leaf)) => announce(sn, leaf, requester).await,
        Ok(RelayHop::Peer(peer)) => {
            let conn = sn.peering.conn(&peer);
            match conn {
                Some(conn) => pass_on(&conn, target, requester).await,
                None => Err(refuse(
                    ErrorCode::NotFound,
                    "no way to that source is known here",
                )),
            }
        }
    };
    let other = match other {
        Ok(leg) => leg,
        Err(refusal) => {
            tracing::debug!(requester = %requester.short(), target = %target.short(), ?refusal, "relay not set up");
            return Ok(wire::write_frame(&mut send, &refusal).await?);
        }
    };
    wire::write_frame(&mut send, &Response::Relaying).await?;
    tracing::info!(requester = %requester.short(), target = %target.short(), "relaying");
    let reason = splice((send, recv), other, &sn.relays).await;
    tracing::info!(requester = %requester.short(), target = %target.short(), %reason, "relay circuit ended");
    drop(permit);
    Ok(())
}

/// Announces a circuit to our leaf `leaf` and waits for its `RelayAccept`.
async fn announce(sn: &SupernodeRole, leaf: NodeId, requester: NodeId) -> Result<Leg, Response> {
    // Unpredictable, so no other leaf can open someone else's circuit.
    let circuit = u64::from_le_bytes(crate::os_random());
    let (accepted, rx) = oneshot::channel();
    crate::lock(&sn.relays.announced).insert(
        circuit,
        Announced {
            target: leaf,
            accepted,
        },
    );
    sn.ask_relay(leaf, circuit, requester);
    let got = tokio::time::timeout(RELAY_ACCEPT_WAIT, rx).await;
    crate::lock(&sn.relays.announced).remove(&circuit);
    match got {
        Ok(Ok(leg)) => Ok(leg),
        _ => Err(Response::error(
            ErrorCode::NotFound,
            "the source did not open the relay circuit",
        )),
    }
}

/// Passes a relay on to the peer with the target, on a stream of the peering.
async fn pass_on(conn: &Connection, target: NodeId, requester: NodeId) -> Result<Leg, Response> {
    let request = Request::Relay { target, requester };
    match client::relay_stream(conn, &request, RELAY_ACCEPT_WAIT + HANDSHAKE_TIMEOUT).await {
        Ok(leg) => Ok(leg),
        Err(RequestError::Remote { code, message }) => Err(Response::Error { code, message }),
        Err(e) => Err(Response::error(
            ErrorCode::NotFound,
            format!("relay peer: {e}"),
        )),
    }
}

/// Our leaf `leaf` opens its side of `circuit`.
pub(in crate::node) async fn accept(
    sn: &SupernodeRole,
    leaf: NodeId,
    circuit: u64,
    mut send: SendStream,
    recv: RecvStream,
) -> Result<(), StreamError> {
    let announced = {
        let mut announced = crate::lock(&sn.relays.announced);
        match announced.get(&circuit) {
            Some(a) if a.target == leaf => announced.remove(&circuit),
            _ => None,
        }
    };
    let Some(announced) = announced else {
        let refusal = Response::error(ErrorCode::NotFound, "no such relay circuit for you");
        return Ok(wire::write_frame(&mut send, &refusal).await?);
    };
    wire::write_frame(&mut send, &Response::Relaying).await?;
    // The asker may have given up meanwhile; the streams are dropped then.
    let _ = announced.accepted.send((send, recv));
    Ok(())
}

/// Copies relay frames both ways until a side ends, breaks the framing, or the circuit's
/// life is over; why it ended.
async fn splice(a: Leg, b: Leg, relays: &Relays) -> String {
    let (mut a_send, mut a_recv) = a;
    let (mut b_send, mut b_recv) = b;
    let reason = tokio::select! {
        r = copy_frames(&mut a_recv, &mut b_send, relays) => r,
        r = copy_frames(&mut b_recv, &mut a_send, relays) => r,
        _ = tokio::time::sleep(relays.life) => "its time is over".into(),
    };
    for send in [&mut a_send, &mut b_send] {
        let _ = send.reset(0u32.into());
    }
    for recv in [&mut a_recv, &mut b_recv] {
        let _ = recv.stop(0u32.into());
    }
    reason
}

/// Copies relay frames from `recv` to `send`, paced by the relay's rate; why it stopped.
async fn copy_frames(recv: &mut RecvStream, send: &mut SendStream, relays: &Relays) -> String {
    let mut frame = [0u8; 2 + MAX_RELAY_PACKET];
    loop {
        if let Err(e) = recv.read_exact(&mut frame[..2]).await {
            return e.to_string();
        }
        let len = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
        if len == 0 || len > MAX_RELAY_PACKET {
            return format!("relay frame of {len} bytes");
        }
        if let Err(e) = recv.read_exact(&mut frame[2..2 + len]).await {
            return e.to_string();
        }
        relays.rate.take(len).await;
        if let Err(e) = send.write_all(&frame[..2 + len]).await {
            return e.to_string();
        }
        relays.relayed.fetch_add(len as u64, Ordering::Relaxed);
    }
}
