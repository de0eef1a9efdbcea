//! The I/O of a receiver's shared `rate_limit` ([`crate::rules::shared_rate`]
//! is the rule): the bucket's state is one decimal number, its TAT in
//! nanoseconds since the Unix epoch, in `SPOOL/rate/RECEIVER`. A sender
//! takes a batch of tokens by locking that file exclusively, reading the
//! number, applying the rule and writing the new number, then spends the
//! batch without the lock, so a lock is taken per batch, not per file.
//!
//! The lock is the spool's kind (`flock`, or an `fcntl` write lock where
//! that is native: `spoolpost_protocol::lock`), held for a read and a write
//! of a few bytes; a waiting sender blocks for that long. The file is kept
//! open while its receiver is, and never opened twice by one process, which
//! `fcntl` locks need (closing any descriptor of a file drops them, and
//! they do not keep out the process's own other descriptors): a receiver a
//! reload removes and adds back while files are still in flight to it has
//! two [`SharedRate`]s for a moment, and they share one open file
//! ([`open_once`]) and take turns at its lock.
//! It is not fsynced: a power cut that loses the last write starts the
//! bucket from an older TAT, at most one burst more.
//!
//! Under the same lock, at most once a second, the sender notes itself
//! (pid, host, its limit, the time) in the takers' record beside the
//! bucket (`spoolpost_protocol::rates`), for the reporter to show who
//! shares the rate. Between notes a take costs one comparison more.
//!
//! If the file cannot be opened, locked, read or written (a read-only
//! `rate/`, a filesystem without locks), the sender warns once and goes on
//! with a bucket of its own ([`crate::rules::rate::Bucket`]): the limit is
//! then per process again, as it was before senders shared it, rather than
//! no sending at all.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use spoolpost_ops::config::RateLimit;
use spoolpost_protocol::lock::{self, Kind};
use spoolpost_protocol::spool::Spool;

use crate::rules::rate::Bucket;
use crate::rules::shared_rate::{batch, take};

pub use spoolpost_protocol::rates::RATE_DIR;
use spoolpost_protocol::rates::{self, NOTE_EVERY, Taker};

/// One receiver's rate limit as this sender takes part in it.
pub struct SharedRate {
    limit: RateLimit,
    receiver: String,
    path: PathBuf,
    state: Mutex<Local>,
}

struct Local {
    file: Option<Arc<BucketFile>>,
    /// Tokens taken from the shared bucket and not yet spent.
    held: u32,
    /// Set when the shared bucket failed: this process's own from then on.
    own: Option<Bucket>,
    /// When this sender last noted itself among the bucket's takers.
    noted: Option<Instant>,
}

impl SharedRate {
    pub fn new(spool: &Spool, receiver: &str, limit: RateLimit) -> SharedRate {
        SharedRate {
            limit,
            receiver: receiver.to_owned(),
            path: spool.root().join(RATE_DIR).join(receiver),
            state: Mutex::new(Local {
                file: None,
                held: 0,
                own: None,
                noted: None,
            }),
        }
    }

    /// The limit this bucket keeps to.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Lets one request start now, or says when the next token comes
    /// (on [`crate::sched::clock`]'s clock).
    pub fn take(&self) -> Result<(), Instant> {
        let mut local = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if local.held > 0 {
            local.held -= 1;
            return Ok(());
        }
        if let Some(own) = &mut local.own {
            return own.take(crate::sched::clock::now());
        }
        match self.take_shared(&mut local) {
            Ok(Ok(granted)) => {
                local.held = granted - 1;
                Ok(())
            }
            Ok(Err(wait)) => Err(crate::sched::clock::now() + wait),
            Err(e) => {
                tracing::warn!(
                    receiver = %self.receiver,
                    file = %self.path.display(),
                    error = %e,
                    "cannot share the rate limit with other senders on this spool; \
                     this sender keeps to it on its own"
                );
                local.file = None;
                let now = crate::sched::clock::now();
                let own = local.own.insert(Bucket::new(self.limit, now));
                own.take(now)
            }
        }
    }

    /// A batch from the shared bucket: the tokens granted (at least one),
    /// or how long until the next one.
    fn take_shared(&self, local: &mut Local) -> io::Result<Result<u32, Duration>> {
        if local.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            local.file = Some(open_once(&self.path)?);
        }
        let bucket = local.file.as_ref().expect("opened above");
        let _ours = bucket.turn.lock().unwrap_or_else(|e| e.into_inner());
        let file = &bucket.file;
        let _locked = Locked::take(file)?;
        let mut buf = [0u8; 32];
        let n = file.read_at(&mut buf, 0)?;
        // Empty (new) or garbled: a full bucket, as after a clock jump.
        let tat = rates::parse_tat(&buf[..n]);
        let wall = SystemTime::now();
        let now = unix_nanos(wall);
        if local.noted.is_none_or(|at| at.elapsed() >= NOTE_EVERY) {
            local.noted = Some(Instant::now());
            self.note_taker(wall);
        }
        let taken = take(self.limit, tat, now, batch(self.limit));
        if taken.granted == 0 {
            let next = taken.next.unwrap_or(now);
            return Ok(Err(Duration::from_nanos(next.saturating_sub(now))));
        }
        let text = format!("{}\n", taken.tat);
        file.write_all_at(text.as_bytes(), 0)?;
        file.set_len(text.len() as u64)?;
        Ok(Ok(taken.granted))
    }
}

impl SharedRate {
    /// Notes this sender among the bucket's takers; called under the
    /// bucket's lock, so two senders' rewrites never cross. Failing only
    /// hides the sender from the reporter, so it is logged and let be.
    fn note_taker(&self, now: SystemTime) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let path = rates::takers_path(dir, &self.receiver);
        let secs = unix_nanos(now) / 1_000_000_000;
        let me = Taker {
            pid: std::process::id(),
            host: host(),
            limit: self.limit.to_string(),
            last: secs,
        };
        let takers = rates::note(rates::read_takers(&path), me, secs);
        if let Err(e) = rates::write_takers(&path, &takers) {
            tracing::debug!(file = %path.display(), error = %e, "cannot note this sender among the rate's takers");
        }
    }
}

/// This host's name, looked up once.
fn host() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(spoolpost_protocol::replay_progress::host)
        .clone()
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A bucket's file, open once in the process, and the turn its users in
/// the process take at its lock.
struct BucketFile {
    file: File,
    turn: Mutex<()>,
}

/// The bucket files open in this process, by path.
static OPEN: Mutex<Vec<(PathBuf, Weak<BucketFile>)>> = Mutex::new(Vec::new());

/// The bucket file at `path`, opened unless this process has it open.
fn open_once(path: &Path) -> io::Result<Arc<BucketFile>> {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|(_, f)| f.strong_count() > 0);
    if let Some(file) = open
        .iter()
        .find(|(p, _)| p == path)
        .and_then(|(_, f)| f.upgrade())
    {
        return Ok(file);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let file = Arc::new(BucketFile {
        file,
        turn: Mutex::new(()),
    });
    open.push((path.to_path_buf(), Arc::downgrade(&file)));
    Ok(file)
}

/// An exclusive lock on the bucket's file, waited for and released on drop.
struct Locked<'a> {
    file: &'a File,
}

impl<'a> Locked<'a> {
    fn take(file: &'a File) -> io::Result<Locked<'a>> {
        set(file, true)?;
        Ok(Locked { file })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = set(self.file, false);
    }
}

fn set(file: &File, locked: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    loop {
        let rc = match lock::kind() {
            Kind::Flock => {
                let op = if locked {
                    nix::libc::LOCK_EX
                } else {
                    nix::libc::LOCK_UN
                };
                // SAFETY: a plain system call on a descriptor `file` keeps open.
                unsafe { nix::libc::flock(fd, op) }
            }
            Kind::Fcntl => {
                // SAFETY: zeroed is a valid `struct flock`; l_len 0 is to
                // the end of the file.
                let mut fl: nix::libc::flock = unsafe { std::mem::zeroed() };
                fl.l_type = if locked {
                    nix::libc::F_WRLCK
                } else {
                    nix::libc::F_UNLCK
                } as _;
                fl.l_whence = nix::libc::SEEK_SET as _;
                // SAFETY: `fl` is a valid struct flock that outlives the call.
                unsafe { nix::libc::fcntl(fd, nix::libc::F_SETLKW, &fl) }
            }
        };
        match Errno::result(rc) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    /// Two senders' views of one bucket (as two processes would have)
    /// share its tokens through the file: the burst is one burst between
    /// them, not one each.
    #[test]
    fn two_takers_on_one_spool_share_one_burst() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let l = limit("100/h");
        let a = SharedRate::new(&spool, "quota", l);
        let b = SharedRate::new(&spool, "quota", l);
        let mut granted = 0;
        for _ in 0..50 {
            granted += usize::from(a.take().is_ok());
            granted += usize::from(b.take().is_ok());
        }
        assert_eq!(granted, 10, "a burst of a tenth of 100, between both");
        let text = std::fs::read_to_string(root.path().join(RATE_DIR).join("quota")).unwrap();
        assert!(text.trim().parse::<u64>().is_ok(), "{text:?}");
    }

    /// A receiver removed and added back by reloads while files are still
    /// in flight to it: its two rates are one open file, so the old one's
    /// closing cannot drop a lock the new one holds.
    #[test]
    fn one_process_opens_a_bucket_file_once() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let l = limit("100/s");
        let old = SharedRate::new(&spool, "quota", l);
        let new = SharedRate::new(&spool, "quota", l);
        assert!(old.take().is_ok() && new.take().is_ok());
        let file = |r: &SharedRate| r.state.lock().unwrap().file.clone().unwrap();
        assert!(Arc::ptr_eq(&file(&old), &file(&new)));
        let other = SharedRate::new(&spool, "another", l);
        assert!(other.take().is_ok());
        assert!(!Arc::ptr_eq(&file(&old), &file(&other)));
        drop(old);
        assert!(new.take().is_ok());
    }

    /// The reporter's view of who takes: this sender, once, with its limit,
    /// however often it takes.
    #[test]
    fn a_taker_notes_itself_beside_the_bucket_once() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let a = SharedRate::new(&spool, "quota", limit("100/h"));
        for _ in 0..5 {
            let _ = a.take();
        }
        let dir = root.path().join(RATE_DIR);
        let takers = rates::read_takers(&rates::takers_path(&dir, "quota"));
        assert_eq!(takers.len(), 1, "{takers:?}");
        assert_eq!(takers[0].pid, std::process::id());
        assert_eq!(takers[0].limit, "100/h");
        let found = rates::read_all(&spool);
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            ["quota"],
            "the record is no bucket"
        );
    }

    #[test]
    fn a_garbled_file_is_a_full_bucket() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        std::fs::create_dir_all(root.path().join(RATE_DIR)).unwrap();
        std::fs::write(root.path().join(RATE_DIR).join("quota"), b"not a time").unwrap();
        let a = SharedRate::new(&spool, "quota", limit("50/h"));
        assert_eq!((0..10).filter(|_| a.take().is_ok()).count(), 5);
    }

    #[test]
    fn a_bucket_that_cannot_be_shared_is_kept_alone() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        // A file where the folder should be: rate/ cannot be made.
        std::fs::write(root.path().join(RATE_DIR), b"").unwrap();
        let a = SharedRate::new(&spool, "quota", limit("50/h"));
        assert_eq!((0..10).filter(|_| a.take().is_ok()).count(), 5);
    }
}
