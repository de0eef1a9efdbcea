//! A receiver's `rate_limit` shared by every sender on one spool: the rule
//! of [`crate::rules::rate`] (GCRA, bursts of a tenth of the rate), with its
//! one number of state, the theoretical arrival time (TAT), kept where all
//! senders see it. `sched::shared_rate` keeps it in `SPOOL/rate/RECEIVER`
//! and calls [`take`] under an exclusive lock on that file; this module is
//! the arithmetic, pure: the caller passes the time and the stored state.
//!
//! **Why a shared bucket and not leases of the rate.** Dividing the rate
//! among live senders (each gets rate / N) needs no lock, but caps a sender
//! with a backlog at its share while the others idle: one busy sender out
//! of four would get a quarter of the quota. A shared bucket gives the whole
//! quota to whoever has files, and a dead sender holds nothing that needs
//! reclaiming.
//!
//! **Batches.** One lock per request would cost a lock, a read and a write
//! per file. A sender takes up to [`batch`] tokens per lock (those it can
//! use: the files it has waiting) and spends them without the lock; a batch
//! is about 20 ms of the rate (1 at 50/s, 4 at 200/s, at most the burst).
//!
//! **Bounds.** The bucket lets at most `burst + rate × t` tokens be taken in
//! any span `t`. A token is debited when taken, so a sender that dies
//! holding tokens makes the receiver get *fewer* requests (at most
//! `batch − 1` per death), never more. What can exceed the bucket's bound is
//! tokens taken before a span and spent in it: at most `batch − 1` per live
//! sender, so in any span `t` at most `burst + rate × t + senders ×
//! (batch − 1)` requests start. A clock set back makes a stored TAT lie far
//! in the future: one further ahead than the bucket can ever put it is
//! taken as such and the bucket starts full again (at most one burst more).
//!
//! Times are nanoseconds since the Unix epoch (the wall clock, the one
//! clock every process on the host shares); inside a take they are scaled
//! by `count` so a step of `per / count` is exact, and the stored TAT is
//! rounded up to a whole nanosecond (the rate errs low by under a
//! nanosecond per batch).

use spoolpost_ops::config::RateLimit;

use crate::rules::rate::burst;

/// What one take from the shared bucket gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// Tokens granted, from 0 up to what was wanted.
    pub granted: u32,
    /// The TAT to store (unchanged when nothing was granted).
    pub tat: u64,
    /// With nothing granted: when the next token comes.
    pub next: Option<u64>,
}

/// Tokens one lock may take: about 20 ms of the rate, at least 1, at most
/// the burst.
pub fn batch(limit: RateLimit) -> u32 {
    let per = limit.per.as_nanos().max(1);
    let twenty_ms = 20_000_000u128;
    let n = (u128::from(limit.count) * twenty_ms).div_ceil(per);
    (n.min(u128::from(burst(limit))) as u32).max(1)
}

/// Takes up to `want` tokens at `now` from a bucket whose stored TAT is
/// `tat` (`None`: no state yet, or unreadable: a full bucket).
pub fn take(limit: RateLimit, tat: Option<u64>, now: u64, want: u32) -> Taken {
    let count = u128::from(limit.count.max(1));
    let step = limit.per.as_nanos().max(1);
    let tolerance = u128::from(burst(limit) - 1) * step;
    let now_s = u128::from(now) * count;
    // The furthest ahead a take can put the TAT is a whole burst past now
    // (and the nanosecond it is rounded up by); a step beyond that, the
    // clock was set back since it was stored.
    let furthest = now_s + u128::from(burst(limit) + 1) * step + count;
    let stored = tat
        .map(|t| u128::from(t) * count)
        .filter(|t| *t <= furthest);
    let from = stored.map_or(now_s, |t| t.max(now_s));
    let room = (now_s + tolerance)
        .checked_sub(from)
        .map_or(0, |spare| spare / step + 1);
    let granted = room.min(u128::from(want)) as u32;
    if granted == 0 {
        let next = from - tolerance;
        return Taken {
            granted,
            tat: tat.unwrap_or(now),
            next: Some(to_nanos(next, count)),
        };
    }
    Taken {
        granted,
        tat: to_nanos(from + u128::from(granted) * step, count),
        next: None,
    }
}

/// A scaled time as whole nanoseconds, rounded up.
fn to_nanos(scaled: u128, count: u128) -> u64 {
    u64::try_from(scaled.div_ceil(count)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const T0: u64 = 1_800_000_000 * SEC;

    fn limit(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    #[test]
    fn a_batch_is_about_twenty_milliseconds_of_the_rate() {
        for (text, want) in [
            ("50/s", 1),
            ("200/s", 4),
            ("1000/s", 20),
            ("5/s", 1),
            ("1/h", 1),
            ("100000/s", 2000),
            ("20/s", 1),
        ] {
            assert_eq!(batch(limit(text)), want, "{text}");
        }
        assert!(batch(limit("100000/s")) <= burst(limit("100000/s")));
    }

    #[test]
    fn a_new_bucket_is_full_and_then_refills_at_the_rate() {
        let l = limit("200/s");
        let t = take(l, None, T0, 100);
        assert_eq!(t.granted, 20, "the burst");
        let again = take(l, Some(t.tat), T0, 100);
        assert_eq!(again.granted, 0);
        assert_eq!(again.next, Some(T0 + 5 * MS), "one 5 ms share later");
        assert_eq!(again.tat, t.tat, "nothing granted, nothing changed");
        let later = take(l, Some(t.tat), T0 + 5 * MS, 100);
        assert_eq!(later.granted, 1);
    }

    #[test]
    fn a_take_never_gives_more_than_wanted() {
        let l = limit("200/s");
        let t = take(l, None, T0, 4);
        assert_eq!(t.granted, 4);
        let t = take(l, Some(t.tat), T0, 4);
        assert_eq!(t.granted, 4, "the burst has room for more");
    }

    /// Three senders taking batches in turn, each whenever it is told a
    /// token comes, share one rate: over ten seconds they get the rate
    /// times ten plus one burst, together, however they interleave.
    #[test]
    fn senders_taking_in_turn_share_one_rate() {
        for text in ["200/s", "50/s", "3/s"] {
            let l = limit(text);
            let end = T0 + 10 * SEC;
            let mut tat = None;
            let mut now = [T0; 3];
            let mut total = 0u64;
            loop {
                // The sender that is due first takes next.
                let who = (0..3).min_by_key(|&i| now[i]).unwrap();
                if now[who] > end {
                    break;
                }
                let t = take(l, tat, now[who], batch(l));
                total += u64::from(t.granted);
                tat = Some(t.tat);
                if let Some(next) = t.next {
                    now[who] = next;
                }
            }
            let want = 10 * u64::from(l.count) + u64::from(burst(l));
            // Each whole-nanosecond rounding errs low.
            assert!(
                total <= want && total + 3 >= want,
                "{text}: {total} of {want}"
            );
        }
    }

    /// A TAT stored rounded up after a whole burst is a busy bucket, not a
    /// clock set back: read as the latter it would hand out burst after
    /// burst at one instant.
    #[test]
    fn a_whole_burst_taken_leaves_the_bucket_empty() {
        for text in ["3/s", "7/m", "200/s", "1000/s"] {
            let l = limit(text);
            let t = take(l, None, T0, u32::MAX);
            assert_eq!(t.granted, burst(l), "{text}");
            assert_eq!(take(l, Some(t.tat), T0, u32::MAX).granted, 0, "{text}");
        }
    }

    #[test]
    fn a_tat_further_ahead_than_a_take_can_put_it_means_the_clock_went_back() {
        let l = limit("200/s");
        // Stored an hour ahead of now: the clock was set back an hour.
        let t = take(l, Some(T0 + 3600 * SEC), T0, 100);
        assert_eq!(t.granted, 20, "the bucket starts full again");
        // A TAT a few shares ahead is an ordinary busy bucket.
        let t = take(l, Some(T0 + 10 * 5 * MS + 5 * MS), T0, 100);
        assert_eq!(t.granted, 9, "a burst of 20 less the 11 shares ahead");
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let l = limit("100/s");
        let t = take(l, None, T0, 1000);
        let t = take(l, Some(t.tat), T0 + 60 * SEC, 1000);
        assert_eq!(t.granted, 10);
    }

    #[test]
    fn a_third_of_a_second_is_kept_exact_within_a_take() {
        let l = limit("3/s");
        let t = take(l, None, T0, 1);
        assert_eq!(t.tat, T0 + SEC / 3 + 1, "rounded up to a whole nanosecond");
        let t2 = take(l, Some(t.tat), T0, 1);
        assert_eq!(t2.next, Some(t.tat));
    }
}
