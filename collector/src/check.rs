//! `collector --check`: the configuration, every source and the spool,
//! checked without creating or moving anything, every problem reported.

use std::path::Path;

use spoolpost_ops::config_load;
use spoolpost_ops::exit::{Failure, USAGE};
use spoolpost_ops::preflight::{self, Report};

use crate::cli::Args;
use crate::collect::Source;

pub fn run(args: &Args) -> Result<(), Failure> {
    let mut report = Report::default();
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(f) if f.code == USAGE => return Err(f),
        Err(f) => {
            report.config(f.message);
            return report.finish("collector");
        }
    };
    report.passed("configuration parses");
    // Only to name the line of a source that came from the file: config
    // sources come first in the plan, then --source ones.
    let loaded = args
        .config
        .as_deref()
        .and_then(|p| config_load::load(p).ok());
    let at = |i: usize, message: String| match &loaded {
        Some(l) if i < l.config.collector.sources.len() => l
            .error_at_key(&["collector", "sources", &i.to_string(), "path"], message)
            .to_string(),
        _ => message,
    };
    let mut sources = 0;
    for (i, source) in plan.section.sources.iter().enumerate() {
        let path = &source.path;
        if let Err(e) = crate::refuse_overlap(&plan.spool, path, source.recursive) {
            report.config(at(i, e));
        } else if let Err(e) = Source::new(source.clone()) {
            report.config(at(i, e));
        } else if !path.is_dir() && plan.once {
            report.config(at(
                i,
                format!(
                    "source {} does not exist or is not a folder",
                    path.display()
                ),
            ));
        } else if !path.is_dir() {
            // The daemon keeps looking for it, as a source an application
            // makes later: the unit's --check must not stop a start that
            // the daemon itself would make (issue 29.3).
            report.warn(at(
                i,
                format!(
                    "source {} does not exist yet; the collector will keep looking for it (a --once run refuses it)",
                    path.display()
                ),
            ));
        } else {
            sources += 1;
        }
    }
    if sources > 0 {
        report.passed(format!("{sources} source(s) exist"));
    }
    preflight::spool(Path::new(&plan.spool), plan.create_spool, &mut report);
    report.finish("collector")
}
