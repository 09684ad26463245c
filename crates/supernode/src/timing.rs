//! Every timing rule of the roles, in one place: the runtime runs its timers at these periods
//! and the simulator ([`crate::sim`]) schedules the same events at the same times, so both run
//! the same decisions. Timings a peer can observe (the redirect grace, the dial-back and
//! handshake timeouts) are protocol constants in [`kazoo_common::wire`].

use std::time::Duration;

/// Period of a supernode's overlay tick ([`crate::Supernode::tick`]): query timeouts,
/// filter patches, dialling hosts.
pub const OVERLAY_TICK: Duration = Duration::from_millis(100);
/// How often a supernode sends each leaf its succession notice when it changed.
pub const NOTICE_EVERY: Duration = Duration::from_millis(500);
/// How often a supernode checks whether to demote ([`crate::Supernode::demotion`]).
pub const DEMOTE_CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often a full supernode may ask a leaf to promote (growth).
pub const PROMOTE_EVERY: Duration = Duration::from_secs(5);
/// How long after asking a leaf to promote its peering back still triggers a handover.
pub const HANDOVER_WINDOW: Duration = Duration::from_secs(60);
/// How long a leaf's dial to join one supernode may take before it counts as failed.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a leaf checks that its supernode still has its session (and how many entries).
pub const SESSION_CHECK: Duration = Duration::from_secs(5);
/// How long a peering must have lasted before this supernode names the peer in its
/// succession notices (the supernodes its leaves re-home to if it dies): a supernode that
/// just peered — perhaps only to be named — cannot capture leaves. Not longer: an heir
/// learns the other supernodes from these notices, and a network must survive its first
/// supernode dying soon after it formed (the simulator's failover runs kill one after 20 s;
/// with 30 s their heirs knew no other supernode and stayed apart).
pub const PEER_TENURE: Duration = Duration::from_secs(10);
