//! The real `kazoo` binary on hosts of a [`kazoo_testnet::Net`]: a node per host, configured
//! by a TOML file in the host's directory, and one-shot commands run inside the host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kazoo_testnet::{Host, Proc};

/// How long a condition on a node may take (joins over lossy, delayed links included).
pub const DEADLINE: Duration = Duration::from_secs(40);

/// The port every supernode listens on (each host is its own namespace, so it never clashes).
pub const PORT: u16 = 4710;

/// A `kazoo run` process on a host, killed when dropped (the network kills it too).
pub struct KazooNode {
    pub host: Host,
    pub config: PathBuf,
    proc: Proc,
}

/// How a node is set up.
pub struct NodeSpec<'a> {
    /// `"leaf"`, `"supernode"` or `"auto"`.
    pub role: &'a str,
    /// UDP port to listen on (0: ephemeral).
    pub port: u16,
    /// Supernodes to join (`ADDR` entries).
    pub bootstrap: Vec<SocketAddr>,
    /// Files to share: (name, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// More TOML appended to the config (whole sections, e.g. `"[relay]\nrate_kib = 1024\n"`).
    pub extra: &'a str,
}

impl NodeSpec<'_> {
    /// A leaf on an ephemeral port joining `bootstrap`, sharing `files`, nothing extra (set
    /// other fields with `NodeSpec { role: "auto", ..NodeSpec::leaf(...) }`).
    pub fn leaf(bootstrap: Vec<SocketAddr>, files: Vec<(String, Vec<u8>)>) -> Self {
        NodeSpec {
            role: "leaf",
            port: 0,
            bootstrap,
            files,
            extra: "",
        }
    }

    /// A supernode on [`PORT`] joining `bootstrap` (none: the first of its network), sharing
    /// nothing, nothing extra.
    pub fn supernode(bootstrap: Vec<SocketAddr>) -> Self {
        NodeSpec {
            role: "supernode",
            port: PORT,
            bootstrap,
            files: Vec::new(),
            extra: "",
        }
    }
}

impl KazooNode {
    /// Writes `host.dir()/kazoo.toml` (data in `data/`, shares `shared/`, downloads
    /// `downloads/`) and starts `kazoo run` inside `host`, its log in `kazoo.log`; it listens
    /// on IPv4 only (`0.0.0.0`).
    pub fn start(host: &Host, spec: NodeSpec<'_>) -> KazooNode {
        KazooNode::start_on(host, Ipv4Addr::UNSPECIFIED.into(), spec)
    }

    /// [`KazooNode::start`] listening on `ip` instead (`::` for dual-stack).
    pub fn start_on(host: &Host, ip: IpAddr, spec: NodeSpec<'_>) -> KazooNode {
        let dir = host.dir();
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared).expect("share dir");
        for (name, content) in &spec.files {
            std::fs::write(shared.join(name), content).expect("shared file");
        }
        let bootstrap: Vec<String> = spec
            .bootstrap
            .iter()
            .map(|addr| format!("\"{addr}\""))
            .collect();
        let config = dir.join("kazoo.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nrole = \"{}\"\nlisten = \"{}\"\ndata_dir = \"data\"\n\
                 [share]\ndirs = [\"shared\"]\ndownload_dir = \"downloads\"\nrescan_secs = 1\n\
                 [network]\nbootstrap = [{}]\n{}",
                spec.role,
                SocketAddr::new(ip, spec.port),
                bootstrap.join(", "),
                spec.extra
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.join("kazoo.log")).expect("log file");
        let mut cmd = kazoo(host, &config);
        cmd.arg("run").stdout(Stdio::null()).stderr(log);
        let proc = Proc::spawn(&mut cmd).expect("kazoo run starts");
        KazooNode {
            host: host.clone(),
            config,
            proc,
        }
    }

    /// `kazoo --config <its config> args...`, run inside its host.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = kazoo(&self.host, &self.config);
        cmd.args(args).output().expect("kazoo runs")
    }

    /// Runs `args` until `ok` accepts the output, failing (with the node's log) after
    /// [`DEADLINE`].
    pub fn until(&self, args: &[&str], ok: impl Fn(&Output) -> bool) -> Output {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.run(args);
            if ok(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out on {}: kazoo {args:?}\nstdout: {}\nstderr: {}\nnode log (tail):\n{}",
                self.host.name(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kazoo status --json`, once it answers.
    pub fn status(&self) -> serde_json::Value {
        json(&self.until(&["status", "--json"], |o| o.status.success()))
    }

    /// Waits until `ok` accepts its status.
    pub fn status_until(&self, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        json(&self.until(&["status", "--json"], |o| {
            o.status.success() && ok(&json(o))
        }))
    }

    /// Waits until it is a leaf of `supernode` (a node id) with `files` shared files.
    pub fn wait_joined(&self, supernode: &str, files: usize) -> serde_json::Value {
        self.status_until(|s| s["supernode"] == supernode && s["shared_files"] == files)
    }

    /// Searches until a hit with content id `hash` shows up; returns that hit.
    pub fn search_until(&self, words: &[&str], hash: &str) -> serde_json::Value {
        let mut args = vec!["search", "--json"];
        args.extend_from_slice(words);
        let out = self.until(&args, |o| {
            o.status.success() && lines(o).iter().any(|hit| hit["hash"] == hash)
        });
        lines(&out)
            .into_iter()
            .find(|hit| hit["hash"] == hash)
            .expect("the hit")
    }

    /// `kazoo get --json HASH` (one attempt; the command retries sources itself).
    pub fn get(&self, hash: &str) -> Output {
        self.run(&["get", "--json", hash])
    }

    /// Its log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.host.dir().join("kazoo.log")).unwrap_or_default()
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until a line of its log satisfies `ok`, failing (with the log's tail) after
    /// [`DEADLINE`]; `what` names the line in the failure.
    pub fn log_until(&self, what: &str, ok: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !self.log().lines().any(&ok) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} in the log of {}:\n{}",
                self.host.name(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }
}

fn kazoo(host: &Host, config: &std::path::Path) -> Command {
    let mut cmd = host.command(env!("CARGO_BIN_EXE_kazoo"));
    cmd.arg("--config").arg(config);
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or("info".into()),
    );
    cmd
}

/// The JSON object on stdout.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// One JSON object per line of stdout.
pub fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}
