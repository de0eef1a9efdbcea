//! The receivers' circuits as the sender runs them: one [`Breaker`] per
//! endpoint of each receiver (one endpoint unless it has `urls`), which
//! endpoint takes a file ([`crate::rules::endpoint`] decides), the probe a
//! half-open circuit lets through, and publishing every state change to
//! the claim folder's circuit file.
//!
//! A receiver whose every endpoint is open behaves as one open circuit:
//! its files wait, and the first endpoint whose open period ends takes
//! the probe.
//!
//! The breaker's rules are the pure [`crate::rules::breaker`]; the state type is
//! `spoolpost_protocol::circuits::CircuitState`, the one the reporter reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use spoolpost_protocol::circuits::{self, Circuit, CircuitState};
use spoolpost_protocol::event::rfc3339;

use crate::rules::breaker::{Breaker, BreakerConfig, Decision};
use crate::rules::endpoint::{self, Latency, View};
use crate::rules::judge::CircuitSignal;
use crate::sched::clock::now;
use crate::sched::holds::HOLD_REFRESH;

/// What an opened circuit means for the files. Only a receiver with
/// several endpoints has others to send to: a single URL's files wait
/// (saying they "go to the other endpoints" would be wrong for one URL).
fn opened_means(endpoints: usize) -> &'static str {
    if endpoints > 1 {
        "circuit opened: endpoint is failing; files go to the receiver's other endpoints, or wait"
    } else {
        "circuit opened: the receiver is failing; its files wait"
    }
}

pub struct Circuits {
    state: Mutex<State>,
    /// The claim folder, where this sender's circuit file lives.
    folder: PathBuf,
}

struct State {
    config: BreakerConfig,
    /// By receiver name: a reload that adds, removes or reorders
    /// receivers keeps each one's circuits with its name.
    receivers: BTreeMap<String, Endpoints>,
}

/// One receiver's endpoints, each with its circuit.
struct Endpoints {
    endpoints: Vec<Endpoint>,
    /// Where the next tie among endpoints is broken (see `endpoint::pick`).
    cursor: usize,
}

struct Endpoint {
    /// The redacted URL it is known by (`Receiver::endpoint_labels`).
    label: String,
    breaker: Breaker,
    /// Why it last opened (`auth`), shown to operators.
    reason: Option<&'static str>,
    /// Requests granted to it that have not been answered yet.
    in_flight: usize,
    /// Of those, the ones unanswered past the receiver's lapse time
    /// ([`HungMark`]).
    hung: usize,
    /// How long its answers take.
    latency: Latency,
}

impl Endpoints {
    fn new(labels: &[String], config: BreakerConfig, now: Instant) -> Self {
        let mut e = Endpoints {
            endpoints: Vec::new(),
            cursor: 0,
        };
        e.set(labels, config, now);
        e
    }

    /// Keeps the circuits of the endpoints still in `labels`, adds closed
    /// ones for new ones, drops the rest, in the order of `labels`.
    fn set(&mut self, labels: &[String], config: BreakerConfig, now: Instant) {
        let mut old = std::mem::take(&mut self.endpoints);
        self.endpoints = labels
            .iter()
            .map(|label| match old.iter().position(|e| &e.label == label) {
                Some(at) => old.swap_remove(at),
                None => Endpoint {
                    label: label.clone(),
                    breaker: Breaker::new(config, now),
                    reason: None,
                    in_flight: 0,
                    hung: 0,
                    latency: Latency::default(),
                },
            })
            .collect();
    }

    fn find(&mut self, label: &str) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.label == label)
    }

    /// Views of the endpoints named by `labels` (a job's snapshot's list),
    /// in that order; one unknown here (a reload is under way) shows as
    /// open, so nothing is sent to it before the reload settles.
    fn views(&self, labels: &[String]) -> Vec<View> {
        labels
            .iter()
            .map(|l| match self.endpoints.iter().find(|e| &e.label == l) {
                Some(e) => View {
                    state: e.breaker.state(),
                    in_flight: e.in_flight,
                    hung: e.hung,
                },
                None => View {
                    state: CircuitState::Open,
                    in_flight: 0,
                    hung: 0,
                },
            })
            .collect()
    }

    /// The state a receiver shows as a whole: the best of its endpoints',
    /// since a closed endpoint takes its files.
    fn aggregate(&self, now_sys: SystemTime, now: Instant) -> Circuit {
        let since = |b: &Breaker| rfc3339(now_sys - now.saturating_duration_since(b.since()));
        let one = |e: &Endpoint| Circuit {
            state: e.breaker.state(),
            since: since(&e.breaker),
            reason: e.reason.map(str::to_owned),
            endpoints: BTreeMap::new(),
        };
        if let [e] = self.endpoints.as_slice() {
            return one(e);
        }
        let state = self
            .endpoints
            .iter()
            .map(|e| e.breaker.state())
            .min()
            .unwrap_or(CircuitState::Closed);
        let in_state = self.endpoints.iter().filter(|e| e.breaker.state() == state);
        // Closed since the first endpoint closed; otherwise since the last
        // endpoint left closed.
        let since_at = if state == CircuitState::Closed {
            in_state.map(|e| e.breaker.since()).min()
        } else {
            self.endpoints.iter().map(|e| e.breaker.since()).max()
        };
        let reason = self
            .endpoints
            .iter()
            .all(|e| e.reason == Some("auth"))
            .then(|| "auth".to_owned())
            .filter(|_| state != CircuitState::Closed);
        Circuit {
            state,
            since: rfc3339(now_sys - now.saturating_duration_since(since_at.unwrap_or(now))),
            reason,
            endpoints: self
                .endpoints
                .iter()
                .map(|e| (e.label.clone(), one(e)))
                .collect(),
        }
    }
}

/// May a file for this receiver go now, and to which endpoint (an index
/// into the labels [`Circuits::admit`] was given)?
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Send(usize),
    /// It goes as a half-open endpoint's one probe (every endpoint's
    /// circuit being open); a [`Grant`] gives the probe back if the file
    /// is not sent after all.
    Probe(usize),
    WaitUntil(Instant),
}

impl Circuits {
    /// `receivers`: each receiver's name and endpoint labels.
    pub fn new(
        receivers: Vec<(String, Vec<String>)>,
        config: BreakerConfig,
        folder: PathBuf,
        now: Instant,
    ) -> Self {
        let receivers = receivers
            .into_iter()
            .map(|(name, labels)| (name, Endpoints::new(&labels, config, now)))
            .collect();
        Circuits {
            state: Mutex::new(State { config, receivers }),
            folder,
        }
    }

    /// Whether a file for `receiver` may go now, to which of its endpoints
    /// (`labels`, from the configuration the file is offered under). The
    /// first endpoint whose open period has passed takes it as its probe;
    /// otherwise a closed endpoint is chosen by [`endpoint::pick`]; with
    /// none closed, the file waits for the earliest open period to end. Counts the request in
    /// flight on the endpoint; [`Grant`] takes it back if it does not go.
    pub fn admit(&self, receiver: &str, labels: &[String], now: Instant) -> Admit {
        let mut state = self.state.lock().unwrap();
        // Not known yet (a reload is adding it): it waits for the reload.
        let Some(r) = state.receivers.get_mut(receiver) else {
            return Admit::WaitUntil(now + HOLD_REFRESH);
        };
        // An endpoint whose open period is over takes its probe first,
        // even while others are closed: otherwise a receiver with one
        // healthy endpoint would never look at the others again. A failed
        // probe costs its file nothing but the trip: it fails over.
        let mut earliest: Option<Instant> = None;
        for (at, label) in labels.iter().enumerate() {
            let Some(e) = r.find(label) else { continue };
            if e.breaker.state() == CircuitState::Closed {
                continue;
            }
            match e.breaker.check(now) {
                Decision::Send => {}
                Decision::WaitUntil(t) => earliest = Some(earliest.map_or(t, |w| w.min(t))),
                Decision::Probe => {
                    e.in_flight += 1;
                    drop(state);
                    // Open -> half-open happens inside check(): publish it.
                    self.publish();
                    return Admit::Probe(at);
                }
            }
        }
        let views = r.views(labels);
        if let Some(at) = endpoint::pick(&views, &[], r.cursor) {
            r.cursor = (at + 1) % labels.len();
            if let Some(e) = r.find(&labels[at]) {
                e.in_flight += 1;
            }
            return Admit::Send(at);
        }
        Admit::WaitUntil(earliest.unwrap_or(now + HOLD_REFRESH))
    }

    /// Another closed endpoint for an attempt whose endpoints in `tried`
    /// failed, counted in flight; `None` when there is none left.
    pub fn failover(&self, receiver: &str, labels: &[String], tried: &[usize]) -> Option<usize> {
        let mut state = self.state.lock().unwrap();
        let r = state.receivers.get_mut(receiver)?;
        let at = endpoint::pick(&r.views(labels), tried, r.cursor)?;
        r.find(&labels[at])?.in_flight += 1;
        Some(at)
    }

    /// Tells an endpoint's breaker what an attempt showed, and counts the
    /// request out of flight; `probe` says whether the request was the
    /// half-open circuit's probe. Returns true when its circuit closed:
    /// files held back while the probe was out can go now, not at the next
    /// timer.
    pub fn record(
        &self,
        receiver: &str,
        label: &str,
        signal: CircuitSignal,
        probe: bool,
        now: Instant,
    ) -> bool {
        let endpoints;
        let transition = {
            let mut state = self.state.lock().unwrap();
            // Gone in a reload while the request was out: nothing to tell.
            let Some(r) = state.receivers.get_mut(receiver) else {
                return false;
            };
            endpoints = r.endpoints.len();
            let Some(e) = r.find(label) else {
                return false;
            };
            e.in_flight = e.in_flight.saturating_sub(1);
            let (breaker, reason) = (&mut e.breaker, &mut e.reason);
            let transition = match signal {
                CircuitSignal::Works => breaker.record_success(now),
                CircuitSignal::Fails { retry_after } => breaker.record_failure(now, retry_after),
                CircuitSignal::Refuses => breaker.record_refusal(now),
                // Only the probe's own request gives the probe back: one
                // that was in flight before the circuit opened, ending on
                // a local problem, would otherwise let a second probe out
                // beside the one still waiting for its answer.
                CircuitSignal::Silent => {
                    if probe {
                        breaker.cancel_probe();
                    }
                    None
                }
            };
            match (signal, breaker.state()) {
                (CircuitSignal::Refuses, CircuitState::Open) => *reason = Some("auth"),
                (_, CircuitState::Closed) => *reason = None,
                (CircuitSignal::Fails { .. }, CircuitState::Open) if transition.is_some() => {
                    *reason = None
                }
                _ => {}
            }
            transition
        };
        let Some(state) = transition else {
            return false;
        };
        self.publish();
        let name = receiver;
        match state {
            CircuitState::Open if signal == CircuitSignal::Refuses => {
                tracing::warn!(receiver = %name, endpoint = %label, reason = "auth", "circuit opened: the receiver refuses our credentials (401/407); its files wait for a new secret")
            }
            CircuitState::Open => {
                tracing::warn!(receiver = %name, endpoint = %label, "{}", opened_means(endpoints))
            }
            state => {
                tracing::info!(receiver = %name, endpoint = %label, state = state.as_str(), "circuit changed")
            }
        }
        state == CircuitState::Closed
    }

    /// Takes a reload's breaker settings; each circuit keeps its state,
    /// and the new settings count from its next failure or opening.
    pub fn reconfigure(&self, config: BreakerConfig) {
        let mut state = self.state.lock().unwrap();
        state.config = config;
        for r in state.receivers.values_mut() {
            for e in r.endpoints.iter_mut() {
                e.breaker.reconfigure(config);
            }
        }
    }

    /// Takes a reload's receivers, each with its endpoints: a receiver
    /// kept by name keeps the circuits of the endpoints it keeps, a new
    /// receiver or endpoint starts closed, and what is dropped is
    /// forgotten (a job still answering it tells nobody).
    pub fn set_receivers(&self, receivers: &[(String, Vec<String>)], now: Instant) {
        {
            let mut state = self.state.lock().unwrap();
            let config = state.config;
            let mut old = std::mem::take(&mut state.receivers);
            state.receivers = receivers
                .iter()
                .map(|(name, labels)| {
                    let endpoints = match old.remove(name) {
                        Some(mut e) => {
                            e.set(labels, config, now);
                            e
                        }
                        None => Endpoints::new(labels, config, now),
                    };
                    (name.clone(), endpoints)
                })
                .collect();
        }
        self.publish();
    }

    /// Marks a request to `label` of `receiver` as hung until the mark is
    /// dropped: while it is, new files go to the receiver's other
    /// endpoints if one is closed and has none hung.
    pub fn mark_hung<'a>(&'a self, receiver: &'a str, label: &'a str) -> HungMark<'a> {
        let first = self.with_endpoint(receiver, label, |e| {
            e.hung += 1;
            e.hung == 1
        });
        if first == Some(true) {
            tracing::info!(receiver = %receiver, endpoint = %label, "endpoint hangs: a request is unanswered past the lapse time; new files go to the other endpoints");
        }
        HungMark {
            circuits: self,
            receiver,
            label,
        }
    }

    /// Tells an endpoint's latency an answer's time.
    pub fn answered_in(&self, receiver: &str, label: &str, took: std::time::Duration) {
        self.with_endpoint(receiver, label, |e| e.latency.sample(took));
    }

    /// The endpoint's own lapse time, once it has answered.
    pub fn lapse(&self, receiver: &str, label: &str) -> Option<std::time::Duration> {
        self.with_endpoint(receiver, label, |e| e.latency.lapse())
            .flatten()
    }

    /// Whether an endpoint of `receiver` not in `tried` could take a file
    /// now ([`endpoint::another_ready`]).
    pub fn another_ready(&self, receiver: &str, labels: &[String], tried: &[usize]) -> bool {
        let state = self.state.lock().unwrap();
        state
            .receivers
            .get(receiver)
            .is_some_and(|r| endpoint::another_ready(&r.views(labels), tried))
    }

    fn with_endpoint<T>(
        &self,
        receiver: &str,
        label: &str,
        f: impl FnOnce(&mut Endpoint) -> T,
    ) -> Option<T> {
        let mut state = self.state.lock().unwrap();
        state
            .receivers
            .get_mut(receiver)
            .and_then(|r| r.find(label))
            .map(f)
    }

    /// How many endpoints' circuits are not closed, for the service status
    /// line.
    pub fn not_closed(&self) -> usize {
        let state = self.state.lock().unwrap();
        state
            .receivers
            .values()
            .flat_map(|r| &r.endpoints)
            .filter(|e| e.breaker.state() != CircuitState::Closed)
            .count()
    }

    /// Gives back a grant that was not used.
    fn ungrant(&self, receiver: &str, label: &str, probe: bool) {
        let mut state = self.state.lock().unwrap();
        if let Some(e) = state
            .receivers
            .get_mut(receiver)
            .and_then(|r| r.find(label))
        {
            e.in_flight = e.in_flight.saturating_sub(1);
            if probe {
                e.breaker.cancel_probe();
            }
        }
    }

    /// Rewrites this sender's circuit-state file (see
    /// `spoolpost_protocol::circuits`); called on every state change.
    pub fn publish(&self) {
        let now_sys = SystemTime::now();
        let now = now();
        let circuits: circuits::Circuits = {
            let state = self.state.lock().unwrap();
            state
                .receivers
                .iter()
                .map(|(name, r)| (name.clone(), r.aggregate(now_sys, now)))
                .collect()
        };
        if let Err(e) = circuits::write(&self.folder, &circuits) {
            tracing::warn!(error = %e, "cannot publish circuit states");
        }
    }
}

/// A request unanswered past its receiver's lapse time, counted as hung on
/// its endpoint until dropped (answered, cut, or its job ended).
pub struct HungMark<'a> {
    circuits: &'a Circuits,
    receiver: &'a str,
    label: &'a str,
}

impl Drop for HungMark<'_> {
    fn drop(&mut self) {
        self.circuits.with_endpoint(self.receiver, self.label, |e| {
            e.hung = e.hung.saturating_sub(1)
        });
    }
}

/// A request granted to an endpoint that has not gone out yet. Dropped
/// before [`Grant::sent`], it gives the grant back (and the probe, if it
/// was one), so a file that turns out not to go (no room, stopping,
/// claimed by another sender) never leaves a half-open circuit waiting for
/// an answer that will not come, nor an endpoint counted busy.
pub struct Grant<'a> {
    circuits: &'a Circuits,
    receiver: &'a str,
    label: &'a str,
    probe: bool,
    armed: bool,
}

impl<'a> Grant<'a> {
    pub fn new(circuits: &'a Circuits, receiver: &'a str, label: &'a str, probe: bool) -> Self {
        Grant {
            circuits,
            receiver,
            label,
            probe,
            armed: true,
        }
    }

    /// The file went: its attempt's judgement answers the grant.
    pub fn sent(mut self) {
        self.armed = false;
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.circuits.ungrant(self.receiver, self.label, self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_a_receiver_with_other_endpoints_sends_files_there() {
        assert!(!opened_means(1).contains("other endpoints"));
        assert!(opened_means(2).contains("other endpoints"));
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn circuits(folder: &std::path::Path) -> Circuits {
        let config = BreakerConfig {
            failures: 2,
            open_initial: S(5),
            open_max: S(60),
        };
        Circuits::new(vec![("r".into(), l())], config, folder.to_path_buf(), now())
    }

    fn l() -> Vec<String> {
        vec!["http://h/".into()]
    }

    fn fail(c: &Circuits, retry_after: Option<Duration>) {
        c.record(
            "r",
            "http://h/",
            CircuitSignal::Fails { retry_after },
            false,
            now(),
        );
    }

    async fn wait_out(c: &Circuits) {
        let Admit::WaitUntil(at) = c.admit("r", &l(), now()) else {
            panic!("not waiting")
        };
        tokio::time::sleep_until(at.into()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_goes_when_the_open_period_ends_and_comes_back_if_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let c = circuits(dir.path());
        let t0 = now();
        fail(&c, None);
        fail(&c, None);
        assert_eq!(c.admit("r", &l(), now()), Admit::WaitUntil(t0 + S(5)));
        tokio::time::sleep(S(4)).await;
        assert!(matches!(c.admit("r", &l(), now()), Admit::WaitUntil(_)));
        wait_out(&c).await;
        assert_eq!(now() - t0, S(5));
        assert_eq!(c.admit("r", &l(), now()), Admit::Probe(0));
        // One probe at a time.
        let guard = Grant::new(&c, "r", "http://h/", true);
        assert!(matches!(c.admit("r", &l(), now()), Admit::WaitUntil(_)));
        // Not sent after all (no room, stopping, claimed elsewhere): released.
        drop(guard);
        assert_eq!(c.admit("r", &l(), now()), Admit::Probe(0));
        Grant::new(&c, "r", "http://h/", true).sent();
        assert!(matches!(c.admit("r", &l(), now()), Admit::WaitUntil(_)));
        // Its answer closes the circuit and asks for a pass at once.
        assert!(c.record("r", "http://h/", CircuitSignal::Works, true, now()));
        assert_eq!(c.admit("r", &l(), now()), Admit::Send(0));
        let published = std::fs::read_to_string(dir.path().join(circuits::CIRCUITS_FILE)).unwrap();
        assert!(published.contains("closed"), "{published}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_the_circuit_open_that_long_and_a_silent_answer_frees_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let c = circuits(dir.path());
        let t0 = now();
        fail(&c, None);
        fail(&c, Some(S(20)));
        wait_out(&c).await;
        assert_eq!(now() - t0, S(20));
        assert_eq!(c.admit("r", &l(), now()), Admit::Probe(0));
        // The probe's file was a local problem: nothing learnt, probe free.
        assert!(!c.record("r", "http://h/", CircuitSignal::Silent, true, now()));
        assert_eq!(c.admit("r", &l(), now()), Admit::Probe(0));
        // A failed probe reopens for the doubled period.
        let t1 = now();
        fail(&c, None);
        wait_out(&c).await;
        assert_eq!(now() - t1, S(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_sent_before_the_circuit_opened_does_not_give_back_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let c = circuits(dir.path());
        // Three requests out; two fail and open the circuit, one is still
        // in flight.
        for _ in 0..3 {
            assert_eq!(c.admit("r", &l(), now()), Admit::Send(0));
        }
        fail(&c, None);
        fail(&c, None);
        wait_out(&c).await;
        assert_eq!(c.admit("r", &l(), now()), Admit::Probe(0));
        // The old request ends on a local problem (its file changed): the
        // probe is still out, and no second one may go beside it.
        assert!(!c.record("r", "http://h/", CircuitSignal::Silent, false, now()));
        assert!(matches!(c.admit("r", &l(), now()), Admit::WaitUntil(_)));
        // The probe's own answer decides.
        assert!(c.record("r", "http://h/", CircuitSignal::Works, true, now()));
        assert_eq!(c.admit("r", &l(), now()), Admit::Send(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_credential_opens_the_circuit_at_once_with_reason_auth() {
        let dir = tempfile::tempdir().unwrap();
        let c = circuits(dir.path());
        c.record("r", "http://h/", CircuitSignal::Refuses, false, now());
        assert!(matches!(c.admit("r", &l(), now()), Admit::WaitUntil(_)));
        assert_eq!(c.not_closed(), 1);
        let read = || std::fs::read_to_string(dir.path().join(circuits::CIRCUITS_FILE)).unwrap();
        assert!(read().contains(r#""reason": "auth""#), "{}", read());
        wait_out(&c).await;
        assert_eq!(c.admit("r", &l(), now()), Admit::Probe(0));
        // A rotated secret lets the probe through: closed, reason gone.
        assert!(c.record("r", "http://h/", CircuitSignal::Works, true, now()));
        assert!(!read().contains("auth"), "{}", read());
        assert_eq!(c.not_closed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_endpoint_has_its_circuit_and_all_open_is_the_receivers_open_circuit() {
        let dir = tempfile::tempdir().unwrap();
        let two: Vec<String> = vec!["http://a/".into(), "http://b/".into()];
        let config = BreakerConfig {
            failures: 1,
            open_initial: S(5),
            open_max: S(60),
        };
        let c = Circuits::new(
            vec![("r".into(), two.clone())],
            config,
            dir.path().to_path_buf(),
            now(),
        );
        let fails = CircuitSignal::Fails { retry_after: None };
        // Ties are spread: a then b.
        assert_eq!(c.admit("r", &two, now()), Admit::Send(0));
        assert_eq!(c.admit("r", &two, now()), Admit::Send(1));
        // b has one in flight now: a (none) is picked, twice over.
        c.record("r", "http://a/", CircuitSignal::Works, false, now());
        assert_eq!(c.admit("r", &two, now()), Admit::Send(0));
        c.record("r", "http://a/", fails, false, now());
        // a is open: everything goes to b, and a failover finds no other.
        assert_eq!(c.admit("r", &two, now()), Admit::Send(1));
        assert_eq!(c.failover("r", &two, &[1]), None);
        assert_eq!(c.not_closed(), 1);
        // Once a's open period is over, a takes the next file as its probe
        // although b is closed: a healthy b must not hide a's recovery.
        let Admit::WaitUntil(_) = c.admit("r", &["http://a/".to_string()], now()) else {
            panic!("a alone is open")
        };
        let published = std::fs::read_to_string(dir.path().join(circuits::CIRCUITS_FILE)).unwrap();
        let published: circuits::Circuits = serde_json::from_str(&published).unwrap();
        assert_eq!(published["r"].state, CircuitState::Closed);
        assert_eq!(
            published["r"].endpoints["http://a/"].state,
            CircuitState::Open
        );
        assert_eq!(
            published["r"].endpoints["http://b/"].state,
            CircuitState::Closed
        );
        tokio::time::sleep(S(5)).await;
        assert_eq!(c.admit("r", &two, now()), Admit::Probe(0));
        c.record("r", "http://a/", fails, true, now());
        // b fails too: the receiver waits as one open circuit would ...
        c.record("r", "http://b/", fails, false, now());
        let Admit::WaitUntil(at) = c.admit("r", &two, now()) else {
            panic!("not waiting")
        };
        let published = std::fs::read_to_string(dir.path().join(circuits::CIRCUITS_FILE)).unwrap();
        assert!(
            published.starts_with("{\n  \"r\": {\n    \"state\": \"open\""),
            "{published}"
        );
        // ... and the first endpoint out of its open period takes the probe:
        // b, open for 5 s, before a, reopened for twice that.
        tokio::time::sleep_until(at.into()).await;
        assert_eq!(c.admit("r", &two, now()), Admit::Probe(1));
        assert!(c.record("r", "http://b/", CircuitSignal::Works, true, now()));
        assert_eq!(c.admit("r", &two, now()), Admit::Send(1));
        // A reload that drops b and adds d: a keeps its open circuit.
        let next: Vec<String> = vec!["http://a/".into(), "http://d/".into()];
        c.set_receivers(&[("r".to_string(), next.clone())], now());
        assert_eq!(c.admit("r", &next, now()), Admit::Send(1));
        assert_eq!(c.not_closed(), 1);
    }
}
