//! The scheduler: finds files that are ready in `incoming/`, decides whether
//! each may go now, claims it and starts its job.
//!
//! A file may go when it is due (no retry wait left), its receiver's circuit
//! lets it through, and there is room in flight both overall and for its
//! receiver. Files are offered in directory order as `readdir` streams them,
//! never listed or sorted as a whole, so the cost of finding the next file
//! does not grow with the backlog. New files are offered straight from
//! inotify events; full rescans happen at start, when a retry falls due, when
//! a circuit may close, when a receiver that had no room frees some, and as a
//! periodic safety net.
//!
//! Room for a receiver is its [`crate::sched::pace`]: an adaptive limit on its
//! requests in flight, bounded by its `concurrency` and the global cap.
//!
//! One slow receiver must not hold up the others: if a receiver has had no
//! free slot for [`RECEIVER_PATIENCE`], the rest of the pass skips its files
//! and a later pass comes back for them.
//!
//! Several senders on one spool must not all chase the same file: after a
//! claim lost to another sender, the names that follow are skipped by a
//! random [`Leap`], and a later pass comes back for what is left of them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spoolpost_protocol::fullname;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::{State, is_data_name};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::rules::judge::{Attempt, judge};
use crate::rules::leap::Leap;
use crate::rules::outcome::Answer;
use crate::sched::circuits::{Admit, Grant};
use crate::sched::holds::Holds;
use crate::sched::job::{self, Job};
use crate::sched::settle::{Attempted, settle};
use crate::sched::shared::{ReceiverSlots, Shared};

/// How long a pass waits for a busy receiver before skipping its files.
pub const RECEIVER_PATIENCE: Duration = Duration::from_millis(50);

/// How long another sender, once seen alive, is taken to be so without
/// looking again: a lost race costs a read of `sending/` at most this often.
const OTHERS_FRESH: Duration = Duration::from_secs(1);

/// The result of offering one name.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Started,
    /// Not a file for sending (dot-file, gone before it was looked at).
    Ignored,
    /// Another sender claimed it between our reading its name and our
    /// claim (with no other sender alive, a name gone is [`Offer::Ignored`]).
    Lost,
    /// Not offered: a lost race had the dispatcher leap over it.
    LeaptOver,
    /// Waiting: its retry is not due, or its receiver's circuit is open.
    NotYet,
    /// Its receiver had no room; a later pass comes back for it.
    Skipped,
    Stopped,
}

pub struct Dispatcher {
    pub shared: Arc<Shared>,
    global: Arc<Semaphore>,
    jobs: JoinSet<()>,
    stop: CancellationToken,
    /// Receivers skipped in the current pass, by name.
    skipped: BTreeSet<String>,
    /// The earliest moment a waiting file may become ready.
    next_wake: Option<Instant>,
    /// Receivers an operator put on hold.
    holds: Holds,
    /// How far to skip ahead after a claim lost to another sender.
    leap: Leap,
    /// Names still to skip from the last leap.
    leaping: usize,
    /// Whether a lost race leaps at all (see [`Dispatcher::stop_leaping`]).
    leaps: bool,
    /// When another live sender was last seen on the spool.
    others_seen: Option<Instant>,
    /// Unrouted files already told of in a warning.
    unrouted_told: u64,
}

#[derive(Debug, Default)]
pub struct Pass {
    /// Some receiver had no room, so a later pass must come back.
    pub skipped: bool,
    /// Names were leapt over after a lost claim race; another pass, at
    /// once, offers what the other senders left of them.
    pub leapt: bool,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>, concurrency: usize, stop: CancellationToken) -> Dispatcher {
        Dispatcher {
            shared,
            global: Arc::new(Semaphore::new(concurrency)),
            jobs: JoinSet::new(),
            stop,
            skipped: BTreeSet::new(),
            next_wake: None,
            holds: Holds::default(),
            leap: Leap::new(fastrand::Rng::new()),
            leaping: 0,
            leaps: true,
            others_seen: None,
            unrouted_told: 0,
        }
    }

    /// From now on a lost race skips nothing, so every pass offers every
    /// name it reads and never asks for another on that account: how a
    /// `--once` run ends while other senders keep taking new files.
    pub fn stop_leaping(&mut self) {
        self.leaps = false;
        self.leaping = 0;
    }

    /// Rereads the holds when they are due for it. When a hold is lifted
    /// its files are waiting in `incoming/`, so the dispatcher is woken for
    /// a pass, whichever caller noticed the lift.
    pub fn refresh_holds(&mut self) {
        let config = self.shared.config();
        let names: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
        if self
            .holds
            .refresh(&self.shared.spool, &names, crate::sched::clock::now())
        {
            self.shared.wake.notify_one();
        }
    }

    pub fn next_wake(&self) -> Option<Instant> {
        self.next_wake
    }

    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    /// Reads `incoming/` once from start to end, offering every name.
    pub async fn pass(&mut self) -> io::Result<Pass> {
        let incoming = self.shared.spool.dir(State::Incoming);
        self.skipped.clear();
        self.next_wake = None;
        self.leaping = 0;
        let mut pass = Pass::default();
        for entry in std::fs::read_dir(&incoming)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "error reading incoming/; the rest waits for the next pass");
                    break;
                }
            };
            // d_type from readdir: no extra syscall. Folders are not spool
            // files; leave them to whoever put them there.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            match self.offer_in_turn(entry.file_name()).await {
                Offer::Skipped => pass.skipped = true,
                Offer::LeaptOver => pass.leapt = true,
                Offer::Stopped => break,
                Offer::Started | Offer::Ignored | Offer::NotYet | Offer::Lost => {}
            }
        }
        self.tell_unrouted();
        Ok(pass)
    }

    /// Offers the names inotify reported, in turn, leaping as a pass does;
    /// true when some were leapt over and a rescan must come back for them.
    pub async fn offer_seen(&mut self, names: impl IntoIterator<Item = OsString>) -> bool {
        self.leaping = 0;
        let mut leapt = false;
        for name in names {
            match self.offer_in_turn(name).await {
                Offer::LeaptOver => leapt = true,
                Offer::Stopped => break,
                _ => {}
            }
        }
        self.tell_unrouted();
        leapt
    }

    /// One line for the unrouted files a batch of names moved to `error/`,
    /// however many: a missing route is one mistake.
    fn tell_unrouted(&mut self) {
        let so_far = self.shared.counts.no_route.load(Ordering::Relaxed);
        let files = so_far.saturating_sub(self.unrouted_told);
        if files > 0 {
            // The spool named, so the command runs as written wherever the
            // configuration is (not only at the packaged path).
            let then = spoolpost_ops::hint::reporter_on(
                self.shared.spool.root(),
                "requeue --class no_route",
            );
            tracing::warn!(
                files,
                so_far,
                then,
                "moved to error/: no routing rule matches; add a [[routes]] rule, then requeue them"
            );
        }
        self.unrouted_told = so_far;
    }

    /// Offers one name of a run of names, unless a lost race has it leapt
    /// over.
    async fn offer_in_turn(&mut self, name: OsString) -> Offer {
        if self.leaping > 0 {
            self.leaping -= 1;
            return Offer::LeaptOver;
        }
        let offer = self.offer(name).await;
        match offer {
            Offer::Lost if self.leaps => self.leaping = self.leap.after_loss(),
            Offer::Started => self.leap.after_win(),
            _ => {}
        }
        offer
    }

    /// Offers one name found in `incoming/`.
    pub async fn offer(&mut self, name: OsString) -> Offer {
        while self.jobs.try_join_next().is_some() {}
        if self.stop.is_cancelled() {
            return Offer::Stopped;
        }
        if !is_data_name(&name) {
            return Offer::Ignored;
        }
        let mut parsed = SpoolName::parse(&name);
        let config = self.shared.config();
        let now = self.shared.wall_clock();
        let cap = config.retry_cap(&self.shared.spool, &name, &parsed, now);
        let due = (self.shared.spool).retry_wait(&name, parsed.attempts, cap, now);
        match due {
            Ok(None) => {}
            Ok(Some(wait)) => {
                self.wake_at(crate::sched::clock::now() + wait);
                return Offer::NotYet;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.vanished(),
            Err(_) => return Offer::Ignored,
        }
        // Routing needs the whole original of a long name.
        fullname::resolve(self.shared.spool.root(), &mut parsed);
        let Some(route) = config.router.route(&parsed.original) else {
            self.reject_at_once(&name, Answer::NoRoute, None);
            return Offer::Ignored;
        };
        let r = route.receiver;
        let urls = match route.urls {
            Ok(urls) => urls,
            Err(why) => {
                let receiver = config.receivers[r].name.clone();
                self.reject_at_once(&name, Answer::Unsendable(why), Some(&receiver));
                return Offer::Ignored;
            }
        };
        let slots = config.receivers[r].clone();
        let receiver = slots.name.as_str();
        if self.skipped.contains(receiver) {
            return Offer::Skipped;
        }
        self.refresh_holds();
        if self.holds.is_held(receiver) {
            return Offer::NotYet;
        }
        let shared = self.shared.clone();
        let snapshot = config.clone();
        let labels = snapshot.router.receivers()[r].endpoint_labels();
        let (endpoint, probe) =
            match shared
                .circuits
                .admit(receiver, labels, crate::sched::clock::now())
            {
                Admit::WaitUntil(at) => {
                    self.wake_at(at);
                    return Offer::NotYet;
                }
                Admit::Probe(endpoint) => (endpoint, true),
                Admit::Send(endpoint) => (endpoint, false),
            };
        // Gives the endpoint's grant (and probe) back on every way out
        // below but the one that starts the job.
        let grant = Grant::new(&shared.circuits, receiver, &labels[endpoint], probe);
        let pace = slots.pace.clone();
        let pace = match pace.try_take() {
            Some(slot) => slot,
            None => {
                pace.cut_lost_for_room();
                let wait = tokio::select! {
                    slot = pace.take_within(RECEIVER_PATIENCE) => slot,
                    _ = self.stop.cancelled() => None,
                };
                match wait {
                    Some(slot) => slot,
                    None => return self.skip(&slots),
                }
            }
        };
        let permits = slots.permits.clone();
        let receiver_permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Every place is taken: one held by a request that later
                // ones overtook is wanted more by this file.
                slots.pace.cut_lost();
                let wait = tokio::select! {
                    p = tokio::time::timeout(RECEIVER_PATIENCE, permits.acquire_owned()) => p.ok().and_then(Result::ok),
                    _ = self.stop.cancelled() => None,
                };
                match wait {
                    Some(p) => p,
                    None => return self.skip(&slots),
                }
            }
        };
        let global_permit = match self.global.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                slots.pace.cut_lost();
                tokio::select! {
                    p = self.global.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = self.stop.cancelled() => return Offer::Stopped,
                }
            }
        };
        if let Err(at) = slots.pace.admit(RECEIVER_PATIENCE).await {
            self.wake_at(at);
            return self.skip(&slots);
        }
        match self.shared.claims.claim(&name, self.shared.wall_clock()) {
            Ok(Some(claimed)) => {
                self.shared.counts.started.fetch_add(1, Ordering::Relaxed);
                let job = Job {
                    claimed,
                    receiver: r,
                    urls,
                    endpoint,
                    probe,
                    permits: (receiver_permit, global_permit),
                    pace,
                    config,
                };
                grant.sent();
                self.jobs.spawn(job::run(self.shared.clone(), job));
                Offer::Started
            }
            Ok(None) => self.vanished(),
            Err(e) => {
                let disk_full = spoolpost_protocol::fsops::is_disk_full(&e);
                if disk_full {
                    self.shared
                        .counts
                        .refused_disk_full
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::error!(error = %e, disk_full, "cannot claim; the file stays in incoming/");
                Offer::Ignored
            }
        }
    }

    /// A name gone before its claim. That is a race lost only when another
    /// sender is alive to have won it; a sender alone reads the same name
    /// twice (a pass and inotify both offer a new file), or an operator
    /// moved it, and neither is worth counting as a race or leaping over.
    fn vanished(&mut self) -> Offer {
        if !self.others_alive() {
            return Offer::Ignored;
        }
        self.shared.counts.lost.fetch_add(1, Ordering::Relaxed);
        Offer::Lost
    }

    fn others_alive(&mut self) -> bool {
        let now = crate::sched::clock::now();
        if self
            .others_seen
            .is_some_and(|seen| now.duration_since(seen) < OTHERS_FRESH)
        {
            return true;
        }
        let alive = self.shared.claims.others_alive();
        self.others_seen = alive.then_some(now);
        alive
    }

    /// The rest of this pass leaves receiver `r` alone; the next slot it
    /// frees wakes the dispatcher for another.
    fn skip(&mut self, slots: &ReceiverSlots) -> Offer {
        self.skipped.insert(slots.name.clone());
        slots.skipped.store(true, Ordering::Release);
        Offer::Skipped
    }

    /// A file that cannot be sent whatever the receiver says (no rule
    /// routes it, or its URL is not valid): claimed, judged and settled
    /// like any attempt, without a request or a word to its circuit.
    fn reject_at_once(&self, name: &OsString, answer: Answer, receiver: Option<&str>) {
        let now = self.shared.wall_clock();
        match self.shared.claims.claim(name, now) {
            Ok(Some(claimed)) => {
                let at = Attempt {
                    number: claimed.name.attempts + 1,
                    age: Duration::ZERO,
                    now,
                    jitter: 0.0,
                    latency: Duration::ZERO,
                };
                let fate = judge(
                    &answer,
                    Default::default(),
                    &self.shared.config().policy,
                    at,
                )
                .fate;
                let attempted = Attempted {
                    receiver,
                    url: None,
                    endpoint: None,
                    failed_over: &[],
                    sent: None,
                    now,
                    limit: None,
                };
                settle(&self.shared, claimed, attempted, fate);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot claim; the file stays in incoming/"),
        }
    }

    /// Waits until nothing is in flight.
    pub async fn drain(&mut self) {
        while self.jobs.join_next().await.is_some() {}
    }

    /// Waits up to `grace` for in-flight jobs (or until `now` is
    /// cancelled), then cuts the rest short. Their files stay in the claim
    /// folder, which `ClaimFolder::close` returns to `incoming/`.
    pub async fn drain_within(&mut self, grace: Duration, now: &CancellationToken) -> usize {
        let drained = tokio::select! {
            drained = tokio::time::timeout(grace, self.drain()) => drained.is_ok(),
            _ = now.cancelled() => false,
        };
        let cut = if drained {
            0
        } else {
            let cut = self.jobs.len();
            self.jobs.abort_all();
            self.drain().await;
            cut
        };
        // What each receiver's pace came to, for the next start.
        for slots in &self.shared.config().receivers {
            slots.pace.save();
        }
        cut
    }
}
