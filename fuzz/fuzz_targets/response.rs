//! `Response` frames as a leaf decodes them (`wire::read_frame`), then what the leaf does
//! with them: search results from one or more supernodes go through `merge_hits`, a
//! manifest through `Manifest::verify`. Checks: no panic; a decoded response round-trips;
//! merged results name each content id once, list at most `MAX_PROVIDERS` distinct
//! providers per hit, count as sources those distinct providers (a claimed count is not
//! believed), and come ranked by sources then name.
#![no_main]

use std::collections::HashSet;

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
    let ids: HashSet<ContentId> = hits.iter().map(|h| h.id).collect();
    let merged = merge_hits(hits);
    assert_eq!(merged.len(), ids.len(), "one hit per content id");
    for (i, hit) in merged.iter().enumerate() {
        assert!(
            hit.providers.len() <= MAX_PROVIDERS,
            "{} providers after merging",
            hit.providers.len()
        );
        assert_distinct(&hit.providers);
        // A claimed count is not believed: it is the distinct providers merged.
        assert_eq!(
            hit.sources as usize,
            hit.providers.len(),
            "sources recounted"
        );
        if let Some(next) = merged.get(i + 1) {
            assert!(
                (hit.sources, &next.name) >= (next.sources, &hit.name),
                "ranked by sources, then name"
            );
        }
    }
}
