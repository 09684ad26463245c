use super::*;

fn store(dir: &Path, data: &Path) -> Arc<ShareStore> {
    Arc::new(
        ShareStore::new(vec![dir.to_path_buf()], vec![], data.join("hashcache.bin"))
            .with_settle_time(std::time::Duration::ZERO),
    )
}

fn names(store: &ShareStore) -> Vec<String> {
    let mut names: Vec<String> = store.entries().into_iter().map(|e| e.name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn scans_recursively_and_caches_hashes() {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(share.path().join("sub/deeper")).unwrap();
    std::fs::write(share.path().join("one.txt"), b"one").unwrap();
    std::fs::write(share.path().join("sub/deeper/two.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(share.path().join(".hidden"), b"secret").unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", share.path().join("dangling.lnk")).unwrap();
    std::fs::write(share.path().join("---"), b"no words").unwrap();

    let s = store(share.path(), data.path());
    let report = s.rescan().await;
    assert_eq!(report.added, 2);
    assert_eq!(report.hashed, 2);
    assert_eq!(
        report.skipped, 2,
        "dangling link and wordless name are skipped"
    );
    // Shared under their paths below the share root.
    assert_eq!(names(&s), vec!["one.txt", "sub/deeper/two.bin"]);
    let two = s
        .entries()
        .into_iter()
        .find(|e| e.name == "sub/deeper/two.bin")
        .unwrap();
    assert_eq!(two.id, ContentId::from(blake3::hash(&vec![7u8; 300_000])));
    assert!(s.get(&two.id).unwrap().manifest.verify(&two.id).is_ok());

    // A restart finds everything in the cache.
    let again = store(share.path(), data.path());
    let report = again.rescan().await;
    assert_eq!((report.added, report.hashed), (2, 0));
}

#[tokio::test]
async fn notices_added_removed_and_changed_files() {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = store(share.path(), data.path());
    let mut version = s.subscribe();
    std::fs::write(share.path().join("a.txt"), b"a").unwrap();
    s.rescan().await;
    assert!(version.has_changed().unwrap());
    version.mark_unchanged();
    assert_eq!(s.rescan().await, ScanReport::default());
    assert!(!version.has_changed().unwrap());

    std::fs::write(share.path().join("b.txt"), b"b").unwrap();
    std::fs::write(share.path().join("a.txt"), b"a changed").unwrap();
    let report = s.rescan().await;
    assert_eq!((report.added, report.changed), (1, 1));
    let a = s.entries().into_iter().find(|e| e.name == "a.txt").unwrap();
    assert_eq!(a.id, ContentId::from(blake3::hash(b"a changed")));

    std::fs::remove_file(share.path().join("b.txt")).unwrap();
    assert_eq!(s.rescan().await.removed, 1);
    assert_eq!(names(&s), vec!["a.txt"]);
}

#[tokio::test]
async fn duplicate_content_is_offered_once() {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("x.txt"), b"same").unwrap();
    std::fs::write(share.path().join("y.txt"), b"same").unwrap();
    let s = store(share.path(), data.path());
    s.rescan().await;
    assert_eq!(s.entries().len(), 1);
    std::fs::remove_file(share.path().join("x.txt")).unwrap();
    s.rescan().await;
    let entries = s.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(s.get(&entries[0].id).unwrap().name, "y.txt");
}

#[tokio::test]
async fn the_data_dir_is_never_shared() {
    let share = tempfile::tempdir().unwrap();
    let data = share.path().join("state");
    std::fs::create_dir_all(data.join("downloads")).unwrap();
    std::fs::write(data.join("node.key"), b"private key").unwrap();
    std::fs::write(data.join("downloads").join("got it.bin"), b"downloaded").unwrap();
    std::fs::write(share.path().join("public.txt"), b"public").unwrap();
    let relative_root = share.path().join(".");
    let layout = ShareLayout {
        dirs: vec![relative_root],
        download_dir: Some(data.join("downloads")),
        exclude: vec![data.clone()],
        ..ShareLayout::default()
    };
    let s = Arc::new(
        ShareStore::with_layout(layout, data.join("hashcache.bin"))
            .with_settle_time(std::time::Duration::ZERO),
    );
    s.rescan().await;
    assert_eq!(names(&s), vec!["got it.bin", "public.txt"]);
}

/// Another node's data dir inside a share folder (the local-cluster walkthrough shared the
/// folder holding every node's state): found by its mark, or by its key for older ones.
#[tokio::test]
async fn other_nodes_data_dirs_and_key_files_are_never_shared() {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let other = share.path().join("state/bob");
    kazoo_common::identity::Identity::load_or_create(&other).unwrap();
    std::fs::write(other.join("hashcache notes.txt"), b"state").unwrap();
    let old = share.path().join("old node");
    kazoo_common::identity::Identity::load_or_create(&old).unwrap();
    std::fs::remove_file(old.join(DATA_DIR_MARK)).unwrap();
    std::fs::write(old.join("leftover.txt"), b"state").unwrap();
    // A node key copied under another name; a folder holding a `node.key` is a data dir.
    std::fs::copy(other.join("node.key"), share.path().join("backup.der")).unwrap();
    std::fs::create_dir(share.path().join("keys")).unwrap();
    std::fs::write(share.path().join("keys/node.key"), b"whatever").unwrap();
    std::fs::write(share.path().join("keys/notes.txt"), b"notes").unwrap();
    std::fs::write(share.path().join("song.mp3"), b"music").unwrap();
    let s = store(share.path(), data.path());
    let report = s.rescan().await;
    assert_eq!(names(&s), vec!["song.mp3"]);
    assert_eq!(report.skipped, 1, "the copied key");

    // A share folder that is itself inside a data dir is refused and reported.
    let s = store(&other, data.path());
    s.rescan().await;
    assert!(names(&s).is_empty());
    assert!(s.problems()[0].contains("data dir"), "{:?}", s.problems());
}

#[tokio::test]
async fn symlinks_leaving_the_share_folders_are_followed_only_when_configured() {
    let share = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"outside").unwrap();
    std::fs::write(share.path().join("inside.txt"), b"inside").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        share.path().join("out.lnk"),
    )
    .unwrap();
    std::os::unix::fs::symlink(share.path().join("inside.txt"), share.path().join("in.lnk"))
        .unwrap();
    let layout = |follow_symlinks| ShareLayout {
        dirs: vec![share.path().to_path_buf()],
        follow_symlinks,
        ..ShareLayout::default()
    };
    let s = Arc::new(
        ShareStore::with_layout(layout(false), data.path().join("hashcache.bin"))
            .with_settle_time(std::time::Duration::ZERO),
    );
    s.rescan().await;
    let ids: Vec<ContentId> = s.entries().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![ContentId::from(blake3::hash(b"inside"))]);

    s.set_layout(layout(true));
    s.rescan().await;
    assert!(s.get(&ContentId::from(blake3::hash(b"outside"))).is_some());
}

#[tokio::test]
async fn a_missing_share_folder_is_a_problem_until_it_appears() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("music");
    let s = store(&dir, root.path());
    s.rescan().await;
    assert_eq!(s.problems().len(), 1);
    assert!(s.problems()[0].contains("missing"), "{:?}", s.problems());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.ogg"), b"a").unwrap();
    s.rescan().await;
    assert!(s.problems().is_empty());
    assert_eq!(names(&s), vec!["a.ogg"]);
}

#[tokio::test]
async fn files_saved_elsewhere_are_shared_only_when_configured() {
    let share = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let saved = elsewhere.path().join("saved.bin");
    std::fs::write(&saved, b"saved").unwrap();
    let id = ContentId::from(blake3::hash(b"saved"));
    let manifest = || kazoo_common::hash::hash_file(&saved).unwrap().1;
    let s = store(share.path(), data.path());
    assert!(!s.add_file(saved.clone(), id, manifest()).await);
    s.rescan().await;
    assert!(s.is_empty());

    s.set_layout(ShareLayout {
        dirs: vec![share.path().to_path_buf()],
        share_saved_elsewhere: true,
        ..ShareLayout::default()
    });
    assert!(s.add_file(saved.clone(), id, manifest()).await);
    s.rescan().await;
    assert!(s.get(&id).is_some(), "kept by rescans");

    // Inside a share folder it is shared either way.
    let inside = share.path().join("inside.bin");
    std::fs::write(&inside, b"saved").unwrap();
    s.set_layout(ShareLayout {
        dirs: vec![share.path().to_path_buf()],
        ..ShareLayout::default()
    });
    assert!(s.add_file(inside.clone(), id, manifest()).await);
    s.rescan().await;
    assert_eq!(names(&s), vec!["inside.bin"]);
}

#[tokio::test]
async fn files_being_written_wait_and_symlinks_into_the_data_dir_are_skipped() {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("node.key"), b"private").unwrap();
    std::os::unix::fs::symlink(data.path().join("node.key"), share.path().join("key link"))
        .unwrap();
    std::fs::write(share.path().join("fresh.bin"), b"still being written").unwrap();
    // An hour's settle time: the file surely counts as modified just now, however long this
    // thread is held up between writing it and the rescan.
    let s = Arc::new(
        ShareStore::new(
            vec![share.path().to_path_buf()],
            vec![data.path().to_path_buf()],
            data.path().join("hashcache.bin"),
        )
        .with_settle_time(std::time::Duration::from_secs(3600)),
    );
    assert_eq!(s.rescan().await.added, 0, "a file modified just now waits");
    let s = Arc::new(
        ShareStore::new(
            vec![share.path().to_path_buf()],
            vec![data.path().to_path_buf()],
            data.path().join("hashcache.bin"),
        )
        .with_settle_time(std::time::Duration::ZERO),
    );
    s.rescan().await;
    assert_eq!(names(&s), vec!["fresh.bin"]);
}

#[test]
fn shared_paths_keep_the_nearest_folders_that_fit() {
    use kazoo_common::wire::MAX_NAME_LEN;
    let root = PathBuf::from("/share");
    let roots = vec![root.clone(), PathBuf::from("/share/inner")];
    let name = |p: &str| scan::share_name(Path::new(p), &roots);
    assert_eq!(
        name("/share/Music/Rock/a.flac").as_deref(),
        Some("Music/Rock/a.flac")
    );
    // Under nested roots, the path below the nearest.
    assert_eq!(name("/share/inner/x/a.flac").as_deref(), Some("x/a.flac"));
    assert_eq!(name("/elsewhere/a.flac").as_deref(), Some("a.flac"));
    assert_eq!(name("/share/Music/---"), None);
    let long = "f".repeat(100);
    let deep = format!("/share/{long}/{long}/{long}/near/a.flac");
    let shared = name(&deep).unwrap();
    assert!(shared.len() <= MAX_NAME_LEN);
    assert_eq!(shared, format!("{long}/{long}/near/a.flac"));
    let exact = format!("/share/x/{}", "n".repeat(MAX_NAME_LEN));
    assert_eq!(name(&exact).unwrap().len(), MAX_NAME_LEN);
}

#[tokio::test]
async fn the_download_folder_is_shared_unless_configured_not_to_be() {
    let root = tempfile::tempdir().unwrap();
    let music = root.path().join("music");
    let mut config = Config::default();
    config.node.data_dir = root.path().join("data");
    config.share.dirs = vec![music.clone()];
    config.share.download_dir = Some(music.join("got"));
    std::fs::create_dir_all(music.join("got")).unwrap();
    std::fs::create_dir_all(&config.node.data_dir).unwrap();
    std::fs::write(music.join("song.ogg"), b"song").unwrap();
    std::fs::write(music.join("got/fetched.ogg"), b"fetched").unwrap();
    let fetched = |s: &ShareStore| names(s).iter().any(|n| n.ends_with("fetched.ogg"));
    let s = store(&music, &config.node.data_dir);
    // The default: downloads are shared (here they lie inside a share folder, too).
    assert!(config.share.share_downloads);
    s.set_layout(ShareLayout::from_config(&config));
    s.rescan().await;
    assert!(fetched(&s), "{:?}", names(&s));
    // `share_downloads = false` keeps them out even inside a share folder.
    config.share.share_downloads = false;
    s.set_layout(ShareLayout::from_config(&config));
    s.rescan().await;
    assert_eq!(names(&s), vec!["song.ogg"]);
}

#[tokio::test]
async fn an_unreadable_share_folder_is_a_problem() {
    // A symlink loop cannot be read even by root (whom a mode-000 folder does not stop).
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("loop");
    std::os::unix::fs::symlink(root.path().join("back"), &dir).unwrap();
    std::os::unix::fs::symlink(&dir, root.path().join("back")).unwrap();
    let s = store(&dir, root.path());
    s.rescan().await;
    assert_eq!(s.problems().len(), 1, "{:?}", s.problems());
    assert!(s.problems()[0].contains("unreadable"), "{:?}", s.problems());
    assert!(s.entries().is_empty());
}
