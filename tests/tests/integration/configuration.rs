//! The one configuration file the three programs share: `--print-config`
//! shows it in effect (defaults filled in, flags applied, secrets
//! redacted) as TOML that reads back as the same settings, and every
//! program's `--check` lists the problems of every section of it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spoolpost_protocol::spool::State;
use spoolpost_tests::config_file::ConfigFile;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;
use spoolpost_tests::system::{as_nobody, open_path_to_others};

const MINUTE: Duration = Duration::from_secs(60);
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

#[test]
fn bad_configuration_and_usage_give_clear_errors_and_exit_codes() {
    let spool = TestSpool::new();
    let cfg = config(&spool, "[sender]\nconcurrency = 4\nconcurency = 5\n");
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stderr.contains("spoolpost.toml:3:"), "{}", out.stderr);
    assert!(out.stderr.contains("concurency"), "{}", out.stderr);

    let cfg = config(
        &spool,
        "[receivers.a]\nurl = \"http://x\"\n[[routes]]\nglob = \"*\"\nreceiver = \"nope\"\n",
    );
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        out.stderr.contains(":5:") && out.stderr.contains("no [receivers.nope]"),
        "{}",
        out.stderr
    );

    let cfg = config(
        &spool,
        "[receivers.a]\nurl = \"http://x\"\nheaders = { A = { env = \"SPOOLPOST_TEST_UNSET\" } }\n[[routes]]\nglob = \"*\"\nreceiver = \"a\"\n",
    );
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        out.stderr.contains("SPOOLPOST_TEST_UNSET"),
        "{}",
        out.stderr
    );

    let out = run(sender(&spool).arg("--once"), MINUTE);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--url"), "{}", out.stderr);

    let out = run(sender(&spool).args(["--once", "--url", "ftp://x/"]), MINUTE);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("only http and https"), "{}", out.stderr);

    let cfg = config(
        &spool,
        "[sender]\nthreads = 0\n[receivers.a]\nurl = \"http://x\"\n[[routes]]\nglob = \"*\"\nreceiver = \"a\"\n",
    );
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stderr.contains("threads"), "{}", out.stderr);
    let out = run(
        sender(&spool).args(["--once", "--url", "http://x/", "--threads", "0"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--threads"), "{}", out.stderr);
    // The command line takes what the configuration takes: up to 1,024.
    let out = run(
        sender(&spool).args(["--check", "--url", "http://x/", "--threads", "1024"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let out = run(
        sender(&spool).args(["--check", "--url", "http://x/", "--threads", "1025"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--threads"), "{}", out.stderr);
}

/// Runs `--check` and returns (exit code, stdout, stderr).
fn check(cmd: &mut Command) -> (i32, String, String) {
    let out = run(cmd.arg("--check"), LIMIT);
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// Receiver `main` taking every file, with `receiver` lines from the
/// fourth line of the file on.
fn sender_config(spool: &TestSpool, receiver: &str) -> std::path::PathBuf {
    ConfigFile::to("main", "http://127.0.0.1:9/")
        .spool(&spool.root)
        .with(receiver)
        .write(spool)
}

#[test]
fn check_passes_a_good_setup_with_plain_flags_and_creates_nothing() {
    let spool = TestSpool::new();
    let (code, out, err) = check(sender(&spool).args(["--url", "http://127.0.0.1:9/"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok:"), "{out}");
    let fresh = spool.side("not-yet").join("spool");
    let (code, _, err) = check(
        spoolpost_tests::harness::command("collector")
            .arg("--spool")
            .arg(&fresh)
            .arg("--create-spool")
            .arg("--source")
            .arg(spool.side("in")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!fresh.exists(), "--check must create nothing");
}

#[test]
fn check_names_the_line_of_bad_toml_and_unknown_keys() {
    let spool = TestSpool::new();
    let bad = config(&spool, "[sender]\nconcurrency = \n");
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&bad));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("spoolpost.toml:2:"), "{err}");
    let unknown = sender_config(&spool, "colour = \"red\"");
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&unknown));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("spoolpost.toml:4:") && err.contains("colour"),
        "{err}"
    );
    let (code, _, err) = check(collector(&spool).arg("--config").arg(&bad));
    assert_eq!(code, 78, "{err}");
}

#[test]
fn check_reports_every_secret_that_does_not_resolve() {
    let spool = TestSpool::new();
    let cfg = sender_config(
        &spool,
        "headers = { A = { env = \"SPOOLPOST_LIFECYCLE_UNSET\" }, B = { file = \"/nonexistent/token\" } }",
    );
    let (code, _, err) = check(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .env_remove("SPOOLPOST_LIFECYCLE_UNSET"),
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("SPOOLPOST_LIFECYCLE_UNSET"), "{err}");
    assert!(
        err.contains("/nonexistent/token"),
        "both problems, not the first only: {err}"
    );
    assert!(err.contains("spoolpost.toml:4:"), "{err}");
}

#[test]
fn check_as_another_user_finds_an_unreadable_secret_and_an_unwritable_spool() {
    let spool = TestSpool::new();
    let token = spool.side("etc").join("token");
    std::fs::write(&token, "s3cret").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = sender_config(
        &spool,
        &format!("headers = {{ A = {{ file = {:?} }} }}", path_str(&token)),
    );
    open_path_to_others(&spool.root);
    open_path_to_others(&cfg);
    let (code, _, err) = check(&mut as_nobody(sender(&spool).arg("--config").arg(&cfg)));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("cannot read") && err.contains("token"),
        "{err}"
    );
    let (code, _, err) = check(&mut as_nobody(
        sender(&spool).args(["--url", "http://127.0.0.1:9/"]),
    ));
    assert_eq!(code, 74, "{err}");
    assert!(err.contains("not writable"), "{err}");
}

#[test]
fn check_refuses_a_missing_or_certificate_less_ca_file() {
    let spool = TestSpool::new();
    let cfg = sender_config(&spool, "ca_file = \"/nonexistent/ca.pem\"");
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&cfg));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("ca.pem"), "{err}");
    let empty = spool.side("etc").join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let cfg = sender_config(&spool, &format!("ca_file = {:?}", path_str(&empty)));
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&cfg));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("empty.pem"), "{err}");
}

#[test]
fn check_refuses_a_source_inside_the_spool_and_a_one_shot_run_s_missing_source() {
    let spool = TestSpool::new();
    let (code, _, err) = check(
        collector(&spool)
            .arg("--source")
            .arg(spool.dir(State::Done)),
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("inside the spool"), "{err}");
    let cfg = config(
        &spool,
        "[[collector.sources]]\npath = \"/nonexistent/drop\"\n",
    );
    let (code, _, err) = check(collector(&spool).arg("--config").arg(&cfg).arg("--once"));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("spoolpost.toml:2:") && err.contains("/nonexistent/drop"),
        "{err}"
    );
    // The daemon keeps looking for a missing source: its check warns, at
    // the same line, and passes, so a unit can start.
    let (code, _, err) = check(collector(&spool).arg("--config").arg(&cfg));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("spoolpost.toml:2:")
            && err.contains("/nonexistent/drop"),
        "{err}"
    );
}

#[test]
fn probe_reports_a_closed_port_an_untrusted_certificate_and_a_good_receiver() {
    let spool = TestSpool::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/");
    let (code, _, err) = check(sender(&spool).args(["--url", &url, "--probe"]));
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("connect") && err.contains(&port.to_string()),
        "{err}"
    );

    let (tls, ca) = Receiver::start_tls();
    let url = tls.url("/in");
    let (code, _, err) = check(sender(&spool).args(["--url", &url, "--probe"]));
    assert_eq!(code, 75, "an untrusted certificate: {err}");
    assert!(err.contains("TLS handshake"), "{err}");

    let ca_path = spool.side("etc").join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let cfg = ConfigFile::to("main", &url)
        .with(&format!("ca_file = {:?}", path_str(&ca_path)))
        .write(&spool);
    let (code, out, err) = check(sender(&spool).arg("--config").arg(&cfg).arg("--probe"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("probe main") && out.contains("ok in"), "{out}");
    assert_eq!(tls.count(), 0, "a probe sends no request");
}

#[test]
fn issue_29_4_check_lists_every_problem_it_finds_not_just_the_first() {
    let spool = TestSpool::new();
    let cfg = config(
        &spool,
        "[receivers.a]\nurl = \"http://127.0.0.1:9/\"\nconcurrency = 0\n\
         [receivers.b]\nurl = \"http://127.0.0.1:9/\"\ngzip_level = 12\n\
         [[routes]]\nglob = \"*.x\"\nreceiver = \"nosuch\"\n\
         [[routes]]\nglob = \"[\"\nreceiver = \"a\"\n",
    );
    let typo = spool.side("t").join("spooool");
    let (code, _, err) = check(
        spoolpost_tests::harness::command("sender")
            .arg("--spool")
            .arg(&typo)
            .arg("--config")
            .arg(&cfg),
    );
    assert_eq!(code, 78, "{err}");
    for what in [
        "receiver a: concurrency",
        "receiver b: gzip_level",
        "\"nosuch\"",
        "bad glob",
        path_str(&typo),
    ] {
        assert!(err.contains(what), "{what:?} is not among:\n{err}");
    }
    let (one, two) = (
        spool.side("t").join("nosuch1"),
        spool.side("t").join("nosuch2"),
    );
    let collector = |once: bool| {
        let mut cmd = spoolpost_tests::harness::command("collector");
        cmd.arg("--spool")
            .arg(&typo)
            .arg("--source")
            .arg(&one)
            .arg("--source")
            .arg(&two);
        if once {
            cmd.arg("--once");
        }
        check(&mut cmd)
    };
    // A one-shot run refuses missing sources (78); the daemon keeps looking
    // for them, so its check names them as warnings and only
    // the mistyped spool fails it (74).
    for (once, code_wanted) in [(true, 78), (false, 74)] {
        let (code, _, err) = collector(once);
        assert_eq!(code, code_wanted, "--once {once}: {err}");
        for what in [path_str(&one), path_str(&two), path_str(&typo)] {
            assert!(err.contains(what), "{what:?} is not among:\n{err}");
        }
        assert_eq!(
            err.matches("warning: source").count(),
            if once { 0 } else { 2 },
            "{err}"
        );
    }
    assert!(!typo.exists(), "--check must create nothing");
}

/// A SPOOLPOST_CONFIG exported in an operator's profile made `sender
/// --spool S --url U --once` fail with a conflict between --url and
/// --config that nobody typed. What the command line says wins over what
/// the environment says; the two typed together are still refused.
#[test]
fn a_url_on_the_command_line_wins_over_an_exported_config() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    let elsewhere = Receiver::start();
    let exported = ConfigFile::to("orders", &elsewhere.url("/orders")).write(&spool);
    spool.put("a.json", b"{}");
    let out = run(
        sender(&spool).env("SPOOLPOST_CONFIG", &exported).args([
            "--url",
            &receiver.url("/in"),
            "--once",
        ]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(receiver.count_path("/in"), 1, "{}", out.stderr);
    assert_eq!(elsewhere.count(), 0);

    // An exported URL yields to a config file on the command line.
    spool.put("b.json", b"{}");
    let out = run(
        sender(&spool)
            .env("SPOOLPOST_URL", receiver.url("/in"))
            .arg("--config")
            .arg(&exported)
            .arg("--once"),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(elsewhere.count_path("/orders"), 1, "{}", out.stderr);

    // Both typed: refused, as before.
    let out = run(
        sender(&spool).arg("--config").arg(&exported).args([
            "--url",
            &receiver.url("/in"),
            "--once",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--url and --config"), "{}", out.stderr);
}
