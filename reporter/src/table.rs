//! The table for people: aligned columns, one section per question
//! (states, receivers, backlog age, errors, and rates and latencies when
//! event lines were read), red and yellow only when the caller says the
//! terminal wants colour ([`crate::watch::Look`] decides).

use std::fmt::Write;

use spoolpost_common::circuits::CircuitState;

use crate::events::Percentiles;
use crate::report::Report;

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

#[derive(Clone, Copy)]
enum Paint {
    Red,
    Yellow,
}

pub fn to_table(r: &Report, colour: bool) -> String {
    to_screen(r, colour, "")
}

/// The table with `trends` (the live screen's sparklines) right under the
/// heading: a screen taller than the terminal loses its bottom, and the
/// trends are what a person watching wants first.
pub fn to_screen(r: &Report, colour: bool, trends: &str) -> String {
    let paint = |text: String, paint: Paint| {
        let styled = console::style(text).force_styling(colour);
        match paint {
            Paint::Red => styled.red(),
            Paint::Yellow => styled.yellow(),
        }
        .to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "spool {}  at {}", r.spool, r.time);
    out.push_str(trends);
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
        let _ = writeln!(out, "{}", paint(line, Paint::Red));
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
            // The time goes below the table: a timestamp in a cell pushes
            // the row past 80 columns.
            Some(c) => paint(c.state.as_str().to_string(), Paint::Red),
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
                paint("HELD".into(), Paint::Yellow)
            } else {
                "-".into()
            },
        ]);
    }
    table(&mut out, rows);
    for (name, rec) in &r.receivers {
        if rec.insecure {
            let _ = writeln!(
                out,
                "  {}: {name} does not verify its certificate (insecure_skip_verify = true)",
                paint("INSECURE".into(), Paint::Red)
            );
        }
        if let Some(c) = rec
            .circuit
            .as_ref()
            .filter(|c| c.state != CircuitState::Closed)
        {
            let why = match c.reason.as_deref() {
                Some("auth") => ": it refuses our credentials (401/407); fix the secret",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  circuit of {name} {} since {}{why}",
                c.state.as_str(),
                c.since
            );
        }
    }
    // A receiver with several endpoints: each endpoint's circuit, so an
    // operator sees which instance is failing while the others carry it.
    for (name, rec) in &r.receivers {
        for (endpoint, e) in rec.circuit.iter().flat_map(|c| &c.endpoints) {
            let state = match e.state {
                CircuitState::Closed => "closed".to_string(),
                state => paint(state.as_str().to_string(), Paint::Red),
            };
            let _ = writeln!(
                out,
                "  endpoint {endpoint} of {name}: {state} since {}",
                e.since
            );
        }
    }

    pace(&mut out, r);

    // One row per age bucket and a column per receiver: fifteen buckets
    // side by side do not fit 80 columns, a few receivers do.
    let _ = writeln!(out, "\nBACKLOG AGE (files no older than)");
    let mut header = vec!["age".to_string()];
    header.extend(r.receivers.keys().cloned());
    let mut rows = vec![header];
    let mut total = vec!["total".to_string()];
    total.extend(
        r.receivers
            .values()
            .map(|rec| rec.spool.backlog.files.to_string()),
    );
    rows.push(total);
    for (i, bound) in r.age_buckets.iter().enumerate() {
        let mut row = vec![bucket_label(*bound)];
        row.extend(r.receivers.values().map(|rec| match rec.spool.ages.get(i) {
            Some(n) if *n > 0 => n.to_string(),
            _ => ".".into(),
        }));
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
        let _ = writeln!(out, "\nOUTCOMES AND LATENCY (ms)");
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
            ]
            .map(String::from)
            .to_vec(),
        ];
        let mut latency = vec![
            ["receiver", "attempt p50/p90/p99", "end-to-end p50/p90/p99"]
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
            ]);
            latency.push(vec![
                name.clone(),
                ms(&e.attempt_latency_ms),
                ms(&e.end_to_end_ms),
            ]);
        }
        table(&mut out, rows);
        table(&mut out, latency);
    }
    out
}

/// Each receiver's adaptive limit, in flight and latency baseline as the
/// live senders report them: limit and in flight summed over senders (the
/// receiver gets them all together), the lowest baseline, and the range of
/// one sender's limit, which shows whether the senders share it evenly.
fn pace(out: &mut String, r: &Report) {
    if r.receivers.values().all(|rec| rec.pace.is_none()) {
        return;
    }
    let _ = writeln!(out, "\nPACE (live senders together)");
    let mut rows = vec![
        [
            "receiver",
            "limit",
            "in flight",
            "baseline",
            "senders",
            "per sender",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (name, rec) in &r.receivers {
        let Some(p) = &rec.pace else { continue };
        let limits = p.senders.values().map(|s| s.limit);
        let (min, max) = (limits.clone().min(), limits.max());
        rows.push(vec![
            name.clone(),
            p.limit.to_string(),
            p.in_flight.to_string(),
            p.baseline_ms.map_or("-".into(), |ms| format!("{ms:.1} ms")),
            p.senders.len().to_string(),
            match (min, max) {
                (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
                (Some(a), _) => a.to_string(),
                _ => "-".into(),
            },
        ]);
    }
    table(out, rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(age(Some(90.4)), "1m 30s");
        assert_eq!(bucket_label(Some(640)), "10m40s");
    }

    #[test]
    fn colour_only_when_asked() {
        let mut r = Report {
            spool: "s".into(),
            time: "t".into(),
            states: Default::default(),
            age_buckets: vec![],
            receivers: Default::default(),
            errors: vec![],
            events: None,
            unexpected: Default::default(),
        };
        r.receivers.entry("orders".into()).or_default().held = true;
        assert!(!to_table(&r, false).contains('\x1b'));
        assert!(to_table(&r, true).contains('\x1b'));
    }

    #[test]
    fn the_pace_shows_sums_and_the_range_per_sender() {
        let text = to_table(&crate::report::tests::sample(), false);
        let row = text
            .lines()
            .skip_while(|l| !l.starts_with("PACE"))
            .find(|l| l.trim_start().starts_with("orders"))
            .unwrap_or_else(|| panic!("no pace row:\n{text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["orders", "12", "9", "5.0", "ms", "2", "5-7"],
            "{text}"
        );
        let mut quiet = crate::report::tests::sample();
        quiet.receivers.values_mut().for_each(|r| r.pace = None);
        assert!(!to_table(&quiet, false).contains("PACE"));
    }
}
