//! `reporter replay`: sends delivered files again, when a receiving service
//! lost what it had taken (a restore from backup, a bad deploy). It walks
//! `done/`, keeps what [`crate::replay_rules::Selection`] picks, and moves
//! those files back to `incoming/` oldest delivery first, each by the
//! protocol crate's [`replay`](spoolpost_protocol::replay::replay) (one
//! atomic rename: a replay killed at any point leaves every file in
//! `done/` or `incoming/`, once; under the `link` + `unlink` fallback, a
//! kill between the two leaves one file in both, docs/platforms.md), at
//! most `--rate` files a second so running senders keep room for live
//! traffic. `--dry-run` lists the same files and moves nothing.
//!
//! The files are read into memory before the first move (name, receiver,
//! time, size: a few hundred bytes each), so they can go in delivery order.
//!
//! While it moves files, a replay shows itself to other reporters through
//! the spool ([`spoolpost_protocol::replay_progress`]): who runs it, the
//! selection, the rate, and how many of how many files and bytes went so
//! far, rewritten at most every [`SHOW_EVERY`].

use std::ffi::OsString;
use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime};

use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;
use spoolpost_protocol::event::rfc3339;
use spoolpost_protocol::fsops;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::replay::{Keys, replay};
use spoolpost_protocol::replay_progress::{self, Progress, Shown};
use spoolpost_protocol::spool::{Spool, State, annotate, is_data_name};

use crate::census::{UNKNOWN, UNROUTED};
use crate::list::escape;
use crate::replay_rules::{Selection, due};

/// What one `reporter replay` does.
pub struct Plan {
    pub selection: Selection,
    pub keys: Keys,
    /// Files moved per second, at most.
    pub rate: u32,
    pub dry_run: bool,
}

/// How often a replay rewrites the progress it shows.
pub const SHOW_EVERY: Duration = Duration::from_millis(250);

/// A delivered file the selection picked.
struct Picked {
    done_name: OsString,
    original: OsString,
    receiver: String,
    delivered: SystemTime,
    bytes: u64,
}

impl Picked {
    fn line(&self) -> String {
        format!(
            "{}  {:>10}  {:<16}  {}",
            rfc3339(self.delivered),
            self.bytes,
            escape(self.receiver.as_bytes()),
            escape(self.original.as_encoded_bytes()),
        )
    }
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub files: u64,
    pub bytes: u64,
}

/// Carries out `plan`, one line per file on `out` (delivered at, bytes,
/// receiver, name) as it moves (or would move). A closed `out` stops a dry
/// run, not a replay: the moves are the work, the lines only report it.
pub fn run(
    spool: &Spool,
    router: Option<&Router>,
    plan: &Plan,
    out: &mut impl Write,
) -> Result<Replayed, Failure> {
    let picked = pick(spool, router, &plan.selection)?;
    let mut done = Replayed::default();
    if plan.dry_run {
        for file in &picked {
            if writeln!(out, "{}", file.line()).is_err() {
                break;
            }
            done.files += 1;
            done.bytes += file.bytes;
        }
        let _ = out.flush();
        return Ok(done);
    }
    let mut progress = Progress {
        pid: std::process::id(),
        host: replay_progress::host(),
        selection: plan.selection.describe(),
        rate: plan.rate,
        started: rfc3339(SystemTime::now()),
        total_files: picked.len() as u64,
        total_bytes: picked.iter().map(|f| f.bytes).sum(),
        files: 0,
        bytes: 0,
    };
    let shown = show(spool, &progress);
    let mut shown_at = Instant::now();
    let start = Instant::now();
    for (index, file) in picked.iter().enumerate() {
        let at = start + due(index as u64, plan.rate);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match replay(spool, &file.done_name, plan.keys)? {
            Some(_) => {
                done.files += 1;
                done.bytes += file.bytes;
                let _ = writeln!(out, "{}", file.line());
            }
            None => tracing::info!(
                file = %file.original.to_string_lossy(),
                "left done/ before it could be replayed; skipped"
            ),
        }
        if let Some(shown) = &shown
            && shown_at.elapsed() >= SHOW_EVERY
        {
            (progress.files, progress.bytes) = (done.files, done.bytes);
            // Only the showing fails: the replay goes on.
            let _ = shown.update(&progress);
            shown_at = Instant::now();
        }
    }
    let _ = out.flush();
    Ok(done)
}

/// Shows the replay to other reporters, after clearing away dead
/// replays' leftovers; a spool where that fails is warned of, and the
/// replay goes on unseen.
fn show(spool: &Spool, progress: &Progress) -> Option<Shown> {
    if let Err(e) = replay_progress::remove_dead(spool) {
        tracing::warn!(error = %e, "cannot clear dead replays' folders from tmp/");
    }
    Shown::start(spool, progress)
        .inspect_err(|e| {
            tracing::warn!(error = %e, "cannot show this replay to other reporters; replaying unseen")
        })
        .ok()
}

/// The picked files of `done/`, oldest delivery first.
fn pick(
    spool: &Spool,
    router: Option<&Router>,
    selection: &Selection,
) -> Result<Vec<Picked>, Failure> {
    let dir = spool.dir(State::Done);
    let entries = std::fs::read_dir(&dir).map_err(|e| annotate(e, "cannot read", &dir))?;
    let mut picked = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, "cannot read", &dir))?;
        let done_name = entry.file_name();
        if !is_data_name(&done_name) {
            continue;
        }
        // Not followed: a symlink in done/ is not a delivered file.
        let meta = match entry.metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(annotate(e, "cannot read", &entry.path()).into()),
        };
        let mut name = SpoolName::parse(&done_name);
        spoolpost_protocol::fullname::resolve(spool.root(), &mut name);
        let receiver = router.map(|r| {
            r.receiver_of(&name.original)
                .map(|i| r.receivers()[i].name.clone())
        });
        let delivered = fsops::ctime(&meta);
        if !selection.picks(
            &name.original,
            receiver.as_ref().and_then(|r| r.as_deref()),
            delivered,
        ) {
            continue;
        }
        picked.push(Picked {
            done_name,
            original: name.original,
            receiver: match receiver {
                Some(Some(name)) => name,
                Some(None) => UNROUTED.to_string(),
                None => UNKNOWN.to_string(),
            },
            delivered,
            bytes: meta.len(),
        });
    }
    picked.sort_by(|a, b| (a.delivered, &a.done_name).cmp(&(b.delivered, &b.done_name)));
    Ok(picked)
}
