//! How many requests one receiver may have in flight: an adaptive limit that
//! aims for goodput (files delivered per second), in the family of TCP
//! congestion control. A pure state machine: the caller tells it what each
//! answer said and when, and reads [`Controller::limit`].
//!
//! What it learns from:
//! - **TCP Reno / AIMD** (Chiu and Jain): additive increase per round trip,
//!   multiplicative decrease on overload. Several senders sharing one
//!   receiver each run this loop on their own answers; because every sender
//!   grows by the same step and cuts by the same factor, the larger share
//!   loses more at each cut and the shares converge to fair ones, without a
//!   word between the senders.
//! - **TCP BBR**: slow start ends when the delivery rate stops rising by a
//!   quarter per round ("the pipe is full"), not at the first rise of
//!   latency; and the lowest latency seen is the round-trip floor.
//! - **TCP Vegas / Netflix's Gradient2 / Vector's ARC**: latency above the
//!   floor is requests queued at the receiver; a few queued is what a full
//!   pipe looks like, many only add latency for everyone.
//! - **Postfix's destination feedback**: a failure is a signal about the
//!   destination only in proportion to how often it comes; one bad answer
//!   among many good ones is not congestion.
//!
//! The rules, per receiver:
//! - **Windows.** Answers are counted in windows of `limit` answers (at
//!   least [`MIN_WINDOW`]), about one round trip with the pipe full. Each
//!   window measures its goodput (good answers per second), mean latency
//!   and failure share. The limit grows only after a window in which it was
//!   actually reached: an idle sender learns nothing about capacity.
//! - **Slow start.** Without a remembered limit the limit starts at
//!   [`INITIAL`] and doubles per good window while goodput rises by at
//!   least [`STARTUP_GROWTH`] a window; a sender alone whose window shows
//!   no queue at all (latency within [`STARTUP_FLAT`] of the baseline)
//!   quadruples instead, as BBR's start-up grows faster than Reno's. Three
//!   windows in a row without that rise end it, back at the limit that
//!   gave the best goodput. A receiver 100 ms away that takes 1,000 at
//!   once is reached in about five round trips.
//! - **Overload told from noise.** Overload is when failures (429, 503, a
//!   timeout, a reset, a refused connect) come *more often as the load
//!   rises*. A load balancer with one sick backend answers 503 to one
//!   request in ten at every load: cutting does not lower the share of
//!   failures, it only lowers goodput. So the controller keeps a *noise*
//!   share: failures that come whatever the load. A window whose failures
//!   exceed what the noise explains (by [`SIGNIFICANCE`] standard
//!   deviations of a binomial count, plus one) cuts the limit by
//!   [`OVERLOAD_CUT`] at once. The next window says whether that helped:
//!   if goodput fell by more than [`GOODPUT_KEPT`] allows while failures
//!   kept coming, they were not ours; the cut is undone and their share is
//!   learnt as noise. The windows then move the noise slowly
//!   ([`NOISE_DECAY`]) both ways, but never above what evidence last said
//!   (an undone cut, failures well below a clean load, the record): so a
//!   backend that recovers stops being excused, and a sick backend's
//!   share is not lost to windows that by chance failed less. Past that
//!   ceiling windows do not raise it: those at the top of the saw-tooth
//!   past a capacity fail more than the noise, within what it excuses,
//!   and followed upward the noise climbed with them. The ceiling itself
//!   follows a lower noise eight times as slowly. A receiver that
//!   mostly fails is the circuit breaker's business, not this limit's:
//!   the noise is at most [`MAX_NOISE`].
//!   A cut's judgement needs two failures in the window after it, which
//!   a noise of 1% seldom gives: so a sender alone also counts the
//!   failures of requests sent well below a load the receiver lately took
//!   without any ([`WELL_BELOW`] of the highest load a clean window met,
//!   and [`BELOW_MARGIN`] requests under it). A window's load is what its
//!   answers found open at the receiver by Little's law (goodput × mean
//!   latency), not its limit: a slot is taken before its file is read and
//!   compressed, and on a loaded host a window at 16 met no 503 from a
//!   receiver with room for 8.
//!   A receiver at its capacity does not fail there; once
//!   [`BELOW_ANSWERS`] such answers hold two failures or more, their share
//!   is learnt as noise (1% of 503s at random: 0.22× the best fixed limit
//!   before, 0.95-0.99× after, simulated). At a limit of one a sender
//!   alone cannot overload anything: half a window of answers and a single
//!   failure there are enough.
//! - **Shared receivers: quiet moments.** With other senders on the spool
//!   one sender's cut proves nothing: the others fill the room it gave up
//!   and its failures go on, noise or overload alike (senders that each
//!   excused what they saw met 15-50% 503s together). So senders that
//!   share take *quiet moments* together, at the same instants of the
//!   host's wall clock ([`QUIET_EVERY`], and every [`QUIET_FIRST_EVERY`]
//!   for one that has measured nothing yet or first did less than
//!   [`QUIET_EARLY_AFTER`] ago, so that senders which measure at different
//!   moments still take the early ones together): each halves its limit for
//!   [`QUIET_FOR`], and the failures its requests still meet, once the
//!   receiver had [`QUIET_SETTLE`] to finish the earlier ones, are the
//!   noise, judged as soon as those requests have all answered (or, one
//!   hung, [`Controller::lapse_after`] after the moment). Between quiet
//!   moments a shared sender's noise does not follow its windows, and an
//!   undone cut learns no more than the quiet moments measured (nothing
//!   before the first). The cost is 2.5% of goodput;
//!   the 503s of three senders against a capacity stay at AIMD's 1-3%,
//!   and four senders behind a load balancer with a sick backend keep
//!   their limits instead of sitting at one (the bench's chaos row). A
//!   restarted sender starts from the noise its record remembers. One
//!   failure in the moments is no share: it takes [`QUIET_FAILURES`] to
//!   raise the noise (a request at a moment's edge can meet one). Noise
//!   learnt for the first time, by a quiet moment or alone by failures
//!   well below a clean load, starts slow start again: the cuts before it
//!   were the noise's, and the limit they left says nothing.
//! - **Slow start's overload** goes back at once to the load the window
//!   before met, as BBR drains after start-up, rather than by 0.7 a round
//!   trip from four times too many; and while no noise is learnt, a window
//!   in slow start waits for a failure still held ([`Controller::hold`])
//!   before it grows.
//! - **One cut per round trip.** Requests already in flight when the limit
//!   was cut answer with the same news; signals from requests sent before
//!   the last cut do not cut again (TCP cuts once per round trip for the
//!   same reason).
//! - **Latency.** The baseline is the lowest window mean seen (TCP Vegas's
//!   base RTT). In congestion avoidance a good window grows the limit by
//!   one while the requests it estimates queued at the receiver, `limit ×
//!   (1 − baseline / mean)`, are at most [`QUEUE_SHARE`] of the limit (or
//!   [`QUEUE_MIN`]): against a remote receiver a little queueing is what a
//!   full pipe looks like, and goodput still rises. A window whose mean
//!   rose past [`LATENCY_RISE`] × the baseline cuts gently
//!   ([`LATENCY_CUT`]). If [`UNHELPFUL_CUTS`] such cuts in a row did not
//!   lower the latency, the receiver itself got slower: the baseline is
//!   taken anew (one alone can be a stall of the sender's own host).
//!   Or the sender itself is the bottleneck and the latency its own queue,
//!   which then keeps the latency at the new baseline after the receiver
//!   recovers (240 in flight where 40 fill the pipe). So, as TCP BBR's
//!   ProbeRTT drains the pipe to see its floor, a raised baseline is
//!   probed: a window at half the limit, [`PROBE_FIRST`] after it was
//!   raised. A lower latency there at the same goodput (within
//!   [`PROBE_GOODPUT_KEPT`]) is the new baseline, and the next probe comes
//!   as soon. Anything else brings the limit back at once and doubles the
//!   wait, up to [`PROBE_MOST`]: a receiver whose latency grows with its
//!   load also answers faster at half the load, but serves fewer files a
//!   second, and its queue is what its pace costs (the first probe, on
//!   latency alone, took that queue for the sender's own and settled such
//!   a receiver at 32 in flight where 90 were worth it). Probing ends once
//!   the baseline is back within [`LATENCY_RISE`] of the one before. A
//!   restart starts from the baseline before a raise that no probe has
//!   brought back or confirmed ([`Controller::snapshot`]): senders that
//!   share a spool start from one record, and a raise trusted by each
//!   restarted sender only ever rose.
//! - **Goodput over latency.** Queueing that still buys goodput is kept:
//!   while the slope of ln(goodput) over ln(limit) across the latest
//!   [`GRADIENT_WINDOWS`] windows of congestion avoidance (their limits
//!   spread by growth and cuts) is at least [`ELASTIC`], latency neither
//!   cuts nor stops growth. A receiver whose answers take 2 ms plus 0.2 ms
//!   per request open gains less and less from each request more, but
//!   gains: it is worth about 90 in flight, not the 15 where its latency
//!   first moved (0.72× the best fixed limit before, 0.95× after,
//!   simulated). A receiver that is full only queues, its goodput flat:
//!   the slope is near zero and the latency rules above apply. Shared,
//!   the slope must stand [`ELASTIC_SIGNIFICANCE`] standard errors clear
//!   of [`ELASTIC`]: the others' load scatters one sender's goodput more
//!   than its own limit moves it.
//! - **Near the last overload** growth slows to a quarter step per window
//!   ([`NEAR_CUT_GROWTH`]), the edge TCP CUBIC also approaches slowly:
//!   probing it costs a 503 a step.
//! - **A turned-away request keeps its room** for as long as a served one
//!   would have ([`Controller::hold`]), so several senders do not answer a
//!   full receiver's 503 by sending again at once. At most [`MAX_HOLD`].
//! - **A hung request does not hold the pace.** A request that has not
//!   answered after [`Controller::lapse_after`] (a multiple of the
//!   smoothed latency, as TCP's retransmission timeout, at least
//!   [`LAPSE_FLOOR`]) stops counting against the limit; it keeps its own
//!   timeout, and the caller's hard bound (the receiver's `concurrency`)
//!   still counts it.
//!
//! Answers that say nothing about capacity (a 4xx rejection, a local read
//! failure, a 500) neither grow nor cut the limit.

use std::time::{Duration, Instant};

/// The limit a receiver starts at when nothing better is known.
pub const INITIAL: usize = 4;
/// Multiplier applied to the limit on overload.
pub const OVERLOAD_CUT: f64 = 0.7;
/// Multiplier applied when latency rose well above the baseline.
pub const LATENCY_CUT: f64 = 0.9;
/// A window's mean latency above `baseline × LATENCY_RISE` counts as a rise.
pub const LATENCY_RISE: f64 = 1.5;
/// In slow start, the goodput rise per window that keeps it doubling.
pub const STARTUP_GROWTH: f64 = 1.25;
/// Slow start's growth per window while the window's latency is within
/// [`STARTUP_FLAT`] of the baseline (no queue at the receiver yet) and the
/// sender is alone ([`ALONE_LOOKS`]): TCP BBR's start-up grows by 2/ln 2 ≈ 2.9 per round
/// trip for the same reason.
pub const STARTUP_FAST_GAIN: f64 = 4.0;
/// Looks in a row that found no other sender before a sender counts as
/// alone for [`STARTUP_FAST_GAIN`].
pub const ALONE_LOOKS: u32 = 2;
/// A window mean within this of the baseline shows no queue.
pub const STARTUP_FLAT: f64 = 1.1;
/// Windows in a row without [`STARTUP_GROWTH`] that end slow start.
pub const STARTUP_STALLS: u32 = 3;
/// Requests queued at the receiver, as a share of the limit, below which
/// the limit still grows ...
pub const QUEUE_SHARE: f64 = 0.125;
/// ... or this many, whichever is more.
pub const QUEUE_MIN: f64 = 3.0;
/// The fewest answers in a window.
pub const MIN_WINDOW: usize = 20;
/// The fewest answers in a window of slow start.
pub const STARTUP_WINDOW: usize = 8;
/// A window after a latency cut whose mean is still this close to the mean
/// that caused the cut says the latency is not ours.
pub const CUT_DID_NOT_HELP: f64 = 0.99;
/// Latency cuts in a row that did not help before the baseline is taken
/// anew. One can be a stall of the sender's own host, a slow window on
/// each side of the cut; taken for a slower receiver, it raised the
/// baseline for good, and one sender on loopback climbed from 65 in flight
/// to 175 in three seconds (16 to 64 were best).
pub const UNHELPFUL_CUTS: u32 = 2;
/// After the baseline was taken anew (raised), the limit is halved for a
/// window this long after, and then again less and less often (each probe
/// that finds no queue of the sender's own doubles the wait, up to
/// [`PROBE_MOST`]), until the baseline is back within [`LATENCY_RISE`] of
/// the one before. TCP BBR's ProbeRTT drains the pipe for the same reason:
/// a pipe kept full hides the floor of its latency.
pub const PROBE_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between latency probes.
pub const PROBE_MOST: Duration = Duration::from_secs(8);
/// A latency probe's cut.
pub const PROBE_CUT: f64 = 0.5;
/// A probe's window whose mean is under this share of the baseline found
/// queueing of the sender's own: the halved load queued less.
pub const PROBE_FOUND: f64 = 0.8;
/// ... provided its goodput kept this share of the goodput before the
/// probe: the queue that half the load did without bought nothing. A
/// receiver whose latency grows with load (20 ms + 2 ms per request open)
/// loses 8% of its goodput from 100 in flight to 50; a sender that is its
/// own bottleneck loses none.
pub const PROBE_GOODPUT_KEPT: f64 = 0.97;
/// Growth per good window while the limit is within [`NEAR`] of the limit
/// that last met overload: probing the edge one request at a time costs a
/// 503 per step, so near it the steps come four times as seldom.
pub const NEAR_CUT_GROWTH: f64 = 0.25;
/// How close to the last overload the limit counts as near it, either side.
pub const NEAR: f64 = 1.0;
/// Standard deviations above the noise that a window's failures must reach
/// to count as overload.
pub const SIGNIFICANCE: f64 = 3.0;
/// A cut for failures was right if the next window kept at least this share
/// of the goodput before it: failures that were ours cost nothing to shed.
pub const GOODPUT_KEPT: f64 = 0.8;
/// After a cut for failures, a window still failing at least this share of
/// the recent failure rate says the failures did not stop with the load.
pub const FAILING_AS_BEFORE: f64 = 0.6;
/// Weight of each window in the recent failure rate.
pub const FAILING_WEIGHT: f64 = 1.0 / 8.0;
/// Full windows remembered to tell whether failures rise with the load.
pub const HISTORY: usize = 32;
/// A correlation between a window's limit and its failure share above
/// this (and above [`RISE_SIGNIFICANCE`] standard errors) says the
/// failures rise with the load.
pub const RISE_CORRELATION: f64 = 0.25;
/// Standard errors of a chance correlation that a rise must exceed.
pub const RISE_SIGNIFICANCE: f64 = 2.0;
/// How fast the learnt noise follows windows with fewer failures: a
/// sixteenth of the difference per window.
pub const NOISE_DECAY: f64 = 1.0 / 32.0;
/// A learnt noise that has decayed below this is none.
pub const NOISE_NONE: f64 = 0.001;
/// The most failures excused as noise: beyond this share the receiver is
/// failing, which the circuit breaker handles.
pub const MAX_NOISE: f64 = 0.5;
/// Requests sent at a limit this far below one the receiver lately took
/// without a failure are "well below" its capacity
/// ([`Controller::answered`]): overload of one's own making does not come
/// there, noise does.
pub const WELL_BELOW: f64 = 0.85;
/// ... and at least this many requests below it: on a loaded host the
/// sender's count of requests in flight and the receiver's disagree by a
/// request or two (an answer not yet read, a room not yet freed), so a
/// window past a capacity of 8 can meet no 503 and one at 7 can meet a
/// few. Within that margin, 1.5% of 503s at a receiver's capacity were
/// learnt as noise and the limit then sat past it.
pub const BELOW_MARGIN: f64 = 2.0;
/// Answers to requests sent well below a load taken cleanly that say what
/// share of failures comes there.
pub const BELOW_ANSWERS: f64 = 200.0;
/// Queueing is worth its latency while goodput rises by at least this
/// share of the rise in the limit (a tenth: 25% more in flight for 2.5%
/// more files a second), measured over [`GRADIENT_WINDOWS`] windows.
pub const ELASTIC: f64 = 0.1;
/// Standard errors of the slope by which goodput's rise must exceed
/// [`ELASTIC`] (see `Controller::elastic`).
pub const ELASTIC_SIGNIFICANCE: f64 = 1.0;
/// Windows of congestion avoidance whose limits and goodputs give the
/// gradient ([`Controller::elasticity`]).
pub const GRADIENT_WINDOWS: usize = 16;
/// The longest a turned-away request keeps its room: a receiver whose
/// baseline is seconds long must not hold a sender's slots (and its
/// shutdown) that long for an answer that came at once.
pub const MAX_HOLD: Duration = Duration::from_secs(1);
/// A hold shorter than this is none: the runtime's timer ticks by the
/// millisecond, so a shorter sleep would last a tick anyway.
pub const HOLD_TICK: Duration = Duration::from_millis(1);
/// Latencies below this are all alike: loopback and LAN jitter would
/// otherwise read as a rise of several times.
pub const LATENCY_FLOOR: Duration = Duration::from_millis(2);
/// The least time before a request counts as hung ([`Controller::lapse_after`]),
/// as TCP's minimum retransmission timeout: scheduling hiccups of a busy
/// host must not free rooms that are still in use.
pub const LAPSE_FLOOR: Duration = Duration::from_millis(250);
/// Before any answer was timed, a request counts as hung after this.
pub const LAPSE_INITIAL: Duration = Duration::from_secs(1);
/// How often senders sharing a receiver take a quiet moment together
/// ([`Controller::quiet`]), by the wall clock every process on the host
/// reads alike.
pub const QUIET_EVERY: Duration = Duration::from_secs(3);
/// How long after its first measurement a sender still takes the early
/// quiet moments ([`Quieting::Early`]): the next one, which senders that
/// started with it may still measure with. Each costs a few percent of a
/// short run's time (three senders on a capacity of 8, simulated: 1.11×
/// the best time before, 1.17× with one more, 1.22× with two).
pub const QUIET_EARLY_AFTER: Duration = Duration::from_millis(500);
/// How long a quiet moment lasts: with [`QUIET_CUT`], 2.5% of the goodput
/// of senders that take them.
pub const QUIET_FOR: Duration = Duration::from_millis(150);
/// How often a sender that has measured nothing yet takes a quiet moment.
pub const QUIET_FIRST_EVERY: Duration = Duration::from_millis(500);
/// The start of a quiet moment whose requests are not measured: the
/// receiver still works on the ones sent before it.
pub const QUIET_SETTLE: Duration = Duration::from_millis(50);
/// The share of its limit a sender keeps in a quiet moment.
pub const QUIET_CUT: f64 = 0.5;
/// The fewest answers to requests sent in quiet moments that measure the
/// noise.
pub const QUIET_ANSWERS: f64 = 20.0;
/// The fewest failures in quiet moments that raise the noise: one is no
/// share ([`Controller::quiet`]).
pub const QUIET_FAILURES: f64 = 2.0;
/// The weight of each answer in the recent failure share: about the last
/// fifty answers.
pub const RECENT_WEIGHT: f64 = 1.0 / 50.0;
/// How many standard deviations fewer failures than the recent share
/// predicts a quiet moment must meet to say they fell with the load
/// (overload, not noise). At three, three senders on a capacity of 8
/// whose first moments halved the load only to the capacity met 10% of
/// failures in 27-93 answers against 25% outside, learnt it as noise, and
/// sat at up to 17% of 503s in about one run in thirty (debug senders beside
/// a busy loop: 3 of 83 runs above 5%; at two, none of 58, the highest
/// 1.9%). A moment wrongly judged so learns the lower share it met and is
/// measured again at the next.
pub const FELL_SIGNIFICANCE: f64 = 2.0;
/// How far above the recent failure share, in its own standard
/// deviations, a quiet moment's share may still be learnt as noise: one
/// moment in forty with the recent share at its true value is bound below
/// the truth.
pub const RECENT_SPREADS: f64 = 2.0;
/// The weight each quiet moment's count keeps at the next: a sender at a
/// small limit against a remote receiver gets a few answers a moment, and
/// their sum over several moments measures what one cannot.
pub const QUIET_MEMORY: f64 = 0.5;

/// What a request keeps after its answer ([`Controller::hold`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// How long it keeps its room under the limit.
    pub room: Duration,
    /// How long until the controller hears its answer
    /// ([`Controller::answered`]); never shorter than `room`.
    pub tell: Duration,
}

impl Hold {
    /// Freed and heard at once.
    pub const NONE: Hold = Hold {
        room: Duration::ZERO,
        tell: Duration::ZERO,
    };
}

/// What one answer says about the receiver's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    /// Answered (2xx) after this long.
    Good(Duration),
    /// A failure that is overload if it comes more often as the load rises:
    /// 429, 503, a timeout, a reset or a refused connect.
    Overload,
    /// Nothing learnt (a 4xx rejection, a 500, a local read failure).
    Neutral,
}

/// What the caller keeps of a request while it is in flight, to hand back
/// with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket {
    generation: u64,
    /// Sent in a quiet moment.
    quiet: bool,
    /// Which quiet moment was the latest when it was sent.
    moment: u64,
    /// The limit when it was sent.
    limit: usize,
}

/// The limit, baseline and noise worth remembering across a restart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub limit: usize,
    pub baseline: Option<Duration>,
    /// The share of answers learnt to fail whatever the load: a sender
    /// restarted among others that share the receiver learns none until
    /// its first quiet moment.
    pub noise: f64,
}

/// A baseline taken anew, and when to probe it next.
#[derive(Debug)]
struct Raised {
    /// The baseline before it was taken anew (the lowest, if several times).
    from: Duration,
    probe_at: Instant,
    /// The wait after the next probe if it finds no queue of the sender's.
    wait: Duration,
    /// The raised baseline a clear probe confirmed as the receiver's
    /// ([`Controller::probe_found_own_queue`]): a restart may start from it.
    confirmed: Option<Duration>,
}

/// A latency probe under way ([`Controller::probe_found_own_queue`]).
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The goodput of the window before the probe, if known: a probe finds
    /// the sender's own queue only if it keeps nearly as much.
    goodput_before: Option<f64>,
    /// The generation its cut made: another cut since (for overload)
    /// lowered its goodput too.
    generation: u64,
    /// Whether the sender was alone when the probe began.
    alone: bool,
}

#[derive(Debug)]
pub struct Controller {
    max: usize,
    limit: f64,
    /// Bumped on every cut (and undo); answers to requests of older
    /// generations do not cut again.
    generation: u64,
    baseline: Option<Duration>,
    /// The window mean that caused the last latency cut, until the next
    /// window says whether the cut helped.
    cut_at: Option<Duration>,
    /// Latency cuts in a row that did not lower the latency.
    unhelpful_cuts: u32,
    /// A baseline taken anew that may still be a queue of the sender's
    /// own, until probed back near the one before ([`PROBE_FIRST`]).
    raised: Option<Raised>,
    /// A latency probe under way, the limit at half.
    probing: Option<Probe>,
    /// The window after a latency cut, which says nothing yet.
    settling: bool,
    /// The limit that last met overload, until the limit grows well past it
    /// (the receiver took more since).
    edge: Option<f64>,
    /// The limit that last met overload, kept after growth passed it: the
    /// steps stay single within twice it.
    overloaded_at: Option<f64>,
    /// The latency of the latest served request, for [`Controller::hold`]
    /// before the first window sets the baseline.
    last_good: Option<Duration>,
    /// Smoothed latency and its mean deviation (TCP's SRTT and RTTVAR),
    /// for [`Controller::lapse_after`] and a fast receiver's
    /// [`Controller::hold`].
    srtt: Option<(Duration, Duration)>,
    /// Doubling per good window, until goodput stops rising or a cut.
    slow_start: bool,
    /// Slow start's best window, and the windows since without a rise.
    best: Option<Best>,
    stalls: u32,
    /// The share of answers that fail whatever the load.
    noise: f64,
    /// The noise the latest evidence (an undone cut, failures well below
    /// a clean load, a quiet moment, the record) said: a sender alone's
    /// windows move the noise both ways, but never above this.
    noise_ceiling: f64,
    /// Other senders share the receiver ([`Controller::set_shared`]).
    shared: bool,
    /// Looks in a row that found no other sender.
    alone_looks: u32,
    /// The share of answers that failed over the last several windows.
    failing: f64,
    /// The share of failures among the latest answers outside quiet
    /// moments, answer by answer (windows cut short by a cut never close,
    /// so [`Self::failing`] misses overload).
    recent_failing: f64,
    recent_answers: u64,
    /// Windows closed so far (the first sets `failing`).
    windows: u64,
    /// The latest full windows, for [`failures_rise_with_load`] and
    /// [`Controller::clean_max`].
    history: std::collections::VecDeque<Seen>,
    /// The log of the limit and of the goodput of the latest full windows
    /// in congestion avoidance, for [`Controller::elasticity`].
    gradient: std::collections::VecDeque<(f64, f64)>,
    /// A cut for failures whose effect the next window judges.
    pending: Option<Pending>,
    /// The latest quiet moment and what its requests met.
    quiet: Quiet,
    /// Answers and failures of the quiet moments so far, the older ones
    /// weighing less ([`QUIET_MEMORY`]).
    quiet_answers: f64,
    quiet_failures: f64,
    /// The share of failures the quiet moments measured. Shared, a cut
    /// undone learns no more noise than this.
    quiet_share: Option<f64>,
    /// When the quiet moments first measured the noise: early moments go
    /// on for [`QUIET_EARLY_AFTER`] after it.
    first_measured: Option<Instant>,
    /// Answers and failures of requests sent well below a load the
    /// receiver lately took cleanly, the older ones weighing less (as the
    /// quiet moments').
    below_answers: f64,
    below_failures: f64,
    /// Failures answered but not yet heard: each is told when its
    /// [`Hold::tell`] has passed.
    held: usize,
    /// Goodput of the latest window that closed with the pipe full.
    goodput: Option<f64>,
    window: Window,
}

/// What one full window met.
#[derive(Clone, Copy, Debug)]
struct Seen {
    limit: f64,
    /// The share of its answers that failed.
    failed: f64,
    /// The requests its answers found open at the receiver, by Little's
    /// law (goodput times mean latency), at most the limit; none if the
    /// window was too short to say. The limit bounds the slots taken, and
    /// a slot is taken before its file is claimed, read and compressed:
    /// on a loaded host a window at a limit of 16 met no 503 from a
    /// receiver with room for 8, and its limit then made 503s at 9 look
    /// "well below" a load taken cleanly.
    load: Option<f64>,
}

/// Slow start's best window.
#[derive(Clone, Copy, Debug)]
struct Best {
    goodput: f64,
    /// The limit that gave it.
    at: f64,
    /// The requests its answers found open at the receiver
    /// ([`Seen::load`]), where slow start's overload goes back to.
    load: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    limit_before: f64,
    slow_start: bool,
    goodput_before: Option<f64>,
}

/// The steps of a quiet moment, [`QUIET_SETTLE`] and then the rest of
/// [`QUIET_FOR`] apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quieting {
    /// Every [`QUIET_EVERY`].
    Start,
    /// Every [`QUIET_FIRST_EVERY`] between those: taken only by a sender
    /// that has measured nothing yet (or first did less than
    /// [`QUIET_EARLY_AFTER`] ago), so that senders starting together
    /// measure the noise in about a second, not a quiet moment's
    /// interval of limits near one.
    Early,
    Measure,
    End,
}

/// A quiet moment ([`Controller::quiet`]): while `on`, the limit is cut by
/// [`QUIET_CUT`]; the answers to requests sent in it are counted apart
/// until every one has come back after `ended` (or, some hung,
/// [`Controller::lapse_after`] after it), then judged.
#[derive(Debug, Default)]
struct Quiet {
    on: bool,
    /// Past [`QUIET_SETTLE`]: requests sent now are measured.
    measuring: bool,
    ended: Option<Instant>,
    /// Counts the moments, so that a late answer to an earlier one is not
    /// taken for one of this one's.
    number: u64,
    /// Requests sent while measuring whose answers have not come yet.
    out: usize,
    answers: usize,
    failures: usize,
}

#[derive(Debug, Default)]
struct Window {
    opened: Option<Instant>,
    answers: usize,
    failures: usize,
    good: usize,
    latency_sum: Duration,
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
            unhelpful_cuts: 0,
            raised: None,
            probing: None,
            settling: false,
            edge: None,
            overloaded_at: None,
            last_good: None,
            srtt: None,
            slow_start: start.is_none(),
            best: None,
            stalls: 0,
            noise: start.map_or(0.0, |s| s.noise).clamp(0.0, MAX_NOISE),
            noise_ceiling: start.map_or(0.0, |s| s.noise).clamp(0.0, MAX_NOISE),
            shared: false,
            alone_looks: 0,
            failing: 0.0,
            recent_failing: 0.0,
            recent_answers: 0,
            windows: 0,
            history: std::collections::VecDeque::with_capacity(HISTORY),
            gradient: std::collections::VecDeque::with_capacity(GRADIENT_WINDOWS),
            pending: None,
            quiet: Quiet::default(),
            quiet_answers: 0.0,
            quiet_failures: 0.0,
            quiet_share: None,
            first_measured: None,
            below_answers: 0.0,
            below_failures: 0.0,
            goodput: None,
            held: 0,
            window: Window::default(),
        }
    }

    /// A new bound (a reload changed the receiver's `concurrency`): what
    /// was learnt is kept, the limit clamped into the new bound. A limit
    /// that sat at a lower old bound grows from there as the answers let
    /// it, not at once.
    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
        self.limit = self.limit.min(self.max as f64);
    }

    /// Requests this receiver may have in flight now.
    pub fn limit(&self) -> usize {
        let limit = if self.quiet.on {
            self.limit * QUIET_CUT
        } else {
            self.limit
        };
        (limit.floor() as usize).clamp(1, self.max)
    }

    pub fn baseline(&self) -> Option<Duration> {
        self.baseline
    }

    /// Tells the controller whether other senders share the receiver
    /// (through the spool). While they do, the quiet moments
    /// ([`Controller::quiet`]) say what is noise: one sender's cut cannot
    /// show whether failures follow the load when the others fill the
    /// room it gave up, and senders that each excused a little of the
    /// overload they make together met 15-50% 503s under a busy host.
    /// Called after each look for other senders.
    pub fn set_shared(&mut self, shared: bool) {
        self.shared = shared;
        self.alone_looks = if shared {
            0
        } else {
            self.alone_looks.saturating_add(1)
        };
    }

    /// The share of answers learnt to fail whatever the load.
    pub fn noise(&self) -> f64 {
        self.noise
    }

    /// What a restart starts from. A baseline taken anew that no probe has
    /// either brought back or confirmed (at half the load, no less latency,
    /// for a sender alone) is remembered as the one before it: the new one
    /// may be the senders' own queue, and a restarted sender trusting it
    /// would probe nothing (no [`Raised`] comes with a record). Senders
    /// that share a spool each start from the record one of them last
    /// wrote, so with one killed and started again every 0.7 s (the
    /// bench's chaos row) each raise became every later sender's floor:
    /// their limits summed to 100 in flight at 3 ms in the first second
    /// and to 380 at 12 ms after six, where 64 in all was best. If the
    /// receiver really is slower whatever the load, two cuts that do not
    /// help take the baseline anew within a few windows.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            limit: self.limit(),
            baseline: match (&self.raised, self.baseline) {
                (Some(raised), Some(baseline)) => {
                    Some(raised.confirmed.unwrap_or(raised.from).min(baseline))
                }
                (_, baseline) => baseline,
            },
            // What evidence said, not where windows of chance moved it
            // since: a restart starts from the ceiling.
            noise: self.noise_ceiling.max(self.noise),
        }
    }

    /// Called as a request goes out, with the number in flight including
    /// it; the ticket comes back with its answer.
    pub fn sent(&mut self, in_flight: usize) -> Ticket {
        if in_flight >= self.limit() {
            self.window.saturated = true;
        }
        if self.quiet.measuring {
            self.quiet.out += 1;
        }
        Ticket {
            generation: self.generation,
            quiet: self.quiet.measuring,
            moment: self.quiet.number,
            limit: self.limit(),
        }
    }

    /// Starts (`on`) or ends a quiet moment, which senders sharing a
    /// receiver take together at the same instants of the wall clock
    /// ([`QUIET_EVERY`], for [`QUIET_FOR`]) while any failures are excused
    /// as noise. One sender alone cannot tell noise from the overload it
    /// makes with the others: when it cuts, they fill the room it gave
    /// up, and its failures go on as noise would. When all cut at once,
    /// the receiver has room to spare, and the failures that still come
    /// are the noise: the learnt share is lowered to theirs. A sender
    /// alone, or with nothing excused, takes no quiet moment.
    pub fn quiet(&mut self, phase: Quieting, now: Instant) {
        if phase == Quieting::Measure {
            self.quiet.measuring = self.quiet.on;
        } else if phase == Quieting::Start || phase == Quieting::Early {
            // Senders that started together measure at different moments
            // (one met a failure, another not yet enough answers); one
            // that stopped taking early moments at its first measurement
            // kept its whole limit open in the others' next, which then
            // halved only their own load and met its overload as noise.
            let measured = self
                .first_measured
                .is_some_and(|at| now.saturating_duration_since(at) >= QUIET_EARLY_AFTER);
            if !self.shared || self.quiet.on || (phase == Quieting::Early && measured) {
                return;
            }
            if self.quiet.ended.is_some() {
                // The moment before is still waiting for its hung requests'
                // lapse: judge it with what it has rather than lose it
                // (early moments can come sooner than a lapse).
                self.judge_quiet(now);
            }
            self.quiet = Quiet {
                on: true,
                number: self.quiet.number + 1,
                ..Quiet::default()
            };
            // Windows and the judgement of a cut measure the load
            // before: a quiet moment would read as the cut's effect.
            self.pending = None;
            self.window = Window::default();
        } else if self.quiet.on {
            self.quiet.on = false;
            self.quiet.measuring = false;
            self.quiet.ended = Some(now);
            self.window = Window::default();
        }
    }

    /// Called instead of [`Controller::answered`] for a ticket whose
    /// request was never sent: its file was claimed by another sender
    /// first, or its job was cut short. It says nothing of the receiver,
    /// but a quiet moment no longer waits for its answer: among senders
    /// that share a spool a lost claim is common, and each one in a
    /// moment kept its judgement waiting for the lapse time.
    pub fn withdrawn(&mut self, ticket: Ticket, now: Instant) {
        self.quiet_out(ticket);
        self.judge_quiet_if_done(now);
    }

    /// A request sent in the current quiet moment is out no more.
    fn quiet_out(&mut self, ticket: Ticket) {
        if ticket.quiet && ticket.moment == self.quiet.number {
            self.quiet.out = self.quiet.out.saturating_sub(1);
        }
    }

    /// Counts an answer to a request sent in a quiet moment, and judges
    /// the moment once its requests have answered (or had time to).
    fn quiet_answer(&mut self, ticket: Ticket, signal: Signal, now: Instant) {
        if ticket.quiet {
            self.quiet_out(ticket);
            match signal {
                Signal::Overload => {
                    self.quiet.answers += 1;
                    self.quiet.failures += 1;
                }
                Signal::Good(_) => self.quiet.answers += 1,
                Signal::Neutral => {}
            }
        }
        self.judge_quiet_if_done(now);
    }

    /// Judges the ended quiet moment once its requests have all answered
    /// (or had time to).
    fn judge_quiet_if_done(&mut self, now: Instant) {
        let Some(ended) = self.quiet.ended else {
            return;
        };
        // Judged as soon as the moment's requests have all answered: the
        // lapse time (at least 250 ms) after its end kept a sender that
        // started among others, and met their noise as overload, near a
        // limit of one for that long.
        if self.quiet.out > 0 && now.saturating_duration_since(ended) < self.lapse_after() {
            return;
        }
        self.judge_quiet(now);
    }

    /// Learns from the latest quiet moment what share of failures is noise.
    fn judge_quiet(&mut self, now: Instant) {
        let number = self.quiet.number;
        let quiet = std::mem::replace(
            &mut self.quiet,
            Quiet {
                number,
                ..Quiet::default()
            },
        );
        // Until the first measurement nothing is forgotten: a sender held
        // near a limit of one gets a few answers per quiet moment, and
        // halving them at each would never reach [`QUIET_ANSWERS`] (three
        // senders behind a load balancer measured nothing for 5 s).
        let keep = if self.quiet_share.is_some() {
            QUIET_MEMORY
        } else {
            1.0
        };
        self.quiet_answers = self.quiet_answers * keep + quiet.answers as f64;
        self.quiet_failures = self.quiet_failures * keep + quiet.failures as f64;
        if self.quiet_answers < QUIET_ANSWERS {
            return;
        }
        // The failures that still come when every sender gave up half
        // its room are the ones that come at every load.
        let n = self.quiet_answers;
        let share = self.quiet_failures / n;
        // Fewer than the recent share predicts, by [`FELL_SIGNIFICANCE`]
        // deviations of a binomial count: a quiet moment's twenty-odd
        // answers against a noise of 10% often meet one failure or none,
        // which says nothing.
        let expected = n * self.recent_failing;
        let deviation = (expected * (1.0 - self.recent_failing)).sqrt();
        if self.quiet_failures < expected - FELL_SIGNIFICANCE * deviation {
            // Failures fell with the load: they are overload, and the
            // quiet moment did not halve the load enough to get below the
            // receiver's capacity (three senders, one of them at 16, on a
            // capacity of 8). The noise is at most what the moment still
            // met, and no more is excused; the cuts go on judging.
            tracing::debug!(
                noise = self.noise,
                quiet = share,
                failing = self.recent_failing,
                "failures in quiet moments fell with the load: overload, not noise"
            );
            self.learn_noise(self.noise.min(share));
            self.measured(now);
            return;
        }
        // Noise comes at every load, so the failures outside the moment
        // bound it too: a moment that met more than the sender's own
        // answers did (another sender not yet quiet) must not excuse them.
        // One that learnt 14% against 2% outside let a sender sit at 30%
        // of 503s, each window's failures within what that noise explains.
        // Bound by the recent share's own spread as well: that share is of
        // about fifty answers, and the lower of it and the moment's
        // hundreds was the lower by chance. Four senders behind 11% of
        // failures learnt 4-8% of noise that way (0.08 on average), and
        // every window at the true share then risked a cut.
        let mut share = share.min(self.recent_failing + RECENT_SPREADS * self.recent_spread());
        if self.quiet_failures < QUIET_FAILURES && share > self.noise {
            // One failure is no share: one request at the moment's edge
            // (another sender's timer fired late, the receiver freed a
            // room late) meets the receiver full. In three senders on a
            // capacity of 8, one failure in 29 answers was learnt as 3.4%
            // of noise, slow start began again, and that noise then
            // excused four 503s in a window of twenty: together they met
            // 11% of 503s. Before the first measurement the moments'
            // answers go on adding up until a second failure comes or
            // there are [`BELOW_ANSWERS`] of them; after it, one failure
            // does not raise what was measured.
            if self.quiet_share.is_none() && n < BELOW_ANSWERS {
                return;
            }
            share = self.noise;
        }
        tracing::debug!(
            noise = self.noise,
            quiet = share,
            answers = n,
            "failures in quiet moments: the noise"
        );
        if self.quiet_share.is_none() && self.noise == 0.0 && share > 0.0 {
            // The first measurement, and noise: the cuts before it were
            // the noise's (shared senders excuse none until measured).
            self.start_again();
        }
        self.learn_noise(share);
        self.measured(now);
    }

    /// The standard deviation of [`Self::recent_failing`] as an estimate
    /// of the failure share: a moving average over about `1 /`
    /// [`RECENT_WEIGHT`] answers.
    fn recent_spread(&self) -> f64 {
        let p = self.recent_failing;
        (p * (1.0 - p) * RECENT_WEIGHT / (2.0 - RECENT_WEIGHT)).sqrt()
    }

    /// The noise as evidence said it.
    ///
    /// Evidence that raises the noise keeps a higher ceiling: windows that
    /// by chance failed less may have lowered the noise below it, and an
    /// undone cut or failures well below a clean load then learn a share
    /// between the two, which says nothing against the ceiling. Evidence
    /// that lowers it (a quiet moment) lowers the ceiling too.
    fn learn_noise(&mut self, share: f64) {
        let share = share.clamp(0.0, MAX_NOISE);
        self.noise_ceiling = if share >= self.noise {
            self.noise_ceiling.max(share)
        } else {
            share
        };
        self.noise = share;
    }

    /// The quiet moments measured the noise.
    fn measured(&mut self, now: Instant) {
        self.quiet_share = Some(self.noise);
        self.first_measured.get_or_insert(now);
    }

    /// Noise learnt for the first time: the cuts before it were the
    /// noise's, and the limit they left and the edge they marked say
    /// nothing of the receiver's capacity. Slow start again, from where a
    /// sender with nothing known starts rather than the limit the cuts
    /// left (from one, two windows at one and two in flight cost a fifth
    /// of a second against a receiver 40 ms away).
    fn start_again(&mut self) {
        self.slow_start = true;
        self.best = None;
        self.stalls = 0;
        self.pending = None;
        self.edge = None;
        self.overloaded_at = None;
        self.limit = self.limit.max(INITIAL.min(self.max) as f64);
    }

    /// Called with each answer to a request sent with `ticket`, at `now`.
    pub fn answered(&mut self, ticket: Ticket, signal: Signal, now: Instant) {
        if signal == Signal::Overload {
            self.held = self.held.saturating_sub(1);
        }
        // At a limit of one a sender alone cannot be overloading the
        // receiver: whatever fails there fails at every load it can make.
        let below = !ticket.quiet
            && (ticket.limit <= 1
                || self.clean_max().is_some_and(|clean| {
                    ticket.limit as f64 <= (clean * WELL_BELOW).min(clean - BELOW_MARGIN)
                }));
        if !ticket.quiet {
            let failed = match signal {
                Signal::Overload => Some(1.0),
                Signal::Good(_) => Some(0.0),
                Signal::Neutral => None,
            };
            if let Some(failed) = failed {
                // A plain mean over the first answers, so the share does
                // not start from nothing.
                self.recent_answers += 1;
                let weight = RECENT_WEIGHT.max(1.0 / self.recent_answers as f64);
                self.recent_failing += (failed - self.recent_failing) * weight;
            }
        }
        self.quiet_answer(ticket, signal, now);
        self.judge(ticket, signal, now);
        if below {
            self.below_answer(signal);
        }
    }

    /// The highest load of the remembered full windows that met no
    /// failure: a load the receiver took cleanly not long ago.
    fn clean_max(&self) -> Option<f64> {
        self.history
            .iter()
            .filter(|seen| seen.failed == 0.0)
            .filter_map(|seen| seen.load)
            .reduce(f64::max)
    }

    /// What one answer says to the window, and a cut if its failures
    /// exceed the noise.
    fn judge(&mut self, ticket: Ticket, signal: Signal, now: Instant) {
        if ticket.quiet || self.quiet.on {
            // Counted apart: a quiet moment's load is not the limit's.
            return;
        }
        if ticket.generation != self.generation {
            // Sent before the last cut: its news was acted on, and its
            // latency and fate belong to the load before. Counted, the
            // first window after each cut would judge the cut by the load
            // it replaced.
            return;
        }
        self.window.opened.get_or_insert(now);
        self.window.answers += 1;
        match signal {
            Signal::Overload => {
                self.window.failures += 1;
                // At one request in flight there is nothing left to cut:
                // the window's end judges the failures instead.
                if self.limit() > 1 && self.failures_exceed_noise() {
                    self.cut_for_failures(now);
                    return;
                }
            }
            Signal::Good(latency) => {
                self.last_good = Some(latency);
                self.window.good += 1;
                self.window.latency_sum += latency;
                self.srtt = Some(match self.srtt {
                    None => (latency, latency / 2),
                    Some((srtt, var)) => {
                        let dev = srtt.abs_diff(latency);
                        (srtt * 7 / 8 + latency / 8, var * 3 / 4 + dev / 4)
                    }
                });
            }
            Signal::Neutral => {}
        }
        // In slow start with no noise learnt, a failure still held would
        // cut: the window waits for it rather than grow past it (a window
        // of 16 good answers closed and quadrupled while the 503s of the
        // requests sent at 16 were held, and the 64 then met 40 more).
        let failure_due = self.slow_start && self.noise == 0.0 && self.held > 0;
        if self.window.answers >= self.window_size() && !failure_due {
            self.close_window(now);
        }
    }

    /// Counts an answer to a request sent well below a load the receiver
    /// lately took without a failure, and learns their failures as noise
    /// once there are enough. A receiver at its capacity does not fail
    /// below it; failures that come there come at every load. A cut's own
    /// judgement needs two failures in the window after it, which a noise
    /// of 1% gives one time in sixty: each 503 cut the limit and nothing
    /// was learnt (0.22-0.25x the best fixed limit, simulated). Shared,
    /// the others fill the room a cut gives up: the quiet moments say.
    fn below_answer(&mut self, signal: Signal) {
        match signal {
            Signal::Overload => {
                self.below_answers += 1.0;
                self.below_failures += 1.0;
            }
            Signal::Good(_) => self.below_answers += 1.0,
            Signal::Neutral => return,
        }
        // At a limit of one there is nothing left to cut and a window of
        // answers is seconds against a remote receiver: one window says.
        // (A load balancer 40 ms away with a sick backend kept a sender
        // near one for twelve seconds while it waited for a clean window.)
        // There every failure is noise by itself, so one is evidence
        // enough; waiting for a second cost a sender 40 ms away with a
        // noise of 10% twenty answers, most of a second.
        // Once: after the first, each failure would raise the estimate of
        // so few answers (a noise of 10% was learnt as 22%).
        let (enough, failures) = if self.limit() <= 1 && self.noise == 0.0 {
            ((MIN_WINDOW / 2) as f64, 1.0)
        } else {
            (BELOW_ANSWERS, 2.0)
        };
        if self.below_answers < enough {
            return;
        }
        let share = self.below_failures / self.below_answers;
        if !self.shared && self.below_failures >= failures && share > self.noise {
            tracing::debug!(
                noise = self.noise,
                below = share,
                "failures come well below a load taken cleanly: learnt as noise"
            );
            if self.noise == 0.0 {
                // A cut made before is not to be undone back to where it
                // was either (an undo restored congestion avoidance at a
                // limit of 3, and the climb to 1,024 against 40 ms took
                // 2 s).
                self.start_again();
            }
            self.edge = None;
            self.overloaded_at = None;
            self.learn_noise(share);
        }
        if self.below_answers >= BELOW_ANSWERS {
            self.below_answers *= QUIET_MEMORY;
            self.below_failures *= QUIET_MEMORY;
        }
    }

    /// What a request that got `signal` keeps after its answer
    /// ([`Hold`]). A request turned away is heard a served one's time
    /// (the baseline, at least [`LATENCY_FLOOR`]) after its answer: a 503
    /// comes back in a fraction of that time, and heard at once, the
    /// failures of the requests sent after a change of limit would reach
    /// the controller before their successes, and every window after a
    /// change would seem to fail more often than the receiver does. Until
    /// then it is counted as held.
    ///
    /// It keeps its room as long, so that a sender does not answer a full
    /// receiver's 503 by sending again at once; but against a receiver
    /// faster than the floor, only for what a served request took (the
    /// smoothed latency), and not at all if that is less than
    /// [`HOLD_TICK`]. Kept for the 2 ms floor against a receiver that
    /// answered in half a millisecond, the rooms of a sick backend's 503s
    /// took a tenth of a sender's (one sender at 16 behind 10% of 503s:
    /// 0.92x the same sender pinned at 16, 1.0x without).
    pub fn hold(&mut self, signal: Signal) -> Hold {
        match signal {
            Signal::Overload => {
                self.held += 1;
                let tell = self
                    .baseline
                    .or(self.last_good)
                    .unwrap_or(LATENCY_FLOOR)
                    .clamp(LATENCY_FLOOR, MAX_HOLD);
                // Under the floor, what a served request took; over it,
                // the baseline, as it is heard.
                let room = self
                    .srtt
                    .map(|(srtt, _)| srtt)
                    .or(self.last_good)
                    .filter(|served| *served < LATENCY_FLOOR)
                    .map_or(tell, |served| served.min(tell));
                Hold {
                    room: if room < HOLD_TICK {
                        Duration::ZERO
                    } else {
                        room
                    },
                    tell,
                }
            }
            Signal::Good(_) | Signal::Neutral => Hold::NONE,
        }
    }

    /// How long a request may go unanswered before it stops counting
    /// against the limit: twice the smoothed latency plus four deviations,
    /// at least [`LAPSE_FLOOR`]. Its answer, when it comes, still counts.
    pub fn lapse_after(&self) -> Duration {
        match self.srtt {
            None => LAPSE_INITIAL,
            Some((srtt, var)) => (srtt * 2 + var * 4).max(LAPSE_FLOOR),
        }
    }

    /// Answers per window: one round trip's worth with the pipe full. In
    /// congestion avoidance at least [`MIN_WINDOW`], so a small limit does
    /// not probe too often (at a limit of 1, growing by one doubles the
    /// load) and a window's failures say something; in slow start exactly
    /// the limit, so the limit doubles each round trip as TCP's does: a
    /// window of 20 at a limit of 4 is five round trips, half a second
    /// against a receiver 100 ms away.
    fn window_size(&self) -> usize {
        if self.slow_start {
            self.limit().max(STARTUP_WINDOW)
        } else {
            self.limit().max(MIN_WINDOW)
        }
    }

    /// Whether this window's failures are more than the noise explains in
    /// a window of its size: a binomial count's mean plus
    /// [`SIGNIFICANCE`] deviations, plus one so that a single failure
    /// never cuts a receiver with no noise learnt.
    fn failures_exceed_noise(&self) -> bool {
        let n = self.window_size() as f64;
        let p = self.noise;
        // With no noise learnt, the first failure is news: a receiver
        // at its capacity turns away a request or two per window past it,
        // and waiting for a second would let that be the steady state.
        let slack = if p > 0.0 { 1.0 } else { 0.0 };
        let allowed = n * p + SIGNIFICANCE * (n * p * (1.0 - p)).sqrt() + slack;
        self.window.failures as f64 > allowed
    }

    fn cut_for_failures(&mut self, now: Instant) {
        // A cut while the last one is still judged keeps the first one's
        // starting point: the judgement undoes both, or neither.
        let earlier = self.pending.take();
        // The goodput at the limit being cut: of the window under way if
        // it ran long enough to say (in slow start the last whole window
        // was at half this limit), else of the last whole one.
        let under_way = self
            .window
            .opened
            .map(|opened| now.saturating_duration_since(opened).as_secs_f64())
            .filter(|_| self.window.answers * 2 >= self.window_size())
            .filter(|s| *s > 0.0)
            .map(|s| self.window.good as f64 / s);
        let goodput = match (self.goodput, under_way) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.pending = Some(Pending {
            limit_before: earlier.map_or(self.limit, |p| p.limit_before),
            slow_start: earlier.map_or(self.slow_start, |p| p.slow_start),
            goodput_before: earlier.map_or(goodput, |p| p.goodput_before),
        });
        self.edge = Some(self.limit);
        self.overloaded_at = Some(self.limit);
        // Overload in slow start: the growth since the last window that
        // raised goodput overshot, by up to four times against a receiver
        // that turns away what it has no room for and shows no queue
        // first. Back at once to the requests that window found open at
        // the receiver (its limit, if that is not known), as BBR drains to
        // its estimate after start-up; cuts by 0.7 took four round trips
        // from 32 to a capacity of 8, and met 45 503s on the way. (Its
        // limit alone is not enough: a 503 is heard after its hold, so a
        // window of 16 good answers can close, and quadruple, before the
        // 503s of the requests sent at 16.)
        let last_good = self
            .best
            .filter(|_| self.slow_start)
            .map(|best| best.load.map_or(best.at, |load| load.clamp(1.0, best.at)))
            .filter(|at| *at < self.limit * OVERLOAD_CUT);
        match last_good {
            Some(at) => self.cut(at / self.limit),
            None => self.cut(OVERLOAD_CUT),
        }
    }

    fn cut(&mut self, by: f64) {
        self.slow_start = false;
        self.best = None;
        self.limit = (self.limit * by).max(1.0);
        self.generation += 1;
        self.window = Window::default();
    }

    /// One good window's growth: doubling in slow start, a whole step, or a
    /// quarter of one near the limit that last met overload.
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
            // Far from any overload the step is the square root of the
            // limit (Gradient2's queue allowance): a receiver 100 ms away
            // that takes 1,000 is reached in seconds, and a step that
            // grows slower than the limit still leaves the multiplicative
            // cuts to even out senders' shares.
            // Within twice the limit that last met overload, one at a
            // time: senders sharing a receiver near its capacity would
            // overshoot it together by several steps.
            let step = match self.overloaded_at {
                Some(at) if self.limit < 2.0 * at => 1.0,
                _ => self.limit.sqrt().floor().max(1.0),
            };
            self.limit.floor() + step
        }
        .min(self.max as f64);
    }

    fn close_window(&mut self, now: Instant) {
        let window = std::mem::take(&mut self.window);
        let failed = window.failures as f64 / window.answers.max(1) as f64;
        // Good answers per second over the window, if it lasted half a
        // round trip at least. A window opened by its own first answer
        // (after a cut or an undo) can close on answers that came in a
        // bunch, and read 23,000 files a second against a receiver 40 ms
        // away: slow start then took that as its best and fell back to it.
        let shortest = self
            .baseline
            .or(self.last_good)
            .map_or(0.0, |b| b.as_secs_f64() / 2.0);
        let goodput = window
            .opened
            .map(|opened| now.saturating_duration_since(opened).as_secs_f64())
            .filter(|s| *s > 0.0 && *s >= shortest)
            .map(|s| window.good as f64 / s);
        let mean = window
            .latency_sum
            .checked_div(window.good as u32)
            .filter(|_| window.good > 0);
        tracing::trace!(
            limit = self.limit,
            answers = window.answers,
            failed,
            goodput,
            mean_ms = mean.map(|mean| mean.as_secs_f64() * 1e3),
            baseline_ms = self.baseline.map(|b| b.as_secs_f64() * 1e3),
            elasticity = self.elasticity(),
            saturated = window.saturated,
            slow_start = self.slow_start,
            noise = self.noise,
            "window"
        );
        // The window opens where the last one closed, so the time between
        // them counts.
        self.window.opened = Some(now);

        let failing_before = self.failing;
        self.failing = match self.windows {
            0 => failed,
            _ => self.failing + (failed - self.failing) * FAILING_WEIGHT,
        };
        self.windows += 1;
        let load = goodput
            .zip(mean)
            .map(|(goodput, mean)| (goodput * mean.as_secs_f64()).min(self.limit));
        if window.saturated {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(Seen {
                limit: self.limit,
                failed,
                load,
            });
        }
        // Failures that follow the limit bar an undo. (They no longer
        // halve the noise: over a few dozen small windows a sick
        // backend's 503s correlate with the limit by chance often enough
        // that one sender behind a load balancer kept unlearning its
        // noise and falling to a limit near one: 0.27-0.37x the best
        // fixed limit with the halving, 0.69-0.85x without, bench runs
        // side by side. Shared senders have their quiet moments.)
        let rising = window.saturated && failures_rise_with_load(&self.history);
        if let Some(pending) = self.pending.take()
            && window.saturated
            && window.failures >= 2
            && failed >= failing_before * FAILING_AS_BEFORE
            && !rising
            // Shared, the quiet moments say how much can be noise; before
            // the first, none: three senders starting together against a
            // full receiver each undid cuts and learnt 25-35% "noise" in
            // their first three seconds.
            && !(self.shared && self.quiet_share.is_none_or(|share| share <= self.noise))
            && (pending.limit_before.floor() <= self.limit.floor()
                || match (pending.goodput_before, goodput) {
                    (Some(before), Some(after)) => after < before * GOODPUT_KEPT,
                    // Cut before any goodput was known: failures going on
                    // at less load while files still got through.
                    (None, Some(after)) => after > 0.0,
                    _ => false,
                })
        {
            // Less load, less goodput, failures as before: they come
            // whatever the load. Undo the cut and excuse their share.
            // (Failures that were ours stop when the load falls below
            // what the receiver takes; and a receiver over its capacity
            // serves as many with fewer sent.) A cut that left the whole
            // limit where it was, near one, tested nothing: failures that
            // go on there come at this load too.

            let most = match self.quiet_share {
                Some(share) if self.shared => share,
                _ => MAX_NOISE,
            };
            self.learn_noise(self.noise.max(failed.min(self.failing)).min(most));
            self.limit = pending.limit_before;
            self.slow_start = pending.slow_start;
            self.edge = None;
            self.overloaded_at = None;
            self.generation += 1;
            self.window = Window::default();
            tracing::debug!(
                noise = self.noise,
                limit = self.limit(),
                "failures come at every load: learnt as noise"
            );
            return;
        }
        // Alone, the windows move the noise both ways, but never above
        // what evidence last said (see the module doc). Lowered only, it
        // sank below a sick backend's share by chance, a window within
        // that share then met it as overload and cut, and the limit spent
        // most windows below 16 against a receiver where 16 was best.
        // Shared, a window cannot tell noise from the overload the senders
        // make together: the quiet moments measure it.
        if self.noise_ceiling > 0.0 && !self.shared {
            self.noise = (self.noise + (failed - self.noise) * NOISE_DECAY).min(self.noise_ceiling);
            if self.noise < self.noise_ceiling {
                // A backend that recovered is excused ever less.
                self.noise_ceiling += (self.noise - self.noise_ceiling) * NOISE_DECAY / 8.0;
            }
            if self.noise_ceiling < NOISE_NONE {
                // Decay never reaches zero, and the rules that apply while
                // no noise is known must apply again.
                self.noise = 0.0;
                self.noise_ceiling = 0.0;
            }
        }
        if window.saturated && goodput.is_some() {
            self.goodput = goodput;
        }
        // Windows with failures count too: a window that closes met no
        // more than the noise explains (more would have cut it short), and
        // its goodput is the receiver's all the same. Counted only without
        // failures, the slope behind a sick backend's 10% of 503s kept the
        // few windows of the first second, small enough to meet none, and
        // said "goodput still rises" for good: one sender on loopback
        // climbed to 665 in flight at 30 ms of latency, where 64 was best
        // (the bench's 10% row: 0.81-0.96x the best fixed limit).
        if let Some(goodput) = goodput.filter(|g| *g > 0.0)
            && window.saturated
            && !self.slow_start
        {
            if self.gradient.len() == GRADIENT_WINDOWS {
                self.gradient.pop_front();
            }
            self.gradient.push_back((self.limit.ln(), goodput.ln()));
        }

        let Some(mean) = mean else {
            return;
        };
        let mean = mean.max(LATENCY_FLOOR);
        // The first window sets the baseline and is judged against it.
        let mut baseline = *self.baseline.get_or_insert(mean);
        if self.settling {
            // The first window after a latency cut: its requests still
            // queue behind the ones sent before it at the receiver, so it
            // cannot say yet whether the cut helped.
            self.settling = false;
            return;
        }
        if let Some(before) = self.cut_at.take() {
            if mean.as_secs_f64() < before.as_secs_f64() * CUT_DID_NOT_HELP {
                self.unhelpful_cuts = 0;
            } else {
                self.unhelpful_cuts += 1;
            }
            if self.unhelpful_cuts >= UNHELPFUL_CUTS {
                // Less load, same latency, twice: the receiver got slower
                // by itself. Or the sender is the bottleneck, its own
                // queue the latency: the probes tell (below).
                self.unhelpful_cuts = 0;
                let from = (self.raised.as_ref()).map_or(baseline, |r| r.from.min(baseline));
                self.raised = Some(Raised {
                    from,
                    probe_at: now + PROBE_FIRST,
                    wait: PROBE_FIRST,
                    // A raise on top of a confirmed one: a restart starts
                    // from the confirmed one until this one is too.
                    confirmed: self.raised.as_ref().and_then(|r| r.confirmed),
                });
                baseline = mean;
                self.gradient.clear();
            }
        }
        if let Some(probe) = self.probing.take()
            && !self.probe_found_own_queue(probe, mean, baseline, goodput, now)
        {
            // The probe's latency, at a load that cost goodput, is no
            // floor: the baseline stays.
            return;
        }
        baseline = baseline.min(mean);
        self.baseline = Some(baseline);
        if (self.raised.as_ref())
            .is_some_and(|r| baseline.as_secs_f64() <= r.from.as_secs_f64() * LATENCY_RISE)
        {
            // Back where it was before: nothing more to look for.
            self.raised = None;
        }
        if (self.raised.as_ref()).is_some_and(|r| now >= r.probe_at)
            && window.saturated
            && !self.slow_start
        {
            let alone = self.alone();
            self.cut(PROBE_CUT);
            self.probing = Some(Probe {
                goodput_before: self.goodput,
                generation: self.generation,
                alone,
            });
            self.settling = true;
            return;
        }
        let ratio = mean.as_secs_f64() / baseline.as_secs_f64();
        // Queueing that still buys goodput is what a receiver whose
        // latency grows with load looks like at its best pace.
        let elastic = self.elastic();
        if ratio > LATENCY_RISE && !elastic {
            self.cut(LATENCY_CUT);
            self.cut_at = Some(mean);
            self.settling = true;
            return;
        }
        // Latency back under the rise: the cuts before were in no row.
        self.unhelpful_cuts = 0;
        if !window.saturated {
            return;
        }
        if self.slow_start {
            // No queue at all yet, and a sender alone: the pipe is far
            // from full, and doubling per round trip would take a second
            // to fill one 100 ms long. Shared, senders that each
            // quadrupled would overshoot together; and a sender's first
            // look can miss one that started with it (that one sees the
            // first at its own first look), so alone means alone at two
            // looks in a row.
            let gain = if self.alone() && ratio <= STARTUP_FLAT {
                STARTUP_FAST_GAIN
            } else {
                2.0
            };
            self.startup_window(goodput, load, gain);
            return;
        }
        let queued = self.limit * (1.0 - 1.0 / ratio);
        if queued <= QUEUE_MIN.max(self.limit * QUEUE_SHARE) || elastic {
            self.grow();
        }
    }

    /// Judges the window of a latency probe (the limit at half). Half the
    /// load, less latency, as many files a second: the queue was the
    /// sender's own, the lower latency is the baseline, and the next probe
    /// comes soon. Anything else is the receiver's latency: the load comes
    /// back at once (as far as the probe took it: a cut for overload since
    /// stands), and the next probe waits twice as long.
    fn probe_found_own_queue(
        &mut self,
        probe: Probe,
        mean: Duration,
        baseline: Duration,
        goodput: Option<f64>,
        now: Instant,
    ) -> bool {
        let lower = mean.as_secs_f64() < baseline.as_secs_f64() * PROBE_FOUND;
        let found = lower
            && (probe.goodput_before.zip(goodput))
                .is_some_and(|(before, g)| g >= before * PROBE_GOODPUT_KEPT);
        // The receiver's latency beyond doubt: half the load and no less
        // latency, a sender alone from start to end, no other cut between.
        // Shared, the others fill what the probe gives up and its goodput
        // falls whoever's queue the latency is; a lower latency at less
        // goodput may be a receiver whose latency grows with its load, or
        // the sender's own queue behind a goodput that one window scattered.
        let confirms = !lower
            && probe.alone
            && self.alone()
            && probe.generation == self.generation
            && probe.goodput_before.is_some()
            && goodput.is_some();
        if !found {
            self.limit = (self.limit / PROBE_CUT).min(self.max as f64);
            self.generation += 1;
            self.window = Window::default();
        }
        if let Some(raised) = &mut self.raised {
            raised.wait = if found {
                PROBE_FIRST
            } else {
                (raised.wait * 2).min(PROBE_MOST)
            };
            raised.probe_at = now + raised.wait;
            if found {
                raised.confirmed = None;
            } else if confirms {
                raised.confirmed = Some(baseline);
            }
        }
        found
    }

    /// No other sender on the spool, at the last looks in a row.
    fn alone(&self) -> bool {
        !self.shared && self.alone_looks >= ALONE_LOOKS
    }

    /// How much goodput rises with the limit, d ln(goodput) / d ln(limit),
    /// as the least-squares slope over the latest windows of congestion
    /// avoidance (their limits spread by the growth and the cuts): 1 while
    /// every request more is a file more per round trip, near 0 where the
    /// receiver is full and more in flight only queues. None over fewer
    /// than eight windows or limits that hardly differ.
    fn elasticity(&self) -> Option<f64> {
        self.gradient_fit().map(|(slope, _)| slope)
    }

    /// Whether goodput still rises with the limit by at least [`ELASTIC`];
    /// shared, beyond [`ELASTIC_SIGNIFICANCE`] standard errors of the
    /// slope. The others' load moves a shared sender's goodput from window
    /// to window more than its own limit does: four senders sharing two
    /// cores with the receiver read 1,000 to 19,000 files a second at one
    /// limit, and the slope of sixteen such windows came out anywhere from
    /// 0.2 to 1.9 while more in flight only queued. Taken as it came, it
    /// kept the latency rules from acting, the senders climbed to 200 each
    /// where 16 was best, and the bench's chaos row read 0.79x the best
    /// fixed limit (0.94x and 0.97x with the test). Alone, the slope counts
    /// as it comes: a sender whose receiver's latency grows with load has
    /// windows scattered enough that the test cost it a fifth of its
    /// goodput in the bench (0.73x against 0.92x).
    fn elastic(&self) -> bool {
        let errors = if self.shared {
            ELASTIC_SIGNIFICANCE
        } else {
            0.0
        };
        self.gradient_fit()
            .is_some_and(|(slope, error)| slope - errors * error >= ELASTIC)
    }

    /// The slope of [`Controller::elasticity`] and its standard error.
    fn gradient_fit(&self) -> Option<(f64, f64)> {
        let n = self.gradient.len();
        if n < 8 {
            return None;
        }
        let n = n as f64;
        let (sx, sy) = self
            .gradient
            .iter()
            .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
        let (mx, my) = (sx / n, sy / n);
        let (mut cov, mut vx) = (0.0, 0.0);
        for (x, y) in &self.gradient {
            cov += (x - mx) * (y - my);
            vx += (x - mx) * (x - mx);
        }
        // Limits within a few percent of each other say nothing.
        if vx / n <= 0.03 * 0.03 {
            return None;
        }
        let slope = cov / vx;
        let residuals: f64 = self
            .gradient
            .iter()
            .map(|(x, y)| (y - my - slope * (x - mx)).powi(2))
            .sum();
        Some((slope, (residuals / (n - 2.0) / vx).sqrt()))
    }

    /// Slow start: doubles while goodput rises by [`STARTUP_GROWTH`] per
    /// window; after [`STARTUP_STALLS`] windows without, the pipe is full
    /// and the limit goes back to the one that gave the best goodput.
    fn startup_window(&mut self, goodput: Option<f64>, load: Option<f64>, gain: f64) {
        let Some(goodput) = goodput else {
            // No time passed (answers all at one instant): nothing to
            // compare, keep doubling.
            self.grow();
            return;
        };
        match self.best {
            _ if self.limit() >= self.max => self.slow_start = false,
            Some(Best {
                goodput: best, at, ..
            }) if goodput < best * STARTUP_GROWTH => {
                self.stalls += 1;
                if self.stalls >= STARTUP_STALLS {
                    self.slow_start = false;
                    self.limit = self.limit.min(at.max(1.0));
                } else {
                    // A window's answers are of requests sent a round trip
                    // before: the goodput a doubling buys shows a window
                    // late. Keep doubling, as BBR's start-up keeps its gain
                    // for three rounds without growth.
                    self.grow();
                }
            }
            _ => {
                self.best = Some(Best {
                    goodput,
                    at: self.limit,
                    load,
                });
                self.stalls = 0;
                self.limit = (self.limit.floor() * gain).min(self.max as f64);
            }
        }
    }
}

/// Whether, over the remembered windows, the share of failures rose with
/// the limit (Pearson's correlation above [`RISE_CORRELATION`] and two
/// standard errors of a chance one, with at least eight windows). A sick
/// backend's 503s come at every limit, so the correlation is near zero;
/// several senders sharing a receiver at its capacity meet 503s at the
/// tops of their saw-tooth, so the failures follow the limit even when
/// one sender's single cut cannot show it (the others fill the room it
/// gave up, and its goodput falls as noise would make it fall).
fn failures_rise_with_load(history: &std::collections::VecDeque<Seen>) -> bool {
    // Two standard errors of a correlation of unrelated figures (1/√n):
    // over a few windows chance alone correlates noise with the limit.
    let significant = (RISE_SIGNIFICANCE / (history.len() as f64).sqrt()).max(RISE_CORRELATION);
    failure_correlation(history).is_some_and(|r| r > significant)
}

/// Pearson's correlation between the remembered windows' limits and their
/// failure shares; none over fewer than eight windows or without spread.
fn failure_correlation(history: &std::collections::VecDeque<Seen>) -> Option<f64> {
    let n = history.len() as f64;
    if history.len() < 8 {
        return None;
    }
    let points = || history.iter().map(|seen| (seen.limit, seen.failed));
    let (sx, sy) = points().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut cov, mut vx, mut vy) = (0.0, 0.0, 0.0);
    for (x, y) in points() {
        cov += (x - mx) * (y - my);
        vx += (x - mx) * (x - mx);
        vy += (y - my) * (y - my);
    }
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    fn at(limit: usize, baseline: Option<Duration>) -> Controller {
        Controller::new(
            256,
            Some(Snapshot {
                limit,
                baseline,
                noise: 0.0,
            }),
        )
    }

    /// A sender alone that remembers a receiver at 16 in flight, 5 ms
    /// away, behind a backend that answers one request in ten 503.
    fn remembered_sick_backend() -> Controller {
        Controller::new(
            16,
            Some(Snapshot {
                limit: 16,
                baseline: Some(5 * MS),
                noise: 0.1,
            }),
        )
    }

    /// A clock for the controller: paused time that the tests move.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Clock {
            Clock(Instant::now())
        }
        fn tick(&mut self, by: Duration) -> Instant {
            self.0 += by;
            self.0
        }
    }

    /// Sends rounds of `limit` requests (the pipe full) until a window's
    /// worth of answers came back, answering each with what `answer` says
    /// for its place in the round; each round takes `round`. Returns the
    /// requests sent and how many of them `answer` called overload.
    fn window_of(
        c: &mut Controller,
        clock: &mut Clock,
        round: Duration,
        answer: impl Fn(usize, usize) -> Signal,
    ) -> (usize, usize) {
        let need = c.limit().max(MIN_WINDOW);
        let (mut sent, mut overloaded) = (0, 0);
        while sent < need {
            let limit = c.limit();
            let tickets: Vec<Ticket> = (1..=limit).map(|n| c.sent(n)).collect();
            for (i, t) in tickets.into_iter().enumerate() {
                let signal = answer(i, limit);
                overloaded += usize::from(signal == Signal::Overload);
                let now = clock.tick(round / limit as u32);
                c.answered(t, signal, now);
            }
            sent += limit;
        }
        (sent, overloaded)
    }

    fn window(c: &mut Controller, answer: impl Fn(usize, usize) -> Signal) -> (usize, usize) {
        window_of(c, &mut Clock::new(), 5 * MS, answer)
    }

    /// Answers `n` requests one by one, each sent with the pipe full and
    /// answered a latency / limit after the one before (the pipe's pace),
    /// and returns the limits seen, without repeats.
    fn steps(c: &mut Controller, clock: &mut Clock, n: usize, signal: Signal) -> Vec<usize> {
        let latency = match signal {
            Signal::Good(l) => l,
            _ => MS,
        };
        let mut seen = vec![c.limit()];
        for _ in 0..n {
            let t = c.sent(c.limit());
            let now = clock.tick(latency / c.limit() as u32);
            c.answered(t, signal, now);
            if seen.last() != Some(&c.limit()) {
                seen.push(c.limit());
            }
        }
        seen
    }

    /// Two failures from requests sent at the limit: more than a window
    /// with no noise learnt excuses.
    fn two_failures(c: &mut Controller, clock: &mut Clock) {
        let tickets = [c.sent(c.limit()), c.sent(c.limit())];
        for t in tickets {
            let now = clock.tick(MS);
            c.answered(t, Signal::Overload, now);
        }
    }

    #[test]
    fn starts_low_and_quadruples_per_good_full_window_while_nothing_queues() {
        let mut c = Controller::new(300, None);
        assert_eq!(c.limit(), INITIAL);
        c.set_shared(false);
        c.set_shared(false);
        // The first window sets the baseline; each later one with the
        // latency still at it quadruples, as goodput rises with it.
        let seen = steps(&mut c, &mut Clock::new(), 2_000, Signal::Good(5 * MS));
        assert_eq!(seen, [4, 16, 64, 256, 300]);
    }

    #[test]
    fn a_little_queueing_or_a_shared_receiver_doubles_instead() {
        // Latency a fifth above the first window's: requests queue at the
        // receiver, the pipe is nearer full than a flat latency says.
        let mut c = Controller::new(300, None);
        c.set_shared(false);
        c.set_shared(false);
        let mut clock = Clock::new();
        let mut seen = steps(&mut c, &mut clock, 8, Signal::Good(5 * MS));
        seen.extend(steps(&mut c, &mut clock, 2_000, Signal::Good(6 * MS)));
        seen.dedup();
        assert_eq!(seen, [4, 16, 32, 64, 128, 256, 300]);
        // Other senders on the spool: each quadrupling, together they
        // would overshoot a receiver's capacity many times over.
        let mut c = Controller::new(300, None);
        c.set_shared(true);
        let seen = steps(&mut c, &mut Clock::new(), 2_000, Signal::Good(5 * MS));
        assert_eq!(seen, [4, 8, 16, 32, 64, 128, 256, 300]);
        // One look that found nobody may have missed a sender that started
        // with this one: not yet alone.
        let mut c = Controller::new(300, None);
        c.set_shared(false);
        let seen = steps(&mut c, &mut Clock::new(), 2_000, Signal::Good(5 * MS));
        assert_eq!(seen, [4, 8, 16, 32, 64, 128, 256, 300]);
    }

    #[test]
    fn after_the_first_cut_it_grows_by_one_per_good_full_window() {
        let mut clock = Clock::new();
        let mut c = Controller::new(64, None);
        assert_eq!(steps(&mut c, &mut clock, 11, Signal::Good(5 * MS)), [4, 8]);
        two_failures(&mut c, &mut clock);
        assert_eq!(
            c.limit(),
            4,
            "slow start's overload goes back to 4, which raised goodput"
        );
        // A step per window, never doubling again; a quarter step once
        // within one of the limit that met overload (8).
        let seen = steps(&mut c, &mut clock, 100, Signal::Good(5 * MS));
        assert_eq!(seen, [4, 5, 6, 7]);
    }

    /// A receiver that serves at most 800 files/s (20 ms each, 16 at
    /// once): past 16 in flight, doubling only adds latency, goodput stays.
    /// Slow start ends there and goes back to the limit of the best
    /// goodput, not at the first small rise of latency.
    #[test]
    fn slow_start_ends_when_goodput_stops_rising() {
        let mut c = Controller::new(1024, None);
        let mut clock = Clock::new();
        let cap = 800.0;
        for _ in 0..40 {
            let limit = c.limit();
            // Little's law: latency = in flight / throughput.
            let rate = (limit as f64 / 0.020).min(cap);
            let latency = Duration::from_secs_f64(limit as f64 / rate);
            window_of(&mut c, &mut clock, latency, |_, _| Signal::Good(latency));
        }
        let limit = c.limit();
        assert!((16..=24).contains(&limit), "limit {limit}");
    }

    /// Against a remote receiver (40 ms away, takes anything) slow start
    /// reaches the bandwidth-delay product of 5,000 files/s in a few
    /// round trips, although latency rises a little with the load.
    #[test]
    fn a_remote_receiver_is_filled_in_round_trips_not_minutes() {
        let mut c = Controller::new(1024, None);
        let mut clock = Clock::new();
        let start = clock.0;
        // A sender that can do 5,000 files/s at most: its own queueing
        // shows as latency once past 200 in flight.
        while c.limit() < 200 {
            let limit = c.limit();
            let rate = (limit as f64 / 0.040).min(5_000.0);
            let latency = Duration::from_secs_f64(limit as f64 / rate);
            // Jitter of a few percent: a full pipe, not overload.
            window_of(&mut c, &mut clock, latency, |i, _| {
                Signal::Good(latency + MS * (i % 3) as u32)
            });
            assert!(clock.0 - start < Duration::from_secs(2), "{}", c.limit());
        }
    }

    #[test]
    fn a_remembered_limit_grows_by_its_square_root_from_the_start() {
        let mut c = at(32, Some(5 * MS));
        window(&mut c, |_, _| Signal::Good(5 * MS));
        assert_eq!(c.limit(), 37, "no slow start: 32 + √32");
    }

    #[test]
    fn an_idle_sender_learns_nothing_and_does_not_grow() {
        let mut c = Controller::new(64, None);
        let mut clock = Clock::new();
        for _ in 0..200 {
            // One request at a time: never at the limit.
            let t = c.sent(1);
            c.answered(t, Signal::Good(5 * MS), clock.tick(5 * MS));
        }
        assert_eq!(c.limit(), INITIAL);
    }

    #[test]
    fn a_single_failure_cuts_until_noise_is_learnt() {
        let mut c = at(20, Some(5 * MS));
        let t = c.sent(20);
        c.answered(t, Signal::Overload, Instant::now());
        assert_eq!(c.limit(), 14, "no noise learnt: the first failure is news");
        let mut c = at(20, Some(5 * MS));
        c.noise = 0.05;
        let t = c.sent(20);
        c.answered(t, Signal::Overload, Instant::now());
        assert_eq!(c.limit(), 20, "one failure in a window of 20 at 5% noise");
    }

    #[test]
    fn a_burst_of_overload_from_one_generation_cuts_once() {
        let mut c = at(20, Some(5 * MS));
        let mut clock = Clock::new();
        let tickets: Vec<Ticket> = (1..=20).map(|n| c.sent(n)).collect();
        for t in tickets {
            c.answered(t, Signal::Overload, clock.tick(MS));
        }
        assert_eq!(c.limit(), 14, "20 × 0.7, once, not 0.7^20");
        // Requests sent after the cut that meet overload cut again.
        two_failures(&mut c, &mut clock);
        assert_eq!(c.limit(), 9);
    }

    #[test]
    fn the_limit_never_falls_below_one_nor_rises_above_the_bound() {
        let mut c = Controller::new(3, None);
        let mut clock = Clock::new();
        assert_eq!(c.limit(), 3, "the bound caps the initial limit");
        for _ in 0..50 {
            two_failures(&mut c, &mut clock);
        }
        assert_eq!(c.limit(), 1);
        assert_eq!(
            Controller::new(0, None).limit(),
            1,
            "a bound of 0 still lets one through"
        );
    }

    #[test]
    fn latency_well_above_the_baseline_cuts_gently_and_a_little_queueing_grows() {
        let mut c = at(30, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(16 * MS));
        assert_eq!(c.limit(), 27, "1.6 × baseline: 30 × 0.9");
        let mut c = at(30, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(13 * MS));
        assert_eq!(c.limit(), 30, "1.3 × baseline: 7 queued of 30, hold");
        window(&mut c, |_, _| Signal::Good(11 * MS));
        assert_eq!(c.limit(), 35, "1.1 × baseline: 3 queued, grow by √30");
        let mut c = Controller::new(
            1024,
            Some(Snapshot {
                limit: 400,
                baseline: Some(40 * MS),
                noise: 0.0,
            }),
        );
        window(&mut c, |_, _| Signal::Good(44 * MS));
        assert_eq!(c.limit(), 420, "10% more latency at 400: 36 queued, grow");
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
    /// so after two cuts the baseline is taken anew instead of cutting the
    /// limit down to one.
    #[test]
    fn a_receiver_that_got_slower_by_itself_resets_the_baseline() {
        let mut c = at(40, Some(10 * MS));
        window(&mut c, |_, _| Signal::Good(30 * MS));
        assert_eq!(c.limit(), 36);
        // The window after the cut settles; the one after judges it, and
        // still three times the baseline, cuts again.
        window(&mut c, |_, _| Signal::Good(30 * MS));
        window(&mut c, |_, _| Signal::Good(30 * MS));
        assert_eq!(c.baseline(), Some(10 * MS), "one cut can be a stall");
        assert_eq!(c.limit(), 32);
        window(&mut c, |_, _| Signal::Good(30 * MS));
        window(&mut c, |_, _| Signal::Good(30 * MS));
        assert_eq!(
            c.baseline(),
            Some(30 * MS),
            "two cuts in a row did not help"
        );
        assert!(c.limit() >= 32, "{}", c.limit());
        assert_eq!(
            c.snapshot().baseline,
            Some(10 * MS),
            "a restart starts from the baseline before, not yet probed"
        );
    }

    /// A receiver 10 ms away turns 40 ms slower, then recovers, behind a
    /// sender that can start 4,000 requests a second: past 40 in flight
    /// (10 ms) the latency is the sender's own queue. While slow, the
    /// baseline is taken anew at 40 ms; recovered, the sender's queue kept
    /// the latency there, 240 in flight where 40 fill the pipe, until a
    /// probe halved the load and found it.
    fn slower_then_recovered(receiver_after: Duration) -> Controller {
        slower_then_recovered_shared(receiver_after, false)
    }

    fn slower_then_recovered_shared(receiver_after: Duration, shared: bool) -> Controller {
        let mut c = at(40, Some(10 * MS));
        // Two looks in a row that found no other sender, or one that did.
        for _ in 0..2 {
            c.set_shared(shared);
        }
        let mut clock = Clock::new();
        let mut phase = |c: &mut Controller, receiver: Duration, seconds: u64| {
            let until = clock.0 + Duration::from_secs(seconds);
            while clock.0 < until {
                let latency = receiver.max(Duration::from_secs_f64(c.limit() as f64 / 4000.0));
                window_of(c, &mut clock, latency, |_, _| Signal::Good(latency));
            }
        };
        phase(&mut c, 40 * MS, 3);
        assert!(c.baseline() >= Some(35 * MS), "{:?}", c.baseline());
        assert!(c.limit() > 160, "the slower pipe filled: {}", c.limit());
        phase(&mut c, receiver_after, 20);
        c
    }

    #[test]
    fn a_sender_whose_own_queue_kept_the_latency_up_finds_the_floor_again() {
        let c = slower_then_recovered(10 * MS);
        assert!(c.baseline() <= Some(15 * MS), "{:?}", c.baseline());
        assert!(c.limit() <= 80, "{}", c.limit());
        let remembered = c.snapshot().baseline;
        assert!(remembered <= Some(15 * MS), "{remembered:?}");
    }

    /// Shared, a probe's goodput falls as the others fill what it gives
    /// up, whoever's queue the latency is: it confirms nothing, and a
    /// restart starts from the baseline before the raise.
    #[test]
    fn a_shared_sender_s_probes_never_confirm_a_raised_baseline() {
        let c = slower_then_recovered_shared(40 * MS, true);
        assert!(c.baseline() >= Some(35 * MS), "{:?}", c.baseline());
        assert_eq!(c.snapshot().baseline, Some(10 * MS));
    }

    #[test]
    fn a_receiver_that_stays_slow_keeps_its_load_through_the_probes() {
        let c = slower_then_recovered(40 * MS);
        assert!(c.baseline() >= Some(35 * MS), "{:?}", c.baseline());
        assert!(c.limit() > 160, "{}", c.limit());
        // The probes confirmed it: a restart starts from it too.
        let remembered = c.snapshot().baseline;
        assert!(remembered >= Some(35 * MS), "{remembered:?}");
    }

    /// A receiver slower for a while whatever the load (200 ms), and the
    /// baseline is taken anew; then its latency grows with its load, 20 ms
    /// plus 2 ms per request open (the integration test's knee receiver).
    /// At half the load it answers sooner, but serves fewer files a second:
    /// its queue is what its pace costs, not the sender's own. The probes
    /// must leave the baseline where it was (on latency alone they lowered
    /// it, and the limit swung between halves and doubles; in the
    /// integration test it settled at 32 in flight where 90 are worth it).
    #[test]
    fn a_receiver_whose_latency_grows_with_load_keeps_its_baseline_through_the_probes() {
        let mut c = at(90, Some(20 * MS));
        let mut clock = Clock::new();
        let mut phase = |c: &mut Controller, seconds: u64, latency: &dyn Fn(usize) -> Duration| {
            let mut limits = Vec::new();
            let until = clock.0 + Duration::from_secs(seconds);
            while clock.0 < until {
                let latency = latency(c.limit());
                window_of(c, &mut clock, latency, |_, _| Signal::Good(latency));
                limits.push(c.limit());
            }
            limits
        };
        // Slower whatever the load: the baseline is taken anew.
        phase(&mut c, 5, &|_| 200 * MS);
        let raised = c.baseline();
        assert!(raised >= Some(150 * MS), "{raised:?}");
        let mut limits = phase(&mut c, 60, &|open| 20 * MS + 2 * MS * open as u32);
        let mut tail = limits.split_off(limits.len() / 2);
        tail.sort_unstable();
        let (low, median) = (tail[0], tail[tail.len() / 2]);
        // On latency alone: baseline 104 ms, limit 38..222, median 99.
        assert!(
            c.baseline() >= raised.map(|r| r.mul_f64(PROBE_FOUND)),
            "{:?} from {raised:?}",
            c.baseline()
        );
        assert!(
            low >= 60 && median >= 90,
            "limit from {low}, median {median}"
        );
    }

    /// A stall of the sender's own host makes a slow window on each side
    /// of a latency cut; the next cut helps. The baseline stays: taken
    /// anew at the stall, it held the limit at twice the queue for good.
    #[test]
    fn a_stall_on_each_side_of_a_cut_keeps_the_baseline() {
        let mut c = at(40, Some(10 * MS));
        for round in 0..5 {
            // The stall: a cut, a settling window and the judged one slow.
            for _ in 0..3 {
                window(&mut c, |_, _| Signal::Good(20 * MS));
            }
            // The next cut helped.
            for _ in 0..2 {
                window(&mut c, |_, _| Signal::Good(12 * MS));
            }
            assert_eq!(c.baseline(), Some(10 * MS), "round {round}");
        }
    }

    #[test]
    fn a_new_bound_keeps_what_was_learnt_and_clamps_the_limit_into_it() {
        let start = Snapshot {
            limit: 12,
            baseline: Some(7 * MS),
            noise: 0.1,
        };
        let mut c = Controller::new(16, Some(start));
        c.set_max(4);
        assert_eq!(c.limit(), 4, "clamped into the lower bound");
        assert_eq!(c.baseline(), Some(7 * MS), "the baseline is kept");
        assert_eq!(c.noise(), 0.1, "the noise is kept");
        c.set_max(64);
        assert_eq!(c.limit(), 4, "a higher bound is room to grow, not a jump");
        c.set_max(0);
        assert_eq!(c.limit(), 1, "a bound of 0 still lets one through");
    }

    #[test]
    fn a_remembered_limit_is_the_start_and_is_kept_within_the_bound() {
        let c = Controller::new(
            16,
            Some(Snapshot {
                limit: 12,
                baseline: Some(7 * MS),
                noise: 0.0,
            }),
        );
        assert_eq!(
            c.snapshot(),
            Snapshot {
                limit: 12,
                baseline: Some(7 * MS),
                noise: 0.0,
            }
        );
        let c = Controller::new(
            8,
            Some(Snapshot {
                limit: 12,
                baseline: None,
                noise: 0.0,
            }),
        );
        assert_eq!(c.limit(), 8);
    }

    /// A receiver that works on `capacity` requests at once and answers 503
    /// to any beyond: the limit settles near the
    /// capacity, using at least 80% of it, and at most 5% of requests are
    /// answered 503.
    #[test]
    fn against_a_fixed_capacity_it_converges_with_few_rejections() {
        for capacity in [1, 3, 8, 32] {
            let mut c = Controller::new(256, None);
            let mut clock = Clock::new();
            let (mut sent, mut overloaded, mut served) = (0, 0, 0);
            for w in 0..600 {
                let before = c.limit();
                let (n, o) = window_of(&mut c, &mut clock, 5 * MS, |i, _| {
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
            assert!(c.noise() < 0.05, "capacity {capacity}: noise {}", c.noise());
        }
    }

    /// Rounds of the pipe full at the limit of each round's start, every
    /// answer after `latency(limit)`, for 3,000 rounds from a fresh start:
    /// the least and most limit of the last thousand.
    fn held_to(max: usize, latency: impl Fn(usize) -> Duration) -> (usize, usize) {
        let mut c = Controller::new(max, None);
        let mut clock = Clock::new();
        let mut tail = vec![];
        for round in 0..3000 {
            let limit = c.limit();
            let latency = latency(limit);
            let tickets: Vec<Ticket> = (1..=limit).map(|n| c.sent(n)).collect();
            for t in tickets {
                let now = clock.tick(latency / limit as u32);
                c.answered(t, Signal::Good(latency), now);
            }
            if round >= 2000 {
                tail.push(c.limit());
            }
        }
        (*tail.iter().min().unwrap(), *tail.iter().max().unwrap())
    }

    /// A receiver whose latency grows with the requests it holds beyond a
    /// knee: the limit stays near the knee
    /// instead of filling the queue.
    #[test]
    fn against_a_queueing_receiver_it_stops_near_the_knee() {
        let knee = 10;
        let (min, max) = held_to(256, |limit| {
            10 * MS + 2 * MS * limit.saturating_sub(knee) as u32
        });
        assert!(
            min >= knee - 2 && max <= knee + 3,
            "held to {min}..{max}, knee {knee}"
        );
    }

    /// A receiver whose every request takes 2 ms plus 0.2 ms per request
    /// open: goodput rises with the limit all the way, less and less. The
    /// limit goes past where latency first moved (about 15), to where 25%
    /// more in flight buys less than 2.5% more goodput (about 90).
    #[test]
    fn queueing_that_still_buys_goodput_is_not_cut() {
        let (min, max) = held_to(1024, |limit| {
            2 * MS + Duration::from_micros(200) * limit as u32
        });
        assert!(min >= 50 && max <= 200, "held to {min}..{max}");
    }

    /// 1% of answers 503 at random, alone: each failure cuts at first, but
    /// the ones that go on well below the limit that last met them are
    /// learnt as noise, and the limit stops being cut by every one.
    #[test]
    fn failures_well_below_the_last_overload_are_learnt_as_noise() {
        let mut c = Controller::new(1024, None);
        let mut clock = Clock::new();
        let rng = std::cell::RefCell::new(fastrand::Rng::with_seed(7));
        let mut tail = vec![];
        for round in 0..600 {
            window_of(&mut c, &mut clock, 5 * MS, |_, _| {
                if rng.borrow_mut().f64() < 0.01 {
                    Signal::Overload
                } else {
                    Signal::Good(5 * MS)
                }
            });
            if round >= 400 {
                tail.push(c.limit());
            }
        }
        assert!(c.noise() > 0.005, "noise {}", c.noise());
        let least = *tail.iter().min().unwrap();
        assert!(least >= 100, "the limit fell to {least}");
    }

    /// Alone, the windows lower a learnt noise but never raise it: the
    /// windows at the top of the saw-tooth past a receiver's capacity
    /// fail more than the noise, within what it excuses, and followed
    /// both ways the noise climbed with them (1.5% of 503s learnt on a
    /// loaded host became 36%, simulated). A noise that really rose is
    /// learnt by the cut that did not help, or well below the load.
    #[test]
    fn windows_alone_lower_the_noise_but_do_not_raise_it() {
        let learnt = 0.05;
        let mut c = Controller::new(
            64,
            Some(Snapshot {
                limit: 20,
                baseline: Some(5 * MS),
                noise: learnt,
            }),
        );
        c.set_shared(false);
        let mut clock = Clock::new();
        // Two failures in twenty: within what a noise of 5% excuses.
        for _ in 0..50 {
            window_of(&mut c, &mut clock, 5 * MS, |i, _| {
                if i % 10 == 0 {
                    Signal::Overload
                } else {
                    Signal::Good(5 * MS)
                }
            });
        }
        assert!(c.noise() <= learnt, "noise {}", c.noise());
        for _ in 0..50 {
            window_of(&mut c, &mut clock, 5 * MS, |_, _| Signal::Good(5 * MS));
        }
        assert!(c.noise() < learnt / 2.0, "noise {}", c.noise());
    }

    /// A sender alone held at a limit of one by a sick backend's 503s
    /// (each cut before any noise was learnt) cannot be overloading the
    /// receiver: one window's failures there are learnt as noise, and it
    /// starts again, doubling. Before, it waited for a clean window that
    /// 10% noise seldom gives, twelve seconds against a receiver 40 ms away.
    #[test]
    fn alone_at_a_limit_of_one_failures_are_noise() {
        let mut c = Controller::new(
            1024,
            Some(Snapshot {
                limit: 1,
                baseline: Some(40 * MS),
                noise: 0.0,
            }),
        );
        let mut clock = Clock::new();
        let rng = std::cell::RefCell::new(fastrand::Rng::with_seed(3));
        let answer = |_: usize, _: usize| {
            if rng.borrow_mut().f64() < 0.1 {
                Signal::Overload
            } else {
                Signal::Good(40 * MS)
            }
        };
        for _ in 0..6 {
            window_of(&mut c, &mut clock, 40 * MS, answer);
        }
        assert!(c.noise() > 0.02, "noise {}", c.noise());
        for _ in 0..8 {
            window_of(&mut c, &mut clock, 40 * MS, answer);
        }
        assert!(c.limit() >= 32, "limit {}", c.limit());
    }

    /// Alone at a limit of one, a single failure among half a window of
    /// answers is the noise: the sender cannot have made it.
    #[test]
    fn alone_at_a_limit_of_one_a_single_failure_is_learnt() {
        let mut c = Controller::new(
            1024,
            Some(Snapshot {
                limit: 1,
                baseline: Some(40 * MS),
                noise: 0.0,
            }),
        );
        let mut now = Instant::now();
        for i in 0..MIN_WINDOW / 2 {
            let t = c.sent(1);
            now += 40 * MS;
            let signal = if i == 3 {
                Signal::Overload
            } else {
                Signal::Good(40 * MS)
            };
            c.answered(t, signal, now);
        }
        assert_eq!(c.noise(), 1.0 / (MIN_WINDOW / 2) as f64);
    }

    #[test]
    fn a_turned_away_request_holds_its_room_for_a_served_ones_time() {
        let mut c = Controller::new(8, None);
        let now = Instant::now();
        let whole = |d| Hold { room: d, tell: d };
        assert_eq!(
            c.hold(Signal::Overload),
            whole(LATENCY_FLOOR),
            "nothing known yet"
        );
        let t = c.sent(1);
        c.answered(t, Signal::Good(7 * MS), now);
        assert_eq!(
            c.hold(Signal::Overload),
            whole(7 * MS),
            "the latest served one"
        );
        let mut c = at(8, Some(5 * MS));
        assert_eq!(c.hold(Signal::Overload), whole(5 * MS), "the baseline");
        assert_eq!(c.hold(Signal::Good(5 * MS)), Hold::NONE);
        assert_eq!(c.hold(Signal::Neutral), Hold::NONE);
        let t = c.sent(1);
        c.answered(t, Signal::Good(50 * MS), now);
        assert_eq!(c.hold(Signal::Overload), whole(5 * MS), "the baseline wins");
        let mut c = at(8, Some(Duration::from_secs(20)));
        assert_eq!(
            c.hold(Signal::Overload),
            whole(MAX_HOLD),
            "a slow receiver's"
        );
    }

    /// A turned-away request keeps its room for a served one's smoothed
    /// latency, not for the 2 ms floor of the baseline, and none at all
    /// if that is under a timer's tick; it is heard at the baseline, in
    /// step with the successes sent with it.
    #[test]
    fn a_turned_away_request_keeps_its_room_for_the_time_a_served_one_took() {
        let now = Instant::now();
        let served = |latency| {
            let mut c = Controller::new(8, None);
            for _ in 0..3 {
                let t = c.sent(1);
                c.answered(t, Signal::Good(latency), now);
            }
            c.hold(Signal::Overload)
        };
        let fast = served(Duration::from_micros(400));
        assert_eq!(fast.room, Duration::ZERO, "under a tick: {fast:?}");
        assert_eq!(fast.tell, LATENCY_FLOOR, "heard at the floor");
        let remote = served(40 * MS);
        assert_eq!(
            remote,
            Hold {
                room: 40 * MS,
                tell: 40 * MS
            }
        );
    }

    /// A failure told only when its hold ends still stops slow start's
    /// growth: the window it belongs to waits for it, and its overload
    /// takes the limit back to the load that window's predecessor met.
    #[test]
    fn slow_start_waits_for_a_held_failure_and_goes_back_to_the_load_last_taken() {
        let mut clock = Clock::new();
        let mut c = Controller::new(1024, None);
        c.set_shared(false);
        c.set_shared(false);
        // Two windows at 4 and 16 in flight, each answered in 5 ms:
        // nothing queues, so the limit quadruples.
        assert_eq!(steps(&mut c, &mut clock, 12, Signal::Good(5 * MS)), [4, 16]);
        // At 16, one request is turned away and held; the window's good
        // answers come first.
        let turned_away = c.sent(16);
        assert!(c.hold(Signal::Overload).tell > Duration::ZERO);
        let seen = steps(&mut c, &mut clock, 20, Signal::Good(5 * MS));
        assert_eq!(seen, [16], "no growth while a failure is held");
        c.answered(turned_away, Signal::Overload, clock.tick(MS));
        assert_eq!(
            c.limit(),
            4,
            "back to what the window at 4 found open: 4 answers of 5 ms \
             each 1.25 ms apart"
        );
    }

    #[test]
    fn a_request_lapses_after_a_multiple_of_the_smoothed_latency() {
        let mut c = Controller::new(8, None);
        assert_eq!(c.lapse_after(), LAPSE_INITIAL, "nothing timed yet");
        let now = Instant::now();
        for _ in 0..50 {
            let t = c.sent(1);
            c.answered(t, Signal::Good(5 * MS), now);
        }
        assert_eq!(c.lapse_after(), LAPSE_FLOOR, "fast answers: the floor");
        for _ in 0..100 {
            let t = c.sent(1);
            c.answered(t, Signal::Good(400 * MS), now);
        }
        let lapse = c.lapse_after();
        assert!(
            lapse >= 800 * MS && lapse < 900 * MS,
            "twice a steady 400 ms: {lapse:?}"
        );
    }

    /// Near the limit that last met overload, growth takes quarter steps;
    /// a step past it without a 503, whole steps again.
    #[test]
    fn growth_slows_near_the_last_overload() {
        let mut c = at(10, Some(5 * MS));
        let mut clock = Clock::new();
        two_failures(&mut c, &mut clock);
        assert_eq!(c.limit(), 7);
        // One window at a time: requests at the limit, each answered at
        // the pipe's pace, until a window closes.
        let mut one_window = |c: &mut Controller| loop {
            let t = c.sent(c.limit());
            let now = clock.tick(5 * MS / c.limit() as u32);
            c.answered(t, Signal::Good(5 * MS), now);
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
            "a step past the edge: whole steps, within twice the overload"
        );
    }

    /// A shared controller that excuses `noise`, in a quiet moment whose
    /// measured requests meet `failures` failures in `answers`; returns it
    /// after the moment was judged.
    fn after_quiet(noise: f64, answers: usize, failures: usize) -> Controller {
        after_quiet_failing(None, noise, answers, failures)
    }

    /// As [`after_quiet`], after windows in which every `before`th answer
    /// failed (the failures the windows saw before the moment).
    fn after_quiet_failing(
        before: Option<usize>,
        noise: f64,
        answers: usize,
        failures: usize,
    ) -> Controller {
        let mut clock = Clock::new();
        let mut c = Controller::new(
            256,
            Some(Snapshot {
                limit: 40,
                baseline: Some(5 * MS),
                noise,
            }),
        );
        c.set_shared(true);
        if let Some(every) = before {
            let count = std::cell::Cell::new(0usize);
            for _ in 0..4 {
                window_of(&mut c, &mut clock, 5 * MS, |_, _| {
                    count.set(count.get() + 1);
                    if count.get().is_multiple_of(every) {
                        Signal::Overload
                    } else {
                        Signal::Good(5 * MS)
                    }
                });
            }
        }
        quiet_moment(&mut c, &mut clock, Quieting::Start, answers, failures);
        c
    }

    /// A quiet moment of `phase` whose measured requests meet `failures`
    /// failures in `answers`, and the first answer after it, when the
    /// moment is judged.
    fn quiet_moment(
        c: &mut Controller,
        clock: &mut Clock,
        phase: Quieting,
        answers: usize,
        failures: usize,
    ) {
        let limit = c.limit();
        c.quiet(phase, clock.tick(MS));
        assert_eq!(c.limit(), limit / 2, "half the limit in a quiet moment");
        // Sent before the measuring starts: not counted.
        let early = c.sent(1);
        c.quiet(Quieting::Measure, clock.tick(QUIET_SETTLE));
        c.answered(early, Signal::Overload, clock.tick(MS));
        let tickets: Vec<Ticket> = (1..=answers).map(|n| c.sent(n)).collect();
        c.quiet(Quieting::End, clock.tick(QUIET_FOR));
        assert_eq!(c.limit(), limit, "the whole limit again");
        for (i, t) in tickets.into_iter().enumerate() {
            let signal = if i < failures {
                Signal::Overload
            } else {
                Signal::Good(5 * MS)
            };
            c.answered(t, signal, clock.tick(MS));
        }
        // Its requests all answered: judged with the last of them, as a
        // sender whose next early moment starts 500 ms after this one did.
    }

    #[test]
    fn a_quiet_moment_without_failures_unlearns_the_noise() {
        assert_eq!(after_quiet(0.2, 40, 0).noise(), 0.0);
    }

    #[test]
    fn failures_that_go_on_in_a_quiet_moment_are_the_noise() {
        // One in ten failed before the moment and in it.
        for earlier in [0.0, 0.3] {
            let noise = after_quiet_failing(Some(10), earlier, 40, 4).noise();
            assert!((noise - 0.1).abs() < 0.02, "noise {noise}");
        }
    }

    /// A sender sharing its receiver after four windows in which one
    /// answer in ten failed: before any quiet moment, nothing excused.
    fn shared_failing_one_in_ten(clock: &mut Clock) -> Controller {
        let mut c = at(40, Some(5 * MS));
        c.set_shared(true);
        let count = std::cell::Cell::new(0usize);
        for _ in 0..4 {
            window_of(&mut c, clock, 5 * MS, |_, _| {
                count.set(count.get() + 1);
                if count.get().is_multiple_of(10) {
                    Signal::Overload
                } else {
                    Signal::Good(5 * MS)
                }
            });
        }
        assert_eq!(c.noise(), 0.0, "shared: nothing excused before measuring");
        c
    }

    /// A shared controller in a quiet moment whose requests have all
    /// answered, one in ten failing, but the one returned, with the
    /// moment's end.
    fn a_moment_waiting_for_one(clock: &mut Clock) -> (Controller, Ticket, Instant) {
        let mut c = shared_failing_one_in_ten(clock);
        c.quiet(Quieting::Start, clock.tick(MS));
        c.quiet(Quieting::Measure, clock.tick(QUIET_SETTLE));
        let mut tickets: Vec<Ticket> = (1..=40).map(|n| c.sent(n)).collect();
        let last = tickets.pop().unwrap();
        let ended = clock.tick(QUIET_FOR);
        c.quiet(Quieting::End, ended);
        for (i, t) in tickets.into_iter().enumerate() {
            let signal = if i % 10 == 0 {
                Signal::Overload
            } else {
                Signal::Good(5 * MS)
            };
            c.answered(t, signal, clock.tick(MS));
        }
        assert_eq!(c.noise(), 0.0, "one of the moment's requests is still out");
        (c, last, ended)
    }

    /// A quiet moment is judged as soon as the requests sent in it have
    /// all answered, not a lapse time (at least [`LAPSE_FLOOR`]) after its
    /// end: four senders started together behind a load balancer sat near
    /// a limit of one for that long, their noise met as overload.
    #[test]
    fn a_quiet_moment_is_judged_once_its_requests_have_answered() {
        let mut clock = Clock::new();
        let (mut c, last, ended) = a_moment_waiting_for_one(&mut clock);
        c.answered(last, Signal::Good(5 * MS), clock.tick(MS));
        let noise = c.noise();
        assert!(
            (noise - 0.1).abs() < 0.03,
            "judged at its last answer: {noise}"
        );
        assert!(clock.tick(Duration::ZERO) - ended < LAPSE_FLOOR);
    }

    /// Shared, a rise of goodput with the limit counts only if it stands
    /// out of the windows' scatter: the others' load moves one sender's
    /// goodput from window to window far more than its own limit does
    /// (four senders sharing two cores with the receiver read 1,000 to
    /// 19,000 files a second at one limit), and a slope taken as it came
    /// kept the latency rules from acting while more in flight only
    /// queued. Alone, the slope counts as it comes.
    #[test]
    fn shared_a_rise_of_goodput_lost_in_the_scatter_does_not_hold_off_the_latency_rules() {
        let windows = |rise: f64, scatter: f64| {
            (0..16).map(move |i| {
                let limit = (20.0 + 2.5 * i as f64).ln();
                // Up, down, down, up: a scatter that leaves the slope be.
                let sign = if i % 4 == 0 || i % 4 == 3 { 1.0 } else { -1.0 };
                (limit, rise * limit + sign * scatter)
            })
        };
        let controller = |shared: bool, rise: f64, scatter: f64| {
            let mut c = at(64, Some(2 * MS));
            c.set_shared(shared);
            c.gradient.extend(windows(rise, scatter));
            c
        };
        assert!(controller(false, 0.3, 0.8).elastic(), "alone: as it comes");
        assert!(
            !controller(true, 0.3, 0.8).elastic(),
            "shared: lost in the scatter"
        );
        assert!(
            controller(true, 0.5, 0.02).elastic(),
            "shared: a clear rise"
        );
        assert!(!controller(true, 0.0, 0.02).elastic(), "shared: flat");
    }

    /// A sender alone behind a sick backend keeps the backend's share as
    /// its noise: windows that happen to fail less lower it, windows that
    /// fail more bring it back up to what it learnt. Lowered only, it sank
    /// by chance until an ordinary window of the backend's 503s cut the
    /// limit: one real sender at 16 behind 10% of 503s spent four windows
    /// in ten below 16.
    #[test]
    fn a_sick_backends_share_stays_learnt_window_after_window() {
        let mut clock = Clock::new();
        let mut c = remembered_sick_backend();
        let rng = std::cell::RefCell::new(fastrand::Rng::with_seed(7));
        let mut below = 0;
        for _ in 0..400 {
            window_of(&mut c, &mut clock, 5 * MS, |_, _| {
                if rng.borrow_mut().f64() < 0.1 {
                    Signal::Overload
                } else {
                    Signal::Good(5 * MS)
                }
            });
            below += usize::from(c.limit() < 16);
        }
        let noise = c.noise();
        // Lowered only: 0.064, and 17 windows below.
        assert!((0.075..=0.1).contains(&noise), "noise {noise}");
        assert!(below < 12, "{below} windows of 400 below the limit");
    }

    /// Behind a sick backend hardly a window is free of failures, and the
    /// slope of goodput over the limit must follow the windows all the
    /// same: counted only on windows without failures, it kept what the
    /// first small windows said ("goodput still rises") for good, the
    /// latency rules never acted, and one real sender on loopback climbed
    /// to 665 in flight where 64 was best.
    #[test]
    fn behind_a_sick_backend_goodput_that_stopped_rising_lets_latency_cut() {
        let mut clock = Clock::new();
        let mut c = remembered_sick_backend();
        c.set_max(1024);
        // What the first seconds said, at limits the receiver still
        // rewarded: every request more, a file more per round trip.
        c.gradient
            .extend((0..GRADIENT_WINDOWS).map(|i| ((4.0 + i as f64).ln(), (4.0 + i as f64).ln())));
        assert!(c.elastic());
        let rng = std::cell::RefCell::new(fastrand::Rng::with_seed(11));
        let mut limits = vec![];
        for _ in 0..300 {
            // Full at 16: beyond, each request more only queues.
            let latency = 5 * MS * (c.limit() as u32).max(16) / 16;
            window_of(&mut c, &mut clock, latency, |_, _| {
                if rng.borrow_mut().f64() < 0.1 {
                    Signal::Overload
                } else {
                    Signal::Good(latency)
                }
            });
            limits.push(c.limit());
        }
        // Until sixteen windows have replaced the old slope it grows; then
        // the latency rules bring it back near the knee and keep it there.
        // (Counted only without failures: 1,024, the bound, within a
        // hundred windows, for good.)
        let later = &mut limits[100..];
        later.sort_unstable();
        let (median, highest) = (later[later.len() / 2], later[later.len() - 1]);
        assert!(
            median <= 32 && highest <= 64,
            "median {median}, highest {highest}"
        );
        assert!(!c.elastic(), "the slope still says goodput rises");
    }

    /// Evidence that raises a noise windows have lowered by chance keeps
    /// the higher ceiling, the record remembers the ceiling rather than
    /// where windows moved the noise, and a backend that recovered for
    /// good is at last excused nothing (the rules for a receiver with no
    /// noise known apply again).
    #[test]
    fn the_noise_ceiling_is_kept_remembered_and_at_last_forgotten() {
        let mut clock = Clock::new();
        let mut c = remembered_sick_backend();
        let clean = |c: &mut Controller, clock: &mut Clock, windows: usize| {
            for _ in 0..windows {
                window_of(c, clock, 5 * MS, |_, _| Signal::Good(5 * MS));
            }
        };
        clean(&mut c, &mut clock, 16);
        let ceiling = c.noise_ceiling;
        assert!(
            c.noise() < 0.07 && ceiling > 0.09,
            "{} {ceiling}",
            c.noise()
        );
        c.learn_noise(0.08);
        assert_eq!((c.noise(), c.noise_ceiling), (0.08, ceiling), "raised");
        assert_eq!(c.snapshot().noise, ceiling, "the record keeps the ceiling");
        c.learn_noise(0.02);
        assert_eq!(c.noise_ceiling, 0.02, "lowered by evidence");
        clean(&mut c, &mut clock, 2000);
        assert_eq!((c.noise(), c.noise_ceiling), (0.0, 0.0));
    }

    /// A ticket whose request was never sent (another sender on the spool
    /// claimed its file first) does not keep the moment waiting: four
    /// senders on one spool lose claims to each other all the time, and
    /// each lost one in a moment held its judgement for the lapse time,
    /// their limits near one meanwhile.
    #[test]
    fn a_request_never_sent_does_not_keep_its_quiet_moment_waiting() {
        let mut clock = Clock::new();
        let (mut c, lost_claim, ended) = a_moment_waiting_for_one(&mut clock);
        c.withdrawn(lost_claim, clock.tick(MS));
        let noise = c.noise();
        assert!(
            (noise - 0.1).abs() < 0.03,
            "judged once the lost claim was withdrawn: {noise}"
        );
        assert!(clock.tick(Duration::ZERO) - ended < LAPSE_FLOOR);
    }

    /// A moment whose judgement still waits for a hung request's lapse
    /// when the next moment starts is judged then, not lost: the lapse
    /// (at least [`LAPSE_FLOOR`], twice the round trip and more) can be
    /// longer than the gap between early moments, against a receiver
    /// 150 ms away or with moments more often, and each new moment wiped
    /// the one before unjudged. (With early moments 250 ms apart, four
    /// senders behind a load balancer never measured the noise in a 4 s
    /// run: 0.06x the best fixed limit, simulated.)
    #[test]
    fn a_moment_not_yet_judged_is_judged_when_the_next_starts() {
        let mut clock = Clock::new();
        let mut c = shared_failing_one_in_ten(&mut clock);
        c.quiet(Quieting::Start, clock.tick(MS));
        c.quiet(Quieting::Measure, clock.tick(QUIET_SETTLE));
        let tickets: Vec<Ticket> = (1..=40).map(|n| c.sent(n)).collect();
        // One of them never answers: the moment waits for its lapse.
        let hung = c.sent(41);
        c.quiet(Quieting::End, clock.tick(QUIET_FOR));
        for (i, t) in tickets.into_iter().enumerate() {
            let signal = if i < 4 {
                Signal::Overload
            } else {
                Signal::Good(5 * MS)
            };
            c.answered(t, signal, clock.tick(MS));
        }
        assert_eq!(c.noise(), 0.0, "not judged before the lapse");
        c.quiet(Quieting::Early, clock.tick(MS));
        let noise = c.noise();
        assert!((noise - 0.1).abs() < 0.02, "noise {noise}");
        c.answered(hung, Signal::Overload, clock.tick(SECOND));
    }

    /// A moment that met more failures than the sender's own answers
    /// outside it (another sender was not quiet) excuses no more than
    /// those, give or take their own spread (about fifty answers): noise
    /// comes at every load. Here 10% in the moment, 2% outside.
    #[test]
    fn a_quiet_moment_excuses_no_more_than_the_answers_outside_it_met() {
        let c = after_quiet_failing(Some(50), 0.0, 40, 4);
        let most = c.recent_failing + RECENT_SPREADS * c.recent_spread();
        let noise = c.noise();
        assert!(
            noise > 0.0 && noise <= most && most < 0.07,
            "noise {noise}, most {most}"
        );
    }

    /// A moment's share is bound by the recent share only beyond that
    /// share's own spread: the lower of a noisy fifty answers and a
    /// moment's hundreds is the lower by chance. Four senders behind 11%
    /// of failures learnt 4-8% of noise when bound by the recent share
    /// alone, and every window at the true share then risked a cut.
    #[test]
    fn a_recent_share_low_by_chance_does_not_bind_the_noise() {
        // One in twenty outside, 8% in the moment's 200 answers.
        // (Bound by the recent share alone: 0.069.)
        let noise = after_quiet_failing(Some(20), 0.0, 200, 16).noise();
        assert!((noise - 0.08).abs() < 1e-9, "noise {noise}");
    }

    /// Three senders, one of them at 16, on a capacity of 8: halving each
    /// limit still overloads the receiver, and the quiet moment's failures
    /// are fewer than the windows' but not none. They fell with the load:
    /// overload, not noise.
    #[test]
    fn failures_that_fall_in_a_quiet_moment_are_not_the_noise() {
        // Every second answer failed before, one in ten in the moment.
        let c = after_quiet_failing(Some(2), 0.0, 40, 4);
        assert_eq!(c.noise(), 0.0);
        // As often before as in the moment: noise.
        let c = after_quiet_failing(Some(10), 0.0, 40, 4);
        assert!((c.noise() - 0.1).abs() < 0.02, "noise {}", c.noise());
    }

    /// The three senders of the capacity test as they were caught: one in
    /// four failing outside, one in ten in fifty answers of the moment.
    /// Fewer by about two and a half deviations: overload, which three
    /// deviations let pass as noise.
    #[test]
    fn failures_that_fall_by_less_than_half_in_a_moment_are_not_the_noise() {
        let c = after_quiet_failing(Some(4), 0.0, 50, 5);
        assert_eq!(c.noise(), 0.0, "recent {}", c.recent_failing);
    }

    /// One failure in a quiet moment is no share: one request at the
    /// moment's edge can meet the receiver full. It neither excuses
    /// anything nor counts as measured (the early moments go on) until a
    /// second failure comes.
    #[test]
    fn a_single_failure_in_quiet_moments_is_no_share() {
        // One answer in thirty failed before the moment, one in it.
        let mut c = after_quiet_failing(Some(30), 0.0, 29, 1);
        assert_eq!(c.noise(), 0.0);
        let mut clock = Clock::new();
        // Still unmeasured: the next early moment is taken (its helper
        // checks the halving), and its one failure is the second.
        quiet_moment(&mut c, &mut clock, Quieting::Early, 29, 1);
        let noise = c.noise();
        assert!(noise > 0.02 && noise < 0.04, "noise {noise}");
        // Measured now: one failure more does not raise it.
        for _ in 0..3 {
            quiet_moment(&mut c, &mut clock, Quieting::Start, 29, 1);
        }
        assert!(c.noise() <= noise, "noise {} after {noise}", c.noise());
        // Without a second failure, enough answers measure no noise.
        let mut c = after_quiet_failing(Some(30), 0.0, 29, 1);
        quiet_moment(&mut c, &mut clock, Quieting::Early, 180, 0);
        assert_eq!(c.noise(), 0.0);
        let limit = c.limit();
        c.quiet(Quieting::Early, clock.tick(QUIET_EVERY));
        assert_eq!(c.limit(), limit, "measured: no more early moments");
    }

    #[test]
    fn too_few_answers_in_a_quiet_moment_measure_nothing() {
        assert_eq!(after_quiet(0.2, 10, 0).noise(), 0.2);
    }

    #[test]
    fn a_sender_alone_takes_no_quiet_moment() {
        let mut c = at(40, Some(5 * MS));
        c.quiet(Quieting::Start, Instant::now());
        assert_eq!(c.limit(), 40);
    }

    #[test]
    fn early_quiet_moments_are_for_senders_that_measured_nothing() {
        let mut fresh = at(40, Some(5 * MS));
        fresh.set_shared(true);
        fresh.quiet(Quieting::Early, Instant::now());
        assert_eq!(fresh.limit(), 20);
    }

    /// Senders that started together measure at different moments: one
    /// that stopped taking early moments at its first measurement kept its
    /// whole limit open in the others' next, which halved only their own
    /// load and met its overload as noise. Early moments go on for
    /// [`QUIET_EARLY_AFTER`] after the first measurement, then only the
    /// every-3 s ones are taken.
    #[test]
    fn early_quiet_moments_go_on_for_a_while_after_the_first_measurement() {
        let mut clock = Clock::new();
        let mut c = at(40, Some(5 * MS));
        c.set_shared(true);
        quiet_moment(&mut c, &mut clock, Quieting::Early, 40, 0);
        assert_eq!(c.noise(), 0.0);
        // Measured just now: the next is taken (the helper checks that
        // the limit halved) ...
        quiet_moment(&mut c, &mut clock, Quieting::Early, 40, 0);
        // ... and none [`QUIET_EARLY_AFTER`] after it.
        c.quiet(Quieting::Early, clock.tick(QUIET_EARLY_AFTER));
        assert_eq!(c.limit(), 40, "measured: only the every-3 s ones");
        c.quiet(Quieting::Start, clock.tick(MS));
        assert_eq!(c.limit(), 20);
    }

    /// Shared, a cut whose failures go on is not undone as noise before a
    /// quiet moment measured how much noise there is: the others fill the
    /// room a cut gives up, whether the failures are noise or overload.
    #[test]
    fn shared_a_cut_is_not_undone_before_a_quiet_moment_measured_the_noise() {
        let run = |shared: bool| {
            let mut c = at(40, Some(5 * MS));
            c.set_shared(shared);
            let mut clock = Clock::new();
            // One failure in ten, whatever the load.
            let n = std::cell::Cell::new(0);
            for _ in 0..20 {
                window_of(&mut c, &mut clock, 5 * MS, |_, _| {
                    n.set(n.get() + 1);
                    if n.get() % 10 == 3 {
                        Signal::Overload
                    } else {
                        Signal::Good(5 * MS)
                    }
                });
            }
            c.noise()
        };
        // (Each failure cuts until the limit reaches one, where a whole
        // window closes and judges the cuts together.)
        assert!(run(false) > 0.0, "alone, the undone cut learns the noise");
        assert_eq!(run(true), 0.0);
    }

    /// A receiver as the benchmark's scenarios make it, for [`simulate`].
    #[derive(Clone, Copy, Debug)]
    struct Receiver {
        /// Requests worked on at once; 503 at once to any beyond.
        capacity: usize,
        /// Time to serve one (±10%).
        work: Duration,
        /// Share of requests answered 503 whatever the load.
        noise: f64,
        /// Share of requests never answered until the request timeout.
        hang: f64,
        /// Added to each request's time per request open at the receiver,
        /// itself included (a receiver whose latency grows with load).
        per_open: Duration,
        /// From, until and how much slower: a receiver that turns slow for
        /// a while and recovers.
        slow: Option<(Duration, Duration, Duration)>,
        /// Up to how long after an answer the receiver frees its room,
        /// and, apart, the sender hears of it: a loaded host, where the
        /// two counts of requests open disagree by a request or two.
        lag: Duration,
    }

    impl Receiver {
        const FAST: Receiver = Receiver {
            capacity: usize::MAX,
            work: Duration::from_millis(5),
            noise: 0.0,
            hang: 0.0,
            per_open: Duration::ZERO,
            slow: None,
            lag: Duration::ZERO,
        };
    }

    const TIMEOUT: Duration = Duration::from_secs(30);
    /// A sender starts at most 5,000 requests a second (its CPU), fewer
    /// than the real one, which keeps fifteen-second runs short ...
    const SENDER_PACE_US: u64 = 200;
    /// ... and the real one's pace against a remote receiver in the
    /// benchmark (about 9,000 a second, release, tmpfs), for short runs.
    const REAL_PACE_US: u64 = 110;

    /// What a simulated run came to.
    #[derive(Debug)]
    struct Sim {
        served: usize,
        /// 503s that meant overload (the receiver was full).
        overloaded: usize,
        /// All answers that were not served.
        failed: usize,
        elapsed: Duration,
    }

    impl Sim {
        fn rejected(&self) -> f64 {
            self.overloaded as f64 / (self.served + self.failed) as f64
        }
        fn goodput(&self) -> f64 {
            self.served as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// How many senders, and how often each can start a request (its CPU).
    #[derive(Clone, Copy)]
    struct Senders {
        count: usize,
        start_every_us: u64,
    }

    impl Senders {
        /// `count` senders at [`SENDER_PACE_US`], for fifteen-second runs.
        fn at_sim_pace(count: usize) -> Senders {
            Senders {
                count,
                start_every_us: SENDER_PACE_US,
            }
        }

        /// `count` senders at the real one's pace, [`REAL_PACE_US`].
        fn at_real_pace(count: usize) -> Senders {
            Senders {
                count,
                start_every_us: REAL_PACE_US,
            }
        }
    }

    /// A discrete-event run of `senders` senders, each with its own
    /// controller (adaptive, or pinned at `fixed`) and an endless backlog,
    /// against `receiver`, until `files` were served or `limit_time`
    /// passed. Each sender keeps a turned-away request's room for
    /// [`Controller::hold`], and stops counting a request against its
    /// limit after [`Controller::lapse_after`], as `pace` does; each has a
    /// hard bound of `bound` requests in flight, hung ones included.
    fn simulate(
        senders: Senders,
        receiver: Receiver,
        fixed: Option<usize>,
        bound: usize,
        files: usize,
        limit_time: Duration,
        seed: u64,
    ) -> Sim {
        let Senders {
            count: senders,
            start_every_us,
        } = senders;
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Event {
            /// (ticket, request id, sent at µs)
            Served(Ticket, usize, u64),
            TurnedAway(Ticket, usize, bool),
            TimedOut(Ticket, usize),
            Lapse(usize),
            Freed(usize),
            /// The receiver frees the room of a request it answered.
            Released,
            /// A failure's hold ended: the controller hears of it, and
            /// its room is freed then if still held.
            Told(Ticket, Option<usize>),
            /// A step of a quiet moment, as `pace` times them.
            Quiet(Quieting),
            /// The sender can start another request.
            Ready,
        }
        let start = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut cs: Vec<Controller> = (0..senders)
            .map(|_| match fixed {
                None => {
                    let mut c = Controller::new(bound, None);
                    // As `pace::publish` tells each sender once it sees
                    // another's claim folder, or after its first two
                    // looks found nobody (50 ms apart, before the first
                    // window closes against the remote receivers).
                    c.set_shared(senders > 1);
                    c.set_shared(senders > 1);
                    c
                }
                Some(n) => Controller::new(
                    n,
                    Some(Snapshot {
                        limit: n,
                        baseline: None,
                        noise: 0.0,
                    }),
                ),
            })
            .collect();
        // Per sender: requests counted against the limit, and all in
        // flight (the hard bound).
        let mut counted = vec![0usize; senders];
        let mut all = vec![0usize; senders];
        // Per request id: still counted against the limit.
        let mut live: Vec<bool> = vec![];
        let mut events: BinaryHeap<Reverse<(u64, usize, Event)>> = BinaryHeap::new();
        let (mut now, mut busy) = (0u64, 0usize);
        let (mut served, mut overloaded, mut failed) = (0, 0, 0);
        let work = receiver.work.as_micros() as u64;
        // Each sender starts at most one request per this many µs: its CPU.
        let mut ready = vec![0u64; senders];
        let mut waking = vec![false; senders];
        for s in 0..senders {
            events.push(Reverse((
                QUIET_FIRST_EVERY.as_micros() as u64,
                s,
                Event::Quiet(Quieting::Early),
            )));
        }
        while served < files && now < limit_time.as_micros() as u64 {
            let first = rng.usize(..senders);
            for k in 0..senders {
                let s = (first + k) % senders;
                while counted[s] < cs[s].limit() && all[s] < bound {
                    if ready[s] > now {
                        if !std::mem::replace(&mut waking[s], true) {
                            events.push(Reverse((ready[s], s, Event::Ready)));
                        }
                        break;
                    }
                    ready[s] = ready[s].max(now) + start_every_us;
                    counted[s] += 1;
                    all[s] += 1;
                    let id = live.len();
                    live.push(true);
                    let generation = cs[s].sent(counted[s]);
                    let lapse = cs[s].lapse_after().as_micros() as u64;
                    events.push(Reverse((now + lapse, s, Event::Lapse(id))));
                    let event = if rng.f64() < receiver.hang {
                        (
                            now + TIMEOUT.as_micros() as u64,
                            s,
                            Event::TimedOut(generation, id),
                        )
                    } else if busy >= receiver.capacity {
                        (now + 100, s, Event::TurnedAway(generation, id, true))
                    } else if rng.f64() < receiver.noise {
                        (now + 100, s, Event::TurnedAway(generation, id, false))
                    } else {
                        busy += 1;
                        let mut took = work * 9 / 10
                            + rng.u64(..=work / 5)
                            + receiver.per_open.as_micros() as u64 * busy as u64;
                        if let Some((from, until, extra)) = receiver.slow
                            && (from.as_micros() as u64..until.as_micros() as u64).contains(&now)
                        {
                            took += extra.as_micros() as u64;
                        }
                        let lag = receiver.lag.as_micros() as u64;
                        if lag > 0 {
                            // Freed by the receiver and heard of by the
                            // sender, each a moment after the answer.
                            events.push(Reverse((now + took + rng.u64(..lag), s, Event::Released)));
                            took += rng.u64(..lag);
                        }
                        (now + took, s, Event::Served(generation, id, now))
                    };
                    events.push(Reverse(event));
                }
            }
            let Some(Reverse((at, s, event))) = events.pop() else {
                break;
            };
            now = at;
            let clock = start + Duration::from_micros(now);
            let (ticket, id, signal) = match event {
                Event::Served(g, id, sent) => {
                    if receiver.lag.is_zero() {
                        busy -= 1;
                    }
                    served += 1;
                    (g, id, Signal::Good(Duration::from_micros(now - sent)))
                }
                Event::TurnedAway(g, id, full) => {
                    failed += 1;
                    overloaded += usize::from(full);
                    (g, id, Signal::Overload)
                }
                Event::TimedOut(g, id) => {
                    failed += 1;
                    (g, id, Signal::Overload)
                }
                Event::Lapse(id) => {
                    if std::mem::replace(&mut live[id], false) {
                        counted[s] -= 1;
                    }
                    continue;
                }
                Event::Told(g, room) => {
                    if fixed.is_none() {
                        cs[s].answered(g, Signal::Overload, clock);
                    }
                    if let Some(id) = room {
                        events.push(Reverse((now, s, Event::Freed(id))));
                    }
                    continue;
                }
                Event::Ready => {
                    waking[s] = false;
                    continue;
                }
                Event::Released => {
                    busy -= 1;
                    continue;
                }
                Event::Quiet(phase) => {
                    cs[s].quiet(phase, clock);
                    let first = QUIET_FIRST_EVERY.as_micros() as u64;
                    let (after, next) = match phase {
                        Quieting::Start | Quieting::Early => (QUIET_SETTLE, Quieting::Measure),
                        Quieting::Measure => (QUIET_FOR - QUIET_SETTLE, Quieting::End),
                        Quieting::End => {
                            let at = (now / first + 1) * first;
                            let every = QUIET_EVERY.as_micros() as u64;
                            let kind = if at.is_multiple_of(every) {
                                Quieting::Start
                            } else {
                                Quieting::Early
                            };
                            (Duration::from_micros(at - now), kind)
                        }
                    };
                    events.push(Reverse((
                        now + after.as_micros() as u64,
                        s,
                        Event::Quiet(next),
                    )));
                    continue;
                }
                Event::Freed(id) => {
                    all[s] -= 1;
                    if std::mem::replace(&mut live[id], false) {
                        counted[s] -= 1;
                    }
                    continue;
                }
            };
            let hold = cs[s].hold(signal);
            if !hold.tell.is_zero() {
                // A failure is told when its hold ends and its room freed
                // when the controller says, as `pace` does.
                let tell = now + hold.tell.as_micros() as u64;
                if hold.room == hold.tell {
                    events.push(Reverse((tell, s, Event::Told(ticket, Some(id)))));
                } else {
                    events.push(Reverse((tell, s, Event::Told(ticket, None))));
                    let room = now + hold.room.as_micros() as u64;
                    events.push(Reverse((room, s, Event::Freed(id))));
                }
                continue;
            }
            if fixed.is_none() {
                cs[s].answered(ticket, signal, clock);
            }
            events.push(Reverse((now, s, Event::Freed(id))));
        }
        Sim {
            served,
            overloaded,
            failed,
            elapsed: Duration::from_micros(now),
        }
    }

    /// Several senders on one receiver, each adapting from its
    /// own answers, together keep the receiver busy and meet few 503s.
    #[test]
    fn several_senders_together_converge_with_few_rejections() {
        let receiver = Receiver {
            capacity: 8,
            work: 5 * MS,
            noise: 0.0,
            hang: 0.0,
            ..Receiver::FAST
        };
        let best = 5 * MS * (3000 / 8);
        for senders in [1, 2, 3, 4, 6] {
            for seed in 0..5 {
                let sim = simulate(
                    Senders::at_sim_pace(senders),
                    receiver,
                    None,
                    256,
                    3000,
                    TIMEOUT,
                    seed,
                );
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

    /// On a loaded host the receiver frees its room and the sender hears
    /// of an answer each a moment late, so a window at a limit past the
    /// capacity can meet no 503 and one below it can meet a few: neither
    /// makes overload into noise.
    #[test]
    fn counts_that_lag_on_a_loaded_host_do_not_teach_overload_as_noise() {
        for lag in [1, 2, 3] {
            let receiver = Receiver {
                capacity: 8,
                work: 5 * MS,
                lag: lag * MS,
                ..Receiver::FAST
            };
            for seed in 0..5 {
                let sim = simulate(
                    Senders::at_real_pace(1),
                    receiver,
                    None,
                    64,
                    3000,
                    TIMEOUT,
                    seed,
                );
                eprintln!(
                    "lag {lag} ms, seed {seed}: {:.1}% 503s, {:.0}/s",
                    100.0 * sim.rejected(),
                    sim.goodput()
                );
                assert!(
                    sim.rejected() <= 0.05,
                    "lag {lag} ms, seed {seed}: {:.1}% answered 503",
                    100.0 * sim.rejected()
                );
            }
        }
    }

    /// Seeds each adaptive scenario runs with: the median of five, since
    /// one seed of three could move a median by a few hundredths.
    const SEEDS: u64 = 5;

    /// The adaptive default's goodput on seeds 1-[`SEEDS`] as shares of
    /// the best of the `fixed` limits' (seed 1), sorted, with the
    /// default's runs; each sender bounded at 1,024 in flight.
    fn against_best_fixed(
        senders: Senders,
        receiver: Receiver,
        fixed: &[usize],
        files: usize,
        window: Duration,
    ) -> (Vec<f64>, Vec<Sim>) {
        let bound = 1024;
        let best = fixed
            .iter()
            .map(|&n| simulate(senders, receiver, Some(n), bound, files, window, 1).goodput())
            .fold(0.0, f64::max);
        let sims: Vec<Sim> = (1..=SEEDS)
            .map(|seed| simulate(senders, receiver, None, bound, files, window, seed))
            .collect();
        let mut ratios: Vec<f64> = sims.iter().map(|sim| sim.goodput() / best).collect();
        ratios.sort_by(f64::total_cmp);
        (ratios, sims)
    }

    fn median(sorted: &[f64]) -> f64 {
        sorted[sorted.len() / 2]
    }

    /// The benchmark's scenarios on paused time: the adaptive default delivers
    /// at least 0.9× the goodput of the best fixed limit of the same
    /// receiver, in 15 simulated seconds.
    #[test]
    fn against_each_scenario_it_keeps_up_with_the_best_fixed_limit() {
        let window = Duration::from_secs(15);
        let scenarios = [
            (
                "capacity 32",
                Receiver {
                    capacity: 32,
                    work: 5 * MS,
                    noise: 0.0,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "40 ms away",
                Receiver {
                    capacity: usize::MAX,
                    work: 40 * MS,
                    noise: 0.0,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "10% 503 at random",
                Receiver {
                    capacity: usize::MAX,
                    work: 5 * MS,
                    noise: 0.1,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "30% 503 at random",
                Receiver {
                    capacity: usize::MAX,
                    work: 5 * MS,
                    noise: 0.3,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "a load balancer with a bad backend",
                Receiver {
                    capacity: usize::MAX,
                    work: 5 * MS,
                    noise: 0.1,
                    hang: 0.01,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "all at once, 40 ms away",
                Receiver {
                    capacity: usize::MAX,
                    work: 40 * MS,
                    noise: 0.1,
                    hang: 0.01,
                    ..Receiver::FAST
                },
                // Measured 0.87-0.93 (median 0.91); 0.77-0.91 when a
                // sender at a limit of one waited for a second failure
                // before learning the noise: at 40 ms, most of a second.
                0.9,
            ),
            (
                "latency grows with load (2 ms + 0.2 ms per open)",
                Receiver {
                    work: 2 * MS,
                    per_open: Duration::from_micros(200),
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "20 ms away",
                Receiver {
                    work: 20 * MS,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "100 ms away",
                Receiver {
                    work: 100 * MS,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "1% 503 at random",
                Receiver {
                    noise: 0.01,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "1% never answered",
                Receiver {
                    hang: 0.01,
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "40 ms slower from 5 s to 9 s",
                Receiver {
                    slow: Some((5 * SECOND, 9 * SECOND, 40 * MS)),
                    ..Receiver::FAST
                },
                0.9,
            ),
            (
                "capacity 64 with 10% noise",
                Receiver {
                    capacity: 64,
                    work: 5 * MS,
                    noise: 0.1,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.9,
            ),
        ];
        // As many as the sender's own pace allows in the window.
        let files = 75_000;
        let mut short = vec![];
        for (name, receiver, least) in scenarios {
            let (ratios, sims) = against_best_fixed(
                Senders::at_sim_pace(1),
                receiver,
                &[4, 16, 64, 256, 1024],
                files,
                window,
            );
            if receiver.noise == 0.0 {
                for sim in sims {
                    assert!(
                        sim.rejected() <= 0.05,
                        "{name}: {:.1}% 503s",
                        100.0 * sim.rejected()
                    );
                }
            }
            eprintln!("{name}: {ratios:.2?}");
            if median(&ratios) < least {
                short.push(format!("{name}: {ratios:.2?} of the best fixed"));
            }
        }
        assert!(short.is_empty(), "{short:#?}");
    }

    /// The start, in runs as short as the benchmark's quick ones (4 s at
    /// the real sender's pace): a fresh sender has no pace record and
    /// starts at [`INITIAL`], the fixed limits are full from their first
    /// round trip. Measured (medians of three seeds): 40 ms 0.96, 100 ms
    /// 0.87 and all at once 0.77; 0.93, 0.78 and 0.65 with slow start
    /// doubling whatever the latency and starting again from one once the
    /// noise was learnt there. What is left is the second or so a sender
    /// alone needs at a limit of one to tell the compound receiver's
    /// noise from overload, and against 100 ms the round trips slow
    /// start takes to reach 1,000.
    #[test]
    fn a_fresh_sender_fills_a_remote_receiver_in_its_first_second() {
        let window = Duration::from_secs(4);
        let scenarios = [
            ("40 ms away", 40 * MS, 0.0, 0.0, 0.93),
            ("100 ms away", 100 * MS, 0.0, 0.0, 0.85),
            ("all at once, 40 ms away", 40 * MS, 0.1, 0.01, 0.72),
        ];
        let mut short = vec![];
        for (name, work, noise, hang, least) in scenarios {
            let receiver = Receiver {
                work,
                noise,
                hang,
                ..Receiver::FAST
            };
            let (ratios, _) = against_best_fixed(
                Senders::at_real_pace(1),
                receiver,
                &[4, 16, 64, 256, 1024],
                40_000,
                window,
            );
            eprintln!("{name}: {ratios:.2?}");
            if median(&ratios) < least {
                short.push(format!("{name}: {ratios:.2?} of the best fixed"));
            }
        }
        assert!(short.is_empty(), "{short:#?}");
    }

    /// Four senders started together behind the load balancer, in a run
    /// as short as the benchmark's quick ones, sharing one sender's CPU
    /// (the real ones share the host's). They sit near a limit of one
    /// until quiet moments have measured the noise: 0.51-0.65 of the best
    /// fixed limit (medians of three seeds), short of 0.9 by the second
    /// or so of early quiet moments that a limit of one needs to gather
    /// twenty answers. (Five seeds: 0.44-0.64, median 0.57, when a moment
    /// was judged a lapse time after its end; 0.51-0.76, median 0.61, since
    /// it is judged at its last answer.) A guard for that start, which the
    /// bench's shared rows show too, while it is worked on.
    #[test]
    fn shared_senders_started_together_measure_the_noise_in_their_first_seconds() {
        let receiver = Receiver {
            noise: 0.1,
            hang: 0.01,
            ..Receiver::FAST
        };
        let (ratios, _) = against_best_fixed(
            Senders {
                count: 4,
                start_every_us: 4 * REAL_PACE_US,
            },
            receiver,
            &[4, 16, 64, 256],
            40_000,
            Duration::from_secs(4),
        );
        eprintln!("{ratios:.2?}");
        assert!(median(&ratios) >= 0.5, "{ratios:.2?} of the best fixed");
    }

    /// Several senders on one spool against receivers whose failures are
    /// noise, or noise and a capacity: together they keep up with the same
    /// senders pinned at the best fixed limit, from a fresh start.
    #[test]
    fn shared_senders_keep_up_with_noise() {
        let window = Duration::from_secs(15);
        // Five seeds since a quiet moment is judged at its last answer,
        // medians 0.90, 0.86 and 0.91 (0.89, 0.83 and 0.91 the commit
        // before; the lowest seeds 0.73, 0.65 and 0.77 against 0.88, 0.63
        // and 0.89: one seed of two rows learnt less well).
        // Measured (medians of three seeds): 0.90, 0.81 and 0.89; 0.85,
        // 0.76 and 0.85 with the first quiet moments a second apart and
        // no fresh slow start after the first measurement; 0.04, 0.04 and
        // 0.03 before the quiet moments, when shared senders learnt no
        // noise at all. Still short of 0.9 behind the load balancer:
        // senders starting together on a fresh spool stay near a limit of
        // one until their first quiet moments have measured the noise
        // (about a second of a fifteen-second run); a restarted sender
        // starts from the noise its record remembers.
        let scenarios = [
            (
                "3 senders, 10% 503 at random",
                3,
                Receiver {
                    capacity: usize::MAX,
                    work: 5 * MS,
                    noise: 0.1,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.8,
            ),
            (
                "4 senders, a load balancer with a bad backend",
                4,
                Receiver {
                    capacity: usize::MAX,
                    work: 5 * MS,
                    noise: 0.1,
                    hang: 0.01,
                    ..Receiver::FAST
                },
                0.7,
            ),
            (
                "3 senders, capacity 64 with 10% noise",
                3,
                Receiver {
                    capacity: 64,
                    work: 5 * MS,
                    noise: 0.1,
                    hang: 0.0,
                    ..Receiver::FAST
                },
                0.8,
            ),
        ];
        let files = 200_000;
        let mut short = vec![];
        for (name, senders, receiver, least) in scenarios {
            let (ratios, _) = against_best_fixed(
                Senders::at_sim_pace(senders),
                receiver,
                &[4, 16, 64, 256],
                files,
                window,
            );
            eprintln!("{name}: {ratios:.2?}");
            if median(&ratios) < least {
                short.push(format!("{name}: {ratios:.2?} of the best fixed"));
            }
        }
        assert!(short.is_empty(), "{short:#?}");
    }
}
