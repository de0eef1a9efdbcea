//! Noticing files as they arrive in folders: the sender watches
//! `incoming/`, the collector its source folders.
//!
//! Two backends behind one interface. On Linux, inotify
//! ([`inotify`](self::inotify)): events name the file, and say when its
//! writer closed it. Elsewhere (AIX, the BSDs, macOS), when inotify cannot
//! be had, or with `SPOOLPOST_WATCH=poll`, polling ([`poll`](self::poll)):
//! a `stat` of each folder per tick and a listing only when it changed.
//! Polling cannot see a writer close a file, so every file it reports is
//! unfinished and `close-write` readiness becomes `settle` (one warning).

#[cfg(target_os = "linux")]
mod inotify;
mod poll;

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that forces polling where inotify exists
/// (`SPOOLPOST_WATCH=poll`), so that path is tested on Linux.
pub const WATCH_ENV: &str = "SPOOLPOST_WATCH";

/// Whether polling is forced by [`WATCH_ENV`], read once.
fn poll_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| spoolpost_protocol::fsops::switch(WATCH_ENV, "poll", "inotify"))
}

enum Backend {
    #[cfg(target_os = "linux")]
    Inotify(inotify::Inotify),
    Poll(poll::Poll),
}

pub struct Watcher {
    backend: Backend,
    /// Whether the settle fallback of `close-write` was reported.
    warned: bool,
}

/// A file that appeared or was finished in watched folder `folder`.
#[derive(Debug)]
pub struct Seen {
    pub folder: usize,
    pub name: OsString,
    /// Renamed into the folder, or closed after writing: the writer is done
    /// with it, as far as inotify can tell. Never set when polling.
    pub finished: bool,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub seen: Vec<Seen>,
    /// Events were lost: rescan the folders.
    pub overflow: bool,
}

impl Watcher {
    /// Watches `dir` for files renamed into it or closed after writing,
    /// and created in it when files move by `link` (as the spool's other
    /// processes then do too: they share its filesystem).
    pub fn new(dir: &Path) -> io::Result<Watcher> {
        let mut watcher = Watcher::empty()?;
        watcher.watch(dir, 0, spoolpost_protocol::fsops::moves_by_link())?;
        Ok(watcher)
    }

    /// A watcher with no folders yet.
    pub fn empty() -> io::Result<Watcher> {
        Ok(Watcher {
            backend: backend(),
            warned: false,
        })
    }

    /// Whether this watcher polls (and so never reports a file finished).
    pub fn polls(&self) -> bool {
        matches!(self.backend, Backend::Poll(_))
    }

    /// Adds a folder, reported as `folder` in events. With `created`, files
    /// are also reported when created (not yet finished), for callers that
    /// judge readiness themselves; without, the caller wants to know when
    /// files are finished, which polling cannot tell: it says so once.
    pub fn add(&mut self, dir: &Path, folder: usize, created: bool) -> io::Result<()> {
        if !created && self.polls() && !self.warned {
            self.warned = true;
            tracing::warn!(folder = %dir.display(), "polling cannot see a writer close a file: close-write readiness falls back to settle");
        }
        self.watch(dir, folder, created)
    }

    // `created` matters to inotify only (Linux).
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn watch(&mut self, dir: &Path, folder: usize, created: bool) -> io::Result<()> {
        match &mut self.backend {
            #[cfg(target_os = "linux")]
            Backend::Inotify(b) => b.add(dir, folder, created),
            Backend::Poll(b) => b.add(dir, folder),
        }
    }

    /// Waits for the next events and returns them all. Folders are not
    /// reported.
    pub async fn next(&self) -> io::Result<Batch> {
        match &self.backend {
            #[cfg(target_os = "linux")]
            Backend::Inotify(b) => b.next().await,
            Backend::Poll(b) => Ok(b.next().await),
        }
    }
}

#[cfg(target_os = "linux")]
fn backend() -> Backend {
    if poll_forced() {
        return Backend::Poll(poll::Poll::new());
    }
    match inotify::Inotify::new() {
        Ok(b) => Backend::Inotify(b),
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling instead");
            Backend::Poll(poll::Poll::new())
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn backend() -> Backend {
    let _ = poll_forced(); // read, so a wrong value is still reported
    Backend::Poll(poll::Poll::new())
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
    /// On tokio's clock, so paused time drives the programs' loops in tests.
    last: tokio::time::Instant,
}

impl Pacer {
    /// A pacer whose first rescan may start at once.
    pub fn new(gap: Duration) -> Pacer {
        Pacer {
            gap,
            last: tokio::time::Instant::now() - gap,
        }
    }

    /// When the last rescan started.
    pub fn last(&self) -> Instant {
        self.last.into_std()
    }

    /// Waits until the next rescan may start, and marks it started.
    pub async fn ready(&mut self) {
        let since = self.last.elapsed();
        if since < self.gap {
            tokio::time::sleep(self.gap - since).await;
        }
        self.last = tokio::time::Instant::now();
    }
}
