//! The collector: moves complete files from producers' folders into the
//! spool's `incoming/`, and nothing else.
//!
//! [`ready`] and [`gate`] are pure rules (when is a file complete, may we add
//! more); [`collect`] finds and takes files; [`run`] holds the three modes;
//! the move itself is `spoolpost_common::admit`.

pub mod cli;
pub mod collect;
pub mod gate;
pub mod ready;
pub mod run;

use spoolpost_common::event::EventSink;
use spoolpost_common::exit::Failure;
use spoolpost_common::spool::Spool;
use tokio_util::sync::CancellationToken;

use crate::collect::{Collector, Source};
use crate::gate::{Gate, Limits};

/// Runs the collector as the command line asks.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
    let plan = args.plan()?;
    let spool = Spool::open(&plan.spool)?;
    let sources = plan
        .section
        .sources
        .iter()
        .cloned()
        .map(Source::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::config)?;
    for s in &sources {
        if !s.config.path.is_dir() {
            tracing::warn!(source = %s.config.path.display(), "source folder is missing; will keep looking for it");
        }
    }
    let gate = Gate::new(Limits {
        max_files: plan.section.max_incoming_files,
        max_bytes: plan.section.max_incoming_bytes.map(|b| b.as_u64()),
        min_free: plan.section.min_free_space.map(|b| b.as_u64()),
    });
    let events = EventSink::open(plan.events.as_deref())?;
    let mut collector = Collector::new(spool, sources, gate, events)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let signals = tokio::spawn(spoolpost_common::shutdown::stop_on_signal(stop.clone()));
        let result = match plan.stdin {
            Some(nul) => run::from_stdin(&mut collector, nul, &stop),
            None if plan.once => run::once(&mut collector),
            None => run::serve(&mut collector, plan.section.rescan_interval, &stop).await,
        };
        signals.abort();
        result
    });
    tracing::info!(files = collector.collected, "collector stopped");
    collector.finish();
    result
}
