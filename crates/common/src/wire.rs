//! The kazoo wire protocol, version 1. This module doc is the specification.
//!
//! # Transport
//! QUIC with mutual TLS 1.3 (see [`crate::tls`]), ALPN [`ALPN`] (`kazoo/1`). A node id is the
//! ed25519 key in the peer's certificate. Requests flow from the dialler to the acceptor only
//! (a node that wants something from a peer dials it). A future incompatible protocol gets a
//! new ALPN, so it fails the TLS handshake; the `version` in `Hello` tells revisions that
//! share an ALPN apart.
//!
//! # Framing
//! Every message is a *frame*: a 4-byte big-endian length `L` followed by `L` bytes of
//! [postcard](https://docs.rs/postcard)-encoded message. `L` ≤ [`MAX_FRAME`]; a longer length
//! prefix is a protocol violation and the reader stops before allocating anything.
//!
//! # Handshake
//! The dialler opens the first bidirectional stream and sends a [`Handshake::Hello`]; the
//! acceptor answers with its own `Hello`, or with [`Handshake::Refused`] and then closes the
//! connection with the matching [`CloseCode`]. Both `Hello`s (and TLS before them) must be
//! through within [`HANDSHAKE_TIMEOUT`], else the side that waits gives up. An acceptor
//! taking more than [`HANDSHAKE_RATE`] handshakes per second makes further diallers first
//! prove their address with a QUIC Retry. The acceptor checks that
//! * `version` equals [`PROTOCOL_VERSION`] (else [`ErrorCode::VersionMismatch`],
//!   [`CloseCode::VERSION_MISMATCH`]);
//! * `node_id` equals the key in the TLS certificate (else [`CloseCode::IDENTITY_MISMATCH`]);
//! * `network_proof` is valid when the acceptor is in a private network (`network.secret`)
//!   and absent when it is not (else [`ErrorCode::WrongNetwork`],
//!   [`CloseCode::WRONG_NETWORK`]). The proof is BLAKE3 keyed by
//!   `derive_key("kazoo 2026 network secret v1", secret)` over 32 bytes of TLS exporter
//!   keying material (label `EXPORTER-kazoo-network-proof`, context `dialler` or
//!   `acceptor` for the sender's side): bound to this TLS session, so neither replayable nor
//!   reflectable, and the secret never travels. The dialler checks the acceptor's proof the
//!   same way and closes with [`CloseCode::WRONG_NETWORK`];
//! * for [`Intent::Join`]: it is a supernode with room for another leaf (a full one refuses
//!   with `Busy` and a `redirect` list of its peers with room, and asks its best eligible
//!   leaf to promote with [`Notice::Promote`]; once that leaf has promoted and peered back,
//!   part of the full supernode's leaves get a [`Notice::Redirect`] to it), and for
//!   [`Intent::Peer`]: it is a supernode with room for another peer (else
//!   [`ErrorCode::NotSupernode`] / [`ErrorCode::Busy`]).
//!
//! The dialler checks version and identity of the reply. The handshake stream then stays
//! open as the *control stream* for the life of the connection. On a supernode peering
//! ([`Intent::Peer`]) both sides send [`PeerMessage`] frames on it; on a join
//! ([`Intent::Join`]) the supernode sends [`Notice`] frames to its leaf; nothing travels on it
//! from dialler to acceptor otherwise, and a byte there is a protocol violation. A leaf's
//! `Hello.capacity` > 0 (its capacity score) says it is eligible to become a supernode; its
//! supernode dials it back (`Fetch`) at its advertised address — the IP it is seen at, with
//! its `listen_port` — and lists it as an heir only if that answers with the same key within
//! [`DIAL_BACK_TIMEOUT`]. Every joining leaf is dialled back this way and told the outcome,
//! with the address its connection comes from, in a [`Notice::Reachability`] (address
//! discovery: a leaf behind a NAT learns its mapping).
//!
//! ## Reachability
//! The dial back must come from an address the leaf never sent to: a NAT lets in the
//! answers to the leaf's own packets, and an address-restricted one lets in anything from
//! an IP the leaf sent to — the supernode's. So a supernode with a peering asks a peer (on
//! a stream of the peering, like `Relay`) with `DialBack { leaf, addr }`; the peer dials
//! from a fresh socket of its own and answers `DialedBack { answered }` (AutoNAT-style: a
//! witness at another IP). A supernode without peers, or whose peer did not answer, dials
//! from a fresh socket itself, which still tells a firewall or a port-filtering NAT from an
//! open host. A witness the leaf itself sent to (a bootstrap entry it dialled while
//! joining) is let in by an address-restricted NAT too, so such a leaf can still pass. A
//! `DialBack` costs the asking peer a query token ([`PEER_QUERY_RATE`]), and the dial is
//! subject to the witness's own dial guard (an address that did not answer is left alone
//! for a while): a peer can make a witness send at most a few handshake packets per
//! address it names, never more than it could by dialling that address itself. An address
//! the guard knows as silent is answered `DialedBack { answered: false }` without a dial;
//! one the witness has no route to (an IPv6 address at a witness without IPv6) is refused
//! `Busy`, and the asker dials back itself.

//! # Supernode peering
//! Peers exchange known supernodes (`Supernodes`, node-cache gossip), their peer lists
//! (`Peers`), and routing filters (`Filter`: positions of the routing keys of the sender's
//! own index — each token's prefixes of 3 to 8 characters (1 to 8 for CJK and symbols; a
//! shorter token itself) and the first 4 bytes of each content id, so a prefix, folder or
//! hash-prefix search is routed exactly like a whole word (see the supernode's `query`
//! module); `Reach`: its peers' filters folded to 2^[`REACH_BITS`] positions),
//! sent whole on connect (`reset`) and as patches after. A query travels with an id and a
//! hop limit; an SN forwards it only to peers whose filter may match (or whose reach may
//! match, while two or more hops are left), answers with `Hits` back along the path, and
//! sends `Done` once it and everything it forwarded to have answered (or timed out). Each
//! side also announces its `Load` (leaves, `max_leaves`, demotable). A peer that sends more
//! than [`PEER_QUERY_RATE`] queries per second (burst: twice that) or malformed frames is
//! disconnected and neither re-dialled nor accepted for [`PEER_PENALTY`].
//!
//! Peers may lie in well-formed messages, so what they say is checked, not believed:
//! * query ids are unpredictable (a keyed BLAKE3 stream under a secret drawn from the OS
//!   CSPRNG), so a neighbour cannot send the next ids first and have the origin's searches
//!   dropped as duplicates;
//! * a filter with more than [`MAX_FILTER_SET`] positions set gets its sender disconnected;
//!   a reach with more than [`MAX_REACH_SET`] is never matched (an exact-id lookup, like
//!   any query, is routed only by a filter or reach under its bound);
//! * gossiped supernodes are only dial *candidates* (at most [`MAX_CANDIDATES_PER_PEER`]
//!   per gossiping peer, [`MAX_CANDIDATES`] in all); one enters the host cache (and the
//!   saved `hostcache.json`) only once a peering handshake with it has succeeded;
//! * every hit a peer sends back is validated: providers with an implausible address are
//!   dropped (multicast, broadcast, port 0, loopback from a peer that is not; an
//!   unspecified IP means "the peer that answered"; either IP family is fine whatever the
//!   peer's connection, as dual-stack supernodes index both, and a v4-mapped IPv6 address is
//!   taken as the IPv4 address it maps),
//!   at most [`MAX_PROVIDERS`] kept, a hit left with none is dropped; names have control,
//!   bidi and other format characters replaced and are cut to [`MAX_NAME_LEN`] bytes; a hit's
//!   `sources` is not believed — the origin shows the number of distinct providers it got;
//!   per query, at most 2 × `max_results` hits from one peer are kept (beyond
//!   [`MAX_PEER_HITS`] the peer is disconnected);
//! * succession notices name only peers whose peering has lasted a while (the supernode's
//!   `timing::PEER_TENURE`), so a supernode that just peered cannot capture leaves.
//!
//! # Requests
//! After the handshake the dialler opens one bidirectional stream per [`Request`], sends the
//! request frame and finishes its send side. The acceptor answers on the same stream:
//!
//! | request | answer |
//! |---|---|
//! | `Register` (leaf → its SN) | `Registered` |
//! | `Unregister` (leaf → its SN) | `Registered` |
//! | `Search` (leaf → its SN) | zero or more `Hits` frames, then `End` |
//! | `Lookup` (leaf → its SN) | `Providers` |
//! | `ReportUnreachable` (leaf → its SN) | `Registered { total: 0 }` |
//! | `Connect` (leaf → its SN) | `Connecting`, or `Error(NotFound)` |
//! | `Relay` (leaf → its SN, or SN → the peer its target's hits came from) | `Relaying`, then relay frames both ways; or `Error(NotFound / Busy / BadRequest)` |
//! | `RelayAccept` (leaf → its SN, asked by [`Notice::Relay`]) | `Relaying`, then relay frames both ways; or `Error(NotFound)` |
//! | `GetManifest` (any → a provider) | `Manifest` |
//! | `GetPiece` (any → a provider) | `Piece { len }` then exactly `len` raw bytes |
//! | `Browse` (any → any node) | `Files`, or `Error(NotBrowsable)` |
//! | `DialBack` (SN → a peer, on a stream of the peering) | `DialedBack`, or `Error(Busy)` |
//!
//! Any request may instead be answered by [`Response::Error`]. At most
//! [`MAX_CONCURRENT_STREAMS`] streams, the control stream included, may be open at once on
//! one connection (enforced by QUIC stream credit). A request must arrive within
//! [`REQUEST_TIMEOUT`] of its stream opening, and an answer frame within [`ANSWER_TIMEOUT`] of
//! the request. A joined leaf may start [`LEAF_QUERY_RATE`] searches per second (burst: one
//! second's worth) and register [`INDEX_RATE`] entries per second (burst: a whole share list;
//! beyond that the supernode reads more slowly). A `Fetch` connection gets no more than
//! [`MAX_FETCH_PER_IP`] siblings from one IP and is closed after [`FETCH_IDLE`] without a
//! request stream.
//!
//! Provider lists (in `Providers` and in hits) list first the leaves whose listen address
//! answered the supernode's dial back (every joining leaf is dialled back once), so sources
//! at addresses that never answer cannot crowd out real ones.
//!
//! # Reaching a source that cannot be dialled
//! A downloader first dials a source at its listed address (where it answered its
//! supernode's dial back, else where its connection comes from: behind a NAT, the NAT's
//! mapping of its listening socket). If that fails, it sends `Connect { target }` to its own
//! supernode, which asks the target — its own leaf directly, or through the peer the target's
//! hits came from ([`PeerMessage::Connect`], at most [`MAX_HOPS`] hops back along the hits'
//! path) — with [`Notice::Connect`] to dial the downloader at the address the downloader's
//! supernode sees it at, from its listening socket, with [`Intent::Reverse`]. Meanwhile the
//! downloader dials the target's listed address again: between two NATs with
//! endpoint-independent mappings the two sides' packets open each other's NAT (a hole
//! punch). Whichever connection comes up first is used. The supernode is the punch's clock
//! (the part DCUtR does with a measured RTT): it sends `Connecting` to the downloader and
//! the notice towards the target at one moment, each side starts dialling when its message
//! arrives, and both keep dialling — the target up to [`REVERSE_TRIES`] times, the downloader
//! until a connection (or the relay) is up, each dial [`REVERSE_RETRY`] after the last one
//! failed — so their packets cross whatever the difference of their one-way delays. A node dials for a reverse
//! connection only when its own supernode asks, at most [`REVERSE_RATE`] per second, and
//! an acceptor takes an `Intent::Reverse` connection only from a node it asked for one.
//!
//! ## Relay
//! When neither a dial nor a reverse connection has come up [`RELAY_AFTER`] after the
//! `Connect` (both sides behind NATs that map each destination to a new port, or filter by
//! port), the downloader sends `Relay { target, requester }` to its supernode. That supernode relays
//! itself if the target is its leaf; otherwise it passes the `Relay` on, on a stream of
//! its peering with the peer the target's hits came from, which must have the target as its
//! own leaf (one relay hop between supernodes at most). The supernode with the target sends
//! it [`Notice::Relay`] with a fresh random `circuit` id; the target opens a stream with
//! `RelayAccept { circuit }` within [`RELAY_ACCEPT_WAIT`] (or the relay is refused with
//! `Error(NotFound)`). Each relaying supernode answers `Relaying` and from then on copies
//! *relay frames* between the two streams: a 2-byte big-endian length `L`
//! (1 ≤ `L` ≤ [`MAX_RELAY_PACKET`]) and `L` bytes, one QUIC packet of a connection between
//! the two leaves. So the downloader and the target run an ordinary kazoo connection (TLS,
//! `Hello`, requests) through the relay, end to end: the relay sees only ciphertext, and
//! every piece is verified as on any path. A relay joins only the two streams of one
//! circuit — the asking leaf's (or peer's) and the target's own `RelayAccept` — never an
//! address. A leaf answers at most [`REVERSE_RATE`] `Notice::Relay` and `Notice::Connect`
//! together per second. Each supernode bounds what it relays: circuits at once
//! (`relay.max_circuits`, refused `Error(Busy)` beyond), bytes per second for all circuits
//! together (`relay.rate_kib`, frames wait for their turn), and each circuit's life
//! (`relay.max_secs`, then both streams are reset). A frame of length 0 or over
//! [`MAX_RELAY_PACKET`] ends the circuit.
//!
//! # Browsing
//! `Browse { start }` asks a node for its shared files (`kazoo browse`): the answer lists at
//! most [`BROWSE_PAGE`] of them, one per content id, sorted by name (then id), from position
//! `start` of that order, with the `total` the node shares; the asker sends the next
//! `start` for more. A node with `share.browsable = false` answers
//! `Error(NotBrowsable)`. Browse requests on a connection count against the same budget as
//! a leaf's searches ([`LEAF_QUERY_RATE`] per second; beyond it `Error(Busy)`). The
//! listing is what the node registers with its supernode, so browsing reveals nothing a
//! search could not find; an asker checks every entry like a search hit (names escaped,
//! at most [`MAX_NAME_LEN`] bytes, at most [`BROWSE_PAGE`] entries per answer).
//!
//! # Allowlists
//! A node with `network.allow` set accepts connections (any intent) only from the node ids
//! listed: any other dialler is refused after the `Hello` exchange with
//! [`ErrorCode::NotAllowed`] and the connection closed with [`CloseCode::REFUSED`]. It also
//! dials only nodes on its list: an acceptor whose proven id is not listed is closed with
//! [`CloseCode::REFUSED`] ("not in network.allow") before any request.
//!
//! `ReportUnreachable` tells the supernode which sources of a download could not be dialled
//! or served a bad manifest or piece. It is a claim, not a proof: the supernode leaves those sources out of the reporter's own
//! answers for a while, and moves a source that several distinct leaves reported to the end
//! of everyone's provider lists (never removes it for others); see the supernode's
//! `reports` module for the windows and table bounds.
//!
//! # Limits
//! | limit | value | on violation |
//! |---|---|---|
//! | frame size | [`MAX_FRAME`] | connection closed, [`CloseCode::PROTOCOL_VIOLATION`] |
//! | name (or path below the share root) length, UTF-8 bytes | [`MAX_NAME_LEN`] | request refused, [`ErrorCode::NameTooLong`] |
//! | words indexed per file name / per folder path / token bytes | 32 / 24 / 64 (the supernode's `tokenize` module) | the rest is not searchable |
//! | routing keys per token | 8 (prefixes up to 8 characters) | — |
//! | names of one file listed in an answer | 4 per file, at most `max_results` extra hits in all | not sent |
//! | name with no searchable word | — | request refused, [`ErrorCode::BadRequest`] |
//! | entries per `Register` frame | [`MAX_BATCH`] | request refused, [`ErrorCode::BadRequest`] |
//! | entries per leaf | [`MAX_ENTRIES_PER_LEAF`] (SN config may lower it) | request refused, [`ErrorCode::TooManyEntries`] |
//! | entries / accounted bytes of one SN's index | `supernode.max_index_entries` / `max_index_mib` | request refused, [`ErrorCode::IndexFull`] |
//! | index requests on a replaced or ended leaf session | — | request refused, [`ErrorCode::UnknownLeaf`]; the leaf re-joins |
//! | words per query / query bytes | [`MAX_QUERY_WORDS`] / [`MAX_QUERY_LEN`] | request refused, [`ErrorCode::BadRequest`] |
//! | results per search | [`MAX_RESULTS`] | excess results are not sent |
//! | providers per hit | [`MAX_PROVIDERS`] | excess providers are not sent |
//! | nodes per `ReportUnreachable` | [`MAX_REPORTED`] | request refused, [`ErrorCode::BadRequest`] |
//! | entries per `Files` answer | [`BROWSE_PAGE`] | asker drops the answer (the browse fails) |
//! | `Browse` requests per second on a connection | [`LEAF_QUERY_RATE`] (shared with searches) | request refused, [`ErrorCode::Busy`] |
//! | pieces per manifest | [`crate::hash::MAX_PIECES`] | manifest rejected |
//! | concurrent requests per connection | [`MAX_CONCURRENT_STREAMS`] | QUIC flow control |
//! | supernodes per gossip message | [`MAX_GOSSIP`] | peer disconnected |
//! | positions per filter patch | [`MAX_FILTER_PATCH`] | peer disconnected |
//! | query hops | [`MAX_HOPS`] | peer disconnected |
//! | entries per `Succession` list / `Redirect.to` | [`MAX_SUCCESSION`] | connection closed, [`CloseCode::PROTOCOL_VIOLATION`] |
//! | entries per `Refused.redirect` | [`MAX_SUCCESSION`] | excess entries ignored |
//! | hits per peer `Hits` message | [`HITS_PER_FRAME`] | peer disconnected |
//! | hits per `Response::Hits` frame | [`HITS_PER_FRAME`] | not checked per frame: a leaf stops reading after 4 × `max_results` + [`HITS_PER_FRAME`] hits |
//! | node ids per `Peers` message | [`MAX_PEER_LIST`] | peer disconnected |
//! | node ids per query `via` list | [`MAX_VIA`] | peer disconnected |
//! | `Load.max_leaves` / `Load.leaves` | [`MAX_LEAVES_PER_SUPERNODE`] / ≤ `max_leaves` | peer disconnected |
//! | filter / reach positions | below 2^[`FILTER_BITS`] / folded to 2^[`REACH_BITS`] | filter: position ignored; reach: folded |
//! | positions set in a peer's filter | [`MAX_FILTER_SET`] (3/4 of the space) | peer disconnected |
//! | positions set in a peer's reach | [`MAX_REACH_SET`] (3/4 of the space) | reach never matched |
//! | hits from one peer for one query | 2 × `max_results` kept; [`MAX_PEER_HITS`] | excess dropped; beyond [`MAX_PEER_HITS`] peer disconnected |
//! | gossiped supernodes not yet peered with | [`MAX_CANDIDATES_PER_PEER`] per gossiping peer, [`MAX_CANDIDATES`] in all | excess ignored (oldest evicted when all are taken) |
//! | queries per second from a peer (burst: twice) | [`PEER_QUERY_RATE`] | peer disconnected |
//! | peer disconnected for misbehaving | kept away for [`PEER_PENALTY`] | neither dialled nor accepted |
//! | searches per second from a leaf (burst: one second's) | [`LEAF_QUERY_RATE`] | search refused, [`ErrorCode::Busy`] |
//! | `Register`/`Unregister` entries per second from a leaf | [`INDEX_RATE`] | read more slowly |
//! | `Fetch` connections from one IP | [`MAX_FETCH_PER_IP`] | handshake refused, [`ErrorCode::Busy`] |
//! | `Fetch` connection without a request stream | [`FETCH_IDLE`] | connection closed |
//! | reverse connections a leaf makes per second (burst: twice) | [`REVERSE_RATE`] | excess `Notice::Connect` ignored |
//! | `PeerMessage::Connect` from a peer | one query token each ([`PEER_QUERY_RATE`]); `hops_left` ≤ [`MAX_HOPS`] | peer disconnected |
//! | relay frame length | 1 ..= [`MAX_RELAY_PACKET`] | circuit ended |
//! | relayed circuits at once / bytes per second / a circuit's life | `relay.max_circuits` / `relay.rate_kib` / `relay.max_secs` per supernode | `Error(Busy)` / frames wait / circuit ended |
//! | target's `RelayAccept` after `Notice::Relay` | [`RELAY_ACCEPT_WAIT`] | `Error(NotFound)` to the asker |
//! | handshakes per second | [`HANDSHAKE_RATE`] | QUIC Retry first |
//! | handshake (TLS + both `Hello`s) | [`HANDSHAKE_TIMEOUT`] | connection given up |
//! | request after its stream opens | [`REQUEST_TIMEOUT`] | stream dropped |
//! | answer frame after the request | [`ANSWER_TIMEOUT`] | request failed (dialler) |
//! | dial back to an eligible leaf | [`DIAL_BACK_TIMEOUT`] | leaf not listed as an heir |
//! | redirected leaf still connected | [`REDIRECT_GRACE`] | connection closed, [`CloseCode::REDIRECTED`] |
//!
//! A request frame that does not decode, or names a message kind this version does not know,
//! is a protocol violation: the acceptor closes the connection with
//! [`CloseCode::PROTOCOL_VIOLATION`] and logs the peer and the reason. A dialler that gets an
//! answer it cannot use drops that peer (for a download: bans it). Nothing reachable from the
//! network panics.
//!
//! # Close codes
//! See [`CloseCode`]: `0` normal, `1` version mismatch, `2` protocol violation, `3` identity
//! mismatch, `4` refused (busy / not a supernode), `5` shutting down, `6` redirected (a
//! supernode closing a leaf it told to go elsewhere), `7` superseded (a supernode closing a
//! leaf's older session when the same leaf joined again).
//!
//! # Append-only enums
//! postcard encodes an enum variant as its index, so the order of variants *is* the format:
//! new variants of [`Request`], [`Response`], [`ErrorCode`], [`Notice`], [`PeerMessage`] and
//! [`Intent`] are only ever appended, never inserted or reordered.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::hash::Manifest;
use crate::{ContentId, NodeId};

/// ALPN of protocol version 1.
pub const ALPN: &[u8] = b"kazoo/1";
/// Protocol version carried in the handshake.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest frame body, in bytes (1 MiB): a full register batch or manifest fits.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest file name, in UTF-8 bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Most entries in one `Register` frame (2048 × ~300 bytes < [`MAX_FRAME`]).
pub const MAX_BATCH: usize = 2048;
/// Most leaves one supernode may serve (`supernode.max_leaves` is at most this).
pub const MAX_LEAVES_PER_SUPERNODE: usize = 10_000;
/// Most entries one leaf may have indexed on its SN.
pub const MAX_ENTRIES_PER_LEAF: usize = 100_000;
/// Most words in a query.
pub const MAX_QUERY_WORDS: usize = 16;
/// Most bytes of all query words together.
pub const MAX_QUERY_LEN: usize = 512;
/// Most results one search returns.
pub const MAX_RESULTS: usize = 200;
/// Most providers listed per hit or lookup.
pub const MAX_PROVIDERS: usize = 64;
/// Most node ids in one `ReportUnreachable` (a whole provider list fits).
pub const MAX_REPORTED: usize = MAX_PROVIDERS;
/// Most hits per `Hits` frame.
pub const HITS_PER_FRAME: usize = 64;
/// Most shared files listed in one `Files` answer to `Browse` (1000 × at most ~300 bytes
/// of entry < [`MAX_FRAME`]).
pub const BROWSE_PAGE: usize = 1000;
/// Most concurrently open request streams per connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;

/// How long a handshake (TLS + `Hello`) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes per second (burst: twice that) accepted without a QUIC Retry; beyond it, a
/// dialler must first prove it receives at its address.
pub const HANDSHAKE_RATE: u64 = 100;
/// How long a peer may take to send its request after opening a stream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dialler waits for each answer frame.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Download (`Fetch`) connections accepted at once from one IP address.
pub const MAX_FETCH_PER_IP: usize = 32;
/// A download connection with no request stream open for this long is closed.
pub const FETCH_IDLE: Duration = Duration::from_secs(30);
/// Searches a joined leaf may start per second (burst: one second's worth).
pub const LEAF_QUERY_RATE: u64 = 30;
/// `Register`/`Unregister` entries a leaf session may send per second; the burst is a full
/// share list ([`MAX_ENTRIES_PER_LEAF`] plus a batch), so joining is never slowed.
pub const INDEX_RATE: u64 = 20_000;
/// How long a dial back to a joining leaf's listen address may take.
pub const DIAL_BACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a redirected leaf has to leave before the supernode closes its connection.
pub const REDIRECT_GRACE: Duration = Duration::from_secs(3);

/// QUIC application close codes.
pub struct CloseCode;

impl CloseCode {
    /// Orderly close.
    pub const NORMAL: u32 = 0;
    /// The peer speaks another protocol version.
    pub const VERSION_MISMATCH: u32 = 1;
    /// Malformed, oversized or unknown message.
    pub const PROTOCOL_VIOLATION: u32 = 2;
    /// The handshake's node id differs from the TLS key.
    pub const IDENTITY_MISMATCH: u32 = 3;
    /// Refused: no room for another leaf, or not a supernode.
    pub const REFUSED: u32 = 4;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 5;
    /// A supernode closes a leaf it redirected (handover or demotion) that has not left:
    /// the leaf re-homes as if redirected, not as if its supernode had died.
    pub const REDIRECTED: u32 = 6;
    /// A supernode closes a leaf's session because the same leaf joined again on another
    /// connection (only the newest session of a leaf is kept).
    pub const SUPERSEDED: u32 = 7;
    /// A `Hello.network_proof` was missing, unexpected or wrong: the two nodes are not in
    /// the same (private) network.
    pub const WRONG_NETWORK: u32 = 8;
}

/// Role a node plays now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Connects to a supernode, shares and downloads.
    Leaf,
    /// Indexes its leaves' shares and answers their searches.
    Supernode,
}

impl Role {
    /// Lowercase name, as in config and status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leaf => "leaf",
            Role::Supernode => "supernode",
        }
    }
}

/// The opening message of a connection, in both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The sender's node id; must equal its TLS key.
    pub node_id: NodeId,
    /// The sender's current role.
    pub role: Role,
    /// The UDP port the sender accepts connections on.
    pub listen_port: u16,
    /// Advertised capacity (upload KiB/s), for election.
    pub capacity: u32,
    /// Dialler only: what the connection is for.
    pub intent: Intent,
    /// In a private network (`network.secret`): the sender's proof that it knows the secret,
    /// a keyed BLAKE3 hash of this connection's TLS exporter keying material (see
    /// `transport::private`); `None` in an open network. Appended after `intent`.
    pub network_proof: Option<[u8; 32]>,
}

impl Hello {
    /// A `Hello` of this protocol version that advertises no listen port and no capacity.
    pub fn new(node_id: NodeId, role: Role, intent: Intent) -> Self {
        Hello {
            version: PROTOCOL_VERSION,
            node_id,
            role,
            listen_port: 0,
            capacity: 0,
            intent,
            network_proof: None,
        }
    }
}

/// What a dialler wants from a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    /// Fetch manifests and pieces (any node).
    Fetch,
    /// Become the acceptor's leaf (acceptor must be a supernode with room).
    Join,
    /// Peer as supernodes: the control stream carries [`PeerMessage`]s both ways.
    Peer,
    /// A reverse connection: the dialler was asked by its supernode ([`Notice::Connect`])
    /// to connect to the acceptor, which wants to download from it. Requests then flow from
    /// acceptor to dialler (the one exception to "requests flow from the dialler"). An
    /// acceptor that asked for no reverse connection from this node refuses it.
    Reverse,
}

/// A supernode's notice to its leaf, on their control stream (supernode → leaf only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// Who takes over if this supernode dies: its eligible leaves, best first (heir `k`
    /// waits `k` × a short delay for the heirs before it, then promotes itself), and other
    /// supernodes to re-home to. Each list ≤ [`MAX_SUCCESSION`]; sent when it changes.
    Succession {
        /// Eligible leaves, best first.
        heirs: Vec<Provider>,
        /// Other supernodes (this one's peers).
        supernodes: Vec<Provider>,
    },
    /// The supernode is full and asks this (eligible) leaf to become a supernode too; the
    /// leaf promotes itself, leaves, and peers with it.
    Promote {
        /// Why.
        reason: String,
    },
    /// Leave this supernode and join one of `to` instead (tried in order, the first alone):
    /// sent to part of a full supernode's leaves when a new supernode has taken over some
    /// of its load, and to every leaf of a supernode that demotes. The supernode closes the
    /// connection [`REDIRECT_GRACE`] later if the leaf has not gone. `to` ≤ [`MAX_SUCCESSION`].
    Redirect {
        /// Where to go, best first.
        to: Vec<Provider>,
        /// Why (logged by the leaf).
        reason: String,
    },
    /// What the supernode observed of this leaf's reachability, sent once after the join's
    /// dial back: the address the leaf's connection comes from (its listening socket as
    /// the supernode sees it — behind a NAT, the NAT's mapping), and the address that
    /// answered the dial back (its advertised one), if it did. Sources are listed at the
    /// answering address, else at the observed one.
    Reachability {
        /// The leaf's address as the supernode sees it.
        observed: SocketAddr,
        /// The address that answered the supernode's dial back; `None`: neither did.
        answered: Option<SocketAddr>,
    },
    /// A downloader asks (through the supernodes, [`Request::Connect`]) for a reverse
    /// connection: dial `to` from the listening socket with [`Intent::Reverse`] and serve
    /// its requests. A leaf dials at most [`REVERSE_RATE`] such addresses per second and
    /// retries each [`REVERSE_TRIES`] times (a hole punch needs both sides to send).
    Connect {
        /// The downloader, at the address its supernode sees it at.
        to: Provider,
    },
    /// A downloader that reaches this leaf no other way asks for a relayed connection
    /// through this supernode: open a stream with [`Request::RelayAccept`] for `circuit`
    /// (within [`RELAY_ACCEPT_WAIT`]) and accept the connection that comes through it.
    /// Counted with `Connect` against [`REVERSE_RATE`].
    Relay {
        /// The circuit, a random id chosen by the supernode.
        circuit: u64,
        /// The downloader (its connection through the relay must prove this id).
        from: NodeId,
    },
}

/// Reverse connections (`Notice::Connect`) a leaf makes per second (burst: twice that);
/// more are ignored.
pub const REVERSE_RATE: u64 = 8;
/// Dials a leaf makes for one `Notice::Connect` (one per [`REVERSE_RETRY`]) until one
/// connects.
pub const REVERSE_TRIES: u32 = 3;
/// Time between the dials of one reverse connection.
pub const REVERSE_RETRY: Duration = Duration::from_millis(700);
/// How long after its `Connect` a downloader that has no connection yet asks for a relay
/// (the dial and the reverse connection keep trying meanwhile).
pub const RELAY_AFTER: Duration = Duration::from_millis(2500);
/// How long a relaying supernode waits for the target's `RelayAccept`.
pub const RELAY_ACCEPT_WAIT: Duration = Duration::from_secs(5);
/// Largest relay frame body: one QUIC packet (kazoo's QUIC packets through a relay are at
/// most 1200 bytes; the bound leaves room).
pub const MAX_RELAY_PACKET: usize = 1500;

/// Most entries in each list of a [`Notice::Succession`].
pub const MAX_SUCCESSION: usize = 8;

/// Most supernodes listed in one `Supernodes` gossip message.
pub const MAX_GOSSIP: usize = 64;
/// Most gossiped supernodes kept as dial candidates per gossiping peer (the rest of its
/// gossip is ignored): one peer cannot fill the candidates, nor direct many dials.
pub const MAX_CANDIDATES_PER_PEER: usize = 16;
/// Most gossiped supernodes kept as dial candidates in all (the oldest candidate of the
/// peer holding most is evicted for a new one).
pub const MAX_CANDIDATES: usize = 256;
/// Most positions in one filter or reach patch.
pub const MAX_FILTER_PATCH: usize = 16_384;
/// Most hops a query may travel (a larger `hops_left` is a protocol violation).
pub const MAX_HOPS: u8 = 4;
/// Most node ids in one `Peers` message.
pub const MAX_PEER_LIST: usize = 64;
/// Most node ids in a query's `via` list.
pub const MAX_VIA: usize = 64;
/// Queries per second one peer may send (burst: twice that); more is a flood.
pub const PEER_QUERY_RATE: u32 = 200;
/// How long a peer disconnected for misbehaving is neither dialled nor accepted.
pub const PEER_PENALTY: Duration = Duration::from_secs(300);
/// Bits of a filter position (the low bits of the first four bytes, little-endian, of the
/// BLAKE3 hash of a routing key: a token prefix, or a content id's first 4 bytes).
pub const FILTER_BITS: u32 = 20;
/// Bits of a reach position (filter positions folded by keeping the low bits).
pub const REACH_BITS: u32 = 18;
/// Most positions a peer's filter may have set: three quarters of the 2^[`FILTER_BITS`]
/// space (786,432). `n` distinct routing keys (token prefixes of 3–8 characters, content id
/// prefixes) set 2^20·(1 − e^(−n/2^20)) positions on average, so reaching this bound takes
/// 2^20·ln 4 ≈ 1.45 million distinct keys — more than an index at the default
/// `supernode.max_index_entries` (2 million entries, most files shared by several leaves and
/// their names sharing words) holds. Prefix keys cost little: prefixes are shared across
/// words, so the `search` benchmark's 50,000-path library sets about 4 % more positions than
/// whole words alone did (and one key per file, as before, for its id). A denser filter would
/// match almost every query (an all-ones filter: every query, every exact-id lookup), so it
/// is not believed: the peer is disconnected as a flooder.
pub const MAX_FILTER_SET: usize = 3 << (FILTER_BITS - 2);
/// Most positions a peer's reach may have set to be used for routing: three quarters of
/// the 2^[`REACH_BITS`] space (196,608; 2^18·ln 4 ≈ 363,000 distinct keys across the
/// peer's peers). A denser reach is kept but never matched: no query is forwarded to that
/// peer for its reach (a network whose reaches saturate routes two-hop queries by filters
/// only).
pub const MAX_REACH_SET: usize = 3 << (REACH_BITS - 2);
/// Most hits one peer may send back for one query: what an honest supernode can relay —
/// its own [`MAX_RESULTS`] plus, from each of at most [`MAX_PEER_LIST`] peers, the
/// 2 × [`MAX_RESULTS`] it keeps per peer (25,800). Beyond 2 × `max_results` of the query,
/// a peer's hits are dropped; beyond this, the peer is disconnected.
pub const MAX_PEER_HITS: usize = MAX_RESULTS * (1 + 2 * MAX_PEER_LIST);

/// A message between peered supernodes, on their control stream (both directions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Supernodes the sender knows (node-cache exchange), ≤ [`MAX_GOSSIP`]. The sender's own
    /// peers come first.
    Supernodes(Vec<Provider>),
    /// The sender's peer list changed: its current peers' ids (≤ [`MAX_PEER_LIST`]).
    Peers(Vec<NodeId>),
    /// Patch to the sender's routing filter (positions of its own index's tokens and ids).
    Filter {
        /// Start from empty before applying.
        reset: bool,
        /// Positions now present (≤ [`MAX_FILTER_PATCH`]).
        add: Vec<u32>,
        /// Positions now absent (≤ [`MAX_FILTER_PATCH`]).
        remove: Vec<u32>,
    },
    /// Patch to the sender's reach (its peers' filters, folded).
    Reach {
        /// Start from empty before applying.
        reset: bool,
        /// Positions now present (≤ [`MAX_FILTER_PATCH`]).
        add: Vec<u32>,
        /// Positions now absent (≤ [`MAX_FILTER_PATCH`]).
        remove: Vec<u32>,
    },
    /// A search to answer and maybe forward.
    Query {
        /// Query id, unpredictable to other nodes (chosen by the origin from a keyed stream
        /// under a secret random key); duplicates are answered with `Done`.
        id: u64,
        /// The supernode that started it (never forwarded back to it).
        origin: NodeId,
        /// Query words (same limits as [`Request::Search`]).
        words: Vec<String>,
        /// Most results wanted.
        max_results: u32,
        /// How many more hops it may be forwarded (≤ [`MAX_HOPS`]).
        hops_left: u8,
        /// Set by the origin: every peer it sent the query to (≤ [`MAX_VIA`]). Of the supernodes
        /// adjacent to a target, only the one with the smallest id in this list forwards to
        /// it, so a target two hops away gets the query once.
        via: Vec<NodeId>,
    },
    /// Results for query `id`, travelling back along the query's path (≤ [`HITS_PER_FRAME`]).
    Hits {
        /// The query.
        id: u64,
        /// Results.
        hits: Vec<Hit>,
    },
    /// The sender and everything it forwarded to have answered query `id`.
    Done {
        /// The query.
        id: u64,
    },
    /// The sender's load, sent on peering and whenever it changes (at most once per tick;
    /// `leaves` > `max_leaves` or `max_leaves` > [`MAX_LEAVES_PER_SUPERNODE`] is a protocol
    /// violation):
    /// redirects and succession notices list peers with room, and an under-used supernode
    /// demotes only when it has the fewest leaves of its under-used, demotable peers and
    /// they have room for its leaves.
    Load {
        /// Leaves joined now.
        leaves: u32,
        /// Its `max_leaves`.
        max_leaves: u32,
        /// It is an `auto` supernode that may demote (a configured supernode never does).
        demotable: bool,
    },
    /// Ask leaf `target` to dial `requester` (a reverse connection, see
    /// [`Request::Connect`]): the receiver asks its own leaf, or passes it on to the peer
    /// the target's hits came from while `hops_left` > 0. Each costs the sender a query
    /// token ([`PEER_QUERY_RATE`]); `requester` is the address the requester's supernode
    /// sees it at, and must be plausible (as a hit's provider).
    Connect {
        /// The source to connect back.
        target: NodeId,
        /// Whom it should dial.
        requester: Provider,
        /// How many more hops it may be passed on (≤ [`MAX_HOPS`]).
        hops_left: u8,
    },
}

/// A handshake frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Accepted (or opening).
    Hello(Hello),
    /// Refused, with a reason; the connection closes next.
    Refused {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        reason: String,
        /// Where to try instead (a full supernode's peers), ≤ [`MAX_SUCCESSION`].
        redirect: Vec<Provider>,
    },
}

/// One shared file, as registered with a supernode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareEntry {
    /// Content id.
    pub id: ContentId,
    /// Size in bytes.
    pub size: u64,
    /// The file's path below its share root, `/`-separated, the file name last
    /// (`Music/Rock/Led Zeppelin/Kashmir.flac`; a file at the root: just its name),
    /// ≤ [`MAX_NAME_LEN`] bytes: a leaf drops the folders nearest the root until it fits.
    /// The words of the file name and of the folders are indexed (a name match ranks
    /// first); the file name must have a searchable word. (Revision note: this field once
    /// held the file name only; a name without `/` still means a file at the root, so old
    /// and new nodes understand each other's entries and hits.)
    pub name: String,
}

/// A node that can serve a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provider {
    /// Its node id (pinned when dialling it).
    pub node: NodeId,
    /// Its address. An unspecified IP (`0.0.0.0`/`::`) means "the IP of whoever answered".
    pub addr: SocketAddr,
}

impl Provider {
    /// The provider `node` at `addr`.
    pub const fn new(node: NodeId, addr: SocketAddr) -> Self {
        Provider { node, addr }
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// Content id.
    pub id: ContentId,
    /// Size in bytes.
    pub size: u64,
    /// A path it is shared under (see [`ShareEntry::name`]): the best-matching, most
    /// common one. A supernode may send up to 4 hits with the same id and different names
    /// (each with the providers sharing it under that name, after all first hits and at
    /// most `max_results` of them); a receiver merges them by id and lists the names.
    pub name: String,
    /// How many sources the answering SN knows (may exceed `providers.len()`). A claim:
    /// the origin recomputes it as the number of distinct providers it received.
    pub sources: u32,
    /// Up to [`MAX_PROVIDERS`] sources.
    pub providers: Vec<Provider>,
}

/// A request, one per bidirectional stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Adds entries to the sender's share list on its SN.
    Register {
        /// At most [`MAX_BATCH`] entries.
        entries: Vec<ShareEntry>,
    },
    /// Removes entries from the sender's share list on its SN.
    Unregister {
        /// At most [`MAX_BATCH`] ids.
        ids: Vec<ContentId>,
    },
    /// Keyword search. Every word must match the start of a token (3 characters or more;
    /// shorter words: a whole token) of a file's name or folders (AND), with case, accents
    /// and width folded and CJK split into bigrams; `-word` excludes files with that whole
    /// token; `in:word` must match a folder token; `type:KIND` (audio, video, image,
    /// document, archive, software, by extension) and `size:A-B` (`size:>A`, `size:<B`;
    /// k/m/g/t suffixes, powers of 1024) filter. A query that is one word of 8–63 hex digits
    /// also matches content ids starting with it; of 64, that content id only. A query with
    /// no word to search for is refused ([`ErrorCode::BadRequest`]).
    Search {
        /// Query words.
        words: Vec<String>,
        /// Most results wanted (capped at [`MAX_RESULTS`]).
        max_results: u32,
    },
    /// Who provides this content?
    Lookup {
        /// The content id.
        id: ContentId,
    },
    /// The manifest of a file the acceptor shares.
    GetManifest {
        /// The content id.
        id: ContentId,
    },
    /// One piece of a file the acceptor shares.
    GetPiece {
        /// The content id.
        id: ContentId,
        /// Piece index.
        index: u32,
    },
    /// Sources the sender could not connect to (leaf → its SN; answered
    /// `Registered { total: 0 }`).
    ReportUnreachable {
        /// Their node ids, at most [`MAX_REPORTED`].
        nodes: Vec<NodeId>,
    },
    /// Ask source `target` to dial the sender (leaf → its SN; answered `Connecting`, or
    /// `Error(NotFound)` when the SN knows no way to the target): a reverse connection for a
    /// source that cannot be dialled. The sender's SN asks the target itself if it is its
    /// leaf, else sends [`PeerMessage::Connect`] towards the peer its hits came from.
    Connect {
        /// The source to connect back.
        target: NodeId,
    },
    /// Relay a connection to `target` (leaf → its SN; SN → the peer its target's hits came
    /// from, on a stream of the peering): answered `Relaying`, after which the stream
    /// carries relay frames (see "Relay" above); or `Error(NotFound)` (no way to the target,
    /// or it did not accept), `Error(Busy)` (no circuit free), `Error(BadRequest)` (the
    /// sender itself).
    Relay {
        /// The source to reach.
        target: NodeId,
        /// The downloader: from a leaf, its own id (else `Error(BadRequest)`); from a peer,
        /// the downloader it relays for. The target accepts only a connection proving it.
        requester: NodeId,
    },
    /// The target's side of a relay circuit its SN announced with [`Notice::Relay`]
    /// (leaf → its SN): answered `Relaying`, then relay frames; or `Error(NotFound)`.
    RelayAccept {
        /// The circuit's id from the notice.
        circuit: u64,
    },
    /// The acceptor's shared files (`kazoo browse`), from position `start` of its sorted
    /// listing; answered `Files`, or `Error(NotBrowsable)`.
    Browse {
        /// Position of the first file wanted.
        start: u32,
    },
    /// Dial leaf `leaf` at `addr` from a fresh socket and say whether it answered with that
    /// key (SN → a peer, on a stream of the peering; see "Reachability" above): answered
    /// `DialedBack` (`answered: false` without a dial when this node's dial guard knows the
    /// address as silent), or `Error(Busy)` when the peer's query rate or the guard refuses
    /// otherwise, or this node has no route to the address.
    DialBack {
        /// The leaf's node id; only a connection proving it counts as an answer.
        leaf: NodeId,
        /// Where to dial it: the IP the asker sees it at, with its listen port.
        addr: SocketAddr,
    },
}

/// Machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The content is not shared here (or no longer matches its hash).
    NotFound,
    /// The request needs a supernode.
    NotSupernode,
    /// The leaf would exceed its entry limit.
    TooManyEntries,
    /// A name exceeds [`MAX_NAME_LEN`].
    NameTooLong,
    /// A request field is out of range.
    BadRequest,
    /// No room (leaves, streams, uploads); try elsewhere.
    Busy,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// Something failed on the answering node.
    Internal,
    /// An index request on a leaf session the supernode no longer has (replaced by a newer
    /// session of the same leaf, or ended): the leaf joins again and re-registers.
    UnknownLeaf,
    /// The supernode's index is at its budget (`supernode.max_index_entries` /
    /// `max_index_mib`); register elsewhere.
    IndexFull,
    /// The dialler is not in the acceptor's private network, or the acceptor is not in the
    /// dialler's (a missing, unexpected or wrong `Hello.network_proof`).
    WrongNetwork,
    /// The dialler's node id is not in the acceptor's `network.allow`.
    NotAllowed,
    /// The node does not let others list its files (`share.browsable = false`).
    NotBrowsable,
}

/// An answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Register/Unregister done; total entries now indexed for this leaf.
    Registered {
        /// Entries indexed for the sender after this request.
        total: u64,
    },
    /// A batch of search results (≤ [`HITS_PER_FRAME`]).
    Hits(Vec<Hit>),
    /// No more results.
    End,
    /// Sources of a content id (≤ [`MAX_PROVIDERS`]).
    Providers(Vec<Provider>),
    /// A file's manifest.
    Manifest(Manifest),
    /// Piece data follows: exactly `len` raw bytes.
    Piece {
        /// Byte count that follows.
        len: u64,
    },
    /// The request failed.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// `Connect` was passed on: the target is asked to dial the sender at the address the
    /// sender's SN sees it at (`requester`); `target` is where the target is listed, so the
    /// sender can dial it at the same time (a hole punch, when both are behind NATs).
    Connecting {
        /// The target, at the address its supernode lists it.
        target: Provider,
        /// The sender as the target will dial it.
        requester: Provider,
    },
    /// `Relay` / `RelayAccept` accepted: relay frames follow on this stream, both ways.
    Relaying,
    /// A page of the node's shared files (answer to `Browse`): at most [`BROWSE_PAGE`]
    /// entries, sorted by name, starting at the requested position.
    Files {
        /// The entries (path below the share root, size, content id).
        entries: Vec<ShareEntry>,
        /// How many files the node shares in all.
        total: u32,
    },
    /// The answer to `DialBack`: whether the leaf answered the dial from a fresh socket
    /// within [`DIAL_BACK_TIMEOUT`].
    DialedBack {
        /// It answered, with the right key.
        answered: bool,
    },
}

impl Request {
    /// The variant's name, for logs and errors (never its contents, which a peer chose).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Register { .. } => "Register",
            Request::Unregister { .. } => "Unregister",
            Request::Search { .. } => "Search",
            Request::Lookup { .. } => "Lookup",
            Request::GetManifest { .. } => "GetManifest",
            Request::GetPiece { .. } => "GetPiece",
            Request::ReportUnreachable { .. } => "ReportUnreachable",
            Request::Connect { .. } => "Connect",
            Request::Relay { .. } => "Relay",
            Request::RelayAccept { .. } => "RelayAccept",
            Request::Browse { .. } => "Browse",
            Request::DialBack { .. } => "DialBack",
        }
    }
}

impl Response {
    /// An error answer.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// Number of variants of [`Request`], to tell an unknown message from a malformed one.
const REQUEST_KINDS: u64 = 12;

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly before a frame started.
    #[error("stream finished")]
    Finished,
    /// The length prefix exceeds the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame names a message kind this version does not know.
    #[error("unknown message kind {0}")]
    UnknownMessage(u64),
    /// The frame does not decode.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether this error is the peer's fault (close the connection as a violation).
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            FrameError::Oversized { .. } | FrameError::UnknownMessage(_) | FrameError::Malformed(_)
        )
    }
}

/// Encodes a message as a frame (length prefix + postcard body).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    let body = postcard::to_extend(msg, buf)?;
    buf = body;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME,
        });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    out: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    out.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame body (at most `max` bytes) without decoding it.
pub async fn read_frame_bytes(
    input: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = input.read(&mut len[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Finished
            } else {
                FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    // Grows with the data that actually arrives: a length prefix alone reserves nothing.
    let mut body = Vec::new();
    input.take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Reads and decodes one frame of at most [`MAX_FRAME`] bytes.
pub async fn read_frame<T: DeserializeOwned>(
    input: &mut (impl AsyncRead + Unpin),
) -> Result<T, FrameError> {
    let body = read_frame_bytes(input, MAX_FRAME).await?;
    Ok(postcard::from_bytes(&body)?)
}

/// Decodes a request frame body, telling unknown kinds from malformed bodies.
pub fn decode_request(body: &[u8]) -> Result<Request, FrameError> {
    match postcard::from_bytes::<Request>(body) {
        Ok(request) => Ok(request),
        Err(e) => match postcard::take_from_bytes::<u64>(body) {
            Ok((kind, _)) if kind >= REQUEST_KINDS => Err(FrameError::UnknownMessage(kind)),
            _ => Err(FrameError::Malformed(e)),
        },
    }
}

/// Reads one request frame.
pub async fn read_request(input: &mut (impl AsyncRead + Unpin)) -> Result<Request, FrameError> {
    let body = read_frame_bytes(input, MAX_FRAME).await?;
    decode_request(&body)
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
