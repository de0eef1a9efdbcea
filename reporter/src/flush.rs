//! `reporter flush`: makes waiting retries due now and wakes the running
//! senders, as Postfix's `postqueue -f` does. This module only chooses the
//! files; the move itself is `spool::flush` (docs/spool.md, the flush row).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;
use spoolpost_protocol::fullname;
use spoolpost_protocol::name::{SpoolName, retry_wait};
use spoolpost_protocol::spool::{self, Spool, State, annotate, is_data_name};

/// Whether a file waiting in `incoming/` should be flushed: only a retry
/// that is not due yet. A due one is taken by the senders anyway, and one
/// this flush already moved is due (its mtime is the flush's start), so a
/// renamed file that `readdir` shows again is not moved twice.
pub fn wants_flush(
    attempts: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    now: SystemTime,
    cap: Duration,
) -> bool {
    retry_wait(attempts, mtime, ctime, now, cap).is_some()
}

/// Flushes every waiting retry (of `receiver`'s, if given), printing each
/// one's original name on `out`. Returns how many moved.
pub fn flush_waiting(
    spool: &Spool,
    router: Option<&Router>,
    receiver: Option<&str>,
    cap: Duration,
    out: &mut impl Write,
) -> Result<u64, Failure> {
    let incoming = spool.dir(State::Incoming);
    let now = SystemTime::now();
    let mut flushed = 0;
    let entries =
        std::fs::read_dir(&incoming).map_err(|e| annotate(e, "cannot read", &incoming))?;
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, "cannot read", &incoming))?;
        let name = entry.file_name();
        let mut parsed = SpoolName::parse(&name);
        if !is_data_name(&name) || parsed.attempts == 0 {
            continue;
        }
        // Gone since the listing: a sender took it.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir()
            || !wants_flush(
                parsed.attempts,
                meta.modified().unwrap_or(UNIX_EPOCH),
                spoolpost_protocol::fsops::ctime(&meta),
                now,
                cap,
            )
        {
            continue;
        }
        if let (Some(want), Some(r)) = (receiver, router) {
            fullname::resolve(spool.root(), &mut parsed);
            let routed = r
                .receiver_of(&parsed.original)
                .map(|i| r.receivers()[i].name.as_str());
            if routed != Some(want) {
                continue;
            }
        }
        if spool::flush(spool, &name, now)?.is_some() {
            flushed += 1;
            fullname::resolve(spool.root(), &mut parsed);
            // The names are for the operator; a closed pipe (| head)
            // does not stop the flush.
            let _ = writeln!(out, "{}", parsed.display_original());
        }
    }
    Ok(flushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retries_not_yet_due_are_flushed() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cap = Duration::from_secs(7200);
        let hour = Duration::from_secs(3600);
        let put_back = now - Duration::from_secs(10);
        assert!(wants_flush(1, now + hour, put_back, now, cap));
        assert!(
            !wants_flush(0, now + hour, put_back, now, cap),
            "never tried: due"
        );
        assert!(
            !wants_flush(3, now - hour, put_back, now, cap),
            "due already"
        );
        assert!(!wants_flush(1, now, now, now, cap), "flushed by this run");
        assert!(
            !wants_flush(1, now + hour, now + hour, now, cap),
            "the clock was set back: due"
        );
    }
}
