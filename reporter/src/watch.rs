//! `--watch`: a report again every SECS seconds. On a terminal that can
//! move its cursor the screen is redrawn in place, like `top`, with the
//! trends (see [`crate::spark`]) on top; anywhere else whole reports follow
//! one another, as a pipe or a file expects. SIGHUP reads the configuration
//! again (a broken one is refused and the old one keeps running); SIGTERM
//! and SIGINT end the watch with exit 0.
//!
//! With `--metrics-listen` each report's Prometheus text is also left for
//! [`crate::endpoint`] to serve; without `--watch` that is all a report is
//! made for, and stdout stays quiet.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spoolpost_ops::exit::Failure;
use spoolpost_ops::reload;
use spoolpost_ops::signals::Signals;
use spoolpost_protocol::event::{EventKind, EventSink, rfc3339};
use spoolpost_protocol::spool::Spool;
use tokio_util::sync::CancellationToken;

use crate::cli::{Args, Format};
use crate::endpoint::{self, Latest};
use crate::follow::Follow;
use crate::gather::make_report_with;
use crate::output::{Look, emit, render};
use crate::setup::Setup;
use crate::spark::Trends;
use crate::{prometheus, table};

/// The lines that fit a `rows` x `cols` terminal: each cut to the width
/// (colour codes kept whole) and, when the text is taller than the
/// terminal, the last row saying how much is hidden, since writing past the
/// bottom would scroll and stack the reports.
pub fn frame(text: &str, rows: usize, cols: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let rows = rows.max(2);
    let shown = if lines.len() > rows {
        rows - 1
    } else {
        lines.len()
    };
    let mut out: Vec<String> = lines[..shown]
        .iter()
        .map(|l| console::truncate_str(l, cols, "…").into_owned())
        .collect();
    if shown < lines.len() {
        let more = format!(
            "… {} more lines (a taller window shows them)",
            lines.len() - shown
        );
        out.push(console::truncate_str(&more, cols, "…").into_owned());
    }
    out
}

/// Draws a frame over the previous one: row by row from the top, clearing
/// each, then everything below, so nothing flickers and nothing scrolls.
fn draw(term: &console::Term, text: &str, rows: usize, cols: usize) -> std::io::Result<()> {
    let lines = frame(text, rows, cols);
    for (i, line) in lines.iter().enumerate() {
        term.move_cursor_to(0, i)?;
        term.clear_line()?;
        term.write_str(line)?;
    }
    // Below a frame as tall as the screen there is nothing to clear, and
    // the cursor cannot go there: it would stay on the last line and clear it.
    if lines.len() < rows {
        term.move_cursor_to(0, lines.len())?;
        term.clear_to_end_of_screen()?;
    }
    term.flush()
}

/// Neither spool I/O nor a bad command line: exit 1.
fn other(e: std::io::Error) -> Failure {
    Failure {
        code: 1,
        message: format!("cannot start the timer: {e}"),
    }
}

enum Wake {
    Refresh,
    Reload,
    Stop,
}

pub fn run(args: &Args, mut setup: Setup, spool: &Spool, every: Duration) -> Result<(), Failure> {
    // Bound before anything else, so a port in use is the first thing said.
    let mut endpoint = args
        .metrics_listen
        .map(|addr| endpoint::bind(addr, args.metrics_allow_remote))
        .transpose()?;
    let latest = Arc::new(Latest::default());
    // `--metrics-listen` alone: the reports are for the endpoint only.
    let serving_only = args.watch.is_none();
    let look = Look::here(args);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(other)?;
    let _context = runtime.enter();
    // On this (main) thread, which held the signals since main began. The
    // stop task runs whenever the loop below waits, which is where a
    // SIGTERM or SIGINT is acted on.
    let mut listeners = Signals::listen();
    let stop = CancellationToken::new();
    let signals = runtime.spawn(spoolpost_ops::signals::stop_on_signal(
        &mut listeners,
        stop.clone(),
        None,
    ));
    let mut hangups = listeners.hangups();
    let screen = (look.redraw && !serving_only).then(console::Term::buffered_stdout);
    let mut notice = String::new();
    // A pipe is read as it flows, by a thread, so the first frame does not
    // wait for the writer to end.
    let piped = args
        .events
        .iter()
        .any(|p| p.as_os_str() == "-")
        .then(|| Follow::start(std::io::stdin()));
    loop {
        let now = SystemTime::now();
        let router = setup.router.as_ref();
        let known = router.map(|r| {
            r.receivers()
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        });
        let mut trends = Trends::new(now, known.clone().unwrap_or_default(), known.is_some());
        let report = make_report_with(
            spool,
            router,
            &args.events,
            piped.as_ref(),
            now,
            &mut |e, t| {
                match e.event {
                    EventKind::Delivered => trends.delivered(
                        e.receiver
                            .clone()
                            .unwrap_or_else(|| spoolpost_protocol::event::NO_ROUTE.into()),
                        t,
                    ),
                    // Collector lines name no receiver: the routes do.
                    EventKind::Collected => trends.collected(
                        router.map(|r| {
                            r.receiver_of(OsStr::new(&e.file))
                                .map_or(spoolpost_protocol::event::NO_ROUTE.into(), |i| {
                                    r.receivers()[i].name.clone()
                                })
                        }),
                        t,
                    ),
                    _ => {}
                }
            },
        )?;
        if args.metrics_listen.is_some() {
            latest.set(prometheus::to_prometheus(&report));
            // Served from the first report on, never an empty page.
            if let Some(e) = endpoint.take() {
                e.start(latest.clone())?;
            }
        }
        let shown = match &screen {
            Some(term) => {
                let (rows, cols) = term.size();
                let (rows, cols) = (usize::from(rows), usize::from(cols));
                let text = match args.format {
                    Format::Table => {
                        let trends = if args.events.is_empty() {
                            String::new()
                        } else {
                            trends.render()
                        };
                        table::to_screen(&report, look.colour, &notice, &trends, Some(rows))
                    }
                    _ => format!("{notice}{}", render(args.format, &report, look.colour)),
                };
                // A terminal that went away ends the watch, as a closed pipe does.
                draw(term, &text, rows, cols).is_ok()
            }
            None if serving_only && args.output.is_none() => true,
            None => emit(args, &report, look.colour)?,
        };
        if !shown {
            return Ok(());
        }
        let wake = runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(every) => Wake::Refresh,
                () = hangups.next() => Wake::Reload,
                _ = stop.cancelled() => Wake::Stop,
            }
        });
        match wake {
            Wake::Refresh => {}
            Wake::Reload => notice = apply_reload(args, &mut setup),
            Wake::Stop => {
                signals.abort();
                return Ok(());
            }
        }
    }
}

/// Reads the configuration again through the same [`crate::setup::setup`] as
/// start-up, so a reload refuses what start-up would. The event files are
/// opened afresh for every report, so a rotated log is followed anyway.
/// Returns the line the live screen shows about it.
fn apply_reload(args: &Args, setup: &mut Setup) -> String {
    let outcome = crate::setup::setup(args).map_err(|f| f.message).map(|new| {
        let restart = reload::changed(&[("spool", new.root != setup.root)]);
        setup.loaded = new.loaded;
        setup.router = new.router;
        restart
    });
    let at = rfc3339(SystemTime::now());
    let line = match &outcome {
        Ok(r) if r.is_empty() => format!("configuration reloaded at {at}\n"),
        Ok(r) => format!("reloaded at {at}; {} needs a restart\n", r.join(", ")),
        Err(e) => format!("reload refused at {at}, the old configuration runs: {e}\n"),
    };
    // The reporter's stdout is the report: the reload line goes to the log only.
    reload::report(&EventSink::discard(), "reporter", outcome);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_fits_the_terminal_and_says_what_it_hides() {
        let text = (0..10)
            .map(|i| format!("line {i} {}", "x".repeat(i * 3)))
            .collect::<Vec<_>>()
            .join("\n");
        let f = frame(&text, 5, 12);
        assert_eq!(f.len(), 5);
        assert!(
            f.iter().all(|l| console::measure_text_width(l) <= 12),
            "{f:?}"
        );
        assert_eq!(f[4], "… 6 more li…");
        assert_eq!(frame("a\nb", 5, 80), vec!["a", "b"]);
    }

    #[test]
    fn cutting_a_coloured_line_keeps_its_codes_whole() {
        let red = console::style("abcdefghij")
            .red()
            .force_styling(true)
            .to_string();
        let f = frame(&red, 3, 5);
        assert_eq!(console::measure_text_width(&f[0]), 5);
        assert!(f[0].ends_with("\x1b[0m"), "{:?}", f[0]);
    }
}
