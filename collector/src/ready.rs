//! When a file in a source folder is complete: pure rules, driven by the
//! caller's clock and the file's times.
//!
//! `settle`: nothing has touched the file for the settle time. Both mtime
//! and ctime count: a writer that appends moves both, and a copy that sets
//! an old mtime at the end (`cp -p`, `rsync -t`) still moves ctime, which no
//! one can set back. One look at the times is enough, so `--once` needs no
//! waiting and the long-running collector keeps no per-file state.
//!
//! Clock skew: a time ahead of the clock says nothing about when the file
//! was last touched, and waiting for it would leave the file at its source
//! for as long (ten years for a producer whose clock was wrong). An mtime
//! ahead (set by a copy from a host whose clock is ahead, or by `touch`) is
//! ignored and the file judged by its ctime, which the kernel sets. A
//! ctime ahead too (the clock was set back, or a network filesystem's
//! server runs ahead) leaves only observation: the file is complete once
//! seen with the same times and size for the settle time, which needs the
//! caller to remember when it first saw them. Either way the caller is
//! told how far ahead the times were, to warn once.
//!
//! `close-write`: inotify's word that the writer closed the file or renamed
//! it into place; files found by a scan instead fall back to `settle`.
//!
//! `marker`: a companion `NAME.ready` (or another configured suffix) says
//! NAME is complete.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

/// What one look at a file shows of it: enough to tell a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub size: u64,
}

/// When a file is complete under `settle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Yes,
    /// Not before this time, by the file's own times.
    NotBefore(SystemTime),
    /// Its ctime is ahead of the clock: complete once seen unchanged for
    /// the settle time. The caller remembers when it first saw this
    /// [`Look`] (from now, if it had not) and looks again at this time.
    Watch(SystemTime),
}

/// The verdict on a file, and how far its times were ahead of the clock
/// (`None` unless more than [`SKEW_WARN`]), for a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged {
    pub settled: Settled,
    pub ahead: Option<Duration>,
}

/// Times ahead of the clock by less than this are not warned about: a
/// network filesystem's server a little ahead is common and harmless.
pub const SKEW_WARN: Duration = Duration::from_secs(1);

/// Whether a file that looks like `look` now is complete. `seen_since` is
/// when the caller first saw this same look, if it did.
pub fn settled(
    look: Look,
    now: SystemTime,
    settle: Duration,
    seen_since: Option<SystemTime>,
) -> Judged {
    let ahead_by = |t: SystemTime| t.duration_since(now).ok();
    let ahead = ahead_by(look.mtime)
        .max(ahead_by(look.ctime))
        .filter(|d| *d > SKEW_WARN);
    let settled = if look.ctime > now {
        let since = seen_since.unwrap_or(now);
        if now >= since + settle && seen_since.is_some() {
            Settled::Yes
        } else {
            Settled::Watch(since + settle)
        }
    } else {
        // The ctime is the kernel's and moves with every change; an mtime
        // ahead of the clock is a stamp someone set, not a change to come.
        let touched = if look.mtime > now {
            look.ctime
        } else {
            look.mtime.max(look.ctime)
        };
        let ready_at = touched + settle;
        if now >= ready_at {
            Settled::Yes
        } else {
            Settled::NotBefore(ready_at)
        }
    };
    Judged { settled, ahead }
}

/// If `name` is a marker (ends with one of `suffixes`, with something
/// before it), the name of the data file it marks.
pub fn marked_by<'a>(name: &'a OsStr, suffixes: &[String]) -> Option<&'a OsStr> {
    let bytes = name.as_bytes();
    suffixes.iter().find_map(|suffix| {
        let s = suffix.as_bytes();
        (bytes.len() > s.len() && bytes.ends_with(s))
            .then(|| OsStr::from_bytes(&bytes[..bytes.len() - s.len()]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn look(mtime: SystemTime, ctime: SystemTime) -> Look {
        Look {
            mtime,
            ctime,
            size: 1,
        }
    }

    fn verdict(mtime: SystemTime, ctime: SystemTime, now: SystemTime, settle: Duration) -> Settled {
        settled(look(mtime, ctime), now, settle, None).settled
    }

    #[test]
    fn settle_counts_from_the_later_of_mtime_and_ctime() {
        let t0 = SystemTime::UNIX_EPOCH + S(1000);
        assert_eq!(verdict(t0, t0, t0 + S(1), S(1)), Settled::Yes);
        assert_eq!(
            verdict(t0, t0, t0 + S(0), S(1)),
            Settled::NotBefore(t0 + S(1))
        );
        // An old mtime restored by a copy does not make it settled early.
        assert_eq!(
            verdict(t0 - S(3600), t0, t0, S(1)),
            Settled::NotBefore(t0 + S(1))
        );
        // An mtime a moment ago still counts.
        assert_eq!(
            verdict(t0 + S(1), t0, t0 + S(1), S(1)),
            Settled::NotBefore(t0 + S(2))
        );
        // A zero settle takes at once what has not moved since the look.
        assert_eq!(verdict(t0, t0, t0, S(0)), Settled::Yes);
    }

    /// A regression: an mtime ahead of the clock (a producer's wrong
    /// clock, `touch -d`, a copy keeping a skewed stamp) made the file wait
    /// for it: forever, for one stamped ten years ahead, and silently.
    #[test]
    fn an_mtime_ahead_of_the_clock_is_judged_by_ctime_and_reported() {
        let t0 = SystemTime::UNIX_EPOCH + S(1_700_000_000);
        let ten_years = S(3650 * 24 * 3600);
        for ahead in [S(3), S(24 * 3600), ten_years] {
            let j = settled(look(t0 + ahead, t0), t0 + S(1), S(1), None);
            assert_eq!(j.settled, Settled::Yes, "{ahead:?} ahead");
            assert_eq!(j.ahead, Some(ahead - S(1)), "told how far ahead");
            // Still not before the settle time after the last change.
            let j = settled(look(t0 + ahead, t0), t0, S(1), None);
            assert_eq!(j.settled, Settled::NotBefore(t0 + S(1)));
        }
        // A small skew is judged the same way but not warned about.
        let j = settled(look(t0 + S(1) / 2, t0), t0, S(0), None);
        assert_eq!((j.settled, j.ahead), (Settled::Yes, None));
        // Times in the past say nothing is ahead.
        assert_eq!(settled(look(t0, t0), t0 + S(9), S(1), None).ahead, None);
    }

    /// A ctime ahead too (the clock was set back, a network filesystem's
    /// server runs ahead): only seeing the file unchanged for the settle
    /// time makes it complete.
    #[test]
    fn a_ctime_ahead_of_the_clock_is_judged_by_an_observed_quiet_period() {
        let t0 = SystemTime::UNIX_EPOCH + S(1_700_000_000);
        let l = look(t0 + S(3600), t0 + S(3600));
        // First look: watch, look again after the settle time.
        let j = settled(l, t0, S(5), None);
        assert_eq!(j.settled, Settled::Watch(t0 + S(5)));
        assert_eq!(j.ahead, Some(S(3600)));
        // Seen unchanged, but not for long enough yet.
        assert_eq!(
            settled(l, t0 + S(4), S(5), Some(t0)).settled,
            Settled::Watch(t0 + S(5))
        );
        // Unchanged for the settle time: complete.
        assert_eq!(settled(l, t0 + S(5), S(5), Some(t0)).settled, Settled::Yes);
        // A zero settle still needs a second look, never one.
        assert_eq!(settled(l, t0, S(0), None).settled, Settled::Watch(t0));
        assert_eq!(settled(l, t0, S(0), Some(t0)).settled, Settled::Yes);
    }

    #[test]
    fn markers_name_their_data_file() {
        let suffixes = vec![".ready".to_string(), ".done".to_string()];
        assert_eq!(
            marked_by(OsStr::new("a.json.ready"), &suffixes),
            Some(OsStr::new("a.json"))
        );
        assert_eq!(
            marked_by(OsStr::new("a.done"), &suffixes),
            Some(OsStr::new("a"))
        );
        assert_eq!(marked_by(OsStr::new(".ready"), &suffixes), None);
        assert_eq!(marked_by(OsStr::new("a.json"), &suffixes), None);
    }
}
