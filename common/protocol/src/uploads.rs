//! `uploads/KEY.RECEIVER.json`: a multipart upload a sender started for a
//! file (its idempotency key `KEY`) into an S3-compatible receiver, and has
//! not yet completed or aborted (docs/spool.md rule 14d).
//!
//! Parts stored for an upload that is never completed or aborted are kept,
//! and billed, by the store for ever. A sender killed mid-upload cannot
//! abort; whoever sends the file next (any sender, after the claim was
//! recovered) finds this record by the file's key and aborts the upload
//! before starting its own. The record is kept beside the spool rather
//! than found by listing the bucket's uploads because not every store
//! lists them (s3s-fs does not) and a listing may be refused by a policy
//! that allows writes.
//!
//! The record is not a state of the file: the file stays in exactly one of
//! `incoming/`, `sending/`, `done/`, `error/`; this is a note about the
//! store. It is written by a temporary name and a rename, so a reader sees
//! it whole or not at all.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The folder under the spool root.
pub const UPLOADS_DIR: &str = "uploads";

/// One upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub bucket: String,
    /// The object key the upload creates.
    pub object: String,
    /// The store's id for the upload.
    pub upload_id: String,
}

/// `uploads/KEY.RECEIVER.json` under `root`. Keys are hex digits, so the
/// first `.` ends the key; receiver names may not start with `.`.
pub fn path(root: &Path, key: &str, receiver: &str) -> PathBuf {
    root.join(UPLOADS_DIR)
        .join(format!("{key}.{receiver}.json"))
}

/// Records `upload` for file `key` and `receiver`, creating `uploads/`
/// if needed.
pub fn write(root: &Path, key: &str, receiver: &str, upload: &Upload) -> io::Result<()> {
    let to = path(root, key, receiver);
    let dir = root.join(UPLOADS_DIR);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{key}.{receiver}.json.tmp"));
    fs::write(&tmp, serde_json::to_vec(upload)?)?;
    fs::rename(&tmp, &to)
}

/// The upload recorded for `key` and `receiver`, if any. A record that
/// cannot be parsed is an error of kind `InvalidData`, not "none", so the
/// caller can say that an upload may be forgotten.
pub fn read(root: &Path, key: &str, receiver: &str) -> io::Result<Option<Upload>> {
    let at = path(root, key, receiver);
    match fs::read(&at) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", at.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the record: its upload was completed or aborted.
pub fn remove(root: &Path, key: &str, receiver: &str) -> io::Result<()> {
    match fs::remove_file(path(root, key, receiver)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_read_back_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let up = Upload {
            bucket: "b".into(),
            object: "k-a.json".into(),
            upload_id: "u1".into(),
        };
        assert_eq!(read(root.path(), "00ff", "lake").unwrap(), None);
        write(root.path(), "00ff", "lake", &up).unwrap();
        assert_eq!(read(root.path(), "00ff", "lake").unwrap(), Some(up));
        assert_eq!(read(root.path(), "00ff", "other").unwrap(), None);
        remove(root.path(), "00ff", "lake").unwrap();
        remove(root.path(), "00ff", "lake").unwrap();
        assert_eq!(read(root.path(), "00ff", "lake").unwrap(), None);
    }

    #[test]
    fn a_garbled_record_is_an_error_not_forgotten() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join(UPLOADS_DIR)).unwrap();
        fs::write(path(root.path(), "00ff", "lake"), b"{").unwrap();
        assert!(read(root.path(), "00ff", "lake").is_err());
    }
}
