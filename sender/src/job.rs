//! The life of one claimed file: open it, send it, judge what came back
//! ([`crate::verdict`]), tell the receiver's circuit, and settle the file
//! ([`crate::settle`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spoolpost_common::spool::Claimed;
use tokio::sync::OwnedSemaphorePermit;

use crate::file::{self, Change, OpenError};
use crate::http::Sent;
use crate::outcome::{Answer, Rules};
use crate::settle::{Attempted, settle};
use crate::shared::{Shared, Snapshot};
use crate::verdict::{Attempt, verdict};

/// A file on its way, with the permits that count it as in flight.
pub struct Job {
    pub claimed: Claimed,
    pub receiver: usize,
    pub url: reqwest::Url,
    pub permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// Its room under the receiver's adaptive limit.
    pub pace: crate::pace::Slot,
    /// The configuration it was routed under; it keeps it to its end,
    /// whatever a reload meanwhile puts in place.
    pub config: Arc<Snapshot>,
}

pub async fn run(shared: Arc<Shared>, job: Job) {
    let Job {
        claimed,
        receiver,
        url,
        permits,
        mut pace,
        config: snapshot,
    } = job;
    let sent = attempt(&snapshot, &claimed, receiver, &url).await;
    let limit = pace.answered(crate::pace::signal(&sent.answer, sent.latency));
    let now = SystemTime::now();
    let config = &snapshot.router.receivers()[receiver].config;
    let rules = Rules {
        extra_retry: &config.retry_statuses,
        extra_reject: &config.reject_statuses,
        accept_early_answer: config.accept_early_answer,
    };
    let first =
        std::time::UNIX_EPOCH + Duration::from_secs(claimed.name.first_attempt.unwrap_or(0));
    let at = Attempt {
        number: claimed.name.attempts + 1,
        age: now.duration_since(first).unwrap_or(Duration::ZERO),
        now,
        jitter: fastrand::f64(),
    };
    let verdict = verdict(&sent.answer, rules, &snapshot.policy, at);
    if shared
        .circuits
        .record(receiver, verdict.receiver, crate::circuit::now())
    {
        shared.wake.notify_one();
    }
    let attempted = Attempted {
        receiver: Some(receiver),
        url: Some(&url),
        sent: Some(&sent),
        now,
        limit: Some(limit),
    };
    settle(&shared, claimed, attempted, verdict.fate);
    // A request turned away as overload keeps its room a while: sent again
    // at once, the next would meet the same full receiver.
    tokio::time::sleep(pace.hold()).await;
    drop(pace);
    shared.release_slot(receiver, permits);
}

/// Opens the claimed file and sends it; a file that cannot be opened is an
/// answer of its own, not a request.
async fn attempt(
    config: &Snapshot,
    claimed: &Claimed,
    receiver: usize,
    url: &reqwest::Url,
) -> Sent {
    match file::open(&claimed.path) {
        Ok((file, snapshot)) => {
            let key = claimed.key().to_string();
            let sent = config
                .http
                .send(
                    receiver,
                    url,
                    file,
                    snapshot,
                    &claimed.path,
                    &key,
                    claimed.name.original.as_encoded_bytes(),
                )
                .await;
            // Let the connection go back to the pool before this slot goes
            // to the next file: the pool takes it back in a task of its
            // own, and a file that finds no idle connection opens another.
            tokio::task::yield_now().await;
            sent
        }
        Err(e) => {
            let (answer, error) = match e {
                OpenError::Vanished => (Answer::Changed(Change::Removed), None),
                OpenError::Unsendable(why) => (Answer::Unsendable(why), None),
                OpenError::Io(e) => {
                    tracing::warn!(file = %claimed.path.display(), error = %e, "cannot open claimed file; will retry");
                    (Answer::LocalRead, Some(e.to_string()))
                }
            };
            Sent {
                answer,
                body: Vec::new(),
                error,
                bytes_read: 0,
                bytes_sent: 0,
                latency: Duration::ZERO,
            }
        }
    }
}
