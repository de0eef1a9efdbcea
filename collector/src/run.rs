//! The collector's modes: one pass (`--once`), paths from standard input
//! (`--stdin`), or watching the sources until SIGTERM/SIGINT, reloading on
//! SIGHUP and keeping the service manager told (sd_notify).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use spoolpost_ops::exit::Failure;
use spoolpost_ops::notify::Notifier;
use spoolpost_ops::signals::Hangups;
use spoolpost_ops::watch::{Pacer, Watcher, next_of};
use tokio_util::sync::CancellationToken;

use crate::collect::{Collector, Scan};

/// Rescan interval when inotify is not available.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The least time between two rescans asked for by timers.
const MIN_RESCAN_GAP: Duration = Duration::from_millis(50);

pub fn once(collector: &mut Collector) -> Result<(), Failure> {
    let mut scan = collector.scan(SystemTime::now());
    let mut taken = scan.taken;
    // Files whose times are ahead of the clock are complete only once seen
    // unchanged for their settle time: one more look then, or they would
    // never be taken by a run that has no later scan.
    if let Some(at) = scan.watch_until {
        if let Ok(wait) = at.duration_since(SystemTime::now()) {
            std::thread::sleep(wait);
        }
        scan = collector.scan(SystemTime::now());
        taken += scan.taken;
    }
    tracing::info!(files = taken, not_ready = scan.not_ready, "collected");
    // A file written a moment ago is left for a later run: said, so that
    // `files=0` beside files in the folder does not read as a fault.
    if scan.not_ready > 0 {
        tracing::info!(
            files = scan.not_ready,
            "left at the source, not complete yet by its ready rule (settle, marker); a later run takes them"
        );
    }
    left_for_disk_full(collector)
}

/// A one-shot run that left files at their source because the spool's disk
/// was full failed for now: exit 75 tells cron to run it again later. (The
/// long-running collector just keeps trying: nothing is lost either way.)
fn left_for_disk_full(collector: &Collector) -> Result<(), Failure> {
    if collector.disk_full {
        return Err(Failure {
            code: spoolpost_ops::exit::TEMPORARY,
            message: "the spool's disk is full: files were left at their source; rerun later"
                .into(),
        });
    }
    Ok(())
}

/// Takes the paths read from standard input, newline- or NUL-separated.
///
/// A path inside the spool (`done/`, `error/`, `incoming/`, a live
/// sender's `sending/ID/`, reached directly, relatively, through `..` or
/// a symlinked folder) is refused, as a `--source` there is: taken, it
/// would enter again under a new key that no receiver can dedupe, or be
/// stolen from a sender's claim. The other paths are still taken; the
/// run then exits 78, the code `--source` gets for the same mistake, as
/// the input (like a configuration) must be fixed and a rerun of the same
/// pipe would refuse the same paths again.
pub fn from_stdin(
    collector: &mut Collector,
    nul: bool,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    let mut input = BufReader::new(std::io::stdin().lock());
    let sep = if nul { b'\0' } else { b'\n' };
    let mut line = Vec::new();
    // Folders whose dead claim folders were already taken over this run.
    let mut swept = std::collections::HashSet::new();
    let spool = crate::overlap::resolved(collector.spool.root());
    let mut refused = 0u64;
    loop {
        line.clear();
        if input.read_until(sep, &mut line)? == 0 || stop.is_cancelled() {
            return stdin_outcome(collector, refused);
        }
        if line.last() == Some(&sep) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let path = Path::new(OsStr::from_bytes(&line));
        // Before anything else: not even a dead claim folder inside the
        // spool is swept.
        if crate::overlap::inside_spool(&spool, path) {
            refused += 1;
            tracing::warn!(
                path = %path.display(),
                spool = %collector.spool.root().display(),
                "inside the spool; refused (the spool's own files are never collected)"
            );
            continue;
        }
        let Some(name) = path.file_name() else {
            tracing::warn!(path = %path.display(), "not a file path; skipped");
            continue;
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !swept.contains(&dir) {
            collector.sweep_claims_in(&dir);
            swept.insert(dir);
        }
        if std::fs::symlink_metadata(path).is_err() {
            tracing::warn!(path = %path.display(), "no such file; skipped");
            continue;
        }
        collector.admit(path, name, None);
    }
}

/// The exit of a `--stdin` run: 78 if any path was refused (a rerun of
/// the same input would refuse it again, so it outranks a full disk's
/// 75), else what the disk allowed.
fn stdin_outcome(collector: &Collector, refused: u64) -> Result<(), Failure> {
    if refused == 0 {
        return left_for_disk_full(collector);
    }
    let mut message = format!(
        "{refused} path(s) refused: inside the spool {}; give files from outside it",
        collector.spool.root().display()
    );
    if collector.disk_full {
        message.push_str(" (and the spool's disk was full: some files were left at their source)");
    }
    Err(Failure::config(message))
}

/// What a long-running collector answers to besides files: the service
/// manager, and SIGHUP (which reloads and returns the new rescan interval).
pub struct Service<'a> {
    pub notifier: &'a Notifier,
    pub on_hup: &'a mut dyn FnMut(&mut Collector) -> Duration,
    /// SIGHUP, listened for since start-up.
    pub hangups: Hangups,
}

fn new_watcher() -> Option<Watcher> {
    match Watcher::empty() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling the sources instead");
            None
        }
    }
}

/// Watches the sources and takes files as they become ready, until `stop`.
pub async fn serve(
    collector: &mut Collector,
    rescan_interval: Duration,
    stop: &CancellationToken,
    service: Service<'_>,
) -> Result<(), Failure> {
    let Service {
        notifier,
        on_hup,
        mut hangups,
    } = service;
    let mut watchdog = notifier.watchdog();
    let mut ready = false;
    let mut watcher = new_watcher();
    let mut watched: Vec<std::path::PathBuf> = Vec::new();
    let mut folders: Vec<(usize, std::path::PathBuf)> = Vec::new();
    let mut every = if watcher.is_some() {
        rescan_interval
    } else {
        POLL_INTERVAL
    };
    let mut rescan = true;
    let mut pacer = Pacer::new(MIN_RESCAN_GAP);
    let mut next_check: Option<Instant> = None;
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if rescan {
            pacer.ready().await;
            let scan = collector.scan(SystemTime::now());
            next_check = scan.next_check.map(instant_of);
            // Watch folders as they are found (sources may appear later).
            if let Some(w) = watcher.as_mut() {
                for (source, dir) in &scan.folders {
                    if !watched.contains(dir) {
                        let settle_rule = collector.sources[*source].config.ready
                            != spoolpost_ops::config::ReadyRule::CloseWrite;
                        match w.add(dir, folders.len(), settle_rule) {
                            Ok(()) => {
                                watched.push(dir.clone());
                                folders.push((*source, dir.clone()));
                            }
                            Err(e) => {
                                tracing::warn!(folder = %dir.display(), error = %e, "cannot watch; relying on rescans")
                            }
                        }
                    }
                }
            }
        }
        if !ready {
            ready = true;
            notifier.ready(&format!(
                "collecting from {} source(s)",
                collector.sources.len()
            ));
        }
        let wake_at = next_check
            .unwrap_or_else(|| pacer.last() + every)
            .min(pacer.last() + every);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            batch = next_of(watcher.as_ref()) => match batch {
                Ok(batch) => {
                    rescan = batch.overflow;
                    let now = SystemTime::now();
                    let mut scan = Scan::default();
                    for seen in batch.seen {
                        let Some((source, dir)) = folders.get(seen.folder) else { continue };
                        collector.take(*source, dir, &seen.name, now, seen.finished, &mut scan);
                    }
                    if let Some(at) = scan.next_check.map(instant_of) {
                        next_check = Some(next_check.map_or(at, |t| t.min(at)));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inotify failed; rescanning");
                    rescan = true;
                }
            },
            _ = tokio::time::sleep_until(wake_at.into()) => rescan = true,
            _ = watchdog.tick(notifier) => {}
            () = hangups.next() => {
                notifier.reloading();
                let interval = on_hup(collector);
                // The sources may have changed: watch afresh what the
                // next scan finds.
                watcher = new_watcher();
                watched.clear();
                folders.clear();
                every = if watcher.is_some() { interval } else { POLL_INTERVAL };
                next_check = None;
                rescan = true;
                notifier.ready(&format!("collecting from {} source(s)", collector.sources.len()));
            }
        }
    }
}

fn instant_of(t: SystemTime) -> Instant {
    let now_sys = SystemTime::now();
    let now = Instant::now();
    match t.duration_since(now_sys) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    }
}
