//! Downloads the node manages: `kazoo get` hands content ids (or numbers of the last
//! search's results, see [`last_search`]) to the running node, which runs each as a job;
//! the CLI follows the jobs it asked for, and `kazoo downloads`, `pause`, `resume` and
//! `cancel` act on them.
//!
//! * A job is queued, then runs (at most [`MAX_RUNNING`] at once; the queue is first come,
//!   first served), each run resuming from the partial file of the runs before.
//! * When a run finds no source that answers (nobody shares the file, every source
//!   unreachable or gone, no valid manifest, no supernode), the job is listed as waiting for
//!   sources and runs again after a back-off of [`FIRST_RETRY`] doubling up to
//!   [`MAX_RETRY`]; it fails once it has waited [`MAX_WAIT`] in a row (about 25 runs). A run
//!   that verified some bytes starts the wait over.
//! * A second `get` of a content id that has an unfinished job joins it (a paused one is
//!   resumed); the job keeps its first destination.
//! * Pausing stops the run and keeps the partial file; resuming queues the job again, and
//!   its run resumes from the partial (also for a failed job). Cancelling stops the run and
//!   removes the partial file.
//! * Bounds: [`MAX_JOBS`] unfinished jobs, [`MAX_PER_REQUEST`] content ids per request,
//!   [`KEEP_FINISHED`] finished jobs listed.
//! * The unfinished jobs are saved in the data dir whenever they change ([`saved`]); a node
//!   started again ([`Jobs::restore`]) queues them again (a paused one stays paused), and
//!   their runs resume from the partial files. Finished jobs are not kept across a restart.
//! * Rates and ETAs count only bytes fetched in the current run ([`speed`]).

pub mod last_search;
pub mod saved;
pub mod speed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kazoo_common::wire::MAX_RESULTS;
use kazoo_common::ContentId;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::download::partial::{self, PartialFile};
use crate::download::{DownloadError, Progress, Report};
use crate::node::{Node, NodeError};
use last_search::{LastSearch, LastSearchError};
use saved::SavedJob;
use speed::Speed;

/// Jobs downloading at once; the others wait in the queue.
pub const MAX_RUNNING: usize = 3;
/// Unfinished jobs (queued, running, waiting for sources or paused) at once.
pub const MAX_JOBS: usize = 64;
/// Content ids or result numbers one request may name (`get`, `pause`, `resume`, `cancel`).
pub const MAX_PER_REQUEST: usize = 32;
/// Finished jobs (done, failed, cancelled) kept listed; the oldest are forgotten first.
pub const KEEP_FINISHED: usize = 64;
/// First wait before looking for sources again.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two looks for sources.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long a job waits for sources in a row before it fails.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// What a job is doing.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free run slot.
    Queued,
    /// Looking up sources or fetching pieces.
    Downloading,
    /// No source answered; looking again after a back-off.
    WaitingForSources,
    /// Stopped by the user, partial file kept.
    Paused,
    /// Verified and in place.
    Done,
    /// Gave up (see the job's note).
    Failed,
    /// Stopped by the user, partial file removed.
    Cancelled,
}

impl JobState {
    /// Done, failed or cancelled: nothing more will happen.
    pub fn finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }

    /// Words for a table.
    pub fn describe(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Downloading => "downloading",
            JobState::WaitingForSources => "waiting for sources",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A job as `kazoo downloads` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobView {
    /// Job number (unique while the node runs).
    pub id: u32,
    /// Content id.
    pub hash: ContentId,
    /// File name from the network ("" until a lookup found it).
    pub name: String,
    /// What it is doing.
    pub state: JobState,
    /// Why it waits or failed.
    pub note: Option<String>,
    /// Verified bytes, resumed ones included.
    pub bytes_done: u64,
    /// File size (0: not known yet).
    pub total: u64,
    /// Bytes that were on disk when the current run started.
    pub resumed_bytes: u64,
    /// The current run resumed a partial file.
    pub resuming: bool,
    /// Bytes per second of the current run over the last few seconds ([`speed::WINDOW`]).
    pub rate: u64,
    /// Seconds left at that rate.
    pub eta_secs: Option<u64>,
    /// Sources delivering now.
    pub sources: usize,
    /// Waiting for sources: seconds until the next look.
    pub retry_in_secs: Option<u64>,
    /// Waiting for sources: seconds waited so far (it fails at [`MAX_WAIT`]).
    pub waiting_secs: Option<u64>,
    /// Done: the report (as `kazoo get --json` prints it).
    pub report: Option<Report>,
}

/// A file a `get` names: a content id, or a result number of the last search.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// This content id.
    Hash(ContentId),
    /// Result `n` (1-based) of the last search in the node's data dir.
    Result(u32),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() <= 3 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = s.parse().map_err(|_| s.to_owned())?;
            if (1..=MAX_RESULTS as u32).contains(&n) {
                return Ok(Target::Result(n));
            }
        }
        s.parse().map(Target::Hash).map_err(|_| {
            format!(
                "`{s}`: give a content id (64 hex digits, as `kazoo hash` prints) or a result \
                 number (1 to {MAX_RESULTS}) of the last `kazoo search`"
            )
        })
    }
}

/// A job a `get` asked for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Submitted {
    /// Job number.
    pub id: u32,
    /// Content id.
    pub hash: ContentId,
    /// It joined a job already there.
    pub joined: bool,
}

/// Why a job request failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Too many unfinished jobs.
    #[error("too many downloads ({MAX_JOBS} queued, running, waiting or paused): let some finish, or cancel some")]
    TooMany,
    /// Too many names in one request.
    #[error("at most {MAX_PER_REQUEST} files per request (got {0})")]
    TooManyTargets(usize),
    /// Nothing was named.
    #[error("name at least one download (its number or content id)")]
    Empty,
    /// No job matches.
    #[error("no download {0:?}: `kazoo downloads` lists them")]
    NoSuchJob(String),
    /// A hash prefix matches several jobs.
    #[error("{0:?} matches several downloads: give more of the hash, or the number")]
    Ambiguous(String),
    /// `-o PATH` with several files.
    #[error("-o {0} names one file: with several files give an existing folder")]
    OutputNotFolder(PathBuf),
    /// A result number could not be used.
    #[error(transparent)]
    LastSearch(#[from] LastSearchError),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
}

/// One job's state in the table.
struct Entry {
    hash: ContentId,
    name: String,
    output: Option<PathBuf>,
    state: JobState,
    note: Option<String>,
    /// Bumped whenever the job is paused, resumed or cancelled: a run of an older
    /// generation no longer changes the entry.
    generation: u64,
    task: Option<JoinHandle<()>>,
    /// Progress of the current (or last) run.
    progress: Option<watch::Receiver<Progress>>,
    tracker: Tracker,
    retry_at: Option<Instant>,
    waiting_since: Option<Instant>,
    report: Option<Report>,
}

impl Entry {
    /// Pulls the run's progress in and returns the view.
    fn view(&mut self, id: u32, now: Instant) -> JobView {
        let running = self.state == JobState::Downloading;
        if let Some(progress) = &self.progress {
            let p = *progress.borrow();
            self.tracker.see(p, now, running);
        }
        let waiting = self.state == JobState::WaitingForSources;
        let mut view = JobView {
            note: self.note.clone(),
            retry_in_secs: self
                .retry_at
                .filter(|_| waiting)
                .map(|at| at.saturating_duration_since(now).as_secs_f64().ceil() as u64),
            waiting_secs: self
                .waiting_since
                .filter(|_| waiting)
                .map(|since| now.saturating_duration_since(since).as_secs()),
            report: self.report.clone(),
            ..JobView::new(id, self.hash, self.name.clone(), self.state)
        };
        self.tracker.fill(&mut view);
        view
    }
}

impl JobView {
    /// A job with nothing known yet but its state.
    pub fn new(id: u32, hash: ContentId, name: String, state: JobState) -> Self {
        JobView {
            id,
            hash,
            name,
            state,
            note: None,
            bytes_done: 0,
            total: 0,
            resumed_bytes: 0,
            resuming: false,
            rate: 0,
            eta_secs: None,
            sources: 0,
            retry_in_secs: None,
            waiting_secs: None,
            report: None,
        }
    }
}

/// The progress of a job's current run as last seen, and its speed (this run's bytes only).
#[derive(Clone, Debug)]
pub struct Tracker {
    last: Progress,
    speed: Speed,
    running: bool,
}

impl Tracker {
    /// A run starting at `now`.
    pub fn new(now: Instant) -> Self {
        Tracker {
            last: Progress::default(),
            speed: Speed::new(now),
            running: false,
        }
    }

    /// Records the run's progress at `now` (`running`: its rate and ETA count).
    pub fn see(&mut self, progress: Progress, now: Instant, running: bool) {
        if progress.total > 0 || progress.bytes_done > 0 {
            self.last = progress;
        }
        self.running = running;
        if running {
            let fetched = self.last.bytes_done.saturating_sub(self.last.resumed_bytes);
            self.speed.sample(now, fetched);
        }
    }

    /// Bytes fetched by this run (resumed ones not counted).
    pub fn fetched(&self) -> u64 {
        self.last.bytes_done.saturating_sub(self.last.resumed_bytes)
    }

    /// Fills `view`'s progress, rate, ETA and sources.
    pub fn fill(&self, view: &mut JobView) {
        view.bytes_done = self.last.bytes_done;
        view.total = self.last.total;
        view.resumed_bytes = self.last.resumed_bytes;
        view.resuming = self.last.resumed_bytes > 0 && !view.state.finished();
        if self.running {
            view.rate = self.speed.rate();
            let remaining = self.last.total.saturating_sub(self.last.bytes_done);
            view.eta_secs = self.speed.eta(remaining).map(|d| d.as_secs());
            view.sources = self.last.sources_active;
        }
    }
}

#[derive(Default)]
struct Table {
    next_id: u32,
    jobs: BTreeMap<u32, Entry>,
    /// Bumped by every [`Jobs::save`]: the saved list's version.
    version: u64,
}

impl Table {
    /// Adds a job (not started) and returns its number.
    fn insert(&mut self, hash: ContentId, name: String, output: Option<PathBuf>) -> u32 {
        self.next_id += 1;
        let id = self.next_id;
        self.jobs.insert(
            id,
            Entry {
                hash,
                name,
                output,
                state: JobState::Queued,
                note: None,
                generation: 0,
                task: None,
                progress: None,
                tracker: Tracker::new(Instant::now()),
                retry_at: None,
                waiting_since: None,
                report: None,
            },
        );
        id
    }

    /// The unfinished jobs as saved, by number.
    fn to_save(&self) -> Vec<SavedJob> {
        self.jobs
            .values()
            .filter(|e| !e.state.finished())
            .map(|e| SavedJob {
                hash: e.hash,
                name: e.name.clone(),
                output: e.output.clone(),
                paused: e.state == JobState::Paused,
            })
            .collect()
    }

    fn unfinished(&self) -> usize {
        self.jobs.values().filter(|e| !e.state.finished()).count()
    }

    /// Forgets the oldest finished jobs beyond [`KEEP_FINISHED`].
    fn trim(&mut self) {
        let finished: Vec<u32> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.state.finished())
            .map(|(id, _)| *id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(KEEP_FINISHED))
        {
            self.jobs.remove(id);
        }
    }

    /// The job `which` names: its number, or (8 or more hex digits) a prefix of its hash,
    /// the newest job first when several had that hash.
    fn find(&self, which: &str) -> Result<u32, JobError> {
        let which = which.trim().trim_start_matches('#');
        if which.len() < 8 {
            return which
                .parse::<u32>()
                .ok()
                .filter(|id| self.jobs.contains_key(id))
                .ok_or_else(|| JobError::NoSuchJob(which.to_owned()));
        }
        let prefix = which.to_ascii_lowercase();
        let mut matching = self
            .jobs
            .iter()
            .rev()
            .filter(|(_, e)| e.hash.to_hex().starts_with(&prefix));
        let Some((id, first)) = matching.next() else {
            return Err(JobError::NoSuchJob(which.to_owned()));
        };
        if matching.any(|(_, e)| e.hash != first.hash) {
            return Err(JobError::Ambiguous(which.to_owned()));
        }
        Ok(*id)
    }
}

/// The node's download jobs (see the module doc).
#[derive(Clone)]
pub struct Jobs {
    table: Arc<Mutex<Table>>,
    slots: Arc<Semaphore>,
    saving: Arc<Mutex<Saving>>,
}

/// Where the jobs are saved, and the version last written. Held while writing, so writes
/// of one node never race and an older list never replaces a newer one.
#[derive(Default)]
struct Saving {
    /// The data dir; `None` until [`Jobs::restore`] (a node that serves no control socket,
    /// such as the CLI's short-lived one, saves nothing).
    dir: Option<PathBuf>,
    written: u64,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            table: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
            saving: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl Jobs {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        crate::lock(&self.table)
    }

    /// Saves the unfinished jobs (if [`Jobs::restore`] named a data dir). Call it without the
    /// table locked.
    fn save(&self) {
        let (version, jobs) = {
            let mut table = self.table();
            table.version += 1;
            (table.version, table.to_save())
        };
        let mut saving = crate::lock(&self.saving);
        let Some(dir) = saving.dir.clone() else {
            return;
        };
        if version <= saving.written {
            return;
        }
        match saved::save(&dir, &jobs) {
            Ok(()) => saving.written = version,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not save the download jobs; they will not come back after a restart")
            }
        }
    }

    /// Takes up the jobs saved in `node`'s data dir (see [`saved`]) and saves changes from now
    /// on: each is queued again (a paused one stays paused) and resumes from its partial
    /// file. Returns how many came back. A saved list that cannot be read is logged, shown as
    /// the node's last error and moved aside; the partial files stay either way.
    pub fn restore(&self, node: &Node) -> usize {
        let dir = node.config().node.data_dir.clone();
        let jobs = match saved::load(&dir) {
            Ok(jobs) => jobs,
            Err(e) => {
                let aside = saved::set_aside(&dir)
                    .map(|to| to.display().to_string())
                    .unwrap_or_else(|e| format!("could not move it aside: {e}"));
                tracing::warn!(error = %e, moved_to = %aside, "saved downloads not restored; their partial files stay (`kazoo downloads --partials`)");
                node.note_error(format!("{e}; moved to {aside}"));
                Vec::new()
            }
        };
        crate::lock(&self.saving).dir = Some(dir);
        let mut restored = 0;
        {
            let mut table = self.table();
            for job in jobs {
                let taken = table
                    .jobs
                    .values()
                    .any(|e| e.hash == job.hash && !e.state.finished());
                if taken || table.unfinished() >= MAX_JOBS {
                    continue;
                }
                let id = table.insert(job.hash, job.name, job.output);
                if job.paused {
                    if let Some(entry) = table.jobs.get_mut(&id) {
                        entry.state = JobState::Paused;
                    }
                } else {
                    self.start(&mut table, node, id);
                }
                tracing::info!(job = id, hash = %job.hash, paused = job.paused, "download restored");
                restored += 1;
            }
        }
        self.save();
        restored
    }

    /// Starts (or joins) a job for each target, in order; result numbers are read from the
    /// last search in `node`'s data dir. Nothing starts unless every target is valid.
    pub fn submit(
        &self,
        node: &Node,
        targets: &[Target],
        output: Option<PathBuf>,
    ) -> Result<Vec<Submitted>, JobError> {
        if targets.is_empty() {
            return Err(JobError::Empty);
        }
        if targets.len() > MAX_PER_REQUEST {
            return Err(JobError::TooManyTargets(targets.len()));
        }
        if let Some(out) = output.as_ref().filter(|o| targets.len() > 1 && !o.is_dir()) {
            return Err(JobError::OutputNotFolder(out.clone()));
        }
        let wanted = LastSearch::resolve(&node.config().node.data_dir, targets)?;
        let mut table = self.table();
        let active = |table: &Table, hash: ContentId| {
            table
                .jobs
                .iter()
                .find(|(_, e)| e.hash == hash && !e.state.finished())
                .map(|(id, _)| *id)
        };
        let mut new = 0;
        for (i, (hash, _)) in wanted.iter().enumerate() {
            let repeated = wanted[..i].iter().any(|(h, _)| h == hash);
            if active(&table, *hash).is_none() && !repeated {
                new += 1;
            }
        }
        if table.unfinished() + new > MAX_JOBS {
            return Err(JobError::TooMany);
        }
        let mut submitted = Vec::with_capacity(wanted.len());
        for (hash, name) in wanted {
            if let Some(id) = active(&table, hash) {
                let paused = table
                    .jobs
                    .get(&id)
                    .is_some_and(|e| e.state == JobState::Paused);
                if paused {
                    self.start(&mut table, node, id);
                }
                let joined = !submitted.iter().any(|s: &Submitted| s.id == id);
                submitted.push(Submitted { id, hash, joined });
                continue;
            }
            let id = table.insert(hash, name, output.clone());
            self.start(&mut table, node, id);
            tracing::info!(job = id, %hash, "download queued");
            submitted.push(Submitted {
                id,
                hash,
                joined: false,
            });
        }
        table.trim();
        drop(table);
        self.save();
        Ok(submitted)
    }

    /// Queues job `id` for a new run (a new generation).
    fn start(&self, table: &mut Table, node: &Node, id: u32) {
        let Some(entry) = table.jobs.get_mut(&id) else {
            return;
        };
        entry.generation += 1;
        entry.state = JobState::Queued;
        entry.note = None;
        entry.retry_at = None;
        entry.waiting_since = None;
        let run = drive(self.clone(), node.clone(), id, entry.generation);
        entry.task = Some(tokio::spawn(run));
    }

    /// Changes job `id` with `f` if its generation is still `generation`; `f`'s answer. A job
    /// that finishes is saved no more.
    fn update<T>(&self, id: u32, generation: u64, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut table = self.table();
        let entry = table
            .jobs
            .get_mut(&id)
            .filter(|e| e.generation == generation)?;
        let answer = f(entry);
        let finished = entry.state.finished();
        if finished {
            entry.task = None;
            table.trim();
        }
        drop(table);
        if finished {
            self.save();
        }
        Some(answer)
    }

    /// Job `id` now.
    pub fn view(&self, id: u32) -> Option<JobView> {
        let now = Instant::now();
        self.table().jobs.get_mut(&id).map(|e| e.view(id, now))
    }

    /// Every job listed, by number.
    pub fn list(&self) -> Vec<JobView> {
        let now = Instant::now();
        let mut table = self.table();
        table
            .jobs
            .iter_mut()
            .map(|(id, e)| e.view(*id, now))
            .collect()
    }

    /// The jobs not finished.
    pub fn unfinished(&self) -> Vec<JobView> {
        let mut jobs = self.list();
        jobs.retain(|j| !j.state.finished());
        jobs
    }

    /// The job numbers `which` names (see [`Table::find`]), each once.
    fn resolve(&self, which: &[String]) -> Result<Vec<u32>, JobError> {
        if which.is_empty() {
            return Err(JobError::Empty);
        }
        if which.len() > MAX_PER_REQUEST {
            return Err(JobError::TooManyTargets(which.len()));
        }
        let table = self.table();
        let mut ids = Vec::with_capacity(which.len());
        for w in which {
            let id = table.find(w)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Stops the runs of the jobs `which` names into `state` and waits until they stopped;
    /// finished jobs are left alone. Returns the jobs and the content ids that were stopped.
    async fn stop(
        &self,
        which: &[String],
        state: JobState,
    ) -> Result<(Vec<u32>, Vec<ContentId>), JobError> {
        let ids = self.resolve(which)?;
        let mut stopped = Vec::new();
        let mut tasks = Vec::new();
        {
            let mut table = self.table();
            for id in &ids {
                let Some(entry) = table.jobs.get_mut(id) else {
                    continue;
                };
                let already = state == JobState::Paused && entry.state == JobState::Paused;
                if entry.state.finished() || already {
                    continue;
                }
                entry.generation += 1;
                entry.state = state;
                entry.retry_at = None;
                entry.waiting_since = None;
                tasks.extend(entry.task.take());
                stopped.push(entry.hash);
                tracing::info!(job = id, hash = %entry.hash, state = state.describe(), "download stopped");
            }
            table.trim();
        }
        if !stopped.is_empty() {
            self.save();
        }
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        Ok((ids, stopped))
    }

    /// Pauses the jobs `which` names (partial files kept).
    pub async fn pause(&self, which: &[String]) -> Result<Vec<JobView>, JobError> {
        let (ids, _) = self.stop(which, JobState::Paused).await?;
        Ok(ids.into_iter().filter_map(|id| self.view(id)).collect())
    }

    /// Cancels the jobs `which` names and removes their partial files (in `partial_dir`).
    pub async fn cancel(
        &self,
        which: &[String],
        partial_dir: &Path,
    ) -> Result<Vec<JobView>, JobError> {
        let (ids, stopped) = self.stop(which, JobState::Cancelled).await?;
        for hash in stopped {
            partial::remove(partial_dir, &hash)
                .map_err(|e| JobError::Io(format!("removing the partial file of {hash}: {e}")))?;
        }
        Ok(ids.into_iter().filter_map(|id| self.view(id)).collect())
    }

    /// Queues the paused or failed jobs `which` names again; they resume from their partial
    /// files.
    pub fn resume(&self, node: &Node, which: &[String]) -> Result<Vec<JobView>, JobError> {
        let ids = self.resolve(which)?;
        let mut table = self.table();
        let mut outcome = Ok(());
        for id in &ids {
            let Some(entry) = table.jobs.get(id) else {
                continue;
            };
            let hash = entry.hash;
            let again = matches!(entry.state, JobState::Paused | JobState::Failed);
            // A failed job's content id may have a newer job already.
            let newer = table
                .jobs
                .iter()
                .any(|(other, e)| other != id && e.hash == hash && !e.state.finished());
            if again && !newer {
                if entry.state == JobState::Failed && table.unfinished() >= MAX_JOBS {
                    outcome = Err(JobError::TooMany);
                    break;
                }
                self.start(&mut table, node, *id);
                tracing::info!(job = id, %hash, "download resumed");
            }
        }
        drop(table);
        self.save();
        outcome?;
        Ok(ids.into_iter().filter_map(|id| self.view(id)).collect())
    }

    /// The partial files in `partial_dir`, each with the unfinished job using it.
    pub fn partials(&self, partial_dir: &Path) -> Result<Vec<PartialFile>, JobError> {
        let mut files = partial::list(partial_dir)
            .map_err(|e| JobError::Io(format!("listing {}: {e}", partial_dir.display())))?;
        let table = self.table();
        for file in &mut files {
            file.job = table
                .jobs
                .iter()
                .find(|(_, e)| e.hash == file.hash && !e.state.finished())
                .map(|(id, _)| *id);
        }
        Ok(files)
    }

    /// Removes the partial files in `partial_dir` no unfinished job uses (only those of
    /// `hashes`, if any are given); returns the files removed and those kept for a job.
    pub fn clean_partials(
        &self,
        partial_dir: &Path,
        hashes: &[ContentId],
    ) -> Result<(Vec<PartialFile>, Vec<PartialFile>), JobError> {
        if hashes.len() > MAX_PER_REQUEST {
            return Err(JobError::TooManyTargets(hashes.len()));
        }
        let files = self.partials(partial_dir)?;
        let (mut removed, mut kept) = (Vec::new(), Vec::new());
        for file in files {
            if !hashes.is_empty() && !hashes.contains(&file.hash) {
                continue;
            }
            if file.job.is_some() {
                kept.push(file);
                continue;
            }
            partial::remove(partial_dir, &file.hash)
                .map_err(|e| JobError::Io(format!("removing {}: {e}", file.path.display())))?;
            removed.push(file);
        }
        Ok((removed, kept))
    }

    /// Aborts every run (the node is shutting down); partial files stay.
    pub fn stop_all(&self) {
        let mut table = self.table();
        for entry in table.jobs.values_mut() {
            entry.generation += 1;
            if let Some(task) = entry.task.take() {
                task.abort();
            }
        }
    }
}

/// Whether a run that failed with `e` may succeed later, when sources answer.
fn worth_waiting(e: &NodeError) -> bool {
    match e {
        NodeError::NoSupernode(_) | NodeError::Request(_) => true,
        NodeError::Download(d) => !matches!(d, DownloadError::Io { .. }),
        NodeError::Start(_) | NodeError::Query(_) => false,
    }
}

/// Runs job `id` (of `generation`) until it is done, fails, or a newer generation replaces
/// it: a free slot, a lookup, the download; waits for sources with back-off in between.
async fn drive(jobs: Jobs, node: Node, id: u32, generation: u64) {
    let Some((hash, output)) = jobs.update(id, generation, |e| (e.hash, e.output.clone())) else {
        return;
    };
    let mut backoff = FIRST_RETRY;
    loop {
        let Ok(permit) = Arc::clone(&jobs.slots).acquire_owned().await else {
            return;
        };
        let (tx, rx) = watch::channel(Progress::default());
        let started = jobs.update(id, generation, |e| {
            // While waiting for sources the job stays listed as waiting until a run gets
            // a manifest.
            if e.state != JobState::WaitingForSources {
                e.state = JobState::Downloading;
            }
            e.progress = Some(rx.clone());
            e.tracker = Tracker::new(Instant::now());
        });
        if started.is_none() {
            return;
        }
        let rx_done = rx.clone();
        let result = run_once(&jobs, &node, id, generation, hash, output.clone(), tx, rx).await;
        drop(permit);
        if let Err(e) = &result {
            // `kazoo status` shows it as the last error, with when.
            node.note_error(format!("download {}: {e}", hash.short()));
        }
        let err = match result {
            Ok(report) => {
                tracing::info!(job = id, %hash, path = %report.path.display(), "download done");
                jobs.update(id, generation, |e| {
                    e.state = JobState::Done;
                    e.note = None;
                    let done = Progress {
                        bytes_done: report.bytes,
                        total: report.bytes,
                        ..*rx_done.borrow()
                    };
                    e.tracker.see(done, Instant::now(), false);
                    e.report = Some(report);
                });
                return;
            }
            Err(e) if worth_waiting(&e) => e,
            Err(e) => {
                tracing::warn!(job = id, %hash, error = %e, "download failed");
                jobs.update(id, generation, |entry| {
                    entry.state = JobState::Failed;
                    entry.note = Some(e.to_string());
                });
                return;
            }
        };
        let now = Instant::now();
        let waited = jobs.update(id, generation, |e| {
            e.tracker.see(*rx_done.borrow(), now, false);
            if e.tracker.fetched() > 0 {
                // This run fetched something: the wait starts over.
                e.waiting_since = None;
                backoff = FIRST_RETRY;
            }
            let since = *e.waiting_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= MAX_WAIT {
                e.state = JobState::Failed;
                e.note = Some(format!(
                    "{err} (no source answered for {} s)",
                    MAX_WAIT.as_secs()
                ));
                return false;
            }
            e.state = JobState::WaitingForSources;
            e.note = Some(err.to_string());
            e.retry_at = Some(now + backoff);
            true
        });
        if waited != Some(true) {
            return;
        }
        tracing::info!(job = id, %hash, error = %err, retry_in = ?backoff, "download waiting for sources");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RETRY);
    }
}

/// One run of job `id`: a lookup, then the download from the sources it found.
#[allow(clippy::too_many_arguments)]
async fn run_once(
    jobs: &Jobs,
    node: &Node,
    id: u32,
    generation: u64,
    hash: ContentId,
    output: Option<PathBuf>,
    tx: watch::Sender<Progress>,
    mut rx: watch::Receiver<Progress>,
) -> Result<Report, NodeError> {
    let found = node.lookup(hash).await?;
    if let Some((hit, _)) = &found {
        let (name, _) = kazoo_supernode::tokenize::split_path(&hit.name);
        let name = name.to_owned();
        let named = jobs.update(id, generation, |e| {
            let unnamed = e.name.is_empty();
            if unnamed {
                e.name = name;
            }
            unnamed
        });
        if named == Some(true) {
            jobs.save();
        }
    }
    let fetch = node.fetch(hash, found, output, tx);
    tokio::pin!(fetch);
    // Once a manifest arrived the job is downloading, even in a wait for sources.
    loop {
        tokio::select! {
            result = &mut fetch => return result,
            changed = rx.changed() => {
                if changed.is_err() {
                    return fetch.await;
                }
                if rx.borrow_and_update().total > 0 {
                    jobs.update(id, generation, |e| {
                        e.state = JobState::Downloading;
                        e.retry_at = None;
                    });
                    return fetch.await;
                }
            }
        }
    }
}
