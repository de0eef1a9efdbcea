//! Broken configuration and command lines: refused at start with the file
//! and line, the right exit code, and nothing touched in the spool.
