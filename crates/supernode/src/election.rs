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
//!
//! # Threat model
//! kazoo is open: anyone may run an `auto` node, claim any capacity in its `Hello`, and become
//! a supernode when the election says so. What a hostile *eligible* node can and cannot do:
//! * **It cannot jump the succession list.** Heirs are ranked by what the supernode observed
//!   ([`succession`]): an answered dial back at the IP the leaf is seen at, then time attached
//!   in whole steps; a claimed capacity only breaks ties within a step and is capped. A
//!   newcomer claiming `u32::MAX` ranks below every leaf attached a step longer.
//! * **It cannot pull leaves to itself.** A full supernode asks only its heir 0 to promote
//!   and hands leaves over only to that node, only if it peers back within the handover
//!   window, and at most once per request ([`growth`]); leaves are otherwise redirected only
//!   to the supernode's own peers. A node that promotes on its own (stranded, or refused by
//!   full supernodes) gets only the leaves that choose to join it.
//! * **It can, with patience, become heir 0** (by staying attached and reachable longer
//!   than the honest leaves), and so a supernode after a death or a growth request. As a
//!   supernode it can drop or forge answers for the leaves that join it: a forged hit costs a
//!   leaf a search, never a corrupt file (every piece is verified against the content id),
//!   and its peers bound what it can send them (see [`crate::overlay`]). It cannot keep
//!   leaves: they re-home when it dies or misbehaves, and it is one of 30–50 peers.
//! * **Many sybils** can fill the succession list only by being attached longer than the
//!   honest leaves, each from an address that answers dial backs; `max_leaves_per_ip`
//!   bounds how many one address can place.

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
