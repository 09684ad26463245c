//! The local-cluster walkthrough (`config/local-cluster/`) run as its README says, with the
//! real binary and the real config files (only the addresses moved to free ports), and what
//! a node must never share: other nodes' data dirs, node keys, symlinks leaving the share
//! folders, and a missing share folder reported loudly.

mod common;

use std::path::Path;

use common::bin::{json, json_lines, listen, run, spawn, until, write_config};

/// Copies the walkthrough folder (configs and shared files, not `state/`).
fn copy_walkthrough(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local-cluster");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() && name != "state" {
            std::fs::create_dir_all(to.join(name)).unwrap();
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, to.join(name).join(file.file_name().unwrap())).unwrap();
            }
        } else if path.is_file() {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// Rewrites `from` to `to` in `dir/NAME.toml`.
fn edit(dir: &Path, name: &str, from: &str, to: &str) {
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{name}.toml has no {from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

fn names(out: &std::process::Output) -> Vec<String> {
    let mut names: Vec<String> = json_lines(out)
        .iter()
        .map(|hit| hit["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_local_cluster_walkthrough_shares_only_what_was_picked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("local-cluster");
    copy_walkthrough(&dir);
    edit(&dir, "sn", "127.0.0.1:4710", "127.0.0.1:0");
    let sn_cfg = dir.join("sn.toml");
    let _sn = spawn(&sn_cfg);
    let sn_addr = listen(&sn_cfg);
    edit(&dir, "alice", "127.0.0.1:4711", "127.0.0.1:0");
    for name in ["alice", "bob"] {
        edit(&dir, name, "127.0.0.1:4710", &sn_addr);
    }

    // Carol shares the whole walkthrough folder, as alice once did: it holds every node's
    // state, a copy of alice's key under another name, and a symlink to a file outside.
    let outside = tmp.path().join("outside secret.txt");
    std::fs::write(&outside, b"not picked").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("outside secret link.txt")).unwrap();
    let carol_cfg = write_config(
        &dir,
        "carol",
        &format!(
            "[node]\nrole = \"leaf\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"state/carol\"\n\
             [share]\ndirs = [\".\", \"no such folder\"]\nrescan_secs = 1\n\
             [network]\nbootstrap = [\"{sn_addr}\"]\n"
        ),
    );
    let alice_cfg = dir.join("alice.toml");
    let _alice = spawn(&alice_cfg);
    until(&alice_cfg, &["status", "--json"], |o| {
        o.status.success() && !json(o)["supernode"].is_null()
    });
    std::fs::copy(
        dir.join("state/alice/node.key"),
        dir.join("alice key backup.der"),
    )
    .unwrap();
    let _carol = spawn(&carol_cfg);
    let carol = until(&carol_cfg, &["status", "--json"], |o| {
        o.status.success() && !json(o)["supernode"].is_null() && json(o)["shared_files"] == 6
    });
    let problems = json(&carol)["problems"].to_string();
    assert!(
        problems.contains("no such folder") && problems.contains("missing"),
        "{problems}"
    );
    let text = run(&carol_cfg, &["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("warning:       share folder"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // The walkthrough: bob (no node running) searches and gets alice's file.
    let bob_cfg = dir.join("bob.toml");
    let found = until(&bob_cfg, &["search", "--json", "readme"], |o| {
        o.status.success() && json_lines(o).iter().any(|hit| hit["sources"] == 2)
    });
    let hit = &json_lines(&found)[0];
    assert_eq!(hit["name"], "kazoo readme.txt");
    let got = run(&bob_cfg, &["get", "--json", hit["hash"].as_str().unwrap()]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read(json(&got)["path"].as_str().unwrap()).unwrap(),
        std::fs::read(dir.join("alice-shared/kazoo readme.txt")).unwrap()
    );

    // What carol shares is the configs and the readme; no key, no state, nothing outside.
    let tomls = run(&bob_cfg, &["search", "--json", "toml"]);
    assert_eq!(
        names(&tomls),
        ["alice.toml", "bob.toml", "carol.toml", "sn.toml"]
    );
    for word in [
        "key",
        "node",
        "tag",
        "hashcache",
        "secret",
        "backup",
        "outside",
    ] {
        let out = run(&bob_cfg, &["search", "--json", word]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(names(&out), Vec::<String>::new(), "search {word}");
    }
}
