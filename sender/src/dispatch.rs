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
//! One slow receiver must not hold up the others: if a receiver has had no
//! free slot for [`RECEIVER_PATIENCE`], the rest of the pass skips its files
//! and a later pass comes back for them.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use spoolpost_common::circuits::{self, Circuit, Circuits};
use spoolpost_common::event::{EventKind, EventSink, rfc3339};
use spoolpost_common::fullname;
use spoolpost_common::name::{SpoolName, retry_wait};
use spoolpost_common::reason::ErrorClass;
use spoolpost_common::route::Router;
use spoolpost_common::spool::{ClaimFolder, Spool, State, is_data_name};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::RetryPolicy;
use crate::breaker::{Breaker, Decision};
use crate::http::Http;
use crate::job::{self, Job};

/// How long a pass waits for a busy receiver before skipping its files.
pub const RECEIVER_PATIENCE: Duration = Duration::from_millis(50);

/// What every job shares.
pub struct Shared {
    pub spool: Spool,
    pub claims: ClaimFolder,
    pub router: Router,
    pub http: Http,
    pub policy: RetryPolicy,
    pub delete_delivered: bool,
    pub events: EventSink,
    pub breakers: Mutex<Vec<Breaker>>,
    pub slots: Vec<ReceiverSlots>,
    /// Woken when a receiver that a pass had to skip frees a slot.
    pub wake: Notify,
    /// Set when recovery returned a dead instance's files to `incoming/`.
    pub recovered: AtomicBool,
    pub counts: Counts,
}

pub struct ReceiverSlots {
    pub permits: Arc<Semaphore>,
    /// A pass skipped this receiver's files for want of room.
    pub skipped: AtomicBool,
}

#[derive(Default, Debug)]
pub struct Counts {
    pub started: AtomicU64,
}

impl Shared {
    /// Rewrites this sender's circuit-state file (see
    /// `spoolpost_common::circuits`); called on every state change.
    pub fn publish_circuits(&self) {
        let now_sys = SystemTime::now();
        let now = Instant::now();
        let circuits: Circuits = {
            let breakers = self.breakers.lock().unwrap();
            self.router
                .receivers()
                .iter()
                .zip(breakers.iter())
                .map(|(r, b)| {
                    let state = b.state();
                    let since = rfc3339(now_sys - now.saturating_duration_since(b.since()));
                    (r.name.clone(), Circuit { state, since })
                })
                .collect()
        };
        if let Err(e) = circuits::write(self.claims.path(), &circuits) {
            tracing::warn!(error = %e, "cannot publish circuit states");
        }
    }

    /// Called when a job ends: its slots are free again.
    pub fn release_slot(
        &self,
        receiver: usize,
        permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) {
        drop(permits);
        if self.slots[receiver].skipped.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// The result of offering one name.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Started,
    /// Not a file for sending (dot-file, gone, claimed by another sender).
    Ignored,
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
    /// Receivers skipped in the current pass.
    skipped: Vec<bool>,
    /// The earliest moment a waiting file may become ready.
    next_wake: Option<Instant>,
    /// Receivers an operator put on hold, and when that was last read.
    held: Vec<bool>,
    held_read: Option<Instant>,
}

/// How often the holds are read again.
pub const HOLD_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Pass {
    /// Some receiver had no room, so a later pass must come back.
    pub skipped: bool,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>, concurrency: usize, stop: CancellationToken) -> Dispatcher {
        let receivers = shared.router.receivers().len();
        Dispatcher {
            shared,
            global: Arc::new(Semaphore::new(concurrency)),
            jobs: JoinSet::new(),
            stop,
            skipped: vec![false; receivers],
            next_wake: None,
            held: vec![false; receivers],
            held_read: None,
        }
    }

    /// Rereads the holds if they are older than [`HOLD_REFRESH`]. When a
    /// hold is lifted its files are waiting in `incoming/`, so the
    /// dispatcher is woken for a pass, whichever caller noticed the lift.
    pub fn refresh_holds(&mut self) {
        if self.held_read.is_some_and(|t| t.elapsed() < HOLD_REFRESH) {
            return;
        }
        self.held_read = Some(Instant::now());
        let names = circuits::held(&self.shared.spool);
        let mut lifted = false;
        for (i, r) in self.shared.router.receivers().iter().enumerate() {
            let now_held = names.contains(&r.name);
            if self.held[i] && !now_held {
                tracing::info!(receiver = %r.name, "hold released");
                lifted = true;
            } else if !self.held[i] && now_held {
                tracing::info!(receiver = %r.name, "on hold: its files wait");
            }
            self.held[i] = now_held;
        }
        if lifted {
            self.shared.wake.notify_one();
        }
    }

    fn held_now(&mut self) -> &[bool] {
        self.refresh_holds();
        &self.held
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
        self.skipped.iter_mut().for_each(|s| *s = false);
        self.next_wake = None;
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
            match self.offer(entry.file_name()).await {
                Offer::Skipped => pass.skipped = true,
                Offer::Stopped => break,
                Offer::Started | Offer::Ignored | Offer::NotYet => {}
            }
        }
        Ok(pass)
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
        if parsed.attempts > 0 {
            let path = self.shared.spool.dir(State::Incoming).join(&name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) => {
                    let ctime = SystemTime::UNIX_EPOCH
                        + Duration::new(
                            meta.ctime().max(0) as u64,
                            meta.ctime_nsec().clamp(0, 999_999_999) as u32,
                        );
                    let mtime = meta.modified().unwrap_or(ctime);
                    let wait = retry_wait(
                        parsed.attempts,
                        mtime,
                        ctime,
                        SystemTime::now(),
                        self.shared.policy.max,
                    );
                    if let Some(wait) = wait {
                        self.wake_at(Instant::now() + wait);
                        return Offer::NotYet;
                    }
                }
                Err(_) => return Offer::Ignored,
            }
        }
        // Routing needs the whole original of a long name.
        fullname::resolve(&self.shared.spool, &mut parsed);
        let Some(route) = self.shared.router.route(&parsed.original) else {
            self.reject_at_once(
                &name,
                ErrorClass::NoRoute,
                "no route: no routing rule matches this file name; add a [[routes]] rule and requeue it".into(),
                None,
            );
            return Offer::Ignored;
        };
        let r = route.receiver;
        let url = match route.url {
            Ok(url) => url,
            Err(why) => {
                self.reject_at_once(&name, ErrorClass::Unsendable, why, Some(r));
                return Offer::Ignored;
            }
        };
        if self.skipped[r] {
            return Offer::Skipped;
        }
        if self.held_now()[r] {
            return Offer::NotYet;
        }
        let decision = self.shared.breakers.lock().unwrap()[r].check(Instant::now());
        let probe = match decision {
            Decision::WaitUntil(at) => {
                self.wake_at(at);
                return Offer::NotYet;
            }
            Decision::Probe => {
                // Open -> half-open happens inside check(): publish it.
                self.shared.publish_circuits();
                true
            }
            Decision::Send => false,
        };
        let cancel_probe = |shared: &Shared| {
            if probe {
                shared.breakers.lock().unwrap()[r].cancel_probe();
            }
        };
        let slots = self.shared.slots[r].permits.clone();
        let receiver_permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let wait = tokio::select! {
                    p = tokio::time::timeout(RECEIVER_PATIENCE, slots.acquire_owned()) => p.ok().and_then(Result::ok),
                    _ = self.stop.cancelled() => None,
                };
                match wait {
                    Some(p) => p,
                    None => {
                        cancel_probe(&self.shared);
                        self.skipped[r] = true;
                        self.shared.slots[r].skipped.store(true, Ordering::Release);
                        return Offer::Skipped;
                    }
                }
            }
        };
        let global_permit = tokio::select! {
            p = self.global.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = self.stop.cancelled() => {
                cancel_probe(&self.shared);
                return Offer::Stopped;
            }
        };
        match self.shared.claims.claim(&name, SystemTime::now()) {
            Ok(Some(claimed)) => {
                self.shared.counts.started.fetch_add(1, Ordering::Relaxed);
                let job = Job {
                    claimed,
                    receiver: r,
                    url,
                    probe,
                    permits: (receiver_permit, global_permit),
                };
                self.jobs.spawn(job::run(self.shared.clone(), job));
                Offer::Started
            }
            Ok(None) => {
                cancel_probe(&self.shared);
                Offer::Ignored
            }
            Err(e) => {
                cancel_probe(&self.shared);
                tracing::error!(error = %e, "cannot claim; the file stays in incoming/");
                Offer::Ignored
            }
        }
    }

    /// A file that cannot be sent whatever the receiver says (no rule
    /// routes it, or its URL is not valid): claimed and moved to `error/`.
    fn reject_at_once(
        &self,
        name: &OsString,
        class: ErrorClass,
        why: String,
        receiver: Option<usize>,
    ) {
        match self.shared.claims.claim(name, SystemTime::now()) {
            Ok(Some(claimed)) => {
                let record = self
                    .shared
                    .reason(&claimed, class, why, receiver, None, None);
                self.shared
                    .reject(claimed, record, EventKind::Rejected, receiver, None);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot claim; the file stays in incoming/"),
        }
    }

    /// Waits until nothing is in flight.
    pub async fn drain(&mut self) {
        while self.jobs.join_next().await.is_some() {}
    }

    /// Waits up to `grace` for in-flight jobs, then cuts the rest short.
    /// Their files stay in the claim folder, which `ClaimFolder::close`
    /// returns to `incoming/`.
    pub async fn drain_within(&mut self, grace: Duration) -> usize {
        if tokio::time::timeout(grace, self.drain()).await.is_ok() {
            return 0;
        }
        let cut = self.jobs.len();
        self.jobs.abort_all();
        self.drain().await;
        cut
    }
}
