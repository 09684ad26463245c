//! Search quality on a realistic library: recall and precision of the old tokenizer (file
//! names only, whole words, NFKC + lowercase) and the new one (paths, prefixes, folding,
//! CJK bigrams, filters), index bytes per entry, routing-filter size, query messages across
//! 60 supernodes (the simulator, filters vs flooding), and local search latency.
//!
//! `cargo bench --bench search` (`-- --quick`: a smaller network run).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kazoo_common::config::Routing;
use kazoo_common::wire::{ShareEntry, MAX_RESULTS};
use kazoo_common::ContentId;
use kazoo_supernode::filter::{position, MAX_FILTER_SET};
use kazoo_supernode::index::Index;
use kazoo_supernode::query::id_key;
use kazoo_supernode::sim::{addr, node, Sim, SimConfig};
use kazoo_supernode::tokenize::split_path;
use unicode_normalization::UnicodeNormalization;

/// One generated file with its ground-truth labels.
struct File {
    path: String,
    size: u64,
    id: ContentId,
    labels: HashSet<String>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}

const ARTISTS: &[&str] = &[
    "Led Zeppelin",
    "Daft Punk",
    "Björk",
    "Sigur Rós",
    "Motörhead",
    "Beyoncé",
    "Кино",
    "ДДТ",
    "宇多田ヒカル",
    "坂本龍一",
    "Café Tacvba",
    "Mötley Crüe",
    "Queen",
    "Radiohead",
    "Édith Piaf",
    "Ennio Morricone",
    "Mägo de Oz",
    "Алла Пугачёва",
    "久石譲",
    "BTS 방탄소년단",
    "Portishead",
    "Massive Attack",
    "Nirvana",
    "The Beatles",
    "Pink Floyd",
    "Aphex Twin",
    "Røyksopp",
    "Jóhann Jóhannsson",
    "Zaz",
    "Stromae",
];
const GENRES: &[&str] = &[
    "Rock",
    "Electronic",
    "Pop",
    "Jazz",
    "Classical",
    "Soundtrack",
    "Folk",
];
const TITLE_WORDS: &[&str] = &[
    "Stairway",
    "Heaven",
    "Kashmir",
    "Around",
    "World",
    "Harder",
    "Better",
    "Night",
    "Dream",
    "Summer",
    "Rain",
    "Fire",
    "Ocean",
    "Silence",
    "Mémoire",
    "Lumière",
    "Été",
    "Сердце",
    "Звезда",
    "Ночь",
    "夜",
    "桜",
    "東京",
    "Amor",
    "Corazón",
    "Sueño",
    "Wonderwall",
    "Karma",
    "Police",
    "Paranoid",
    "Android",
    "Teardrop",
    "Angel",
    "Windowlicker",
    "Hyperballad",
];
const PLACES: &[&str] = &[
    "Paris",
    "Zürich",
    "渋谷",
    "東京",
    "Москва",
    "São Paulo",
    "Kraków",
    "Reykjavík",
    "Berlin",
    "New York",
    "Kyōto",
    "Санкт-Петербург",
    "Barcelona",
    "İstanbul",
    "서울",
];
const EVENTS: &[&str] = &[
    "Wedding", "Holiday", "Birthday", "Concert", "Hiking", "Beach",
];
const VENDORS: &[(&str, &[&str])] = &[
    ("Mozilla", &["Firefox", "Thunderbird"]),
    ("VideoLAN", &["VLC"]),
    ("GIMP", &["GIMP"]),
    ("LibreOffice", &["LibreOffice"]),
    ("Canonical", &["Ubuntu"]),
    ("Blender", &["Blender"]),
    ("Audacity", &["Audacity"]),
    ("7-Zip", &["7zip"]),
    ("Inkscape", &["Inkscape"]),
    ("Krita", &["Krita"]),
];
const SYSTEMS: &[(&str, &str)] = &[
    ("windows", "exe"),
    ("macos", "dmg"),
    ("linux", "deb"),
    ("portable", "zip"),
    ("installer", "iso"),
];
const DOCS: &[(&str, &str)] = &[
    ("Résumé", "resume"),
    ("Curriculum Vitæ", "cv"),
    ("Invoice", "invoice"),
    ("Tax Return", "tax"),
    ("Отчёт", "report-ru"),
    ("会議メモ", "meeting-ja"),
    ("Lettre de motivation", "lettre"),
    ("Mietvertrag Wohnung", "mietvertrag"),
    ("Thesis Draft", "thesis"),
    ("Présentation Projet", "presentation"),
];

fn library(rng: &mut Rng) -> Vec<File> {
    let mut files = Vec::new();
    let mut add = |path: String, size: u64, labels: Vec<String>| {
        let id = ContentId::from(blake3::hash(path.as_bytes()));
        files.push(File {
            path,
            size,
            id,
            labels: labels.into_iter().collect(),
        });
    };
    // Music: artists × albums × tracks, in FLAC and MP3 (≈ 18,000).
    for (a, artist) in ARTISTS.iter().enumerate() {
        let genre = GENRES[a % GENRES.len()];
        for album in 0..6 {
            let album_title = format!(
                "{} {}",
                TITLE_WORDS[(a * 7 + album * 3) % TITLE_WORDS.len()],
                1990 + (a + album * 5) % 34
            );
            for track in 1..=12 {
                let title = format!(
                    "{} {}",
                    TITLE_WORDS[(a + album * 11 + track * 5) % TITLE_WORDS.len()],
                    TITLE_WORDS[(a * 3 + track * 7) % TITLE_WORDS.len()]
                );
                let live = track % 6 == 0;
                let live_tag = if live { " (Live)" } else { "" };
                for (ext, mib) in [("flac", 30), ("mp3", 8)] {
                    let path = format!(
                        "Music/{genre}/{artist}/{album_title}/{track:02} - {title}{live_tag}.{ext}"
                    );
                    let mut labels = vec![
                        format!("artist:{artist}"),
                        format!("genre:{genre}"),
                        format!("album:{artist}/{album_title}"),
                        "kind:audio".to_owned(),
                        format!("ext:{ext}"),
                    ];
                    // A word of the title or of the album title: what a person looking for
                    // that word accepts.
                    for w in title.split(' ').chain(album_title.split(' ')) {
                        labels.push(format!("word:{w}"));
                    }
                    if live {
                        labels.push("live".into());
                    }
                    add(path, (mib << 20) + rng.below(1 << 20) as u64, labels);
                }
            }
        }
    }
    // Photos (≈ 30,000).
    for i in 0..30_000 {
        let place = rng.pick(PLACES);
        let event = rng.pick(EVENTS);
        let year = 2010 + rng.below(15);
        let path = format!("Photos/{year}/{place} {event}/IMG_{:05}.jpg", i);
        let labels = vec![
            format!("place:{place}"),
            format!("event:{event}"),
            format!("year:{year}"),
            "kind:image".into(),
        ];
        add(path, (2 << 20) + rng.below(4 << 20) as u64, labels);
    }
    // Documents (≈ 10,000).
    for i in 0..10_000 {
        let (title, label) = DOCS[rng.below(DOCS.len())];
        let folder = rng.pick(&["Work", "Taxes", "School", "Letters", "Книги", "書類"]);
        let ext = rng.pick(&["pdf", "docx", "odt", "txt"]);
        let year = 2005 + rng.below(20);
        let path = format!("Documents/{folder}/{title} {year} v{i}.{ext}");
        let labels = vec![
            format!("doc:{label}"),
            format!("year:{year}"),
            format!("folder:{folder}"),
            "kind:document".into(),
        ];
        add(path, 20_000 + rng.below(2 << 20) as u64, labels);
    }
    // Software (≈ 6,000).
    for i in 0..6_000 {
        let (vendor, products) = VENDORS[rng.below(VENDORS.len())];
        let product = products[rng.below(products.len())];
        let (system, ext) = SYSTEMS[rng.below(SYSTEMS.len())];
        let version = format!("{}.{}.{}", 1 + rng.below(30), rng.below(10), i % 97);
        let path = format!("Software/{vendor}/{product}-{version}-{system}.{ext}");
        let kind = if ext == "iso" || ext == "zip" {
            "kind:archive"
        } else {
            "kind:software"
        };
        let labels = vec![
            format!("product:{product}"),
            format!("system:{system}"),
            kind.into(),
        ];
        add(path, (50 << 20) + rng.below(500 << 20) as u64, labels);
    }
    files
}

/// A query a person would type, with the files it should find.
struct Case {
    query: String,
    expect: Box<dyn Fn(&File) -> bool>,
}

fn has(label: String) -> Box<dyn Fn(&File) -> bool> {
    Box::new(move |f: &File| f.labels.contains(&label))
}

fn cases(files: &[File]) -> Vec<Case> {
    let mut out = Vec::new();
    let mut case = |query: &str, expect: Box<dyn Fn(&File) -> bool>| {
        out.push(Case {
            query: query.to_owned(),
            expect,
        })
    };
    // How people type artist names: lowercase, no accents, often one word.
    let typed_artists = [
        ("zeppelin", "Led Zeppelin"),
        ("daft punk", "Daft Punk"),
        ("bjork", "Björk"),
        ("sigur ros", "Sigur Rós"),
        ("motorhead", "Motörhead"),
        ("beyonce", "Beyoncé"),
        ("кино", "Кино"),
        ("ддт", "ДДТ"),
        ("宇多田", "宇多田ヒカル"),
        ("坂本", "坂本龍一"),
        ("cafe tacvba", "Café Tacvba"),
        ("motley crue", "Mötley Crüe"),
        ("queen", "Queen"),
        ("radiohead", "Radiohead"),
        ("edith piaf", "Édith Piaf"),
        ("morricone", "Ennio Morricone"),
        ("mago de oz", "Mägo de Oz"),
        ("пугачева", "Алла Пугачёва"),
        ("久石", "久石譲"),
        ("bts", "BTS 방탄소년단"),
        ("방탄", "BTS 방탄소년단"),
        ("portishead", "Portishead"),
        ("massive attack", "Massive Attack"),
        ("nirvana", "Nirvana"),
        ("beatles", "The Beatles"),
        ("pink floyd", "Pink Floyd"),
        ("aphex", "Aphex Twin"),
        ("royksopp", "Røyksopp"),
        ("johannsson", "Jóhann Jóhannsson"),
        ("stromae", "Stromae"),
    ];
    for (typed, artist) in typed_artists {
        case(typed, has(format!("artist:{artist}")));
    }
    // Artist and format, type filters, size filters, exclusions.
    case(
        "zeppelin flac",
        Box::new(|f| f.labels.contains("artist:Led Zeppelin") && f.labels.contains("ext:flac")),
    );
    case(
        "radiohead mp3",
        Box::new(|f| f.labels.contains("artist:Radiohead") && f.labels.contains("ext:mp3")),
    );
    case(
        "queen type:audio size:>20m",
        Box::new(|f| f.labels.contains("artist:Queen") && f.size > 20 << 20),
    );
    case(
        "nirvana -live",
        Box::new(|f| f.labels.contains("artist:Nirvana") && !f.labels.contains("live")),
    );
    case(
        "daft punk live",
        Box::new(|f| f.labels.contains("artist:Daft Punk") && f.labels.contains("live")),
    );
    case(
        "björk -live type:audio",
        Box::new(|f| f.labels.contains("artist:Björk") && !f.labels.contains("live")),
    );
    // Title words as typed, prefixes included.
    for (typed, word) in [
        ("stairway", "Stairway"),
        ("stair", "Stairway"),
        ("kashmir", "Kashmir"),
        ("kashm", "Kashmir"),
        ("harder", "Harder"),
        ("memoire", "Mémoire"),
        ("lumiere", "Lumière"),
        ("ete", "Été"),
        ("сердце", "Сердце"),
        ("звезд", "Звезда"),
        ("ночь", "Ночь"),
        ("夜", "夜"),
        ("桜", "桜"),
        ("corazon", "Corazón"),
        ("sueno", "Sueño"),
        ("wonder", "Wonderwall"),
        ("paranoid", "Paranoid"),
        ("teardrop", "Teardrop"),
        ("windowlick", "Windowlicker"),
        ("hyperballad", "Hyperballad"),
        ("android", "Android"),
        ("ocean", "Ocean"),
        ("silence", "Silence"),
        ("karma", "Karma"),
    ] {
        case(typed, has(format!("word:{word}")));
    }
    case(
        "stairway -live",
        Box::new(|f| f.labels.contains("word:Stairway") && !f.labels.contains("live")),
    );
    // Photos: places as typed, with years and events.
    for (typed, place) in [
        ("paris", "Paris"),
        ("zurich", "Zürich"),
        ("渋谷", "渋谷"),
        ("москва", "Москва"),
        ("sao paulo", "São Paulo"),
        ("krakow", "Kraków"),
        ("reykjavik", "Reykjavík"),
        ("berlin", "Berlin"),
        ("new york", "New York"),
        ("kyoto", "Kyōto"),
        ("петербург", "Санкт-Петербург"),
        ("barcelona", "Barcelona"),
        ("istanbul", "İstanbul"),
        ("서울", "서울"),
    ] {
        case(typed, has(format!("place:{place}")));
    }
    for (typed, place, event) in [
        ("paris wedding", "Paris", "Wedding"),
        ("berlin concert", "Berlin", "Concert"),
        ("zurich hiking", "Zürich", "Hiking"),
        ("東京 beach", "東京", "Beach"),
    ] {
        let (p, e) = (format!("place:{place}"), format!("event:{event}"));
        case(
            typed,
            Box::new(move |f| f.labels.contains(&p) && f.labels.contains(&e)),
        );
    }
    for year in [2012, 2016, 2020, 2023] {
        let y = format!("year:{year}");
        case(
            &format!("holiday {year}"),
            Box::new(move |f| f.labels.contains(&y) && f.labels.contains("event:Holiday")),
        );
    }
    case("wedding type:image", has("event:Wedding".into()));
    // 東京 is a place and a song word: both are what a person typing it looks for.
    case(
        "東京",
        Box::new(|f| f.labels.contains("place:東京") || f.labels.contains("word:東京")),
    );
    // Documents.
    for (typed, label) in [
        ("resume", "resume"),
        ("résumé", "resume"),
        ("curriculum vitae", "cv"),
        ("invoice", "invoice"),
        ("tax return", "tax"),
        ("отчет", "report-ru"),
        ("会議", "meeting-ja"),
        ("lettre motivation", "lettre"),
        ("mietvertrag", "mietvertrag"),
        ("thesis", "thesis"),
        ("presentation projet", "presentation"),
    ] {
        case(typed, has(format!("doc:{label}")));
    }
    case(
        "invoice 2019",
        Box::new(|f| f.labels.contains("doc:invoice") && f.labels.contains("year:2019")),
    );
    case(
        "resume type:document size:<1m",
        Box::new(|f| f.labels.contains("doc:resume") && f.size < 1 << 20),
    );
    case("in:taxes", has("folder:Taxes".into()));
    case("in:книги", has("folder:Книги".into()));
    // Software.
    for (typed, product) in [
        ("firefox", "Firefox"),
        ("thunderbird", "Thunderbird"),
        ("vlc", "VLC"),
        ("gimp", "GIMP"),
        ("libreoffice", "LibreOffice"),
        ("ubuntu", "Ubuntu"),
        ("blender", "Blender"),
        ("audacity", "Audacity"),
        ("inkscape", "Inkscape"),
        ("krita", "Krita"),
    ] {
        case(typed, has(format!("product:{product}")));
    }
    case(
        "vlc windows",
        Box::new(|f| f.labels.contains("product:VLC") && f.labels.contains("system:windows")),
    );
    case(
        "firefox macos",
        Box::new(|f| f.labels.contains("product:Firefox") && f.labels.contains("system:macos")),
    );
    case(
        "blender type:software",
        Box::new(|f| f.labels.contains("product:Blender") && f.labels.contains("kind:software")),
    );
    case(
        "ubuntu type:archive",
        Box::new(|f| f.labels.contains("product:Ubuntu") && f.labels.contains("kind:archive")),
    );
    case(
        "mozilla",
        Box::new(|f| {
            f.labels.contains("product:Firefox") || f.labels.contains("product:Thunderbird")
        }),
    );
    // Hash prefixes of 10 files.
    for n in 0..10 {
        let file = &files[(n * 4_999) % files.len()];
        let id = file.id;
        case(&id.to_hex()[..10], Box::new(move |f| f.id == id));
    }
    out
}

/// The tokenizer before this change: NFKC, lowercase, split on non-alphanumerics.
fn old_tokens(text: &str) -> Vec<String> {
    let normalised: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let mut out: Vec<String> = Vec::new();
    for piece in normalised
        .split(|c: char| !c.is_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        if !out.iter().any(|t| t == piece) {
            out.push(piece.to_owned());
        }
    }
    out
}

/// The old search: every query token among the file name's tokens (no folders), capped.
fn old_search(names: &[HashSet<String>], query: &str) -> Vec<usize> {
    let wanted: Vec<String> = query.split_whitespace().flat_map(old_tokens).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    names
        .iter()
        .enumerate()
        .filter(|(_, toks)| wanted.iter().all(|w| toks.contains(w)))
        .map(|(i, _)| i)
        .take(MAX_RESULTS)
        .collect()
}

/// (precision, recall) of `found` against `expected`, recall counted up to the result cap.
fn score(found: &HashSet<usize>, expected: &HashSet<usize>) -> (f64, f64) {
    let right = found.intersection(expected).count() as f64;
    let precision = if found.is_empty() {
        if expected.is_empty() {
            1.0
        } else {
            0.0
        }
    } else {
        right / found.len() as f64
    };
    let recall = if expected.is_empty() {
        1.0
    } else {
        right / expected.len().min(MAX_RESULTS) as f64
    };
    (precision, recall)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let files = library(&mut rng);
    let cases = cases(&files);
    let by_id: HashMap<ContentId, usize> =
        files.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
    println!(
        "search quality: {} paths, {} queries",
        files.len(),
        cases.len()
    );

    // One index of the whole library (100 leaves; every 10th file shared by 2 more).
    let leaves = 100;
    let build = |names_only: bool| {
        let mut index = Index::new();
        let keys: Vec<_> = (0..leaves)
            .map(|n| index.add_leaf(node(10_000 + n), addr(10_000 + n)))
            .collect();
        for (i, f) in files.iter().enumerate() {
            let name = if names_only {
                split_path(&f.path).0.to_owned()
            } else {
                f.path.clone()
            };
            let entry = ShareEntry {
                id: f.id,
                size: f.size,
                name,
            };
            let copies = if i % 10 == 0 { 3 } else { 1 };
            for c in 0..copies {
                index
                    .register(
                        keys[(i + c * 37) % leaves],
                        std::slice::from_ref(&entry),
                        100_000,
                    )
                    .expect("register");
            }
        }
        index
    };
    let index = build(false);
    let names_only = build(true);
    let old_names: Vec<HashSet<String>> = files
        .iter()
        .map(|f| old_tokens(split_path(&f.path).0).into_iter().collect())
        .collect();

    let mut rows = Vec::new();
    let (mut old_sum, mut new_sum) = ((0.0, 0.0), (0.0, 0.0));
    let mut latencies = Vec::new();
    let mut scans = Vec::new();
    for case in &cases {
        let expected: HashSet<usize> = (0..files.len())
            .filter(|&i| (case.expect)(&files[i]))
            .collect();
        let old: HashSet<usize> = old_search(&old_names, &case.query).into_iter().collect();
        let words: Vec<String> = case.query.split_whitespace().map(String::from).collect();
        let started = Instant::now();
        let hits = index.search(&words, MAX_RESULTS).unwrap_or_default();
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        std::hint::black_box(old_search(&old_names, &case.query));
        scans.push(started.elapsed().as_secs_f64() * 1e6);
        let new: HashSet<usize> = hits
            .iter()
            .filter_map(|h| by_id.get(&h.id).copied())
            .collect();
        let (op, or) = score(&old, &expected);
        let (np, nr) = score(&new, &expected);
        old_sum = (old_sum.0 + op, old_sum.1 + or);
        new_sum = (new_sum.0 + np, new_sum.1 + nr);
        rows.push((case.query.clone(), expected.len(), or, nr, np));
    }
    let n = cases.len() as f64;
    println!(
        "\nper query (expected files; recall old → new; precision new), worst new recall first:"
    );
    rows.sort_by(|a, b| a.3.total_cmp(&b.3));
    for (q, e, or, nr, np) in rows.iter().take(12) {
        println!("  {q:<32} {e:>6}  recall {or:.2} → {nr:.2}  precision {np:.2}");
    }
    println!("\n| tokenizer | recall | precision |");
    println!("|---|---|---|");
    println!(
        "| old (file name, whole words) | {:.3} | {:.3} |",
        old_sum.1 / n,
        old_sum.0 / n
    );
    println!(
        "| new (path, prefixes, folding, CJK, filters) | {:.3} | {:.3} |",
        new_sum.1 / n,
        new_sum.0 / n
    );

    let entries = index.entry_count() as f64;
    let raw: f64 = files.iter().map(|f| f.path.len() as f64).sum::<f64>() / files.len() as f64;
    let old_positions: HashSet<u32> = old_names
        .iter()
        .flatten()
        .map(|t| position(t.as_bytes()))
        .chain(files.iter().map(|f| position(f.id.as_bytes())))
        .collect();
    let _ = id_key;
    println!("\n| cost | value |");
    println!("|---|---|");
    println!(
        "| accounted index bytes per entry, paths | {:.0} |",
        index.accounted_bytes() as f64 / entries
    );
    println!(
        "| accounted index bytes per entry, file names only (≈ before) | {:.0} |",
        names_only.accounted_bytes() as f64 / names_only.entry_count() as f64
    );
    println!("| mean path bytes | {raw:.0} |");
    println!("| routing filter positions, new keys (whole library on one supernode) | {} ({:.1} % of the {MAX_FILTER_SET} bound) |", index.filter().len(), 100.0 * index.filter().len() as f64 / MAX_FILTER_SET as f64);
    println!(
        "| routing filter positions, old keys (file-name tokens, ids) | {} |",
        old_positions.len()
    );
    latencies.sort_by(f64::total_cmp);
    scans.sort_by(f64::total_cmp);
    println!(
        "| local search p50 / p99 / max, µs | {:.0} / {:.0} / {:.0} (ratio of p99 to a brute-force scan of all names: {:.3}) |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        percentile(&latencies, 0.99) / percentile(&scans, 0.99)
    );

    // The network: 60 supernodes, the library spread over 600 leaves.
    let supernodes = 60;
    let leaf_count = if quick { 120 } else { 600 };
    let share = files.len() / leaf_count;
    let network = |routing: Routing| {
        let mut config = SimConfig {
            seed: 7,
            ..SimConfig::default()
        };
        config.supernode.routing = routing;
        config.supernode.max_leaves = 1000;
        let mut sim = Sim::new(config);
        for s in 0..supernodes {
            let hosts: Vec<_> = (0..3)
                .map(|k| {
                    kazoo_common::wire::Provider::new(
                        node((s + k * 7 + 1) % supernodes),
                        addr((s + k * 7 + 1) % supernodes),
                    )
                })
                .collect();
            sim.add_supernode(node(s), addr(s), false, &hosts);
        }
        let mut holder: HashMap<ContentId, usize> = HashMap::new();
        for l in 0..leaf_count {
            let entries: Vec<ShareEntry> = files[l * share..(l + 1) * share]
                .iter()
                .map(|f| ShareEntry {
                    id: f.id,
                    size: f.size,
                    name: f.path.clone(),
                })
                .collect();
            for e in &entries {
                holder.insert(e.id, l % supernodes);
            }
            let home = l % supernodes;
            sim.add_leaf(
                node(1_000_000 + l),
                addr(1_000_000 + l),
                false,
                entries,
                vec![(addr(home), Some(node(home)))],
                Duration::from_millis(l as u64 % 1000),
            );
        }
        sim.run_for(Duration::from_secs(40));
        let mut messages = 0u64;
        let mut holders = 0usize;
        let mut found = 0usize;
        let mut indexed = 0usize;
        for case in &cases {
            let words: Vec<String> = case.query.split_whitespace().map(String::from).collect();
            let before = sim.stats().query_messages;
            let hits = sim.find(node(0), &words, MAX_RESULTS as u32);
            messages += sim.stats().query_messages - before;
            let got: HashSet<ContentId> = hits.iter().map(|h| h.id).collect();
            let local = sim.indexed(&words);
            let sns: HashSet<usize> = local
                .iter()
                .filter_map(|id| holder.get(id).copied())
                .filter(|&s| s != 0)
                .collect();
            holders += sns.len();
            found += got.len().min(MAX_RESULTS);
            indexed += local.len().min(MAX_RESULTS);
        }
        (
            messages as f64 / n,
            holders as f64 / n,
            found as f64 / indexed.max(1) as f64,
        )
    };
    let (filtered, holders, recall_f) = network(Routing::Filters);
    let (flooded, _, recall_x) = network(Routing::Flood);
    println!("\n| {supernodes} supernodes, {leaf_count} leaves | query messages per query | files found / files indexed (capped at {MAX_RESULTS}) |");
    println!("|---|---|---|");
    println!("| filters (new keys) | {filtered:.1} | {recall_f:.3} |");
    println!("| flooding (ceiling) | {flooded:.1} | {recall_x:.3} |");
    println!("| supernodes holding a match (floor) | {holders:.1} | — |");
    println!(
        "filters / flooding: {:.4}; filters / floor: {:.2}",
        filtered / flooded.max(1.0),
        filtered / holders.max(1.0)
    );
}
