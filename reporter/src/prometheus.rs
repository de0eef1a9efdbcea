//! The Prometheus text format, for node_exporter's textfile collector. Every
//! family is a row of [`FAMILIES`] (name, help, where its samples come
//! from), followed by one unlabelled family per `--fail-if` metric from
//! [`METRICS`], so an alert can use the number a check compares.

use std::fmt::Write;

use spoolpost_protocol::circuits::CircuitState;
use spoolpost_protocol::paces::ReceiverPace;

use crate::census::{Totals, bucket_bounds};
use crate::events::{EventStats, Percentiles};
use crate::report::{METRICS, ReceiverReport, Report};

/// Label pairs and a value.
type Sample = (Vec<(&'static str, String)>, f64);

enum Samples {
    /// One sample per spool state, labelled `state`.
    State(fn(&Totals) -> f64),
    /// One sample per receiver, labelled `receiver`.
    Receiver(fn(&ReceiverReport) -> f64),
    /// Anything else drawn from the report.
    Report(fn(&Report) -> Vec<Sample>),
    /// Drawn from the event lines; the family is left out without them.
    Events(fn(&EventStats) -> Vec<Sample>),
}

struct Family {
    name: &'static str,
    help: &'static str,
    samples: Samples,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "files",
        help: "Files in each spool state.",
        samples: Samples::State(|t| t.files as f64),
    },
    Family {
        name: "bytes",
        help: "Bytes in each spool state.",
        samples: Samples::State(|t| t.bytes as f64),
    },
    Family {
        name: "oldest_age_seconds",
        help: "Age of the oldest file in each spool state.",
        samples: Samples::State(|t| t.oldest_age_seconds.unwrap_or(0.0)),
    },
    Family {
        name: "backlog_files",
        help: "Files waiting or being sent, per receiver.",
        samples: Samples::Receiver(|r| r.spool.backlog.files as f64),
    },
    Family {
        name: "backlog_bytes",
        help: "Bytes waiting or being sent, per receiver.",
        samples: Samples::Receiver(|r| r.spool.backlog.bytes as f64),
    },
    Family {
        name: "backlog_oldest_age_seconds",
        help: "Age of the oldest backlog file, per receiver.",
        samples: Samples::Receiver(|r| r.spool.backlog.oldest_age_seconds.unwrap_or(0.0)),
    },
    Family {
        name: "backlog_retrying_files",
        help: "Backlog files waiting after a failed attempt, per receiver.",
        samples: Samples::Receiver(|r| r.spool.retrying as f64),
    },
    Family {
        name: "backlog_age_files",
        help: "Backlog files no older than `le` seconds (cumulative), per receiver.",
        samples: Samples::Report(age_buckets),
    },
    Family {
        name: "error_files",
        help: "Files in error/, per receiver, class and status.",
        samples: Samples::Report(|r| {
            r.errors
                .iter()
                .map(|e| {
                    let labels = vec![
                        ("receiver", e.receiver.clone()),
                        ("class", e.class.clone()),
                        ("status", e.status.map_or(String::new(), |s| s.to_string())),
                    ];
                    (labels, e.files as f64)
                })
                .collect()
        }),
    },
    Family {
        name: "circuit_state",
        help: "1 for the receiver's current circuit state (closed, half_open, open).",
        samples: Samples::Report(circuit_states),
    },
    Family {
        name: "receiver_pace_limit",
        help: "Requests the receiver may have in flight: the senders' adaptive limits, summed over live senders.",
        samples: Samples::Report(|r| paced(r, |p| p.limit as f64)),
    },
    Family {
        name: "receiver_in_flight",
        help: "Requests in flight to the receiver, summed over live senders.",
        samples: Samples::Report(|r| paced(r, |p| p.in_flight as f64)),
    },
    Family {
        name: "receiver_latency_baseline_milliseconds",
        help: "The latency the adaptive limit takes as the receiver's normal (the lowest of the live senders').",
        samples: Samples::Report(|r| {
            let mut out = paced(r, |p| p.baseline_ms.unwrap_or(f64::NAN));
            out.retain(|(_, v)| !v.is_nan());
            out
        }),
    },
    Family {
        name: "receiver_pace_senders",
        help: "Live senders that report a pace for the receiver.",
        samples: Samples::Report(|r| paced(r, |p| p.senders.len() as f64)),
    },
    Family {
        name: "receiver_rate_limit_per_second",
        help: "The receiver's rate_limit, in requests a second, shared by the senders on the spool.",
        samples: Samples::Report(|r| rated(r, |p| p.per_second)),
    },
    Family {
        name: "receiver_rate_tokens",
        help: "Requests that could start back to back now under the receiver's shared rate limit (its bucket's tokens).",
        samples: Samples::Report(|r| rated(r, |p| p.tokens.map(f64::from))),
    },
    Family {
        name: "receiver_rate_takers",
        help: "Senders that took from the receiver's shared rate limit in the last ten minutes.",
        samples: Samples::Report(|r| rated(r, |p| Some(p.takers.len() as f64))),
    },
    Family {
        name: "replay_files",
        help: "Files a reporter replay has moved back to incoming/ so far (of=moved) and the total it picked (of=total).",
        samples: Samples::Report(|r| replay_samples(r, |p| (p.files, p.total_files))),
    },
    Family {
        name: "replay_running",
        help: "1 while a reporter replay's process runs, 0 for a dead one's last progress.",
        samples: Samples::Report(|r| {
            (r.replays.iter())
                .map(|s| {
                    (
                        vec![("replay", s.id.clone())],
                        if s.running { 1.0 } else { 0.0 },
                    )
                })
                .collect()
        }),
    },
    Family {
        name: "replay_bytes",
        help: "Bytes a reporter replay has moved back to incoming/ so far, and the total it picked.",
        samples: Samples::Report(|r| replay_samples(r, |p| (p.bytes, p.total_bytes))),
    },
    Family {
        name: "endpoint_circuit_state",
        help: "1 for the current circuit state of each endpoint of a receiver with several (urls).",
        samples: Samples::Report(endpoint_circuit_states),
    },
    Family {
        name: "receiver_held",
        help: "1 while an operator holds the receiver's backlog.",
        samples: Samples::Receiver(|r| if r.held { 1.0 } else { 0.0 }),
    },
    Family {
        name: "collected_per_second",
        help: "Files collected per second over the window.",
        samples: Samples::Events(|ev| {
            ev.rates
                .iter()
                .map(|r| (window(r.window_minutes), r.collected_per_second))
                .collect()
        }),
    },
    Family {
        name: "delivered_per_second",
        help: "Files delivered per second over the window.",
        samples: Samples::Events(|ev| {
            ev.rates
                .iter()
                .map(|r| (window(r.window_minutes), r.delivered_per_second))
                .collect()
        }),
    },
    Family {
        name: "attempt_latency_milliseconds",
        help: "HTTP attempt latency quantiles, per receiver.",
        samples: Samples::Events(|ev| {
            ev.receivers
                .iter()
                .flat_map(|(name, e)| quantiles(name, &e.attempt_latency_ms))
                .collect()
        }),
    },
    Family {
        name: "end_to_end_latency_milliseconds",
        help: "Collected-to-delivered latency quantiles, per receiver.",
        samples: Samples::Events(|ev| {
            ev.receivers
                .iter()
                .flat_map(|(name, e)| quantiles(name, &e.end_to_end_ms))
                .collect()
        }),
    },
];

fn window(minutes: u64) -> Vec<(&'static str, String)> {
    vec![("window", format!("{minutes}m"))]
}

fn quantiles(receiver: &str, p: &Percentiles) -> Vec<Sample> {
    [("0.5", p.p50), ("0.9", p.p90), ("0.99", p.p99)]
        .into_iter()
        .filter_map(|(q, v)| {
            let labels = vec![("receiver", receiver.to_string()), ("quantile", q.into())];
            v.map(|v| (labels, v))
        })
        .collect()
}

fn age_buckets(r: &Report) -> Vec<Sample> {
    let bounds = bucket_bounds();
    let mut out = Vec::new();
    for (name, rec) in &r.receivers {
        let mut cumulative = 0;
        for (files, bound) in rec.spool.ages.iter().zip(bounds) {
            cumulative += files;
            let le = bound.map_or("+Inf".to_string(), |b| b.as_secs().to_string());
            out.push((
                vec![("receiver", name.clone()), ("le", le)],
                cumulative as f64,
            ));
        }
    }
    out
}

/// One sample per receiver with a shared rate and the value known.
fn rated(r: &Report, value: fn(&crate::report::RateReport) -> Option<f64>) -> Vec<Sample> {
    r.receivers
        .iter()
        .filter_map(|(name, rec)| {
            let v = value(rec.rate.as_ref()?)?;
            Some((vec![("receiver", name.clone())], v))
        })
        .collect()
}

/// Each replay's moved and total numbers, labelled with its ID.
fn replay_samples(
    r: &Report,
    value: fn(&spoolpost_protocol::replay_progress::Progress) -> (u64, u64),
) -> Vec<Sample> {
    let mut out = Vec::new();
    for s in &r.replays {
        let (moved, total) = value(&s.progress);
        for (of, v) in [("moved", moved), ("total", total)] {
            let labels = vec![("replay", s.id.clone()), ("of", of.into())];
            out.push((labels, v as f64));
        }
    }
    out
}

/// One sample per receiver that a live sender reports a pace for.
fn paced(r: &Report, value: fn(&ReceiverPace) -> f64) -> Vec<Sample> {
    r.receivers
        .iter()
        .filter_map(|(name, rec)| {
            let pace = rec.pace.as_ref()?;
            Some((vec![("receiver", name.clone())], value(pace)))
        })
        .collect()
}

fn circuit_states(r: &Report) -> Vec<Sample> {
    let mut out = Vec::new();
    for (name, rec) in &r.receivers {
        let Some(c) = &rec.circuit else { continue };
        for state in [
            CircuitState::Closed,
            CircuitState::HalfOpen,
            CircuitState::Open,
        ] {
            let labels = vec![("receiver", name.clone()), ("state", state.as_str().into())];
            out.push((labels, if c.state == state { 1.0 } else { 0.0 }));
        }
    }
    out
}

fn endpoint_circuit_states(r: &Report) -> Vec<Sample> {
    let mut out = Vec::new();
    for (name, rec) in &r.receivers {
        let Some(c) = &rec.circuit else { continue };
        for (endpoint, e) in &c.endpoints {
            for state in [
                CircuitState::Closed,
                CircuitState::HalfOpen,
                CircuitState::Open,
            ] {
                let labels = vec![
                    ("receiver", name.clone()),
                    ("endpoint", endpoint.clone()),
                    ("state", state.as_str().into()),
                ];
                out.push((labels, if e.state == state { 1.0 } else { 0.0 }));
            }
        }
    }
    out
}

/// Escapes a Prometheus label value: backslash, double quote, newline.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_family(out: &mut String, name: &str, help: &str, samples: &[Sample]) {
    let _ = writeln!(
        out,
        "# HELP spoolpost_{name} {help}\n# TYPE spoolpost_{name} gauge"
    );
    for (labels, value) in samples {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let _ = if labels.is_empty() {
            writeln!(out, "spoolpost_{name} {value}")
        } else {
            writeln!(out, "spoolpost_{name}{{{}}} {value}", labels.join(","))
        };
    }
}

pub fn to_prometheus(r: &Report) -> String {
    let mut out = String::new();
    for f in FAMILIES {
        let samples = match f.samples {
            Samples::State(value) => r
                .states
                .iter()
                .map(|(state, t)| (vec![("state", state.to_string())], value(t)))
                .collect(),
            Samples::Receiver(value) => r
                .receivers
                .iter()
                .map(|(name, rec)| (vec![("receiver", name.clone())], value(rec)))
                .collect(),
            Samples::Report(samples) => samples(r),
            Samples::Events(samples) => match &r.events {
                Some(ev) => samples(ev),
                None => continue,
            },
        };
        write_family(&mut out, f.name, f.help, &samples);
    }
    for m in METRICS {
        let help = format!("{} (--fail-if {})", m.help, m.name);
        write_family(&mut out, m.prometheus, &help, &[(vec![], (m.value)(r))]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receivers_shared_rate_is_its_limit_tokens_and_takers() {
        let text = to_prometheus(&crate::report::tests::sample());
        for line in [
            "spoolpost_receiver_rate_limit_per_second{receiver=\"orders\"} 200\n",
            "spoolpost_receiver_rate_tokens{receiver=\"orders\"} 7\n",
            "spoolpost_receiver_rate_takers{receiver=\"orders\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn a_replay_shows_how_far_it_got_and_whether_it_runs() {
        let mut r = crate::report::tests::sample();
        let text = to_prometheus(&r);
        for line in [
            "spoolpost_replay_files{replay=\"4242-0000abcd\",of=\"moved\"} 40\n",
            "spoolpost_replay_files{replay=\"4242-0000abcd\",of=\"total\"} 100\n",
            "spoolpost_replay_bytes{replay=\"4242-0000abcd\",of=\"moved\"} 40960\n",
            "spoolpost_replay_running{replay=\"4242-0000abcd\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        r.replays[0].running = false;
        assert!(
            to_prometheus(&r).contains("spoolpost_replay_running{replay=\"4242-0000abcd\"} 0\n")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_check_metric_is_one_unlabelled_line_with_its_value() {
        let r = crate::report::tests::sample();
        let text = to_prometheus(&r);
        for m in METRICS {
            let line = format!("\nspoolpost_{} {}\n", m.prometheus, (m.value)(&r));
            assert!(text.contains(&line), "{} missing:\n{text}", m.name);
        }
    }

    #[test]
    fn a_receivers_pace_is_summed_over_senders() {
        let text = to_prometheus(&crate::report::tests::sample());
        for line in [
            "spoolpost_receiver_pace_limit{receiver=\"orders\"} 12\n",
            "spoolpost_receiver_in_flight{receiver=\"orders\"} 9\n",
            "spoolpost_receiver_latency_baseline_milliseconds{receiver=\"orders\"} 5\n",
            "spoolpost_receiver_pace_senders{receiver=\"orders\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn each_endpoint_s_circuit_has_its_endpoint_label() {
        let text = to_prometheus(&crate::report::tests::sample());
        let line = r#"spoolpost_endpoint_circuit_state{receiver="orders",endpoint="https://a.example/in",state="open"} 1"#;
        assert!(text.contains(line), "{text}");
    }

    #[test]
    fn no_family_is_written_twice() {
        let text = to_prometheus(&crate::report::tests::sample());
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n);
    }
}
