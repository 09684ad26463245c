//! Dial backs from a witness: a supernode asks a peer to dial one of its leaves back from a
//! fresh socket at another IP (`Request::DialBack`, see the wire spec's "Reachability"), and
//! answers such requests from its peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use kazoo_common::transport::HANDSHAKE_TIMEOUT;
use kazoo_common::wire::{self, ErrorCode, Request, Response, DIAL_BACK_TIMEOUT};
use kazoo_common::NodeId;
use quinn::{Connection, SendStream};

use super::SupernodeRole;
use crate::node::dial_guard::DialRefused;
use crate::node::request_limits::StreamError;
use crate::node::Node;

/// Asks the peer on `conn` to dial `leaf` back at `addr`: whether it answered, or why the
/// peer could not tell (refused, no answer, the peering failed).
pub(in crate::node) async fn ask(
    conn: &Connection,
    leaf: NodeId,
    addr: SocketAddr,
) -> Result<bool, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    wire::write_frame(&mut send, &Request::DialBack { leaf, addr })
        .await
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(
        DIAL_BACK_TIMEOUT + HANDSHAKE_TIMEOUT,
        wire::read_frame::<Response>(&mut recv),
    )
    .await;
    match answer {
        Ok(Ok(Response::DialedBack { answered })) => Ok(answered),
        Ok(Ok(Response::Error { code, message })) => Err(format!("{code:?}: {message}")),
        Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// Answers peer `peer`'s `DialBack { leaf, addr }`: one query token of the peer's, and a
/// dial the guard allows (a peer names this address, so it is dialled like any address a
/// peer names), from a fresh socket. An address the guard knows as silent is answered
/// "not answered" without a dial; any other refusal is `Busy`, as is an address this host
/// has no route to (a witness without IPv6 cannot tell about an IPv6 leaf).
pub(in crate::node) async fn answer(
    node: &Node,
    sn: &Arc<SupernodeRole>,
    peer: NodeId,
    leaf: NodeId,
    addr: SocketAddr,
    mut send: SendStream,
) -> Result<(), StreamError> {
    let now = Instant::now();
    if !sn.core().admit_dial_back(peer, now) {
        let refusal = Response::error(ErrorCode::Busy, "query rate exceeded; slow down");
        return Ok(wire::write_frame(&mut send, &refusal).await?);
    }
    if let Err(e) = routable(addr) {
        let refusal = Response::error(ErrorCode::Busy, format!("cannot reach {addr}: {e}"));
        return Ok(wire::write_frame(&mut send, &refusal).await?);
    }
    let answered = match node.inner.dials.check(addr, now) {
        Ok(()) => node.answers_dial_back(addr, leaf).await,
        // It did not answer this witness's last dial (within the guard's silent period):
        // that is the answer, and the leaf is taken for firewalled, the safe side, until it
        // joins again.
        Err(DialRefused::Silent(_)) => false,
        Err(refused) => {
            let refusal = Response::error(ErrorCode::Busy, refused.to_string());
            return Ok(wire::write_frame(&mut send, &refusal).await?);
        }
    };
    tracing::info!(peer = %peer.short(), leaf = %leaf.short(), %addr, answered, "dialled back a peer's leaf");
    wire::write_frame(&mut send, &Response::DialedBack { answered }).await?;
    let _ = send.finish();
    Ok(())
}

/// Whether this host can send to `addr` at all: a socket of its family binds and has a
/// route to it (a local check, no packet is sent).
fn routable(addr: SocketAddr) -> std::io::Result<()> {
    std::net::UdpSocket::bind(crate::node::fresh_bind(addr))?.connect(addr)
}
