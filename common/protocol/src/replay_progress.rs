//! A replay in progress, made visible through the spool: `reporter replay`
//! can run for hours under its rate cap, and an operator (or a second
//! replay) must see that it runs, how far it got and who runs it.
//!
//! A replay works in a locked folder, `tmp/replay-ID/` (built as a
//! sender's claim folder is: `.lock` in it, locked for as long as the
//! process lives), and rewrites `.progress.json` there (written as
//! `.progress.tmp` beside it, then renamed over: a reader sees the old
//! record or the new one). The kernel drops the lock when the process
//! dies, however it dies, so a reader tells a running replay from a dead
//! one's leftovers by the lock, not by the process ID (which may be
//! reused): [`read_all`] marks the latter dead. A replay that ends removes
//! its folder; the next replay removes dead ones ([`remove_dead`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::Held;
use crate::spool::{
    Spool, create_locked_folder, is_owned, remove_dead_folders, write_claim_record,
};

/// The prefix of a replay's folder in `tmp/`.
pub const REPLAY_PREFIX: &str = "replay-";
pub const PROGRESS_FILE: &str = ".progress.json";
const PROGRESS_TMP: &str = ".progress.tmp";

/// What a replay shows of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub pid: u32,
    pub host: String,
    /// The selection, as the operator gave it (`--receiver a --name
    /// '*.json'`).
    pub selection: String,
    /// Files moved per second, at most.
    pub rate: u32,
    /// When it started, RFC 3339.
    pub started: String,
    /// Files and bytes the selection picked.
    pub total_files: u64,
    pub total_bytes: u64,
    /// Files and bytes moved back to `incoming/` so far.
    pub files: u64,
    pub bytes: u64,
}

/// This process's replay, shown while it lives; its folder is removed
/// when dropped.
#[derive(Debug)]
pub struct Shown {
    folder: PathBuf,
    lock: Option<Held>,
}

impl Shown {
    /// Creates and locks the replay's folder and shows `progress` in it.
    pub fn start(spool: &Spool, progress: &Progress) -> io::Result<Shown> {
        let (_, folder, lock) = create_locked_folder(spool, REPLAY_PREFIX)?;
        let shown = Shown {
            folder,
            lock: Some(lock),
        };
        shown.update(progress)?;
        Ok(shown)
    }

    /// Shows `progress` in place of what was shown.
    pub fn update(&self, progress: &Progress) -> io::Result<()> {
        let bytes = serde_json::to_vec(progress).map_err(io::Error::other)?;
        write_claim_record(&self.folder, PROGRESS_FILE, PROGRESS_TMP, &bytes)
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        // Emptied while still locked, so no reader takes it for a dead
        // replay's; the lock goes with the last descriptor.
        let _ = fs::remove_dir_all(&self.folder);
        self.lock.take();
    }
}

/// A replay seen in the spool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Its folder's ID (`PID-RANDOM`).
    pub id: String,
    /// Its process holds its lock. A dead one's record is its last
    /// progress: how far it got before it died.
    pub running: bool,
    #[serde(flatten)]
    pub progress: Progress,
}

/// Every replay with a record in the spool, running or dead, by ID.
pub fn read_all(spool: &Spool) -> Vec<Seen> {
    let Ok(entries) = fs::read_dir(spool.tmp()) else {
        return Vec::new();
    };
    let mut seen: Vec<Seen> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let id = name.to_str()?.strip_prefix(REPLAY_PREFIX)?.to_owned();
            let folder = entry.path();
            let progress = read(&folder)?;
            Some(Seen {
                id,
                running: is_owned(&folder),
                progress,
            })
        })
        .collect();
    seen.sort_by(|a, b| a.id.cmp(&b.id));
    seen
}

fn read(folder: &Path) -> Option<Progress> {
    let text = fs::read(folder.join(PROGRESS_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes dead replays' folders; returns how many.
pub fn remove_dead(spool: &Spool) -> io::Result<usize> {
    remove_dead_folders(spool, REPLAY_PREFIX)
}

/// This host's name, as a replay or a rate's taker shows it.
pub fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(files: u64) -> Progress {
        Progress {
            pid: std::process::id(),
            host: host(),
            selection: "--all".into(),
            rate: 5,
            started: "2026-12-06T11:00:00Z".into(),
            total_files: 10,
            total_bytes: 100,
            files,
            bytes: files * 10,
        }
    }

    #[test]
    fn a_replay_is_seen_while_it_runs_and_gone_when_it_ends() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        assert!(read_all(&spool).is_empty());
        let shown = Shown::start(&spool, &progress(0)).unwrap();
        shown.update(&progress(3)).unwrap();
        let seen = read_all(&spool);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].progress, progress(3));
        // This process holds the lock: running (with fcntl locks too,
        // through the lock table).
        assert!(seen[0].running);
        drop(shown);
        assert!(
            read_all(&spool).is_empty(),
            "an ended replay leaves nothing"
        );
    }

    #[test]
    fn a_dead_replays_record_is_marked_dead_and_removed_by_the_next() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        // As a killed replay leaves it: the folder and record, no lock held.
        let folder = spool.tmp().join(format!("{REPLAY_PREFIX}1-dead"));
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join(".lock"), b"").unwrap();
        fs::write(
            folder.join(PROGRESS_FILE),
            serde_json::to_vec(&progress(4)).unwrap(),
        )
        .unwrap();
        let seen = read_all(&spool);
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].running);
        assert_eq!(seen[0].id, "1-dead");
        assert_eq!(remove_dead(&spool).unwrap(), 1);
        assert!(read_all(&spool).is_empty());
    }

    #[test]
    fn a_garbled_record_is_not_shown() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let folder = spool.tmp().join(format!("{REPLAY_PREFIX}2-x"));
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join(PROGRESS_FILE), b"{not json").unwrap();
        assert!(read_all(&spool).is_empty());
    }
}
