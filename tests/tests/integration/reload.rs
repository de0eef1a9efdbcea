//! Reloading on SIGHUP: the events file reopened, the configuration read
//! again and applied to new work (sources, routes, URLs, headers, backoff)
//! without losing or repeating a file in flight, and a broken configuration
//! refused while the old one keeps running.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;
use spoolpost_tests::receiver::Reply;

use crate::support::setups::*;
const MINUTE: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(20);

fn write_ready(dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}"));
    std::fs::write(&tmp, name).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

#[test]
fn sighup_reopens_the_events_file_and_takes_up_a_changed_source() {
    let spool = TestSpool::new();
    let (a, b) = (spool.side("a"), spool.side("b"));
    let events = spool.side("log").join("events.jsonl");
    let cfg = config(
        &spool,
        &format!(
            "[[collector.sources]]\npath = {:?}\nsettle = \"50ms\"\n",
            path_str(&a)
        ),
    );
    let proc = spawn(
        collector(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    write_ready(&a, "one");
    assert!(eventually(LIMIT, || spool.count(State::Incoming) == 1));
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(|s| s.contains("\"one\""))));
    let rotated = events.with_extension("1");
    std::fs::rename(&events, &rotated).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[[collector.sources]]\npath = {:?}\nsettle = \"50ms\"\n",
            path_str(&b)
        ),
    )
    .unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(
            |s| s.contains("\"reload\"") && s.contains("\"ok\":true")
        )));
    write_ready(&b, "two");
    assert!(
        eventually(LIMIT, || spool.count(State::Incoming) == 2),
        "the new source is collected"
    );
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(|s| s.contains("\"two\""))));
    write_ready(&a, "three");
    proc.signal(Signal::SIGTERM);
    let out = proc.wait(LIMIT);
    out.assert_success();
    assert!(
        a.join("three").exists(),
        "the old source is no longer collected"
    );
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("\"two\"")
    );
}

#[test]
fn a_broken_reload_is_refused_and_collecting_goes_on() {
    let spool = TestSpool::new();
    let a = spool.side("a");
    let events = spool.side("log").join("events.jsonl");
    let good = format!(
        "[[collector.sources]]\npath = {:?}\nsettle = \"50ms\"\n",
        path_str(&a)
    );
    let cfg = config(&spool, &good);
    let proc = spawn(
        collector(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    write_ready(&a, "one");
    assert!(eventually(LIMIT, || spool.count(State::Incoming) == 1));
    std::fs::write(&cfg, format!("{good}bogus = 1\n")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(
            |s| s.contains("\"reload\"") && s.contains("\"ok\":false")
        )));
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(
        log.contains("spoolpost.toml:4:"),
        "the refusal names the line: {log}"
    );
    write_ready(&a, "two");
    assert!(
        eventually(LIMIT, || spool.count(State::Incoming) == 2),
        "the old configuration keeps collecting"
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

fn events_have(path: &Path, want: &[&str]) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| want.iter().all(|w| s.contains(w)))
}

#[test]
fn the_sender_reopens_a_moved_events_file_on_sighup() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let log = spool.side("log");
    let events = log.join("events.jsonl");
    let proc = spawn(
        sender(&spool)
            .args(["--url", &rx.url("/in"), "--events"])
            .arg(&events),
    );
    spool.put("before", b"x");
    assert!(eventually(LIMIT, || events_have(&events, &["\"before\""])));
    let moved = log.join("events.jsonl.1");
    std::fs::rename(&events, &moved).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(&events, &["\"reload\""])));
    spool.put("after", b"x");
    assert!(eventually(LIMIT, || events_have(&events, &["\"after\""])));
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(!old.contains("\"after\""), "{old}");
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

#[test]
fn a_broken_sender_reload_is_refused_and_delivery_goes_on_with_new_headers_after_a_good_one() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let token = spool.side("secret").join("token");
    std::fs::write(&token, "Bearer one").unwrap();
    let events = spool.side("log").join("events.jsonl");
    let cfg = token_config(&spool, &rx.url("/in"), &token, "");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    spool.put("one", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    std::fs::write(&cfg, format!("{good}bogus = 1\n")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(
        &events,
        &["\"reload\"", "\"ok\":false", "spoolpost.toml:"]
    )));
    spool.put("two", b"x");
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 2),
        "the old configuration keeps sending"
    );
    // A good reload swaps a literal header in, and names what needs a restart.
    let changed = good
        .replace(
            "[receivers.main.headers]\n",
            "[receivers.main.headers]\nX-Tag = \"two\"\n",
        )
        .replace("[sender]\n", "[sender]\ngrace = \"7s\"\n");
    std::fs::write(&cfg, changed).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(
        &events,
        &["\"ok\":true", "\"restart_needed\":[\"[sender]\"]"]
    )));
    spool.put("three", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 3));
    let last = rx.received().into_iter().last().unwrap();
    assert_eq!(last.header("x-tag"), Some("two"));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

#[test]
fn sighup_during_many_requests_in_flight_loses_and_duplicates_nothing() {
    let rx = Receiver::start();
    rx.answer(spoolpost_tests::receiver::Reply::stall(
        Duration::from_millis(300),
    ));
    let spool = TestSpool::new();
    let n = 300;
    for i in 0..n {
        spool.put(format!("f{i:03}"), b"x");
    }
    let token = spool.side("secret").join("token");
    std::fs::write(&token, "Bearer t").unwrap();
    let cfg = token_config(&spool, &rx.url("/in"), &token, "concurrency = 256");
    // Many in flight at once, from the start: a pinned limit, not the
    // adaptive one that starts low and grows.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[receivers.main.headers]",
        "adaptive = false\n[receivers.main.headers]",
    );
    std::fs::write(&cfg, text).unwrap();
    let proc = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(LIMIT, || spool.names(State::Sending).len() >= 50));
    for _ in 0..3 {
        proc.signal(Signal::SIGHUP);
    }
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == n),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    let mut names: Vec<String> = rx
        .received()
        .iter()
        .filter_map(|r| r.header("x-filename").map(str::to_owned))
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(
        (before, names.len()),
        (n, n),
        "each file delivered exactly once"
    );
}

/// A daemon sender with two receivers, `a` and `b`; `route` names the one
/// every file goes to, `sender` goes into `[sender]`.
fn two_receivers(spool: &TestSpool, a: &str, b: &str, route: &str, sender: &str) -> String {
    ConfigFile::new()
        .spool(&spool.root)
        .sender(sender)
        .receiver("a", a, "")
        .receiver("b", b, "")
        .route_all(route)
        .text()
}

#[test]
fn a_reload_that_changes_a_route_or_a_url_sends_new_files_to_the_new_receiver() {
    let (one, two, three) = (Receiver::start(), Receiver::start(), Receiver::start());
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let (a, b) = (one.url("/in"), two.url("/in"));
    let cfg = config(&spool, &two_receivers(&spool, &a, &b, "a", ""));
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    spool.put("first", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    std::fs::write(&cfg, two_receivers(&spool, &a, &b, "b", "")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(&events, &["\"ok\":true"])));
    spool.put("second", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 2));
    // Receiver a keeps its name and takes a new URL.
    std::fs::write(&cfg, two_receivers(&spool, &three.url("/in"), &b, "a", "")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || {
        std::fs::read_to_string(&events).is_ok_and(|s| s.matches("\"ok\":true").count() == 2)
    }));
    spool.put("third", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 3));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!((one.count(), two.count(), three.count()), (1, 1, 1));
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(!log.contains("restart_needed"), "{log}");
}

#[test]
fn a_reload_that_shortens_the_backoff_lets_a_waiting_retry_go_promptly() {
    let rx = Receiver::start();
    rx.script("/in", [spoolpost_tests::receiver::Reply::status(503)]);
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let url = rx.url("/in");
    let slow = "backoff_initial = \"1h\"\nbackoff_max = \"2h\"";
    let cfg = config(&spool, &two_receivers(&spool, &url, &url, "a", slow));
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    spool.put("waits", b"x");
    assert!(eventually(LIMIT, || rx.count() == 1
        && spool.count(State::Incoming) == 1));
    let fast = "backoff_initial = \"100ms\"\nbackoff_max = \"2h\"";
    std::fs::write(&cfg, two_receivers(&spool, &url, &url, "a", fast)).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(&events, &["\"ok\":true"])));
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 1),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!(rx.count(), 2);
}

#[test]
fn sighup_switching_urls_applies_to_new_work_without_loss() {
    let rx = Receiver::start();
    // Slow answers on a, so files are in flight on it when the reload
    // comes; they finish there under the configuration they started with.
    rx.answer_path("/a", Reply::stall(Duration::from_millis(300)));
    let (a, b, c) = (rx.url("/a"), rx.url("/b"), rx.url("/c"));
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&a], "60s", "");
    for i in 0..20 {
        spool.put(format!("before-{i}"), b"x");
    }
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(MINUTE, || spool.count(State::Sending) > 0));
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("[{a:?}]"), &format!("[{b:?}, {c:?}]"));
    std::fs::write(&cfg, text).unwrap();
    daemon.signal(Signal::SIGHUP);
    let mut put = 20;
    assert!(
        eventually(Duration::from_secs(20), || {
            spool.put(format!("after-{put}"), b"y");
            put += 1;
            std::thread::sleep(Duration::from_millis(20));
            rx.count_path("/b") > 0 && rx.count_path("/c") > 0
        }),
        "the new endpoints got nothing"
    );
    // From here on a gets nothing new.
    let a_then = rx.count_path("/a");
    for i in 0..20 {
        spool.put(format!("last-{i}"), b"z");
    }
    put += 20;
    assert!(
        eventually(MINUTE, || spool.count(State::Done) == put),
        "{} of {put}: {:?}",
        spool.count(State::Done),
        spool.census()
    );
    // The dropped endpoint is gone from the published circuits.
    let endpoints: Vec<String> = circuits_of(&spool)["r"].endpoints.keys().cloned().collect();
    assert_eq!(endpoints, [b.clone(), c.clone()]);
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert_eq!(rx.count_path("/a"), a_then);
    assert_eq!(spool.count(State::Incoming) + spool.count(State::Error), 0);
    assert!(
        out.stdout.contains("\"event\":\"reload\""),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("\"ok\":false"), "{}", out.stdout);
    let delivered = out.stdout.matches("\"event\":\"delivered\"").count();
    assert_eq!(delivered, put);
}
