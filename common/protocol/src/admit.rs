//! How a file enters the spool: (outside) → `incoming/`.
//!
//! Every admitted file gets its key here, derived from the source file's
//! identity ([`Key::of_source`]), and its name `ORIGINAL~sp.kKEY`: the
//! producer's whole name is the original (a `~sp.` suffix in it is no
//! longer a suffix), and the same source admitted twice gets the same name.
//! So when the no-replace rename into `incoming/` finds that name taken and
//! the file there has the same content, it is this file's earlier copy (a
//! crash came between admission and removing the source): the new copy is
//! dropped and the source removed. A taken name holding other data (a
//! forged name) makes this file take a random key instead.
//!
//! On the spool's filesystem, entering is one rename. From another
//! filesystem the file is first *claimed*: renamed into this instance's
//! claim folder `.spoolpost-claim-ID/` in its own source folder (locked with
//! `flock` on `.lock` inside, as senders do), so two collectors never copy
//! one file. It is then copied into the work folder `tmp/collect-ID/` (mode,
//! owner when permitted, and times kept), fsynced, checked to be unchanged,
//! renamed into `incoming/` (folder fsynced), and only then is the claimed
//! source removed. A crash at any point leaves the source (in its folder or
//! a dead claim folder), or the spool copy, or both under one key; never a
//! partial file in `incoming/` and never neither. Dead work folders are
//! removed at start-up; dead claim folders are emptied into the spool by the
//! next scan of their source folder ([`Admitter::sweep`]).
//!
//! Names starting with `.` are never admitted: senders and the reporter
//! ignore them, so they would sit in the spool unseen.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;

use crate::fsops::{
    crash_point, fsync_dir, open_nofollow, rename_into_own_folder, rename_noreplace,
};
use crate::fullname;
use crate::lock::{self, Held};
use crate::name::{Key, SpoolName};
use crate::spool::{Spool, State, annotate, create_locked_folder, remove_dead_folders};

const WORK_PREFIX: &str = "collect-";
/// Claim folders in source folders start with this; a scan never takes them.
pub const CLAIM_PREFIX: &str = ".spoolpost-claim-";
const LOCK_FILE: &str = ".lock";

/// Puts files into a spool's `incoming/`.
pub struct Admitter {
    spool: Spool,
    work: PathBuf,
    next: AtomicU64,
    _lock: Held,
    /// This instance's claim folder in each source folder, made on first need.
    claims: HashMap<PathBuf, Option<(PathBuf, Held)>>,
}

/// How a file entered.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Renamed in (same filesystem).
    Moved { path: PathBuf, bytes: u64 },
    /// Copied from another filesystem; the source is removed.
    Copied { path: PathBuf, bytes: u64 },
    /// Already waiting in `incoming/` under its key (an earlier copy whose
    /// source a crash kept); the source is removed.
    AlreadyThere { path: PathBuf },
}

#[derive(Debug)]
pub enum AdmitError {
    /// The source is gone (someone else took it).
    Vanished,
    /// The source changed while it was copied; it stays where it is.
    Changed,
    /// Not a regular file (symlink, folder, FIFO...); it stays where it is.
    NotRegular,
    /// A name starting with `.`; it stays where it is.
    DotName,
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
            AdmitError::DotName => f.write_str(
                "names starting with '.' are never admitted (senders ignore them); rename the file",
            ),
            AdmitError::Io(e) => e.fmt(f),
        }
    }
}

fn key_of(meta: &fs::Metadata, original: &OsStr) -> Key {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Key::of_source(meta.dev(), meta.ino(), meta.len(), mtime_ns, original)
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
            claims: HashMap::new(),
        })
    }

    /// Moves `source` into `incoming/` as `original`.
    pub fn admit(&mut self, source: &Path, original: &OsStr) -> Result<Admitted, AdmitError> {
        let meta = fs::symlink_metadata(source).map_err(io_error)?;
        self.admit_looked_at(source, original, &meta)
    }

    /// [`Admitter::admit`] for a caller that has just looked at the file
    /// (`symlink_metadata`, not following links): one `statx` per file
    /// fewer, which shows when collecting tens of thousands a second.
    pub fn admit_looked_at(
        &mut self,
        source: &Path,
        original: &OsStr,
        meta: &fs::Metadata,
    ) -> Result<Admitted, AdmitError> {
        if !meta.is_file() {
            return Err(AdmitError::NotRegular);
        }
        if original.as_bytes().starts_with(b".") {
            return Err(AdmitError::DotName);
        }
        let mut name = SpoolName::fresh(original);
        name.key = Some(key_of(meta, original));
        fullname::store(self.spool.root(), &name).map_err(AdmitError::Io)?;
        let incoming = self.spool.dir(State::Incoming);
        let to = incoming.join(name.to_os_string());
        match rename_noreplace(source, &to) {
            Ok(()) => {
                return Ok(Admitted::Moved {
                    path: to,
                    bytes: meta.len(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return self.clash(source, name, &to).map(|(path, kept)| {
                    if kept {
                        Admitted::Moved {
                            path,
                            bytes: meta.len(),
                        }
                    } else {
                        Admitted::AlreadyThere { path }
                    }
                });
            }
            Err(e) if e.raw_os_error() == Some(Errno::EXDEV as i32) => {}
            Err(e) => return Err(io_error(e)),
        }
        let Some(dir) = source.parent() else {
            return self.copy_in(source, source, original);
        };
        let claimed = match self.claim_folder(dir) {
            Some(folder) => {
                let claimed = folder.join(original);
                match rename_into_own_folder(source, &claimed) {
                    Ok(()) => claimed,
                    Err(e) => return Err(io_error(e)),
                }
            }
            // A source folder we may not write into cannot hold a claim
            // folder; the source could not be removed either, so copying
            // in place changes nothing for the worse.
            None => source.to_path_buf(),
        };
        crash_point("after-claim");
        self.copy_in(&claimed, source, original)
    }

    /// Empties a claim folder found in a source folder into the spool: a
    /// dead instance's (its lock is free), or this instance's own leftovers
    /// (files whose copy failed and could not be put back). Returns what
    /// happened to each file, for the caller to report.
    pub fn sweep(
        &mut self,
        folder: &Path,
    ) -> Vec<(PathBuf, OsString, Result<Admitted, AdmitError>)> {
        let mut results = Vec::new();
        let Some(source_dir) = folder.parent().map(Path::to_path_buf) else {
            return results;
        };
        let ours = self
            .claims
            .get(&source_dir)
            .and_then(|c| c.as_ref())
            .is_some_and(|(p, _)| p == folder);
        let _lock = if ours {
            None
        } else {
            match lock::try_take(&folder.join(LOCK_FILE)) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) => return results, // alive (or being swept by another)
                // No lock file: a start-up or clean exit cut short; any
                // file in it is orphaned.
                Err(_) => None,
            }
        };
        let Ok(entries) = fs::read_dir(folder) else {
            return results;
        };
        for entry in entries.flatten() {
            let original = entry.file_name();
            if original == LOCK_FILE {
                continue;
            }
            let result = self.copy_in(&entry.path(), &source_dir.join(&original), &original);
            results.push((entry.path(), original, result));
        }
        if !ours {
            // Only an emptied folder goes; a file that could not be admitted
            // keeps it for a later sweep.
            if fs::read_dir(folder).is_ok_and(|d| d.flatten().all(|e| e.file_name() == LOCK_FILE)) {
                let _ = fs::remove_file(folder.join(LOCK_FILE));
                let _ = fs::remove_dir(folder);
            }
            if !results.is_empty() {
                tracing::warn!(claim = %folder.display(), files = results.len(), "took over a dead collector's claimed files");
            }
        }
        results
    }

    /// This instance's claim folder in `dir`, created and locked on first
    /// need; `None` if it cannot be made (read-only source folder).
    fn claim_folder(&mut self, dir: &Path) -> Option<PathBuf> {
        if let Some(known) = self.claims.get(dir) {
            return known.as_ref().map(|(p, _)| p.clone());
        }
        let made = make_claim_folder(dir);
        if let Err(e) = &made {
            tracing::debug!(folder = %dir.display(), error = %e, "cannot make a claim folder; copying in place");
        }
        let made = made.ok();
        let path = made.as_ref().map(|(p, _)| p.clone());
        self.claims.insert(dir.to_path_buf(), made);
        path
    }

    /// Copies `from` (a claimed source, or the source itself) into the
    /// spool as `original`; on failure the file goes back to `source`.
    fn copy_in(
        &mut self,
        from: &Path,
        source: &Path,
        original: &OsStr,
    ) -> Result<Admitted, AdmitError> {
        let result = self.copy_claimed(from, original);
        if from != source
            && matches!(result, Err(AdmitError::Changed | AdmitError::Io(_)))
            && let Err(e) = rename_noreplace(from, source)
        {
            tracing::warn!(file = %from.display(), error = %e, "cannot put a claimed file back; it is retried from its claim folder");
        }
        result
    }

    fn copy_claimed(&mut self, from: &Path, original: &OsStr) -> Result<Admitted, AdmitError> {
        let mut src = open_nofollow(from).map_err(io_error)?;
        let before = src.metadata().map_err(AdmitError::Io)?;
        if !before.is_file() {
            return Err(AdmitError::NotRegular);
        }
        let mut name = SpoolName::fresh(original);
        name.key = Some(key_of(&before, original));
        fullname::store(self.spool.root(), &name).map_err(AdmitError::Io)?;
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
                io::copy(&mut src, &mut dst).map_err(|e| annotate(e, "cannot copy", from))?;
            keep_attributes(&dst, &before)
                .map_err(|e| annotate(e, "cannot set mode of", &staged))?;
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
        crash_point("after-copy");
        let after = fs::symlink_metadata(from);
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
        let to = incoming.join(name.to_os_string());
        let (path, kept) = match rename_noreplace(&staged, &to) {
            Ok(()) => (to, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match self.clash(&staged, name, &to) {
                    Ok(done) => done,
                    Err(e) => {
                        let _ = fs::remove_file(&staged);
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                let _ = fs::remove_file(&staged);
                return Err(AdmitError::Io(e));
            }
        };
        fsync_dir(&incoming).map_err(AdmitError::Io)?;
        crash_point("after-admit");
        match fs::remove_file(from) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(source = %from.display(), error = %e, "copied into the spool but cannot remove the source; it may be collected again (under the same key)");
            }
        }
        Ok(if kept {
            Admitted::Copied { path, bytes }
        } else {
            Admitted::AlreadyThere { path }
        })
    }

    /// `incoming/NAME~sp.kKEY` is taken. If it holds this very data, this
    /// is the file's earlier copy: `from` is removed. Otherwise (a producer
    /// forged the name) this file takes a random key, so it is not mistaken
    /// for the other. Returns where the data is and whether `from` moved.
    fn clash(
        &self,
        from: &Path,
        mut name: SpoolName,
        taken: &Path,
    ) -> Result<(PathBuf, bool), AdmitError> {
        if same_data(from, taken).map_err(AdmitError::Io)? {
            fs::remove_file(from).map_err(io_error)?;
            return Ok((taken.to_path_buf(), false));
        }
        name.key = Some(Key::random());
        fullname::store(self.spool.root(), &name).map_err(AdmitError::Io)?;
        let incoming = self.spool.dir(State::Incoming);
        let path = self
            .spool
            .move_into(from, &incoming, &mut name)
            .map_err(io_error)?;
        Ok((path, true))
    }
}

/// Makes `.spoolpost-claim-ID/` in `dir` with its `.lock` locked. A sweep
/// by another instance may remove the folder in the instant before `.lock`
/// exists (it looks orphaned), so that step is retried.
fn make_claim_folder(dir: &Path) -> io::Result<(PathBuf, Held)> {
    let mut last = io::Error::other("no attempt");
    for _ in 0..4 {
        let path = dir.join(format!(
            "{CLAIM_PREFIX}{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir(&path)?;
        match lock::create(&path.join(LOCK_FILE)) {
            Ok(lock) => return Ok((path, lock)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Gives a copy the source's mode, owner (when permitted: root) and times,
/// as a rename on one filesystem would keep them.
fn keep_attributes(dst: &File, src: &fs::Metadata) -> io::Result<()> {
    match std::os::unix::fs::fchown(dst, Some(src.uid()), Some(src.gid())) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::EPERM as i32) => {}
        Err(e) => return Err(e),
    }
    // After chown, which may clear set-id bits.
    dst.set_permissions(fs::Permissions::from_mode(src.mode() & 0o7777))?;
    let mut times = fs::FileTimes::new();
    if let Ok(m) = src.modified() {
        times = times.set_modified(m);
    }
    if let Ok(a) = src.accessed() {
        times = times.set_accessed(a);
    }
    dst.set_times(times)
}

/// Whether two paths hold the same data: one inode, or equal bytes. A file
/// that vanishes meanwhile (a sender claimed it) is not the same.
fn same_data(a: &Path, b: &Path) -> io::Result<bool> {
    let (Ok(mut fa), Ok(mut fb)) = (open_nofollow(a), open_nofollow(b)) else {
        return Ok(false);
    };
    let (ma, mb) = (fa.metadata()?, fb.metadata()?);
    if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
        return Ok(true);
    }
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        match fb.read_exact(&mut bb[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

impl Drop for Admitter {
    /// A clean exit leaves no work folder behind (copies that failed were
    /// already removed), so the next start has nothing to sweep; nor empty
    /// claim folders in the sources.
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.work) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir(&self.work);
        for (folder, _lock) in self.claims.values().flatten() {
            let empty =
                fs::read_dir(folder).is_ok_and(|d| d.flatten().all(|e| e.file_name() == LOCK_FILE));
            if empty {
                let _ = fs::remove_file(folder.join(LOCK_FILE));
                let _ = fs::remove_dir(folder);
            }
        }
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
    fn same_filesystem_renames_keep_the_producer_s_name_whole_and_key_by_identity() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("spool")).unwrap();
        let mut admitter = Admitter::new(&spool).unwrap();
        let src = root.path().join("src");
        fs::create_dir(&src).unwrap();
        let forged = "a.json~sp.k0123456789abcdef01234567.t1";
        fs::write(src.join(forged), "one").unwrap();
        let first = admitter
            .admit(&src.join(forged), OsStr::new(forged))
            .unwrap();
        fs::write(src.join(forged), "two").unwrap();
        let second = admitter
            .admit(&src.join(forged), OsStr::new(forged))
            .unwrap();
        let (Admitted::Moved { path: p1, bytes: 3 }, Admitted::Moved { path: p2, bytes: 3 }) =
            (first, second)
        else {
            panic!("expected two renames");
        };
        assert_ne!(p1, p2);
        assert_eq!(fs::read(&p1).unwrap(), b"one");
        assert_eq!(fs::read(&p2).unwrap(), b"two");
        for p in [&p1, &p2] {
            let n = SpoolName::parse(p.file_name().unwrap());
            assert_eq!(n.original, forged);
            assert_eq!((n.uniq, n.first_attempt), (None, None));
        }
    }

    #[test]
    fn a_second_copy_of_a_waiting_file_is_dropped_and_a_forged_name_gets_its_own_key() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("spool")).unwrap();
        let mut admitter = Admitter::new(&spool).unwrap();
        let src = root.path().join("x");
        fs::write(&src, "data").unwrap();
        let meta = fs::metadata(&src).unwrap();
        let first = admitter.copy_in(&src, &src, OsStr::new("x")).unwrap();
        let Admitted::Copied { path, bytes: 4 } = first else {
            panic!("{first:?}")
        };
        // The crash case: the source is still there after its copy entered.
        fs::write(&src, "data").unwrap();
        let again = fs::File::options().write(true).open(&src).unwrap();
        again.set_modified(meta.modified().unwrap()).unwrap();
        drop(again);
        // Same inode number is not guaranteed after a rewrite, so recreate
        // the identity by hard-linking the spool copy's twin instead.
        fs::remove_file(&src).unwrap();
        fs::hard_link(&path, &src).unwrap();
        let meta = fs::metadata(&src).unwrap();
        let mut name = SpoolName::fresh("x");
        name.key = Some(key_of(&meta, OsStr::new("x")));
        let twin = spool.dir(State::Incoming).join(name.to_os_string());
        fs::rename(&path, &twin).unwrap();
        fs::hard_link(&twin, &path).unwrap();
        let dup = admitter.copy_in(&src, &src, OsStr::new("x")).unwrap();
        assert!(matches!(dup, Admitted::AlreadyThere { .. }), "{dup:?}");
        assert!(!src.exists(), "the source of a duplicate is removed");

        // Other data under the same name: kept, under a key of its own.
        fs::write(&src, "other").unwrap();
        let meta = fs::metadata(&src).unwrap();
        let mut name = SpoolName::fresh("x");
        name.key = Some(key_of(&meta, OsStr::new("x")));
        fs::write(
            spool.dir(State::Incoming).join(name.to_os_string()),
            "forged",
        )
        .unwrap();
        let kept = admitter.copy_in(&src, &src, OsStr::new("x")).unwrap();
        let Admitted::Copied { path, .. } = kept else {
            panic!("{kept:?}")
        };
        assert_eq!(fs::read(&path).unwrap(), b"other");
        assert_ne!(SpoolName::parse(path.file_name().unwrap()).key, name.key);
    }

    #[test]
    fn copies_leave_no_trace_in_the_work_folder_and_refuse_symlinks_and_dot_names() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("spool")).unwrap();
        let mut admitter = Admitter::new(&spool).unwrap();
        let src = root.path().join("x");
        fs::write(&src, "data").unwrap();
        let staged = admitter.copy_in(&src, &src, OsStr::new("x")).unwrap();
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
        fs::write(root.path().join(".dot"), "d").unwrap();
        assert!(matches!(
            admitter.admit(&root.path().join(".dot"), OsStr::new(".dot")),
            Err(AdmitError::DotName)
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
