//! The sender: takes files from a spool's `incoming/`, sends each to the HTTP
//! receiver its name routes to, and moves it on according to the answer.
//!
//! The protocol rules are small pure modules ([`outcome`], [`backoff`],
//! [`breaker`]) kept apart from the I/O: [`http`] speaks HTTP, [`dispatch`]
//! schedules, [`job`] carries one file through one attempt, [`run`] holds
//! the process's life cycle, [`file`] opens a claimed file and notices it
//! changing, and `spoolpost_common::spool` makes every move.

pub mod adaptive;
pub mod backoff;
pub mod breaker;
pub mod check;
pub mod cli;
pub mod dispatch;
pub mod file;
pub mod http;
pub mod job;
pub mod outcome;
pub mod probe;
pub mod run;

use spoolpost_common::exit::Failure;
use tokio_util::sync::CancellationToken;

/// Runs the sender as the command line asks, until done or signalled.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
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
        let signals = tokio::spawn(spoolpost_common::shutdown::stop_on_signal(stop.clone()));
        // The scheduler runs as a task on the worker threads, not on this
        // one: a finished job frees its slot and wakes the scheduler on the
        // same worker, with no thread switch. (Run here, inside block_on,
        // every freed slot was a futex wake-up of this thread.)
        let result = match tokio::spawn(run::run(plan, stop)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        signals.abort();
        result
    })
}
