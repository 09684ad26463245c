//! The configured addresses as this node resolves them: `node.listen` once at start, and the
//! `network.bootstrap` entries before every round of dials to them (dynamic DNS: a name that
//! moved is followed). Lookups run off the async runtime's threads and are bounded in time
//! (see [`kazoo_common::config::host`]). A name that does not resolve is a warning in the log
//! (when it starts failing, and again when it resolves) and a problem in `kazoo status` while
//! it fails; the node runs on. A `listen` name that does not resolve listens on every
//! interface at its port instead.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use kazoo_common::config::{BootstrapEntry, HostAddr};
use kazoo_common::NodeId;

use super::dial_guard::DialGuard;
use super::{local_since, now_secs};

/// The bootstrap entries, what their names resolved to, and the names that fail now.
#[derive(Debug)]
pub(super) struct Resolver {
    entries: Vec<BootstrapEntry>,
    /// Resolved bootstrap address → the entry it came from (at most entries ×
    /// `MAX_RESOLVED` names' addresses, plus the literals; replaced on each lookup).
    known: Mutex<HashMap<SocketAddr, String>>,
    /// Names (`bootstrap X`, `listen X`) that do not resolve now: since when (unix seconds)
    /// and why. At most one per configured entry.
    failing: Mutex<BTreeMap<String, (u64, String)>>,
    /// Rounds resolved so far: a name with several addresses is dialled at the next one
    /// each round, so one that does not answer does not hide the others.
    round: AtomicUsize,
}

/// Whether a socket bound to `local` can reach `addr` (a dual-stack `[::]` reaches both
/// families).
fn reachable_from(local: SocketAddr, addr: SocketAddr) -> bool {
    match local {
        SocketAddr::V4(_) => addr.is_ipv4(),
        SocketAddr::V6(v6) => v6.ip().is_unspecified() || addr.is_ipv6(),
    }
}

impl Resolver {
    /// The resolver of `entries`; IP literals are known at once.
    pub(super) fn new(entries: Vec<BootstrapEntry>) -> Self {
        let known = entries
            .iter()
            .filter_map(|e| e.addr.ip())
            .map(|addr| (kazoo_common::addr::canonical(addr), addr.to_string()))
            .collect();
        Resolver {
            entries,
            known: Mutex::new(known),
            failing: Mutex::default(),
            round: AtomicUsize::new(0),
        }
    }

    /// Whether `addr` is a bootstrap address (a literal, or what a name resolved to).
    pub(super) fn is_bootstrap(&self, addr: SocketAddr) -> bool {
        crate::lock(&self.known).contains_key(&addr)
    }

    /// `addr` as the user wrote it: `host:port (addr)` for a resolved name.
    pub(super) fn describe(&self, addr: SocketAddr) -> String {
        match crate::lock(&self.known).get(&addr) {
            Some(name) if *name != addr.to_string() => format!("{name} ({addr})"),
            _ => addr.to_string(),
        }
    }

    /// Records that `what` (`bootstrap NAME`, `listen NAME`) resolves (`Ok`) or not.
    fn note(&self, what: String, result: Result<(), String>) {
        let mut failing = crate::lock(&self.failing);
        match result {
            Ok(()) => {
                if failing.remove(&what).is_some() {
                    tracing::info!(name = %what, "host name resolves again");
                }
            }
            Err(why) => {
                if !failing.contains_key(&what) {
                    tracing::warn!(name = %what, error = %why, "host name does not resolve");
                }
                let since = failing
                    .get(&what)
                    .map_or_else(now_secs, |(since, _)| *since);
                failing.insert(what, (since, why));
            }
        }
    }

    /// The address to listen on: `listen` itself, or the first address its name resolves
    /// to; if it does not resolve, every interface at its port (with a warning and a
    /// problem).
    pub(super) async fn listen_addr(&self, listen: &HostAddr) -> SocketAddr {
        match listen.resolve().await {
            Ok(addrs) => {
                self.note(format!("listen {listen}"), Ok(()));
                addrs[0]
            }
            Err(e) => {
                let fallback = SocketAddr::from(([0u16; 8], listen.port()));
                self.note(
                    format!("listen {listen}"),
                    Err(format!("{e}; listening on {fallback} instead")),
                );
                fallback
            }
        }
    }

    /// Resolves every entry now and returns whom to dial this round from a socket bound to
    /// `local`: each literal, and one address of each name that resolves (the next one each
    /// round). Resolved addresses are proven to `dials` (configured, so dialled freely).
    pub(super) async fn targets(
        &self,
        local: SocketAddr,
        dials: &DialGuard,
    ) -> Vec<(SocketAddr, Option<NodeId>)> {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        let lookups = self.entries.iter().map(|entry| async move {
            let result = match &entry.addr {
                HostAddr::Ip(_) => None,
                name => Some(name.resolve().await.map(|addrs| {
                    addrs
                        .into_iter()
                        .filter(|a| reachable_from(local, *a))
                        .collect::<Vec<_>>()
                })),
            };
            (entry, result)
        });
        let resolved = futures_util::future::join_all(lookups).await;
        let mut known = HashMap::new();
        let mut targets = Vec::new();
        for (entry, result) in resolved {
            let addrs = match result {
                None => entry.addr.ip().into_iter().collect(),
                Some(result) => {
                    let what = format!("bootstrap {}", entry.addr);
                    match result {
                        Ok(addrs) if !addrs.is_empty() => {
                            self.note(what, Ok(()));
                            addrs
                        }
                        Ok(_) => {
                            let why = format!("no address reachable from {local}");
                            self.note(what, Err(why));
                            Vec::new()
                        }
                        Err(e) => {
                            self.note(what, Err(e.to_string()));
                            Vec::new()
                        }
                    }
                }
            };
            for addr in &addrs {
                known.insert(*addr, entry.addr.to_string());
            }
            if let Some(addr) = addrs.get(round % addrs.len().max(1)) {
                dials.prove(*addr, Instant::now());
                targets.push((*addr, entry.node));
            }
        }
        *crate::lock(&self.known) = known;
        targets
    }

    /// Names that do not resolve now, one line each.
    pub(super) fn problems(&self) -> Vec<String> {
        crate::lock(&self.failing)
            .iter()
            .map(|(what, (since, why))| {
                format!(
                    "{what} does not resolve since {} ({why})",
                    local_since(*since)
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_reaches_its_own_family_and_dual_stack_both() {
        let v4: SocketAddr = "1.2.3.4:1".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let any4: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let any6: SocketAddr = "[::]:0".parse().unwrap();
        let lo6: SocketAddr = "[::1]:0".parse().unwrap();
        assert!(reachable_from(any4, v4) && !reachable_from(any4, v6));
        assert!(reachable_from(any6, v4) && reachable_from(any6, v6));
        assert!(!reachable_from(lo6, v4) && reachable_from(lo6, v6));
    }

    #[tokio::test]
    async fn names_resolve_each_round_and_failures_are_problems() {
        let entries = vec![
            "localhost:4710".parse::<BootstrapEntry>().unwrap(),
            "127.0.0.1:4711".parse().unwrap(),
            "no-such-host.invalid:4712".parse().unwrap(),
        ];
        let resolver = Resolver::new(entries);
        let dials = DialGuard::new([], Instant::now());
        let any4: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let targets = resolver.targets(any4, &dials).await;
        let lo: SocketAddr = "127.0.0.1:4710".parse().unwrap();
        assert_eq!(
            targets.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![lo, "127.0.0.1:4711".parse().unwrap()]
        );
        assert!(resolver.is_bootstrap(lo));
        assert_eq!(resolver.describe(lo), "localhost:4710 (127.0.0.1:4710)");
        assert!(
            dials.check(lo, Instant::now()).is_ok(),
            "resolved is proven"
        );
        let problems = resolver.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("bootstrap no-such-host.invalid:4712 does not resolve since")
        );
        let listen = resolver
            .listen_addr(&"no-such-host.invalid:0".parse().unwrap())
            .await;
        assert!(listen.ip().is_unspecified());
        assert_eq!(resolver.problems().len(), 2);
    }
}
