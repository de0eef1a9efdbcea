//! What every job and the scheduler share: the spool and claim folder, the
//! routes, the HTTP clients, the retry policy, the circuits and the slots
//! that count files in flight. A module of its own so the scheduler and the
//! code that settles a file both use it without importing each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spoolpost_common::event::EventSink;
use spoolpost_common::route::Router;
use spoolpost_common::spool::{ClaimFolder, Spool};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::backoff::RetryPolicy;
use crate::circuit::Circuits;
use crate::http::Http;

pub struct Shared {
    pub spool: Spool,
    pub claims: ClaimFolder,
    pub router: Router,
    pub http: Http,
    pub policy: RetryPolicy,
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
}

pub struct ReceiverSlots {
    pub permits: Arc<Semaphore>,
    /// The receiver's adaptive limit, within `permits`.
    pub pace: Arc<crate::pace::Pace>,
    /// A pass skipped this receiver's files for want of room.
    pub skipped: AtomicBool,
}

#[derive(Default, Debug)]
pub struct Counts {
    pub started: AtomicU64,
}

impl Shared {
    /// The receiver's configured name, for logs, events and reasons.
    pub fn receiver_name(&self, receiver: usize) -> &str {
        &self.router.receivers()[receiver].name
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
