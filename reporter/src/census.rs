//! What the spool holds, from one streaming pass over its folders: files,
//! bytes and oldest age per state and per receiver, the backlog's age
//! profile (doubling buckets, like Postfix's qshape), and error files grouped
//! by receiver, class and status.
//!
//! Nothing is kept per file: each directory entry is looked at once and
//! added to a handful of counters, so memory does not grow with the spool.
//! A few threads share each folder's listing (see [`Census::take`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use spoolpost_ops::route::Router;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ReasonRecord;
use spoolpost_protocol::spool::{
    DELIVERED_DIR, Spool, State, annotate, is_data_name, is_reason_name, reason_name,
};

use crate::unexpected::{Kind, Place, expected};

/// Upper bounds of the backlog age buckets: 10 s doubling 14 times (to
/// about 23 hours), then everything older.
pub const BUCKETS: usize = 15;

pub fn bucket_bounds() -> [Option<Duration>; BUCKETS] {
    let mut bounds = [None; BUCKETS];
    for (i, b) in bounds.iter_mut().enumerate().take(BUCKETS - 1) {
        *b = Some(Duration::from_secs(10 << i));
    }
    bounds
}

fn bucket_of(age: Duration) -> usize {
    bucket_bounds()
        .iter()
        .position(|b| b.is_none_or(|b| age <= b))
        .unwrap_or(BUCKETS - 1)
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
    /// Seconds since the oldest file entered (its first attempt, or its
    /// mtime if it has none).
    pub oldest_age_seconds: Option<f64>,
}

impl Totals {
    fn add(&mut self, bytes: u64, age: Duration) {
        self.files += 1;
        self.bytes += bytes;
        let age = age.as_secs_f64();
        if self.oldest_age_seconds.is_none_or(|o| age > o) {
            self.oldest_age_seconds = Some(age);
        }
    }

    fn merge(&mut self, other: &Totals) {
        self.files += other.files;
        self.bytes += other.bytes;
        if let Some(age) = other.oldest_age_seconds
            && self.oldest_age_seconds.is_none_or(|o| age > o)
        {
            self.oldest_age_seconds = Some(age);
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReceiverBacklog {
    /// Files waiting in `incoming/` plus files being sent.
    pub backlog: Totals,
    /// Of those, waiting after at least one failed attempt.
    pub retrying: u64,
    /// Backlog files per age bucket (see `age_buckets` in the report).
    pub ages: [u64; BUCKETS],
    pub done: Totals,
    pub error: Totals,
}

impl ReceiverBacklog {
    fn merge(&mut self, other: &ReceiverBacklog) {
        self.backlog.merge(&other.backlog);
        self.retrying += other.retrying;
        for (a, b) in self.ages.iter_mut().zip(other.ages) {
            *a += b;
        }
        self.done.merge(&other.done);
        self.error.merge(&other.error);
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ErrorGroup {
    pub receiver: String,
    pub class: String,
    pub status: Option<u16>,
}

/// How many paths of unexpected entries a report shows.
pub const EXAMPLES: usize = 5;

/// Entries no program handles (see [`crate::unexpected`]).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Unexpected {
    pub entries: u64,
    /// Up to [`EXAMPLES`] of them, relative to the spool root, with
    /// control characters escaped so a name cannot break a table.
    pub examples: Vec<String>,
}

impl Unexpected {
    fn add(&mut self, relative: &Path) {
        self.entries += 1;
        if self.examples.len() < EXAMPLES {
            let text: String = relative
                .to_string_lossy()
                .chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect();
            self.examples.push(text);
        }
    }

    fn merge(&mut self, other: Unexpected) {
        self.entries += other.entries;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Census {
    pub states: BTreeMap<&'static str, Totals>,
    pub receivers: BTreeMap<String, ReceiverBacklog>,
    pub errors: BTreeMap<ErrorGroup, u64>,
    pub unexpected: Unexpected,
}

fn kind_of(entry: &fs::DirEntry) -> Kind {
    match entry.file_type() {
        Ok(t) if t.is_file() => Kind::File,
        Ok(t) if t.is_dir() => Kind::Dir,
        _ => Kind::Other,
    }
}

/// Lists a folder; a missing one is empty (a claim folder can go at any
/// moment), any other failure is the caller's: a spool that cannot be read
/// must not be reported as an empty, healthy one.
fn list(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<io::Result<_>>()
            .map_err(|e| annotate(e, "cannot read", dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(annotate(e, "cannot read", dir)),
    }
}

/// Counts the entries of a folder that are not where they belong.
fn unexpected_in(spool: &Spool, dir: &Path, place: Place, into: &mut Unexpected) -> io::Result<()> {
    for entry in list(dir)? {
        if !expected(place, &entry.file_name(), kind_of(&entry)) {
            let path = entry.path();
            into.add(path.strip_prefix(spool.root()).unwrap_or(&path));
        }
    }
    Ok(())
}

/// Receiver label for files no rule routes, and for all files when no
/// configuration was given.
pub const UNROUTED: &str = spoolpost_protocol::event::NO_ROUTE;
pub const UNKNOWN: &str = "(no config)";

/// Directory entries a thread takes from the shared listing at a time.
const BATCH: usize = 256;

/// What one thread counted in one folder. Receivers are indexes here
/// (the last one is "no route" or "no config"); names are put on at the
/// end, not cloned per file.
struct Tally {
    state: Totals,
    receivers: Vec<ReceiverBacklog>,
    errors: BTreeMap<(usize, String, Option<u16>), u64>,
    unexpected: Unexpected,
}

impl Census {
    /// Counts the spool. Each folder's listing is shared by up to
    /// `threads` threads, which take entries in batches and stat them: the
    /// `statx` per file is nearly all of the cost, and it is system time
    /// that a second core halves.
    pub fn take(
        spool: &Spool,
        router: Option<&Router>,
        now: SystemTime,
        threads: usize,
    ) -> io::Result<Census> {
        let names: Vec<&str> = match router {
            Some(r) => r.receivers().iter().map(|r| r.name.as_str()).collect(),
            None => Vec::new(),
        };
        let other = if router.is_some() { UNROUTED } else { UNKNOWN };
        // Receiver `i` of a tally; the index past the last is `other`.
        let label = |i: usize| names.get(i).copied().unwrap_or(other).to_string();
        let mut census = Census::default();
        unexpected_in(spool, spool.root(), Place::Root, &mut census.unexpected)?;
        unexpected_in(
            spool,
            &spool.root().join("hold"),
            Place::Hold,
            &mut census.unexpected,
        )?;
        for state in State::ALL {
            let dir = spool.dir(state);
            let folders: Vec<_> = if state == State::Sending {
                unexpected_in(spool, &dir, Place::State(state), &mut census.unexpected)?;
                // Each claim folder, and its `.delivered/`: files the
                // receiver took whose move to done/ failed wait there
                // and are counted with those being sent.
                list(&dir)?
                    .into_iter()
                    .filter(|e| kind_of(e) == Kind::Dir)
                    .flat_map(|e| [e.path(), e.path().join(DELIVERED_DIR)])
                    .collect()
            } else {
                vec![dir]
            };
            let mut totals = Totals::default();
            for folder in folders {
                let entries = match fs::read_dir(&folder) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(annotate(e, "cannot read", &folder)),
                };
                let listing = Mutex::new(entries);
                let tallies: Vec<Tally> = std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..threads.max(1))
                        .map(|_| {
                            scope.spawn(|| {
                                tally(&listing, spool, state, &folder, router, names.len(), now)
                            })
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|w| w.join().expect("a census thread panicked"))
                        .collect()
                });
                for t in tallies {
                    totals.merge(&t.state);
                    census.unexpected.merge(t.unexpected);
                    for (i, r) in t.receivers.iter().enumerate() {
                        if r.backlog.files + r.done.files + r.error.files == 0 {
                            continue;
                        }
                        census.receivers.entry(label(i)).or_default().merge(r);
                    }
                    for ((i, class, status), n) in t.errors {
                        *census
                            .errors
                            .entry(ErrorGroup {
                                receiver: label(i),
                                class,
                                status,
                            })
                            .or_default() += n;
                    }
                }
            }
            census.states.insert(state.dir_name(), totals);
        }
        // Files held one by one: counted where they are, so none sits in
        // the spool unseen. The row appears once anything was ever held.
        let held = spoolpost_protocol::held::dir(spool);
        if held.is_dir() {
            let mut totals = Totals::default();
            for entry in list(&held)? {
                if !expected(Place::Held, &entry.file_name(), kind_of(&entry)) {
                    let path = entry.path();
                    census
                        .unexpected
                        .add(path.strip_prefix(spool.root()).unwrap_or(&path));
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    let since = spoolpost_protocol::fsops::ctime(&meta);
                    totals.add(meta.len(), now.duration_since(since).unwrap_or_default());
                }
            }
            census
                .states
                .insert(spoolpost_protocol::held::HELD_DIR, totals);
        }
        Ok(census)
    }
}

/// Takes batches of entries from `listing` until it ends, counting them.
fn tally(
    listing: &Mutex<fs::ReadDir>,
    spool: &Spool,
    state: State,
    folder: &Path,
    router: Option<&Router>,
    receivers: usize,
    now: SystemTime,
) -> Tally {
    let mut t = Tally {
        state: Totals::default(),
        receivers: vec![ReceiverBacklog::default(); receivers + 1],
        errors: BTreeMap::new(),
        unexpected: Unexpected::default(),
    };
    let place = if state == State::Sending {
        Place::Claim
    } else {
        Place::State(state)
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        {
            let mut entries = listing.lock().unwrap_or_else(|e| e.into_inner());
            batch.extend(entries.by_ref().flatten().take(BATCH));
        }
        if batch.is_empty() {
            return t;
        }
        for entry in batch.drain(..) {
            let name = entry.file_name();
            let kind = kind_of(&entry);
            if !expected(place, &name, kind) {
                let path = entry.path();
                t.unexpected
                    .add(path.strip_prefix(spool.root()).unwrap_or(&path));
                continue;
            }
            if !is_data_name(&name) || (state == State::Error && is_reason_name(&name)) {
                continue;
            }
            // fstatat on the folder's descriptor: no path walk per file.
            let Ok(meta) = entry.metadata() else { continue };
            // Unsendable non-regular files wait in error/ like any other.
            if !meta.is_file() && state != State::Error {
                continue;
            }
            let mut parsed = SpoolName::parse(&name);
            // A cut name routes by its whole original, as the sender does.
            spoolpost_protocol::fullname::resolve(spool.root(), &mut parsed);
            let entered = parsed
                .first_attempt
                .map(|t| UNIX_EPOCH + Duration::from_secs(t))
                .or_else(|| meta.modified().ok())
                .unwrap_or(now);
            let age = now.duration_since(entered).unwrap_or(Duration::ZERO);
            let receiver = router
                .and_then(|r| r.receiver_of(&parsed.original))
                .unwrap_or(receivers);
            t.state.add(meta.len(), age);
            let backlog = &mut t.receivers[receiver];
            match state {
                State::Incoming | State::Sending => {
                    backlog.backlog.add(meta.len(), age);
                    backlog.ages[bucket_of(age)] += 1;
                    if parsed.attempts > 0 {
                        backlog.retrying += 1;
                    }
                }
                State::Done => backlog.done.add(meta.len(), age),
                State::Error => {
                    backlog.error.add(meta.len(), age);
                    let (class, status) = read_reason(&folder.join(reason_name(&name)));
                    *t.errors.entry((receiver, class, status)).or_default() += 1;
                }
            }
        }
    }
}

fn read_reason(path: &std::path::Path) -> (String, Option<u16>) {
    match ReasonRecord::read(path) {
        Some(r) => (r.class.as_str().to_string(), r.status),
        None => ("unknown".to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_sharing_a_listing_count_the_same_as_one() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        // Several batches per folder, sizes and names that differ, some
        // retries, and error files with and without a reason record.
        for i in 0..1_500u32 {
            let name = match i % 3 {
                0 => format!("a-{i}.json"),
                1 => format!("b-{i}.json~sp.k{:024x}.t1.a2.rhttp-503", i),
                _ => format!("c-{i}.log"),
            };
            let size = (i % 17) as usize;
            fs::write(spool.dir(State::Incoming).join(name), vec![b'x'; size]).unwrap();
        }
        for i in 0..300u32 {
            fs::write(spool.dir(State::Done).join(format!("a-{i}.json")), b"12").unwrap();
            let name = format!("b-{i}.json");
            fs::write(spool.dir(State::Error).join(&name), b"123").unwrap();
            if i % 2 == 0 {
                let record = ReasonRecord {
                    class: spoolpost_protocol::reason::ErrorClass::Rejected,
                    message: "m".into(),
                    file: name.clone(),
                    key: None,
                    receiver: Some("b".into()),
                    url: None,
                    status: Some(400 + (i % 20) as u16),
                    body: None,
                    body_truncated: false,
                    error: None,
                    attempts: 1,
                    first_attempt: None,
                    last_attempt: "2026-01-01T00:00:00Z".into(),
                };
                fs::write(
                    spool.dir(State::Error).join(reason_name(name.as_ref())),
                    serde_json::to_vec(&record).unwrap(),
                )
                .unwrap();
            }
        }
        let loaded = spoolpost_ops::config_load::parse(
            Path::new("test.toml"),
            r#"
[receivers.a]
url = "http://a.example/"
[receivers.b]
url = "http://b.example/"
[[routes]]
glob = "a-*"
receiver = "a"
[[routes]]
glob = "b-*"
receiver = "b"
"#
            .into(),
        )
        .unwrap();
        let router = Router::from_config(&loaded).unwrap();
        let now = SystemTime::now();
        let take = |threads| {
            let c = Census::take(&spool, Some(&router), now, threads).unwrap();
            let counts = serde_json::json!({"states": c.states, "receivers": c.receivers});
            (counts, c.errors)
        };
        let (one, errors) = take(1);
        assert_eq!(one["states"]["incoming"]["files"], 1_500);
        assert_eq!(one["receivers"]["b"]["retrying"], 500);
        assert_eq!(one["receivers"]["(no route)"]["backlog"]["files"], 500);
        assert_eq!(one["states"]["error"]["files"], 300);
        assert_eq!(errors.len(), 11, "10 statuses and one without a record");
        assert_eq!(take(4), (one, errors));
    }

    #[test]
    fn buckets_double_from_ten_seconds() {
        assert_eq!(bucket_of(Duration::from_secs(0)), 0);
        assert_eq!(bucket_of(Duration::from_secs(10)), 0);
        assert_eq!(bucket_of(Duration::from_secs(11)), 1);
        assert_eq!(bucket_of(Duration::from_secs(21)), 2);
        assert_eq!(bucket_of(Duration::from_secs(10 << 13)), 13);
        assert_eq!(bucket_of(Duration::from_secs(10 << 14)), 14);
        assert_eq!(bucket_of(Duration::from_secs(u64::MAX / 2)), 14);
    }
}
