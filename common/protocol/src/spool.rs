//! The spool: its folders and every transition a file makes between them.
//!
//! This module is the only code that moves files between spool states; the
//! state table, commit points and crash rules are in `docs/spool.md`.
//!
//! ```text
//! tmp/            claim folders being set up (and the collector's copies)
//! incoming/NAME   complete files waiting; the only way in is a rename
//! sending/ID/     one claim folder per live sender instance, holding .lock
//!   .delivered/   files delivered whose move to done/ failed (see below)
//! done/NAME       delivered (kept for the system's housekeeping to remove)
//! error/NAME      given up on, with error/NAME.reason.json beside it
//! ```
//!
//! A sender instance owns `sending/ID/` for as long as it holds an exclusive
//! lock on `sending/ID/.lock` (`flock`, or `fcntl` where that is the native
//! lock: see the `lock` module). The kernel drops the lock when the process
//! dies however it dies, so a claim folder whose lock can be taken belongs to
//! a dead instance and its files go back to `incoming/`. The rules for
//! claim folders, start-up and recovery are docs/spool.md's rules 1-4, 9.
//!
//! A file the receiver took whose move to `done/` fails (a full disk, a
//! `done/` on another filesystem) must never be sent again: it is renamed
//! into its claim folder's `.delivered/` (same folder tree, so the rename
//! needs no space and cannot cross filesystems), and whoever recovers the
//! folder moves it to `done/`, never to `incoming/` (rule 18).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsops::{claim_into_own_folder, fsync_dir, rename_into_own_folder, rename_noreplace};
use crate::lock::{self, Held};
use crate::name::{Key, SpoolName};
use crate::reason::ReasonRecord;

/// The states a file can be in, each a folder under the spool root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Incoming,
    Sending,
    Done,
    Error,
}

impl State {
    pub const ALL: [State; 4] = [State::Incoming, State::Sending, State::Done, State::Error];

    pub fn dir_name(self) -> &'static str {
        match self {
            State::Incoming => "incoming",
            State::Sending => "sending",
            State::Done => "done",
            State::Error => "error",
        }
    }
}

const LOCK_FILE: &str = ".lock";
const REASON_SUFFIX: &str = ".reason.json";
const CLAIM_PREFIX: &str = "claim-";
/// The folder in a claim folder for files delivered but not yet in `done/`.
pub const DELIVERED_DIR: &str = ".delivered";

/// A spool root with its folders.
#[derive(Clone, Debug)]
pub struct Spool {
    root: PathBuf,
    /// Whether transitions fsync the folder they move a file into, so they
    /// survive a power cut (see docs/spool.md, "Durability").
    fsync: bool,
}

impl Spool {
    /// Opens a spool, creating any missing folder.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Spool> {
        let spool = Spool {
            root: root.into(),
            fsync: false,
        };
        for dir in State::ALL
            .iter()
            .map(|s| spool.dir(*s))
            .chain([spool.tmp()])
        {
            fs::create_dir_all(&dir)
                .map_err(|e| annotate(e, "cannot create spool folder", &dir))?;
        }
        Ok(spool)
    }

    /// Opens a writer's spool (sender, collector): its folders are created
    /// as needed, but its root only when `create` says so, since a
    /// mistyped `--spool` that silently became a new empty spool left the
    /// run "successful" and the real files unsent. A root that
    /// exists but is empty (made by tmpfiles.d or `mkdir`) is fine.
    pub fn open_root(root: impl Into<PathBuf>, create: bool) -> io::Result<Spool> {
        let root = root.into();
        if !create && let Err(e) = fs::metadata(&root) {
            return Err(match e.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no spool at {}: it does not exist (mistyped? --create-spool or \
                         `create_spool = true` in the config makes a new one)",
                        root.display()
                    ),
                ),
                _ => annotate(e, "cannot open spool", &root),
            });
        }
        Spool::open(root)
    }

    /// Opens a spool that must already exist, creating nothing: for
    /// readers (the reporter), to whom a mistyped path is an error, not a
    /// new empty spool to call healthy.
    pub fn existing(root: impl Into<PathBuf>) -> io::Result<Spool> {
        let spool = Spool {
            root: root.into(),
            fsync: false,
        };
        let incoming = spool.dir(State::Incoming);
        match fs::metadata(&incoming) {
            Ok(meta) if meta.is_dir() => Ok(spool),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a folder", incoming.display()),
            )),
            Err(e) => Err(annotate(
                e,
                "not a spool (it has no incoming/ folder):",
                spool.root(),
            )),
        }
    }

    pub fn with_fsync(mut self, fsync: bool) -> Spool {
        self.fsync = fsync;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether transitions fsync the folders they move files into.
    pub fn fsyncs(&self) -> bool {
        self.fsync
    }

    pub fn dir(&self, state: State) -> PathBuf {
        self.root.join(state.dir_name())
    }

    /// How long a file in `incoming/` that has had `attempts` failed
    /// attempts must still wait before its next one, or `None` when it is
    /// due. Its next-attempt time is the mtime [`ClaimFolder::retry`] set;
    /// [`crate::name::retry_wait`] has the rules for clocks that moved.
    /// `NotFound` when the file is gone.
    pub fn retry_wait(
        &self,
        name: &OsStr,
        attempts: u32,
        cap: Duration,
        now: SystemTime,
    ) -> io::Result<Option<Duration>> {
        if attempts == 0 {
            return Ok(None);
        }
        let meta = fs::symlink_metadata(self.dir(State::Incoming).join(name))?;
        let ctime = crate::fsops::ctime(&meta);
        let mtime = meta.modified().unwrap_or(ctime);
        Ok(crate::name::retry_wait(attempts, mtime, ctime, now, cap))
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join(crate::layout::TMP_DIR)
    }

    fn synced(&self, dir: &Path) -> io::Result<()> {
        if self.fsync { fsync_dir(dir) } else { Ok(()) }
    }

    /// Moves `from` into `dir` under `name`, choosing a fresh `uniq` field if
    /// the name is taken: a clash never overwrites and never loses the file.
    /// Returns the path the file now has.
    pub(crate) fn move_into(
        &self,
        from: &Path,
        dir: &Path,
        name: &mut SpoolName,
    ) -> io::Result<PathBuf> {
        for _ in 0..16 {
            let to = dir.join(name.to_os_string());
            match rename_noreplace(from, &to) {
                Ok(()) => {
                    self.synced(dir)?;
                    return Ok(to);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    name.uniq = Some(fastrand::u32(..));
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free name for {} in {}", from.display(), dir.display()),
        ))
    }
}

/// Whether a name in `incoming/` is a candidate for sending. Dot-files are
/// writers' work in progress by convention, and `error/` reason records are
/// never data.
pub fn is_data_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && bytes[0] != b'.'
}

/// Whether a name in `error/` is the reason record of another file there.
pub fn is_reason_name(name: &OsStr) -> bool {
    name.as_bytes().ends_with(REASON_SUFFIX.as_bytes())
}

/// The reason record's name for a file in `error/`.
pub fn reason_name(data_name: &OsStr) -> OsString {
    let mut name = data_name.to_os_string();
    name.push(REASON_SUFFIX);
    name
}

/// A file this instance has claimed: it sits in the instance's claim folder
/// (or its `.delivered/`).
#[derive(Clone, Debug)]
pub struct Claimed {
    pub name: SpoolName,
    pub path: PathBuf,
}

impl Claimed {
    pub fn key(&self) -> Key {
        self.name.key.expect("claimed files always carry a key")
    }
}

/// One sender instance's claim folder, `sending/ID/`, owned through the flock
/// on its `.lock` for as long as this value lives.
pub struct ClaimFolder {
    spool: Spool,
    id: String,
    dir: PathBuf,
    _lock: Held,
}

impl ClaimFolder {
    /// Creates and locks a new claim folder. It is assembled in `tmp/` and
    /// renamed into `sending/` already locked, so no folder in `sending/` is
    /// ever seen without its owner's lock.
    pub fn create(spool: &Spool) -> io::Result<ClaimFolder> {
        let (id, staging, lock) = create_locked_folder(spool, CLAIM_PREFIX)?;
        // Made now, while there is room: when a move to done/ fails for a
        // full disk, there may be no inode left to make it then.
        let delivered = staging.join(DELIVERED_DIR);
        fs::create_dir(&delivered).map_err(|e| annotate(e, "cannot create", &delivered))?;
        let dir = spool.dir(State::Sending).join(&id);
        // Its name is this sender's alone (rule 6): a checked rename where
        // there is no no-replace one, never left to `link` failing on a
        // folder (some systems let root link folders).
        rename_into_own_folder(&staging, &dir)
            .map_err(|e| annotate(e, "cannot move claim folder to", &dir))?;
        Ok(ClaimFolder {
            spool: spool.clone(),
            id,
            dir,
            _lock: lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether another live sender has a claim folder on this spool: the
    /// only one that can take a file from `incoming/` between this
    /// sender's reading its name and its claim.
    pub fn others_alive(&self) -> bool {
        let Ok(folders) = fs::read_dir(self.spool.dir(State::Sending)) else {
            return false;
        };
        folders.flatten().any(|folder| {
            folder.file_name() != self.id.as_str()
                && folder.file_type().is_ok_and(|t| t.is_dir())
                && is_owned(&folder.path())
        })
    }

    /// incoming → sending. The commit point is the rename, which also gives
    /// a file on its first claim its idempotency key and first-attempt time.
    /// `Ok(None)` means the file is no longer there (another sender took it).
    pub fn claim(&self, incoming_name: &OsStr, now: SystemTime) -> io::Result<Option<Claimed>> {
        let mut name = SpoolName::parse(incoming_name);
        if name.key.is_none() {
            name.key = Some(Key::random());
            // A producer's long name: its whole original must be on record
            // before the claim gives the file a name that holds only its start.
            crate::fullname::store(self.spool.root(), &name).map_err(|e| {
                annotate(e, "cannot keep the full name of", Path::new(incoming_name))
            })?;
        }
        crate::fullname::resolve(self.spool.root(), &mut name);
        if name.first_attempt.is_none() {
            name.first_attempt = Some(unix_seconds(now));
        }
        let from = self.spool.dir(State::Incoming).join(incoming_name);
        let to = self.dir.join(name.to_os_string());
        match claim_into_own_folder(&from, &to) {
            Ok(()) => Ok(Some(Claimed { name, path: to })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if SpoolName::parse(incoming_name).key.is_none() {
                    crate::fullname::forget(self.spool.root(), &name);
                }
                Ok(None)
            }
            Err(e) => Err(annotate(e, "cannot claim", &from)),
        }
    }

    /// sending → done, or deleted when `delete` is set. Commit point: the
    /// rename (or unlink).
    pub fn deliver(&self, mut file: Claimed, delete: bool) -> io::Result<Option<PathBuf>> {
        if delete {
            fs::remove_file(&file.path).map_err(|e| annotate(e, "cannot delete", &file.path))?;
            self.spool.synced(&self.dir)?;
            crate::fullname::forget(self.spool.root(), &file.name);
            return Ok(None);
        }
        let done = self.spool.dir(State::Done);
        self.spool
            .move_into(&file.path, &done, &mut file.name)
            .map(Some)
            .map_err(|e| annotate(e, "cannot move to done/", &file.path))
    }

    /// A delivered file that could not be moved to `done/`: renamed into
    /// this claim folder's `.delivered/` under its name, so that nothing
    /// (shutdown, recovery after a crash, another sender) returns it to
    /// `incoming/` to be sent again. [`ClaimFolder::deliver`] takes the
    /// returned claim on to `done/` once it can; recovery does the same.
    /// The rename stays within the claim folder: no new inode, no other
    /// filesystem. The folder is made again if it is missing (a claim
    /// folder made by an older sender).
    pub fn mark_delivered(&self, file: &Claimed) -> io::Result<Claimed> {
        let delivered = self.dir.join(DELIVERED_DIR);
        match fs::create_dir(&delivered) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(annotate(e, "cannot create", &delivered)),
        }
        let to = delivered.join(file.path.file_name().unwrap_or_default());
        rename_into_own_folder(&file.path, &to)
            .map_err(|e| annotate(e, "cannot mark as delivered", &file.path))?;
        self.spool.synced(&delivered)?;
        Ok(Claimed {
            name: file.name.clone(),
            path: to,
        })
    }

    /// sending → error, with `error/NAME.reason.json` written first. Commit
    /// point: the rename of the data file. A crash before it leaves the file
    /// claimed (it is retried) and at most a reason record without data,
    /// which the next rejection of that name replaces.
    pub fn reject(&self, mut file: Claimed, reason: &ReasonRecord) -> io::Result<PathBuf> {
        let error_dir = self.spool.dir(State::Error);
        let mut json = serde_json::to_vec_pretty(reason).map_err(io::Error::other)?;
        json.push(b'\n');
        let staged = self.dir.join(format!(".reason-{:08x}", fastrand::u32(..)));
        for _ in 0..16 {
            let data_name = file.name.to_os_string();
            if let Err(e) = write_file(&staged, &json, self.spool.fsync) {
                // A full disk fails the write after the create: the draft
                // would keep an inode for every try (the sender tries again).
                let _ = fs::remove_file(&staged);
                return Err(e);
            }
            let reason_path = error_dir.join(reason_name(&data_name));
            match rename_noreplace(&staged, &reason_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // A stale record from a crash mid-rejection, or another
                    // file's: keep it and pick another name for this one.
                    file.name.uniq = Some(fastrand::u32(..));
                    continue;
                }
                Err(e) => {
                    let _ = fs::remove_file(&staged);
                    return Err(annotate(e, "cannot write", &reason_path));
                }
            }
            let data_path = error_dir.join(&data_name);
            match rename_noreplace(&file.path, &data_path) {
                Ok(()) => {
                    self.spool.synced(&error_dir)?;
                    return Ok(data_path);
                }
                Err(e) => {
                    let _ = fs::remove_file(&reason_path);
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(annotate(e, "cannot move to error/", &file.path));
                    }
                    file.name.uniq = Some(fastrand::u32(..));
                }
            }
        }
        let _ = fs::remove_file(&staged);
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "no free name in {} for {}",
                error_dir.display(),
                file.path.display()
            ),
        ))
    }

    /// sending → incoming, one attempt more, waiting until `next_attempt`.
    /// The mtime is set before the rename, so the file is never visible in
    /// `incoming/` with a stale next-attempt time.
    pub fn retry(
        &self,
        mut file: Claimed,
        next_attempt: SystemTime,
        reason: String,
    ) -> io::Result<PathBuf> {
        file.name.attempts = file.name.attempts.saturating_add(1);
        file.name.last_reason = Some(reason);
        File::open(&file.path)
            .and_then(|f| f.set_modified(next_attempt))
            .map_err(|e| annotate(e, "cannot set next attempt time on", &file.path))?;
        let incoming = self.spool.dir(State::Incoming);
        self.spool
            .move_into(&file.path, &incoming, &mut file.name)
            .map_err(|e| annotate(e, "cannot return to incoming/", &file.path))
    }

    /// Returns every file still in this claim folder to `incoming/` and
    /// removes the folder. Used at shutdown, after in-flight work has ended.
    pub fn close(self) -> io::Result<usize> {
        return_claims(&self.spool, &self.dir)
    }
}

/// Returns the files of every dead instance's claim folder to `incoming/`.
/// Safe to run from several senders at once. Returns how many files moved.
///
/// Anything else in `sending/` is brought back into view too: a file put
/// there directly (outside any claim folder) goes to `incoming/`, and a
/// folder without `.lock` counts as a dead claim folder. Symlinks are never
/// followed; dot-names are left to whoever made them.
pub fn recover_dead_claims(spool: &Spool) -> io::Result<usize> {
    let sending = spool.dir(State::Sending);
    let mut recovered = 0;
    for entry in fs::read_dir(&sending).map_err(|e| annotate(e, "cannot read", &sending))? {
        let entry = entry.map_err(|e| annotate(e, "cannot read", &sending))?;
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue; // gone since the listing
        };
        if !kind.is_dir() {
            if is_data_name(&entry.file_name()) {
                recovered += return_loose(spool, &path)?;
            }
            continue;
        }
        // Held by a live instance: leave it alone.
        let Some(_lock) = try_lock(&path.join(LOCK_FILE))? else {
            continue;
        };
        let moved = return_claims(spool, &path)?;
        if moved > 0 {
            tracing::warn!(claim = %path.display(), files = moved, "returned a dead sender's claimed files to incoming/");
        }
        recovered += moved;
    }
    // Claim folders whose creation was cut short never held a file.
    remove_dead_folders(spool, CLAIM_PREFIX)?;
    Ok(recovered)
}

/// A file found directly in `sending/`, where no protocol step puts one:
/// back to `incoming/` under its name, so it is sent rather than forgotten.
fn return_loose(spool: &Spool, path: &Path) -> io::Result<usize> {
    let mut name = SpoolName::parse(path.file_name().unwrap_or_default());
    match spool.move_into(path, &spool.dir(State::Incoming), &mut name) {
        Ok(_) => {
            tracing::warn!(file = %path.display(), "a file outside any claim folder in sending/ was returned to incoming/");
            Ok(1)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(annotate(e, "cannot return to incoming/", path)),
    }
}

/// How long a `tmp/PREFIX*` folder without a held lock is left alone before
/// it counts as a dead process's leftover. Building one (mkdir, create
/// `.lock`, flock) takes microseconds, but between those steps a live
/// process's folder has no lock or an untaken one, and removing it then
/// makes that process fail (one of 240 senders started at once did).
pub const BUILD_GRACE: Duration = Duration::from_secs(60);

/// Creates `tmp/PREFIX-ID/` holding `.lock`, locked by the caller for as
/// long as it keeps the returned lock. Returns the ID, the folder and the lock.
pub(crate) fn create_locked_folder(
    spool: &Spool,
    prefix: &str,
) -> io::Result<(String, PathBuf, Held)> {
    let id = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
    let dir = spool.tmp().join(format!("{prefix}{id}"));
    fs::create_dir(&dir).map_err(|e| annotate(e, "cannot create", &dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = lock::create(&lock_path).map_err(|e| annotate(e, "cannot lock", &lock_path))?;
    Ok((id, dir, lock))
}

/// Removes the `tmp/PREFIX*` folders of dead processes with all they hold:
/// work in progress that never became visible in the spool. A folder is
/// dead when nobody holds its lock (or it has none) and either it holds
/// more than its lock file or its lock file (or, without one, the folder)
/// is older than [`BUILD_GRACE`]; otherwise it may be a live process's,
/// mid-build.
pub(crate) fn remove_dead_folders(spool: &Spool, prefix: &str) -> io::Result<usize> {
    remove_dead_folders_at(spool, prefix, SystemTime::now())
}

fn remove_dead_folders_at(spool: &Spool, prefix: &str, now: SystemTime) -> io::Result<usize> {
    let tmp = spool.tmp();
    let mut removed = 0;
    for entry in fs::read_dir(&tmp).map_err(|e| annotate(e, "cannot read", &tmp))? {
        let entry = entry.map_err(|e| annotate(e, "cannot read", &tmp))?;
        if !entry.file_name().as_bytes().starts_with(prefix.as_bytes())
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        // The lock file's age when there is one: a dead process's lock was
        // made when it started, so its leftovers go at once.
        let lock = entry.path().join(LOCK_FILE);
        let changed = match fs::symlink_metadata(&lock).or_else(|_| entry.metadata()) {
            Ok(meta) => meta.modified().unwrap_or(now),
            Err(_) => continue, // gone since the listing
        };
        if now.duration_since(changed).unwrap_or_default() < BUILD_GRACE
            && !holds_more_than_lock(&entry.path())
        {
            continue;
        }
        if try_lock(&lock)?.is_some() {
            let _ = fs::remove_dir_all(entry.path());
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a folder holds anything but its lock file. Its owner puts
/// nothing else in before it holds the lock, so such a folder is past
/// being built, and if its lock is free, its owner is dead.
fn holds_more_than_lock(dir: &Path) -> bool {
    fs::read_dir(dir)
        .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.file_name() != LOCK_FILE)))
}

/// Whether a claim folder belongs to a live instance (its lock is held).
pub fn is_owned(folder: &Path) -> bool {
    matches!(try_lock(&folder.join(LOCK_FILE)), Ok(None))
}

/// Rewrites a record a sender publishes in its claim folder
/// (`.circuits.json`, `.pace.json`): written as `tmp` beside it, then
/// renamed over, so a reader sees the old record or the new one whole.
pub fn write_claim_record(
    claim_folder: &Path,
    file: &str,
    tmp: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let tmp = claim_folder.join(tmp);
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, claim_folder.join(file))
}

/// The record `file` of every live sender (its claim folder's lock held),
/// with the claim folder's name. A crashed sender's record, and one that
/// cannot be read or parsed, is left out.
pub fn live_claim_records<T: serde::de::DeserializeOwned>(
    spool: &Spool,
    file: &str,
) -> Vec<(String, T)> {
    let Ok(folders) = fs::read_dir(spool.dir(State::Sending)) else {
        return Vec::new();
    };
    folders
        .flatten()
        .filter(|folder| is_owned(&folder.path()))
        .filter_map(|folder| {
            let text = fs::read(folder.path().join(file)).ok()?;
            let record = serde_json::from_slice(&text).ok()?;
            Some((folder.file_name().to_string_lossy().into_owned(), record))
        })
        .collect()
}

/// error → incoming, for an operator: the file gets a fresh start (no
/// attempts, no first-attempt time) but keeps its key, so a receiver that
/// did take it after all can still drop the duplicate. The reason record is
/// removed after the data has moved. Returns the new path.
pub fn requeue(spool: &Spool, error_name: &OsStr) -> io::Result<PathBuf> {
    let error_dir = spool.dir(State::Error);
    let mut name = SpoolName::parse(error_name);
    name.attempts = 0;
    name.first_attempt = None;
    name.last_reason = None;
    let moved = spool.move_into(
        &error_dir.join(error_name),
        &spool.dir(State::Incoming),
        &mut name,
    )?;
    let _ = fs::remove_file(error_dir.join(reason_name(error_name)));
    Ok(moved)
}

/// incoming → incoming, for an operator (`reporter flush`): a waiting
/// retry becomes due now and every running sender hears of it. The mtime
/// (the next-attempt time) is set to `now` first, then the file is renamed
/// within `incoming/` to its name with a fresh `u` field: the rename is what
/// inotify reports to senders (IN_MOVED_TO), and a sender that sees the new
/// name finds it due. Key, `t`, `a` and `r` are kept, so nothing about the
/// delivery changes but its time. The file is never out of `incoming/` and
/// never under two names. Returns the new path, or `None` if the file is no
/// longer there (a sender claimed it meanwhile).
pub fn flush(spool: &Spool, incoming_name: &OsStr, now: SystemTime) -> io::Result<Option<PathBuf>> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let incoming = spool.dir(State::Incoming);
    let from = incoming.join(incoming_name);
    // By path, not through an open file: opening a FIFO would block, and
    // a symlink's own time is the one senders read (they do not follow it).
    let at = TimeSpec::from(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    match utimensat(
        nix::fcntl::AT_FDCWD,
        &from,
        &TimeSpec::UTIME_OMIT,
        &at,
        UtimensatFlags::NoFollowSymlink,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(annotate(e.into(), "cannot set next attempt time on", &from)),
    }
    let mut name = SpoolName::parse(incoming_name);
    let old = name.uniq;
    name.uniq = Some(loop {
        let u = fastrand::u32(..);
        if Some(u) != old {
            break u;
        }
    });
    match spool.move_into(&from, &incoming, &mut name) {
        Ok(path) => Ok(Some(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(annotate(e, "cannot flush", &from)),
    }
}

/// Takes the lock of a claim folder if nobody holds it (this process
/// included: its own folders are never taken back). A folder without a
/// lock file (recovery cut short after removing it) counts as unowned.
fn try_lock(path: &Path) -> io::Result<Option<Option<Held>>> {
    match lock::try_take(path) {
        Ok(Some(held)) => Ok(Some(Some(held))),
        Ok(None) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(None)),
        Err(e) => Err(annotate(e, "cannot lock", path)),
    }
}

/// Moves the data files of a claim folder back to `incoming/` under their
/// current names, then removes the folder. The lock file goes last, so a
/// crash midway leaves a folder that the next recovery finishes. Another
/// sender may be finishing the same folder (after the lock file is gone):
/// whatever vanishes meanwhile was moved or removed by it. A folder inside
/// is not a spool file; it is kept, with the folder holding it.
fn return_claims(spool: &Spool, dir: &Path) -> io::Result<usize> {
    let incoming = spool.dir(State::Incoming);
    let mut moved = 0;
    let mut subfolders = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(annotate(e, "cannot read", dir)),
    };
    let mut kept = 0;
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, "cannot read", dir))?;
        let file_name = entry.file_name();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if file_name == DELIVERED_DIR {
                kept += settle_delivered(spool, &entry.path())?;
            } else {
                subfolders += 1;
            }
            continue;
        }
        if !is_data_name(&file_name) {
            if file_name != LOCK_FILE {
                // Temporary files (reason drafts, circuit states): never data.
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        let mut name = SpoolName::parse(&file_name);
        match spool.move_into(&entry.path(), &incoming, &mut name) {
            Ok(_) => moved += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, "cannot return to incoming/", &entry.path())),
        }
    }
    if subfolders > 0 {
        tracing::warn!(folder = %dir.display(), subfolders, "a folder in sending/ holds folders, which are not spool files; left in place");
        return Ok(moved);
    }
    if kept > 0 {
        // The folder, lock file included, stays: the next recovery (this
        // sender's, the next start's or another sender's) tries again.
        tracing::warn!(folder = %dir.display(), files = kept, "delivered files still cannot be moved to done/; they stay in the claim folder, never to be sent again");
        return Ok(moved);
    }
    let _ = fs::remove_file(dir.join(LOCK_FILE));
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // A file that arrived after the listing (another recoverer's
        // half-done work cannot add any): the next recovery takes it.
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOTEMPTY as i32) => {}
        Err(e) => return Err(annotate(e, "cannot remove claim folder", dir)),
    }
    Ok(moved)
}

/// Moves the files of a claim folder's `.delivered/` to `done/` (rule 18)
/// and removes the folder once it is empty. Returns how many are left
/// because they cannot be moved yet.
fn settle_delivered(spool: &Spool, delivered: &Path) -> io::Result<usize> {
    let done = spool.dir(State::Done);
    let mut kept = 0;
    let entries = match fs::read_dir(delivered) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(annotate(e, "cannot read", delivered)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, "cannot read", delivered))?;
        let mut name = SpoolName::parse(&entry.file_name());
        match spool.move_into(&entry.path(), &done, &mut name) {
            Ok(_) => {
                tracing::info!(file = %entry.path().display(), "a delivered file moved on to done/");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %entry.path().display(), error = %e, "a delivered file cannot be moved to done/ yet");
                kept += 1;
            }
        }
    }
    if kept == 0 {
        // Another recoverer may have put nothing here: ENOTEMPTY or
        // ENOENT only mean someone else is at it.
        let _ = fs::remove_dir(delivered);
    }
    Ok(kept)
}

fn write_file(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let mut file = File::create(path).map_err(|e| annotate(e, "cannot create", path))?;
    file.write_all(data)
        .map_err(|e| annotate(e, "cannot write", path))?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Adds what was being done and to which path, keeping the error kind so
/// callers can still tell "not found" from "disk full".
pub fn annotate(err: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{doing} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::ErrorClass;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn put(spool: &Spool, name: &str, body: &str) {
        fs::write(spool.dir(State::Incoming).join(name), body).unwrap();
    }

    fn reason() -> ReasonRecord {
        ReasonRecord {
            class: ErrorClass::Rejected,
            message: "400".into(),
            file: "a".into(),
            key: None,
            receiver: None,
            url: None,
            status: Some(400),
            body: None,
            body_truncated: false,
            error: None,
            attempts: 1,
            first_attempt: None,
            last_attempt: "now".into(),
        }
    }

    #[test]
    fn a_writer_creates_a_missing_spool_root_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("typo");
        let e = Spool::open_root(&root, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("--create-spool"), "{e}");
        assert!(!root.exists());
        Spool::open_root(&root, true).unwrap();
        assert!(root.join("incoming").is_dir());
        // An empty folder someone made for it gets its folders.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        Spool::open_root(&empty, false).unwrap();
        assert!(empty.join("incoming").is_dir());
    }

    #[test]
    fn open_creates_every_folder() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("s")).unwrap();
        assert_eq!(
            names(spool.root()),
            ["done", "error", "incoming", "sending", "tmp"]
        );
    }

    #[test]
    fn claim_gives_a_key_once_and_a_vanished_file_is_none() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        put(&spool, "a.json", "A");
        let claims = ClaimFolder::create(&spool).unwrap();
        let c = claims
            .claim(OsStr::new("a.json"), SystemTime::now())
            .unwrap()
            .unwrap();
        let key = c.key();
        assert_eq!(fs::read(&c.path).unwrap(), b"A");
        assert!(
            claims
                .claim(OsStr::new("a.json"), SystemTime::now())
                .unwrap()
                .is_none()
        );

        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        let back = claims.retry(c, later, "http-503".into()).unwrap();
        assert_eq!(fs::metadata(&back).unwrap().modified().unwrap(), later);
        let again = claims
            .claim(back.file_name().unwrap(), SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(again.key(), key, "the key is stable across retries");
        assert_eq!(again.name.attempts, 1);
        assert_eq!(again.name.last_reason.as_deref(), Some("http-503"));
    }

    #[test]
    fn reject_writes_the_reason_beside_the_data_and_never_overwrites() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let claims = ClaimFolder::create(&spool).unwrap();
        put(&spool, "a", "1");
        let first = claims
            .claim(OsStr::new("a"), SystemTime::now())
            .unwrap()
            .unwrap();
        let taken = first.name.to_os_string();
        // Another file already sits in error/ under the same name.
        fs::write(spool.dir(State::Error).join(&taken), "other").unwrap();
        let path = claims.reject(first, &reason()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"1");
        assert_eq!(
            fs::read(spool.dir(State::Error).join(&taken)).unwrap(),
            b"other"
        );
        let record: ReasonRecord =
            serde_json::from_slice(&fs::read(error_reason(&path)).unwrap()).unwrap();
        assert_eq!(record.status, Some(400));
        assert!(is_reason_name(error_reason(&path).file_name().unwrap()));
    }

    fn error_reason(data: &Path) -> PathBuf {
        data.with_file_name(reason_name(data.file_name().unwrap()))
    }

    #[test]
    fn a_dead_instance_s_claims_return_and_a_live_one_s_stay() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        put(&spool, "a", "1");
        put(&spool, "b", "2");
        let live = ClaimFolder::create(&spool).unwrap();
        live.claim(OsStr::new("a"), SystemTime::now())
            .unwrap()
            .unwrap();
        let dead = ClaimFolder::create(&spool).unwrap();
        dead.claim(OsStr::new("b"), SystemTime::now())
            .unwrap()
            .unwrap();
        let dead_dir = dead.path().to_path_buf();
        drop(dead); // releases the flock, as process death would

        assert_eq!(recover_dead_claims(&spool).unwrap(), 1);
        assert!(!dead_dir.exists());
        let incoming = names(&spool.dir(State::Incoming));
        assert_eq!(incoming.len(), 1);
        assert!(incoming[0].starts_with("b~sp.k"));
        assert_eq!(
            names(live.path()).len(),
            3,
            "lock file, .delivered/ and a's claim"
        );
        assert_eq!(live.close().unwrap(), 1);
        assert_eq!(names(&spool.dir(State::Sending)), Vec::<String>::new());
        assert_eq!(names(&spool.dir(State::Incoming)).len(), 2);
    }

    #[test]
    fn deliver_moves_or_deletes() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap().with_fsync(true);
        let claims = ClaimFolder::create(&spool).unwrap();
        put(&spool, "a", "1");
        put(&spool, "b", "2");
        let a = claims
            .claim(OsStr::new("a"), SystemTime::now())
            .unwrap()
            .unwrap();
        let b = claims
            .claim(OsStr::new("b"), SystemTime::now())
            .unwrap()
            .unwrap();
        assert!(claims.deliver(a, false).unwrap().unwrap().exists());
        assert!(claims.deliver(b, true).unwrap().is_none());
        assert_eq!(names(&spool.dir(State::Done)).len(), 1);
        assert_eq!(names(claims.path()), [DELIVERED_DIR, ".lock"]);
    }

    /// Rule 18: a delivered file that could not reach done/ goes there on
    /// recovery, never to incoming/; while done/ still refuses it, its
    /// claim folder stays.
    #[test]
    fn a_file_marked_delivered_is_recovered_into_done_never_incoming() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        put(&spool, "a", "1");
        put(&spool, "b", "2");
        let claims = ClaimFolder::create(&spool).unwrap();
        let a = claims
            .claim(OsStr::new("a"), SystemTime::now())
            .unwrap()
            .unwrap();
        claims
            .claim(OsStr::new("b"), SystemTime::now())
            .unwrap()
            .unwrap();
        let marked = claims.mark_delivered(&a).unwrap();
        assert!(!a.path.exists() && marked.path.exists());
        assert_eq!(marked.name, a.name);
        let dir = claims.path().to_path_buf();
        // done/ unusable: a file where the folder should be.
        let done = spool.dir(State::Done);
        fs::remove_dir(&done).unwrap();
        fs::write(&done, "").unwrap();
        assert_eq!(claims.close().unwrap(), 1, "b returns, a stays");
        assert!(marked.path.exists(), "kept while done/ refuses it");
        assert_eq!(names(&spool.dir(State::Incoming)).len(), 1);
        assert_eq!(recover_dead_claims(&spool).unwrap(), 0);
        assert!(marked.path.exists());
        fs::remove_file(&done).unwrap();
        fs::create_dir(&done).unwrap();
        assert_eq!(recover_dead_claims(&spool).unwrap(), 0);
        assert_eq!(names(&done).len(), 1);
        assert!(names(&done)[0].starts_with("a~sp.k"));
        assert!(!dir.exists(), "the claim folder is gone once empty");
        assert_eq!(names(&spool.dir(State::Incoming)).len(), 1, "only b");
    }

    #[test]
    fn a_half_built_claim_folder_is_left_alone_until_the_grace_period_ends() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        // Another sender's folder between mkdir and creating its lock, and
        // one between creating the lock and taking it.
        fs::create_dir(spool.tmp().join("claim-1-a")).unwrap();
        fs::create_dir(spool.tmp().join("claim-2-b")).unwrap();
        fs::write(spool.tmp().join("claim-2-b").join(LOCK_FILE), "").unwrap();
        let (_, _, _held) = create_locked_folder(&spool, CLAIM_PREFIX).unwrap();
        // A dead one past building: something beside its (free) lock.
        let (_, built, lock) = create_locked_folder(&spool, CLAIM_PREFIX).unwrap();
        fs::write(built.join(".circuits.json"), "{}").unwrap();
        drop(lock);
        let now = SystemTime::now();
        assert_eq!(
            remove_dead_folders_at(&spool, CLAIM_PREFIX, now).unwrap(),
            1
        );
        assert!(!built.exists());
        assert_eq!(names(&spool.tmp()).len(), 3);
        let later = now + BUILD_GRACE + Duration::from_secs(1);
        assert_eq!(
            remove_dead_folders_at(&spool, CLAIM_PREFIX, later).unwrap(),
            2,
            "only the held one stays"
        );
        assert_eq!(names(&spool.tmp()).len(), 1);
    }

    #[test]
    fn loose_files_in_sending_return_and_symlinks_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("s")).unwrap();
        let sending = spool.dir(State::Sending);
        fs::write(sending.join("loose"), "1").unwrap();
        fs::write(sending.join(".tool-work"), "2").unwrap();
        let outside = root.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("x"), "3").unwrap();
        std::os::unix::fs::symlink(&outside, sending.join("link")).unwrap();
        assert_eq!(recover_dead_claims(&spool).unwrap(), 2);
        assert_eq!(names(&spool.dir(State::Incoming)), ["link", "loose"]);
        assert_eq!(names(&outside), ["x"]);
        assert_eq!(names(&sending), [".tool-work"]);
    }

    #[test]
    fn flush_makes_a_retry_due_under_a_new_name_keeping_key_and_attempts() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path().join("s")).unwrap();
        let incoming = spool.dir(State::Incoming);
        let old = "a.json~sp.k0123456789abcdef01234567.u7.t1700000000.a2.rhttp-503";
        let later = SystemTime::now() + Duration::from_secs(3600);
        let file = File::create(incoming.join(old)).unwrap();
        file.set_modified(later).unwrap();
        drop(file);
        let now = SystemTime::now();
        let moved = flush(&spool, OsStr::new(old), now).unwrap().unwrap();
        let got = names(&incoming);
        assert_eq!(got.len(), 1);
        assert_ne!(got[0], old, "a rename is what wakes senders");
        let (was, is) = (
            SpoolName::parse(OsStr::new(old)),
            SpoolName::parse(moved.file_name().unwrap()),
        );
        assert_eq!(
            (is.key, is.first_attempt, is.attempts, &is.last_reason),
            (was.key, was.first_attempt, was.attempts, &was.last_reason)
        );
        assert_ne!(is.uniq, was.uniq);
        let meta = fs::metadata(&moved).unwrap();
        assert!(meta.modified().unwrap() <= now + Duration::from_secs(1));
        assert_eq!(flush(&spool, OsStr::new(old), now).unwrap(), None);
    }
}
