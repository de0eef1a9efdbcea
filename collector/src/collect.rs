//! Finding complete files in the source folders and putting them into the
//! spool: filters, the readiness rule of each source, back-pressure, and an
//! event line per file. The move itself is `spoolpost_protocol::admit`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use globset::{Glob, GlobSet, GlobSetBuilder};
use spoolpost_ops::config::{ReadyRule, SourceConfig};
use spoolpost_protocol::admit::{AdmitError, Admitted, Admitter, CLAIM_PREFIX};
use spoolpost_protocol::event::{Event, EventKind, EventSink, rfc3339};
use spoolpost_protocol::spool::{Spool, State};

use crate::gate::{Change, Gate, Level};
use crate::ready::{Look, Settled, marked_by, settled};

/// How often the spool is measured for back-pressure at most.
const MEASURE_EVERY: Duration = Duration::from_secs(1);
/// Paths warned about are remembered up to this many, so a folder full of
/// symlinks is reported once per path without growing without bound.
const MAX_WARNED: usize = 10_000;

/// A source folder with its compiled filters.
pub struct Source {
    pub config: SourceConfig,
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Source {
    pub fn new(config: SourceConfig) -> Result<Source, String> {
        let set = |globs: &[String]| -> Result<GlobSet, String> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g).map_err(|e| {
                    format!("source {}: bad glob {g:?}: {e}", config.path.display())
                })?);
            }
            b.build().map_err(|e| e.to_string())
        };
        Ok(Source {
            include: (!config.include.is_empty())
                .then(|| set(&config.include))
                .transpose()?,
            exclude: set(&config.exclude)?,
            config,
        })
    }

    /// Dot-names are never wanted, whatever `exclude` says: they are work in
    /// progress by convention and would sit unseen in the spool.
    fn wants(&self, name: &OsStr) -> bool {
        !name.as_encoded_bytes().starts_with(b".")
            && !self.exclude.is_match(name)
            && self.include.as_ref().is_none_or(|inc| inc.is_match(name))
    }
}

/// What a scan found out.
#[derive(Debug, Default)]
pub struct Scan {
    /// The earliest time a file seen but not yet ready may be.
    pub next_check: Option<SystemTime>,
    /// Every folder scanned (source index, path), for watching.
    pub folders: Vec<(usize, PathBuf)>,
    pub taken: u64,
    /// Files a source wants that are not complete yet by its ready rule.
    pub not_ready: u64,
    /// When a file whose times are ahead of the clock, being watched for
    /// a quiet period, may be complete: a `--once` run looks once more
    /// then, as it has no later scan.
    pub watch_until: Option<SystemTime>,
}

impl Scan {
    fn check_at(&mut self, at: SystemTime) {
        self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
    }
}

pub struct Collector {
    pub spool: Spool,
    admitter: Admitter,
    pub sources: Vec<Source>,
    gate: Gate,
    events: EventSink,
    warned: HashSet<PathBuf>,
    /// Files whose ctime is ahead of the clock: how each looked when first
    /// seen so, and when (see `ready`). At most [`MAX_WARNED`].
    watched: HashMap<PathBuf, (Look, SystemTime)>,
    level: Level,
    measured: Option<Instant>,
    pub collected: u64,
    /// A file was left at its source because the spool's disk was full:
    /// a one-shot run exits 75 (rerun later) instead of 0.
    pub disk_full: bool,
}

impl Collector {
    pub fn new(
        spool: Spool,
        sources: Vec<Source>,
        gate: Gate,
        events: EventSink,
    ) -> std::io::Result<Collector> {
        Ok(Collector {
            admitter: Admitter::new(&spool)?,
            spool,
            sources,
            gate,
            events,
            warned: HashSet::new(),
            watched: HashMap::new(),
            level: Level::default(),
            measured: None,
            collected: 0,
            disk_full: false,
        })
    }

    /// The sources and limits of a reloaded configuration, for the files
    /// taken from now on.
    pub fn reconfigure(&mut self, sources: Vec<Source>, gate: Gate) {
        self.sources = sources;
        self.gate = gate;
        self.warned.clear();
        self.watched.clear();
    }

    pub fn reopen_events(&mut self, path: Option<&Path>) -> std::io::Result<()> {
        self.events.reopen(path)
    }

    pub fn events(&self) -> &EventSink {
        &self.events
    }

    pub fn finish(self) {
        self.events.finish();
    }

    /// Scans every source once, taking what is ready.
    pub fn scan(&mut self, now: SystemTime) -> Scan {
        let mut scan = Scan::default();
        for i in 0..self.sources.len() {
            let root = self.sources[i].config.path.clone();
            let mut pending = vec![root.clone()];
            while let Some(dir) = pending.pop() {
                self.scan_folder(i, &dir, now, &mut scan, &mut pending);
            }
        }
        scan
    }

    fn scan_folder(
        &mut self,
        source: usize,
        dir: &Path,
        now: SystemTime,
        scan: &mut Scan,
        pending: &mut Vec<PathBuf>,
    ) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.warn_once(
                    dir,
                    &format!("cannot read source folder: {e}; will keep trying"),
                );
                return;
            }
        };
        scan.folders.push((source, dir.to_path_buf()));
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if entry
                    .file_name()
                    .as_encoded_bytes()
                    .starts_with(CLAIM_PREFIX.as_bytes())
                {
                    if self.gate_open() {
                        self.sweep(&entry.path(), scan);
                    }
                    continue;
                }
                if self.sources[source].config.recursive {
                    pending.push(entry.path());
                }
                continue;
            }
            if !self.gate_open() {
                scan.check_at(now + MEASURE_EVERY);
                return;
            }
            let name = entry.file_name();
            if self.take(source, dir, &name, now, false, scan) {
                scan.taken += 1;
            }
        }
    }

    /// Takes one file by name if its source wants it and it is ready.
    /// `finished` is inotify's word that the writer is done with it.
    /// Returns whether it was put into the spool.
    pub fn take(
        &mut self,
        source: usize,
        dir: &Path,
        name: &OsStr,
        now: SystemTime,
        finished: bool,
        scan: &mut Scan,
    ) -> bool {
        if !self.gate_open() {
            scan.check_at(now + MEASURE_EVERY);
            return false;
        }
        let config = &self.sources[source].config;
        let rule = config.ready;
        if rule == ReadyRule::Marker {
            let Some(data) = marked_by(name, &config.markers) else {
                return false;
            };
            let (data, marker) = (data.to_os_string(), dir.join(name));
            if !self.sources[source].wants(&data) {
                return false;
            }
            let taken = self.admit(&dir.join(&data), &data, None);
            let data_gone = !dir.join(&data).exists();
            if data_gone {
                // Taken now, or by an earlier run that stopped before
                // removing the marker.
                let _ = std::fs::remove_file(&marker);
            }
            return taken;
        }
        if !self.sources[source].wants(name) {
            return false;
        }
        let path = dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(_) => return false,
        };
        if meta.file_type().is_symlink() {
            self.warn_once(
                &path,
                "symlinks are not followed out of a source folder; not collected",
            );
            return false;
        }
        if !meta.is_file() {
            return false;
        }
        if !(rule == ReadyRule::CloseWrite && finished) {
            let look = Look {
                mtime: meta.modified().unwrap_or(UNIX_EPOCH),
                ctime: spoolpost_protocol::fsops::ctime(&meta),
                size: meta.len(),
            };
            let seen_since = (self.watched.get(&path))
                .filter(|(seen, _)| *seen == look)
                .map(|(_, since)| *since);
            let judged = settled(look, now, config.settle, seen_since);
            if let Some(ahead) = judged.ahead {
                self.warn_skew_once(&path, look, now, ahead);
            }
            match judged.settled {
                Settled::Yes => {}
                Settled::NotBefore(at) => {
                    self.watched.remove(&path);
                    scan.check_at(at);
                    scan.not_ready += 1;
                    return false;
                }
                Settled::Watch(at) => {
                    if seen_since.is_none()
                        && (self.watched.len() < MAX_WARNED || self.watched.contains_key(&path))
                    {
                        self.watched.insert(path.clone(), (look, now));
                    }
                    scan.check_at(at);
                    scan.watch_until = Some(scan.watch_until.map_or(at, |t| t.max(at)));
                    scan.not_ready += 1;
                    return false;
                }
            }
            self.watched.remove(&path);
        }
        self.admit(&path, name, Some(&meta))
    }

    /// Puts a file given by path (from a scan, or from `--stdin`) into the
    /// spool under its file name. `meta` is what the caller just saw of it,
    /// if it looked.
    pub fn admit(&mut self, path: &Path, original: &OsStr, meta: Option<&Metadata>) -> bool {
        let admitted = match meta {
            Some(meta) => self.admitter.admit_looked_at(path, original, meta),
            None => self.admitter.admit(path, original),
        };
        self.report(path, original, admitted)
    }

    /// Takes over the files of a claim folder found in a source folder (a
    /// dead collector's, or this one's leftovers).
    fn sweep(&mut self, folder: &Path, scan: &mut Scan) {
        for (path, original, result) in self.admitter.sweep(folder) {
            if self.report(&path, &original, result) {
                scan.taken += 1;
            }
        }
    }

    /// Takes over dead collectors' claim folders in `dir`, for callers that
    /// do not scan it (`--stdin`): a collector killed while copying leaves
    /// the file in its claim folder beside the source, where only a scan of
    /// that folder would find it. Returns how many files were taken.
    pub fn sweep_claims_in(&mut self, dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let folders: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                e.file_name()
                    .as_encoded_bytes()
                    .starts_with(CLAIM_PREFIX.as_bytes())
            })
            .map(|e| e.path())
            .collect();
        let mut scan = Scan::default();
        for folder in folders {
            if self.gate_open() {
                self.sweep(&folder, &mut scan);
            }
        }
        scan.taken
    }

    /// An event line or a log line for what admission did; whether the
    /// file entered the spool.
    fn report(
        &mut self,
        path: &Path,
        original: &OsStr,
        admitted: Result<Admitted, AdmitError>,
    ) -> bool {
        match admitted {
            Ok(Admitted::AlreadyThere { path: spooled }) => {
                tracing::info!(file = %path.display(), spooled = %spooled.display(), "already in the spool under its key; the second copy is dropped");
                false
            }
            Ok(
                Admitted::Moved {
                    path: spooled,
                    bytes,
                }
                | Admitted::Copied {
                    path: spooled,
                    bytes,
                },
            ) => {
                self.collected += 1;
                self.level.files += 1;
                self.level.bytes += bytes;
                self.events.emit(&Event {
                    time: rfc3339(SystemTime::now()),
                    event: EventKind::Collected,
                    file: original.to_string_lossy().into_owned(),
                    spool_name: spooled
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    key: None,
                    receiver: None,
                    status: None,
                    bytes_read: bytes,
                    bytes_sent: 0,
                    latency_ms: None,
                    attempt: 0,
                    error: None,
                    source: Some(path.to_string_lossy().into_owned()),
                    limit: None,
                    endpoint: None,
                    failed_over: Vec::new(),
                });
                true
            }
            Err(AdmitError::Vanished) => false,
            Err(AdmitError::Changed) => {
                tracing::debug!(file = %path.display(), "changed while copied; will take it when it settles");
                false
            }
            Err(AdmitError::DotName) => {
                self.warn_once(path, &AdmitError::DotName.to_string());
                false
            }
            Err(AdmitError::NotRegular) => {
                self.warn_once(path, "not a regular file; not collected");
                false
            }
            Err(AdmitError::Io(e)) => {
                self.disk_full |= spoolpost_protocol::fsops::is_disk_full(&e);
                tracing::warn!(file = %path.display(), error = %e, "cannot collect; will retry");
                false
            }
        }
    }

    /// Whether back-pressure allows more files now; measures the spool at
    /// most every [`MEASURE_EVERY`], counting own additions in between.
    fn gate_open(&mut self) -> bool {
        let limits = self.gate.limits;
        if limits.max_files.is_none() && limits.max_bytes.is_none() && limits.min_free.is_none() {
            return true;
        }
        if self.measured.is_none_or(|t| t.elapsed() >= MEASURE_EVERY) {
            self.level = self.measure();
            self.measured = Some(Instant::now());
        }
        // Between measurements `level` counts this collector's own additions.
        match self.gate.update(self.level) {
            Some(Change::Paused(block)) => {
                tracing::warn!(?block, "pausing collection: the spool is full")
            }
            Some(Change::Resumed) => tracing::info!("resuming collection"),
            None => {}
        }
        self.gate.is_open()
    }

    fn measure(&self) -> Level {
        let mut level = Level::default();
        if self.gate.watches_incoming() {
            let want_bytes = self.gate.limits.max_bytes.is_some();
            if let Ok(entries) = std::fs::read_dir(self.spool.dir(State::Incoming)) {
                for entry in entries.flatten() {
                    level.files += 1;
                    if want_bytes {
                        level.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
            }
        }
        if self.gate.limits.min_free.is_some() {
            level.free = nix::sys::statvfs::statvfs(self.spool.root())
                // fsblkcnt_t is u32 on macOS (found by .ci/platforms).
                .map(|s| {
                    #[allow(clippy::unnecessary_cast)]
                    let blocks = s.blocks_available() as u64;
                    blocks.saturating_mul(s.fragment_size())
                })
                .unwrap_or(u64::MAX);
        }
        level
    }

    /// Says once per file that its times are ahead of the clock, and how
    /// it is judged instead, so a producer's wrong clock is found.
    fn warn_skew_once(&mut self, path: &Path, look: Look, now: SystemTime, ahead: Duration) {
        if self.warned.len() < MAX_WARNED && self.warned.insert(path.to_path_buf()) {
            let judged_by = if look.ctime > now {
                "seen unchanged for the settle time"
            } else {
                "its change time (ctime)"
            };
            tracing::warn!(
                path = %path.display(),
                ahead_secs = ahead.as_secs(),
                mtime = %rfc3339(look.mtime),
                ctime = %rfc3339(look.ctime),
                judged_by,
                "file times are ahead of this host's clock; judging it complete by {judged_by}"
            );
        }
    }

    fn warn_once(&mut self, path: &Path, what: &str) {
        if self.warned.len() < MAX_WARNED && self.warned.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), "{what}");
        }
    }
}
