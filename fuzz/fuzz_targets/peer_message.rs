//! `PeerMessage` frames as a supernode decodes them from a peer (`wire::read_frame`).
//! Checks: no panic; a decoded message round-trips within `MAX_FRAME`; the receiver's limit
//! checks (gossip, peer list, filter patch, query bounds and hops, hits per frame, load)
//! classify it without panicking, and filter positions fold into the reach space.
#![no_main]

use kazoo_common::wire::PeerMessage;
use kazoo_fuzz::{check_round_trip, decode_body, peer_message_limits};
use kazoo_supernode::filter::{fold, REACH_BITS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(msg) = decode_body::<PeerMessage>(data) else {
        return;
    };
    check_round_trip(&msg);
    let within = peer_message_limits(&msg);
    if let PeerMessage::Filter { add, remove, .. } | PeerMessage::Reach { add, remove, .. } = &msg {
        if within.is_ok() {
            for pos in add.iter().chain(remove) {
                assert!(fold(*pos) < 1 << REACH_BITS);
            }
        }
    }
});
