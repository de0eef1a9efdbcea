//! What the spoolpost binaries share besides the spool protocol (the
//! `spoolpost-protocol` crate): the configuration file (types, reading,
//! checks), its routing rules and proxies, redaction of secrets, logging
//! set-up, exit codes, signals, sd_notify, reload reports, man pages and
//! completions, the `--check` spool checks, the progress line and the spool
//! watcher.

pub mod config;
pub mod config_check;
pub mod config_doc;
pub mod config_dump;
pub mod config_load;
pub mod exit;
pub mod generate;
pub mod hint;
pub mod logging;
pub mod notify;
pub mod preflight;
pub mod progress;
pub mod proxy;
pub mod redact;
pub mod reload;
pub mod route;
pub mod signals;
pub mod watch;
