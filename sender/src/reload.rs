//! SIGHUP in daemon mode: reopen `--events`, read the configuration and
//! every header secret again, and apply the new headers to the requests
//! that start from now on (requests in flight keep the headers they were
//! sent with). A configuration that does not validate, or whose secrets do
//! not resolve, is refused and the old one keeps running. Everything else
//! that changed (spool, `[sender]`, receivers' other settings, routes)
//! keeps its value until a restart, and the report names it.

use std::path::PathBuf;

use spoolpost_common::config::{self, Loaded};
use spoolpost_common::reload;
use spoolpost_common::route::Router;

use crate::shared::Shared;

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
        let loaded = config::load(path).map_err(|e| e.to_string())?;
        loaded.check_secrets().map_err(|e| e.to_string())?;
        let router = Router::from_config(&loaded).map_err(|e| e.to_string())?;
        let fresh = needs_restart(&loaded);
        let mut restart: Vec<String> = self
            .running
            .iter()
            .zip(&fresh)
            .filter(|(old, new)| old != new)
            .map(|((name, _), _)| name.to_string())
            .collect();
        let names = |r: &Router| {
            r.receivers()
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        if names(&router) == names(&shared.router) {
            shared.http.replace_headers(router.receivers())?;
        } else if !restart.iter().any(|s| s == "receivers") {
            restart.push("receivers".into());
        }
        Ok(restart)
    }
}

/// The settings a reload does not apply, each rendered for comparison.
fn needs_restart(loaded: &Loaded) -> Vec<(&'static str, String)> {
    let c = &loaded.config;
    let receivers: Vec<String> = c
        .receivers
        .iter()
        .map(|(name, r)| {
            let mut r = r.get_ref().clone();
            // Headers are applied by a reload.
            r.headers.clear();
            format!("{name}: {r:?}")
        })
        .collect();
    let routes: Vec<String> = c
        .routes
        .iter()
        .map(|r| {
            let r = r.get_ref();
            format!("{:?} {:?} {}", r.glob, r.regex, r.receiver.get_ref())
        })
        .collect();
    vec![
        ("spool", format!("{:?}", c.spool)),
        ("[sender]", format!("{:?}", c.sender)),
        ("receivers", format!("{receivers:?}")),
        ("routes", format!("{routes:?}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> Loaded {
        config::parse(std::path::Path::new("t.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn headers_and_moved_lines_need_no_restart_other_changes_are_named() {
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
        assert_eq!(
            names(&format!("[sender]\nbackoff_max = \"1m\"\n{base}")),
            ["[sender]"]
        );
        assert_eq!(
            names(&base.replace("http://h/", "http://g/")),
            ["receivers"]
        );
        assert_eq!(names(&base.replace("\"*\"", "\"*.json\"")), ["routes"]);
    }
}
