//! Event lines: one JSON object per line for each thing that happened to a
//! file (collected, delivered, rejected, retried, expired, vanished). They go to stdout
//! or a file for the reporter and for whatever else reads them; diagnostics
//! go to stderr through `tracing`, never here. When a person watches, the
//! sink also feeds an [`EventObserver`] (the operations crate's progress
//! line), so every "something happened to a file" passes through
//! [`EventSink::emit`] and nowhere else.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Something that sees every event besides the lines: the progress line a
/// person watches. A trait, so that the protocol knows nothing of terminals.
pub trait EventObserver: Send + Sync {
    fn record(&self, event: &Event);
    /// The sink is finishing: no event follows.
    fn finish(&self);
}

/// What every program calls a file no route sends anywhere (the sender's
/// summary said `(none)` where the reporter said `(no route)`).
pub const NO_ROUTE: &str = "(no route)";

/// A duration in milliseconds for an event line, to the microsecond: a
/// whole number of microseconds over 1,000 prints as `911.167`, where
/// `as_secs_f64() * 1000.0` printed `0.9111670000000001`.
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The collector put a file into `incoming/`.
    Collected,
    /// A 2xx answer: the file went to `done/` (or was deleted).
    Delivered,
    /// A permanent failure: the file went to `error/`.
    Rejected,
    /// A temporary failure: the file went back to `incoming/` to wait.
    Retry,
    /// Retries ran out: the file went to `error/`.
    Expired,
    /// The claimed file was removed from the claim folder by someone else
    /// before its attempt ended: there is nothing left to send or move.
    Vanished,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with milliseconds, UTC.
    pub time: String,
    pub event: EventKind,
    /// The original file name (invalid UTF-8 replaced).
    pub file: String,
    /// The name in the spool after this event.
    pub spool_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Bytes read from the file.
    pub bytes_read: u64,
    /// Bytes put on the wire as the request body (after gzip).
    pub bytes_sent: u64,
    /// Time from the request's start to its answer or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Which attempt this was, counting from 1; 0 for collector events and
    /// for a file given up on before any request was made (no route).
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For collector events: the path the file was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For sender events: the receiver's in-flight limit once this answer
    /// was heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// For sender events: the endpoint that answered (its URL without
    /// credentials or query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// For sender events: the receiver's endpoints this attempt tried
    /// before `endpoint`, each as `URL: what it answered`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_over: Vec<String>,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Writes event lines from a background thread, so a slow reader of stdout
/// never blocks delivery. Lines collect in a buffer that the writer thread
/// flushes every [`FLUSH_EVERY`], or sooner once [`FLUSH_BYTES`] are
/// waiting: a busy sender makes one write per batch and wakes no thread per
/// line. If the reader goes away (a closed pipe), events stop and the work
/// goes on: losing the log of an outcome loses no file.
pub struct EventSink {
    shared: Option<Arc<Shared>>,
    writer: Option<JoinHandle<()>>,
    progress: Option<Arc<dyn EventObserver>>,
}

/// The longest an event line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes that make the writer flush at once.
pub const FLUSH_BYTES: usize = 64 * 1024;

struct Shared {
    state: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
    broken: bool,
    /// A reopened file, and how many of `lines` still belong to the old
    /// one (see [`EventSink::reopen_shared`]).
    switch: Option<(Box<dyn Write + Send>, usize)>,
}

impl EventSink {
    /// `None` or `-` means stdout; otherwise the file is appended to.
    pub fn open(path: Option<&Path>) -> io::Result<EventSink> {
        let out: Box<dyn Write + Send> = match path {
            None => Box::new(io::stdout()),
            Some(p) if p == Path::new("-") => Box::new(io::stdout()),
            Some(p) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot open events file {}: {e}", p.display()),
                        )
                    })?,
            ),
        };
        Ok(Self::spawn(out))
    }

    fn spawn(out: Box<dyn Write + Send>) -> EventSink {
        let shared = Arc::new(Shared {
            state: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || write_lines(&for_writer, out))
            .expect("cannot start the event writer thread");
        EventSink {
            shared: Some(shared),
            writer: Some(writer),
            progress: None,
        }
    }

    /// Writes no lines (a person reads stdout and sees the progress instead).
    pub fn discard() -> EventSink {
        EventSink {
            shared: None,
            writer: None,
            progress: None,
        }
    }

    /// Also passes every event to `progress`, which is told when the sink
    /// finishes (the progress line then prints its summary).
    pub fn with_progress(mut self, progress: Arc<dyn EventObserver>) -> EventSink {
        self.progress = Some(progress);
        self
    }

    pub fn emit(&self, event: &Event) {
        if let Some(progress) = &self.progress {
            progress.record(event);
        }
        let Some(shared) = &self.shared else { return };
        let mut pending = shared.state.lock().unwrap();
        if pending.broken {
            return;
        }
        serde_json::to_writer(&mut pending.lines, event).expect("events always serialize");
        pending.lines.push(b'\n');
        if pending.lines.len() >= FLUSH_BYTES {
            shared.wake.notify_one();
        }
    }

    /// Queues any serializable record as one line (used for lines that are
    /// about the program, not a file, like `"event":"reload"`).
    pub fn emit_record<T: Serialize>(&self, record: &T) {
        let Some(shared) = &self.shared else { return };
        let mut pending = shared.state.lock().unwrap();
        if pending.broken {
            return;
        }
        if serde_json::to_writer(&mut pending.lines, record).is_ok() {
            pending.lines.push(b'\n');
        }
        shared.wake.notify_one();
    }

    /// Opens `path` afresh (logrotate moved the old file away) and writes
    /// what was queued for the old one there: no line is lost or doubled.
    /// On failure the old sink keeps writing. Only a file is reopened:
    /// stdout (no path, or `-`) and a sink that writes nowhere (a person
    /// watches the progress line instead) stay as they are, and so does the
    /// progress line.
    pub fn reopen(&mut self, path: Option<&Path>) -> io::Result<()> {
        let Some(path) = path.filter(|p| *p != Path::new("-")) else {
            return Ok(());
        };
        if self.shared.is_none() {
            return Ok(());
        }
        let mut fresh = EventSink::open(Some(path))?;
        fresh.progress = self.progress.take();
        std::mem::replace(self, fresh).close();
        Ok(())
    }

    /// [`EventSink::reopen`] for a sink shared by running tasks: lines
    /// queued before this call go to the old file, lines after it to the
    /// new one, none lost or doubled.
    pub fn reopen_shared(&self, path: Option<&Path>) -> io::Result<()> {
        let Some(path) = path.filter(|p| *p != Path::new("-")) else {
            return Ok(());
        };
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let fresh = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open events file {}: {e}", path.display()),
                )
            })?;
        let mut pending = shared.state.lock().unwrap();
        // A second reopen before the writer woke: the first boundary holds.
        let boundary = pending
            .switch
            .take()
            .map_or(pending.lines.len(), |(_, at)| at);
        pending.switch = Some((Box::new(fresh), boundary));
        shared.wake.notify_one();
        Ok(())
    }

    /// Writes what is queued and stops the writer.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.state.lock().unwrap().closed = true;
            shared.wake.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_lines(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        let (closed, switch) = {
            let mut pending = shared.state.lock().unwrap();
            if !pending.closed && pending.lines.len() < FLUSH_BYTES && pending.switch.is_none() {
                pending = shared.wake.wait_timeout(pending, FLUSH_EVERY).unwrap().0;
            }
            std::mem::swap(&mut batch, &mut pending.lines);
            (pending.closed, pending.switch.take())
        };
        if let Some((fresh, boundary)) = switch {
            let old_part = &batch[..boundary.min(batch.len())];
            if let Err(e) = out.write_all(old_part).and_then(|()| out.flush()) {
                tracing::error!(error = %e, "cannot write event lines to the old events file");
            }
            batch.drain(..boundary.min(batch.len()));
            out = fresh;
        }
        if !batch.is_empty() {
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    tracing::info!("event reader went away; no more event lines will be written");
                } else {
                    tracing::error!(error = %e, "cannot write event lines; no more will be written");
                }
                let mut pending = shared.state.lock().unwrap();
                pending.broken = true;
                pending.lines = Vec::new();
                return;
            }
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_whole_microseconds_without_float_noise() {
        // as_secs_f64() * 1000.0 printed this one as 0.9111670000000001.
        assert_eq!(millis(Duration::from_nanos(911_167)).to_string(), "0.911");
        assert_eq!(
            millis(Duration::from_micros(911_167)).to_string(),
            "911.167"
        );
        let line = serde_json::to_string(&millis(Duration::from_nanos(1_234_567_891))).unwrap();
        assert_eq!(line, "1234.567");
    }

    /// SIGHUP reopens the events file; a sink that writes nowhere (a
    /// person watches the progress line) or to stdout must stay so, not
    /// start printing event lines onto the terminal.
    #[test]
    fn reopen_touches_only_a_file_and_keeps_what_writes_nowhere() {
        let mut quiet = EventSink::discard();
        quiet.reopen(None).unwrap();
        quiet.reopen(Some(Path::new("-"))).unwrap();
        assert!(quiet.shared.is_none());

        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        let mut sink = EventSink::open(Some(&old)).unwrap();
        sink.emit_record(&serde_json::json!({"n": 1}));
        sink.reopen(Some(&new)).unwrap();
        sink.emit_record(&serde_json::json!({"n": 2}));
        sink.finish();
        let (old, new) = (
            std::fs::read_to_string(old).unwrap(),
            std::fs::read_to_string(new).unwrap(),
        );
        assert_eq!(
            old.lines().count() + new.lines().count(),
            2,
            "{old:?} {new:?}"
        );
        assert!(new.contains("\"n\":2"), "{new:?}");
    }

    #[test]
    fn a_shared_reopen_splits_the_lines_at_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        let sink = EventSink::open(Some(&old)).unwrap();
        sink.emit_record(&serde_json::json!({"n": 1}));
        sink.reopen_shared(Some(&new)).unwrap();
        sink.emit_record(&serde_json::json!({"n": 2}));
        sink.finish();
        let old = std::fs::read_to_string(old).unwrap();
        let new = std::fs::read_to_string(new).unwrap();
        assert_eq!(old, "{\"n\":1}\n");
        assert_eq!(new, "{\"n\":2}\n");
    }

    #[test]
    fn events_are_one_json_object_per_line_and_skip_empty_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let sink = EventSink::open(Some(&path)).unwrap();
        let event = Event {
            time: rfc3339(SystemTime::UNIX_EPOCH),
            event: EventKind::Delivered,
            file: "a\nb".into(),
            spool_name: "a\nb~sp.k0".into(),
            key: None,
            receiver: Some("r".into()),
            status: Some(200),
            bytes_read: 3,
            bytes_sent: 20,
            latency_ms: Some(1.5),
            attempt: 1,
            error: None,
            source: None,
            limit: None,
            endpoint: None,
            failed_over: Vec::new(),
        };
        sink.emit(&event);
        sink.emit(&event);
        sink.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].contains("\"key\""));
        assert_eq!(serde_json::from_str::<Event>(lines[1]).unwrap(), event);
        assert!(lines[0].starts_with(r#"{"time":"1970-01-01T00:00:00.000Z","event":"delivered""#));
    }
}
