//! The reporter: answers "is the backlog growing, how old is the oldest
//! waiting file, and which receiver is failing why" from the spool and the
//! event lines, and carries out operators' requeue and hold actions through
//! the spool protocol.
//!
//! [`cli`] is the command line and [`run`] one run of it, from [`setup`]
//! (the configuration), [`gather`] (a report) and [`output`] (writing it).
//! [`census`] reads
//! the spool, [`events`] the event lines; [`report`] is what they add up to,
//! with the metrics [`check`]'s `--fail-if` rules compare; [`table`] and
//! [`prometheus`] render it (JSON is the report's own shape). [`watch`] is
//! `--watch` (the live screen, SIGHUP), with [`spark`]'s trends and
//! [`follow`] reading a pipe as it flows, and [`endpoint`] serving its
//! Prometheus text over HTTP ([`endpoint_rules`] says what it may bind and answer). [`actions`]
//! holds, releases and requeues; [`list`] and [`flush`] are the queue
//! tools; [`replay`] sends delivered files again, picked by
//! [`replay_rules`]; [`one_file`] shows or deletes one file. `--check` is [`check::preflight`].

pub mod actions;
pub mod census;
pub mod check;
pub mod cli;
pub mod endpoint;
pub mod endpoint_rules;
pub mod events;
pub mod flush;
pub mod follow;
pub mod gather;
pub mod list;
pub mod one_file;
pub mod output;
pub mod prometheus;
pub mod replay;
pub mod replay_rules;
pub mod report;
pub mod run;
pub mod setup;
pub mod spark;
pub mod table;
pub mod unexpected;
pub mod watch;

pub use cli::Args;
pub use gather::make_report;
pub use run::{CHECK_FAILED, main_with};
