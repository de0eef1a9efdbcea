//! Telling a service manager how we are: the sd_notify protocol, one
//! datagram of `KEY=VALUE` lines to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! `@`). No libsystemd: the protocol is one `sendto`, and a library would
//! add a system dependency for it.
//!
//! Without `NOTIFY_SOCKET` every call does nothing, so the programs call
//! it unconditionally. A message that cannot be sent is logged once at
//! debug level and dropped: a service manager that stopped listening must
//! never stop the work.
//!
//! The watchdog (`WATCHDOG=1` at half of `WATCHDOG_USEC`) is petted by
//! [`Watchdog::tick`], which each program awaits from its own main loop, so
//! that a stuck loop, not just a live process, is what the manager sees.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tokio::time::Instant;

/// Where `NOTIFY_SOCKET` says to send: a path or an abstract name.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

/// Reads a `NOTIFY_SOCKET` value; `None` for an empty or unusable one.
pub fn parse_target(value: &std::ffi::OsStr) -> Option<Target> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'@' if bytes.len() > 1 => Some(Target::Abstract(bytes[1..].to_vec())),
        b'/' => Some(Target::Path(value.into())),
        _ => None,
    }
}

/// How often to pet the watchdog: half of `WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is unset or names this process (systemd sets it so a
/// child does not pet its parent's watchdog).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// A status line fit for `STATUS=`: one line, no control characters.
pub fn status_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An abstract socket address (`@name`): Linux's alone.
#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

/// Elsewhere (found by the FreeBSD type-check: `std::os::linux` is not
/// there) an abstract name cannot be reached: the notifier is inert.
#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// The connection to the service manager; inert when there is none.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; inert when it is unset or unusable.
    pub fn from_env() -> Notifier {
        let Some(target) = std::env::var_os("NOTIFY_SOCKET").and_then(|v| parse_target(&v)) else {
            return Notifier::default();
        };
        let addr = match &target {
            Target::Path(p) => SocketAddr::from_pathname(p),
            Target::Abstract(name) => abstract_addr(name),
        };
        match (UnixDatagram::unbound(), addr) {
            (Ok(socket), Ok(addr)) => Notifier {
                socket: Some((socket, addr)),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, ?target, "NOTIFY_SOCKET is unusable; not notifying");
                Notifier::default()
            }
        }
    }

    /// Sends one message (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            tracing::debug!(error = %e, message, "sd_notify message not delivered");
        }
    }

    /// Whether a service manager listens: callers skip work that only
    /// feeds it.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", status_line(status)));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", status_line(status)));
    }

    /// A watchdog for this notifier, from `WATCHDOG_USEC`/`WATCHDOG_PID`.
    pub fn watchdog(&self) -> Watchdog {
        let every = self.socket.as_ref().and_then(|_| {
            watchdog_interval(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            )
        });
        Watchdog {
            every,
            next: Instant::now(),
        }
    }
}

/// The process's notifier, read from the environment once, so a hook in
/// a program's life cycle is one call.
pub fn global() -> &'static Notifier {
    static NOTIFIER: std::sync::OnceLock<Notifier> = std::sync::OnceLock::new();
    NOTIFIER.get_or_init(Notifier::from_env)
}

/// Pets the watchdog from a main loop: `select!` on [`Watchdog::tick`].
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    /// Waits until the next pet is due, and pets. Never completes when
    /// no watchdog is asked for. Cancel-safe: a tick dropped in a
    /// `select!` keeps its deadline for the next call.
    pub async fn tick(&mut self, notifier: &Notifier) {
        let Some(every) = self.every else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.next).await;
        notifier.send("WATCHDOG=1");
        self.next = Instant::now() + every;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn targets_are_paths_or_abstract_names() {
        assert_eq!(
            parse_target(OsStr::new("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target(OsStr::new("@sd-notify")),
            Some(Target::Abstract(b"sd-notify".to_vec()))
        );
        for bad in ["", "@", "relative/path", "vsock:2:1"] {
            assert_eq!(parse_target(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn the_watchdog_is_petted_at_half_its_timeout_for_its_own_process() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn a_status_is_one_line() {
        assert_eq!(status_line("a\nb\tc"), "a b c");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watchdog_tick_never_completes() {
        let n = Notifier::default();
        let mut w = Watchdog {
            every: None,
            next: Instant::now(),
        };
        let done = tokio::time::timeout(Duration::from_secs(3600), w.tick(&n)).await;
        assert!(done.is_err());
    }

    #[test]
    fn messages_arrive_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
        };
        n.ready("serving 2 sources");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving 2 sources");
    }
}
