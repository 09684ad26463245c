//! Walking the share dirs and reconciling what is on disk with the store.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kazoo_common::hash::hash_file;
use kazoo_common::wire::MAX_NAME_LEN;
use kazoo_supernode::tokenize::tokens;

use super::{ShareStore, SharedFile, MAX_SHARED_FILES};

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

impl ShareStore {
    /// The share dirs that exist, canonicalised (the roots of shared paths).
    pub(super) fn roots(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect()
    }

    fn warn_once(&self, path: &Path, reason: &str) {
        let mut warned = crate::lock(&self.warned);
        if warned.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), reason, "skipping file");
        }
    }

    fn walk(
        &self,
        dir: &Path,
        depth: usize,
        out: &mut Vec<(PathBuf, Metadata)>,
        report: &mut ScanReport,
    ) {
        if depth > MAX_DEPTH || self.exclude.iter().any(|e| e == dir) {
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
                self.walk(&path, depth + 1, out, report);
                continue;
            }
            // Files, and symlinks to files that resolve outside the excluded directories
            // (symlinked directories are not followed).
            if kind.is_symlink() {
                let target = std::fs::canonicalize(&path).unwrap_or_default();
                if self.exclude.iter().any(|e| target.starts_with(e)) {
                    self.warn_once(&path, "symlink into the data dir");
                    continue;
                }
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    if out.len() >= MAX_SHARED_FILES {
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
        let roots = self.roots();
        for dir in &roots {
            self.walk(dir, 0, &mut seen, &mut report);
        }
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
