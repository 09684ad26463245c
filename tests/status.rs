//! `kazoo status` and `kazoo browse` from the real binary, several processes on loopback: a
//! supernode's leaves and peers (listed in full by `--json`, a few in the table), share
//! folders with their counts, uploads in progress with the downloading peer, times in local
//! time with their age, a leaf's reason once joined, the last error; browsing a node's
//! files by address or by id, its opt-out, and names escaped for the terminal.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::bin::{json, kazoo, run, spawn, until, write_config, Proc};

/// Config of a `kazoo run` node `name` under `dir` (data in `dir/name/data`), with `extra`
/// TOML appended.
fn node(dir: &Path, name: &str, role: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        name,
        &format!(
            "[node]\nrole = \"{role}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}/data\"\n{extra}"
        ),
    )
}

/// A running supernode `sn` under `dir`: the process, its config, its status, and the
/// `[network]` section that bootstraps from it.
fn supernode(dir: &Path) -> (Proc, PathBuf, serde_json::Value, String) {
    let cfg = node(dir, "sn", "supernode", "");
    let proc = spawn(&cfg);
    let status = json(&until(&cfg, &["status", "--json"], |o| o.status.success()));
    let boot = format!(
        "[network]\nbootstrap = [\"{}@{}\"]\n",
        status["node_id"].as_str().unwrap(),
        status["listen"].as_str().unwrap()
    );
    (proc, cfg, status, boot)
}

/// A file of `len` deterministic bytes at `dir/rel`; returns its content id.
fn file(dir: &Path, rel: &str, len: usize, seed: u32) -> String {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let data: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(seed) % 251) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    blake3::hash(&data).to_hex().to_string()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kazoo status` (table) with the time zone `tz`.
fn status_in(config: &Path, tz: &str) -> String {
    let out = kazoo(config, &["status"]).env("TZ", tz).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text(&out)
}

/// `YYYY-MM-DD HH:MM:SS` of unix time `unix` shifted by `offset` seconds (civil from days).
fn civil(unix: i64, offset: i64) -> String {
    let t = unix + offset;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn status_lists_leaves_peers_folders_uploads_and_reads_in_local_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn_cfg, _, boot) = supernode(dir);
    let sn2_cfg = node(dir, "sn2", "supernode", &boot);
    let _sn2 = spawn(&sn2_cfg);

    // Alice shares two files in Music (one rate-capped upload to watch) and a folder that
    // is missing.
    let big = file(dir, "alice/Music/Around the World.ogg", 1_500_000, 7);
    file(dir, "alice/Music/Daft Punk/One More Time.ogg", 300_000, 13);
    let alice_cfg = node(
        dir,
        "alice",
        "leaf",
        &format!(
            "[share]\ndirs = [\"alice/Music\", \"alice/Gone\"]\nrescan_secs = 1\n\
             upload_rate_kib = 256\n{boot}"
        ),
    );
    let _alice = spawn(&alice_cfg);
    let bob_cfg = node(dir, "bob", "leaf", &boot);
    let _bob = spawn(&bob_cfg);
    let joined = |o: &Output| o.status.success() && !json(o)["supernode"].is_null();
    let alice = json(&until(&alice_cfg, &["status", "--json"], |o| {
        joined(o) && json(o)["shared_files"] == 2
    }));
    let bob = json(&until(&bob_cfg, &["status", "--json"], joined));
    let alice_id = alice["node_id"].as_str().unwrap().to_owned();
    let bob_id = bob["node_id"].as_str().unwrap().to_owned();

    // The supernode lists both leaves and its peer in full, with addresses and since.
    let sn = json(&until(&sn_cfg, &["status", "--json"], |o| {
        let s = json(o);
        s["leaf_list"].as_array().is_some_and(|l| l.len() == 2)
            && s["peer_list"].as_array().is_some_and(|p| p.len() == 1)
    }));
    let leaves = sn["leaf_list"].as_array().unwrap();
    let alice_row = leaves
        .iter()
        .find(|l| l["node"] == alice_id.as_str())
        .expect("alice listed");
    assert!(
        leaves.iter().any(|l| l["node"] == bob_id.as_str()),
        "{leaves:?}"
    );
    assert_eq!(alice_row["entries"], 2);
    assert!(alice_row["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let since = alice_row["since"].as_u64().unwrap();
    assert!(
        since <= now && now - since < 120,
        "since {since}, now {now}"
    );
    let sn2 = json(&run(&sn2_cfg, &["status", "--json"]));
    assert_eq!(sn["peer_list"][0]["node"], sn2["node_id"]);
    assert!(sn["peer_list"][0]["since"].as_u64().is_some());

    // The table: counts and short lists, local time (TZ honoured) with an age.
    let table = status_in(&sn_cfg, "XST-5");
    let role_since = sn["since"].as_u64().unwrap() as i64;
    assert!(
        table.contains(&format!("since {} (", civil(role_since, 5 * 3600))),
        "{table}"
    );
    let utc = status_in(&sn_cfg, "UTC0");
    assert!(
        utc.contains(&format!("since {} (", civil(role_since, 0))),
        "{utc}"
    );
    assert!(!table.contains("since unix"), "{table}");
    assert!(
        table.contains("(just now)") || table.contains(" ago)"),
        "{table}"
    );
    assert!(table.contains("leaves:        2\n"), "{table}");
    assert!(table.contains("peers:         1\n"), "{table}");
    let alice_short = &alice_id[..8];
    assert!(
        table
            .lines()
            .any(|l| l.contains(alice_short) && l.contains("2 files")),
        "{table}"
    );

    // A leaf: its reason says why it is a leaf, not "joining"; succession is never an empty
    // line; each share folder with its files and bytes, the missing one said so.
    let alice_table = status_in(&alice_cfg, "UTC0");
    let first = alice_table.lines().next().unwrap();
    assert!(
        first.contains("configured as leaf") && !first.contains("joining"),
        "{alice_table}"
    );
    let succession = alice_table
        .lines()
        .find(|l| l.starts_with("succession:"))
        .unwrap();
    assert!(succession.trim_end() != "succession:", "{alice_table}");
    let alice = json(&run(&alice_cfg, &["status", "--json"]));
    let folders = alice["folders"].as_array().unwrap();
    assert_eq!(folders[0]["files"], 2);
    assert_eq!(folders[0]["bytes"], 1_800_000);
    assert!(folders[1]["problem"].as_str().unwrap().contains("missing"));
    assert!(
        alice_table.contains("alice/Music: 2 files, 1.7 MiB"),
        "{alice_table}"
    );
    assert!(alice_table.contains("alice/Gone: missing"), "{alice_table}");
    assert!(alice_table.contains("uploads:       none"), "{alice_table}");

    // Bob downloads the big file from alice (capped at 256 KiB/s): alice shows the upload,
    // to bob, with bytes and a rate.
    let get = Command::new(env!("CARGO_BIN_EXE_kazoo"))
        .arg("--config")
        .arg(&bob_cfg)
        .args(["get", "--json", &big])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let uploading = json(&until(&alice_cfg, &["status", "--json"], |o| {
        json(o)["uploads"].as_array().is_some_and(|u| {
            u.iter()
                .any(|u| u["peer"] == bob_id.as_str() && u["rate"].as_u64() > Some(0))
        })
    }));
    let upload = &uploading["uploads"][0];
    assert_eq!(upload["hash"], big.as_str());
    assert_eq!(upload["name"], "Around the World.ogg");
    assert_eq!(upload["size"], 1_500_000);
    assert!(upload["bytes"].as_u64().unwrap() > 0);
    // Near the cap (a burst of a tenth of a second allowed).
    assert!(
        upload["rate"].as_u64().unwrap() < 2 * 256 * 1024,
        "{upload}"
    );
    let shown = status_in(&alice_cfg, "UTC0");
    assert!(
        shown.contains(&format!("to {}  Around the World.ogg", &bob_id[..8])),
        "{shown}"
    );
    let done = get.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(json(&done)["bytes"], 1_500_000);

    // The last error, with when: a download of content nobody has (the node's job keeps
    // waiting for a source; its first failed look is the error).
    let missing = "ab".repeat(32);
    let _waiting = Proc(
        kazoo(&bob_cfg, &["get", &missing])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kazoo get starts"),
    );
    until(&bob_cfg, &["status", "--json"], |o| {
        json(o)["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("download abababab"))
    });
    let bob_table = status_in(&bob_cfg, "UTC0");
    let last = bob_table
        .lines()
        .find(|l| l.starts_with("last error:"))
        .expect(&bob_table);
    let bob = json(&run(&bob_cfg, &["status", "--json"]));
    let at = bob["last_error"]["at"].as_u64().unwrap();
    assert!(at >= now);
    // Today's errors show the local time of day (UTC here) and the age.
    let clock = &civil(at as i64, 0)[11..];
    assert!(last.contains("download abababab"), "{last}");
    assert!(last.contains(&format!("{clock}, ")), "{last}");
}

#[test]
fn browse_lists_a_nodes_files_by_address_or_id_and_honours_the_opt_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, _, _, boot) = supernode(dir);
    // A name with a terminal escape sequence in it must reach the terminal escaped.
    let evil = "evil \u{1b}[31mred.txt";
    let mut expected = vec![
        (
            "Albums/Discovery/Digital Love.ogg".to_owned(),
            200_000u64,
            3,
        ),
        ("Albums/Homework/Da Funk.ogg".to_owned(), 120_000, 5),
        ("notes.txt".to_owned(), 0, 9),
        (evil.to_owned(), 1234, 11),
    ];
    let mut files = Vec::new();
    for (rel, len, seed) in &expected {
        let id = file(&dir.join("alice/share"), rel, *len as usize, *seed);
        files.push((rel.clone(), *len, id));
    }
    files.sort();
    expected.sort();
    let alice_cfg = node(
        dir,
        "alice",
        "leaf",
        &format!("[share]\ndirs = [\"alice/share\"]\nrescan_secs = 1\n{boot}"),
    );
    let _alice = spawn(&alice_cfg);
    let carol_cfg = node(
        dir,
        "carol",
        "leaf",
        &format!("[share]\ndirs = [\"alice/share\"]\nbrowsable = false\n{boot}"),
    );
    let _carol = spawn(&carol_cfg);
    let bob_cfg = node(dir, "bob", "leaf", &boot);
    let _bob = spawn(&bob_cfg);
    let ready = |o: &Output| o.status.success() && !json(o)["supernode"].is_null();
    let alice = json(&until(&alice_cfg, &["status", "--json"], |o| {
        ready(o) && json(o)["shared_files"] == 4
    }));
    let carol = json(&until(&carol_cfg, &["status", "--json"], |o| {
        ready(o) && json(o)["shared_files"] == 4
    }));
    until(&bob_cfg, &["status", "--json"], ready);
    let alice_id = alice["node_id"].as_str().unwrap();
    let alice_addr = alice["listen"].as_str().unwrap();

    // By id and address, through bob's running node: every file, bytes and hashes exact.
    let by_both = json(&run(
        &bob_cfg,
        &["browse", "--json", &format!("{alice_id}@{alice_addr}")],
    ));
    assert_eq!(by_both["node"], alice_id);
    assert_eq!(by_both["total"], 4);
    let listed: Vec<(String, u64, String)> = by_both["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
                f["hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, files);
    // By id alone: looked up through the supernode.
    let by_id = until(&bob_cfg, &["browse", "--json", alice_id], |o| {
        o.status.success()
    });
    assert_eq!(json(&by_id)["files"], by_both["files"]);
    // By address alone, with no node running for this config (a short-lived one).
    let lone_cfg = node(dir, "lone", "leaf", &boot);
    let by_addr = run(&lone_cfg, &["browse", "--json", alice_addr]);
    assert!(
        by_addr.status.success(),
        "{}",
        String::from_utf8_lossy(&by_addr.stderr)
    );
    assert_eq!(json(&by_addr)["files"], by_both["files"]);

    // The table: names escaped, sizes, hashes; --max cuts with a notice.
    let table = run(&bob_cfg, &["browse", alice_addr]);
    let shown = text(&table);
    assert!(table.status.success());
    assert!(
        !shown.contains('\u{1b}'),
        "raw escape reached the terminal: {shown:?}"
    );
    assert!(shown.contains("evil \\u{1b}[31mred.txt"), "{shown}");
    assert!(shown.contains("Albums/Homework/Da Funk.ogg"), "{shown}");
    assert!(shown.contains(&files[0].2), "{shown}");
    let cut = text(&run(&bob_cfg, &["browse", "--max", "1", alice_addr]));
    assert!(cut.contains("showing the first 1 of 4"), "{cut}");

    // Carol opted out: a clear error, no files.
    let refused = run(&bob_cfg, &["browse", carol["listen"].as_str().unwrap()]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("does not let others list its files")
            && why.contains("share.browsable = false"),
        "{why}"
    );
    // A node nobody knows: said so, with what to give instead.
    let unknown = run(&bob_cfg, &["browse", &"cd".repeat(32)]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NODEID@IP:PORT"));
}
