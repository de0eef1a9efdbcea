//! The sender: takes files from a spool's `incoming/`, sends each to the HTTP
//! receiver its name routes to, and moves it on according to the answer.
//!
//! It stands in three wings: [`rules`], pure; [`net`], the I/O around
//! them; [`sched`], the scheduling. The README's development section
//! describes each module; each module's own doc says what it owns.

#[cfg(target_os = "linux")]
pub mod allocator;
pub mod check;
pub mod cli;
#[cfg(test)]
mod layout_tests;
pub mod net;
pub mod plan;
pub mod reload;
pub mod rules;
pub mod run;
pub mod sched;
#[cfg(test)]
mod scheduler_tests;

use spoolpost_ops::exit::Failure;
use tokio_util::sync::CancellationToken;

/// Runs the sender as the command line asks, until done or signalled.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
    if args.generate.is_some() || args.check || args.print_config {
        // Nothing to reload and nothing to finish: the signals' default
        // actions are what a person at a terminal expects.
        spoolpost_ops::signals::release();
    }
    if let Some(what) = args.generate {
        return spoolpost_ops::generate::emit_for::<cli::Args>(
            what,
            &spoolpost_ops::generate::SENDER,
        );
    }
    if args.check {
        return check::run(&args);
    }
    if args.print_config {
        return args.print_config();
    }
    let plan = args.plan()?;
    let runtime = runtime(plan.settings.threads)?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let now = CancellationToken::new();
        // On this (main) thread, which held the signals since main began:
        // from here a SIGTERM that came during start-up stops the run
        // cleanly, and a SIGHUP is a reload once serving.
        let mut listeners = spoolpost_ops::signals::Signals::listen();
        let signals = tokio::spawn(spoolpost_ops::signals::stop_on_signal(
            &mut listeners,
            stop.clone(),
            Some(now.clone()),
        ));
        // With worker threads, the scheduler runs as a task on them, not on
        // this one: a finished job frees its slot and wakes the scheduler on the
        // same worker, with no thread switch. (Run here, inside block_on,
        // every freed slot was a futex wake-up of this thread.)
        let result = match tokio::spawn(run::run(plan, stop, now, listeners.hangups())).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        signals.abort();
        result
    })
}

/// The runtime for `threads` threads. One thread (the default) is a
/// current-thread runtime, everything on this (main) thread: measured, it
/// costs about a third less CPU per file than a multi-thread runtime of
/// two, at much the same files per second (docs/performance.md, "One
/// thread by default"). Large files are still read and compressed, and
/// with `fsync` files moved, on the blocking pool's threads.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().thread_name("sender").build()
}
