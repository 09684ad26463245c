//! How reachable this node is, from what its supernode observed (the
//! `Notice::Reachability` after a join): the address its connection comes from, and which
//! address, if any, answered the supernode's dial back.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A leaf's reachability class, as its supernode's dial back found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Its listen port answered at the IP it is seen at, to a dial from a socket it never
    /// sent to: anyone can dial it. The dial comes from a peer of its supernode, at another
    /// IP; a supernode without peers dials from its own IP, which an address-restricted
    /// cone lets in, so such a leaf passes then.
    Reachable,
    /// Behind a NAT that remaps its port: not reachable at its listen port (maybe at its
    /// mapping, for an endpoint-independent NAT; it is listed there).
    Nat,
    /// Seen at its own listen port but not answering: a firewall (or a port-keeping NAT that
    /// filters by port) drops unsolicited traffic.
    Firewalled,
}

impl Class {
    /// What the supernode observed, for a node listening on `listen_port`.
    pub fn classify(listen_port: u16, observed: SocketAddr, answered: Option<SocketAddr>) -> Self {
        match answered {
            Some(_) => Class::Reachable,
            None if observed.port() != listen_port => Class::Nat,
            None => Class::Firewalled,
        }
    }

    /// How `kazoo status` shows it.
    pub fn describe(self) -> &'static str {
        match self {
            Class::Reachable => "reachable",
            Class::Nat => "behind NAT, not reachable at its listen port",
            Class::Firewalled => "firewalled, not reachable by a direct dial",
        }
    }
}

/// What this node knows of its own reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    /// Its address as its supernode sees it.
    pub observed: SocketAddr,
    /// The address that answered the supernode's dial back, if any.
    pub answered: Option<SocketAddr>,
    /// The class that follows.
    pub class: Class,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_from_the_dial_back() {
        let at = |port| SocketAddr::from(([198, 51, 100, 7], port));
        assert_eq!(
            Class::classify(4710, at(4710), Some(at(4710))),
            Class::Reachable
        );
        assert_eq!(Class::classify(4710, at(40001), None), Class::Nat);
        assert_eq!(Class::classify(4710, at(4710), None), Class::Firewalled);
    }
}
