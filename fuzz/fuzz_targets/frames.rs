//! The frame reader (`wire::read_frame_bytes`: 4-byte big-endian length, then the body) on
//! an arbitrary byte stream, delivered a few bytes per read, with the wire's limit or a small
//! one. Checks: no panic; no body over the limit; an oversized length is refused after
//! reading only its 4-byte prefix (before allocating for it); a frame consumes exactly its
//! prefix and body; a clean end (`Finished`) is told from a truncated frame; and each body
//! goes through `decode_request`, whose unknown-kind / malformed verdict must agree with
//! postcard.
#![no_main]

use kazoo_common::wire::{self, FrameError, Request, MAX_FRAME};
use kazoo_fuzz::{block_on, check_round_trip, Trickle};
use libfuzzer_sys::fuzz_target;

/// Variants of `Request` (a kind at or past this is unknown, not malformed).
const REQUEST_KINDS: u64 = 9;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    // Bits 0-3: bytes per read (0: as many as asked). Bit 4: a small limit from bits 5-7.
    let chunk = match knob & 0x0f {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let max = if knob & 0x10 != 0 {
        usize::from(knob >> 5) * 8
    } else {
        MAX_FRAME
    };
    let mut input = Trickle::new(stream, chunk);
    for _ in 0..64 {
        let before = input.consumed;
        let left = input.remaining();
        match block_on(wire::read_frame_bytes(&mut input, max)) {
            Ok(body) => {
                let prefix: [u8; 4] = stream[before..before + 4].try_into().unwrap();
                assert_eq!(u32::from_be_bytes(prefix) as usize, body.len());
                assert!(body.len() <= max, "body of {} over {max}", body.len());
                assert_eq!(input.consumed - before, 4 + body.len());
                check_request(&body);
            }
            Err(FrameError::Finished) => {
                assert_eq!(left, 0, "Finished with {left} bytes left");
                break;
            }
            Err(FrameError::Oversized { len, max: limit }) => {
                assert_eq!(limit, max);
                assert!(len > max);
                assert_eq!(input.consumed - before, 4, "read past an oversized prefix");
                break;
            }
            Err(FrameError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
                assert!(left > 0);
                assert_eq!(
                    input.remaining(),
                    0,
                    "a truncated frame must be read to the end"
                );
                break;
            }
            Err(other) => panic!("the frame reader itself never decodes: {other}"),
        }
    }
});

/// `decode_request` on a body: a request that round-trips, or an unknown kind (≥ the number
/// of variants), or malformed — consistently with postcard.
fn check_request(body: &[u8]) {
    let plain = postcard::from_bytes::<Request>(body);
    match wire::decode_request(body) {
        Ok(request) => {
            assert_eq!(plain.ok().as_ref(), Some(&request));
            check_round_trip(&request);
        }
        Err(FrameError::UnknownMessage(kind)) => {
            assert!(kind >= REQUEST_KINDS, "known kind {kind} called unknown");
            assert!(plain.is_err());
        }
        Err(FrameError::Malformed(_)) => assert!(plain.is_err()),
        Err(other) => panic!("decode_request: {other}"),
    }
}
