//! spoolpost's integration tests: the real binaries, run as processes over
//! real files against the real test receiver on 127.0.0.1. One test binary
//! (one link, one harness), one file per behaviour it specifies:
//!
//! - sending: `delivery`, `retry`, `circuits`, `endpoints` (several URLs,
//!   failover), `hanging_endpoint` (an endpoint that never answers),
//!   `adaptive` (each receiver's pace and rate limit),
//!   `compression`, `tls`, `proxies`, `http_versions`, `object_storage`
//!   (S3-compatible receivers, against a real S3 server) and
//!   `object_storage_parts` (their multipart uploads and sized bodies);
//! - collecting: `collection`;
//! - running as a service: `signals`, `reload` (SIGHUP),
//!   `reload_receivers` (receivers added, removed, renamed), `sd_notify`,
//!   `configuration` (`--print-config`, every `--check` and refusal);
//! - the operator's tools: `reporting`, `metrics_endpoint`, `queue` (list,
//!   flush, requeue, hold), `replay`, `terminal` (a person at a terminal),
//!   `first_hour` (what trying the README as a newcomer found);
//! - what ships: `dist` (units, man pages, packages), `documented` (every
//!   command the docs show parses);
//! - `conformance`: the rules of docs/spool.md that other implementations
//!   must follow, checked against a spool as a second implementation would
//!   leave it;
//! - `bad_input`: the fault catalogue, one small case per hostile input or
//!   fault;
//! - `regression`: defects found outside the catalogue's families, and the
//!   naming rule for every regression test (`issue_N_ITEM_...`).
//!
//! The harness is `spoolpost_tests::harness` (a temporary spool, the
//! binaries, `ConfigFile` for the configuration, `spawn_ready` to start a
//! daemon and wait for its READY=1); `support` holds set-ups several files
//! share. A test that cannot run here fails, or is `#[ignore]`d with the
//! reason (the package tests, which need dist/package's output).
//!
//! `cargo test -p spoolpost-tests --test integration MODULE::` runs one.

mod adaptive;
mod bad_input;
mod circuits;
mod collection;
mod compression;
mod configuration;
mod conformance;
mod delivery;
mod dist;
mod documented;
mod endpoints;
mod first_hour;
mod hanging_endpoint;
mod http_versions;
mod metrics_endpoint;
mod object_storage;
mod object_storage_parts;
mod proxies;
mod queue;
mod regression;
mod reload;
mod reload_receivers;
mod replay;
mod reporting;
mod retry;
mod sd_notify;
mod signals;
mod support;
mod terminal;
mod tls;
