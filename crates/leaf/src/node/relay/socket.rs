//! A UDP socket made of relay circuits, for a QUIC endpoint of its own: each circuit (a
//! stream to the relaying supernode, carrying relay frames) appears as one remote address,
//! so an ordinary kazoo connection — TLS, handshake, requests — runs through the relay end
//! to end. Packets for a circuit whose queue is full are dropped, as a congested link would
//! (QUIC's congestion control backs off).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use kazoo_common::wire::MAX_RELAY_PACKET;
use kazoo_common::NodeId;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, RecvStream, SendStream, UdpPoller};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Most circuits a node has open at once (as downloader and as source together); more
/// are refused.
pub const MAX_CIRCUITS: usize = 32;
/// Packets queued towards one circuit's stream; beyond, packets are dropped.
const CIRCUIT_QUEUE: usize = 256;
/// Packets queued from all circuits towards the endpoint.
const INCOMING_QUEUE: usize = 1024;

/// One circuit: its outgoing queue, the node at its other end, and its reading task.
struct Circuit {
    tx: mpsc::Sender<Bytes>,
    peer: NodeId,
    reader: AbortHandle,
}

/// The circuits, as a socket for a QUIC endpoint.
pub struct CircuitSocket {
    circuits: Mutex<HashMap<SocketAddr, Circuit>>,
    incoming_tx: mpsc::Sender<(SocketAddr, Bytes)>,
    incoming_rx: Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
    next: AtomicU64,
}

impl fmt::Debug for CircuitSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitSocket").finish_non_exhaustive()
    }
}

/// The address circuit `n` appears at: in a unique-local IPv6 prefix no real peer has.
fn circuit_addr(n: u64) -> SocketAddr {
    let [a, b, c, d] = [
        (n >> 48) as u16,
        (n >> 32) as u16,
        (n >> 16) as u16,
        n as u16,
    ];
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0xfd6b, 0x617a, 0x6f6f, 0, a, b, c, d)),
        1,
    )
}

impl Default for CircuitSocket {
    fn default() -> Self {
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        CircuitSocket {
            circuits: Mutex::new(HashMap::new()),
            incoming_tx,
            incoming_rx: Mutex::new(incoming_rx),
            next: AtomicU64::new(1),
        }
    }
}

impl CircuitSocket {
    /// Makes a circuit of a relay stream to `peer` (after the relay's `Relaying`): its
    /// address, or `None` when [`MAX_CIRCUITS`] are open.
    pub fn attach(
        self: &Arc<Self>,
        peer: NodeId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Option<SocketAddr> {
        let mut circuits = crate::lock(&self.circuits);
        if circuits.len() >= MAX_CIRCUITS {
            return None;
        }
        let addr = circuit_addr(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = mpsc::channel::<Bytes>(CIRCUIT_QUEUE);
        tokio::spawn(async move {
            while let Some(packet) = rx.recv().await {
                let mut frame = Vec::with_capacity(2 + packet.len());
                frame.extend_from_slice(&(packet.len() as u16).to_be_bytes());
                frame.extend_from_slice(&packet);
                if send.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = send.finish();
        });
        let socket = Arc::clone(self);
        let reader = tokio::spawn(async move {
            let reason = socket.read_circuit(addr, &mut recv).await;
            tracing::debug!(circuit = %addr, %reason, "relay circuit ended");
            crate::lock(&socket.circuits).remove(&addr);
        });
        circuits.insert(
            addr,
            Circuit {
                tx,
                peer,
                reader: reader.abort_handle(),
            },
        );
        Some(addr)
    }

    /// Reads relay frames from a circuit's stream into the endpoint's queue until the
    /// stream ends or breaks the framing; why it ended.
    async fn read_circuit(&self, addr: SocketAddr, recv: &mut RecvStream) -> String {
        let mut buf = [0u8; MAX_RELAY_PACKET];
        loop {
            let mut len = [0u8; 2];
            if let Err(e) = recv.read_exact(&mut len).await {
                return e.to_string();
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len == 0 || len > MAX_RELAY_PACKET {
                return format!("relay frame of {len} bytes");
            }
            if let Err(e) = recv.read_exact(&mut buf[..len]).await {
                return e.to_string();
            }
            let packet = Bytes::copy_from_slice(&buf[..len]);
            if self.incoming_tx.send((addr, packet)).await.is_err() {
                return "socket closed".into();
            }
        }
    }

    /// Ends the circuit at `addr` (its streams are finished and dropped).
    pub fn detach(&self, addr: SocketAddr) {
        if let Some(circuit) = crate::lock(&self.circuits).remove(&addr) {
            circuit.reader.abort();
        }
    }

    /// The node at the other end of the circuit at `addr`, if it is open.
    pub fn peer(&self, addr: SocketAddr) -> Option<NodeId> {
        crate::lock(&self.circuits).get(&addr).map(|c| c.peer)
    }
}

impl AsyncUdpSocket for CircuitSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let circuits = crate::lock(&self.circuits);
        let Some(circuit) = circuits.get(&transmit.destination) else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no relay circuit to that address",
            ));
        };
        if transmit.contents.len() <= MAX_RELAY_PACKET {
            // A full queue drops the packet, as a congested link would.
            let _ = circuit
                .tx
                .try_send(Bytes::copy_from_slice(transmit.contents));
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut rx = crate::lock(&self.incoming_rx);
        match rx.poll_recv(cx) {
            Poll::Ready(Some((addr, packet))) => {
                let len = packet.len().min(buf.len());
                buf[..len].copy_from_slice(&packet[..len]);
                *slot = RecvMeta {
                    addr,
                    len,
                    stride: len,
                    ecn: None,
                    dst_ip: None,
                };
                Poll::Ready(Ok(1))
            }
            // The socket holds a sender itself, so the queue never closes.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(circuit_addr(0))
    }
}

/// Sending never waits: a full circuit queue drops the packet instead.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
