//! The portable backend of the watcher: polling, as Fluent Bit and the
//! OpenTelemetry collector do where there is no inotify.
//!
//! Each tick costs one `stat` per folder. A folder is listed only when its
//! mtime moved, while its mtime is so recent that a change within the same
//! timestamp tick could hide (filesystems with whole-second times), or
//! every [`RELIST`] in case a change was missed anyway. Names not in the
//! previous listing are reported. A folder whose listing takes long (tens of
//! thousands of files) makes the ticks longer in proportion, up to
//! [`MAX_TICK`], so polling a large backlog costs a bounded share of a core.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{Batch, Seen};

/// The shortest time between two looks at the folders.
pub const TICK: Duration = Duration::from_millis(100);
/// The longest, however large the folders.
pub const MAX_TICK: Duration = Duration::from_secs(2);
/// How long after a change a folder is listed on every tick anyway: longer
/// than the coarsest timestamp granularity in use (one second).
const UNSURE: Duration = Duration::from_secs(2);
/// A folder is listed at least this often, changed or not.
const RELIST: Duration = Duration::from_secs(30);
/// Ticks are this many times as long as the last listings took.
const BACKOFF_FACTOR: u32 = 10;

pub(super) struct Poll {
    state: Mutex<State>,
}

struct State {
    folders: Vec<Folder>,
    /// When the next look is due; kept across cancelled waits, so callers
    /// that are woken often by other things do not postpone it.
    due: Instant,
    tick: Duration,
}

struct Folder {
    dir: PathBuf,
    folder: usize,
    /// (inode, mtime seconds, mtime nanoseconds) at the last listing.
    stamp: Option<(u64, i64, i64)>,
    listed: Instant,
    names: HashSet<OsString>,
}

impl Poll {
    pub(super) fn new() -> Poll {
        Poll {
            state: Mutex::new(State {
                folders: Vec::new(),
                due: Instant::now() + TICK,
                tick: TICK,
            }),
        }
    }

    /// Adds a folder; the files already in it are not reported.
    pub(super) fn add(&mut self, dir: &Path, folder: usize) -> std::io::Result<()> {
        let mut f = Folder {
            dir: dir.to_path_buf(),
            folder,
            stamp: None,
            listed: Instant::now(),
            names: HashSet::new(),
        };
        let meta = std::fs::metadata(dir)?;
        f.stamp = Some(stamp(&meta));
        f.names = list(dir)?;
        self.state_mut().folders.push(f);
        Ok(())
    }

    fn state_mut(&mut self) -> &mut State {
        self.state.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for files to appear and returns them. Never fails: a folder
    /// that cannot be read now is tried again on the next tick.
    pub(super) async fn next(&self) -> Batch {
        loop {
            let due = self.lock().due;
            tokio::time::sleep_until(due.into()).await;
            let batch = self.look(Instant::now(), SystemTime::now());
            if !batch.seen.is_empty() {
                return batch;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One tick: stat every folder, list those that may have changed.
    fn look(&self, now: Instant, wall: SystemTime) -> Batch {
        let mut state = self.lock();
        let mut batch = Batch::default();
        let mut listing = Duration::ZERO;
        for f in &mut state.folders {
            let Ok(meta) = std::fs::metadata(&f.dir) else {
                continue;
            };
            let new_stamp = stamp(&meta);
            let changed_at = meta.modified().unwrap_or(wall);
            if !should_list(
                f.stamp,
                new_stamp,
                changed_at,
                wall,
                now.saturating_duration_since(f.listed),
            ) {
                continue;
            }
            let started = Instant::now();
            let Ok(names) = list(&f.dir) else {
                continue;
            };
            for name in names.difference(&f.names) {
                batch.seen.push(Seen {
                    folder: f.folder,
                    name: name.clone(),
                    finished: false,
                });
            }
            f.names = names; // dropping 50,000 old names takes time too
            f.stamp = Some(new_stamp);
            f.listed = now;
            listing += started.elapsed();
        }
        state.tick = tick_after(listing);
        state.due = now + state.tick;
        batch
    }
}

fn stamp(meta: &std::fs::Metadata) -> (u64, i64, i64) {
    (meta.ino(), meta.mtime(), meta.mtime_nsec())
}

/// Whether a folder must be listed: its stamp moved, its last change is
/// too recent to trust the stamp, or the last listing is [`RELIST`] old.
fn should_list(
    last: Option<(u64, i64, i64)>,
    now_stamp: (u64, i64, i64),
    changed_at: SystemTime,
    wall: SystemTime,
    since_listed: Duration,
) -> bool {
    let recent = wall
        .duration_since(changed_at)
        .map_or(true, |age| age < UNSURE);
    last != Some(now_stamp) || recent || since_listed >= RELIST
}

/// The next tick's length, from how long this tick's listings took.
fn tick_after(listing: Duration) -> Duration {
    (listing * BACKOFF_FACTOR).clamp(TICK, MAX_TICK)
}

/// The names in a folder, without sub-folders (as inotify reports them).
fn list(dir: &Path) -> std::io::Result<HashSet<OsString>> {
    let mut names = HashSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        names.insert(entry.file_name());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_folder_is_listed_when_it_changed_or_may_have() {
        let t0 = SystemTime::UNIX_EPOCH + S(1_000_000);
        let a = (1, 1000, 0);
        let b = (1, 1000, 5);
        // Unchanged and settled: only a stat.
        assert!(!should_list(Some(a), a, t0, t0 + S(5), S(1)));
        // The mtime moved, or the folder was replaced.
        assert!(should_list(Some(a), b, t0, t0 + S(5), S(1)));
        assert!(should_list(Some(a), (2, 1000, 0), t0, t0 + S(5), S(1)));
        // Changed within the last two seconds: the same stamp may hide a
        // second change on a filesystem with whole-second times.
        assert!(should_list(Some(a), a, t0, t0 + S(1), S(1)));
        // An mtime in the future (clock set back) is not trusted either.
        assert!(should_list(Some(a), a, t0 + S(60), t0, S(1)));
        // Listed again now and then, whatever the stamp says.
        assert!(should_list(Some(a), a, t0, t0 + S(60), RELIST));
    }

    #[test]
    fn large_folders_are_looked_at_less_often() {
        assert_eq!(tick_after(Duration::ZERO), TICK);
        assert_eq!(
            tick_after(Duration::from_millis(50)),
            Duration::from_millis(500)
        );
        assert_eq!(tick_after(S(1)), MAX_TICK);
    }

    #[test]
    fn new_files_are_reported_once_and_folders_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), "").unwrap();
        let mut poll = Poll::new();
        poll.add(dir.path(), 7).unwrap();
        std::fs::write(dir.path().join("new"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let now = Instant::now();
        let batch = poll.look(now, SystemTime::now());
        let names: Vec<_> = batch
            .seen
            .iter()
            .map(|s| (s.folder, s.name.clone(), s.finished))
            .collect();
        assert_eq!(names, [(7, OsString::from("new"), false)]);
        assert!(poll.look(now, SystemTime::now()).seen.is_empty());
    }

    #[test]
    fn a_settled_folder_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut poll = Poll::new();
        poll.add(dir.path(), 0).unwrap();
        // A file that appears without moving the folder's stamp (as on a
        // filesystem with coarse times) is found while the change is recent,
        // and only on the relist once the folder looks settled.
        let before = std::fs::metadata(dir.path()).unwrap();
        std::fs::write(dir.path().join("hidden"), "").unwrap();
        let f = std::fs::File::open(dir.path()).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        let later = SystemTime::now() + S(10);
        let now = Instant::now();
        assert!(poll.look(now, later).seen.is_empty(), "settled: stat only");
        assert_eq!(poll.look(now + RELIST, later).seen.len(), 1);
    }
}
