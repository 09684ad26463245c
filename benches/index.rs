//! Index benchmark: `cargo bench --bench index` (`-- --quick` for 10^5 entries).
//!
//! One supernode's index filled through its real request path (`Supernode::answer`, in
//! `Register` batches) with 10 leaves × 100,000 entries whose names are realistic: 2–8 words
//! drawn from a 50,000-word vocabulary with a Zipf distribution, plus a track number and an
//! extension. Prints bytes per entry (resident and accounted, next to the raw bytes of a
//! name and id: the ceiling a compact index could approach), search p50/p99 for the most
//! common word and for two-word queries, and the time to remove one 100,000-entry leaf with
//! the longest lock hold and the search latencies another thread saw meanwhile (target:
//! p99 ≤ 100 ms), and what memory is given back when every leaf has left.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{addr, node, percentile, resident_kib, Rng};
use kazoo_common::config::SupernodeConfig;
use kazoo_common::wire::{Request, Response, ShareEntry, MAX_BATCH};
use kazoo_common::ContentId;
use kazoo_supernode::{Admission, OverlayConfig, Supernode};

const VOCABULARY: usize = 50_000;
const EXTENSIONS: [&str; 8] = ["mp3", "flac", "jpg", "pdf", "mkv", "ogg", "png", "txt"];

/// Words sampled with a Zipf distribution (exponent 1).
struct Zipf {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(rng: &mut Rng) -> Self {
        const SYLLABLES: [&str; 16] = [
            "ka", "zo", "ri", "mu", "te", "lan", "so", "vi", "do", "ne", "ba", "shi", "po", "er",
            "ty", "gu",
        ];
        let mut words = Vec::with_capacity(VOCABULARY);
        let mut seen = std::collections::HashSet::new();
        while words.len() < VOCABULARY {
            let len = 2 + rng.below(3);
            let word: String = (0..len)
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                .collect::<String>()
                + &rng.below(10).to_string()[..usize::from(words.len() > 30_000)];
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut cdf = Vec::with_capacity(VOCABULARY);
        let mut total = 0.0;
        for rank in 1..=VOCABULARY {
            total += 1.0 / rank as f64;
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { words, cdf }
    }

    fn sample(&self, rng: &mut Rng) -> &str {
        let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let i = self.cdf.partition_point(|&c| c < x).min(VOCABULARY - 1);
        &self.words[i]
    }
}

fn names(zipf: &Zipf, rng: &mut Rng, leaf: usize, count: usize) -> Vec<ShareEntry> {
    (0..count)
        .map(|i| {
            let words = 2 + rng.below(7);
            let mut name: Vec<&str> = (0..words).map(|_| zipf.sample(rng)).collect();
            let track = format!("{:03}", i % 1000);
            name.push(&track);
            let name = format!(
                "{}.{}",
                name.join(" "),
                EXTENSIONS[rng.below(EXTENSIONS.len())]
            );
            ShareEntry {
                id: ContentId::from(blake3::hash(format!("{leaf}/{i}/{name}").as_bytes())),
                size: 1_000_000 + i as u64,
                name,
            }
        })
        .collect()
}

fn register(sn: &mut Supernode, key: kazoo_supernode::LeafKey, entries: Vec<ShareEntry>) {
    for batch in entries.chunks(MAX_BATCH) {
        let answer = sn.answer(
            key,
            &Request::Register {
                entries: batch.to_vec(),
            },
        );
        assert!(
            matches!(answer[..], [Response::Registered { .. }]),
            "{answer:?}"
        );
    }
}

/// Locks the core.
fn lock(sn: &Mutex<Supernode>) -> MutexGuard<'_, Supernode> {
    sn.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Latencies (ms) of `count` searches for `query()`.
fn searches(sn: &Supernode, count: usize, mut query: impl FnMut() -> Vec<String>) -> Vec<f64> {
    let mut times: Vec<f64> = (0..count)
        .map(|_| {
            let words = query();
            let started = Instant::now();
            let _ = sn.search(&words, 50);
            ms(started.elapsed())
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (leaves, per_leaf) = if quick { (2, 50_000) } else { (10, 100_000) };
    let mut rng = Rng(0x1d3a);
    let zipf = Zipf::new(&mut rng);
    let config = SupernodeConfig {
        max_index_entries: 50_000_000,
        max_index_mib: 65_536,
        ..SupernodeConfig::default()
    };
    // The runtime holds the core under one lock; so does this benchmark.
    let sn = Arc::new(Mutex::new(Supernode::new(
        node(0),
        config,
        4710,
        OverlayConfig::default(),
    )));
    let lists: Vec<Vec<ShareEntry>> = (0..leaves)
        .map(|leaf| names(&zipf, &mut rng, leaf, per_leaf))
        .collect();
    let raw_bytes: usize = lists.iter().flatten().map(|e| e.name.len() + 32 + 8).sum();
    let words_per_name: f64 = lists
        .iter()
        .flatten()
        .map(|e| kazoo_supernode::tokenize::tokens(&e.name).len())
        .sum::<usize>() as f64
        / (leaves * per_leaf) as f64;
    let base = resident_kib();
    let started = Instant::now();
    let mut keys = Vec::new();
    for (leaf, list) in lists.into_iter().enumerate() {
        let mut core = lock(&sn);
        let Admission::Admitted(key) =
            core.admit(node(1 + leaf), addr(1 + leaf), 0, Instant::now())
        else {
            panic!("refused");
        };
        register(&mut core, key, list);
        keys.push(key);
    }
    let fill = started.elapsed();
    let entries = lock(&sn).stats().entries;
    let resident = (resident_kib().saturating_sub(base) * 1024) as f64 / entries as f64;
    let accounted = lock(&sn).accounted_bytes() as f64 / entries as f64;
    let raw = raw_bytes as f64 / entries as f64;

    let common_word = zipf.words[0].clone();
    let common_files = lists_word_count(&lock(&sn), &common_word);
    let common = searches(&lock(&sn), 200, || vec![common_word.clone()]);
    let mut qrng = Rng(7);
    let pairs = searches(&lock(&sn), 2000, || {
        vec![
            zipf.sample(&mut qrng).to_owned(),
            zipf.sample(&mut qrng).to_owned(),
        ]
    });

    // Remove one 100,000-entry leaf (detach, then drain in steps with pauses, as the
    // runtime does) while another thread searches without pause.
    let done = Arc::new(AtomicBool::new(false));
    let searcher = {
        let sn = Arc::clone(&sn);
        let done = Arc::clone(&done);
        let words: Vec<String> = zipf.words[..200].to_vec();
        std::thread::spawn(move || {
            let mut rng = Rng(99);
            let mut times = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let query = vec![words[rng.below(words.len())].clone()];
                let started = Instant::now();
                let _ = lock(&sn).search(&query, 50);
                times.push(ms(started.elapsed()));
            }
            times.sort_by(f64::total_cmp);
            times
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    lock(&sn).depart(node(1), keys[0]);
    let mut longest_hold = Duration::ZERO;
    loop {
        let step = Instant::now();
        let more = lock(&sn).drain_step();
        longest_hold = longest_hold.max(step.elapsed());
        if !more {
            break;
        }
        std::thread::sleep(kazoo_supernode::service::DRAIN_PAUSE);
    }
    let removal = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let during = searcher.join().expect("searcher");
    let fill_per_leaf = fill / leaves as u32;

    let before_all = resident_kib();
    for (leaf, key) in keys.iter().enumerate().skip(1) {
        lock(&sn).depart(node(1 + leaf), *key);
    }
    while lock(&sn).drain_step() {}
    let after_all = resident_kib();
    // Freed memory is reused: the same leaves joining again need little more.
    for leaf in 0..leaves {
        let mut core = lock(&sn);
        let Admission::Admitted(key) =
            core.admit(node(1 + leaf), addr(1 + leaf), 0, Instant::now())
        else {
            panic!("refused");
        };
        register(
            &mut core,
            key,
            names(&zipf, &mut Rng(leaf as u64 + 1), leaf, per_leaf),
        );
    }
    let refilled = resident_kib();

    println!("index: {leaves} leaves × {per_leaf} entries = {entries} entries, {words_per_name:.1} words per name (Zipf over {VOCABULARY} words)");
    println!();
    println!("| figure | value | ceiling / target | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| bytes per entry, resident | {resident:.0} | raw name+id+size {raw:.0} | {:.2}× |",
        resident / raw
    );
    println!(
        "| bytes per entry, accounted (budget) | {accounted:.0} | resident {resident:.0} | {:.2}× |",
        accounted / resident
    );
    println!(
        "| fill, entries per second | {:.0} | — | — |",
        entries as f64 / fill.as_secs_f64()
    );
    println!(
        "| search \"{common_word}\" (most common word, {}) p50 / p99 ms | {:.2} / {:.2} | 100 ms | {:.3} |",
        common_files,
        percentile(&common, 0.5),
        percentile(&common, 0.99),
        percentile(&common, 0.99) / 100.0
    );
    println!(
        "| search two Zipf words p50 / p99 ms | {:.3} / {:.3} | 100 ms | {:.4} |",
        percentile(&pairs, 0.5),
        percentile(&pairs, 0.99),
        percentile(&pairs, 0.99) / 100.0
    );
    println!(
        "| remove a {per_leaf}-entry leaf, ms | {:.0} | registering it: {:.0} | {:.2}× |",
        ms(removal),
        ms(fill_per_leaf),
        removal.as_secs_f64() / fill_per_leaf.as_secs_f64()
    );
    println!(
        "| longest lock hold while removing, ms | {:.2} | idle timeout 2000 | {:.4} |",
        ms(longest_hold),
        ms(longest_hold) / 2000.0
    );
    println!(
        "| searches during removal: count, p99 / max ms | {}, {:.2} / {:.2} | 100 ms | {:.3} |",
        during.len(),
        percentile(&during, 0.99),
        during.last().copied().unwrap_or(f64::NAN),
        percentile(&during, 0.99) / 100.0
    );
    println!(
        "| resident MiB: full / every leaf left / all joined again | {:.0} / {:.0} / {:.0} | before filling {:.0} | — |",
        before_all as f64 / 1024.0,
        after_all as f64 / 1024.0,
        refilled as f64 / 1024.0,
        base as f64 / 1024.0
    );
}

/// Files the index holds under `word` (its tokens' posting list, seen through a search
/// capped at the scan limit).
fn lists_word_count(sn: &Supernode, word: &str) -> String {
    let hits = sn
        .search(&[word.to_owned()], 200)
        .map(|h| h.len())
        .unwrap_or(0);
    format!("≥ {hits} hits")
}
