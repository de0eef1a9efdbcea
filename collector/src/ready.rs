//! When a file in a source folder is complete: pure rules, driven by the
//! caller's clock and the file's times.
//!
//! `settle`: nothing has touched the file for the settle time. Both mtime
//! and ctime count: a writer that appends moves both, and a copy that sets
//! an old mtime at the end (`cp -p`, `rsync -t`) still moves ctime, which no
//! one can set back. One look at the times is enough, so `--once` needs no
//! waiting and the long-running collector keeps no per-file state.
//!
//! `close-write`: inotify's word that the writer closed the file or renamed
//! it into place; files found by a scan instead fall back to `settle`.
//!
//! `marker`: a companion `NAME.ready` (or another configured suffix) says
//! NAME is complete.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

/// `Ok` when settled; otherwise the earliest time it may be.
pub fn settled(
    mtime: SystemTime,
    ctime: SystemTime,
    now: SystemTime,
    settle: Duration,
) -> Result<(), SystemTime> {
    let touched = mtime.max(ctime);
    let ready_at = touched + settle;
    if now >= ready_at {
        Ok(())
    } else {
        Err(ready_at)
    }
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

    #[test]
    fn settle_counts_from_the_later_of_mtime_and_ctime() {
        let t0 = SystemTime::UNIX_EPOCH + S(1000);
        assert_eq!(settled(t0, t0, t0 + S(1), S(1)), Ok(()));
        assert_eq!(settled(t0, t0, t0 + S(0), S(1)), Err(t0 + S(1)));
        // An old mtime restored by a copy does not make it settled early.
        assert_eq!(settled(t0 - S(3600), t0, t0, S(1)), Err(t0 + S(1)));
        // An mtime in the future (clock skew) waits for it.
        assert_eq!(settled(t0 + S(10), t0, t0, S(1)), Err(t0 + S(11)));
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
