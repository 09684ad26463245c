//! One supernode and leaves in one process, over real QUIC on loopback: join, share,
//! search, download, share changes, leaving.

mod common;

use common::*;
use kazoo_common::config::RoleSetting;
use kazoo_common::ContentId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_search_download_between_two_leaves() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let a_share = net.share_dir("a");
    let song = bytes(1_300_000, 1);
    let song_id = ContentId::from(blake3::hash(&song));
    write(&a_share, "Daft Punk - Around the World.mp3", &song);
    write(&a_share, "notes.txt", b"shopping list");
    let a = net.leaf("a", &sn).await;
    let b = net.leaf("b", &sn).await;

    let hits = search_until(&b, &["daft", "WORLD"], |h| !h.is_empty()).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, song_id);
    assert_eq!(hits[0].size, song.len() as u64);
    assert_eq!(hits[0].sources, 1);
    assert_eq!(hits[0].providers[0].node, a.node_id());
    assert!(
        b.search(&["daft".into(), "notes".into()], 10)
            .await
            .unwrap()
            .is_empty(),
        "words are ANDed"
    );

    let report = b.get(song_id, None, no_progress()).await.expect("download");
    assert_eq!(std::fs::read(&report.path).unwrap(), song);
    assert_eq!(
        report.path,
        net.download_dir("b")
            .join("Daft Punk - Around the World.mp3")
    );
    assert_eq!(report.sources.len(), 1);
    assert_eq!(report.sources[0].node, a.node_id());
    assert_eq!(report.sources[0].bytes, song.len() as u64);

    // The finished file is shared: the supernode now knows two sources.
    search_until(&a, &[&song_id.to_hex()], |h| {
        h.first().is_some_and(|h| h.sources == 2)
    })
    .await;

    let sn_status = sn.status();
    assert_eq!(sn_status.role, "supernode");
    assert_eq!(sn_status.leaves, Some(2));
    let a_status = a.status();
    assert_eq!(a_status.role, "leaf");
    assert_eq!(a_status.supernode, Some(sn.node_id()));
    assert_eq!(a_status.shared_files, 2);

    // Files added and removed while running are noticed.
    write(&a_share, "fresh tune.flac", b"new bytes");
    search_until(&b, &["fresh", "tune"], |h| h.len() == 1).await;
    std::fs::remove_file(a_share.join("notes.txt")).unwrap();
    search_until(&b, &["notes"], |h| h.is_empty()).await;

    // A leaf that leaves takes its entries with it.
    a.shutdown().await;
    let hits = search_until(&b, &["daft"], |h| h.first().is_some_and(|h| h.sources == 1)).await;
    assert_eq!(hits[0].providers[0].node, b.node_id());
    search_until(&b, &["fresh"], |h| h.is_empty()).await;
    assert_eq!(sn.status().leaves, Some(1));
    b.shutdown().await;
    sn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supernode_shares_its_own_files_and_restart_keeps_the_key() {
    let net = Net::new();
    let own = bytes(70_000, 2);
    write(&net.share_dir("sn"), "supernode own file.bin", &own);
    let sn = net.supernode("sn").await;
    let first_id = sn.node_id();
    let a = net.leaf("a", &sn).await;
    let hits = search_until(&a, &["own"], |h| !h.is_empty()).await;
    assert_eq!(hits[0].providers[0].node, sn.node_id());
    let report = a.get(hits[0].id, None, no_progress()).await.unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), own);
    a.shutdown().await;
    sn.shutdown().await;

    let again = net.supernode("sn").await;
    assert_eq!(again.node_id(), first_id, "the key in data_dir is reused");
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_sizes_and_hostile_names() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let share = net.share_dir("a");
    write(&share, "empty file.bin", b"");
    write(&share, "one byte.bin", b"x");
    write(&share, "evil\\..\\..\\escape.txt", b"stay inside");
    let a = net.leaf("a", &sn).await;
    let b = net.leaf("b", &sn).await;
    search_until(&b, &["bin"], |h| h.len() == 2).await;
    for (name, content) in [
        ("empty", &b""[..]),
        ("one", &b"x"[..]),
        ("escape", &b"stay inside"[..]),
    ] {
        let hit = search_until(&b, &[name], |h| h.len() == 1).await.remove(0);
        let report = b.get(hit.id, None, no_progress()).await.expect(name);
        assert_eq!(std::fs::read(&report.path).unwrap(), content, "{name}");
        assert_eq!(
            report.path.parent(),
            Some(net.download_dir("b").as_path()),
            "{name}"
        );
    }
    // A file nobody has fails with a clear message.
    let nobody = ContentId::from(blake3::hash(b"nobody has this"));
    let err = b.get(nobody, None, no_progress()).await.unwrap_err();
    assert!(err.to_string().contains("no sources"), "{err}");
    for node in [b, a, sn] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_uses_every_source_and_survives_a_corrupt_one() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(16 << 20, 3);
    let id = ContentId::from(blake3::hash(&content));
    // Sources are capped at 2 MiB/s each so the download lasts long enough (about 3 s, and
    // 4 s from the two good sources below) for every one of them to be asked, however the
    // runtime schedules their request slots and however late a connection comes up on a
    // loaded machine.
    let mut sources = Vec::new();
    for name in ["s1", "s2", "s3"] {
        write(&net.share_dir(name), "big file.iso", &content);
        let mut config = net.config(name, RoleSetting::Leaf, Some(sn.listen_addr()));
        config.share.upload_rate_kib = 2048;
        let node = net.start(config).await;
        node.wait_ready(DEADLINE).await.unwrap();
        sources.push(node);
    }
    let d = net.leaf("d", &sn).await;
    search_until(&d, &[&id.to_hex()], |h| {
        h.first().is_some_and(|h| h.sources == 3)
    })
    .await;
    let report = d.get(id, None, no_progress()).await.unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), content);
    assert_eq!(report.sources.len(), 3);
    for s in &report.sources {
        assert!(
            s.bytes > 0,
            "every source contributes: {:?}",
            report.sources
        );
    }
    assert_eq!(
        report.sources.iter().map(|s| s.bytes).sum::<u64>(),
        content.len() as u64
    );

    // s3's copy is overwritten with garbage of the same size and mtime: it still claims the
    // hash, but every piece it sends fails verification.
    let bad_path = net.share_dir("s3").join("big file.iso");
    let mtime = std::fs::metadata(&bad_path).unwrap().modified().unwrap();
    std::fs::write(&bad_path, bytes(content.len(), 99)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&bad_path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // d shares its (uncapped) copy too; without it the three capped sources stay the only ones.
    d.shutdown().await;
    let e = net.leaf("e", &sn).await;
    search_until(&e, &[&id.to_hex()], |h| {
        h.first().is_some_and(|h| h.sources == 3)
    })
    .await;
    let report = e.get(id, None, no_progress()).await.unwrap();
    assert_eq!(
        std::fs::read(&report.path).unwrap(),
        content,
        "result is exact"
    );
    let bad = report
        .sources
        .iter()
        .find(|s| s.node == sources[2].node_id())
        .unwrap();
    assert!(bad.bad_pieces >= 1, "{:?}", report.sources);
    assert!(bad.dropped.is_some());
    assert_eq!(bad.bytes, 0);
    assert!(report.bad_pieces >= 1);
    e.shutdown().await;
    for node in sources {
        node.shutdown().await;
    }
    sn.shutdown().await;
}
