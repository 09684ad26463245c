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

/// The listen address of the node run with `config`, once its `kazoo status` answers.
pub fn listen(config: &Path) -> String {
    let out = until(config, &["status", "--json"], |o| o.status.success());
    json(&out)["listen"]
        .as_str()
        .expect("a listen address")
        .to_owned()
}

/// Writes `dir/NAME.toml` for a node on an ephemeral loopback port with its data in
/// `dir/NAME/data`: `extra` sections before `[network]`, then the `network` keys.
pub fn node_config(dir: &Path, name: &str, role: &str, network: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        name,
        &format!(
            "[node]\nrole = \"{role}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{name}/data\"\n\
             {extra}[network]\n{network}"
        ),
    )
}

/// Writes `dir/NAME.toml`.
pub fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}
