//! Small helpers for the JSON records sandboxes and containers keep in their directories: atomic
//! writes (a reader never sees half a record, even across a crash) and ID checks.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// Writes `value` as JSON to `path` through a temporary file in the same directory, synced and
/// renamed over the target.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(Error::json(path.display().to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ctx("creating a temporary file in", dir)?;
    tmp.write_all(bytes).ctx("writing", tmp.path())?;
    tmp.as_file().sync_all().ctx("syncing", tmp.path())?;
    tmp.persist(path).map_err(|e| e.error).ctx("renaming into", path)?;
    Ok(())
}

/// Reads a JSON record; `None` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(Error::json(path.display().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("reading", path),
    }
}

/// Checks an ID is usable as a file name and by runc: ASCII letters, digits, `_`, `-`, `.` and
/// `+`, not starting with a dot, at most 128 characters.
pub(crate) fn validate_id(kind: &str, id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "{kind} ID {id:?} must be 1-128 characters of letters, digits, '_', '-', '.', '+' and not start with '.'"
        )))
    }
}

/// Removes a directory tree; a missing one is not an error.
pub(crate) fn remove_dir_all(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx("removing", dir),
        _ => Ok(()),
    }
}

/// Removes a file; a missing one is not an error.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx("removing", path),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "pod-1_x.y", "0123abcdef", "a+b"] {
            assert!(validate_id("container", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(validate_id("container", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), None);
        write_json_atomic(&path, &vec![1u32, 2]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2]));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
