//! `sender`: see the crate documentation and `sender --help`.

use std::process::ExitCode;

use spoolpost_ops::exit;
use spoolpost_sender::cli::Args;

// musl's malloc costs the sender CPU; glibc's does not (see
// spoolpost_sender::allocator).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: spoolpost_sender::allocator::Allocator = spoolpost_sender::allocator::Allocator;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    spoolpost_sender::allocator::tune();
    // First, before anything slow: a SIGHUP or SIGTERM while starting
    // (recovering a large dead claim folder, say) waits for its listener
    // instead of ending the process.
    spoolpost_ops::signals::hold_from_start();
    let mut args = Args::parse_command_line();
    // No --config: the packaged /etc/spoolpost.toml, when there is one and
    // no --spool says otherwise (README: "reporter hold orders").
    args.config = spoolpost_ops::config_load::or_installed(
        args.config.take(),
        args.spool.is_some(),
        std::path::Path::new(spoolpost_ops::config::INSTALLED),
    );
    args.diagnostics.init();
    exit::report("sender", spoolpost_sender::main_with(args))
}
