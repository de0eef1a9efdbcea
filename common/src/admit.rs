//! How a file enters the spool: (outside) → `incoming/`.
//!
//! On the spool's filesystem, entering is one rename that never overwrites.
//! From another filesystem the file is copied into this process's work
//! folder `tmp/collect-ID/`, fsynced, checked to be unchanged, renamed into
//! `incoming/` (and the folder fsynced), and only then is the source
//! removed. A crash at any point leaves the source, or a complete spool
//! copy, or both (a duplicate); never a partial file in `incoming/` and
//! never neither. Work folders of dead processes are removed at start-up.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::Flock;

use crate::fsops::{fsync_dir, open_nofollow};
use crate::name::SpoolName;
use crate::spool::{Spool, State, annotate, create_locked_folder, remove_dead_folders};

const WORK_PREFIX: &str = "collect-";

/// Puts files into a spool's `incoming/`.
pub struct Admitter {
    spool: Spool,
    work: PathBuf,
    next: AtomicU64,
    _lock: Flock<File>,
}

/// How a file entered.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Renamed in (same filesystem).
    Moved { path: PathBuf, bytes: u64 },
    /// Copied from another filesystem; the source is removed.
    Copied { path: PathBuf, bytes: u64 },
}

#[derive(Debug)]
pub enum AdmitError {
    /// The source is gone (someone else took it).
    Vanished,
    /// The source changed while it was copied; it stays where it is.
    Changed,
    /// Not a regular file (symlink, folder, FIFO...); it stays where it is.
    NotRegular,
    Io(io::Error),
}

impl std::fmt::Display for AdmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdmitError::Vanished => f.write_str("the file vanished"),
            AdmitError::Changed => f.write_str(
                "the file changed while it was copied; it will be taken when it settles",
            ),
            AdmitError::NotRegular => f.write_str("not a regular file (symlinks are not followed)"),
            AdmitError::Io(e) => e.fmt(f),
        }
    }
}

impl Admitter {
    /// Removes dead processes' work folders and creates this one's.
    pub fn new(spool: &Spool) -> io::Result<Admitter> {
        let removed = remove_dead_folders(spool, WORK_PREFIX)?;
        if removed > 0 {
            tracing::info!(folders = removed, "removed partial copies left by a crash");
        }
        let (_, work, lock) = create_locked_folder(spool, WORK_PREFIX)?;
        Ok(Admitter {
            spool: spool.clone(),
            work,
            next: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Moves `source` into `incoming/` as `original` (given a `uniq` field
    /// if the name is taken, so nothing is overwritten).
    pub fn admit(&self, source: &Path, original: &OsStr) -> Result<Admitted, AdmitError> {
        let meta = fs::symlink_metadata(source).map_err(io_error)?;
        self.admit_looked_at(source, original, &meta)
    }

    /// [`Admitter::admit`] for a caller that has just looked at the file
    /// (`symlink_metadata`, not following links): one `statx` per file
    /// fewer, which shows when collecting tens of thousands a second.
    pub fn admit_looked_at(
        &self,
        source: &Path,
        original: &OsStr,
        meta: &fs::Metadata,
    ) -> Result<Admitted, AdmitError> {
        let incoming = self.spool.dir(State::Incoming);
        if !meta.is_file() {
            return Err(AdmitError::NotRegular);
        }
        let mut name = SpoolName::fresh(original);
        match self.spool.move_into(source, &incoming, &mut name) {
            Ok(path) => {
                return Ok(Admitted::Moved {
                    path,
                    bytes: meta.len(),
                });
            }
            Err(e) if e.raw_os_error() == Some(Errno::EXDEV as i32) => {}
            Err(e) => return Err(io_error(e)),
        }
        self.copy_in(source, name)
    }

    fn copy_in(&self, source: &Path, mut name: SpoolName) -> Result<Admitted, AdmitError> {
        let mut src = open_nofollow(source).map_err(io_error)?;
        let before = src.metadata().map_err(AdmitError::Io)?;
        if !before.is_file() {
            return Err(AdmitError::NotRegular);
        }
        let staged = self
            .work
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        let result = (|| {
            let mut dst = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged)
                .map_err(|e| annotate(e, "cannot create", &staged))?;
            let bytes =
                io::copy(&mut src, &mut dst).map_err(|e| annotate(e, "cannot copy", source))?;
            dst.sync_all()
                .map_err(|e| annotate(e, "cannot fsync", &staged))?;
            Ok::<u64, io::Error>(bytes)
        })();
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = fs::remove_file(&staged);
                return Err(AdmitError::Io(e));
            }
        };
        let after = fs::symlink_metadata(source);
        let unchanged = after.as_ref().is_ok_and(|a| {
            a.len() == before.len()
                && a.len() == bytes
                && a.mtime() == before.mtime()
                && a.mtime_nsec() == before.mtime_nsec()
                && a.ino() == before.ino()
        });
        if !unchanged {
            let _ = fs::remove_file(&staged);
            return Err(match after {
                Err(e) if e.kind() == io::ErrorKind::NotFound => AdmitError::Vanished,
                _ => AdmitError::Changed,
            });
        }
        let incoming = self.spool.dir(State::Incoming);
        let path = match self.spool.move_into(&staged, &incoming, &mut name) {
            Ok(path) => path,
            Err(e) => {
                let _ = fs::remove_file(&staged);
                return Err(AdmitError::Io(e));
            }
        };
        fsync_dir(&incoming).map_err(AdmitError::Io)?;
        match fs::remove_file(source) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(source = %source.display(), error = %e, "copied into the spool but cannot remove the source; it may be collected again");
            }
        }
        Ok(Admitted::Copied { path, bytes })
    }
}

impl Drop for Admitter {
    /// A clean exit leaves no work folder behind (copies that failed were
    /// already removed), so the next start has nothing to sweep.
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.work) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir(&self.work);
    }
}

fn io_error(e: io::Error) -> AdmitError {
    if e.kind() == io::ErrorKind::NotFound {
        AdmitError::Vanished
    } else if e.raw_os_error() == Some(Errno::ELOOP as i32) {
        AdmitError::NotRegular
    } else {
        AdmitError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_filesystem_renames_and_clashes_get_a_unique_name() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("spool")).unwrap();
        let admitter = Admitter::new(&spool).unwrap();
        let src = root.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a.json"), "one").unwrap();
        let first = admitter
            .admit(&src.join("a.json"), OsStr::new("a.json"))
            .unwrap();
        fs::write(src.join("a.json"), "two").unwrap();
        let second = admitter
            .admit(&src.join("a.json"), OsStr::new("a.json"))
            .unwrap();
        let (Admitted::Moved { path: p1, bytes: 3 }, Admitted::Moved { path: p2, bytes: 3 }) =
            (first, second)
        else {
            panic!("expected two renames");
        };
        assert_ne!(p1, p2);
        assert_eq!(fs::read(&p1).unwrap(), b"one");
        assert_eq!(fs::read(&p2).unwrap(), b"two");
        assert_eq!(SpoolName::parse(p2.file_name().unwrap()).original, "a.json");
    }

    #[test]
    fn copies_leave_no_trace_in_the_work_folder_and_refuse_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("spool")).unwrap();
        let admitter = Admitter::new(&spool).unwrap();
        let src = root.path().join("x");
        fs::write(&src, "data").unwrap();
        let staged = admitter.copy_in(&src, SpoolName::fresh("x")).unwrap();
        assert!(matches!(staged, Admitted::Copied { bytes: 4, .. }));
        assert!(!src.exists());
        assert_eq!(
            fs::read_dir(&admitter.work).unwrap().count(),
            1,
            "only .lock"
        );

        std::os::unix::fs::symlink("/etc/hostname", root.path().join("link")).unwrap();
        assert!(matches!(
            admitter.admit(&root.path().join("link"), OsStr::new("link")),
            Err(AdmitError::NotRegular)
        ));
        assert!(matches!(
            admitter.admit(&root.path().join("nope"), OsStr::new("nope")),
            Err(AdmitError::Vanished)
        ));
    }

    #[test]
    fn a_dead_collector_s_partial_copies_are_removed_and_a_live_one_s_kept() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        // What a collector killed mid-copy leaves: its folder, an unlocked
        // lock file (the kernel dropped the lock) and a partial copy.
        let dead = spool.tmp().join("collect-1-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(".lock"), "").unwrap();
        fs::write(dead.join("0"), "partial").unwrap();
        let live = Admitter::new(&spool).unwrap();
        assert!(!dead.exists());
        let _second = Admitter::new(&spool).unwrap();
        assert!(
            live.work.exists(),
            "a live collector's folder is locked, so kept"
        );
    }

    #[test]
    fn a_clean_exit_removes_the_work_folder() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let admitter = Admitter::new(&spool).unwrap();
        let work = admitter.work.clone();
        drop(admitter);
        assert!(!work.exists());
    }
}
