//! Diagnostics on stderr through `tracing`: text for people, JSON for log
//! collectors. `-v` raises the level; `SPOOLPOST_LOG` (an env-filter
//! directive such as `debug` or `spoolpost_sender=trace`) overrides it.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The diagnostics flags every binary takes, defined once.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Diagnostics")]
pub struct Diagnostics {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "SPOOLPOST_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More diagnostics (-v debug, -vv trace). SPOOLPOST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Diagnostics {
    pub fn init(&self) {
        init(self.log_format, self.verbose);
    }
}

/// Installs the global subscriber. `verbose` counts `-v` flags: 0 is info,
/// 1 debug, 2 or more trace.
pub fn init(format: LogFormat, verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("SPOOLPOST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::progress::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
