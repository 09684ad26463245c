//! What a hit from another node is worth: a peer supernode (or a leaf's own supernode) may
//! lie in a well-formed `Hit`, so before hits are merged and shown, [`validate_hit`] keeps
//! only providers at plausible addresses (at most [`MAX_PROVIDERS`], one per node), drops a
//! hit left with none, sanitises its name ([`sanitize_name`]) and replaces its claimed
//! `sources` with the providers it kept. [`merge_results`] then counts the distinct
//! providers of every content id itself, and lists the names it is shared under.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use kazoo_common::text::is_hidden_or_control;
use kazoo_common::wire::{Hit, MAX_NAME_LEN, MAX_PROVIDERS};
use kazoo_common::ContentId;

use crate::index::MAX_NAMES_PER_FILE;
use crate::query::Query;

/// One merged search result: a file under its best-matching name, and the other names
/// (paths) it is shared under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The file; `name` is its best-matching name, `sources` its distinct providers.
    pub hit: Hit,
    /// Its other names, at most [`MAX_NAMES_PER_FILE`] − 1, in the order received.
    pub names: Vec<String>,
}

/// Merges results from several supernodes: one result per content id, providers united (by
/// node, at most [`MAX_PROVIDERS`]), names sanitised and collected (distinct, at most
/// [`MAX_NAMES_PER_FILE`]). A hit's `sources` is a claim and is not believed: it becomes
/// the number of distinct providers merged (so a forged count cannot rank a hit first).
/// Ranked by how well the best name matches `query` ([`Query::rank`]: name matches before
/// folder matches), then by sources, then by name.
pub fn merge_results(query: Option<&Query>, hits: Vec<Hit>) -> Vec<Found> {
    let mut merged: Vec<(u8, Found)> = Vec::new();
    let mut at: HashMap<ContentId, usize> = HashMap::new();
    for mut hit in hits {
        let providers = std::mem::take(&mut hit.providers);
        let name = sanitize_name(&hit.name);
        let rank = query.map_or(0, |q| q.rank(&hit.id, &name));
        let i = *at.entry(hit.id).or_insert_with(|| {
            hit.name = name.clone();
            let found = Found {
                hit: hit.clone(),
                names: Vec::new(),
            };
            merged.push((rank, found));
            merged.len() - 1
        });
        let (best, into) = &mut merged[i];
        if into.hit.name != name
            && !into.names.contains(&name)
            && into.names.len() + 1 < MAX_NAMES_PER_FILE
        {
            if rank > *best {
                *best = rank;
                into.names
                    .insert(0, std::mem::replace(&mut into.hit.name, name));
            } else {
                into.names.push(name);
            }
        }
        for p in providers {
            if into.hit.providers.len() < MAX_PROVIDERS
                && !into.hit.providers.iter().any(|q| q.node == p.node)
            {
                into.hit.providers.push(p);
            }
        }
    }
    for (_, found) in &mut merged {
        found.hit.sources = found.hit.providers.len() as u32;
    }
    merged.sort_by(|(ra, a), (rb, b)| {
        rb.cmp(ra)
            .then(b.hit.sources.cmp(&a.hit.sources))
            .then_with(|| a.hit.name.cmp(&b.hit.name))
    });
    merged.into_iter().map(|(_, found)| found).collect()
}

/// Stands in for a character a name may not carry.
pub const REPLACEMENT: char = '\u{fffd}';

/// `hit` as received from the node at `via`, or `None` if none of its providers is
/// plausible (see [`plausible_provider`]).
pub fn validate_hit(mut hit: Hit, via: SocketAddr) -> Option<Hit> {
    let mut providers = std::mem::take(&mut hit.providers);
    providers.retain(|p| plausible_provider(p.addr, via));
    for p in &mut providers {
        p.addr = kazoo_common::addr::canonical(p.addr);
    }
    let mut seen = std::collections::HashSet::new();
    providers.retain(|p| seen.insert(p.node));
    providers.truncate(MAX_PROVIDERS);
    if providers.is_empty() {
        return None;
    }
    hit.sources = providers.len() as u32;
    hit.providers = providers;
    hit.name = sanitize_name(&hit.name);
    Some(hit)
}

/// Whether a provider address received from the node at `via` may be real: port ≠ 0, not
/// multicast or broadcast, loopback only from a loopback `via` (IPv4-mapped addresses count
/// as IPv4). Either IP family, whatever `via`'s: a dual-stack supernode reached over IPv6
/// indexes IPv4 leaves too. An unspecified IP is the wire's "the node that
/// answered" and stays (the receiver puts the answering node's IP in).
pub fn plausible_provider(addr: SocketAddr, via: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let via_ip = via.ip().to_canonical();
    if addr.port() == 0 {
        return false;
    }
    if ip.is_unspecified() {
        return true;
    }
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !ip.is_multicast() && !broadcast && (!ip.is_loopback() || via_ip.is_loopback())
}

/// `name` safe to show: control characters, bidi overrides and isolates, zero-width and
/// other format characters replaced by [`REPLACEMENT`], cut to at most [`MAX_NAME_LEN`]
/// bytes on a character boundary.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_LEN));
    for c in name.chars() {
        let c = if is_hidden_or_control(c) {
            REPLACEMENT
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kazoo_common::wire::Provider;
    use kazoo_common::{ContentId, NodeId};

    fn peer() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn hit(name: &str, sources: u32, addrs: &[&str]) -> Hit {
        Hit {
            id: ContentId::from(blake3::hash(b"x")),
            size: 1,
            name: name.into(),
            sources,
            providers: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| Provider::new(NodeId([i as u8 + 1; 32]), a.parse().unwrap()))
                .collect(),
        }
    }

    #[test]
    fn implausible_providers_are_dropped_and_sources_recomputed() {
        let h = hit(
            "song.mp3",
            4_000_000_000,
            &[
                "224.0.0.1:4000",
                "255.255.255.255:4000",
                "127.0.0.1:0",
                "[::1]:4000",
                "0.0.0.0:4001",
                "127.0.0.2:4002",
            ],
        );
        let h = validate_hit(h, peer()).unwrap();
        let addrs: Vec<String> = h.providers.iter().map(|p| p.addr.to_string()).collect();
        assert_eq!(addrs, ["[::1]:4000", "0.0.0.0:4001", "127.0.0.2:4002"]);
        assert_eq!(h.sources, 3);
        // Only a multicast provider: nothing to download from, no hit.
        assert!(validate_hit(hit("a", 1, &["239.1.2.3:80"]), peer()).is_none());
        // Loopback providers only from a loopback peer.
        let public: SocketAddr = "203.0.113.5:4000".parse().unwrap();
        assert!(validate_hit(hit("a", 1, &["127.0.0.1:80"]), public).is_none());
        assert!(validate_hit(hit("a", 1, &["198.51.100.7:80"]), public).is_some());
        // An IPv4-mapped peer address is IPv4.
        let mapped: SocketAddr = "[::ffff:203.0.113.5]:4000".parse().unwrap();
        assert!(validate_hit(hit("a", 1, &["198.51.100.7:80"]), mapped).is_some());
        // Both families from a dual-stack peer; v4-mapped providers become plain IPv4.
        let v6: SocketAddr = "[2001:db8::5]:4000".parse().unwrap();
        let h = hit(
            "a",
            1,
            &[
                "198.51.100.7:80",
                "[2001:db8::7]:80",
                "[::ffff:198.51.100.8]:80",
            ],
        );
        let addrs: Vec<String> = validate_hit(h, v6)
            .unwrap()
            .providers
            .iter()
            .map(|p| p.addr.to_string())
            .collect();
        assert_eq!(
            addrs,
            ["198.51.100.7:80", "[2001:db8::7]:80", "198.51.100.8:80"]
        );
    }

    #[test]
    fn a_provider_listed_twice_counts_once() {
        let mut h = hit("a", 9, &["10.0.0.1:80"]);
        h.providers.push(h.providers[0]);
        let h = validate_hit(h, "10.0.0.9:1".parse().unwrap()).unwrap();
        assert_eq!((h.providers.len(), h.sources), (1, 1));
    }

    #[test]
    fn names_lose_escapes_and_are_bounded() {
        assert_eq!(
            sanitize_name("\u{1b}[31mred\u{1b}[0m\u{202e}gpj.exe\u{7}"),
            "\u{fffd}[31mred\u{fffd}[0m\u{fffd}gpj.exe\u{fffd}"
        );
        assert_eq!(sanitize_name("plain name (1).flac"), "plain name (1).flac");
        let long = "é".repeat(300);
        let cut = sanitize_name(&long);
        assert!(cut.len() <= MAX_NAME_LEN && cut.chars().all(|c| c == 'é'));
        let h = validate_hit(hit("\u{1b}]0;pwned\u{7}", 1, &["0.0.0.0:1"]), peer()).unwrap();
        assert!(!h.name.chars().any(|c| c.is_control()));
    }
}
