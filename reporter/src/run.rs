//! One run of the reporter: load the config, open the spool (never create
//! it), carry out an action or make the report, write it in the chosen form
//! and apply the `--fail-if` checks; `--watch` hands over to [`crate::watch`].
//! What it is made of lives below: [`crate::setup`], [`crate::gather`],
//! [`crate::output`].

use std::time::Duration;

use spoolpost_ops::exit::Failure;
use spoolpost_protocol::spool::Spool;

use crate::check::{self, Check};
use crate::cli::Args;
use crate::gather::make_report;
use crate::output::{Look, emit};
use crate::report::Report;
use crate::setup::setup;
use crate::{actions, watch};

/// Exit code when a --fail-if threshold is crossed.
pub const CHECK_FAILED: u8 = 3;

/// How often the metrics endpoint's report is made without `--watch`: a
/// scrape interval Prometheus is often given.
pub const ENDPOINT_REFRESH_SECS: u64 = 15;

/// `--watch` and `--metrics-listen` run until stopped; anything else is one run.
fn long_running(args: &Args) -> bool {
    args.watch.is_some() || args.metrics_listen.is_some()
}

pub fn main_with(args: Args) -> Result<(), Failure> {
    if !long_running(&args) {
        // One report or action: nothing to reload, nothing to finish, so
        // the signals act as a person at a terminal expects.
        spoolpost_ops::signals::release();
    }
    if let Some(what) = args.generate {
        return spoolpost_ops::generate::emit_for::<Args>(what, &spoolpost_ops::generate::REPORTER);
    }
    if args.check {
        return check::preflight(&args);
    }
    let setup = setup(&args)?;
    if args.print_config {
        let mut config = setup.loaded.map(|l| l.config).unwrap_or_default();
        config.spool = Some(setup.root);
        return spoolpost_ops::config_dump::print("reporter", &config);
    }
    // The reporter creates no spool: a mistyped --spool is exit 74, not a
    // new, empty and so "healthy" spool.
    let spool = Spool::existing(&setup.root)?;
    if let Some(action) = &args.action {
        if args.metrics_listen.is_some() {
            return Err(Failure::usage(
                "--metrics-listen serves reports, not an action: leave it out of this command",
            ));
        }
        return actions::apply(
            action,
            &spool,
            setup.loaded.as_ref(),
            setup.router.as_ref(),
            &args.events,
        );
    }
    let checks: Vec<Check> = args
        .fail_if
        .iter()
        .map(|c| check::parse(c))
        .collect::<Result<_, _>>()
        .map_err(Failure::usage)?;
    if long_running(&args) {
        let secs = args.watch.unwrap_or(ENDPOINT_REFRESH_SECS);
        return watch::run(&args, setup, &spool, Duration::from_secs(secs.max(1)));
    }
    let report = make_report(&spool, setup.router.as_ref(), &args.events)?;
    emit(&args, &report, Look::here(&args).colour)?;
    evaluate(&report, &checks)
}

/// Applies the checks; the first that holds ends the run with exit 3.
pub fn evaluate(report: &Report, checks: &[Check]) -> Result<(), Failure> {
    match check::first_failure(report, checks) {
        Some(message) => Err(Failure {
            code: CHECK_FAILED,
            message,
        }),
        None => Ok(()),
    }
}
