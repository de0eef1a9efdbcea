//! The spool protocol: the folders, the file names, admission of a new
//! file, the locks, and the renames that move a file from one state to the
//! next, with the records written beside it (reasons, circuits, paces) and
//! the JSON event lines that report each move.
//!
//! The collector, sender and reporter never talk to each other; they only see
//! the spool. Everything that touches the spool's layout therefore lives here,
//! so that there is exactly one place that decides how a file changes state.
//! `docs/spool.md` describes the same protocol for people writing compatible
//! tools; this crate is what such a tool written in Rust would depend on, so
//! it depends on no async runtime, command-line, TLS or terminal crate.

pub mod admit;
pub mod circuits;
pub mod discard;
pub mod event;
pub mod fsops;
pub mod fullname;
pub mod held;
pub mod layout;
pub mod lock;
pub mod name;
pub mod paces;
pub mod rates;
pub mod reason;
pub mod receiver;
pub mod replay;
pub mod replay_progress;
pub mod spool;
pub mod uploads;

#[cfg(test)]
mod layout_tests;
