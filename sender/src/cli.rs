//! The command line: each flag defined once, with its help and the
//! environment variable it respects, and turned into a [`Plan`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use spoolpost_ops::config::{Config, HeaderValue, Method, ReceiverConfig, SenderSection};
use spoolpost_ops::config_load;
use spoolpost_ops::exit::Failure;
use spoolpost_ops::logging::Diagnostics;
use spoolpost_ops::progress::ProgressFlags;
use spoolpost_ops::route::{Router, SINGLE_RECEIVER};
use spoolpost_protocol::spool::Spool;

use crate::plan::Plan;

/// Sends the files in a spool's incoming/ to HTTP receivers.
///
/// Each file is POSTed (gzip-compressed) to the receiver its name routes to.
/// 2xx moves it to done/, 4xx to error/ with a NAME.reason.json beside it,
/// 5xx and network errors put it back to wait with exponential backoff.
/// Several senders may share one spool.
#[derive(Debug, Parser)]
#[command(name = "sender", version, about, long_about, max_term_width = 100)]
pub struct Args {
    /// Spool root folder; it must exist unless --create-spool is given.
    ///
    /// Holds incoming/, sending/, done/, error/ and tmp/, created as
    /// needed. Defaults to the config file's `spool` setting.
    #[arg(long, env = "SPOOLPOST_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Create the spool root if it does not exist (config: `create_spool`).
    #[arg(long)]
    pub create_spool: bool,

    /// Send every file to this one URL (no config file needed).
    #[arg(long, env = "SPOOLPOST_URL", help_heading = "Receiver")]
    pub url: Option<String>,

    /// TOML config file with receivers and routing rules.
    ///
    /// The sender reads [sender], [receivers.NAME] and [[routes]]; every key
    /// is in spoolpost.toml(5).
    #[arg(long, short = 'c', env = "SPOOLPOST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Drain what is ready now, then exit 0 (for cron).
    ///
    /// Files that fail are put back to wait or moved to error/ as usual;
    /// that is not a failure of the run.
    #[arg(long)]
    pub once: bool,

    /// Requests in flight at once, over all receivers [default: 1024].
    #[arg(long, env = "SPOOLPOST_CONCURRENCY", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub concurrency: Option<u32>,

    /// Threads that read, compress and send [default: 1].
    ///
    /// 1 runs it all on one thread, for the least CPU per file and memory;
    /// more raise throughput a little on hosts with cores to spare.
    #[arg(long, env = "SPOOLPOST_THREADS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=spoolpost_ops::config_check::MAX_THREADS as i64))]
    pub threads: Option<u32>,

    /// Write event lines (JSON, one per outcome) here instead of stdout.
    ///
    /// `-` means stdout. The file is appended to.
    #[arg(long, env = "SPOOLPOST_EVENTS", value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Print the man page or a shell's completion script on stdout, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<spoolpost_ops::generate::Generate>,

    #[command(flatten)]
    pub progress: ProgressFlags,

    /// Delete delivered files instead of moving them to done/.
    #[arg(long)]
    pub delete_delivered: bool,

    /// fsync each folder a file moves into, so state survives a power cut.
    ///
    /// Without it a power cut can undo recent moves, which at worst sends a
    /// file again; it never loses one. See /usr/share/doc/spoolpost/spool.md.
    #[arg(long)]
    pub fsync: bool,

    /// Time in-flight requests get to finish after SIGTERM [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,

    /// Request method for --url.
    #[arg(long, value_enum, default_value = "post", help_heading = "Receiver")]
    pub method: Method,

    /// Extra request header for --url, as 'Name: value' (repeatable).
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        help_heading = "Receiver"
    )]
    pub headers: Vec<String>,

    /// Content-Type for --url.
    #[arg(
        long,
        default_value = "application/octet-stream",
        help_heading = "Receiver"
    )]
    pub content_type: String,

    /// gzip level for --url (0-9).
    #[arg(long, default_value_t = spoolpost_ops::config::default_gzip_level(), value_parser = clap::value_parser!(u32).range(0..=9), help_heading = "Receiver")]
    pub gzip_level: u32,

    /// Send bodies uncompressed (--url).
    #[arg(long, help_heading = "Receiver")]
    pub no_gzip: bool,

    /// Request timeout for --url, plus one second per MiB of file.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, help_heading = "Receiver")]
    pub timeout: Duration,

    /// Validate the configuration, its secrets and the spool, report every
    /// problem and exit: 0 ok, 78 configuration, 74 spool.
    #[arg(long)]
    pub check: bool,

    /// Print the configuration in effect as TOML and exit: the file with
    /// every default filled in and these flags applied, secrets redacted.
    ///
    /// The output reads back as the same settings (what was redacted is
    /// named in a comment at the top). Nothing is checked beyond what
    /// start-up checks of the file: no spool, secret or receiver is looked
    /// at (that is --check).
    #[arg(long, conflicts_with = "check")]
    pub print_config: bool,

    /// With --check: also connect (and complete the TLS handshake) to each
    /// receiver and report its latency; exit 75 if one cannot be reached.
    #[arg(long, requires = "check")]
    pub probe: bool,

    #[command(flatten)]
    pub diagnostics: Diagnostics,
}

impl Args {
    /// Parses the command line, or exits as clap does with its message.
    /// `--url` and `--config` exclude each other (one receiver without a
    /// file, or the file's receivers), but a value the environment gives
    /// yields to one the command line gives: a SPOOLPOST_CONFIG exported
    /// in an operator's profile made `sender --spool S --url U --once`
    /// fail with a conflict nobody typed.
    pub fn parse_command_line() -> Args {
        Args::parse_from_iter(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Args::parse_command_line`] over given words (the first is the
    /// program's name).
    pub fn parse_from_iter<I, T>(words: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Args::command().try_get_matches_from(words)?;
        let mut args = Args::from_arg_matches(&matches)?;
        if args.url.is_some() && args.config.is_some() {
            let from_env =
                |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
            match (from_env("url"), from_env("config")) {
                (false, true) => args.config = None,
                (true, false) => args.url = None,
                (both_from_env, _) => {
                    let message = if both_from_env {
                        "SPOOLPOST_URL and SPOOLPOST_CONFIG are both set: give --url URL or --config FILE"
                    } else {
                        "--url and --config cannot be used together: --url sends to one receiver without a config file"
                    };
                    return Err(
                        Args::command().error(clap::error::ErrorKind::ArgumentConflict, message)
                    );
                }
            }
        }
        Ok(args)
    }

    /// Resolves the flags and the config file into what `run` needs.
    pub fn plan(self) -> Result<Plan, Failure> {
        let loaded = match &self.config {
            Some(path) => {
                let loaded = config_load::load(path).map_err(Failure::config)?;
                loaded.check_secrets().map_err(Failure::config)?;
                Some(loaded)
            }
            None => None,
        };
        let router = match (&self.url, &loaded) {
            (Some(url), _) => {
                Router::single(self.receiver_for_url(url)?).map_err(Failure::usage)?
            }
            (None, Some(loaded)) => Router::from_config(loaded).map_err(Failure::config)?,
            (None, None) => return Err(Failure::usage("give --url URL or --config FILE")),
        };
        let spool_root = self
            .spool
            .clone()
            .or_else(|| loaded.as_ref().and_then(|l| l.config.spool.clone()))
            .ok_or_else(|| Failure::usage("give --spool DIR (or `spool` in the config file)"))?;
        let settings = self.settings(
            loaded
                .as_ref()
                .map(|l| l.config.sender.clone())
                .unwrap_or_default(),
        );
        let loaded_for_reload = loaded;
        if settings.concurrency == 0 {
            return Err(Failure::config("[sender] concurrency must be at least 1"));
        }
        if settings.threads == 0 {
            return Err(Failure::config("[sender] threads must be at least 1"));
        }
        let create = self.create_spool
            || loaded_for_reload
                .as_ref()
                .is_some_and(|l| l.config.create_spool);
        let spool = Spool::open_root(&spool_root, create)?.with_fsync(settings.fsync);
        Ok(Plan {
            config: self.config,
            loaded: loaded_for_reload,
            spool,
            router,
            settings,
            once: self.once,
            events: self.events,
            progress: self.progress,
        })
    }

    /// `[sender]` (the file's, or the defaults) with the flags that
    /// override it applied.
    fn settings(&self, mut settings: SenderSection) -> SenderSection {
        if let Some(n) = self.concurrency {
            settings.concurrency = n as usize;
        }
        if let Some(n) = self.threads {
            settings.threads = n as usize;
        }
        if let Some(grace) = self.grace {
            settings.grace = grace;
        }
        settings.delete_delivered |= self.delete_delivered;
        settings.fsync |= self.fsync;
        settings
    }

    /// `--print-config`: the file as this run would take it, the flags
    /// applied (with `--url`, its one receiver and a route for every file).
    pub fn print_config(&self) -> Result<(), Failure> {
        let mut config = match &self.config {
            Some(path) => config_load::load(path).map_err(Failure::config)?.config,
            None if self.url.is_none() => {
                return Err(Failure::usage("give --url URL or --config FILE"));
            }
            None => Config::default(),
        };
        config.sender = self.settings(config.sender.clone());
        if let Some(url) = &self.url {
            config.set_single_receiver(SINGLE_RECEIVER, self.receiver_for_url(url)?);
        }
        if let Some(spool) = &self.spool {
            config.spool = Some(spool.clone());
        }
        config.create_spool |= self.create_spool;
        spoolpost_ops::config_dump::print("sender", &config)
    }

    pub(crate) fn receiver_for_url(&self, url: &str) -> Result<ReceiverConfig, Failure> {
        let mut receiver = ReceiverConfig::for_url(url);
        receiver.method = self.method;
        receiver.content_type = self.content_type.clone();
        receiver.gzip = !self.no_gzip;
        receiver.gzip_level = self.gzip_level;
        receiver.timeout = self.timeout;
        receiver.concurrency = self.concurrency.map_or(1024, |n| n as usize);
        for header in &self.headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                Failure::usage(format!("--header {header:?}: expected 'Name: value'"))
            })?;
            receiver.headers.insert(
                name.trim().to_string(),
                HeaderValue::Literal(value.trim().to_string()),
            );
        }
        Ok(receiver)
    }
}
