//! Sharing: the files under `share.dirs` (and the download folder unless
//! `share.share_downloads = false`), hashed once and remembered in a persisted hash cache,
//! rescanned every `share.rescan_secs` for files that were added, removed or changed.
//!
//! Only what the user picked is shared ([`ShareLayout`]): never a kazoo data dir (any node's,
//! recognised by [`DATA_DIR_MARK`] or a `node.key`) nor a file that is a node key (by name or
//! by content); a symlink to a file outside every share folder only with
//! `share.follow_symlinks`; a file saved with `get -o` outside them only with
//! `share.share_saved_elsewhere`. A share folder that is missing or unreadable is a warning,
//! logged when it appears and listed by [`ShareStore::problems`] (`kazoo status`).
//!
//! The store is keyed by path; each content id is offered once (by the first path that has
//! it). Subscribers (the uplink to the supernode, a supernode's own index) watch a version
//! counter and diff [`ShareStore::entries`] against what they last sent.

mod cache;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use kazoo_common::config::Config;
use kazoo_common::hash::Manifest;
pub use kazoo_common::identity::DATA_DIR_MARK;
use kazoo_common::wire::{ShareEntry, MAX_ENTRIES_PER_LEAF};
use kazoo_common::ContentId;
use tokio::sync::watch;

pub use cache::HashCache;
pub use scan::ScanReport;

/// How long a file must be unmodified before it is hashed (so a file being written is not
/// hashed over and over).
pub const SETTLE_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// Most files a node shares (the per-leaf index limit).
pub const MAX_SHARED_FILES: usize = MAX_ENTRIES_PER_LEAF;

/// One shared file.
#[derive(Clone, Debug)]
pub struct SharedFile {
    /// Where it is on disk.
    pub path: PathBuf,
    /// Size when hashed.
    pub size: u64,
    /// Modification time when hashed.
    pub mtime: SystemTime,
    /// Content id.
    pub id: ContentId,
    /// Piece manifest.
    pub manifest: Arc<Manifest>,
    /// Name offered to the network (the file name).
    pub name: String,
}

impl SharedFile {
    /// Whether the file on disk still has the size and mtime it had when hashed.
    pub fn unchanged_on_disk(&self) -> bool {
        std::fs::metadata(&self.path)
            .map(|m| m.len() == self.size && m.modified().ok() == Some(self.mtime))
            .unwrap_or(false)
    }
}

#[derive(Debug, Default)]
struct Files {
    by_path: BTreeMap<PathBuf, SharedFile>,
    by_id: HashMap<ContentId, PathBuf>,
}

impl Files {
    fn insert(&mut self, file: SharedFile) {
        self.by_id
            .entry(file.id)
            .or_insert_with(|| file.path.clone());
        self.by_path.insert(file.path.clone(), file);
    }

    fn remove(&mut self, path: &Path) -> Option<SharedFile> {
        let file = self.by_path.remove(path)?;
        if self.by_id.get(&file.id).map(PathBuf::as_path) == Some(path) {
            self.by_id.remove(&file.id);
            if let Some(other) = self.by_path.values().find(|f| f.id == file.id) {
                self.by_id.insert(file.id, other.path.clone());
            }
        }
        Some(file)
    }
}

/// What is shared: the folders, what is never entered, and the choices of `[share]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareLayout {
    /// Folders shared recursively (`share.dirs`).
    pub dirs: Vec<PathBuf>,
    /// The download folder, when it is shared; unlike `dirs` it may lie inside a data dir
    /// (the default `<data_dir>/downloads` does).
    pub download_dir: Option<PathBuf>,
    /// Folders never entered: this node's data dir, and the download folder when it is not
    /// shared.
    pub exclude: Vec<PathBuf>,
    /// `share.follow_symlinks`: share symlinks to files outside every share folder.
    pub follow_symlinks: bool,
    /// `share.share_saved_elsewhere`: share files saved outside every share folder.
    pub share_saved_elsewhere: bool,
}

impl ShareLayout {
    /// The layout `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        let share = &config.share;
        let mut exclude = vec![config.node.data_dir.clone()];
        let download_dir = if share.share_downloads {
            Some(config.download_dir())
        } else {
            exclude.push(config.download_dir());
            None
        };
        ShareLayout {
            dirs: share.dirs.clone(),
            download_dir,
            exclude,
            follow_symlinks: share.follow_symlinks,
            share_saved_elsewhere: share.share_saved_elsewhere,
        }
    }
}

/// The set of shared files.
#[derive(Debug)]
pub struct ShareStore {
    layout: std::sync::Mutex<ShareLayout>,
    files: RwLock<Files>,
    cache: HashCache,
    /// See [`SETTLE_TIME`].
    settle: std::time::Duration,
    /// Single files shared outside the share dirs (downloads saved with `-o`).
    extra: std::sync::Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Paths already warned about, so a rescan does not repeat itself.
    warned: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// Share folders that are missing or unreadable now, with why.
    problems: std::sync::Mutex<BTreeMap<PathBuf, String>>,
    version: watch::Sender<u64>,
    /// Serialises rescans.
    scanning: tokio::sync::Mutex<()>,
    /// The sorted listing (`kazoo browse`) and the version it was built at.
    listing: std::sync::Mutex<Option<(u64, Arc<Vec<ShareEntry>>)>>,
}

/// A share folder as `kazoo status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FolderView {
    /// The folder as configured (empty: files saved elsewhere).
    pub path: PathBuf,
    /// Files shared from it now.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Why it cannot be shared now (missing, unreadable, inside a data dir).
    pub problem: Option<String>,
}

impl ShareStore {
    /// A store over `dirs` (never entering the directories in `exclude`, e.g. the data dir
    /// with the node key), with its hash cache at `cache_path`. Nothing is scanned yet.
    pub fn new(dirs: Vec<PathBuf>, exclude: Vec<PathBuf>, cache_path: PathBuf) -> Self {
        let layout = ShareLayout {
            dirs,
            exclude,
            ..ShareLayout::default()
        };
        ShareStore::with_layout(layout, cache_path)
    }

    /// A store sharing what `layout` says, with its hash cache at `cache_path`. Nothing is
    /// scanned yet.
    pub fn with_layout(layout: ShareLayout, cache_path: PathBuf) -> Self {
        ShareStore {
            layout: std::sync::Mutex::new(layout),
            files: RwLock::new(Files::default()),
            cache: HashCache::load(cache_path),
            settle: SETTLE_TIME,
            extra: Default::default(),
            warned: Default::default(),
            problems: Default::default(),
            version: watch::channel(0).0,
            scanning: tokio::sync::Mutex::new(()),
            listing: std::sync::Mutex::new(None),
        }
    }

    /// Replaces [`SETTLE_TIME`] (tests that write and scan at once use zero).
    pub fn with_settle_time(mut self, settle: std::time::Duration) -> Self {
        self.settle = settle;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Files> {
        self.files.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Files> {
        self.files.write().unwrap_or_else(|p| p.into_inner())
    }

    fn extra(&self) -> Vec<PathBuf> {
        crate::lock(&self.extra).iter().cloned().collect()
    }

    /// What is shared now.
    pub fn layout(&self) -> ShareLayout {
        crate::lock(&self.layout).clone()
    }

    /// Shares what `layout` says from the next rescan on (a reloaded config). Files saved
    /// elsewhere stop being shared when `share_saved_elsewhere` is now off.
    pub fn set_layout(&self, layout: ShareLayout) {
        if !layout.share_saved_elsewhere {
            crate::lock(&self.extra).clear();
        }
        *crate::lock(&self.layout) = layout;
        crate::lock(&self.warned).clear();
    }

    /// Share folders that are missing or unreadable now, one line each (`kazoo status`).
    pub fn problems(&self) -> Vec<String> {
        crate::lock(&self.problems)
            .iter()
            .map(|(dir, why)| format!("share folder {}: {why}", dir.display()))
            .collect()
    }

    /// Each share folder (then the download folder, when shared) with the files and bytes
    /// shared from it now, and why it cannot be shared if it cannot; files shared from
    /// elsewhere (`get -o` with `share.share_saved_elsewhere`) last, with an empty path.
    pub fn folders(&self) -> Vec<FolderView> {
        let layout = self.layout();
        let problems = crate::lock(&self.problems).clone();
        let mut folders: Vec<(FolderView, PathBuf)> = layout
            .dirs
            .iter()
            .chain(&layout.download_dir)
            .map(|dir| {
                let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                let view = FolderView {
                    path: dir.clone(),
                    files: 0,
                    bytes: 0,
                    problem: problems.get(dir).cloned(),
                };
                (view, real)
            })
            .collect();
        let mut elsewhere = FolderView {
            path: PathBuf::new(),
            files: 0,
            bytes: 0,
            problem: None,
        };
        for file in self.read().by_path.values() {
            // The deepest folder holding it (a download folder inside a share folder).
            let holder = folders
                .iter_mut()
                .filter(|(_, real)| file.path.starts_with(real))
                .max_by_key(|(_, real)| real.components().count());
            let view = match holder {
                Some((view, _)) => view,
                None => &mut elsewhere,
            };
            view.files += 1;
            view.bytes += file.size;
        }
        let mut list: Vec<FolderView> = folders.into_iter().map(|(view, _)| view).collect();
        if elsewhere.files > 0 {
            list.push(elsewhere);
        }
        list
    }

    /// The shared files as `kazoo browse` lists them: one per content id (as registered),
    /// sorted by name. Rebuilt only when the share list has changed since the last call.
    pub fn listing(&self) -> Arc<Vec<ShareEntry>> {
        let version = *self.version.borrow();
        let mut cached = crate::lock(&self.listing);
        if let Some((at, list)) = &*cached {
            if *at == version {
                return Arc::clone(list);
            }
        }
        let mut entries = self.entries();
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let list = Arc::new(entries);
        *cached = Some((version, Arc::clone(&list)));
        list
    }

    /// Watches the share list's version (bumped on every change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The entries to register: one per content id.
    pub fn entries(&self) -> Vec<ShareEntry> {
        let files = self.read();
        files
            .by_id
            .values()
            .filter_map(|p| files.by_path.get(p))
            .map(|f| ShareEntry {
                id: f.id,
                size: f.size,
                name: f.name.clone(),
            })
            .collect()
    }

    /// Number of distinct shared contents.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared file with content `id`.
    pub fn get(&self, id: &ContentId) -> Option<SharedFile> {
        let files = self.read();
        files
            .by_id
            .get(id)
            .and_then(|p| files.by_path.get(p))
            .cloned()
    }

    /// Walks the share dirs, hashing new or changed files and dropping vanished ones.
    pub async fn rescan(self: &Arc<Self>) -> ScanReport {
        let _guard = self.scanning.lock().await;
        let store = Arc::clone(self);
        let report = tokio::task::spawn_blocking(move || store.rescan_blocking())
            .await
            .unwrap_or_default();
        if report.changed() {
            self.version.send_modify(|v| *v += 1);
        }
        report
    }

    /// Adds one file (a finished download) without waiting for the next rescan, if the
    /// layout shares it: inside a shared folder, or anywhere with `share_saved_elsewhere`.
    /// Returns whether it is shared.
    pub async fn add_file(
        self: &Arc<Self>,
        path: PathBuf,
        id: ContentId,
        manifest: Manifest,
    ) -> bool {
        let _guard = self.scanning.lock().await;
        let layout = self.layout();
        let inside = scan::Roots::of(&layout).0.holds(&path);
        if !inside && (!layout.share_saved_elsewhere || scan::in_data_dir(&path)) {
            tracing::info!(path = %path.display(), "saved outside the share folders: not shared (share.share_saved_elsewhere)");
            return false;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if scan::is_key_file(&path, &meta) {
            return false;
        }
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let Some(name) = scan::share_name(&canonical, &self.roots()) else {
            return false;
        };
        let file = SharedFile {
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            id,
            manifest: Arc::new(manifest),
            name,
            path,
        };
        self.cache.remember(&file);
        self.cache.save();
        if !inside {
            crate::lock(&self.extra).insert(file.path.clone());
        }
        self.write().insert(file);
        self.version.send_modify(|v| *v += 1);
        true
    }

    /// Drops a file that no longer matches its hash; the next rescan re-hashes it.
    pub fn forget_changed(&self, path: &Path) {
        if self.write().remove(path).is_some() {
            tracing::warn!(path = %path.display(), "shared file changed on disk; re-hashing");
            self.version.send_modify(|v| *v += 1);
        }
    }
}

#[cfg(test)]
mod tests;
