//! Folder names of the spool that are not a file's state (those are
//! `spool::State`): one definition for every module that writes there.

/// Where every file is written before the rename that puts it in place.
pub const TMP_DIR: &str = "tmp";
