//! Noticing files as they arrive in folders, through inotify: the sender
//! watches `incoming/`, the collector its source folders.
//!
//! Events carry the file's name, so a new file can be handled without
//! reading its folder again. When the kernel's event queue overflows the
//! batch says so and the caller rescans instead.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct Watcher {
    fd: AsyncFd<Fd>,
    folders: HashMap<WatchDescriptor, usize>,
}

/// A file that appeared or was finished in watched folder `folder`.
#[derive(Debug)]
pub struct Seen {
    pub folder: usize,
    pub name: OsString,
    /// Renamed into the folder, or closed after writing: the writer is done
    /// with it, as far as inotify can tell.
    pub finished: bool,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub seen: Vec<Seen>,
    /// Events were lost: rescan the folders.
    pub overflow: bool,
}

impl Watcher {
    /// Watches `dir` for files renamed into it or closed after writing.
    pub fn new(dir: &Path) -> io::Result<Watcher> {
        let mut watcher = Watcher::empty()?;
        watcher.add(dir, 0, false)?;
        Ok(watcher)
    }

    /// A watcher with no folders yet.
    pub fn empty() -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: `Fd` owns the Inotify, which owns its descriptor and keeps
        // it open, unchanged, until the Inotify is dropped with the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Watcher {
            fd,
            folders: HashMap::new(),
        })
    }

    /// Adds a folder, reported as `folder` in events. With `created`, files
    /// are also reported when created (not yet finished), for callers that
    /// judge readiness themselves.
    pub fn add(&mut self, dir: &Path, folder: usize, created: bool) -> io::Result<()> {
        let mut flags = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
        if created {
            flags |= AddWatchFlags::IN_CREATE;
        }
        let wd = self.fd.get_ref().0.add_watch(dir, flags)?;
        self.folders.insert(wd, folder);
        Ok(())
    }

    /// Waits for the next events and returns them all. Folders are not
    /// reported.
    pub async fn next(&self) -> io::Result<Batch> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().0.read_events() {
                Ok(events) => {
                    let mut batch = Batch::default();
                    for event in events {
                        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                            batch.overflow = true;
                        }
                        if event.mask.contains(AddWatchFlags::IN_ISDIR) {
                            continue;
                        }
                        if let (Some(name), Some(folder)) =
                            (event.name, self.folders.get(&event.wd))
                        {
                            let finished = event.mask.intersects(
                                AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
                            );
                            batch.seen.push(Seen {
                                folder: *folder,
                                name,
                                finished,
                            });
                        }
                    }
                    return Ok(batch);
                }
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

/// The next batch of an optional watcher: without one, never (callers
/// then rely on their rescan timer).
pub async fn next_of(watcher: Option<&Watcher>) -> io::Result<Batch> {
    match watcher {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Keeps full rescans at least `gap` apart when timers or events ask for
/// them in quick succession, so a busy folder is not read over and over.
pub struct Pacer {
    gap: Duration,
    last: Instant,
}

impl Pacer {
    /// A pacer whose first rescan may start at once.
    pub fn new(gap: Duration) -> Pacer {
        Pacer {
            gap,
            last: Instant::now() - gap,
        }
    }

    /// When the last rescan started.
    pub fn last(&self) -> Instant {
        self.last
    }

    /// Waits until the next rescan may start, and marks it started.
    pub async fn ready(&mut self) {
        let since = self.last.elapsed();
        if since < self.gap {
            tokio::time::sleep(self.gap - since).await;
        }
        self.last = Instant::now();
    }
}
