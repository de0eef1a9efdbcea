//! The spool itself under stress: permissions, read-only mounts, a full disk,
//! no inodes left, a source folder inside the spool, signals, and two
//! instances of each program at once.
