//! The report and its three forms: an aligned table for people, JSON for
//! scripts (the shape is the `Report` struct), and the Prometheus text
//! format for node_exporter's textfile collector.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use spoolpost_common::circuits::{Circuit, CircuitState};

use crate::census::{ReceiverBacklog, Totals, Unexpected, bucket_bounds};
use crate::events::{EventStats, Percentiles};

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
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReceiverReport {
    #[serde(flatten)]
    pub spool: ReceiverBacklog,
    /// The worst state over live senders; absent when no sender reports it.
    pub circuit: Option<Circuit>,
    pub held: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorCount {
    pub receiver: String,
    pub class: String,
    pub status: Option<u16>,
    pub files: u64,
}

impl Report {
    pub fn backlog(&self) -> Totals {
        let mut t = Totals::default();
        for state in ["incoming", "sending"] {
            let s = &self.states[state];
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
}

fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) => {
            humantime::format_duration(std::time::Duration::from_secs(s.round() as u64)).to_string()
        }
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn bucket_label(bound: Option<u64>) -> String {
    match bound {
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s))
            .to_string()
            .replace(' ', ""),
        None => "older".into(),
    }
}

/// Lays out rows in columns; the first row is the header.
fn table(out: &mut String, rows: Vec<Vec<String>>) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
}

pub fn to_table(r: &Report, colour: bool) -> String {
    let paint = |text: String, code: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "spool {}  at {}", r.spool, r.time);
    let _ = writeln!(out, "\nSTATES");
    let mut rows = vec![vec![
        "state".into(),
        "files".into(),
        "bytes".into(),
        "oldest".into(),
    ]];
    for (state, t) in &r.states {
        rows.push(vec![
            state.to_string(),
            t.files.to_string(),
            bytes(t.bytes),
            age(t.oldest_age_seconds),
        ]);
    }
    rows.push(vec![
        "unexpected".into(),
        r.unexpected.entries.to_string(),
        "-".into(),
        "-".into(),
    ]);
    table(&mut out, rows);
    if r.unexpected.entries > 0 {
        let line = format!(
            "  unexpected entries no program handles, e.g. {}",
            r.unexpected.examples.join(", ")
        );
        let _ = writeln!(out, "{}", paint(line, "31"));
    }

    let _ = writeln!(out, "\nRECEIVERS");
    let mut rows = vec![
        [
            "receiver", "backlog", "bytes", "oldest", "retrying", "done", "error", "circuit",
            "held",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (name, rec) in &r.receivers {
        let circuit = match &rec.circuit {
            None => "-".to_string(),
            Some(c) if c.state == CircuitState::Closed => "closed".into(),
            Some(c) => paint(format!("{} since {}", c.state.as_str(), c.since), "31"),
        };
        rows.push(vec![
            name.clone(),
            rec.spool.backlog.files.to_string(),
            bytes(rec.spool.backlog.bytes),
            age(rec.spool.backlog.oldest_age_seconds),
            rec.spool.retrying.to_string(),
            rec.spool.done.files.to_string(),
            rec.spool.error.files.to_string(),
            circuit,
            if rec.held {
                paint("HELD".into(), "33")
            } else {
                "-".into()
            },
        ]);
    }
    table(&mut out, rows);

    let _ = writeln!(out, "\nBACKLOG AGE (files no older than)");
    let mut header = vec!["receiver".to_string(), "total".into()];
    header.extend(r.age_buckets.iter().map(|b| bucket_label(*b)));
    let mut rows = vec![header];
    for (name, rec) in &r.receivers {
        let mut row = vec![name.clone(), rec.spool.backlog.files.to_string()];
        row.extend(
            rec.spool
                .ages
                .iter()
                .map(|n| if *n == 0 { ".".into() } else { n.to_string() }),
        );
        rows.push(row);
    }
    table(&mut out, rows);

    if !r.errors.is_empty() {
        let _ = writeln!(out, "\nERRORS");
        let mut rows = vec![
            ["receiver", "class", "status", "files"]
                .map(String::from)
                .to_vec(),
        ];
        for e in &r.errors {
            rows.push(vec![
                e.receiver.clone(),
                e.class.clone(),
                e.status.map_or("-".into(), |s| s.to_string()),
                e.files.to_string(),
            ]);
        }
        table(&mut out, rows);
    }

    if let Some(ev) = &r.events {
        let _ = writeln!(out, "\nRATES (from {} event lines)", ev.lines);
        let mut rows = vec![
            [
                "window",
                "collected/s",
                "delivered/s",
                "delivered/collected",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for rate in &ev.rates {
            rows.push(vec![
                format!("{}m", rate.window_minutes),
                format!("{:.1}", rate.collected_per_second),
                format!("{:.1}", rate.delivered_per_second),
                rate.delivery_ratio
                    .map_or("-".into(), |x| format!("{x:.2}")),
            ]);
        }
        table(&mut out, rows);
        let _ = writeln!(out, "\nLATENCY (ms)");
        let ms = |p: &Percentiles| {
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            format!("{}/{}/{}", f(p.p50), f(p.p90), f(p.p99))
        };
        let mut rows = vec![
            [
                "receiver",
                "delivered",
                "retries",
                "rejected",
                "expired",
                "redelivered",
                "attempt p50/p90/p99",
                "end-to-end p50/p90/p99",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for (name, e) in &ev.receivers {
            rows.push(vec![
                name.clone(),
                e.delivered.to_string(),
                e.retries.to_string(),
                e.rejected.to_string(),
                e.expired.to_string(),
                e.redeliveries.to_string(),
                ms(&e.attempt_latency_ms),
                ms(&e.end_to_end_ms),
            ]);
        }
        table(&mut out, rows);
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

struct Metrics {
    out: String,
}

impl Metrics {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP spoolpost_{name} {help}\n# TYPE spoolpost_{name} gauge"
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let _ = if labels.is_empty() {
            writeln!(self.out, "spoolpost_{name} {value}")
        } else {
            writeln!(self.out, "spoolpost_{name}{{{}}} {value}", labels.join(","))
        };
    }
}

pub fn to_prometheus(r: &Report) -> String {
    let mut m = Metrics { out: String::new() };
    m.family("files", "Files in each spool state.");
    for (state, t) in &r.states {
        m.sample("files", &[("state", state)], t.files as f64);
    }
    m.family("bytes", "Bytes in each spool state.");
    for (state, t) in &r.states {
        m.sample("bytes", &[("state", state)], t.bytes as f64);
    }
    m.family(
        "oldest_age_seconds",
        "Age of the oldest file in each spool state.",
    );
    for (state, t) in &r.states {
        m.sample(
            "oldest_age_seconds",
            &[("state", state)],
            t.oldest_age_seconds.unwrap_or(0.0),
        );
    }
    m.family(
        "backlog_files",
        "Files waiting or being sent, per receiver.",
    );
    for (name, rec) in &r.receivers {
        m.sample(
            "backlog_files",
            &[("receiver", name)],
            rec.spool.backlog.files as f64,
        );
    }
    m.family(
        "unexpected_entries",
        "Entries in the spool that no program handles (dot-files in incoming/, loose files in sending/, ...).",
    );
    m.sample("unexpected_entries", &[], r.unexpected.entries as f64);
    m.family(
        "backlog_bytes",
        "Bytes waiting or being sent, per receiver.",
    );
    for (name, rec) in &r.receivers {
        m.sample(
            "backlog_bytes",
            &[("receiver", name)],
            rec.spool.backlog.bytes as f64,
        );
    }
    m.family(
        "backlog_oldest_age_seconds",
        "Age of the oldest backlog file, per receiver.",
    );
    for (name, rec) in &r.receivers {
        m.sample(
            "backlog_oldest_age_seconds",
            &[("receiver", name)],
            rec.spool.backlog.oldest_age_seconds.unwrap_or(0.0),
        );
    }
    m.family(
        "backlog_retrying_files",
        "Backlog files waiting after a failed attempt, per receiver.",
    );
    for (name, rec) in &r.receivers {
        m.sample(
            "backlog_retrying_files",
            &[("receiver", name)],
            rec.spool.retrying as f64,
        );
    }
    m.family(
        "backlog_age_files",
        "Backlog files no older than `le` seconds (cumulative), per receiver.",
    );
    let bounds = bucket_bounds();
    for (name, rec) in &r.receivers {
        let mut cumulative = 0;
        for (files, bound) in rec.spool.ages.iter().zip(bounds) {
            cumulative += files;
            let le = bound.map_or("+Inf".to_string(), |b| b.as_secs().to_string());
            m.sample(
                "backlog_age_files",
                &[("receiver", name), ("le", &le)],
                cumulative as f64,
            );
        }
    }
    m.family(
        "error_files",
        "Files in error/, per receiver, class and status.",
    );
    for e in &r.errors {
        let status = e.status.map_or(String::new(), |s| s.to_string());
        m.sample(
            "error_files",
            &[
                ("receiver", &e.receiver),
                ("class", &e.class),
                ("status", &status),
            ],
            e.files as f64,
        );
    }
    m.family(
        "circuit_state",
        "1 for the receiver's current circuit state (closed, half_open, open).",
    );
    for (name, rec) in &r.receivers {
        if let Some(c) = &rec.circuit {
            for state in [
                CircuitState::Closed,
                CircuitState::HalfOpen,
                CircuitState::Open,
            ] {
                let on = if c.state == state { 1.0 } else { 0.0 };
                m.sample(
                    "circuit_state",
                    &[("receiver", name), ("state", state.as_str())],
                    on,
                );
            }
        }
    }
    m.family(
        "receiver_held",
        "1 while an operator holds the receiver's backlog.",
    );
    for (name, rec) in &r.receivers {
        m.sample(
            "receiver_held",
            &[("receiver", name)],
            if rec.held { 1.0 } else { 0.0 },
        );
    }
    if let Some(ev) = &r.events {
        m.family(
            "collected_per_second",
            "Files collected per second over the window.",
        );
        for rate in &ev.rates {
            m.sample(
                "collected_per_second",
                &[("window", &format!("{}m", rate.window_minutes))],
                rate.collected_per_second,
            );
        }
        m.family(
            "delivered_per_second",
            "Files delivered per second over the window.",
        );
        for rate in &ev.rates {
            m.sample(
                "delivered_per_second",
                &[("window", &format!("{}m", rate.window_minutes))],
                rate.delivered_per_second,
            );
        }
        m.family(
            "attempt_latency_milliseconds",
            "HTTP attempt latency quantiles, per receiver.",
        );
        for (name, e) in &ev.receivers {
            for (q, v) in [
                ("0.5", e.attempt_latency_ms.p50),
                ("0.9", e.attempt_latency_ms.p90),
                ("0.99", e.attempt_latency_ms.p99),
            ] {
                if let Some(v) = v {
                    m.sample(
                        "attempt_latency_milliseconds",
                        &[("receiver", name), ("quantile", q)],
                        v,
                    );
                }
            }
        }
        m.family(
            "end_to_end_latency_milliseconds",
            "Collected-to-delivered latency quantiles, per receiver.",
        );
        for (name, e) in &ev.receivers {
            for (q, v) in [
                ("0.5", e.end_to_end_ms.p50),
                ("0.9", e.end_to_end_ms.p90),
                ("0.99", e.end_to_end_ms.p99),
            ] {
                if let Some(v) = v {
                    m.sample(
                        "end_to_end_latency_milliseconds",
                        &[("receiver", name), ("quantile", q)],
                        v,
                    );
                }
            }
        }
    }
    m.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(age(Some(90.4)), "1m 30s");
        assert_eq!(bucket_label(Some(640)), "10m40s");
    }
}
