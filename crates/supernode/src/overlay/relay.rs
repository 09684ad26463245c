//! Query relay: starting a local search, answering and forwarding peers' queries once each,
//! passing hits back along the path, `Done` accounting and deadlines, and the per-peer query
//! rate limit.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kazoo_common::wire::{
    Hit, PeerMessage, HITS_PER_FRAME, MAX_HOPS, MAX_PEER_HITS, MAX_QUERY_LEN, MAX_QUERY_WORDS,
    MAX_RESULTS, MAX_VIA,
};
use kazoo_common::NodeId;

use super::{Action, Overlay, Routing};
use crate::hits::validate_hit;
use crate::index::Index;

/// How long a query id is remembered.
const SEEN_FOR: Duration = Duration::from_secs(30);

/// A peer's query allowance: refilled at `peer_query_rate` per second, up to twice that.
pub(super) struct TokenBucket {
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

/// The secret key of a supernode's query ids: ids are the keyed BLAKE3 hash of the
/// supernode's id and a counter, unpredictable to anyone without the key. The runtime draws
/// it from the OS CSPRNG, the simulator from its seed; the all-zero default (for tests)
/// makes ids predictable. Its `Debug` does not show it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryKey(pub [u8; 32]);

impl std::fmt::Debug for QueryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryKey(..)")
    }
}

/// Hits one peer sent back for one query.
#[derive(Default)]
struct PeerHits {
    /// Every hit it sent (for [`MAX_PEER_HITS`]).
    received: usize,
    /// Hits passed on (at most `Relay::keep`).
    kept: usize,
}

/// A query in flight here.
pub(super) struct Relay {
    /// Upstream peer; `None` for a query started here.
    from: Option<NodeId>,
    /// Peers it was forwarded to that have not sent `Done`; `Done` goes upstream once empty.
    waiting: HashSet<NodeId>,
    /// `Done` goes upstream at this time even if some peers have not answered.
    deadline: Instant,
    /// Hits kept per peer: twice the results wanted.
    keep: usize,
    /// Per peer it was forwarded to, the hits it sent back.
    hits: HashMap<NodeId, PeerHits>,
}

impl Relay {
    fn new(from: Option<NodeId>, waiting: Vec<NodeId>, deadline: Instant, max: u32) -> Self {
        Relay {
            from,
            waiting: waiting.into_iter().collect(),
            deadline,
            keep: 2 * (max as usize).min(MAX_RESULTS),
            hits: HashMap::new(),
        }
    }
}

impl Overlay {
    fn local_hits(index: &Index, words: &[String], max: u32) -> Vec<Hit> {
        index.search(words, max as usize).unwrap_or_default()
    }

    /// Starts a search from a local leaf; the local index's hits come first.
    pub fn start_query(
        &mut self,
        words: &[String],
        max: u32,
        index: &Index,
        now: Instant,
    ) -> (u64, Vec<Action>) {
        let mut actions = Vec::new();
        // Unpredictable (keyed; see `QueryKey`), and distinct across supernodes even under
        // the same key (our id is hashed in).
        self.next_id += 1;
        let mut hasher = blake3::Hasher::new_keyed(&self.config.query_key.0);
        hasher.update(self.me.as_bytes());
        hasher.update(&self.next_id.to_le_bytes());
        let digest = hasher.finalize();
        let id = u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        self.seen.insert(id, now + SEEN_FOR);
        let local = Self::local_hits(index, words, max);
        if !local.is_empty() {
            actions.push(Action::Hits(id, local));
        }
        let hops = self.config.hop_limit.min(MAX_HOPS);
        let mut targets = self.targets(words, hops, &[], None);
        if self.config.routing == Routing::Filters && hops >= 2 {
            targets = self.prune_intermediates(words, targets);
        }
        let via: Vec<NodeId> = targets.iter().copied().take(MAX_VIA).collect();
        for &t in &targets {
            let msg = PeerMessage::Query {
                id,
                origin: self.me,
                words: words.to_vec(),
                max_results: max,
                hops_left: hops - 1,
                via: via.clone(),
            };
            self.send(t, msg, &mut actions);
        }
        if targets.is_empty() {
            actions.push(Action::Done(id));
        } else {
            let deadline =
                now + self.config.hop_timeout * u32::from(hops) + self.config.hop_timeout / 2;
            self.relays
                .insert(id, Relay::new(None, targets, deadline, max));
        }
        (id, actions)
    }

    /// Ends a relayed or local query: `Done` upstream, or to the local caller.
    fn finish(&mut self, id: u64, actions: &mut Vec<Action>) {
        if let Some(relay) = self.relays.remove(&id) {
            match relay.from {
                None => actions.push(Action::Done(id)),
                Some(from) if self.peers.contains_key(&from) => {
                    self.send(from, PeerMessage::Done { id }, actions)
                }
                Some(_) => {}
            }
        }
    }

    /// A peer's `Query`: rate-limited and bounds-checked, answered from the local index and
    /// forwarded at most once per id.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_query(
        &mut self,
        from: NodeId,
        id: u64,
        origin: NodeId,
        words: Vec<String>,
        max_results: u32,
        hops_left: u8,
        via: Vec<NodeId>,
        index: &Index,
        now: Instant,
    ) -> Vec<Action> {
        if via.len() > MAX_VIA {
            return self.penalize(from, "oversized via list", now);
        }
        // Only the origin's own list counts.
        let via = (from == origin).then_some(via);
        let mut actions = Vec::new();
        if !self.peers.contains_key(&from) {
            return actions;
        }
        if !self.take_query_token(from, now) {
            return self.penalize(from, "query flood", now);
        }
        let bytes: usize = words.iter().map(String::len).sum();
        if hops_left > MAX_HOPS || words.len() > MAX_QUERY_WORDS || bytes > MAX_QUERY_LEN {
            return self.penalize(from, "query out of bounds", now);
        }
        if self.seen.contains_key(&id) || self.relays.len() >= self.config.max_queries {
            self.send(from, PeerMessage::Done { id }, &mut actions);
            return actions;
        }
        self.seen.insert(id, now + SEEN_FOR);
        self.stats.queries_answered += 1;
        let hits = Self::local_hits(index, &words, max_results);
        for chunk in hits.chunks(HITS_PER_FRAME) {
            self.send(
                from,
                PeerMessage::Hits {
                    id,
                    hits: chunk.to_vec(),
                },
                &mut actions,
            );
        }
        let targets = self.targets(&words, hops_left, &[from, origin], via.as_deref());
        for &t in &targets {
            let msg = PeerMessage::Query {
                id,
                origin,
                words: words.clone(),
                max_results,
                hops_left: hops_left - 1,
                via: Vec::new(),
            };
            self.send(t, msg, &mut actions);
        }
        if targets.is_empty() {
            self.send(from, PeerMessage::Done { id }, &mut actions);
        } else {
            let deadline = now + self.config.hop_timeout * u32::from(hops_left);
            self.relays
                .insert(id, Relay::new(Some(from), targets, deadline, max_results));
        }
        actions
    }

    /// Takes one of peer `from`'s query tokens ([`super::OverlayConfig::peer_query_rate`] per
    /// second, burst twice that); false when it has none left (or is not a peer).
    pub(crate) fn take_query_token(&mut self, from: NodeId, now: Instant) -> bool {
        let rate = self.config.peer_query_rate;
        let Some(peer) = self.peers.get_mut(&from) else {
            return false;
        };
        let elapsed = now
            .saturating_duration_since(peer.bucket.last)
            .as_secs_f64();
        peer.bucket.tokens = (peer.bucket.tokens + elapsed * rate).min(2.0 * rate);
        peer.bucket.last = now;
        if peer.bucket.tokens < 1.0 {
            return false;
        }
        peer.bucket.tokens -= 1.0;
        true
    }

    /// A peer's `Hits`: validated (see [`crate::hits`]) and passed upstream (or to the local
    /// caller) if we forwarded it the query, at most `Relay::keep` per peer.
    pub(super) fn on_hits(
        &mut self,
        from: NodeId,
        id: u64,
        mut hits: Vec<Hit>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if hits.len() > HITS_PER_FRAME {
            return self.penalize(from, "oversized hits message", now);
        }
        let Some(peer_addr) = self.peers.get(&from).map(|p| p.addr) else {
            return actions;
        };
        let Some(relay) = self.relays.get_mut(&id) else {
            return actions;
        };
        if !relay.waiting.contains(&from) {
            return actions;
        }
        let got = relay.hits.entry(from).or_default();
        got.received += hits.len();
        if got.received > MAX_PEER_HITS {
            return self.penalize(from, "hit flood", now);
        }
        // The peer's own shares carry no IP: it is the peer's.
        for p in hits.iter_mut().flat_map(|h| h.providers.iter_mut()) {
            if p.addr.ip().is_unspecified() {
                p.addr.set_ip(peer_addr.ip());
            }
        }
        let room = relay.keep.saturating_sub(got.kept);
        let hits: Vec<Hit> = hits
            .into_iter()
            .filter_map(|h| validate_hit(h, peer_addr))
            .take(room)
            .collect();
        got.kept += hits.len();
        if hits.is_empty() {
            return actions;
        }
        self.routes.learn(from, &hits, now);
        match relay.from {
            None => actions.push(Action::Hits(id, hits)),
            Some(up) => self.send(up, PeerMessage::Hits { id, hits }, &mut actions),
        }
        actions
    }

    /// A peer's `Done`: the query ends here once every peer it went to is done.
    pub(super) fn on_done(&mut self, from: NodeId, id: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let empty = self
            .relays
            .get_mut(&id)
            .is_some_and(|r| r.waiting.remove(&from) && r.waiting.is_empty());
        if empty {
            self.finish(id, &mut actions);
        }
        actions
    }

    /// A peer is gone: queries that waited only for it are done.
    pub(super) fn stop_waiting_for(&mut self, node: &NodeId, actions: &mut Vec<Action>) {
        let finished: Vec<u64> = self
            .relays
            .iter_mut()
            .filter_map(|(id, r)| (r.waiting.remove(node) && r.waiting.is_empty()).then_some(*id))
            .collect();
        for id in finished {
            self.finish(id, actions);
        }
    }

    /// Ends queries past their deadline and forgets expired query ids.
    pub(super) fn expire_queries(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let expired: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish(id, actions);
        }
        self.seen.retain(|_, until| *until > now);
    }
}
