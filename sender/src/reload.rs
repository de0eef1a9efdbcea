//! SIGHUP in daemon mode: reopen `--events`, read the configuration and
//! every secret, `ca_file` and client certificate again, and put a new
//! [`Config`] in place for the work that starts from now on: receivers'
//! URLs, methods, headers, timeouts, connection settings (TLS, proxy, HTTP
//! version: new HTTP clients), answer rules, routes, backoff and breaker
//! settings, and the set of receivers itself. Jobs in flight keep the
//! snapshot they started with, so a file on its way to a receiver the
//! reload removed finishes there.
//!
//! Every receiver's state (slots, pace and rate bucket, circuits, holds,
//! the records published beside the claims) belongs to its name: a name
//! the reload keeps keeps its state, even when its URL changed (each
//! endpoint's circuit belongs to its URL, so a new URL's starts closed); a
//! new name starts fresh, as at a start; a name gone is let go, and its
//! waiting files follow the new routes (or go to `error/` as `no_route`).
//! A renamed receiver is one of each. A kept receiver's `concurrency`,
//! `adaptive` and `rate_limit` resize its slots, pace and rate bucket in
//! place ([`ReceiverSlots::resize`]): what its pace learnt is kept. A
//! configuration that does not validate, whose secrets do not resolve or
//! whose clients cannot be built is refused and the old one keeps running.
//! What the process is built on (spool, the rest of `[sender]`) keeps its
//! value until a restart, and the report names it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use spoolpost_ops::config::Loaded;
use spoolpost_ops::config_load;
use spoolpost_ops::reload::{self, Applied};
use spoolpost_ops::route::Router;

use crate::net::send::Http;
use crate::plan::{breaker_config, retry_policy};
use crate::sched::shared::{Config, LEFT_KEPT, Left, ReceiverSlots, Shared, Sizing};

/// What a running sender was started with, to reload from.
pub struct Reloader {
    config: Option<PathBuf>,
    events: Option<PathBuf>,
    /// What only a restart changes, as the running configuration has it.
    running: Vec<(&'static str, String)>,
    /// `[sender] concurrency`, which bounds every receiver's slots.
    concurrency: usize,
}

impl Reloader {
    pub fn new(
        config: Option<PathBuf>,
        events: Option<PathBuf>,
        loaded: Option<&Loaded>,
        concurrency: usize,
    ) -> Self {
        Reloader {
            config,
            events,
            running: loaded.map(needs_restart).unwrap_or_default(),
            concurrency,
        }
    }

    /// Reopens the events file, reloads, and reports it. Returns whether
    /// the new configuration was taken.
    pub fn apply(&self, shared: &Shared) -> bool {
        if let Err(e) = shared.events.reopen_shared(self.events.as_deref()) {
            tracing::error!(error = %e, "cannot reopen the events file; writing to the old one");
        }
        let outcome = match &self.config {
            // --url: nothing to read again but the events file.
            None => Ok(Applied::default()),
            Some(path) => self.reload(path, shared),
        };
        reload::report_applied(&shared.events, "sender", outcome)
    }

    fn reload(&self, path: &std::path::Path, shared: &Shared) -> Result<Applied, String> {
        let loaded = config_load::load(path).map_err(|e| e.to_string())?;
        loaded.check_secrets().map_err(|e| e.to_string())?;
        let router = Router::from_config(&loaded).map_err(|e| e.to_string())?;
        // Builds the clients anew, so `ca_file` is read again.
        let http = Http::new(router.receivers())?.with_spool(shared.spool.root());
        let restart: Vec<String> = self
            .running
            .iter()
            .zip(needs_restart(&loaded))
            .filter(|(old, new)| *old != new)
            .map(|((name, _), _)| name.to_string())
            .collect();
        let settings = &loaded.config.sender;
        let old = shared.config();
        let policy = retry_policy(settings);
        let (rejudge_before, superseded) =
            if (policy.initial, policy.max) != (old.policy.initial, old.policy.max) {
                let (initial, max) = old.superseded.unwrap_or_default();
                let superseded = (initial.max(old.policy.initial), max.max(old.policy.max));
                (Some(SystemTime::now()), Some(superseded))
            } else {
                (old.rejudge_before, old.superseded)
            };
        let before: Vec<&str> = old.receivers.iter().map(|s| s.name.as_str()).collect();
        let after: Vec<&str> = (router.receivers().iter())
            .map(|r| r.name.as_str())
            .collect();
        let came_and_went = compare(&before, &after);
        // A kept name keeps its slots and pace, resized to its settings
        // now; a new one gets fresh ones.
        let receivers = (router.receivers().iter())
            .map(|r| match old.receivers.iter().find(|s| s.name == r.name) {
                Some(kept) => {
                    let to = Sizing::of(&r.config, self.concurrency);
                    if kept.resize(&shared.spool, to) {
                        tracing::info!(
                            receiver = %r.name,
                            concurrency = to.bound,
                            adaptive = to.adaptive,
                            rate_limit = ?to.rate_limit.map(|l| l.to_string()),
                            "receiver resized"
                        );
                    }
                    kept.clone()
                }
                None => ReceiverSlots::new(&shared.spool, r, self.concurrency),
            })
            .collect();
        // What a receiver let go learnt of its pace is kept for its return.
        for gone in &came_and_went.removed {
            if let Some(s) = old.receivers.iter().find(|s| &s.name == gone) {
                s.pace.save();
            }
        }
        shared.circuits.reconfigure(breaker_config(settings));
        // New receivers and endpoints get their circuits before any file
        // can be offered to them; dropped ones are forgotten, and a job
        // still answering one tells nobody.
        let endpoints: Vec<(String, Vec<String>)> = (router.receivers().iter())
            .map(|r| (r.name.clone(), r.endpoint_labels().to_vec()))
            .collect();
        shared
            .circuits
            .set_receivers(&endpoints, crate::sched::clock::now());
        // Files waiting on a receiver let go wait no longer.
        let mut left = old.left.clone();
        if !came_and_went.removed.is_empty() {
            left.push(Arc::new(Left {
                at: SystemTime::now(),
                router: old.router.clone(),
                names: came_and_went.removed.clone(),
            }));
            let over = left.len().saturating_sub(LEFT_KEPT);
            left.drain(..over);
        }
        shared.swap(Config {
            router: Arc::new(router),
            http: Arc::new(http),
            receivers,
            policy,
            rejudge_before,
            superseded,
            left,
        });
        Ok(Applied {
            restart_needed: restart,
            receivers_added: came_and_went.added,
            receivers_removed: came_and_went.removed,
        })
    }
}

/// How the receivers of a reload compare with the running ones.
#[derive(Debug, Default, PartialEq, Eq)]
struct CameAndWent {
    added: Vec<String>,
    removed: Vec<String>,
}

/// Compares receivers by name.
fn compare(before: &[&str], after: &[&str]) -> CameAndWent {
    let mut out = CameAndWent::default();
    for name in after {
        if !before.contains(name) {
            out.added.push(name.to_string());
        }
    }
    for name in before {
        if !after.contains(name) {
            out.removed.push(name.to_string());
        }
    }
    out
}

/// The settings a reload does not apply, each rendered for comparison.
fn needs_restart(loaded: &Loaded) -> Vec<(&'static str, String)> {
    let c = &loaded.config;
    let s = &c.sender;
    let sender = (
        s.concurrency,
        s.threads,
        s.delete_delivered,
        s.fsync,
        s.grace,
        s.rescan_interval,
    );
    vec![
        ("spool", format!("{:?}", c.spool)),
        ("[sender]", format!("{sender:?}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> Loaded {
        config_load::parse(std::path::Path::new("t.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn what_a_reload_applies_needs_no_restart_the_rest_is_named() {
        let base = "[receivers.r]\nurl = \"http://h/\"\n[receivers.r.headers]\nA = \"1\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n";
        let names = |text: &str| -> Vec<&str> {
            needs_restart(&loaded(base))
                .into_iter()
                .zip(needs_restart(&loaded(text)))
                .filter(|(a, b)| a != b)
                .map(|((n, _), _)| n)
                .collect()
        };
        assert!(names(&format!("\n\n{}", base.replace("A = \"1\"", "A = \"2\""))).is_empty());
        assert!(
            names(&format!(
                "[sender]\nbackoff_max = \"1m\"\nbreaker_failures = 9\n{base}"
            ))
            .is_empty()
        );
        assert!(names(&base.replace("http://h/", "http://g/\"\ntimeout = \"3s")).is_empty());
        assert!(names(&base.replace("\"*\"", "\"*.json\"")).is_empty());
        assert_eq!(
            names(&format!("[sender]\nconcurrency = 3\n{base}")),
            ["[sender]"]
        );
        assert!(
            names(
                &base
                    .replace("receivers.r", "receivers.s")
                    .replace("\"r\"", "\"s\"")
            )
            .is_empty(),
            "another set of receivers is a reload's to apply"
        );
    }

    #[test]
    fn receivers_compare_by_name_whatever_their_order() {
        let same = compare(&["a", "b"], &["b", "a"]);
        assert_eq!(same, CameAndWent::default());
        let renamed = compare(&["a", "b"], &["a", "c"]);
        assert_eq!(renamed.added, ["c"]);
        assert_eq!(renamed.removed, ["b"]);
    }
}
