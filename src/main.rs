//! `kazoo`: run a node of the kazoo network, or talk to one (search, get, status), or hash
//! files the way the network does. See the README for the commands and config keys.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use kazoo_common::config::{Config, RoleSetting};
use kazoo_common::text::escape_for_terminal;
use kazoo_common::wire::MAX_RESULTS;
use kazoo_common::ContentId;
use kazoo_leaf::control::{self, ControlEvent, ControlRequest, ControlSocket, SearchResult};
use kazoo_leaf::download::{Progress, Report};
use kazoo_leaf::{Node, StartOptions, Status};

/// A two-tier peer-to-peer file-sharing network over QUIC with BLAKE3 content ids.
#[derive(Parser)]
#[command(name = "kazoo", version, about)]
struct Cli {
    /// Config file (TOML). Default: `$KAZOO_CONFIG`, else `$XDG_CONFIG_HOME/kazoo/config.toml`
    /// (`~/.config/kazoo/config.toml`) if it exists, else every key has its default.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Append logs to this file (plain text) instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node with the config until interrupted.
    Run,
    /// Search the network: every word must match the start of a word of a shared file's name
    /// or folders (case, accents and width ignored); `-word` excludes, `in:word` must be a
    /// folder word, `type:audio|video|image|document|archive|software`, `size:10m-2g`
    /// (or `size:>700m`, `size:<4k`); a lone hash of 8 to 64 hex digits finds content ids
    /// starting with it. Name matches come first, then folder matches, then by sources.
    Search {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Most results (at most 200, the most one search returns; a notice says when more
        /// matched).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
        max: u32,
        /// Words, exclusions and filters.
        #[arg(required = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Download a file by content id, verifying every piece.
    Get {
        /// Print one final JSON object instead of a progress bar.
        #[arg(long)]
        json: bool,
        /// Content id (64 hex digits, as `kazoo hash` prints).
        hash: ContentId,
        /// Where to write the file (default: the download folder).
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Print the content id of files, in the same format as `b3sum`.
    Hash {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the running node's role, id, address, supernode or leaves, and shares.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a three-node demo network on loopback: share, search, download, verify.
    Demo,
}

/// Logs to `file` (appended), or to stderr; colours only on a terminal.
fn init_logging(default: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            logs.with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => logs
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// Whether `e` is a write to a closed pipe (`kazoo search … | head`): the reader has all it
/// wanted, so the command ends quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Run => "info",
        _ => "warn",
    };
    if let Err(e) = init_logging(default_log, cli.log_file.as_deref()) {
        eprintln!("kazoo: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kazoo: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kazoo: {}", escape_for_terminal(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The config file: `--config`, else `$KAZOO_CONFIG`, else
/// `$XDG_CONFIG_HOME/kazoo/config.toml` (or `~/.config/kazoo/config.toml`) if it exists.
fn config_path(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_path_buf());
    }
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = env("KAZOO_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let dir = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    let path = dir.join("kazoo/config.toml");
    path.is_file().then_some(path)
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match config_path(path) {
        Some(path) => Ok(Config::load(&path)?),
        None => Ok(Config::default()),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Command::Hash { files } = &cli.command {
        return hash(files);
    }
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Run => run(config, config_path(cli.config.as_deref())).await,
        Command::Search { json, max, words } => {
            let (json, max, words) = search_flags(json, max, words)?;
            search(config, json, max, words).await
        }
        Command::Get { json, hash, output } => get(config, json, hash, output).await,
        Command::Status { json } => status(config, json).await,
        Command::Demo => kazoo_leaf::demo::run(&mut std::io::stdout()).await,
        Command::Hash { .. } => Ok(()),
    }
}

fn hash(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for path in files {
        let result = std::fs::File::open(path).and_then(|file| {
            blake3::Hasher::new()
                .update_reader(file)
                .map(|h| h.finalize())
        });
        match result {
            Ok(hash) => writeln!(out, "{}  {}", hash.to_hex(), path.display())?,
            Err(e) => {
                eprintln!("kazoo: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        bail!("some files could not be hashed");
    }
    Ok(())
}

/// Runs a node until Ctrl-C or SIGTERM; SIGHUP reloads `path` (see [`reload`]).
async fn run(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("watching for SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("watching for SIGTERM")?;
    let node = Node::start(config, StartOptions::default())
        .await
        .context("starting the node")?;
    let control = match ControlSocket::serve(node.clone()).await {
        Ok(control) => control,
        Err(e) => {
            node.shutdown().await;
            return Err(e).context("serving the control socket");
        }
    };
    let status = node.status();
    // Nobody may be reading (a service): the node runs on.
    let _ = writeln!(
        std::io::stdout(),
        "kazoo node {} ({}) listening on {}",
        status.node_id,
        status.role,
        status.listen
    );
    loop {
        tokio::select! {
            stop = tokio::signal::ctrl_c() => {
                stop.context("waiting for Ctrl-C")?;
                break;
            }
            _ = terminate.recv() => break,
            _ = hangups.recv() => reload(&node, path.as_deref()),
        }
    }
    drop(control);
    node.shutdown().await;
    Ok(())
}

/// Reloads the config file (SIGHUP): share folders and rate caps take effect at once (see
/// `Node::reload`); a config with errors is logged and the running one kept.
fn reload(node: &Node, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no config file to reload (running with the defaults)");
        return;
    };
    match Config::load(path) {
        Ok(new) => {
            node.reload(&new);
        }
        Err(e) => {
            tracing::error!(config = %path.display(), error = %e, "SIGHUP: config not reloaded; keeping the running one")
        }
    }
}

/// Asks the node running with this config; `None` when none runs.
async fn ask(
    config: &Config,
    request: &ControlRequest,
) -> anyhow::Result<Option<Vec<ControlEvent>>> {
    let mut events = Vec::new();
    match control::request(&config.node, request, |e| events.push(e)).await {
        None => Ok(None),
        Some(Ok(())) => Ok(Some(events)),
        Some(Err(e)) => Err(e).context("talking to the running node"),
    }
}

/// Starts a short-lived leaf for one command when no node runs with this config.
async fn short_lived_leaf(config: Config) -> anyhow::Result<Node> {
    if config.network.bootstrap.is_empty() {
        bail!(
            "no kazoo node is running with data_dir {} and no [network] bootstrap is configured; \
             start one with `kazoo run` or give a config with a bootstrap supernode",
            config.node.data_dir.display()
        );
    }
    // Any free port, of the configured family (`[::]`: both).
    let listen = match config.node.listen.ip() {
        Some(SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], 0)),
        _ => SocketAddr::from(([0u16; 8], 0)),
    };
    let options = StartOptions {
        share: false,
        role: Some(RoleSetting::Leaf),
        listen: Some(listen),
        ..StartOptions::default()
    };
    let node = Node::start(config, options).await?;
    node.wait_ready(Duration::from_secs(10)).await?;
    Ok(node)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

async fn search(config: Config, json: bool, max: u32, words: Vec<String>) -> anyhow::Result<()> {
    let request = ControlRequest::Search {
        words: words.clone(),
        max_results: max,
    };
    let (results, more): (Vec<SearchResult>, bool) = match ask(&config, &request).await? {
        Some(events) => {
            let mut results = Vec::new();
            let mut more = false;
            for event in events {
                match event {
                    ControlEvent::Hit { hit } => results.push(hit),
                    ControlEvent::More { .. } => more = true,
                    ControlEvent::Error { message } => bail!("{message}"),
                    _ => {}
                }
            }
            (results, more)
        }
        None => {
            let node = short_lived_leaf(config).await?;
            let found = node.find(&words, max).await;
            node.shutdown().await;
            let found = found?;
            let results = found.results.into_iter().map(SearchResult::from).collect();
            (results, found.more)
        }
    };
    let mut out = std::io::stdout().lock();
    let notice = more.then(|| truncation_notice(results.len(), max));
    if json {
        for r in &results {
            let line = serde_json::json!({
                "hash": r.hash, "name": r.name, "folder": r.folder, "size": r.size,
                "sources": r.sources, "other_names": r.other_names,
                "providers": r.providers.iter().map(|p| serde_json::json!({
                    "node": p.node.to_string(), "addr": p.addr.to_string(),
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{line}")?;
        }
        if let Some(notice) = notice {
            eprintln!("{notice}");
        }
        return Ok(());
    }
    if results.is_empty() {
        writeln!(out, "no results")?;
        return Ok(());
    }
    // Names and folders come from the network: escaped before a terminal sees them.
    let cell = |text: &str, width: usize| -> String {
        let escaped = escape_for_terminal(text);
        if escaped.chars().count() > width {
            let mut cut: String = escaped.chars().take(width - 1).collect();
            cut.push('…');
            cut
        } else {
            escaped.into_owned()
        }
    };
    let names: Vec<String> = results.iter().map(|r| cell(&r.name, 50)).collect();
    let folders: Vec<String> = results.iter().map(|r| cell(&r.folder, 40)).collect();
    let width = |cells: &[String], max: usize| {
        cells
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(6, max)
    };
    let (nw, fw) = (width(&names, 50), width(&folders, 40));
    writeln!(
        out,
        "{:<nw$}  {:<fw$}  {:>10}  {:>7}  HASH",
        "NAME", "FOLDER", "SIZE", "SOURCES"
    )?;
    for ((r, name), folder) in results.iter().zip(&names).zip(&folders) {
        let folder = if folder.is_empty() { "." } else { folder };
        writeln!(
            out,
            "{name:<nw$}  {folder:<fw$}  {:>10}  {:>7}  {}",
            human(r.size),
            r.sources,
            r.hash
        )?;
        for other in &r.other_names {
            writeln!(out, "  also shared as {}", escape_for_terminal(other))?;
        }
    }
    if let Some(notice) = notice {
        writeln!(out, "{notice}")?;
    }
    Ok(())
}

/// `--json` and `--max N` given after the first word (the words take values starting with
/// `-`, so clap leaves them there) apply as if given before it.
fn search_flags(
    mut json: bool,
    mut max: u32,
    words: Vec<String>,
) -> anyhow::Result<(bool, u32, Vec<String>)> {
    let mut rest = Vec::with_capacity(words.len());
    let mut iter = words.into_iter();
    while let Some(word) = iter.next() {
        let value = match word.as_str() {
            "--json" => {
                json = true;
                continue;
            }
            "--max" => iter.next().context("--max needs a number")?,
            w => match w.strip_prefix("--max=") {
                Some(v) => v.to_owned(),
                None => {
                    rest.push(word);
                    continue;
                }
            },
        };
        max = value
            .parse()
            .ok()
            .filter(|n| (1..=MAX_RESULTS as u32).contains(n))
            .with_context(|| format!("--max {value}: give 1 to {MAX_RESULTS}"))?;
    }
    if rest.is_empty() {
        bail!("search needs at least one word");
    }
    Ok((json, max, rest))
}

/// What to say when a search matched more than it shows.
fn truncation_notice(shown: usize, max: u32) -> String {
    if max < MAX_RESULTS as u32 {
        format!(
            "showing the first {shown}; more matched: use --max N (up to {MAX_RESULTS}) or add words or filters"
        )
    } else {
        format!(
            "showing the first {shown} ({MAX_RESULTS} is the most one search returns); more may match: add words or filters (-word, in:folder, type:, size:)"
        )
    }
}

/// Shows progress on a terminal (stderr); a no-op otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Bar(Some(bar))
    }

    fn update(&self, p: &Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(p.total);
            bar.set_position(p.bytes_done);
            bar.set_message(format!("{} sources", p.sources_active));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

async fn get(
    config: Config,
    json: bool,
    hash: ContentId,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let output = match output {
        Some(path) if path.is_relative() => Some(std::env::current_dir()?.join(path)),
        other => other,
    };
    let bar = Bar::new(!json);
    let request = ControlRequest::Get {
        hash,
        out: output.clone(),
    };
    let mut report: Option<anyhow::Result<Report>> = None;
    let asked = control::request(&config.node, &request, |event| match event {
        ControlEvent::Progress { progress } => bar.update(&progress),
        ControlEvent::Done { report: r } => report = Some(Ok(r)),
        ControlEvent::Error { message } => report = Some(Err(anyhow::anyhow!(message))),
        _ => {}
    })
    .await;
    let report = match asked {
        Some(result) => {
            result.context("talking to the running node")?;
            report.unwrap_or_else(|| {
                Err(anyhow::anyhow!(
                    "the node closed the connection without a result"
                ))
            })
        }
        None => {
            let node = short_lived_leaf(config).await?;
            let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
            let fetch = node.get(hash, output, tx);
            tokio::pin!(fetch);
            let result = loop {
                tokio::select! {
                    r = &mut fetch => break r,
                    changed = rx.changed() => if changed.is_ok() { bar.update(&rx.borrow_and_update()) },
                }
            };
            node.shutdown().await;
            result.map_err(anyhow::Error::from)
        }
    };
    bar.finish();
    let report = report?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        let used = report.sources.iter().filter(|s| s.bytes > 0).count();
        let rate = report.bytes as f64 / report.seconds.max(1e-9) / 1e6;
        writeln!(
            out,
            "{}  {} ({}, {rate:.1} MB/s from {used} source{}, verified)",
            report.hash,
            report.path.display(),
            human(report.bytes),
            if used == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

async fn status(config: Config, json: bool) -> anyhow::Result<()> {
    let Some(events) = ask(&config, &ControlRequest::Status).await? else {
        bail!(
            "no kazoo node is running with data_dir {}",
            config.node.data_dir.display()
        );
    };
    let status: Box<Status> = events
        .into_iter()
        .find_map(|e| match e {
            ControlEvent::Status { status } => Some(status),
            _ => None,
        })
        .context("the node sent no status")?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&status)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "role:          {} (since unix {}; {})",
        status.role,
        status.since,
        escape_for_terminal(&status.reason)
    )?;
    writeln!(out, "node_id:       {}", status.node_id)?;
    writeln!(out, "listen:        {}", status.listen)?;
    if status.role == "leaf" {
        match (status.supernode, status.supernode_addr) {
            (Some(sn), Some(addr)) => {
                writeln!(out, "supernode:     {sn} at {addr}")?;
                if let Some(reason) = &status.uplink_reason {
                    writeln!(out, "               ({})", escape_for_terminal(reason))?;
                }
            }
            _ => writeln!(out, "supernode:     none (joining)")?,
        }
        let heirs: Vec<String> = status
            .succession
            .iter()
            .flatten()
            .map(|n| n.short())
            .collect();
        writeln!(out, "succession:    {}", heirs.join(", "))?;
        match &status.reachability {
            Some(r) => writeln!(
                out,
                "reachability:  {} (seen at {})",
                r.class.describe(),
                r.observed
            )?,
            None => writeln!(out, "reachability:  not known yet")?,
        }
    }
    if let Some(leaves) = status.leaves {
        writeln!(out, "leaves:        {leaves}")?;
    }
    if let Some(peers) = status.peers {
        writeln!(out, "peers:         {peers}")?;
    }
    writeln!(out, "shared files:  {}", status.shared_files)?;
    if let (Some(entries), Some(files)) = (status.index_entries, status.index_files) {
        writeln!(out, "index:         {entries} entries, {files} files")?;
    }
    for problem in &status.problems {
        writeln!(out, "warning:       {}", escape_for_terminal(problem))?;
    }
    Ok(())
}
