//! One waiting file put aside by an operator and given back (`reporter
//! hold --file`, `reporter release --file`, as Postfix's `postsuper -h`
//! and `-H`). The state-table rows are in docs/spool.md.
//!
//! `held/NAME` is outside every folder a sender reads, so a held file is
//! never claimed and uses no attempt; its name does not change, so release
//! puts it back exactly as it was (key, attempts and next-attempt time
//! kept). Each way is one no-replace rename: a crash leaves the file in
//! `incoming/` or in `held/`, once (under the `link` + `unlink` fallback,
//! a crash between the two leaves it in both; a file never claimed has no
//! key yet, and each copy would get its own: docs/platforms.md). Only a
//! waiting file (in `incoming/`) can be held: one being sent is its
//! sender's, and files in `done/` and `error/` are not sent anyway.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::name::SpoolName;
use crate::spool::{Spool, State, annotate};

/// The folder of held files under the spool root.
pub const HELD_DIR: &str = "held";

pub fn dir(spool: &Spool) -> PathBuf {
    spool.root().join(HELD_DIR)
}

/// incoming → held. `None` when the file is no longer waiting (a sender
/// claimed it meanwhile).
pub fn hold(spool: &Spool, incoming_name: &OsStr) -> io::Result<Option<PathBuf>> {
    let held = dir(spool);
    fs::create_dir_all(&held).map_err(|e| annotate(e, "cannot create", &held))?;
    let from = spool.dir(State::Incoming).join(incoming_name);
    let mut name = SpoolName::parse(incoming_name);
    match spool.move_into(&from, &held, &mut name) {
        Ok(path) => Ok(Some(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(annotate(e, "cannot hold", &from)),
    }
}

/// held → incoming, under the same name (a `u` field only on a clash).
/// `None` when the file is no longer held.
pub fn release(spool: &Spool, held_name: &OsStr) -> io::Result<Option<PathBuf>> {
    let from = dir(spool).join(held_name);
    let mut name = SpoolName::parse(held_name);
    match spool.move_into(&from, &spool.dir(State::Incoming), &mut name) {
        Ok(path) => Ok(Some(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(annotate(e, "cannot release", &from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_file_comes_back_under_its_own_name() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let name = OsStr::new("a.json~sp.kabababababababababababab.t1796543701.a2.rhttp-503");
        fs::write(spool.dir(State::Incoming).join(name), b"x").unwrap();
        let held = hold(&spool, name).unwrap().unwrap();
        assert_eq!(held, dir(&spool).join(name));
        assert!(!spool.dir(State::Incoming).join(name).exists());
        assert_eq!(hold(&spool, name).unwrap(), None, "no longer waiting");
        let back = release(&spool, name).unwrap().unwrap();
        assert_eq!(back, spool.dir(State::Incoming).join(name));
        assert_eq!(release(&spool, name).unwrap(), None);
    }
}
