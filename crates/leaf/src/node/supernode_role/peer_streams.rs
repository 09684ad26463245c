//! The streams a peer opens on its peering, beside the control stream: `Relay` (a circuit
//! passed on, see [`super::relaying`]) and `DialBack` (this supernode as a witness, see
//! [`super::witness`]). Any other request there is a protocol violation.

use std::sync::Arc;

use kazoo_common::transport;
use kazoo_common::wire::{self, CloseCode, Request, REQUEST_TIMEOUT};
use kazoo_common::NodeId;
use quinn::Connection;

use super::relaying::{self, Asker};
use super::{witness, SupernodeRole};
use crate::node::request_limits::StreamError;
use crate::node::Node;

/// Serves the streams `peer` opens on `conn` until the connection ends (at most
/// `MAX_CONCURRENT_STREAMS` at once, by QUIC stream credit); a violation closes the peering.
pub(in crate::node) async fn serve(
    node: Node,
    sn: Arc<SupernodeRole>,
    peer: NodeId,
    conn: Connection,
) {
    while let Ok((send, mut recv)) = conn.accept_bi().await {
        let (node, sn, conn) = (node.clone(), Arc::clone(&sn), conn.clone());
        tokio::spawn(async move {
            let request =
                tokio::time::timeout(REQUEST_TIMEOUT, wire::read_request(&mut recv)).await;
            let outcome = match request {
                Ok(Ok(Request::Relay { target, requester })) => {
                    relaying::relay(&sn, Asker::Peer(peer), target, requester, send, recv).await
                }
                Ok(Ok(Request::DialBack { leaf, addr })) => {
                    witness::answer(&node, &sn, peer, leaf, addr, send).await
                }
                Ok(Ok(other)) => Err(StreamError::Violation(format!(
                    "{} on a peering stream",
                    other.kind()
                ))),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(StreamError::Stream("request timed out".into())),
            };
            if let Err(StreamError::Violation(reason)) = outcome {
                node.note_peer_violation(peer, &reason);
                transport::close(&conn, CloseCode::PROTOCOL_VIOLATION, &reason);
            }
        });
    }
}
