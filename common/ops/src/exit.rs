//! Exit codes shared by every binary, grouped by what the caller should do
//! (the values follow sysexits.h, as mail tools do):
//!
//! | code | meaning | caller should |
//! |---:|---|---|
//! | 0 | done (files that failed were retried or moved to `error/`, which is not a failure of the tool) | nothing |
//! | 2 | bad command line | fix the command |
//! | 74 | spool I/O error (unreadable, permission denied) | fix the spool, then rerun |
//! | 75 | temporary failure (disk full, another condition that may clear) | rerun later |
//! | 78 | bad configuration | fix the file named in the message |
//! | 1 | anything else | read the message |

use std::io;
use std::process::ExitCode;

use spoolpost_protocol::fsops::is_disk_full;

pub const USAGE: u8 = 2;
pub const IO_ERROR: u8 = 74;
pub const TEMPORARY: u8 = 75;
pub const CONFIG: u8 = 78;

/// A failure of the tool itself, with the exit code that tells the caller
/// what to do about it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn config(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: CONFIG,
            message: message.to_string(),
        }
    }

    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: USAGE,
            message: message.to_string(),
        }
    }

    pub fn io(err: io::Error) -> Failure {
        let code = if is_disk_full(&err) {
            TEMPORARY
        } else {
            IO_ERROR
        };
        Failure {
            code,
            message: err.to_string(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::io(err)
    }
}

/// Prints the failure on stderr and turns it into the process exit code.
pub fn report(program: &str, result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{program}: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
