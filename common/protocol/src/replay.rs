//! done → incoming, for an operator sending delivered files again because
//! the receiver lost them (`reporter replay`). The state-table row and its
//! commit point are in docs/spool.md ("Replay").
//!
//! One `renameat2(done/NAME, incoming/NAME', NOREPLACE)` per file is the
//! commit point: before it the file is delivered, after it the file waits as
//! a new delivery. A crash at any instant leaves the file in exactly one of
//! the two folders (with the `link` + `unlink` fallback, for an instant in
//! both: a duplicate, never a loss, as for every other move).
//!
//! NAME' drops `t`, `a` and `r`, as requeue does: the next claim is a first
//! claim, and attempts count this delivery. The key stays by default, so a
//! receiver that still has the file drops the duplicate; [`Keys::New`]
//! gives it a fresh random key so the receiver takes it as new data. A long
//! name's whole original is kept under the new key (`names/NEWKEY`) before
//! the rename, so the file is never under a name whose record is missing.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;

use crate::fullname;
use crate::name::{Key, SpoolName};
use crate::spool::{Spool, State, annotate};

/// Whether a replayed file keeps its idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// The receiver decides whether it is a duplicate.
    Keep,
    /// A fresh random key: the receiver sees new data.
    New,
}

/// The name a file in `done/` takes in `incoming/` when it is replayed.
pub fn replayed_name(done: &SpoolName, keys: Keys) -> SpoolName {
    let mut name = done.clone();
    name.first_attempt = None;
    name.attempts = 0;
    name.last_reason = None;
    if keys == Keys::New {
        name.key = Some(Key::random());
    }
    name
}

/// Moves `done/done_name` into `incoming/`. Returns the new path, or `None`
/// when the file is no longer in `done/` (housekeeping or another replay
/// took it meanwhile).
pub fn replay(spool: &Spool, done_name: &OsStr, keys: Keys) -> io::Result<Option<PathBuf>> {
    let from = spool.dir(State::Done).join(done_name);
    let mut parsed = SpoolName::parse(done_name);
    if keys == Keys::New {
        // The whole original goes under the new key: resolve it first.
        fullname::resolve(spool.root(), &mut parsed);
    }
    let mut name = replayed_name(&parsed, keys);
    if keys == Keys::New {
        fullname::store(spool.root(), &name)
            .map_err(|e| annotate(e, "cannot keep the whole name of", &from))?;
    }
    match spool.move_into(&from, &spool.dir(State::Incoming), &mut name) {
        Ok(path) => Ok(Some(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(annotate(e, "cannot replay", &from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn delivered(original: &str) -> SpoolName {
        let mut n = SpoolName::fresh(original);
        n.key = Some(Key::random());
        n.first_attempt = Some(1_795_382_151);
        n.attempts = 2;
        n.last_reason = Some("http-503".into());
        n
    }

    #[test]
    fn a_replayed_name_keeps_its_key_and_starts_afresh() {
        let done = delivered("orders-1.json");
        let again = replayed_name(&done, Keys::Keep);
        assert_eq!(again.key, done.key);
        assert_eq!(again.original, done.original);
        assert_eq!(
            (again.first_attempt, again.attempts, again.last_reason),
            (None, 0, None)
        );
    }

    #[test]
    fn new_keys_give_a_different_key() {
        let done = delivered("orders-1.json");
        let again = replayed_name(&done, Keys::New);
        assert!(again.key.is_some());
        assert_ne!(again.key, done.key);
    }

    #[test]
    fn a_replay_moves_the_file_once_and_keeps_a_long_name_whole_under_a_new_key() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let long = OsString::from_vec(vec![b'z'; 200]);
        let done = delivered(long.to_str().unwrap());
        fullname::store(spool.root(), &done).unwrap();
        let done_name = done.to_os_string();
        std::fs::write(spool.dir(State::Done).join(&done_name), b"x").unwrap();

        let to = replay(&spool, &done_name, Keys::New).unwrap().unwrap();
        assert!(!spool.dir(State::Done).join(&done_name).exists());
        let mut moved = SpoolName::parse(to.file_name().unwrap());
        assert_ne!(moved.key, done.key);
        fullname::resolve(spool.root(), &mut moved);
        assert_eq!(moved.original, long, "the whole name is under the new key");

        assert_eq!(
            replay(&spool, &done_name, Keys::Keep).unwrap(),
            None,
            "a file already replayed is not there to move"
        );
    }
}
