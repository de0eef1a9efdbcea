//! The bad-input and fault catalogue: everything a hostile
//! producer, a broken receiver, a full disk, a signal or a second instance
//! can do to spoolpost, one small test per case, named after what it proves.
//!
//! Each module holds one family of faults. A case that was once a defect is
//! named after it and says which issue found it.

mod collector;
mod config;
mod files;
mod http;
mod names;
mod portable;
mod recovery;
mod spool;
