//! Robustness under churn, over real QUIC on loopback: one session per leaf (a second join
//! supersedes the first, a lost session is joined again), a leaf with 100,000 entries leaving
//! while another leaf searches, and the index budget.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, raw_dial, raw_dial_as, raw_node, search_until, write, Net};
use kazoo_common::identity::Identity;
use kazoo_common::wire::{
    CloseCode, ErrorCode, Hello, Intent, Request, Response, Role, ShareEntry,
};
use kazoo_common::ContentId;
use kazoo_leaf::client;

fn entry(name: String, n: u64) -> ShareEntry {
    ShareEntry {
        id: ContentId::from(blake3::hash(&n.to_le_bytes())),
        size: n,
        name,
    }
}

/// Whether `conn` was closed by its peer with `code`.
async fn closed_with(conn: &quinn::Connection, code: u32) -> bool {
    matches!(
        tokio::time::timeout(common::DEADLINE, conn.closed()).await,
        Ok(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == code.into()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_join_supersedes_the_first_and_only_the_current_session_counts() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let core = sn.supernode().expect("supernode");
    let (identity, endpoint) = raw_node();
    let hello = || Hello::new(identity.node_id(), Role::Leaf, Intent::Join);
    let first = raw_dial_as(&endpoint, &identity, &sn, hello())
        .await
        .expect("first join");
    client::call(
        &first.conn,
        &Request::Register {
            entries: vec![entry("first session file".into(), 1)],
        },
    )
    .await
    .expect("registers");
    let second = raw_dial_as(&endpoint, &identity, &sn, hello())
        .await
        .expect("second join");
    // The older session is closed as superseded; the leaf counts once.
    assert!(closed_with(&first.conn, CloseCode::SUPERSEDED).await);
    assert_eq!(core.core().stats().leaves, 1);
    // The old session's entries went with it; the new one registers afresh.
    eventually("old entries drained", || async {
        (core.core().stats().entries == 0).then_some(())
    })
    .await;
    let answer = client::call(
        &second.conn,
        &Request::Register {
            entries: vec![entry("second session file".into(), 2)],
        },
    )
    .await
    .expect("registers");
    assert_eq!(answer, Response::Registered { total: 1 });
    // The end of the first connection changed nothing.
    assert_eq!(core.core().stats().leaves, 1);
    assert_eq!(
        core.core().search(&["second".into()], 10).map(|h| h.len()),
        Ok(1)
    );
    drop(second);
    eventually("leaf gone with its current session", || async {
        (core.core().stats().leaves == 0 && core.core().stats().entries == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_whose_session_is_taken_over_or_lost_joins_again_and_stays_searchable() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let core = sn.supernode().expect("supernode");
    let mut config = net.config(
        "a",
        kazoo_common::config::RoleSetting::Leaf,
        Some(sn.listen_addr()),
    );
    // Two routes to the same supernode: by address, and pinned by id.
    config.network.bootstrap.push(
        format!("{}@{}", sn.node_id(), sn.listen_addr())
            .parse()
            .expect("entry"),
    );
    write(&net.share_dir("a"), "two routes song.ogg", b"a's song");
    let a = net.start(config).await;
    let observer = net.leaf("observer", &sn).await;
    search_until(&observer, &["routes"], |h| h.len() == 1).await;
    assert_eq!(core.core().stats().leaves, 2);

    // Someone joins with a's key on another connection (a's own second route, say): a's
    // session is superseded; then that connection ends. a must end up registered again.
    let data_dir = net.root.path().join("a").join("data");
    let identity = Identity::load_or_create(&data_dir).expect("a's key");
    assert_eq!(identity.node_id(), a.node_id());
    let (_, endpoint) = raw_node();
    let hello = Hello::new(a.node_id(), Role::Leaf, Intent::Join);
    // Admitted either way; a, superseded, may join again before this handshake finishes and
    // supersede the intruder in turn.
    match raw_dial_as(&endpoint, &identity, &sn, hello).await {
        Ok(intruder) => drop(intruder),
        Err(e) => assert!(e.to_string().contains("newer session"), "{e}"),
    }
    endpoint.close(0u32.into(), b"done");
    eventually(
        "a registered again after its session was superseded",
        || async {
            let session = core.core().session(&a.node_id())?;
            let hits = observer.search(&["routes".into()], 10).await.ok()?;
            (hits.len() == 1 && a.status().supernode == Some(sn.node_id())).then_some(session)
        },
    )
    .await;

    // The supernode forgets a's session while its connection stays up: a's next change is
    // answered `UnknownLeaf`, and a joins again and re-registers everything.
    let key = core.core().session(&a.node_id()).expect("a joined");
    core.core().depart(a.node_id(), key);
    assert_eq!(core.core().session(&a.node_id()), None);
    write(&net.share_dir("a"), "after the loss.ogg", b"new file");
    search_until(&observer, &["loss"], |h| h.len() == 1).await;
    search_until(&observer, &["routes"], |h| h.len() == 1).await;
    assert!(core.core().session(&a.node_id()).is_some());
    assert_eq!(core.core().stats().leaves, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_with_100000_entries_leaves_while_another_searches_unharmed() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let core = sn.supernode().expect("supernode");
    write(&net.share_dir("b"), "small needle file.txt", b"needle");
    let b = net.leaf("b", &sn).await;
    search_until(&b, &["needle"], |h| h.len() == 1).await;
    let b_session = core.core().session(&b.node_id()).expect("b joined");

    let (big, endpoint) = raw_dial(&sn, Intent::Join).await;
    let big = big.expect("big leaf joins");
    let words = "great music track best song file needle";
    let all: Vec<ShareEntry> = (0..100_000u64)
        .map(|i| entry(format!("{words} {i:06}.mp3"), 1_000 + i))
        .collect();
    for batch in all.chunks(kazoo_common::wire::MAX_BATCH) {
        client::call(
            &big.conn,
            &Request::Register {
                entries: batch.to_vec(),
            },
        )
        .await
        .expect("batch registers");
    }
    assert_eq!(core.core().stats().entries, 100_001);

    // The big leaf dies; b keeps searching meanwhile and every search answers.
    let searching = tokio::spawn({
        let b = b.clone();
        async move {
            let mut slowest = Duration::ZERO;
            let mut misses = 0;
            for _ in 0..60 {
                let started = Instant::now();
                match b.search(&["small".into(), "needle".into()], 10).await {
                    Ok(hits) if hits.len() == 1 => {}
                    _ => misses += 1,
                }
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (misses, slowest)
        }
    });
    big.conn.close(0u32.into(), b"gone");
    endpoint.close(0u32.into(), b"gone");
    eventually("big leaf drained", || async {
        (core.core().stats().entries == 1).then_some(())
    })
    .await;
    let (misses, slowest) = searching.await.expect("searches ran");
    assert_eq!(misses, 0, "searches missed while the big leaf drained");
    // b never lost its session (an idle timeout would have re-homed it).
    assert_eq!(core.core().session(&b.node_id()), Some(b_session));
    // The drain works in small steps between searches; one that held the index for as
    // long as the idle timeout would stall every connection of the supernode.
    let idle = kazoo_common::transport::Timeouts::default().idle;
    assert!(
        slowest < idle,
        "a search took {slowest:?}, as long as the idle timeout ({idle:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_budget_refuses_registrations_with_a_clear_error() {
    let net = Net::new();
    let mut config = net.config("sn", kazoo_common::config::RoleSetting::Supernode, None);
    config.supernode.max_index_entries = 1000;
    let sn = net.start(config).await;
    let (leaf, _endpoint) = raw_dial(&sn, Intent::Join).await;
    let leaf = leaf.expect("joins");
    let fill: Vec<ShareEntry> = (0..1000u64)
        .map(|i| entry(format!("file {i}"), i))
        .collect();
    let answer = client::call(&leaf.conn, &Request::Register { entries: fill })
        .await
        .expect("fits");
    assert_eq!(answer, Response::Registered { total: 1000 });
    let err = client::call(
        &leaf.conn,
        &Request::Register {
            entries: vec![entry("one too many".into(), 5000)],
        },
    )
    .await
    .expect_err("over budget");
    match err {
        client::RequestError::Remote { code, message } => {
            assert_eq!(code, ErrorCode::IndexFull);
            assert!(message.contains("index is full"), "{message}");
        }
        other => panic!("expected IndexFull, got {other:?}"),
    }
    // Nothing was lost, and the leaf is still served.
    let core = sn.supernode().expect("supernode");
    assert_eq!(core.core().stats().entries, 1000);
    assert_eq!(
        core.core().search(&["file".into()], 5).map(|h| h.len()),
        Ok(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_and_download_connections_are_bounded_per_ip() {
    let net = Net::new();
    let mut config = net.config("sn", kazoo_common::config::RoleSetting::Supernode, None);
    config.supernode.max_leaves_per_ip = 2;
    let sn = net.start(config).await;
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..3 {
        let (link, endpoint) = raw_dial(&sn, Intent::Join).await;
        match link {
            Ok(link) => kept.push((link, endpoint)),
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert_eq!(kept.len(), 2);
    assert!(refused[0].contains("leaves from 127.0.0.1"), "{refused:?}");
    // Download connections: MAX_FETCH_PER_IP from one IP, then Busy.
    let mut fetchers = Vec::new();
    let mut busy = 0;
    for _ in 0..kazoo_leaf::node::MAX_FETCH_PER_IP + 1 {
        let (link, endpoint) = raw_dial(&sn, Intent::Fetch).await;
        match link {
            Ok(link) => fetchers.push((link, endpoint)),
            Err(kazoo_common::transport::TransportError::Refused {
                code: ErrorCode::Busy,
                ..
            }) => busy += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(fetchers.len(), kazoo_leaf::node::MAX_FETCH_PER_IP);
    assert_eq!(busy, 1);
    // A slot frees when a connection ends.
    drop(fetchers.pop());
    eventually("a download slot frees", || async {
        let (link, endpoint) = raw_dial(&sn, Intent::Fetch).await;
        Some((link.ok()?, endpoint))
    })
    .await;
}
