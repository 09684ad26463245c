//! Every election decision, as plain state (the node runtime carries them out over QUIC, the
//! simulator in [`crate::sim`] over an in-memory network; both run the same code):
//! * **a leaf's uplink** ([`leaf`]): whom to dial to join, when to promote itself (first node
//!   of a network, or heir `k` of a dead supernode after `k` × the heir delay);
//! * **succession** ([`succession`]): which joined leaves are heirs, best first;
//! * **growth** ([`growth`]): when a full supernode asks its best heir to promote, and which
//!   of its leaves move to the new supernode once it has peered back;
//! * **shrink** ([`demotion`]): whether an under-used `auto` supernode demotes now, and where
//!   each of its leaves goes;
//! * **the capacity score** ([`score`]) a node advertises when it is eligible.
//!
//! The timings the runtime keeps for these decisions are in [`crate::timing`].

pub mod demotion;
pub mod growth;
pub mod leaf;
pub mod score;
pub mod succession;

pub use demotion::{plan_demotion, room_to_spare, DemotePolicy, Demotion, FILL_PCT};
pub use growth::pick_handover;
pub use leaf::{LeafElection, Redirect, Step, Target, MAX_BACKOFF, REFUSED_WAIT, STRANDED_AFTER};

#[cfg(test)]
mod tests;
