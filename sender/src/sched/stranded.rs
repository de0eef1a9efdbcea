//! Files whose move out of `sending/` failed: a full disk
//! refuses the reason record `error/` needs, a `done/` on another
//! filesystem refuses the rename. Such a file is not left to shutdown: it
//! is kept here with the move it still needs and tried again with backoff
//! ([`delay`]) until the move succeeds, when its event line is written as
//! if it had moved at once. A delivered file is first marked delivered in
//! its claim folder (`spool::ClaimFolder::mark_delivered`), so no
//! shutdown, crash or other sender sends it again.
//!
//! While stranded, a file stays in the claim folder, where the reporter
//! counts it among `sending` files (its age growing); each failed try is a
//! warning with the file, the tries and the next wait. A `--once` run that
//! ends with files still stranded exits 75 when the disk was full (the
//! README's promise), 74 otherwise.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use spoolpost_protocol::event::{Event, EventKind};
use spoolpost_protocol::reason::ReasonRecord;
use spoolpost_protocol::spool::Claimed;

/// The first wait before a failed move is tried again.
pub const FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two tries: space that came back is used
/// within this.
pub const MAX: Duration = Duration::from_secs(10);

/// How long to wait after the `tries`-th failed try (1 for the first).
pub fn delay(tries: u32) -> Duration {
    let doublings = tries.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(MAX)
}

/// The move a stranded file still needs.
#[derive(Clone, Debug)]
pub enum Move {
    /// To `done/` (or deleted); the file is already marked delivered.
    Deliver,
    /// To `error/`, with this reason record, as a rejection or expiry.
    Reject {
        record: Box<ReasonRecord>,
        kind: EventKind,
    },
    /// Back to `incoming/` to wait until `at`.
    Retry { at: SystemTime, reason: String },
}

impl Move {
    pub fn target(&self) -> &'static str {
        match self {
            Move::Deliver => "done/",
            Move::Reject { .. } => "error/",
            Move::Retry { .. } => "incoming/",
        }
    }
}

/// A file waiting for its move.
pub struct Entry {
    pub claimed: Claimed,
    pub to: Move,
    /// The event line to write once it has moved.
    pub event: Event,
    pub tries: u32,
    pub due: Instant,
    /// The last failure was a full disk (or quota).
    pub disk_full: bool,
}

/// The stranded files of this sender.
#[derive(Default)]
pub struct Stranded {
    entries: Mutex<Vec<Entry>>,
    /// Woken when a file is added, so the retrying task reckons its next
    /// due time again.
    pub added: tokio::sync::Notify,
}

impl Stranded {
    pub fn add(&self, entry: Entry) {
        self.entries.lock().unwrap().push(entry);
        self.added.notify_one();
    }

    /// Takes the entries due at `now` (all of them with `all`).
    pub fn take_due(&self, now: Instant, all: bool) -> Vec<Entry> {
        let mut entries = self.entries.lock().unwrap();
        let (due, wait) = entries.drain(..).partition(|e| all || e.due <= now);
        *entries = wait;
        due
    }

    /// When the next entry falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.lock().unwrap().iter().map(|e| e.due).min()
    }

    /// How many files are stranded, and whether any for a full disk.
    pub fn left(&self) -> (usize, bool) {
        let entries = self.entries.lock().unwrap();
        (entries.len(), entries.iter().any(|e| e.disk_full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_a_quarter_second_up_to_ten_seconds() {
        let waits: Vec<u64> = (1..=8).map(|t| delay(t).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(delay(0), FIRST);
        assert_eq!(delay(u32::MAX), MAX);
    }
}
