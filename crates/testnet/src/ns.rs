//! One Linux network namespace: made with `ip netns add`, entered with `setns(2)` by a thread
//! or by a child process before it execs, emptied and removed by [`Namespace::destroy`].

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;

/// Every namespace this crate makes is named `kzt<pid>-...`, so a later run can tell the
/// leftovers of a killed test process (its pid gone) from a live one's.
pub(crate) const PREFIX: &str = "kzt";

/// How long [`Namespace::destroy`] waits for killed processes to leave.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A named network namespace, held open by a file descriptor.
#[derive(Debug)]
pub(crate) struct Namespace {
    name: String,
    file: Arc<File>,
}

impl Namespace {
    /// Makes the namespace `name` with its loopback up and IPv6 duplicate address detection
    /// off (for devices made later too), so that every IPv6 address works at once.
    pub(crate) fn create(name: &str) -> Result<Namespace, Error> {
        run_host("ip", &["netns", "add", name], None)?;
        let file = match File::open(Path::new("/run/netns").join(name)) {
            Ok(file) => file,
            Err(source) => {
                let _ = run_host("ip", &["netns", "del", name], None);
                return Err(Error::Io {
                    what: format!("open namespace {name}"),
                    source,
                });
            }
        };
        let ns = Namespace {
            name: name.to_owned(),
            file: Arc::new(file),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        for conf in ["all", "default"] {
            ns.sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0")?;
        }
        Ok(ns)
    }

    /// Its name (as `ip netns list` shows it).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace (only the thread: `setns` with
    /// `CLONE_NEWNET` is per thread).
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        enter(&self.file)
    }

    /// A command that runs `program` inside this namespace: the child enters it between
    /// `fork` and `exec`.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let file = Arc::clone(&self.file);
        // SAFETY: the closure only makes the `setns` system call (async-signal-safe) on a
        // descriptor that the parent keeps open for the lifetime of the `Command`.
        unsafe {
            cmd.pre_exec(move || enter(&file));
        }
        cmd
    }

    /// Runs `f` on a new thread inside this namespace and returns what it returns; sockets it
    /// opens stay in this namespace whichever thread uses them later.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                self.enter()?;
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// `ip -n <ns> args...`.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<String, Error> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_host("ip", &all, None)
    }

    /// A veth pair: `dev` here, `peer` in `other` (both down).
    pub(crate) fn veth(&self, dev: &str, peer: &str, other: &Namespace) -> Result<(), Error> {
        self.ip(&[
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            &other.name,
        ])
        .map(drop)
    }

    /// Runs `program args...` inside this namespace, with `stdin` fed to it if given.
    pub(crate) fn exec(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, Error> {
        let mut cmd = self.command(program);
        cmd.args(args);
        output(
            cmd,
            &format!("{program} {} (in {})", args.join(" "), self.name),
            stdin,
        )
    }

    /// Writes a sysctl of this namespace (`key` as a path under `/proc/sys`, e.g.
    /// `net/ipv4/ip_forward`); `/proc/sys/net` shows the namespace of the thread that opens it.
    pub(crate) fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = Path::new("/proc/sys").join(key);
        self.run(|| std::fs::write(&path, value))
            .and_then(|r| r)
            .map_err(|source| Error::Io {
                what: format!("sysctl {key}={value} in {}", self.name),
                source,
            })
    }

    /// Kills every process inside, waits (bounded) for them to go, and removes the namespace.
    pub(crate) fn destroy(&self) {
        kill_all(&self.name);
        let _ = run_host("ip", &["netns", "del", &self.name], None);
    }
}

fn enter(file: &File) -> std::io::Result<()> {
    // SAFETY: a plain system call on a descriptor we own.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGKILLs every process in namespace `name` until none is left (at most [`KILL_WAIT`]).
fn kill_all(name: &str) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids: Vec<i32> = run_host("ip", &["netns", "pids", name], None)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            // SAFETY: a plain system call; the pid was listed inside our own namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the namespaces left by test processes that died without cleaning up (killed by a
/// timeout, say): those named `kzt<pid>-` whose pid is gone.
pub(crate) fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            kill_all(&name);
            let _ = run_host("ip", &["netns", "del", &name], None);
        }
    }
}

/// Runs `program args...` in the caller's namespace (iproute2 with `-n` picks its own).
pub(crate) fn run_host(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    output(cmd, &format!("{program} {}", args.join(" ")), stdin)
}

fn output(mut cmd: Command, what: &str, stdin: Option<&str>) -> Result<String, Error> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let io = |source| Error::Io {
        what: what.to_owned(),
        source,
    };
    let mut child = cmd.spawn().map_err(io)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    if !out.status.success() {
        return Err(Error::Command {
            command: what.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
