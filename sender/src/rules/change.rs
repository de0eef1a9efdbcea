//! Whether a claimed file changed while it was sent: fewer bytes than
//! claimed before the end (truncated), more (grew), another file now at
//! the claimed name (replaced), or no file there at all (removed). The rule
//! is [`compare`], pure; `crate::net::file::verify` gathers what it
//! compares.

use std::fmt;

/// Which file a name held and how long it was: what the attempt opened,
/// and what `fstat`/`lstat` show after the last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
}

/// How a file changed while it was being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It ended after `read` of its `claimed` bytes.
    Truncated { claimed: u64, read: u64 },
    /// It held more than its `claimed` bytes.
    Grew { claimed: u64 },
    /// Another file is at its name now.
    Replaced,
    /// No file is at its name any more.
    Removed,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ADVICE: &str = "producers must write elsewhere and rename complete files into the spool; requeue it once it is complete";
        match self {
            Change::Truncated { claimed, read } => write!(
                f,
                "the file was truncated while being sent: it had {claimed} bytes when claimed and ended after {read}; not delivered; {ADVICE}"
            ),
            Change::Grew { claimed } => write!(
                f,
                "the file grew while being sent beyond the {claimed} bytes it had when claimed; not delivered; {ADVICE}"
            ),
            Change::Replaced => write!(
                f,
                "the file was replaced by another file while being sent; the file now here was never sent; {ADVICE}"
            ),
            Change::Removed => write!(
                f,
                "the file was removed from the claim folder while being sent; nothing is left to deliver or move"
            ),
        }
    }
}

/// What the file looked like after its last read.
#[derive(Clone, Copy, Debug)]
pub struct AfterRead {
    /// Bytes read up to the end of the file.
    pub read: u64,
    /// `fstat` of the open file.
    pub open: Stat,
    pub nlink: u64,
    /// `lstat` of the claimed path; `None` if nothing is there.
    pub at_path: Option<Stat>,
}

/// The rule: did the file stay what was claimed, from open to end?
pub fn compare(claimed: Stat, after: AfterRead) -> Option<Change> {
    match after.at_path {
        None => return Some(Change::Removed),
        Some(now) if (now.dev, now.ino) != (claimed.dev, claimed.ino) => {
            return Some(Change::Replaced);
        }
        _ if after.nlink == 0 => return Some(Change::Removed),
        _ => {}
    }
    if after.read < claimed.len || after.open.len < claimed.len {
        return Some(Change::Truncated {
            claimed: claimed.len,
            read: after.read.min(after.open.len),
        });
    }
    if after.read > claimed.len || after.open.len > claimed.len {
        return Some(Change::Grew {
            claimed: claimed.len,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMED: Stat = Stat {
        len: 100,
        dev: 1,
        ino: 7,
    };

    fn after(read: u64, len: u64, nlink: u64, at_path: Option<Stat>) -> AfterRead {
        AfterRead {
            read,
            open: Stat { len, ..CLAIMED },
            nlink,
            at_path,
        }
    }

    #[test]
    fn the_change_table() {
        let other = Stat { ino: 8, ..CLAIMED };
        let table = [
            (after(100, 100, 1, Some(CLAIMED)), None),
            (
                after(40, 40, 1, Some(CLAIMED)),
                Some(Change::Truncated {
                    claimed: 100,
                    read: 40,
                }),
            ),
            // Truncated after the last read: the body had it all, but the
            // file no longer is what was sent.
            (
                after(100, 10, 1, Some(CLAIMED)),
                Some(Change::Truncated {
                    claimed: 100,
                    read: 10,
                }),
            ),
            (
                after(101, 101, 1, Some(CLAIMED)),
                Some(Change::Grew { claimed: 100 }),
            ),
            (
                after(100, 150, 1, Some(CLAIMED)),
                Some(Change::Grew { claimed: 100 }),
            ),
            (after(100, 100, 0, None), Some(Change::Removed)),
            (after(100, 100, 0, Some(other)), Some(Change::Replaced)),
            (after(100, 100, 1, Some(other)), Some(Change::Replaced)),
            // Renamed away inside the folder: still linked, but not here.
            (after(100, 100, 1, None), Some(Change::Removed)),
        ];
        for (i, (a, want)) in table.into_iter().enumerate() {
            assert_eq!(compare(CLAIMED, a), want, "row {i}: {a:?}");
        }
    }
}
