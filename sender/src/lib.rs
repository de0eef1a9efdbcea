//! The sender: takes files from a spool's `incoming/`, sends each to the HTTP
//! receiver its name routes to, and moves it on according to the answer.
//!
//! The protocol rules are small pure modules ([`outcome`], [`backoff`],
//! [`breaker`], and [`verdict`], the one function that decides a file's
//! fate) kept apart from the I/O: [`http`] speaks HTTP, [`dispatch`]
//! schedules within each receiver's [`pace`] (the plumbing of the
//! [`adaptive`] limit and the [`rate`] limit), [`job`] carries one file through one attempt, [`settle`] is
//! the one place that acts on a verdict (through `spoolpost_common::spool`,
//! which makes every move), [`circuit`] runs the endpoints' breakers, probes
//! and holds (with [`endpoint`] the pure rule for which endpoint of a
//! receiver with `urls` takes a file), [`exchange`] is the scheduler's one
//! door to the network and the wall clock, [`run`] holds the process's life cycle, and [`file`] opens a
//! claimed file and notices it changing.

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

use spoolpost_common::exit::Failure;
use tokio_util::sync::CancellationToken;

/// Runs the sender as the command line asks, until done or signalled.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
    if args.generate.is_some() || args.check {
        // Nothing to reload and nothing to finish: the signals' default
        // actions are what a person at a terminal expects.
        spoolpost_common::shutdown::release();
    }
    if let Some(what) = args.generate {
        return spoolpost_common::generate::emit_for::<cli::Args>(
            what,
            &spoolpost_common::generate::SENDER,
        );
    }
    if args.check {
        return check::run(&args);
    }
    let plan = args.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.settings.threads)
        .enable_all()
        .thread_name("sender")
        .build()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let now = CancellationToken::new();
        // On this (main) thread, which held the signals since main began:
        // from here a SIGTERM that came during start-up stops the run
        // cleanly, and a SIGHUP is a reload once serving.
        let mut listeners = spoolpost_common::shutdown::Signals::listen();
        let signals = tokio::spawn(spoolpost_common::shutdown::stop_on_signal(
            &mut listeners,
            stop.clone(),
            Some(now.clone()),
        ));
        // The scheduler runs as a task on the worker threads, not on this
        // one: a finished job frees its slot and wakes the scheduler on the
        // same worker, with no thread switch. (Run here, inside block_on,
        // every freed slot was a futex wake-up of this thread.)
        let result = match tokio::spawn(run::run(plan, stop, now, listeners.hup.take())).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        signals.abort();
        result
    })
}
