//! What the event lines say: production and delivery rates over the last 1,
//! 5 and 15 minutes, their ratio, latency percentiles per receiver (for the
//! HTTP attempt, and end to end from collected to acknowledged), retries and
//! redeliveries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use spoolpost_protocol::event::{Event, EventKind};
use spoolpost_protocol::name::SpoolName;

pub const WINDOWS_MINUTES: [u64; 3] = [1, 5, 15];

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rates {
    pub window_minutes: u64,
    pub collected_per_second: f64,
    pub delivered_per_second: f64,
    /// Delivered over collected in the window; above 1 means the backlog
    /// shrinks, below 1 that it grows. Absent when nothing was collected.
    pub delivery_ratio: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            (!values.is_empty()).then(|| {
                let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
                values[rank.clamp(1, values.len()) - 1]
            })
        };
        Percentiles {
            count: values.len(),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReceiverEvents {
    pub delivered: u64,
    pub rejected: u64,
    pub retries: u64,
    pub expired: u64,
    /// Deliveries of a key that had been delivered before (after a crash).
    pub redeliveries: u64,
    /// Milliseconds from request start to answer, over all attempts.
    pub attempt_latency_ms: Percentiles,
    /// Milliseconds from collected to delivered, where both lines were read.
    pub end_to_end_ms: Percentiles,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EventStats {
    pub lines: u64,
    pub unreadable_lines: u64,
    pub rates: Vec<Rates>,
    pub receivers: BTreeMap<String, ReceiverEvents>,
    /// The latest accepted reload that brought or let go receivers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<LastReload>,
}

/// An accepted reload's `"event":"reload"` line, as far as the report
/// shows it: which receivers came and went.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct LastReload {
    pub time: String,
    pub program: String,
    #[serde(default)]
    pub receivers_added: Vec<String>,
    #[serde(default)]
    pub receivers_removed: Vec<String>,
}

/// `None` when the line is not a reload line; otherwise the reload if it
/// was accepted and changed the receivers.
fn reload_line(line: &[u8]) -> Option<Option<(LastReload, SystemTime)>> {
    // Most lines are deliveries: look before parsing.
    const RELOAD: &[u8] = b"\"event\":\"reload\"";
    if !line.windows(RELOAD.len()).any(|w| w == RELOAD) {
        return None;
    }
    Some(changed_receivers(line))
}

fn changed_receivers(line: &[u8]) -> Option<(LastReload, SystemTime)> {
    #[derive(serde::Deserialize)]
    struct Line {
        event: String,
        ok: bool,
        #[serde(flatten)]
        reload: LastReload,
    }
    let l: Line = serde_json::from_slice(line).ok()?;
    let r = l.reload;
    let changed = !r.receivers_added.is_empty() || !r.receivers_removed.is_empty();
    let time = humantime::parse_rfc3339_weak(&r.time).ok()?;
    (l.event == "reload" && l.ok && changed).then_some((r, time))
}

/// A file's identity across collector and sender lines: its name without
/// the fields the sender adds.
fn identity(spool_name: &str) -> String {
    let mut name = SpoolName::parse(std::ffi::OsStr::new(spool_name));
    name.key = None;
    name.first_attempt = None;
    name.attempts = 0;
    name.last_reason = None;
    name.to_os_string().to_string_lossy().into_owned()
}

#[derive(Default)]
struct Acc {
    latencies: Vec<f64>,
    e2e: Vec<f64>,
    /// Each delivery's file identity and time, for `e2e` at the end.
    delivered_at: Vec<(String, SystemTime)>,
    stats: ReceiverEvents,
}

pub fn analyse(inputs: Vec<Box<dyn BufRead>>, now: SystemTime) -> EventStats {
    analyse_with(inputs, now, &mut |_, _| {})
}

/// [`analyse`], also showing each readable event and its time to
/// `observe` (the live screen's trends), so the lines are parsed in one place.
pub fn analyse_with(
    inputs: Vec<Box<dyn BufRead>>,
    now: SystemTime,
    observe: &mut dyn FnMut(&Event, SystemTime),
) -> EventStats {
    let mut out = EventStats::default();
    let widest = Duration::from_secs(WINDOWS_MINUTES[WINDOWS_MINUTES.len() - 1] * 60);
    let mut collected_at: HashMap<String, SystemTime> = HashMap::new();
    let mut collected_times = Vec::new();
    let mut delivered_times = Vec::new();
    let mut delivered_keys = HashSet::new();
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    let mut last_reload: Option<(LastReload, SystemTime)> = None;
    for input in inputs {
        for line in input.split(b'\n') {
            let Ok(line) = line else { break };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.lines += 1;
            if let Some(reload) = reload_line(&line) {
                if let Some((reload, time)) = reload
                    && last_reload.as_ref().is_none_or(|(_, t)| *t <= time)
                {
                    last_reload = Some((reload, time));
                }
                continue;
            }
            let Ok(event) = serde_json::from_slice::<Event>(&line) else {
                out.unreadable_lines += 1;
                continue;
            };
            let Ok(time) = humantime::parse_rfc3339_weak(&event.time) else {
                out.unreadable_lines += 1;
                continue;
            };
            observe(&event, time);
            let recent = now.duration_since(time).map_or(true, |age| age <= widest);
            if event.event == EventKind::Collected {
                if recent {
                    collected_times.push(time);
                }
                collected_at.insert(identity(&event.spool_name), time);
                continue;
            }
            let receiver = event
                .receiver
                .clone()
                .unwrap_or_else(|| spoolpost_protocol::event::NO_ROUTE.into());
            let a = acc.entry(receiver).or_default();
            if let Some(ms) = event.latency_ms {
                a.latencies.push(ms);
            }
            match event.event {
                EventKind::Delivered => {
                    a.stats.delivered += 1;
                    if recent {
                        delivered_times.push(time);
                    }
                    if let Some(key) = &event.key
                        && !delivered_keys.insert(key.clone())
                    {
                        a.stats.redeliveries += 1;
                    }
                    a.delivered_at.push((identity(&event.spool_name), time));
                }
                EventKind::Rejected => a.stats.rejected += 1,
                EventKind::Retry => a.stats.retries += 1,
                EventKind::Expired => a.stats.expired += 1,
                EventKind::Vanished => {}
                EventKind::Collected => unreachable!(),
            }
        }
    }
    for minutes in WINDOWS_MINUTES {
        let window = Duration::from_secs(minutes * 60);
        let within = |times: &[SystemTime]| {
            times
                .iter()
                .filter(|t| now.duration_since(**t).is_ok_and(|age| age <= window) || **t > now)
                .count() as f64
        };
        let (c, d) = (within(&collected_times), within(&delivered_times));
        out.rates.push(Rates {
            window_minutes: minutes,
            collected_per_second: c / window.as_secs_f64(),
            delivered_per_second: d / window.as_secs_f64(),
            delivery_ratio: (c > 0.0).then(|| d / c),
        });
    }
    for (name, mut a) in acc {
        // Matched only now that every input is read: a collector's lines
        // may come after the sender's (`--events sender.jsonl --events
        // collector.jsonl`), and the figure must not depend on that order.
        for (id, time) in std::mem::take(&mut a.delivered_at) {
            if let Some(at) = collected_at.get(&id)
                && let Ok(e2e) = time.duration_since(*at)
            {
                a.e2e.push(e2e.as_secs_f64() * 1000.0);
            }
        }
        let mut stats = a.stats;
        stats.attempt_latency_ms = Percentiles::of(a.latencies);
        stats.end_to_end_ms = Percentiles::of(a.e2e);
        out.receivers.insert(name, stats);
    }
    out.last_reload = last_reload.map(|(r, _)| r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_reload_that_changed_the_receivers_is_shown() {
        let lines = concat!(
            r#"{"time":"2026-01-01T00:00:02Z","event":"reload","program":"sender","ok":true,"receivers_added":["c"],"receivers_removed":["b"]}"#,
            "\n",
            r#"{"time":"2026-01-01T00:00:01Z","event":"reload","program":"sender","ok":true,"receivers_added":["b"]}"#,
            "\n",
            r#"{"time":"2026-01-01T00:00:03Z","event":"reload","program":"sender","ok":true}"#,
            "\n",
            r#"{"time":"2026-01-01T00:00:04Z","event":"reload","program":"sender","ok":false,"error":"x"}"#,
            "\n",
        );
        let input: Box<dyn BufRead> = Box::new(std::io::Cursor::new(lines.as_bytes().to_vec()));
        let stats = analyse(vec![input], SystemTime::now());
        let last = stats.last_reload.unwrap();
        assert_eq!(
            (last.receivers_added, last.receivers_removed),
            (vec!["c".to_string()], vec!["b".to_string()])
        );
        assert_eq!(stats.unreadable_lines, 0, "a reload line is not unreadable");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).rev().collect());
        assert_eq!(
            (p.p50, p.p90, p.p99, p.count),
            (Some(50.0), Some(90.0), Some(99.0), 100)
        );
        let p = Percentiles::of(vec![7.0]);
        assert_eq!((p.p50, p.p99), (Some(7.0), Some(7.0)));
        assert_eq!(Percentiles::of(vec![]).p50, None);
    }

    #[test]
    fn end_to_end_latency_does_not_depend_on_the_order_of_the_inputs() {
        let collected = "{\"time\":\"2026-01-01T00:00:00Z\",\"event\":\"collected\",\"file\":\"a.json\",\"spool_name\":\"a.json\",\"bytes_read\":1,\"bytes_sent\":0,\"attempt\":0}\n";
        let delivered = "{\"time\":\"2026-01-01T00:00:02Z\",\"event\":\"delivered\",\"file\":\"a.json\",\"spool_name\":\"a.json~sp.kabababababababababababab.t5\",\"receiver\":\"r\",\"bytes_read\":1,\"bytes_sent\":1,\"attempt\":1}\n";
        let now = humantime::parse_rfc3339("2026-01-01T00:00:10Z").unwrap();
        let run = |first: &'static str, second: &'static str| {
            let inputs: Vec<Box<dyn BufRead>> =
                vec![Box::new(first.as_bytes()), Box::new(second.as_bytes())];
            analyse(inputs, now).receivers["r"].end_to_end_ms.clone()
        };
        let (c_then_d, d_then_c) = (run(collected, delivered), run(delivered, collected));
        assert_eq!(c_then_d.p50, Some(2000.0));
        assert_eq!(
            d_then_c, c_then_d,
            "--events sender.jsonl --events collector.jsonl"
        );
    }

    #[test]
    fn identity_ignores_what_the_sender_adds() {
        assert_eq!(identity("a.json~sp.u1f"), "a.json~sp.u1f");
        assert_eq!(
            identity("a.json~sp.kabababababababababababab.u1f.t5.a2.rhttp-503"),
            "a.json~sp.u1f"
        );
        assert_eq!(identity("a.json~sp.kabababababababababababab.t5"), "a.json");
    }
}
