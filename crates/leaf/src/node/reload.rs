//! Applying a reloaded config (`SIGHUP` to `kazoo run`) to a running node: the share folders
//! and what they share (`share.dirs`, `share_downloads`, `share_saved_elsewhere`,
//! `follow_symlinks`, rescanned at once) and both rate caps (`upload_rate_kib`,
//! `download_rate_kib`, applied to transfers under way). Any other changed key is named as
//! needing a restart and otherwise ignored.

use kazoo_common::config::Config;
use serde::Serialize;

use super::Node;
use crate::share::ShareLayout;

/// The `[share]` keys a reload applies; every other key needs a restart.
pub const RELOADED_KEYS: [&str; 6] = [
    "share.dirs",
    "share.share_downloads",
    "share.share_saved_elsewhere",
    "share.follow_symlinks",
    "share.upload_rate_kib",
    "share.download_rate_kib",
];

impl Node {
    /// Applies `new`'s reloadable keys (see the module doc) and starts a rescan; returns the
    /// keys that changed but need a restart.
    pub fn reload(&self, new: &Config) -> Vec<String> {
        let inner = &self.inner;
        let old = &inner.config;
        let mut applied = old.clone();
        applied.share.dirs = new.share.dirs.clone();
        applied.share.share_downloads = new.share.share_downloads;
        applied.share.share_saved_elsewhere = new.share.share_saved_elsewhere;
        applied.share.follow_symlinks = new.share.follow_symlinks;
        applied.share.upload_rate_kib = new.share.upload_rate_kib;
        applied.share.download_rate_kib = new.share.download_rate_kib;
        let restart = changed_keys(&applied, new);
        if inner.sharing {
            inner.shares.set_layout(ShareLayout::from_config(&applied));
            let shares = std::sync::Arc::clone(&inner.shares);
            self.spawn(async move {
                let report = shares.rescan().await;
                tracing::info!(
                    files = shares.len(),
                    hashed = report.hashed,
                    "shares rescanned after reload"
                );
            });
        }
        inner.uploads.rate_cap().set_kib(new.share.upload_rate_kib);
        inner.download_cap.set_kib(new.share.download_rate_kib);
        tracing::info!(
            dirs = ?new.share.dirs,
            upload_rate_kib = new.share.upload_rate_kib,
            download_rate_kib = new.share.download_rate_kib,
            "config reloaded"
        );
        if !restart.is_empty() {
            tracing::warn!(keys = %restart.join(", "), "changed keys take effect only after a restart");
        }
        restart
    }
}

/// `section.key` of every key whose value differs between `a` and `b`.
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (to_json(a), to_json(b)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for (section, a_keys) in a.iter() {
        let (Some(a_keys), Some(b_keys)) = (
            a_keys.as_object(),
            b.get(section).and_then(|s| s.as_object()),
        ) else {
            continue;
        };
        for (key, value) in a_keys {
            if b_keys.get(key) != Some(value) {
                changed.push(format!("{section}.{key}"));
            }
        }
    }
    changed
}

fn to_json(config: &impl Serialize) -> Result<serde_json::Map<String, serde_json::Value>, ()> {
    match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_by_section() {
        let a = Config::default();
        let mut b = a.clone();
        assert!(changed_keys(&a, &b).is_empty());
        b.supernode.max_leaves = 3;
        b.node.role = kazoo_common::config::RoleSetting::Leaf;
        let mut keys = changed_keys(&a, &b);
        keys.sort();
        assert_eq!(keys, ["node.role", "supernode.max_leaves"]);
    }
}
