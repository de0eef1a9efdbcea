//! sd_notify from the test's side: a datagram socket the programs are told
//! about through `NOTIFY_SOCKET`, as systemd would, so that a test waits
//! for `READY=1` (the program is watching and serving) instead of sleeping
//! for a guess of how long start-up takes.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Running, TestSpool, spawn};

/// How long a program may take to say it is ready: generous, for a
/// loaded machine and emulated builds.
pub const READY_LIMIT: Duration = Duration::from_secs(60);

/// A bound datagram socket and a way to wait for a message on it.
pub struct NotifySocket {
    pub socket: UnixDatagram,
    pub path: PathBuf,
}

impl NotifySocket {
    /// A socket beside `spool`, its own for each call.
    pub fn new(spool: &TestSpool) -> NotifySocket {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = spool.side("run").join(format!("notify-{n}"));
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket { socket, path }
    }

    /// Reads messages until one contains `want`; panics after `limit`.
    pub fn expect_within(&self, want: &str, limit: Duration) -> String {
        self.wait_for(want, limit, || None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads messages until one contains `want` (20 s at most).
    pub fn expect(&self, want: &str) -> String {
        self.expect_within(want, Duration::from_secs(20))
    }

    /// Reads messages until one contains `want`; an error after `limit`,
    /// or as soon as `gone` says why no message will come.
    fn wait_for(
        &self,
        want: &str,
        limit: Duration,
        mut gone: impl FnMut() -> Option<String>,
    ) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if text.contains(want) {
                        return Ok(text);
                    }
                }
                // A read timeout, or a signal another test caused: no
                // answer yet.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("no {want:?} message: {e}")),
            }
            if let Some(why) = gone() {
                return Err(format!("no {want:?} message: {why}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("no {want:?} message within {limit:?}"));
            }
        }
    }
}

/// Starts `cmd` with `NOTIFY_SOCKET` set and returns once it has sent
/// `READY=1`. A program that exits first, or never says it, fails the
/// test with its stderr.
pub fn spawn_ready(spool: &TestSpool, cmd: &mut Command) -> Running {
    let notify = NotifySocket::new(spool);
    let mut running = spawn(cmd.env("NOTIFY_SOCKET", &notify.path));
    let waited = notify.wait_for("READY=1", READY_LIMIT, || {
        let status = running.child.try_wait().ok().flatten()?;
        Some(format!("it exited first ({status})"))
    });
    if let Err(e) = waited {
        panic!("{e}; stderr:\n{}", running.stderr_so_far());
    }
    running
}
