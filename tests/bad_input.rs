//! Hostile peers against a real supernode over QUIC: each offender's connection or request
//! is refused and the node keeps serving everyone else.

mod common;

use common::*;
use kazoo_common::config::RoleSetting;
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Link, Timeouts};
use kazoo_common::wire::{
    CloseCode, ErrorCode, Intent, Request, Response, ShareEntry, MAX_FRAME, MAX_NAME_LEN,
};
use kazoo_common::ContentId;
use kazoo_leaf::client::{self, RequestError};
use kazoo_leaf::Node;

/// Joins `sn` as a raw leaf.
async fn raw_leaf(sn: &Node) -> (Link, quinn::Endpoint) {
    let (link, endpoint) = raw_dial(sn, Intent::Join).await;
    (link.expect("raw leaf joins"), endpoint)
}

/// The refusal code `node` answers a join with.
async fn join_refusal(node: &Node) -> ErrorCode {
    match raw_dial(node, Intent::Join).await.0 {
        Err(transport::TransportError::Refused { code, .. }) => code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got admitted"),
    }
}

/// Sends raw bytes as a request and expects the supernode to close with PROTOCOL_VIOLATION.
async fn expect_violation(sn: &Node, raw: &[u8]) {
    let (link, _endpoint) = raw_leaf(sn).await;
    let (mut send, _recv) = link.conn.open_bi().await.unwrap();
    send.write_all(raw).await.unwrap();
    let _ = send.finish();
    let reason = tokio::time::timeout(DEADLINE, link.conn.closed())
        .await
        .expect("closed");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                CloseCode::PROTOCOL_VIOLATION.into(),
                "{close:?}"
            );
        }
        other => panic!("expected an application close, got {other}"),
    }
}

/// A well-behaved leaf can still share and be found.
async fn still_serving(net: &Net, sn: &Node, tag: &str) {
    let name = format!("healthy{tag}");
    write(
        &net.share_dir(&name),
        &format!("{name}.txt"),
        name.as_bytes(),
    );
    let good = net.leaf(&name, sn).await;
    search_until(&good, &[&name], |h| h.len() == 1).await;
    good.shutdown().await;
}

fn entry(name: String, n: u32) -> ShareEntry {
    ShareEntry {
        id: ContentId::from(blake3::hash(&n.to_le_bytes())),
        size: 4,
        name,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_unknown_frames_close_only_the_offender() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    // Malformed body.
    expect_violation(&sn, &[0, 0, 0, 3, 0, 0xff, 0xff]).await;
    // Oversized length prefix.
    let mut oversized = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0; 64]);
    expect_violation(&sn, &oversized).await;
    // Unknown message kind.
    expect_violation(&sn, &[0, 0, 0, 1, 42]).await;
    // Bytes on the control stream.
    let (mut link, _endpoint) = raw_leaf(&sn).await;
    link.control_send.write_all(b"garbage").await.unwrap();
    let reason = tokio::time::timeout(DEADLINE, link.conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CloseCode::PROTOCOL_VIOLATION.into()),
        "{reason}"
    );
    still_serving(&net, &sn, "1").await;
    sn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_and_wrong_alpn_are_ignored() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..500u32 {
        let len = 1 + (i as usize * 37) % 1400;
        let datagram = bytes(len, u64::from(i));
        socket.send_to(&datagram, sn.listen_addr()).await.unwrap();
    }
    let identity = Identity::generate().unwrap();
    let endpoint = transport::endpoint(
        &identity,
        "127.0.0.1:0".parse().unwrap(),
        Timeouts::default(),
    )
    .unwrap();
    let config = transport::client_config(&identity, None, Timeouts::default(), b"h3").unwrap();
    let attempt = endpoint
        .connect_with(config, sn.listen_addr(), "kazoo")
        .unwrap();
    let result = tokio::time::timeout(DEADLINE, attempt)
        .await
        .expect("handshake ends");
    assert!(result.is_err(), "a wrong ALPN must fail the handshake");
    still_serving(&net, &sn, "2").await;
    sn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_and_name_limits_refuse_the_request_not_the_leaf() {
    let net = Net::new();
    let mut config = net.config("sn", RoleSetting::Supernode, None);
    config.supernode.max_entries_per_leaf = 5;
    let sn = net.start(config).await;
    let (link, _endpoint) = raw_leaf(&sn).await;

    let too_many: Vec<ShareEntry> = (0..6).map(|n| entry(format!("file{n}"), n)).collect();
    let err = client::call(&link.conn, &Request::Register { entries: too_many })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RequestError::Remote {
                code: ErrorCode::TooManyEntries,
                ..
            }
        ),
        "{err}"
    );
    let long = vec![entry("n".repeat(MAX_NAME_LEN + 1), 1)];
    let err = client::call(&link.conn, &Request::Register { entries: long })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RequestError::Remote {
                code: ErrorCode::NameTooLong,
                ..
            }
        ),
        "{err}"
    );
    // The same connection can still register within the limits.
    let fine: Vec<ShareEntry> = (0..5).map(|n| entry(format!("file{n}"), n)).collect();
    let answer = client::call(&link.conn, &Request::Register { entries: fine })
        .await
        .unwrap();
    assert_eq!(answer, Response::Registered { total: 5 });
    assert_eq!(sn.status().index_entries, Some(5));

    // A connection that did not join may not use the index.
    let (stranger, _stranger_endpoint) = raw_dial(&sn, Intent::Fetch).await;
    let stranger = stranger.unwrap();
    let err = client::call(
        &stranger.conn,
        &Request::Search {
            words: vec!["file1".into()],
            max_results: 5,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            RequestError::Remote {
                code: ErrorCode::NotSupernode,
                ..
            }
        ),
        "{err}"
    );
    still_serving(&net, &sn, "3").await;
    sn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_supernode_refuses_joins_and_a_leaf_cannot_be_joined() {
    let net = Net::new();
    let mut config = net.config("sn", RoleSetting::Supernode, None);
    config.supernode.max_leaves = 1;
    let sn = net.start(config).await;
    let first = net.leaf("first", &sn).await;
    assert_eq!(join_refusal(&sn).await, ErrorCode::Busy);
    assert_eq!(join_refusal(&first).await, ErrorCode::NotSupernode);
    // The refused peer did not disturb the admitted leaf.
    assert_eq!(sn.status().leaves, Some(1));
    first.shutdown().await;
    sn.shutdown().await;
}
