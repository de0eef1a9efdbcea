//! The reporter: answers "is the backlog growing, how old is the oldest
//! waiting file, and which receiver is failing why" from the spool and the
//! event lines, and carries out operators' requeue and hold actions through
//! the spool protocol.
//!
//! [`census`] reads the spool, [`events`] the event lines, [`check`] holds
//! the `--fail-if` rules and [`render`] the three output forms.

pub mod census;
pub mod check;
pub mod events;
pub mod render;
pub mod unexpected;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use spoolpost_common::circuits;
use spoolpost_common::config;
use spoolpost_common::event::rfc3339;
use spoolpost_common::exit::Failure;
use spoolpost_common::logging::Diagnostics;
use spoolpost_common::name::SpoolName;
use spoolpost_common::reason::ReasonRecord;
use spoolpost_common::route::Router;
use spoolpost_common::spool::{
    Spool, State, annotate, is_data_name, is_reason_name, reason_name, requeue,
};

use crate::census::Census;
use crate::check::{Check, Metric};
use crate::render::{ErrorCount, ReceiverReport, Report};

/// Exit code when a --fail-if threshold is crossed.
pub const CHECK_FAILED: u8 = 3;

/// Reports on a spool: backlog, rates, latencies, errors, circuit states.
///
/// Exit codes: 0 fine; 3 a --fail-if threshold was crossed (the reason is on
/// stderr, one line); 2 bad command line; 74/75 spool I/O; 78 bad config.
#[derive(Debug, Parser)]
#[command(name = "reporter", version, about, long_about, max_term_width = 100)]
pub struct Args {
    /// Spool root folder. Defaults to the config file's `spool`.
    #[arg(long, env = "SPOOLPOST_SPOOL", value_name = "DIR", global = true)]
    pub spool: Option<PathBuf>,

    /// TOML config; its routes break the backlog down by receiver.
    #[arg(
        long,
        short = 'c',
        env = "SPOOLPOST_CONFIG",
        value_name = "FILE",
        global = true
    )]
    pub config: Option<PathBuf>,

    /// Output form: table (people), json (scripts), prometheus (textfile collector).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,

    /// Write the report here, atomically (temporary file + rename), instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Event lines to read (repeatable); `-` reads stdin, as in `sender | reporter --events -`.
    #[arg(long, value_name = "FILE")]
    pub events: Vec<PathBuf>,

    /// Exit 3 with a one-line reason if this holds (repeatable), e.g.
    /// 'backlog_age > 10m', 'errors > 0', 'open_circuits >= 1'.
    ///
    /// Metrics: backlog_age (duration), backlog_files, backlog_bytes, errors,
    /// open_circuits, held_receivers, unexpected (entries no program
    /// handles). Comparisons: > >= < <= ==.
    #[arg(long = "fail-if", value_name = "CHECK")]
    pub fail_if: Vec<String>,

    /// Refresh the table every SECS seconds, in place on a terminal.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,

    #[command(flatten)]
    pub diagnostics: Diagnostics,

    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Prometheus,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Move files from error/ back to incoming/ for another try.
    ///
    /// They keep their idempotency key and start with no attempts. Give --all
    /// or at least one selector; selectors combine (all must match).
    Requeue {
        /// Only files routed to this receiver (needs --config).
        #[arg(long)]
        receiver: Option<String>,
        /// Only files whose last answer had this HTTP status.
        #[arg(long)]
        status: Option<u16>,
        /// Only files of this class: rejected, expired, no_route, unsendable.
        #[arg(long)]
        class: Option<String>,
        /// Only files that went to error/ longer ago than this.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Every file in error/.
        #[arg(long)]
        all: bool,
    },
    /// Hold a receiver's backlog: senders leave its files waiting.
    Hold { receiver: String },
    /// Release a hold.
    Release { receiver: String },
}

pub fn main_with(args: Args) -> Result<(), Failure> {
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
    // The reporter creates no spool: a mistyped --spool is exit 74, not a
    // new, empty and so "healthy" spool (issue 13.11).
    let spool = Spool::existing(&root)?;
    if let Some(Action::Hold { receiver } | Action::Release { receiver }) = &args.action {
        check_hold_name(loaded.as_ref(), receiver)?;
    }
    match &args.action {
        Some(Action::Hold { receiver }) => {
            circuits::hold(&spool, receiver)?;
            eprintln!("reporter: {receiver} is on hold");
            return Ok(());
        }
        Some(Action::Release { receiver }) => {
            circuits::release(&spool, receiver)?;
            eprintln!("reporter: {receiver} is released");
            return Ok(());
        }
        Some(Action::Requeue {
            receiver,
            status,
            class,
            older_than,
            all,
        }) => {
            if !all
                && receiver.is_none()
                && status.is_none()
                && class.is_none()
                && older_than.is_none()
            {
                return Err(Failure::usage(
                    "requeue: give --all or a selector (--receiver, --status, --class, --older-than)",
                ));
            }
            if receiver.is_some() && router.is_none() {
                return Err(Failure::usage(
                    "requeue --receiver needs --config for the routes",
                ));
            }
            let selector = Selector {
                receiver: receiver.clone(),
                status: *status,
                class: class.clone(),
                older_than: *older_than,
            };
            let n = requeue_selected(&spool, router.as_ref(), &selector)?;
            eprintln!("reporter: requeued {n} files");
            return Ok(());
        }
        None => {}
    }
    let checks: Vec<Check> = args
        .fail_if
        .iter()
        .map(|c| check::parse(c))
        .collect::<Result<_, _>>()
        .map_err(Failure::usage)?;
    loop {
        let report = make_report(&spool, router.as_ref(), &args.events)?;
        let text = match args.format {
            Format::Table => render::to_table(
                &report,
                args.output.is_none() && std::io::stdout().is_terminal(),
            ),
            Format::Json => {
                serde_json::to_string_pretty(&report).expect("reports serialize") + "\n"
            }
            Format::Prometheus => render::to_prometheus(&report),
        };
        match &args.output {
            Some(path) => write_atomically(path, text.as_bytes())
                .map_err(|e| Failure::io(annotate(e, "cannot write the report to", path)))?,
            None => {
                let mut out = std::io::stdout().lock();
                if args.watch.is_some() && std::io::stdout().is_terminal() {
                    let _ = write!(out, "\x1b[H\x1b[2J");
                }
                // A closed pipe (| head) is not an error.
                if out
                    .write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        match args.watch {
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.max(1))),
            None => return evaluate(&report, &checks),
        }
    }
}

pub fn make_report(
    spool: &Spool,
    router: Option<&Router>,
    events: &[PathBuf],
) -> Result<Report, Failure> {
    let now = SystemTime::now();
    // A few threads: the census is mostly statx, which scales with cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let census = Census::take(spool, router, now, threads)?;
    let circuits = circuits::read_all(spool);
    let held = circuits::held(spool);
    let mut receivers: BTreeMap<String, ReceiverReport> = BTreeMap::new();
    if let Some(r) = router {
        for rec in r.receivers() {
            receivers.entry(rec.name.clone()).or_default();
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
    let events = if events.is_empty() {
        None
    } else {
        let mut inputs: Vec<Box<dyn BufRead>> = Vec::new();
        for path in events {
            if path == Path::new("-") {
                inputs.push(Box::new(BufReader::new(std::io::stdin())));
            } else {
                let file = std::fs::File::open(path).map_err(|e| {
                    Failure::usage(format!("cannot read events file {}: {e}", path.display()))
                })?;
                inputs.push(Box::new(BufReader::new(file)));
            }
        }
        Some(events::analyse(inputs, now))
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

/// A hold names a receiver: bad input if it cannot be one (exit 2), a
/// configuration problem if the config has no such receiver (exit 78), so
/// a typo does not hold nothing while the operator thinks it holds.
fn check_hold_name(loaded: Option<&config::Loaded>, receiver: &str) -> Result<(), Failure> {
    spoolpost_common::config_check::check_receiver_name(receiver).map_err(Failure::usage)?;
    if let Some(loaded) = loaded
        && !loaded.config.receivers.contains_key(receiver)
    {
        let known: Vec<&str> = loaded.config.receivers.keys().map(String::as_str).collect();
        return Err(Failure::config(loaded.error_at_key(
            &["receivers"],
            format!(
                "no receiver {receiver:?} here (receivers: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )));
    }
    Ok(())
}

/// Applies the checks; the first that holds ends the run with exit 3.
pub fn evaluate(report: &Report, checks: &[Check]) -> Result<(), Failure> {
    let backlog = report.backlog();
    for c in checks {
        let actual = match c.metric {
            Metric::BacklogAge => backlog.oldest_age_seconds.unwrap_or(0.0),
            Metric::BacklogFiles => backlog.files as f64,
            Metric::BacklogBytes => backlog.bytes as f64,
            Metric::Errors => report.states["error"].files as f64,
            Metric::OpenCircuits => report.open_circuits() as f64,
            Metric::HeldReceivers => report.receivers.values().filter(|r| r.held).count() as f64,
            Metric::Unexpected => report.unexpected.entries as f64,
        };
        if c.fails(actual) {
            let shown = if c.metric == Metric::BacklogAge {
                humantime::format_duration(Duration::from_secs(actual as u64)).to_string()
            } else {
                actual.to_string()
            };
            return Err(Failure {
                code: CHECK_FAILED,
                message: format!("check failed: {} (now {shown})", c.text),
            });
        }
    }
    Ok(())
}

struct Selector {
    receiver: Option<String>,
    status: Option<u16>,
    class: Option<String>,
    older_than: Option<Duration>,
}

fn requeue_selected(
    spool: &Spool,
    router: Option<&Router>,
    s: &Selector,
) -> Result<usize, Failure> {
    let error_dir = spool.dir(State::Error);
    let now = SystemTime::now();
    let mut moved = 0;
    for entry in std::fs::read_dir(&error_dir)?.flatten() {
        let name = entry.file_name();
        if !is_data_name(&name) || is_reason_name(&name) {
            continue;
        }
        // Only --status and --class look inside the reason record.
        let reason: Option<ReasonRecord> = (s.status.is_some() || s.class.is_some())
            .then(|| std::fs::read(error_dir.join(reason_name(&name))).ok())
            .flatten()
            .and_then(|t| serde_json::from_slice(&t).ok());
        if let Some(want) = &s.receiver {
            let original = SpoolName::parse(&name).original;
            let r = router.expect("checked by the caller");
            let routed = r
                .receiver_of(&original)
                .map(|i| r.receivers()[i].name.as_str());
            if routed != Some(want.as_str()) {
                continue;
            }
        }
        if s.status.is_some() && reason.as_ref().and_then(|r| r.status) != s.status {
            continue;
        }
        if let Some(class) = &s.class
            && reason.as_ref().map(|r| r.class.as_str()) != Some(class.as_str())
        {
            continue;
        }
        if let Some(min_age) = s.older_than {
            // ctime: when the file was renamed into error/.
            let since = entry.metadata().ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                std::time::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64)
            });
            if since.is_none_or(|t| now.duration_since(t).unwrap_or(Duration::ZERO) < min_age) {
                continue;
            }
        }
        match requeue(spool, &name) {
            Ok(path) => {
                moved += 1;
                println!(
                    "{}",
                    SpoolName::parse(path.file_name().unwrap_or_default()).display_original()
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(moved)
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
