//! The sender: takes files from a spool's `incoming/`, sends each to the HTTP
//! receiver its name routes to, and moves it on according to the answer.
//!
//! The protocol rules are small pure modules ([`outcome`], [`backoff`],
//! [`breaker`]) kept apart from the I/O: [`http`] speaks HTTP, [`dispatch`]
//! schedules, [`job`] carries one file through one attempt, [`run`] holds
//! the process's life cycle, and `spoolpost_common::spool` makes every move.

pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod dispatch;
pub mod http;
pub mod job;
pub mod outcome;
pub mod run;

use spoolpost_common::exit::Failure;
use tokio_util::sync::CancellationToken;

/// Runs the sender as the command line asks, until done or signalled.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
    let plan = args.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sender")
        .build()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let signals = tokio::spawn(stop_on_signal(stop.clone()));
        let result = run::run(plan, stop).await;
        signals.abort();
        result
    })
}

/// Cancels `stop` on the first SIGTERM or SIGINT.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; stop with SIGKILL (no file is lost)");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
        _ = int.recv() => tracing::info!("SIGINT: finishing in-flight requests"),
    }
    stop.cancel();
}
