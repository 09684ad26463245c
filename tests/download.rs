//! The parallel downloader over real QUIC: sources that vanish, sources that appear, and
//! resuming after the downloading node is killed.

mod common;

use common::*;
use kazoo_common::config::RoleSetting;
use kazoo_common::ContentId;
use kazoo_leaf::download::Progress;
use kazoo_leaf::Node;
use tokio::sync::watch;

/// A leaf sharing `content` as "payload.bin", uploading at most `rate_kib` KiB/s.
async fn throttled_source(net: &Net, name: &str, sn: &Node, content: &[u8], rate_kib: u64) -> Node {
    write(&net.share_dir(name), "payload.bin", content);
    let mut config = net.config(name, RoleSetting::Leaf, Some(sn.listen_addr()));
    config.share.upload_rate_kib = rate_kib;
    let node = net.start(config).await;
    node.wait_ready(DEADLINE).await.expect("source joins");
    node
}

/// Waits until the download behind `progress` has at least `bytes` verified.
async fn progressed(progress: &mut watch::Receiver<Progress>, bytes: u64) {
    eventually(&format!("{bytes} bytes downloaded"), || {
        let done = progress.borrow().bytes_done;
        async move { (done >= bytes).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_killed_mid_transfer_gives_its_pieces_back() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(12 << 20, 5);
    let id = ContentId::from(blake3::hash(&content));
    let mut sources = Vec::new();
    for name in ["s1", "s2", "s3"] {
        sources.push(throttled_source(&net, name, &sn, &content, 4096).await);
    }
    let d = net.leaf("d", &sn).await;
    search_until(&d, &[&id.to_hex()], |h| {
        h.first().is_some_and(|h| h.sources == 3)
    })
    .await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let getter = d.clone();
    let download = tokio::spawn(async move { getter.get(id, None, tx).await });
    progressed(&mut rx, 2 << 20).await;
    let victim = sources.remove(0);
    let victim_id = victim.node_id();
    victim.shutdown().await;
    let report = download.await.unwrap().expect("download completes");
    assert_eq!(std::fs::read(&report.path).unwrap(), content);
    let killed = report.sources.iter().find(|s| s.node == victim_id).unwrap();
    assert!(killed.dropped.is_some(), "{:?}", report.sources);
    assert!(killed.bytes < content.len() as u64);
    assert_eq!(
        report.sources.iter().map(|s| s.bytes).sum::<u64>(),
        content.len() as u64
    );
    for node in sources.into_iter().chain([d, sn]) {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_appears_during_the_download_joins_it() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(10 << 20, 6);
    let id = ContentId::from(blake3::hash(&content));
    let slow = throttled_source(&net, "slow", &sn, &content, 1024).await;
    let d = net.leaf("d", &sn).await;
    search_until(&d, &[&id.to_hex()], |h| !h.is_empty()).await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let getter = d.clone();
    let download = tokio::spawn(async move { getter.get(id, None, tx).await });
    progressed(&mut rx, 256 << 10).await;
    let late = throttled_source(&net, "late", &sn, &content, 0).await;
    let report = download.await.unwrap().expect("download completes");
    assert_eq!(std::fs::read(&report.path).unwrap(), content);
    let late_report = report.sources.iter().find(|s| s.node == late.node_id());
    assert!(
        late_report.is_some_and(|s| s.bytes > 0),
        "the late source contributes: {:?}",
        report.sources
    );
    for node in [late, slow, d, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_download_resumes_and_fetches_only_missing_pieces() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(8 << 20, 7);
    let id = ContentId::from(blake3::hash(&content));
    let source = throttled_source(&net, "source", &sn, &content, 2048).await;
    let config = net.config("d", RoleSetting::Leaf, Some(sn.listen_addr()));

    let first = net.start(config.clone()).await;
    first.wait_ready(DEADLINE).await.unwrap();
    search_until(&first, &[&id.to_hex()], |h| !h.is_empty()).await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let getter = first.clone();
    let download = tokio::spawn(async move { getter.get(id, None, tx).await });
    progressed(&mut rx, 3 << 20).await;
    download.abort();
    first.shutdown().await;
    let _ = download.await;

    let second = net.start(config).await;
    second.wait_ready(DEADLINE).await.unwrap();
    search_until(&second, &[&id.to_hex()], |h| !h.is_empty()).await;
    let report = second
        .get(id, None, no_progress())
        .await
        .expect("resumed download");
    assert_eq!(std::fs::read(&report.path).unwrap(), content);
    assert!(
        report.resumed_bytes >= 3 << 20,
        "resumed {}",
        report.resumed_bytes
    );
    let fetched: u64 = report.sources.iter().map(|s| s.bytes).sum();
    assert_eq!(
        fetched + report.resumed_bytes,
        content.len() as u64,
        "only missing pieces are fetched"
    );
    for node in [second, source, sn] {
        node.shutdown().await;
    }
}
