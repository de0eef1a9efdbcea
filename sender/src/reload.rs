//! SIGHUP in daemon mode: reopen `--events`, read the configuration and
//! every secret, `ca_file` and client certificate again, and put a new
//! [`Config`] in place for the work that starts from now on: receivers'
//! URLs, methods, headers, timeouts, connection settings (TLS, proxy, HTTP
//! version: new HTTP clients), answer rules, routes, backoff
//! and breaker settings. Jobs in flight keep the snapshot they started
//! with. A configuration that does not validate, whose secrets do not
//! resolve or whose clients cannot be built is refused and the old one
//! keeps running. What the per-receiver state or the process is built on
//! (spool, the set of receiver names, their `concurrency`/`adaptive`/`rate_limit`, the
//! rest of `[sender]`) keeps its value until a restart, and the report
//! names it.

use std::path::PathBuf;
use std::time::SystemTime;

use spoolpost_ops::config::Loaded;
use spoolpost_ops::config_load;
use spoolpost_ops::reload;
use spoolpost_ops::route::Router;

use crate::net::send::Http;
use crate::plan::{breaker_config, retry_policy};
use crate::sched::shared::{Config, Shared};

/// What a running sender was started with, to reload from.
pub struct Reloader {
    config: Option<PathBuf>,
    events: Option<PathBuf>,
    /// What only a restart changes, as the running configuration has it.
    running: Vec<(&'static str, String)>,
}

impl Reloader {
    pub fn new(config: Option<PathBuf>, events: Option<PathBuf>, loaded: Option<&Loaded>) -> Self {
        Reloader {
            config,
            events,
            running: loaded.map(needs_restart).unwrap_or_default(),
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
            None => Ok(Vec::new()),
            Some(path) => self.reload(path, shared),
        };
        reload::report(&shared.events, "sender", outcome)
    }

    fn reload(&self, path: &std::path::Path, shared: &Shared) -> Result<Vec<String>, String> {
        let loaded = config_load::load(path).map_err(|e| e.to_string())?;
        loaded.check_secrets().map_err(|e| e.to_string())?;
        let router = Router::from_config(&loaded).map_err(|e| e.to_string())?;
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
        let rejudge_before = if (policy.initial, policy.max) != (old.policy.initial, old.policy.max)
        {
            Some(SystemTime::now())
        } else {
            old.rejudge_before
        };
        let same_receivers = router.receivers().iter().map(|r| &r.name).eq(&shared.names);
        // Receivers' state is indexed by name; another set of names keeps
        // the running receivers and routes (named in the report).
        let snapshot = if same_receivers {
            // Builds the clients anew, so `ca_file` is read again.
            let http = Http::new(router.receivers())?;
            Config {
                router: router.into(),
                http: http.into(),
                policy,
                rejudge_before,
            }
        } else {
            Config {
                router: old.router.clone(),
                http: old.http.clone(),
                policy,
                rejudge_before,
            }
        };
        shared.circuits.reconfigure(breaker_config(settings));
        // New endpoints get their circuits before any file can be offered
        // to them; dropped ones are forgotten once no job answers them.
        for (i, r) in snapshot.router.receivers().iter().enumerate() {
            shared
                .circuits
                .set_endpoints(i, r.endpoint_labels(), crate::sched::clock::now());
        }
        shared.swap(snapshot);
        Ok(restart)
    }
}

/// The settings a reload does not apply, each rendered for comparison.
fn needs_restart(loaded: &Loaded) -> Vec<(&'static str, String)> {
    let c = &loaded.config;
    let s = &c.sender;
    let receivers: Vec<String> = c
        .receivers
        .iter()
        .map(|(name, r)| {
            let r = r.get_ref();
            // Slots and pace are sized from these when the sender starts.
            format!(
                "{name}: {} {} {:?}",
                r.concurrency, r.adaptive, r.rate_limit
            )
        })
        .collect();
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
        ("receivers", format!("{receivers:?}")),
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
        assert_eq!(
            names(
                &base
                    .replace("http://h/", "http://h/\"\nconcurrency = \"2")
                    .replace("concurrency = \"2\"", "concurrency = 2")
            ),
            ["receivers"]
        );
        assert_eq!(
            names(&base.replace("http://h/", "http://h/\"\nrate_limit = \"5/s")),
            ["receivers"],
            "the rate limit's bucket is made at start"
        );
        assert_eq!(
            names(
                &base
                    .replace("receivers.r", "receivers.s")
                    .replace("\"r\"", "\"s\"")
            ),
            ["receivers"]
        );
    }
}
