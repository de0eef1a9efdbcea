//! Reaching receivers the way companies run them: client
//! certificates, `server_name`, `tls_min_version`, `insecure_skip_verify`,
//! proxies (configured and from the environment) and HTTP/2.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::proxy::Proxy;
use spoolpost_tests::receiver::{Pki, Receiver, Reply, Tls};

const MINUTE: Duration = Duration::from_secs(60);

/// A config with one receiver `r` at `url` taking every file, with
/// `extra` lines in its table.
fn one_receiver(spool: &TestSpool, url: &str, extra: &str) -> PathBuf {
    config(
        spool,
        &format!(
            "[sender]\nbackoff_initial = \"100ms\"\nbackoff_max = \"200ms\"\n[receivers.r]\nurl = \"{url}\"\n{extra}\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n"
        ),
    )
}

/// Writes `text` beside the spool as `name`; returns its path.
fn side_file(spool: &TestSpool, name: &str, text: &str) -> PathBuf {
    let path = spool.side("etc").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn once(spool: &TestSpool, cfg: &PathBuf) -> Finished {
    let out = run(sender(spool).arg("--once").arg("--config").arg(cfg), MINUTE);
    out.assert_success();
    out
}

/// The one waiting file's last reason.
fn waiting_reason(spool: &TestSpool) -> Option<String> {
    let names = spool.names(State::Incoming);
    assert_eq!(names.len(), 1, "{:?}", spool.census());
    SpoolName::parse(OsStr::from_bytes(&names[0])).last_reason
}

#[test]
fn a_receiver_that_demands_a_client_certificate_gets_ours_and_nothing_without_it() {
    let pki = Pki::new();
    let (rx, server_pem) = Receiver::start_tls_with(Tls {
        client_ca: Some(pki.ca.clone()),
        ..Tls::default()
    });
    let spool = TestSpool::new();
    let ca = side_file(&spool, "server-ca.pem", &server_pem);
    let cert = side_file(&spool, "client.pem", &pki.client_cert);
    let key = side_file(&spool, "client.key", &pki.client_key);
    spool.put("a.json", b"with a certificate");

    // Without one: refused in the handshake, nothing received, the file
    // waits and the event says why.
    let cfg = one_receiver(
        &spool,
        &rx.url("/in"),
        &format!("ca_file = \"{}\"", path_str(&ca)),
    );
    let out = once(&spool, &cfg);
    let events = out.events();
    assert_eq!(events[0].event, EventKind::Retry, "{}", out.stdout);
    let error = events[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("CertificateRequired") || error.contains("certificate"),
        "{error}"
    );
    assert_eq!(waiting_reason(&spool).as_deref(), Some("tls"));
    assert!(rx.received().is_empty());
    assert!(rx.tls_refused() >= 1);

    // With it: delivered. A SIGHUP'd daemon is what applies it, so the
    // certificate is shown to be read on reload.
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(MINUTE / 2, || rx.tls_refused() >= 2));
    let with_cert = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        path_str(&ca),
        path_str(&cert),
        path_str(&key)
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(one_receiver(&spool, &rx.url("/in"), &with_cert)).unwrap(),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        eventually(MINUTE / 2, || spool.count(State::Done) == 1),
        "{:?}",
        spool.census()
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
    assert_eq!(rx.received()[0].body, b"with a certificate");
}

#[test]
fn a_rewritten_client_certificate_is_used_without_a_reload() {
    let (trusted, untrusted) = (Pki::new(), Pki::new());
    let (rx, server_pem) = Receiver::start_tls_with(Tls {
        client_ca: Some(trusted.ca.clone()),
        ..Tls::default()
    });
    let spool = TestSpool::new();
    let ca = side_file(&spool, "server-ca.pem", &server_pem);
    // A good pair, but from a CA the receiver does not trust.
    let cert = side_file(&spool, "client.pem", &untrusted.client_cert);
    let key = side_file(&spool, "client.key", &untrusted.client_key);
    let cfg = one_receiver(
        &spool,
        &rx.url("/in"),
        &format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            path_str(&ca),
            path_str(&cert),
            path_str(&key)
        ),
    );
    spool.put("a.json", b"rotated");
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(MINUTE / 2, || rx.tls_refused() >= 1));
    assert!(rx.received().is_empty());
    // Rotated in place, as a certificate manager does: no signal.
    for (path, text) in [(&key, &trusted.client_key), (&cert, &trusted.client_cert)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    assert!(
        eventually(MINUTE / 2, || spool.count(State::Done) == 1),
        "{:?}",
        spool.census()
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
    assert_eq!(rx.received()[0].body, b"rotated");
}

#[test]
fn server_name_verifies_a_receiver_reached_by_address_under_its_certificate_s_name() {
    let (rx, pem) = Receiver::start_tls_for(&["receiver.test"]);
    let spool = TestSpool::new();
    let ca = side_file(&spool, "ca.pem", &pem);
    spool.put("a.json", b"named");
    let ca_line = format!("ca_file = \"{}\"", path_str(&ca));

    // By address alone the certificate does not fit: refused.
    let out = once(&spool, &one_receiver(&spool, &rx.url("/in"), &ca_line));
    assert_eq!(out.events()[0].event, EventKind::Retry, "{}", out.stdout);
    assert_eq!(waiting_reason(&spool).as_deref(), Some("tls"));
    assert!(rx.received().is_empty());

    // Under the name it was issued for: verified and delivered, to the
    // same address, with the name as Host.
    let waiting = spool.names(State::Incoming)[0].clone();
    std::fs::rename(
        spool.dir(State::Incoming).join(OsStr::from_bytes(&waiting)),
        spool.dir(State::Incoming).join("a.json"),
    )
    .unwrap();
    let cfg = one_receiver(
        &spool,
        &rx.url("/in"),
        &format!("{ca_line}\nserver_name = \"receiver.test\""),
    );
    once(&spool, &cfg);
    spool.find(State::Done, "a.json");
    let got = &rx.received()[0];
    assert_eq!(
        got.header("host"),
        Some(format!("receiver.test:{}", rx.addr().port()).as_str())
    );
}

#[test]
fn tls_min_version_1_3_refuses_a_receiver_that_only_speaks_1_2() {
    let (rx, pem) = Receiver::start_tls_with(Tls {
        tls12_only: true,
        ..Tls::default()
    });
    let spool = TestSpool::new();
    let ca = side_file(&spool, "ca.pem", &pem);
    let ca_line = format!("ca_file = \"{}\"", path_str(&ca));
    spool.put("a.json", b"1.3 only");
    let out = once(
        &spool,
        &one_receiver(
            &spool,
            &rx.url("/in"),
            &format!("{ca_line}\ntls_min_version = \"1.3\""),
        ),
    );
    let error = out.events()[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("ProtocolVersion") || error.contains("version"),
        "{error}"
    );
    assert_eq!(waiting_reason(&spool).as_deref(), Some("tls"));
    assert!(rx.received().is_empty());

    // The default (1.2 and up) reaches it.
    spool.put("b.json", b"1.2 is fine");
    once(&spool, &one_receiver(&spool, &rx.url("/in"), &ca_line));
    spool.find(State::Done, "b.json");
}

#[test]
fn insecure_skip_verify_delivers_and_is_warned_about_at_start_and_in_check() {
    let (rx, _pem) = Receiver::start_tls();
    let spool = TestSpool::new();
    spool.put("a.json", b"unverified");
    let cfg = one_receiver(&spool, &rx.url("/in"), "insecure_skip_verify = true");
    let out = once(&spool, &cfg);
    spool.find(State::Done, "a.json");
    assert!(
        out.stderr.contains("insecure_skip_verify") && out.stderr.contains("receiver r"),
        "{}",
        out.stderr
    );
    let check = run(
        sender(&spool).arg("--check").arg("--config").arg(&cfg),
        MINUTE,
    );
    check.assert_success();
    assert!(
        check
            .stderr
            .contains("warning: receiver r: insecure_skip_verify"),
        "{}",
        check.stderr
    );

    // And on every reload.
    let events = spool.side("log").join("events.jsonl");
    let daemon = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    // Serving (so SIGHUP is handled, not fatal) once it delivered.
    spool.put("b.json", b"unverified too");
    assert!(eventually(MINUTE / 2, || spool.count(State::Done) == 2));
    daemon.signal(Signal::SIGHUP);
    assert!(eventually(MINUTE / 2, || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("\"reload\"")
    }));
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert_eq!(
        out.stderr.matches("insecure_skip_verify = true").count(),
        2,
        "at start and on the reload:\n{}",
        out.stderr
    );

    // The reporter marks it, in JSON and in the table.
    let json = run(
        reporter(&spool)
            .args(["--format", "json", "--config"])
            .arg(&cfg),
        MINUTE,
    );
    json.assert_success();
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        report["receivers"]["r"]["insecure"], true,
        "{}",
        json.stdout
    );
    let table = run(reporter(&spool).arg("--config").arg(&cfg), MINUTE);
    assert!(table.stdout.contains("INSECURE"), "{}", table.stdout);
}

#[test]
fn http_version_2_speaks_prior_knowledge_on_plain_http_and_auto_stays_on_1_1() {
    let rx = Receiver::start_h2();
    let spool = TestSpool::new();
    spool.put("a.json", b"two");
    once(
        &spool,
        &one_receiver(&spool, &rx.url("/in"), "http_version = \"2\""),
    );
    spool.put("b.json", b"auto");
    once(&spool, &one_receiver(&spool, &rx.url("/in"), ""));
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].version, "HTTP/2.0");
    assert_eq!(got[0].body, b"two");
    assert_eq!(got[1].version, "HTTP/1.1");
}

#[test]
fn auto_negotiates_http_2_over_tls_and_1_1_pins_it() {
    let (rx, pem) = Receiver::start_tls_with(Tls {
        http2: true,
        ..Tls::default()
    });
    let spool = TestSpool::new();
    let ca_line = format!(
        "ca_file = \"{}\"",
        path_str(&side_file(&spool, "ca.pem", &pem))
    );
    spool.put("a.json", b"alpn");
    once(&spool, &one_receiver(&spool, &rx.url("/in"), &ca_line));
    spool.put("b.json", b"pinned");
    once(
        &spool,
        &one_receiver(
            &spool,
            &rx.url("/in"),
            &format!("{ca_line}\nhttp_version = \"1.1\""),
        ),
    );
    let got = rx.received();
    assert_eq!(got[0].version, "HTTP/2.0");
    assert_eq!(got[0].body, b"alpn");
    assert_eq!(got[1].version, "HTTP/1.1");
}

#[test]
fn issue_17_an_early_2xx_over_http_2_is_not_a_delivery() {
    let rx = Receiver::start_h2();
    rx.answer(Reply::early());
    let spool = TestSpool::new();
    let mut data = vec![0u8; 40 << 20];
    fastrand::Rng::with_seed(17).fill(&mut data);
    spool.put("big.bin", &data);
    let out = once(
        &spool,
        &one_receiver(
            &spool,
            &rx.url("/stub"),
            "http_version = \"2\"\ngzip = false",
        ),
    );
    assert_eq!(spool.count(State::Done), 0, "{}", out.stdout);
    let reason = reason_of(&spool.find(State::Error, "big.bin"));
    assert_eq!(reason.class, ErrorClass::EarlyAnswer, "{reason:?}");
    assert_eq!(rx.received()[0].version, "HTTP/2.0");
}

#[test]
fn the_proxy_environment_carries_requests_through_a_tunnel_unless_no_proxy_exempts_them() {
    let (rx, pem) = Receiver::start_tls();
    let proxy = Proxy::start();
    let spool = TestSpool::new();
    let ca_line = format!(
        "ca_file = \"{}\"",
        path_str(&side_file(&spool, "ca.pem", &pem))
    );
    let cfg = one_receiver(&spool, &rx.url("/in"), &ca_line);
    let target = format!("127.0.0.1:{}", rx.addr().port());

    spool.put("a.json", b"tunnelled");
    run(
        sender(&spool)
            .args(["--once", "--config"])
            .arg(&cfg)
            .env("HTTPS_PROXY", proxy.url())
            .env("NO_PROXY", "localhost,.example.com"),
        MINUTE,
    )
    .assert_success();
    spool.find(State::Done, "a.json");
    assert_eq!(proxy.tunnels(), [target]);

    // Lower case works too, and NO_PROXY's CIDR exempts the address.
    spool.put("b.json", b"direct");
    run(
        sender(&spool)
            .args(["--once", "--config"])
            .arg(&cfg)
            .env("https_proxy", proxy.url())
            .env("no_proxy", "10.0.0.0/8 127.0.0.0/8"),
        MINUTE,
    )
    .assert_success();
    spool.find(State::Done, "b.json");
    assert_eq!(proxy.tunnels().len(), 1, "NO_PROXY was not honoured");

    // proxy = "none" ignores the environment.
    spool.put("c.json", b"none");
    let none = one_receiver(
        &spool,
        &rx.url("/in"),
        &format!("{ca_line}\nproxy = \"none\""),
    );
    run(
        sender(&spool)
            .args(["--once", "--config"])
            .arg(&none)
            .env("ALL_PROXY", proxy.url()),
        MINUTE,
    )
    .assert_success();
    spool.find(State::Done, "c.json");
    assert_eq!(
        proxy.tunnels().len(),
        1,
        "proxy = \"none\" went through the proxy"
    );
    assert_eq!(rx.received().len(), 3);
}

#[test]
fn plain_http_goes_through_http_proxy_in_absolute_form() {
    let rx = Receiver::start();
    let proxy = Proxy::start();
    let spool = TestSpool::new();
    spool.put("a.json", b"forwarded");
    run(
        sender(&spool)
            .args(["--once", "--url", &rx.url("/in")])
            .env("HTTP_PROXY", proxy.url()),
        MINUTE,
    )
    .assert_success();
    spool.find(State::Done, "a.json");
    assert_eq!(proxy.forwarded(), [rx.url("/in")]);
    assert!(proxy.tunnels().is_empty());
}

#[test]
fn a_configured_proxy_takes_credentials_from_a_secret_and_never_shows_them() {
    let (rx, pem) = Receiver::start_tls();
    let proxy = Proxy::start();
    // Basic base64("spool:pa ss")
    proxy.require_auth("Basic c3Bvb2w6cGEgc3M=");
    let spool = TestSpool::new();
    let ca_line = format!(
        "ca_file = \"{}\"",
        path_str(&side_file(&spool, "ca.pem", &pem))
    );
    let port = proxy.url().rsplit(':').next().unwrap().to_string();
    let secret = side_file(
        &spool,
        "proxy-url",
        &format!("http://spool:pa%20ss@127.0.0.1:{port}\n"),
    );
    let cfg = one_receiver(
        &spool,
        &rx.url("/in"),
        &format!("{ca_line}\nproxy = {{ file = \"{}\" }}", path_str(&secret)),
    );
    spool.put("a.json", b"through the corporate proxy");
    // NO_PROXY does not exempt a receiver with its own proxy.
    run(
        sender(&spool)
            .args(["--once", "--config"])
            .arg(&cfg)
            .env("NO_PROXY", "*"),
        MINUTE,
    )
    .assert_success();
    spool.find(State::Done, "a.json");
    assert_eq!(proxy.tunnels().len(), 1);

    // Wrong credentials: refused by the proxy; the password appears
    // nowhere the sender writes.
    std::fs::write(
        &secret,
        format!("http://spool:WRONGSECRET@127.0.0.1:{port}\n"),
    )
    .unwrap();
    spool.put("b.json", b"refused");
    let out = run(
        sender(&spool).args(["--once", "-v", "--config"]).arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    assert!(proxy.refused() >= 1);
    // Our credentials, refused: waits as a 407 from a receiver does.
    let events = out.events();
    assert_eq!(events[0].event, EventKind::Retry, "{}", out.stdout);
    assert_eq!(events[0].status, Some(407), "{}", out.stdout);
    assert_eq!(waiting_reason(&spool).as_deref(), Some("http-407"));
    assert!(!out.stdout.contains("WRONGSECRET"), "{}", out.stdout);
    assert!(!out.stderr.contains("WRONGSECRET"), "{}", out.stderr);
    for name in spool.names(State::Incoming) {
        assert!(!String::from_utf8_lossy(&name).contains("WRONGSECRET"));
    }
}

#[test]
fn probe_uses_the_client_certificate_server_name_and_proxy_the_sender_would() {
    let pki = Pki::new();
    let (rx, server_pem) = Receiver::start_tls_with(Tls {
        names: vec!["receiver.test".into()],
        client_ca: Some(pki.ca.clone()),
        ..Tls::default()
    });
    let proxy = Proxy::start();
    let spool = TestSpool::new();
    let lines = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        path_str(&side_file(&spool, "ca.pem", &server_pem)),
        path_str(&side_file(&spool, "client.pem", &pki.client_cert)),
        path_str(&side_file(&spool, "client.key", &pki.client_key)),
    );
    let probe = |extra: &str, env: Option<&str>| {
        let cfg = one_receiver(&spool, &rx.url("/in"), &format!("{lines}\n{extra}"));
        let mut cmd = sender(&spool);
        cmd.args(["--check", "--probe", "--config"]).arg(&cfg);
        if let Some(url) = env {
            cmd.env("HTTPS_PROXY", url);
        }
        run(&mut cmd, MINUTE)
    };
    // Under the certificate's name: the handshake completes.
    let out = probe("server_name = \"receiver.test\"", None);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("probe r"), "{}", out.stdout);
    // By address alone: the certificate does not fit.
    let out = probe("", None);
    assert_eq!(out.status.code(), Some(75), "{}{}", out.stdout, out.stderr);
    // Through the proxy, with the name verification switched off.
    let out = probe("insecure_skip_verify = true", Some(&proxy.url()));
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(proxy.tunnels(), [format!("127.0.0.1:{}", rx.addr().port())]);
    assert!(rx.received().is_empty(), "a probe sends no request");
}

/// Issue 27.5: a malformed proxy URL whose password holds `"`, `'`, `>`,
/// `)` or `]` was printed from that character on, on stderr. Whether it
/// comes from the environment or a configured secret, start-up refuses it
/// and says why without any part of the password.
#[test]
fn issue_27_5_a_malformed_proxy_url_never_shows_its_password() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    spool.put("a.json", b"a");
    for c in ['"', '\'', '>', ')', ']', ' ', '@'] {
        // No port: refused. Every piece of the password holds "SECRET".
        let value = format!("http://spool:pa{c}SECRET{c}SECRET@127.0.0.1");
        // one_receiver writes one path: each config is copied aside.
        let plain = side_file(
            &spool,
            "plain.toml",
            &std::fs::read_to_string(one_receiver(&spool, &rx.url("/in"), "")).unwrap(),
        );
        let secret = side_file(&spool, "proxy-url", &format!("{value}\n"));
        let configured = one_receiver(
            &spool,
            &rx.url("/in"),
            &format!("proxy = {{ file = \"{}\" }}", path_str(&secret)),
        );
        let from_env = {
            let mut cmd = sender(&spool);
            cmd.args(["--once", "--config"])
                .arg(&plain)
                .env("https_proxy", &value)
                .env("http_proxy", &value);
            run(&mut cmd, MINUTE)
        };
        let from_secret = run(
            sender(&spool).args(["--once", "--config"]).arg(&configured),
            MINUTE,
        );
        for (how, out) in [("environment", from_env), ("secret", from_secret)] {
            assert_eq!(out.status.code(), Some(78), "{how} {c}: {}", out.stderr);
            assert!(out.stderr.contains("proxy"), "{how} {c}: {}", out.stderr);
            for piece in ["SE", "EC", "CR", "RE", "ET"] {
                assert!(
                    !out.stderr.contains(piece) && !out.stdout.contains(piece),
                    "{how}, password with {c:?}: {}{}",
                    out.stdout,
                    out.stderr
                );
            }
        }
    }
    assert_eq!(spool.count(State::Incoming), 1, "nothing was sent");
}

/// Issue 27.6: under TLS 1.3 the client's side of the handshake ends
/// before the receiver has judged the client certificate, so `--probe`
/// said "ok" for one the receiver refuses, and the sender then parked
/// every file. A wrong CA or an expired certificate is exit 75 with the
/// reason, over TLS 1.3 and 1.2 alike; the right one still passes, and no
/// request reaches the receiver.
#[test]
fn issue_27_6_probe_fails_for_a_client_certificate_the_receiver_refuses() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let expired = Pki::expired();
    for tls12_only in [false, true] {
        let (rx, server_pem) = Receiver::start_tls_with(Tls {
            client_ca: Some(format!("{}{}", pki.ca, expired.ca)),
            tls12_only,
            ..Tls::default()
        });
        let spool = TestSpool::new();
        let ca = side_file(&spool, "ca.pem", &server_pem);
        let probe = |who: &Pki| {
            let lines = format!(
                "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
                path_str(&ca),
                path_str(&side_file(&spool, "client.pem", &who.client_cert)),
                path_str(&side_file(&spool, "client.key", &who.client_key)),
            );
            let cfg = one_receiver(&spool, &rx.url("/in"), &lines);
            run(
                sender(&spool)
                    .args(["--check", "--probe", "--config"])
                    .arg(&cfg),
                MINUTE,
            )
        };
        let out = probe(&pki);
        assert_eq!(
            out.status.code(),
            Some(0),
            "tls12_only={tls12_only}: {}{}",
            out.stdout,
            out.stderr
        );
        for (who, reason) in [(&stranger, "UnknownCA"), (&expired, "CertificateExpired")] {
            let out = probe(who);
            let text = format!("{}{}", out.stdout, out.stderr);
            assert_eq!(
                out.status.code(),
                Some(75),
                "tls12_only={tls12_only}, {reason}: {text}"
            );
            assert!(
                text.contains("probe r") && text.contains(reason),
                "tls12_only={tls12_only}: the reason is {reason}: {text}"
            );
        }
        assert!(rx.received().is_empty(), "a probe sends no request");
    }
}
