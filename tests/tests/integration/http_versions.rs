//! HTTP versions (`http_version`): prior knowledge on plain HTTP, ALPN over
//! TLS, and early answers caught over HTTP/2 as over HTTP/1.1.

use crate::support::setups::*;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply, Tls};

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

/// The benchmarks measure HTTP/2 against the `test-receiver` program, so
/// the program must speak it when asked, as the library's receiver does.
#[test]
fn the_test_receiver_program_speaks_prior_knowledge_http_2_when_asked() {
    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);
    let rx = spawn(command("test-receiver").arg("--http2"));
    let mut url = String::new();
    assert!(
        eventually(MINUTE, || {
            let out = rx.stdout_so_far();
            url = out
                .lines()
                .find_map(|l| l.strip_prefix("listening on "))
                .unwrap_or_default()
                .to_string();
            !url.is_empty()
        }),
        "{}",
        rx.stderr_so_far()
    );
    let spool = TestSpool::new();
    spool.put("a.json", b"two");
    let out = once(
        &spool,
        &one_receiver(&spool, &format!("{url}/in"), "http_version = \"2\""),
    );
    assert_eq!(spool.count(State::Done), 1, "{}", out.stderr);
    rx.signal(nix::sys::signal::Signal::SIGTERM);
    let summary = rx.wait(MINUTE).stderr;
    assert!(summary.contains("test-receiver: 1 requests"), "{summary}");
}
