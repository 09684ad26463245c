//! `kazoo`: run a node of the kazoo network, or talk to one (search, get, status), or hash
//! files the way the network does. See the README for the commands and config keys.

mod docs;

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
use kazoo_leaf::download::partial::{self, PartialFile};
use kazoo_leaf::download::{Progress, Report};
use kazoo_leaf::jobs::last_search::LastSearch;
use kazoo_leaf::jobs::{JobState, JobView, Target, Tracker, MAX_PER_REQUEST};
use kazoo_leaf::metrics::MetricsServer;
use kazoo_leaf::node::partial_dir;
use kazoo_leaf::{Node, StartOptions, Status};

mod browse;
mod status;

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
    /// Download files by content id or by number in the last search's results, verifying
    /// every piece. A running node takes the downloads over (they go on if this command is
    /// interrupted; `kazoo downloads` lists them); a file it is already downloading is
    /// followed, not fetched twice.
    Get {
        /// Print one JSON object per file at the end instead of a progress bar.
        #[arg(long)]
        json: bool,
        /// Content ids (64 hex digits, as `kazoo hash` prints) or result numbers of the
        /// last `kazoo search` (at most 32).
        #[arg(required = true, value_name = "HASH|N")]
        targets: Vec<Target>,
        /// Where to write the file (default: the download folder); with several files, a
        /// folder.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// List the running node's downloads: state, progress, rate, sources, ETA.
    Downloads {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// List the partial files instead (with the download using each, if any).
        #[arg(long)]
        partials: bool,
    },
    /// Pause downloads (by number, or 8+ hex digits of the hash); the partial file is kept.
    Pause {
        /// Download numbers or hash prefixes.
        #[arg(required = true, value_name = "N|HASH")]
        jobs: Vec<String>,
    },
    /// Resume paused (or failed) downloads from their partial files.
    Resume {
        /// Download numbers or hash prefixes.
        #[arg(required = true, value_name = "N|HASH")]
        jobs: Vec<String>,
    },
    /// Cancel downloads and remove their partial files.
    Cancel {
        /// Download numbers or hash prefixes.
        #[arg(required = true, value_name = "N|HASH")]
        jobs: Vec<String>,
    },
    /// Remove partial files that no download uses (every one, or those of these hashes).
    CleanPartials {
        /// Content ids (default: every unused partial file).
        hashes: Vec<ContentId>,
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
    /// List a node's shared files (path, size, hash). NODE is `IP:PORT`, `NODEID@IP:PORT`
    /// (the id is checked) or a `NODEID` alone (looked up through the supernode, as a
    /// download's sources are). A node with `share.browsable = false` refuses.
    Browse {
        /// One JSON object (`node`, `addr`, `total`, `files: [{name, size, hash}]`).
        #[arg(long)]
        json: bool,
        /// Most files listed (at most 100000, the most a node shares).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max: u32,
        /// The node: NODEID, IP:PORT or NODEID@IP:PORT.
        node: kazoo_leaf::node::browse::BrowseTarget,
    },
    /// Run a three-node demo network on loopback: share, search, download, verify.
    Demo,
    /// Print the completion script for SHELL (e.g. `kazoo completions bash >
    /// ~/.local/share/bash-completion/completions/kazoo`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page kazoo(1) in roff (`kazoo man | man -l -`), or write every page.
    Man {
        /// Write kazoo.1 and a page per command (kazoo-run.1, …) into this folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    match &cli.command {
        Command::Hash { files } => return hash(files),
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Man { dir } => return docs::man(dir.as_deref()),
        _ => {}
    }
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Run => run(config, config_path(cli.config.as_deref())).await,
        Command::Search { json, max, words } => {
            let (json, max, words) = search_flags(json, max, words)?;
            search(config, json, max, words).await
        }
        Command::Get {
            json,
            targets,
            output,
        } => get(config, json, targets, output).await,
        Command::Downloads { json, partials } => downloads(config, json, partials).await,
        Command::Pause { jobs } => act(config, ControlRequest::Pause { jobs }).await,
        Command::Resume { jobs } => act(config, ControlRequest::Resume { jobs }).await,
        Command::Cancel { jobs } => act(config, ControlRequest::Cancel { jobs }).await,
        Command::CleanPartials { hashes } => clean_partials(config, hashes).await,
        Command::Status { json } => status(config, json).await,
        Command::Browse { json, max, node } => browse::run(config, json, max, node).await,
        Command::Demo => kazoo_leaf::demo::run(&mut std::io::stdout()).await,
        Command::Hash { .. } | Command::Completions { .. } | Command::Man { .. } => Ok(()),
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
    // Only the node serving this data dir's control socket takes up its saved downloads.
    let restored = node.jobs().restore(&node);
    if restored > 0 {
        tracing::info!(restored, "downloads taken up again after a restart");
    }
    let metrics = match node.config().metrics.listen {
        Some(addr) => match MetricsServer::serve(node.clone(), addr).await {
            Ok(server) => Some(server),
            Err(e) => {
                node.shutdown().await;
                return Err(e).with_context(|| format!("serving metrics on {addr}"));
            }
        },
        None => None,
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
    if let Some(metrics) = &metrics {
        let _ = writeln!(
            std::io::stdout(),
            "metrics at http://{}/metrics",
            metrics.local_addr()
        );
    }
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
    drop(metrics);
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
    let node = short_lived_node(config).await?;
    node.wait_ready(Duration::from_secs(10)).await?;
    Ok(node)
}

/// Starts a node for one command: a leaf on a port of its own that shares nothing.
async fn short_lived_node(config: Config) -> anyhow::Result<Node> {
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
    Ok(Node::start(config, options).await?)
}

/// `bytes` in B, KiB, MiB, GiB or TiB.
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
            let data_dir = config.node.data_dir.clone();
            let node = short_lived_leaf(config).await?;
            let found = node.find(&words, max).await;
            node.shutdown().await;
            let found = found?;
            let results: Vec<SearchResult> =
                found.results.into_iter().map(SearchResult::from).collect();
            control::remember(&data_dir, &words, &results);
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
        "{:>3}  {:<nw$}  {:<fw$}  {:>10}  {:>7}  HASH",
        "#", "NAME", "FOLDER", "SIZE", "SOURCES"
    )?;
    for (n, ((r, name), folder)) in results.iter().zip(&names).zip(&folders).enumerate() {
        let folder = if folder.is_empty() { "." } else { folder };
        writeln!(
            out,
            "{:>3}  {name:<nw$}  {folder:<fw$}  {:>10}  {:>7}  {}",
            n + 1,
            human(r.size),
            r.sources,
            r.hash
        )?;
        for other in &r.other_names {
            writeln!(out, "       also shared as {}", escape_for_terminal(other))?;
        }
    }
    if let Some(notice) = notice {
        writeln!(out, "{notice}")?;
    }
    writeln!(out, "(`kazoo get N` downloads result N)")?;
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

/// Progress bars on a terminal (stderr), one per download; no-ops otherwise.
struct Bars {
    multi: Option<indicatif::MultiProgress>,
    bars: std::collections::HashMap<u32, indicatif::ProgressBar>,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        let multi =
            (enabled && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        Bars {
            multi,
            bars: std::collections::HashMap::new(),
        }
    }

    fn update(&mut self, job: &JobView) {
        let Some(multi) = &self.multi else {
            return;
        };
        let bar = self.bars.entry(job.id).or_insert_with(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:20} {bar:30} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            multi.add(indicatif::ProgressBar::new(0).with_style(style))
        });
        let name = if job.name.is_empty() {
            job.hash.short()
        } else {
            escape_for_terminal(&job.name).into_owned()
        };
        bar.set_prefix(name.chars().take(20).collect::<String>());
        bar.set_length(job.total);
        bar.set_position(job.bytes_done);
        bar.set_message(progress_message(job));
    }

    /// Prints a line above the bars (or on stderr when there are none).
    fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) if !self.bars.is_empty() => {
                let _ = multi.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }
}

/// `3m 20s`, `8s`.
fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What a download is doing, for its bar and the `downloads` table: the rate and ETA of
/// this run only, and whether it resumed a partial file.
fn progress_message(job: &JobView) -> String {
    let mut text = match job.state {
        JobState::Downloading if job.total == 0 => "looking up sources".to_owned(),
        JobState::Downloading => {
            let eta = job.eta_secs.map_or_else(|| "?".to_owned(), duration);
            format!(
                "{}/s, ETA {eta}, {} source{}",
                human(job.rate),
                job.sources,
                if job.sources == 1 { "" } else { "s" }
            )
        }
        JobState::WaitingForSources => match job.retry_in_secs {
            Some(secs) => format!("waiting for sources (next look in {})", duration(secs)),
            None => "waiting for sources (looking)".to_owned(),
        },
        other => other.describe().to_owned(),
    };
    if job.resuming && job.state == JobState::Downloading {
        text.push_str(&format!(
            ", resuming ({} were on disk)",
            human(job.resumed_bytes)
        ));
    }
    text
}

/// The output path made absolute (the node may run elsewhere).
fn absolute(output: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    Ok(match output {
        Some(path) if path.is_relative() => Some(std::env::current_dir()?.join(path)),
        other => other,
    })
}

/// What became of one file of a `get`.
struct Outcome {
    hash: ContentId,
    result: Result<Report, String>,
}

/// The outcome of a job whose last view is `job`.
fn outcome(job: &JobView) -> Outcome {
    let result = match (job.state, &job.report) {
        (JobState::Done, Some(report)) => Ok(report.clone()),
        (JobState::Paused, _) => Err(format!(
            "paused (download {}); `kazoo resume {}` continues it",
            job.id, job.id
        )),
        (JobState::Cancelled, _) => Err(format!("download {} was cancelled", job.id)),
        _ => Err(job
            .note
            .clone()
            .unwrap_or_else(|| format!("download {} did not finish", job.id))),
    };
    Outcome {
        hash: job.hash,
        result,
    }
}

async fn get(
    config: Config,
    json: bool,
    targets: Vec<Target>,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    if targets.len() > MAX_PER_REQUEST {
        bail!(
            "at most {MAX_PER_REQUEST} files per get (got {})",
            targets.len()
        );
    }
    let output = absolute(output)?;
    let mut bars = Bars::new(!json);
    let request = ControlRequest::Get {
        targets: targets.clone(),
        out: output.clone(),
    };
    // Each job's last view, in the order they were first seen.
    let mut last: Vec<JobView> = Vec::new();
    let mut told_waiting = std::collections::HashSet::new();
    let mut failed: Option<String> = None;
    let asked = control::request(&config.node, &request, |event| match event {
        ControlEvent::Job { job } => {
            bars.update(&job);
            if job.state == JobState::WaitingForSources && told_waiting.insert(job.id) {
                bars.println(&format!(
                    "download {} ({}): no source answers yet, waiting for sources; \
                     Ctrl-C leaves it to the node, `kazoo cancel {}` stops it",
                    job.id,
                    job.hash.short(),
                    job.id
                ));
            }
            match last.iter_mut().find(|j| j.id == job.id) {
                Some(seen) => *seen = job,
                None => last.push(job),
            }
        }
        ControlEvent::Notice { message } => bars.println(&escape_for_terminal(&message)),
        ControlEvent::Error { message } => failed = Some(message),
        _ => {}
    })
    .await;
    let outcomes = match asked {
        Some(result) => {
            result.context("talking to the running node")?;
            if let Some(message) = failed {
                bail!("{message}");
            }
            if last.is_empty() {
                bail!("the node closed the connection without a result");
            }
            last.iter().map(outcome).collect()
        }
        None => get_here(config, targets, output, &mut bars).await?,
    };
    bars.finish();
    report_outcomes(&outcomes, json)
}

/// Downloads in this process as a short-lived leaf (no node runs), one file after the other.
async fn get_here(
    config: Config,
    targets: Vec<Target>,
    output: Option<PathBuf>,
    bars: &mut Bars,
) -> anyhow::Result<Vec<Outcome>> {
    if let Some(out) = output.as_ref().filter(|o| targets.len() > 1 && !o.is_dir()) {
        bail!(
            "-o {} names one file: with several files give an existing folder",
            out.display()
        );
    }
    let wanted = LastSearch::resolve(&config.node.data_dir, &targets)?;
    let node = short_lived_leaf(config).await?;
    let mut outcomes = Vec::with_capacity(wanted.len());
    for (i, (hash, name)) in wanted.into_iter().enumerate() {
        let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
        let mut tracker = Tracker::new(std::time::Instant::now());
        let fetch = node.get(hash, output.clone(), tx);
        tokio::pin!(fetch);
        let result = loop {
            tokio::select! {
                r = &mut fetch => break r,
                changed = rx.changed() => if changed.is_ok() {
                    let progress = *rx.borrow_and_update();
                    tracker.see(progress, std::time::Instant::now(), true);
                    let mut view = JobView::new(i as u32 + 1, hash, name.clone(), JobState::Downloading);
                    tracker.fill(&mut view);
                    bars.update(&view);
                },
            }
        };
        outcomes.push(Outcome {
            hash,
            result: result.map_err(|e| e.to_string()),
        });
    }
    node.shutdown().await;
    Ok(outcomes)
}

/// Prints each finished file (a line, or its JSON report); the command fails unless every
/// file was verified.
fn report_outcomes(outcomes: &[Outcome], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut failures = 0;
    for outcome in outcomes {
        let report = match &outcome.result {
            Ok(report) => report,
            Err(message) if outcomes.len() == 1 => bail!("{message}"),
            Err(message) => {
                failures += 1;
                eprintln!("kazoo: {}: {}", outcome.hash, escape_for_terminal(message));
                continue;
            }
        };
        if json {
            writeln!(out, "{}", serde_json::to_string(report)?)?;
            continue;
        }
        let used = report.sources.iter().filter(|s| s.bytes > 0).count();
        let fetched = report.bytes.saturating_sub(report.resumed_bytes);
        let rate = fetched as f64 / report.seconds.max(1e-9) / 1e6;
        let resumed = if report.resumed_bytes > 0 {
            format!(", resumed after {}", human(report.resumed_bytes))
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}  {} ({}, {rate:.1} MB/s from {used} source{}{resumed}, verified)",
            report.hash,
            report.path.display(),
            human(report.bytes),
            if used == 1 { "" } else { "s" }
        )?;
    }
    if failures > 0 {
        bail!("{failures} of {} files were not downloaded", outcomes.len());
    }
    Ok(())
}

/// The node running with this config, or a clear error.
async fn ask_node(config: &Config, request: &ControlRequest) -> anyhow::Result<Vec<ControlEvent>> {
    let Some(events) = ask(config, request).await? else {
        bail!(
            "no kazoo node is running with data_dir {}; downloads are jobs of a running node \
             (`kazoo downloads --partials` lists partial files without one)",
            config.node.data_dir.display()
        );
    };
    if let Some(message) = events.iter().find_map(|e| match e {
        ControlEvent::Error { message } => Some(message.clone()),
        _ => None,
    }) {
        bail!("{message}");
    }
    Ok(events)
}

/// Percent done, or `-` while the size is not known.
fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}%", done as f64 * 100.0 / total as f64)
    }
}

/// The download table (or JSON lines).
fn print_jobs(jobs: &[JobView], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        for job in jobs {
            writeln!(out, "{}", serde_json::to_string(job)?)?;
        }
        return Ok(());
    }
    if jobs.is_empty() {
        writeln!(out, "no downloads")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>3}  {:<30}  {:<19}  {:>5}  {:>10}  {:>10}  {:>7}  {:>7}  HASH",
        "#", "NAME", "STATE", "DONE", "SIZE", "RATE", "SOURCES", "ETA"
    )?;
    for job in jobs {
        let name: String = escape_for_terminal(&job.name).chars().take(30).collect();
        let running = job.state == JobState::Downloading;
        writeln!(
            out,
            "{:>3}  {name:<30}  {:<19}  {:>5}  {:>10}  {:>10}  {:>7}  {:>7}  {}",
            job.id,
            job.state.describe(),
            percent(job.bytes_done, job.total),
            if job.total > 0 {
                human(job.total)
            } else {
                "?".to_owned()
            },
            if running {
                format!("{}/s", human(job.rate))
            } else {
                String::new()
            },
            if running {
                job.sources.to_string()
            } else {
                String::new()
            },
            job.eta_secs
                .filter(|_| running)
                .map(duration)
                .unwrap_or_default(),
            job.hash.short()
        )?;
        let detail = match job.state {
            JobState::Downloading if job.resuming => Some(format!(
                "resuming: {} were on disk; rate and ETA count this run only",
                human(job.resumed_bytes)
            )),
            JobState::WaitingForSources => Some(format!(
                "{} — waited {}, next look in {}",
                escape_for_terminal(job.note.as_deref().unwrap_or("no source answers")),
                duration(job.waiting_secs.unwrap_or(0)),
                duration(job.retry_in_secs.unwrap_or(0))
            )),
            JobState::Failed => job
                .note
                .as_deref()
                .map(|n| escape_for_terminal(n).into_owned()),
            JobState::Done => job.report.as_ref().map(|r| r.path.display().to_string()),
            _ => None,
        };
        if let Some(detail) = detail {
            writeln!(out, "     {detail}")?;
        }
    }
    Ok(())
}

/// The partial-file table (or JSON lines).
fn print_partials(partials: &[PartialFile], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        for p in partials {
            writeln!(out, "{}", serde_json::to_string(p)?)?;
        }
        return Ok(());
    }
    if partials.is_empty() {
        writeln!(out, "no partial files")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>10}  {:>10}  {:>8}  HASH",
        "VERIFIED", "SIZE", "DOWNLOAD"
    )?;
    for p in partials {
        writeln!(
            out,
            "{:>10}  {:>10}  {:>8}  {}",
            human(p.verified_bytes),
            human(p.size),
            p.job.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            p.hash
        )?;
    }
    Ok(())
}

async fn downloads(config: Config, json: bool, partials: bool) -> anyhow::Result<()> {
    if partials {
        let files = match ask(&config, &ControlRequest::Partials).await? {
            Some(events) => events
                .into_iter()
                .find_map(|e| match e {
                    ControlEvent::Partials { partials } => Some(Ok(partials)),
                    ControlEvent::Error { message } => Some(Err(anyhow::anyhow!(message))),
                    _ => None,
                })
                .context("the node sent no partial files")??,
            None => {
                let dir = partial_dir(&config);
                partial::list(&dir).with_context(|| format!("listing {}", dir.display()))?
            }
        };
        return print_partials(&files, json);
    }
    let jobs = ask_node(&config, &ControlRequest::Downloads)
        .await?
        .into_iter()
        .find_map(|e| match e {
            ControlEvent::Jobs { jobs } => Some(jobs),
            _ => None,
        })
        .context("the node sent no downloads")?;
    print_jobs(&jobs, json)
}

/// `pause`, `resume`, `cancel`: the jobs as they are afterwards.
async fn act(config: Config, request: ControlRequest) -> anyhow::Result<()> {
    let jobs = ask_node(&config, &request)
        .await?
        .into_iter()
        .find_map(|e| match e {
            ControlEvent::Jobs { jobs } => Some(jobs),
            _ => None,
        })
        .context("the node sent no answer")?;
    print_jobs(&jobs, false)
}

async fn clean_partials(config: Config, hashes: Vec<ContentId>) -> anyhow::Result<()> {
    let request = ControlRequest::CleanPartials {
        hashes: hashes.clone(),
    };
    let (removed, kept) = match ask(&config, &request).await? {
        Some(events) => events
            .into_iter()
            .find_map(|e| match e {
                ControlEvent::Cleaned { removed, kept } => Some(Ok((removed, kept))),
                ControlEvent::Error { message } => Some(Err(anyhow::anyhow!(message))),
                _ => None,
            })
            .context("the node sent no answer")??,
        None => {
            // No node runs: no download uses a partial file.
            let dir = partial_dir(&config);
            let mut removed = Vec::new();
            for file in partial::list(&dir).with_context(|| format!("listing {}", dir.display()))? {
                if hashes.is_empty() || hashes.contains(&file.hash) {
                    partial::remove(&dir, &file.hash)
                        .with_context(|| format!("removing {}", file.path.display()))?;
                    removed.push(file);
                }
            }
            (removed, Vec::new())
        }
    };
    let mut out = std::io::stdout().lock();
    let bytes: u64 = removed.iter().map(|p| p.size).sum();
    writeln!(
        out,
        "removed {} partial file{} ({})",
        removed.len(),
        if removed.len() == 1 { "" } else { "s" },
        human(bytes)
    )?;
    for p in &kept {
        if let Some(id) = p.job {
            writeln!(
                out,
                "kept {}: download {id} uses it (`kazoo cancel {id}` removes both)",
                p.hash
            )?;
        }
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
    status::render(&mut out, &status)?;
    status_downloads(&mut out, &status.downloads)?;
    Ok(())
}

/// The `downloads:` section of `kazoo status`: one line per unfinished download (at most
/// [`STATUS_DOWNLOADS`]; `kazoo downloads` lists them all).
fn status_downloads(out: &mut impl Write, jobs: &[JobView]) -> std::io::Result<()> {
    if jobs.is_empty() {
        return writeln!(out, "downloads:     none");
    }
    writeln!(out, "downloads:     {}", jobs.len())?;
    for job in jobs.iter().take(STATUS_DOWNLOADS) {
        let name = if job.name.is_empty() {
            job.hash.short()
        } else {
            escape_for_terminal(&job.name).into_owned()
        };
        writeln!(
            out,
            "  {:>3} {name}: {} {}",
            job.id,
            percent(job.bytes_done, job.total),
            progress_message(job)
        )?;
    }
    if jobs.len() > STATUS_DOWNLOADS {
        writeln!(
            out,
            "  … and {} more (`kazoo downloads`)",
            jobs.len() - STATUS_DOWNLOADS
        )?;
    }
    Ok(())
}

/// Downloads `kazoo status` shows.
const STATUS_DOWNLOADS: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_resuming_and_counts_this_run_only() {
        let hash = ContentId::from(blake3::hash(b"x"));
        let mut job = JobView::new(3, hash, "song.ogg".into(), JobState::Downloading);
        job.total = 10 << 20;
        job.bytes_done = 6 << 20;
        job.resumed_bytes = 5 << 20;
        job.resuming = true;
        job.rate = 128 << 10;
        job.eta_secs = Some(32);
        job.sources = 1;
        let text = progress_message(&job);
        assert_eq!(
            text,
            "128.0 KiB/s, ETA 32s, 1 source, resuming (5.0 MiB were on disk)"
        );
        job.state = JobState::WaitingForSources;
        job.retry_in_secs = Some(75);
        assert_eq!(
            progress_message(&job),
            "waiting for sources (next look in 1m 15s)"
        );
    }
}
