use proptest::prelude::*;

use super::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

fn check(len: usize) {
    let bytes = data(len, 7);
    let (id, manifest) = hash_reader(&bytes[..], len as u64).unwrap();
    assert_eq!(
        id,
        ContentId::from(blake3::hash(&bytes)),
        "id for len {len}"
    );
    manifest.verify(&id).unwrap();
    for index in 0..manifest.pieces() {
        let (offset, plen) = manifest.piece_range(index);
        let piece = &bytes[offset as usize..(offset + plen) as usize];
        assert!(
            manifest.verify_piece(&id, index, piece),
            "piece {index} of {len}"
        );
        let mut bad = piece.to_vec();
        bad[0] ^= 1;
        assert!(!manifest.verify_piece(&id, index, &bad));
    }
}

#[test]
fn matches_blake3_at_edges() {
    let p = MIN_PIECE_SIZE as usize;
    for len in [
        0,
        1,
        1023,
        1024,
        1025,
        p - 1,
        p,
        p + 1,
        2 * p,
        2 * p + 1,
        3 * p + 5,
        4 * p,
        5 * p - 1,
        7 * p + 1024,
        8 * p + 1,
    ] {
        check(len);
    }
}

#[test]
fn piece_size_is_bounded() {
    assert_eq!(piece_size_for(0), MIN_PIECE_SIZE);
    assert_eq!(piece_size_for(1 << 30), MIN_PIECE_SIZE);
    assert_eq!(piece_size_for((1 << 30) + 1), 2 * MIN_PIECE_SIZE);
    for size in [1u64, 1 << 20, 1 << 34, 1 << 38] {
        let p = piece_size_for(size);
        assert!(p.is_power_of_two());
        assert!(piece_count(size, p) <= MAX_PIECES);
    }
}

#[test]
fn tampered_manifest_is_rejected() {
    let bytes = data(3 * MIN_PIECE_SIZE as usize + 5, 1);
    let (id, manifest) = hash_reader(&bytes[..], bytes.len() as u64).unwrap();
    let mut bad = manifest.clone();
    bad.cvs[1][0] ^= 1;
    assert!(matches!(bad.verify(&id), Err(HashError::Mismatch(_))));
    let mut short = manifest.clone();
    short.cvs.pop();
    assert!(matches!(short.verify(&id), Err(HashError::Malformed(_))));
    let mut odd = manifest.clone();
    odd.piece_size += 1;
    assert!(odd.verify(&id).is_err());
    let mut bigger = manifest;
    bigger.piece_size *= 2;
    assert!(
        bigger.verify(&id).is_err(),
        "piece size must follow from the size"
    );
}

#[test]
fn an_empty_manifest_only_verifies_the_empty_file() {
    let (id, manifest) = hash_reader(&b""[..], 0).unwrap();
    assert!(manifest.verify(&id).is_ok());
    assert!(manifest.verify(&ContentId([1; 32])).is_err());
}

#[test]
fn short_input_is_an_error() {
    let bytes = data(1000, 3);
    assert!(hash_reader(&bytes[..], 2000).is_err());
    assert!(hash_reader(&bytes[..], 10).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_size_matches_blake3(len in 0usize..(9 * MIN_PIECE_SIZE as usize)) {
        check(len);
    }
}
