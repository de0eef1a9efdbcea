//! When to try a file again, or whether to give up: a pure function of the
//! attempts made, the age of the file and the receiver's `Retry-After`.
//!
//! The wait doubles from `initial` up to `max`, and jitter spreads it over
//! [d/2, d] ("equal jitter") so files that failed together do not return
//! together, while the wait never collapses to nothing.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// 0 means no limit.
    pub max_attempts: u32,
    pub max_age: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again after this wait.
    RetryIn(Duration),
    /// Give up: the limit that was reached.
    GiveUp(Limit),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Attempts,
    Age,
}

impl RetryPolicy {
    /// The wait before the attempt after attempt number `attempts` (1 for
    /// the first failure), before jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        self.initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max)
    }

    /// Decides after a failed attempt. `attempts` counts the attempts made,
    /// this one included; `age` is the time since the first attempt;
    /// `jitter` is a random number in [0, 1). A receiver's `Retry-After` is
    /// honoured up to `max`, and never shortens the backoff.
    pub fn next(
        &self,
        attempts: u32,
        age: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Next {
        if self.max_attempts > 0 && attempts >= self.max_attempts {
            return Next::GiveUp(Limit::Attempts);
        }
        let base = self.backoff(attempts);
        let jittered = base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        let wait = jittered.max(retry_after.unwrap_or(Duration::ZERO).min(self.max));
        if age.saturating_add(wait) > self.max_age {
            return Next::GiveUp(Limit::Age);
        }
        Next::RetryIn(wait)
    }
}

/// The longest a file may still wait, counted from when it was put back
/// after `attempts` attempts to wait `waits`, once a reload replaced the
/// `old` policy (the largest of those it may have waited under) with
/// `new`. A wait no longer than the old backoff for that attempt came from
/// the backoff, and the new backoff for it is the most; a longer one was
/// the receiver's `Retry-After`, which a change of backoff does not
/// shorten (beyond the new `backoff_max`, which caps every
/// `Retry-After`).
pub fn rejudged_cap(
    new: &RetryPolicy,
    old: &RetryPolicy,
    attempts: u32,
    waits: Duration,
) -> Duration {
    if waits > old.backoff(attempts) {
        new.max
    } else {
        new.backoff(attempts).min(new.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: S(1),
            max: S(60),
            max_attempts: 0,
            max_age: S(3600),
        }
    }

    #[test]
    fn a_new_backoff_shortens_backoff_waits_but_not_a_receivers_retry_after() {
        let old = policy();
        let new = RetryPolicy {
            initial: Duration::from_millis(100),
            max: S(30),
            ..policy()
        };
        // Attempt 3 waited (up to) 4 s of backoff: the new one's 400 ms.
        assert_eq!(
            rejudged_cap(&new, &old, 3, S(3)),
            Duration::from_millis(400)
        );
        assert_eq!(
            rejudged_cap(&new, &old, 3, S(4)),
            Duration::from_millis(400)
        );
        // A 20 s wait after attempt 3 was a Retry-After: it stands.
        assert_eq!(rejudged_cap(&new, &old, 3, S(20)), S(30));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let got: Vec<u64> = (1..=9).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.backoff(u32::MAX), S(60));
    }

    #[test]
    fn jitter_spreads_over_the_upper_half() {
        let p = policy();
        assert_eq!(p.next(4, S(0), None, 0.0), Next::RetryIn(S(4)));
        assert_eq!(
            p.next(4, S(0), None, 0.999_999),
            Next::RetryIn(Duration::from_secs_f64(7.999_996))
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.next(1, S(0), Some(S(30)), 0.0), Next::RetryIn(S(30)));
        assert_eq!(p.next(1, S(0), Some(S(86_400)), 0.0), Next::RetryIn(S(60)));
        assert_eq!(p.next(7, S(0), Some(S(1)), 0.0), Next::RetryIn(S(30)));
    }

    #[test]
    fn limits_end_retrying() {
        let mut p = policy();
        p.max_attempts = 3;
        assert_eq!(p.next(2, S(0), None, 0.0), Next::RetryIn(S(1)));
        assert_eq!(p.next(3, S(0), None, 0.0), Next::GiveUp(Limit::Attempts));
        p.max_attempts = 0;
        assert_eq!(p.next(100, S(3590), None, 0.0), Next::GiveUp(Limit::Age));
        assert_eq!(
            p.next(1, Duration::from_millis(3_599_400), None, 0.0),
            Next::RetryIn(Duration::from_millis(500))
        );
        assert_eq!(
            p.next(1, Duration::from_millis(3_599_400), None, 0.999),
            Next::GiveUp(Limit::Age)
        );
    }
}
