//! `collector`: see the crate documentation and `collector --help`.

use std::process::ExitCode;

use clap::Parser;
use spoolpost_collector::cli::Args;
use spoolpost_ops::exit;

fn main() -> ExitCode {
    // First, before anything slow: a SIGHUP or SIGTERM while starting
    // waits for its listener instead of ending the process.
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
    exit::report("collector", spoolpost_collector::main_with(args))
}
