//! Turning a file name that came from the network into a safe name inside the download folder.
//!
//! A name from the network never chooses a path: separators (`/`, `\`), NUL and other control
//! characters and `:` become `_`, bidi controls and other invisible format characters are
//! dropped (so a name cannot show `gpj.exe` as `exe.jpg`), leading dots and surrounding spaces are dropped (so `..` and
//! hidden files cannot be named), and an empty result falls back to the content id. The
//! result is at most 255 bytes and is always a single path component.

use std::path::{Path, PathBuf};

use kazoo_common::text::is_format;
use kazoo_common::wire::MAX_NAME_LEN;
use kazoo_common::ContentId;

/// A single safe path component for `name` (falling back to the content id's hex). A name
/// from the network may be a path below its sharer's share root (`Music/Rock/a.flac`, see
/// the wire spec): only the part after its last `/` is used.
pub fn safe_file_name(name: &str, id: &ContentId) -> String {
    let name = kazoo_supernode::tokenize::split_path(name).0;
    let replaced: String = name
        .chars()
        .filter(|c| !is_format(*c))
        .map(|c| match c {
            '/' | '\\' | ':' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let trimmed = replaced.trim().trim_start_matches('.').trim();
    let mut end = trimmed.len().min(MAX_NAME_LEN);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let safe = &trimmed[..end];
    if safe.is_empty() {
        id.to_hex()
    } else {
        safe.to_owned()
    }
}

/// A path in `dir` for `name` that does not exist yet: `name`, then `name (1)`, `name (2)`, …
/// (the counter goes before the extension).
pub fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    (1u32..)
        .map(|n| {
            let counter = format!(" ({n}){ext}");
            // Keep the whole name within MAX_NAME_LEN bytes.
            let mut end = stem.len().min(MAX_NAME_LEN.saturating_sub(counter.len()));
            while !stem.is_char_boundary(end) {
                end -= 1;
            }
            dir.join(format!("{}{counter}", &stem[..end]))
        })
        .find(|p| !p.exists())
        .unwrap_or(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_inside() {
        let id = ContentId([0xab; 32]);
        let dir = Path::new("/downloads");
        for name in [
            "../../etc/passwd",
            "..",
            ".",
            "/etc/shadow",
            "C:\\Windows\\system32",
            "a\0b",
            "\\\\server\\share",
            "  ..  ",
            "",
            "name/../../x",
            "\n",
        ] {
            let safe = safe_file_name(name, &id);
            let path = dir.join(&safe);
            assert_eq!(path.parent(), Some(dir), "{name:?} -> {safe:?}");
            assert!(!safe.contains('/') && !safe.contains('\\') && !safe.contains('\0'));
            assert!(!safe.starts_with('.'), "{name:?} -> {safe:?}");
            assert!(path.components().count() == 3, "{name:?} -> {safe:?}");
        }
        assert_eq!(safe_file_name("..", &id), id.to_hex());
        assert_eq!(safe_file_name("song.mp3", &id), "song.mp3");
        assert_eq!(safe_file_name("Music/Rock/song.mp3", &id), "song.mp3");
        assert_eq!(safe_file_name(&"é".repeat(200), &id).len(), 254);
    }

    #[test]
    fn existing_names_get_a_counter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
        assert_eq!(
            unused_path(dir.path(), "a.txt"),
            dir.path().join("a (1).txt")
        );
        assert_eq!(unused_path(dir.path(), "b"), dir.path().join("b"));
        let long = "x".repeat(MAX_NAME_LEN);
        std::fs::write(dir.path().join(&long), b"x").unwrap();
        let next = unused_path(dir.path(), &long);
        assert!(next.file_name().unwrap().len() <= MAX_NAME_LEN);
        assert!(next.to_string_lossy().ends_with(" (1)"));
    }
}
