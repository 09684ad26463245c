//! Every example config in `config/` parses with the real schema.

use kazoo_common::config::Config;

#[test]
fn example_configs_parse() {
    let mut seen = 0;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 6, "found only {seen} example configs");
}
