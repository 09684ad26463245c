//! A many-host test network on one Linux machine, for kazoo's tests and benchmarks.
//!
//! It is a crate of its own because it is test infrastructure: it needs root and `unsafe`
//! system calls (`setns`, TAP devices) that the product crates must never carry, and both
//! `tests/` and `benches/` use it. Nothing in the product depends on it.
//!
//! Every host is a network namespace with its own address:
//!
//! * the **public segment** is a bridge in a namespace of its own (`198.18.0.1/16`, the
//!   RFC 2544 benchmarking range, never routed anywhere); [`Net::public_host`] attaches a
//!   host at `198.18.1.2`, `198.18.1.3`, ...;
//! * the public segment is **dual-stack**: the gateway is also `2001:db8:6b7a::1/64` and
//!   every public host also `2001:db8:6b7a::1:2`, `::1:3`, ... ([`Host::addr6`]; the last
//!   two groups are the last two octets of its IPv4 address), with its default IPv6 route
//!   through the gateway. The prefix is in the documentation range (`2001:db8::/32`, RFC
//!   3849), which nothing routes, and clear of the unique-local prefix kazoo's relay uses for
//!   its circuits' stand-in addresses. Duplicate address detection is off in every
//!   namespace, so addresses work at once; the bridges have fixed MAC addresses and no
//!   multicast snooping, so neighbour discovery, like ARP, never finds a stale or missing
//!   entry;
//! * a **home** ([`Net::home`]) is a router namespace whose WAN side (`198.18.64+h.1`) is on
//!   the public segment and whose LAN bridge serves [`Home::host`]s at `192.168.h+1.2`, ...
//!   (with [`Nat::Firewall`], public addresses `198.19.h+1.2`, ... routed to it), doing the
//!   [`Nat`] kind it was made with;
//! * homes are **IPv4-only**: their routers and LAN hosts have no IPv6 address (a home's
//!   IPv6 would need a firewall of its own, which no test asks for yet);
//! * every public host's and router's link to the segment can be rate-capped, lossy and
//!   delayed ([`Link`]).
//!
//! Hosts have no route out of the namespaces this crate made, IPv4 or IPv6 (the gateway's
//! namespace has no default route of either family), so no packet leaves them.
//! Programs run inside a host with [`Host::command`] (the child enters the namespace before
//! `exec`) or in-process with [`Host::run`] and [`Host::udp_socket`] (a socket stays in the
//! namespace it was made in). Dropping the [`Net`] — on a panic too — kills every process in
//! its namespaces, stops its delay threads, and removes its namespaces (with their veths,
//! bridges and TAP devices) and its temporary directory. Names are unique per process and
//! per network (`kzt<pid>-<n>-<host>`), so tests run in parallel; namespaces left by a test
//! process that was killed are removed by the next [`Net::new`].
//!
//! Needs root, `ip` and `tc` (iproute2), `nft` (nftables) and `/dev/net/tun` (for delays).

mod delay;
mod host;
mod link;
mod nat;
mod net;
mod ns;

pub use delay::MAX_QUEUED_BYTES;
pub use host::{Host, Proc};
pub use link::Link;
pub use nat::{Nat, MAPPING_TIMEOUT_SECS, MAX_MAPPINGS, SPARE_PORTS};
pub use net::{Home, Net, MAX_HOMES, MAX_HOSTS_PER_HOME, MAX_PUBLIC_HOSTS};

/// What can go wrong building a test network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This machine cannot make namespaces (not root, a tool missing, no kernel support).
    #[error("network namespaces unavailable: {0}")]
    Unavailable(String),
    /// A setup command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call or a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A bad request: name, count or link settings.
    #[error("{0}")]
    Spec(String),
}

/// Whether this runs under CI (`CI` set to anything but empty, `0` or `false`), where a test
/// network that cannot be built is a failure rather than a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Has an IPv6 socket report ICMPv6 errors (`IPV6_RECVERR`): a connected UDP socket then
/// sees "no route" from a gateway as an error on its next `recv`.
pub fn report_errors6(sock: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    set_option(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
}

/// Sets a socket's receive buffer to `bytes`, past `net.core.rmem_max` (`SO_RCVBUFFORCE`,
/// root only): a test counting datagrams wants none dropped by its own socket.
pub fn force_recv_buffer(sock: &impl std::os::fd::AsRawFd, bytes: i32) -> std::io::Result<()> {
    set_option(sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
}

/// `setsockopt(level, name, value)` with an integer value.
fn set_option(
    sock: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: setsockopt on a live descriptor with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
