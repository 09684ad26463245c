//! A host of the test network, and processes running in it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use crate::ns::Namespace;

/// One host: a network namespace with one interface (`eth0`), one IPv4 address and, on the
/// public segment, one IPv6 address.
#[derive(Clone, Debug)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) addr: Ipv4Addr,
    pub(crate) addr6: Option<Ipv6Addr>,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) dir: PathBuf,
}

impl Host {
    /// The name it was made with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its own address (behind NAT: the LAN address; the outside one is
    /// [`Home::wan_addr`](crate::Home::wan_addr)).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its IPv6 address: `Some` for a public host (in `2001:db8:6b7a::/64`), `None` for a
    /// home's router and hosts (homes are IPv4-only).
    pub fn addr6(&self) -> Option<Ipv6Addr> {
        self.addr6
    }

    /// The namespace's name, for `ip netns exec NAME ...` by hand.
    pub fn namespace(&self) -> &str {
        self.ns.name()
    }

    /// A scratch directory of its own (created), removed with the network: for configs, data
    /// and shared files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command that runs `program` inside this host (the child enters the namespace before
    /// `exec`); run it with [`Proc::spawn`] for a long-lived process, or `.output()`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.ns.command(program)
    }

    /// Runs `f` on a thread inside this host; sockets it makes belong to the host and can be
    /// used from any thread afterwards (a quinn endpoint too).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
        self.ns.run(f)
    }

    /// A UDP socket of this host bound to `0.0.0.0:port` (0: an ephemeral port, from this
    /// host's own range behind an EIM NAT).
    pub fn udp_socket(&self, port: u16) -> std::io::Result<UdpSocket> {
        self.run(|| UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))?
    }

    /// A UDP socket of this host bound to `[::]:port` (dual-stack: IPv4 peers appear as
    /// `::ffff:a.b.c.d`).
    pub fn udp_socket6(&self, port: u16) -> std::io::Result<UdpSocket> {
        self.run(|| UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))))?
    }

    /// A TCP listener of this host on `0.0.0.0:port`.
    pub fn tcp_listener(&self, port: u16) -> std::io::Result<TcpListener> {
        self.run(|| TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))?
    }

    /// A TCP connection from this host to `addr`.
    pub fn tcp_connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        self.run(|| TcpStream::connect(addr))?
    }
}

/// A child process, killed (and reaped) when dropped. The network kills whatever is left in
/// its namespaces when it is dropped, too.
#[derive(Debug)]
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Spawns `cmd` (from [`Host::command`]).
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Proc> {
        Ok(Proc {
            child: cmd.spawn()?,
        })
    }

    /// Its pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, for its pipes or `try_wait`.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills and reaps it now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
