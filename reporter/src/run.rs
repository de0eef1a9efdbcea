//! One run of the reporter: load the config, open the spool (never create
//! it), carry out an action or make the report, write it in the chosen form
//! and apply the `--fail-if` checks; `--watch` hands over to [`crate::watch`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use spoolpost_common::circuits;
use spoolpost_common::config::{self, Loaded};
use spoolpost_common::event::{Event, rfc3339};
use spoolpost_common::exit::Failure;
use spoolpost_common::paces;
use spoolpost_common::route::Router;
use spoolpost_common::spool::{Spool, annotate};

use crate::census::{self, Census};
use crate::check::{self, Check};
use crate::cli::{Args, Format};
use crate::events;
use crate::follow::Follow;
use crate::report::{ErrorCount, ReceiverReport, Report};
use crate::{actions, prometheus, table, watch};

/// Exit code when a --fail-if threshold is crossed.
pub const CHECK_FAILED: u8 = 3;

/// What the configuration gives a run. Start-up and SIGHUP both build it
/// here, so a reload refuses exactly what start-up would.
pub struct Setup {
    pub loaded: Option<Loaded>,
    pub router: Option<Router>,
    pub root: PathBuf,
}

pub fn setup(args: &Args) -> Result<Setup, Failure> {
    let loaded = match &args.config {
        Some(path) => Some(config::load(path).map_err(Failure::config)?),
        None => None,
    };
    let router = loaded
        .as_ref()
        .map(Router::from_config)
        .transpose()
        .map_err(Failure::config)?;
    let root = args
        .spool
        .clone()
        .or_else(|| loaded.as_ref().and_then(|l| l.config.spool.clone()))
        .ok_or_else(|| Failure::usage("give --spool DIR (or `spool` in the config file)"))?;
    Ok(Setup {
        loaded,
        router,
        root,
    })
}

pub fn main_with(args: Args) -> Result<(), Failure> {
    if let Some(what) = args.generate {
        return spoolpost_common::generate::emit_for::<Args>(
            what,
            &spoolpost_common::generate::REPORTER,
        );
    }
    if args.check {
        return check::preflight(&args);
    }
    let setup = setup(&args)?;
    // The reporter creates no spool: a mistyped --spool is exit 74, not a
    // new, empty and so "healthy" spool (issue 13.11).
    let spool = Spool::existing(&setup.root)?;
    if let Some(action) = &args.action {
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
    if let Some(secs) = args.watch {
        return watch::run(&args, setup, &spool, Duration::from_secs(secs.max(1)));
    }
    let report = make_report(&spool, setup.router.as_ref(), &args.events)?;
    emit(&args, &report, watch::Look::here(&args).colour)?;
    evaluate(&report, &checks)
}

/// The report in the chosen form.
pub fn render(format: Format, report: &Report, colour: bool) -> String {
    match format {
        Format::Table => table::to_table(report, colour),
        Format::Json => report.to_json(),
        Format::Prometheus => prometheus::to_prometheus(report),
    }
}

/// Writes the report to `--output` or stdout; false when stdout was
/// closed (`| head`), which is not an error but ends a watch.
pub fn emit(args: &Args, report: &Report, colour: bool) -> Result<bool, Failure> {
    let text = render(args.format, report, colour);
    match &args.output {
        Some(path) => write_atomically(path, text.as_bytes())
            .map_err(|e| Failure::io(annotate(e, "cannot write the report to", path)))?,
        None => {
            let mut out = std::io::stdout().lock();
            return Ok(out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_ok());
        }
    }
    Ok(true)
}

pub fn make_report(
    spool: &Spool,
    router: Option<&Router>,
    events: &[PathBuf],
) -> Result<Report, Failure> {
    make_report_with(
        spool,
        router,
        events,
        None,
        SystemTime::now(),
        &mut |_, _| {},
    )
}

/// [`make_report`] as of `now`, also showing every readable event line to
/// `observe` (the live screen's trends). `piped`, when given, is what a
/// watch has read of `-` so far; without it `-` is read to its end.
pub fn make_report_with(
    spool: &Spool,
    router: Option<&Router>,
    events: &[PathBuf],
    piped: Option<&Follow>,
    now: SystemTime,
    observe: &mut dyn FnMut(&Event, SystemTime),
) -> Result<Report, Failure> {
    // A few threads: the census is mostly statx, which scales with cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let census = Census::take(spool, router, now, threads)?;
    let circuits = circuits::read_all(spool);
    let held = circuits::held(spool);
    let mut receivers: BTreeMap<String, ReceiverReport> = BTreeMap::new();
    if let Some(r) = router {
        for rec in r.receivers() {
            receivers.entry(rec.name.clone()).or_default().insecure =
                rec.config.insecure_skip_verify;
        }
    }
    for (name, backlog) in census.receivers {
        receivers.entry(name).or_default().spool = backlog;
    }
    for (name, circuit) in circuits {
        receivers.entry(name).or_default().circuit = Some(circuit);
    }
    for name in held {
        receivers.entry(name).or_default().held = true;
    }
    for (name, pace) in paces::read_all(spool) {
        receivers.entry(name).or_default().pace = Some(pace);
    }
    let events = if events.is_empty() {
        None
    } else {
        let mut inputs: Vec<Box<dyn BufRead>> = Vec::new();
        for path in events {
            if path == Path::new("-") {
                match piped {
                    Some(follow) => inputs.push(Box::new(std::io::Cursor::new(follow.lines()))),
                    None => inputs.push(Box::new(BufReader::new(std::io::stdin()))),
                }
            } else {
                let file = std::fs::File::open(path).map_err(|e| {
                    Failure::usage(format!("cannot read events file {}: {e}", path.display()))
                })?;
                inputs.push(Box::new(BufReader::new(file)));
            }
        }
        Some(events::analyse_with(inputs, now, observe))
    };
    Ok(Report {
        spool: spool.root().display().to_string(),
        time: rfc3339(now),
        states: census.states,
        age_buckets: census::bucket_bounds()
            .iter()
            .map(|b| b.map(|d| d.as_secs()))
            .collect(),
        receivers,
        errors: census
            .errors
            .into_iter()
            .map(|(g, files)| ErrorCount {
                receiver: g.receiver,
                class: g.class,
                status: g.status,
                files,
            })
            .collect(),
        events,
        unexpected: census.unexpected,
    })
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

/// Writes `data` to `path` so readers see the old or the new file, never
/// half of one (node_exporter's textfile collector reads at any moment).
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
