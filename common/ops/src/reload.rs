//! What a reload (SIGHUP) reports, shared by every program that reloads:
//! the `"event":"reload"` line and the settings that only a restart can
//! change. Deciding what to re-read is each program's own business; this
//! module keeps the report the same everywhere.

use std::time::SystemTime;

use serde::Serialize;

use spoolpost_protocol::event::{EventSink, rfc3339};

/// The event line a reload writes, accepted or refused.
#[derive(Debug, Serialize)]
pub struct ReloadEvent {
    pub time: String,
    pub event: &'static str,
    pub program: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Settings that changed in the file but keep their old value until
    /// a restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
    /// Receivers this reload brought in (by name): they start fresh.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receivers_added: Vec<String>,
    /// Receivers this reload let go (by name): their waiting files follow
    /// the new routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receivers_removed: Vec<String>,
}

/// What an accepted reload changed that the report names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Settings that changed in the file but keep their old value until
    /// a restart.
    pub restart_needed: Vec<String>,
    pub receivers_added: Vec<String>,
    pub receivers_removed: Vec<String>,
}

/// Logs and writes the outcome of a reload; `outcome` names the settings
/// that need a restart.
pub fn report(
    events: &EventSink,
    program: &'static str,
    outcome: Result<Vec<String>, String>,
) -> bool {
    let outcome = outcome.map(|restart_needed| Applied {
        restart_needed,
        ..Applied::default()
    });
    report_applied(events, program, outcome)
}

/// [`report`], for a program whose reload can also add and remove
/// receivers.
pub fn report_applied(
    events: &EventSink,
    program: &'static str,
    outcome: Result<Applied, String>,
) -> bool {
    let (ok, error, applied) = match outcome {
        Ok(applied) => {
            let (added, removed) = (&applied.receivers_added, &applied.receivers_removed);
            if !added.is_empty() || !removed.is_empty() {
                tracing::info!(added = %added.join(", "), removed = %removed.join(", "), "reload: receivers came and went");
            }
            let restart = &applied.restart_needed;
            if !restart.is_empty() {
                tracing::warn!(settings = %restart.join(", "), "reloaded; these settings need a restart and keep their old value");
            } else {
                tracing::info!("reloaded the configuration");
            }
            (true, None, applied)
        }
        Err(e) => {
            tracing::error!(error = %e, "reload refused; the old configuration keeps running");
            (false, Some(e), Applied::default())
        }
    };
    events.emit_record(&ReloadEvent {
        time: rfc3339(SystemTime::now()),
        event: "reload",
        program,
        ok,
        error,
        restart_needed: applied.restart_needed,
        receivers_added: applied.receivers_added,
        receivers_removed: applied.receivers_removed,
    });
    ok
}

/// The names of settings whose old and new values differ, from pairs of
/// (name, changed).
pub fn changed(settings: &[(&str, bool)]) -> Vec<String> {
    settings
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_settings_are_named() {
        assert_eq!(
            changed(&[("spool", true), ("threads", false)]),
            vec!["spool".to_string()]
        );
    }

    #[test]
    fn a_refused_reload_line_says_why() {
        let line = serde_json::to_string(&ReloadEvent {
            time: "t".into(),
            event: "reload",
            program: "collector",
            ok: false,
            error: Some("c.toml:3: unknown field".into()),
            restart_needed: vec![],
            receivers_added: vec![],
            receivers_removed: vec![],
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"time":"t","event":"reload","program":"collector","ok":false,"error":"c.toml:3: unknown field"}"#
        );
    }

    #[test]
    fn a_reload_line_names_the_receivers_that_came_and_went() {
        let line = serde_json::to_string(&ReloadEvent {
            time: "t".into(),
            event: "reload",
            program: "sender",
            ok: true,
            error: None,
            restart_needed: vec![],
            receivers_added: vec!["b".into()],
            receivers_removed: vec!["a".into()],
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"time":"t","event":"reload","program":"sender","ok":true,"receivers_added":["b"],"receivers_removed":["a"]}"#
        );
    }
}
