//! The plumbing around [`crate::rules::adaptive`]: one [`Pace`] per receiver holds
//! its controller and the requests it has in flight, lets the scheduler
//! take a [`Slot`] only while there is room under the current limit, feeds
//! each answer back, and remembers the limit and latency baseline in
//! `SPOOL/pace/RECEIVER.json` so a restarted sender starts near the pace it
//! had found.
//!
//! What an answer says about capacity is decided by [`signal`], a pure
//! function. The record is written to `tmp/` and renamed into `pace/`, so a
//! reader sees the old record or the new one, never half of one; a record
//! older than [`MAX_AGE`], from the future or unreadable is ignored (with a
//! warning for the unreadable): the pace is a hint, never worth refusing to
//! start over.
//!
//! While the sender runs, [`publish`] shows each receiver's limit, requests
//! in flight and baseline to the reporter in the claim folder
//! (`spoolpost_protocol::paces`).
//!
//! A receiver's `rate_limit` ([`crate::sched::shared_rate`], shared by the
//! senders on the spool) is kept here too: it is the other half of "may one
//! more request to this receiver start now".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use spoolpost_ops::config::RateLimit;
use spoolpost_protocol::paces;
use spoolpost_protocol::spool::Spool;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::net::send::Sent;
use crate::rules::adaptive::{
    Controller, Hold, QUIET_EVERY, QUIET_FIRST_EVERY, QUIET_FOR, QUIET_SETTLE, Quieting, Signal,
    Snapshot, Ticket,
};
use crate::rules::lost::{Mark, is_lost};
use crate::rules::outcome::Answer;
use crate::sched::shared_rate::SharedRate;

/// The folder under the spool root holding one record per receiver.
pub const PACE_DIR: &str = "pace";
/// A record older than this says little about the receiver now.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// The least time between two writes of one receiver's record while
/// sending; the final state is written when the sender drains.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How often the sender shows its paces to the reporter.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How often, in its first [`LOOK_EARLY_FOR`], a sender looks for others on
/// the spool: senders started together must know it before their
/// controllers learn anything as a sender alone (the first of three
/// started together took the others' 503s for noise in the second before
/// its next look).
pub const LOOK_EARLY_EVERY: Duration = Duration::from_millis(50);
pub const LOOK_EARLY_FOR: Duration = Duration::from_secs(3);

/// What one answer says about the receiver's capacity.
pub fn signal(answer: &Answer, latency: Duration) -> Signal {
    crate::rules::judge::load(answer, latency)
}

/// The record kept in `pace/RECEIVER.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub limit: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ms: Option<f64>,
    /// The share of answers that fail whatever the load.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub noise: f64,
    /// Seconds since the Unix epoch when it was written.
    pub written: u64,
}

impl Record {
    pub fn of(snapshot: Snapshot, now: SystemTime) -> Record {
        Record {
            limit: snapshot.limit,
            baseline_ms: snapshot.baseline.map(|b| b.as_secs_f64() * 1000.0),
            noise: snapshot.noise,
            written: unix(now),
        }
    }

    /// The snapshot to start from, if the record is recent enough to trust.
    pub fn fresh(&self, now: SystemTime) -> Option<Snapshot> {
        let now = unix(now);
        // A clock that went back a little is no reason to distrust it.
        let fresh =
            self.written <= now + 60 && now.saturating_sub(self.written) <= MAX_AGE.as_secs();
        let baseline = self
            .baseline_ms
            .filter(|ms| ms.is_finite() && *ms > 0.0 && *ms < 3_600_000.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0));
        (fresh && self.limit >= 1).then_some(Snapshot {
            limit: self.limit,
            baseline,
            noise: if self.noise.is_finite() {
                self.noise.clamp(0.0, crate::rules::adaptive::MAX_NOISE)
            } else {
                0.0
            },
        })
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One receiver's limit and the requests it has in flight.
pub struct Pace {
    name: String,
    record: PathBuf,
    tmp: PathBuf,
    inner: Mutex<Inner>,
    /// Serialises writes of the record, whose temporary name is per process.
    saving: Mutex<()>,
    freed: Notify,
    /// The receiver's `rate_limit`, if it has one, shared with the other
    /// senders on the spool; a reload that changes it puts another here.
    rate: Mutex<Option<Arc<SharedRate>>>,
}

struct Inner {
    controller: Controller,
    /// The receiver's `adaptive`; a reload may change it.
    adaptive: bool,
    in_flight: usize,
    /// Every request to the receiver, counted whether or not it holds
    /// room under the limit: what tells a lost one ([`crate::rules::lost`]).
    flights: Flights,
    saved: Option<Snapshot>,
    saved_at: Option<Instant>,
}

/// The requests to one receiver, for [`crate::rules::lost`].
#[derive(Default)]
struct Flights {
    started: u64,
    ended: u64,
    /// Of those ended, the ones the receiver answered (with any status).
    answered: u64,
    /// Requests past their hung time, by the order they started, each with
    /// what was known at its start and the word that cuts it.
    hung: BTreeMap<u64, (Mark, oneshot::Sender<()>)>,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Pace {
    /// The pace for receiver `name` with at most `bound` in flight: adaptive
    /// from its remembered record, or pinned at `bound`; and starting at
    /// most `rate` requests, if given.
    pub fn load(
        spool: &Spool,
        name: &str,
        bound: usize,
        adaptive: bool,
        rate: Option<RateLimit>,
    ) -> Arc<Pace> {
        let record = spool.root().join(PACE_DIR).join(format!("{name}.json"));
        let start = if adaptive {
            read(&record, name)
        } else {
            Some(Snapshot {
                limit: bound,
                baseline: None,
                noise: 0.0,
            })
        };
        let controller = Controller::new(bound, start);
        tracing::debug!(
            receiver = name,
            limit = controller.limit(),
            adaptive,
            "pace"
        );
        Arc::new(Pace {
            name: name.to_owned(),
            tmp: spool.tmp().join(format!(
                ".pace-{name}-{}-{}",
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            )),
            record,
            inner: Mutex::new(Inner {
                saved: start,
                saved_at: None,
                controller,
                adaptive,
                in_flight: 0,
                flights: Flights::default(),
            }),
            saving: Mutex::new(()),
            freed: Notify::new(),
            rate: Mutex::new(rate.map(|r| Arc::new(SharedRate::new(spool, name, r)))),
        })
    }

    pub fn limit(&self) -> usize {
        self.lock().controller.limit()
    }

    /// Applies a reload's new `concurrency` (as `bound`), `adaptive` and
    /// `rate_limit` to this receiver while it runs. An adaptive pace that
    /// stays adaptive keeps what it learnt, its limit clamped into the new
    /// bound; a pinned one is pinned at the new bound; one made adaptive
    /// starts from the limit it had. A changed rate limit gets a bucket
    /// of the new size on the same shared state (`SPOOL/rate/RECEIVER`):
    /// tokens this sender held of the old one are dropped, erring low.
    pub fn resize(&self, spool: &Spool, bound: usize, adaptive: bool, rate: Option<RateLimit>) {
        {
            let mut inner = self.lock();
            if inner.adaptive && adaptive {
                inner.controller.set_max(bound);
            } else {
                let learnt = inner.controller.snapshot();
                let limit = if adaptive { learnt.limit } else { bound };
                inner.controller = Controller::new(bound, Some(Snapshot { limit, ..learnt }));
            }
            inner.adaptive = adaptive;
        }
        {
            let mut shared = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            if shared.as_ref().map(|r| r.limit()) != rate {
                *shared = rate.map(|r| Arc::new(SharedRate::new(spool, &self.name, r)));
            }
        }
        // More room wakes whoever waits for it.
        self.freed.notify_waiters();
    }

    /// Starts or ends a quiet moment ([`Controller::quiet`]); at its end
    /// the room it gave back wakes whoever waits for a slot.
    fn quiet(&self, phase: Quieting) {
        {
            let mut inner = self.lock();
            if !inner.adaptive {
                return;
            }
            inner.controller.quiet(phase, crate::sched::clock::now());
        }
        if phase == Quieting::End {
            self.freed.notify_waiters();
        }
    }

    /// What the reporter is shown of this receiver's pace.
    pub fn shown(&self) -> paces::Pace {
        let inner = self.lock();
        paces::Pace {
            limit: inner.controller.limit(),
            in_flight: inner.in_flight,
            baseline_ms: inner
                .controller
                .baseline()
                .map(|b| b.as_secs_f64() * 1000.0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot if there is room under the limit now.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut inner = self.lock();
        if inner.in_flight >= inner.controller.limit() {
            return None;
        }
        inner.in_flight += 1;
        let in_flight = inner.in_flight;
        let ticket = inner.controller.sent(in_flight);
        Some(Slot {
            pace: self.clone(),
            ticket: Some(ticket),
            hold: Hold::NONE,
            lapsed: false,
            told: None,
        })
    }

    /// A slot as soon as one is free, waiting at most `patience`.
    pub async fn take_within(self: &Arc<Self>, patience: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between
            // still wakes us.
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Lets one request start under the receiver's `rate_limit`, waiting
    /// for the token if it comes within `patience`; otherwise says when it
    /// comes. A token taken for a file that then is not sent (another
    /// sender claimed it first) is not given back: the error is on the
    /// side of sending less.
    pub async fn admit(&self, patience: Duration) -> Result<(), Instant> {
        let rate = self.rate.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(rate) = rate else {
            return Ok(());
        };
        let take = || rate.take();
        match take() {
            Ok(()) => Ok(()),
            Err(at) if at <= crate::sched::clock::now() + patience => {
                tokio::time::sleep_until(at.into()).await;
                take()
            }
            Err(at) => Err(at),
        }
    }

    /// Tells the controller what an answer said; returns the limit after
    /// hearing it.
    fn hear(&self, ticket: Ticket, signal: Signal) -> usize {
        let (limit, save) = {
            let mut inner = self.lock();
            if !inner.adaptive {
                return inner.controller.limit();
            }
            inner
                .controller
                .answered(ticket, signal, crate::sched::clock::now());
            let due = inner.saved_at.is_none_or(|at| at.elapsed() >= SAVE_EVERY);
            (inner.controller.limit(), due && self.changed(&inner))
        };
        if save {
            self.save();
        }
        limit
    }

    /// Tells the controller a slot's request was never sent.
    fn withdraw(&self, ticket: Ticket) {
        let mut inner = self.lock();
        if inner.adaptive {
            inner
                .controller
                .withdrawn(ticket, crate::sched::clock::now());
        }
    }

    /// What a request that got `signal` keeps after its answer.
    fn hold(&self, signal: Signal) -> Hold {
        let mut inner = self.lock();
        if !inner.adaptive {
            return Hold::NONE;
        }
        inner.controller.hold(signal)
    }

    /// How long a request may go unanswered before it counts as hung on
    /// its endpoint, pinned limit or not (a pinned one learns no latency,
    /// so it is [`crate::rules::adaptive::LAPSE_INITIAL`]).
    pub fn hung_after(&self) -> Duration {
        self.lock().controller.lapse_after()
    }

    /// How long a request may go unanswered before its room is freed.
    fn lapse_after(&self) -> Duration {
        let inner = self.lock();
        if !inner.adaptive {
            // A pinned limit is the operator's word: every request counts.
            return Duration::MAX;
        }
        inner.controller.lapse_after()
    }

    fn free(&self) {
        {
            let mut inner = self.lock();
            inner.in_flight = inner.in_flight.saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// A request to the receiver starts; it ends when the [`Flight`] is
    /// dropped.
    fn fly(self: &Arc<Self>) -> Flight {
        let mut inner = self.lock();
        let f = &mut inner.flights;
        let mark = Mark {
            answered: f.answered,
            in_flight: f.started - f.ended,
        };
        f.started += 1;
        Flight {
            pace: self.clone(),
            seq: f.started,
            mark,
            answered: false,
        }
    }

    /// Cuts the oldest request past its answer deadline that later requests
    /// have overtaken ([`crate::rules::lost`]), so that its place under
    /// `concurrency` goes to a waiting file. Says whether one was cut.
    pub fn cut_lost(&self) -> bool {
        let mut inner = self.lock();
        let f = &mut inner.flights;
        let answered = f.answered;
        let mut from = 0;
        while let Some(seq) = (f.hung.range(from..))
            .find(|(_, (mark, _))| is_lost(*mark, answered))
            .map(|(seq, _)| *seq)
        {
            let (_, cut) = f.hung.remove(&seq).expect("just found");
            // Its request may have ended in the meantime: then the next.
            if cut.send(()).is_ok() {
                return true;
            }
            from = seq + 1;
        }
        false
    }

    /// [`Pace::cut_lost`] when room under the limit is wanted and none is
    /// free: only a pinned limit's room is held by hung requests (an
    /// adaptive one frees theirs at the lapse time).
    pub fn cut_lost_for_room(&self) -> bool {
        let pinned = !self.lock().adaptive;
        pinned && self.cut_lost()
    }

    fn changed(&self, inner: &Inner) -> bool {
        inner.adaptive && inner.saved != Some(inner.controller.snapshot())
    }

    /// Writes the record if it changed since last written.
    pub fn save(&self) {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = {
            let mut inner = self.lock();
            if !self.changed(&inner) {
                return;
            }
            inner.saved_at = Some(Instant::now());
            inner.controller.snapshot()
        };
        match self.write(&Record::of(snapshot, SystemTime::now())) {
            Ok(()) => self.lock().saved = Some(snapshot),
            Err(e) => {
                tracing::warn!(receiver = %self.name, file = %self.record.display(), error = %e, "cannot remember the receiver's pace; the next start begins low")
            }
        }
    }

    fn write(&self, record: &Record) -> std::io::Result<()> {
        if let Some(dir) = self.record.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        std::fs::write(&self.tmp, text)?;
        std::fs::rename(&self.tmp, &self.record).inspect_err(|_| {
            let _ = std::fs::remove_file(&self.tmp);
        })
    }
}

/// Rewrites the claim folder's pace file every [`PUBLISH_EVERY`] while it
/// changes, until stopped; the claim folder's end removes it.
pub async fn publish(
    folder: PathBuf,
    receivers: impl Fn() -> Vec<Arc<Pace>>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(LOOK_EARLY_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut published = None::<tokio::time::Instant>;
    let mut shown = None;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let others = other_senders(&folder);
        // Read each time: a reload adds and removes receivers.
        let receivers = receivers();
        for pace in &receivers {
            pace.lock().controller.set_shared(others);
        }
        let at = tokio::time::Instant::now();
        if at.duration_since(started) >= LOOK_EARLY_FOR {
            if every.period() != PUBLISH_EVERY {
                every = tokio::time::interval_at(at + PUBLISH_EVERY, PUBLISH_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        } else if published.is_some_and(|last| at.duration_since(last) < PUBLISH_EVERY) {
            // Early looks only look; the record is written as often as ever.
            continue;
        }
        published = Some(at);
        let now: paces::Paces = receivers
            .iter()
            .map(|pace| (pace.name.clone(), pace.shown()))
            .collect();
        if shown.as_ref() == Some(&now) {
            continue;
        }
        match paces::write(&folder, &now) {
            Ok(()) => shown = Some(now),
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(folder = %folder.display(), error = %e, "cannot show the receivers' pace to the reporter");
            }
            Err(_) => {}
        }
    }
}

/// Takes the quiet moments of [`Controller::quiet`] at the instants every
/// sender on the host takes them: each multiple of [`QUIET_EVERY`] of the
/// wall clock, for [`QUIET_FOR`]. (A controller takes one only while
/// other senders share the receiver and it excuses failures as noise.)
pub async fn quiet_moments(receivers: impl Fn() -> Vec<Arc<Pace>>, stop: CancellationToken) {
    loop {
        let now = SystemTime::now();
        let wait = until_next(now, QUIET_FIRST_EVERY);
        let phase = if until_next(now, QUIET_EVERY) <= wait {
            Quieting::Start
        } else {
            Quieting::Early
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // The same paces end the moment they started: one a reload
        // adds meanwhile waits for the next.
        let receivers = receivers();
        receivers.iter().for_each(|pace| pace.quiet(phase));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(QUIET_SETTLE) => {}
        }
        receivers
            .iter()
            .for_each(|pace| pace.quiet(Quieting::Measure));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(QUIET_FOR - QUIET_SETTLE) => {}
        }
        receivers.iter().for_each(|pace| pace.quiet(Quieting::End));
        if stop.is_cancelled() {
            return;
        }
    }
}

/// Time from `now` to the next multiple of `every` since the Unix epoch.
fn until_next(now: SystemTime, every: Duration) -> Duration {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let into = since.as_nanos() % every.as_nanos();
    Duration::from_nanos((every.as_nanos() - into) as u64)
}

/// Whether other senders work on this spool: claim folders beside ours
/// in `sending/` (a dead one's, until recovery, counts too).
fn other_senders(folder: &std::path::Path) -> bool {
    let Some(sending) = folder.parent() else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir(sending) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path() != folder && !e.file_name().as_encoded_bytes().starts_with(b"."))
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
}

fn read(path: &std::path::Path, name: &str) -> Option<Snapshot> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(receiver = name, file = %path.display(), error = %e, "cannot read the remembered pace; starting low");
            return None;
        }
    };
    match serde_json::from_slice::<Record>(&text) {
        Ok(record) => record.fresh(SystemTime::now()),
        Err(e) => {
            tracing::warn!(receiver = name, file = %path.display(), error = %e, "the remembered pace is not a pace record; starting low");
            None
        }
    }
}

/// One request to a receiver, from its start to its end (when dropped).
struct Flight {
    pace: Arc<Pace>,
    seq: u64,
    mark: Mark,
    /// The receiver answered it.
    answered: bool,
}

impl Flight {
    /// Past its answer deadline: from now on it may be cut as lost
    /// ([`Pace::cut_lost`]); the receiver says when. Also says whether it
    /// is lost already.
    fn hung(&self) -> (oneshot::Receiver<()>, bool) {
        let (cut, cut_when) = oneshot::channel();
        let mut inner = self.pace.lock();
        let lost = is_lost(self.mark, inner.flights.answered);
        inner.flights.hung.insert(self.seq, (self.mark, cut));
        (cut_when, lost)
    }

    /// Its request ended with `sent`.
    fn came(&mut self, sent: Sent) -> Flown {
        self.answered = matches!(sent.answer, Answer::Status { .. });
        Flown::Sent(sent)
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut inner = self.pace.lock();
        inner.flights.ended += 1;
        inner.flights.answered += u64::from(self.answered);
        inner.flights.hung.remove(&self.seq);
    }
}

/// How a request watched by [`Slot::unless_hung`] ended.
// Returned once per request and taken apart at once: boxing the answer
// would cost an allocation per file for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Flown {
    /// Its answer, or how it failed.
    Sent(Sent),
    /// Cut as lost, for its place, after waiting this long.
    Cut(Duration),
}

/// Room for one request under a receiver's limit, held while it is in
/// flight and freed when dropped. Dropped unanswered (a claim that found
/// nothing, a job cut short) it tells the controller only that its request
/// is not coming ([`crate::rules::adaptive::Controller::withdrawn`]).
pub struct Slot {
    pace: Arc<Pace>,
    ticket: Option<Ticket>,
    hold: Hold,
    /// Freed early: its request did not answer within the lapse time.
    lapsed: bool,
    /// An answer the controller hears when the hold ends.
    told: Option<(Ticket, Signal)>,
}

impl Slot {
    /// Runs `request`; if it has not answered within the controller's
    /// lapse time ([`crate::rules::adaptive::Controller::lapse_after`]) its room
    /// is freed for another while it goes on to its own timeout, as TCP
    /// stops counting a segment in flight at its retransmission timeout.
    /// One request that never answers then holds no more than its own
    /// connection: at a small limit it would otherwise stop the receiver
    /// for a whole timeout. `freed` is called once the room is freed: a
    /// dispatcher that passed this receiver over for want of room waits
    /// for word of it, and without that word it waited for a job to end,
    /// which at a small limit with every request hung was their timeout.
    ///
    /// The receiver's `concurrency` (its permits) still counts it, until
    /// its place is wanted past its answer deadline (`lost_after`, looked
    /// up once it is slow; `None` for never) while requests sent after it
    /// have been answered ([`Pace::cut_lost`], [`crate::rules::lost`]): then
    /// it is [`Flown::Cut`], as if its timeout had come. `freed` is called
    /// again if it is lost the moment it may be cut: its place may be had,
    /// and no answer to come may say so.
    pub async fn unless_hung(
        &mut self,
        request: impl std::future::Future<Output = Sent>,
        freed: impl Fn(),
        lost_after: impl FnOnce() -> Option<Duration>,
    ) -> Flown {
        tokio::pin!(request);
        let started = crate::sched::clock::now();
        let mut flight = self.pace.fly();
        if !self.lapsed {
            let lapse = self.pace.lapse_after();
            if lapse != Duration::MAX {
                tokio::select! {
                    biased;
                    sent = &mut request => return flight.came(sent),
                    _ = tokio::time::sleep(lapse) => {
                        self.lapsed = true;
                        self.pace.free();
                        freed();
                        tracing::debug!(receiver = %self.pace.name, after = ?lapse, "a request is slow to answer; its room is freed for another");
                    }
                }
            }
        }
        // A pinned limit frees no room, but its requests hang all the same.
        let Some(lost_at) = lost_after().and_then(|after| started.checked_add(after)) else {
            return flight.came(request.await);
        };
        tokio::select! {
            biased;
            sent = &mut request => return flight.came(sent),
            _ = tokio::time::sleep_until(lost_at.into()) => {}
        }
        let (cut_when, lost) = flight.hung();
        if lost {
            freed();
        }
        tokio::select! {
            biased;
            sent = &mut request => flight.came(sent),
            Ok(()) = cut_when => {
                let waited = crate::sched::clock::now() - started;
                tracing::debug!(receiver = %self.pace.name, after = ?waited, "a hung request was overtaken by later ones; it is cut for its place");
                Flown::Cut(waited)
            }
        }
    }

    /// Tells the controller what the answer said; returns the limit after
    /// hearing it. The room stays taken until the slot is dropped, which
    /// should be no sooner than [`Slot::hold`] from now.
    ///
    /// A request turned away is told only when its
    /// [`crate::rules::adaptive::Hold::tell`] has passed, through the
    /// [`Telling`] that [`Slot::free_after_hold`] returns (its room may be
    /// free sooner): a 503 comes back in a fraction of the time a served
    /// request takes, so told at once, the failures of the requests sent
    /// after a change of limit would reach the controller a round trip
    /// before their successes, and every window after a change would seem
    /// to fail twice as often as the receiver does.
    pub fn answered(&mut self, signal: Signal) -> usize {
        let ticket = self.ticket.take().expect("answered once");
        self.hold = self.pace.hold(signal);
        if self.hold.tell.is_zero() {
            return self.pace.hear(ticket, signal);
        }
        self.told = Some((ticket, signal));
        self.pace.limit()
    }

    /// How long after its answer the request keeps its room: a request
    /// turned away as overload keeps it for a served one's time
    /// ([`crate::rules::adaptive::Controller::hold`]).
    pub fn hold(&self) -> Duration {
        self.hold.room
    }

    /// Keeps the room for [`Slot::hold`], then frees it; the answer still
    /// to be heard is in the [`Telling`] returned. No hold, no wait: even a
    /// zero sleep would wait for the timer's next tick (up to 1 ms), and
    /// as the earliest timer wake the runtime's driver; at a limit of 4
    /// that held every receiver under 2,500 files/s.
    pub async fn free_after_hold(mut self) -> Telling {
        if !self.hold.room.is_zero() {
            tokio::time::sleep(self.hold.room).await;
        }
        let telling = Telling {
            pace: self.pace.clone(),
            told: self.told.take(),
            after: self.hold.tell.saturating_sub(self.hold.room),
        };
        if telling.after.is_zero() {
            // Heard before its room is freed, as a served answer is.
            telling.tell_now()
        } else {
            telling
        }
    }
}

/// A turned-away answer the controller hears a served request's time after
/// it came, though its room may be free already
/// ([`crate::rules::adaptive::Hold`]). Dropped early, it is heard then.
#[must_use = "the controller hears the answer when this is awaited or dropped"]
pub struct Telling {
    pace: Arc<Pace>,
    told: Option<(Ticket, Signal)>,
    after: Duration,
}

impl Telling {
    /// Waits until the answer is due, then tells it.
    pub async fn when_due(self) {
        if self.told.is_some() && !self.after.is_zero() {
            tokio::time::sleep(self.after).await;
        }
    }

    fn tell_now(mut self) -> Telling {
        if let Some((ticket, signal)) = self.told.take() {
            self.pace.hear(ticket, signal);
        }
        self
    }
}

impl Drop for Telling {
    fn drop(&mut self) {
        if let Some((ticket, signal)) = self.told.take() {
            self.pace.hear(ticket, signal);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Cut short during its hold: the controller still hears of it.
        if let Some((ticket, signal)) = self.told.take() {
            self.pace.hear(ticket, signal);
        }
        if let Some(ticket) = self.ticket.take() {
            self.pace.withdraw(ticket);
        }
        if !self.lapsed {
            self.pace.free();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::outcome::Transport;

    const MS: Duration = Duration::from_millis(1);

    fn status(code: u16) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
            early: None,
        }
    }

    /// A receiver's pace in a spool of its own, bound at 64.
    fn fresh(adaptive: bool) -> (tempfile::TempDir, Arc<Pace>) {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let pace = Pace::load(&spool, "r", 64, adaptive, None);
        (root, pace)
    }

    /// A flight whose request the receiver answered.
    fn answer(mut flight: Flight) {
        flight.answered = true;
    }

    #[tokio::test]
    async fn a_hung_request_is_cut_for_its_place_once_three_sent_after_it_were_answered() {
        let (_root, pace) = fresh(true);
        // One in flight before the hung one: the first answered may be it.
        let before = pace.fly();
        let hung = pace.fly();
        let (mut cut_when, lost) = hung.hung();
        assert!(!lost);
        assert!(!pace.cut_lost(), "nothing overtook it yet");
        answer(before);
        let mut later = (0..5).map(|_| pace.fly()).collect::<Vec<_>>().into_iter();
        answer(later.next().unwrap());
        answer(later.next().unwrap());
        // Ended without an answer (a file that vanished, a reset): no word
        // of the receiver's health.
        drop(later.next());
        assert!(
            !pace.cut_lost(),
            "two sent after it were answered, and maybe not even those"
        );
        assert!(cut_when.try_recv().is_err());
        answer(later.next().unwrap());
        assert!(pace.cut_lost(), "three sent after it were answered");
        assert_eq!(cut_when.try_recv(), Ok(()));
        assert!(!pace.cut_lost(), "cut once");
        drop(hung);
        assert!(pace.lock().flights.hung.is_empty());
        // Hung only now, with the three answered already: lost at once,
        // which is when the dispatcher must hear of it.
        drop(later);
        let late = pace.fly();
        for _ in 0..3 {
            answer(pace.fly());
        }
        assert!(late.hung().1);
    }

    #[tokio::test]
    async fn a_cut_that_finds_its_request_ended_cuts_the_next_lost_one() {
        let (_root, pace) = fresh(true);
        let first = pace.fly();
        let second = pace.fly();
        let (first_cut, _) = first.hung();
        let (mut second_cut, _) = second.hung();
        for _ in 0..4 {
            answer(pace.fly());
        }
        // The first one's request ended, its flight not yet dropped.
        drop(first_cut);
        assert!(pace.cut_lost());
        assert_eq!(second_cut.try_recv(), Ok(()));
        drop((first, second));
    }

    #[tokio::test]
    async fn a_hung_request_that_ended_is_not_cut() {
        let (_root, pace) = fresh(true);
        let hung = pace.fly();
        let _cut_when = hung.hung();
        drop(hung);
        for _ in 0..5 {
            answer(pace.fly());
        }
        assert!(!pace.cut_lost());
    }

    #[tokio::test]
    async fn only_a_pinned_limit_cuts_for_room() {
        for adaptive in [true, false] {
            let (_root, pace) = fresh(adaptive);
            let hung = pace.fly();
            let _cut_when = hung.hung();
            for _ in 0..3 {
                answer(pace.fly());
            }
            assert_eq!(pace.cut_lost_for_room(), !adaptive, "adaptive = {adaptive}");
        }
    }

    #[tokio::test]
    async fn a_reload_resizes_the_pace_and_keeps_what_it_learnt() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let one_an_hour: RateLimit = "1/h".parse().unwrap();
        let pace = Pace::load(&spool, "r", 64, true, Some(one_an_hour));
        let learnt = pace.lock().controller.snapshot();
        assert!(pace.admit(Duration::ZERO).await.is_ok());
        assert!(
            pace.admit(Duration::ZERO).await.is_err(),
            "the hour's one taken"
        );
        pace.resize(&spool, 2, true, Some("1000/s".parse().unwrap()));
        assert!(
            pace.admit(Duration::ZERO).await.is_ok(),
            "a bucket of the new size"
        );
        assert_eq!(
            pace.limit(),
            learnt.limit.min(2),
            "clamped into the new bound"
        );
        assert_eq!(pace.lock().controller.baseline(), learnt.baseline);
        pace.resize(&spool, 7, false, None);
        assert_eq!(pace.limit(), 7, "pinned at the new bound");
        assert!(pace.admit(Duration::ZERO).await.is_ok(), "no rate limit");
        pace.resize(&spool, 16, true, None);
        assert_eq!(pace.limit(), 7, "made adaptive, it starts where it was");
    }

    #[test]
    fn what_each_answer_says_about_capacity() {
        let table = [
            (status(200), Signal::Good(7 * MS)),
            (status(204), Signal::Good(7 * MS)),
            (status(429), Signal::Overload),
            (status(503), Signal::Overload),
            (Answer::Failed(Transport::Timeout), Signal::Overload),
            (Answer::Failed(Transport::Reset), Signal::Overload),
            (Answer::Failed(Transport::Connect), Signal::Overload),
            (Answer::Failed(Transport::Tls), Signal::Neutral),
            (Answer::Failed(Transport::Other), Signal::Neutral),
            (status(400), Signal::Neutral),
            (status(413), Signal::Neutral),
            (status(500), Signal::Neutral),
            (Answer::LocalRead, Signal::Neutral),
            (Answer::NoRoute, Signal::Neutral),
            (Answer::Unsendable("x".into()), Signal::Neutral),
        ];
        for (answer, want) in table {
            assert_eq!(signal(&answer, 7 * MS), want, "{answer:?}");
        }
    }

    /// A slot dropped before its request went out (another sender claimed
    /// the file first) withdraws its ticket: the quiet moment it was taken
    /// in is judged at its other requests' last answer, not a lapse time
    /// later.
    #[tokio::test]
    async fn a_slot_dropped_unanswered_keeps_no_quiet_moment_waiting() {
        let (_dir, pace) = fresh(true);
        let one_in_ten = |c: &mut Controller, tickets: Vec<Ticket>| {
            let now = crate::sched::clock::now();
            for (i, t) in tickets.into_iter().enumerate() {
                let signal = if i % 10 == 0 {
                    Signal::Overload
                } else {
                    Signal::Good(5 * MS)
                };
                c.answered(t, signal, now);
            }
        };
        {
            let mut inner = pace.lock();
            let c = &mut inner.controller;
            c.set_shared(true);
            // One answer in ten fails outside the moments too.
            let tickets = (1..=100).map(|_| c.sent(1)).collect();
            one_in_ten(c, tickets);
        }
        pace.quiet(Quieting::Start);
        pace.quiet(Quieting::Measure);
        let lost_claim = pace.try_take().expect("room");
        let tickets: Vec<Ticket> = {
            let mut inner = pace.lock();
            (2..22).map(|n| inner.controller.sent(n)).collect()
        };
        pace.quiet(Quieting::End);
        one_in_ten(&mut pace.lock().controller, tickets);
        let noise = || pace.lock().controller.noise();
        assert_eq!(noise(), 0.0, "the lost claim's request is still out");
        drop(lost_claim);
        assert!(
            (noise() - 0.1).abs() < 0.03,
            "judged once the lost claim withdrew: {}",
            noise()
        );
    }

    #[tokio::test]
    async fn a_served_request_frees_its_room_at_once_and_a_turned_away_one_keeps_it() {
        use futures_util::FutureExt;
        let (_dir, pace) = fresh(true);
        let in_flight = || pace.shown().in_flight;
        let mut slot = pace.try_take().expect("room");
        slot.answered(Signal::Good(5 * MS));
        assert_eq!(in_flight(), 1, "the room is taken until freed");
        assert!(
            slot.free_after_hold().now_or_never().is_some(),
            "no wait for a timer"
        );
        assert_eq!(in_flight(), 0, "free at once");
        // Turned away as overload: the room stays taken a while.
        let mut slot = pace.try_take().expect("room");
        slot.answered(Signal::Overload);
        assert!(slot.hold() > Duration::ZERO);
        let freeing = slot.free_after_hold();
        tokio::pin!(freeing);
        assert!(freeing.as_mut().now_or_never().is_none());
        assert_eq!(in_flight(), 1);
        freeing.await.when_due().await;
        assert_eq!(in_flight(), 0);
    }

    #[test]
    fn a_record_is_trusted_for_an_hour_and_not_from_the_future() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let record = |age: i64, limit| Record {
            limit,
            baseline_ms: Some(5.0),
            noise: 0.0,
            written: (1_000_000 - age) as u64,
        };
        let want = Some(Snapshot {
            limit: 9,
            baseline: Some(5 * MS),
            noise: 0.0,
        });
        assert_eq!(record(0, 9).fresh(now), want);
        assert_eq!(record(3600, 9).fresh(now), want);
        assert_eq!(record(30, 9).fresh(now), want);
        assert_eq!(record(-30, 9).fresh(now), want, "a little clock skew");
        assert_eq!(record(3601, 9).fresh(now), None, "stale");
        assert_eq!(record(-3600, 9).fresh(now), None, "from the future");
        assert_eq!(record(0, 0).fresh(now), None, "a limit of 0");
        let odd = Record {
            baseline_ms: Some(f64::NAN),
            ..record(0, 9)
        };
        assert_eq!(odd.fresh(now).unwrap().baseline, None);
        let noisy = |noise| Record {
            noise,
            ..record(0, 9)
        };
        assert_eq!(noisy(0.1).fresh(now).unwrap().noise, 0.1, "noise is kept");
        assert_eq!(noisy(f64::NAN).fresh(now).unwrap().noise, 0.0);
        assert_eq!(
            noisy(7.0).fresh(now).unwrap().noise,
            crate::rules::adaptive::MAX_NOISE
        );
        // A record from before noise was kept reads as none learnt.
        let old: Record = serde_json::from_str(r#"{"limit":9,"written":1000000}"#).unwrap();
        assert_eq!(old.fresh(now).unwrap().noise, 0.0);
    }

    #[test]
    fn a_record_round_trips_through_the_spool_and_bad_ones_start_low() {
        let dir = std::env::temp_dir().join(format!("pace-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let pace = Pace::load(&spool, "r", 64, true, None);
        assert_eq!(pace.limit(), crate::rules::adaptive::INITIAL);
        // Grow it by hand: a full window of good answers at the limit.
        for _ in 0..30 {
            let slots: Vec<Slot> = std::iter::from_fn(|| pace.try_take()).collect();
            assert_eq!(slots.len(), pace.limit(), "room up to the limit, no more");
            for mut s in slots {
                s.answered(Signal::Good(5 * MS));
            }
        }
        let learnt = pace.limit();
        assert!(learnt > crate::rules::adaptive::INITIAL, "{learnt}");
        pace.save();
        assert_eq!(Pace::load(&spool, "r", 64, true, None).limit(), learnt);
        assert_eq!(Pace::load(&spool, "r", 5, true, None).limit(), 5, "bounded");
        assert_eq!(
            Pace::load(&spool, "r", 64, false, None).limit(),
            64,
            "pinned"
        );
        let leftovers: Vec<_> = std::fs::read_dir(spool.tmp()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::write(dir.join(PACE_DIR).join("r.json"), "{\"limit\":").unwrap();
        assert_eq!(
            Pace::load(&spool, "r", 64, true, None).limit(),
            crate::rules::adaptive::INITIAL
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
