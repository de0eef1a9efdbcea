//! What `reporter replay` picks from `done/` and how fast it lets it go:
//! pure rules, no I/O and no clock of their own ([`crate::replay`] does the
//! walking and the moves).
//!
//! A file's delivery time is the ctime of its name in `done/`: the rename
//! into `done/` sets it, and nothing changes it afterwards (mtime may be the
//! producer's, days older). A range is half-open, `[after, before)`, so two
//! replays split at one instant pick every file once. With no `before`,
//! the replay's own start is the bound: files delivered while it runs
//! (its own replays among them) are never picked again, so a replay ends.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobMatcher};

/// Which delivered files to replay; every selector given must match.
#[derive(Debug)]
pub struct Selection {
    pub receiver: Option<String>,
    pub name: Option<GlobMatcher>,
    pub delivered_after: Option<SystemTime>,
    pub delivered_before: SystemTime,
}

impl Selection {
    /// Whether a file with this whole original name, routed to `receiver`
    /// (`None`: no route, or no routes asked for) and delivered at
    /// `delivered`, is picked.
    pub fn picks(&self, original: &OsStr, receiver: Option<&str>, delivered: SystemTime) -> bool {
        if let Some(want) = &self.receiver
            && receiver != Some(want.as_str())
        {
            return false;
        }
        if let Some(glob) = &self.name
            && !glob.is_match(original)
        {
            return false;
        }
        if self.delivered_after.is_some_and(|after| delivered < after) {
            return false;
        }
        delivered < self.delivered_before
    }

    /// The selection as a replay in progress shows it to other
    /// reporters: its selectors, the times resolved.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.receiver {
            parts.push(format!("receiver {r}"));
        }
        if let Some(g) = &self.name {
            parts.push(format!("name {}", g.glob().glob()));
        }
        let before = spoolpost_protocol::event::rfc3339(self.delivered_before);
        match self.delivered_after {
            Some(after) => parts.push(format!(
                "delivered {} to {before}",
                spoolpost_protocol::event::rfc3339(after)
            )),
            None => parts.push(format!("delivered before {before}")),
        }
        parts.join(", ")
    }
}

/// A name glob as routes read theirs (`*` does not cross `/`, which a
/// name cannot hold anyway), so `--name` picks what a route with the same
/// glob sends.
pub fn name_glob(glob: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("--name {glob:?} is not a glob: {e}"))
}

/// An instant given on the command line: an RFC 3339 time
/// (`2026-12-05T10:00:00Z`, fractions of a second allowed, `T` or a space)
/// or a duration meaning that long before `now` (`90m`, `1day 6h`).
pub fn instant(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return now
            .checked_sub(ago)
            .ok_or_else(|| format!("{text:?} ago is before the clock's start"));
    }
    Err(format!(
        "{text:?} is neither a time (2026-12-05T10:00:00Z) nor a duration ago (2h, 1day)"
    ))
}

/// How long after the replay's start the `index`-th file (from 0) may move
/// at `per_second` files a second. Measured from the start, not from the
/// previous move, so a slow rename does not slow the whole replay down and
/// a pause is not made up for with a burst of more than one file.
pub fn due(index: u64, per_second: u32) -> Duration {
    let per_second = u64::from(per_second.max(1));
    Duration::from_secs(index / per_second)
        + Duration::from_nanos(index % per_second * 1_000_000_000 / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    fn all() -> Selection {
        Selection {
            receiver: None,
            name: None,
            delivered_after: None,
            delivered_before: at(100),
        }
    }

    #[test]
    fn nothing_delivered_at_or_after_the_bound_is_picked() {
        let s = all();
        assert!(s.picks(OsStr::new("a"), None, at(99)));
        assert!(!s.picks(OsStr::new("a"), None, at(100)), "half-open");
        assert!(!s.picks(OsStr::new("a"), None, at(101)));
    }

    #[test]
    fn a_range_is_half_open_so_two_replays_split_at_one_instant_pick_each_file_once() {
        let early = Selection {
            delivered_before: at(50),
            ..all()
        };
        let late = Selection {
            delivered_after: Some(at(50)),
            ..all()
        };
        for t in [0, 49, 50, 51, 99] {
            let picked = [&early, &late]
                .iter()
                .filter(|s| s.picks(OsStr::new("a"), None, at(t)))
                .count();
            assert_eq!(picked, 1, "delivered at +{t}s");
        }
    }

    #[test]
    fn the_receiver_must_be_the_routed_one() {
        let s = Selection {
            receiver: Some("orders".into()),
            ..all()
        };
        assert!(s.picks(OsStr::new("a"), Some("orders"), at(1)));
        assert!(!s.picks(OsStr::new("a"), Some("audit"), at(1)));
        assert!(!s.picks(OsStr::new("a"), None, at(1)), "no route");
    }

    #[test]
    fn the_name_glob_matches_the_whole_original_as_routes_do() {
        let s = Selection {
            name: Some(name_glob("orders-[01]*.json").unwrap()),
            ..all()
        };
        assert!(s.picks(OsStr::new("orders-1.json"), None, at(1)));
        assert!(s.picks(OsStr::new("orders-17.json"), None, at(1)));
        assert!(!s.picks(OsStr::new("orders-2.json"), None, at(1)));
        assert!(!s.picks(OsStr::new("xorders-1.json"), None, at(1)));
        assert!(name_glob("orders-[").is_err());
    }

    #[test]
    fn a_selection_is_described_by_its_selectors() {
        assert_eq!(
            all().describe(),
            "delivered before 2027-01-15T08:01:40.000Z"
        );
        let s = Selection {
            receiver: Some("orders".into()),
            name: Some(name_glob("*.json").unwrap()),
            delivered_after: Some(at(0)),
            ..all()
        };
        assert_eq!(
            s.describe(),
            "receiver orders, name *.json, delivered 2027-01-15T08:00:00.000Z to 2027-01-15T08:01:40.000Z"
        );
    }

    #[test]
    fn an_instant_is_a_time_or_a_duration_ago() {
        let now = at(7200);
        assert_eq!(instant("2h", now), Ok(at(0)));
        assert_eq!(instant(" 90m ", now), Ok(at(1800)));
        let t = instant("2027-01-15T08:00:00.5Z", now).unwrap();
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_500)
        );
        assert_eq!(instant("2027-01-15 08:00:00Z", now), Ok(at(0)));
        assert!(instant("yesterday", now).unwrap_err().contains("neither"));
        assert!(instant("", now).is_err());
    }

    #[test]
    fn files_are_due_evenly_from_the_start() {
        assert_eq!(due(0, 10), Duration::ZERO);
        assert_eq!(due(1, 10), Duration::from_millis(100));
        assert_eq!(due(25, 10), Duration::from_millis(2500));
        assert_eq!(due(3, 1000), Duration::from_millis(3));
        assert_eq!(due(u64::MAX / 2, 1).as_secs(), u64::MAX / 2);
        assert_eq!(due(1, 0), Duration::from_secs(1), "0 is taken as 1");
    }
}
