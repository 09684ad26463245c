//! The real `kazoo` binary, several processes on loopback: a supernode, a sharing leaf, and
//! one-shot `search`/`get` commands that join as short-lived leaves.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::bin::{json, run, spawn, until, write_config};

/// Config for a `role` node `name` under `dir` that shares one file, `<name> <file>`, and
/// joins `bootstrap`.
fn sharing_node(dir: &Path, name: &str, role: &str, file: &str, bootstrap: &str) -> PathBuf {
    let shared = dir.join(name).join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join(format!("{name} {file}")), name.as_bytes()).unwrap();
    write_config(
        dir,
        name,
        &format!(
            "[node]\nrole = \"{role}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}/data\"\n\
             [share]\ndirs = [\"{name}/shared\"]\nrescan_secs = 1\n\
             [network]\nbootstrap = [\"{bootstrap}\"]\n"
        ),
    )
}

#[test]
fn supernode_leaf_and_one_shot_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn_cfg = write_config(
        dir,
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n",
    );
    let _sn = spawn(&sn_cfg);
    let status = until(&sn_cfg, &["status", "--json"], |o| o.status.success());
    let status = json(&status);
    assert_eq!(status["role"], "supernode");
    assert_eq!(status["leaves"], 0);
    let sn_id = status["node_id"].as_str().unwrap().to_owned();
    let sn_addr = status["listen"].as_str().unwrap().to_owned();

    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(shared.join("Hello World.ogg"), &content).unwrap();
    let leaf_cfg = write_config(
        dir,
        "leaf",
        &format!(
            "[node]\nrole = \"leaf\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"leaf\"\n\
             [share]\ndirs = [\"shared\"]\nrescan_secs = 1\n\
             [network]\nbootstrap = [\"{sn_id}@{sn_addr}\"]\n"
        ),
    );
    let _leaf = spawn(&leaf_cfg);
    let leaf_status = until(&leaf_cfg, &["status", "--json"], |o| {
        o.status.success() && json(o)["supernode"] == sn_id.as_str() && json(o)["shared_files"] == 1
    });
    let leaf_status = json(&leaf_status);
    assert_eq!(leaf_status["role"], "leaf");
    assert_eq!(leaf_status["shared_files"], 1);

    // kazoo hash prints what b3sum prints.
    let file = shared.join("Hello World.ogg");
    let hashed = run(&leaf_cfg, &["hash", file.to_str().unwrap()]);
    assert!(hashed.status.success());
    let expected = blake3::hash(&content).to_hex().to_string();
    assert_eq!(
        String::from_utf8_lossy(&hashed.stdout),
        format!("{expected}  {}\n", file.display())
    );

    // One-shot search and get from a config with no running node.
    let getter_cfg = write_config(
        dir,
        "getter",
        &format!(
            "[node]\ndata_dir = \"getter\"\n[share]\ndownload_dir = \"got\"\n\
             [network]\nbootstrap = [\"{sn_addr}\"]\n"
        ),
    );
    let found = until(&getter_cfg, &["search", "--json", "hello", "WORLD"], |o| {
        o.status.success() && !o.stdout.is_empty()
    });
    let hit = json(&found);
    assert_eq!(hit["hash"], expected.as_str());
    assert_eq!(hit["name"], "Hello World.ogg");
    assert_eq!(hit["size"], content.len());
    assert_eq!(hit["sources"], 1);
    let table = run(&getter_cfg, &["search", "hello"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("Hello World.ogg"));

    let got = run(&getter_cfg, &["get", "--json", &expected]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let report = json(&got);
    assert_eq!(report["hash"], expected.as_str());
    assert_eq!(report["bytes"], content.len());
    assert!(report["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(report["sources"][0]["node"], leaf_status["node_id"]);
    assert_eq!(report["sources"][0]["bytes"], content.len());
    let path = PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(path, dir.join("got").join("Hello World.ogg"));
    assert_eq!(std::fs::read(&path).unwrap(), content);

    let out = dir.join("copy.ogg");
    let got = run(
        &getter_cfg,
        &["get", &expected, "-o", out.to_str().unwrap()],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), content);

    // Errors are clear and the exit code says so.
    let missing = blake3::hash(b"not shared anywhere").to_hex().to_string();
    let failed = run(&getter_cfg, &["get", &missing]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no sources"));
    let bad_cfg = write_config(dir, "bad", "[node]\nrolle = \"leaf\"\n");
    let failed = run(&bad_cfg, &["status"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("rolle"));
    let failed = run(&getter_cfg, &["status"]);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no kazoo node is running"));
}

#[test]
fn kill_dash_nine_of_a_supernode_elects_an_heir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn_cfg = write_config(
        dir,
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n",
    );
    let mut sn = spawn(&sn_cfg);
    let sn_status = json(&until(&sn_cfg, &["status", "--json"], |o| {
        o.status.success()
    }));
    let sn_addr = sn_status["listen"].as_str().unwrap().to_owned();
    let old_sn = sn_status["node_id"].clone();
    let mut leaves = Vec::new();
    for name in ["auto1", "auto2", "plain"] {
        let role = if name == "plain" { "leaf" } else { "auto" };
        let cfg = sharing_node(dir, name, role, "song.ogg", &sn_addr);
        let proc = spawn(&cfg);
        leaves.push((cfg, proc));
    }
    let plain = leaves[2].0.clone();
    // The succession list reached the leaves and every file is searchable.
    until(&plain, &["status", "--json"], |o| {
        o.status.success()
            && json(o)["succession"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
    });
    until(&plain, &["search", "--json", "song"], |o| {
        String::from_utf8_lossy(&o.stdout).lines().count() == 3
    });

    // kill -9: no goodbye; the leaves notice through the QUIC idle timeout.
    sn.0.kill().unwrap();
    let _ = sn.0.wait();
    let promoted = until(&plain, &["status", "--json"], |o| {
        o.status.success() && !json(o)["supernode"].is_null() && json(o)["supernode"] != old_sn
    });
    let new_sn = json(&promoted)["supernode"].as_str().unwrap().to_owned();
    let mut found = false;
    for (cfg, _) in &leaves[..2] {
        let status = json(&run(cfg, &["status", "--json"]));
        if status["node_id"] == new_sn.as_str() {
            assert_eq!(status["role"], "supernode");
            assert!(
                status["reason"].as_str().unwrap().contains("heir"),
                "{status}"
            );
            found = true;
        }
    }
    assert!(found, "the new supernode is one of the auto leaves");
    assert_eq!(json(&run(&plain, &["status", "--json"]))["role"], "leaf");
    // Every leaf re-registered with the heir: all three files are found again.
    until(&plain, &["search", "--json", "song"], |o| {
        String::from_utf8_lossy(&o.stdout).lines().count() == 3
    });
}

#[test]
fn a_supernode_restarted_at_its_address_gets_its_leaves_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sn_body = |listen: &str| {
        format!("[node]\nrole = \"supernode\"\nlisten = \"{listen}\"\ndata_dir = \"sn\"\n")
    };
    let sn_cfg = write_config(dir, "sn", &sn_body("127.0.0.1:0"));
    let mut sn = spawn(&sn_cfg);
    let sn_status = json(&until(&sn_cfg, &["status", "--json"], |o| {
        o.status.success()
    }));
    let sn_addr = sn_status["listen"].as_str().unwrap().to_owned();
    let sn_id = sn_status["node_id"].as_str().unwrap().to_owned();
    // Restarts keep the address (and, from its data_dir, the key).
    let sn_cfg = write_config(dir, "sn", &sn_body(&sn_addr));
    let mut leaves = Vec::new();
    for name in ["one", "two"] {
        let cfg = sharing_node(dir, name, "leaf", "tune.ogg", &sn_addr);
        leaves.push((cfg.clone(), spawn(&cfg)));
    }
    let both_found = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().count() == 2;
    until(&sn_cfg, &["search", "--json", "tune"], both_found);

    for round in 0..2 {
        // kill -9 and start again at once: same key, same address.
        sn.0.kill().unwrap();
        let _ = sn.0.wait();
        sn = spawn(&sn_cfg);
        until(&sn_cfg, &["status", "--json"], |o| {
            o.status.success() && json(o)["node_id"] == sn_id.as_str()
        });
        for (cfg, _) in &leaves {
            until(cfg, &["status", "--json"], |o| {
                o.status.success() && json(o)["supernode"] == sn_id.as_str()
            });
        }
        let found = until(&sn_cfg, &["search", "--json", "tune"], both_found);
        assert!(found.status.success(), "round {round}");
        assert_eq!(
            json(&run(&sn_cfg, &["status", "--json"]))["leaves"],
            2,
            "round {round}: the supernode counts each leaf once"
        );
    }
}
