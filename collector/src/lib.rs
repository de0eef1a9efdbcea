//! The collector: moves complete files from producers' folders into the
//! spool's `incoming/`, and nothing else.
//!
//! [`ready`] and [`gate`] are pure rules (when is a file complete, may we add
//! more); [`collect`] finds and takes files; [`run`] holds the three modes;
//! the move itself is `spoolpost_protocol::admit`. [`check`] is `--check`;
//! [`reload`] is SIGHUP in daemon mode.

pub mod check;
pub mod cli;
pub mod collect;
pub mod gate;
pub mod ready;
pub mod reload;
pub mod run;

use std::path::{Component, Path, PathBuf};

use spoolpost_ops::exit::Failure;
use spoolpost_ops::notify::Notifier;
use spoolpost_protocol::spool::Spool;
use tokio_util::sync::CancellationToken;

use crate::collect::{Collector, Source};
use crate::gate::{Gate, Limits};

/// Runs the collector as the command line asks.
pub fn main_with(args: cli::Args) -> Result<(), Failure> {
    if args.generate.is_some() || args.check {
        // Nothing to reload and nothing to finish: the signals' default
        // actions are what a person at a terminal expects.
        spoolpost_ops::signals::release();
    }
    if let Some(what) = args.generate {
        return spoolpost_ops::generate::emit_for::<cli::Args>(
            what,
            &spoolpost_ops::generate::COLLECTOR,
        );
    }
    if args.check {
        return check::run(&args);
    }
    let plan = args.plan()?;
    let (sources, gate) = settings_of(&plan)?;
    let spool = Spool::open_root(&plan.spool, plan.create_spool)?;
    let events = spoolpost_ops::progress::sink(
        plan.events.as_deref(),
        &plan.progress,
        spoolpost_ops::progress::Role::Collector,
        &spool,
        || None,
    )?;
    let mut collector = Collector::new(spool, sources, gate, events)?;
    let notifier = Notifier::from_env();
    // The collector's work runs on this thread, and a copy across
    // filesystems blocks it for as long as the file takes; the one worker
    // thread runs the signal listener meanwhile, so a second SIGTERM or
    // SIGINT can end a long copy at once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("collector-signals")
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        // On this (main) thread, which held the signals since main began.
        let mut listeners = spoolpost_ops::signals::Signals::listen();
        let signals = tokio::spawn(spoolpost_ops::signals::stop_on_signal(
            &mut listeners,
            stop.clone(),
            None,
        ));
        let result = match plan.stdin {
            Some(nul) => run::from_stdin(&mut collector, nul, &stop),
            None if plan.once => run::once(&mut collector),
            None => {
                let mut running = reload::Running {
                    spool: plan.spool.clone(),
                    rescan_interval: plan.section.rescan_interval,
                };
                let mut on_hup = |c: &mut Collector| {
                    reload::apply(&args, &mut running, c);
                    running.rescan_interval
                };
                let context = run::Service {
                    notifier: &notifier,
                    on_hup: &mut on_hup,
                    hangups: listeners.hangups(),
                };
                run::serve(&mut collector, plan.section.rescan_interval, &stop, context).await
            }
        };
        if stop.is_cancelled() {
            notifier.stopping();
        }
        signals.abort();
        result
    });
    tracing::info!(files = collector.collected, "collector stopped");
    collector.finish();
    result
}

/// The sources and limits a plan asks for, checked: at start and on every
/// reload, so a reload refuses what start-up would.
pub(crate) fn settings_of(plan: &cli::Plan) -> Result<(Vec<Source>, Gate), Failure> {
    for source in &plan.section.sources {
        refuse_overlap(&plan.spool, &source.path, source.recursive).map_err(Failure::config)?;
    }
    let sources = plan
        .section
        .sources
        .iter()
        .cloned()
        .map(Source::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::config)?;
    for s in &sources {
        if s.config.path.is_dir() {
            continue;
        }
        // A one-shot run looks once: a missing source there is a mistake
        // to report (exit 78, as --check calls it), not a "keep looking"
        // that then exits 0 having looked nowhere (issue 29.4).
        if plan.once {
            return Err(Failure::config(format!(
                "source {} does not exist or is not a folder",
                s.config.path.display()
            )));
        }
        tracing::warn!(source = %s.config.path.display(), "source folder is missing; will keep looking for it");
    }
    let gate = Gate::new(Limits {
        max_files: plan.section.max_incoming_files,
        max_bytes: plan.section.max_incoming_bytes.map(|b| b.as_u64()),
        min_free: plan.section.min_free_space.map(|b| b.as_u64()),
    });
    Ok((sources, gate))
}

/// A source that is the spool or inside it would take the spool's own files
/// (renaming them onto themselves, forever); a recursive source holding the
/// spool would too. Both are refused before anything is touched.
pub(crate) fn refuse_overlap(spool: &Path, source: &Path, recursive: bool) -> Result<(), String> {
    let (spool_abs, source_abs) = (resolved(spool), resolved(source));
    if source_abs.starts_with(&spool_abs) {
        return Err(format!(
            "source {} is inside the spool {}: the collector would take the spool's own files; \
             give a folder outside the spool",
            source.display(),
            spool.display()
        ));
    }
    if recursive && spool_abs.starts_with(&source_abs) {
        return Err(format!(
            "the spool {} is inside the recursive source {}: the collector would take the \
             spool's own files; move the spool out or drop --recursive",
            spool.display(),
            source.display()
        ));
    }
    Ok(())
}

/// Whether the entry `path` names lies inside the spool `spool_abs` (the
/// spool's [`resolved`] path): its folder resolved through symlinks, `..`
/// and relative parts, its last part kept, since that entry itself is
/// what a move takes. A symlink beside the source pointing into the spool
/// is not inside (it is refused later as not a regular file); a path that
/// reaches `done/` through a symlinked folder or `..` is.
pub(crate) fn inside_spool(spool_abs: &Path, path: &Path) -> bool {
    let entry = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            resolved(dir).join(name)
        }
        // "/", "..", "a/..": a folder, never a file to take; judge the
        // whole path so that "spool/.." is not taken for inside.
        _ => resolved(path),
    };
    entry.starts_with(spool_abs)
}

/// The absolute path with symlinks resolved as far as the path exists, and
/// the rest (folders not made yet) normalised by hand.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(p) => out.push(p),
                    _ => {}
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_into_the_spool_are_inside_however_they_are_spelt() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let outside = dir.path().join("data");
        std::fs::create_dir_all(spool.join("done")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&spool, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(spool.join("done/a"), outside.join("to-a")).unwrap();
        let spool_abs = resolved(&spool);
        let inside = |p: &Path| inside_spool(&spool_abs, p);
        assert!(inside(&spool.join("done/a")));
        assert!(
            inside(&spool.join("sending/ID/a")),
            "even where nothing exists"
        );
        assert!(inside(&outside.join("../spool/done/a")), "through ..");
        assert!(
            inside(&dir.path().join("link/done/a")),
            "through a symlinked folder"
        );
        assert!(!inside(&outside.join("a")));
        assert!(
            !inside(&outside.join("../spool-2/a")),
            "a name that only begins alike"
        );
        // The entry itself is a link beside the data: not inside (and
        // never followed: it is not a regular file).
        assert!(!inside(&outside.join("to-a")));
        assert!(!inside(&spool.join("..")), "the spool's parent");
        // The spool itself given through a symlink.
        let via_link = resolved(&dir.path().join("link"));
        assert!(inside_spool(&via_link, &spool.join("done/a")));
    }
}
