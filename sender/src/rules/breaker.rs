//! The circuit breaker of one receiver, as a pure state machine driven by
//! the caller's clock.
//!
//! ```text
//!   Closed --N consecutive failures--> Open(until)
//!   Closed, HalfOpen --credentials refused (401, 407)--> Open(until)
//!   Open   --until passes, check()--> HalfOpen (one probe let through)
//!   HalfOpen --probe succeeds--> Closed
//!   HalfOpen --probe fails-----> Open(longer until)
//! ```
//!
//! "N consecutive failures" alone would open a healthy receiver behind a
//! load balancer with one bad backend: at 30% failures whatever the load,
//! five in a row come once in 400 answers, several times a second at a
//! few thousand files a second. So the circuit opens only when the
//! receiver is *mostly* failing as well: at least [`MOSTLY`] of its last
//! [`RECENT`] answers (or of all, while fewer) were failures. A receiver
//! that is down fails every answer and opens after N as before; failures
//! that are only a share of the answers are the adaptive limit's
//! business, which tells noise from overload.
//!
//! The open period doubles each time the circuit reopens without having
//! closed, from `open_initial` up to `open_max`, and is never shorter than a
//! `Retry-After` the receiver asked for. While open, the sender leaves the
//! receiver's files waiting in `incoming/` without using up their attempts.

use std::time::{Duration, Instant};

// The one circuit-state type: what the breaker changes is what
// `circuits` publishes and the reporter reads.
use spoolpost_protocol::circuits::CircuitState as State;

/// The answers the failing share is taken over.
pub const RECENT: u32 = 64;
/// The share of recent answers that must have failed for the circuit to
/// open.
pub const MOSTLY: f64 = 0.6;

#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    pub failures: u32,
    pub open_initial: Duration,
    pub open_max: Duration,
}

/// What the caller may do with the next file for this receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Send it as the one probe of a half-open circuit; report the result,
    /// or call `cancel_probe` if it is not sent after all.
    Probe,
    /// Do not send before this instant.
    WaitUntil(Instant),
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    since: Instant,
    consecutive_failures: u32,
    /// The last [`RECENT`] answers, newest in the lowest bit: 1 a failure.
    recent: u64,
    /// How many answers `recent` holds (at most [`RECENT`]).
    seen: u32,
    /// Times opened since the circuit was last closed.
    openings: u32,
    open_until: Instant,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Breaker {
        Breaker {
            config,
            state: State::Closed,
            since: now,
            consecutive_failures: 0,
            recent: 0,
            seen: 0,
            openings: 0,
            open_until: now,
            probe_in_flight: false,
        }
    }

    pub fn reconfigure(&mut self, config: BreakerConfig) {
        self.config = config;
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn check(&mut self, now: Instant) -> Decision {
        match self.state {
            State::Closed => Decision::Send,
            State::Open if now < self.open_until => Decision::WaitUntil(self.open_until),
            State::Open => {
                self.enter(State::HalfOpen, now);
                self.probe_in_flight = true;
                Decision::Probe
            }
            State::HalfOpen if self.probe_in_flight => {
                Decision::WaitUntil(now + self.config.open_initial)
            }
            State::HalfOpen => {
                self.probe_in_flight = true;
                Decision::Probe
            }
        }
    }

    /// A probe that was granted but never sent (its file vanished).
    pub fn cancel_probe(&mut self) {
        self.probe_in_flight = false;
    }

    /// Records an answer that shows the receiver works (2xx, or a 4xx that
    /// rejects one file). Returns the new state if it changed.
    pub fn record_success(&mut self, now: Instant) -> Option<State> {
        self.remember(false);
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.openings = 0;
        (self.state != State::Closed).then(|| self.enter(State::Closed, now))
    }

    /// Records a failure of the receiver. Failures of requests that were
    /// already in flight when the circuit opened do not extend it.
    pub fn record_failure(&mut self, now: Instant, retry_after: Option<Duration>) -> Option<State> {
        self.remember(true);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            State::Closed => {
                // One or two failures is the operator's hair trigger: any
                // such run opens it.
                self.consecutive_failures >= self.config.failures.max(1)
                    && (self.config.failures <= 2 || self.mostly_failing())
            }
            State::HalfOpen => true,
            State::Open => false,
        };
        if !open {
            return None;
        }
        self.probe_in_flight = false;
        self.openings = self.openings.saturating_add(1);
        let doublings = (self.openings - 1).min(31);
        let wait = self
            .config
            .open_initial
            .saturating_mul(1u32 << doublings)
            .min(self.config.open_max)
            .max(
                retry_after
                    .unwrap_or(Duration::ZERO)
                    .min(self.config.open_max),
            );
        self.open_until = now + wait;
        Some(self.enter(State::Open, now))
    }

    /// Records an answer refusing our credentials (401, 407): every file
    /// would meet the same answer, so the circuit opens now, not after
    /// `failures` more refusals. Counted as failures until it is open, so
    /// the open period grows as for any other reopening. Returns the new
    /// state if it changed.
    pub fn record_refusal(&mut self, now: Instant) -> Option<State> {
        let mut opened = None;
        while self.state != State::Open {
            opened = self.record_failure(now, None);
        }
        opened
    }

    fn remember(&mut self, failed: bool) {
        self.recent = (self.recent << 1) | u64::from(failed);
        self.seen = (self.seen + 1).min(RECENT);
    }

    fn mostly_failing(&self) -> bool {
        let failed = self.recent.count_ones();
        f64::from(failed) >= MOSTLY * f64::from(self.seen.max(1))
    }

    fn enter(&mut self, state: State, now: Instant) -> State {
        self.state = state;
        self.since = now;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn breaker(now: Instant) -> Breaker {
        Breaker::new(
            BreakerConfig {
                failures: 3,
                open_initial: S(5),
                open_max: S(30),
            },
            now,
        )
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        assert_eq!(b.record_failure(t0, None), None);
        assert_eq!(b.record_failure(t0, None), None);
        b.record_success(t0);
        assert_eq!(b.record_failure(t0, None), None);
        assert_eq!(b.record_failure(t0, None), None);
        assert_eq!(b.record_failure(t0, None), Some(State::Open));
        assert_eq!(b.check(t0 + S(4)), Decision::WaitUntil(t0 + S(5)));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_success_closes() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        for _ in 0..3 {
            b.record_failure(t0, None);
        }
        assert_eq!(b.check(t0 + S(5)), Decision::Probe);
        assert_eq!(b.state(), State::HalfOpen);
        assert!(matches!(b.check(t0 + S(5)), Decision::WaitUntil(_)));
        assert_eq!(b.record_success(t0 + S(6)), Some(State::Closed));
        assert_eq!(b.check(t0 + S(6)), Decision::Send);
        assert_eq!(b.since(), t0 + S(6));
    }

    #[test]
    fn failed_probes_reopen_for_growing_capped_periods() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        for _ in 0..3 {
            b.record_failure(t0, None);
        }
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let Decision::WaitUntil(until) = b.check(now) else {
                panic!()
            };
            waits.push((until - now).as_secs());
            now = until;
            assert_eq!(b.check(now), Decision::Probe);
            assert_eq!(b.record_failure(now, None), Some(State::Open));
        }
        assert_eq!(waits, [5, 10, 20, 30, 30]);
    }

    #[test]
    fn failures_while_open_do_not_extend_it_and_retry_after_lengthens_it() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        b.record_failure(t0, None);
        b.record_failure(t0, None);
        b.record_failure(t0, Some(S(20)));
        assert_eq!(b.record_failure(t0 + S(1), None), None);
        assert_eq!(b.check(t0 + S(1)), Decision::WaitUntil(t0 + S(20)));
    }

    /// A load balancer with one bad backend: 30% of answers fail whatever
    /// the load, so runs of three come often, but the receiver is not
    /// mostly failing. When it goes down, the circuit opens once most of
    /// the recent answers failed.
    #[test]
    fn failures_that_are_a_share_of_the_answers_do_not_open_it() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        let mut rng = fastrand::Rng::with_seed(7);
        // (A fresh breaker judges by the few answers it has: three
        // failures of the first three open it, as they always did.)
        for _ in 0..RECENT {
            b.record_success(t0);
        }
        let mut runs_of_three = 0;
        let mut run = 0;
        for _ in 0..10_000 {
            if rng.f64() < 0.3 {
                run += 1;
                runs_of_three += usize::from(run == 3);
                assert_eq!(b.record_failure(t0, None), None);
            } else {
                run = 0;
                b.record_success(t0);
            }
        }
        assert!(runs_of_three > 100, "{runs_of_three}");
        assert_eq!(b.state(), State::Closed);
        // Down: every answer fails; open once most of the last 64 did.
        let mut failures = 0;
        while b.record_failure(t0, None).is_none() {
            failures += 1;
            assert!(failures < 64, "never opened");
        }
        assert!(failures >= 2, "{failures}");
    }

    #[test]
    fn a_refused_credential_opens_it_at_once_and_a_probe_closes_it() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        for _ in 0..10 {
            b.record_success(t0);
        }
        assert_eq!(b.record_refusal(t0), Some(State::Open));
        assert_eq!(b.check(t0 + S(4)), Decision::WaitUntil(t0 + S(5)));
        assert_eq!(b.check(t0 + S(5)), Decision::Probe);
        // The probe is refused too: open again, for longer.
        assert_eq!(b.record_refusal(t0 + S(5)), Some(State::Open));
        assert_eq!(b.check(t0 + S(14)), Decision::WaitUntil(t0 + S(15)));
        // Already open: nothing changes.
        assert_eq!(b.record_refusal(t0 + S(6)), None);
        assert_eq!(b.check(t0 + S(15)), Decision::Probe);
        assert_eq!(b.record_success(t0 + S(15)), Some(State::Closed));
    }

    #[test]
    fn a_cancelled_probe_frees_the_slot() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        for _ in 0..3 {
            b.record_failure(t0, None);
        }
        assert_eq!(b.check(t0 + S(5)), Decision::Probe);
        b.cancel_probe();
        assert_eq!(b.check(t0 + S(5)), Decision::Probe);
    }
}
