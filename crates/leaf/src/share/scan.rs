//! Walking the share dirs and reconciling what is on disk with the store; what is never
//! shared (data dirs, key files, symlinks leaving the share folders) is decided here.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kazoo_common::hash::hash_file;
use kazoo_common::identity::{is_data_dir, looks_like_key, KEY_FILE, MAX_KEY_FILE_LEN};
use kazoo_common::wire::MAX_NAME_LEN;
use kazoo_supernode::tokenize::tokens;

use super::{ShareLayout, ShareStore, SharedFile, MAX_SHARED_FILES};

/// Deepest directory nesting followed.
const MAX_DEPTH: usize = 32;

/// What a rescan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Files newly shared.
    pub added: usize,
    /// Files no longer shared (gone from disk).
    pub removed: usize,
    /// Files whose content changed (re-hashed).
    pub changed: usize,
    /// Files hashed (not found in the hash cache).
    pub hashed: usize,
    /// Files skipped (unreadable, bad name, over the limit).
    pub skipped: usize,
}

impl ScanReport {
    /// Whether the share list changed.
    pub fn changed(&self) -> bool {
        self.added + self.removed + self.changed > 0
    }
}

/// The name a file is shared under, if it is usable: its path below the share root in
/// `roots` it lies in (the longest), `/`-separated, the file name last (see the wire spec,
/// `ShareEntry`). The file name must be valid UTF-8, ≤ `MAX_NAME_LEN` bytes and have a
/// searchable token; folders that are not UTF-8 are shown lossily, and the folders nearest
/// the root are dropped until the whole path fits in `MAX_NAME_LEN` bytes.
pub fn share_name(path: &Path, roots: &[PathBuf]) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.len() > MAX_NAME_LEN || tokens(name).is_empty() {
        return None;
    }
    let folder = roots
        .iter()
        .filter_map(|root| path.parent()?.strip_prefix(root).ok())
        .min_by_key(|rel| rel.components().count());
    let mut shared = name.to_owned();
    for component in folder.into_iter().flat_map(|f| f.components().rev()) {
        let component = component.as_os_str().to_string_lossy();
        if shared.len() + 1 + component.len() > MAX_NAME_LEN {
            break;
        }
        shared = format!("{component}/{shared}");
    }
    Some(shared)
}

/// Whether `path` or a folder above it is a kazoo data dir.
pub(super) fn in_data_dir(path: &Path) -> bool {
    path.ancestors().any(is_data_dir)
}

/// Whether the file at `path` is a node key: named like one, or holding one.
pub(super) fn is_key_file(path: &Path, meta: &Metadata) -> bool {
    if path.file_name().is_some_and(|n| n == KEY_FILE) {
        return true;
    }
    meta.len() <= MAX_KEY_FILE_LEN && std::fs::read(path).is_ok_and(|bytes| looks_like_key(&bytes))
}

/// The share folders of a layout as they are on disk now (canonical), and the folders never
/// entered.
#[derive(Debug, Default)]
pub(super) struct Roots {
    /// Share folders that exist and may be walked.
    pub dirs: Vec<PathBuf>,
    /// The download folder, if shared and present.
    download: Option<PathBuf>,
    exclude: Vec<PathBuf>,
}

impl Roots {
    /// The roots of `layout`, and the share folders that cannot be shared now, with why
    /// (missing, unreadable, inside a data dir).
    pub fn of(layout: &ShareLayout) -> (Roots, Vec<(PathBuf, String)>) {
        let mut problems = Vec::new();
        let mut roots = Roots {
            exclude: layout
                .exclude
                .iter()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            ..Roots::default()
        };
        for dir in &layout.dirs {
            match std::fs::canonicalize(dir) {
                Ok(real) if !real.is_dir() => {
                    problems.push((dir.clone(), "not a folder".into()));
                }
                Ok(real) if in_data_dir(&real) => problems.push((
                    dir.clone(),
                    "is (inside) a kazoo data dir, never shared".into(),
                )),
                Ok(real) => match std::fs::read_dir(&real) {
                    Ok(_) => roots.dirs.push(real),
                    Err(e) => problems.push((dir.clone(), format!("unreadable: {e}"))),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    problems.push((dir.clone(), "missing".into()));
                }
                Err(e) => problems.push((dir.clone(), format!("unreadable: {e}"))),
            }
        }
        // The download folder appears with the first download: missing is not a problem.
        if let Some(dir) = &layout.download_dir {
            roots.download = std::fs::canonicalize(dir).ok();
        }
        (roots, problems)
    }

    /// Every folder to walk.
    pub fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.iter().chain(&self.download)
    }

    /// Whether `path` is in a folder never entered (the download folder, when shared, is
    /// entered even inside the data dir).
    fn excluded(&self, path: &Path) -> bool {
        let in_downloads = self.download.as_ref().is_some_and(|d| path.starts_with(d));
        !in_downloads && self.exclude.iter().any(|e| path.starts_with(e))
    }

    /// Whether a walk of these roots shares the file at `path`'s place: under a root, not
    /// under an excluded folder, and not inside a data dir (but for the download folder,
    /// which may lie in one).
    pub fn holds(&self, path: &Path) -> bool {
        let Ok(real) = std::fs::canonicalize(path) else {
            return false;
        };
        let under = |root: &PathBuf| real.starts_with(root);
        if self.excluded(&real) {
            return false;
        }
        let parent = real.parent().unwrap_or(&real);
        self.download.as_ref().is_some_and(under)
            || (self.dirs.iter().any(under) && !in_data_dir(parent))
    }
}

impl ShareStore {
    /// The folders shared now, canonicalised (the roots of shared paths).
    pub(super) fn roots(&self) -> Vec<PathBuf> {
        Roots::of(&self.layout()).0.all().cloned().collect()
    }

    fn warn_once(&self, path: &Path, reason: &str) {
        let mut warned = crate::lock(&self.warned);
        if warned.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), reason, "not sharing");
        }
    }

    /// Records the share folders that cannot be shared now; each is logged as a warning when
    /// it appears or changes, and as recovered when it goes.
    fn set_problems(&self, now: Vec<(PathBuf, String)>) {
        let now: std::collections::BTreeMap<PathBuf, String> = now.into_iter().collect();
        let mut problems = crate::lock(&self.problems);
        for (dir, why) in &now {
            if problems.get(dir) != Some(why) {
                tracing::warn!(dir = %dir.display(), problem = %why, "share folder not shared");
            }
        }
        for dir in problems.keys().filter(|d| !now.contains_key(*d)) {
            tracing::info!(dir = %dir.display(), "share folder is back");
        }
        *problems = now;
    }

    fn walk(
        &self,
        roots: &Roots,
        follow_symlinks: bool,
        dir: &Path,
        depth: usize,
        out: &mut Vec<(PathBuf, Metadata)>,
        report: &mut ScanReport,
    ) {
        if depth > MAX_DEPTH || roots.excluded(dir) {
            return;
        }
        if is_data_dir(dir) {
            self.warn_once(dir, "a kazoo data dir (node key, state)");
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.warn_once(dir, &format!("cannot read directory: {e}"));
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                self.walk(roots, follow_symlinks, &path, depth + 1, out, report);
                continue;
            }
            // Files, and symlinks to files inside the share folders (anywhere else only with
            // `follow_symlinks`, and never into a data dir); symlinked directories are not
            // followed.
            if kind.is_symlink() {
                if let Ok(target) = std::fs::canonicalize(&path) {
                    if !roots.holds(&target)
                        && (!follow_symlinks
                            || roots.excluded(&target)
                            || target.parent().is_some_and(in_data_dir))
                    {
                        self.warn_once(
                            &path,
                            "symlink leaving the share folders (share.follow_symlinks)",
                        );
                        report.skipped += 1;
                        continue;
                    }
                }
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    if is_key_file(&path, &meta) {
                        self.warn_once(&path, "a node key");
                        report.skipped += 1;
                    } else if out.len() >= MAX_SHARED_FILES {
                        self.warn_once(&path, "share limit reached");
                        report.skipped += 1;
                    } else {
                        out.push((path, meta));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.warn_once(&path, &format!("cannot stat: {e}"));
                    report.skipped += 1;
                }
            }
        }
    }

    pub(super) fn rescan_blocking(self: Arc<Self>) -> ScanReport {
        let mut report = ScanReport::default();
        let mut seen = Vec::new();
        let layout = self.layout();
        let (roots, problems) = Roots::of(&layout);
        self.set_problems(problems);
        for dir in roots.all() {
            self.walk(
                &roots,
                layout.follow_symlinks,
                dir,
                0,
                &mut seen,
                &mut report,
            );
        }
        // The folders shared paths are named below.
        let roots: Vec<PathBuf> = roots.all().cloned().collect();
        // Files shared one by one (downloads saved outside the share dirs).
        for path in self.extra().iter() {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.is_file() {
                    seen.push((path.clone(), meta));
                }
            }
        }
        // A download folder inside a share dir is walked twice.
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen.dedup_by(|a, b| a.0 == b.0);
        let current: HashMap<PathBuf, (u64, SystemTime)> = self
            .read()
            .by_path
            .values()
            .map(|f| (f.path.clone(), (f.size, f.mtime)))
            .collect();
        let mut fresh = Vec::new();
        let mut on_disk = std::collections::HashSet::new();
        for (path, meta) in seen {
            let size = meta.len();
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            on_disk.insert(path.clone());
            let known = current.get(&path);
            if known == Some(&(size, mtime)) {
                continue;
            }
            // A file still being written is hashed once it has been quiet for a moment (an
            // older entry for it stays until then).
            if mtime.elapsed().is_ok_and(|age| age < self.settle) {
                continue;
            }
            let Some(name) = share_name(&path, &roots) else {
                self.warn_once(
                    &path,
                    "name is not UTF-8, too long, or has no searchable word",
                );
                report.skipped += 1;
                continue;
            };
            let (id, manifest) = match self.cache.lookup(&path, size, mtime) {
                Some(hit) => hit,
                None => match hash_file(&path) {
                    Ok(hashed) => {
                        report.hashed += 1;
                        tracing::debug!(path = %path.display(), id = %hashed.0, "hashed");
                        hashed
                    }
                    Err(e) => {
                        self.warn_once(&path, &format!("cannot hash: {e}"));
                        report.skipped += 1;
                        continue;
                    }
                },
            };
            // The file may have changed while hashing; the next rescan catches that.
            if known.is_some() {
                report.changed += 1;
            } else {
                report.added += 1;
            }
            fresh.push(SharedFile {
                path,
                size,
                mtime,
                id,
                manifest: Arc::new(manifest),
                name,
            });
        }
        for file in &fresh {
            self.cache.remember(file);
        }
        let gone: Vec<PathBuf> = current
            .keys()
            .filter(|p| !on_disk.contains(*p))
            .cloned()
            .collect();
        report.removed = gone.len();
        {
            let mut files = self.write();
            for path in &gone {
                files.remove(path);
            }
            for file in fresh {
                files.remove(&file.path.clone());
                files.insert(file);
            }
        }
        if report.hashed > 0 || report.removed > 0 {
            self.cache.retain(|p| on_disk.contains(p));
            self.cache.save();
        }
        if report.changed() {
            tracing::info!(
                added = report.added,
                removed = report.removed,
                changed = report.changed,
                hashed = report.hashed,
                "share list updated"
            );
        }
        report
    }
}
