use proptest::prelude::*;

use super::*;
use crate::query::Query;

fn entry(name: &str, content: &str) -> ShareEntry {
    ShareEntry {
        id: ContentId::from(blake3::hash(content.as_bytes())),
        size: content.len() as u64,
        name: name.into(),
    }
}

fn leaf(index: &mut Index, n: u8) -> LeafKey {
    index.add_leaf(
        NodeId([n; 32]),
        SocketAddr::from(([127, 0, 0, 1], 1000 + n as u16)),
    )
}

fn words(q: &str) -> Vec<String> {
    q.split_whitespace().map(String::from).collect()
}

#[test]
fn and_search_is_case_insensitive() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    index
        .register(
            a,
            &[
                entry("Daft Punk - Around The World.mp3", "1"),
                entry("daft_punk_one_more_time.flac", "2"),
                entry("world news.txt", "3"),
            ],
            100,
        )
        .unwrap();
    let names = |q: &str| -> Vec<String> {
        index
            .search(&words(q), 10)
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect()
    };
    assert_eq!(
        names("DAFT world"),
        vec!["Daft Punk - Around The World.mp3"]
    );
    assert_eq!(names("daft").len(), 2);
    assert_eq!(names("world").len(), 2);
    assert!(names("daft news").is_empty());
    assert!(names("absent").is_empty());
    assert!(index.search(&words("--"), 10).is_err());
}

#[test]
fn exact_id_and_providers_merge() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    let b = leaf(&mut index, 2);
    let e = entry("song.ogg", "same bytes");
    index.register(a, std::slice::from_ref(&e), 10).unwrap();
    index
        .register(b, &[entry("other name.ogg", "same bytes")], 10)
        .unwrap();
    let hits = index.search(&[e.id.to_hex()], 10).unwrap();
    // One hit per name, the first with every source.
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.id == e.id));
    assert_eq!(hits[0].sources, 2);
    assert_eq!(index.providers(&e.id).len(), 2);
    assert_eq!(index.search(&words("other"), 10).unwrap()[0].id, e.id);
    assert_eq!(index.file_count(), 1);
    assert_eq!(index.entry_count(), 2);
}

#[test]
fn removing_a_leaf_drops_its_entries() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    let b = leaf(&mut index, 2);
    index
        .register(a, &[entry("x one", "1"), entry("x two", "2")], 10)
        .unwrap();
    index.register(b, &[entry("x two", "2")], 10).unwrap();
    assert_eq!(index.remove_leaf(a), 2);
    let hits = index.search(&words("x"), 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].providers[0].node, NodeId([2; 32]));
    assert!(index.search(&words("one"), 10).unwrap().is_empty());
    index.remove_leaf(b);
    assert_eq!(index.entry_count(), 0);
    assert_eq!(index.file_count(), 0);
    assert!(index.token_ids.is_empty());
    assert_eq!(index.accounted_bytes(), 0);
    assert_eq!(index.leaf_count(), 0);
}

#[test]
fn limits_refuse_the_whole_batch() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    index
        .register(a, &[entry("a", "1"), entry("b", "2")], 3)
        .unwrap();
    let err = index
        .register(a, &[entry("c", "3"), entry("d", "4")], 3)
        .unwrap_err();
    assert_eq!(
        err,
        IndexError::TooManyEntries {
            would_have: 4,
            limit: 3
        }
    );
    assert_eq!(index.leaf_entries(a), 2);
    // Re-registering known entries does not count twice.
    assert_eq!(
        index.register(a, &[entry("a", "1"), entry("c", "3")], 3),
        Ok(3)
    );
    let long = "n".repeat(MAX_NAME_LEN + 1);
    assert_eq!(
        index.register(a, &[entry(&long, "9")], 100),
        Err(IndexError::NameTooLong(MAX_NAME_LEN + 1))
    );
    assert_eq!(
        index.register(a, &[entry("...", "9")], 100),
        Err(IndexError::EmptyName)
    );
}

#[test]
fn unregister_and_ranking() {
    let mut index = Index::new();
    let keys: Vec<_> = (1..=3).map(|n| leaf(&mut index, n)).collect();
    for (i, &k) in keys.iter().enumerate() {
        let mut batch = vec![entry("popular tune", "p")];
        if i == 0 {
            batch.push(entry("rare tune", "r"));
        }
        index.register(k, &batch, 10).unwrap();
    }
    let hits = index.search(&words("tune"), 10).unwrap();
    assert_eq!(hits[0].name, "popular tune");
    assert_eq!(hits[0].sources, 3);
    assert_eq!(index.search(&words("tune"), 1).unwrap().len(), 1);
    let rare = entry("rare tune", "r").id;
    assert_eq!(index.unregister(keys[0], &[rare]), Ok(1));
    assert!(index.search(&words("rare"), 10).unwrap().is_empty());
}

proptest! {
    /// After any mix of registrations and leaf removals, every remaining entry is found by
    /// each of its name's tokens and by its id, and nothing else is found.
    #[test]
    fn index_stays_consistent(ops in proptest::collection::vec((0u8..4, 0u8..12, any::<bool>()), 1..60)) {
        let mut index = Index::new();
        let keys: Vec<_> = (0..4).map(|n| leaf(&mut index, n)).collect();
        let mut model: Vec<std::collections::HashSet<u8>> = vec![Default::default(); 4];
        for (l, f, add) in ops {
            let e = entry(&format!("file{f} tag{}", f % 3), &format!("content {f}"));
            if add {
                index.register(keys[l as usize], &[e], 1000).unwrap();
                model[l as usize].insert(f);
            } else {
                index.unregister(keys[l as usize], &[e.id]).unwrap();
                model[l as usize].remove(&f);
            }
        }
        for f in 0u8..12 {
            let holders = model.iter().filter(|m| m.contains(&f)).count();
            // `file1` is also a prefix of `file10` and `file11`: only this file's hits count.
            let id = entry("", &format!("content {f}")).id;
            let hits: Vec<Hit> = index.search(&[format!("file{f}")], 50).unwrap().into_iter().filter(|h| h.id == id).collect();
            prop_assert_eq!(hits.len(), usize::from(holders > 0));
            if holders > 0 {
                prop_assert_eq!(hits[0].sources as usize, holders);
            }
        }
        let total: usize = model.iter().map(|m| m.len()).sum();
        prop_assert_eq!(index.entry_count(), total);
    }
}

proptest! {
    /// The filter never has a false negative: every query that finds a file locally (each
    /// prefix of each word of its path, its hash prefixes) is routed to this index by its
    /// filter, and the filter empties when the index does.
    #[test]
    fn filter_covers_the_index(names in proptest::collection::vec("([a-zé]{1,5}/){0,2}[a-zé渋谷]{1,10}( [a-z]{1,10}){0,3}", 1..20)) {
        let mut index = Index::new();
        let a = leaf(&mut index, 1);
        let entries: Vec<ShareEntry> = names.iter().enumerate().map(|(i, n)| entry(n, &format!("{i}{n}"))).collect();
        index.register(a, &entries, 1000).unwrap();
        let patch = index.take_filter_patch();
        let mut filter: std::collections::HashSet<u32> = patch.add.into_iter().collect();
        let routed = |q: &[String]| {
            Query::parse(q).unwrap().alternatives().iter().any(|alt| alt.iter().all(|p| filter.contains(p)))
        };
        for e in &entries {
            let hex = e.id.to_hex();
            for n in [8, 13, 64] {
                let q = vec![hex[..n].to_owned()];
                prop_assert!(index.search(&q, 10).unwrap().iter().any(|h| h.id == e.id));
                prop_assert!(routed(&q));
            }
            let (name, folder) = crate::tokenize::path_tokens(&e.name);
            for token in name.iter().chain(&folder) {
                let chars: Vec<char> = token.chars().collect();
                for k in 1..=chars.len() {
                    let q = vec![chars[..k].iter().collect::<String>()];
                    if index.search(&q, 200).unwrap().iter().any(|h| h.id == e.id) {
                        prop_assert!(routed(&q), "{:?} finds {} but is not routed", q, e.name);
                    }
                }
                let q = vec![format!("in:{token}")];
                if folder.contains(token) {
                    prop_assert!(routed(&q));
                }
            }
        }
        index.remove_leaf(a);
        for p in index.take_filter_patch().remove {
            filter.remove(&p);
        }
        prop_assert!(filter.is_empty());
        prop_assert!(index.filter().is_empty());
    }
}

/// Checks the module's invariants by brute force.
fn check(index: &Index) {
    let mut postings = 0;
    for (t, record) in index.tokens.iter().enumerate() {
        for (at, &posting) in record.files.iter().enumerate() {
            let slot = posting & !IN_NAME;
            let file = index.file(slot).expect("posting names a live file");
            assert!(file.tokens.iter().any(|ft| ft.token == t as u32
                && ft.at == at as u32
                && ft.in_name == (posting & IN_NAME != 0)));
            postings += 1;
        }
    }
    let mut noted = 0;
    for (slot, file) in index.files.iter().enumerate() {
        let Some(file) = file else { continue };
        assert_eq!(index.by_id.get(&file.id), Some(&(slot as u32)));
        assert!(!file.providers.is_empty());
        noted += file.tokens.len();
        let live: u32 = file.names.iter().map(|n| n.count).sum();
        assert_eq!(live as usize, file.providers.len());
        // A token is marked in-name exactly when a live name has it in its file name.
        for ft in &file.tokens {
            let text = &*index.tokens[ft.token as usize].text;
            let named = file.names.iter().filter(|n| n.count > 0).any(|n| {
                crate::tokenize::path_tokens(&n.name)
                    .0
                    .iter()
                    .any(|t| t == text)
            });
            assert_eq!(ft.in_name, named, "{text}");
        }
    }
    assert_eq!(postings, noted);
    assert_eq!(index.by_id.len(), index.files.iter().flatten().count());
}

proptest! {
    /// Registrations under several names, removals and leaf departures (drained in small
    /// steps) keep every posting list exact, entries and bytes return to zero at the end.
    #[test]
    fn postings_stay_exact(ops in proptest::collection::vec((0u8..4, 0u8..10, 0u8..3, 0u8..3), 1..80)) {
        let mut index = Index::new();
        let mut keys: Vec<_> = (0..4).map(|n| leaf(&mut index, n)).collect();
        for (l, f, name, op) in ops {
            let key = keys[l as usize];
            let e = entry(&format!("dir{name}/common{f}/file{f} alt{name} common"), &format!("content {f}"));
            match op {
                0 => { index.register(key, &[e], 1000).unwrap(); }
                1 => { index.unregister(key, &[e.id]).unwrap(); }
                _ => {
                    index.detach_leaf(key);
                    while index.drain(3) {}
                    keys[l as usize] = leaf(&mut index, l);
                }
            }
            check(&index);
        }
        for key in keys {
            index.detach_leaf(key);
        }
        while index.drain(5) {
            check(&index);
        }
        prop_assert_eq!(index.entry_count(), 0);
        prop_assert_eq!(index.accounted_bytes(), 0);
        prop_assert!(index.token_ids.is_empty());
    }
}

#[test]
fn a_detached_leaf_is_gone_at_once_and_drained_in_steps() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    let b = leaf(&mut index, 2);
    let many: Vec<ShareEntry> = (0..1000)
        .map(|i| entry(&format!("track {i} song"), &format!("a{i}")))
        .collect();
    index.register(a, &many, 1000).unwrap();
    index.register(b, &[entry("song of b", "b")], 10).unwrap();
    assert_eq!(index.detach_leaf(a), 1000);
    assert_eq!(index.leaf_count(), 1);
    // Its files no longer show, even before they are drained.
    let hits = index.search(&words("song"), 200).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].name, "song of b");
    assert!(index.providers(&many[0].id).is_empty());
    assert_eq!(
        index.register(a, &many[..1], 1000),
        Err(IndexError::UnknownLeaf)
    );
    let mut steps = 0;
    while index.drain(100) {
        steps += 1;
    }
    assert!(steps >= 9, "drained in {steps} steps");
    assert_eq!(index.entry_count(), 1);
    assert_eq!(index.file_count(), 1);
}

#[test]
fn the_budget_refuses_new_entries_but_not_known_ones() {
    let mut index = Index::new();
    index.set_budget(Budget {
        max_entries: 3,
        max_bytes: usize::MAX,
    });
    let a = leaf(&mut index, 1);
    let b = leaf(&mut index, 2);
    index
        .register(a, &[entry("a", "1"), entry("b", "2")], 10)
        .unwrap();
    assert!(matches!(
        index.register(b, &[entry("c", "3"), entry("d", "4")], 10),
        Err(IndexError::IndexFull { entries: 2, .. })
    ));
    assert_eq!(index.register(b, &[entry("c", "3")], 10), Ok(1));
    assert_eq!(index.register(a, &[entry("a", "1")], 10), Ok(2));
    index.set_budget(Budget {
        max_entries: usize::MAX,
        max_bytes: index.accounted_bytes(),
    });
    assert!(matches!(
        index.register(b, &[entry("e", "5")], 10),
        Err(IndexError::IndexFull { .. })
    ));
    index.remove_leaf(a);
    assert_eq!(index.register(b, &[entry("e", "5")], 10), Ok(2));
}

#[test]
fn long_names_index_a_bounded_number_of_words() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    let name: String = (0..60).map(|i| format!("w{i} ")).collect();
    index.register(a, &[entry(&name, "x")], 10).unwrap();
    assert_eq!(index.search(&words("w0 w31"), 10).unwrap().len(), 1);
    assert!(index.search(&words("w32"), 10).unwrap().is_empty());
}

#[test]
fn a_word_in_every_file_returns_the_most_shared_first() {
    let mut index = Index::new();
    let keys: Vec<_> = (0..3).map(|n| leaf(&mut index, n)).collect();
    let all: Vec<ShareEntry> = (0..5000)
        .map(|i| entry(&format!("common {i}"), &format!("c{i}")))
        .collect();
    index.register(keys[0], &all, 10_000).unwrap();
    index.register(keys[1], &all[4000..4001], 10).unwrap();
    index.register(keys[2], &all[4000..4002], 10).unwrap();
    let hits = index.search(&words("common"), 3).unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].id, all[4000].id);
    assert_eq!(hits[0].sources, 3);
    assert_eq!(hits[1].id, all[4001].id);
}

#[test]
fn verified_providers_are_listed_first_even_behind_many_sybils() {
    let mut index = Index::new();
    let real = entry("popular song", "real");
    for n in 0..(MAX_PROVIDERS as u16 + 50) {
        let mut id = [7u8; 32];
        id[..2].copy_from_slice(&n.to_le_bytes());
        let node = NodeId(id);
        let key = index.add_leaf(node, SocketAddr::from(([127, 0, 0, 1], 20_000 + n)));
        index
            .register(key, std::slice::from_ref(&real), 10)
            .unwrap();
    }
    let honest = leaf(&mut index, 200);
    index
        .register(honest, std::slice::from_ref(&real), 10)
        .unwrap();
    let listed = index.providers(&real.id);
    assert_eq!(listed.len(), MAX_PROVIDERS);
    assert!(
        !listed.iter().any(|p| p.node == NodeId([200; 32])),
        "unverified, the late honest source is cut off"
    );
    let answered = SocketAddr::from(([192, 0, 2, 200], 4711));
    index.set_verified(honest, answered);
    let listed = index.providers(&real.id);
    assert_eq!(listed[0].node, NodeId([200; 32]), "verified first");
    assert_eq!(listed[0].addr, answered, "at the address that answered");
    let hits = index.search(&words("popular"), 5).unwrap();
    assert_eq!(hits[0].providers[0].node, NodeId([200; 32]));
}

#[test]
fn many_providers_from_one_network_do_not_crowd_out_others() {
    let mut index = Index::new();
    let real = entry("popular song", "real");
    for n in 0..200u16 {
        let mut id = [9u8; 32];
        id[..2].copy_from_slice(&n.to_le_bytes());
        let addr = SocketAddr::from(([10, 0, 0, n as u8], 4710));
        let key = index.add_leaf(NodeId(id), addr);
        index.set_verified(key, addr);
        index
            .register(key, std::slice::from_ref(&real), 10)
            .unwrap();
    }
    let other_addr = SocketAddr::from(([192, 0, 2, 7], 4710));
    let other = index.add_leaf(NodeId([1; 32]), other_addr);
    index.set_verified(other, other_addr);
    index
        .register(other, std::slice::from_ref(&real), 10)
        .unwrap();
    let listed = index.providers(&real.id);
    assert_eq!(listed.len(), MAX_PROVIDERS);
    let position = listed.iter().position(|p| p.node == NodeId([1; 32]));
    assert_eq!(position, Some(1), "second: round-robin over networks");
}

/// A library laid out like a person's: the searches the issue names.
fn library() -> Index {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    let b = leaf(&mut index, 2);
    let c = leaf(&mut index, 3);
    let sized = |path: &str, content: &str, size: u64| ShareEntry {
        size,
        ..entry(path, content)
    };
    let shared = [
        sized("Music/Rock/Led Zeppelin/Kashmir.flac", "kashmir", 30 << 20),
        sized(
            "Music/Rock/Led Zeppelin/Stairway to Heaven.flac",
            "stairway",
            40 << 20,
        ),
        sized(
            "Music/Rock/Led Zeppelin/Stairway to Heaven (Live).mp3",
            "stairway live",
            9 << 20,
        ),
        sized("Music/Rock/Other/Zeppelin Tribute.mp3", "tribute", 5 << 20),
        sized("Documents/Résumé 2024.pdf", "resume", 80 << 10),
        sized("Photos/東京/渋谷の夜.png", "shibuya", 3 << 20),
        sized("Books/Толстой - Война и мир.epub", "tolstoy", 2 << 20),
        sized("Software/zeppelin-installer.exe", "installer", 60 << 20),
        sized("Work/readme.txt", "readme work", 100),
        sized("Games/readme.txt", "readme games", 200),
        sized("Party 🎵 mix.mp3", "emoji", 1 << 20),
    ];
    index.register(a, &shared, 100).unwrap();
    // The same Kashmir under other names, from two more leaves.
    index
        .register(
            b,
            &[sized(
                "Downloads/kashmir (remaster).flac",
                "kashmir",
                30 << 20,
            )],
            100,
        )
        .unwrap();
    index
        .register(
            c,
            &[sized(
                "Downloads/kashmir (remaster).flac",
                "kashmir",
                30 << 20,
            )],
            100,
        )
        .unwrap();
    check(&index);
    index
}

fn names(index: &Index, q: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    index
        .search(&words(q), 50)
        .unwrap()
        .into_iter()
        .filter(|h| seen.insert(h.id))
        .map(|h| h.name)
        .collect()
}

#[test]
fn folder_words_prefixes_accents_cjk_and_emoji_match() {
    let index = library();
    // Folder words.
    assert_eq!(names(&index, "rock").len(), 4);
    assert!(names(&index, "zeppelin kashmir")
        .iter()
        .any(|n| n.ends_with("Kashmir.flac")));
    // Prefixes (3 characters or more); a short word is a whole word.
    assert_eq!(names(&index, "stair").len(), 2);
    assert_eq!(names(&index, "stai heav").len(), 2);
    assert!(names(&index, "st").is_empty());
    assert_eq!(names(&index, "to"), names(&index, "stairway to"));
    // Accents and width, both ways.
    assert_eq!(names(&index, "resume"), vec!["Documents/Résumé 2024.pdf"]);
    assert_eq!(names(&index, "RÉSUMÉ"), vec!["Documents/Résumé 2024.pdf"]);
    assert_eq!(
        names(&index, "ｒｅｓｕｍｅ"),
        vec!["Documents/Résumé 2024.pdf"]
    );
    // CJK bigrams and single characters; Cyrillic.
    assert_eq!(names(&index, "渋谷"), vec!["Photos/東京/渋谷の夜.png"]);
    assert_eq!(names(&index, "夜"), vec!["Photos/東京/渋谷の夜.png"]);
    assert_eq!(names(&index, "東京"), vec!["Photos/東京/渋谷の夜.png"]);
    assert!(names(&index, "渋夜").is_empty());
    assert_eq!(names(&index, "война мир").len(), 1);
    assert_eq!(names(&index, "🎵"), vec!["Party 🎵 mix.mp3"]);
}

#[test]
fn exclusions_filters_and_hash_prefixes() {
    let index = library();
    assert_eq!(
        names(&index, "stairway -live"),
        vec!["Music/Rock/Led Zeppelin/Stairway to Heaven.flac"]
    );
    // An exclusion is a whole word: `-liv` keeps "Live".
    assert_eq!(names(&index, "stairway -liv").len(), 2);
    assert_eq!(
        names(&index, "zeppelin type:software"),
        vec!["Software/zeppelin-installer.exe"]
    );
    assert_eq!(names(&index, "zeppelin type:audio").len(), 4);
    assert_eq!(
        names(&index, "zeppelin type:audio size:>35m"),
        vec!["Music/Rock/Led Zeppelin/Stairway to Heaven.flac"]
    );
    assert_eq!(names(&index, "zeppelin size:<10m").len(), 2);
    assert_eq!(names(&index, "readme in:games"), vec!["Games/readme.txt"]);
    // `in:` matches folders only.
    assert!(names(&index, "in:readme").is_empty());
    assert!(matches!(
        index.search(&words("x type:film"), 5),
        Err(IndexError::BadQuery(_))
    ));
    assert_eq!(
        index.search(&words("-live"), 5),
        Err(IndexError::EmptyQuery)
    );
    let id = entry("", "resume").id.to_hex();
    assert_eq!(names(&index, &id[..8]), vec!["Documents/Résumé 2024.pdf"]);
    assert_eq!(names(&index, &id[..20]), vec!["Documents/Résumé 2024.pdf"]);
    assert_eq!(names(&index, &id), vec!["Documents/Résumé 2024.pdf"]);
    assert!(names(&index, &id[..7]).is_empty(), "7 digits are a word");
}

#[test]
fn name_matches_rank_above_folder_matches_then_sources_and_names_are_listed() {
    let index = library();
    // "zeppelin" is in two file names and in the folder of three files; Kashmir has three
    // sources but matches by folder only.
    let ranked = names(&index, "zeppelin");
    assert_eq!(ranked.len(), 5);
    let mut top = ranked[..2].to_vec();
    top.sort();
    assert_eq!(
        top,
        [
            "Music/Rock/Other/Zeppelin Tribute.mp3",
            "Software/zeppelin-installer.exe"
        ]
    );
    // Among folder matches, the file with more sources first.
    assert!(
        ranked[2].contains("Kashmir") || ranked[2].contains("kashmir"),
        "{ranked:?}"
    );
    // Kashmir is one result with its names listed: its best name first (the most common),
    // the other name as a further hit with the same id after all first hits.
    let hits = index.search(&words("kashmir"), 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, hits[1].id);
    assert_eq!(hits[0].name, "Downloads/kashmir (remaster).flac");
    assert_eq!(hits[0].sources, 3);
    assert_eq!(hits[1].name, "Music/Rock/Led Zeppelin/Kashmir.flac");
    assert_eq!((hits[1].sources, hits[1].providers.len()), (1, 1));
    // A name match beats a more common name that matches by folder only.
    let hits = index.search(&words("led kashmir"), 10).unwrap();
    assert_eq!(hits[0].name, "Music/Rock/Led Zeppelin/Kashmir.flac");
    // Two readme.txt files are two results with their folders.
    assert_eq!(names(&index, "readme").len(), 2);
}

#[test]
fn paths_are_bounded_and_names_checked() {
    let mut index = Index::new();
    let a = leaf(&mut index, 1);
    // A file name without a word is refused even under a folder with words.
    assert_eq!(
        index.register(a, &[entry("Music/---", "x")], 10),
        Err(IndexError::EmptyName)
    );
    let deep = (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join("/");
    index
        .register(a, &[entry(&format!("{deep}/x.txt"), "deep")], 10)
        .unwrap();
    assert_eq!(names(&index, "w59").len(), 1);
    assert!(names(&index, "w0").is_empty(), "beyond MAX_FOLDER_TOKENS");
    check(&index);
}
