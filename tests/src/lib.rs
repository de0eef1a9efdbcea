//! Test support for spoolpost: the test receiver (a real HTTP server on
//! loopback that answers as told and records what it got) and the harness
//! the integration tests in `tests/` use to run the real binaries.

pub mod config_file;
pub mod harness;
pub mod load;
pub mod notify;
pub mod payload;
pub mod proxy;
pub mod receiver;
pub mod s3;
pub mod system;
