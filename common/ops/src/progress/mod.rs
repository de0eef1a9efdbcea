//! A person at a terminal: whether a run shows a live progress line and an
//! end summary on stderr instead of event lines on stdout, and the drawing of
//! both. The counts come from the protocol's event sink (`event.rs`), the one place that
//! hears about every file; with no terminal the sink has no progress attached
//! and pays nothing per file. The wording and counting live in [`tally`].

pub mod tally;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use spoolpost_protocol::event::{Event, EventObserver};
use spoolpost_protocol::spool::Spool;
pub use tally::Role;
use tally::{Moment, Tally};

/// `--progress` / `--no-progress`, shared by the sender and the collector.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ProgressFlags {
    /// Show a live progress line and an end summary on stderr.
    ///
    /// The default when stdout and stderr are terminals and no --events was
    /// given; event lines are then not printed. With --events FILE or
    /// --events - they still go there.
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,

    /// Print event lines to stdout as with a pipe, even on a terminal.
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,
}

impl ProgressFlags {
    fn wanted(&self) -> Option<bool> {
        match (self.progress, self.no_progress) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// Where event lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventsTo {
    Stdout,
    File(PathBuf),
    /// A person reads stdout and sees the progress instead.
    Nowhere,
}

/// The decision, apart from any terminal so that it can be tested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub events: EventsTo,
    pub progress: bool,
}

/// `--events -` forces event lines to stdout; a pipe or a file on stdout
/// changes nothing unless `--progress` asks for the line on stderr too.
pub fn choose(
    events: Option<&Path>,
    wanted: Option<bool>,
    stdout_tty: bool,
    stderr_tty: bool,
) -> Choice {
    let progress = wanted.unwrap_or(stdout_tty && stderr_tty && events.is_none());
    let events = match events {
        Some(p) if p == Path::new("-") => EventsTo::Stdout,
        Some(p) => EventsTo::File(p.to_path_buf()),
        None if progress && stdout_tty => EventsTo::Nowhere,
        None => EventsTo::Stdout,
    };
    Choice { events, progress }
}

/// Whether the terminal can redraw a line in place; `TERM=dumb` cannot, so
/// only the summary is printed there.
fn can_redraw() -> bool {
    std::env::var_os("TERM").is_none_or(|t| t != "dumb") && std::io::stderr().is_terminal()
}

/// The line being drawn, if any: diagnostics written to stderr meanwhile
/// go above it rather than through it (see [`Stderr`]).
static LIVE: std::sync::RwLock<Option<ProgressBar>> = std::sync::RwLock::new(None);

/// stderr for `tracing`: each diagnostic is written with the live line
/// lifted, so it neither breaks the line nor leaves a stale copy behind.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &*LIVE.read().unwrap_or_else(|e| e.into_inner()) {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How often the line is redrawn.
const REDRAW_HZ: u8 = 5;
/// How often open circuits are read from the spool.
const CIRCUITS_EVERY: Duration = Duration::from_secs(1);

/// The live line and the counts behind it.
pub struct Progress {
    role: Role,
    spool: Spool,
    started: Instant,
    found: Option<u64>,
    tally: Mutex<Tally>,
    bar: Option<ProgressBar>,
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl EventObserver for Progress {
    fn record(&self, event: &Event) {
        Progress::record(self, event);
    }

    fn finish(&self) {
        Progress::finish(self);
    }
}

impl Progress {
    /// `found`: how many files the run has to do, when that is known.
    pub fn start(role: Role, spool: &Spool, found: Option<u64>) -> std::sync::Arc<Progress> {
        let bar = can_redraw().then(|| {
            let bar =
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(REDRAW_HZ));
            // Plain text: no colours, so NO_COLOR holds by construction.
            bar.set_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template"));
            *LIVE.write().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            bar
        });
        let progress = std::sync::Arc::new(Progress {
            role,
            spool: spool.clone(),
            started: Instant::now(),
            found,
            tally: Mutex::new(Tally::default()),
            bar,
            ticker: Mutex::new(None),
        });
        if progress.bar.is_some() {
            let (tx, rx) = mpsc::channel();
            let weak = std::sync::Arc::downgrade(&progress);
            let handle = std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || redraw(weak, rx))
                .expect("cannot start the progress thread");
            *progress.ticker.lock().unwrap() = Some((tx, handle));
        }
        progress
    }

    pub fn record(&self, event: &Event) {
        self.tally.lock().unwrap().record(event);
    }

    /// Clears the line and prints the summary.
    pub fn finish(&self) {
        if let Some((tx, handle)) = self.ticker.lock().unwrap().take() {
            drop(tx);
            let _ = handle.join();
        }
        if let Some(bar) = &self.bar {
            *LIVE.write().unwrap_or_else(|e| e.into_inner()) = None;
            bar.finish_and_clear();
        }
        let text = tally::summary(
            self.role,
            &self.tally.lock().unwrap(),
            self.started.elapsed(),
            &self.spool.root().display().to_string(),
        );
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn line(&self, open_circuits: usize) -> String {
        tally::line(
            self.role,
            &self.tally.lock().unwrap(),
            Moment {
                elapsed: self.started.elapsed(),
                found: self.found,
                open_circuits,
            },
        )
    }
}

fn redraw(progress: std::sync::Weak<Progress>, stop: mpsc::Receiver<()>) {
    let mut open = 0;
    let mut circuits_read: Option<Instant> = None;
    loop {
        let Some(p) = progress.upgrade() else { return };
        if p.role == Role::Sender && circuits_read.is_none_or(|t| t.elapsed() >= CIRCUITS_EVERY) {
            open = spoolpost_protocol::circuits::read_all(&p.spool)
                .values()
                .filter(|c| c.state == spoolpost_protocol::circuits::CircuitState::Open)
                .count();
            circuits_read = Some(Instant::now());
        }
        if let Some(bar) = &p.bar {
            bar.set_message(p.line(open));
        }
        drop(p);
        match stop.recv_timeout(Duration::from_millis(1000 / REDRAW_HZ as u64)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Builds the event sink a run needs: event lines where they belong, and a
/// progress line fed by the same sink when a person is watching. `found` is
/// asked only when the progress is shown.
pub fn sink(
    events: Option<&Path>,
    flags: &ProgressFlags,
    role: Role,
    spool: &Spool,
    found: impl FnOnce() -> Option<u64>,
) -> std::io::Result<spoolpost_protocol::event::EventSink> {
    let choice = choose(
        events,
        flags.wanted(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    );
    let sink = match &choice.events {
        EventsTo::Stdout => spoolpost_protocol::event::EventSink::open(None)?,
        EventsTo::File(p) => spoolpost_protocol::event::EventSink::open(Some(p))?,
        EventsTo::Nowhere => spoolpost_protocol::event::EventSink::discard(),
    };
    Ok(if choice.progress {
        sink.with_progress(Progress::start(role, spool, found()))
    } else {
        sink
    })
}

/// Files waiting in `incoming/` now: what a `--once` sender has to do.
pub fn count_incoming(spool: &Spool) -> Option<u64> {
    let dir = std::fs::read_dir(spool.dir(spoolpost_protocol::spool::State::Incoming)).ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
            .count() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(events: Option<&str>, wanted: Option<bool>, out: bool, err: bool) -> Choice {
        choose(events.map(Path::new), wanted, out, err)
    }

    #[test]
    fn a_terminal_gets_progress_instead_of_event_lines() {
        assert_eq!(
            c(None, None, true, true),
            Choice {
                events: EventsTo::Nowhere,
                progress: true
            }
        );
    }

    #[test]
    fn a_pipe_changes_nothing() {
        assert_eq!(
            c(None, None, false, true),
            Choice {
                events: EventsTo::Stdout,
                progress: false
            }
        );
        assert_eq!(
            c(None, None, true, false),
            Choice {
                events: EventsTo::Stdout,
                progress: false
            }
        );
    }

    #[test]
    fn flags_override_the_detection() {
        assert_eq!(
            c(Some("-"), None, true, true),
            Choice {
                events: EventsTo::Stdout,
                progress: false
            }
        );
        assert_eq!(
            c(Some("-"), Some(true), true, true),
            Choice {
                events: EventsTo::Stdout,
                progress: true
            }
        );
        assert_eq!(
            c(None, Some(false), true, true),
            Choice {
                events: EventsTo::Stdout,
                progress: false
            }
        );
        assert_eq!(
            c(None, Some(true), false, false),
            Choice {
                events: EventsTo::Stdout,
                progress: true
            }
        );
        assert_eq!(
            c(Some("/x"), None, true, true),
            Choice {
                events: EventsTo::File("/x".into()),
                progress: false
            }
        );
    }
}
