//! A receiver's shared `rate_limit` as a reader sees it: the bucket in
//! `SPOOL/rate/RECEIVER` (docs/spool.md rule 14b: one decimal number, the
//! GCRA theoretical arrival time in nanoseconds since the Unix epoch) and,
//! beside it, who has taken from it lately, `SPOOL/rate/.takers-RECEIVER`
//! (a receiver's name never starts with `.`).
//!
//! The takers' record is a JSON list of [`Taker`]s. A sender rewrites it
//! while it holds the bucket's lock, at most once per [`NOTE_EVERY`] per
//! receiver (so the cost on the path of every request is a comparison of
//! two instants), writing a temporary name in `rate/` and renaming it over,
//! so a reader, who takes no lock, sees one whole record. Entries older than
//! [`FORGET_AFTER`] are dropped as it is rewritten: a taker that died is
//! forgotten, and until then shown with the age of its last take.
//!
//! The arithmetic a reader needs ([`burst`], [`tokens`]) is here, pure, so
//! the sender's rule (`sender/src/rules/shared_rate.rs`) and the reporter
//! read one bucket the same way.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spool::Spool;

/// The folder under the spool root holding one bucket per receiver.
pub const RATE_DIR: &str = "rate";
/// The takers' record of receiver R is `rate/.takers-R`.
pub const TAKERS_PREFIX: &str = ".takers-";
/// The least time between two rewrites of the takers' record by one sender.
pub const NOTE_EVERY: Duration = Duration::from_secs(1);
/// A taker not heard of for this long is dropped from the record.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Requests that may start back to back after a quiet spell, for a rate of
/// `count` per period: a tenth of it, at least one.
pub fn burst(count: u32) -> u32 {
    count.div_ceil(10).max(1)
}

/// The stored theoretical arrival time, if the file holds one.
pub fn parse_tat(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Tokens a bucket of `count` per `per` with stored TAT `tat` holds at
/// `now` (nanoseconds since the Unix epoch): how many requests could start
/// back to back now, from 0 to the burst. No state, an unreadable one, or
/// one further ahead than a take can put it (the clock was set back) is a
/// full bucket, as the sender takes it.
pub fn tokens(count: u32, per: Duration, tat: Option<u64>, now: u64) -> u32 {
    let burst = burst(count);
    let count = u128::from(count.max(1));
    let step = per.as_nanos().max(1);
    let now_s = u128::from(now) * count;
    let tolerance = u128::from(burst - 1) * step;
    let furthest = now_s + u128::from(burst + 1) * step + count;
    let Some(tat) = tat
        .map(|t| u128::from(t) * count)
        .filter(|t| *t <= furthest)
    else {
        return burst;
    };
    let from = tat.max(now_s);
    (now_s + tolerance)
        .checked_sub(from)
        .map_or(0, |spare| (spare / step + 1).min(u128::from(burst)) as u32)
}

/// A sender that took from a receiver's bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taker {
    pub pid: u32,
    pub host: String,
    /// The `rate_limit` it keeps to (`200/s`): senders sharing a bucket
    /// must agree on it, and this shows whether they do.
    pub limit: String,
    /// Its latest take, seconds since the Unix epoch.
    pub last: u64,
}

/// `takers` with `me` noted as of `now` (seconds since the Unix epoch):
/// its own entry (same pid and host) replaced, entries not heard of for
/// [`FORGET_AFTER`] dropped, the newest first.
pub fn note(mut takers: Vec<Taker>, me: Taker, now: u64) -> Vec<Taker> {
    takers.retain(|t| {
        !(t.pid == me.pid && t.host == me.host)
            && now.saturating_sub(t.last) < FORGET_AFTER.as_secs()
    });
    takers.push(me);
    takers.sort_by(|a, b| b.last.cmp(&a.last).then(a.pid.cmp(&b.pid)));
    takers
}

/// The takers' record of `receiver` in `rate_dir`.
pub fn takers_path(rate_dir: &Path, receiver: &str) -> PathBuf {
    rate_dir.join(format!("{TAKERS_PREFIX}{receiver}"))
}

/// Reads a takers' record; missing or unreadable is nobody.
pub fn read_takers(path: &Path) -> Vec<Taker> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Rewrites a takers' record whole: a temporary name beside it (this
/// process's own), then renamed over.
pub fn write_takers(path: &Path, takers: &[Taker]) -> io::Result<()> {
    let bytes = serde_json::to_vec(takers).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A receiver's bucket as found in the spool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The stored TAT; `None`: empty or unreadable (a full bucket).
    pub tat: Option<u64>,
    pub takers: Vec<Taker>,
}

/// Every receiver's bucket in `rate/`, by receiver name.
pub fn read_all(spool: &Spool) -> BTreeMap<String, Found> {
    let dir = spool.root().join(RATE_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name.starts_with('.') || !e.file_type().ok()?.is_file() {
                return None;
            }
            let tat = std::fs::read(e.path()).ok().and_then(|b| parse_tat(&b));
            let takers = read_takers(&takers_path(&dir, &name));
            Some((name, Found { tat, takers }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const T0: u64 = 1_800_000_000 * SEC;

    #[test]
    fn a_bucket_holds_up_to_a_burst_and_refills_at_the_rate() {
        let s = Duration::from_secs(1);
        assert_eq!(tokens(200, s, None, T0), 20, "no state: full");
        // 20 taken at T0: the TAT is 20 steps of 5 ms ahead.
        let tat = T0 + 20 * 5 * MS;
        assert_eq!(tokens(200, s, Some(tat), T0), 0, "empty");
        assert_eq!(tokens(200, s, Some(tat), T0 + 5 * MS), 1);
        assert_eq!(tokens(200, s, Some(tat), T0 + 50 * MS), 10);
        assert_eq!(tokens(200, s, Some(tat), T0 + 3600 * SEC), 20, "full again");
        assert_eq!(
            tokens(200, s, Some(T0 + 3600 * SEC), T0),
            20,
            "clock set back"
        );
        assert_eq!(tokens(3, Duration::from_secs(3600), None, T0), 1);
    }

    #[test]
    fn the_tat_is_one_number_and_anything_else_is_none() {
        assert_eq!(parse_tat(b"123\n"), Some(123));
        assert_eq!(parse_tat(b""), None);
        assert_eq!(parse_tat(b"x"), None);
    }

    fn taker(pid: u32, last: u64) -> Taker {
        Taker {
            pid,
            host: "h".into(),
            limit: "200/s".into(),
            last,
        }
    }

    #[test]
    fn a_note_replaces_the_takers_own_entry_and_forgets_the_long_silent() {
        let now = 10_000;
        let takers = vec![taker(1, now - 5), taker(2, now - 700), taker(3, now - 30)];
        let noted = note(takers, taker(1, now), now);
        assert_eq!(noted, vec![taker(1, now), taker(3, now - 30)]);
        let other_host = Taker {
            host: "g".into(),
            ..taker(3, now)
        };
        let noted = note(noted, other_host.clone(), now);
        assert_eq!(noted.len(), 3, "a pid on another host is another taker");
        assert_eq!(noted[0..2], [taker(1, now), other_host]);
    }

    #[test]
    fn the_takers_record_is_read_back_and_kept_apart_from_the_buckets() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let dir = root.path().join(RATE_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("orders"), format!("{T0}\n")).unwrap();
        write_takers(&takers_path(&dir, "orders"), &[taker(7, 1)]).unwrap();
        std::fs::write(dir.join("audit"), b"garbled").unwrap();
        let all = read_all(&spool);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["audit", "orders"]);
        assert_eq!(all["orders"].tat, Some(T0));
        assert_eq!(all["orders"].takers, [taker(7, 1)]);
        assert_eq!(all["audit"], Found::default());
    }
}
