//! Addresses in the config that may be host names: `node.listen` and the address part of
//! `network.bootstrap` entries. An IP literal (`1.2.3.4:4710`, `[::1]:4710`) is used as is; a
//! name (`localhost:4710`, `home.example.net:4710`) is resolved by the node at start and again
//! whenever it dials it (dynamic DNS), each lookup bounded by [`RESOLVE_TIMEOUT`] and
//! keeping at most [`MAX_RESOLVED`] addresses.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest a host name lookup may take before it counts as failed.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most addresses kept from one lookup (in the resolver's order of preference).
pub const MAX_RESOLVED: usize = 8;
/// Longest host name accepted (the DNS limit).
pub const MAX_HOST_LEN: usize = 253;

/// An IP address and port, or a host name and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostAddr {
    /// An IP literal.
    Ip(SocketAddr),
    /// A host name to resolve, and the port.
    Name {
        /// The host name (letters, digits, `-`, `.`, `_`; at most [`MAX_HOST_LEN`]).
        host: String,
        /// The UDP port.
        port: u16,
    },
}

/// Why a host name gave no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed (no such name, no network).
    #[error("cannot resolve {name}: {source}")]
    Lookup {
        /// `host:port`.
        name: String,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// The lookup took longer than [`RESOLVE_TIMEOUT`].
    #[error("cannot resolve {0}: no answer within {secs} s", secs = RESOLVE_TIMEOUT.as_secs())]
    Timeout(String),
    /// The name resolved, but to no address of a family this node can use.
    #[error("{0} has no address this node can reach")]
    NoAddress(String),
}

impl HostAddr {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            HostAddr::Ip(addr) => addr.port(),
            HostAddr::Name { port, .. } => *port,
        }
    }

    /// The address, if it is an IP literal.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            HostAddr::Ip(addr) => Some(*addr),
            HostAddr::Name { .. } => None,
        }
    }

    /// The addresses it stands for now: the literal, or what the name resolves to (off the
    /// async runtime's threads, within [`RESOLVE_TIMEOUT`], at most [`MAX_RESOLVED`],
    /// v4-mapped IPv6 addresses made plain IPv4).
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, ResolveError> {
        let (host, port) = match self {
            HostAddr::Ip(addr) => return Ok(vec![crate::addr::canonical(*addr)]),
            HostAddr::Name { host, port } => (host.as_str(), *port),
        };
        let lookup = tokio::net::lookup_host((host, port));
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
            .await
            .map_err(|_| ResolveError::Timeout(self.to_string()))?
            .map_err(|source| ResolveError::Lookup {
                name: self.to_string(),
                source,
            })?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in found.map(crate::addr::canonical) {
            if !addrs.contains(&addr) && addrs.len() < MAX_RESOLVED {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            return Err(ResolveError::NoAddress(self.to_string()));
        }
        Ok(addrs)
    }
}

impl From<SocketAddr> for HostAddr {
    fn from(addr: SocketAddr) -> Self {
        HostAddr::Ip(addr)
    }
}

/// Whether `host` is a plausible DNS name: labels of letters, digits, `-` and `_`, separated
/// by dots, the last not all digits.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // No top-level domain is all digits: `1.2.3` is a mistyped address, not a name.
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

impl FromStr for HostAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(HostAddr::Ip(addr));
        }
        let bad = || format!("{s:?} is not IP:PORT, [IPv6]:PORT or HOST:PORT");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if !is_host_name(host) || host.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad());
        }
        Ok(HostAddr::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddr::Ip(addr) => write!(f, "{addr}"),
            HostAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl<'de> Deserialize<'de> for HostAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HostAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_names_and_junk() {
        let v4: HostAddr = "127.0.0.1:4710".parse().unwrap();
        assert_eq!(v4.ip(), Some(SocketAddr::from(([127, 0, 0, 1], 4710))));
        let v6: HostAddr = "[::1]:4710".parse().unwrap();
        assert_eq!(v6.ip().unwrap().port(), 4710);
        assert!(v6.ip().unwrap().is_ipv6());
        let name: HostAddr = "Home.Example.net:4711".parse().unwrap();
        assert_eq!(name.to_string(), "home.example.net:4711");
        assert_eq!(name.port(), 4711);
        for bad in [
            "nope",
            "host:",
            "host:99999",
            ":4710",
            "a b:1",
            "::1:4710",
            "1.2.3:4",
            "x..y:1",
            "[host]:1",
        ] {
            assert!(bad.parse::<HostAddr>().is_err(), "{bad}");
        }
        let long = format!("{}:1", "a.".repeat(200));
        assert!(long.parse::<HostAddr>().is_err());
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback_and_junk_is_an_error() {
        let name: HostAddr = "localhost:4710".parse().unwrap();
        let addrs = name.resolve().await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 4710));
        // `.invalid` never resolves (RFC 6761).
        let junk: HostAddr = "no-such-host.invalid:4710".parse().unwrap();
        let err = junk.resolve().await.unwrap_err();
        assert!(
            err.to_string().contains("no-such-host.invalid:4710"),
            "{err}"
        );
    }
}
