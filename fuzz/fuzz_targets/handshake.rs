//! Handshake frames (`Handshake`, and `Hello` alone) as a node decodes them with
//! `wire::read_frame`. Checks: no panic, a decoded message round-trips within `MAX_FRAME`,
//! the advertised address derived from a `Hello` keeps the IP it was seen at, and a
//! refusal's redirect list is cut to `MAX_SUCCESSION` as the dialler does.
#![no_main]

use std::net::SocketAddr;

use kazoo_common::transport::advertised_addr;
use kazoo_common::wire::{Handshake, Hello, MAX_SUCCESSION};
use kazoo_fuzz::{check_round_trip, decode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let remote = SocketAddr::from(([192, 0, 2, 1], 50_000));
    if let Some(handshake) = decode_body::<Handshake>(data) {
        check_round_trip(&handshake);
        match &handshake {
            Handshake::Hello(hello) => check_hello(hello, remote),
            Handshake::Refused {
                code,
                reason,
                redirect,
            } => {
                let kept: Vec<_> = redirect.iter().take(MAX_SUCCESSION).collect();
                assert!(kept.len() <= MAX_SUCCESSION);
                let _ = (format!("{code:?}"), reason.len());
            }
        }
    }
    if let Some(hello) = decode_body::<Hello>(data) {
        check_round_trip(&hello);
        check_hello(&hello, remote);
    }
});

fn check_hello(hello: &Hello, remote: SocketAddr) {
    let advertised = advertised_addr(remote, hello);
    assert_eq!(
        advertised.ip(),
        remote.ip(),
        "an advertised address keeps the seen IP"
    );
    let port = if hello.listen_port == 0 {
        remote.port()
    } else {
        hello.listen_port
    };
    assert_eq!(advertised.port(), port);
    let _ = hello.role.as_str();
}
