//! The report: what the spool, the circuits and the event lines say, in one
//! value that every output form renders, and the whole-spool metrics that
//! `--fail-if` reads. [`METRICS`] is the one home of those metrics: their
//! `--fail-if` names, their JSON fields (under `metrics`) and their
//! Prometheus names all come from it.

use std::collections::BTreeMap;

use serde::Serialize;
use spoolpost_ops::config::RateLimit;
use spoolpost_protocol::circuits::{Circuit, CircuitState};
use spoolpost_protocol::paces::ReceiverPace;
use spoolpost_protocol::replay_progress::Seen;

use crate::census::{ReceiverBacklog, Totals, Unexpected};
use crate::events::EventStats;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub spool: String,
    /// RFC 3339 time the report was made.
    pub time: String,
    /// Per state: files, bytes, oldest age in seconds.
    pub states: BTreeMap<&'static str, Totals>,
    /// Upper bounds (seconds) of the backlog age buckets; null is "older".
    pub age_buckets: Vec<Option<u64>>,
    pub receivers: BTreeMap<String, ReceiverReport>,
    pub errors: Vec<ErrorCount>,
    /// Present when event lines were read.
    pub events: Option<EventStats>,
    /// Entries no program handles, which would otherwise sit unseen.
    pub unexpected: Unexpected,
    /// `reporter replay`s in progress, and dead ones' last progress until
    /// the next replay clears them away.
    pub replays: Vec<Seen>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReceiverReport {
    #[serde(flatten)]
    pub spool: ReceiverBacklog,
    /// The worst state over live senders; absent when no sender reports it.
    pub circuit: Option<Circuit>,
    pub held: bool,
    /// The adaptive limit, in flight and latency baseline, summed over
    /// live senders (each sender's own under `senders`); absent when no
    /// live sender reports them.
    pub pace: Option<ReceiverPace>,
    /// `insecure_skip_verify = true`: its certificate is not verified.
    pub insecure: bool,
    /// Its `rate_limit`'s bucket shared by the senders on the spool;
    /// absent without a rate limit configured or a bucket in `rate/`.
    pub rate: Option<RateReport>,
}

/// A receiver's shared rate: its limit, the bucket's tokens now and who
/// took from it lately.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RateReport {
    /// The configured `rate_limit` (with --config), else the one the
    /// latest taker keeps to; absent when neither is known.
    pub limit: Option<String>,
    /// Requests per second the limit allows.
    pub per_second: Option<f64>,
    /// Requests that could start back to back now, and at most.
    pub tokens: Option<u32>,
    pub burst: Option<u32>,
    /// Senders that took from it in the last ten minutes, the latest first.
    pub takers: Vec<RateTaker>,
}

impl RateReport {
    /// What to show of a receiver's rate, from its configured limit and
    /// its bucket as found in `rate/`, at `now` (nanoseconds since the
    /// Unix epoch); `None` when there is neither.
    pub fn of(
        configured: Option<RateLimit>,
        found: Option<&spoolpost_protocol::rates::Found>,
        now: u64,
    ) -> Option<RateReport> {
        if configured.is_none() && found.is_none() {
            return None;
        }
        let takers = found.map(|f| f.takers.as_slice()).unwrap_or_default();
        let limit = configured.or_else(|| takers.first().and_then(|t| t.limit.parse().ok()));
        let tat = found.and_then(|f| f.tat);
        let now_secs = now / 1_000_000_000;
        Some(RateReport {
            limit: limit.map(|l| l.to_string()),
            per_second: limit.map(|l| f64::from(l.count) / l.per.as_secs_f64()),
            tokens: limit.map(|l| spoolpost_protocol::rates::tokens(l.count, l.per, tat, now)),
            burst: limit.map(|l| spoolpost_protocol::rates::burst(l.count)),
            takers: takers
                .iter()
                .map(|t| RateTaker {
                    pid: t.pid,
                    host: t.host.clone(),
                    limit: t.limit.clone(),
                    last_take_seconds_ago: now_secs.saturating_sub(t.last),
                })
                .collect(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateTaker {
    pub pid: u32,
    pub host: String,
    /// The rate limit it keeps to (all takers should agree).
    pub limit: String,
    /// Seconds since its latest take (rounded to the second it noted).
    pub last_take_seconds_ago: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorCount {
    pub receiver: String,
    pub class: String,
    pub status: Option<u16>,
    pub files: u64,
}

/// A whole-spool number a health check can compare against a threshold.
#[derive(Debug)]
pub struct Metric {
    /// The `--fail-if` name and the JSON field under `metrics`.
    pub name: &'static str,
    /// The Prometheus family, without the `spoolpost_` prefix.
    pub prometheus: &'static str,
    pub help: &'static str,
    /// Seconds, written as a duration (`10m`) in checks and messages.
    pub duration: bool,
    pub value: fn(&Report) -> f64,
}

pub const METRICS: &[Metric] = &[
    Metric {
        name: "backlog_age",
        prometheus: "spool_backlog_age_seconds",
        help: "Age of the oldest file waiting or being sent.",
        duration: true,
        value: |r| r.backlog().oldest_age_seconds.unwrap_or(0.0),
    },
    Metric {
        name: "backlog_files",
        prometheus: "spool_backlog_files",
        help: "Files waiting or being sent, all receivers.",
        duration: false,
        value: |r| r.backlog().files as f64,
    },
    Metric {
        name: "backlog_bytes",
        prometheus: "spool_backlog_bytes",
        help: "Bytes waiting or being sent, all receivers.",
        duration: false,
        value: |r| r.backlog().bytes as f64,
    },
    Metric {
        name: "errors",
        prometheus: "spool_error_files",
        help: "Files in error/.",
        duration: false,
        value: |r| r.states.get("error").map_or(0, |t| t.files) as f64,
    },
    Metric {
        name: "open_circuits",
        prometheus: "open_circuits",
        help: "Receivers whose circuit is open.",
        duration: false,
        value: |r| r.open_circuits() as f64,
    },
    Metric {
        name: "held_receivers",
        prometheus: "held_receivers",
        help: "Receivers an operator holds.",
        duration: false,
        value: |r| r.receivers.values().filter(|r| r.held).count() as f64,
    },
    Metric {
        name: "unexpected",
        prometheus: "unexpected_entries",
        help: "Entries in the spool that no program handles (dot-files in incoming/, loose files in sending/, ...).",
        duration: false,
        value: |r| r.unexpected.entries as f64,
    },
];

impl Report {
    /// Files waiting or being sent: incoming/ and sending/ together.
    pub fn backlog(&self) -> Totals {
        let mut t = Totals::default();
        for state in ["incoming", "sending"] {
            let Some(s) = self.states.get(state) else {
                continue;
            };
            t.files += s.files;
            t.bytes += s.bytes;
            t.oldest_age_seconds = match (t.oldest_age_seconds, s.oldest_age_seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        t
    }

    pub fn open_circuits(&self) -> usize {
        self.receivers
            .values()
            .filter(|r| {
                r.circuit
                    .as_ref()
                    .is_some_and(|c| c.state == CircuitState::Open)
            })
            .count()
    }

    /// The JSON form: the report's fields plus `metrics`, the values the
    /// checks read, so a script sees exactly what `--fail-if` compares.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a Report,
            metrics: BTreeMap<&'static str, f64>,
        }
        let metrics = METRICS.iter().map(|m| (m.name, (m.value)(self))).collect();
        serde_json::to_string_pretty(&Json {
            report: self,
            metrics,
        })
        .expect("reports serialize")
            + "\n"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::census::Unexpected;

    /// A report with one file in each state, one held receiver with an open
    /// circuit and one unexpected entry: every metric is non-zero.
    pub(crate) fn sample() -> Report {
        let states = ["incoming", "sending", "done", "error", "tmp", "hold"]
            .into_iter()
            .map(|s| {
                let t = Totals {
                    files: 1,
                    bytes: 10,
                    oldest_age_seconds: Some(60.0),
                };
                (s, t)
            })
            .collect();
        let circuit = Circuit {
            state: CircuitState::Open,
            since: "2024-01-01T00:00:00Z".into(),
            reason: Some("auth".into()),
            endpoints: [(
                "https://a.example/in".to_string(),
                Circuit {
                    state: CircuitState::Open,
                    since: "2024-01-01T00:00:00Z".into(),
                    reason: Some("auth".into()),
                    endpoints: Default::default(),
                },
            )]
            .into(),
        };
        let pace = |limit, in_flight| spoolpost_protocol::paces::Pace {
            limit,
            in_flight,
            baseline_ms: Some(5.0),
        };
        let taker = |pid, host: &str, limit: &str, ago| RateTaker {
            pid,
            host: host.into(),
            limit: limit.into(),
            last_take_seconds_ago: ago,
        };
        let receiver = ReceiverReport {
            rate: Some(RateReport {
                limit: Some("200/s".into()),
                per_second: Some(200.0),
                tokens: Some(7),
                burst: Some(20),
                takers: vec![taker(7, "h1", "200/s", 2), taker(8, "h2", "100/s", 9)],
            }),
            circuit: Some(circuit),
            held: true,
            pace: Some(ReceiverPace {
                limit: 12,
                in_flight: 9,
                baseline_ms: Some(5.0),
                senders: [
                    ("1-a".to_string(), pace(5, 4)),
                    ("2-b".to_string(), pace(7, 5)),
                ]
                .into(),
            }),
            ..Default::default()
        };
        Report {
            spool: "/s".into(),
            time: "2024-01-01T00:00:00Z".into(),
            states,
            age_buckets: vec![],
            receivers: [("orders".to_string(), receiver)].into(),
            errors: vec![],
            events: None,
            unexpected: Unexpected {
                entries: 1,
                examples: vec!["incoming/.x".into()],
            },
            replays: vec![Seen {
                id: "4242-0000abcd".into(),
                running: true,
                progress: spoolpost_protocol::replay_progress::Progress {
                    pid: 4242,
                    host: "h1".into(),
                    selection: "receiver orders, delivered before 2024-01-01T00:00:00.000Z".into(),
                    rate: 5,
                    started: "2024-01-01T00:00:01.000Z".into(),
                    total_files: 100,
                    total_bytes: 102400,
                    files: 40,
                    bytes: 40960,
                },
            }],
        }
    }

    #[test]
    fn a_rate_shows_its_limit_tokens_and_takers() {
        use spoolpost_protocol::rates::{Found, Taker};
        const SEC: u64 = 1_000_000_000;
        let now = 1_800_000_000 * SEC;
        let limit: RateLimit = "200/s".parse().unwrap();
        assert_eq!(RateReport::of(None, None, now), None);
        let fresh = RateReport::of(Some(limit), None, now).unwrap();
        assert_eq!(
            (
                fresh.limit.as_deref(),
                fresh.tokens,
                fresh.burst,
                fresh.per_second
            ),
            (Some("200/s"), Some(20), Some(20), Some(200.0)),
            "configured, never taken from: full"
        );
        let found = Found {
            tat: Some(now + 50_000_000),
            takers: vec![Taker {
                pid: 7,
                host: "h".into(),
                limit: "50/s".into(),
                last: 1_800_000_000 - 3,
            }],
        };
        let busy = RateReport::of(Some(limit), Some(&found), now).unwrap();
        assert_eq!(busy.tokens, Some(10), "ten 5 ms steps taken");
        assert_eq!(busy.takers[0].last_take_seconds_ago, 3);
        assert_eq!(busy.takers[0].limit, "50/s");
        let unconfigured = RateReport::of(None, Some(&found), now).unwrap();
        assert_eq!(
            unconfigured.limit.as_deref(),
            Some("50/s"),
            "without --config, the latest taker's limit"
        );
    }

    #[test]
    fn every_metric_has_a_distinct_name_and_prometheus_family() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        let mut families: Vec<&str> = METRICS.iter().map(|m| m.prometheus).collect();
        names.sort_unstable();
        names.dedup();
        families.sort_unstable();
        families.dedup();
        assert_eq!(names.len(), METRICS.len());
        assert_eq!(families.len(), METRICS.len());
    }

    #[test]
    fn every_metric_is_a_json_field_with_its_value() {
        let r = sample();
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for m in METRICS {
            assert_eq!(
                json["metrics"][m.name].as_f64(),
                Some((m.value)(&r)),
                "{}",
                m.name
            );
            assert!((m.value)(&r) > 0.0, "{} reads something", m.name);
        }
        // The report's own fields are still there, unchanged in shape.
        assert_eq!(json["states"]["incoming"]["files"], 1);
    }

    #[test]
    fn backlog_is_incoming_and_sending() {
        let b = sample().backlog();
        assert_eq!(
            (b.files, b.bytes, b.oldest_age_seconds),
            (2, 20, Some(60.0))
        );
    }
}
