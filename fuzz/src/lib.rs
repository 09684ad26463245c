//! Shared parts of kazoo's fuzz targets: driving the async frame reader over an in-memory
//! stream, round-trip checks, the limits a conforming receiver enforces (so what a node
//! sends can be checked against them), and the op sequences the state-machine targets
//! decode from their input (see [`ops`]).
//!
//! Seeds for every target are written by `examples/seed.rs` from these same types.

pub mod ops;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use kazoo_common::wire::{
    self, Hit, Notice, PeerMessage, Provider, Response, HITS_PER_FRAME, MAX_FILTER_PATCH,
    MAX_GOSSIP, MAX_HOPS, MAX_LEAVES_PER_SUPERNODE, MAX_PROVIDERS, MAX_QUERY_LEN, MAX_QUERY_WORDS,
    MAX_SUCCESSION,
};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

/// Most peers listed in a `Peers` message (the overlay's own bound on what it accepts).
pub const MAX_PEER_LIST: usize = 64;
/// Most node ids in a query's `via` list.
pub const MAX_VIA: usize = 64;

/// Runs a future that never waits (all our readers are in memory) to completion.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("an in-memory read never waits"),
    }
}

/// An in-memory stream that hands out at most `chunk` bytes per read (so the frame reader's
/// partial-read paths run) and counts what was consumed.
pub struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    /// Bytes read so far.
    pub consumed: usize,
}

impl<'a> Trickle<'a> {
    /// A stream over `data`, `chunk` (≥ 1) bytes per read at most.
    pub fn new(data: &'a [u8], chunk: usize) -> Self {
        Trickle {
            data,
            chunk: chunk.max(1),
            consumed: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.consumed
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.chunk).min(self.remaining());
        let start = self.consumed;
        buf.put_slice(&self.data[start..start + n]);
        self.consumed += n;
        Poll::Ready(Ok(()))
    }
}

/// `body` as one frame (4-byte big-endian length, then the body).
pub fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Decodes `body` as a `T` the way a node does: through [`wire::read_frame`] on a frame
/// holding it. A body over [`wire::MAX_FRAME`] must be refused without decoding.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    let frame = frame_of(body);
    match block_on(wire::read_frame::<T>(&mut &frame[..])) {
        Ok(msg) => {
            assert!(body.len() <= wire::MAX_FRAME, "an oversized frame decoded");
            Some(msg)
        }
        Err(e) => {
            assert!(
                e.is_violation(),
                "a whole frame failed as {e}, not as a violation"
            );
            None
        }
    }
}

/// A decoded message encodes as a frame within [`wire::MAX_FRAME`] that decodes to itself.
pub fn check_round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame = wire::encode_frame(msg).expect("a decoded message encodes within MAX_FRAME");
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix");
    let back: T = block_on(wire::read_frame(&mut &frame[..])).expect("a re-encoded frame decodes");
    assert_eq!(&back, msg, "round trip changed the message");
}

/// Whether a `PeerMessage` is within the limits the overlay enforces on receipt (a peer
/// that sends one outside them is disconnected): `Err` names the limit.
pub fn peer_message_limits(msg: &PeerMessage) -> Result<(), &'static str> {
    match msg {
        PeerMessage::Supernodes(list) if list.len() > MAX_GOSSIP => Err("gossip list"),
        PeerMessage::Peers(list) if list.len() > MAX_PEER_LIST => Err("peer list"),
        PeerMessage::Filter { add, remove, .. } | PeerMessage::Reach { add, remove, .. }
            if add.len() > MAX_FILTER_PATCH || remove.len() > MAX_FILTER_PATCH =>
        {
            Err("filter patch")
        }
        PeerMessage::Query {
            words,
            hops_left,
            via,
            ..
        } => {
            let bytes: usize = words.iter().map(String::len).sum();
            if *hops_left > MAX_HOPS {
                Err("hops")
            } else if words.len() > MAX_QUERY_WORDS || bytes > MAX_QUERY_LEN {
                Err("query size")
            } else if via.len() > MAX_VIA {
                Err("via list")
            } else {
                Ok(())
            }
        }
        PeerMessage::Hits { hits, .. } if hits.len() > HITS_PER_FRAME => Err("hits per frame"),
        PeerMessage::Connect { hops_left, .. } if *hops_left > MAX_HOPS => Err("hops"),
        PeerMessage::Load {
            leaves, max_leaves, ..
        } if leaves > max_leaves || *max_leaves as usize > MAX_LEAVES_PER_SUPERNODE => Err("load"),
        _ => Ok(()),
    }
}

/// Whether a `Notice` is within the limits a leaf enforces on receipt.
pub fn notice_limits(notice: &Notice) -> Result<(), &'static str> {
    match notice {
        Notice::Succession { heirs, supernodes }
            if heirs.len() > MAX_SUCCESSION || supernodes.len() > MAX_SUCCESSION =>
        {
            Err("succession lists")
        }
        Notice::Redirect { to, .. } if to.len() > MAX_SUCCESSION => Err("redirect list"),
        _ => Ok(()),
    }
}

/// Checks one hit as a supernode may send it: at most [`MAX_PROVIDERS`] distinct providers,
/// and at least as many sources as providers listed.
pub fn check_hit(hit: &Hit) {
    assert!(
        hit.providers.len() <= MAX_PROVIDERS,
        "{} providers in a hit",
        hit.providers.len()
    );
    assert!(
        hit.sources as usize >= hit.providers.len(),
        "{} sources but {} providers",
        hit.sources,
        hit.providers.len()
    );
    assert_distinct(&hit.providers);
}

/// No node is listed twice.
pub fn assert_distinct(providers: &[Provider]) {
    for (i, p) in providers.iter().enumerate() {
        assert!(
            !providers[..i].iter().any(|q| q.node == p.node),
            "provider {:?} listed twice",
            p.node
        );
    }
}

/// Checks a response a supernode sends: the per-frame limits, and that it encodes.
pub fn check_response_limits(response: &Response) {
    match response {
        Response::Hits(hits) => {
            assert!(
                hits.len() <= HITS_PER_FRAME,
                "{} hits in a frame",
                hits.len()
            );
            hits.iter().for_each(check_hit);
        }
        Response::Providers(list) => {
            assert!(list.len() <= MAX_PROVIDERS, "{} providers", list.len());
            assert_distinct(list);
        }
        _ => {}
    }
    wire::encode_frame(response).expect("a response encodes within MAX_FRAME");
}
