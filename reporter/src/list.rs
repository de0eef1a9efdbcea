//! `reporter list`: one line per file in the spool (waiting, retrying, held,
//! being sent, given up on), as Postfix's `postqueue -j` lists its queue.
//!
//! Each folder is streamed as `readdir` returns it and every line written
//! before the next entry is read: nothing is kept per file, so listing a
//! million files takes no more memory than listing ten. [`Row`] is what a
//! line says; [`escape`], [`Row::table_line`] and [`Row::json_line`] are
//! pure and render it; [`stream`] is the I/O around them.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;
use spoolpost_protocol::event::rfc3339;
use spoolpost_protocol::fullname;
use spoolpost_protocol::name::{SpoolName, retry_wait};
use spoolpost_protocol::reason::ReasonRecord;
use spoolpost_protocol::spool::{
    Spool, State, annotate, is_data_name, is_reason_name, reason_name,
};

use crate::census::{UNKNOWN, UNROUTED};
use crate::cli::{ListFormat, ListState};

/// What one line of the listing says about one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The whole original name (resolved from `names/` when cut).
    pub name: Vec<u8>,
    pub receiver: String,
    pub state: ListState,
    pub attempts: u32,
    /// The first attempt (`t`), or when the file entered its folder (its
    /// ctime) if it was never attempted.
    pub first_seen: SystemTime,
    /// When a sender may try it: now for a waiting file, its (capped)
    /// mtime for a retry, none while it is being sent or in error/.
    pub next_attempt: Option<SystemTime>,
    /// The `r` field of a retry; the reason record's message in error/.
    pub reason: Option<String>,
    pub key: Option<String>,
}

pub const TABLE_HEADER: &str = "STATE    ATTEMPTS FIRST SEEN           NEXT ATTEMPT         RECEIVER         REASON                           NAME";

fn state_word(s: ListState) -> &'static str {
    match s {
        ListState::Waiting => "waiting",
        ListState::Retry => "retry",
        ListState::Sending => "sending",
        ListState::Error => "error",
        ListState::Held => "held",
    }
}

/// Seconds-precision UTC time for the table: it fits a column.
fn short_time(t: SystemTime) -> String {
    let mut s = rfc3339(t);
    // 2026-11-22T21:50:02.113Z → 2026-11-22T21:50:02Z
    if let Some(dot) = s.find('.') {
        s.replace_range(dot..s.len() - 1, "");
    }
    s
}

/// Pads or cuts `text` to `width` characters, so one long cell (a
/// receiver's name, a reason) cannot push the next column.
fn cell(text: &str, width: usize) -> String {
    let mut out: String = text.chars().take(width).collect();
    let n = out.chars().count();
    out.extend(std::iter::repeat_n(' ', width - n));
    out
}

impl Row {
    pub fn table_line(&self) -> String {
        format!(
            "{} {:>8} {} {} {} {} {}",
            cell(state_word(self.state), 8),
            self.attempts,
            cell(&short_time(self.first_seen), 20),
            cell(&self.next_attempt.map_or("-".to_string(), short_time), 20),
            cell(&escape(self.receiver.as_bytes()), 16),
            cell(
                &escape(self.reason.as_deref().unwrap_or("-").as_bytes()),
                32
            ),
            escape(&self.name),
        )
    }

    /// One JSON object. A name that is not UTF-8 is given lossily in
    /// `name` and exactly, as hex, in `name_hex`.
    pub fn json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            name: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            name_hex: Option<String>,
            receiver: &'a str,
            state: &'static str,
            attempts: u32,
            first_seen: String,
            next_attempt: Option<String>,
            reason: Option<&'a str>,
            key: Option<&'a str>,
        }
        let utf8 = std::str::from_utf8(&self.name).is_ok();
        let line = Line {
            name: String::from_utf8_lossy(&self.name).into_owned(),
            name_hex: (!utf8).then(|| self.name.iter().map(|b| format!("{b:02x}")).collect()),
            receiver: &self.receiver,
            state: state_word(self.state),
            attempts: self.attempts,
            first_seen: rfc3339(self.first_seen),
            next_attempt: self.next_attempt.map(rfc3339),
            reason: self.reason.as_deref(),
            key: self.key.as_deref(),
        };
        serde_json::to_string(&line).expect("a plain struct serializes")
    }
}

/// Characters that would let a name rearrange what a terminal shows:
/// zero-width ones and bidirectional overrides (a name that displays as
/// another name).
fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Text safe to print in a table: control characters and invisible or
/// reordering ones as `\u{…}`/`\n`/`\t`, bytes that are not UTF-8 as
/// `\xNN`, and `\` itself doubled so the escaping is unambiguous.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() || invisible(c) {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// What to list.
pub struct Filter<'a> {
    pub receiver: Option<&'a str>,
    pub state: Option<ListState>,
}

/// Everything one row needs that is not in the name.
struct Place<'a> {
    spool: &'a Spool,
    router: Option<&'a Router>,
    filter: &'a Filter<'a>,
    now: SystemTime,
    cap: Duration,
}

impl Place<'_> {
    /// The row for `name` in `dir`, if it passes the filter. `None` also
    /// for a file that went away since the listing (it moved on).
    /// `held`: `dir` is `held/` (its files are waiting ones put aside, so
    /// `folder` is `Incoming`).
    fn row(&self, dir: &Path, name: &OsStr, folder: State, held: bool) -> Option<Row> {
        let mut parsed = SpoolName::parse(name);
        let state = match folder {
            _ if held => ListState::Held,
            State::Incoming if parsed.attempts > 0 => ListState::Retry,
            State::Incoming => ListState::Waiting,
            State::Sending => ListState::Sending,
            State::Error => ListState::Error,
            State::Done => return None,
        };
        if self.filter.state.is_some_and(|s| s != state) {
            return None;
        }
        fullname::resolve(self.spool.root(), &mut parsed);
        let receiver = match self.router {
            Some(r) => r
                .receiver_of(&parsed.original)
                .map_or(UNROUTED, |i| r.receivers()[i].name.as_str()),
            None => UNKNOWN,
        };
        if self.filter.receiver.is_some_and(|want| want != receiver) {
            return None;
        }
        let meta = fs::symlink_metadata(dir.join(name)).ok()?;
        let ctime = spoolpost_protocol::fsops::ctime(&meta);
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let next_attempt = match state {
            ListState::Waiting => Some(self.now),
            ListState::Retry => Some(
                self.now
                    + retry_wait(parsed.attempts, mtime, ctime, self.now, self.cap)
                        .unwrap_or_default(),
            ),
            ListState::Sending | ListState::Error | ListState::Held => None,
        };
        // A file in error/ keeps the attempts of its name from before its
        // last try; its record counts that try too, as the sender's event
        // did (`"attempt":1` for a file refused at once).
        let (reason, attempts) = match state {
            ListState::Error => match ReasonRecord::read(&dir.join(reason_name(name))) {
                Some(r) => (Some(r.message), r.attempts.max(parsed.attempts)),
                None => (None, parsed.attempts),
            },
            _ => (parsed.last_reason.clone(), parsed.attempts),
        };
        Some(Row {
            name: parsed.original.as_bytes().to_vec(),
            receiver: receiver.to_string(),
            state,
            attempts,
            first_seen: parsed
                .first_attempt
                .map_or(ctime, |t| UNIX_EPOCH + Duration::from_secs(t)),
            next_attempt,
            reason,
            key: parsed.key.map(|k| k.to_string()),
        })
    }
}

/// Writes the listing to `out` as the folders are read. A closed pipe
/// (`| head`) ends it quietly.
pub fn stream(
    spool: &Spool,
    router: Option<&Router>,
    cap: Duration,
    filter: &Filter,
    format: ListFormat,
    out: &mut impl Write,
) -> Result<u64, Failure> {
    let place = Place {
        spool,
        router,
        filter,
        now: SystemTime::now(),
        cap,
    };
    let mut listed = 0;
    if format == ListFormat::Table
        && let Err(e) = writeln!(out, "{TABLE_HEADER}")
    {
        return if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(0)
        } else {
            Err(e.into())
        };
    }
    let mut emit = |row: Row| -> io::Result<()> {
        listed += 1;
        let line = match format {
            ListFormat::Table => row.table_line(),
            ListFormat::Json => row.json_line(),
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    };
    let result = (|| -> io::Result<()> {
        for state in [State::Incoming, State::Sending, State::Error] {
            let dir = spool.dir(state);
            for entry in read_dir(&dir)? {
                let Ok(entry) = entry else { continue };
                let name = entry.file_name();
                if !is_data_name(&name) || (state == State::Error && is_reason_name(&name)) {
                    continue;
                }
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if state == State::Sending && is_dir {
                    // A claim folder: its data files are being sent.
                    let folder = entry.path();
                    for inner in read_dir(&folder)? {
                        let Ok(inner) = inner else { continue };
                        let inner_name = inner.file_name();
                        if is_data_name(&inner_name)
                            && !inner.file_type().is_ok_and(|t| t.is_dir())
                            && let Some(row) = place.row(&folder, &inner_name, state, false)
                        {
                            emit(row)?;
                        }
                    }
                } else if !is_dir && let Some(row) = place.row(&dir, &name, state, false) {
                    emit(row)?;
                }
            }
        }
        // Held files: waiting ones an operator put aside (`hold --file`).
        let held = spoolpost_protocol::held::dir(spool);
        for entry in read_dir(&held)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if is_data_name(&name)
                && !entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(row) = place.row(&held, &name, State::Incoming, true)
            {
                emit(row)?;
            }
        }
        Ok(())
    })()
    .and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(listed),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(listed),
        Err(e) => Err(e.into()),
    }
}

/// A folder's entries; one that vanished (a claim folder that was closed
/// meanwhile) has none.
fn read_dir(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<fs::DirEntry>>>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Box::new(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(annotate(e, "cannot read", dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_printable_names_and_shows_every_other_byte() {
        assert_eq!(escape("orders 17.json".as_bytes()), "orders 17.json");
        assert_eq!(escape("é€.txt".as_bytes()), "é€.txt");
        assert_eq!(escape(b"a\nb\tc\x1b[2J"), "a\\nb\\tc\\u{1b}[2J");
        assert_eq!(escape(b"bad\xff\xfe.json"), "bad\\xff\\xfe.json");
        assert_eq!(
            escape(b"back\\xff"),
            "back\\\\xff",
            "a literal \\xff is not a byte"
        );
        assert_eq!(
            escape("evil\u{202e}nosj.exe".as_bytes()),
            "evil\\u{202e}nosj.exe"
        );
        assert_eq!(escape(b"\x7f"), "\\u{7f}");
    }

    fn row() -> Row {
        Row {
            name: b"a\nb\xff".to_vec(),
            receiver: "orders".into(),
            state: ListState::Retry,
            attempts: 2,
            first_seen: UNIX_EPOCH + Duration::from_secs(1_795_382_151),
            next_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_795_382_211)),
            reason: Some("http-503".into()),
            key: Some("3f9c0a1e55d2b7c4e8a09f1d".into()),
        }
    }

    #[test]
    fn a_table_line_is_one_line_with_the_name_last() {
        let line = row().table_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("retry           2 2026-11-22T"), "{line}");
        assert!(line.ends_with(" a\\nb\\xff"), "{line}");
        assert_eq!(
            line.find("orders"),
            TABLE_HEADER.find("RECEIVER"),
            "columns line up with the header"
        );
        assert_eq!(line.find("a\\nb"), TABLE_HEADER.find("NAME"));
    }

    #[test]
    fn a_json_line_is_one_object_and_keeps_the_exact_bytes() {
        let line = row().json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["name"], "a\nb\u{fffd}");
        assert_eq!(v["name_hex"], "610a62ff");
        assert_eq!(v["state"], "retry");
        assert_eq!(v["attempts"], 2);
        assert_eq!(v["reason"], "http-503");
        assert_eq!(v["next_attempt"], "2026-11-22T21:16:51.000Z");
        let mut utf8 = row();
        utf8.name = b"ok.json".to_vec();
        utf8.next_attempt = None;
        let v: serde_json::Value = serde_json::from_str(&utf8.json_line()).unwrap();
        assert!(v.get("name_hex").is_none());
        assert!(v["next_attempt"].is_null());
    }
}
