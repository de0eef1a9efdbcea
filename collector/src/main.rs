//! `collector`: see the crate documentation and `collector --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_collector::cli::Args;
use spoolpost_common::exit;

fn main() -> ExitCode {
    let args = Args::parse();
    args.diagnostics.init();
    exit::report("collector", spoolpost_collector::main_with(args))
}
