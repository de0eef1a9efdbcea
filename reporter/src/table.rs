//! The table for people: aligned columns, one section per question
//! (states, receivers, backlog age, errors, and rates and latencies when
//! event lines were read), red and yellow only when the caller says the
//! terminal wants colour ([`crate::output::Look`] decides).

use std::fmt::Write;

use spoolpost_protocol::circuits::CircuitState;

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

/// Lays out rows in columns; the first row is the header. Widths are what
/// the terminal shows: colour codes take no column, so a red
/// `open` keeps its row in line.
fn table(out: &mut String, rows: Vec<Vec<String>>) {
    let width = |cell: &str| console::measure_text_width(cell);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| width(&r[c])).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = " ".repeat(widths[c] - width(cell));
                if c == 0 {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
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
    to_screen(r, colour, "", "", None)
}

/// One part of the table: its lines (a blank line and a heading first) and
/// how much a person watching wants it, 0 most.
struct Section {
    name: &'static str,
    rank: u8,
    text: String,
}

/// The table, with `notice` (a reload's outcome) under the heading and
/// `trends` (the live screen's sparklines) among the sections. With `rows`
/// (a terminal that tall) the sections that fit are shown, the most useful
/// first (receivers, trends, errors, states, outcomes, pace, backlog age,
/// rates), in their usual order, and the last line names those left out:
/// the bottom of a screen is never cut mid-table.
pub fn to_screen(
    r: &Report,
    colour: bool,
    notice: &str,
    trends: &str,
    rows: Option<usize>,
) -> String {
    let mut out = format!("spool {}  at {}\n{notice}", r.spool, r.time);
    let mut sections = sections(r, colour, trends);
    let lines = |t: &str| t.lines().count();
    let total = |sections: &[Section]| sections.iter().map(|s| lines(&s.text)).sum::<usize>();
    let mut shown = vec![true; sections.len()];
    if let Some(rows) = rows.filter(|&rows| lines(&out) + total(&sections) > rows) {
        // Short of rows, the blank lines between sections go first: the
        // headings in capitals still part them.
        for s in &mut sections {
            if let Some(text) = s.text.strip_prefix('\n') {
                s.text = text.to_string();
            }
        }
        if lines(&out) + total(&sections) > rows {
            // One row for the line naming what is left out.
            let mut room = rows.saturating_sub(lines(&out) + 1);
            let mut order: Vec<usize> = (0..sections.len()).collect();
            order.sort_by_key(|&i| sections[i].rank);
            for i in order {
                let n = lines(&sections[i].text);
                shown[i] = n <= room;
                if shown[i] {
                    room -= n;
                }
            }
        }
    }
    let mut hidden = vec![];
    for (s, shown) in sections.iter().zip(shown) {
        if shown {
            out.push_str(&s.text);
        } else {
            hidden.push(s.name);
        }
    }
    if !hidden.is_empty() {
        let _ = writeln!(out, "hidden for want of rows: {}", hidden.join(", "));
    }
    out
}

fn sections(r: &Report, colour: bool, trends: &str) -> Vec<Section> {
    let paint = |text: String, paint: Paint| {
        let styled = console::style(text).force_styling(colour);
        match paint {
            Paint::Red => styled.red(),
            Paint::Yellow => styled.yellow(),
        }
        .to_string()
    };
    let mut sections = vec![];
    if !trends.is_empty() {
        sections.push(Section {
            name: "TRENDS",
            rank: 1,
            text: trends.to_string(),
        });
    }
    let mut out = String::new();
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
    close(&mut sections, &mut out, "STATES", 3);

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
    close(&mut sections, &mut out, "RECEIVERS", 0);

    pace(&mut out, r);
    close(&mut sections, &mut out, "PACE", 5);

    rate(&mut out, r);
    close(&mut sections, &mut out, "RATE", 5);

    replays(&mut out, r);
    close(&mut sections, &mut out, "REPLAYS", 1);

    backlog_age(&mut out, r);
    close(&mut sections, &mut out, "BACKLOG AGE", 6);

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
    close(&mut sections, &mut out, "ERRORS", 2);

    if let Some(ev) = &r.events {
        if let Some(reload) = &ev.last_reload {
            let names = |n: &[String]| {
                if n.is_empty() {
                    "none".to_string()
                } else {
                    n.join(", ")
                }
            };
            let _ = writeln!(
                out,
                "\nLAST RELOAD THAT CHANGED RECEIVERS ({} at {}): added {}; removed {}",
                reload.program,
                reload.time,
                names(&reload.receivers_added),
                names(&reload.receivers_removed)
            );
        }
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
        close(&mut sections, &mut out, "RATES", 7);
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
        close(&mut sections, &mut out, "OUTCOMES AND LATENCY", 4);
    }
    sections
}

/// Ends the section written so far into `out`; nothing written, no section.
fn close(sections: &mut Vec<Section>, out: &mut String, name: &'static str, rank: u8) {
    if !out.is_empty() {
        sections.push(Section {
            name,
            rank,
            text: std::mem::take(out),
        });
    }
}

/// One row per age bucket that holds a file and a column per receiver:
/// fifteen buckets side by side do not fit 80 columns, a few receivers do.
/// Empty buckets are left out, and the whole table when nothing waits.
fn backlog_age(out: &mut String, r: &Report) {
    if r.receivers.values().all(|rec| rec.spool.backlog.files == 0) {
        let _ = writeln!(out, "\nBACKLOG AGE: nothing waits");
        return;
    }
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
        if r.receivers
            .values()
            .all(|rec| rec.spool.ages.get(i).is_none_or(|n| *n == 0))
        {
            continue;
        }
        let mut row = vec![bucket_label(*bound)];
        row.extend(r.receivers.values().map(|rec| match rec.spool.ages.get(i) {
            Some(n) if *n > 0 => n.to_string(),
            _ => ".".into(),
        }));
        rows.push(row);
    }
    table(out, rows);
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

/// Each receiver's shared rate limit: the limit, the bucket's tokens now
/// (of its burst) and the senders that took from it lately, with how long
/// ago and, when they disagree, the limit each keeps to.
fn rate(out: &mut String, r: &Report) {
    if r.receivers.values().all(|rec| rec.rate.is_none()) {
        return;
    }
    let _ = writeln!(out, "\nRATE (shared by the senders on the spool)");
    let mut rows = vec![
        ["receiver", "limit", "tokens", "taken lately by"]
            .map(String::from)
            .to_vec(),
    ];
    for (name, rec) in &r.receivers {
        let Some(rate) = &rec.rate else { continue };
        let takers: Vec<String> = (rate.takers.iter())
            .map(|t| {
                let own = if rate.limit.as_deref() == Some(t.limit.as_str()) {
                    String::new()
                } else {
                    format!(" at {}", t.limit)
                };
                format!("{}@{} {}s ago{own}", t.pid, t.host, t.last_take_seconds_ago)
            })
            .collect();
        rows.push(vec![
            name.clone(),
            rate.limit.clone().unwrap_or_else(|| "-".into()),
            match (rate.tokens, rate.burst) {
                (Some(t), Some(b)) => format!("{t}/{b}"),
                _ => "-".into(),
            },
            if takers.is_empty() {
                "nobody".into()
            } else {
                takers.join(", ")
            },
        ]);
    }
    table(out, rows);
}

/// Each `reporter replay` seen in the spool: who runs it, what it picked,
/// how far it got and how fast it goes; a dead one (its process gone, its
/// lock free) is marked so, with how far it got.
fn replays(out: &mut String, r: &Report) {
    if r.replays.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nREPLAYS");
    for s in &r.replays {
        let p = &s.progress;
        let state = if s.running { "running" } else { "DEAD" };
        let _ = writeln!(
            out,
            "  {state}  pid {} on {}  since {}  {}/s  {} of {} files, {} of {}",
            p.pid,
            p.host,
            p.started,
            p.rate,
            p.files,
            p.total_files,
            bytes(p.bytes),
            bytes(p.total_bytes),
        );
        let _ = writeln!(out, "    selection: {}", p.selection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_shows_its_limit_tokens_and_who_took_from_it() {
        let mut r = crate::report::tests::sample();
        let text = to_table(&r, false);
        let row = text
            .lines()
            .skip_while(|l| !l.starts_with("RATE"))
            .find(|l| l.trim_start().starts_with("orders"))
            .unwrap_or_else(|| panic!("no rate row:\n{text}"));
        assert!(
            row.contains("200/s")
                && row.contains("7/20")
                && row.contains("7@h1 2s ago, 8@h2 9s ago at 100/s"),
            "{row}"
        );
        r.receivers.values_mut().for_each(|rec| rec.rate = None);
        assert!(!to_table(&r, false).contains("RATE"));
    }

    #[test]
    fn a_replay_shows_who_what_and_how_far() {
        let mut r = crate::report::tests::sample();
        let text = to_table(&r, false);
        assert!(
            text.contains("REPLAYS\n  running  pid 4242 on h1  since 2024-01-01T00:00:01.000Z  5/s  40 of 100 files, 40.0 KiB of 100.0 KiB\n    selection: receiver orders,"),
            "{text}"
        );
        r.replays[0].running = false;
        assert!(to_table(&r, false).contains("  DEAD  pid 4242"));
        r.replays.clear();
        assert!(!to_table(&r, false).contains("REPLAYS"));
    }

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
            replays: vec![],
        };
        r.receivers.entry("orders".into()).or_default().held = true;
        assert!(!to_table(&r, false).contains('\x1b'));
        assert!(to_table(&r, true).contains('\x1b'));
    }

    #[test]
    fn colour_codes_take_no_column() {
        let mut r = crate::report::tests::sample();
        r.receivers.insert("billing".into(), Default::default());
        let plain = to_table(&r, false);
        let coloured = console::strip_ansi_codes(&to_table(&r, true)).into_owned();
        assert_eq!(plain, coloured);
    }

    #[test]
    fn a_short_screen_shows_the_most_useful_sections_whole_and_names_the_rest() {
        let mut r = crate::report::tests::sample();
        r.errors.push(crate::report::ErrorCount {
            receiver: "orders".into(),
            class: "rejected".into(),
            status: Some(422),
            files: 3,
        });
        let all = to_screen(&r, false, "", "", None);
        assert_eq!(to_screen(&r, false, "", "", Some(100)), all);
        let short = to_screen(&r, false, "", "", Some(16));
        assert!(short.lines().count() <= 16, "{short}");
        assert!(
            short.contains("RECEIVERS") && short.contains("ERRORS"),
            "{short}"
        );
        let last = short.lines().last().unwrap();
        assert!(last.starts_with("hidden for want of rows: "), "{short}");
        for name in ["STATES", "PACE", "BACKLOG AGE"] {
            assert_eq!(
                short.contains(&format!("\n{name}")),
                !last.contains(name),
                "{short}"
            );
        }
    }

    #[test]
    fn the_age_table_shows_only_buckets_that_hold_files() {
        let mut r = crate::report::tests::sample();
        r.age_buckets = vec![Some(10), Some(20), Some(40), None];
        let text = to_table(&r, false);
        assert!(text.contains("BACKLOG AGE: nothing waits"), "{text}");
        let rec = r.receivers.get_mut("orders").unwrap();
        rec.spool.backlog.files = 2;
        rec.spool.ages[1] = 2;
        let text = to_table(&r, false);
        let age: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("BACKLOG AGE"))
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(age, ["  total       2", "  20s         2"], "{text}");
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
