//! `--generate`: man pages and shell completions, made from the same clap
//! definitions as `--help` (as ripgrep does), so they cannot drift from
//! the flags. Owns the sections a man page has beyond `--help`: the
//! environment (read off the flags' `env`, plus what each program names),
//! files, signals, exit status (from [`crate::exit`]) and examples.
//!
//! Everything is written to stdout; a closed stdout (`| head`) is not an
//! error, as everywhere in these tools.

use std::io::{self, Write};

use clap::{Command, ValueEnum};
use clap_complete::Shell;
use roff::{Roff, bold, roman};

use crate::config_doc;
use crate::exit::{self, Failure};

/// What `--generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page (roff), for `man -l -` or man1/.
    Man,
    /// A bash completion script.
    CompleteBash,
    /// A zsh completion script (`_NAME`).
    CompleteZsh,
    /// A fish completion script.
    CompleteFish,
    /// The configuration file's man page, spoolpost.toml(5), for man5/
    /// (the same from every program).
    // Rendered from docs/configuration.md (config_doc); the comment above
    // is the help text, which names no repository path.
    ConfigMan,
}

/// What a program's man page says beyond its flags: pairs of term and text.
#[derive(Debug, Default)]
pub struct Facts {
    /// Variables read besides those the flags name with `env`.
    pub environment: &'static [(&'static str, &'static str)],
    /// Files besides the spool's folders and the configuration.
    pub files: &'static [(&'static str, &'static str)],
    pub signals: &'static [(&'static str, &'static str)],
    /// Exit codes of this program only, besides the shared ones.
    pub exit_status: &'static [(&'static str, &'static str)],
    /// A command line and what it does.
    pub examples: &'static [(&'static str, &'static str)],
}

/// The collector's man page.
pub const COLLECTOR: Facts = Facts {
    environment: &[
        (
            "NOTIFY_SOCKET",
            "Where to send sd_notify messages (READY, RELOADING, STOPPING, STATUS).",
        ),
        (
            "WATCHDOG_USEC",
            "With WATCHDOG_PID unset or ours: send WATCHDOG=1 at half this interval.",
        ),
    ],
    signals: &[
        (
            "SIGTERM, SIGINT",
            "Finish the file in hand, then exit 0. A second one ends the collector at once, even mid-copy; the next run takes the claimed file over.",
        ),
        (
            "SIGHUP",
            "Reopen --events FILE and read the configuration again; a configuration that does not validate is refused and the old one keeps running.",
        ),
    ],
    exit_status: &[],
    examples: &[
        (
            "collector --spool /var/spool/spoolpost --source /var/lib/app/events --once",
            "Take what is complete now (for cron).",
        ),
        (
            "collector --config /etc/spoolpost.toml",
            "Run as a service until SIGTERM.",
        ),
        (
            "find /data -name '*.json' -print0 | collector --spool /var/spool/spoolpost --stdin -0",
            "Take the files named on stdin.",
        ),
        (
            "collector --check --config /etc/spoolpost.toml",
            "Validate the configuration, sources and spool.",
        ),
    ],
    files: &[],
};

/// The sender's man page.
pub const SENDER: Facts = Facts {
    environment: COLLECTOR.environment,
    signals: &[
        (
            "SIGTERM, SIGINT",
            "Stop claiming, let in-flight requests finish for --grace (10s), return the rest to incoming/, exit 0. A second one cuts the in-flight requests at once and returns their files.",
        ),
        (
            "SIGHUP",
            "Under systemd's ExecReload: reopen and reload (/usr/share/doc/spoolpost/README.md says what reloads today).",
        ),
    ],
    exit_status: &[],
    examples: &[
        (
            "sender --spool /var/spool/spoolpost --url https://example.com/in --once",
            "Send what is waiting to one URL, then exit (for cron).",
        ),
        (
            "sender --config /etc/spoolpost.toml",
            "Run as a service until SIGTERM; several may share one spool.",
        ),
        (
            "sender --check --probe --config /etc/spoolpost.toml",
            "Validate the configuration and reach each receiver without sending.",
        ),
    ],
    files: &[],
};

/// The reporter's man page.
pub const REPORTER: Facts = Facts {
    environment: &[],
    signals: &[(
        "SIGHUP",
        "With --watch or --metrics-listen: read the receivers and routes again.",
    )],
    exit_status: &[
        (
            "3",
            "A --fail-if check held; the reason is on stderr, one line.",
        ),
        (
            "75",
            "Also: the --metrics-listen port is in use (by another reporter or program).",
        ),
    ],
    examples: &[
        (
            "reporter --config /etc/spoolpost.toml",
            "The backlog, rates, latencies and errors as a table.",
        ),
        (
            "reporter --format prometheus --output /var/lib/node_exporter/textfile/spoolpost.prom",
            "Write the metrics for node_exporter's textfile collector, atomically.",
        ),
        (
            "reporter --metrics-listen 127.0.0.1:9464",
            "Serve the same metrics at http://127.0.0.1:9464/metrics for Prometheus to scrape, a fresh report every 15 s, until SIGTERM.",
        ),
        (
            "reporter --fail-if 'backlog_age > 10m' --fail-if 'errors > 0'",
            "A health check: exit 3 with a reason when one holds.",
        ),
        (
            "reporter list --state error",
            "One line per file given up on, with the reason.",
        ),
        (
            "reporter requeue --status 503",
            "Send the files rejected with 503 again.",
        ),
        (
            "reporter replay --receiver orders --delivered-after 6h --dry-run",
            "List the files delivered to orders in the last six hours that a replay would send again, with their count and bytes; without --dry-run, send them (keys kept, at most --rate a second).",
        ),
        (
            "reporter --events /var/log/spoolpost/sender-main-events.jsonl show orders-17.json",
            "Where one file is and why, with its event lines; a key works as well as a name.",
        ),
        (
            "reporter hold orders",
            "Leave receiver orders' files waiting (reporter release orders to resume).",
        ),
    ],
    files: &[],
};

/// The variables every program reads that no flag names.
const SHARED_ENVIRONMENT: &[(&str, &str)] = &[(
    "SPOOLPOST_LOG",
    "A tracing filter for the diagnostics on stderr, e.g. debug or spoolpost_sender=trace; overrides -v.",
)];

/// The spool's folders, the same for every program (docs/spool.md).
const SPOOL_FILES: &[(&str, &str)] = &[
    (
        "SPOOL/incoming/",
        "Files waiting to be sent; producers and the collector put files here by rename.",
    ),
    (
        "SPOOL/sending/ID/",
        "Files claimed by the sender with that id; returned to incoming/ if it dies.",
    ),
    (
        "SPOOL/done/",
        "Delivered files, left for the system's housekeeping.",
    ),
    (
        "SPOOL/error/",
        "Files given up on, each with a NAME.reason.json saying why.",
    ),
    (
        "SPOOL/tmp/",
        "Files being written into the spool, not yet visible to senders.",
    ),
    (
        "SPOOL/hold/NAME",
        "A hold on receiver NAME (reporter hold/release).",
    ),
    (
        "/etc/spoolpost.toml",
        "The usual place of the configuration (--config); one file serves all the programs.",
    ),
];

/// Writes `what` for the program whose command line is `A` to stdout.
pub fn emit_for<A: clap::CommandFactory>(what: Generate, facts: &Facts) -> Result<(), Failure> {
    emit(what, A::command(), facts)
}

/// Writes `what` for `cmd` to stdout.
pub fn emit(what: Generate, cmd: Command, facts: &Facts) -> Result<(), Failure> {
    let stdout = io::stdout();
    match write(what, cmd, facts, &mut stdout.lock()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Failure::io),
    }
}

/// Writes `what` for `cmd` to `out`.
pub fn write(
    what: Generate,
    mut cmd: Command,
    facts: &Facts,
    out: &mut dyn Write,
) -> io::Result<()> {
    let name = cmd.get_name().to_string();
    let shell = match what {
        Generate::Man => return man(cmd, facts, out),
        Generate::ConfigMan => return config_doc::man(out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, name, out);
    out.flush()
}

fn man(cmd: Command, facts: &Facts, out: &mut dyn Write) -> io::Result<()> {
    let environment = environment_of(&cmd, facts);
    page_of(cmd, out)?;
    let mut roff = Roff::new();
    section(&mut roff, "ENVIRONMENT", &environment);
    let files: Vec<_> = SPOOL_FILES.iter().chain(facts.files).collect();
    let files: Vec<(&str, &str)> = files.into_iter().map(|(k, v)| (*k, *v)).collect();
    section(&mut roff, "FILES", &files);
    section(&mut roff, "SIGNALS", facts.signals);
    section(&mut roff, "EXIT STATUS", &exit_status(facts));
    section(&mut roff, "EXAMPLES", facts.examples);
    section(&mut roff, "SEE ALSO", SEE_ALSO);
    roff.to_writer(out)?;
    out.flush()
}

/// Where the package and install.sh put the documents (the
/// pages named repository paths, `docs/spool.md`, that no install has).
const SEE_ALSO: &[(&str, &str)] = &[(
    "collector(1), sender(1), reporter(1), spoolpost.toml(5)",
    "The spool protocol: /usr/share/doc/spoolpost/spool.md; running it as a service: \
     /usr/share/doc/spoolpost/operations.md; everything else: \
     /usr/share/doc/spoolpost/README.md (with install.sh: PREFIX/share/doc/spoolpost/).",
)];

/// clap_mangen's page, but with the subcommands (`reporter list`, ...)
/// and their options in this page: its own SUBCOMMANDS section points to
/// pages such as reporter-list(1), which nothing generates or installs.
fn page_of(cmd: Command, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = cmd;
    cmd.build();
    let subs: Vec<Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .cloned()
        .collect();
    let name = cmd.get_name().to_string();
    let extra = cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some();
    let version = cmd.get_version().is_some();
    let man = clap_mangen::Man::new(cmd).manual("spoolpost");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if !subs.is_empty() {
        writeln!(out, ".SH COMMANDS")?;
        for sub in subs {
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            writeln!(out, ".SS \"{name} {}\"", sub.get_name())?;
            let mut roff = Roff::new();
            roff.text([roman(about)]);
            roff.to_writer(out)?;
            // The global flags (--spool, --config) are in OPTIONS above.
            let globals: Vec<String> = sub
                .get_arguments()
                .filter(|a| a.is_global_set() || a.get_id() == "help")
                .map(|a| a.get_id().to_string())
                .collect();
            let sub = globals
                .iter()
                .fold(sub, |s, id| s.mut_arg(id, |a| a.hide(true)));
            let mut options = Vec::new();
            clap_mangen::Man::new(sub).render_options_section(&mut options)?;
            // Its own heading would end COMMANDS: keep the entries only.
            let options = String::from_utf8_lossy(&options).replacen(".SH OPTIONS\n", "", 1);
            out.write_all(options.as_bytes())?;
        }
    }
    if extra {
        man.render_extra_section(out)?;
    }
    if version {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// The flags' variables, then the program's own, then the shared ones.
fn environment_of(cmd: &Command, facts: &Facts) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for arg in cmd.get_arguments() {
        if let Some(var) = arg.get_env() {
            let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
            vars.push((
                var.to_string_lossy().into_owned(),
                format!("The default of {flag}."),
            ));
        }
    }
    let extra = facts.environment.iter().chain(SHARED_ENVIRONMENT);
    vars.extend(extra.map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

/// The shared codes from [`crate::exit`], then the program's own.
fn exit_status(facts: &Facts) -> Vec<(String, String)> {
    let shared = [
        (
            0,
            "Done. Files that failed were retried or moved to error/, which is not a failure of the tool.",
        ),
        (exit::USAGE, "Bad command line: fix the command."),
        (
            exit::IO_ERROR,
            "Spool I/O error (unreadable, permission denied): fix the spool, then rerun.",
        ),
        (
            exit::TEMPORARY,
            "Temporary failure (disk full, or another condition that may clear): rerun later.",
        ),
        (
            exit::CONFIG,
            "Bad configuration: fix the file named in the message.",
        ),
        (1, "Anything else: read the message."),
    ];
    let mut codes: Vec<(String, String)> = shared
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
    codes.extend(
        facts
            .exit_status
            .iter()
            .map(|(c, t)| (c.to_string(), t.to_string())),
    );
    codes
}

/// One `.SH` with a tagged paragraph per entry; nothing for no entries.
fn section<K: AsRef<str>, V: AsRef<str>>(roff: &mut Roff, title: &str, entries: &[(K, V)]) {
    if entries.is_empty() {
        return;
    }
    roff.control("SH", [title]);
    for (term, text) in entries {
        roff.control("TP", []);
        roff.text([bold(term.as_ref())]);
        roff.text([roman(text.as_ref())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn sample() -> Command {
        Command::new("sample")
            .about("A sample.")
            .arg(Arg::new("spool").long("spool").env("SAMPLE_SPOOL"))
    }

    fn render(what: Generate, facts: &Facts) -> String {
        let mut out = Vec::new();
        write(what, sample(), facts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_man_page_has_every_section_beyond_help() {
        let facts = Facts {
            signals: &[("SIGTERM", "Stop.")],
            examples: &[("sample --spool /s", "Run.")],
            ..Facts::default()
        };
        let page = render(Generate::Man, &facts);
        for header in [
            ".SH NAME",
            ".SH OPTIONS",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH SIGNALS",
            ".SH \"EXIT STATUS\"",
            ".SH EXAMPLES",
        ] {
            assert!(page.contains(header), "{header} missing from\n{page}");
        }
        assert!(page.contains("SAMPLE_SPOOL"), "a flag's env var is listed");
        assert!(page.contains("SPOOLPOST_LOG"));
    }

    #[test]
    fn exit_codes_come_from_the_exit_module() {
        let page = render(Generate::Man, &Facts::default());
        for code in [exit::USAGE, exit::IO_ERROR, exit::TEMPORARY, exit::CONFIG] {
            assert!(page.contains(&format!("\\fB{code}\\fR")), "code {code}");
        }
    }

    #[test]
    fn a_text_starting_with_a_dot_stays_text() {
        let facts = Facts {
            examples: &[(".hostile", ".SH INJECTED")],
            ..Facts::default()
        };
        let page = render(Generate::Man, &facts);
        assert!(!page.lines().any(|l| l == ".SH INJECTED"));
    }

    #[test]
    fn completions_name_the_program() {
        assert!(render(Generate::CompleteBash, &Facts::default()).contains("_sample()"));
        assert!(render(Generate::CompleteZsh, &Facts::default()).contains("#compdef sample"));
        assert!(render(Generate::CompleteFish, &Facts::default()).contains("complete -c sample"));
    }

    #[test]
    fn the_configuration_page_is_the_same_whatever_the_program() {
        let page = render(Generate::ConfigMan, &Facts::default());
        assert!(page.contains(".TH SPOOLPOST.TOML 5"), "{page}");
        assert!(!page.contains("sample"), "the program's own page leaked in");
    }
}
