//! Which spool entries no spoolpost program handles: a dot-file in
//! `incoming/` (the sender skips it), a loose file in `sending/` outside a
//! claim folder, a folder where files belong, a stray entry in the spool
//! root, a hold on a name no receiver can have. Such entries would sit in
//! the spool unseen, so the census counts them. A pure rule;
//! the census does the listing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use spoolpost_protocol::receiver::check_receiver_name;
use spoolpost_protocol::spool::{DELIVERED_DIR, State};

/// Where an entry was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Root,
    /// `incoming/`, `done/`, `error/`, or `sending/` itself.
    State(State),
    /// Inside a claim folder `sending/ID/`.
    Claim,
    Hold,
    /// `held/`: files an operator put aside one by one.
    Held,
}

/// What an entry is, from its directory entry (no stat needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Symlinks, sockets, FIFOs, devices.
    Other,
}

/// The folders of a spool root (`docs/spool.md`, "Folders").
/// The spool's own folders; `names/` holds the full names of files whose
/// names were cut to fit (see `spoolpost_protocol::fullname`); `rate/` the
/// rate-limit buckets senders share (the sender's `sched::shared_rate`);
/// `uploads/` the multipart uploads into S3 stores not yet ended.
const ROOT_FOLDERS: [&str; 11] = [
    "incoming",
    "sending",
    "done",
    "error",
    "tmp",
    "hold",
    "pace",
    "rate",
    spoolpost_protocol::fullname::NAMES_DIR,
    spoolpost_protocol::held::HELD_DIR,
    spoolpost_protocol::uploads::UPLOADS_DIR,
];

/// Whether an entry is one the programs handle.
pub fn expected(place: Place, name: &OsStr, kind: Kind) -> bool {
    let dot = name.as_bytes().starts_with(b".");
    match place {
        Place::Root => kind == Kind::Dir && ROOT_FOLDERS.iter().any(|f| name == *f),
        Place::State(State::Sending) => kind == Kind::Dir,
        // Non-regular files do arrive in incoming/ (the sender moves them
        // to error/ as unsendable), but there they wait for no one.
        Place::State(State::Incoming) | Place::State(State::Done) | Place::Held => {
            !dot && kind == Kind::File
        }
        // The sender puts unsendable non-regular files here itself.
        Place::State(State::Error) => !dot && kind != Kind::Dir,
        // The sender's lock, circuit file and records in progress are
        // dot-files; anything it claimed is whatever it was in incoming/.
        Place::Claim => kind != Kind::Dir || name == DELIVERED_DIR,
        Place::Hold => {
            kind == Kind::File
                && name
                    .to_str()
                    .is_some_and(|n| check_receiver_name(n).is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_programs_handle_and_what_they_do_not() {
        use Kind::*;
        use Place::{Claim, Hold, Root};
        let cases: &[(Place, &str, Kind, bool)] = &[
            (Root, "incoming", Dir, true),
            (Root, "hold", Dir, true),
            (Root, "rate", Dir, true),
            (Root, "held", Dir, true),
            (Root, "uploads", Dir, true),
            (Place::Held, "a.json~sp.k0", File, true),
            (Place::Held, ".x", File, false),
            (Root, "incoming", File, false),
            (Root, "stray.json", File, false),
            (Root, "backup", Dir, false),
            (Place::State(State::Incoming), "a.json", File, true),
            (Place::State(State::Incoming), ".dot.json", File, false),
            (Place::State(State::Incoming), "sub", Dir, false),
            (Place::State(State::Incoming), "sock", Other, false),
            (Place::State(State::Done), "a.json", File, true),
            (Place::State(State::Done), "sub", Dir, false),
            (Place::State(State::Error), "a.json", File, true),
            (Place::State(State::Error), "a.json.reason.json", File, true),
            (Place::State(State::Error), "fifo", Other, true),
            (Place::State(State::Error), ".x", File, false),
            (Place::State(State::Sending), "0123abcd", Dir, true),
            (Place::State(State::Sending), "loose.json", File, false),
            (Claim, ".lock", File, true),
            (Claim, "a.json~sp.k0", File, true),
            (Claim, "sub", Dir, false),
            (Claim, ".delivered", Dir, true),
            (Hold, "orders", File, true),
            (Hold, ".orders", File, false),
            (Hold, "a b", File, false),
            (Hold, "orders", Dir, false),
        ];
        for &(place, name, kind, want) in cases {
            assert_eq!(
                expected(place, OsStr::new(name), kind),
                want,
                "{place:?} {name} {kind:?}"
            );
        }
    }
}
