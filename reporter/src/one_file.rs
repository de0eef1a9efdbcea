//! The per-file operations, by original name or idempotency key, as
//! Postfix's `postcat -q` and `postsuper -d` work on one queue file:
//! `reporter show` (where the file is, what its name says of its history,
//! why it is in `error/`, and its event lines when `--events` is given) and
//! `reporter delete` (through `common`'s
//! [`discard`](spoolpost_protocol::discard)). [`Which`] is the pure rule for
//! what a word on the command line names; [`find`] walks the spool.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spoolpost_ops::exit::Failure;
use spoolpost_ops::route::Router;
use spoolpost_protocol::event::{Event, rfc3339};
use spoolpost_protocol::name::{SpoolName, retry_wait};
use spoolpost_protocol::reason::ReasonRecord;
use spoolpost_protocol::spool::{
    Spool, State, annotate, is_data_name, is_reason_name, reason_name,
};
use spoolpost_protocol::{discard, fsops, fullname};

use crate::census::{UNKNOWN, UNROUTED};
use crate::list::escape;

/// What a word on the command line names: 24 lowercase hex digits are a
/// key (as `reporter list --format json` and the events print it);
/// anything else is a whole original name.
#[derive(Debug, PartialEq, Eq)]
pub enum Which {
    Key(String),
    Name(Vec<u8>),
}

impl Which {
    pub fn parse(word: &OsString) -> Which {
        let b = word.as_bytes();
        if b.len() == 24 && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            Which::Key(String::from_utf8_lossy(b).into_owned())
        } else {
            Which::Name(b.to_vec())
        }
    }

    pub fn matches(&self, name: &SpoolName) -> bool {
        match self {
            Which::Key(k) => name.key.is_some_and(|key| key.to_string() == *k),
            Which::Name(n) => name.original.as_bytes() == n.as_slice(),
        }
    }
}

/// One file found in the spool.
pub struct Found {
    /// For a held file, `Incoming`: where release puts it back.
    pub state: State,
    /// In `held/`, put aside by an operator.
    pub held: bool,
    pub path: PathBuf,
    pub name: SpoolName,
}

impl Found {
    /// The folder it is in, as docs/spool.md names it.
    fn folder(&self) -> &'static str {
        if self.held {
            spoolpost_protocol::held::HELD_DIR
        } else {
            self.state.dir_name()
        }
    }
}

/// Every file in `incoming/`, `held/`, `sending/*/`, `done/` and `error/`
/// that `which` names (two files may share an original name; a key is one file,
/// unless a crash left a duplicate).
pub fn find(spool: &Spool, which: &Which) -> Result<Vec<Found>, Failure> {
    let mut found = Vec::new();
    let places = [
        (State::Incoming, false),
        (State::Incoming, true),
        (State::Sending, false),
        (State::Done, false),
        (State::Error, false),
    ];
    for (state, held) in places {
        let dir = if held {
            spoolpost_protocol::held::dir(spool)
        } else {
            spool.dir(state)
        };
        let folders: Vec<PathBuf> = if state == State::Sending {
            entries(&dir)?
                .into_iter()
                .filter(|(_, is_dir)| *is_dir)
                .map(|(p, _)| p)
                .collect()
        } else {
            vec![dir]
        };
        for folder in folders {
            for (path, is_dir) in entries(&folder)? {
                let Some(file_name) = path.file_name() else {
                    continue;
                };
                if is_dir
                    || !is_data_name(file_name)
                    || (state == State::Error && is_reason_name(file_name))
                {
                    continue;
                }
                let mut name = SpoolName::parse(file_name);
                fullname::resolve(spool.root(), &mut name);
                if which.matches(&name) {
                    found.push(Found {
                        state,
                        held,
                        path,
                        name,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// A folder's entries and whether each is a folder; a folder that went
/// away meanwhile (a claim folder closed) has none.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, bool)>, Failure> {
    let list = match fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(annotate(e, "cannot read", dir).into()),
    };
    Ok(list
        .flatten()
        .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect())
}

fn state_word(found: &Found) -> &'static str {
    if found.held {
        return "held";
    }
    match found.state {
        State::Incoming if found.name.attempts > 0 => "retry",
        State::Incoming => "waiting",
        State::Sending => "sending",
        State::Done => "done",
        State::Error => "error",
    }
}

/// Writes what the spool knows of each found file, and its event lines
/// from `events`.
pub fn show(
    found: &[Found],
    router: Option<&Router>,
    cap: Duration,
    events: &[PathBuf],
    out: &mut impl Write,
) -> io::Result<()> {
    let now = SystemTime::now();
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let meta = fs::symlink_metadata(&f.path).ok();
        let since = meta.as_ref().map(fsops::ctime);
        let receiver = router.map_or(UNKNOWN.to_string(), |r| {
            r.receiver_of(&f.name.original)
                .map_or(UNROUTED.to_string(), |i| r.receivers()[i].name.clone())
        });
        let key = f.name.key.map(|k| k.to_string());
        let record = (f.state == State::Error)
            .then(|| {
                let file = f.path.file_name().unwrap_or_default();
                ReasonRecord::read(&f.path.with_file_name(reason_name(file)))
            })
            .flatten();
        // The name in error/ counts the attempts before the last; the
        // record counts that one too, as `reporter list` and the events do.
        let attempts = record
            .as_ref()
            .map_or(f.name.attempts, |r| r.attempts.max(f.name.attempts));
        let mut field = |label: &str, value: String| writeln!(out, "{label:<14} {value}");
        field("name", escape(f.name.original.as_bytes()))?;
        field("state", state_word(f).to_string())?;
        field("path", escape(f.path.as_os_str().as_bytes()))?;
        field(
            "key",
            key.clone()
                .unwrap_or_else(|| "- (given at its first claim)".into()),
        )?;
        field("receiver", receiver)?;
        if let Some(m) = &meta {
            field("size", format!("{} bytes", m.len()))?;
        }
        if let Some(t) = since {
            field("since", format!("{} (entered {}/)", rfc3339(t), f.folder()))?;
        }
        field(
            "first attempt",
            f.name
                .first_attempt
                .map_or("-".into(), |t| rfc3339(UNIX_EPOCH + Duration::from_secs(t))),
        )?;
        field("attempts", attempts.to_string())?;
        if let Some(r) = &f.name.last_reason {
            field("last reason", r.clone())?;
        }
        if f.state == State::Incoming
            && !f.held
            && let (Some(m), Some(ctime)) = (&meta, since)
        {
            let mtime = m.modified().unwrap_or(UNIX_EPOCH);
            let wait = retry_wait(f.name.attempts, mtime, ctime, now, cap).unwrap_or_default();
            field("next attempt", rfc3339(now + wait))?;
        }
        if f.state == State::Error {
            match record {
                Some(r) => {
                    field("class", r.class.as_str().to_string())?;
                    field("message", r.message)?;
                    if let Some(s) = r.status {
                        field("status", s.to_string())?;
                    }
                    if let Some(u) = r.url {
                        field("url", u)?;
                    }
                    if let Some(e) = r.error {
                        field("error", e)?;
                    }
                    if let Some(b) = r.body.filter(|b| !b.is_empty()) {
                        let cut = if r.body_truncated { " (cut)" } else { "" };
                        field("answer body", format!("{}{cut}", escape(b.as_bytes())))?;
                    }
                    field("last attempt", r.last_attempt)?;
                }
                None => field("reason", "- (no readable reason record)".into())?,
            }
        }
        if let Some(key) = &key
            && !events.is_empty()
        {
            writeln!(out, "history")?;
            for e in history(events, key)? {
                let mut line = format!("  {} {:<9} attempt {}", e.time, kind_word(&e), e.attempt);
                if let Some(s) = e.status {
                    line.push_str(&format!(" status {s}"));
                }
                if let Some(err) = &e.error {
                    line.push_str(&format!(" {}", escape(err.as_bytes())));
                }
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()
}

fn kind_word(e: &Event) -> String {
    serde_json::to_value(e.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The event lines about `key`, in the order the files hold them; lines
/// that are not events are skipped (a log may hold other lines).
fn history(events: &[PathBuf], key: &str) -> io::Result<Vec<Event>> {
    let mut out = Vec::new();
    for path in events {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(BufReader::new(io::stdin()))
        } else {
            Box::new(BufReader::new(
                fs::File::open(path).map_err(|e| annotate(e, "cannot read", path))?,
            ))
        };
        for line in reader.lines() {
            let line = line?;
            if !line.contains(key) {
                continue;
            }
            if let Ok(e) = serde_json::from_str::<Event>(&line)
                && e.key.as_deref() == Some(key)
            {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// The one file of `found` (already narrowed to where the operation
/// applies); several are refused with their keys, so the operator picks
/// one.
fn only_one<'a>(found: &'a [Found], word: &str, what: &str) -> Result<&'a Found, Failure> {
    match found {
        [] => Err(not_found(word, what)),
        [one] => Ok(one),
        many => {
            let keys: Vec<String> = many
                .iter()
                .map(|f| {
                    format!(
                        "{} in {}/",
                        f.name.key.map_or("(no key)".into(), |k| k.to_string()),
                        f.folder()
                    )
                })
                .collect();
            Err(Failure::usage(format!(
                "{word:?} names {} files; give one's key: {}",
                many.len(),
                keys.join(", ")
            )))
        }
    }
}

fn moved_on(word: &str, what: &str) -> Failure {
    Failure {
        code: spoolpost_ops::exit::TEMPORARY,
        message: format!(
            "{word:?} moved on before it could be {what} (a sender took it); look again with reporter show"
        ),
    }
}

/// `reporter delete`: the one file `which` names, gone. A file being sent
/// is refused (exit 75: try again once it has an outcome).
pub fn delete(spool: &Spool, which: &Which, word: &str) -> Result<String, Failure> {
    let found = find(spool, which)?;
    let one = only_one(&found, word, ANYWHERE)?;
    let file_name = one.path.file_name().unwrap_or_default();
    let deleted = if one.held {
        discard::delete_held(spool, file_name)
    } else {
        discard::delete(spool, one.state, file_name)
    };
    match deleted {
        Ok(true) => Ok(format!(
            "deleted {} from {}/",
            escape(one.name.original.as_bytes()),
            one.folder()
        )),
        Ok(false) => Err(moved_on(word, "deleted")),
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => Err(Failure {
            code: spoolpost_ops::exit::TEMPORARY,
            message: format!("{word:?} is being sent: {e}"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// `reporter hold --file`: the one waiting file `which` names, put aside.
pub fn hold(spool: &Spool, which: &Which, word: &str) -> Result<String, Failure> {
    let found: Vec<Found> = find(spool, which)?
        .into_iter()
        .filter(|f| f.state == State::Incoming && !f.held)
        .collect();
    let one = only_one(
        &found,
        word,
        "in incoming/ (only a waiting file can be held)",
    )?;
    match spoolpost_protocol::held::hold(spool, one.path.file_name().unwrap_or_default())? {
        Some(_) => {
            let key = one
                .name
                .key
                .map_or_else(|| word.to_string(), |k| k.to_string());
            Ok(format!(
                "held {}; {} gives it back",
                escape(one.name.original.as_bytes()),
                spoolpost_ops::hint::reporter_on(
                    spool.root(),
                    &format!("release --file {}", spoolpost_ops::hint::shell_word(&key))
                )
            ))
        }
        None => Err(moved_on(word, "held")),
    }
}

/// `reporter release --file`: the one held file `which` names, back in
/// `incoming/` as it was.
pub fn release(spool: &Spool, which: &Which, word: &str) -> Result<String, Failure> {
    let found: Vec<Found> = find(spool, which)?.into_iter().filter(|f| f.held).collect();
    let one = only_one(&found, word, "in held/")?;
    match spoolpost_protocol::held::release(spool, one.path.file_name().unwrap_or_default())? {
        Some(_) => Ok(format!(
            "released {} to incoming/",
            escape(one.name.original.as_bytes())
        )),
        None => Err(Failure {
            code: 1,
            message: format!("{word:?} is no longer held"),
        }),
    }
}

/// Where `show` and `delete` look.
pub const ANYWHERE: &str = "in incoming/, held/, sending/, done/ or error/";

pub fn not_found(word: &str, place: &str) -> Failure {
    Failure {
        code: 1,
        message: format!("no file named {word:?} or with that key {place}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoolpost_protocol::name::Key;

    #[test]
    fn a_word_is_a_key_only_when_it_has_a_key_s_shape() {
        let key = Key::random();
        let mut name = SpoolName::fresh("orders-1.json");
        name.key = Some(key);
        let k = Which::parse(&OsString::from(key.to_string()));
        assert!(matches!(k, Which::Key(_)));
        assert!(k.matches(&name));
        let n = Which::parse(&OsString::from("orders-1.json"));
        assert_eq!(n, Which::Name(b"orders-1.json".to_vec()));
        assert!(n.matches(&name));
        assert!(
            !Which::parse(&OsString::from("orders-1")).matches(&name),
            "whole names only"
        );
        // Upper case or another length is a name, not a key.
        assert!(matches!(
            Which::parse(&OsString::from(key.to_string().to_uppercase())),
            Which::Name(_)
        ));
        assert!(matches!(
            Which::parse(&OsString::from("abc")),
            Which::Name(_)
        ));
    }
}
