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
    let s = Arc::new(
        ShareStore::new(
            vec![relative_root, data.join("downloads")],
            vec![data.clone()],
            data.join("hashcache.bin"),
        )
        .with_settle_time(std::time::Duration::ZERO),
    );
    s.rescan().await;
    assert_eq!(names(&s), vec!["got it.bin", "public.txt"]);
}

#[tokio::test]
async fn files_being_written_wait_and_symlinks_into_the_data_dir_are_skipped() {
    let share = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("node.key"), b"private").unwrap();
    std::os::unix::fs::symlink(data.path().join("node.key"), share.path().join("key link"))
        .unwrap();
    std::fs::write(share.path().join("fresh.bin"), b"still being written").unwrap();
    let s = Arc::new(ShareStore::new(
        vec![share.path().to_path_buf()],
        vec![data.path().to_path_buf()],
        data.path().join("hashcache.bin"),
    ));
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
