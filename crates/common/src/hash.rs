//! Content hashing: the content id and the BLAKE3 piece tree.
//!
//! The content id of a file is plain `blake3::hash` of its bytes (what `b3sum` prints).
//! A file is cut into pieces of `P` bytes, `P` a power of two between [`MIN_PIECE_SIZE`] and
//! whatever keeps the count at most [`MAX_PIECES`]. Every full piece covers a complete
//! BLAKE3 subtree, so its chaining value ("CV") can be computed on its own with
//! `blake3::hazmat` (`set_input_offset` + `finalize_non_root`).
//!
//! A [`Manifest`] is the file size, `P` and the CVs of all pieces. It is checked against the
//! content id by merging the CVs the way BLAKE3 builds its tree (the left subtree of a span of
//! `n` pieces holds the largest power of two of pieces smaller than `n`); the final merge is a
//! root merge that yields the content id. A file of at most one piece has no CVs: its single
//! piece is checked with `blake3::hash` directly.

use std::io::Read;

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use serde::{Deserialize, Serialize};

use crate::ContentId;

/// Smallest piece size (256 KiB): small enough for fine-grained scheduling, large enough that
/// per-request overhead stays negligible.
pub const MIN_PIECE_SIZE: u64 = 256 * 1024;

/// Most pieces a file may have. Bounds the manifest to 128 KiB of CVs (one wire frame) and
/// the downloader's bookkeeping; larger files get larger pieces.
pub const MAX_PIECES: u64 = 4096;

/// Largest piece size accepted from the network (64 MiB, i.e. files up to 256 GiB).
pub const MAX_PIECE_SIZE: u64 = 64 * 1024 * 1024;

/// Errors from hashing or checking content.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
    /// The manifest's shape is impossible (piece size, count or size out of range).
    #[error("malformed manifest: {0}")]
    Malformed(&'static str),
    /// The manifest does not hash to the content id.
    #[error("manifest does not match content id {0}")]
    Mismatch(ContentId),
    /// The input was not the length the manifest promised.
    #[error("input length {got} differs from expected {expected}")]
    Length {
        /// What the manifest says.
        expected: u64,
        /// What was read.
        got: u64,
    },
}

/// Piece size for a file of `size` bytes: the smallest power of two ≥ [`MIN_PIECE_SIZE`] that
/// keeps the piece count ≤ [`MAX_PIECES`].
pub fn piece_size_for(size: u64) -> u64 {
    let wanted = size.div_ceil(MAX_PIECES).max(MIN_PIECE_SIZE);
    wanted.next_power_of_two()
}

/// Number of pieces of a file of `size` bytes cut in pieces of `piece_size` (0 for empty).
pub fn piece_count(size: u64, piece_size: u64) -> u64 {
    size.div_ceil(piece_size)
}

/// The verifiable description of a file: size, piece size and the pieces' chaining values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// File size in bytes.
    pub size: u64,
    /// Piece size in bytes (a power of two).
    pub piece_size: u64,
    /// Chaining value of every piece; empty when the file has at most one piece.
    pub cvs: Vec<[u8; 32]>,
}

impl Manifest {
    /// Number of pieces (0 for an empty file).
    pub fn pieces(&self) -> u64 {
        piece_count(self.size, self.piece_size)
    }

    /// Byte range `(offset, len)` of piece `index`.
    pub fn piece_range(&self, index: u64) -> (u64, u64) {
        let offset = index * self.piece_size;
        (
            offset,
            self.piece_size.min(self.size.saturating_sub(offset)),
        )
    }

    /// Checks the manifest's shape and that its CVs hash to `id`. The size itself is only
    /// proven piece by piece (a CV commits to its piece's length), so a downloader also
    /// compares it with the size the index reported.
    pub fn verify(&self, id: &ContentId) -> Result<(), HashError> {
        if self.piece_size != piece_size_for(self.size) || self.piece_size > MAX_PIECE_SIZE {
            return Err(HashError::Malformed(
                "piece size does not follow from the file size",
            ));
        }
        let n = self.pieces();
        if n > MAX_PIECES {
            return Err(HashError::Malformed("too many pieces"));
        }
        if n == 0 && *id != ContentId::from(blake3::hash(b"")) {
            return Err(HashError::Mismatch(*id));
        }
        if n <= 1 {
            return if self.cvs.is_empty() {
                Ok(())
            } else {
                Err(HashError::Malformed("single-piece file carries CVs"))
            };
        }
        if self.cvs.len() as u64 != n {
            return Err(HashError::Malformed("CV count differs from piece count"));
        }
        if root_of(&self.cvs) == *id {
            Ok(())
        } else {
            Err(HashError::Mismatch(*id))
        }
    }

    /// Checks the bytes of piece `index` against this (already verified) manifest and `id`.
    pub fn verify_piece(&self, id: &ContentId, index: u64, data: &[u8]) -> bool {
        let (_, len) = self.piece_range(index);
        if data.len() as u64 != len {
            return false;
        }
        let mut verifier = self.piece_verifier(index);
        verifier.update(data);
        verifier.verify(self, id)
    }

    /// An incremental checker for piece `index`: feed it the piece's bytes as they arrive.
    pub fn piece_verifier(&self, index: u64) -> PieceVerifier {
        let mut hasher = blake3::Hasher::new();
        if !self.cvs.is_empty() {
            hasher.set_input_offset(index * self.piece_size);
        }
        PieceVerifier { hasher, index }
    }
}

/// Hashes one piece incrementally; see [`Manifest::piece_verifier`].
#[derive(Clone, Debug)]
pub struct PieceVerifier {
    hasher: blake3::Hasher,
    index: u64,
}

impl PieceVerifier {
    /// Feeds the next bytes of the piece.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Whether the bytes fed so far are exactly the piece (length included).
    pub fn verify(&self, manifest: &Manifest, id: &ContentId) -> bool {
        let (_, len) = manifest.piece_range(self.index);
        if self.index >= manifest.pieces().max(1) || self.hasher.count() != len {
            return false;
        }
        if manifest.cvs.is_empty() {
            return ContentId::from(self.hasher.finalize()) == *id;
        }
        self.hasher.finalize_non_root() == manifest.cvs[self.index as usize]
    }
}

/// Splits a span of CVs as BLAKE3 does: the left side gets the largest power of two < len.
fn split(cvs: &[ChainingValue]) -> (&[ChainingValue], &[ChainingValue]) {
    let left = (cvs.len() as u64 - 1).next_power_of_two() as usize;
    let left = if left >= cvs.len() { left / 2 } else { left };
    cvs.split_at(left)
}

/// The content id of a file of two or more pieces, from its piece CVs (the root merge).
fn root_of(cvs: &[ChainingValue]) -> ContentId {
    let (left, right) = split(cvs);
    merge_subtrees_root(&merge_span(left), &merge_span(right), Mode::Hash).into()
}

/// Merges a non-empty span of piece CVs into the CV of its subtree (non-root).
fn merge_span(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let (left, right) = split(cvs);
    merge_subtrees_non_root(&merge_span(left), &merge_span(right), Mode::Hash)
}

/// Hashes a whole input of `size` bytes: its content id and manifest in one pass.
pub fn hash_reader(mut input: impl Read, size: u64) -> Result<(ContentId, Manifest), HashError> {
    let piece_size = piece_size_for(size);
    let pieces = piece_count(size, piece_size);
    let mut buf = vec![0u8; piece_size.min(size.max(1)) as usize];
    if pieces <= 1 {
        let mut hasher = blake3::Hasher::new();
        let got = read_piece(&mut input, &mut buf, &mut hasher)?;
        check_end(&mut input, got, size)?;
        let manifest = Manifest {
            size,
            piece_size,
            cvs: Vec::new(),
        };
        return Ok((hasher.finalize().into(), manifest));
    }
    let mut cvs = Vec::with_capacity(pieces as usize);
    let mut total = 0u64;
    for index in 0..pieces {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(index * piece_size);
        let got = read_piece(&mut input, &mut buf, &mut hasher)?;
        total += got;
        cvs.push(hasher.finalize_non_root());
        if got < piece_size && index + 1 < pieces {
            break;
        }
    }
    check_end(&mut input, total, size)?;
    let id = root_of(&cvs);
    let manifest = Manifest {
        size,
        piece_size,
        cvs,
    };
    Ok((id, manifest))
}

/// Fills `buf` (or until EOF), feeding what was read to `hasher`; returns the bytes read.
fn read_piece(
    input: &mut impl Read,
    buf: &mut [u8],
    hasher: &mut blake3::Hasher,
) -> Result<u64, HashError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    hasher.update(&buf[..filled]);
    Ok(filled as u64)
}

fn check_end(input: &mut impl Read, got: u64, expected: u64) -> Result<(), HashError> {
    let mut probe = [0u8; 1];
    let extra = input.read(&mut probe)? as u64;
    if got != expected || extra != 0 {
        return Err(HashError::Length {
            expected,
            got: got + extra,
        });
    }
    Ok(())
}

/// Hashes a file on disk: content id and manifest.
pub fn hash_file(path: &std::path::Path) -> Result<(ContentId, Manifest), HashError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    // Pieces are read whole into one buffer, so a BufReader would only add a copy.
    hash_reader(file, size)
}

#[cfg(test)]
mod tests;
