//! How many requests one receiver may have in flight: an adaptive limit in
//! the family of TCP congestion control (additive increase, multiplicative
//! decrease), Vector's adaptive request concurrency and Postfix's
//! destination concurrency feedback. A pure state machine: the caller tells
//! it what each answer said and when, and reads [`Controller::limit`].
//!
//! The rules, per receiver:
//! - Start low ([`INITIAL`], or a limit remembered from an earlier run).
//! - Without a remembered limit, start slowly as TCP does: each good window
//!   doubles the limit, until the first cut of any kind; from then on it
//!   grows by one. Growing by one from 4 took tens of thousands of answers
//!   to reach a fast receiver's 256, so a short run never got there (0.8×
//!   the best fixed concurrency in the benchmark's small case). A
//!   remembered limit is already near the receiver's pace: no slow start.
//!   Slow start also ends, without a cut, at the first window whose mean
//!   latency rose past [`SLOW_START_EXIT`] of the baseline (as TCP's
//!   HyStart leaves it on delay): doubling into a receiver that already
//!   queues overshoots its knee by a factor of two.
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
//! - A request turned away keeps its room for as long as a request that
//!   was served would have ([`Controller::hold`]: the baseline). An
//!   overload answer comes back at once, and with several senders on one
//!   receiver the others keep it full meanwhile: a sender that sent again
//!   at once would be turned away again, and again, each time. This, not
//!   the growth, was most of the 503s three senders met (issue 12). The
//!   hold is at most [`MAX_HOLD`].
//! - Growth slows to a quarter step per window while the limit is within
//!   one request of the limit that last met overload ([`NEAR_CUT_GROWTH`]),
//!   the edge TCP CUBIC also approaches slowly: probing it costs a 503 a
//!   step. Once the limit is a step past it without a 503, the receiver
//!   takes more than it did, and growth is whole steps again.
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
/// Slow start ends at a window whose mean latency is above
/// `baseline × SLOW_START_EXIT`.
pub const SLOW_START_EXIT: f64 = 1.1;
/// The fewest answers in a window.
pub const MIN_WINDOW: usize = 20;
/// A window after a latency cut whose mean is still this close to the mean
/// that caused the cut says the latency is not ours.
pub const CUT_DID_NOT_HELP: f64 = 0.95;
/// Growth per good window while the limit is within [`NEAR`] of the limit
/// that last met overload: probing the edge one request at a time costs a
/// 503 per step, so near it the steps come four times as seldom.
pub const NEAR_CUT_GROWTH: f64 = 0.25;
/// How close to the last overload the limit counts as near it, either side.
pub const NEAR: f64 = 1.0;
/// The longest a turned-away request keeps its room: a receiver whose
/// baseline is seconds long must not hold a sender's slots (and its
/// shutdown) that long for an answer that came at once.
pub const MAX_HOLD: Duration = Duration::from_secs(1);
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
    /// The limit that last met overload, until the limit grows well past it
    /// (the receiver took more since).
    edge: Option<f64>,
    /// The latency of the latest served request, for [`Controller::hold`]
    /// before the first window sets the baseline.
    last_good: Option<Duration>,
    /// Doubling per good window, until the first cut.
    slow_start: bool,
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
            edge: None,
            last_good: None,
            slow_start: start.is_none(),
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
                    self.edge = Some(self.limit);
                    self.cut(OVERLOAD_CUT);
                }
            }
            Signal::Good(latency) => {
                self.last_good = Some(latency);
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

    /// How long a request that got `signal` keeps its room after its
    /// answer: a request turned away holds it for the time a served one
    /// takes (the baseline), so a sender does not answer a full receiver's
    /// 503 by sending again at once; others free nothing before then.
    pub fn hold(&self, signal: Signal) -> Duration {
        match signal {
            Signal::Overload => self
                .baseline
                .or(self.last_good)
                .unwrap_or(LATENCY_FLOOR)
                .clamp(LATENCY_FLOOR, MAX_HOLD),
            Signal::Good(_) | Signal::Neutral => Duration::ZERO,
        }
    }

    fn cut(&mut self, by: f64) {
        self.slow_start = false;
        self.limit = (self.limit * by).max(1.0);
        self.generation += 1;
        self.window = Window::default();
    }

    /// One good window's growth: a whole step, or a quarter of one near
    /// the limit that last met overload.
    fn grow(&mut self) {
        if self.slow_start {
            self.limit = (self.limit.floor() * 2.0).min(self.max as f64);
            return;
        }
        // Near: a whole step would reach the edge, and the limit is not
        // yet well past it.
        let near = self
            .edge
            .is_some_and(|edge| self.limit + 1.0 >= edge && self.limit < edge + NEAR);
        self.limit = if near {
            self.limit + NEAR_CUT_GROWTH
        } else {
            if self.edge.is_some_and(|edge| self.limit >= edge + NEAR) {
                // Well past it without a 503: the receiver takes more now.
                self.edge = None;
            }
            self.limit.floor() + 1.0
        }
        .min(self.max as f64);
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
        if self.slow_start && mean.as_secs_f64() > baseline.as_secs_f64() * SLOW_START_EXIT {
            self.slow_start = false;
        }
        if mean.as_secs_f64() > baseline.as_secs_f64() * LATENCY_RISE {
            self.cut(LATENCY_CUT);
            self.cut_at = Some(mean);
        } else if !window.overloaded
            && window.saturated
            && mean.as_secs_f64() <= baseline.as_secs_f64() * LATENCY_NEAR
        {
            self.grow();
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

    /// Answers `n` requests one by one, each sent with the pipe full, and
    /// returns the limits seen, without repeats.
    fn steps(c: &mut Controller, n: usize, signal: Signal) -> Vec<usize> {
        let mut seen = vec![c.limit()];
        for _ in 0..n {
            let t = c.sent(c.limit());
            c.answered(t, signal);
            if seen.last() != Some(&c.limit()) {
                seen.push(c.limit());
            }
        }
        seen
    }

    #[test]
    fn starts_low_and_doubles_per_good_full_window_up_to_the_bound() {
        let mut c = Controller::new(300, None);
        assert_eq!(c.limit(), INITIAL);
        // The first window sets the baseline; each later one doubles.
        let seen = steps(&mut c, 2_000, Signal::Good(5 * MS));
        assert_eq!(seen, [4, 8, 16, 32, 64, 128, 256, 300]);
    }

    #[test]
    fn after_the_first_cut_it_grows_by_one_per_good_full_window() {
        let mut c = Controller::new(64, None);
        assert_eq!(steps(&mut c, 40, Signal::Good(5 * MS)), [4, 8]);
        let t = c.sent(8);
        c.answered(t, Signal::Overload);
        assert_eq!(c.limit(), 5, "8 × 0.7");
        // A step per window, never doubling again; a quarter step once
        // within one of the limit that met overload (8).
        let seen = steps(&mut c, 80, Signal::Good(5 * MS));
        assert_eq!(seen, [5, 6, 7]);
    }

    #[test]
    fn slow_start_ends_when_latency_starts_to_rise() {
        let mut c = Controller::new(256, None);
        // Baseline 10 ms at 4, 10 ms at 8: doubled twice.
        assert_eq!(steps(&mut c, 60, Signal::Good(10 * MS)), [4, 8, 16]);
        // At 16 the receiver queues a little (11.5 ms): no more doubling,
        // and since that is within LATENCY_NEAR, one step.
        assert_eq!(steps(&mut c, 20, Signal::Good(23 * MS / 2)), [16, 17]);
        assert_eq!(steps(&mut c, 20, Signal::Good(10 * MS)), [17, 18]);
    }

    #[test]
    fn a_remembered_limit_grows_by_one_from_the_start() {
        let mut c = at(32, Some(5 * MS));
        window(&mut c, |_, _| Signal::Good(5 * MS));
        assert_eq!(c.limit(), 33);
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

    /// What a simulated run came to.
    #[derive(Debug)]
    struct Sim {
        served: usize,
        overloaded: usize,
        elapsed: Duration,
    }

    impl Sim {
        fn rejected(&self) -> f64 {
            self.overloaded as f64 / (self.served + self.overloaded) as f64
        }
    }

    /// A discrete-event run of `senders` senders, each with its own
    /// controller and an endless backlog, against a receiver that works on
    /// `capacity` requests at once for about `work` each (±10%) and answers
    /// 503 after 0.1 ms to any beyond, until `files` were served. Each
    /// sender keeps a request's room for [`Controller::hold`] after its
    /// answer, as `pace` does.
    fn simulate(senders: usize, capacity: usize, work: Duration, files: usize, seed: u64) -> Sim {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Event {
            Served(u64),
            TurnedAway(u64),
            Freed,
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut cs: Vec<Controller> = (0..senders).map(|_| Controller::new(256, None)).collect();
        let mut in_flight = vec![0usize; senders];
        // (when in µs, sender, what)
        let mut events: BinaryHeap<Reverse<(u64, usize, Event)>> = BinaryHeap::new();
        let (mut now, mut busy, mut served, mut overloaded) = (0u64, 0usize, 0usize, 0usize);
        let work = work.as_micros() as u64;
        while served < files {
            // Senders take turns filling their pipes, from a random one.
            let first = rng.usize(..senders);
            for k in 0..senders {
                let s = (first + k) % senders;
                while in_flight[s] < cs[s].limit() {
                    in_flight[s] += 1;
                    let generation = cs[s].sent(in_flight[s]).generation;
                    let event = if busy < capacity {
                        busy += 1;
                        let took = work * 9 / 10 + rng.u64(..=work / 5);
                        (now + took, s, Event::Served(generation))
                    } else {
                        (now + 100, s, Event::TurnedAway(generation))
                    };
                    events.push(Reverse(event));
                }
            }
            let Reverse((at, s, event)) = events.pop().expect("something in flight");
            now = at;
            let (generation, signal) = match event {
                Event::Served(g) => {
                    busy -= 1;
                    served += 1;
                    (g, Signal::Good(Duration::from_micros(work)))
                }
                Event::TurnedAway(g) => {
                    overloaded += 1;
                    (g, Signal::Overload)
                }
                Event::Freed => {
                    in_flight[s] -= 1;
                    continue;
                }
            };
            cs[s].answered(Ticket { generation }, signal);
            let hold = cs[s].hold(signal).as_micros() as u64;
            events.push(Reverse((now + hold, s, Event::Freed)));
        }
        Sim {
            served,
            overloaded,
            elapsed: Duration::from_micros(now),
        }
    }

    /// Issue 12: several senders on one receiver, each adapting from its
    /// own answers, together keep the receiver busy and meet few 503s.
    /// Before a turned-away request kept its room, three senders met
    /// 12-14% and four 20-22% here; now 2.1-2.6% and 3.1-4.2%.
    #[test]
    fn several_senders_together_converge_with_few_rejections() {
        let best = 5 * MS * (3000 / 8);
        for senders in [1, 2, 3, 4, 6] {
            for seed in 0..5 {
                let sim = simulate(senders, 8, 5 * MS, 3000, seed);
                let slower = sim.elapsed.as_secs_f64() / best.as_secs_f64();
                // More senders than the receiver has room for two
                // requests each is beyond what this aims for.
                let most = if senders <= 3 { 0.03 } else { 0.08 };
                assert!(
                    sim.rejected() <= most,
                    "{senders} senders, seed {seed}: {:.1}% answered 503",
                    100.0 * sim.rejected()
                );
                assert!(
                    slower <= 1.2,
                    "{senders} senders, seed {seed}: {slower:.2}× the best time"
                );
            }
        }
    }

    #[test]
    fn a_turned_away_request_holds_its_room_for_a_served_ones_time() {
        let mut c = Controller::new(8, None);
        assert_eq!(c.hold(Signal::Overload), LATENCY_FLOOR, "nothing known yet");
        let t = c.sent(1);
        c.answered(t, Signal::Good(7 * MS));
        assert_eq!(c.hold(Signal::Overload), 7 * MS, "the latest served one");
        let mut c = at(8, Some(5 * MS));
        assert_eq!(c.hold(Signal::Overload), 5 * MS, "the baseline");
        assert_eq!(c.hold(Signal::Good(5 * MS)), Duration::ZERO);
        assert_eq!(c.hold(Signal::Neutral), Duration::ZERO);
        let t = c.sent(1);
        c.answered(t, Signal::Good(50 * MS));
        assert_eq!(c.hold(Signal::Overload), 5 * MS, "the baseline wins");
        let c = at(8, Some(Duration::from_secs(20)));
        assert_eq!(c.hold(Signal::Overload), MAX_HOLD, "a slow receiver's");
    }

    /// Near the limit that last met overload, growth takes quarter steps;
    /// a step past it without a 503, whole steps again.
    #[test]
    fn growth_slows_near_the_last_overload() {
        let mut c = at(10, Some(5 * MS));
        let t = c.sent(10);
        c.answered(t, Signal::Overload);
        assert_eq!(c.limit(), 7);
        // One window at a time: requests at the limit, each answered at
        // once, until a window closes.
        let one_window = |c: &mut Controller| loop {
            let t = c.sent(c.limit());
            c.answered(t, Signal::Good(5 * MS));
            if c.window.answers == 0 {
                return c.limit.to_string();
            }
        };
        let seen: Vec<String> = (0..9).map(|_| one_window(&mut c)).collect();
        assert_eq!(
            seen,
            [
                "8", "9", "9.25", "9.5", "9.75", "10", "10.25", "10.5", "10.75"
            ],
            "from 7: whole steps to 9, then quarter steps past the edge at 10"
        );
        assert_eq!(one_window(&mut c), "11", "the last quarter to a step past");
        assert_eq!(
            one_window(&mut c),
            "12",
            "a step past the edge: whole steps"
        );
    }
}
