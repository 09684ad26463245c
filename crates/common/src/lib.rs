//! Shared parts of kazoo: node identity and TLS, the wire protocol, content hashing (the
//! BLAKE3 piece tree), the configuration schema and QUIC transport set-up.
//!
//! Everything that two nodes must agree on lives here, so the supernode and leaf crates
//! cannot drift apart on the format of a message or a hash.

#![warn(missing_docs)]

pub mod addr;
pub mod clock;
pub mod config;
pub mod hash;
pub mod id;
pub mod identity;
pub mod text;
pub mod tls;
pub mod transport;
pub mod wire;

pub use id::{ContentId, NodeId};
