//! Sources that a supernode lists for a file but that do not behave: fresh keys joining as
//! leaves and registering a file, then never answering (dead), answering nothing (stalling),
//! or answering with the true manifest and garbage pieces (bad pieces). Used by the download
//! tests and the sybil benchmark.

use kazoo_common::hash::{hash_reader, Manifest};
use kazoo_common::identity::Identity;
use kazoo_common::transport::{self, Link};
use kazoo_common::wire::{self, Hello, Intent, Request, Response, Role, ShareEntry};
use kazoo_common::{ContentId, NodeId};
use kazoo_leaf::client;
use kazoo_leaf::Node;

use super::{raw_dial_as, raw_node};

/// A source the supernode lists for a file but that does not behave: a bare endpoint with a
/// fresh (random) key joins `sn` as a leaf and registers the file. Dropping it ends its
/// listing (its join connection closes).
pub struct FakeSource {
    /// Its node id.
    pub node: NodeId,
    _link: Link,
    _endpoint: quinn::Endpoint,
    /// The bound port nobody answers on, for a dead source.
    pub dead: Option<std::net::UdpSocket>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeSource {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Joins `sn` from `endpoint` as a leaf that says it listens on `listen_port`, and registers
/// `content` as "payload.bin".
pub async fn join_and_register(
    sn: &Node,
    identity: &Identity,
    endpoint: &quinn::Endpoint,
    listen_port: u16,
    content: &[u8],
) -> Link {
    let mut hello = Hello::new(identity.node_id(), Role::Leaf, Intent::Join);
    hello.listen_port = listen_port;
    let link = raw_dial_as(endpoint, identity, sn, hello)
        .await
        .expect("fake source joins");
    let entries = vec![ShareEntry {
        id: ContentId::from(blake3::hash(content)),
        size: content.len() as u64,
        name: "payload.bin".into(),
    }];
    let answer = client::call(&link.conn, &Request::Register { entries }).await;
    assert!(
        matches!(answer, Ok(Response::Registered { total: 1 })),
        "{answer:?}"
    );
    link
}

impl FakeSource {
    /// Its QUIC endpoint (the one it joined from).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self._endpoint
    }

    /// A dead source `node`, joined over `link`, saying it listens at `dead`'s port.
    pub fn dead(
        node: NodeId,
        link: Link,
        endpoint: quinn::Endpoint,
        dead: std::net::UdpSocket,
    ) -> Self {
        FakeSource {
            node,
            _link: link,
            _endpoint: endpoint,
            dead: Some(dead),
            task: None,
        }
    }
}

/// A dead source: listed at a bound UDP port nobody answers on.
pub async fn dead_source(sn: &Node, content: &[u8]) -> FakeSource {
    let (identity, endpoint) = raw_node();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("dead port");
    let port = dead.local_addr().expect("dead port address").port();
    let link = join_and_register(sn, &identity, &endpoint, port, content).await;
    FakeSource::dead(identity.node_id(), link, endpoint, dead)
}

/// A source that accepts connections and requests but never answers one (so it stalls the
/// manifest, and any piece asked of it).
pub async fn stalling_source(sn: &Node, content: &[u8]) -> FakeSource {
    let (identity, endpoint) = raw_node();
    stalling_from(sn, content, identity, endpoint).await
}

/// [`stalling_source`] with the given key and endpoint.
pub async fn stalling_from(
    sn: &Node,
    content: &[u8],
    identity: Identity,
    endpoint: quinn::Endpoint,
) -> FakeSource {
    serving(sn, content, identity, endpoint, None).await
}

/// [`bad_pieces_from`] with a fresh key and endpoint.
pub async fn bad_pieces_source(sn: &Node, content: &[u8]) -> FakeSource {
    let (identity, endpoint) = raw_node();
    bad_pieces_from(sn, content, identity, endpoint).await
}

/// A source that answers with the file's true manifest (so it wins the manifest race) and
/// then with pieces of the right length and the wrong bytes.
pub async fn bad_pieces_from(
    sn: &Node,
    content: &[u8],
    identity: Identity,
    endpoint: quinn::Endpoint,
) -> FakeSource {
    let (_, manifest) = hash_reader(content, content.len() as u64).expect("manifest");
    serving(sn, content, identity, endpoint, Some(manifest)).await
}

/// Joins `sn`, registers `content` and serves connections: every request left unanswered
/// (`manifest` is `None`), or the manifest answered and every piece filled with garbage.
async fn serving(
    sn: &Node,
    content: &[u8],
    identity: Identity,
    endpoint: quinn::Endpoint,
    manifest: Option<Manifest>,
) -> FakeSource {
    let port = endpoint.local_addr().expect("address").port();
    let link = join_and_register(sn, &identity, &endpoint, port, content).await;
    let me = identity.node_id();
    let task = admit_all(&identity, &endpoint, move |conn| {
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let mut stalled = Vec::new();
            while let Ok((send, recv)) = conn.accept_bi().await {
                match &manifest {
                    // Keeps every request stream open, unanswered.
                    None => stalled.push((send, recv)),
                    Some(manifest) => {
                        tokio::spawn(answer_badly(manifest.clone(), send, recv));
                    }
                }
            }
        });
    });
    FakeSource {
        node: me,
        _link: link,
        _endpoint: endpoint,
        dead: None,
        task: Some(task),
    }
}

/// Accepts every connection to `endpoint` with a kazoo handshake as `identity` (so a dial
/// back succeeds), hands each to `serve`, and holds it open until the task is aborted.
pub fn admit_all(
    identity: &Identity,
    endpoint: &quinn::Endpoint,
    serve: impl Fn(quinn::Connection) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let me = identity.node_id();
    let server = endpoint.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = server.accept().await {
            let Ok(pending) = transport::accept(incoming).await else {
                continue;
            };
            let Ok(link) = pending
                .admit(Hello::new(me, Role::Leaf, Intent::Fetch))
                .await
            else {
                continue;
            };
            serve(link.conn.clone());
            held.push(link);
        }
    })
}

/// Answers one request: the true manifest, or a piece of garbage of the right length.
async fn answer_badly(manifest: Manifest, send: quinn::SendStream, recv: quinn::RecvStream) {
    answer(&manifest, None, send, recv).await
}

/// Answers one request with `manifest`, and a piece from `content` (garbage of the right
/// length without it).
pub async fn answer(
    manifest: &Manifest,
    content: Option<&[u8]>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Ok(request) = wire::read_request(&mut recv).await else {
        return;
    };
    let sent = match request {
        Request::GetManifest { .. } => {
            wire::write_frame(&mut send, &Response::Manifest(manifest.clone()))
                .await
                .is_ok()
        }
        Request::GetPiece { index, .. } => {
            let (offset, len) = manifest.piece_range(u64::from(index));
            let piece = match content {
                Some(content) => content[offset as usize..(offset + len) as usize].to_vec(),
                None => vec![0xAA; len as usize],
            };
            wire::write_frame(&mut send, &Response::Piece { len })
                .await
                .is_ok()
                && send.write_all(&piece).await.is_ok()
        }
        _ => false,
    };
    if sent {
        let _ = send.finish();
    }
}
