//! Stopping cleanly: the first SIGTERM or SIGINT cancels a token that every
//! long-running loop watches, so work in hand is finished, not cut. A second
//! one means "now", as an operator pressing Ctrl-C twice expects.

use tokio_util::sync::CancellationToken;

/// Cancels `stop` on the first SIGTERM or SIGINT. On a second, cancels
/// `now` if the caller can cut its work short cleanly; without one, the
/// signal's default action ends the process at once, which the spool
/// protocol survives as it survives SIGKILL (a file claimed mid-copy is
/// taken over by the next run).
///
/// The listeners are registered when this is called, not when the returned
/// future first runs: a signal that arrives while the caller's first piece
/// of work runs is then a request to stop, not the default action.
pub fn stop_on_signal(
    stop: CancellationToken,
    now: Option<CancellationToken>,
) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listeners = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(term), Ok(int)) = listeners else {
            tracing::warn!("cannot listen for signals; stop with SIGKILL (no file is lost)");
            return;
        };
        wait_for_signals(term, int, stop, now).await;
    }
}

async fn wait_for_signals(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
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
