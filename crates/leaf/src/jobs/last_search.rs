//! The last search's results, remembered per data dir in `<data_dir>/last-search.json` so
//! that `kazoo get 1 3` can name them by number. Written by whoever ran the search: the node
//! for a search through its control socket, the CLI for one it ran as a short-lived leaf;
//! read by whoever runs the `get` (the node, or the CLI when no node runs).

use std::path::{Path, PathBuf};

use kazoo_common::wire::MAX_RESULTS;
use kazoo_common::ContentId;
use serde::{Deserialize, Serialize};

/// File name in the data dir.
pub const FILE: &str = "last-search.json";
/// Longest file read back (200 results with long names fit many times over).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One remembered result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Remembered {
    /// Content id.
    pub hash: ContentId,
    /// File name shown.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// The last search: its words and its results in the order shown (result `n` is
/// `results[n - 1]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastSearch {
    /// The query words.
    pub words: Vec<String>,
    /// At most [`MAX_RESULTS`] results.
    pub results: Vec<Remembered>,
}

/// Why a result number cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LastSearchError {
    /// No search was remembered in this data dir.
    #[error("no last search in {0}: run `kazoo search WORDS` first, then `kazoo get N` with a result number")]
    None(PathBuf),
    /// The file could not be read or parsed.
    #[error("cannot read the last search ({path}): {why}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The number is not one of the results.
    #[error("no result {number}: the last search ({words:?}) had {count} result{}", if *count == 1 { "" } else { "s" })]
    OutOfRange {
        /// The number asked for.
        number: u32,
        /// How many there were.
        count: usize,
        /// The search's words.
        words: String,
    },
}

impl LastSearch {
    /// Remembers `words` and the results (hash, name, size), at most [`MAX_RESULTS`].
    pub fn new(words: &[String], results: impl IntoIterator<Item = Remembered>) -> Self {
        LastSearch {
            words: words.to_vec(),
            results: results.into_iter().take(MAX_RESULTS).collect(),
        }
    }

    /// Result `number` (1-based, as `kazoo search` numbers them).
    pub fn pick(&self, number: u32) -> Result<&Remembered, LastSearchError> {
        (number as usize)
            .checked_sub(1)
            .and_then(|i| self.results.get(i))
            .ok_or_else(|| LastSearchError::OutOfRange {
                number,
                count: self.results.len(),
                words: self.words.join(" "),
            })
    }

    /// The content id and name each target names, in order; result numbers are read from the
    /// last search of `data_dir` (a name is "" for a content id given as such).
    pub fn resolve(
        data_dir: &Path,
        targets: &[super::Target],
    ) -> Result<Vec<(ContentId, String)>, LastSearchError> {
        let mut last: Option<LastSearch> = None;
        let mut wanted = Vec::with_capacity(targets.len());
        for target in targets {
            wanted.push(match *target {
                super::Target::Hash(hash) => (hash, String::new()),
                super::Target::Result(n) => {
                    let search = match last.take() {
                        Some(search) => search,
                        None => LastSearch::load(data_dir)?,
                    };
                    let picked = search.pick(n).map(|r| (r.hash, r.name.clone()));
                    last = Some(search);
                    picked?
                }
            });
        }
        Ok(wanted)
    }

    /// Writes it to `data_dir` (atomically: a reader sees the old or the new search).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::state_file::write_atomic(&data_dir.join(FILE), &json)
    }

    /// Reads the last search of `data_dir`.
    pub fn load(data_dir: &Path) -> Result<LastSearch, LastSearchError> {
        let path = data_dir.join(FILE);
        let unreadable = |why: String| LastSearchError::Unreadable {
            path: path.clone(),
            why,
        };
        let bytes = crate::state_file::read_bounded(&path, MAX_FILE_BYTES)
            .map_err(|e| unreadable(e.to_string()))?
            .ok_or_else(|| LastSearchError::None(data_dir.to_path_buf()))?;
        let mut search: LastSearch =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        search.results.truncate(MAX_RESULTS);
        Ok(search)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_pick_results_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = LastSearch::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no last search"), "{err}");
        let hash = ContentId::from(blake3::hash(b"x"));
        let words = vec!["daft".to_owned(), "punk".to_owned()];
        let search = LastSearch::new(
            &words,
            [Remembered {
                hash,
                name: "one.ogg".into(),
                size: 1,
            }],
        );
        search.save(dir.path()).unwrap();
        let loaded = LastSearch::load(dir.path()).unwrap();
        assert_eq!(loaded, search);
        assert_eq!(loaded.pick(1).unwrap().hash, hash);
        for n in [0, 2, u32::MAX] {
            let err = loaded.pick(n).unwrap_err().to_string();
            assert!(
                err.contains("had 1 result") && err.contains("daft punk"),
                "{err}"
            );
        }
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let err = LastSearch::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
