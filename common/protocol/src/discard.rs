//! (incoming, held, done or error) → gone, for an operator removing one file
//! (`reporter delete`, as Postfix's `postsuper -d`). The state-table row is
//! in docs/spool.md.
//!
//! The commit point is the `unlink` of the data file: a sender that claimed
//! the file from `incoming/` a moment before has renamed it, so the unlink
//! finds nothing and nothing is deleted (the caller hears `false`). A file
//! being sent (in `sending/ID/`) is never deleted: its sender holds it and
//! would still deliver it. In `error/` the reason record goes after the
//! data, so a crash between the two leaves a record without data, which
//! the reporter shows as unexpected, never data without its reason. A long
//! name's `names/KEY` record goes last, once no copy of the file is left.

use std::ffi::OsStr;
use std::fs;
use std::io;

use crate::fullname;
use crate::name::SpoolName;
use crate::spool::{Spool, State, annotate, reason_name};

/// Removes `name` from `state`'s folder. `Ok(false)` when it is no longer
/// there (it moved on meanwhile). `Sending` is refused: a live sender holds
/// those files.
pub fn delete(spool: &Spool, state: State, name: &OsStr) -> io::Result<bool> {
    if state == State::Sending {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "a sender is sending it; hold its receiver or wait for its outcome",
        ));
    }
    let dir = spool.dir(state);
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(annotate(e, "cannot delete", &path)),
    }
    if state == State::Error {
        let record = dir.join(reason_name(name));
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, "cannot delete", &record)),
        }
    }
    fullname::forget(spool.root(), &SpoolName::parse(name));
    Ok(true)
}

/// Removes `name` from `held/` (see [`crate::held`]). `Ok(false)` when it
/// is no longer there (released meanwhile).
pub fn delete_held(spool: &Spool, name: &OsStr) -> io::Result<bool> {
    let path = crate::held::dir(spool).join(name);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(annotate(e, "cannot delete", &path)),
    }
    fullname::forget(spool.root(), &SpoolName::parse(name));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Key;

    #[test]
    fn a_file_in_error_goes_with_its_reason_and_a_sending_one_stays() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let mut name = SpoolName::fresh("bad.json");
        name.key = Some(Key::random());
        let name = name.to_os_string();
        let error = spool.dir(State::Error);
        fs::write(error.join(&name), b"x").unwrap();
        fs::write(error.join(reason_name(&name)), b"{}").unwrap();
        assert!(delete(&spool, State::Error, &name).unwrap());
        assert_eq!(fs::read_dir(&error).unwrap().count(), 0);
        assert!(
            !delete(&spool, State::Error, &name).unwrap(),
            "already gone"
        );
        let busy = delete(&spool, State::Sending, &name).unwrap_err();
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy);
    }
}
