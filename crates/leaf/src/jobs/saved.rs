//! The unfinished download jobs, saved in `<data_dir>/downloads.json` whenever one is added,
//! paused, resumed, cancelled or finishes, so that a node started again takes them up
//! ([`super::Jobs::restore`]): each job's content id, file name, destination and whether it
//! was paused. The file is written atomically ([`crate::state_file`]); at most
//! [`super::MAX_JOBS`] jobs and [`MAX_FILE_BYTES`] are read back, and a file that cannot be
//! read is moved aside (`downloads.json.broken`) rather than overwritten.

use std::path::{Path, PathBuf};

use kazoo_common::ContentId;
use serde::{Deserialize, Serialize};

use super::MAX_JOBS;

/// File name in the data dir.
pub const FILE: &str = "downloads.json";
/// Where an unreadable file is moved.
pub const BROKEN: &str = "downloads.json.broken";
/// Longest file read back: 64 jobs with a 255-byte name and a 4 KiB destination each fit
/// three times over.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One unfinished job as saved.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedJob {
    /// Content id.
    pub hash: ContentId,
    /// File name from the network ("" if no lookup found it yet).
    #[serde(default)]
    pub name: String,
    /// `get -o PATH`, if given.
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Paused by the user: it stays paused.
    #[serde(default)]
    pub paused: bool,
}

#[derive(Serialize, Deserialize)]
struct SavedFile {
    jobs: Vec<SavedJob>,
}

/// Why the saved jobs could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the saved downloads ({path}): {why}")]
pub struct SavedError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

/// Writes `jobs` (the first [`MAX_JOBS`]) to `data_dir`.
pub fn save(data_dir: &Path, jobs: &[SavedJob]) -> std::io::Result<()> {
    let file = SavedFile {
        jobs: jobs.iter().take(MAX_JOBS).cloned().collect(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    crate::state_file::write_atomic(&data_dir.join(FILE), &json)
}

/// The jobs saved in `data_dir` (none if nothing was saved): at most [`MAX_JOBS`], each
/// content id once.
pub fn load(data_dir: &Path) -> Result<Vec<SavedJob>, SavedError> {
    let path = data_dir.join(FILE);
    let unreadable = |why: String| SavedError {
        path: path.clone(),
        why,
    };
    let Some(bytes) = crate::state_file::read_bounded(&path, MAX_FILE_BYTES)
        .map_err(|e| unreadable(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    let file: SavedFile = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    let mut jobs: Vec<SavedJob> = Vec::with_capacity(file.jobs.len().min(MAX_JOBS));
    for job in file.jobs {
        if jobs.len() == MAX_JOBS {
            break;
        }
        if !jobs.iter().any(|j| j.hash == job.hash) {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Moves an unreadable file aside (to [`BROKEN`]) so the next save does not destroy it;
/// returns where it went.
pub fn set_aside(data_dir: &Path) -> std::io::Result<PathBuf> {
    let to = data_dir.join(BROKEN);
    std::fs::rename(data_dir.join(FILE), &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seed: u32, paused: bool) -> SavedJob {
        SavedJob {
            hash: ContentId::from(blake3::hash(&seed.to_le_bytes())),
            name: format!("file {seed}.ogg"),
            output: (seed % 2 == 1).then(|| PathBuf::from("/tmp/out")),
            paused,
        }
    }

    #[test]
    fn saved_jobs_come_back_bounded_and_once_each() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty(), "nothing saved yet");
        let jobs = vec![job(1, false), job(2, true)];
        save(dir.path(), &jobs).unwrap();
        assert_eq!(load(dir.path()).unwrap(), jobs);

        // A file written by hand with repeats and too many jobs: each once, MAX_JOBS at most.
        let many: Vec<SavedJob> = (0..MAX_JOBS as u32 + 10)
            .flat_map(|i| [job(i, false), job(i, true)])
            .collect();
        let text = serde_json::to_vec(&SavedFile { jobs: many }).unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.len(), MAX_JOBS);
        assert!(loaded.iter().all(|j| !j.paused), "the first of each hash");

        // Older fields missing are defaults; garbage is an error naming the file.
        let hash = job(7, false).hash;
        let minimal = format!("{{\"jobs\":[{{\"hash\":\"{hash}\"}}]}}");
        std::fs::write(dir.path().join(FILE), minimal).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!((loaded[0].hash, loaded[0].paused), (hash, false));
        std::fs::write(dir.path().join(FILE), b"{\"jobs\": [1").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE), "{err}");
        let aside = set_aside(dir.path()).unwrap();
        assert_eq!(std::fs::read(aside).unwrap(), b"{\"jobs\": [1");
        assert!(load(dir.path()).unwrap().is_empty());
    }
}
