//! The `[relay]` section: what a supernode relays for leaves that reach each other no other
//! way (see the wire spec, "Relay").

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[relay]`: a supernode's bounds on relayed connections.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Circuits relayed at once (each joins two streams); more are refused with `Busy`.
    /// Default 32; range [`super::validate::RELAY_MAX_CIRCUITS`] (0: relay nothing).
    pub max_circuits: usize,
    /// KiB per second relayed, all circuits together (frames beyond it wait). Default 4096
    /// (32 Mbit/s); range [`super::validate::RELAY_RATE_KIB`].
    pub rate_kib: u64,
    /// Longest life of one circuit in seconds; then it is ended (the downloader goes on
    /// with its other sources, or asks again). Default 600; range
    /// [`super::validate::RELAY_MAX_SECS`].
    pub max_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_circuits: 32,
            rate_kib: 4096,
            max_secs: 600,
        }
    }
}

impl RelayConfig {
    /// Longest life of one circuit.
    pub fn max_life(&self) -> Duration {
        Duration::from_secs(self.max_secs)
    }
}
