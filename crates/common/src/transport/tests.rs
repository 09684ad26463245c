use super::*;
use crate::wire::{Intent, Role};

fn hello(identity: &Identity, join: bool) -> Hello {
    let intent = if join { Intent::Join } else { Intent::Fetch };
    Hello::new(identity.node_id(), Role::Leaf, intent)
}

struct Server {
    identity: Identity,
    endpoint: Endpoint,
    addr: SocketAddr,
    results: tokio::sync::mpsc::Receiver<Result<Hello, String>>,
}

/// A server that admits every peer and reports each handshake's outcome.
fn server() -> Server {
    let identity = Identity::generate().unwrap();
    let endpoint = endpoint(
        &identity,
        "127.0.0.1:0".parse().unwrap(),
        Timeouts::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, results) = tokio::sync::mpsc::channel(8);
    let ours = hello(&identity, false);
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let outcome = match accept(incoming).await {
                Ok(pending) => {
                    let theirs = pending.hello().clone();
                    match pending.admit(ours.clone()).await {
                        Ok(link) => {
                            // Keep the link open until the peer goes away.
                            tokio::spawn(async move { link.conn.closed().await });
                            Ok(theirs)
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            if tx.send(outcome).await.is_err() {
                break;
            }
        }
    });
    Server {
        identity,
        endpoint,
        addr,
        results,
    }
}

fn client() -> (Identity, Endpoint) {
    let identity = Identity::generate().unwrap();
    let endpoint = endpoint(
        &identity,
        "127.0.0.1:0".parse().unwrap(),
        Timeouts::default(),
    )
    .unwrap();
    (identity, endpoint)
}

#[tokio::test]
async fn handshake_proves_both_ids() {
    let mut server = server();
    let (id, ep) = client();
    let link = dial(
        &ep,
        &id,
        server.addr,
        Some(server.identity.node_id()),
        Timeouts::default(),
        hello(&id, true),
    )
    .await
    .unwrap();
    assert_eq!(link.peer(), server.identity.node_id());
    let seen = server.results.recv().await.unwrap().unwrap();
    assert_eq!(seen.node_id, id.node_id());
    assert_eq!(seen.intent, Intent::Join);
    server.endpoint.close(VarInt::from_u32(0), b"");
}

#[tokio::test]
async fn wrong_expected_id_fails_the_handshake() {
    let server = server();
    let (id, ep) = client();
    let other = Identity::generate().unwrap().node_id();
    let err = dial(
        &ep,
        &id,
        server.addr,
        Some(other),
        Timeouts::default(),
        hello(&id, false),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::Connection(_)), "{err}");
}

#[tokio::test]
async fn version_mismatch_is_refused_clearly() {
    let mut server = server();
    let (id, ep) = client();
    let mut ours = hello(&id, false);
    ours.version = 99;
    let err = dial(&ep, &id, server.addr, None, Timeouts::default(), ours)
        .await
        .unwrap_err();
    match err {
        TransportError::Refused { code, reason, .. } => {
            assert_eq!(code, ErrorCode::VersionMismatch);
            assert!(reason.contains("version 99"), "{reason}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    let seen = server.results.recv().await.unwrap().unwrap_err();
    assert!(seen.contains("version 99"), "{seen}");
}

#[tokio::test]
async fn claimed_id_must_match_tls_key() {
    let mut server = server();
    let (id, ep) = client();
    let mut ours = hello(&id, false);
    ours.node_id = NodeId([7; 32]);
    let err = dial(&ep, &id, server.addr, None, Timeouts::default(), ours)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Refused { .. }), "{err}");
    let seen = server.results.recv().await.unwrap().unwrap_err();
    assert!(seen.contains("TLS proves"), "{seen}");
}

#[tokio::test]
async fn wrong_alpn_is_rejected_and_server_keeps_serving() {
    let mut server = server();
    let (id, ep) = client();
    let config = client_config(&id, None, Timeouts::default(), b"http/1.1").unwrap();
    let err = ep.connect_with(config, server.addr, "kazoo").unwrap().await;
    assert!(err.is_err());
    assert!(server.results.recv().await.unwrap().is_err());
    let link = dial(
        &ep,
        &id,
        server.addr,
        None,
        Timeouts::default(),
        hello(&id, false),
    )
    .await;
    assert!(link.is_ok());
    assert!(server.results.recv().await.unwrap().is_ok());
}
