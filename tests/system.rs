//! The binary fits the system: a default config path, plain logs off a terminal and in a
//! log file, a closed pipe ending a command quietly, host names in `listen` and `bootstrap`,
//! a control socket a group can use, SIGHUP reloading shares and caps, a download rate cap.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin::{json, json_lines, kazoo, run, until, write_config, Proc};

fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kazoo"));
    cmd.env_remove("KAZOO_CONFIG").env("RUST_LOG", "warn");
    cmd
}

#[test]
fn the_config_comes_from_kazoo_config_then_the_xdg_config_home() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("where the node lives");
    let body = format!("[node]\ndata_dir = {:?}\n", data.to_str().unwrap());
    let from_env = write_config(tmp.path(), "from-env", &body);
    let out = bare()
        .env("KAZOO_CONFIG", &from_env)
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("where the node lives"), "{stderr}");

    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("kazoo")).unwrap();
    std::fs::write(xdg.join("kazoo/config.toml"), body).unwrap();
    let out = bare()
        .env("XDG_CONFIG_HOME", &xdg)
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("where the node lives"), "{stderr}");
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    // Far more output than a pipe holds, so the writer meets the closed pipe.
    let mut child = bare()
        .arg("hash")
        .args(std::iter::repeat_n(&file, 5000))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn logs_are_plain_off_a_terminal_and_in_a_log_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n",
    );
    let mut child = kazoo(&cfg, &["run"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let _proc = Proc(child);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("node starting"), "{line}");
    assert!(!line.contains('\x1b'), "ANSI codes in {line:?}");

    let log = tmp.path().join("kazoo.log");
    let cfg2 = write_config(
        tmp.path(),
        "sn2",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn2\"\n",
    );
    let child = kazoo(&cfg2, &["run", "--log-file", log.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proc2 = Proc(child);
    until(&cfg2, &["status"], |o| o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("node starting"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// `kazoo run` logging at info into `log`.
fn spawn_logged(config: &Path, log: &Path) -> Proc {
    let child = kazoo(config, &["run", "--log-file", log.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// The running node's status (waiting until it answers).
fn status(config: &Path) -> serde_json::Value {
    json(&until(config, &["status", "--json"], |o| {
        o.status.success()
    }))
}

/// The address the node of `config` listens on.
fn listen_of(config: &Path) -> SocketAddr {
    status(config)["listen"].as_str().unwrap().parse().unwrap()
}

/// Whether a search from `config` lists a file named `name`.
fn finds(config: &Path, words: &str, name: &str) -> bool {
    let out = run(config, &["search", "--json", words]);
    out.status.success() && json_lines(&out).iter().any(|h| h["name"] == name)
}

fn log_has(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(text))
}

/// Waits for `ok`, failing after the process-level deadline.
fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + common::bin::DEADLINE;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn host_names_in_listen_and_bootstrap_resolve_and_a_bad_one_is_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let sn = write_config(
        tmp.path(),
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"localhost:0\"\ndata_dir = \"sn\"\n",
    );
    let _sn = spawn_logged(&sn, &tmp.path().join("sn.log"));
    let sn_addr = listen_of(&sn);
    assert!(sn_addr.ip().is_loopback(), "localhost:0 → {sn_addr}");

    std::fs::create_dir_all(tmp.path().join("share")).unwrap();
    std::fs::write(tmp.path().join("share/hostname song.ogg"), b"by name").unwrap();
    let leaf = write_config(
        tmp.path(),
        "leaf",
        &format!(
            "[node]\nrole = \"leaf\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"leaf\"\n\
             [share]\ndirs = [\"share\"]\nrescan_secs = 1\n\
             [network]\nbootstrap = [\"no-such-host.invalid:4710\", \"localhost:{}\"]\n",
            sn_addr.port()
        ),
    );
    let log = tmp.path().join("leaf.log");
    let _leaf = spawn_logged(&leaf, &log);
    // It joins through the name that resolves; the one that does not is a problem.
    let joined = until(&leaf, &["status", "--json"], |o| {
        o.status.success() && !json(o)["supernode"].is_null()
    });
    let problems = json(&joined)["problems"].to_string();
    assert!(
        problems.contains("bootstrap no-such-host.invalid:4710 does not resolve"),
        "{problems}"
    );
    wait_for("the warning in the log", || {
        log_has(&log, "host name does not resolve")
    });
    wait_for("the leaf's file in the supernode's index", || {
        finds(&sn, "hostname", "hostname song.ogg")
    });
}

#[test]
fn the_control_socket_is_where_configured_mode_0660_and_open_to_its_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    // Another user must be able to reach the socket's folder and read the config.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    // As root any group can be given; otherwise the user's own.
    let group = if root {
        65534
    } else {
        std::fs::metadata(tmp.path()).unwrap().gid()
    };
    let socket = tmp.path().join("run/kazoo.sock");
    let cfg = write_config(
        tmp.path(),
        "sn",
        &format!(
            "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n\
             control_socket = \"run/kazoo.sock\"\ncontrol_group = \"{group}\"\n"
        ),
    );
    let _sn = spawn_logged(&cfg, &tmp.path().join("sn.log"));
    // The CLI finds the socket from the same config.
    assert_eq!(status(&cfg)["role"], "supernode");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), group);
    assert!(!tmp.path().join("sn/control.sock").exists());
    if !root {
        println!("not root: another user's access is not tried");
        return;
    }
    std::fs::set_permissions(
        tmp.path().join("run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // A user in the socket's group (nobody, 65534) reaches the node run by root...
    let out = kazoo(&cfg, &["status", "--json"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(json(&out)["role"], "supernode");
    // ...and a user outside it is told why, not that no node runs.
    let out = kazoo(&cfg, &["status"])
        .uid(65534)
        .gid(65533)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not open to this user"), "{stderr}");
}

#[test]
fn sighup_reloads_share_folders_and_a_bad_config_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, file) in [("a", "alpha tune.ogg"), ("b", "bravo tune.ogg")] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        let path = tmp.path().join(dir).join(file);
        std::fs::write(&path, file.as_bytes()).unwrap();
        // Settled (files written moments ago wait for the next rescan).
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(old).unwrap();
    }
    // Rescans an hour apart: only the reload can pick the new folder up in time.
    let body = |dirs: &str| {
        format!(
            "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n\
             [share]\ndirs = [{dirs}]\nrescan_secs = 3600\nupload_rate_kib = 100\n"
        )
    };
    let cfg = write_config(tmp.path(), "sn", &body("\"a\""));
    let log = tmp.path().join("sn.log");
    let node = spawn_logged(&cfg, &log);
    let hup = || {
        let pid = node.0.id().to_string();
        let ok = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(ok.success());
    };
    wait_for("alpha shared", || finds(&cfg, "alpha", "alpha tune.ogg"));
    assert!(!finds(&cfg, "bravo", "bravo tune.ogg"));

    write_config(tmp.path(), "sn", &body("\"b\""));
    hup();
    wait_for("bravo shared after SIGHUP", || {
        finds(&cfg, "bravo", "bravo tune.ogg")
    });
    wait_for("alpha gone after SIGHUP", || {
        !finds(&cfg, "alpha", "alpha tune.ogg")
    });
    assert!(log_has(&log, "config reloaded"));

    write_config(tmp.path(), "sn", "[share]\ndirs = 5\n");
    hup();
    wait_for("the bad config logged", || {
        log_has(&log, "config not reloaded; keeping the running one")
    });
    // Still running with the folders it had (the CLI needs a valid file to find it).
    write_config(tmp.path(), "sn", &body("\"b\""));
    assert_eq!(status(&cfg)["role"], "supernode");
    assert!(finds(&cfg, "bravo", "bravo tune.ogg"));
    assert!(!finds(&cfg, "alpha", "alpha tune.ogg"));
}

#[test]
fn a_download_rate_cap_holds_a_get_to_it() {
    const SIZE: usize = 2 << 20;
    const CAP_KIB: u64 = 512;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("share")).unwrap();
    let data = common::bytes(SIZE, 7);
    std::fs::write(tmp.path().join("share/capped.bin"), &data).unwrap();
    let sn = write_config(
        tmp.path(),
        "sn",
        "[node]\nrole = \"supernode\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"sn\"\n\
         [share]\ndirs = [\"share\"]\n",
    );
    let _sn = spawn_logged(&sn, &tmp.path().join("sn.log"));
    let sn_addr = listen_of(&sn);
    let hash = blake3::hash(&data).to_hex().to_string();
    wait_for("the file indexed", || finds(&sn, "capped", "capped.bin"));
    let getter = write_config(
        tmp.path(),
        "dl",
        &format!(
            "[node]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"dl\"\n\
             [share]\ndownload_rate_kib = {CAP_KIB}\n\
             [network]\nbootstrap = [\"{sn_addr}\"]\n"
        ),
    );
    let out_path = tmp.path().join("capped copy.bin");
    let out = run(
        &getter,
        &["get", "--json", &hash, "-o", out_path.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), data);
    // The bucket starts with one burst (64 KiB); the rest comes at the cap at best.
    let floor = (SIZE as f64 - 65536.0) / (CAP_KIB * 1024) as f64;
    let seconds = json(&out)["seconds"].as_f64().unwrap();
    assert!(seconds >= floor * 0.95, "{seconds} s < {floor} s");
}
