//! The partial file of a download and its bitfield: where they live, opening them (pieces
//! marked done are re-verified on resume), recording finished pieces, and moving the finished
//! file into place; listing and removing the partial files of a folder (`kazoo downloads
//! --partials`, `kazoo clean-partials`).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kazoo_common::hash::{piece_count, piece_size_for, Manifest};
use kazoo_common::ContentId;
use serde::{Deserialize, Serialize};

use super::scheduler::Scheduler;
use super::{io, Destination, DownloadError};
use crate::names::{safe_file_name, unused_path};

/// The partial file and the bitfield of `id` in `dir`: `<id>.part` and `<id>.have`.
pub(super) fn paths(dir: &Path, id: &ContentId) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{id}.part")),
        dir.join(format!("{id}.have")),
    )
}

/// Opens (or creates) the partial file and its bitfield; pieces marked done are re-verified.
pub(super) async fn open(
    part_path: &Path,
    have_path: &Path,
    manifest: &Manifest,
    id: &ContentId,
) -> Result<(std::fs::File, std::fs::File, Vec<bool>), DownloadError> {
    let part = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part_path)
        .map_err(io(format!("opening {}", part_path.display())))?;
    let have = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(have_path)
        .map_err(io(format!("opening {}", have_path.display())))?;
    let pieces = manifest.pieces() as usize;
    let len = part
        .metadata()
        .map_err(io("reading the partial file"))?
        .len();
    let mut bits = vec![0u8; pieces.div_ceil(8)];
    if len == manifest.size {
        // A short or missing bitfield just means fewer pieces are known to be done.
        let _ = have.read_exact_at(&mut bits, 0);
    } else {
        part.set_len(manifest.size)
            .map_err(io("sizing the partial file"))?;
    }
    have.set_len(bits.len() as u64)
        .map_err(io("sizing the bitfield"))?;
    let marked: Vec<bool> = (0..pieces)
        .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    if !marked.iter().any(|d| *d) {
        return Ok((part, have, marked));
    }
    let part = Arc::new(part);
    let check = Arc::clone(&part);
    let manifest = manifest.clone();
    let id = *id;
    let done = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        marked
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                if !m {
                    return false;
                }
                let (offset, len) = manifest.piece_range(i as u64);
                buf.resize(len as usize, 0);
                check.read_exact_at(&mut buf, offset).is_ok()
                    && manifest.verify_piece(&id, i as u64, &buf)
            })
            .collect::<Vec<bool>>()
    })
    .await
    .map_err(|e| DownloadError::Io {
        context: "re-verifying resumed pieces".into(),
        source: std::io::Error::other(e),
    })?;
    let part = Arc::try_unwrap(part).map_err(|_| DownloadError::Io {
        context: "re-verifying resumed pieces".into(),
        source: std::io::Error::other("partial file still in use"),
    })?;
    Ok((part, have, done))
}

/// Bytes of the pieces that are `done`.
pub(super) fn resumed_bytes(manifest: &Manifest, done: &[bool]) -> u64 {
    done.iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| manifest.piece_range(i as u64).1)
        .sum()
}

/// Moves the finished partial file to its destination and removes its bitfield.
pub(super) fn finish(
    part: &Path,
    have: &Path,
    destination: &Destination,
    name: &str,
    id: &ContentId,
) -> Result<PathBuf, DownloadError> {
    let target = match destination {
        Destination::Path(path) if !path.is_dir() => path.clone(),
        Destination::Path(dir) | Destination::Folder(dir) => {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            unused_path(dir, &safe_file_name(name, id))
        }
    };
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    if std::fs::rename(part, &target).is_err() {
        // Different file systems: copy, then remove the partial file.
        std::fs::copy(part, &target).map_err(io(format!("writing {}", target.display())))?;
        let _ = std::fs::remove_file(part);
    }
    let _ = std::fs::remove_file(have);
    Ok(target)
}

/// Writes the bitfield byte holding `piece` (its current value, so writes never go back).
pub(super) fn persist_bit(have: &Mutex<std::fs::File>, sched: &Mutex<Scheduler>, piece: u32) {
    let have = crate::lock(have);
    let byte = crate::lock(sched).bitfield()[piece as usize / 8];
    if let Err(e) = have.write_all_at(&[byte], u64::from(piece / 8)) {
        tracing::warn!(error = %e, "could not record a finished piece; it will be fetched again on resume");
    }
}

/// Most partial files [`list`] reports (the folder holds only what this node wrote).
pub const MAX_LISTED: usize = 1000;

/// A partial download on disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartialFile {
    /// Content id.
    pub hash: ContentId,
    /// The `.part` file.
    pub path: PathBuf,
    /// File size (the `.part` file is sized to it once the manifest arrived).
    pub size: u64,
    /// Bytes of the pieces marked verified in the `.have` bitfield.
    pub verified_bytes: u64,
    /// The download job using it, if any (see [`crate::jobs`]).
    #[serde(default)]
    pub job: Option<u32>,
}

/// The partial files in `dir` (at most [`MAX_LISTED`], by content id); a missing folder has
/// none.
pub fn list(dir: &Path) -> std::io::Result<Vec<PartialFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".part"))
            .and_then(|hex| hex.parse::<ContentId>().ok())
        else {
            continue;
        };
        let size = entry.metadata()?.len();
        let (path, have) = paths(dir, &id);
        found.push(PartialFile {
            hash: id,
            path,
            size,
            verified_bytes: verified_bytes(&have, size),
            job: None,
        });
        if found.len() >= MAX_LISTED {
            break;
        }
    }
    found.sort_by_key(|p| p.hash);
    Ok(found)
}

/// Bytes of the pieces marked in the bitfield at `have` for a file of `size` bytes.
fn verified_bytes(have: &Path, size: u64) -> u64 {
    let piece = piece_size_for(size);
    let pieces = piece_count(size, piece);
    // At most MAX_PIECES bits: a longer file is not ours, and only its start is read.
    let mut bits = Vec::new();
    let read = std::fs::File::open(have).and_then(|f| {
        use std::io::Read;
        f.take(pieces.div_ceil(8)).read_to_end(&mut bits)
    });
    if read.is_err() {
        return 0;
    }
    (0..pieces)
        .filter(|i| {
            bits.get(*i as usize / 8)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
        })
        .map(|i| piece.min(size - i * piece))
        .sum()
}

/// Removes the partial file of `id` in `dir` and its bitfield; whether there was one.
pub fn remove(dir: &Path, id: &ContentId) -> std::io::Result<bool> {
    let (part, have) = paths(dir, id);
    let removed = match std::fs::remove_file(&part) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    match std::fs::remove_file(&have) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(removed),
        Err(e) => Err(e),
    }
}
