//! Proxies: configured per receiver (with credentials from a secret, never
//! shown) or from the environment as curl reads it, for tunnels and plain
//! HTTP alike, and what `--probe` does through them.

use crate::support::setups::*;
use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::proxy::Proxy;
use spoolpost_tests::receiver::Receiver;
use std::time::Duration;
const MINUTE: Duration = Duration::from_secs(60);

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
        // The test's own folder has a random name, which may hold two of
        // the password's letters in a row: it is not the password.
        let folder = path_str(spool.root.parent().unwrap());
        for (how, out) in [("environment", from_env), ("secret", from_secret)] {
            assert_eq!(out.status.code(), Some(78), "{how} {c}: {}", out.stderr);
            assert!(out.stderr.contains("proxy"), "{how} {c}: {}", out.stderr);
            let (stdout, stderr) = (
                out.stdout.replace(folder, "FOLDER"),
                out.stderr.replace(folder, "FOLDER"),
            );
            for piece in ["SE", "EC", "CR", "RE", "ET"] {
                assert!(
                    !stderr.contains(piece) && !stdout.contains(piece),
                    "{how}, password with {c:?}: {}{}",
                    out.stdout,
                    out.stderr
                );
            }
        }
    }
    assert_eq!(spool.count(State::Incoming), 1, "nothing was sent");
}
