//! The persisted hash cache: (path, size, mtime) → content id and manifest, so a restart
//! does not re-hash unchanged files. Stored as one postcard file, replaced atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use kazoo_common::hash::Manifest;
use kazoo_common::ContentId;
use serde::{Deserialize, Serialize};

use super::SharedFile;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    size: u64,
    mtime_ns: u128,
    id: ContentId,
    manifest: Manifest,
}

/// A hash cache backed by a file.
#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    records: Mutex<HashMap<PathBuf, Record>>,
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

impl HashCache {
    /// Loads the cache at `path`; a missing or unreadable cache starts empty (with a warning).
    pub fn load(path: PathBuf) -> Self {
        let records = match std::fs::read(&path) {
            Ok(bytes) => postcard::from_bytes::<Vec<(PathBuf, Record)>>(&bytes)
                .map(|v| v.into_iter().collect())
                .unwrap_or_else(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "hash cache unreadable; re-hashing");
                    HashMap::new()
                }),
            Err(_) => HashMap::new(),
        };
        HashCache {
            path,
            records: Mutex::new(records),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Record>> {
        crate::lock(&self.records)
    }

    /// The cached hash of `path` if its size and mtime are unchanged.
    pub fn lookup(
        &self,
        path: &Path,
        size: u64,
        mtime: SystemTime,
    ) -> Option<(ContentId, Manifest)> {
        let records = self.records();
        let record = records.get(path)?;
        (record.size == size && record.mtime_ns == nanos(mtime))
            .then(|| (record.id, record.manifest.clone()))
    }

    /// Records a hashed file.
    pub fn remember(&self, file: &SharedFile) {
        self.records().insert(
            file.path.clone(),
            Record {
                size: file.size,
                mtime_ns: nanos(file.mtime),
                id: file.id,
                manifest: (*file.manifest).clone(),
            },
        );
    }

    /// Keeps only the paths for which `keep` is true.
    pub fn retain(&self, keep: impl Fn(&Path) -> bool) {
        self.records().retain(|p, _| keep(p));
    }

    /// Writes the cache (to a temporary file, then renamed over the old one).
    pub fn save(&self) {
        let snapshot: Vec<(PathBuf, Record)> = self
            .records()
            .iter()
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect();
        let result = postcard::to_stdvec(&snapshot)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = self.path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "could not save hash cache");
        }
    }
}
