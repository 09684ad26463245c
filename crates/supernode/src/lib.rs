//! The supernode role: an index of what its leaves share ([`index`]), the tokeniser that
//! decides what a keyword matches ([`tokenize`]), and the leaf-facing service that turns
//! wire requests into index operations ([`service`]), with what it makes of leaves' reports of
//! unreachable sources ([`reports`]) and of hits other nodes send back ([`hits`]).
//!
//! Everything here is plain state driven by the node runtime in `kazoo-leaf`, which owns the
//! sockets; the same logic therefore runs over QUIC and in in-memory tests.

#![warn(missing_docs)]

pub mod election;
pub mod filter;
pub mod hits;
pub mod index;
pub mod overlay;
pub mod query;
pub mod reports;
pub mod service;
pub mod sim;
pub mod timing;
pub mod tokenize;

pub use election::{DemotePolicy, Demotion};
pub use hits::validate_hit;
pub use index::{Index, IndexError, LeafKey};
pub use overlay::{Action, Load, Overlay, OverlayConfig, QueryKey, Routing};
pub use service::{check_query, merge_hits, Admission, RelayHop, RelayRefusal, Supernode};
