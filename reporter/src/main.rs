//! `reporter`: see the crate documentation and `reporter --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_ops::exit;
use spoolpost_reporter::Args;

fn main() -> ExitCode {
    // First, before anything slow: a SIGHUP while a --watch starts waits
    // for its listener instead of ending the process.
    spoolpost_ops::signals::hold_from_start();
    let mut args = Args::parse();
    // No --config: the packaged /etc/spoolpost.toml, when there is one and
    // no --spool says otherwise (README: "reporter hold orders").
    args.config = spoolpost_ops::config_load::or_installed(
        args.config.take(),
        args.spool.is_some(),
        std::path::Path::new(spoolpost_ops::config::INSTALLED),
    );
    args.diagnostics.init();
    exit::report("reporter", spoolpost_reporter::main_with(args))
}
