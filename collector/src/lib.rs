//! The collector: moves complete files from producers' folders into the
//! spool's `incoming/`, and nothing else.
//!
//! [`ready`] and [`gate`] are pure rules (when is a file complete, may we add
//! more); [`plan`] turns the command line ([`cli`]) and the configuration
//! into settings, for start-up, [`check`] (`--check`) and [`reload`]
//! (SIGHUP in daemon mode) alike; [`overlap`] keeps the spool's own files
//! out; [`collect`] finds and takes files; [`run`] holds the three modes;
//! the move itself is `spoolpost_protocol::admit`.

pub mod check;
pub mod cli;
pub mod collect;
pub mod gate;
pub mod overlap;
pub mod plan;
pub mod ready;
pub mod reload;
pub mod run;

use spoolpost_ops::exit::Failure;
use spoolpost_ops::notify::Notifier;
use spoolpost_protocol::spool::Spool;
use tokio_util::sync::CancellationToken;

use crate::collect::Collector;
use crate::plan::{Plan, Settings};

/// Runs the collector as the command line asks.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
    if args.generate.is_some() || args.check || args.print_config {
        // Nothing to reload and nothing to finish: the signals' default
        // actions are what a person at a terminal expects.
        spoolpost_ops::signals::release();
    }
    if let Some(what) = args.generate {
        return spoolpost_ops::generate::emit_for::<cli::Args>(
            what,
            &spoolpost_ops::generate::COLLECTOR,
        );
    }
    if args.check {
        return check::run(&args);
    }
    if args.print_config {
        return Plan::from_args(&args)?.print_config();
    }
    let plan = Plan::from_args(&args)?;
    let Settings { sources, gate } = plan.settings()?;
    let spool = Spool::open_root(&plan.spool, plan.create_spool)?;
    let events = spoolpost_ops::progress::sink(
        plan.events.as_deref(),
        &plan.progress,
        spoolpost_ops::progress::Role::Collector,
        &spool,
        || None,
    )?;
    let mut collector = Collector::new(spool, sources, gate, events)?;
    let notifier = Notifier::from_env();
    // The collector's work runs on this thread, and a copy across
    // filesystems blocks it for as long as the file takes; the one worker
    // thread runs the signal listener meanwhile, so a second SIGTERM or
    // SIGINT can end a long copy at once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("collector-signals")
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        // On this (main) thread, which held the signals since main began.
        let mut listeners = spoolpost_ops::signals::Signals::listen();
        let signals = tokio::spawn(spoolpost_ops::signals::stop_on_signal(
            &mut listeners,
            stop.clone(),
            None,
        ));
        let result = match plan.stdin {
            Some(nul) => run::from_stdin(&mut collector, nul, &stop),
            None if plan.once => run::once(&mut collector),
            None => {
                let mut running = reload::Running {
                    spool: plan.spool.clone(),
                    rescan_interval: plan.section.rescan_interval,
                };
                let mut on_hup = |c: &mut Collector| {
                    reload::apply(&args, &mut running, c);
                    running.rescan_interval
                };
                let context = run::Service {
                    notifier: &notifier,
                    on_hup: &mut on_hup,
                    hangups: listeners.hangups(),
                };
                run::serve(&mut collector, plan.section.rescan_interval, &stop, context).await
            }
        };
        if stop.is_cancelled() {
            notifier.stopping();
        }
        signals.abort();
        result
    });
    tracing::info!(files = collector.collected, "collector stopped");
    collector.finish();
    result
}
