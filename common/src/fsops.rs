//! The few filesystem operations the spool protocol is built from.
//!
//! Every state change is a rename that must never overwrite: an overwrite
//! would silently lose the file that was there. Linux offers that as
//! `renameat2(RENAME_NOREPLACE)`; filesystems that lack it (some network and
//! FUSE filesystems answer `EINVAL`) get `link` + `unlink`, which also refuses
//! to overwrite but leaves the file in both places for an instant. A crash in
//! that instant means a duplicate delivery, never a lost file. The rules
//! of the fallback are docs/spool.md's rules 5 and 6.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, RenameFlags, renameat2};

/// Set once we learn that the spool's filesystem does not support
/// `RENAME_NOREPLACE`, so later renames go straight to the fallback.
static NOREPLACE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// The environment variable that forces the `link` + `unlink` fallback
/// (`SPOOLPOST_RENAME=link`), so it can be tested where the kernel and
/// filesystem support `RENAME_NOREPLACE`.
pub const RENAME_ENV: &str = "SPOOLPOST_RENAME";

/// Whether the fallback is forced by [`RENAME_ENV`], read once.
fn link_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var_os(RENAME_ENV) {
        None => false,
        Some(v) if v == "link" => true,
        Some(v) if v.is_empty() || v == "noreplace" => false,
        Some(v) => {
            tracing::warn!(value = ?v, "{RENAME_ENV} is neither \"link\" nor \"noreplace\"; using noreplace");
            false
        }
    })
}

/// Renames `from` to `to`, failing with `ErrorKind::AlreadyExists` if `to`
/// exists, and with `ErrorKind::NotFound` if `from` is gone.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    if !link_forced() && !NOREPLACE_UNSUPPORTED.load(Ordering::Relaxed) {
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
                NOREPLACE_UNSUPPORTED.store(true, Ordering::Relaxed);
                tracing::warn!(
                    path = %to.display(),
                    "filesystem lacks RENAME_NOREPLACE; falling back to link+unlink"
                );
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    link_unlink(from, to)
}

/// The fallback: `link(from, to)`, which refuses to overwrite, then
/// `unlink(from)`. If `from` is gone by then, someone else moved the file
/// between our two steps and kept their own link: we withdraw ours and
/// report `NotFound`, as if we had come second to a rename; on any other
/// failure of `unlink` the link is withdrawn too, leaving the file where it
/// was. Keeping both
/// links would send one file twice under two keys (issue 16: 307 of 5,000).
/// `link` cannot make a folder; a folder is moved with a plain `rename`,
/// which is safe only because the folders the spool moves (claim folders)
/// have names no one else uses, and refuses a non-empty target anyway.
fn link_unlink(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::EPERM as i32) && from.is_dir() => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            return std::fs::rename(from, to);
        }
        Err(e) => return Err(e),
    }
    unlink_or_withdraw(from, to)
}

/// The fallback's second step, once `to` is a link to `from`.
fn unlink_or_withdraw(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::remove_file(from).inspect_err(|_| {
        // NotFound: another mover won. Anything else: the file stays at
        // `from` alone. Either way our link must not become a second copy;
        // if it is already gone, whoever moved it on holds the file.
        let _ = std::fs::remove_file(to);
    })
}

/// Opens a file for reading without following a symlink (`ELOOP` instead)
/// and without blocking on a FIFO. Callers still check it is a regular file.
/// (std already opens with `O_CLOEXEC`.)
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
}

/// Makes the entries of a directory (renames into or out of it) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether an error means the disk or quota is full: the caller should pause
/// and retry later rather than give up on the file.
pub fn is_disk_full(err: &io::Error) -> bool {
    // By kind as well: an error re-made with context (spool::annotate)
    // keeps its kind but not its errno.
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(
        err.raw_os_error(),
        Some(libc_errno) if libc_errno == Errno::ENOSPC as i32 || libc_errno == Errno::EDQUOT as i32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_and_keeps_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&a).unwrap(), b"A");
        assert_eq!(std::fs::read(&b).unwrap(), b"B");
    }

    #[test]
    fn moves_when_target_is_free_and_reports_a_vanished_source() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "A").unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"A");
        let err = rename_noreplace(&a, &dir.path().join("c")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_fallback_moves_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        assert_eq!(
            link_unlink(&a, &b).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let c = dir.path().join("c");
        link_unlink(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(std::fs::read(&c).unwrap(), b"A");
    }

    #[test]
    fn the_fallback_withdraws_its_link_when_the_source_was_taken_meanwhile() {
        // Two movers linked the same source; the other one unlinked it
        // first. Our unlink finds it gone: our link must go, theirs stays.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let theirs = dir.path().join("theirs");
        let ours = dir.path().join("ours");
        std::fs::write(&src, "A").unwrap();
        std::fs::hard_link(&src, &ours).unwrap();
        link_unlink(&src, &theirs).unwrap();
        let err = unlink_or_withdraw(&src, &ours).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!ours.exists());
        assert_eq!(std::fs::read(&theirs).unwrap(), b"A");
    }

    #[test]
    fn the_fallback_moves_a_folder_by_rename_but_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join(".lock"), "").unwrap();
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        assert_eq!(
            link_unlink(&a, &taken).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let b = dir.path().join("b");
        link_unlink(&a, &b).unwrap();
        assert!(b.join(".lock").exists() && !a.exists());
    }
}
