//! The one configuration file the three programs share: `--print-config`
//! shows it in effect (defaults filled in, flags applied, secrets
//! redacted) as TOML that reads back as the same settings, and every
//! program's `--check` lists the problems of every section of it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spoolpost_tests::harness::{TestSpool, collector, config, path_str, reporter, run, sender};

const LIMIT: Duration = Duration::from_secs(20);

/// A file with every section, a literal secret and one from a variable.
fn whole_file(spool: &TestSpool, source: &Path) -> String {
    format!(
        r#"spool = {spool:?}

[sender]
max_age = "36h"

[receivers.orders]
url = "https://user:PASSWORD@orders.example/{{region}}/in?key=QUERYSECRET"
headers = {{ Authorization = "Bearer LITERALSECRET", X-Team = "ops", X-Token = {{ env = "ORDERS_TOKEN" }} }}
rate_limit = "50/s"

[receivers.archive]
urls = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
compression = "zstd"

[[routes]]
regex = '^orders-(?<region>[a-z]+)-'
receiver = "orders"

[[routes]]
glob = "*"
receiver = "archive"

[collector]
max_incoming_bytes = "1.5 GiB"

[[collector.sources]]
path = {source:?}
ready = "marker"
"#,
        spool = path_str(&spool.root),
        source = path_str(source),
    )
}

/// `--print-config`'s output: exit 0, and the TOML.
fn printed(cmd: &mut Command) -> String {
    let out = run(cmd.arg("--print-config"), LIMIT);
    out.assert_success();
    out.stdout
}

/// The settings of a dump, without its comments (which name the program
/// and what was redacted).
fn settings(dump: &str) -> Vec<&str> {
    dump.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn print_config_shows_every_setting_with_flags_applied_and_reads_back_the_same() {
    let spool = TestSpool::new();
    let source = spool.side("in");
    let cfg = config(&spool, &whole_file(&spool, &source));
    let extra = spool.side("more");

    let dumps = [
        printed(
            sender(&spool)
                .arg("--config")
                .arg(&cfg)
                .args(["--concurrency", "8"]),
        ),
        printed(
            collector(&spool)
                .arg("--config")
                .arg(&cfg)
                .arg("--source")
                .arg(&extra),
        ),
        printed(reporter(&spool).arg("--config").arg(&cfg)),
    ];
    for dump in &dumps {
        for secret in ["PASSWORD", "QUERYSECRET", "LITERALSECRET"] {
            assert!(!dump.contains(secret), "{secret} shown:\n{dump}");
        }
        assert!(
            dump.contains("# Redacted (not the real values): receivers.orders.url, receivers.orders.headers.Authorization"),
            "{dump}"
        );
        for setting in [
            "max_age = \"1day 12h\"",
            // Defaults the file did not write.
            "backoff_initial = \"1s\"",
            "timeout = \"30s\"",
            "settle = \"1s\"",
            "X-Team = \"ops\"",
            "env = \"ORDERS_TOKEN\"",
            "rate_limit = \"50/s\"",
            "max_incoming_bytes = 1610612736",
        ] {
            assert!(dump.contains(setting), "{setting} missing:\n{dump}");
        }
    }
    assert!(dumps[0].contains("concurrency = 8"), "{}", dumps[0]);
    assert!(dumps[1].contains(path_str(&extra)), "{}", dumps[1]);
    assert!(!dumps[2].contains(path_str(&extra)), "{}", dumps[2]);

    // Each dump, as a configuration file, gives the same dump: the same
    // settings, nothing lost, nothing added.
    for (program, dump) in ["sender", "collector", "reporter"].iter().zip(&dumps) {
        let again = spool.side("again").join(format!("{program}.toml"));
        std::fs::write(&again, dump).unwrap();
        let mut cmd = spoolpost_tests::harness::command(program);
        let twice = printed(cmd.arg("--config").arg(&again));
        assert_eq!(settings(&twice), settings(dump), "{program}");
    }
}

#[test]
fn print_config_with_plain_flags_shows_the_one_receiver_they_make() {
    let spool = TestSpool::new();
    let dump = printed(sender(&spool).args([
        "--url",
        "http://127.0.0.1:9/in?token=QUERYSECRET",
        "--header",
        "X-Api-Key: KEYSECRET",
    ]));
    assert!(!dump.contains("SECRET"), "{dump}");
    assert!(dump.contains("[receivers.default]"), "{dump}");
    assert!(dump.contains("glob = \"*\""), "{dump}");
    assert!(dump.contains(&format!("spool = {:?}", path_str(&spool.root))));
}

#[test]
fn print_config_refuses_a_broken_file_as_start_up_does() {
    let spool = TestSpool::new();
    let cfg = config(&spool, "[sender]\nconcurrency = 0\n");
    let out = run(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--print-config"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("spoolpost.toml:2:"), "{}", out.stderr);
}

#[test]
fn every_program_s_check_lists_the_problems_of_every_section() {
    let spool = TestSpool::new();
    let source = spool.side("in");
    let cfg = config(
        &spool,
        &format!(
            "spool = {:?}\n\
             [sender]\nconcurrency = 0\n\
             [receivers.a]\nurl = \"http://127.0.0.1:9/\"\ntimeout = \"0s\"\n\
             [[routes]]\nglob = \"*\"\nreceiver = \"a\"\n\
             [collector]\nrescan_interval = \"0s\"\n\
             [[collector.sources]]\npath = {:?}\n",
            path_str(&spool.root),
            path_str(&source)
        ),
    );
    for program in ["sender", "collector", "reporter"] {
        let mut cmd = spoolpost_tests::harness::command(program);
        let out = run(cmd.arg("--config").arg(&cfg).arg("--check"), LIMIT);
        assert_eq!(out.status.code(), Some(78), "{program}: {}", out.stderr);
        // [sender], [receivers.a] and [collector], whichever program checks.
        for line in [3, 6, 11] {
            assert!(
                out.stderr.contains(&format!("spoolpost.toml:{line}: ")),
                "{program} does not report line {line}:\n{}",
                out.stderr
            );
        }
    }
}
