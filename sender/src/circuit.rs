//! The receivers' circuits as the sender runs them: one [`Breaker`] per
//! receiver, the probe a half-open circuit lets through, publishing every
//! state change to the claim folder's circuit file, and the operators' holds.
//!
//! The breaker's rules are the pure [`crate::breaker`]; the state type is
//! `spoolpost_common::circuits::CircuitState`, the one the reporter reads.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use spoolpost_common::circuits::{self, Circuit, CircuitState};
use spoolpost_common::event::rfc3339;
use spoolpost_common::spool::Spool;

use crate::breaker::{Breaker, BreakerConfig, Decision};
use crate::verdict::Signal;

/// The scheduler's clock: tokio's, so tests drive it with paused time
/// (`tokio::time::pause`); unpaused it is the system's monotonic clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How often the holds are read again.
pub const HOLD_REFRESH: Duration = Duration::from_secs(1);

pub struct Circuits {
    names: Vec<String>,
    /// Each breaker with why it last opened (`auth`), shown to operators.
    breakers: Mutex<Vec<(Breaker, Option<&'static str>)>>,
    /// The claim folder, where this sender's circuit file lives.
    folder: PathBuf,
}

/// May a file for this receiver go now?
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Send,
    /// It goes as the half-open circuit's one probe; a [`ProbeGuard`] gives
    /// the probe back if the file is not sent after all.
    Probe,
    WaitUntil(Instant),
}

impl Circuits {
    pub fn new(names: Vec<String>, config: BreakerConfig, folder: PathBuf, now: Instant) -> Self {
        let breakers = names
            .iter()
            .map(|_| (Breaker::new(config, now), None))
            .collect();
        Circuits {
            names,
            breakers: Mutex::new(breakers),
            folder,
        }
    }

    pub fn admit(&self, receiver: usize, now: Instant) -> Admit {
        let decision = self.breakers.lock().unwrap()[receiver].0.check(now);
        match decision {
            Decision::Send => Admit::Send,
            Decision::WaitUntil(at) => Admit::WaitUntil(at),
            Decision::Probe => {
                // Open -> half-open happens inside check(): publish it.
                self.publish();
                Admit::Probe
            }
        }
    }

    /// Tells the receiver's breaker what an attempt showed. Returns true
    /// when the circuit closed: files held back while the probe was out can
    /// go now, not at the next timer.
    pub fn record(&self, receiver: usize, signal: Signal, now: Instant) -> bool {
        let transition = {
            let mut breakers = self.breakers.lock().unwrap();
            let (breaker, reason) = &mut breakers[receiver];
            let transition = match signal {
                Signal::Works => breaker.record_success(now),
                Signal::Fails { retry_after } => breaker.record_failure(now, retry_after),
                Signal::Refuses => {
                    // Every file would get the same answer: open now,
                    // not after `breaker_failures` more refusals.
                    let mut opened = None;
                    while breaker.state() != CircuitState::Open {
                        opened = breaker.record_failure(now, None);
                    }
                    opened
                }
                Signal::Silent => {
                    breaker.cancel_probe();
                    None
                }
            };
            match (signal, breaker.state()) {
                (Signal::Refuses, CircuitState::Open) => *reason = Some("auth"),
                (_, CircuitState::Closed) => *reason = None,
                (Signal::Fails { .. }, CircuitState::Open) if transition.is_some() => {
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
        let name = &self.names[receiver];
        match state {
            CircuitState::Open if signal == Signal::Refuses => {
                tracing::warn!(receiver = %name, reason = "auth", "circuit opened: the receiver refuses our credentials (401/407); its files wait for a new secret")
            }
            CircuitState::Open => {
                tracing::warn!(receiver = %name, "circuit opened: receiver is failing; its files wait")
            }
            state => tracing::info!(receiver = %name, state = state.as_str(), "circuit changed"),
        }
        state == CircuitState::Closed
    }

    /// Takes a reload's breaker settings; each circuit keeps its state,
    /// and the new settings count from its next failure or opening.
    pub fn reconfigure(&self, config: BreakerConfig) {
        for (breaker, _) in self.breakers.lock().unwrap().iter_mut() {
            breaker.reconfigure(config);
        }
    }

    /// How many circuits are not closed, for the service status line.
    pub fn not_closed(&self) -> usize {
        let breakers = self.breakers.lock().unwrap();
        breakers
            .iter()
            .filter(|(b, _)| b.state() != CircuitState::Closed)
            .count()
    }

    fn cancel_probe(&self, receiver: usize) {
        self.breakers.lock().unwrap()[receiver].0.cancel_probe();
    }

    /// Rewrites this sender's circuit-state file (see
    /// `spoolpost_common::circuits`); called on every state change.
    pub fn publish(&self) {
        let now_sys = SystemTime::now();
        let now = Instant::now();
        let circuits: circuits::Circuits = {
            let breakers = self.breakers.lock().unwrap();
            self.names
                .iter()
                .zip(breakers.iter())
                .map(|(name, (b, reason))| {
                    let since = rfc3339(now_sys - now.saturating_duration_since(b.since()));
                    (
                        name.clone(),
                        Circuit {
                            state: b.state(),
                            since,
                            reason: reason.map(str::to_owned),
                        },
                    )
                })
                .collect()
        };
        if let Err(e) = circuits::write(&self.folder, &circuits) {
            tracing::warn!(error = %e, "cannot publish circuit states");
        }
    }
}

/// A granted probe that has not gone out yet. Dropped before
/// [`ProbeGuard::sent`], it gives the probe back, so a file that turns out
/// not to go (no room, stopping, claimed by another sender) never leaves a
/// half-open circuit waiting for an answer that will not come.
pub struct ProbeGuard<'a> {
    circuits: &'a Circuits,
    receiver: usize,
    armed: bool,
}

impl<'a> ProbeGuard<'a> {
    pub fn new(circuits: &'a Circuits, receiver: usize, probe: bool) -> Self {
        ProbeGuard {
            circuits,
            receiver,
            armed: probe,
        }
    }

    /// The file went: its attempt's verdict answers the probe.
    pub fn sent(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.circuits.cancel_probe(self.receiver);
        }
    }
}

/// Which receivers an operator put on hold, read again at most every
/// [`HOLD_REFRESH`].
pub struct Holds {
    held: Vec<bool>,
    read: Option<Instant>,
}

impl Holds {
    pub fn new(receivers: usize) -> Self {
        Holds {
            held: vec![false; receivers],
            read: None,
        }
    }

    /// Rereads the holds if they are older than [`HOLD_REFRESH`]. Returns
    /// true when a hold was lifted: its files are waiting in `incoming/`.
    pub fn refresh(&mut self, spool: &Spool, names: &[&str], now: Instant) -> bool {
        if self
            .read
            .is_some_and(|t| now.saturating_duration_since(t) < HOLD_REFRESH)
        {
            return false;
        }
        self.read = Some(now);
        let on_hold = circuits::held(spool);
        let mut lifted = false;
        for (i, name) in names.iter().enumerate() {
            let now_held = on_hold.iter().any(|h| h == name);
            if self.held[i] && !now_held {
                tracing::info!(receiver = %name, "hold released");
                lifted = true;
            } else if !self.held[i] && now_held {
                tracing::info!(receiver = %name, "on hold: its files wait");
            }
            self.held[i] = now_held;
        }
        lifted
    }

    pub fn is_held(&self, receiver: usize) -> bool {
        self.held[receiver]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn circuits(folder: &std::path::Path) -> Circuits {
        let config = BreakerConfig {
            failures: 2,
            open_initial: S(5),
            open_max: S(60),
        };
        Circuits::new(vec!["r".into()], config, folder.to_path_buf(), now())
    }

    fn fail(c: &Circuits, retry_after: Option<Duration>) {
        c.record(0, Signal::Fails { retry_after }, now());
    }

    async fn wait_out(c: &Circuits) {
        let Admit::WaitUntil(at) = c.admit(0, now()) else {
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
        assert_eq!(c.admit(0, now()), Admit::WaitUntil(t0 + S(5)));
        tokio::time::sleep(S(4)).await;
        assert!(matches!(c.admit(0, now()), Admit::WaitUntil(_)));
        wait_out(&c).await;
        assert_eq!(now() - t0, S(5));
        assert_eq!(c.admit(0, now()), Admit::Probe);
        // One probe at a time.
        let guard = ProbeGuard::new(&c, 0, true);
        assert!(matches!(c.admit(0, now()), Admit::WaitUntil(_)));
        // Not sent after all (no room, stopping, claimed elsewhere): released.
        drop(guard);
        assert_eq!(c.admit(0, now()), Admit::Probe);
        ProbeGuard::new(&c, 0, true).sent();
        assert!(matches!(c.admit(0, now()), Admit::WaitUntil(_)));
        // Its answer closes the circuit and asks for a pass at once.
        assert!(c.record(0, Signal::Works, now()));
        assert_eq!(c.admit(0, now()), Admit::Send);
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
        assert_eq!(c.admit(0, now()), Admit::Probe);
        // The probe's file was a local problem: nothing learnt, probe free.
        assert!(!c.record(0, Signal::Silent, now()));
        assert_eq!(c.admit(0, now()), Admit::Probe);
        // A failed probe reopens for the doubled period.
        let t1 = now();
        fail(&c, None);
        wait_out(&c).await;
        assert_eq!(now() - t1, S(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_credential_opens_the_circuit_at_once_with_reason_auth() {
        let dir = tempfile::tempdir().unwrap();
        let c = circuits(dir.path());
        c.record(0, Signal::Refuses, now());
        assert!(matches!(c.admit(0, now()), Admit::WaitUntil(_)));
        assert_eq!(c.not_closed(), 1);
        let read = || std::fs::read_to_string(dir.path().join(circuits::CIRCUITS_FILE)).unwrap();
        assert!(read().contains(r#""reason": "auth""#), "{}", read());
        wait_out(&c).await;
        assert_eq!(c.admit(0, now()), Admit::Probe);
        // A rotated secret lets the probe through: closed, reason gone.
        assert!(c.record(0, Signal::Works, now()));
        assert!(!read().contains("auth"), "{}", read());
        assert_eq!(c.not_closed(), 0);
    }
}
