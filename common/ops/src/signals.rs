//! The one home of signals for all three programs. SIGTERM and SIGINT stop
//! cleanly: the first cancels a token that every long-running loop watches,
//! so work in hand is finished, not cut; a second one means "now", as an
//! operator pressing Ctrl-C twice expects. SIGHUP is a reload, read as
//! [`Hangups`] by the one loop of each program that applies it (the
//! sender's scheduler, the collector's service loop, the reporter's
//! `--watch`); a run that serves nothing lets the signals act as the
//! kernel has them ([`release`]).
//!
//! Signals are held from the first line of `main` ([`hold_from_start`])
//! until [`Signals::listen`] has a listener for each: a SIGHUP or SIGTERM
//! that comes while the program starts (recovering a large dead claim
//! folder can take seconds) waits, queued by the kernel, instead of taking
//! its default action. A SIGHUP's default action ends the process, and
//! systemd counts that death as a clean exit and does not restart the
//! unit; logrotate's `systemctl kill --signal=HUP` can hit a starting one.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The signals a program answers to: stop (SIGTERM, SIGINT), reload
/// (SIGHUP).
const HELD: [nix::sys::signal::Signal; 3] = [
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGINT,
];

fn held() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for sig in HELD {
        set.add(sig);
    }
    set
}

/// Blocks SIGHUP, SIGTERM and SIGINT on the calling thread, and so on
/// every thread it starts later (threads inherit the mask): called first
/// in `main`, before anything slow, so that from then on these signals
/// wait for [`Signals::listen`] instead of ending the process. (Children
/// started with `std::process::Command` begin with an empty mask.)
pub fn hold_from_start() {
    // Nothing can be logged yet, and there is nothing better to do: the
    // signals then keep their default actions, as before.
    let _ = held().thread_block();
}

/// Lets the held signals through with their default actions, for a run
/// that listens for none (`--check`, `--generate`): Ctrl-C must end a
/// `--check --probe` waiting on a receiver at once.
pub fn release() {
    let _ = held().thread_unblock();
}

/// Listeners for the signals held since [`hold_from_start`].
pub struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    /// SIGHUP: a reload for a program that serves, ignored by one that
    /// runs once (there is nothing to reload). Left unread, a SIGHUP does
    /// nothing.
    hup: Option<Signal>,
}

/// The SIGHUPs a program reloads on, taken from [`Signals::hangups`]. A
/// SIGHUP that came while starting is read at the first wait: a reload
/// once running.
pub struct Hangups(Option<Signal>);

impl Hangups {
    /// No reloads: every wait waits for ever (tests, runs without a
    /// listener).
    pub fn none() -> Hangups {
        Hangups(None)
    }

    /// The next SIGHUP; never, when there is no listener.
    pub async fn next(&mut self) {
        if let Some(signal) = &mut self.0
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending().await
    }
}

impl Signals {
    /// Registers a listener for each held signal, then lets them through
    /// on this thread, the one that called [`hold_from_start`] (`main`,
    /// running the runtime's `block_on`): a signal queued during start-up
    /// is delivered now and seen by its listener. Must run inside the
    /// runtime.
    pub fn listen() -> Signals {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(signal = name, error = %e, "cannot listen for a signal");
                None
            }
        };
        let signals = Signals {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            int: listen(SignalKind::interrupt(), "SIGINT"),
            hup: listen(SignalKind::hangup(), "SIGHUP"),
        };
        if signals.hup.is_none() {
            // Never let a SIGHUP end the process: without a listener it
            // is ignored.
            // SAFETY: ignoring installs no handler code.
            let _ = unsafe {
                nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGHUP,
                    nix::sys::signal::SigHandler::SigIgn,
                )
            };
        }
        if let Err(e) = held().thread_unblock() {
            tracing::warn!(error = %e, "cannot let signals through; stop with SIGKILL (no file is lost)");
        }
        signals
    }

    /// The SIGHUP listener, for the program's one reload loop; a second
    /// call has none.
    pub fn hangups(&mut self) -> Hangups {
        Hangups(self.hup.take())
    }
}

/// Cancels `stop` on the first SIGTERM or SIGINT (one that came during
/// start-up included). On a second, cancels
/// `now` if the caller can cut its work short cleanly; without one, the
/// signal's default action ends the process at once, which the spool
/// protocol survives as it survives SIGKILL (a file claimed mid-copy is
/// taken over by the next run).
///
/// The listeners are `signals`' own, registered before the caller's first
/// piece of work runs: a signal that arrives meanwhile is then a request
/// to stop, not the default action.
pub fn stop_on_signal(
    signals: &mut Signals,
    stop: CancellationToken,
    now: Option<CancellationToken>,
) -> impl Future<Output = ()> + Send + 'static {
    let listeners = (signals.term.take(), signals.int.take());
    async move {
        let (Some(term), Some(int)) = listeners else {
            tracing::warn!("cannot listen for signals; stop with SIGKILL (no file is lost)");
            return;
        };
        wait_for_signals(term, int, stop, now).await;
    }
}

async fn wait_for_signals(
    mut term: Signal,
    mut int: Signal,
    stop: CancellationToken,
    now: Option<CancellationToken>,
) {
    let first = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    stop.cancel();
    // Said once the second signal is armed, so what it promises holds.
    let said = || {
        tracing::info!(
            signal = first,
            "finishing work in hand; a second signal stops at once"
        )
    };
    let Some(now) = now else {
        // The caller may be busy in a blocking copy where no task of its
        // own runs: the kernel acts on the next signal itself.
        default_action_from_now_on();
        said();
        return;
    };
    said();
    let again = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!(signal = again, "second signal: cutting work in hand short");
    now.cancel();
}

/// Restores the default action (end the process) for SIGTERM and SIGINT.
fn default_action_from_now_on() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the default disposition installs no handler code.
        if let Err(e) = unsafe { signal(sig, SigHandler::SigDfl) } {
            tracing::warn!(signal = %sig, error = %e, "cannot restore the default action; a second signal is ignored");
        }
    }
}
