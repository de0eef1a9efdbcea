//! A receiver's `rate_limit`: a token bucket that lets at most `count`
//! requests start per `per`, with a burst of a tenth of that (at least one),
//! for receivers with a quota. A pure state machine: the caller says when,
//! the bucket says yes or from when.
//!
//! This bucket is one process's: senders on one spool share a receiver's
//! quota through [`crate::rules::shared_rate`], the same rule with its
//! state in the spool. A sender keeps to this one alone only when the
//! shared one cannot be used (`sched::shared_rate` says when).
//!
//! It is kept as GCRA (the "virtual scheduling" form of a token bucket): one
//! theoretical arrival time instead of a token count refilled by elapsed
//! time. All time is in integer nanoseconds scaled by `count`, so one
//! request's share of the period (`per / count`) is exact: 3/s adds exactly
//! a third of a second per request, and a long run does not drift from the
//! rate by rounding.
//!
//! In any span of time `t`, at most `burst + count × t / per` requests
//! start ([`Bucket::most_in`]).

use std::time::{Duration, Instant};

use spoolpost_ops::config::RateLimit;

#[derive(Debug)]
pub struct Bucket {
    count: u128,
    /// `per` in nanoseconds: one request's share of it, scaled by `count`.
    step: u128,
    /// How far ahead of now the theoretical arrival time may run: the
    /// burst less one, in scaled nanoseconds.
    tolerance: u128,
    origin: Instant,
    /// Theoretical arrival time of the next request, scaled, since `origin`.
    tat: u128,
}

/// Requests that may start back to back after a quiet spell.
pub fn burst(limit: RateLimit) -> u32 {
    // The protocol's, so a reader of the shared bucket sizes it alike.
    spoolpost_protocol::rates::burst(limit.count)
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Bucket {
        let count = u128::from(limit.count.max(1));
        let step = limit.per.as_nanos().max(1);
        Bucket {
            count,
            step,
            tolerance: u128::from(burst(limit) - 1) * step,
            origin: now,
            tat: 0,
        }
    }

    /// Takes a token if one is there at `now`; otherwise says when the
    /// next one will be.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let t = now.saturating_duration_since(self.origin).as_nanos() * self.count;
        let earliest = self.tat.saturating_sub(self.tolerance);
        if t < earliest {
            let nanos = earliest.div_ceil(self.count);
            return Err(self.origin + duration(nanos));
        }
        // Late by less than a nanosecond is on time: `now` has whole
        // nanoseconds, the schedule has fractions of one, and restarting
        // it from `now` would lose that fraction on every request.
        let on_time = t < self.tat + self.count;
        self.tat = if on_time { self.tat } else { t } + self.step;
        Ok(())
    }

    /// The most requests this bucket lets start in any span of `span`.
    pub fn most_in(limit: RateLimit, span: Duration) -> u64 {
        let per = limit.per.as_nanos().max(1);
        let steady = span.as_nanos() * u128::from(limit.count) / per;
        u64::from(burst(limit)) + steady as u64
    }
}

fn duration(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limit(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    /// Takes as many tokens as are there at `now`.
    fn drain(b: &mut Bucket, now: Instant) -> usize {
        std::iter::from_fn(|| b.take(now).ok()).count()
    }

    #[test]
    fn a_full_bucket_lets_a_tenth_of_the_rate_go_at_once() {
        let t0 = Instant::now();
        for (text, want) in [
            ("200/s", 20),
            ("50/s", 5),
            ("5/s", 1),
            ("1/h", 1),
            ("15/m", 2),
        ] {
            let mut b = Bucket::new(limit(text), t0);
            assert_eq!(drain(&mut b, t0), want, "{text}");
        }
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_token_comes() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limit("50/s"), t0);
        drain(&mut b, t0);
        // Five went at t0; the sixth may go once one 20 ms share has passed.
        assert_eq!(b.take(t0), Err(t0 + 20 * MS));
        assert_eq!(b.take(t0 + 19 * MS), Err(t0 + 20 * MS));
        assert_eq!(b.take(t0 + 20 * MS), Ok(()));
        assert_eq!(b.take(t0 + 20 * MS), Err(t0 + 40 * MS));
    }

    /// Over ten periods, a sender that asks whenever told to gets the rate
    /// times ten, plus the burst it started with; one that polls every
    /// millisecond gets the same where the share is whole milliseconds.
    #[test]
    fn the_steady_rate_is_the_configured_one() {
        let t0 = Instant::now();
        for text in ["200/s", "3/s", "7/m", "50/h"] {
            let l = limit(text);
            let end = t0 + 10 * l.per;
            let mut b = Bucket::new(l, t0);
            let (mut now, mut taken) = (t0, 0);
            loop {
                match b.take(now) {
                    Ok(()) => taken += 1,
                    Err(next) if next <= end => now = next,
                    Err(_) => break,
                }
            }
            assert_eq!(taken, 10 * l.count + burst(l), "{text}");
        }
        let mut b = Bucket::new(limit("200/s"), t0);
        let polled: usize = (0..=10_000).map(|ms| drain(&mut b, t0 + ms * MS)).sum();
        assert_eq!(polled, 2000 + 20);
    }

    /// A third of a second is not a whole number of nanoseconds; a day of
    /// 3/s is still exactly 259,200 requests, no more and no fewer.
    #[test]
    fn a_long_run_does_not_drift() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limit("3/s"), t0);
        let mut now = t0;
        let mut taken = 0u64;
        let end = t0 + Duration::from_secs(86_400);
        loop {
            match b.take(now) {
                Ok(()) => taken += 1,
                Err(next) if next <= end => now = next,
                Err(_) => break,
            }
        }
        assert_eq!(taken, 86_400 * 3 + 1, "the burst of one plus the day's");
    }

    #[test]
    fn no_span_sees_more_than_the_bucket_allows() {
        let t0 = Instant::now();
        let l = limit("50/s");
        let mut b = Bucket::new(l, t0);
        // Greedy: take every token the moment it is there, for 5 s.
        let mut starts = vec![];
        let mut now = t0;
        while now < t0 + Duration::from_secs(5) {
            match b.take(now) {
                Ok(()) => starts.push(now),
                Err(next) => now = next,
            }
        }
        let most = Bucket::most_in(l, Duration::from_secs(1));
        assert_eq!(most, 55);
        for (i, s) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .take_while(|t| **t < *s + Duration::from_secs(1))
                .count();
            assert!(within as u64 <= most, "{within} within 1 s of {s:?}");
        }
        assert_eq!(starts.len(), 5 + 5 * 50 - 1, "{}", starts.len());
    }

    #[test]
    fn an_idle_spell_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limit("100/s"), t0);
        drain(&mut b, t0);
        assert_eq!(drain(&mut b, t0 + Duration::from_secs(60)), 10);
    }
}
