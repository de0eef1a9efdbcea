//! The command line: each flag defined once, with its help and the
//! environment variable it respects. What the flags mean at run time lives
//! in [`crate::run`] (reports), [`crate::actions`] (requeue, hold, and
//! the queue tools [`crate::list`] and [`crate::flush`]) and
//! [`crate::check::preflight`] (`--check`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use spoolpost_ops::logging::Diagnostics;

/// Reports on a spool: backlog, rates, latencies, errors, circuit states.
///
/// Exit codes: 0 fine; 3 a --fail-if threshold was crossed (the reason is on
/// stderr, one line); 2 bad command line; 74/75 spool I/O (75 also: the
/// --metrics-listen port is in use); 78 bad config.
#[derive(Debug, Parser)]
#[command(name = "reporter", version, about, long_about, max_term_width = 100)]
pub struct Args {
    /// Spool root folder. Defaults to the config file's `spool`.
    ///
    /// The reporter creates nothing: a folder that is not a spool is exit 74.
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
    #[arg(
        long,
        value_enum,
        default_value = "table",
        env = "SPOOLPOST_REPORT_FORMAT",
        help_heading = "Report"
    )]
    pub format: Format,

    /// Write the report here, atomically (temporary file + rename), instead of stdout.
    ///
    /// Readers such as node_exporter's textfile collector see the old or the
    /// new report, never half of one.
    #[arg(
        long,
        value_name = "FILE",
        env = "SPOOLPOST_REPORT_OUTPUT",
        help_heading = "Report"
    )]
    pub output: Option<PathBuf>,

    /// Event lines to read (repeatable); `-` reads stdin, as in `sender | reporter --events -`.
    #[arg(long, value_name = "FILE", help_heading = "Report")]
    pub events: Vec<PathBuf>,

    /// Exit 3 with a one-line reason if this holds (repeatable), e.g.
    /// 'backlog_age > 10m', 'errors > 0', 'open_circuits >= 1'.
    ///
    /// Metrics: backlog_age (duration), backlog_files, backlog_bytes, errors,
    /// open_circuits, held_receivers, unexpected (entries no program
    /// handles). Comparisons: > >= < <= ==. Each metric is also in the JSON
    /// report's `metrics` and in the Prometheus output.
    #[arg(long = "fail-if", value_name = "CHECK", help_heading = "Checks")]
    pub fail_if: Vec<String>,

    /// Refresh the table every SECS seconds, in place on a terminal.
    #[arg(long, value_name = "SECS", help_heading = "Report")]
    pub watch: Option<u64>,

    /// Serve the report's Prometheus text at http://IP:PORT/metrics, e.g. 127.0.0.1:9464.
    ///
    /// For scraping over HTTP rather than through node_exporter's textfile:
    /// the same families as --format prometheus. The reporter then runs
    /// until SIGTERM or SIGINT, making a report every --watch SECS (15
    /// without --watch) and answering each scrape with the latest, so a
    /// scrape reads nothing and never delays a report. Without --watch
    /// nothing is written to stdout (--output FILE still is). Only GET and
    /// HEAD /metrics are answered (404 elsewhere, 405 for other methods).
    /// A loopback address only, unless --metrics-allow-remote. Exit 75 if
    /// the port is in use. Not in the config file: every reporter run reads
    /// that, and only one process can hold a port.
    #[arg(
        long,
        value_name = "IP:PORT",
        value_parser = crate::endpoint_rules::parse_listen,
        help_heading = "Metrics endpoint"
    )]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Let --metrics-listen take an address other than loopback.
    ///
    /// The endpoint has no authentication or TLS: a firewall or a proxy in
    /// front is then yours to provide.
    #[arg(long, requires = "metrics_listen", help_heading = "Metrics endpoint")]
    pub metrics_allow_remote: bool,

    /// Check the configuration and that the spool is there and readable, then exit.
    ///
    /// One line per problem (with file:line where there is one); exit 78
    /// (configuration) or 74 (spool), else a one-line summary and 0. Also
    /// parses the --fail-if checks (exit 2 if one is malformed).
    #[arg(long, help_heading = "Checks")]
    pub check: bool,

    /// Print the configuration in effect as TOML and exit: the file with
    /// every default filled in, secrets redacted.
    ///
    /// All three programs read the one file, so this shows what the sender
    /// and the collector take from it too (without their own flags). The
    /// output reads back as the same settings (what was redacted is named
    /// in a comment at the top). The spool is not looked at (that is
    /// --check).
    #[arg(long, conflicts_with = "check", help_heading = "Checks")]
    pub print_config: bool,

    /// Print the man page or a shell's completion script on stdout, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<spoolpost_ops::generate::Generate>,

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
    /// Send delivered files again: move them from done/ back to incoming/.
    ///
    /// For a receiver that lost what it had taken (a restore from backup, a
    /// bad deploy). Each file keeps its idempotency key, so the receiver
    /// decides whether it is a duplicate, and starts with no attempts.
    /// Give --all or at least one selector; selectors combine (all must
    /// match). A file's delivery time is when it was renamed into done/
    /// (its ctime). Files go oldest delivery first, at most --rate a
    /// second, one atomic rename each: a replay stopped at any point leaves
    /// every file in done/ or incoming/, once, and running it again goes
    /// on with the rest. One line per file on stdout (delivered at, bytes,
    /// receiver, name), the count and bytes on stderr.
    Replay {
        /// Only files routed to this receiver (needs --config).
        #[arg(long)]
        receiver: Option<String>,
        /// Only files whose whole original name matches this glob (as in routes).
        #[arg(long, value_name = "GLOB")]
        name: Option<String>,
        /// Only files delivered at or after WHEN: a time
        /// (2026-12-05T10:00:00Z) or a duration ago (6h, 2days).
        #[arg(long, value_name = "WHEN")]
        delivered_after: Option<String>,
        /// Only files delivered before WHEN (same forms).
        ///
        /// Without it, files delivered before the replay started: what is
        /// delivered meanwhile, replayed files included, is never picked.
        #[arg(long, value_name = "WHEN")]
        delivered_before: Option<String>,
        /// Every file in done/ (up to the replay's start).
        #[arg(long)]
        all: bool,
        /// List what would go, with its count and bytes; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move at most N files a second, so live traffic keeps its room.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Give each file a new idempotency key: the receiver takes it as new data.
        #[arg(long)]
        new_keys: bool,
    },
    /// One file's state, history and reason, by name or key (as `postcat -q`).
    ///
    /// Where the file is (waiting, retry, sending, done, error) and since
    /// when, its key, receiver, size, first attempt, attempts and last
    /// reason; in error/ its reason record (class, message, status, the
    /// answer's body); with --events, its event lines. Every file with that
    /// name is shown (two files may share one). Exit 1 if there is none.
    Show {
        /// The whole original name, or the 24-hex-digit idempotency key.
        #[arg(value_name = "NAME|KEY")]
        which: std::ffi::OsString,
    },
    /// Delete one file waiting, delivered or given up on, by name or key (as `postsuper -d`).
    ///
    /// A name that several files share is refused with their keys; a file
    /// being sent is refused (exit 75) until its sender is done with it. In
    /// error/ its reason record goes too.
    Delete {
        /// The whole original name, or the 24-hex-digit idempotency key.
        #[arg(value_name = "NAME|KEY")]
        which: std::ffi::OsString,
    },
    /// Hold a receiver's backlog: senders leave its files waiting.
    ///
    /// With --file instead, hold one waiting file (as `postsuper -h`): it
    /// moves from incoming/ to held/, where no sender looks, until released.
    Hold {
        #[arg(required_unless_present = "file")]
        receiver: Option<String>,
        /// One waiting file, by whole name or 24-hex-digit key, instead of a receiver.
        #[arg(long, value_name = "NAME|KEY", conflicts_with = "receiver")]
        file: Option<std::ffi::OsString>,
    },
    /// Release a hold: a receiver's, or with --file one held file's.
    Release {
        #[arg(required_unless_present = "file")]
        receiver: Option<String>,
        /// One held file, by whole name or key: back to incoming/ as it was.
        #[arg(long, value_name = "NAME|KEY", conflicts_with = "receiver")]
        file: Option<std::ffi::OsString>,
    },
    /// One line per file waiting, held, being sent or given up on (as `postqueue -j`).
    ///
    /// Columns: state, attempts, first seen, next attempt, receiver, last
    /// reason, then the whole original name (last, so a name with spaces
    /// cannot shift the columns; control bytes and invalid UTF-8 are
    /// escaped). Streams the folders as it reads them: memory stays flat
    /// however many files there are.
    List {
        /// Only files routed to this receiver (needs --config).
        #[arg(long)]
        receiver: Option<String>,
        /// Only files in this state.
        #[arg(long, value_enum)]
        state: Option<ListState>,
        /// table (people) or json (one object per line, for scripts).
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Make waiting retries due now and wake the running senders (as `postqueue -f`).
    ///
    /// Each waiting retry gets its next-attempt time set to now and a new
    /// name within incoming/ (a fresh `u` field; key and attempts kept),
    /// which senders are notified of. Files of a held receiver stay held.
    Flush {
        /// Only files routed to this receiver (needs --config).
        #[arg(long)]
        receiver: Option<String>,
    },
}

/// A file's state as `reporter list` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListState {
    /// In incoming/, never attempted: due now.
    Waiting,
    /// In incoming/ after at least one failed attempt: due at its next attempt.
    Retry,
    /// Claimed by a sender.
    Sending,
    /// In error/: given up on.
    Error,
    /// In held/: put aside by `reporter hold --file` until released.
    Held,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Args::command().debug_assert();
    }
}
