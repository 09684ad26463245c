//! Golden byte vectors: one per message kind, so a reordered or inserted variant (the
//! variant index *is* the postcard format) or a changed field fails here. New variants get
//! a new vector appended; existing vectors never change within a protocol version.
//! `KAZOO_PRINT_GOLDEN=1 cargo test -p kazoo-common golden` prints the current encodings.

use super::*;

fn id(n: u8) -> [u8; 32] {
    [n; 32]
}

fn provider() -> Provider {
    Provider {
        node: NodeId(id(1)),
        addr: "127.0.0.1:4710".parse().expect("address"),
    }
}

fn hit() -> Hit {
    Hit {
        id: ContentId(id(2)),
        size: 5,
        name: "a".into(),
        sources: 1,
        providers: vec![provider()],
    }
}

/// Every message kind with a small fixed value.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    fn enc<T: Serialize>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).expect("encodes")
    }
    let hello = Hello {
        version: PROTOCOL_VERSION,
        node_id: NodeId(id(3)),
        role: Role::Leaf,
        listen_port: 4710,
        capacity: 7,
        intent: Intent::Join,
        network_proof: None,
    };
    let private_hello = Hello {
        network_proof: Some(id(5)),
        ..hello.clone()
    };
    vec![
        ("Role::Leaf", enc(&Role::Leaf)),
        ("Role::Supernode", enc(&Role::Supernode)),
        ("Intent::Fetch", enc(&Intent::Fetch)),
        ("Intent::Join", enc(&Intent::Join)),
        ("Intent::Peer", enc(&Intent::Peer)),
        ("Handshake::Hello", enc(&Handshake::Hello(hello))),
        (
            "Handshake::Hello (private network)",
            enc(&Handshake::Hello(private_hello)),
        ),
        (
            "Handshake::Refused",
            enc(&Handshake::Refused {
                code: ErrorCode::Busy,
                reason: "r".into(),
                redirect: vec![provider()],
            }),
        ),
        (
            "Request::Register",
            enc(&Request::Register {
                entries: vec![ShareEntry {
                    id: ContentId(id(2)),
                    size: 5,
                    name: "a".into(),
                }],
            }),
        ),
        (
            "Request::Unregister",
            enc(&Request::Unregister {
                ids: vec![ContentId(id(2))],
            }),
        ),
        (
            "Request::Search",
            enc(&Request::Search {
                words: vec!["w".into()],
                max_results: 9,
            }),
        ),
        (
            "Request::Lookup",
            enc(&Request::Lookup {
                id: ContentId(id(2)),
            }),
        ),
        (
            "Request::GetManifest",
            enc(&Request::GetManifest {
                id: ContentId(id(2)),
            }),
        ),
        (
            "Request::GetPiece",
            enc(&Request::GetPiece {
                id: ContentId(id(2)),
                index: 3,
            }),
        ),
        (
            "Request::ReportUnreachable",
            enc(&Request::ReportUnreachable {
                nodes: vec![NodeId(id(8))],
            }),
        ),
        (
            "Response::Registered",
            enc(&Response::Registered { total: 300 }),
        ),
        ("Response::Hits", enc(&Response::Hits(vec![hit()]))),
        ("Response::End", enc(&Response::End)),
        (
            "Response::Providers",
            enc(&Response::Providers(vec![provider()])),
        ),
        (
            "Response::Manifest",
            enc(&Response::Manifest(Manifest {
                size: 1 << 20,
                piece_size: 1 << 18,
                cvs: vec![id(4)],
            })),
        ),
        ("Response::Piece", enc(&Response::Piece { len: 16 })),
        (
            "Response::Error",
            enc(&Response::error(ErrorCode::NotFound, "x")),
        ),
        ("ErrorCode::NotFound", enc(&ErrorCode::NotFound)),
        ("ErrorCode::NotSupernode", enc(&ErrorCode::NotSupernode)),
        ("ErrorCode::TooManyEntries", enc(&ErrorCode::TooManyEntries)),
        ("ErrorCode::NameTooLong", enc(&ErrorCode::NameTooLong)),
        ("ErrorCode::BadRequest", enc(&ErrorCode::BadRequest)),
        ("ErrorCode::Busy", enc(&ErrorCode::Busy)),
        (
            "ErrorCode::VersionMismatch",
            enc(&ErrorCode::VersionMismatch),
        ),
        ("ErrorCode::Internal", enc(&ErrorCode::Internal)),
        ("ErrorCode::UnknownLeaf", enc(&ErrorCode::UnknownLeaf)),
        ("ErrorCode::IndexFull", enc(&ErrorCode::IndexFull)),
        ("ErrorCode::WrongNetwork", enc(&ErrorCode::WrongNetwork)),
        (
            "Notice::Succession",
            enc(&Notice::Succession {
                heirs: vec![provider()],
                supernodes: vec![],
            }),
        ),
        (
            "Notice::Promote",
            enc(&Notice::Promote { reason: "p".into() }),
        ),
        (
            "Notice::Redirect",
            enc(&Notice::Redirect {
                to: vec![provider()],
                reason: "r".into(),
            }),
        ),
        (
            "PeerMessage::Supernodes",
            enc(&PeerMessage::Supernodes(vec![provider()])),
        ),
        (
            "PeerMessage::Peers",
            enc(&PeerMessage::Peers(vec![NodeId(id(5))])),
        ),
        (
            "PeerMessage::Filter",
            enc(&PeerMessage::Filter {
                reset: true,
                add: vec![1, 300],
                remove: vec![2],
            }),
        ),
        (
            "PeerMessage::Reach",
            enc(&PeerMessage::Reach {
                reset: false,
                add: vec![3],
                remove: vec![],
            }),
        ),
        (
            "PeerMessage::Query",
            enc(&PeerMessage::Query {
                id: 0x0102_0304_0506_0708,
                origin: NodeId(id(6)),
                words: vec!["q".into()],
                max_results: 50,
                hops_left: 2,
                via: vec![NodeId(id(7))],
            }),
        ),
        (
            "PeerMessage::Hits",
            enc(&PeerMessage::Hits {
                id: 1,
                hits: vec![hit()],
            }),
        ),
        ("PeerMessage::Done", enc(&PeerMessage::Done { id: 1 })),
        (
            "PeerMessage::Load",
            enc(&PeerMessage::Load {
                leaves: 3,
                max_leaves: 200,
                demotable: true,
            }),
        ),
        // Search revision (same shapes, documented meanings): a path below the share root
        // as a name, and query words with an exclusion, a folder word and filters.
        (
            "ShareEntry (path)",
            enc(&ShareEntry {
                id: ContentId(id(2)),
                size: 5,
                name: "d/a".into(),
            }),
        ),
        (
            "Request::Search (syntax)",
            enc(&Request::Search {
                words: ["a", "-b", "in:c", "type:audio", "size:<1k"]
                    .map(String::from)
                    .to_vec(),
                max_results: 9,
            }),
        ),
        // Reachability revision: address discovery, reverse connections and the relay.
        ("Intent::Reverse", enc(&Intent::Reverse)),
        (
            "Request::Connect",
            enc(&Request::Connect {
                target: NodeId(id(4)),
            }),
        ),
        (
            "Response::Connecting",
            enc(&Response::Connecting {
                target: provider(),
                requester: provider(),
            }),
        ),
        (
            "Notice::Reachability",
            enc(&Notice::Reachability {
                observed: provider().addr,
                answered: None,
            }),
        ),
        ("Notice::Connect", enc(&Notice::Connect { to: provider() })),
        (
            "PeerMessage::Connect",
            enc(&PeerMessage::Connect {
                target: NodeId(id(4)),
                requester: provider(),
                hops_left: 2,
            }),
        ),
        (
            "Request::Relay",
            enc(&Request::Relay {
                target: NodeId(id(4)),
                requester: NodeId(id(5)),
            }),
        ),
        (
            "Request::RelayAccept",
            enc(&Request::RelayAccept { circuit: 9 }),
        ),
        ("Response::Relaying", enc(&Response::Relaying)),
        (
            "Notice::Relay",
            enc(&Notice::Relay {
                circuit: 9,
                from: NodeId(id(4)),
            }),
        ),
        // Browse and allowlists.
        ("Request::Browse", enc(&Request::Browse { start: 1000 })),
        (
            "Response::Files",
            enc(&Response::Files {
                entries: vec![ShareEntry {
                    id: ContentId(id(2)),
                    size: 5,
                    name: "d/a".into(),
                }],
                total: 1001,
            }),
        ),
        ("ErrorCode::NotAllowed", enc(&ErrorCode::NotAllowed)),
        ("ErrorCode::NotBrowsable", enc(&ErrorCode::NotBrowsable)),
        // Dial back from a witness.
        (
            "Request::DialBack",
            enc(&Request::DialBack {
                leaf: NodeId(id(6)),
                addr: provider().addr,
            }),
        ),
        (
            "Response::DialedBack",
            enc(&Response::DialedBack { answered: true }),
        ),
    ]
}

/// `[n; 32]` written as hex.
fn rep(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// The pinned encodings; `{N}` stands for 32 bytes of value N.
const GOLDEN: &[(&str, &str)] = &[
    ("Role::Leaf", "00"),
    ("Role::Supernode", "01"),
    ("Intent::Fetch", "00"),
    ("Intent::Join", "01"),
    ("Intent::Peer", "02"),
    ("Handshake::Hello", "0001{3}00e624070100"),
    (
        "Handshake::Hello (private network)",
        "0001{3}00e624070101{5}",
    ),
    ("Handshake::Refused", "01050172{1}01007f000001e624"),
    ("Request::Register", "0001{2}050161"),
    ("Request::Unregister", "0101{2}"),
    ("Request::Search", "0201017709"),
    ("Request::Lookup", "03{2}"),
    ("Request::GetManifest", "04{2}"),
    ("Request::GetPiece", "05{2}03"),
    ("Request::ReportUnreachable", "0601{8}"),
    ("Response::Registered", "00ac02"),
    ("Response::Hits", "0101{2}050161{1}0101007f000001e624"),
    ("Response::End", "02"),
    ("Response::Providers", "03{1}01007f000001e624"),
    ("Response::Manifest", "0480804080801001{4}"),
    ("Response::Piece", "0510"),
    ("Response::Error", "06000178"),
    ("ErrorCode::NotFound", "00"),
    ("ErrorCode::NotSupernode", "01"),
    ("ErrorCode::TooManyEntries", "02"),
    ("ErrorCode::NameTooLong", "03"),
    ("ErrorCode::BadRequest", "04"),
    ("ErrorCode::Busy", "05"),
    ("ErrorCode::VersionMismatch", "06"),
    ("ErrorCode::Internal", "07"),
    ("ErrorCode::UnknownLeaf", "08"),
    ("ErrorCode::IndexFull", "09"),
    ("ErrorCode::WrongNetwork", "0a"),
    ("Notice::Succession", "00{1}01007f000001e62400"),
    ("Notice::Promote", "010170"),
    ("Notice::Redirect", "02{1}01007f000001e6240172"),
    ("PeerMessage::Supernodes", "00{1}01007f000001e624"),
    ("PeerMessage::Peers", "0101{5}"),
    ("PeerMessage::Filter", "02010201ac020102"),
    ("PeerMessage::Reach", "0300010300"),
    (
        "PeerMessage::Query",
        "04888e98a8c0e0808101{6}010171320201{7}",
    ),
    ("PeerMessage::Hits", "050101{2}050161{1}0101007f000001e624"),
    ("PeerMessage::Done", "0601"),
    ("PeerMessage::Load", "0703c80101"),
    ("ShareEntry (path)", "{2}0503642f61"),
    (
        "Request::Search (syntax)",
        "02050161022d6204696e3a630a747970653a617564696f0873697a653a3c316b09",
    ),
    ("Intent::Reverse", "03"),
    ("Request::Connect", "07{4}"),
    (
        "Response::Connecting",
        "07{1}007f000001e624{1}007f000001e624",
    ),
    ("Notice::Reachability", "03007f000001e62400"),
    ("Notice::Connect", "04{1}007f000001e624"),
    ("PeerMessage::Connect", "08{4}{1}007f000001e62402"),
    ("Request::Relay", "08{4}{5}"),
    ("Request::RelayAccept", "0909"),
    ("Response::Relaying", "08"),
    ("Notice::Relay", "0509{4}"),
    ("Request::Browse", "0ae807"),
    ("Response::Files", "0901{2}0503642f61e907"),
    ("ErrorCode::NotAllowed", "0b"),
    ("ErrorCode::NotBrowsable", "0c"),
    ("Request::DialBack", "0b{6}007f000001e624"),
    ("Response::DialedBack", "0a01"),
];

fn expand(pattern: &str) -> String {
    let mut out = pattern.to_owned();
    for n in 0..=9u8 {
        out = out.replace(&format!("{{{n}}}"), &rep(n));
    }
    out
}

/// Writes `bytes` as hex with every run of 32 equal bytes `n` (n ≤ 9) shown as `{n}`.
fn compress(bytes: &[u8]) -> String {
    let mut hex = hex::encode(bytes);
    for n in 1..=9u8 {
        hex = hex.replace(&rep(n), &format!("{{{n}}}"));
    }
    hex
}

#[test]
fn every_message_kind_encodes_as_pinned() {
    let samples = samples();
    if std::env::var_os("KAZOO_PRINT_GOLDEN").is_some() {
        for (name, bytes) in &samples {
            println!("    (\"{name}\", \"{}\"),", compress(bytes));
        }
    }
    assert_eq!(
        samples.len(),
        GOLDEN.len(),
        "a message kind without a vector"
    );
    for ((name, bytes), (golden_name, golden)) in samples.iter().zip(GOLDEN) {
        assert_eq!(name, golden_name);
        assert_eq!(
            hex::encode(bytes),
            expand(golden),
            "{name} changed encoding"
        );
    }
}
