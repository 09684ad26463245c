//! Downloads the node manages, with the real binary as separate processes on loopback: `get`
//! handing several files (by hash and by search result number) to the running node, a second
//! `get` joining the first, pause and resume, cancel and partial files, a job waiting for a
//! source that died and comes back, rates counting only this run's bytes, malformed
//! control requests, and unfinished jobs coming back after the node restarts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::bin::{json, json_lines, kazoo, run, spawn, until, write_config, Proc, DEADLINE};

/// A supernode process; returns it with its `ID@ADDR`.
fn supernode(dir: &Path) -> (Proc, String) {
    let cfg = write_config(
        dir,
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n",
    );
    let sn = spawn(&cfg);
    let status = json(&until(&cfg, &["status", "--json"], |o| o.status.success()));
    let addr = format!(
        "{}@{}",
        status["node_id"].as_str().unwrap(),
        status["listen"].as_str().unwrap()
    );
    (sn, addr)
}

/// Config of a leaf `name` joined to `sn`, sharing `name/shared`, uploading at most
/// `rate_kib` KiB/s (0: unlimited).
fn leaf_config(dir: &Path, name: &str, sn: &str, rate_kib: u64) -> PathBuf {
    std::fs::create_dir_all(dir.join(name).join("shared")).unwrap();
    write_config(
        dir,
        name,
        &format!(
            "[node]\nrole = \"leaf\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}/data\"\n\
             [share]\ndirs = [\"{name}/shared\"]\ndownload_dir = \"{name}/got\"\n\
             rescan_secs = 1\nupload_rate_kib = {rate_kib}\n\
             [network]\nbootstrap = [\"{sn}\"]\n"
        ),
    )
}

/// Starts the leaf of `cfg` and waits until it is joined with `files` files shared.
fn start_leaf(cfg: &Path, files: usize) -> Proc {
    let leaf = spawn(cfg);
    until(cfg, &["status", "--json"], |o| {
        o.status.success() && !json(o)["supernode"].is_null() && json(o)["shared_files"] == files
    });
    leaf
}

/// Deterministic content.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect()
}

fn hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kazoo downloads --json` of the node of `cfg`.
fn downloads(cfg: &Path) -> Vec<serde_json::Value> {
    let out = run(cfg, &["downloads", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out)
}

/// Polls `kazoo downloads --json` until job `id` satisfies `ok`; returns it.
fn job_until(cfg: &Path, id: u64, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let jobs = downloads(cfg);
        if let Some(job) = jobs.iter().find(|j| j["id"] == id) {
            if ok(job) {
                return job.clone();
            }
        }
        assert!(Instant::now() < deadline, "timed out; downloads: {jobs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kazoo get ARGS` in the background, its output captured.
fn get_in_background(cfg: &Path, args: &[&str]) -> Child {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    kazoo(cfg, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (with a deadline) for a background command to end.
fn finish(child: Child) -> Output {
    let deadline = Instant::now() + DEADLINE * 2;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "command did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn get_hands_several_files_and_result_numbers_to_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn) = supernode(dir);
    let src_cfg = leaf_config(dir, "src", &sn, 0);
    let (a, b) = (content(700_000, 1), content(1_300_000, 2));
    std::fs::write(dir.join("src/shared/alpha song.ogg"), &a).unwrap();
    std::fs::write(dir.join("src/shared/beta song.ogg"), &b).unwrap();
    let _src = start_leaf(&src_cfg, 2);
    let me_cfg = leaf_config(dir, "me", &sn, 0);
    let _me = start_leaf(&me_cfg, 0);

    // A number before any search is a clear error.
    let early = run(&me_cfg, &["get", "1"]);
    assert!(!early.status.success());
    assert!(
        stderr(&early).contains("no last search"),
        "{}",
        stderr(&early)
    );

    // Two hashes at once, through the node: one JSON report each, bytes equal.
    let got = run(&me_cfg, &["get", "--json", &hash(&a), &hash(&b)]);
    assert!(got.status.success(), "{}", stderr(&got));
    let reports = json_lines(&got);
    assert_eq!(reports.len(), 2, "{reports:?}");
    for (report, data) in reports.iter().zip([&a, &b]) {
        assert_eq!(report["hash"], hash(data));
        assert_eq!(report["bytes"], data.len());
        assert_eq!(report["resumed_bytes"], 0);
        assert!(report["sources"][0]["node"].is_string());
        // The path's set-up, the first byte and the whole download, in that order.
        let secs = |key: &str| {
            report[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {report}"))
        };
        let (connected, first, total) = (
            secs("connected_secs"),
            secs("first_piece_secs"),
            secs("seconds"),
        );
        assert!(
            0.0 <= connected && connected <= first && first <= total,
            "{report}"
        );
        let path = report["path"].as_str().unwrap();
        assert_eq!(&std::fs::read(path).unwrap(), data);
    }
    // The node ran them: they are its jobs, done.
    let jobs = downloads(&me_cfg);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");

    // By number: the search (through the node) is remembered in its data dir.
    let found = until(&me_cfg, &["search", "song"], |o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("beta song")
    });
    let table = String::from_utf8_lossy(&found.stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.contains("beta song"))
        .expect("a row for beta");
    let number = row.split_whitespace().next().unwrap().to_owned();
    assert!(dir.join("me/data/last-search.json").is_file());
    let out = dir.join("by-number.ogg");
    let got = run(
        &me_cfg,
        &["get", "--json", &number, "-o", out.to_str().unwrap()],
    );
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(json(&got)["hash"], hash(&b));
    assert_eq!(std::fs::read(&out).unwrap(), b);
    // Out of range, and not a number or a hash: clear errors, nothing queued.
    let bad = run(&me_cfg, &["get", "3"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("no result 3") && stderr(&bad).contains("had 2 results"),
        "{}",
        stderr(&bad)
    );
    let bad = run(&me_cfg, &["get", "abc"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("64 hex digits"), "{}", stderr(&bad));
    assert_eq!(downloads(&me_cfg).len(), 3);

    // With no node running the short-lived leaf remembers its search and gets by number too.
    let other_cfg = write_config(
        dir,
        "other",
        &format!(
            "[node]\ndata_dir = \"other\"\n[share]\ndownload_dir = \"other-got\"\n\
             [network]\nbootstrap = [\"{sn}\"]\n"
        ),
    );
    until(&other_cfg, &["search", "--json", "alpha"], |o| {
        o.status.success() && !o.stdout.is_empty()
    });
    let got = run(&other_cfg, &["get", "--json", "1"]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(json(&got)["hash"], hash(&a));
    assert_eq!(
        std::fs::read(dir.join("other-got/alpha song.ogg")).unwrap(),
        a
    );
}

#[test]
fn a_second_get_joins_and_pause_and_resume_count_only_this_runs_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn) = supernode(dir);
    // 3 MiB at 256 KiB/s: 12 s without pauses.
    const RATE: u64 = 256 * 1024;
    let src_cfg = leaf_config(dir, "src", &sn, RATE / 1024);
    let data = content(3 << 20, 3);
    let h = hash(&data);
    std::fs::write(dir.join("src/shared/slow.bin"), &data).unwrap();
    let _src = start_leaf(&src_cfg, 1);
    let me_cfg = leaf_config(dir, "me", &sn, 0);
    let _me = start_leaf(&me_cfg, 0);

    let first = get_in_background(&me_cfg, &["--json", &h]);
    let job = job_until(&me_cfg, 1, |j| j["bytes_done"].as_u64() >= Some(1 << 20));
    assert_eq!(job["hash"], h.as_str());
    assert_eq!(job["name"], "slow.bin");
    assert_eq!(job["resuming"], false);
    // `kazoo status` shows it in its downloads section.
    let status = json(&run(&me_cfg, &["status", "--json"]));
    assert_eq!(status["downloads"][0]["hash"], h.as_str());
    let text = run(&me_cfg, &["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("downloads:     1"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // Pause: the following get ends (not verified: exit status 1), the partial stays.
    let paused = run(&me_cfg, &["pause", "1"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    let first = finish(first);
    assert!(!first.status.success());
    assert!(
        stderr(&first).contains("kazoo resume 1"),
        "{}",
        stderr(&first)
    );
    let job = job_until(&me_cfg, 1, |j| j["state"] == "paused");
    let on_disk = job["bytes_done"].as_u64().unwrap();
    let partials = json_lines(&run(&me_cfg, &["downloads", "--partials", "--json"]));
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert_eq!(partials[0]["hash"], h.as_str());
    assert_eq!(partials[0]["job"], 1);
    assert!(partials[0]["verified_bytes"].as_u64() >= Some(on_disk));

    // Resume (by hash prefix): it says "resuming", and its rate and ETA count only the
    // bytes fetched since: near the source's cap, not the resumed megabytes over a second.
    let resumed = run(&me_cfg, &["resume", &h[..12]]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    // A second get of the same file joins the running download.
    let second = get_in_background(&me_cfg, &["--json", &h]);
    let job = job_until(&me_cfg, 1, |j| {
        j["state"] == "downloading" && j["rate"].as_u64() > Some(0) && j["eta_secs"].is_u64()
    });
    assert_eq!(job["resuming"], true, "{job}");
    let resumed_bytes = job["resumed_bytes"].as_u64().unwrap();
    assert!(resumed_bytes >= on_disk, "{job}");
    let rate = job["rate"].as_u64().unwrap();
    assert!(rate <= 2 * RATE, "rate {rate} counts resumed bytes: {job}");
    let left = (data.len() as u64).saturating_sub(job["bytes_done"].as_u64().unwrap());
    let eta = job["eta_secs"].as_u64().unwrap();
    assert!(
        eta + 1 >= left / (2 * RATE),
        "ETA {eta} s for {left} bytes: {job}"
    );

    let second = finish(second);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("already being downloaded"),
        "{}",
        stderr(&second)
    );
    let report = json(&second);
    assert_eq!(report["bytes"], data.len());
    assert!(report["resumed_bytes"].as_u64() >= Some(on_disk));
    assert_eq!(
        std::fs::read(report["path"].as_str().unwrap()).unwrap(),
        data
    );
    // One job did it all.
    let jobs = downloads(&me_cfg);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "done");
    assert!(json_lines(&run(&me_cfg, &["downloads", "--partials", "--json"])).is_empty());
}

#[test]
fn cancel_removes_the_download_and_clean_partials_the_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn) = supernode(dir);
    let src_cfg = leaf_config(dir, "src", &sn, 128);
    let data = content(2 << 20, 4);
    let h = hash(&data);
    std::fs::write(dir.join("src/shared/big.bin"), &data).unwrap();
    let _src = start_leaf(&src_cfg, 1);
    let me_cfg = leaf_config(dir, "me", &sn, 0);
    let _me = start_leaf(&me_cfg, 0);
    // A partial file no download uses (left by an earlier run of the node).
    let partial_dir = dir.join("me/data/partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    let stray = hash(b"stray");
    std::fs::write(partial_dir.join(format!("{stray}.part")), vec![0u8; 1000]).unwrap();
    std::fs::write(partial_dir.join(format!("{stray}.have")), [0u8]).unwrap();

    let get = get_in_background(&me_cfg, &[&h]);
    job_until(&me_cfg, 1, |j| j["bytes_done"].as_u64() > Some(0));
    let listed = json_lines(&run(&me_cfg, &["downloads", "--partials", "--json"]));
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Cleaning keeps the partial a download uses and removes the stray one.
    let cleaned = run(&me_cfg, &["clean-partials"]);
    assert!(cleaned.status.success(), "{}", stderr(&cleaned));
    let text = String::from_utf8_lossy(&cleaned.stdout).into_owned();
    assert!(
        text.contains("removed 1 partial file") && text.contains("download 1 uses it"),
        "{text}"
    );
    assert!(!partial_dir.join(format!("{stray}.part")).exists());
    assert!(!partial_dir.join(format!("{stray}.have")).exists());
    assert!(partial_dir.join(format!("{h}.part")).exists());

    // Cancel (by hash prefix): the get ends unverified, the job is cancelled, its partial gone.
    let cancelled = run(&me_cfg, &["cancel", &h[..8]]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    let get = finish(get);
    assert!(!get.status.success());
    assert!(stderr(&get).contains("cancelled"), "{}", stderr(&get));
    assert_eq!(downloads(&me_cfg)[0]["state"], "cancelled");
    assert!(!partial_dir.join(format!("{h}.part")).exists());
    assert!(!partial_dir.join(format!("{h}.have")).exists());
    assert!(json_lines(&run(&me_cfg, &["downloads", "--partials", "--json"])).is_empty());
    assert!(!dir.join("me/got/big.bin").exists());
    // Unknown downloads are a clear error.
    let bad = run(&me_cfg, &["pause", "7"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("no download"), "{}", stderr(&bad));
}

#[test]
fn a_job_waits_for_a_source_that_appears_and_for_its_only_source_to_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn) = supernode(dir);
    let src_cfg = leaf_config(dir, "src", &sn, 256);
    let data = content(3 << 20, 5);
    let h = hash(&data);
    let src = start_leaf(&src_cfg, 0);
    let me_cfg = leaf_config(dir, "me", &sn, 0);
    let _me = start_leaf(&me_cfg, 0);

    // Nobody shares it yet: the job waits for sources.
    let get = get_in_background(&me_cfg, &["--json", &h]);
    let job = job_until(&me_cfg, 1, |j| j["state"] == "waiting_for_sources");
    assert!(
        job["note"].as_str().unwrap().contains("no sources"),
        "{job}"
    );
    assert!(
        job["retry_in_secs"].is_u64() && job["waiting_secs"].is_u64(),
        "{job}"
    );
    // A source appears: the job downloads from it.
    std::fs::write(dir.join("src/shared/only.bin"), &data).unwrap();
    job_until(&me_cfg, 1, |j| j["bytes_done"].as_u64() > Some(0));
    // The only source dies: the job waits for sources instead of failing.
    drop(src);
    let job = job_until(&me_cfg, 1, |j| j["state"] == "waiting_for_sources");
    assert!(job["retry_in_secs"].is_u64(), "{job}");
    // It comes back (same key, new port): the job finishes, every byte verified.
    let _src = start_leaf(&src_cfg, 1);
    let get = finish(get);
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(
        stderr(&get).contains("waiting for sources"),
        "{}",
        stderr(&get)
    );
    let report = json(&get);
    assert_eq!(report["hash"], h.as_str());
    assert!(report["resumed_bytes"].as_u64() > Some(0), "{report}");
    assert_eq!(
        std::fs::read(report["path"].as_str().unwrap()).unwrap(),
        data
    );
}

#[test]
fn malformed_control_requests_get_an_error_and_the_node_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn) = supernode(dir);
    let me_cfg = leaf_config(dir, "me", &sn, 0);
    let _me = start_leaf(&me_cfg, 0);
    let socket = dir.join("me/data/control.sock");
    let ask = |line: &str| -> String {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).unwrap();
        answer
    };
    let many: Vec<String> = (0..40)
        .map(|_| format!("{{\"hash\":\"{}\"}}", hash(b"x")))
        .collect();
    for (request, expected) in [
        ("{not json", "bad control request"),
        ("{\"op\":\"get\",\"targets\":[]}", "at least one"),
        (
            &format!("{{\"op\":\"get\",\"targets\":[{}]}}", many.join(",")),
            "at most 32",
        ),
        (
            "{\"op\":\"get\",\"targets\":[{\"result\":0}]}",
            "no last search",
        ),
        (
            &format!(
                "{{\"op\":\"get\",\"targets\":[{{\"hash\":\"{}\"}}],\"out\":\"relative\"}}",
                hash(b"x")
            ),
            "absolute",
        ),
        ("{\"op\":\"pause\",\"jobs\":[]}", "at least one"),
        (
            "{\"op\":\"cancel\",\"jobs\":[\"ffffffffffff\"]}",
            "no download",
        ),
        (
            "{\"op\":\"resume\",\"jobs\":[\"4294967296\"]}",
            "no download",
        ),
        (
            "{\"op\":\"clean_partials\",\"hashes\":[\"zz\"]}",
            "bad control request",
        ),
    ] {
        let answer = ask(request);
        assert!(
            answer.contains("\"error\"") && answer.contains(expected),
            "{request:.80} → {answer}"
        );
    }
    // Still serving.
    let out = run(&me_cfg, &["downloads"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no downloads"));
}

#[test]
fn unfinished_jobs_come_back_after_a_restart_and_resume_their_partial_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_sn, sn) = supernode(dir);
    // A: 3 MiB at 256 KiB/s (12 s); B: nobody shares it yet; C: to be paused.
    let src_cfg = leaf_config(dir, "src", &sn, 256);
    let a = content(3 << 20, 7);
    let b = content(300_000, 8);
    let c = content(200_000, 9);
    let (ha, hb, hc) = (hash(&a), hash(&b), hash(&c));
    std::fs::write(dir.join("src/shared/a.bin"), &a).unwrap();
    let _src = start_leaf(&src_cfg, 1);
    let me_cfg = leaf_config(dir, "me", &sn, 0);
    let me = start_leaf(&me_cfg, 0);

    let get = get_in_background(&me_cfg, &[&ha, &hb, &hc]);
    job_until(&me_cfg, 3, |j| j["hash"] == hc.as_str());
    let paused = run(&me_cfg, &["pause", "3"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    job_until(&me_cfg, 2, |j| j["state"] == "waiting_for_sources");
    let job = job_until(&me_cfg, 1, |j| j["bytes_done"].as_u64() >= Some(1 << 20));
    assert_eq!(job["state"], "downloading");
    // The node dies (SIGKILL: nothing is written on the way out).
    drop(me);
    let _ = finish(get);
    let on_disk = json_lines(&run(&me_cfg, &["downloads", "--partials", "--json"]))
        .iter()
        .find(|p| p["hash"] == ha.as_str())
        .and_then(|p| p["verified_bytes"].as_u64())
        .expect("A's partial file stays");
    assert!(on_disk >= 1 << 20);

    // Started again, the node lists the three jobs, in order, C still paused; A resumes
    // from its partial file.
    let _me = start_leaf(&me_cfg, 0);
    let jobs = downloads(&me_cfg);
    let listed: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j["hash"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(listed.len(), 3, "{jobs:?}");
    assert_eq!(
        listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        [ha.as_str(), hb.as_str(), hc.as_str()]
    );
    assert_eq!(listed[2].1, "paused", "{jobs:?}");
    assert_eq!(jobs[0]["name"], "a.bin");
    let status = json(&run(&me_cfg, &["status", "--json"]));
    assert_eq!(status["downloads"].as_array().map(Vec::len), Some(3));
    let job = job_until(&me_cfg, 1, |j| j["resuming"] == true);
    assert!(job["resumed_bytes"].as_u64() >= Some(on_disk), "{job}");
    job_until(&me_cfg, 2, |j| j["state"] == "waiting_for_sources");

    // B's source appears; C is resumed once its source is there: every job completes.
    std::fs::write(dir.join("src/shared/b.bin"), &b).unwrap();
    std::fs::write(dir.join("src/shared/c.bin"), &c).unwrap();
    let done = job_until(&me_cfg, 1, |j| j["state"] == "done");
    assert!(
        done["report"]["resumed_bytes"].as_u64() >= Some(on_disk),
        "{done}"
    );
    job_until(&me_cfg, 2, |j| j["state"] == "done");
    assert_eq!(job_until(&me_cfg, 3, |_| true)["state"], "paused");
    let resumed = run(&me_cfg, &["resume", "3"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    job_until(&me_cfg, 3, |j| j["state"] == "done");
    for (name, data) in [("a.bin", &a), ("b.bin", &b), ("c.bin", &c)] {
        assert_eq!(&std::fs::read(dir.join("me/got").join(name)).unwrap(), data);
    }
    // Nothing unfinished is left to take up.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("me/data/downloads.json")).unwrap())
            .unwrap();
    assert_eq!(saved["jobs"], serde_json::json!([]));
}
