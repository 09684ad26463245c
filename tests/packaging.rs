//! What the Debian package ships, checked from the real binary and the repository: shell
//! completions and man pages generated from the CLI name every command; the LICENSE files
//! match Cargo.toml's `license`; the package metadata names files that exist and a unit that
//! starts the packaged binary with a config that keeps every path where the unit lets the
//! node write. (`.ci/run` builds, installs and checks the package itself, and starts the
//! installed node the way the unit does.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kazoo_common::config::Config;

fn kazoo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kazoo"))
        .args(args)
        .env("KAZOO_CONFIG", "/nonexistent/kazoo.toml")
        .output()
        .expect("kazoo runs");
    assert!(
        out.status.success(),
        "kazoo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The commands `kazoo --help` lists (without `help`).
fn commands() -> Vec<String> {
    let help = kazoo(&["--help"]);
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    for c in [
        "run",
        "search",
        "get",
        "hash",
        "status",
        "demo",
        "completions",
        "man",
    ] {
        assert!(listed.iter().any(|l| l == c), "{c} missing from --help");
    }
    listed
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn completions_name_every_command_and_option() {
    let commands = commands();
    for shell in ["bash", "zsh", "fish"] {
        let script = kazoo(&["completions", shell]);
        for c in &commands {
            // How each shell's script offers a command after `kazoo `.
            let offered = match shell {
                "bash" => format!("kazoo,{c})"),
                "zsh" => format!("'{c}:"),
                _ => format!("-a \"{c}\""),
            };
            assert!(script.contains(&offered), "{shell}: no {offered}");
        }
        for option in ["--config", "--json", "--max", "--output"] {
            let bare = option.trim_start_matches('-');
            assert!(script.contains(bare), "{shell}: no {option}");
        }
    }
    assert!(kazoo(&["completions", "bash"]).contains("complete -F _kazoo"));
    assert!(kazoo(&["completions", "zsh"]).starts_with("#compdef kazoo"));
    assert!(kazoo(&["completions", "fish"]).contains("complete -c kazoo"));
}

#[test]
fn man_pages_cover_every_command() {
    let commands = commands();
    let page = kazoo(&["man"]);
    assert!(page.contains(".TH kazoo 1"), "{page}");
    for section in [
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
        ".SH FILES",
        ".SH ENVIRONMENT",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    for c in &commands {
        assert!(
            // roff escapes every hyphen, the command's own too.
            page.contains(&format!("kazoo\\-{}(1)", c.replace('-', "\\-"))),
            "kazoo(1) names no {c}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    kazoo(&["man", "--dir", dir.path().to_str().unwrap()]);
    let main = std::fs::read_to_string(dir.path().join("kazoo.1")).unwrap();
    assert_eq!(main, page, "--dir writes the same kazoo(1)");
    for c in &commands {
        let sub = std::fs::read_to_string(dir.path().join(format!("kazoo-{c}.1")))
            .unwrap_or_else(|e| panic!("kazoo-{c}.1: {e}"));
        assert!(sub.contains(&format!(".TH kazoo-{c} 1")), "{sub}");
    }
    let get = std::fs::read_to_string(dir.path().join("kazoo-get.1")).unwrap();
    assert!(get.contains("\\-\\-output"), "{get}");
}

#[test]
fn license_files_match_cargo_toml() {
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains("\nlicense = \"MIT OR Apache-2.0\"\n"),
        "the workspace license changed: update LICENSE-* and this test"
    );
    let mit = read("LICENSE-MIT");
    assert!(mit.starts_with("MIT License\n"));
    assert!(mit.contains("Copyright (c) 2026 the kazoo developers"));
    assert!(mit.contains("THE SOFTWARE IS PROVIDED \"AS IS\""));
    let apache = read("LICENSE-APACHE");
    assert!(apache.contains("Apache License\n                           Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    for krate in ["common", "supernode", "leaf", "testnet"] {
        let toml = read(&format!("crates/{krate}/Cargo.toml"));
        assert!(toml.contains("license.workspace = true"), "crates/{krate}");
    }
    assert!(read("fuzz/Cargo.toml").contains("license = \"MIT OR Apache-2.0\""));
}

#[test]
fn the_debian_package_metadata_names_real_files() {
    let manifest = read("Cargo.toml");
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("a [package.metadata.deb] table");
    let build = read(".ci/deb");
    let mut generated = 0;
    for line in deb.lines().filter(|l| l.trim_start().starts_with("[\"")) {
        let source = line.split('"').nth(1).unwrap();
        match source.strip_prefix("target/release/") {
            Some("kazoo") => {}
            // Written by .ci/deb from the binary.
            Some(made) => {
                let name = made.trim_start_matches("packaging/");
                let name = name.split('/').next().unwrap();
                assert!(build.contains(name), ".ci/deb does not write {made}");
                generated += 1;
            }
            None => assert!(root().join(source).is_file(), "{source} missing"),
        }
    }
    assert_eq!(generated, 4, "man pages and three completion scripts");
    assert!(deb.contains("[\"target/release/kazoo\", \"usr/bin/\""));
    let unit = read("config/kazoo.service");
    assert!(
        unit.contains("\nExecStart=/usr/bin/kazoo run --config /etc/kazoo/kazoo.toml\n"),
        "the unit must start the packaged binary"
    );
}

/// The value of `key=` in the unit (its last assignment).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_else(|| panic!("kazoo.service has no {key}="))
}

#[test]
fn the_service_config_keeps_its_state_where_the_unit_lets_it_write() {
    let unit = read("config/kazoo.service");
    let exec = unit_value(&unit, "ExecStart");
    let etc = exec
        .strip_prefix("/usr/bin/kazoo run --config ")
        .expect("the unit runs the packaged binary with a config");
    // The package ships that config, from config/kazoo.toml.
    let manifest = read("Cargo.toml");
    let etc_rel = etc.trim_start_matches('/');
    assert!(
        manifest.contains(&format!("[\"config/kazoo.toml\", \"{etc_rel}\", \"644\"]")),
        "the package must install config/kazoo.toml as {etc}"
    );
    // DynamicUser: the node may write only its StateDirectory and RuntimeDirectory.
    assert_eq!(unit_value(&unit, "DynamicUser"), "yes");
    let state = Path::new("/var/lib").join(unit_value(&unit, "StateDirectory"));
    let runtime = Path::new("/run").join(unit_value(&unit, "RuntimeDirectory"));
    let config = Config::load(&root().join("config/kazoo.toml")).unwrap();
    assert_eq!(
        config.node.data_dir, state,
        "data_dir must be the StateDirectory"
    );
    assert!(
        config.download_dir().starts_with(&state),
        "downloads inside the state"
    );
    let socket = config.node.control_socket_path();
    assert_eq!(
        socket.parent(),
        Some(runtime.as_path()),
        "{}",
        socket.display()
    );
    // The socket's group is one the unit gives the node, and the package creates it.
    let group = config
        .node
        .control_group
        .as_deref()
        .expect("a control group");
    assert_eq!(unit_value(&unit, "SupplementaryGroups"), group);
    assert!(manifest.contains("maintainer-scripts = \"config/debian/\""));
    let postinst = read("config/debian/postinst");
    assert!(postinst.starts_with("#!/bin/sh\n"));
    assert!(
        postinst.contains(&format!("getent group {group}"))
            && postinst.contains(&format!("addgroup --system --quiet {group}")),
        "{postinst}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root().join("config/debian/postinst"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o755, 0o755, "postinst must be executable");
    }
    for dir in &config.share.dirs {
        assert!(!dir.starts_with("/home"), "ProtectHome: {}", dir.display());
    }
}

#[test]
fn the_service_config_runs_a_node_without_a_home() {
    // The shipped config with its two system folders moved into a temporary one (and no
    // group, which test machines lack): the node starts, keeps its key and control socket
    // there, and writes nothing into $HOME (a DynamicUser's home is `/`).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let state = dir.join("state");
    let runtime = dir.join("run");
    std::fs::create_dir(&runtime).unwrap();
    let text = read("config/kazoo.toml")
        .replace("/var/lib/kazoo", state.to_str().unwrap())
        .replace("/run/kazoo", runtime.to_str().unwrap())
        .replace("listen = \"[::]:4710\"", "listen = \"127.0.0.1:0\"")
        .lines()
        .filter(|l| !l.starts_with("control_group"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("127.0.0.1:0") && text.contains(state.to_str().unwrap()));
    let config: PathBuf = dir.join("kazoo.toml");
    std::fs::write(&config, text).unwrap();
    let bare = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kazoo"));
        cmd.env_clear()
            .env("HOME", &home)
            .env("RUST_LOG", "warn")
            .arg("--config")
            .arg(&config)
            .args(args);
        cmd
    };
    let node = bare(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _node = common::bin::Proc(node);
    let deadline = std::time::Instant::now() + common::bin::DEADLINE;
    let status = loop {
        let out = bare(&["status", "--json"]).output().unwrap();
        if out.status.success() {
            break common::bin::json(&out);
        }
        assert!(std::time::Instant::now() < deadline, "{out:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status["role"], "supernode", "no bootstrap: the first node");
    assert!(state.join("node.key").is_file());
    assert!(runtime.join("control.sock").exists());
    let written: Vec<_> = std::fs::read_dir(&home).unwrap().collect();
    assert!(written.is_empty(), "wrote into $HOME: {written:?}");
}
