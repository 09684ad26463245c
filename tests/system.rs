//! The binary fits the system: a default config path, plain logs off a terminal and in a
//! log file, and a closed pipe ending a command quietly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::bin::{kazoo, until, write_config, Proc};

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
