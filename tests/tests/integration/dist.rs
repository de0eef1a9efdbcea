//! What `dist/` ships and what `--generate` writes, checked with the tools
//! that will consume them: `systemd-analyze verify` for the units, `man`
//! for the pages, `bash -n` for the completions, and the programs' own
//! `--check` for the example configuration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spoolpost_tests::harness::*;

mod package;

const LIMIT: Duration = Duration::from_secs(60);
const PROGRAMS: [&str; 3] = ["collector", "sender", "reporter"];

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

fn generate(program: &str, what: &str) -> String {
    let done = run(command(program).args(["--generate", what]), LIMIT);
    done.assert_success();
    assert!(
        !done.stdout.is_empty(),
        "{program} --generate {what}: empty"
    );
    done.stdout.clone()
}

#[test]
fn each_man_page_has_the_sections_beyond_help_and_renders() {
    for program in PROGRAMS {
        let page = generate(program, "man");
        for header in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH SIGNALS",
            ".SH \"EXIT STATUS\"",
            ".SH EXAMPLES",
        ] {
            assert!(page.contains(header), "{program}: {header} missing");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{program}.1"));
        std::fs::write(&file, &page).unwrap();
        // groff's warnings (-ww) go to stderr: a malformed page shows there.
        let shown = run(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&file)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80"),
            LIMIT,
        );
        shown.assert_success();
        assert!(shown.stderr.is_empty(), "{program}: {}", shown.stderr);
        assert!(shown.stdout.contains("EXIT STATUS"), "{program}");
    }
}

#[test]
fn each_bash_completion_is_valid_bash() {
    for program in PROGRAMS {
        let script = generate(program, "complete-bash");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(program);
        std::fs::write(&file, &script).unwrap();
        run(Command::new("bash").arg("-n").arg(&file), LIMIT).assert_success();
        assert!(script.contains("--generate"), "{program}");
    }
    for program in PROGRAMS {
        assert!(generate(program, "complete-zsh").starts_with(&format!("#compdef {program}")));
        assert!(generate(program, "complete-fish").contains(&format!("complete -c {program}")));
    }
}

#[test]
fn an_unknown_generate_value_is_exit_2_with_the_list() {
    for program in PROGRAMS {
        let done = run(command(program).args(["--generate", "html"]), LIMIT);
        assert_eq!(done.status.code(), Some(2), "{program}");
        assert!(
            done.stderr
                .contains("man, complete-bash, complete-zsh, complete-fish"),
            "{program}: {}",
            done.stderr
        );
        assert!(done.stdout.is_empty());
    }
}

/// The units as shipped, with /usr/bin/PROGRAM pointing at the freshly
/// built binaries: `verify` checks that each ExecStart executable exists.
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let scratch = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(dist().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        for program in PROGRAMS {
            text = text.replace(
                &format!("/usr/bin/{program} "),
                &format!("{} ", bin(program).display()),
            );
        }
        assert!(
            !text.contains("/usr/bin/"),
            "{}: a path left unmapped",
            path.display()
        );
        let copy = scratch.path().join(path.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        units.push(copy);
    }
    assert_eq!(
        units.len(),
        5,
        "collector, sender@, reporter .service and .timer, target"
    );
    let done = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&units)
            .current_dir(scratch.path()),
        LIMIT,
    );
    assert!(
        done.status.success() && done.stderr.trim().is_empty(),
        "exit {:?}\n{}{}",
        done.status,
        done.stdout,
        done.stderr
    );
}

/// Every service carries the settings the operations guide promises.
#[test]
fn each_service_is_hardened_and_supervised() {
    for name in [
        "spoolpost-collector.service",
        "spoolpost-sender@.service",
        "spoolpost-reporter.service",
    ] {
        let text = std::fs::read_to_string(dist().join("systemd").join(name)).unwrap();
        let long_running = !name.contains("reporter");
        let mut wanted = vec![
            "User=spoolpost",
            "ExecStartPre=/usr/bin/",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=\n",
            "MemoryMax=",
            "ReadWritePaths=/",
        ];
        if long_running {
            wanted.extend([
                "Type=notify",
                "ExecReload=/bin/kill -HUP $MAINPID",
                "WatchdogSec=",
                "Restart=on-failure",
                "TimeoutStopSec=30s",
            ]);
        } else {
            wanted.push("Type=oneshot");
        }
        for line in wanted {
            assert!(text.contains(line), "{name}: no {line:?}");
        }
        assert!(
            text.contains(" --check --config /etc/spoolpost.toml"),
            "{name}"
        );
    }
}

/// The example configuration is accepted by each program's --check, with
/// its paths moved into a scratch spool.
#[test]
fn the_example_configuration_passes_every_check() {
    let spool = TestSpool::new();
    let source = spool.side("app-events");
    std::fs::create_dir_all(&source).unwrap();
    let text = std::fs::read_to_string(dist().join("spoolpost.toml"))
        .unwrap()
        .replace("/var/spool/spoolpost", path_str(&spool.root))
        .replace("/var/lib/app/events", path_str(&source));
    let file = config(&spool, &text);
    for program in PROGRAMS {
        let done = run(
            command(program)
                .arg("--check")
                .arg("--config")
                .arg(&file)
                .env_remove("SPOOLPOST_SPOOL")
                .env("ORDERS_TOKEN", "Bearer example"),
            LIMIT,
        );
        assert!(
            done.status.success(),
            "{program} --check: exit {:?}\n{}",
            done.status,
            done.stderr
        );
    }
}

/// The other files are syntactically what their consumers expect.
#[test]
fn tmpfiles_logrotate_and_cron_files_are_well_formed() {
    let tmpfiles = std::fs::read_to_string(dist().join("tmpfiles.d/spoolpost.conf")).unwrap();
    for folder in ["incoming", "sending", "done", "error", "tmp", "hold"] {
        let path = format!("/var/spool/spoolpost/{folder} ");
        assert!(
            tmpfiles
                .lines()
                .any(|l| l.starts_with("d ") && l.contains(&path)),
            "tmpfiles: no {folder}/"
        );
    }
    let logrotate = std::fs::read_to_string(dist().join("logrotate.d/spoolpost")).unwrap();
    assert!(logrotate.contains("postrotate") && logrotate.contains("--signal=HUP"));
    let cron = std::fs::read_to_string(dist().join("cron/spoolpost")).unwrap();
    for line in cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        if line.contains('=') && !line.contains(' ') {
            continue; // a variable such as PATH=...
        }
        assert!(
            line.split_whitespace().count() > 6,
            "cron line without a command: {line}"
        );
    }
    assert!(cron.contains("--once") && cron.contains("--fail-if"));
}

/// The documents the package installs, as install.sh puts them.
const INSTALLED_DOCS: [&str; 4] = ["README.md", "operations.md", "spool.md", "platforms.md"];

/// What a text refers a reader to that the package does not install: man
/// pages other than the three, and repository paths (`docs/…`, "the
/// README") that are not where the package puts the documents.
fn dangling_references(text: &str) -> Vec<String> {
    let plain = ["\\fB", "\\fI", "\\fR", "\\fP"]
        .iter()
        .fold(text.replace("\\-", "-"), |t, font| t.replace(font, ""));
    let mut bad = Vec::new();
    for (at, _) in plain.match_indices("(1)") {
        let name: String = plain[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !PROGRAMS.contains(&name.as_str()) {
            bad.push(format!("{name}(1)"));
        }
    }
    for (at, _) in plain.match_indices("docs/") {
        // /usr/share/doc/spoolpost/... is fine; a bare docs/X.md is not.
        if !plain[..at].ends_with("share/") {
            bad.push(plain[at..].split_whitespace().next().unwrap_or("").into());
        }
    }
    if plain.contains("the README") {
        bad.push("\"the README\"".into());
    }
    for (at, _) in plain.match_indices("/usr/share/doc/spoolpost/") {
        let rest = &plain[at + "/usr/share/doc/spoolpost/".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
            .collect();
        let name = name.trim_end_matches('.');
        if !INSTALLED_DOCS.contains(&name) {
            bad.push(format!("/usr/share/doc/spoolpost/{name}"));
        }
    }
    bad
}

#[test]
fn issue_29_5_man_pages_and_package_messages_refer_only_to_what_is_installed() {
    for program in PROGRAMS {
        let page = generate(program, "man");
        let bad = dangling_references(&page);
        assert!(bad.is_empty(), "{program}(1) refers to {bad:?}");
    }
    for script in ["postinst", "postrm", "prerm"] {
        let text = std::fs::read_to_string(dist().join("maintainer").join(script)).unwrap();
        // The messages the operator sees: echo lines.
        let said: String = text
            .lines()
            .filter(|l| l.trim_start().starts_with("echo"))
            .collect::<Vec<_>>()
            .join("\n");
        let bad = dangling_references(&said);
        assert!(bad.is_empty(), "{script} tells the operator {bad:?}");
    }
    // The subcommands are in reporter(1) itself, with their options.
    let page = generate("reporter", "man").replace("\\-", "-");
    for sub in ["requeue", "hold", "release", "list", "flush"] {
        assert!(page.contains(&format!("reporter {sub}")), "{sub}:\n{page}");
    }
    assert!(page.contains("--state"), "list's options are missing");
}
