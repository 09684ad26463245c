//! Documents generated from the CLI definition: shell completion scripts
//! (`kazoo completions SHELL`) and the man pages (`kazoo man [--dir DIR]`), for users and
//! packagers (`.ci/deb` puts them in the Debian package).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::Cli;

/// Sections the man page adds to what clap knows: where things live and what the
/// environment changes.
const EXTRA_SECTIONS: &str = r#".SH CONFIGURATION
Every key is optional; unknown keys are an error naming the key. The keys, their defaults
and ranges are listed in the README (/usr/share/doc/kazoo/README.md); example configs are in
/usr/share/doc/kazoo/examples/. The metrics endpoint is off unless
.B [metrics] listen
is set (e.g. "127.0.0.1:9710"; keep it on loopback).
.SH FILES
.TP
.I $XDG_CONFIG_HOME/kazoo/config.toml
The default config (~/.config/kazoo/config.toml).
.TP
.I <data_dir>/node.key
The node's secret key (mode 0600); its id is the public half.
.TP
.I <data_dir>/control.sock
The control socket that search, get and status talk to.
.TP
.I /usr/lib/systemd/system/kazoo.service
The systemd unit (reads /etc/kazoo/kazoo.toml).
.SH ENVIRONMENT
.TP
.B KAZOO_CONFIG
The config file when --config is not given.
.TP
.B XDG_CONFIG_HOME, XDG_DATA_HOME
Where the default config and the default data_dir are.
.TP
.B RUST_LOG
Log filter, e.g. "debug" or "kazoo_leaf=debug".
.SH EXIT STATUS
0 on success (a get only once every piece is verified); 1 on any error, with the reason on
stderr.
"#;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "kazoo", &mut out);
    out.flush()?;
    Ok(())
}

/// Prints the man page `kazoo(1)` (roff); with `dir`, writes it and a page for each
/// command (`kazoo-run.1`, `kazoo-search.1`, …, which `kazoo(1)` refers to) there instead.
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let Some(dir) = dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(Cli::command().disable_help_subcommand(true)).render(&mut out)?;
        out.write_all(EXTRA_SECTIONS.as_bytes())?;
        out.flush()?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    let main = dir.join("kazoo.1");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&main)
        .and_then(|mut page| page.write_all(EXTRA_SECTIONS.as_bytes()))
        .with_context(|| format!("writing {}", main.display()))?;
    Ok(())
}
