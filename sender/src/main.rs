//! `sender`: see the crate documentation and `sender --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_common::exit;
use spoolpost_sender::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    args.diagnostics.init();
    exit::report("sender", spoolpost_sender::main_with(args))
}
