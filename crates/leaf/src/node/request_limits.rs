//! What bounds the requests on one connection ([`Limits`]) and why serving a request stream
//! ended early ([`StreamError`]); shared by the stream server and the supernode role's
//! request handlers.

use kazoo_common::wire::FrameError;
use tokio::sync::Semaphore;

use crate::serve::RateLimit;

/// Per-connection limits.
#[derive(Clone, Copy)]
pub(in crate::node) struct Limits<'a> {
    /// Concurrent piece uploads to this peer.
    pub uploads: &'a Semaphore,
    /// Searches per second from this leaf.
    pub queries: &'a RateLimit,
    /// `Register`/`Unregister` entries per second from this leaf.
    pub index: &'a RateLimit,
}

/// Why serving a request stream ended early.
pub(in crate::node) enum StreamError {
    /// The peer broke the protocol: close its connection.
    Violation(String),
    /// The stream failed (reset, connection lost): nothing to do.
    Stream(String),
}

impl From<FrameError> for StreamError {
    fn from(e: FrameError) -> Self {
        if e.is_violation() {
            StreamError::Violation(e.to_string())
        } else {
            StreamError::Stream(e.to_string())
        }
    }
}
