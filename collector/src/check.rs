//! `collector --check`: the configuration, every source and the spool,
//! checked without creating or moving anything, every problem reported.

use std::path::Path;

use spoolpost_ops::exit::{Failure, USAGE};
use spoolpost_ops::preflight::{self, Report};

use crate::cli::Args;
use crate::plan::Plan;

pub fn run(args: &Args) -> Result<(), Failure> {
    let mut report = Report::default();
    if let Some(path) = &args.config
        && preflight::config(path, &mut report).is_none_or(|_| !report.problems.is_empty())
    {
        // The plan would stop at the first of the problems listed.
        return report.finish("collector");
    }
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(f) if f.code == USAGE => return Err(f),
        Err(f) => {
            report.config(f.message);
            return report.finish("collector");
        }
    };
    let mut sources = 0;
    for i in 0..plan.section.sources.len() {
        match plan.source(i) {
            Err(e) => report.config(e),
            Ok(usable) if !usable.exists => {
                // The daemon keeps looking for it, as a source an
                // application makes later: the unit's --check must not stop
                // a start that the daemon itself would make.
                report.warn(plan.at_source(
                    i,
                    format!(
                        "source {} does not exist yet; the collector will keep looking for it (a --once run refuses it)",
                        usable.source.config.path.display()
                    ),
                ));
            }
            Ok(_) => sources += 1,
        }
    }
    if sources > 0 {
        report.passed(format!("{sources} source(s) exist"));
    }
    preflight::spool(Path::new(&plan.spool), plan.create_spool, &mut report);
    report.finish("collector")
}
