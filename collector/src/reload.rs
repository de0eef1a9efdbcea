//! SIGHUP in daemon mode: reopen `--events`, read the configuration again
//! and apply it to the files taken from now on. A configuration that does
//! not validate is refused and the old one keeps running; the spool can
//! only change with a restart, which a warning says.

use std::path::PathBuf;
use std::time::Duration;

use spoolpost_ops::reload;

use crate::cli::Args;
use crate::collect::Collector;
use crate::plan::Plan;

/// What a reload may not change, and what it hands back to the loop.
pub struct Running {
    pub spool: PathBuf,
    pub rescan_interval: Duration,
}

/// Reopens the events file and applies a new configuration if it is
/// valid. Returns whether it was applied.
pub fn apply(args: &Args, running: &mut Running, collector: &mut Collector) -> bool {
    if let Err(e) = collector.reopen_events(args.events.as_deref()) {
        tracing::error!(error = %e, "cannot reopen the events file; writing to the old one");
    }
    let outcome = Plan::from_args(args)
        .and_then(|plan| plan.settings().map(|settings| (plan, settings)))
        .map_err(|f| f.message);
    let outcome = outcome.map(|(plan, settings)| {
        collector.reconfigure(settings.sources, settings.gate);
        running.rescan_interval = plan.section.rescan_interval;
        reload::changed(&[("spool", plan.spool != running.spool)])
    });
    reload::report(collector.events(), "collector", outcome)
}
