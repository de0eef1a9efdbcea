//! `sender`: see the crate documentation and `sender --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_common::{exit, logging};
use spoolpost_sender::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format, args.verbose);
    exit::report("sender", spoolpost_sender::main_with(args))
}
