//! Gathering one report: the census of the spool, the circuit, hold and
//! pace records beside it, and the event lines, added up as of one moment.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;
use spoolpost_protocol::circuits;
use spoolpost_protocol::event::{Event, rfc3339};
use spoolpost_protocol::paces;
use spoolpost_protocol::spool::Spool;

use crate::census::{self, Census};
use crate::events;
use crate::follow::Follow;
use crate::report::{ErrorCount, RateReport, ReceiverReport, Report};

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
    // Checked at every report, not only at start: a folder missing is
    // counted as empty, so a spool removed under a --watch or the metrics
    // endpoint would otherwise go on being reported as empty and healthy.
    Spool::existing(spool.root())?;
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
    let buckets = spoolpost_protocol::rates::read_all(spool);
    let configured = |name: &str| {
        router.and_then(|r| {
            (r.receivers().iter())
                .find(|rec| rec.name == name)
                .and_then(|rec| rec.config.rate_limit)
        })
    };
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let names: std::collections::BTreeSet<String> = (buckets.keys().cloned())
        .chain(router.into_iter().flat_map(|r| {
            (r.receivers().iter())
                .filter(|rec| rec.config.rate_limit.is_some())
                .map(|rec| rec.name.clone())
        }))
        .collect();
    for name in names {
        let rate = RateReport::of(configured(&name), buckets.get(&name), nanos);
        receivers.entry(name).or_default().rate = rate;
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
        replays: spoolpost_protocol::replay_progress::read_all(spool),
    })
}
