//! A reload (SIGHUP) that changes the set of receivers: each receiver's
//! state belongs to its name, so a new one starts fresh, a removed one's
//! waiting files follow the new routes at once, a renamed one is one of
//! each, a kept one keeps its hold, and a file in flight to a removed one
//! finishes there. A `Retry-After` wait outlives a reload that changes the
//! backoff; a backoff wait does not.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::{
    ConfigFile, Running, TestSpool, config, eventually, reporter, run, sender, spawn,
};
use spoolpost_tests::receiver::{Receiver, Reply};

const LIMIT: Duration = Duration::from_secs(20);

/// A configuration: `[sender]` lines, then each receiver as (name, URL),
/// then each route as (glob, receiver).
fn text(
    spool: &TestSpool,
    sender: &str,
    receivers: &[(&str, &str)],
    routes: &[(&str, &str)],
) -> String {
    let mut file = ConfigFile::new().spool(&spool.root).sender(sender);
    for (name, url) in receivers {
        file = file.receiver(name, url, "");
    }
    for (glob, receiver) in routes {
        file = file.route(&format!("glob = {glob:?}"), receiver);
    }
    file.text()
}

/// The reload event lines written so far.
fn reloads(events: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "reload")
        .collect()
}

/// Rewrites the configuration, sends SIGHUP and waits for the reload's
/// event line (the `n`th); returns it.
fn reload(proc: &Running, cfg: &Path, events: &Path, new: &str, n: usize) -> serde_json::Value {
    std::fs::write(cfg, new).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(
        eventually(LIMIT, || reloads(events).len() == n),
        "no reload line: {:?}",
        reloads(events)
    );
    reloads(events).pop().unwrap()
}

fn daemon(spool: &TestSpool, cfg: &Path, events: &Path) -> Running {
    spawn(
        sender(spool)
            .arg("--config")
            .arg(cfg)
            .arg("--events")
            .arg(events),
    )
}

fn paths(rx: &Receiver) -> Vec<String> {
    rx.received().into_iter().map(|r| r.path).collect()
}

#[test]
fn a_receiver_added_by_a_reload_takes_its_files_at_once_and_the_line_names_it() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let (a, b) = (rx.url("/a"), rx.url("/b"));
    let cfg = config(&spool, &text(&spool, "", &[("a", &a)], &[("*", "a")]));
    let proc = daemon(&spool, &cfg, &events);
    spool.put("first", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    let line = reload(
        &proc,
        &cfg,
        &events,
        &text(
            &spool,
            "",
            &[("a", &a), ("b", &b)],
            &[("b-*", "b"), ("*", "a")],
        ),
        1,
    );
    assert_eq!(line["ok"], true, "{line}");
    assert_eq!(line["receivers_added"], serde_json::json!(["b"]), "{line}");
    assert!(line.get("restart_needed").is_none(), "{line}");
    spool.put("b-one", b"x");
    spool.put("second", b"x");
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 3),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    let mut got = paths(&rx);
    got.sort();
    assert_eq!(got, ["/a", "/a", "/b"]);
    // The reporter shows who came, from the event lines.
    let out = run(reporter(&spool).arg("--events").arg(&events), LIMIT);
    out.assert_success();
    assert!(
        out.stdout
            .contains("LAST RELOAD THAT CHANGED RECEIVERS (sender at ")
            && out.stdout.contains("added b; removed none"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_removed_receivers_waiting_files_go_to_their_new_route_at_once() {
    let (good, bad) = (Receiver::start(), Receiver::start());
    bad.answer(Reply::status(503));
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    // An hour's backoff: a file that waited it out would not arrive.
    let slow = "backoff_initial = \"1h\"\nbackoff_max = \"1h\"";
    let (a, b) = (good.url("/in"), bad.url("/in"));
    let cfg = config(
        &spool,
        &text(
            &spool,
            slow,
            &[("a", &a), ("b", &b)],
            &[("b-*", "b"), ("*", "a")],
        ),
    );
    let proc = daemon(&spool, &cfg, &events);
    for i in 0..3 {
        spool.put(format!("b-{i}"), b"x");
    }
    spool.put("plain", b"x");
    // b's files failed once and wait in incoming/ for b's backoff.
    assert!(eventually(LIMIT, || bad.count() == 3
        && spool.count(State::Incoming) == 3
        && spool.count(State::Done) == 1));
    let line = reload(
        &proc,
        &cfg,
        &events,
        &text(&spool, slow, &[("a", &a)], &[("*", "a")]),
        1,
    );
    assert_eq!(
        line["receivers_removed"],
        serde_json::json!(["b"]),
        "{line}"
    );
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 4),
        "b's files still wait: {:?}",
        spool.census()
    );
    // A file that only a receiver let go routed is unrouted now.
    let line = reload(
        &proc,
        &cfg,
        &events,
        &text(&spool, slow, &[("c", &a)], &[("keep-*", "c")]),
        2,
    );
    assert_eq!(line["receivers_added"], serde_json::json!(["c"]), "{line}");
    assert_eq!(
        line["receivers_removed"],
        serde_json::json!(["a"]),
        "{line}"
    );
    spool.put("stray", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Error) == 1));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!((good.count(), bad.count()), (4, 3));
}

#[test]
fn a_file_in_flight_to_a_removed_receiver_finishes_there() {
    let (old, new) = (Receiver::start(), Receiver::start());
    old.answer(Reply::stall(Duration::from_secs(3)));
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let cfg = config(
        &spool,
        &text(&spool, "", &[("old", &old.url("/in"))], &[("*", "old")]),
    );
    let proc = daemon(&spool, &cfg, &events);
    spool.put("on-its-way", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Sending) == 1));
    let line = reload(
        &proc,
        &cfg,
        &events,
        &text(&spool, "", &[("new", &new.url("/in"))], &[("*", "new")]),
        1,
    );
    assert_eq!(
        line["receivers_removed"],
        serde_json::json!(["old"]),
        "{line}"
    );
    assert_eq!(spool.count(State::Done), 0, "still in flight at the reload");
    spool.put("after", b"x");
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 2),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    let names = |rx: &Receiver| -> Vec<String> {
        rx.received()
            .iter()
            .filter_map(|r| r.header("x-filename").map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&old), ["on-its-way"]);
    assert_eq!(names(&new), ["after"]);
}

#[test]
fn holds_belong_to_names_so_a_rename_frees_the_files_and_a_reorder_keeps_the_hold() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let (a, b) = (rx.url("/a"), rx.url("/b"));
    let routes = [("a-*", "a"), ("b-*", "b")];
    let cfg = config(&spool, &text(&spool, "", &[("a", &a), ("b", &b)], &routes));
    std::fs::create_dir_all(spool.root.join("hold")).unwrap();
    std::fs::write(spool.root.join("hold").join("b"), b"").unwrap();
    let proc = daemon(&spool, &cfg, &events);
    spool.put("b-held", b"x");
    spool.put("a-1", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    // The same two receivers in the other order: b is still held.
    reload(
        &proc,
        &cfg,
        &events,
        &text(&spool, "", &[("b", &b), ("a", &a)], &routes),
        1,
    );
    spool.put("a-2", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 2));
    assert_eq!(rx.count_path("/b"), 0, "the hold moved with the order");
    // b renamed c: c is new, and nobody holds it.
    let line = reload(
        &proc,
        &cfg,
        &events,
        &text(
            &spool,
            "",
            &[("c", &b), ("a", &a)],
            &[("a-*", "a"), ("b-*", "c")],
        ),
        2,
    );
    assert_eq!(line["receivers_added"], serde_json::json!(["c"]), "{line}");
    assert_eq!(
        line["receivers_removed"],
        serde_json::json!(["b"]),
        "{line}"
    );
    assert!(eventually(LIMIT, || spool.count(State::Done) == 3));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!(rx.count_path("/b"), 1);
}

#[test]
fn a_retry_after_wait_outlives_a_reload_that_shortens_the_backoff() {
    let rx = Receiver::start();
    rx.script("/told", [Reply::status(503).retry_after("3600")]);
    rx.script("/plain", [Reply::status(503)]);
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let receivers = [("told", &*rx.url("/told")), ("plain", &*rx.url("/plain"))];
    let routes = [("told-*", "told"), ("*", "plain")];
    let slow = "backoff_initial = \"10m\"\nbackoff_max = \"2h\"";
    let cfg = config(&spool, &text(&spool, slow, &receivers, &routes));
    let proc = daemon(&spool, &cfg, &events);
    spool.put("told-to-wait", b"x");
    spool.put("backing-off", b"x");
    assert!(eventually(LIMIT, || rx.count() == 2
        && spool.count(State::Incoming) == 2));
    let fast = "backoff_initial = \"100ms\"\nbackoff_max = \"2h\"";
    reload(
        &proc,
        &cfg,
        &events,
        &text(&spool, fast, &receivers, &routes),
        1,
    );
    // The backoff's wait is judged again and ends; the receiver's hour
    // does not. A file put after the reload shows its pass is over.
    spool.put("marker", b"x");
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 2),
        "{:?}",
        spool.census()
    );
    assert_eq!(rx.count_path("/plain"), 3);
    assert_eq!(
        rx.count_path("/told"),
        1,
        "the Retry-After wait was cut short"
    );
    assert_eq!(spool.count(State::Incoming), 1);
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

#[test]
fn an_open_circuit_stays_with_its_receiver_when_a_reload_puts_another_before_it() {
    let (failing, fresh) = (Receiver::start(), Receiver::start());
    failing.answer(Reply::status(503));
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let breaker = "breaker_failures = 1\nbreaker_open_initial = \"1h\"\nbreaker_open_max = \"1h\"\nbackoff_initial = \"1h\"\nbackoff_max = \"1h\"";
    let a = failing.url("/in");
    let cfg = config(&spool, &text(&spool, breaker, &[("a", &a)], &[("*", "a")]));
    let proc = daemon(&spool, &cfg, &events);
    spool.put("fails", b"x");
    let circuits = || {
        let s = spoolpost_protocol::spool::Spool::open(&spool.root).unwrap();
        spoolpost_protocol::circuits::read_all(&s)
    };
    let state = |name: &str| circuits().get(name).map(|c| c.state.as_str().to_owned());
    assert!(eventually(LIMIT, || state("a").as_deref() == Some("open")));
    let z = fresh.url("/in");
    reload(
        &proc,
        &cfg,
        &events,
        &text(
            &spool,
            breaker,
            &[("z", &z), ("a", &a)],
            &[("z-*", "z"), ("*", "a")],
        ),
        1,
    );
    assert!(eventually(LIMIT, || state("z").as_deref() == Some("closed")));
    assert_eq!(state("a").as_deref(), Some("open"));
    spool.put("z-new", b"x");
    spool.put("for-a", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!(
        (fresh.count(), failing.count()),
        (1, 1),
        "a's open circuit kept its files"
    );
}

#[test]
fn a_receiver_added_on_hold_gets_none_of_its_files() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let (a, c) = (rx.url("/a"), rx.url("/c"));
    std::fs::create_dir_all(spool.root.join("hold")).unwrap();
    std::fs::write(spool.root.join("hold").join("c"), b"").unwrap();
    let cfg = config(&spool, &text(&spool, "", &[("a", &a)], &[("*", "a")]));
    let proc = daemon(&spool, &cfg, &events);
    // The holds were read for a moment ago, when this file went.
    spool.put("first", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    let both = text(
        &spool,
        "",
        &[("a", &a), ("c", &c)],
        &[("c-*", "c"), ("*", "a")],
    );
    reload(&proc, &cfg, &events, &both, 1);
    spool.put("c-held", b"x");
    spool.put("marker", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 2));
    assert_eq!(rx.count_path("/c"), 0, "a held receiver got a file");
    std::fs::remove_file(spool.root.join("hold").join("c")).unwrap();
    assert!(eventually(LIMIT, || spool.count(State::Done) == 3));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

/// A kept receiver's `concurrency` applies on reload, without a restart:
/// a sender pinned at one request in flight goes to eight on SIGHUP.
#[test]
fn a_kept_receivers_concurrency_applies_on_reload() {
    let rx = Receiver::start();
    // Each request takes 50 ms however many are open, so a sender allowed
    // eight keeps eight open.
    rx.queueing(Duration::from_millis(50), Duration::ZERO);
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let sized = |concurrency: usize| {
        ConfigFile::new()
            .spool(&spool.root)
            .receiver(
                "r",
                &rx.url("/"),
                &format!("concurrency = {concurrency}\nadaptive = false"),
            )
            .route_all("r")
            .text()
    };
    let cfg = config(&spool, &sized(1));
    for i in 0..400 {
        spool.put(format!("f{i:03}"), b"x");
    }
    let proc = daemon(&spool, &cfg, &events);
    assert!(rx.wait_for(10, LIMIT), "nothing delivered");
    assert_eq!(rx.peak_open(), 1, "pinned at one");
    let line = reload(&proc, &cfg, &events, &sized(8), 1);
    assert_eq!(line["ok"], true, "{line}");
    assert!(line.get("restart_needed").is_none(), "{line}");
    assert!(
        eventually(LIMIT, || rx.peak_open() == 8),
        "in flight at most {} after the reload",
        rx.peak_open()
    );
    assert!(
        spool.count(State::Incoming) + spool.count(State::Sending) > 0,
        "the reload came after the files were all sent"
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert!(
        rx.peak_open() <= 8,
        "above the new bound: {}",
        rx.peak_open()
    );
}

/// A kept receiver's `rate_limit` applies on reload: files held back at
/// two a second all go once the reload raises it, without a restart.
#[test]
fn a_kept_receivers_rate_limit_applies_on_reload() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let limited = |rate: &str| {
        ConfigFile::new()
            .spool(&spool.root)
            .receiver("r", &rx.url("/"), &format!("rate_limit = {rate:?}"))
            .route_all("r")
            .text()
    };
    let cfg = config(&spool, &limited("2/s"));
    for i in 0..100 {
        spool.put(format!("f{i:03}"), b"x");
    }
    let proc = daemon(&spool, &cfg, &events);
    assert!(rx.wait_for(2, LIMIT), "nothing delivered");
    let line = reload(&proc, &cfg, &events, &limited("1000/s"), 1);
    assert_eq!(line["ok"], true, "{line}");
    assert!(line.get("restart_needed").is_none(), "{line}");
    // At two a second the rest would take 49 s.
    assert!(
        eventually(Duration::from_secs(15), || spool.count(State::Done) == 100),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}
