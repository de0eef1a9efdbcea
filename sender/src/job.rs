//! The life of one claimed file: send it, classify the answer, tell the
//! receiver's circuit breaker, and make the one spool transition the outcome
//! calls for, with an event line saying what happened.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use spoolpost_common::circuits::CircuitState as State;
use spoolpost_common::event::{Event, EventKind, rfc3339};
use spoolpost_common::name::SpoolName;
use spoolpost_common::reason::{ErrorClass, ReasonRecord, truncate_body};
use spoolpost_common::route::redact_url;
use spoolpost_common::spool::Claimed;
use tokio::sync::OwnedSemaphorePermit;

use crate::backoff::{Limit, Next};
use crate::dispatch::Shared;
use crate::file::{self, Change, OpenError};
use crate::http::Sent;
use crate::outcome::{Answer, Health, Outcome, Rules, Transport, classify};

/// A file on its way, with the permits that count it as in flight.
pub struct Job {
    pub claimed: Claimed,
    pub receiver: usize,
    pub url: reqwest::Url,
    pub probe: bool,
    pub permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

pub async fn run(shared: Arc<Shared>, job: Job) {
    let Job {
        claimed,
        receiver,
        url,
        probe: _,
        permits,
    } = job;
    let attempt = claimed.name.attempts + 1;
    let sent = match file::open(&claimed.path) {
        Ok((file, snapshot)) => {
            let key = claimed.key().to_string();
            let sent = shared
                .http
                .send(
                    receiver,
                    &url,
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
                    (Answer::Failed(Transport::LocalRead), Some(e.to_string()))
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
    };
    finish(&shared, claimed, receiver, &url, attempt, sent);
    shared.release_slot(receiver, permits);
}

/// Applies the verdict on one attempt: the receiver's circuit, the one
/// spool move, the event line.
fn finish(
    shared: &Shared,
    claimed: Claimed,
    receiver: usize,
    url: &reqwest::Url,
    attempt: u32,
    sent: Sent,
) {
    let now = SystemTime::now();
    let config = &shared.router.receivers()[receiver].config;
    let name = &shared.router.receivers()[receiver].name;
    let rules = Rules {
        extra_retry: &config.retry_statuses,
        accept_early_answer: config.accept_early_answer,
    };
    let outcome = classify(&sent.answer, rules, now);
    let status = match sent.answer {
        Answer::Status { code, .. } => Some(code),
        _ => None,
    };
    let transition = {
        let mut breakers = shared.breakers.lock().unwrap();
        let breaker = &mut breakers[receiver];
        match &outcome {
            Outcome::Delivered
            | Outcome::Rejected {
                receiver: Health::Answered,
                ..
            } => breaker.record_success(Instant::now()),
            Outcome::Rejected {
                receiver: Health::Failed,
                ..
            } => breaker.record_failure(Instant::now(), None),
            Outcome::Retry {
                receiver_failed: true,
                retry_after,
                ..
            } => breaker.record_failure(Instant::now(), *retry_after),
            Outcome::Retry { .. }
            | Outcome::Rejected {
                receiver: Health::Unknown,
                ..
            }
            | Outcome::Vanished { .. } => {
                breaker.cancel_probe();
                None
            }
        }
    };
    if transition.is_some() {
        shared.publish_circuits();
    }
    if transition == Some(State::Closed) {
        // Files held back while the probe was out can go now, not at the
        // next timer.
        shared.wake.notify_one();
    }
    match transition {
        Some(State::Open) => {
            tracing::warn!(receiver = %name, "circuit opened: receiver is failing; its files wait")
        }
        Some(state) => tracing::info!(receiver = %name, state = state.as_str(), "circuit changed"),
        None => {}
    }
    let mut event = Event {
        time: rfc3339(now),
        event: EventKind::Delivered,
        file: claimed.name.display_original(),
        spool_name: String::new(),
        key: Some(claimed.key().to_string()),
        receiver: Some(name.clone()),
        status,
        bytes_read: sent.bytes_read,
        bytes_sent: sent.bytes_sent,
        latency_ms: Some(sent.latency.as_secs_f64() * 1000.0),
        attempt,
        error: sent.error.clone(),
        source: None,
    };
    match outcome {
        Outcome::Delivered => match shared.claims.deliver(claimed, shared.delete_delivered) {
            Ok(path) => {
                event.spool_name = path.as_deref().map(file_name).unwrap_or_default();
                shared.events.emit(&event);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %event.file, "delivered, but the file was removed from the claim folder before it could be moved on");
                shared.events.emit(&event);
            }
            Err(e) => {
                tracing::error!(error = %e, "delivered, but cannot record it; the file will be sent again")
            }
        },
        Outcome::Vanished { why } => {
            tracing::warn!(file = %event.file, reason = %why, "claimed file vanished");
            event.event = EventKind::Vanished;
            event.error = Some(why);
            shared.events.emit(&event);
        }
        Outcome::Rejected { class, why, .. } => {
            let mut record = shared.reason(
                &claimed,
                class,
                why,
                Some(receiver),
                Some(url.as_str()),
                status,
            );
            record_answer(&mut record, attempt, &sent);
            event.error = None;
            shared.reject(
                claimed,
                record,
                EventKind::Rejected,
                Some(receiver),
                Some(event),
            );
        }
        Outcome::Retry {
            reason,
            retry_after,
            ..
        } => {
            let age = now
                .duration_since(
                    std::time::UNIX_EPOCH
                        + Duration::from_secs(claimed.name.first_attempt.unwrap_or(0)),
                )
                .unwrap_or(Duration::ZERO);
            match shared
                .policy
                .next(attempt, age, retry_after, fastrand::f64())
            {
                Next::RetryIn(wait) => {
                    let original = claimed.name.display_original();
                    match shared.claims.retry(claimed, now + wait, reason.clone()) {
                        Ok(path) => {
                            tracing::debug!(file = %original, receiver = %name, reason = %reason, wait = ?wait, "will retry");
                            event.event = EventKind::Retry;
                            event.spool_name = file_name(&path);
                            shared.events.emit(&event);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot put the file back to wait; it stays claimed and returns at shutdown")
                        }
                    }
                }
                Next::GiveUp(limit) => {
                    let why = match limit {
                        Limit::Attempts => {
                            format!("gave up after {attempt} attempts; last: {reason}")
                        }
                        Limit::Age => format!(
                            "gave up after {} since the first attempt; last: {reason}",
                            humantime::format_duration(Duration::from_secs(age.as_secs()))
                        ),
                    };
                    let mut record = shared.reason(
                        &claimed,
                        ErrorClass::Expired,
                        why,
                        Some(receiver),
                        Some(url.as_str()),
                        status,
                    );
                    record_answer(&mut record, attempt, &sent);
                    shared.reject(
                        claimed,
                        record,
                        EventKind::Expired,
                        Some(receiver),
                        Some(event),
                    );
                }
            }
        }
    }
}

impl Shared {
    /// The reason record for a file given up on now.
    pub fn reason(
        &self,
        claimed: &Claimed,
        class: ErrorClass,
        message: String,
        receiver: Option<usize>,
        url: Option<&str>,
        status: Option<u16>,
    ) -> ReasonRecord {
        let name: &SpoolName = &claimed.name;
        ReasonRecord {
            class,
            message,
            file: name.display_original(),
            key: name.key.map(|k| k.to_string()),
            receiver: receiver.map(|r| self.router.receivers()[r].name.clone()),
            url: url.map(redact_url),
            status,
            body: None,
            body_truncated: false,
            error: None,
            attempts: name.attempts,
            first_attempt: name
                .first_attempt
                .map(|t| rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t))),
            last_attempt: rfc3339(SystemTime::now()),
        }
    }

    /// Moves a claimed file to `error/` and says so in an event line.
    pub fn reject(
        &self,
        claimed: Claimed,
        record: ReasonRecord,
        kind: EventKind,
        receiver: Option<usize>,
        event: Option<Event>,
    ) {
        let original = claimed.name.display_original();
        let mut event = event.unwrap_or_else(|| Event {
            time: record.last_attempt.clone(),
            event: kind,
            file: original.clone(),
            spool_name: String::new(),
            key: record.key.clone(),
            receiver: receiver.map(|r| self.router.receivers()[r].name.clone()),
            status: record.status,
            bytes_read: 0,
            bytes_sent: 0,
            latency_ms: None,
            attempt: claimed.name.attempts + 1,
            error: None,
            source: None,
        });
        event.event = kind;
        if event.error.is_none() {
            event.error = Some(record.message.clone());
        }
        match self.claims.reject(claimed, &record) {
            Ok(path) => {
                tracing::warn!(file = %original, class = record.class.as_str(), reason = %record.message, "moved to error/");
                event.spool_name = file_name(&path);
                self.events.emit(&event);
            }
            Err(e) => {
                tracing::error!(file = %original, error = %e, "cannot move the file to error/; it stays claimed and returns at shutdown")
            }
        }
    }
}

/// Puts what the last attempt got into a reason record: its number, the
/// start of the answer's body, and the transport error if there was one.
fn record_answer(record: &mut ReasonRecord, attempt: u32, sent: &Sent) {
    record.attempts = attempt;
    record.error = sent.error.clone();
    let (body, truncated) = truncate_body(&sent.body);
    record.body = (!body.is_empty()).then_some(body);
    record.body_truncated = truncated;
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
