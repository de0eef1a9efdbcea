//! `reporter`: see the crate documentation and `reporter --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_common::exit;
use spoolpost_reporter::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    args.diagnostics.init();
    exit::report("reporter", spoolpost_reporter::main_with(args))
}
