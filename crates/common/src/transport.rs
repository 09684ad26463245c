//! QUIC set-up and the connection handshake (see [`crate::wire`] for the protocol).
//!
//! [`endpoint`] binds one UDP socket that both accepts and dials, so the address a peer sees
//! a node connect from is the address it listens on. [`dial`] and [`accept`] run the TLS and
//! `Hello` handshakes and return a [`Link`]: the connection, the peer's proven id and `Hello`,
//! and the control stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;

use crate::identity::Identity;
use crate::tls;
use crate::wire::{
    self, CloseCode, ErrorCode, FrameError, Handshake, Hello, MAX_CONCURRENT_STREAMS,
    PROTOCOL_VERSION,
};
use crate::NodeId;

pub use crate::wire::HANDSHAKE_TIMEOUT;
pub use private::NetworkKey;

pub mod private;
use private::Side;

/// QUIC timing; short by default so a dead peer is noticed within seconds.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Keep-alive ping interval.
    pub keep_alive: Duration,
    /// Connection declared dead after this long without hearing from the peer.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            keep_alive: Duration::from_millis(500),
            idle: Duration::from_secs(2),
        }
    }
}

/// Errors setting up transport or connections.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the socket failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Starting a connection failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: quinn::ConnectError,
    },
    /// The QUIC or TLS handshake, or the connection, failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
    /// The peer's certificate is unusable.
    #[error("{0}")]
    Cert(#[from] tls::CertError),
    /// The `Hello` exchange failed.
    #[error("handshake: {0}")]
    Frame(#[from] FrameError),
    /// The peer's `Hello` broke a rule.
    #[error("handshake: {0}")]
    Violation(String),
    /// The peer is not in this node's private network (`network.secret`), or this node is
    /// not in the peer's.
    #[error("not the same network: {0}")]
    WrongNetwork(String),
    /// The peer is not in this node's `network.allow`: the dialler closed the connection.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The peer refused us.
    #[error("refused by peer ({code:?}): {reason}")]
    Refused {
        /// The refusing node (proven by its TLS key).
        node: NodeId,
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        reason: String,
        /// Where it suggests trying instead.
        redirect: Vec<wire::Provider>,
    },
    /// The dial was not attempted: the dialler's policy holds this address back (it did not
    /// answer recently, or too many dials to new addresses are under way).
    #[error("not dialled: {0}")]
    NotDialled(String),
}

/// Connection-level receive window of an accepted connection. Only requests (and a peer's
/// control messages) travel towards the acceptor, so the data a node buffers for everyone
/// who dialled it stays ≤ its connection limit × this.
pub const ACCEPTED_RECEIVE_WINDOW: u32 = 1 << 20;
/// Stream-level receive window of an accepted connection (a 1 MiB register batch still
/// arrives: credit returns as it is read). Half the connection's window, so one stream never
/// holds all of it; it is what a relay leg from a source to its supernode can have in
/// flight, so it caps a relayed transfer at this per round trip (13 MB/s at 40 ms).
pub const ACCEPTED_STREAM_WINDOW: u32 = ACCEPTED_RECEIVE_WINDOW / 2;

fn transport_config(timeouts: Timeouts) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(timeouts.keep_alive));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(timeouts.idle).ok());
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // Windows sized for ~1 GB/s on loopback; per connection memory stays ≤ 32 MiB.
    t.stream_receive_window(VarInt::from_u32(8 << 20));
    t.receive_window(VarInt::from_u32(32 << 20));
    t.send_window(32 << 20);
    t
}

/// How an endpoint accepts: TLS with `identity`, accepted-side windows.
fn server_config(
    identity: &Identity,
    timeouts: Timeouts,
) -> Result<quinn::ServerConfig, TransportError> {
    let tls = tls::server_config(identity)?;
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Violation(format!("server crypto: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = transport_config(timeouts);
    transport.receive_window(VarInt::from_u32(ACCEPTED_RECEIVE_WINDOW));
    transport.stream_receive_window(VarInt::from_u32(ACCEPTED_STREAM_WINDOW));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Binds a QUIC endpoint that accepts with `identity` and can dial.
pub fn endpoint(
    identity: &Identity,
    listen: SocketAddr,
    timeouts: Timeouts,
) -> Result<Endpoint, TransportError> {
    let server = server_config(identity, timeouts)?;
    let bound = |addr: SocketAddr| {
        let socket = bind_udp(addr).map_err(|source| TransportError::Bind { addr, source })?;
        let runtime = Arc::new(quinn::TokioRuntime);
        Endpoint::new(Default::default(), Some(server.clone()), socket, runtime)
            .map_err(|source| TransportError::Bind { addr, source })
    };
    match bound(listen) {
        // No IPv6 on this host: every IPv4 interface instead.
        Err(TransportError::Bind { source, .. })
            if listen.ip() == std::net::Ipv6Addr::UNSPECIFIED && no_ipv6(&source) =>
        {
            let v4 = SocketAddr::from(([0, 0, 0, 0], listen.port()));
            tracing::warn!(%listen, error = %source, fallback = %v4, "IPv6 unavailable; listening on IPv4 only");
            bound(v4)
        }
        result => result,
    }
}

/// Binds a UDP socket at `addr`; an IPv6 socket is dual-stack (`IPV6_V6ONLY` off, whatever
/// the system default), so `[::]` also takes IPv4 peers, seen as v4-mapped addresses (see
/// [`crate::addr`]).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Whether a bind failed because the host has no IPv6.
fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// A QUIC endpoint like [`endpoint`] over `socket` instead of a UDP socket (the leaf's
/// relay circuits).
pub fn endpoint_over(
    identity: &Identity,
    timeouts: Timeouts,
    socket: Arc<dyn quinn::AsyncUdpSocket>,
) -> Result<Endpoint, TransportError> {
    let server = server_config(identity, timeouts)?;
    let addr = socket
        .local_addr()
        .map_err(|e| TransportError::Violation(format!("relay socket: {e}")))?;
    Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| TransportError::Bind { addr, source })
}

/// A client config for dialling a node whose id must be `expected` (any if `None`).
pub fn client_config(
    identity: &Identity,
    expected: Option<NodeId>,
    timeouts: Timeouts,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TransportError> {
    let tls = tls::client_config(identity, expected, alpn)?;
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Violation(format!("client crypto: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config(timeouts)));
    Ok(client)
}

/// The node id proven by the peer's TLS certificate.
pub fn peer_node_id(conn: &Connection) -> Result<NodeId, TransportError> {
    let identity = conn
        .peer_identity()
        .ok_or_else(|| TransportError::Violation("peer presented no certificate".into()))?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TransportError::Violation("unexpected peer identity type".into()))?;
    let cert = certs
        .first()
        .ok_or_else(|| TransportError::Violation("empty certificate chain".into()))?;
    Ok(tls::node_id_from_cert(cert)?)
}

/// An established connection after the `Hello` exchange.
#[derive(Debug)]
pub struct Link {
    /// The QUIC connection.
    pub conn: Connection,
    /// The peer's `Hello` (its `node_id` is proven by TLS).
    pub hello: Hello,
    /// Control stream, send side.
    pub control_send: SendStream,
    /// Control stream, receive side.
    pub control_recv: RecvStream,
}

impl Link {
    /// The peer's proven node id.
    pub fn peer(&self) -> NodeId {
        self.hello.node_id
    }

    /// The peer's address as seen by us.
    pub fn remote(&self) -> SocketAddr {
        crate::addr::canonical(self.conn.remote_address())
    }

    /// Where the peer accepts connections (see [`advertised_addr`]).
    pub fn advertised(&self) -> SocketAddr {
        advertised_addr(self.remote(), &self.hello)
    }
}

/// Where a dialler seen at `remote` accepts connections: its IP as seen, with the port its
/// `Hello` advertises (unless it advertises none). This is the address other nodes are given
/// for it (as a source, an heir, a peer); it differs from `remote` when the dialler's
/// datagrams pass through a relay or a port-mapping middlebox.
pub fn advertised_addr(remote: SocketAddr, hello: &Hello) -> SocketAddr {
    match hello.listen_port {
        0 => remote,
        port => SocketAddr::new(remote.ip(), port),
    }
}

/// Closes `conn` with a close code and a reason the peer can log.
pub fn close(conn: &Connection, code: u32, reason: &str) {
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

fn check_hello(hello: &Hello, tls_id: NodeId) -> Result<(), (u32, ErrorCode, String)> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            CloseCode::VERSION_MISMATCH,
            ErrorCode::VersionMismatch,
            format!(
                "protocol version {} is not supported (this node speaks {PROTOCOL_VERSION})",
                hello.version
            ),
        ));
    }
    if hello.node_id != tls_id {
        return Err((
            CloseCode::IDENTITY_MISMATCH,
            ErrorCode::BadRequest,
            format!(
                "handshake claims node {} but TLS proves {}",
                hello.node_id, tls_id
            ),
        ));
    }
    Ok(())
}

/// Dials `addr`, requiring node id `expected` if given, and exchanges `Hello`s (an open
/// network: see [`dial_private`]).
pub async fn dial(
    endpoint: &Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    expected: Option<NodeId>,
    timeouts: Timeouts,
    hello: Hello,
) -> Result<Link, TransportError> {
    dial_private(endpoint, identity, addr, expected, timeouts, hello, None).await
}

/// [`dial`] in the private network of `network` (`None`: an open network): our `Hello`
/// carries our proof, and the acceptor's must carry a valid one (see [`private`]).
pub async fn dial_private(
    endpoint: &Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    expected: Option<NodeId>,
    timeouts: Timeouts,
    mut hello: Hello,
    network: Option<&NetworkKey>,
) -> Result<Link, TransportError> {
    let config = client_config(identity, expected, timeouts, wire::ALPN)?;
    let connecting = endpoint
        .connect_with(config, addr, "kazoo")
        .map_err(|source| TransportError::Connect { addr, source })?;
    let fut = async {
        let conn = connecting.await?;
        let tls_id = peer_node_id(&conn)?;
        hello.network_proof = private::proof(network, &conn, Side::Dialler);
        let (mut send, mut recv) = conn.open_bi().await?;
        wire::write_frame(&mut send, &Handshake::Hello(hello)).await?;
        match wire::read_frame::<Handshake>(&mut recv).await {
            Ok(Handshake::Hello(theirs)) => {
                if let Err((code, _, reason)) = check_hello(&theirs, tls_id) {
                    close(&conn, code, &reason);
                    return Err(TransportError::Violation(reason));
                }
                let proof = theirs.network_proof;
                if let Err(reason) = private::check(network, &conn, Side::Acceptor, proof) {
                    close(&conn, CloseCode::WRONG_NETWORK, &reason);
                    return Err(TransportError::WrongNetwork(reason));
                }
                Ok(Link {
                    conn,
                    hello: theirs,
                    control_send: send,
                    control_recv: recv,
                })
            }
            Ok(Handshake::Refused {
                code,
                reason,
                redirect,
            }) => {
                let redirect = redirect.into_iter().take(wire::MAX_SUCCESSION).collect();
                Err(TransportError::Refused {
                    node: tls_id,
                    code,
                    reason,
                    redirect,
                })
            }
            Err(e) => {
                if e.is_violation() {
                    close(&conn, CloseCode::PROTOCOL_VIOLATION, &e.to_string());
                }
                match conn.close_reason() {
                    Some(reason) => Err(reason.into()),
                    None => Err(e.into()),
                }
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| TransportError::Timeout)?
}

/// A connection whose peer said `Hello` and passed the version and identity checks; the
/// application decides whether to [`admit`](Pending::admit) or [`refuse`](Pending::refuse).
#[derive(Debug)]
pub struct Pending {
    conn: Connection,
    hello: Hello,
    send: SendStream,
    recv: RecvStream,
    network: Option<NetworkKey>,
}

impl Pending {
    /// The peer's `Hello`.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        crate::addr::canonical(self.conn.remote_address())
    }

    /// Where the dialler accepts connections (see [`advertised_addr`]).
    pub fn advertised(&self) -> SocketAddr {
        advertised_addr(self.remote(), &self.hello)
    }

    /// Answers with our `Hello` and returns the established link.
    pub async fn admit(mut self, mut ours: Hello) -> Result<Link, TransportError> {
        ours.network_proof = private::proof(self.network.as_ref(), &self.conn, Side::Acceptor);
        wire::write_frame(&mut self.send, &Handshake::Hello(ours)).await?;
        Ok(Link {
            conn: self.conn,
            hello: self.hello,
            control_send: self.send,
            control_recv: self.recv,
        })
    }

    /// Refuses with a reason, then closes the connection with `CloseCode::REFUSED`.
    pub async fn refuse(self, code: ErrorCode, reason: &str) {
        self.refuse_with(code, reason, Vec::new()).await;
    }

    /// Refuses with a reason and supernodes to try instead, then closes the connection.
    pub async fn refuse_with(
        mut self,
        code: ErrorCode,
        reason: &str,
        redirect: Vec<wire::Provider>,
    ) {
        send_refusal(&mut self.send, code, reason, redirect).await;
        close(&self.conn, CloseCode::REFUSED, reason);
    }
}

/// Sends a refusal on the control stream and waits (briefly) until the peer has it.
async fn send_refusal(
    send: &mut SendStream,
    code: ErrorCode,
    reason: &str,
    redirect: Vec<wire::Provider>,
) {
    let refusal = Handshake::Refused {
        code,
        reason: reason.to_owned(),
        redirect,
    };
    if wire::write_frame(send, &refusal).await.is_ok() {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    }
}

/// Completes an incoming connection up to the peer's `Hello` (TLS, version, identity) in an
/// open network (see [`accept_private`]).
pub async fn accept(incoming: quinn::Incoming) -> Result<Pending, TransportError> {
    accept_private(incoming, None).await
}

/// [`accept`] in the private network of `network` (`None`: an open network): the dialler's
/// `Hello` must carry a valid proof (else it is refused with [`ErrorCode::WrongNetwork`] and
/// the connection closed with [`CloseCode::WRONG_NETWORK`]), and [`Pending::admit`] sends
/// ours.
pub async fn accept_private(
    incoming: quinn::Incoming,
    network: Option<NetworkKey>,
) -> Result<Pending, TransportError> {
    let fut = async {
        let conn = incoming.await?;
        let tls_id = peer_node_id(&conn)?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let hello = match wire::read_frame::<Handshake>(&mut recv).await {
            Ok(Handshake::Hello(hello)) => hello,
            Ok(Handshake::Refused { .. }) => {
                close(
                    &conn,
                    CloseCode::PROTOCOL_VIOLATION,
                    "refusal sent by dialler",
                );
                return Err(TransportError::Violation("dialler sent a refusal".into()));
            }
            Err(e) => {
                close(&conn, CloseCode::PROTOCOL_VIOLATION, &e.to_string());
                return Err(e.into());
            }
        };
        if let Err((close_code, code, reason)) = check_hello(&hello, tls_id) {
            send_refusal(&mut send, code, &reason, Vec::new()).await;
            close(&conn, close_code, &reason);
            return Err(TransportError::Violation(reason));
        }
        let proof = hello.network_proof;
        if let Err(reason) = private::check(network.as_ref(), &conn, Side::Dialler, proof) {
            send_refusal(&mut send, ErrorCode::WrongNetwork, &reason, Vec::new()).await;
            close(&conn, CloseCode::WRONG_NETWORK, &reason);
            return Err(TransportError::WrongNetwork(reason));
        }
        Ok(Pending {
            conn,
            hello,
            send,
            recv,
            network,
        })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| TransportError::Timeout)?
}

#[cfg(test)]
mod tests;
