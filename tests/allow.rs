//! `network.allow` from the real binary, processes on loopback: nodes on each other's lists
//! join, download and browse; a node not on the list is refused with a clear error on both
//! sides (its own status and the refusing node's), and a node with a list does not connect
//! to a node off it.

mod common;

use std::path::Path;

use common::bin::{json, listen, node_config as node, run, spawn, until};
use kazoo_common::identity::Identity;

/// A node's data dir with its key made now, so its id can go in the others' lists.
fn identity(dir: &Path, name: &str) -> String {
    let data = dir.join(name).join("data");
    std::fs::create_dir_all(&data).unwrap();
    Identity::load_or_create(&data).unwrap().node_id().to_hex()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn only_listed_nodes_join_download_and_browse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let [sn, alice, bob, mallory] = ["sn", "alice", "bob", "mallory"].map(|n| identity(dir, n));
    let list = |ids: &[&String]| {
        let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
        format!("allow = [{}]\n", quoted.join(", "))
    };
    let sn_cfg = node(dir, "sn", "supernode", &list(&[&alice, &bob]), "");
    let _sn = spawn(&sn_cfg);
    let boot = format!("bootstrap = [\"{sn}@{}\"]\n", listen(&sn_cfg));

    let shared = dir.join("alice/share");
    std::fs::create_dir_all(&shared).unwrap();
    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(shared.join("members only.flac"), &data).unwrap();
    let hash = blake3::hash(&data).to_hex().to_string();
    let share = "[share]\ndirs = [\"alice/share\"]\nrescan_secs = 1\n";
    let alice_cfg = node(
        dir,
        "alice",
        "leaf",
        &format!("{boot}{}", list(&[&sn, &bob])),
        share,
    );
    let bob_cfg = node(
        dir,
        "bob",
        "leaf",
        &format!("{boot}{}", list(&[&sn, &alice])),
        "",
    );
    // Mallory has no list: anyone may connect to it, but the others will not have it.
    let mallory_cfg = node(dir, "mallory", "leaf", &boot, share);
    let _alice = spawn(&alice_cfg);
    let _bob = spawn(&bob_cfg);
    let _mallory = spawn(&mallory_cfg);
    let joined = |o: &std::process::Output| o.status.success() && !json(o)["supernode"].is_null();
    let alice_status = json(&until(&alice_cfg, &["status", "--json"], |o| {
        joined(o) && json(o)["shared_files"] == 1
    }));
    until(&bob_cfg, &["status", "--json"], joined);
    let alice_addr = alice_status["listen"].as_str().unwrap().to_owned();

    // Listed nodes: bob downloads alice's file through the supernode, bytes exact.
    let got = until(&bob_cfg, &["get", "--json", &hash], |o| o.status.success());
    let path = json(&got)["path"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(path).unwrap(), data);

    // Mallory is refused by the supernode: no join, and the reason in its own status.
    let refused = json(&until(&mallory_cfg, &["status", "--json"], |o| {
        json(o)["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("network.allow"))
    }));
    assert!(refused["supernode"].is_null());
    let why = refused["last_error"]["message"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "node {mallory} is not in this node's network.allow"
        )),
        "{why}"
    );
    // The refusing side says so too.
    let sn_side = json(&until(&sn_cfg, &["status", "--json"], |o| {
        json(o)["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&mallory[..8]))
    }));
    assert!(sn_side["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("not in network.allow"));
    assert_eq!(sn_side["leaves"], 2);

    // Nor may mallory's running node connect to alice directly (browse, as a download
    // would).
    let browse = run(&mallory_cfg, &["browse", &format!("{alice}@{alice_addr}")]);
    assert!(!browse.status.success());
    assert!(
        stderr(&browse).contains("is not in this node's network.allow"),
        "{}",
        stderr(&browse)
    );

    // A node with a list does not connect to a node off it, even when asked.
    let mallory_status = json(&run(&mallory_cfg, &["status", "--json"]));
    let mallory_addr = mallory_status["listen"].as_str().unwrap();
    let out = run(&alice_cfg, &["browse", mallory_addr]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "not allowed: node {mallory} is not in this node's network.allow"
        )),
        "{}",
        stderr(&out)
    );
}
