//! Writes the seed corpus of every fuzz target (a handful of valid inputs each, built from the
//! project's own types) into `corpus/<target>/seed-<n>`:
//!
//! ```sh
//! cd fuzz && cargo +nightly run --example seed -- corpus
//! ```

use std::net::SocketAddr;
use std::path::Path;

use kazoo_common::hash::hash_reader;
use kazoo_common::wire::{
    encode_frame, ErrorCode, Handshake, Hello, Hit, Intent, Notice, PeerMessage, Provider, Request,
    Response, Role, ShareEntry, PROTOCOL_VERSION,
};
use kazoo_common::{ContentId, NodeId};
use kazoo_fuzz::ops::{self, OverlayOp, OverlaySetup, SupernodeOp, SupernodeSetup};
use serde::Serialize;

fn enc<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("encodes")
}

fn provider(n: u8) -> Provider {
    Provider::new(NodeId([n; 32]), SocketAddr::from(([127, 0, 0, 1], 4710)))
}

fn entry(name: &str) -> ShareEntry {
    ShareEntry {
        id: ContentId::from(blake3::hash(name.as_bytes())),
        size: 1234,
        name: name.into(),
    }
}

fn hit(name: &str, sources: u32) -> Hit {
    Hit {
        id: entry(name).id,
        size: 1234,
        name: name.into(),
        sources,
        providers: vec![provider(1), provider(2)],
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::Register {
            entries: vec![entry("Björk - Jóga (Live).mp3"), entry("a b c.txt")],
        },
        Request::Unregister {
            ids: vec![entry("a b c.txt").id],
        },
        Request::Search {
            words: vec!["jóga".into(), "live".into()],
            max_results: 50,
        },
        Request::Search {
            words: vec![entry("x").id.to_hex()],
            max_results: 1,
        },
        Request::Lookup { id: entry("x").id },
        Request::GetManifest { id: entry("x").id },
        Request::GetPiece {
            id: entry("x").id,
            index: 3,
        },
        Request::ReportUnreachable {
            nodes: vec![NodeId([5; 32])],
        },
        Request::Browse { start: 1000 },
        Request::DialBack {
            leaf: NodeId([6; 32]),
            addr: "127.0.0.1:4710".parse().expect("address"),
        },
    ]
}

fn responses() -> Vec<Response> {
    let (_, manifest) = hash_reader(&b"hello"[..], 5).expect("hashes");
    vec![
        Response::Registered { total: 3 },
        Response::Hits(vec![hit("one", 2), hit("two", 1)]),
        Response::End,
        Response::Providers(vec![provider(1), provider(2)]),
        Response::Manifest(manifest),
        Response::Piece { len: 262_144 },
        Response::error(ErrorCode::Busy, "no room"),
        Response::Files {
            entries: vec![entry("x")],
            total: 1001,
        },
        Response::error(ErrorCode::NotBrowsable, "share.browsable = false"),
    ]
}

fn peer_messages() -> Vec<PeerMessage> {
    vec![
        PeerMessage::Supernodes(vec![provider(3), provider(4)]),
        PeerMessage::Peers(vec![NodeId([3; 32])]),
        PeerMessage::Filter {
            reset: true,
            add: vec![1, 2, 1 << 19],
            remove: vec![],
        },
        PeerMessage::Reach {
            reset: false,
            add: vec![7],
            remove: vec![8],
        },
        PeerMessage::Query {
            id: 42,
            origin: NodeId([1; 32]),
            words: vec!["live".into()],
            max_results: 10,
            hops_left: 1,
            via: vec![NodeId([2; 32])],
        },
        PeerMessage::Hits {
            id: 42,
            hits: vec![hit("live", 1)],
        },
        PeerMessage::Done { id: 42 },
        PeerMessage::Load {
            leaves: 3,
            max_leaves: 8,
            demotable: true,
        },
    ]
}

fn notices() -> Vec<Notice> {
    let me = Provider::new(ops::node(7), ops::addr(2, 4711));
    vec![
        Notice::Succession {
            heirs: vec![provider(3), me],
            supernodes: vec![provider(4)],
        },
        Notice::Succession {
            heirs: vec![me],
            supernodes: vec![],
        },
        Notice::Promote {
            reason: "full".into(),
        },
        Notice::Redirect {
            to: vec![provider(4), me],
            reason: "handover".into(),
        },
    ]
}

fn supernode_inputs() -> Vec<Vec<u8>> {
    let setup = SupernodeSetup {
        max_leaves: 2,
        max_leaves_per_ip: 1,
        max_entries_per_leaf: 3,
        max_index_entries: 8,
    };
    let register = |leaf, names: &[&str]| SupernodeOp::Request {
        leaf,
        stale: false,
        plain: false,
        request: Request::Register {
            entries: names.iter().map(|n| entry(n)).collect(),
        },
    };
    let request = |leaf, request| SupernodeOp::Request {
        leaf,
        stale: false,
        plain: false,
        request,
    };
    let basic = vec![
        SupernodeOp::Admit {
            leaf: 0,
            ip: 0,
            capacity: 10,
        },
        SupernodeOp::Admit {
            leaf: 1,
            ip: 1,
            capacity: 0,
        },
        register(0, &["live at wembley.mp3", "b.txt"]),
        register(1, &["live at wembley.mp3"]),
        request(
            0,
            Request::Search {
                words: vec!["live".into()],
                max_results: 10,
            },
        ),
        request(
            1,
            Request::Lookup {
                id: entry("live at wembley.mp3").id,
            },
        ),
        request(
            1,
            Request::ReportUnreachable {
                nodes: vec![ops::node(1)],
            },
        ),
        SupernodeOp::Reachable {
            leaf: 0,
            port: 4711,
        },
        SupernodeOp::Succession { max: 8 },
        SupernodeOp::Promote,
        SupernodeOp::Depart {
            leaf: 0,
            stale: false,
        },
        SupernodeOp::Drain,
        request(
            1,
            Request::Unregister {
                ids: vec![entry("live at wembley.mp3").id],
            },
        ),
        SupernodeOp::Tick,
    ];
    let rejoin = vec![
        SupernodeOp::Admit {
            leaf: 3,
            ip: 2,
            capacity: 1,
        },
        register(3, &["x y", "z"]),
        SupernodeOp::Admit {
            leaf: 3,
            ip: 2,
            capacity: 1,
        },
        SupernodeOp::Request {
            leaf: 3,
            stale: true,
            plain: false,
            request: Request::Register {
                entries: vec![entry("q")],
            },
        },
        SupernodeOp::Depart {
            leaf: 3,
            stale: true,
        },
        SupernodeOp::OwnShares {
            added: vec![entry("own file")],
            removed: vec![],
        },
        SupernodeOp::Advance { ms: 1000 },
        SupernodeOp::Drain,
    ];
    vec![
        ops::encode(&setup, &basic),
        ops::encode(&setup, &rejoin),
        ops::encode(&SupernodeSetup::default(), &basic[..6]),
    ]
}

fn overlay_inputs() -> Vec<Vec<u8>> {
    let setup = OverlaySetup {
        max_peers: 3,
        hop_limit: 2,
        flood: false,
        max_queries: 4,
        max_hosts: 8,
        demote: Some((40, 0)),
        max_leaves: 4,
    };
    let msg = |peer, msg| OverlayOp::Message { peer, msg };
    let query = OverlayOp::Query {
        words: vec!["live".into()],
        max: 10,
    };
    let peering = vec![
        OverlayOp::OwnShares {
            added: vec![entry("live at wembley.mp3")],
            removed: vec![],
        },
        OverlayOp::PeerUp {
            peer: 0,
            ip: 1,
            port: 4710,
        },
        OverlayOp::PeerUp {
            peer: 1,
            ip: 2,
            port: 4710,
        },
        msg(
            0,
            PeerMessage::Filter {
                reset: true,
                add: vec![kazoo_supernode::filter::position(b"live")],
                remove: vec![],
            },
        ),
        msg(
            0,
            PeerMessage::Load {
                leaves: 1,
                max_leaves: 8,
                demotable: true,
            },
        ),
        msg(1, PeerMessage::Peers(vec![ops::node(5)])),
        OverlayOp::Tick,
        query.clone(),
        msg(
            0,
            PeerMessage::Hits {
                id: 1,
                hits: vec![hit("live", 1)],
            },
        ),
        msg(
            1,
            PeerMessage::Query {
                id: 9,
                origin: ops::node(2),
                words: vec!["live".into()],
                max_results: 5,
                hops_left: 2,
                via: vec![],
            },
        ),
        OverlayOp::Advance { ms: 2000 },
        OverlayOp::Tick,
        OverlayOp::PeerDown { peer: 1 },
        OverlayOp::Tick,
    ];
    let growth = vec![
        OverlayOp::Admit {
            leaf: 2,
            capacity: 5,
        },
        OverlayOp::Admit {
            leaf: 3,
            capacity: 0,
        },
        OverlayOp::Promote,
        OverlayOp::PeerUp {
            peer: 2,
            ip: 3,
            port: 4712,
        },
        OverlayOp::Handover { peer: 2 },
        msg(
            2,
            PeerMessage::Load {
                leaves: 0,
                max_leaves: 8,
                demotable: true,
            },
        ),
        OverlayOp::Demotion,
        OverlayOp::Advance { ms: 1000 },
        OverlayOp::Demotion,
        OverlayOp::AddHost {
            node: 5,
            ip: 1,
            port: 4715,
            age_secs: 60,
        },
        OverlayOp::DialFailed { peer: 4 },
        OverlayOp::Tick,
        msg(2, PeerMessage::Supernodes(vec![provider(4)])),
        msg(
            2,
            PeerMessage::Reach {
                reset: true,
                add: vec![3],
                remove: vec![],
            },
        ),
    ];
    let flood_setup = OverlaySetup {
        flood: true,
        hop_limit: 3,
        ..setup.clone()
    };
    vec![
        ops::encode(&setup, &peering),
        ops::encode(&setup, &growth),
        ops::encode(&flood_setup, &peering),
    ]
}

fn write(dir: &Path, target: &str, inputs: Vec<Vec<u8>>) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, input) in inputs.into_iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), input).expect("write seed");
    }
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let root = Path::new(&root);

    let mut stream = vec![0x00];
    for r in requests() {
        stream.extend(encode_frame(&r).expect("frame"));
    }
    let mut frames = vec![stream, vec![0x13, 0, 0, 0, 9, 1, 2, 3]];
    frames.push([&[0x01u8][..], &encode_frame(&requests()[2]).expect("frame")].concat());
    frames.push(vec![0x00, 0xff, 0xff, 0xff, 0xff]);
    write(root, "frames", frames);

    let hello = Hello {
        version: PROTOCOL_VERSION,
        node_id: NodeId([3; 32]),
        role: Role::Leaf,
        listen_port: 4711,
        capacity: 1000,
        intent: Intent::Join,
        network_proof: None,
    };
    write(
        root,
        "handshake",
        vec![
            enc(&Handshake::Hello(hello.clone())),
            enc(&Handshake::Refused {
                code: ErrorCode::Busy,
                reason: "full".into(),
                redirect: vec![provider(1), provider(2)],
            }),
            enc(&hello),
        ],
    );
    write(root, "request", requests().iter().map(enc).collect());
    let mut responses: Vec<Vec<u8>> = responses().iter().map(enc).collect();
    responses.push(
        [
            enc(&Response::Hits(vec![hit("one", 2)])),
            enc(&Response::Hits(vec![hit("one", 3), hit("two", 1)])),
            enc(&Response::End),
        ]
        .concat(),
    );
    write(root, "response", responses);
    write(
        root,
        "peer_message",
        peer_messages().iter().map(enc).collect(),
    );
    write(root, "notice", notices().iter().map(enc).collect());

    let (_, small) = hash_reader(&b"hello world"[..], 11).expect("hashes");
    let big = vec![7u8; 700_000];
    let (_, multi) = hash_reader(&big[..], big.len() as u64).expect("hashes");
    write(
        root,
        "manifest",
        vec![
            [enc(&small), b"hello world".to_vec()].concat(),
            [enc(&multi), vec![1, 0, 0, 0, 2, 0, 0, 0]].concat(),
            enc(&hash_reader(&b""[..], 0).expect("hashes").1),
        ],
    );

    let full = "[node]\nrole = \"auto\"\nlisten = \"0.0.0.0:4710\"\ndata_dir = \"~/.local/share/kazoo\"\n\n\
        [share]\ndirs = [\"~/Music\"]\ndownload_dir = \"/tmp/dl\"\nrescan_secs = 2\nupload_rate_kib = 0\n\n\
        [network]\nbootstrap = [\"203.0.113.7:4710\", \"0303030303030303030303030303030303030303030303030303030303030303@198.51.100.2:4710\"]\n\
        idle_timeout_ms = 2000\n\n\
        [supernode]\nmax_leaves = 200\nmax_peers = 40\nmax_entries_per_leaf = 100000\nmax_index_entries = 2000000\n\
        max_index_mib = 1024\nmax_leaves_per_ip = 64\nhop_limit = 2\nrouting = \"filters\"\n\n\
        [election]\neligible = true\nbandwidth_kib = 1000\nthreshold = 1\nheir_delay_ms = 1000\n\
        demote_below_pct = 25\ndemote_after_secs = 30\n";
    write(
        root,
        "config",
        vec![
            full.as_bytes().to_vec(),
            b"".to_vec(),
            b"[supernode]\nmax_peers = 99\n".to_vec(),
            b"[node]\nrole = \"supernode\"\n[supernode]\nrouting = \"flood\"\n".to_vec(),
        ],
    );

    write(root, "supernode", supernode_inputs());
    write(root, "overlay", overlay_inputs());
}
