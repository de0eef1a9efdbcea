//! Stopping cleanly: the first SIGTERM or SIGINT cancels a token that every
//! long-running loop watches, so work in hand is finished, not cut.

use tokio_util::sync::CancellationToken;

/// Cancels `stop` on the first SIGTERM or SIGINT.
pub async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; stop with SIGKILL (no file is lost)");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing work in hand"),
        _ = int.recv() => tracing::info!("SIGINT: finishing work in hand"),
    }
    stop.cancel();
}
