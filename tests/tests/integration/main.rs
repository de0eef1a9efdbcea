//! spoolpost's integration tests: the real binaries, run as processes over
//! real files against the real test receiver on 127.0.0.1. One test binary
//! (one link, one harness), one module per subject:
//!
//! - `sender`, `collector`, `reporter`: each program on its own and with
//!   the others;
//! - `configuration`: the file the three share, as `--print-config` shows
//!   it and as every `--check` checks it;
//! - `conformance`: the rules of docs/spool.md that other implementations
//!   must follow, checked against a spool as a second implementation would
//!   leave it;
//! - `lifecycle`, `queue`, `terminal`, `adaptive`, `dist`: running as a
//!   service, the queue tools, a person at a terminal, each receiver's pace,
//!   and what dist/ ships;
//! - `bad_input`: the fault catalogue, one small case per hostile input or
//!   fault;
//! - `regression`: defects found outside the catalogue's families;
//! - `replay`: sending delivered files again (`reporter replay`).
//!
//! `cargo test -p spoolpost-tests --test integration MODULE::` runs one.

mod adaptive;
mod bad_input;
mod collector;
mod configuration;
mod conformance;
mod dist;
mod documented;
mod hanging_endpoint;
mod lifecycle;
mod queue;
mod regression;
mod reload_receivers;
mod replay;
mod reporter;
mod sender;
mod support;
mod terminal;
