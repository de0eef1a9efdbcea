//! What a person at a terminal is told about a run: counts kept from the
//! event stream, and the progress line and end summary drawn from them. Pure:
//! no clock, no terminal, so the wording and the arithmetic are tested here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use spoolpost_protocol::event::{Event, EventKind};

/// Which program is reporting; it decides what "done" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Collector,
}

/// Outcomes for one receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerReceiver {
    pub delivered: u64,
    pub rejected: u64,
    pub expired: u64,
    pub vanished: u64,
    /// Retry events: attempts that ended in "try again later".
    pub retries: u64,
    /// The files (by key, else name) whose last attempt in this run asked
    /// for another. Counting retries against later attempts instead went
    /// wrong for a file a previous run had retried: its later attempt
    /// ended a wait this run never saw, and the summary said 1 file waits
    /// where 10 did.
    waiting_files: BTreeSet<String>,
}

impl PerReceiver {
    /// Files whose last attempt in this run asked for another.
    pub fn waiting(&self) -> u64 {
        self.waiting_files.len() as u64
    }

    /// Files this run is finished with, for now or for good.
    pub fn done(&self) -> u64 {
        self.delivered + self.rejected + self.expired + self.vanished + self.waiting()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub receivers: BTreeMap<String, PerReceiver>,
    pub collected: u64,
    pub bytes: u64,
}

/// The receiver name shown for events that name none.
/// The reporter's word for it too, so one file has one name.
const NO_RECEIVER: &str = spoolpost_protocol::event::NO_ROUTE;

impl Tally {
    pub fn record(&mut self, event: &Event) {
        if event.event == EventKind::Collected {
            self.collected += 1;
            self.bytes += event.bytes_read;
            return;
        }
        let name = event.receiver.as_deref().unwrap_or(NO_RECEIVER);
        let counts = match self.receivers.get_mut(name) {
            Some(c) => c,
            None => self.receivers.entry(name.to_string()).or_default(),
        };
        let file = event.key.as_ref().unwrap_or(&event.file);
        // A file's later attempt ends its wait, whatever it ends in; a
        // retry (again) starts one.
        counts.waiting_files.remove(file);
        match event.event {
            EventKind::Delivered => {
                counts.delivered += 1;
                self.bytes += event.bytes_read;
            }
            EventKind::Rejected => counts.rejected += 1,
            EventKind::Expired => counts.expired += 1,
            EventKind::Vanished => counts.vanished += 1,
            EventKind::Retry => {
                counts.retries += 1;
                counts.waiting_files.insert(file.clone());
            }
            EventKind::Collected => {}
        }
    }

    fn sum(&self, f: impl Fn(&PerReceiver) -> u64) -> u64 {
        self.receivers.values().map(f).sum()
    }

    pub fn done(&self, role: Role) -> u64 {
        match role {
            Role::Sender => self.sum(PerReceiver::done),
            Role::Collector => self.collected,
        }
    }
}

/// What the live line needs besides the tally.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    pub elapsed: Duration,
    /// Files there were to do when the run began, if that is known (`--once`).
    pub found: Option<u64>,
    pub open_circuits: usize,
}

/// The one live line, e.g.
/// `done 120/500 files  delivered 116  40.0 files/s  1.2 MB/s  retries 3  rejected 1  open circuits 0  0:03 elapsed  ETA 0:09`.
pub fn line(role: Role, tally: &Tally, at: Moment) -> String {
    let done = tally.done(role);
    let secs = at.elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let mut out = String::new();
    // The sender's count is every file it is finished with (delivered,
    // rejected, expired, waiting to retry): "sent 210" beside a summary of
    // 200 delivered read as a contradiction, so it says
    // "done", and delivered is shown as the summary counts it.
    let verb = match role {
        Role::Sender => "done",
        Role::Collector => "collected",
    };
    match at.found {
        Some(found) => {
            let found = found.max(done);
            let _ = write!(out, "{verb} {done}/{found} files");
        }
        None => {
            let _ = write!(out, "{verb} {done} files");
        }
    }
    if role == Role::Sender {
        let _ = write!(out, "  delivered {}", tally.sum(|c| c.delivered));
    }
    let _ = write!(
        out,
        "  {rate:.1} files/s  {:.1} MB/s",
        tally.bytes as f64 / secs / 1e6
    );
    if role == Role::Sender {
        let _ = write!(
            out,
            "  retries {}  rejected {}  open circuits {}",
            tally.sum(|c| c.retries),
            tally.sum(|c| c.rejected + c.expired),
            at.open_circuits
        );
    }
    let _ = write!(out, "  {} elapsed", clock(at.elapsed));
    if let Some(found) = at.found {
        let left = found.saturating_sub(done);
        if left > 0 && rate > 0.0 {
            let eta = Duration::from_secs_f64(left as f64 / rate);
            let _ = write!(out, "  ETA {}", clock(eta));
        }
    }
    out
}

/// The end summary: totals, one row per receiver, and where the failures are.
pub fn summary(role: Role, tally: &Tally, elapsed: Duration, spool: &str) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let done = tally.done(role);
    let mut out = format!(
        "{}: {done} files in {} ({:.1} files/s, {:.1} MB/s)\n",
        match role {
            Role::Sender => "sender",
            Role::Collector => "collector",
        },
        clock(elapsed),
        done as f64 / secs,
        tally.bytes as f64 / secs / 1e6
    );
    if role == Role::Collector {
        return out;
    }
    let width = tally
        .receivers
        .keys()
        .map(|k| k.chars().count())
        .chain([8])
        .max()
        .unwrap_or(8)
        .min(40);
    let _ = writeln!(
        out,
        "  {:<width$}  {:>9}  {:>8}  {:>7}  {:>7}",
        "receiver", "delivered", "rejected", "waiting", "expired"
    );
    for (name, c) in &tally.receivers {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>9}  {:>8}  {:>7}  {:>7}",
            name,
            c.delivered,
            c.rejected,
            c.waiting(),
            c.expired
        );
    }
    let failed = tally.sum(|c| c.rejected + c.expired);
    if failed > 0 {
        let _ = writeln!(
            out,
            "{failed} rejected or expired files are in {spool}/error/ (each with a .reason.json); \
             list them with: {}",
            crate::hint::reporter_on(std::path::Path::new(spool), "list --state error")
        );
    }
    let waiting = tally.sum(PerReceiver::waiting);
    if waiting > 0 {
        let _ = writeln!(
            out,
            "{waiting} files wait in {spool}/incoming/ for another try"
        );
    }
    out
}

/// `m:ss`, or `h:mm:ss` past an hour.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of a file of its own (a new name each time).
    fn ev(kind: EventKind, receiver: &str, attempt: u32) -> Event {
        static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "f{}",
            FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Event {
            time: String::new(),
            event: kind,
            file: name.clone(),
            spool_name: name,
            key: None,
            receiver: Some(receiver.into()),
            status: None,
            bytes_read: 1000,
            bytes_sent: 10,
            latency_ms: None,
            attempt,
            error: None,
            source: None,
            limit: None,
            endpoint: None,
            failed_over: Vec::new(),
        }
    }

    #[test]
    fn an_unrouted_file_is_named_as_the_reporter_names_it() {
        let mut t = Tally::default();
        let mut e = ev(EventKind::Rejected, "x", 1);
        e.receiver = None;
        t.record(&e);
        let text = summary(Role::Sender, &t, Duration::from_secs(1), "/s");
        assert!(text.contains(spoolpost_protocol::event::NO_ROUTE), "{text}");
        assert_eq!(spoolpost_protocol::event::NO_ROUTE, "(no route)");
    }

    #[test]
    fn a_retry_waits_until_a_later_attempt_ends_it() {
        let mut t = Tally::default();
        let same = |kind, attempt| {
            let mut e = ev(kind, "a", attempt);
            e.key = Some("k".into());
            e
        };
        t.record(&same(EventKind::Retry, 1));
        assert_eq!(t.receivers["a"].waiting(), 1);
        t.record(&same(EventKind::Retry, 2));
        assert_eq!(t.receivers["a"].waiting(), 1);
        t.record(&same(EventKind::Delivered, 3));
        assert_eq!(t.receivers["a"].waiting(), 0);
        assert_eq!(t.done(Role::Sender), 1);
    }

    #[test]
    fn a_file_a_previous_run_retried_does_not_end_another_files_wait() {
        let mut t = Tally::default();
        let named = |kind, attempt, key: &str| {
            let mut e = ev(kind, "a", attempt);
            e.key = Some(key.into());
            e
        };
        // Retried by the run before, delivered by this one.
        t.record(&named(EventKind::Delivered, 2, "old"));
        t.record(&named(EventKind::Retry, 1, "new"));
        assert_eq!(t.receivers["a"].waiting(), 1);
        assert_eq!(t.done(Role::Sender), 2);
        // A retry of an old one waits too, once however often it is retried.
        t.record(&named(EventKind::Retry, 3, "older"));
        t.record(&named(EventKind::Retry, 4, "older"));
        assert_eq!(t.receivers["a"].waiting(), 2);
        assert_eq!(t.done(Role::Sender), 3);
    }

    #[test]
    fn the_line_counts_against_what_was_found_and_estimates_the_rest() {
        let mut t = Tally::default();
        for _ in 0..10 {
            t.record(&ev(EventKind::Delivered, "a", 1));
        }
        t.record(&ev(EventKind::Rejected, "b", 1));
        let at = Moment {
            elapsed: Duration::from_secs(2),
            found: Some(33),
            open_circuits: 1,
        };
        assert_eq!(
            line(Role::Sender, &t, at),
            "done 11/33 files  delivered 10  5.5 files/s  0.0 MB/s  retries 0  rejected 1  \
             open circuits 1  0:02 elapsed  ETA 0:04"
        );
    }

    #[test]
    fn the_line_says_delivered_as_the_summary_does_not_sent_for_every_outcome() {
        let mut t = Tally::default();
        for _ in 0..200 {
            t.record(&ev(EventKind::Delivered, "a", 1));
        }
        for _ in 0..6 {
            t.record(&ev(EventKind::Retry, "a", 1));
        }
        for _ in 0..4 {
            t.record(&ev(EventKind::Rejected, "a", 1));
        }
        let at = Moment {
            elapsed: Duration::from_secs(2),
            found: Some(210),
            open_circuits: 0,
        };
        let l = line(Role::Sender, &t, at);
        assert!(!l.contains("sent 210"), "{l}");
        assert!(l.starts_with("done 210/210 files  delivered 200  "), "{l}");
        let s = summary(Role::Sender, &t, Duration::from_secs(2), "/s");
        assert!(summary_row_delivered(&s, "a") == 200, "{s}");
    }

    /// The delivered column of a receiver's row in the summary.
    fn summary_row_delivered(s: &str, name: &str) -> u64 {
        s.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn the_summary_has_a_row_per_receiver_and_says_where_failures_are() {
        let mut t = Tally::default();
        t.record(&ev(EventKind::Delivered, "a", 1));
        t.record(&ev(EventKind::Rejected, "a", 1));
        t.record(&ev(EventKind::Retry, "b", 1));
        let s = summary(Role::Sender, &t, Duration::from_secs(1), "/s");
        let rows: Vec<&str> = s.lines().collect();
        assert_eq!(rows[2], "  a                 1         1        0        0");
        assert_eq!(rows[3], "  b                 0         0        1        0");
        assert!(rows[4].contains("/s/error/"), "{s}");
        assert!(rows[5].starts_with("1 files wait"), "{s}");
    }

    #[test]
    fn clock_reads_like_a_stopwatch() {
        assert_eq!(clock(Duration::from_secs(59)), "0:59");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }
}
