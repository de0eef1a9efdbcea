//! A receiver with two endpoints, one of which accepts connections and
//! never answers: once a request to it is late past the receiver's lapse
//! time, new files go to the other endpoint, and a request still
//! unanswered at its answer deadline is cut and fails over instead of
//! waiting out the request timeout. An endpoint that is merely slow, or a
//! receiver with no other endpoint, keeps its requests to the end.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::{TestSpool, config, eventually, path_str, run, sender, spawn};
use spoolpost_tests::receiver::{Receiver, Reply};

/// Far above what any of these runs takes when the rules work.
const TIMEOUT: Duration = Duration::from_secs(30);
const LIMIT: Duration = Duration::from_secs(120);

fn two_endpoints(spool: &TestSpool, urls: &[String], timeout: &str) -> std::path::PathBuf {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    config(
        spool,
        &format!(
            "spool = {:?}\n[receivers.r]\nurls = [{}]\ntimeout = {timeout:?}\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
            path_str(&spool.root),
            urls.join(", ")
        ),
    )
}

#[test]
fn files_fail_over_from_a_hanging_endpoint_long_before_the_request_timeout() {
    let (hangs, works) = (Receiver::start(), Receiver::start());
    hangs.faults(0.0, 1.0);
    let spool = TestSpool::new();
    let n = 300;
    for i in 0..n {
        spool.put(format!("f{i:03}"), b"event");
    }
    let cfg = two_endpoints(&spool, &[hangs.url("/in"), works.url("/in")], "30s");
    let started = Instant::now();
    let out = run(
        sender(&spool).arg("--config").arg(&cfg).arg("--once"),
        LIMIT,
    );
    let took = started.elapsed();
    out.assert_success();
    assert_eq!(spool.count(State::Done), n, "{:?}", spool.census());
    // Before, every file sent to the hanging endpoint waited the 30 s.
    assert!(took < TIMEOUT / 3, "took {took:?}");
    let events = out.events();
    let cut: Vec<_> = events
        .iter()
        .filter(|e| !e.failed_over.is_empty())
        .collect();
    assert_eq!(
        works.count(),
        n as u64,
        "every file ends on the working one"
    );
    // Requests it was sent, each left hanging.
    assert_eq!(hangs.faulted().1, cut.len() as u64);
    assert!(
        cut.len() < n / 4,
        "{} files went to the hanging one",
        cut.len()
    );
    for e in cut {
        assert!(
            e.failed_over[0].contains("the answer deadline"),
            "{:?}",
            e.failed_over
        );
    }
}

#[test]
fn a_slow_endpoint_that_answers_is_not_cut() {
    let (slow, fast) = (Receiver::start(), Receiver::start());
    slow.answer(Reply::stall(Duration::from_millis(400)));
    let spool = TestSpool::new();
    let n = 60;
    for i in 0..n {
        spool.put(format!("f{i:03}"), b"event");
    }
    let cfg = two_endpoints(&spool, &[slow.url("/in"), fast.url("/in")], "30s");
    let out = run(
        sender(&spool).arg("--config").arg(&cfg).arg("--once"),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(spool.count(State::Done), n);
    let events = out.events();
    assert!(
        events.iter().all(|e| e.failed_over.is_empty()),
        "a slow answer was cut: {:?}",
        events.iter().find(|e| !e.failed_over.is_empty())
    );
    assert!(slow.count() > 0, "the slow endpoint took its share");
    assert_eq!(slow.count() + fast.count(), n as u64, "nothing sent twice");
}

#[test]
fn with_no_other_endpoint_a_hanging_request_runs_to_its_timeout() {
    let hangs = Receiver::start();
    hangs.faults(0.0, 1.0);
    let spool = TestSpool::new();
    spool.put("only", b"event");
    let cfg = two_endpoints(&spool, &[hangs.url("/in")], "6s");
    let started = Instant::now();
    let out = run(
        sender(&spool).arg("--config").arg(&cfg).arg("--once"),
        LIMIT,
    );
    out.assert_success();
    // Its answer deadline (4 lapse times of 1 s, no answer having been
    // timed) is before the 6 s timeout, but nothing else could take it.
    assert!(started.elapsed() >= Duration::from_secs(6));
    let events = out.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let error = events[0].error.as_deref().unwrap_or("");
    assert!(!error.contains("answer deadline"), "{error}");
    assert_eq!(spool.count(State::Incoming), 1, "waits for its retry");
}

#[test]
fn an_endpoint_slower_than_the_deadline_is_known_by_its_probe_and_then_not_cut() {
    let (slow, fast) = (Receiver::start(), Receiver::start());
    // Past the 1 s deadline a fast sibling gives the receiver: taken for
    // hung at first, until its probe, which is never cut, is answered.
    slow.answer(Reply::stall(Duration::from_millis(1500)));
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let cfg = config(
        &spool,
        &format!(
            "spool = {:?}\n[sender]\nbreaker_failures = 2\nbreaker_open_initial = \"1s\"\nbreaker_open_max = \"1s\"\n[receivers.r]\nurls = [{:?}, {:?}]\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
            path_str(&spool.root),
            slow.url("/in"),
            fast.url("/in")
        ),
    );
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let slow_url = slow.url("/in");
    let by_slow = |v: &serde_json::Value| v["endpoint"] == slow_url.as_str();
    let mut put = 0;
    assert!(
        eventually(LIMIT, || {
            spool.put(format!("early-{put}"), b"event");
            put += 1;
            std::thread::sleep(Duration::from_millis(50));
            lines().iter().any(by_slow)
        }),
        "the slow endpoint never delivered"
    );
    // Known now: its answers are not cut, it takes its share again.
    let before = lines().len();
    for i in 0..40 {
        spool.put(format!("late-{i}"), b"event");
    }
    assert!(eventually(LIMIT, || spool.count(State::Done) == put + 40));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    let late = &lines()[before..];
    assert!(
        late.iter().any(by_slow),
        "the slow endpoint got no late file"
    );
    assert!(
        late.iter().all(|v| v.get("failed_over").is_none()),
        "{:?}",
        late.iter().find(|v| v.get("failed_over").is_some())
    );
}
