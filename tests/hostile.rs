//! A well-formed but lying peer supernode (a raw QUIC client speaking the real protocol)
//! against an honest supernode: it claims a dense reach, gossips a thousand made-up
//! supernodes, answers the queries it gets with forged hits, then sends an all-ones filter.
//! The honest network keeps working: honest hits rank first, names arrive sanitised, the
//! liar sees no exact-id lookup, its gossip never reaches the host cache, and its dense
//! filter gets it disconnected.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use kazoo_common::wire::{
    self, CloseCode, Hello, Hit, Intent, PeerMessage, Provider, Role, MAX_FILTER_PATCH, MAX_GOSSIP,
};
use kazoo_common::{ContentId, NodeId};
use kazoo_supernode::filter::{position, FILTER_BITS, REACH_BITS};
use kazoo_supernode::tokenize::tokens;
use tokio::sync::mpsc;

/// Every position of a `bits`-bit space, as `Filter` (or `Reach`) patches.
fn all_ones(bits: u32, reach: bool) -> Vec<PeerMessage> {
    let all: Vec<u32> = (0..1u32 << bits).collect();
    all.chunks(MAX_FILTER_PATCH)
        .map(|add| {
            let (add, remove) = (add.to_vec(), Vec::new());
            if reach {
                PeerMessage::Reach {
                    reset: false,
                    add,
                    remove,
                }
            } else {
                PeerMessage::Filter {
                    reset: false,
                    add,
                    remove,
                }
            }
        })
        .collect()
}

/// A made-up supernode `n` (documentation addresses: nothing answers there).
fn fake(n: u16) -> Provider {
    let mut node = [0xee; 32];
    node[..2].copy_from_slice(&n.to_le_bytes());
    let addr = std::net::SocketAddr::from(([192, 0, 2, (n % 250) as u8 + 1], 4000 + n));
    Provider::new(NodeId(node), addr)
}

/// The forged answers: a hit with a huge claimed count and an escape-code name (one
/// plausible provider, one multicast), and one whose only provider is multicast.
fn forged() -> Vec<Hit> {
    let liar = |n: u8, addr: &str| Provider::new(NodeId([n; 32]), addr.parse().unwrap());
    vec![
        Hit {
            id: ContentId::from(blake3::hash(b"forged")),
            size: 1,
            name: "\u{1b}[2J\u{1b}[31mhonest song\u{202e}ggo.exe".into(),
            sources: 4_000_000_000,
            providers: vec![liar(1, "224.0.0.1:4000"), liar(2, "0.0.0.0:4001")],
        },
        Hit {
            id: ContentId::from(blake3::hash(b"multicast only")),
            size: 1,
            name: "honest song (multicast).ogg".into(),
            sources: 4_000_000_000,
            providers: vec![liar(3, "239.1.2.3:4000")],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_supernode_cannot_blind_forge_or_poison() {
    let net = Net::new();
    let sn = net.supernode("sn").await;
    let content = bytes(4096, 5);
    let id = ContentId::from(blake3::hash(&content));
    write(&net.share_dir("a"), "honest song.ogg", &content);
    write(&net.share_dir("b"), "honest song.ogg", &content);
    let a = net.leaf("a", &sn).await;
    let b = net.leaf("b", &sn).await;
    let c = net.leaf("c", &sn).await;
    search_until(&c, &["honest", "song"], |h| {
        h.first().is_some_and(|h| h.sources == 2)
    })
    .await;

    // The liar peers (a real handshake, Intent::Peer).
    let (identity, endpoint) = raw_node();
    let hello = Hello::new(identity.node_id(), Role::Supernode, Intent::Peer);
    let link = raw_dial_as(&endpoint, &identity, &sn, hello)
        .await
        .expect("peering accepted");
    let conn = link.conn.clone();
    let (mut send, mut recv) = (link.control_send, link.control_recv);
    let (out, mut outbox) = mpsc::unbounded_channel::<PeerMessage>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outbox.recv().await {
            if wire::write_frame(&mut send, &msg).await.is_err() {
                return;
            }
        }
    });
    // It answers every query it gets with forged hits, and remembers the query.
    let queries: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let reader = {
        let (out, queries) = (out.clone(), Arc::clone(&queries));
        tokio::spawn(async move {
            while let Ok(msg) = wire::read_frame::<PeerMessage>(&mut recv).await {
                if let PeerMessage::Query { id, words, .. } = msg {
                    queries.lock().unwrap().push(words);
                    let _ = out.send(PeerMessage::Hits { id, hits: forged() });
                    let _ = out.send(PeerMessage::Done { id });
                }
            }
        })
    };
    // A filter for the honest words (so it gets that search), a reach with every position,
    // and a thousand made-up supernodes.
    let words: Vec<u32> = ["honest", "song"]
        .iter()
        .flat_map(|w| tokens(w))
        .map(|t| position(t.as_bytes()))
        .collect();
    let _ = out.send(PeerMessage::Filter {
        reset: true,
        add: words,
        remove: Vec::new(),
    });
    for msg in all_ones(REACH_BITS, true) {
        let _ = out.send(msg);
    }
    let fakes: Vec<Provider> = (0..1000).map(fake).collect();
    for chunk in fakes.chunks(MAX_GOSSIP) {
        let _ = out.send(PeerMessage::Supernodes(chunk.to_vec()));
    }

    // The liar gets the keyword search and answers it; the honest hit still ranks first,
    // the forged one shows what it really has (one provider) under a sanitised name, and
    // the multicast-only one is gone.
    let hits = search_until(&c, &["honest", "song"], |h| h.len() >= 2).await;
    assert_eq!(hits[0].id, id, "{hits:?}");
    assert_eq!(hits[0].sources, 2);
    let forged_hit = &hits[1];
    assert_eq!(forged_hit.id, ContentId::from(blake3::hash(b"forged")));
    assert_eq!(forged_hit.sources, 1);
    assert_eq!(forged_hit.providers.len(), 1);
    assert!(!hits
        .iter()
        .any(|h| h.id == ContentId::from(blake3::hash(b"multicast only"))));
    for hit in &hits {
        assert!(
            !hit.name
                .chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{:?}",
            hit.name
        );
        assert!(hit.providers.iter().all(|p| !p.addr.ip().is_multicast()));
    }
    assert!(
        !queries.lock().unwrap().is_empty(),
        "the liar got the search"
    );

    // An exact-id lookup is never routed by its dense reach.
    let lookup = c.search(&[id.to_hex()], 5).await.expect("lookup");
    assert_eq!(lookup[0].id, id);
    let own = sn
        .search(&[id.to_hex()], 5)
        .await
        .expect("lookup at the supernode");
    assert_eq!(own[0].id, id);
    assert!(
        !queries
            .lock()
            .unwrap()
            .iter()
            .any(|words| words.contains(&id.to_hex())),
        "the liar saw an exact-id lookup"
    );
    // None of its gossip became a known supernode (only the liar itself, handshaken).
    assert!(sn.status().known_supernodes.unwrap_or(0) <= 1);

    // An all-ones filter is a flood: the liar is disconnected.
    for msg in all_ones(FILTER_BITS, false) {
        let _ = out.send(msg);
    }
    // The liar is still flooding when the close comes, so that one packet can be lost to
    // its full receive buffer; its next packets then meet the supernode's stateless reset.
    // Either way the supernode says why it cut the peering.
    let reason = tokio::time::timeout(DEADLINE, conn.closed())
        .await
        .expect("liar disconnected");
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CloseCode::PROTOCOL_VIOLATION.into())
            || matches!(reason, quinn::ConnectionError::Reset),
        "{reason}"
    );
    eventually("liar dropped", || {
        let peers = sn.status().peers;
        async move { (peers == Some(0)).then_some(()) }
    })
    .await;
    let why = sn
        .status()
        .last_error
        .expect("the disconnect is recorded")
        .message;
    assert_eq!(
        why,
        format!(
            "disconnected supernode {}: filter over the density bound",
            identity.node_id().short()
        )
    );
    search_until(&c, &["honest", "song"], |h| {
        h.len() == 1 && h[0].id == id && h[0].sources == 2
    })
    .await;

    // The saved host cache holds no gossiped supernode.
    let data_dir = sn.config().node.data_dir.clone();
    for node in [c, b, a, sn] {
        node.shutdown().await;
    }
    reader.abort();
    writer.abort();
    let saved = std::fs::read_to_string(data_dir.join("hostcache.json")).expect("host cache");
    let saved: Vec<serde_json::Value> = serde_json::from_str(&saved).expect("host cache json");
    assert!(saved.len() <= 1, "{saved:?}");
    let fake_ids: Vec<String> = fakes.iter().map(|p| p.node.to_string()).collect();
    let text = serde_json::to_string(&saved).unwrap();
    assert!(!fake_ids.iter().any(|f| text.contains(f.as_str())));
}
