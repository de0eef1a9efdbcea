//! The life of one claimed file: open it, send it, judge what came back
//! ([`crate::rules::judge`]), tell the endpoint's circuit, and settle the file
//! ([`crate::sched::settle`]).
//!
//! A receiver with several endpoints gets one more chance within the same
//! attempt: when an endpoint fails in a way another may not (a retryable
//! 5xx, 408, 429 or a transport failure), the file goes at once to another
//! endpoint whose circuit is closed, each endpoint at most once per
//! attempt, instead of waiting out the backoff. The attempt is counted
//! once; its event line names the endpoint that answered last and what the
//! others answered before it.

use std::sync::Arc;
use std::time::Duration;

use spoolpost_protocol::spool::Claimed;
use tokio::sync::OwnedSemaphorePermit;

use crate::net::exchange::Request;
use crate::net::file::{self, OpenError};
use crate::net::send::Sent;
use crate::rules::adaptive::Signal;
use crate::rules::change::Change;
use crate::rules::endpoint::answer_deadline;
use crate::rules::judge::{Attempt, judge};
use crate::rules::outcome::{Answer, Rules};
use crate::sched::pace::Flown;
use crate::sched::settle::{Attempted, settle_answered};
use crate::sched::shared::{Config, Shared};

/// A file on its way, with the permits that count it as in flight.
pub struct Job {
    pub claimed: Claimed,
    pub receiver: usize,
    /// The URL of each of the receiver's endpoints, and the one granted.
    pub urls: Arc<[reqwest::Url]>,
    pub endpoint: usize,
    /// Its request to `endpoint` is that endpoint's half-open probe.
    pub probe: bool,
    pub permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// Its room under the receiver's adaptive limit.
    pub pace: crate::sched::pace::Slot,
    /// The configuration it was routed under; it keeps it to its end,
    /// whatever a reload meanwhile puts in place.
    pub config: Arc<Config>,
}

pub async fn run(shared: Arc<Shared>, job: Job) {
    let Job {
        claimed,
        receiver,
        urls,
        endpoint,
        probe,
        permits,
        mut pace,
        config: snapshot,
    } = job;
    let config = &snapshot.router.receivers()[receiver].config;
    let slots = snapshot.receivers[receiver].clone();
    let name = slots.name.as_str();
    let labels = snapshot.router.receivers()[receiver].endpoint_labels();
    let rules = Rules {
        extra_retry: &config.retry_statuses,
        extra_reject: &config.reject_statuses,
        accept_early_answer: config.accept_early_answer,
        create_only: config.s3.is_some(),
    };
    let first =
        std::time::UNIX_EPOCH + Duration::from_secs(claimed.name.first_attempt.unwrap_or(0));
    let mut tried = vec![endpoint];
    let mut failed_over = Vec::new();
    // Cut as lost for its place: it goes back to wait, not to another
    // endpoint, and the controller hears nothing of it.
    let mut cut = false;
    let (sent, judgement, now) = loop {
        let endpoint = *tried.last().expect("one endpoint at least");
        // Only the first endpoint's request can be its probe: a failover
        // goes only to a closed endpoint.
        let probing = probe && tried.len() == 1;
        let request = attempt(&shared, &snapshot, &claimed, receiver, &urls[endpoint]);
        let watch = Watch {
            shared: &shared,
            receiver: name,
            labels,
            tried: &tried,
            pace: &slots.pace,
            probe: probing,
            timeout: config.timeout,
            path: &claimed.path,
        };
        // A probe is never cut as lost, as it is never cut for another
        // endpoint: its answer is how a slow endpoint's latency is learnt.
        let lost_after = || {
            let lapse = lapse(&shared, &slots.pace, name, &labels[endpoint]);
            let size = std::fs::metadata(&claimed.path).map_or(0, |m| m.len());
            answer_deadline(lapse, size, config.timeout).filter(|_| !probing)
        };
        let flown = pace
            .unless_hung(
                watch.run(request),
                || shared.room_lapsed(&slots),
                lost_after,
            )
            .await;
        let sent = match flown {
            Flown::Sent(sent) => sent,
            Flown::Cut(waited) => {
                cut = true;
                Sent::unanswered(
                    format!(
                        "no answer after {waited:?} while requests sent after it were answered; cut to free its place under concurrency"
                    ),
                    waited,
                )
            }
        };
        let now = shared.wall_clock();
        let at = Attempt {
            number: claimed.name.attempts + 1,
            age: now.duration_since(first).unwrap_or(Duration::ZERO),
            now,
            jitter: fastrand::f64(),
            latency: sent.latency,
        };
        let judgement = judge(&sent.answer, rules, &snapshot.policy, at);
        if shared.circuits.record(
            name,
            &labels[endpoint],
            judgement.circuit,
            probing,
            crate::sched::clock::now(),
        ) {
            shared.wake.notify_one();
        }
        let next = if judgement.failover && !cut {
            shared.circuits.failover(name, labels, &tried)
        } else {
            None
        };
        match next {
            Some(next) => {
                let what = failover_note(&labels[endpoint], &sent);
                tracing::info!(receiver = %name, endpoint = %labels[endpoint], answered = %what, next = %labels[next], "trying the receiver's next endpoint");
                failed_over.push(what);
                tried.push(next);
            }
            None => break (sent, judgement, now),
        }
    };
    let limit = pace.answered(if cut { Signal::Neutral } else { judgement.load });
    let endpoint = *tried.last().expect("one endpoint at least");
    let attempted = Attempted {
        receiver: Some(name),
        // An S3 object's own URL, which has the bucket, the suffix and
        // the file's key where the routed one has a marker.
        url: Some(sent.location.as_ref().unwrap_or(&urls[endpoint])),
        endpoint: Some(&labels[endpoint]),
        failed_over: &failed_over,
        sent: Some(&sent),
        now,
        limit: Some(limit),
    };
    settle_answered(&shared, claimed, attempted, judgement.fate).await;
    // A request turned away as overload keeps its room a while: sent again
    // at once, the next would meet the same full receiver.
    let telling = pace.free_after_hold().await;
    shared.release_slot(&slots, permits);
    telling.when_due().await;
}

/// What watches a request for a hang: its endpoint is marked hung once it
/// is unanswered past the receiver's lapse time, and it is cut at its
/// answer deadline if another endpoint can take the file
/// ([`crate::rules::endpoint`] has the rules).
struct Watch<'a> {
    shared: &'a Shared,
    receiver: &'a str,
    labels: &'a [String],
    /// This attempt's endpoints, the watched one last.
    tried: &'a [usize],
    pace: &'a crate::sched::pace::Pace,
    /// The request is a half-open circuit's probe: never cut.
    probe: bool,
    /// The receiver's request timeout.
    timeout: Duration,
    path: &'a std::path::Path,
}

impl Watch<'_> {
    async fn run(self, request: impl std::future::Future<Output = Sent>) -> Sent {
        // With one endpoint there is nowhere else to send: no timer.
        if self.labels.len() < 2 {
            return request.await;
        }
        tokio::pin!(request);
        let started = crate::sched::clock::now();
        let endpoint = *self.tried.last().expect("one endpoint at least");
        let label = &self.labels[endpoint];
        let sent = tokio::select! {
            biased;
            sent = &mut request => Some(sent),
            _ = tokio::time::sleep(self.lapse(label)) => None,
        };
        let sent = match sent {
            Some(sent) => sent,
            None => self.late(request, started, label).await,
        };
        if matches!(sent.answer, Answer::Status { .. }) {
            (self.shared.circuits).answered_in(self.receiver, label, sent.latency);
        }
        sent
    }

    fn lapse(&self, label: &str) -> Duration {
        lapse(self.shared, self.pace, self.receiver, label)
    }

    /// A request unanswered past its lapse time.
    async fn late(
        &self,
        request: std::pin::Pin<&mut impl std::future::Future<Output = Sent>>,
        started: std::time::Instant,
        label: &str,
    ) -> Sent {
        let mut request = request;
        let _hung = self.shared.circuits.mark_hung(self.receiver, label);
        if self.probe {
            return request.await;
        }
        // Only a slow request comes here: its size is looked up now.
        let size = std::fs::metadata(self.path).map_or(0, |m| m.len());
        // The lapse time as it is now: a request sent before any answer
        // was timed waited the initial one, and those since tell better.
        let Some(deadline) = answer_deadline(self.lapse(label), size, self.timeout) else {
            return request.await;
        };
        tokio::select! {
            biased;
            sent = &mut request => return sent,
            _ = tokio::time::sleep_until((started + deadline).into()) => {}
        }
        if !(self.shared.circuits).another_ready(self.receiver, self.labels, self.tried) {
            return request.await;
        }
        tracing::info!(receiver = %self.receiver, endpoint = %label, deadline = ?deadline, "no answer by the answer deadline; the request is cut and the file goes to another endpoint");
        Sent::unanswered(
            format!("no answer within {deadline:?}, the answer deadline; cut for another endpoint"),
            crate::sched::clock::now() - started,
        )
    }
}

/// An endpoint's lapse time as it is now: the receiver's, or the
/// endpoint's own if it answers more slowly.
fn lapse(
    shared: &Shared,
    pace: &crate::sched::pace::Pace,
    receiver: &str,
    label: &str,
) -> Duration {
    let own = shared.circuits.lapse(receiver, label);
    pace.hung_after().max(own.unwrap_or_default())
}

/// What an endpoint that was failed over answered, for the event line:
/// `URL: status 503` or `URL: the transport error`.
fn failover_note(label: &str, sent: &Sent) -> String {
    match (&sent.answer, &sent.error) {
        (Answer::Status { code, .. }, _) => format!("{label}: status {code}"),
        (Answer::CredentialsRefused { code, store_code }, _) => {
            format!("{label}: status {code} {store_code}")
        }
        (_, Some(error)) => format!("{label}: {error}"),
        (answer, None) => format!("{label}: {answer:?}"),
    }
}

/// Opens the claimed file and sends it through the exchange; a file that
/// cannot be opened is an answer of its own, not a request.
async fn attempt(
    shared: &Shared,
    config: &Config,
    claimed: &Claimed,
    receiver: usize,
    url: &reqwest::Url,
) -> Sent {
    match file::open(&claimed.path) {
        Ok((file, snapshot)) => {
            let key = claimed.key().to_string();
            let request = Request {
                http: &config.http,
                receiver,
                url,
                file,
                opened: snapshot,
                path: &claimed.path,
                key: &key,
                original: claimed.name.original.as_encoded_bytes(),
            };
            shared.exchange.send(request).await
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
                location: None,
            }
        }
    }
}
