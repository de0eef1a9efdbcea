//! `collector`: see the crate documentation and `collector --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_collector::cli::Args;
use spoolpost_common::exit;

fn main() -> ExitCode {
    // First, before anything slow: a SIGHUP or SIGTERM while starting
    // waits for its listener instead of ending the process.
    spoolpost_common::shutdown::hold_from_start();
    let args = Args::parse();
    args.diagnostics.init();
    exit::report("collector", spoolpost_collector::main_with(args))
}
