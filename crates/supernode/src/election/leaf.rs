//! A leaf's side of the election ([`LeafElection`]): whom to dial to join, and when to promote
//! itself (first node of a network, heir `k` of a dead supernode after `k` × the heir delay,
//! stranded, or refused by full supernodes that do not grow).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kazoo_common::wire::{Provider, MAX_SUCCESSION};
use kazoo_common::NodeId;

/// Somewhere to dial to join: an address and the node id expected there (`None`: learn it
/// on first contact, then pin it).
pub type Target = (SocketAddr, Option<NodeId>);

/// What a leaf does next while it has no supernode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Become a supernode and peer with `hosts`.
    Promote {
        /// Why (logged, shown by `kazoo status`).
        reason: String,
        /// Supernodes to peer with.
        hosts: Vec<Provider>,
    },
    /// Dial each group at once, one group after another; the first supernode to accept
    /// wins. If none does, dial the redirect lists the refusals carried
    /// ([`LeafElection::redirect_targets`]), then report [`LeafElection::on_join_failed`].
    Join {
        /// Groups of targets, best first (a group may be empty).
        groups: Vec<Vec<Target>>,
        /// Why the leaf is joining (logged, shown by `kazoo status` once joined).
        reason: String,
    },
}

/// Where a supernode sent this leaf: (the supernode, where to go, best first, why).
pub type Redirect = (NodeId, Vec<Provider>, String);

/// Longest wait between rounds of join attempts (before jitter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Wait between rounds while the heirs of a lost supernode may be promoting (its re-home
/// window: [`MAX_SUCCESSION`] + 1 heir delays, at least [`MIN_REHOME_WINDOW`]).
pub const REHOME_RETRY: Duration = Duration::from_millis(100);
/// Shortest re-home window.
pub const MIN_REHOME_WINDOW: Duration = Duration::from_secs(2);
/// First wait between rounds of join attempts; it doubles up to [`MAX_BACKOFF`], each wait
/// jittered by ±25 % (from the node id and the attempt, so nodes that lost the same
/// supernode spread out).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// A leaf's side of the election: which supernodes to try, and when to promote itself.
///
/// Invariants: `lost` is the supernode lost last and is cleared by a redirect (the leaf was
/// sent away, nobody died), so only a death can make an heir promote; the lost supernode is
/// left out of the candidates only during its re-home window and only while there are
/// others to try (a restarted supernode, or a `leaf` node's only bootstrap entry, is dialled
/// again); candidates are unique by node id and by address; an eligible node that
/// has never been part of a network (never joined, never redirected) promotes after its first
/// failed round (the first node of a network), and one that has been but has reached no
/// supernode for its stranded time promotes too (no live supernode left that it knows of):
/// at least [`STRANDED_AFTER`], longer than the last heir waits, plus a stagger from its id so
/// stranded nodes do not all promote together; a node never dials itself or the supernode
/// it lost; a node refused by a full supernode is never the first of a network; a node whose
/// configured bootstrap entries never answered at all (a mistyped address, a host that is
/// down) promotes neither as the first of a network nor as stranded before its bootstrap
/// wait ([`LeafElection::with_bootstrap_wait`]) has passed.
#[derive(Debug)]
pub struct LeafElection {
    me: NodeId,
    eligible: bool,
    heir_delay: Duration,
    bootstrap: Vec<Target>,
    /// Whether bootstrap entries are configured (they may resolve to no address for now).
    bootstrap_configured: bool,
    /// Ids learned on first contact with address-only bootstrap entries.
    pinned: HashMap<SocketAddr, NodeId>,
    lost: Option<(Provider, Instant)>,
    redirect: Option<Redirect>,
    ever_joined: bool,
    /// Supernodes that refused this node (full, or demoting): a network exists, so it is
    /// not the first of one; a stranded promotion peers with them (≤ [`MAX_SUCCESSION`]).
    refused_by: Vec<Provider>,
    first_of_network: bool,
    /// Since when every round of join attempts has failed (none: joined, or not tried).
    stranded_since: Option<Instant>,
    /// How long it may stay stranded before it promotes.
    stranded_after: Duration,
    /// How long a newcomer refused by full supernodes waits for them to grow the network
    /// before it promotes itself.
    refused_wait: Duration,
    backoff: Duration,
    /// Rounds failed since the last join (for the jitter).
    attempts: u32,
    /// Whether any node ever answered a join attempt (joined it, or refused it).
    answered: bool,
    /// How long an eligible node whose bootstrap entries never answered keeps trying before
    /// it becomes a network of its own.
    bootstrap_wait: Duration,
}

/// Shortest time an eligible node that has been part of a network tries to join one before
/// it promotes itself (see [`LeafElection`]).
pub const STRANDED_AFTER: Duration = Duration::from_secs(20);
/// How long an eligible newcomer that only found full supernodes waits for one of them to
/// grow the network (ask its best leaf to promote and redirect) before it promotes itself
/// and peers with them (plus the stagger).
pub const REFUSED_WAIT: Duration = Duration::from_secs(5);
/// Step of the per-node stagger added to the stranded time (up to 15 steps).
pub const STRANDED_STAGGER: Duration = Duration::from_millis(250);

impl LeafElection {
    /// A leaf `me` (`eligible`: an `auto` node that may promote) with its bootstrap list.
    pub fn new(me: NodeId, eligible: bool, heir_delay: Duration, bootstrap: Vec<Target>) -> Self {
        LeafElection {
            me,
            eligible,
            heir_delay,
            bootstrap_configured: !bootstrap.is_empty(),
            bootstrap,
            pinned: HashMap::new(),
            lost: None,
            redirect: None,
            ever_joined: false,
            refused_by: Vec::new(),
            first_of_network: false,
            stranded_since: None,
            stranded_after: STRANDED_AFTER.max(heir_delay * (MAX_SUCCESSION as u32 + 1))
                + STRANDED_STAGGER * u32::from(me.as_bytes()[0] % 16),
            refused_wait: REFUSED_WAIT + STRANDED_STAGGER * u32::from(me.as_bytes()[0] % 16),
            backoff: FIRST_BACKOFF,
            attempts: 0,
            answered: false,
            bootstrap_wait: Duration::ZERO,
        }
    }

    /// Replaces the bootstrap list with what its entries resolve to now (host names are
    /// resolved again before each round of join attempts); `configured`: entries are
    /// configured, even if none resolves now (a node whose bootstrap names do not resolve is
    /// as unanswered as one whose addresses do not answer).
    pub fn set_bootstrap(&mut self, bootstrap: Vec<Target>, configured: bool) {
        self.bootstrap = bootstrap;
        self.bootstrap_configured = configured;
    }

    /// Waits `wait` before an eligible node whose bootstrap entries never answered becomes a
    /// network of its own (default zero: after its first failed round). The node runtime
    /// uses `network.bootstrap_wait_secs`.
    pub fn with_bootstrap_wait(mut self, wait: Duration) -> Self {
        self.bootstrap_wait = wait;
        self
    }

    /// Some node answered a join attempt (it refused: it exists, it is just not a supernode
    /// with room).
    pub fn on_answered(&mut self) {
        self.answered = true;
    }

    /// Whether bootstrap entries are configured and no node has answered yet (nor was this
    /// node ever part of a network).
    pub fn unanswered(&self) -> bool {
        self.bootstrap_configured && !self.answered && !self.ever_joined
    }

    /// Whether a node stranded for `stranded_for` must still wait for its bootstrap entries.
    fn waiting_for_bootstrap(&self, stranded_for: Duration) -> bool {
        self.unanswered() && stranded_for < self.bootstrap_wait
    }

    /// Whether `now` is within the re-home window of the supernode lost last.
    fn rehoming(&self, now: Instant) -> bool {
        let window = MIN_REHOME_WINDOW.max(self.heir_delay * (MAX_SUCCESSION as u32 + 1));
        self.lost
            .is_some_and(|(_, since)| now.saturating_duration_since(since) < window)
    }

    /// Whether this node may promote (its score can change while it runs).
    pub fn set_eligible(&mut self, eligible: bool) {
        self.eligible = eligible;
    }

    /// What to do next, given the last succession notice (`heirs`, other `supernodes`).
    pub fn step(&mut self, now: Instant, heirs: &[Provider], supernodes: &[Provider]) -> Step {
        let mut step = self.plan(now, heirs, supernodes);
        if let Step::Promote { hosts, .. } = &mut step {
            // The lists are the supernode's claims: one naming this leaf among the
            // supernodes must not make it peer with itself (found by the notice fuzz target).
            hosts.retain(|h| h.node != self.me);
        }
        step
    }

    /// [`Self::step`] before its hosts are checked.
    fn plan(&mut self, now: Instant, heirs: &[Provider], supernodes: &[Provider]) -> Step {
        if let (Some((dead, since)), true) = (self.lost, self.eligible) {
            if let Some(rank) = heirs.iter().position(|h| h.node == self.me) {
                if now.saturating_duration_since(since) >= self.heir_delay * rank as u32 {
                    // Peer with the supernodes it was told of, the other heirs (one may have
                    // promoted at the same time) and the lost supernode (it may only have
                    // been cut off): a healed split ends in one overlay.
                    let mut hosts = supernodes.to_vec();
                    hosts.extend(heirs.iter().filter(|h| h.node != self.me).copied());
                    hosts.push(dead);
                    return Step::Promote {
                        reason: format!(
                            "heir {rank} of supernode {}, which died",
                            dead.node.short()
                        ),
                        hosts,
                    };
                }
            }
        }
        if self.first_of_network {
            let reason = if self.unanswered() {
                format!(
                    "auto: no bootstrap entry answered for {} s, first node of a network of its own (check network.bootstrap)",
                    self.bootstrap_wait.as_secs()
                )
            } else {
                "auto: no supernode reachable with room, first node of its network".into()
            };
            return Step::Promote {
                reason,
                hosts: Vec::new(),
            };
        }
        let stranded_for = self
            .stranded_since
            .map(|t| now.saturating_duration_since(t));
        if self.eligible
            && !self.ever_joined
            && !self.refused_by.is_empty()
            && stranded_for.is_some_and(|t| t >= self.refused_wait)
        {
            let mut hosts = self.refused_by.clone();
            hosts.extend(supernodes.iter().copied());
            return Step::Promote {
                reason: format!(
                    "auto: the supernodes it reached stayed full for {:.1} s; adding room",
                    self.refused_wait.as_secs_f64()
                ),
                hosts,
            };
        }
        let stranded = stranded_for
            .is_some_and(|t| t >= self.stranded_after && !self.waiting_for_bootstrap(t));
        if self.eligible && stranded {
            let mut hosts = supernodes.to_vec();
            hosts.extend(heirs.iter().filter(|h| h.node != self.me).copied());
            hosts.extend(self.lost.map(|(p, _)| p));
            hosts.extend(self.refused_by.iter().copied());
            return Step::Promote {
                reason: format!(
                    "auto: no supernode reachable for {:.1} s",
                    self.stranded_after.as_secs_f64()
                ),
                hosts,
            };
        }
        let lost = self.lost.map(|(p, _)| p.node);
        let mut all: Vec<Target> = Vec::new();
        for p in heirs.iter().chain(supernodes) {
            all.push((p.addr, Some(p.node)));
        }
        for &(addr, node) in &self.bootstrap {
            all.push((addr, node.or_else(|| self.pinned.get(&addr).copied())));
        }
        all.retain(|(_, node)| *node != Some(self.me));
        let mut candidates = unique(all);
        if self.rehoming(now) && candidates.iter().any(|(_, n)| n.is_some() && *n != lost) {
            candidates.retain(|(_, n)| n.is_none() || *n != lost);
        }
        match self.redirect.take() {
            Some((from, to, why)) => {
                let to = self.redirect_targets(&to);
                let split = to.len().min(1);
                Step::Join {
                    groups: vec![to[..split].to_vec(), to[split..].to_vec(), candidates],
                    reason: format!("redirected by supernode {}: {why}", from.short()),
                }
            }
            None => Step::Join {
                groups: vec![candidates],
                reason: match lost {
                    Some(dead) => format!("re-homed after supernode {} died", dead.short()),
                    None => "joined".into(),
                },
            },
        }
    }

    /// Targets from a redirect list (never this node).
    pub fn redirect_targets(&self, to: &[Provider]) -> Vec<Target> {
        to.iter()
            .filter(|p| p.node != self.me)
            .map(|p| (p.addr, Some(p.node)))
            .collect()
    }

    /// Joined supernode `sn`, dialled at `addr`.
    pub fn on_joined(&mut self, addr: SocketAddr, sn: NodeId) {
        self.pinned.insert(addr, sn);
        self.ever_joined = true;
        self.stranded_since = None;
        self.backoff = FIRST_BACKOFF;
        self.attempts = 0;
    }

    /// A round of join attempts failed at `now`: how long to wait before the next
    /// [`Self::step`] (`None`: step at once — it promotes as the first node of its network).
    pub fn on_join_failed(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.stranded_since.get_or_insert(now);
        let stranded_for = now.saturating_duration_since(since);
        let newcomer = self.eligible && !self.ever_joined && self.refused_by.is_empty();
        if newcomer && !self.waiting_for_bootstrap(stranded_for) {
            self.first_of_network = true;
            return None;
        }
        if self.rehoming(now) {
            return Some(REHOME_RETRY);
        }
        self.attempts = self.attempts.wrapping_add(1);
        let mut wait = self.backoff.mul_f64(jitter(self.me, self.attempts));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if newcomer {
            // Step again when the bootstrap wait is over, not a back-off later.
            wait = wait.min(self.bootstrap_wait.saturating_sub(stranded_for));
        }
        Some(wait)
    }

    /// The supernode `sn` no longer has this leaf's session (it answered `UnknownLeaf`, or
    /// closed the session as superseded): join it again first, as after a redirect (nobody
    /// died, so no heir promotes).
    pub fn on_session_lost(&mut self, sn: Provider) {
        self.on_redirected(
            sn.node,
            vec![sn],
            "supernode lost this leaf's session".into(),
        );
    }

    /// Supernodes `by` refused this node in the last round (full, or demoting): a network
    /// exists (this node is not the first of one); a newcomer waits [`REFUSED_WAIT`] for
    /// the full supernode to grow the network, then promotes and peers with them.
    pub fn on_refused(&mut self, by: &[Provider]) {
        for p in by {
            if p.node != self.me && !self.refused_by.iter().any(|q| q.node == p.node) {
                self.refused_by.push(*p);
            }
        }
        let excess = self.refused_by.len().saturating_sub(MAX_SUCCESSION);
        self.refused_by.drain(..excess);
    }

    /// The supernode died (or its connection did).
    pub fn on_lost(&mut self, sn: Provider, now: Instant) {
        self.lost = Some((sn, now));
    }

    /// The supernode `from` sent this leaf to `to`.
    pub fn on_redirected(&mut self, from: NodeId, to: Vec<Provider>, reason: String) {
        // Sent somewhere by a network it was part of: never the first node of one.
        self.ever_joined = true;
        self.lost = None;
        self.redirect = Some((from, to, reason));
    }
}

/// Candidates unique by node id and by address, in order; an address given both with and
/// without an id is kept once, with the id, where it first appeared.
fn unique(all: Vec<Target>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::with_capacity(all.len());
    for (addr, node) in all {
        let id_known = node.is_some() && out.iter().any(|(_, n)| *n == node);
        if let Some(known) = out.iter_mut().find(|(a, _)| *a == addr) {
            if known.1.is_none() && !id_known {
                known.1 = node;
            }
            continue;
        }
        if !id_known {
            out.push((addr, node));
        }
    }
    out
}

/// A factor in [0.75, 1.25) from a node id and an attempt number.
fn jitter(me: NodeId, attempt: u32) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(me.as_bytes());
    hasher.update(&attempt.to_le_bytes());
    let b = hasher.finalize();
    let x = u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]]);
    0.75 + f64::from(x) / 131_072.0
}
