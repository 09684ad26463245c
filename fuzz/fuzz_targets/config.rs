//! Config text (TOML) through `Config::from_toml`, the parser with range validation, then
//! everything the node derives from a config at start-up. Checks: no panic; an accepted
//! config has every bounded key within its `validate` range; a `Range` error names a key
//! that is out of its range; the values the node computes from an accepted config do not
//! overflow (QUIC timing, election delays and score, the index budget in bytes, the upload
//! cap in bytes/s); and an accepted config written back as TOML parses to the same config.
#![no_main]

use std::time::Duration;

use kazoo_common::config::validate::*;
use kazoo_common::config::{Config, ConfigError};
use kazoo_common::wire::MAX_SUCCESSION;
use kazoo_supernode::election::score::{capacity_score, SCORE_UPTIME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, "fuzz") {
        Ok(config) => check(&config),
        Err(ConfigError::Range { key, .. }) => {
            assert!(
                bounds().iter().any(|(b, _)| b.key == key),
                "unknown key {key}"
            );
        }
        Err(_) => {}
    }
});

/// How to read one key's value from a config.
type Read = fn(&Config) -> u64;

/// Every bounded key and how to read it from a config.
fn bounds() -> Vec<(Bounded, Read)> {
    vec![
        (SUPERNODE_MAX_LEAVES, |c| c.supernode.max_leaves as u64),
        (SUPERNODE_MAX_PEERS, |c| c.supernode.max_peers as u64),
        (SUPERNODE_MAX_ENTRIES_PER_LEAF, |c| {
            c.supernode.max_entries_per_leaf as u64
        }),
        (SUPERNODE_MAX_INDEX_ENTRIES, |c| {
            c.supernode.max_index_entries as u64
        }),
        (SUPERNODE_MAX_INDEX_MIB, |c| {
            c.supernode.max_index_mib as u64
        }),
        (SUPERNODE_MAX_LEAVES_PER_IP, |c| {
            c.supernode.max_leaves_per_ip as u64
        }),
        (NETWORK_IDLE_TIMEOUT_MS, |c| c.network.idle_timeout_ms),
        (SUPERNODE_HOP_LIMIT, |c| u64::from(c.supernode.hop_limit)),
        (ELECTION_HEIR_DELAY_MS, |c| c.election.heir_delay_ms),
        (ELECTION_DEMOTE_BELOW_PCT, |c| {
            u64::from(c.election.demote_below_pct)
        }),
        (ELECTION_DEMOTE_AFTER_SECS, |c| c.election.demote_after_secs),
        (SHARE_RESCAN_SECS, |c| c.share.rescan_secs),
        (SHARE_UPLOAD_RATE_KIB, |c| c.share.upload_rate_kib),
    ]
}

fn check(config: &Config) {
    for (bound, read) in bounds() {
        let value = read(config);
        assert!(bound.contains(value), "{} = {value} accepted", bound.key);
    }
    // What the node computes from it at start-up.
    let timeouts = config.network.timeouts();
    assert!(timeouts.keep_alive < timeouts.idle);
    let heir_delay = config.election.heir_delay();
    let _ = heir_delay * (MAX_SUCCESSION as u32 + 1);
    let _ = config.election.demote_after();
    let _ = Duration::from_secs(config.share.rescan_secs);
    for uptime in [Duration::ZERO, SCORE_UPTIME / 2, SCORE_UPTIME * 2] {
        let _ = capacity_score(&config.election, uptime);
    }
    assert!(config
        .supernode
        .max_index_mib
        .checked_mul(1 << 20)
        .is_some());
    assert!(
        config.share.upload_rate_kib.checked_mul(1024).is_some(),
        "upload_rate_kib = {} overflows as bytes/s",
        config.share.upload_rate_kib
    );
    let _ = config.download_dir();
    // Written back, it reads the same.
    let text = toml::to_string(config).expect("an accepted config serialises");
    let again = Config::from_toml(&text, "fuzz").expect("a written config parses");
    assert_eq!(format!("{again:?}"), format!("{config:?}"));
}
