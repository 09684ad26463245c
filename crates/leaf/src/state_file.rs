//! Small files a node keeps in its data dir (the last search, the saved download jobs):
//! written atomically, read back with a size bound.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: into a sibling `<name>.tmp`, flushed to disk, then
/// renamed over `path`, so a reader (or the node after a crash) sees the old or the new
/// contents, never a mix. Writers of one path must not race (the temporary name is fixed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// The temporary file [`write_atomic`] uses for `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads `path` if it exists (`None` if not); a file longer than `max` bytes is an error.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("longer than {max} bytes")));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_atomically_and_read_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read_bounded(&path, 10).unwrap().is_none());
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(read_bounded(&path, 6).unwrap().unwrap(), b"second");
        assert!(!dir.path().join("state.json.tmp").exists());
        let err = read_bounded(&path, 5).unwrap_err();
        assert!(err.to_string().contains("longer than 5 bytes"), "{err}");
    }
}
