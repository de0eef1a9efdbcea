//! Where a name too long for the spool keeps its whole original:
//! `SPOOL/names/KEY`, a small file holding the original's bytes.
//!
//! It is written (to `tmp/`, then renamed into place) before the data enters
//! the state whose name needs it: by the collector before admission, by the
//! sender before a first claim. It never moves while the file lives; every
//! reader of a cut name (`SpoolName::is_cut`) looks it up here by key. The
//! sender removes it when it deletes a delivered file (`--delete-delivered`);
//! otherwise the system's housekeeping ages `names/` out together with
//! `done/` and `error/` (see docs/spool.md). A missing record is not fatal:
//! the file goes on under the cut name, with a warning.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::name::{Key, SpoolName};

/// The folder of full-name records.
pub const NAMES_DIR: &str = "names";

// Each function takes the spool's root, not a `Spool`: the spool's own
// moves call here, so this module stays below `spool.rs`.
fn record(spool_root: &Path, key: Key) -> PathBuf {
    spool_root.join(NAMES_DIR).join(key.to_string())
}

/// Keeps `name`'s whole original under its key, if the name is long (it
/// then must have a key). Idempotent: a key always stands for one original.
pub fn store(spool_root: &Path, name: &SpoolName) -> io::Result<()> {
    if name.original.len() <= crate::name::SHORT_MAX {
        return Ok(());
    }
    let key = name
        .key
        .ok_or_else(|| io::Error::other("a long name needs a key"))?;
    let dir = spool_root.join(NAMES_DIR);
    fs::create_dir_all(&dir)?;
    let staged = spool_root
        .join(crate::layout::TMP_DIR)
        .join(format!(".name-{key}-{:08x}", fastrand::u32(..)));
    let result = (|| {
        let mut file = fs::File::create(&staged)?;
        file.write_all(name.original.as_encoded_bytes())?;
        file.sync_all()?;
        fs::rename(&staged, record(spool_root, key))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result
}

/// Replaces a cut original by the whole one kept under the file's key. A
/// record that is missing or does not match the length in the name leaves
/// the cut original (and says so): the file still goes, under part of its name.
pub fn resolve(spool_root: &Path, name: &mut SpoolName) {
    if !name.is_cut() {
        return;
    }
    let Some(key) = name.key else { return };
    let path = record(spool_root, key);
    match fs::read(&path) {
        Ok(bytes)
            if Some(bytes.len()) == name.full_len.map(|n| n as usize)
                && bytes.starts_with(name.original.as_encoded_bytes()) =>
        {
            name.original = OsString::from_vec(bytes);
        }
        Ok(_) => {
            tracing::warn!(record = %path.display(), "full-name record does not match the file's name; using the shortened name")
        }
        Err(e) => {
            tracing::warn!(record = %path.display(), error = %e, "full-name record unreadable; using the shortened name")
        }
    }
}

/// Removes a file's full-name record once no copy of the file is left in
/// the spool (after `--delete-delivered`).
pub fn forget(spool_root: &Path, name: &SpoolName) {
    if name.is_long()
        && let Some(key) = name.key
    {
        let _ = fs::remove_file(record(spool_root, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_name_resolves_to_the_stored_original() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join(crate::layout::TMP_DIR)).unwrap();
        let long = OsString::from_vec([b"\xff".as_slice(), &[b'z'; 250]].concat());
        let mut name = SpoolName::fresh(long.clone());
        name.key = Some(Key::random());
        store(root.path(), &name).unwrap();
        let mut parsed = SpoolName::parse(&name.to_os_string());
        assert!(parsed.is_cut());
        resolve(root.path(), &mut parsed);
        assert_eq!(parsed.original, long);
        assert!(!parsed.is_cut());
        forget(root.path(), &parsed);
        let mut again = SpoolName::parse(&name.to_os_string());
        resolve(root.path(), &mut again);
        assert!(again.is_cut(), "without its record the cut name stays");
    }
}
