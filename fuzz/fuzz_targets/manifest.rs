//! Manifests (the answer to `GetManifest`: `hash::Manifest`) as a downloader decodes and
//! verifies them, and the piece checks it runs against a verified one. The input is a
//! postcard `Manifest` followed by knob bytes (piece indexes, file bytes).
//! Checks: no panic; a decoded manifest round-trips; `verify` accepts only a well-shaped
//! manifest (piece size a power of two that follows from the size, ≤ `MAX_PIECE_SIZE`, at
//! most `MAX_PIECES` pieces, CVs exactly for multi-piece files) and, with more than one
//! piece, only for the content id its CVs hash to; piece ranges of a verified manifest tile
//! the file; piece checks on any index or length answer without panicking; and a small file
//! hashed by `hash_reader` verifies, its piece checks out, and a flipped bit does not.
#![no_main]

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, Mode};
use kazoo_common::hash::{hash_reader, piece_size_for, Manifest, MAX_PIECES, MAX_PIECE_SIZE};
use kazoo_common::ContentId;
use kazoo_fuzz::{check_round_trip, ops::take};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if let Some(manifest) = take::<Manifest>(&mut rest) {
        check_round_trip(&manifest);
        check_manifest(&manifest, rest);
    }
    // The knob bytes (or the whole input) as a small file.
    check_file(rest);
});

fn check_manifest(m: &Manifest, knobs: &[u8]) {
    let ids = [
        ContentId([0; 32]),
        blake3::hash(b"").into(),
        root(&m.cvs).unwrap_or(ContentId([1; 32])),
    ];
    for id in ids {
        let Ok(()) = m.verify(&id) else {
            continue;
        };
        assert!(m.piece_size.is_power_of_two());
        assert_eq!(m.piece_size, piece_size_for(m.size));
        assert!(m.piece_size <= MAX_PIECE_SIZE);
        let pieces = m.pieces();
        assert!(pieces <= MAX_PIECES);
        if pieces > 1 {
            assert_eq!(m.cvs.len() as u64, pieces);
            assert_eq!(
                Some(id),
                root(&m.cvs),
                "multi-piece manifest verified for another id"
            );
        } else {
            assert!(m.cvs.is_empty());
        }
        let mut next = 0;
        for index in 0..pieces {
            let (offset, len) = m.piece_range(index);
            assert_eq!(offset, next, "pieces tile the file");
            assert!(len > 0 && len <= m.piece_size);
            next = offset + len;
        }
        assert_eq!(next, m.size, "pieces cover the file");
        // Piece checks with indexes from the knobs (in and out of range) and short data.
        for chunk in knobs.chunks(4).take(8) {
            let mut raw = [0u8; 4];
            raw[..chunk.len()].copy_from_slice(chunk);
            let index = u64::from(u32::from_le_bytes(raw)) % (pieces + 2);
            let bytes = &knobs[..knobs.len().min(64)];
            let ok = m.verify_piece(&id, index, bytes);
            if index >= pieces.max(1) {
                assert!(!ok, "piece {index} of {pieces} verified");
            }
            let mut verifier = m.piece_verifier(index);
            verifier.update(bytes);
            assert_eq!(
                verifier.verify(m, &id),
                ok,
                "incremental and whole checks agree"
            );
        }
    }
}

/// The content id BLAKE3 gives a file of two or more pieces with these CVs (the tree rule,
/// independent of the project's implementation).
fn root(cvs: &[[u8; 32]]) -> Option<ContentId> {
    if cvs.len() < 2 {
        return None;
    }
    let (left, right) = split(cvs);
    Some(merge_subtrees_root(&span(left), &span(right), Mode::Hash).into())
}

fn span(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let (left, right) = split(cvs);
    merge_subtrees_non_root(&span(left), &span(right), Mode::Hash)
}

/// The left subtree holds the largest power of two of pieces smaller than the span.
fn split(cvs: &[ChainingValue]) -> (&[ChainingValue], &[ChainingValue]) {
    let mut left = 1;
    while left * 2 < cvs.len() {
        left *= 2;
    }
    cvs.split_at(left)
}

fn check_file(bytes: &[u8]) {
    let (id, m) = hash_reader(bytes, bytes.len() as u64).expect("an in-memory file hashes");
    assert_eq!(id, ContentId::from(blake3::hash(bytes)));
    m.verify(&id).expect("a hashed file's manifest verifies");
    assert!(m.verify_piece(&id, 0, bytes));
    assert!(
        hash_reader(bytes, bytes.len() as u64 + 1).is_err(),
        "short input accepted"
    );
    if let Some((&first, tail)) = bytes.split_first() {
        let mut changed = vec![first ^ 1];
        changed.extend_from_slice(tail);
        assert!(!m.verify_piece(&id, 0, &changed), "a flipped bit verified");
        assert!(!m.verify_piece(&id, 0, tail), "a short piece verified");
    }
}
