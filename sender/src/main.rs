//! `sender`: see the crate documentation and `sender --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_common::exit;
use spoolpost_sender::cli::Args;

fn main() -> ExitCode {
    // First, before anything slow: a SIGHUP or SIGTERM while starting
    // (recovering a large dead claim folder, say) waits for its listener
    // instead of ending the process.
    spoolpost_common::shutdown::hold_from_start();
    let args = Args::parse();
    args.diagnostics.init();
    exit::report("sender", spoolpost_sender::main_with(args))
}
