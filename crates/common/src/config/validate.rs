//! Range checks: every bounded key is declared once here, as a [`Bounded`] constant holding its
//! name and inclusive range, and both the check and its error text come from that constant.

use std::fmt;

use super::{Config, ConfigError};
use crate::wire::{MAX_ENTRIES_PER_LEAF, MAX_HOPS, MAX_LEAVES_PER_SUPERNODE};

/// A numeric key and the inclusive range its value must lie in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounded {
    /// The key as written in the file (`section.key`).
    pub key: &'static str,
    /// Smallest value allowed.
    pub min: u64,
    /// Largest value allowed.
    pub max: u64,
}

impl Bounded {
    /// Whether `value` is in range.
    pub fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }

    /// `Ok` if `value` is in range, else the error naming the key, the value and the range.
    fn check(&self, value: u64, origin: &str) -> Result<(), ConfigError> {
        if self.contains(value) {
            return Ok(());
        }
        Err(ConfigError::Range {
            path: origin.to_owned(),
            key: self.key,
            value: value.to_string(),
            reason: self.to_string(),
        })
    }
}

/// The range as `MIN-MAX`.
impl fmt::Display for Bounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

const fn bounded(key: &'static str, min: u64, max: u64) -> Bounded {
    Bounded { key, min, max }
}

/// `supernode.max_leaves`: at least one, at most what the protocol allows.
pub const SUPERNODE_MAX_LEAVES: Bounded =
    bounded("supernode.max_leaves", 1, MAX_LEAVES_PER_SUPERNODE as u64);
/// `supernode.max_peers`: 30–50 is the documented range; lower values are accepted for small
/// tests.
pub const SUPERNODE_MAX_PEERS: Bounded = bounded("supernode.max_peers", 0, 50);
/// `supernode.max_entries_per_leaf`: at most what the protocol allows.
pub const SUPERNODE_MAX_ENTRIES_PER_LEAF: Bounded = bounded(
    "supernode.max_entries_per_leaf",
    1,
    MAX_ENTRIES_PER_LEAF as u64,
);
/// `supernode.max_index_entries`.
pub const SUPERNODE_MAX_INDEX_ENTRIES: Bounded =
    bounded("supernode.max_index_entries", 1000, 50_000_000);
/// `supernode.max_index_mib`.
pub const SUPERNODE_MAX_INDEX_MIB: Bounded = bounded("supernode.max_index_mib", 16, 65_536);
/// `supernode.max_leaves_per_ip`: up to every leaf a supernode may serve.
pub const SUPERNODE_MAX_LEAVES_PER_IP: Bounded = bounded(
    "supernode.max_leaves_per_ip",
    1,
    MAX_LEAVES_PER_SUPERNODE as u64,
);
/// `network.idle_timeout_ms`.
pub const NETWORK_IDLE_TIMEOUT_MS: Bounded = bounded("network.idle_timeout_ms", 500, 60_000);
/// `network.bootstrap_wait_secs`.
pub const NETWORK_BOOTSTRAP_WAIT_SECS: Bounded = bounded("network.bootstrap_wait_secs", 0, 86_400);
/// `supernode.hop_limit`: at most what the protocol allows.
pub const SUPERNODE_HOP_LIMIT: Bounded = bounded("supernode.hop_limit", 0, MAX_HOPS as u64);
/// `election.heir_delay_ms`.
pub const ELECTION_HEIR_DELAY_MS: Bounded = bounded("election.heir_delay_ms", 0, 10_000);
/// `election.demote_below_pct`. A handover leaves both supernodes about half full: above 40 %
/// they would both be under-used at once, and shrink would undo growth.
pub const ELECTION_DEMOTE_BELOW_PCT: Bounded = bounded("election.demote_below_pct", 0, 40);
/// `election.demote_after_secs`.
pub const ELECTION_DEMOTE_AFTER_SECS: Bounded = bounded("election.demote_after_secs", 1, 3600);
/// `share.rescan_secs`.
pub const SHARE_RESCAN_SECS: Bounded = bounded("share.rescan_secs", 1, 3600);
/// `share.upload_rate_kib` (0: unlimited): at most 2^32 KiB/s (4 TiB/s), so the rate in
/// bytes per second the uploader paces by cannot overflow.
pub const SHARE_UPLOAD_RATE_KIB: Bounded = bounded("share.upload_rate_kib", 0, 1 << 32);
/// `relay.max_circuits` (0: relay nothing).
pub const RELAY_MAX_CIRCUITS: Bounded = bounded("relay.max_circuits", 0, 1024);
/// `relay.rate_kib`: at least 16 KiB/s, so a circuit's handshake gets through.
pub const RELAY_RATE_KIB: Bounded = bounded("relay.rate_kib", 16, 1 << 22);
/// `relay.max_secs`.
pub const RELAY_MAX_SECS: Bounded = bounded("relay.max_secs", 10, 86_400);
/// `share.download_rate_kib` (0: unlimited): the same bound as the upload cap.
pub const SHARE_DOWNLOAD_RATE_KIB: Bounded = bounded("share.download_rate_kib", 0, 1 << 32);

impl Config {
    /// Checks every bounded key, in this order; the first one out of range is the error.
    pub(super) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let sn = &self.supernode;
        let e = &self.election;
        let checks = [
            (SUPERNODE_MAX_LEAVES, sn.max_leaves as u64),
            (SUPERNODE_MAX_PEERS, sn.max_peers as u64),
            (
                SUPERNODE_MAX_ENTRIES_PER_LEAF,
                sn.max_entries_per_leaf as u64,
            ),
            (SUPERNODE_MAX_INDEX_ENTRIES, sn.max_index_entries as u64),
            (SUPERNODE_MAX_INDEX_MIB, sn.max_index_mib as u64),
            (SUPERNODE_MAX_LEAVES_PER_IP, sn.max_leaves_per_ip as u64),
            (NETWORK_IDLE_TIMEOUT_MS, self.network.idle_timeout_ms),
            (
                NETWORK_BOOTSTRAP_WAIT_SECS,
                self.network.bootstrap_wait_secs,
            ),
            (SUPERNODE_HOP_LIMIT, u64::from(sn.hop_limit)),
            (ELECTION_HEIR_DELAY_MS, e.heir_delay_ms),
            (ELECTION_DEMOTE_BELOW_PCT, u64::from(e.demote_below_pct)),
            (ELECTION_DEMOTE_AFTER_SECS, e.demote_after_secs),
            (SHARE_RESCAN_SECS, self.share.rescan_secs),
            (SHARE_UPLOAD_RATE_KIB, self.share.upload_rate_kib),
            (RELAY_MAX_CIRCUITS, self.relay.max_circuits as u64),
            (RELAY_RATE_KIB, self.relay.rate_kib),
            (RELAY_MAX_SECS, self.relay.max_secs),
            (SHARE_DOWNLOAD_RATE_KIB, self.share.download_rate_kib),
        ];
        checks
            .iter()
            .try_for_each(|(bounds, value)| bounds.check(*value, origin))?;
        if let Some(allow) = &self.network.allow {
            if allow.is_empty() || allow.len() > super::network::MAX_ALLOW {
                return Err(ConfigError::Range {
                    path: origin.to_owned(),
                    key: "network.allow",
                    value: format!("({} ids)", allow.len()),
                    reason: format!(
                        "1 to {} node ids (remove the key to allow any node)",
                        super::network::MAX_ALLOW
                    ),
                });
            }
        }
        match &self.network.secret {
            Some(secret) if secret.len() < super::network::MIN_SECRET_LEN => {
                Err(ConfigError::Range {
                    path: origin.to_owned(),
                    key: "network.secret",
                    value: format!("({} bytes)", secret.len()),
                    reason: format!(
                        "at least {} bytes (e.g. `openssl rand -hex 16`)",
                        super::network::MIN_SECRET_LEN
                    ),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let err = Config::from_toml("[supernode]\nmax_peers = 99\n", "x").unwrap_err();
        assert_eq!(err.to_string(), "x: supernode.max_peers = 99: 0-50");
        let err = Config::from_toml("[supernode]\nmax_leaves = 0\n", "x").unwrap_err();
        assert_eq!(err.to_string(), "x: supernode.max_leaves = 0: 1-10000");
        let err = Config::from_toml("[election]\ndemote_below_pct = 41\n", "x").unwrap_err();
        assert_eq!(err.to_string(), "x: election.demote_below_pct = 41: 0-40");
        // KiB/s × 1024 overflowed u64 in the uploader (the config fuzz target checks it).
        let err =
            Config::from_toml("[share]\nupload_rate_kib = 18014398509481984\n", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: share.upload_rate_kib = 18014398509481984: 0-4294967296"
        );
    }

    #[test]
    fn an_empty_allowlist_is_refused() {
        let err = Config::from_toml("[network]\nallow = []\n", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: network.allow = (0 ids): 1 to 10000 node ids (remove the key to allow any node)"
        );
        let id = "ab".repeat(32);
        let ok = Config::from_toml(&format!("[network]\nallow = [\"{id}\"]\n"), "x").unwrap();
        assert!(ok.network.allows(&id.parse().unwrap()));
        assert!(!ok.network.allows(&"cd".repeat(32).parse().unwrap()));
        let err = Config::from_toml("[network]\nallow = [\"nope\"]\n", "x").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    #[test]
    fn a_short_network_secret_is_refused_without_showing_it() {
        let err = Config::from_toml("[network]\nsecret = \"hunter2\"\n", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x: network.secret = (7 bytes): at least 16 bytes (e.g. `openssl rand -hex 16`)"
        );
        let ok = Config::from_toml("[network]\nsecret = \"0123456789abcdef\"\n", "x");
        assert!(ok.unwrap().network.network_key().is_some());
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        for b in [
            SUPERNODE_MAX_INDEX_MIB,
            NETWORK_IDLE_TIMEOUT_MS,
            NETWORK_BOOTSTRAP_WAIT_SECS,
            SHARE_RESCAN_SECS,
            SHARE_UPLOAD_RATE_KIB,
            SHARE_DOWNLOAD_RATE_KIB,
        ] {
            for value in [b.min, b.max] {
                let (section, key) = b.key.split_once('.').unwrap_or_default();
                let text = format!("[{section}]\n{key} = {value}\n");
                assert!(Config::from_toml(&text, "x").is_ok(), "{text}");
            }
        }
    }
}
