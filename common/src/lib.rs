//! What every spoolpost binary shares: the spool protocol (folders, names, the
//! renames that move a file from one state to the next), the configuration file
//! and its routing rules, the JSON event lines, logging set-up and exit codes.
//!
//! The collector, sender and reporter never talk to each other; they only see
//! the spool. Everything that touches the spool's layout therefore lives here,
//! so that there is exactly one place that decides how a file changes state.
//! `docs/spool.md` describes the same protocol for people writing compatible
//! tools.

pub mod admit;
pub mod circuits;
pub mod config;
pub mod config_check;
pub mod discard;
pub mod event;
pub mod exit;
pub mod fsops;
pub mod fullname;
pub mod generate;
pub mod held;
pub mod lock;
pub mod logging;
pub mod name;
pub mod notify;
pub mod paces;
pub mod preflight;
pub mod progress;
pub mod proxy;
pub mod reason;
pub mod redact;
pub mod reload;
pub mod replay;
pub mod route;
pub mod shutdown;
pub mod spool;
pub mod watch;
