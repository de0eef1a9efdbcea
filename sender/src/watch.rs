//! Noticing new files in `incoming/` as they arrive, through inotify.
//!
//! Events carry the file's name, so a new file is offered for sending
//! without reading the directory again. When the kernel's event queue
//! overflows the batch says so and the caller rescans instead.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
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
}

#[derive(Debug, Default)]
pub struct Batch {
    pub names: Vec<OsString>,
    /// Events were lost: rescan the directory.
    pub overflow: bool,
}

impl Watcher {
    /// Watches a directory for files renamed into it or closed after writing.
    pub fn new(dir: &Path) -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            dir,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
        )?;
        // SAFETY: `Fd` owns the Inotify, which owns its descriptor and keeps
        // it open, unchanged, until the Inotify is dropped with the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Watcher { fd })
    }

    /// Waits for the next events and returns them all.
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
                        if let Some(name) = event.name {
                            batch.names.push(name);
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
