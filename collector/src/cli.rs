//! The command line: each flag defined once, with its help and the
//! environment variable it respects.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use spoolpost_ops::config::ReadyRule;
use spoolpost_ops::logging::Diagnostics;
use spoolpost_ops::progress::ProgressFlags;

/// Moves complete files from producers' folders into a spool's incoming/.
///
/// A file is taken only when complete (see --ready), by one atomic rename
/// when the folder is on the spool's filesystem, or by copy, fsync and rename
/// when it is not. Two files with the same name both arrive.
#[derive(Debug, Parser)]
#[command(name = "collector", version, about, long_about, max_term_width = 100)]
pub struct Args {
    /// Spool root folder; it must exist unless --create-spool is given.
    /// Defaults to the config's `spool`.
    #[arg(long, env = "SPOOLPOST_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Create the spool root if it does not exist (config: `create_spool`).
    #[arg(long)]
    pub create_spool: bool,

    /// A folder producers write into (repeatable). Adds to the config's sources.
    #[arg(long = "source", value_name = "DIR")]
    pub sources: Vec<PathBuf>,

    /// TOML config file; the collector reads [collector] and its [[collector.sources]].
    #[arg(long, short = 'c', env = "SPOOLPOST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Take what is ready now, then exit 0 (for cron).
    #[arg(long)]
    pub once: bool,

    /// Take the file paths read from standard input, then exit.
    ///
    /// Paths are newline-separated, or NUL-separated with -0, as in
    /// `find /data -name '*.json' -print0 | collector --spool S --stdin -0`.
    /// The files are taken as they are: the caller vouches they are complete.
    #[arg(long, conflicts_with = "once")]
    pub stdin: bool,

    /// With --stdin: paths are NUL-separated.
    #[arg(short = '0', long = "null", requires = "stdin")]
    pub null: bool,

    /// When a file is complete, for --source folders.
    ///
    /// settle: unchanged (mtime and ctime) for --settle; close-write: inotify
    /// saw the writer close it or rename it in (files found by a rescan fall
    /// back to settle); marker: a companion NAME.ready or NAME.done exists.
    #[arg(long, value_enum, default_value = "settle")]
    pub ready: ReadyRule,

    /// Quiet time that makes a file complete under --ready settle.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub settle: Duration,

    /// Only take names matching this glob, for --source folders (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Never take names matching this glob (repeatable; replaces the default
    /// .* *.tmp *.part *.swp).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Also take files in subfolders of --source folders.
    #[arg(long)]
    pub recursive: bool,

    /// Pause while incoming/ holds this many files or more.
    #[arg(long, value_name = "N")]
    pub max_incoming_files: Option<u64>,

    /// Pause while incoming/ holds this many bytes or more (e.g. 10GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_incoming_bytes: Option<bytesize::ByteSize>,

    /// Pause while the spool's filesystem has less free space (e.g. 2GiB).
    #[arg(long, value_name = "SIZE")]
    pub min_free_space: Option<bytesize::ByteSize>,

    /// Validate the configuration, sources and spool, report every problem
    /// and exit: 0 ok, 78 configuration, 74 spool.
    ///
    /// Checks what start-up checks, plus that each source exists and is not
    /// inside the spool, and that the spool exists or can be created, is
    /// writable by this user and its folders are on one filesystem.
    /// Nothing is created or moved.
    #[arg(long)]
    pub check: bool,

    /// Print the configuration in effect as TOML and exit: the file with
    /// every default filled in and these flags applied, secrets redacted.
    ///
    /// The output reads back as the same settings (what was redacted is
    /// named in a comment at the top). Nothing is checked beyond what
    /// start-up checks of the file: no spool or source is looked at (that
    /// is --check).
    #[arg(long, conflicts_with = "check")]
    pub print_config: bool,

    /// Write event lines (JSON, one per file) here instead of stdout ("-": stdout).
    #[arg(long, env = "SPOOLPOST_EVENTS", value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Print the man page or a shell's completion script on stdout, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<spoolpost_ops::generate::Generate>,

    #[command(flatten)]
    pub progress: ProgressFlags,

    #[command(flatten)]
    pub diagnostics: Diagnostics,
}
