//! What every job and the scheduler share: the spool and claim folder, the
//! configuration snapshot a reload swaps (routes, HTTP clients, retry
//! policy), the circuits, the slots that count files in flight, and the
//! [`Exchange`] that sends and tells the time. A module
//! of its own so the scheduler and the code that settles a file both use it
//! without importing each other.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use spoolpost_ops::config::RateLimit;
use spoolpost_ops::route::Router;
use spoolpost_protocol::event::EventSink;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::{ClaimFolder, Spool};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::net::exchange::Exchange;
use crate::net::send::Http;
use crate::rules::backoff::RetryPolicy;
use crate::sched::circuits::Circuits;

/// What a reload replaces as one: a job takes the snapshot current when it
/// is offered and keeps it to its end, so its URL, client, headers,
/// timeouts and answer rules all come from one configuration.
pub struct Config {
    pub router: Arc<Router>,
    pub http: Arc<Http>,
    /// Each receiver's slots and pace, in the order of `router`'s
    /// receivers. They belong to the receiver's name: a reload hands a
    /// kept name the same ones and a new name fresh ones, so a job's index
    /// into its own snapshot always finds its receiver's state.
    pub receivers: Vec<Arc<ReceiverSlots>>,
    pub policy: RetryPolicy,
    /// Set by a reload that changed the backoff: files put back before it
    /// waited under the old policy and are judged again under this one.
    pub rejudge_before: Option<SystemTime>,
    /// The largest `(backoff_initial, backoff_max)` of the policies files
    /// put back before `rejudge_before` may have waited under: a wait
    /// longer than their backoff was a receiver's `Retry-After`.
    pub superseded: Option<(Duration, Duration)>,
    /// What the last few reloads let go, newest last (see [`LEFT_KEPT`]).
    pub left: Vec<Arc<Left>>,
}

/// Receivers a reload let go, and the routes that sent files to them.
pub struct Left {
    /// When the reload took effect: a file put back before it may be
    /// waiting on one of these receivers' backoff.
    pub at: SystemTime,
    pub router: Arc<Router>,
    pub names: Vec<String>,
}

/// How many reloads' [`Left`] a snapshot remembers: a file still waiting
/// on a receiver let go more reloads ago waits out its own time.
pub const LEFT_KEPT: usize = 4;

impl Config {
    /// The longest a waiting retry of `name` (`parsed`) may still wait
    /// under this snapshot's policy and receivers.
    pub fn retry_cap(
        &self,
        spool: &Spool,
        name: &OsStr,
        parsed: &SpoolName,
        now: SystemTime,
    ) -> Duration {
        let max = self.policy.max;
        // No file put back before a reload can still be waiting once the
        // longest wait of any policy since has passed: the look at the
        // file is then spared.
        let longest = max.max(self.superseded.map_or(max, |(_, m)| m));
        let lately = |at: SystemTime| at + longest > now;
        if !self.rejudge_before.is_some_and(lately) && !self.left.iter().any(|l| lately(l.at)) {
            return max;
        }
        let path = spool
            .dir(spoolpost_protocol::spool::State::Incoming)
            .join(name);
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return max;
        };
        let put_back = spoolpost_protocol::fsops::ctime(&meta);
        // A wait earned at a receiver a reload let go is that receiver's:
        // the file goes to its new route at once.
        if self.waited_on_one_left(spool, parsed, put_back) {
            return Duration::ZERO;
        }
        match self.rejudge_before {
            Some(before) if put_back < before => {}
            _ => return max,
        }
        // Its wait came from an old policy, or from a receiver.
        let due = meta.modified().unwrap_or(put_back);
        let waits = due.duration_since(put_back).unwrap_or_default();
        let (initial, old_max) = self.superseded.unwrap_or_default();
        let old = crate::rules::backoff::RetryPolicy {
            initial,
            max: old_max,
            ..self.policy
        };
        crate::rules::backoff::rejudged_cap(&self.policy, &old, parsed.attempts, waits)
    }

    /// Whether the file, put back at `put_back`, was routed then to a
    /// receiver a reload since let go.
    fn waited_on_one_left(&self, spool: &Spool, parsed: &SpoolName, put_back: SystemTime) -> bool {
        let mut resolved = None;
        self.left.iter().any(|left| {
            if put_back >= left.at {
                return false;
            }
            // Routing needs the whole original of a long name.
            let name = resolved.get_or_insert_with(|| {
                let mut name = parsed.clone();
                spoolpost_protocol::fullname::resolve(spool.root(), &mut name);
                name
            });
            left.router.route(&name.original).is_some_and(|route| {
                let receiver = &left.router.receivers()[route.receiver].name;
                left.names.contains(receiver)
            })
        })
    }
}

/// Moves on the blocking pool at once. The pool also reads large files
/// and resolves names, and a file's reader holds its thread for the whole
/// upload: moves waiting on a stalled disk must not take every thread.
/// 64 still lets a journal commit many moves' fsyncs together.
pub const MOVES_AT_ONCE: usize = 64;

pub struct Shared {
    pub spool: Spool,
    pub claims: ClaimFolder,
    config: RwLock<Arc<Config>>,
    pub delete_delivered: bool,
    pub events: EventSink,
    pub circuits: Circuits,
    /// Woken when a receiver that a pass had to skip frees a slot, when a
    /// circuit closes, or when a hold is lifted.
    pub wake: Notify,
    /// Set when recovery returned a dead instance's files to `incoming/`.
    pub recovered: AtomicBool,
    pub counts: Counts,
    /// Files whose move out of `sending/` failed, to be tried again.
    pub stranded: crate::sched::stranded::Stranded,
    /// Moves made on the blocking pool (with `fsync`). A job cut short at
    /// the end of the grace period stops waiting for its move, but the
    /// move goes on: the run waits for these before it returns unsent
    /// claims to `incoming/` and ends.
    pub moves: tokio_util::task::TaskTracker,
    /// Room for [`MOVES_AT_ONCE`] of those at a time.
    pub move_room: Arc<tokio::sync::Semaphore>,
    /// The network and the wall clock; fixed for the process (a reload
    /// swaps the HTTP clients inside the snapshot, not this).
    pub exchange: Arc<dyn Exchange>,
}

pub struct ReceiverSlots {
    /// The receiver's configured name, for logs, events and reasons.
    pub name: String,
    /// What the slots and pace are sized from now; a reload that changes
    /// it resizes them in place ([`ReceiverSlots::resize`]).
    sizing: Mutex<Sizing>,
    pub permits: Arc<Semaphore>,
    /// The receiver's adaptive limit, within `permits`.
    pub pace: Arc<crate::sched::pace::Pace>,
    /// A pass skipped this receiver's files for want of room.
    pub skipped: AtomicBool,
}

impl ReceiverSlots {
    /// A receiver's slots and pace, as its name first comes to the sender
    /// (at start, or added by a reload): bounded by its `concurrency` and
    /// `[sender] concurrency` (`global`), its pace read from the spool's
    /// record.
    pub fn new(spool: &Spool, r: &spoolpost_ops::route::Receiver, global: usize) -> Arc<Self> {
        let sizing = Sizing::of(&r.config, global);
        Arc::new(ReceiverSlots {
            name: r.name.clone(),
            sizing: Mutex::new(sizing),
            permits: Arc::new(Semaphore::new(sizing.bound)),
            pace: crate::sched::pace::Pace::load(
                spool,
                &r.name,
                sizing.bound,
                sizing.adaptive,
                sizing.rate_limit,
            ),
            skipped: Default::default(),
        })
    }

    /// Applies a reload's sizing to a receiver it keeps, while files are
    /// in flight to it: the slots grow at once; they shrink at once by
    /// those free and by the others as the requests holding them end (a
    /// request in flight is never cut short). The pace keeps what it
    /// learnt ([`crate::sched::pace::Pace::resize`]). Returns whether
    /// anything changed.
    pub fn resize(&self, spool: &Spool, to: Sizing) -> bool {
        let from = {
            let mut sizing = self.sizing.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *sizing, to)
        };
        if from == to {
            return false;
        }
        resize_permits(&self.permits, from.bound, to.bound);
        self.pace
            .resize(spool, to.bound, to.adaptive, to.rate_limit);
        true
    }
}

/// Makes a semaphore of `from` permits, some perhaps held, one of `to`:
/// more at once, or fewer by those free now and the rest as they are
/// released (taken before any new holder: the semaphore is fair, and never
/// given back).
fn resize_permits(permits: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        permits.add_permits(to - from);
    } else if to < from {
        let shrink = from - to;
        let owed = shrink - permits.forget_permits(shrink);
        if owed > 0 {
            let permits = permits.clone();
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(owed as u32).await {
                    taken.forget();
                }
            });
        }
    }
}

/// What a receiver's slots and pace are sized from: its `concurrency`
/// (within `[sender] concurrency`), `adaptive` and `rate_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    pub bound: usize,
    pub adaptive: bool,
    pub rate_limit: Option<RateLimit>,
}

impl Sizing {
    pub fn of(r: &spoolpost_ops::config::ReceiverConfig, global: usize) -> Sizing {
        Sizing {
            bound: r.concurrency.min(global),
            adaptive: r.adaptive,
            rate_limit: r.rate_limit,
        }
    }
}

#[derive(Default, Debug)]
pub struct Counts {
    pub started: AtomicU64,
    /// Claims another sender made first.
    pub lost: AtomicU64,
    /// Claims a full disk refused (a long name's full-name record): the
    /// file stayed in `incoming/`, which a `--once` run must say (75).
    pub refused_disk_full: AtomicU64,
    /// Files moved to error/ for want of a route, for the one warning
    /// per batch of names (see `Dispatcher::tell_unrouted`).
    pub no_route: AtomicU64,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spool: Spool,
        claims: ClaimFolder,
        snapshot: Config,
        delete_delivered: bool,
        events: EventSink,
        circuits: Circuits,
        exchange: Arc<dyn Exchange>,
    ) -> Shared {
        Shared {
            spool,
            claims,
            config: RwLock::new(Arc::new(snapshot)),
            delete_delivered,
            events,
            circuits,
            wake: Notify::new(),
            recovered: Default::default(),
            counts: Counts::default(),
            stranded: Default::default(),
            moves: tokio_util::task::TaskTracker::new(),
            move_room: Arc::new(tokio::sync::Semaphore::new(MOVES_AT_ONCE)),
            exchange,
        }
    }

    /// The configuration work that starts now runs under.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `snapshot` in place for work that starts from now on; jobs in
    /// flight keep the one they hold.
    pub fn swap(&self, snapshot: Config) {
        debug_assert!(
            snapshot
                .router
                .receivers()
                .iter()
                .map(|r| &r.name)
                .eq(snapshot.receivers.iter().map(|s| &s.name))
        );
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// The wall clock retry waits, claims and judgements are reckoned in.
    pub fn wall_clock(&self) -> SystemTime {
        self.exchange.wall_clock()
    }

    /// Called when a job is done with its rooms (its request answered and
    /// any hold kept): its slots are free again.
    pub fn release_slot(
        &self,
        slots: &ReceiverSlots,
        permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) {
        drop(permits);
        self.room_freed(slots);
    }

    /// Room under a receiver's limit was freed by a job's end: a
    /// dispatcher that passed the receiver over for want of room looks
    /// again.
    pub fn room_freed(&self, slots: &ReceiverSlots) {
        if slots.skipped.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// A hung request stopped counting against its receiver's limit. The
    /// dispatcher is woken whether or not it has marked the receiver
    /// skipped yet: with worker threads, a lapse between its wait for room
    /// running out and its mark would otherwise wake no one, and the
    /// files would wait for a job's end, the very wait this ends. Lapses
    /// are rare; a needless pass costs little.
    pub fn room_lapsed(&self, slots: &ReceiverSlots) {
        slots.skipped.store(false, Ordering::Release);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_shrink_by_the_free_ones_at_once_and_the_held_ones_as_they_end() {
        let permits = Arc::new(Semaphore::new(8));
        let held: Vec<_> = (0..6)
            .map(|_| permits.clone().try_acquire_owned().unwrap())
            .collect();
        resize_permits(&permits, 8, 2);
        assert_eq!(permits.available_permits(), 0, "the two free ones went");
        drop(held);
        tokio::task::yield_now().await;
        assert_eq!(
            permits.available_permits(),
            2,
            "four more went as they ended"
        );
        resize_permits(&permits, 2, 5);
        assert_eq!(permits.available_permits(), 5);
    }
}
