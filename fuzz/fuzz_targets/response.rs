//! `Response` frames as a leaf decodes them (`wire::read_frame`), then what the leaf does
//! with them: search results from one or more supernodes go through `merge_hits`, a
//! manifest through `Manifest::verify`. Checks: no panic; a decoded response round-trips;
//! merged results name each content id once, list at most `MAX_PROVIDERS` distinct
//! providers per hit, add up the sources (saturating), and come ranked by sources then name.
#![no_main]

use std::collections::HashMap;

use kazoo_common::wire::{Hit, Response, MAX_PROVIDERS};
use kazoo_common::ContentId;
use kazoo_fuzz::{assert_distinct, check_round_trip, decode_body, ops::take};
use kazoo_supernode::merge_hits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(response) = decode_body::<Response>(data) {
        check_round_trip(&response);
        match &response {
            Response::Hits(hits) => check_merge(hits.clone()),
            Response::Manifest(manifest) => {
                let _ = manifest.verify(&ContentId([0; 32]));
                let _ = manifest.verify(&blake3::hash(b"").into());
            }
            _ => {}
        }
    }
    // Several supernodes' answers one after another (a routed search): merged together.
    let mut rest = data;
    let mut all: Vec<Hit> = Vec::new();
    for _ in 0..8 {
        match take::<Response>(&mut rest) {
            Some(Response::Hits(hits)) => all.extend(hits),
            Some(_) => {}
            None => break,
        }
    }
    check_merge(all);
});

fn check_merge(hits: Vec<Hit>) {
    let mut sources: HashMap<ContentId, u64> = HashMap::new();
    for hit in &hits {
        *sources.entry(hit.id).or_default() += u64::from(hit.sources);
    }
    let merged = merge_hits(hits);
    assert_eq!(merged.len(), sources.len(), "one hit per content id");
    for (i, hit) in merged.iter().enumerate() {
        assert!(
            hit.providers.len() <= MAX_PROVIDERS,
            "{} providers after merging",
            hit.providers.len()
        );
        assert_distinct(&hit.providers);
        let total = sources[&hit.id].min(u64::from(u32::MAX));
        assert_eq!(u64::from(hit.sources), total, "sources add up");
        if let Some(next) = merged.get(i + 1) {
            assert!(
                (hit.sources, &next.name) >= (next.sources, &hit.name),
                "ranked by sources, then name"
            );
        }
    }
}
