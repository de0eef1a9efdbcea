//! The few filesystem operations the spool protocol is built from, and the
//! differences between Unixes in them.
//!
//! Every state change is a rename that must never overwrite: an overwrite
//! would silently lose the file that was there. Linux offers that as
//! `renameat2(RENAME_NOREPLACE)`, macOS as `renameatx_np(RENAME_EXCL)`;
//! other systems (AIX, the BSDs) and filesystems that lack it (some network
//! and FUSE filesystems answer `EINVAL`) get `link` + `unlink`, which also
//! refuses to overwrite but leaves the file in both places for an instant.
//! A crash in that instant means a duplicate delivery under the file's one
//! key, never a lost file. Moves into a folder only the mover writes to (a
//! claim) take a checked plain `rename` instead, which never leaves two
//! names. The rules of the fallback are docs/spool.md's rules 5 and 6.
//!
//! Also here: a directory fsync that some systems cannot do (AIX answers
//! `EBADF`), and telling a symlink from other refusals of `O_NOFOLLOW`
//! (Linux answers `ELOOP`, FreeBSD `EMLINK`, NetBSD `EFTYPE`).
//! docs/platforms.md lists the environment switches that force each
//! portable path on Linux, so it is tested there.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;

/// Set once we learn that the spool's filesystem does not support a
/// no-replace rename, so later renames go straight to the fallback.
static NOREPLACE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// The environment variable that forces the `link` + `unlink` fallback
/// (`SPOOLPOST_RENAME=link`), so it can be tested where the kernel and
/// filesystem support `RENAME_NOREPLACE`.
pub const RENAME_ENV: &str = "SPOOLPOST_RENAME";

/// The environment variable that makes directory fsync count as unsupported
/// (`SPOOLPOST_DIR_FSYNC=unsupported`), as it is on AIX.
pub const DIR_FSYNC_ENV: &str = "SPOOLPOST_DIR_FSYNC";

/// Reads a switch once: `Some(true)` for `forced`, `Some(false)` for
/// `native` or empty, a warning and `Some(false)` for anything else.
pub fn switch(var: &str, forced: &str, native: &str) -> bool {
    match std::env::var_os(var) {
        None => false,
        Some(v) if v == forced => true,
        Some(v) if v.is_empty() || v == native => false,
        Some(v) => {
            tracing::warn!(value = ?v, "{var} is neither \"{forced}\" nor \"{native}\"; using {native}");
            false
        }
    }
}

/// Whether the fallback is forced by [`RENAME_ENV`], read once.
fn link_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| switch(RENAME_ENV, "link", "noreplace"))
}

/// Renames `from` to `to`, failing with `ErrorKind::AlreadyExists` if `to`
/// exists, and with `ErrorKind::NotFound` if `from` is gone.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(native) = try_native_noreplace(from, to) {
        return native;
    }
    link_unlink(from, to)
}

/// As [`rename_noreplace`], for a move into a folder that only this process
/// creates names in (its own claim folder, held under its lock), or to a
/// name only this process uses (a claim folder's own). Where no
/// no-replace rename is available, this is a plain `rename` after checking
/// that `to` is free, never `link` + `unlink`: no one else can take the
/// name between the check and the rename, and a crash then leaves the file
/// under one name. With `link` + `unlink`, a crash between the two leaves
/// it under both, and a first claim's old name has no key yet: the next
/// sender would give it a second key, and the receiver could not tell the
/// two deliveries apart (docs/spool.md, rule 6).
pub fn rename_into_own_folder(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(native) = try_native_noreplace(from, to) {
        return native;
    }
    checked_rename(from, to)
}

/// As [`rename_into_own_folder`], for a sender's claim. Where files move
/// by `link` + `unlink`, every move out of the claim (to `done/`, `error/`,
/// back to `incoming/`) is a link, so a file this process may not link
/// (Linux's `protected_hardlinks` refuses one it neither owns nor may read
/// and write) is refused here, where it lies, rather than taken into a
/// folder it could then not leave. The check links the file to a dot-name
/// beside `to` and removes that link at once: a crash in between leaves
/// the file in place and a dot-name, which recovery removes (docs/spool.md
/// rule 7).
pub fn claim_into_own_folder(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(native) = try_native_noreplace(from, to) {
        return native;
    }
    let check = to.with_file_name(format!(".link-check-{:08x}", fastrand::u32(..)));
    // A folder cannot be linked and never leaves by a link either.
    if link_unless_folder(from, &check)? {
        let _ = std::fs::remove_file(&check);
    }
    checked_rename(from, to)
}

/// The system's no-replace rename, or `None` where there is none (or it
/// is forced off, or the filesystem turned out to lack it).
fn try_native_noreplace(from: &Path, to: &Path) -> Option<io::Result<()>> {
    if !HAS_NATIVE || link_forced() || NOREPLACE_UNSUPPORTED.load(Ordering::Relaxed) {
        return None;
    }
    match native_noreplace(from, to) {
        Err(e) if is_unsupported(&e) => {
            NOREPLACE_UNSUPPORTED.store(true, Ordering::Relaxed);
            tracing::warn!(
                path = %to.display(),
                "filesystem lacks a no-replace rename; falling back to link+unlink (a checked rename into a folder of the mover's own)"
            );
            None
        }
        result => Some(result),
    }
}

/// A plain `rename` that refuses a `to` that exists. Safe only where no one
/// else can create `to` between the check and the rename.
fn checked_rename(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(to) {
        Ok(_) => Err(io::ErrorKind::AlreadyExists.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(from, to),
        Err(e) => Err(e),
    }
}

/// Whether files move by `link` + `unlink` here, as far as this process
/// knows: on a system without a no-replace rename, when forced, or once a
/// rename found the filesystem lacking. A link into a folder is not a
/// rename to inotify (`IN_CREATE`, not `IN_MOVED_TO`): watchers ask this.
pub fn moves_by_link() -> bool {
    !HAS_NATIVE || link_forced() || NOREPLACE_UNSUPPORTED.load(Ordering::Relaxed)
}

/// Whether this system has a no-replace rename of its own.
const HAS_NATIVE: bool = cfg!(any(target_os = "linux", target_os = "macos"));

fn is_unsupported(e: &io::Error) -> bool {
    [Errno::EINVAL, Errno::ENOSYS, Errno::ENOTSUP]
        .iter()
        .any(|errno| e.raw_os_error() == Some(*errno as i32))
}

#[cfg(target_os = "linux")]
fn native_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    Errno::result(renameat2_noreplace(&from, &to))
        .map(drop)
        .map_err(io::Error::from)
}

/// glibc (2.28+) wraps `renameat2`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn renameat2_noreplace(from: &std::ffi::CStr, to: &std::ffi::CStr) -> nix::libc::c_int {
    // SAFETY: both paths are NUL-terminated and live across the call.
    unsafe {
        nix::libc::renameat2(
            nix::libc::AT_FDCWD,
            from.as_ptr(),
            nix::libc::AT_FDCWD,
            to.as_ptr(),
            nix::libc::RENAME_NOREPLACE,
        )
    }
}

/// musl's `libc.a` (the static builds) has no `renameat2`: the same call
/// made as a system call, with the same result and errno.
#[cfg(all(target_os = "linux", not(target_env = "gnu")))]
fn renameat2_noreplace(from: &std::ffi::CStr, to: &std::ffi::CStr) -> nix::libc::c_int {
    raw_renameat2_noreplace(from, to)
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE)` as a raw
/// system call. Built for glibc's tests too, so that every build runs it.
#[cfg(all(target_os = "linux", any(test, not(target_env = "gnu"))))]
fn raw_renameat2_noreplace(from: &std::ffi::CStr, to: &std::ffi::CStr) -> nix::libc::c_int {
    use nix::libc::c_long;
    // SAFETY: both paths are NUL-terminated and live across the call; every
    // argument is passed at the width of a register, as the kernel reads it.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_renameat2,
            nix::libc::AT_FDCWD as c_long,
            from.as_ptr(),
            nix::libc::AT_FDCWD as c_long,
            to.as_ptr(),
            nix::libc::RENAME_NOREPLACE as c_long,
        )
    };
    // 0 or -1 (errno set): both fit.
    rc as nix::libc::c_int
}

#[cfg(target_os = "macos")]
fn native_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both paths are NUL-terminated and live across the call.
    let rc = unsafe {
        nix::libc::renameatx_np(
            nix::libc::AT_FDCWD,
            from.as_ptr(),
            nix::libc::AT_FDCWD,
            to.as_ptr(),
            nix::libc::RENAME_EXCL,
        )
    };
    Errno::result(rc).map(drop).map_err(io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn native_noreplace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(Errno::ENOSYS.into())
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

/// The fallback: `link(from, to)`, which refuses to overwrite, then
/// `unlink(from)`. If `from` is gone by then, someone else moved the file
/// between our two steps and kept their own link: we withdraw ours and
/// report `NotFound`, as if we had come second to a rename; on any other
/// failure of `unlink` the link is withdrawn too, leaving the file where it
/// was. Keeping both
/// links would send one file twice under two keys (307 of 5,000 once were).
/// `link` cannot make a folder; a folder is moved with a plain `rename`,
/// which is safe only because the folders the spool moves (claim folders)
/// have names no one else uses, and refuses a non-empty target anyway.
fn link_unlink(from: &Path, to: &Path) -> io::Result<()> {
    if !link_unless_folder(from, to)? {
        return checked_rename(from, to);
    }
    crash_point("between-link-and-unlink");
    unlink_or_withdraw(from, to)
}

/// `link(from, to)`, or `Ok(false)` if `from` is a folder, which cannot be
/// linked: Linux says EPERM, other systems EISDIR or EACCES, so the type
/// is asked rather than the error.
fn link_unless_folder(from: &Path, to: &Path) -> io::Result<bool> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(_) if std::fs::symlink_metadata(from).is_ok_and(|m| m.is_dir()) => Ok(false),
        Err(e) => Err(e),
    }
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

/// Test-only fault injection: `SPOOLPOST_TEST_CRASH_AT=STEP` makes the
/// process SIGKILL itself when it reaches that step (the collector's
/// `after-claim`, `after-copy`, `after-admit`; the `link` + `unlink`
/// fallback's `between-link-and-unlink`), so tests can prove that a crash
/// there loses and duplicates nothing. Unset in production; costs one
/// comparison.
pub(crate) fn crash_point(step: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("SPOOLPOST_TEST_CRASH_AT").ok());
    if at.as_deref() == Some(step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Opens a file for reading without following a symlink and without
/// blocking on a FIFO. Callers still check it is a regular file. A symlink
/// is refused with `ELOOP` on every system: each says it differently
/// (FreeBSD `EMLINK`, NetBSD `EFTYPE`), so the file type decides.
/// (std already opens with `O_CLOEXEC`.)
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| {
            let is_symlink =
                || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            symlink_refusal(e, is_symlink)
        })
}

/// An `O_NOFOLLOW` open's error, as `ELOOP` when the path is a symlink.
/// `is_symlink` (an `lstat`) is asked only for errors a symlink can cause.
fn symlink_refusal(e: io::Error, is_symlink: impl FnOnce() -> bool) -> io::Error {
    let may_be_symlink = e.kind() != io::ErrorKind::NotFound
        && e.raw_os_error() != Some(Errno::ELOOP as i32)
        && e.raw_os_error().is_some();
    if may_be_symlink && is_symlink() {
        Errno::ELOOP.into()
    } else {
        e
    }
}

/// Makes the entries of a directory (renames into or out of it) durable.
/// Where a directory cannot be fsynced (AIX answers `EBADF`, some systems
/// `EINVAL`), there is nothing more to do than the rename did: that is
/// logged once and counts as done, not as a failure of the move.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    if dir_fsync_forced_unsupported() {
        return dir_fsync_unsupported(dir, Errno::EBADF.into());
    }
    match File::open(dir)?.sync_all() {
        Err(e) if is_dir_fsync_unsupported(&e) => dir_fsync_unsupported(dir, e),
        other => other,
    }
}

fn is_dir_fsync_unsupported(e: &io::Error) -> bool {
    [Errno::EBADF, Errno::EINVAL]
        .iter()
        .any(|errno| e.raw_os_error() == Some(*errno as i32))
}

fn dir_fsync_unsupported(dir: &Path, e: io::Error) -> io::Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(folder = %dir.display(), error = %e, "this system cannot fsync a folder; renames are as durable as the filesystem makes them");
    }
    Ok(())
}

fn dir_fsync_forced_unsupported() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| switch(DIR_FSYNC_ENV, "unsupported", "native"))
}

/// A file's ctime: when it was last renamed or changed, which no one can
/// set back (the collector's `settle`, retry due-ness and the reporter's
/// ages read it). `Metadata` offers no `SystemTime` for it.
pub fn ctime(meta: &std::fs::Metadata) -> std::time::SystemTime {
    use std::os::unix::fs::MetadataExt;
    std::time::UNIX_EPOCH
        + std::time::Duration::new(
            meta.ctime().max(0) as u64,
            meta.ctime_nsec().clamp(0, 999_999_999) as u32,
        )
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

    /// The system call musl's builds make: moves, refuses to overwrite with
    /// `EEXIST`, and reports a vanished source as `ENOENT`, as glibc's
    /// wrapper does.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_raw_renameat2_behaves_as_the_wrapper() {
        let dir = tempfile::tempdir().unwrap();
        let c = |name: &str| c_path(&dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join("a"), "A").unwrap();
        std::fs::write(dir.path().join("b"), "B").unwrap();
        let refused = raw_renameat2_noreplace(&c("a"), &c("b"));
        assert_eq!((refused, Errno::last()), (-1, Errno::EEXIST));
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"B");
        assert_eq!(raw_renameat2_noreplace(&c("a"), &c("c")), 0);
        assert_eq!(std::fs::read(dir.path().join("c")).unwrap(), b"A");
        let gone = raw_renameat2_noreplace(&c("a"), &c("d"));
        assert_eq!((gone, Errno::last()), (-1, Errno::ENOENT));
    }

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
    fn both_fallback_movers_move_files_and_refuse_to_overwrite() {
        type Mover = fn(&Path, &Path) -> io::Result<()>;
        let movers: [(&str, Mover); 2] = [
            ("link_unlink", link_unlink),
            ("checked_rename", checked_rename),
        ];
        for (name, mover) in movers {
            let dir = tempfile::tempdir().unwrap();
            let a = dir.path().join("a");
            let b = dir.path().join("b");
            std::fs::write(&a, "A").unwrap();
            std::fs::write(&b, "B").unwrap();
            let err = mover(&a, &b).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{name}");
            assert_eq!(std::fs::read(&b).unwrap(), b"B", "{name}");
            let c = dir.path().join("c");
            mover(&a, &c).unwrap();
            assert!(!a.exists(), "{name}");
            assert_eq!(std::fs::read(&c).unwrap(), b"A", "{name}");
            // One name in the end, whichever way it moved.
            let links = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&c).unwrap());
            assert_eq!(links, 1, "{name}");
            let err = mover(&a, &dir.path().join("d")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name}");
        }
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

    #[test]
    fn a_symlink_is_told_by_its_file_type_whatever_errno_the_system_gives() {
        let eloop = |e: io::Error| e.raw_os_error() == Some(Errno::ELOOP as i32);
        // FreeBSD's EMLINK and NetBSD's EFTYPE (79 there) for O_NOFOLLOW.
        for errno in [Errno::EMLINK as i32, 79, Errno::ELOOP as i32] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(eloop(symlink_refusal(e, || true)), "errno {errno}");
        }
        let emlink = io::Error::from_raw_os_error(Errno::EMLINK as i32);
        assert!(!eloop(symlink_refusal(emlink, || false)));
        let gone = io::Error::from(io::ErrorKind::NotFound);
        let kept = symlink_refusal(gone, || panic!("no lstat for a missing file"));
        assert_eq!(kept.kind(), io::ErrorKind::NotFound);
        // And on this system, end to end.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("l")).unwrap();
        assert!(eloop(open_nofollow(&dir.path().join("l")).unwrap_err()));
    }

    #[test]
    fn a_folder_that_cannot_be_fsynced_counts_as_synced() {
        for errno in [Errno::EBADF, Errno::EINVAL] {
            assert!(is_dir_fsync_unsupported(&errno.into()));
        }
        assert!(!is_dir_fsync_unsupported(&Errno::EIO.into()));
        assert!(!is_dir_fsync_unsupported(&Errno::ENOSPC.into()));
        let dir = tempfile::tempdir().unwrap();
        dir_fsync_unsupported(dir.path(), Errno::EBADF.into()).unwrap();
        fsync_dir(dir.path()).unwrap();
    }
}
