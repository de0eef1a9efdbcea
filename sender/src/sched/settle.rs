//! Acting on a judgement's fate: the one place that moves a file out of `sending/`
//! (through `spoolpost_protocol::spool`), writes its reason record when it
//! goes to `error/`, and emits the event line saying what happened. A move
//! that fails is tried again later ([`crate::sched::stranded`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spoolpost_ops::redact::redact_url;
use spoolpost_protocol::event::{Event, EventKind, rfc3339};
use spoolpost_protocol::fsops::is_disk_full;
use spoolpost_protocol::reason::{ErrorClass, ReasonRecord, truncate_body};
use spoolpost_protocol::spool::{Claimed, DELIVERED_DIR};

use crate::net::send::Sent;
use crate::rules::judge::Fate;
use crate::sched::shared::Shared;
use crate::sched::stranded::{self, Entry, Move};

/// What is known of the attempt a fate is settled for.
pub struct Attempted<'a> {
    pub receiver: Option<&'a str>,
    pub url: Option<&'a reqwest::Url>,
    /// The endpoint that answered last, by its redacted URL.
    pub endpoint: Option<&'a str>,
    /// What the endpoints tried before it in this attempt answered.
    pub failed_over: &'a [String],
    /// What the request got; `None` when the file was never offered to a
    /// receiver (no route, no valid URL).
    pub sent: Option<&'a Sent>,
    pub now: SystemTime,
    /// The receiver's in-flight limit once this answer was heard.
    pub limit: Option<usize>,
}

impl Attempted<'_> {
    fn status(&self) -> Option<u16> {
        match self.sent.map(|s| &s.answer) {
            Some(crate::rules::outcome::Answer::Status { code, .. })
            | Some(crate::rules::outcome::Answer::CredentialsRefused { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// Settles a fate on this thread: for files judged without a request
/// (no route, no valid URL), which are few.
pub fn settle(shared: &Shared, claimed: Claimed, attempted: Attempted<'_>, fate: Fate) {
    if let Some(settling) = prepare(shared, claimed, attempted, fate) {
        settling.make(shared);
    }
}

/// Settles an answered request's fate. With `fsync` on, the move waits on
/// the disk for a folder's fsync, so it is made on the blocking pool: on
/// the runtime's thread it would hold every other answer meanwhile (with
/// one thread, the whole sender), and the pool lets the fsyncs of many
/// answers run at once, which a journal commits together. Without fsync a
/// rename costs less than the hand-over to another thread would.
pub async fn settle_answered(
    shared: &Arc<Shared>,
    claimed: Claimed,
    attempted: Attempted<'_>,
    fate: Fate,
) {
    let Some(settling) = prepare(shared, claimed, attempted, fate) else {
        return;
    };
    if !shared.spool.fsyncs() {
        settling.make(shared);
        return;
    }
    // A task of its own, tracked by the run: a job cut short at the end of
    // the grace period stops waiting here, but an answered file's move
    // must still be made (waiting for room included), or a delivered file
    // would go back to incoming/ to be sent again.
    let mover = shared.clone();
    let moving = shared.moves.spawn(async move {
        let room = mover
            .move_room
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            settling.make(&mover);
            drop(room);
        })
        .await
    });
    if let Err(e) = moving.await.and_then(|moved| moved) {
        match e.try_into_panic() {
            // The move itself never panics; a panic there is a bug, and is
            // the caller's as it would have been inline.
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => {
                tracing::error!(error = %e, "a file's move on the blocking pool did not run")
            }
        }
    }
}

/// A fate's move, ready to be made.
struct Settling {
    claimed: Claimed,
    to: Move,
    event: Event,
}

impl Settling {
    fn make(self, shared: &Shared) {
        settle_move(shared, self.claimed, self.to, self.event, 0);
    }
}

/// The move a fate asks for and its event line; `None` when there is
/// nothing to move (the file vanished, and its event is written here).
fn prepare(
    shared: &Shared,
    claimed: Claimed,
    attempted: Attempted<'_>,
    fate: Fate,
) -> Option<Settling> {
    // A file given up on before any request (no route, no valid URL) has
    // had no attempt: its event says what its name and `reporter list` say.
    let attempt = claimed.name.attempts + u32::from(attempted.sent.is_some());
    let receiver = attempted.receiver.map(str::to_owned);
    let sent = attempted.sent;
    let mut event = Event {
        time: rfc3339(attempted.now),
        event: EventKind::Delivered,
        file: claimed.name.display_original(),
        spool_name: String::new(),
        key: Some(claimed.key().to_string()),
        receiver: receiver.clone(),
        status: attempted.status(),
        bytes_read: sent.map_or(0, |s| s.bytes_read),
        bytes_sent: sent.map_or(0, |s| s.bytes_sent),
        latency_ms: sent.map(|s| spoolpost_protocol::event::millis(s.latency)),
        attempt,
        error: sent.and_then(|s| s.error.clone()),
        source: None,
        limit: attempted.limit,
        endpoint: attempted.endpoint.map(str::to_owned),
        failed_over: attempted.failed_over.to_vec(),
    };
    let to = match fate {
        Fate::Deliver => Move::Deliver,
        Fate::Vanished { why } => {
            tracing::warn!(file = %event.file, reason = %why, "claimed file vanished");
            event.event = EventKind::Vanished;
            event.error = Some(why);
            shared.events.emit(&event);
            return None;
        }
        Fate::Retry { at, wait, reason } => {
            tracing::debug!(file = %event.file, receiver = receiver.as_deref().unwrap_or(""), reason = %reason, wait = ?wait, "will retry");
            event.event = EventKind::Retry;
            Move::Retry { at, reason }
        }
        Fate::Reject { class, why } => {
            // The reason says why; a transport error text would only blur it.
            event.error = None;
            let record = reason(&claimed, class, why, &attempted, receiver);
            reject(record, EventKind::Rejected, &mut event)
        }
        Fate::Expire { why } => {
            let record = reason(&claimed, ErrorClass::Expired, why, &attempted, receiver);
            reject(record, EventKind::Expired, &mut event)
        }
    };
    Some(Settling { claimed, to, event })
}

/// Makes the move a fate asks for, after `tries` failed tries. Once it
/// succeeds the event line is written; when it fails the file is stranded
/// (see [`crate::sched::stranded`]) and tried again later, never left to shutdown.
pub fn settle_move(shared: &Shared, claimed: Claimed, to: Move, mut event: Event, tries: u32) {
    let result = match &to {
        Move::Deliver => shared
            .claims
            .deliver(claimed.clone(), shared.delete_delivered),
        Move::Reject { record, .. } => shared.claims.reject(claimed.clone(), record).map(Some),
        Move::Retry { at, reason } => shared
            .claims
            .retry(claimed.clone(), *at, reason.clone())
            .map(Some),
    };
    match result {
        Ok(path) => {
            event.spool_name = path.as_deref().map(file_name).unwrap_or_default();
            if let Move::Reject { record, .. } = &to {
                warn_rejected(shared, &event, record);
            }
            if tries > 0 {
                tracing::info!(file = %event.file, to = to.target(), tries, "moved at last");
            }
            shared.events.emit(&event);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match to {
            Move::Deliver => {
                tracing::warn!(file = %event.file, "delivered, but the file was removed from the claim folder before it could be moved on");
                shared.events.emit(&event);
            }
            _ => {
                tracing::warn!(file = %event.file, to = to.target(), "the file was removed from the claim folder before it could be moved on")
            }
        },
        Err(e) => strand(shared, claimed, to, event, tries + 1, e),
    }
}

/// Keeps a file whose move failed for another try in [`stranded::delay`].
fn strand(
    shared: &Shared,
    claimed: Claimed,
    to: Move,
    event: Event,
    tries: u32,
    error: std::io::Error,
) {
    let mut claimed = claimed;
    if matches!(to, Move::Deliver) && !is_marked_delivered(&claimed) {
        // Before anything else: a shutdown or a crash from here on must
        // not return a delivered file to incoming/.
        match shared.claims.mark_delivered(&claimed) {
            Ok(marked) => claimed = marked,
            Err(e) => {
                tracing::error!(file = %event.file, error = %e, "delivered, cannot move it to done/ nor mark it delivered; if the sender stops before either works it will be sent again")
            }
        }
    }
    let wait = stranded::delay(tries);
    let disk_full = is_disk_full(&error);
    tracing::warn!(file = %event.file, to = to.target(), error = %error, disk_full, tries, wait = ?wait, "cannot move the file; it stays in sending/ and is tried again");
    shared.stranded.add(Entry {
        claimed,
        to,
        event,
        tries,
        due: crate::sched::clock::now() + wait,
        disk_full,
    });
}

fn is_marked_delivered(claimed: &Claimed) -> bool {
    claimed
        .path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == DELIVERED_DIR)
}

/// Tries the moves of the stranded files that are due (every one with
/// `all`, as at the end of a run).
pub fn retry_stranded(shared: &Shared, all: bool) {
    for entry in shared.stranded.take_due(crate::sched::clock::now(), all) {
        settle_move(shared, entry.claimed, entry.to, entry.event, entry.tries);
    }
}

/// The reason record for a file given up on now.
fn reason(
    claimed: &Claimed,
    class: ErrorClass,
    message: String,
    attempted: &Attempted<'_>,
    receiver: Option<String>,
) -> ReasonRecord {
    let name = &claimed.name;
    let mut record = ReasonRecord {
        class,
        message,
        file: name.display_original(),
        key: name.key.map(|k| k.to_string()),
        receiver,
        url: attempted.url.map(|u| redact_url(u.as_str())),
        status: attempted.status(),
        body: None,
        body_truncated: false,
        error: None,
        attempts: name.attempts,
        first_attempt: name
            .first_attempt
            .map(|t| rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t))),
        last_attempt: rfc3339(attempted.now),
    };
    // What the last attempt got: its number, the start of the answer's
    // body, and the transport error if there was one.
    if let Some(sent) = attempted.sent {
        record.attempts = name.attempts + 1;
        record.error = sent.error.clone();
        if !attempted.failed_over.is_empty() {
            // The endpoints tried before the one in `url`, and their answers.
            let before = attempted.failed_over.join("; ");
            record.error = Some(match &record.error {
                Some(e) => format!("{e} (after {before})"),
                None => format!("after {before}"),
            });
        }
        let (body, truncated) = truncate_body(&sent.body);
        record.body = (!body.is_empty()).then_some(body);
        record.body_truncated = truncated;
    }
    record
}

/// The move of a claimed file to `error/`, and its event line's words.
fn reject(record: ReasonRecord, kind: EventKind, event: &mut Event) -> Move {
    event.event = kind;
    if event.error.is_none() {
        event.error = Some(record.message.clone());
    }
    Move::Reject {
        record: Box::new(record),
        kind,
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A rejected file's warning. A missing route is one mistake however many
/// files it catches (thirty unrouted files logged sixty lines): those are
/// only counted here, and the dispatcher says how many in one line per
/// batch of names; each file keeps its event line
/// and its reason record.
fn warn_rejected(shared: &Shared, event: &Event, record: &ReasonRecord) {
    if record.class != ErrorClass::NoRoute {
        tracing::warn!(file = %event.file, class = record.class.as_str(), reason = %record.message, "moved to error/");
        return;
    }
    shared
        .counts
        .no_route
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(file = %event.file, "moved to error/: no route");
}
