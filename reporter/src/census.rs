//! What the spool holds, from one streaming pass over its folders: files,
//! bytes and oldest age per state and per receiver, the backlog's age
//! profile (doubling buckets, like Postfix's qshape), and error files grouped
//! by receiver, class and status.
//!
//! Nothing is kept per file: each directory entry is looked at once and
//! added to a handful of counters, so memory does not grow with the spool.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use spoolpost_common::name::SpoolName;
use spoolpost_common::reason::ReasonRecord;
use spoolpost_common::route::Router;
use spoolpost_common::spool::{Spool, State, is_data_name, is_reason_name, reason_name};

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

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ErrorGroup {
    pub receiver: String,
    pub class: String,
    pub status: Option<u16>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Census {
    pub states: BTreeMap<&'static str, Totals>,
    pub receivers: BTreeMap<String, ReceiverBacklog>,
    pub errors: BTreeMap<ErrorGroup, u64>,
}

/// Receiver label for files no rule routes, and for all files when no
/// configuration was given.
pub const UNROUTED: &str = "(no route)";
pub const UNKNOWN: &str = "(no config)";

impl Census {
    pub fn take(spool: &Spool, router: Option<&Router>, now: SystemTime) -> Census {
        let mut census = Census::default();
        for state in State::ALL {
            census.states.insert(state.dir_name(), Totals::default());
            let dir = spool.dir(state);
            let folders: Vec<_> = if state == State::Sending {
                fs::read_dir(&dir)
                    .map(|e| e.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default()
            } else {
                vec![dir]
            };
            for folder in folders {
                let Ok(entries) = fs::read_dir(&folder) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if !is_data_name(&name) || (state == State::Error && is_reason_name(&name)) {
                        continue;
                    }
                    let Ok(meta) = entry.metadata() else { continue };
                    if !meta.is_file() {
                        continue;
                    }
                    let parsed = SpoolName::parse(&name);
                    let entered = parsed
                        .first_attempt
                        .map(|t| UNIX_EPOCH + Duration::from_secs(t))
                        .or_else(|| meta.modified().ok())
                        .unwrap_or(now);
                    let age = now.duration_since(entered).unwrap_or(Duration::ZERO);
                    let receiver = match router {
                        None => UNKNOWN.to_string(),
                        Some(r) => r
                            .receiver_of(&parsed.original)
                            .map_or(UNROUTED.to_string(), |i| r.receivers()[i].name.clone()),
                    };
                    census
                        .states
                        .get_mut(state.dir_name())
                        .unwrap()
                        .add(meta.len(), age);
                    let backlog = census.receivers.entry(receiver.clone()).or_default();
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
                            *census
                                .errors
                                .entry(ErrorGroup {
                                    receiver,
                                    class,
                                    status,
                                })
                                .or_default() += 1;
                        }
                    }
                }
            }
        }
        census
    }
}

fn read_reason(path: &std::path::Path) -> (String, Option<u16>) {
    match fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice::<ReasonRecord>(&t).ok())
    {
        Some(r) => (r.class.as_str().to_string(), r.status),
        None => ("unknown".to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
