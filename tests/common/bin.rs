//! The real `kazoo` binary as separate processes: start, run commands, poll their output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a process-level condition may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running `kazoo` process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kazoo --config CONFIG ARGS…` with quiet logs.
pub fn kazoo(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kazoo"));
    cmd.arg("--config").arg(config).args(args);
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs a command to its end.
pub fn run(config: &Path, args: &[&str]) -> Output {
    kazoo(config, args).output().expect("kazoo runs")
}

/// `kazoo run` in the background, its output discarded.
pub fn spawn(config: &Path) -> Proc {
    let child = kazoo(config, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kazoo run starts");
    Proc(child)
}

/// Runs `args` until `ok` accepts the output, failing after [`DEADLINE`].
pub fn until(config: &Path, args: &[&str], ok: impl Fn(&Output) -> bool) -> Output {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = run(config, args);
        if ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: kazoo {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The output as one JSON value.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The output as JSON lines.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Writes `dir/NAME.toml`.
pub fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}
