//! Search over real QUIC across supernodes: folder words, prefixes, accents, CJK, hash
//! prefixes, exclusions and filters are routed by the supernodes' filters to every
//! supernode that holds a match (no false negatives), ranked name matches first, with the
//! names of one content listed; and the real `kazoo search` shows folders, escapes names and
//! announces truncation.

mod common;

use std::path::Path;

use common::*;
use kazoo_common::ContentId;
use kazoo_leaf::{Findings, Node};

/// Writes `data` at `path` below `dir`, creating its folders.
fn put(dir: &Path, path: &str, data: &[u8]) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, data).unwrap();
}

/// Finds from `node` until `ok` accepts the results.
async fn find_until(node: &Node, query: &str, ok: impl Fn(&Findings) -> bool) -> Findings {
    let words: Vec<String> = query.split_whitespace().map(String::from).collect();
    eventually(&format!("find {query:?}"), || {
        let words = words.clone();
        let ok = &ok;
        async move {
            let found = node.find(&words, 50).await.ok()?;
            ok(&found).then_some(found)
        }
    })
    .await
}

fn names(found: &Findings) -> Vec<&str> {
    found.results.iter().map(|f| f.hit.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_folder_and_filtered_searches_route_across_supernodes() {
    let net = Net::new();
    let s1 = bootstrapped_supernode(&net, "s1", &[]).await;
    let s2 = bootstrapped_supernode(&net, "s2", &[s1.listen_addr()]).await;
    let s3 = bootstrapped_supernode(&net, "s3", &[s2.listen_addr()]).await;
    let s4 = bootstrapped_supernode(&net, "s4", &[s3.listen_addr()]).await;
    for sn in [&s1, &s2, &s3, &s4] {
        eventually("full mesh", || async {
            (sn.status().peers.unwrap_or(0) >= 3).then_some(())
        })
        .await;
    }
    let kashmir = bytes(200_000, 1);
    let kashmir_id = ContentId::from(blake3::hash(&kashmir));
    put(
        &net.share_dir("b"),
        "Music/Rock/Led Zeppelin/Kashmir.flac",
        &kashmir,
    );
    put(
        &net.share_dir("b"),
        "Photos/東京/渋谷の夜.png",
        &bytes(1000, 2),
    );
    put(
        &net.share_dir("c"),
        "Documents/Résumé 2024.pdf",
        &bytes(1000, 3),
    );
    put(
        &net.share_dir("c"),
        "Music/Live/Stairway to Heaven (Live).mp3",
        &bytes(5000, 4),
    );
    put(
        &net.share_dir("d"),
        "Downloads/kashmir (remaster).flac",
        &kashmir,
    );
    put(
        &net.share_dir("d"),
        "Software/zeppelin-setup.exe",
        &bytes(3000, 5),
    );
    put(
        &net.share_dir("d"),
        "Music/Stairway to Heaven.flac",
        &bytes(6000, 6),
    );
    let a = net.leaf("a", &s1).await;
    let b = net.leaf("b", &s2).await;
    let c = net.leaf("c", &s3).await;
    let d = net.leaf("d", &s4).await;

    // A folder word: the installer (under s4) matches by name and ranks above Kashmir
    // (under s2), which matches by folder only.
    let found = find_until(&a, "zeppelin", |f| f.results.len() == 2).await;
    assert_eq!(
        names(&found),
        [
            "Software/zeppelin-setup.exe",
            "Music/Rock/Led Zeppelin/Kashmir.flac"
        ]
    );
    // A prefix: one result per content, its other name listed.
    let found = find_until(&a, "kash", |f| {
        f.results.len() == 1 && f.results[0].hit.sources == 2 && f.results[0].names.len() == 1
    })
    .await;
    assert_eq!(found.results[0].hit.id, kashmir_id);
    let mut all = vec![
        found.results[0].hit.name.clone(),
        found.results[0].names[0].clone(),
    ];
    all.sort();
    assert_eq!(
        all,
        [
            "Downloads/kashmir (remaster).flac",
            "Music/Rock/Led Zeppelin/Kashmir.flac"
        ]
    );
    // Prefixes under two supernodes, an exclusion, a type filter, a folder filter.
    let found = find_until(&a, "stair heav", |f| f.results.len() == 2).await;
    assert_eq!(found.results.len(), 2);
    let found = find_until(&a, "stairway -live", |f| f.results.len() == 1).await;
    assert_eq!(names(&found), ["Music/Stairway to Heaven.flac"]);
    let found = find_until(&a, "stairway type:audio size:<5500", |f| {
        !f.results.is_empty()
    })
    .await;
    assert_eq!(names(&found), ["Music/Live/Stairway to Heaven (Live).mp3"]);
    let found = find_until(&a, "in:rock", |f| !f.results.is_empty()).await;
    assert_eq!(found.results[0].hit.id, kashmir_id);
    // Accents, CJK, a hash prefix.
    let found = find_until(&a, "resume", |f| !f.results.is_empty()).await;
    assert_eq!(names(&found), ["Documents/Résumé 2024.pdf"]);
    let found = find_until(&a, "渋谷", |f| !f.results.is_empty()).await;
    assert_eq!(names(&found), ["Photos/東京/渋谷の夜.png"]);
    let found = find_until(&a, &kashmir_id.to_hex()[..10], |f| !f.results.is_empty()).await;
    assert_eq!(found.results[0].hit.id, kashmir_id);
    // Nothing matches: no result, and a filter that excludes everything finds nothing.
    assert!(a
        .find(&["zzzqqq".into()], 50)
        .await
        .unwrap()
        .results
        .is_empty());
    let none = a
        .find(&["kashmir".into(), "type:video".into()], 50)
        .await
        .unwrap();
    assert!(none.results.is_empty());
    // Truncation is announced.
    let found = find_until(&a, "music", |f| f.results.len() == 3).await;
    assert!(!found.more);
    let more = a.find(&["music".into()], 2).await.unwrap();
    assert!(more.more && more.results.len() == 2);
    for node in [a, b, c, d, s1, s2, s3, s4] {
        node.shutdown().await;
    }
}

#[test]
fn cli_shows_folders_escapes_names_and_announces_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shared = dir.join("shared");
    put(&shared, "Work/readme.txt", b"work");
    put(&shared, "Games/readme.txt", b"games");
    put(&shared, "Evil/readme \u{1b}[2J.txt", b"evil");
    let config = dir.join("sn.toml");
    std::fs::write(
        &config,
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n\
         [share]\ndirs = [\"shared\"]\nrescan_secs = 1\n",
    )
    .unwrap();
    let _sn = bin::spawn(&config);
    let json = bin::until(&config, &["search", "--json", "readme"], |o| {
        o.status.success() && o.stdout.iter().filter(|&&b| b == b'\n').count() == 3
    });
    let lines: Vec<serde_json::Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut folders: Vec<&str> = lines
        .iter()
        .map(|l| l["folder"].as_str().unwrap())
        .collect();
    folders.sort();
    assert_eq!(folders, ["Evil", "Games", "Work"]);
    // `--json` is exact (not escaped for a terminal): the name as the node keeps it, its
    // control character replaced when it was received (`hits::sanitize_name`).
    assert!(
        lines.iter().any(|l| l["name"] == "readme \u{fffd}[2J.txt"),
        "{lines:?}"
    );
    // The table shows folders and escapes the name; with `--max 2` it says more matched.
    let table = bin::run(&config, &["search", "--max", "2", "readme"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("FOLDER"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("showing the first 2"), "{text}");
    assert!(text.contains("--max"), "{text}");
    // Flags after the words work as before them.
    let json = bin::run(&config, &["search", "readme", "--json", "--max", "2"]);
    assert_eq!(json.stdout.iter().filter(|&&b| b == b'\n').count(), 2);
    assert!(String::from_utf8_lossy(&json.stderr).contains("--max"));
    // Exclusions pass through the command line; without truncation there is no notice.
    let table = bin::run(&config, &["search", "readme", "-work", "-evil"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("Games") && !text.contains("Work") && !text.contains("showing"),
        "{text}"
    );
    // Bad filters are a clear error.
    let bad = bin::run(&config, &["search", "readme", "type:film"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown type"));
    let bad = bin::run(&config, &["search", "readme", "--max", "500"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1 to 200"));
}
