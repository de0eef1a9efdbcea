//! The Linux backend of the watcher: inotify. Events carry the file's
//! name, so a new file is handled without reading its folder again; when
//! the kernel's event queue overflows the batch says so and the caller
//! rescans instead.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify as Handle, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{Batch, Seen};

struct Fd(Handle);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub(super) struct Inotify {
    fd: AsyncFd<Fd>,
    folders: HashMap<WatchDescriptor, usize>,
}

impl Inotify {
    pub(super) fn new() -> io::Result<Inotify> {
        let inotify = Handle::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: `Fd` owns the Inotify, which owns its descriptor and keeps
        // it open, unchanged, until the Inotify is dropped with the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Inotify {
            fd,
            folders: HashMap::new(),
        })
    }

    pub(super) fn add(&mut self, dir: &Path, folder: usize, created: bool) -> io::Result<()> {
        let mut flags = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
        if created {
            flags |= AddWatchFlags::IN_CREATE;
        }
        let wd = self.fd.get_ref().0.add_watch(dir, flags)?;
        self.folders.insert(wd, folder);
        Ok(())
    }

    pub(super) async fn next(&self) -> io::Result<Batch> {
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
