//! The locks that say a folder's owner is alive (claim folders in
//! `sending/`, work folders in `tmp/`, the collector's claim folders): an
//! exclusive lock on the folder's `.lock`, which the kernel drops when the
//! owner dies, however it dies.
//!
//! Where `flock` is native it is used, as docs/spool.md says. Where it is
//! not (AIX, Solaris: there `flock` is an `fcntl` lock in disguise), or with
//! `SPOOLPOST_LOCK=fcntl`, the lock is an `fcntl` write lock, which differs
//! in three ways that matter:
//! - it needs a descriptor open for writing, so lock files are opened
//!   read-write;
//! - it belongs to the process, not the descriptor: the process that holds
//!   it can "take" it again, so a sender's recovery would call its own live
//!   claim folder dead;
//! - closing *any* descriptor of the file drops all the process's locks on
//!   it, so even looking at one's own lock file releases it.
//!
//! So this process keeps a table of the lock files it holds (by device and
//! inode), and a check of a lock file in the table answers "held" before
//! anything is opened. The table's mutex is held from the check to the
//! close, and from creating a lock file to recording it, so no thread of
//! this process opens a lock file another holds.
//!
//! On Linux `flock` and `fcntl` locks do not see each other: a spool's
//! processes must all use one kind (`SPOOLPOST_LOCK=fcntl` is for tests).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;

/// The environment variable that forces `fcntl` locks where `flock` is
/// native (`SPOOLPOST_LOCK=fcntl`), so that path is tested on Linux.
pub const LOCK_ENV: &str = "SPOOLPOST_LOCK";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Flock,
    Fcntl,
}

/// The kind of lock this process uses, chosen once.
pub fn kind() -> Kind {
    static KIND: OnceLock<Kind> = OnceLock::new();
    *KIND.get_or_init(|| {
        let native_flock = !cfg!(any(
            target_os = "aix",
            target_os = "solaris",
            target_os = "illumos"
        ));
        if native_flock && !crate::fsops::switch(LOCK_ENV, "fcntl", "flock") {
            Kind::Flock
        } else {
            Kind::Fcntl
        }
    })
}

/// A lock this process holds, released when dropped.
#[derive(Debug)]
pub struct Held {
    /// Always `Some` until dropped: closed under the table's mutex.
    file: Option<File>,
    kind: Kind,
    id: (u64, u64),
}

impl Drop for Held {
    fn drop(&mut self) {
        // Forget it and close it under the table's mutex, so no other
        // thread of this process opens the file while the lock is held.
        let mut table = table();
        if self.kind == Kind::Fcntl {
            table.remove(&self.id);
        }
        drop(self.file.take());
    }
}

fn table() -> MutexGuard<'static, BTreeSet<(u64, u64)>> {
    static TABLE: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());
    TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Creates `path` (a new lock file) and locks it.
pub fn create(path: &Path) -> io::Result<Held> {
    create_with(kind(), path)
}

/// Takes the lock on `path` if nobody holds it: `Ok(None)` when someone
/// does (this process included), `NotFound` when there is no such file.
pub fn try_take(path: &Path) -> io::Result<Option<Held>> {
    try_take_with(kind(), path)
}

/// Whether some live process (this one included) holds the lock on `path`.
pub fn is_held(path: &Path) -> io::Result<bool> {
    Ok(try_take(path)?.is_none())
}

fn create_with(kind: Kind, path: &Path) -> io::Result<Held> {
    let mut table = table();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match lock(&file, kind)? {
        true => Ok(record(&mut table, file, kind)?),
        false => Err(Errno::EWOULDBLOCK.into()),
    }
}

fn try_take_with(kind: Kind, path: &Path) -> io::Result<Option<Held>> {
    let mut table = table();
    if kind == Kind::Fcntl {
        // stat opens nothing, so it cannot release a lock of ours.
        let meta = std::fs::symlink_metadata(path)?;
        if table.contains(&(meta.dev(), meta.ino())) {
            return Ok(None);
        }
    }
    // Never through a symlink: an fcntl lock opens for writing, and no
    // owner makes its lock file a symlink, so such a folder has no owner.
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(kind == Kind::Fcntl)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the lock file is not a regular file",
            )
        } else {
            e
        }
    })?;
    if lock(&file, kind)? {
        Ok(Some(record(&mut table, file, kind)?))
    } else {
        Ok(None)
    }
}

fn record(table: &mut BTreeSet<(u64, u64)>, file: File, kind: Kind) -> io::Result<Held> {
    let meta = file.metadata()?;
    let id = (meta.dev(), meta.ino());
    if kind == Kind::Fcntl {
        table.insert(id);
    }
    Ok(Held {
        file: Some(file),
        kind,
        id,
    })
}

/// Takes an exclusive lock without waiting: `false` when another holds it.
fn lock(file: &File, kind: Kind) -> io::Result<bool> {
    let rc = match kind {
        Kind::Flock => {
            // SAFETY: a plain system call on a descriptor `file` keeps open.
            unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) }
        }
        Kind::Fcntl => {
            // SAFETY: zeroed is a valid `struct flock`; the fields that
            // matter are set below. l_len 0 means "to the end of the file".
            let mut fl: nix::libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = nix::libc::F_WRLCK as _;
            fl.l_whence = nix::libc::SEEK_SET as _;
            // SAFETY: `fl` is a valid struct flock that outlives the call.
            unsafe { nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_SETLK, &fl) }
        }
    };
    match Errno::result(rc) {
        Ok(_) => Ok(true),
        // fcntl answers EACCES or EAGAIN for a lock held elsewhere.
        Err(Errno::EWOULDBLOCK) | Err(Errno::EACCES) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by every test here that forks or expects a dropped flock to
    /// be free: a forked child shares the parent's open descriptions, so a
    /// flock dropped while a sibling test's child lives is still held.
    static FORKS: Mutex<()> = Mutex::new(());

    fn no_forks() -> MutexGuard<'static, ()> {
        FORKS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn an_fcntl_lock_this_process_holds_counts_as_held_and_stays_held() {
        let _forks = no_forks();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = create_with(Kind::Fcntl, &path).unwrap();
        // fcntl itself would grant the process its own lock again, and
        // closing the second descriptor would drop the first lock.
        assert!(try_take_with(Kind::Fcntl, &path).unwrap().is_none());
        assert!(try_take_with(Kind::Fcntl, &path).unwrap().is_none());
        assert!(
            held_by_another_process(&path),
            "checking its own lock must not release it"
        );
        drop(held);
        assert!(!held_by_another_process(&path));
        let again = try_take_with(Kind::Fcntl, &path).unwrap();
        assert!(again.is_some(), "a released lock can be taken");
    }

    #[test]
    fn flock_locks_are_per_descriptor() {
        let _forks = no_forks();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = create_with(Kind::Flock, &path).unwrap();
        assert!(try_take_with(Kind::Flock, &path).unwrap().is_none());
        drop(held);
        assert!(try_take_with(Kind::Flock, &path).unwrap().is_some());
    }

    #[test]
    fn a_missing_lock_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [Kind::Flock, Kind::Fcntl] {
            let err = try_take_with(kind, &dir.path().join("none")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        }
    }

    #[test]
    fn a_lock_file_that_is_a_symlink_is_never_opened_and_has_no_owner() {
        let _forks = no_forks();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs_write(&target);
        let path = dir.path().join(".lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        for kind in [Kind::Flock, Kind::Fcntl] {
            let err = try_take_with(kind, &path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{kind:?}");
        }
        assert!(!held_by_another_process(&target));
    }

    fn fs_write(path: &Path) {
        std::fs::write(path, "").unwrap();
    }

    /// Asks the kernel (F_GETLK) whether a process other than this one
    /// could not take a write lock: it reports conflicting locks of other
    /// processes only, so a child process asks.
    fn held_by_another_process(path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: the child makes only system calls (no allocation, no
        // locks another thread of the test process might hold) and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let fd = unsafe { nix::libc::open(c_path.as_ptr(), nix::libc::O_RDWR) };
                let code = if fd < 0 {
                    2
                } else {
                    let mut fl: nix::libc::flock = unsafe { std::mem::zeroed() };
                    fl.l_type = nix::libc::F_WRLCK as _;
                    fl.l_whence = nix::libc::SEEK_SET as _;
                    match unsafe { nix::libc::fcntl(fd, nix::libc::F_SETLK, &fl) } {
                        -1 => 0,
                        _ => 1,
                    }
                };
                // SAFETY: leaves the forked child without running anything
                // of the parent's (no destructors, no test harness).
                unsafe { nix::libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code == 0,
                    other => panic!("child: {other:?}"),
                }
            }
        }
    }
}
