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
//! A renamed receiver is one of each. A configuration that does not
//! validate, whose secrets do not resolve or whose clients cannot be built
//! is refused and the old one keeps running. What the process is built on
//! (spool, the rest of `[sender]`) and what a kept receiver's slots and
//! pace are sized from (its `concurrency`, `adaptive`, `rate_limit`) keep
//! their value until a restart, and the report names them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use spoolpost_ops::config::Loaded;
use spoolpost_ops::config_load;
use spoolpost_ops::reload::{self, Applied};
use spoolpost_ops::route::Router;

use crate::net::send::Http;
use crate::plan::{breaker_config, retry_policy};
use crate::sched::shared::{Config, LEFT_KEPT, Left, ReceiverSlots, Shared};

/// What a running sender was started with, to reload from.
pub struct Reloader {
    config: Option<PathBuf>,
    events: Option<PathBuf>,
    /// What only a restart changes, as the running configuration has it.
    running: Vec<(&'static str, String)>,
    /// `[sender] concurrency`, which bounds a new receiver's slots.
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
        let http = Http::new(router.receivers())?;
        let mut restart: Vec<String> = self
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
        let before: Vec<(&str, &str)> = (old.receivers.iter())
            .map(|s| (s.name.as_str(), s.made_with.as_str()))
            .collect();
        let made: Vec<String> = (router.receivers().iter())
            .map(|r| ReceiverSlots::made_with(&r.config))
            .collect();
        let after: Vec<(&str, &str)> = (router.receivers().iter())
            .zip(&made)
            .map(|(r, m)| (r.name.as_str(), m.as_str()))
            .collect();
        let came_and_went = compare(&before, &after);
        restart.extend(came_and_went.restart_needed);
        // A kept name keeps its slots and pace; a new one gets fresh ones.
        let receivers = (router.receivers().iter())
            .map(|r| match old.receivers.iter().find(|s| s.name == r.name) {
                Some(kept) => kept.clone(),
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
    /// `receivers.NAME` for each kept receiver whose slots or pace would
    /// be sized otherwise.
    restart_needed: Vec<String>,
}

/// Compares receivers by name, each given with what its slots and pace
/// are made with ([`ReceiverSlots::made_with`]).
fn compare(before: &[(&str, &str)], after: &[(&str, &str)]) -> CameAndWent {
    let mut out = CameAndWent::default();
    for (name, made) in after {
        match before.iter().find(|(n, _)| n == name) {
            None => out.added.push(name.to_string()),
            Some((_, was)) if was != made => out.restart_needed.push(format!("receivers.{name}")),
            Some(_) => {}
        }
    }
    for (name, _) in before {
        if !after.iter().any(|(n, _)| n == name) {
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
        let same = compare(&[("a", "1"), ("b", "1")], &[("b", "1"), ("a", "1")]);
        assert_eq!(same, CameAndWent::default());
        let renamed = compare(&[("a", "1"), ("b", "1")], &[("a", "1"), ("c", "1")]);
        assert_eq!(renamed.added, ["c"]);
        assert_eq!(renamed.removed, ["b"]);
        assert!(renamed.restart_needed.is_empty());
        // The rate limit's bucket and the slots are made when the name
        // comes: changing them for a kept name needs a restart.
        let resized = compare(&[("a", "1")], &[("a", "2"), ("b", "3")]);
        assert_eq!(resized.restart_needed, ["receivers.a"]);
        assert_eq!(resized.added, ["b"]);
    }
}
