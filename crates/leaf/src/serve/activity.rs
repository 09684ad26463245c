//! Uploads in progress, for `kazoo status`: per (peer, file), the bytes sent and when, so a
//! user sees who downloads what from this node and how fast. An upload is "in progress"
//! while pieces of it went out in the last [`UPLOAD_IDLE`]; at most [`MAX_TRACKED_UPLOADS`]
//! are remembered (the longest idle is forgotten first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kazoo_common::{ContentId, NodeId};
use serde::{Deserialize, Serialize};

/// An upload with no piece sent for this long is no longer shown.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(10);
/// Most uploads remembered at once (more than the node ever serves at once:
/// [`super::MAX_CONCURRENT_UPLOADS`] pieces, an upload idle for [`UPLOAD_IDLE`] is dropped).
pub const MAX_TRACKED_UPLOADS: usize = 256;
/// The rate shown is over the pieces sent in about this window.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// One upload in progress, as `kazoo status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadView {
    /// The downloading node.
    pub peer: NodeId,
    /// The file's content id.
    pub hash: ContentId,
    /// The file's shared name (its path below the share root).
    pub name: String,
    /// The file's size.
    pub size: u64,
    /// Bytes sent to this peer for this file since the upload began (a piece it asks for
    /// again counts again).
    pub bytes: u64,
    /// Bytes per second over the last few seconds.
    pub rate: u64,
    /// Seconds since the first piece went out.
    pub secs: u64,
}

#[derive(Debug)]
struct Upload {
    name: String,
    size: u64,
    bytes: u64,
    started: Instant,
    last: Instant,
    /// Bytes sent in the current and the previous rate window, and when the current began.
    window: (u64, u64, Instant),
}

impl Upload {
    fn new(name: &str, size: u64, now: Instant) -> Self {
        Upload {
            name: name.to_owned(),
            size,
            bytes: 0,
            started: now,
            last: now,
            window: (0, 0, now),
        }
    }
}

/// The uploads in progress.
#[derive(Debug, Default)]
pub struct Activity {
    uploads: std::sync::Mutex<HashMap<(NodeId, ContentId), Upload>>,
}

impl Activity {
    /// Records `bytes` of `hash` (shared as `name`, `size` bytes) sent to `peer` at `now`.
    pub fn sent(
        &self,
        peer: NodeId,
        hash: ContentId,
        name: &str,
        size: u64,
        bytes: u64,
        now: Instant,
    ) {
        let mut uploads = crate::lock(&self.uploads);
        if !uploads.contains_key(&(peer, hash)) && uploads.len() >= MAX_TRACKED_UPLOADS {
            uploads.retain(|_, u| now.saturating_duration_since(u.last) < UPLOAD_IDLE);
            if uploads.len() >= MAX_TRACKED_UPLOADS {
                if let Some(oldest) = uploads.iter().min_by_key(|(_, u)| u.last).map(|(k, _)| *k) {
                    uploads.remove(&oldest);
                }
            }
        }
        let upload = uploads
            .entry((peer, hash))
            .or_insert_with(|| Upload::new(name, size, now));
        if now.saturating_duration_since(upload.last) >= UPLOAD_IDLE {
            // A new upload of the same file to the same peer.
            *upload = Upload::new(name, size, now);
        }
        roll(&mut upload.window, now);
        upload.window.0 += bytes;
        upload.bytes += bytes;
        upload.last = now;
    }

    /// The uploads in progress at `now`, the fastest first.
    pub fn uploads(&self, now: Instant) -> Vec<UploadView> {
        let mut uploads = crate::lock(&self.uploads);
        uploads.retain(|_, u| now.saturating_duration_since(u.last) < UPLOAD_IDLE);
        let mut list: Vec<UploadView> = uploads
            .iter_mut()
            .map(|((peer, hash), u)| {
                roll(&mut u.window, now);
                let (current, previous, began) = u.window;
                // The previous window counts in full, the current one for as long as it ran.
                let span = if previous > 0 || u.started < began {
                    RATE_WINDOW + now.saturating_duration_since(began)
                } else {
                    now.saturating_duration_since(u.started)
                };
                // Over a second at least: a first burst is not a rate.
                let rate = (current + previous) as f64 / span.as_secs_f64().max(1.0);
                UploadView {
                    peer: *peer,
                    hash: *hash,
                    name: u.name.clone(),
                    size: u.size,
                    bytes: u.bytes,
                    rate: rate as u64,
                    secs: now.saturating_duration_since(u.started).as_secs(),
                }
            })
            .collect();
        list.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.peer.cmp(&b.peer)));
        list
    }
}

/// Moves the rate window on to `now`.
fn roll(window: &mut (u64, u64, Instant), now: Instant) {
    let age = now.saturating_duration_since(window.2);
    if age >= 2 * RATE_WINDOW {
        *window = (0, 0, now);
    } else if age >= RATE_WINDOW {
        *window = (0, window.0, window.2 + RATE_WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    #[test]
    fn counts_bytes_and_rate_and_forgets_idle_uploads() {
        let activity = Activity::default();
        let hash = ContentId::from(blake3::hash(b"x"));
        let t0 = Instant::now();
        for s in 0..10 {
            activity.sent(
                id(1),
                hash,
                "a/b.ogg",
                10_000_000,
                1_000_000,
                t0 + Duration::from_secs(s),
            );
        }
        let list = activity.uploads(t0 + Duration::from_secs(10));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].bytes, 10_000_000);
        assert_eq!(list[0].name, "a/b.ogg");
        // One MB a second.
        assert!(
            (800_000..=1_200_000).contains(&list[0].rate),
            "{}",
            list[0].rate
        );
        assert!(activity.uploads(t0 + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn is_bounded() {
        let activity = Activity::default();
        let t0 = Instant::now();
        for n in 0..(MAX_TRACKED_UPLOADS as u32 + 10) {
            let hash = ContentId::from(blake3::hash(&n.to_le_bytes()));
            activity.sent(id(1), hash, "f", 1, 1, t0 + Duration::from_millis(n.into()));
        }
        assert_eq!(
            activity.uploads(t0 + Duration::from_secs(1)).len(),
            MAX_TRACKED_UPLOADS
        );
    }
}
