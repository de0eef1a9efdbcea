//! Circuit breakers: a receiver that keeps failing stops getting files
//! without slowing the others, a probe tells when it is back, and a 401
//! (credentials) opens it at once until the credentials change.

use crate::support::setups::*;
use nix::sys::signal::Signal;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;
const LIMIT: Duration = Duration::from_secs(20);
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_failing_receiver_does_not_slow_the_others_and_its_circuit_opens() {
    let rx = Receiver::start();
    rx.answer_path("/down", Reply::status(503));
    let spool = TestSpool::new();
    let cfg = ConfigFile::new()
        .sender("breaker_failures = 3\nbreaker_open_initial = \"1s\"\nbreaker_open_max = \"1s\"")
        .receiver("down", &rx.url("/down"), "concurrency = 2")
        .receiver("up", &rx.url("/up"), "")
        .route(r#"glob = "down-*""#, "down")
        .route_all("up")
        .write(&spool);
    for i in 0..300 {
        spool.put(format!("down-{i}"), b"x");
        spool.put(format!("up-{i}"), b"x");
    }
    let started = std::time::Instant::now();
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(
        eventually(MINUTE, || rx.count_path("/up") >= 300),
        "up got {}",
        rx.count_path("/up")
    );
    let up_time = started.elapsed();
    // Let the open circuit run through two probe periods.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(up_time));
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    let down = rx.count_path("/down");
    // 3 failures open it (plus at most the 2 in flight), then one probe per
    // second: far fewer than 300.
    assert!((3..=12).contains(&down), "down got {down} requests");
    assert_eq!(spool.count(State::Done), 300);
    assert_eq!(
        spool.count(State::Incoming),
        300,
        "down's files wait: {:?}",
        spool.census()
    );
    assert_eq!(spool.claim_folders(), 0);
    let waiting = spool.names(State::Incoming);
    let untouched = waiting
        .iter()
        .filter(|n| SpoolName::parse(OsStr::from_bytes(n)).attempts == 0)
        .count();
    assert!(
        untouched >= 300 - down,
        "files held by the open circuit keep their attempts"
    );
}

#[test]
fn a_successful_probe_releases_the_waiting_files_at_once() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("r", &rx.url("/in"))
        .sender(
            "breaker_failures = 1\nbreaker_open_initial = \"1s\"\nbreaker_open_max = \"1s\"\n\
             backoff_initial = \"100ms\"\nbackoff_max = \"100ms\"\nrescan_interval = \"1h\"",
        )
        .with("concurrency = 1")
        .write(&spool);
    // The first request fails and opens the circuit; a second later the
    // probe goes out and takes 500 ms to succeed. Another file arrives
    // while the probe is out.
    rx.script(
        "/in",
        [Reply::status(503), Reply::stall(Duration::from_millis(500))],
    );
    spool.put("first", b"1");
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    // The receiver records a request only when it answers: one answer (the
    // 503) and the file claimed again with one attempt behind it means the
    // probe is out. (Sending alone is not enough: right after the 503 the
    // file is still in its claim folder with no attempt recorded yet.)
    assert!(
        eventually(Duration::from_secs(10), || rx.count() == 1
            && spool.names(State::Sending).iter().any(|n| SpoolName::parse(
                OsStr::from_bytes(n)
            )
            .attempts
                == 1)),
        "the probe went out"
    );
    spool.put("second", b"2");
    let closed_at = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || spool.count(State::Done) == 2),
        "{:?}",
        spool.census()
    );
    let waited = closed_at.elapsed();
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
    // Without the wake-up the second file would wait for the half-open
    // timer (open_initial, 1 s) after the probe came back.
    assert!(waited < Duration::from_millis(900), "waited {waited:?}");
}

#[test]
fn a_401_keeps_files_waiting_and_a_rewritten_token_file_releases_them() {
    let rx = Receiver::start();
    rx.require_header(
        "authorization",
        "Bearer new",
        spoolpost_tests::receiver::Reply::status(401),
    );
    let spool = TestSpool::new();
    let token = spool.side("secret").join("token");
    std::fs::write(&token, "Bearer old\n").unwrap();
    let cfg = token_config(&spool, &rx.url("/in"), &token, "");
    for i in 0..5 {
        spool.put(format!("f{i}"), b"x");
    }
    let proc = spawn(sender(&spool).arg("--config").arg(&cfg));
    // Refused again and again, past max_attempts = 2: still waiting.
    assert!(eventually(LIMIT, || rx.count() >= 4));
    assert_eq!(spool.count(State::Error), 0, "{:?}", spool.census());
    // The circuit says why, for the reporter, once the sender publishes
    // it (about once a second: the refusals can come sooner).
    let mut report = String::new();
    assert!(
        eventually(LIMIT, || {
            report = run(
                spoolpost_tests::harness::reporter(&spool).args(["--format", "json"]),
                LIMIT,
            )
            .stdout;
            report.contains("auth")
        }),
        "{report}"
    );
    std::fs::write(&token, "Bearer new\n").unwrap();
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 5),
        "{:?}",
        spool.census()
    );
    assert_eq!(spool.count(State::Error), 0);
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}
