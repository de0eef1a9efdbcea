//! Broken configuration and command lines: refused at start with the file
//! and line, the right exit code, and nothing touched in the spool.

use std::path::Path;
use std::time::Duration;

use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Pki;

const LIMIT: Duration = Duration::from_secs(30);

/// A receiver and a route that work, for cases that break something else.
const OK: &str =
    "[receivers.r]\nurl = \"http://127.0.0.1:9/\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n";

/// Runs `sender --once` on `text` with a spool path that does not exist,
/// and checks: exit 78, the message starts `FILE:LINE:` and holds `words`,
/// and no spool was created.
#[track_caller]
fn refused_at(text: &str, line: usize, words: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("spoolpost.toml");
    std::fs::write(&cfg, text).unwrap();
    let spool = dir.path().join("spool");
    let out = run(
        spoolpost_tests::harness::command("sender")
            .arg("--spool")
            .arg(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--once")
            .env_remove("SPOOLPOST_SURELY_UNSET"),
        LIMIT,
    );
    let where_ = format!("sender: {}:{line}: ", cfg.display());
    assert_eq!(out.status.code(), Some(78), "{text}\n{}", out.stderr);
    assert!(
        out.stderr.starts_with(&where_) && out.stderr.contains(words),
        "{text}\nwanted {where_}…{words}…, got:\n{}",
        out.stderr
    );
    assert!(
        !spool.exists(),
        "the spool was created for a config that cannot work"
    );
}

fn with_ca(pem: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let text = format!(
        "[receivers.r]\nurl = \"https://127.0.0.1:9/\"\nca_file = \"{}\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        ca.display()
    );
    (dir, text)
}

#[test]
fn bad_toml_names_its_line() {
    refused_at("spool = \"/s\"\n[sender\n", 2, "");
}

#[test]
fn an_unknown_key_names_its_line() {
    refused_at(
        &format!("{OK}[sender]\nconcurency = 2\n"),
        7,
        "unknown field `concurency`",
    );
}

#[test]
fn a_wrong_type_names_its_line() {
    refused_at(
        &format!("{OK}[sender]\nconcurrency = \"many\"\n"),
        7,
        "invalid type",
    );
    refused_at(&format!("{OK}[sender]\nmax_age = 5\n"), 7, "");
}

#[test]
fn a_missing_required_field_names_its_table() {
    refused_at(
        "[receivers.r]\nmethod = \"PUT\"\n",
        1,
        "receiver r: needs url (or urls for several endpoints)",
    );
}

#[test]
fn an_unset_env_secret_is_refused_at_start() {
    refused_at(
        &format!(
            "{OK}[receivers.r.headers]\nAuthorization = {{ env = \"SPOOLPOST_SURELY_UNSET\" }}\n"
        ),
        7,
        "SPOOLPOST_SURELY_UNSET is not set",
    );
}

#[test]
fn an_unreadable_secret_file_is_refused_at_start() {
    refused_at(
        &format!("{OK}[receivers.r.headers]\nX-Key = {{ file = \"/nonexistent/key\" }}\n"),
        7,
        "cannot read /nonexistent/key",
    );
    // A folder cannot be read as a file, even by root.
    refused_at(
        &format!("{OK}[receivers.r.headers]\nX-Key = {{ file = \"/\" }}\n"),
        7,
        "cannot read /",
    );
}

#[test]
fn a_missing_ca_file_is_refused() {
    refused_at(
        "[receivers.r]\nurl = \"https://h/\"\nca_file = \"/nonexistent/ca.pem\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        3,
        "cannot read ca_file /nonexistent/ca.pem",
    );
}

#[test]
fn issue_13_10_an_empty_ca_file_is_refused() {
    let (_dir, text) = with_ca(b"");
    refused_at(&text, 3, "holds no certificate");
}

#[test]
fn issue_13_10_a_ca_file_with_no_certificate_is_refused() {
    let (_dir, text) = with_ca(b"just some text, no PEM at all\n");
    refused_at(&text, 3, "holds no certificate");
    let (_dir, text) = with_ca(
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAs=\n-----END PRIVATE KEY-----\n",
    );
    refused_at(&text, 3, "holds no certificate");
}

#[test]
fn a_malformed_ca_file_is_refused() {
    let (_dir, text) = with_ca(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n");
    refused_at(&text, 3, "malformed PEM");
}

#[test]
fn issue_13_10_a_zero_timeout_is_refused() {
    refused_at(
        &format!("{OK}[receivers.r2]\nurl = \"http://h/\"\ntimeout = \"0s\"\n"),
        8,
        "timeout must be more than 0s",
    );
    refused_at(
        &format!("{OK}[sender]\nrescan_interval = \"0s\"\n"),
        7,
        "more than 0s",
    );
    refused_at(
        &format!("{OK}[sender]\nbackoff_initial = \"1m\"\nbackoff_max = \"1s\"\n"),
        8,
        "at least backoff_initial",
    );
}

#[test]
fn issue_13_4_a_receiver_name_with_a_newline_is_refused() {
    refused_at(
        "[receivers.\"a\\nb\"]\nurl = \"http://h/\"\n[[routes]]\nglob = \"*\"\nreceiver = \"a\\nb\"\n",
        1,
        "is not a receiver name",
    );
}

#[test]
fn an_unknown_receiver_in_a_route_names_the_route() {
    refused_at(
        &format!("{OK}[[routes]]\nglob = \"*\"\nreceiver = \"nosuch\"\n"),
        8,
        "no [receivers.nosuch]",
    );
}

#[test]
fn an_invalid_regex_or_glob_names_the_route() {
    refused_at(
        &format!("{OK}[[routes]]\nregex = \"(\"\nreceiver = \"r\"\n"),
        6,
        "bad regex",
    );
    refused_at(
        &format!("{OK}[[routes]]\nglob = \"[a\"\nreceiver = \"r\"\n"),
        6,
        "bad glob",
    );
}

#[test]
fn an_invalid_url_template_names_the_receiver() {
    refused_at(
        "[receivers.r]\nurl = \"http://h/{x\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        1,
        "receiver r",
    );
    refused_at(
        "[receivers.r]\nurl = \"not a url\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        1,
        "receiver r",
    );
    refused_at(
        "[receivers.r]\nurl = \"http://h/{region}\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        3,
        "{region}",
    );
}

#[test]
fn no_routes_names_the_end_of_the_file() {
    refused_at("[receivers.r]\nurl = \"http://h/\"\n", 3, "no [[routes]]");
}

#[test]
fn the_collector_and_reporter_refuse_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("{OK}[collector]\nrescan_interval = \"0s\"\n")).unwrap();
    let spool = dir.path().join("spool");
    for program in ["collector", "reporter"] {
        let mut cmd = spoolpost_tests::harness::command(program);
        cmd.arg("--spool").arg(&spool).arg("--config").arg(&cfg);
        if program == "collector" {
            cmd.arg("--once");
        }
        let out = run(&mut cmd, LIMIT);
        assert_eq!(out.status.code(), Some(78), "{program}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with(&format!("{program}: {}:7: ", cfg.display())),
            "{program}: {}",
            out.stderr
        );
        assert!(!Path::new(&spool).exists(), "{program} created the spool");
    }
}

/// A receiver `r` with `extra` lines, its client certificate files in a
/// temporary folder: (folder, text, cert path, key path).
fn with_identity(cert: &str, key: &str, extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    let text = format!(
        "[receivers.r]\nurl = \"https://127.0.0.1:9/\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n{extra}[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        c.display(),
        k.display()
    );
    (dir, text)
}

#[test]
fn issue_11_a_client_certificate_needs_its_key_and_the_key_must_be_its() {
    refused_at(
        "[receivers.r]\nurl = \"https://h/\"\nclient_cert = \"/c.pem\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        3,
        "client_cert needs client_key",
    );
    let (one, other) = (Pki::new(), Pki::new());
    // Another certificate's key.
    let (_dir, text) = with_identity(&one.client_cert, &other.client_key, "");
    refused_at(&text, 4, "is not the key of client_cert");
    // No key in the key file, no certificate in the certificate file.
    let (_dir, text) = with_identity(&one.client_cert, &one.client_cert, "");
    refused_at(&text, 4, "holds no private key");
    let (_dir, text) = with_identity(&one.client_key, &one.client_key, "");
    refused_at(&text, 3, "holds no certificate");
    // Unreadable.
    refused_at(
        "[receivers.r]\nurl = \"https://h/\"\nclient_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/k.pem\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
        3,
        "cannot read client_cert /nonexistent/c.pem",
    );
    // The matching pair starts (and fails only later, to connect).
    let (_dir, text) = with_identity(&one.client_cert, &one.client_key, "");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("spoolpost.toml");
    std::fs::write(&cfg, &text).unwrap();
    let check = run(
        spoolpost_tests::harness::command("sender")
            .arg("--check")
            .arg("--spool")
            .arg(dir.path().join("spool"))
            .arg("--create-spool")
            .arg("--config")
            .arg(&cfg),
        LIMIT,
    );
    assert_eq!(check.status.code(), Some(0), "{}", check.stderr);
    assert!(
        check.stdout.contains("client certificate and key match"),
        "{}",
        check.stdout
    );
}

#[test]
fn issue_11_check_reports_a_mismatched_key_and_warns_of_insecure_receivers() {
    let (one, other) = (Pki::new(), Pki::new());
    let (dir, text) = with_identity(
        &one.client_cert,
        &other.client_key,
        "insecure_skip_verify = true\n",
    );
    let cfg = dir.path().join("spoolpost.toml");
    std::fs::write(&cfg, &text).unwrap();
    let check = run(
        spoolpost_tests::harness::command("sender")
            .arg("--check")
            .arg("--spool")
            .arg(dir.path().join("spool"))
            .arg("--create-spool")
            .arg("--config")
            .arg(&cfg),
        LIMIT,
    );
    assert_eq!(check.status.code(), Some(78), "{}", check.stderr);
    assert!(
        check.stderr.contains(&format!("{}:4: ", cfg.display()))
            && check.stderr.contains("is not the key of client_cert"),
        "{}",
        check.stderr
    );
    assert!(
        check
            .stderr
            .contains("warning: receiver r: insecure_skip_verify = true"),
        "{}",
        check.stderr
    );
}

#[test]
fn issue_11_a_proxy_that_cannot_work_is_refused_without_showing_its_password() {
    refused_at(
        &OK.replace(
            "url = \"http://127.0.0.1:9/\"",
            "url = \"http://127.0.0.1:9/\"\nproxy = \"socks5://u:SECRET@p:1080\"",
        ),
        3,
        "is not supported",
    );
    refused_at(
        &OK.replace(
            "url = \"http://127.0.0.1:9/\"",
            "url = \"http://127.0.0.1:9/\"\nproxy = { env = \"SPOOLPOST_SURELY_UNSET\" }",
        ),
        3,
        "SPOOLPOST_SURELY_UNSET is not set",
    );
    refused_at(
        &OK.replace(
            "url = \"http://127.0.0.1:9/\"",
            "url = \"http://127.0.0.1:9/\"\nserver_name = \"receiver.test\"",
        ),
        3,
        "server_name needs an https:// url",
    );
    // From the environment: refused at start too, naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("spoolpost.toml");
    std::fs::write(&cfg, OK).unwrap();
    let out = run(
        spoolpost_tests::harness::command("sender")
            .arg("--spool")
            .arg(dir.path().join("spool"))
            .arg("--create-spool")
            .arg("--config")
            .arg(&cfg)
            .arg("--once")
            .env("HTTPS_PROXY", "socks5://u:SECRET@p:1080"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
    assert!(out.stderr.contains("HTTPS_PROXY"), "{}", out.stderr);
    assert!(!out.stderr.contains("SECRET"), "{}", out.stderr);
}

/// `--check` on `text`: exit 78 and the same `FILE:LINE:` message.
#[track_caller]
fn check_refuses_at(text: &str, line: usize, words: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("spoolpost.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        spoolpost_tests::harness::command("sender")
            .arg("--spool")
            .arg(dir.path().join("spool"))
            .arg("--config")
            .arg(&cfg)
            .arg("--check"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(78), "{text}\n{}", out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&format!("{}:{line}: ", cfg.display())) && all.contains(words),
        "{text}\nwanted line {line} and {words:?}, got:\n{all}"
    );
}

const ROUTE: &str = "[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n";

#[test]
fn url_and_urls_are_exactly_one_of_two() {
    let cases = [
        (
            "[receivers.r]\nurl = \"http://127.0.0.1:9/\"\nurls = [\"http://127.0.0.1:8/\"]\n",
            3,
            "both url and urls",
        ),
        ("[receivers.r]\nmethod = \"PUT\"\n", 1, "needs url (or urls"),
        ("[receivers.r]\nurls = []\n", 2, "urls is empty"),
        (
            "[receivers.r]\nurls = [\"http://127.0.0.1:9/\", \"http://u:p@127.0.0.1:9/\"]\n",
            2,
            "twice",
        ),
        (
            "[receivers.r]\nurls = [\"http://127.0.0.1:9/\", \"ftp://127.0.0.1:9/\"]\n",
            1,
            "only http and https",
        ),
    ];
    for (receiver, line, words) in cases {
        let text = format!("{receiver}{ROUTE}");
        refused_at(&text, line, words);
        check_refuses_at(&text, line, words);
    }
}

#[test]
fn compression_and_the_older_gzip_keys_do_not_mix_and_levels_are_checked() {
    let r = "[receivers.r]\nurl = \"http://127.0.0.1:9/\"\n";
    let cases = [
        (
            "gzip = false\ncompression = \"gzip\"\n",
            3,
            "both gzip and compression",
        ),
        (
            "gzip_level = 3\ncompression_level = 3\n",
            3,
            "both gzip_level and compression_level",
        ),
        (
            "compression = \"zstd\"\ncompression_level = 0\n",
            4,
            "1 to 22",
        ),
        (
            "compression = \"gzip\"\ncompression_level = 12\n",
            4,
            "0 to 9",
        ),
        ("compression_level = 5\n", 3, "needs compression"),
        ("compression = \"lz4\"\n", 3, "unknown variant"),
    ];
    for (keys, line, words) in cases {
        let text = format!("{r}{keys}{ROUTE}");
        refused_at(&text, line, words);
        check_refuses_at(&text, line, words);
    }
}

/// Issue 27, defects 8 and 9: `--check` passed what start-up refused (a
/// header secret with CR/LF inside, a proxy variable without a port or
/// with a scheme other than http), so `ExecStartPre=` let through a unit
/// that then failed with 78. Each case here is first shown to be a start-up
/// refusal (`--once`, 78), then must be a `--check` refusal too, without
/// printing the secret; a good case passes both, so the table is not vacuous.
#[test]
fn issue_27_every_start_up_refusal_is_also_a_check_refusal() {
    let spool = TestSpool::new();
    let etc = spool.side("etc27");
    let with_header = |value: &str| {
        format!(
            "[receivers.r]\nurl = \"http://127.0.0.1:9/\"\n[receivers.r.headers]\nAuthorization = {value}\n{ROUTE}"
        )
    };
    let crlf_file = etc.join("crlf-token");
    std::fs::write(&crlf_file, "SECRET\r\nX-Injected: 1\n").unwrap();
    let latin_file = etc.join("latin-token");
    std::fs::write(&latin_file, "SECRET-caf\u{e9}").unwrap();
    let file_header = |p: &Path| with_header(&format!("{{ file = \"{}\" }}", p.display()));
    // (what, config text or None for --url, extra arguments, environment)
    type Case<'a> = (
        &'a str,
        Option<String>,
        Vec<&'a str>,
        Vec<(&'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        (
            "env secret with CR/LF",
            Some(with_header("{ env = \"SPOOLPOST_T27_TOKEN\" }")),
            vec![],
            vec![("SPOOLPOST_T27_TOKEN", "SECRET\r\nX-Injected: 1")],
        ),
        (
            "file secret with CR/LF inside",
            Some(file_header(&crlf_file)),
            vec![],
            vec![],
        ),
        (
            "file secret not ASCII",
            Some(file_header(&latin_file)),
            vec![],
            vec![],
        ),
        (
            "--header with CR",
            None,
            vec![
                "--url",
                "http://127.0.0.1:9/",
                "--header",
                "Authorization: SECRET\rX: 1",
            ],
            vec![],
        ),
        (
            "https_proxy without a port",
            Some(OK.to_string()),
            vec![],
            vec![("https_proxy", "http://u:SECRET@proxy.test")],
        ),
        (
            "https_proxy socks5",
            Some(OK.to_string()),
            vec![],
            vec![("https_proxy", "socks5://u:SECRET@proxy.test:1080")],
        ),
        (
            "HTTP_PROXY without a port",
            Some(OK.to_string()),
            vec![],
            vec![("HTTP_PROXY", "proxy.test")],
        ),
        (
            "all_proxy socks5h",
            Some(OK.to_string()),
            vec![],
            vec![("all_proxy", "socks5h://proxy.test:1080")],
        ),
    ];
    let run_with = |mode: &str, text: &Option<String>, args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = sender(&spool);
        if let Some(text) = text {
            let cfg = etc.join("spoolpost.toml");
            std::fs::write(&cfg, text).unwrap();
            cmd.arg("--config").arg(cfg);
        }
        cmd.args(args).arg(mode);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd, LIMIT)
    };
    for (what, text, args, env) in &cases {
        let start = run_with("--once", text, args, env);
        assert_eq!(
            start.status.code(),
            Some(78),
            "{what}: start-up must refuse it\n{}",
            start.stderr
        );
        let check = run_with("--check", text, args, env);
        assert_eq!(
            check.status.code(),
            Some(78),
            "{what}: start-up refused it, --check must too\n{}{}",
            check.stdout,
            check.stderr
        );
        assert!(
            !check.stderr.contains("SECRET"),
            "{what}: the secret is printed:\n{}",
            check.stderr
        );
    }
    // The same shapes done right pass both.
    let good = etc.join("good-token");
    std::fs::write(&good, "Bearer abc\n").unwrap();
    for (text, env) in [
        (file_header(&good), vec![]),
        (
            OK.to_string(),
            vec![
                ("https_proxy", "http://proxy.test:3128"),
                ("all_proxy", "proxy.test:3128"),
            ],
        ),
    ] {
        let text = Some(text);
        run_with("--check", &text, &[], &env).assert_success();
        run_with("--once", &text, &[], &env).assert_success();
    }
}
