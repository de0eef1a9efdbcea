//! What a run is made of, resolved from the command line and the config
//! file by [`crate::cli::Args::plan`], and the rules' settings read from
//! `[sender]` the same way at start and on reload.

use std::path::PathBuf;

use spoolpost_ops::config::{Loaded, SenderSection};
use spoolpost_ops::progress::ProgressFlags;
use spoolpost_ops::route::Router;
use spoolpost_protocol::spool::Spool;

use crate::rules::backoff::RetryPolicy;
use crate::rules::breaker::BreakerConfig;

/// Everything `run` needs, resolved from the command line and config file.
pub struct Plan {
    pub spool: Spool,
    pub router: Router,
    pub settings: SenderSection,
    pub once: bool,
    pub events: Option<PathBuf>,
    pub progress: ProgressFlags,
    /// The config file SIGHUP reloads from (none with `--url`), and what
    /// was loaded from it at start.
    pub config: Option<PathBuf>,
    pub loaded: Option<Loaded>,
}

/// The breaker settings of `[sender]`, at start and on reload.
pub fn breaker_config(settings: &SenderSection) -> BreakerConfig {
    BreakerConfig {
        failures: settings.breaker_failures,
        open_initial: settings.breaker_open_initial,
        open_max: settings.breaker_open_max,
    }
}

/// The retry policy of `[sender]`, at start and on reload.
pub fn retry_policy(settings: &SenderSection) -> RetryPolicy {
    RetryPolicy {
        initial: settings.backoff_initial,
        max: settings.backoff_max,
        max_attempts: settings.max_attempts,
        max_age: settings.max_age,
    }
}
