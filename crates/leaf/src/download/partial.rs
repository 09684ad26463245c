//! The partial file of a download and its bitfield: where they live, opening them (pieces
//! marked done are re-verified on resume), recording finished pieces, and moving the finished
//! file into place.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kazoo_common::hash::Manifest;
use kazoo_common::ContentId;

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
