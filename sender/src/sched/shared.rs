//! What every job and the scheduler share: the spool and claim folder, the
//! configuration snapshot a reload swaps (routes, HTTP clients, retry
//! policy), the circuits, the slots that count files in flight, and the
//! [`Exchange`] that sends and tells the time. A module
//! of its own so the scheduler and the code that settles a file both use it
//! without importing each other.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use spoolpost_ops::route::Router;
use spoolpost_protocol::event::EventSink;
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
    pub policy: RetryPolicy,
    /// Set by a reload that changed the backoff: files put back before it
    /// waited under the old policy and are judged again under this one.
    pub rejudge_before: Option<SystemTime>,
}

impl Config {
    /// The longest a waiting retry of `name`, put back after `attempts`
    /// attempts, may still wait under this snapshot's policy.
    pub fn retry_cap(&self, spool: &Spool, name: &OsStr, attempts: u32) -> std::time::Duration {
        let max = self.policy.max;
        let Some(before) = self.rejudge_before else {
            return max;
        };
        let path = spool
            .dir(spoolpost_protocol::spool::State::Incoming)
            .join(name);
        let put_back = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| spoolpost_protocol::fsops::ctime(&m));
        match put_back {
            // Its wait came from the old policy: the new one's backoff
            // for that attempt, from when it was put back, is the most.
            Some(at) if at < before => self.policy.backoff(attempts).min(max),
            _ => max,
        }
    }
}

pub struct Shared {
    pub spool: Spool,
    pub claims: ClaimFolder,
    /// Receiver names, fixed for the process: the per-receiver state
    /// (circuits, slots, pace, holds) is indexed by them.
    pub names: Vec<String>,
    config: RwLock<Arc<Config>>,
    pub delete_delivered: bool,
    pub events: EventSink,
    pub circuits: Circuits,
    pub slots: Vec<ReceiverSlots>,
    /// Woken when a receiver that a pass had to skip frees a slot, when a
    /// circuit closes, or when a hold is lifted.
    pub wake: Notify,
    /// Set when recovery returned a dead instance's files to `incoming/`.
    pub recovered: AtomicBool,
    pub counts: Counts,
    /// Files whose move out of `sending/` failed, to be tried again.
    pub stranded: crate::sched::stranded::Stranded,
    /// The network and the wall clock; fixed for the process (a reload
    /// swaps the HTTP clients inside the snapshot, not this).
    pub exchange: Arc<dyn Exchange>,
}

pub struct ReceiverSlots {
    pub permits: Arc<Semaphore>,
    /// The receiver's adaptive limit, within `permits`.
    pub pace: Arc<crate::sched::pace::Pace>,
    /// A pass skipped this receiver's files for want of room.
    pub skipped: AtomicBool,
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
        slots: Vec<ReceiverSlots>,
        exchange: Arc<dyn Exchange>,
    ) -> Shared {
        Shared {
            spool,
            claims,
            names: snapshot
                .router
                .receivers()
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            config: RwLock::new(Arc::new(snapshot)),
            delete_delivered,
            events,
            circuits,
            slots,
            wake: Notify::new(),
            recovered: Default::default(),
            counts: Counts::default(),
            stranded: Default::default(),
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
    /// flight keep the one they hold. Its receivers must be `names`.
    pub fn swap(&self, snapshot: Config) {
        debug_assert!(
            snapshot
                .router
                .receivers()
                .iter()
                .map(|r| &r.name)
                .eq(&self.names)
        );
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// The wall clock retry waits, claims and judgements are reckoned in.
    pub fn wall_clock(&self) -> SystemTime {
        self.exchange.wall_clock()
    }

    /// The receiver's configured name, for logs, events and reasons.
    pub fn receiver_name(&self, receiver: usize) -> &str {
        &self.names[receiver]
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
