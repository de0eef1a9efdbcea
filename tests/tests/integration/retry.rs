//! Retrying: which answers and failures are tried again, with the same
//! key, after which wait (backoff, `Retry-After`), and when retrying ends
//! (`max_attempts`) with the last reason.

use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};
const MINUTE: Duration = Duration::from_secs(60);

fn retry_config(spool: &TestSpool, url: &str, extra: &str) -> std::path::PathBuf {
    let backoff_max = if extra.contains("backoff_max") {
        ""
    } else {
        "backoff_max = \"400ms\""
    };
    ConfigFile::to("r", url)
        .sender("backoff_initial = \"200ms\"")
        .sender(backoff_max)
        .sender(extra)
        .with("timeout = \"500ms\"")
        .write(spool)
}

/// Runs `sender --once` until the file leaves incoming/ or `runs` are used.
fn run_until_settled(
    spool: &TestSpool,
    cfg: &std::path::Path,
    runs: usize,
) -> Vec<spoolpost_protocol::event::Event> {
    let mut events = Vec::new();
    for _ in 0..runs {
        let out = run(sender(spool).arg("--once").arg("--config").arg(cfg), MINUTE);
        out.assert_success();
        events.extend(out.events());
        if spool.count(State::Incoming) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(450));
    }
    events
}

#[test]
fn server_errors_are_retried_with_the_same_key_until_accepted() {
    let rx = Receiver::start();
    rx.script("/in", [Reply::status(503), Reply::status(500)]);
    let spool = TestSpool::new();
    let cfg = retry_config(&spool, &rx.url("/in"), "");
    spool.put("a.json", b"payload");

    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    let waiting = spool.names(State::Incoming);
    assert_eq!(
        waiting.len(),
        1,
        "back in incoming/ to wait: {:?}",
        spool.census()
    );
    let name = SpoolName::parse(OsStr::from_bytes(&waiting[0]));
    assert_eq!(
        (name.attempts, name.last_reason.as_deref()),
        (1, Some("http-503"))
    );
    let due = std::fs::metadata(
        spool
            .dir(State::Incoming)
            .join(OsStr::from_bytes(&waiting[0])),
    )
    .unwrap()
    .modified()
    .unwrap();
    assert!(
        due > SystemTime::now(),
        "its mtime is the next attempt time"
    );

    let events = run_until_settled(&spool, &cfg, 10);
    spool.find(State::Done, "a.json");
    let keys: BTreeSet<_> = rx
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(rx.count(), 3);
    assert_eq!(keys.len(), 1, "one key across retries");
    let mut all = out.events();
    all.extend(events);
    let kinds: Vec<_> = all.iter().map(|e| (e.event, e.attempt, e.status)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Retry, 1, Some(503)),
            (EventKind::Retry, 2, Some(500)),
            (EventKind::Delivered, 3, Some(200))
        ]
    );
}

#[test]
fn retry_after_is_honoured() {
    let rx = Receiver::start();
    rx.script("/in", [Reply::status(429).retry_after("3")]);
    let spool = TestSpool::new();
    let cfg = retry_config(&spool, &rx.url("/in"), "backoff_max = \"10s\"");
    spool.put("a.json", b"x");
    let before = SystemTime::now();
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    )
    .assert_success();
    let waiting = spool.find(State::Incoming, "a.json");
    let due = std::fs::metadata(&waiting).unwrap().modified().unwrap();
    let wait = due.duration_since(before).unwrap();
    assert!(
        wait >= Duration::from_millis(2900) && wait < Duration::from_secs(10),
        "{wait:?}"
    );
    // Not due yet: another run leaves it alone.
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    )
    .assert_success();
    assert_eq!(rx.count(), 1);
}

#[test]
fn network_failures_are_retried_with_their_reason() {
    let rx = Receiver::start();
    rx.answer_path("/reset", Reply::reset());
    rx.answer_path("/stall", Reply::stall(Duration::from_secs(5)));
    // A port with nothing listening: bind, note the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (url, reason) in [
        (rx.url("/reset"), "reset"),
        (rx.url("/stall"), "timeout"),
        (format!("http://{closed}/in"), "connect"),
    ] {
        let spool = TestSpool::new();
        let cfg = retry_config(&spool, &url, "");
        spool.put("a.json", b"x");
        let out = run(
            sender(&spool).arg("--once").arg("--config").arg(&cfg),
            MINUTE,
        );
        out.assert_success();
        let name = SpoolName::parse(OsStr::from_bytes(&spool.names(State::Incoming)[0]));
        assert_eq!(name.last_reason.as_deref(), Some(reason), "{url}");
        let event = &out.events()[0];
        assert_eq!(event.event, EventKind::Retry);
        assert!(event.error.is_some(), "the error text is in the event");
    }
}

#[test]
fn retries_end_in_error_after_max_attempts_with_the_last_reason() {
    let rx = Receiver::start();
    rx.answer(Reply::status(502).body("bad gateway"));
    let spool = TestSpool::new();
    let cfg = retry_config(&spool, &rx.url("/in"), "max_attempts = 2");
    spool.put("a.json", b"x");
    let events = run_until_settled(&spool, &cfg, 10);
    let record = reason_of(&spool.find(State::Error, "a.json"));
    assert_eq!(record.class, ErrorClass::Expired);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.status, Some(502));
    assert_eq!(record.body.as_deref(), Some("bad gateway"));
    assert!(
        record.message.contains("gave up after 2 attempts"),
        "{}",
        record.message
    );
    assert_eq!(events.last().unwrap().event, EventKind::Expired);
    assert_eq!(rx.count(), 2);
}
