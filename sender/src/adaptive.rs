//! How many requests one receiver may have in flight: an adaptive limit in
//! the family of TCP congestion control (additive increase, multiplicative
//! decrease), Vector's adaptive request concurrency and Postfix's
//! destination concurrency feedback. A pure state machine: the caller tells
//! it what each answer said and when, and reads [`Controller::limit`].
//!
//! The rules, per receiver:
//! - Start low ([`INITIAL`], or a limit remembered from an earlier run).
//! - Answers are counted in windows of `limit` answers (at least
//!   [`MIN_WINDOW`]), about one round trip with the pipe full. A window of
//!   good answers whose mean latency stayed near the baseline grows the
//!   limit by one, but only if the limit was actually reached during the
//!   window: an idle sender learns nothing about the receiver's capacity.
//! - An overload signal (429, 503, a timeout, a reset, a refused connect)
//!   cuts the limit by [`OVERLOAD_CUT`] at once. Requests that were already
//!   in flight when it was cut answer with the same news, so a cut is made
//!   at most once per generation: signals from requests sent before the
//!   last cut do not cut again (TCP cuts once per round trip for the same
//!   reason).
//! - A window whose mean latency rose well above the baseline
//!   ([`LATENCY_RISE`]) cuts gently ([`LATENCY_CUT`]): the receiver is
//!   queueing our requests, which only adds latency for everyone.
//! - The baseline is the lowest window mean seen, as TCP Vegas keeps its
//!   base RTT: a baseline that followed rising latency would let the
//!   queueing our own growth causes pass for normal, window by window.
//!   It is raised only when a latency cut did not lower the latency: then
//!   the receiver itself got slower, and the old baseline is stale.
//! - Windows of at least [`MIN_WINDOW`] answers keep a small limit from
//!   probing too often: at a limit of 1, growing by one doubles the load.
//!
//! Answers that say nothing about capacity (a 4xx rejection, a local
//! read failure) neither grow nor cut the limit. The circuit breaker stays
//! for a receiver that is down; this limit handles one that is busy.

use std::time::Duration;

/// The limit a receiver starts at when nothing better is known.
pub const INITIAL: usize = 4;
/// Multiplier applied to the limit on an overload signal.
pub const OVERLOAD_CUT: f64 = 0.7;
/// Multiplier applied when latency rose well above the baseline.
pub const LATENCY_CUT: f64 = 0.9;
/// A window's mean latency above `baseline × LATENCY_RISE` counts as a rise.
pub const LATENCY_RISE: f64 = 1.5;
/// The limit grows only while the window's mean latency stays below
/// `baseline × LATENCY_NEAR`.
pub const LATENCY_NEAR: f64 = 1.2;
/// The fewest answers in a window.
pub const MIN_WINDOW: usize = 20;
/// A window after a latency cut whose mean is still this close to the mean
/// that caused the cut says the latency is not ours.
pub const CUT_DID_NOT_HELP: f64 = 0.95;
/// Latencies below this are all alike: loopback and LAN jitter would
/// otherwise read as a rise of several times.
pub const LATENCY_FLOOR: Duration = Duration::from_millis(2);

/// What one answer says about the receiver's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    /// Answered (2xx, or an answer that is about the file, not the
    /// receiver's load) after this long.
    Good(Duration),
    /// 429, 503, a timeout, a reset or a refused connect.
    Overload,
    /// Nothing learnt (a 4xx rejection, a local read failure).
    Neutral,
}

/// What the caller keeps of a request while it is in flight, to hand back
/// with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
}

/// The limit and baseline worth remembering across a restart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub limit: usize,
    pub baseline: Option<Duration>,
}

#[derive(Debug)]
pub struct Controller {
    max: usize,
    limit: f64,
    /// Bumped on every cut; answers to requests of older generations do
    /// not cut again.
    generation: u64,
    baseline: Option<Duration>,
    /// The window mean that caused the last latency cut, until the next
    /// window says whether the cut helped.
    cut_at: Option<Duration>,
    window: Window,
}

#[derive(Debug, Default)]
struct Window {
    answers: usize,
    latency_sum: Duration,
    latencies: u32,
    overloaded: bool,
    saturated: bool,
}

impl Controller {
    /// A controller whose limit never exceeds `max` (the receiver's
    /// `concurrency`), starting from what an earlier run learnt if given.
    pub fn new(max: usize, start: Option<Snapshot>) -> Controller {
        let max = max.max(1);
        let limit = start.map_or(INITIAL, |s| s.limit).clamp(1, max);
        Controller {
            max,
            limit: limit as f64,
            generation: 0,
            baseline: start.and_then(|s| s.baseline),
            cut_at: None,
            window: Window::default(),
        }
    }

    /// Requests this receiver may have in flight now.
    pub fn limit(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.max)
    }

    pub fn baseline(&self) -> Option<Duration> {
        self.baseline
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            limit: self.limit(),
            baseline: self.baseline,
        }
    }

    /// Called as a request goes out, with the number in flight including
    /// it; the ticket comes back with its answer.
    pub fn sent(&mut self, in_flight: usize) -> Ticket {
        if in_flight >= self.limit() {
            self.window.saturated = true;
        }
        Ticket {
            generation: self.generation,
        }
    }

    /// Called with each answer to a request sent with `ticket`.
    pub fn answered(&mut self, ticket: Ticket, signal: Signal) {
        match signal {
            Signal::Overload => {
                self.window.overloaded = true;
                if ticket.generation == self.generation {
                    self.cut(OVERLOAD_CUT);
                }
            }
            Signal::Good(latency) => {
                self.window.latency_sum += latency;
                self.window.latencies += 1;
            }
            Signal::Neutral => {}
        }
        self.window.answers += 1;
        if self.window.answers >= self.limit().max(MIN_WINDOW) {
            self.close_window();
        }
    }

    fn cut(&mut self, by: f64) {
        self.limit = (self.limit * by).max(1.0);
        self.generation += 1;
        self.window = Window::default();
    }

    fn close_window(&mut self) {
        let window = std::mem::take(&mut self.window);
        let Some(mean) = window
            .latency_sum
            .checked_div(window.latencies)
            .filter(|_| window.latencies > 0)
        else {
            return;
        };
        let mean = mean.max(LATENCY_FLOOR);
        let Some(mut baseline) = self.baseline else {
            self.baseline = Some(mean);
            return;
        };
        if let Some(before) = self.cut_at.take()
            && mean.as_secs_f64() >= before.as_secs_f64() * CUT_DID_NOT_HELP
        {
            // Less load, same latency: the receiver got slower by itself.
            baseline = mean;
        }
        baseline = baseline.min(mean);
        self.baseline = Some(baseline);
        if mean.as_secs_f64() > baseline.as_secs_f64() * LATENCY_RISE {
            self.cut(LATENCY_CUT);
            self.cut_at = Some(mean);
        } else if !window.overloaded
            && window.saturated
            && mean.as_secs_f64() <= baseline.as_secs_f64() * LATENCY_NEAR
        {
            self.limit = (self.limit.floor() + 1.0).min(self.max as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(limit: usize, baseline: Option<Duration>) -> Controller {
        Controller::new(256, Some(Snapshot { limit, baseline }))
    }

    /// Sends rounds of `limit` requests (the pipe full) until a window's
    /// worth of answers came back, answering each with what `answer` says
    /// for its place in the round. Returns the requests sent and how many
    /// of them `answer` called overload.
    fn window(c: &mut Controller, answer: impl Fn(usize, usize) -> Signal) -> (usize, usize) {
        let need = c.limit().max(MIN_WINDOW);
        let (mut sent, mut overloaded) = (0, 0);
        while sent < need {
            let limit = c.limit();
            let tickets: Vec<Ticket> = (1..=limit).map(|n| c.sent(n)).collect();
            for (i, t) in tickets.into_iter().enumerate() {
                let signal = answer(i, limit);
                overloaded += usize::from(signal == Signal::Overload);
                c.answered(t, signal);
            }
            sent += limit;
        }
        (sent, overloaded)
    }

    #[test]
    fn starts_low_and_grows_by_one_per_good_full_window_up_to_the_bound() {
        let mut c = Controller::new(10, None);
        assert_eq!(c.limit(), INITIAL);
        let mut seen = vec![];
        for _ in 0..10 {
            window(&mut c, |_, _| Signal::Good(5 * MS));
            seen.push(c.limit());
        }
        // The first window sets the baseline; each later one adds one.
        assert_eq!(seen, [4, 5, 6, 7, 8, 9, 10, 10, 10, 10]);
    }

    #[test]
    fn an_idle_sender_learns_nothing_and_does_not_grow() {
        let mut c = Controller::new(64, None);
        for _ in 0..200 {
            // One request at a time: never at the limit.
            let t = c.sent(1);
            c.answered(t, Signal::Good(5 * MS));
        }
        assert_eq!(c.limit(), INITIAL);
    }

    #[test]
    fn a_burst_of_overload_from_one_generation_cuts_once() {
        let mut c = at(20, Some(5 * MS));
        let tickets: Vec<Ticket> = (1..=20).map(|n| c.sent(n)).collect();
        for t in tickets {
            c.answered(t, Signal::Overload);
        }
        assert_eq!(c.limit(), 14, "20 × 0.7, once, not 0.7^20");
        // A request sent after the cut that meets overload cuts again.
        let t = c.sent(1);
        c.answered(t, Signal::Overload);
        assert_eq!(c.limit(), 9);
    }

    #[test]
    fn the_limit_never_falls_below_one_nor_rises_above_the_bound() {
        let mut c = Controller::new(3, None);
        assert_eq!(c.limit(), 3, "the bound caps the initial limit");
        for _ in 0..50 {
            let t = c.sent(1);
            c.answered(t, Signal::Overload);
        }
        assert_eq!(c.limit(), 1);
        assert_eq!(
            Controller::new(0, None).limit(),
            1,
            "a bound of 0 still lets one through"
        );
    }

    #[test]
    fn latency_well_above_the_baseline_cuts_gently_and_near_it_holds() {
        let mut c = at(30, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(16 * MS));
        assert_eq!(c.limit(), 27, "1.6 × baseline: 30 × 0.9");
        let mut c = at(30, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(13 * MS));
        assert_eq!(c.limit(), 30, "1.3 × baseline: neither grow nor cut");
        window(&mut c, |_, _| Signal::Good(11 * MS));
        assert_eq!(c.limit(), 31, "1.1 × baseline: grow");
    }

    #[test]
    fn rejections_and_local_failures_neither_grow_nor_cut() {
        let mut c = at(8, Some(5 * MS));
        for _ in 0..10 {
            window(&mut c, |_, _| Signal::Neutral);
        }
        assert_eq!(c.limit(), 8);
    }

    #[test]
    fn the_baseline_is_the_lowest_latency_seen() {
        let mut c = at(30, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(4 * MS));
        assert_eq!(c.baseline(), Some(4 * MS));
        window(&mut c, |_, _| Signal::Good(5 * MS));
        assert_eq!(c.baseline(), Some(4 * MS), "a small rise does not move it");
        window(&mut c, |_, _| Signal::Good(MS / 2));
        assert_eq!(
            c.baseline(),
            Some(LATENCY_FLOOR),
            "nothing is faster than the floor"
        );
    }

    /// The receiver itself got three times slower: cutting does not help,
    /// so after one cut the baseline is taken anew instead of cutting the
    /// limit down to one.
    #[test]
    fn a_receiver_that_got_slower_by_itself_resets_the_baseline() {
        let mut c = at(40, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(30 * MS));
        assert_eq!(c.limit(), 36);
        window(&mut c, |_, _| Signal::Good(30 * MS));
        assert_eq!(c.baseline(), Some(30 * MS));
        assert!(c.limit() >= 36, "{}", c.limit());
    }

    #[test]
    fn a_remembered_limit_is_the_start_and_is_kept_within_the_bound() {
        let c = Controller::new(
            16,
            Some(Snapshot {
                limit: 12,
                baseline: Some(7 * MS),
            }),
        );
        assert_eq!(
            c.snapshot(),
            Snapshot {
                limit: 12,
                baseline: Some(7 * MS)
            }
        );
        let c = Controller::new(
            8,
            Some(Snapshot {
                limit: 12,
                baseline: None,
            }),
        );
        assert_eq!(c.limit(), 8);
    }

    /// A receiver that works on `capacity` requests at once and answers 503
    /// to any beyond (issue 12's capacity mode): the limit settles near the
    /// capacity, using at least 80% of it, and at most 5% of requests are
    /// answered 503.
    #[test]
    fn against_a_fixed_capacity_it_converges_with_few_rejections() {
        for capacity in [1, 3, 8, 32] {
            let mut c = Controller::new(256, None);
            let (mut sent, mut overloaded, mut served) = (0, 0, 0);
            for w in 0..600 {
                let before = c.limit();
                let (n, o) = window(&mut c, |i, _| {
                    if i < capacity {
                        Signal::Good(5 * MS)
                    } else {
                        Signal::Overload
                    }
                });
                // Judge the steady state, after the climb from the start.
                if w >= 100 {
                    sent += n;
                    overloaded += o;
                    served += before.min(capacity);
                }
            }
            let used = served as f64 / (500 * capacity) as f64;
            let rejected = overloaded as f64 / sent as f64;
            assert!(used >= 0.8, "capacity {capacity}: used {used:.2} of it");
            assert!(
                rejected <= 0.05,
                "capacity {capacity}: {rejected:.3} answered 503"
            );
        }
    }

    /// A receiver whose latency grows with the requests it holds beyond a
    /// knee (issue 12's queueing mode): the limit stays near the knee
    /// instead of filling the queue.
    #[test]
    fn against_a_queueing_receiver_it_stops_near_the_knee() {
        let knee = 10;
        let mut c = Controller::new(256, None);
        let mut tail = vec![];
        for w in 0..300 {
            window(&mut c, |_, limit| {
                let queued = limit.saturating_sub(knee) as u32;
                Signal::Good(10 * MS + 2 * MS * queued)
            });
            if w >= 200 {
                tail.push(c.limit());
            }
        }
        let (min, max) = (*tail.iter().min().unwrap(), *tail.iter().max().unwrap());
        assert!(
            min >= knee - 2 && max <= knee + 3,
            "held to {min}..{max}, knee {knee}"
        );
    }
}
