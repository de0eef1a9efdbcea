//! The few filesystem operations the spool protocol is built from.
//!
//! Every state change is a rename that must never overwrite: an overwrite
//! would silently lose the file that was there. Linux offers that as
//! `renameat2(RENAME_NOREPLACE)`; filesystems that lack it (some network and
//! FUSE filesystems answer `EINVAL`) get `link` + `unlink`, which also refuses
//! to overwrite but leaves the file in both places for an instant. A crash in
//! that instant means a duplicate delivery, never a lost file.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, RenameFlags, renameat2};

/// Set once we learn that the spool's filesystem does not support
/// `RENAME_NOREPLACE`, so later renames go straight to the fallback.
static NOREPLACE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Renames `from` to `to`, failing with `ErrorKind::AlreadyExists` if `to`
/// exists, and with `ErrorKind::NotFound` if `from` is gone.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    if !NOREPLACE_UNSUPPORTED.load(Ordering::Relaxed) {
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
    std::fs::hard_link(from, to)?;
    match std::fs::remove_file(from) {
        Ok(()) => Ok(()),
        // Someone else moved the source meanwhile: the file now exists under
        // `to` and wherever they put it. Keep ours; a duplicate beats a loss.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
}
