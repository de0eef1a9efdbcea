//! The sender, run as a real process against the test receiver on loopback.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn delivers_every_file_gzipped_with_its_name_and_a_key() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let mut bodies: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let sizes = [0usize, 1, 1000, 64 * 1024, 64 * 1024 + 1, 300_000];
    for (i, size) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..*size).map(|j| (j * 7 + i) as u8).collect();
        let name = format!("f{i}.json").into_bytes();
        spool.put(OsStr::from_bytes(&name), &body);
        bodies.insert(name, body);
    }
    // Odd names: newline, space, percent, non-UTF-8.
    for name in [&b"with\nnewline"[..], b"with space %41", b"caf\xe9.json"] {
        spool.put(OsStr::from_bytes(name), name);
        bodies.insert(name.to_vec(), name.to_vec());
    }

    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();

    assert_eq!(
        spool.count(State::Done),
        bodies.len(),
        "{:?}",
        spool.census()
    );
    assert_eq!(
        spool.census()["incoming"] + spool.census()["error"] + spool.census()["sending"],
        0
    );
    assert_eq!(
        spool.claim_folders(),
        0,
        "the claim folder is removed on exit"
    );
    let received = rx.received();
    assert_eq!(received.len(), bodies.len());
    let mut keys = BTreeSet::new();
    for r in &received {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/in");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        let name = percent_decode(r.header("x-filename").unwrap());
        let want = &bodies[&name];
        assert_eq!(
            r.body_len,
            want.len() as u64,
            "{:?}",
            String::from_utf8_lossy(&name)
        );
        assert_eq!(&r.body, want);
        let key = r.header("idempotency-key").unwrap();
        assert!(
            key.len() == 24 && key.bytes().all(|c| c.is_ascii_hexdigit()),
            "{key}"
        );
        keys.insert(key.to_string());
    }
    assert_eq!(keys.len(), bodies.len(), "every file has its own key");

    let events = out.events();
    assert_eq!(events.len(), bodies.len());
    for e in &events {
        assert_eq!(e.event, EventKind::Delivered);
        assert_eq!(e.status, Some(200));
        assert_eq!(e.attempt, 1);
        assert_eq!(e.receiver.as_deref(), Some("default"));
        assert!(keys.contains(e.key.as_ref().unwrap()));
        assert!(e.latency_ms.unwrap() >= 0.0);
    }
    let big = events.iter().find(|e| e.file == "f5.json").unwrap();
    assert_eq!(big.bytes_read, 300_000);
    assert!(
        big.bytes_sent > 0 && big.bytes_sent < 300_000,
        "gzip shrank it: {}",
        big.bytes_sent
    );
}

#[test]
fn routes_by_name_and_rejects_4xx_3xx_and_unrouted_files_with_reasons() {
    let rx = Receiver::start();
    rx.answer_path("/bad", Reply::status(422).body("field x is missing"));
    rx.answer_path("/moved", Reply::status(301));
    let spool = TestSpool::new();
    let token_file = spool.side("etc").join("token");
    std::fs::write(&token_file, "Bearer s3cret-token\n").unwrap();
    let cfg = config(
        &spool,
        &format!(
            r#"
[receivers.good]
url = "{good}/{{tenant}}/events"
headers = {{ Authorization = {{ file = "{token}" }}, X-Static = "yes" }}
content_type = "application/json"
[receivers.bad]
url = "{bad}?api_key=hidden"
[receivers.moved]
url = "{moved}"

[[routes]]
regex = '^(?:dots-)?(?<tenant>[a-z.]+)-ok-'
receiver = "good"
[[routes]]
glob = "bad-*"
receiver = "bad"
[[routes]]
glob = "moved-*"
receiver = "moved"
"#,
            good = rx.url("/good"),
            bad = rx.url("/bad"),
            moved = rx.url("/moved"),
            token = path_str(&token_file),
        ),
    );
    spool.put("acme-ok-1.json", b"{}");
    spool.put("bad-1.json", b"{\"x\":null}");
    spool.put("moved-1.json", b"{}");
    spool.put("nobody-wants-me.txt", b"?");
    // Its tenant makes the path /good/../events, which is /events.
    spool.put("dots-..-ok-2.json", b"{}");

    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();

    let good = rx
        .received()
        .into_iter()
        .find(|r| r.path == "/good/acme/events")
        .unwrap();
    assert_eq!(good.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(good.header("x-static"), Some("yes"));
    assert_eq!(good.header("content-type"), Some("application/json"));
    spool.find(State::Done, "acme-ok-1.json");

    let bad = reason_of(&spool.find(State::Error, "bad-1.json"));
    assert_eq!(bad.class, ErrorClass::Rejected);
    assert_eq!(bad.status, Some(422));
    assert_eq!(bad.receiver.as_deref(), Some("bad"));
    assert_eq!(bad.body.as_deref(), Some("field x is missing"));
    assert_eq!(bad.attempts, 1);
    assert_eq!(bad.file, "bad-1.json");
    assert_eq!(
        bad.url.as_deref(),
        Some(rx.url("/bad").as_str()),
        "query string with its key is dropped"
    );

    let moved = reason_of(&spool.find(State::Error, "moved-1.json"));
    assert_eq!(moved.status, Some(301));
    assert!(
        moved.message.contains("redirects are not followed"),
        "{}",
        moved.message
    );

    let unrouted = reason_of(&spool.find(State::Error, "nobody-wants-me.txt"));
    assert_eq!(unrouted.class, ErrorClass::NoRoute);
    assert!(unrouted.message.contains("no route"));
    let dots = reason_of(&spool.find(State::Error, "dots-..-ok-2.json"));
    assert_eq!(dots.class, ErrorClass::Unsendable);
    assert_eq!(dots.receiver.as_deref(), Some("good"));
    assert!(dots.message.contains("resolve away"), "{}", dots.message);
    assert_eq!(
        rx.count(),
        3,
        "neither the unrouted file nor the one with no valid URL is sent"
    );

    for entry in std::fs::read_dir(spool.dir(State::Error)).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("hidden"),
            "no secrets in error/: {text}"
        );
    }
    assert!(!out.stderr.contains("s3cret"));
    let kinds: Vec<EventKind> = out.events().iter().map(|e| e.event).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::Rejected).count(),
        4
    );
}

fn retry_config(spool: &TestSpool, url: &str, extra: &str) -> std::path::PathBuf {
    let backoff_max = if extra.contains("backoff_max") {
        ""
    } else {
        "backoff_max = \"400ms\""
    };
    config(
        spool,
        &format!(
            r#"
[sender]
backoff_initial = "200ms"
{backoff_max}
{extra}
[receivers.r]
url = "{url}"
timeout = "500ms"
[[routes]]
glob = "*"
receiver = "r"
"#
        ),
    )
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

#[test]
fn symlinks_and_special_files_are_not_sent() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let secret = spool.side("outside").join("secret");
    std::fs::write(&secret, "do not send").unwrap();
    std::os::unix::fs::symlink(&secret, spool.dir(State::Incoming).join("link.json")).unwrap();
    nix::unistd::mkfifo(
        &spool.dir(State::Incoming).join("fifo.json"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    std::fs::create_dir(spool.dir(State::Incoming).join("subdir")).unwrap();
    spool.put(".hidden", b"in progress");
    spool.put("ok.json", b"fine");

    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.received()[0].body, b"fine");
    let link = reason_of(&spool.find(State::Error, "link.json"));
    assert_eq!(link.class, ErrorClass::Unsendable);
    assert!(link.message.contains("symlink"), "{}", link.message);
    let fifo = reason_of(&spool.find(State::Error, "fifo.json"));
    assert!(
        fifo.message.contains("not a regular file"),
        "{}",
        fifo.message
    );
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        b"do not send",
        "the link target is untouched"
    );
    assert!(spool.dir(State::Incoming).join(".hidden").exists());
    assert!(spool.dir(State::Incoming).join("subdir").is_dir());
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
}

#[test]
fn an_unreachable_receiver_at_start_is_not_fatal() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spool = TestSpool::new();
    spool.put("a.json", b"x");
    let out = run(
        sender(&spool).args(["--once", "--url", &format!("http://{closed}/")]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(spool.count(State::Incoming), 1, "kept to retry");
}

#[test]
fn delete_delivered_leaves_nothing_in_done() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    for i in 0..5 {
        spool.put(format!("{i}"), b"x");
    }
    run(
        sender(&spool).args(["--once", "--delete-delivered", "--url", &rx.url("/")]),
        MINUTE,
    )
    .assert_success();
    assert_eq!(rx.count(), 5);
    assert_eq!(spool.census().values().sum::<usize>(), 0);
}

#[test]
fn a_failing_receiver_does_not_slow_the_others_and_its_circuit_opens() {
    let rx = Receiver::start();
    rx.answer_path("/down", Reply::status(503));
    let spool = TestSpool::new();
    let cfg = config(
        &spool,
        &format!(
            r#"
[sender]
breaker_failures = 3
breaker_open_initial = "1s"
breaker_open_max = "1s"
[receivers.down]
url = "{down}"
concurrency = 2
[receivers.up]
url = "{up}"
[[routes]]
glob = "down-*"
receiver = "down"
[[routes]]
glob = "*"
receiver = "up"
"#,
            down = rx.url("/down"),
            up = rx.url("/up")
        ),
    );
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
fn a_long_running_sender_picks_up_new_files_and_stops_cleanly() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = config(
        &spool,
        &format!(
            "[sender]\nrescan_interval = \"1h\"\n[receivers.r]\nurl = \"{}\"\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
            rx.url("/in")
        ),
    );
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        spool.put(format!("late-{i}"), b"x");
    }
    // With an hour between rescans, only inotify can have found them.
    assert!(
        eventually(Duration::from_secs(10), || rx.count() >= 20),
        "got {}",
        rx.count()
    );
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert_eq!(out.events().len(), 20);
    assert_eq!(spool.count(State::Done), 20);
    assert_eq!(spool.claim_folders(), 0);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_within_the_grace_period() {
    let rx = Receiver::start();
    rx.answer(Reply::stall(Duration::from_millis(1500)));
    let spool = TestSpool::new();
    for i in 0..3 {
        spool.put(format!("{i}"), b"x");
    }
    let daemon = spawn(sender(&spool).args(["--grace", "10s", "--url", &rx.url("/")]));
    assert!(eventually(MINUTE, || spool.count(State::Sending) == 3));
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
    assert_eq!(spool.count(State::Done), 3, "{:?}", spool.census());

    // A grace period too short: the requests are cut and the files return
    // to incoming/ as they were, without an attempt counted.
    rx.answer(Reply::stall(Duration::from_secs(30)));
    for i in 0..3 {
        spool.put(format!("cut-{i}"), b"x");
    }
    let daemon = spawn(sender(&spool).args(["--grace", "200ms", "--url", &rx.url("/")]));
    assert!(eventually(MINUTE, || spool.count(State::Sending) == 3));
    daemon.signal(Signal::SIGTERM);
    daemon.wait(Duration::from_secs(10)).assert_success();
    let back = spool.names(State::Incoming);
    assert_eq!(back.len(), 3, "{:?}", spool.census());
    assert!(
        back.iter()
            .all(|n| SpoolName::parse(OsStr::from_bytes(n)).attempts == 0)
    );
    assert_eq!(spool.claim_folders(), 0);
}

#[test]
fn a_killed_sender_s_files_are_delivered_by_the_next_one() {
    let rx = Receiver::start();
    rx.answer(Reply::stall(Duration::from_millis(20)));
    let spool = TestSpool::new();
    let total = 2000;
    for i in 0..total {
        spool.put(format!("f{i:05}"), format!("{i}").as_bytes());
    }
    let victim = spawn(sender(&spool).args(["--concurrency", "64", "--url", &rx.url("/")]));
    assert!(eventually(MINUTE, || rx.count() >= 300));
    victim.signal(Signal::SIGKILL);
    let killed = victim.wait(MINUTE);
    assert_eq!(killed.status.code(), None, "killed by a signal");
    assert!(
        spool.count(State::Sending) > 0,
        "the kill left claims behind"
    );

    rx.answer(Reply::ok());
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/")]),
        MINUTE,
    )
    .assert_success();
    // Each file is in done/ once. With the link + unlink fallback forced
    // (CI's portable run), a kill between the link and the unlink leaves a
    // file in two places, as docs/spool.md says: then both copies end in
    // done/, but under one key, so the receiver can drop the second.
    let mut keys: HashMap<Vec<u8>, BTreeSet<String>> = HashMap::new();
    for name in spool.names(State::Done) {
        let parsed = SpoolName::parse(OsStr::from_bytes(&name));
        let key = parsed.key.expect("a delivered file has a key").to_string();
        keys.entry(parsed.original.as_bytes().to_vec())
            .or_default()
            .insert(key);
    }
    assert_eq!(keys.len(), total, "{:?}", spool.census());
    assert!(keys.values().all(|k| k.len() == 1), "one key per file");
    let link_fallback = std::env::var_os("SPOOLPOST_RENAME").is_some_and(|v| v == "link");
    if !link_fallback {
        assert_eq!(spool.count(State::Done), total, "{:?}", spool.census());
    }
    assert_eq!(
        spool.count(State::Sending) + spool.count(State::Incoming),
        0
    );
    assert_eq!(spool.claim_folders(), 0);
    let names: BTreeSet<_> = rx
        .received()
        .iter()
        .map(|r| r.header("x-filename").unwrap().to_string())
        .collect();
    assert_eq!(
        names.len(),
        total,
        "every file reached the receiver at least once"
    );
}

#[test]
fn four_senders_on_one_spool_deliver_each_file_exactly_once() {
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), false, 2).unwrap();
    let spool = TestSpool::new();
    let total = 10_000;
    for i in 0..total {
        spool.put(format!("f{i:05}.json"), format!("{{\"n\":{i}}}").as_bytes());
    }
    let senders: Vec<_> = (0..4)
        .map(|_| {
            spawn(sender(&spool).args(["--once", "--concurrency", "32", "--url", &rx.url("/")]))
        })
        .collect();
    let outs: Vec<_> = senders
        .into_iter()
        .map(|s| s.wait(Duration::from_secs(300)))
        .collect();
    let mut events = 0;
    for out in &outs {
        out.assert_success();
        events += out.events().len();
    }
    assert_eq!(spool.count(State::Done), total, "{:?}", spool.census());
    assert_eq!(rx.count(), total as u64, "no file sent twice");
    assert_eq!(events, total, "one event per delivery, over all senders");
    let names: BTreeSet<_> = rx
        .received()
        .iter()
        .map(|r| r.header("x-filename").unwrap().to_string())
        .collect();
    assert_eq!(names.len(), total);
    assert!(
        outs.iter().filter(|o| !o.events().is_empty()).count() >= 2,
        "the work was shared"
    );
    // Senders that read incoming/ in the same order and all chase the same
    // name lose about three claims per file between them; leaping ahead
    // after a lost race spreads them over the folder.
    let lost: u64 = outs.iter().map(|o| lost_races(&o.stderr)).sum();
    assert!(
        lost < total as u64 / 4,
        "{lost} claims lost to other senders for {total} files"
    );
}

/// The `lost_races` a sender's last log line reports.
fn lost_races(stderr: &str) -> u64 {
    stopped_field(stderr, "lost_races")
}

/// A number the sender's last log line ("sender stopped") reports.
fn stopped_field(stderr: &str, field: &str) -> u64 {
    let line = stderr
        .lines()
        .rfind(|l| l.contains("sender stopped"))
        .unwrap_or_else(|| panic!("no 'sender stopped' line in {stderr}"));
    let (_, rest) = line
        .split_once(&format!(" {field}="))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} is not a number in {line}"))
}

/// Issue 29.6: the log said `files=412` where the summary said 408 files:
/// it counted claims, one per attempt and none for an unrouted file. The
/// last log line now names them `attempts` (as many as the events' attempts)
/// and `no_route`.
#[test]
fn issue_29_6_the_last_log_line_counts_attempts_and_unrouted_files_by_name() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    receiver.script("/in", [Reply::status(503)]);
    let cfg = config(
        &spool,
        &format!(
            "[sender]\nbackoff_initial = \"100ms\"\nbackoff_max = \"100ms\"\n\
             [receivers.r]\nurl = {:?}\n[[routes]]\nglob = \"*.log\"\nreceiver = \"r\"\n",
            receiver.url("/in")
        ),
    );
    for i in 0..4 {
        spool.put(format!("f{i}.log"), b"x\n");
    }
    spool.put("stray.txt", b"x\n");
    let mut attempts = 0;
    let mut no_route = 0;
    let mut events = 0;
    let mut unrouted_events = 0;
    let done = eventually(MINUTE, || {
        let out = run(
            sender(&spool).arg("--config").arg(&cfg).arg("--once"),
            MINUTE,
        );
        out.assert_success();
        attempts += stopped_field(&out.stderr, "attempts");
        no_route += stopped_field(&out.stderr, "no_route");
        // Each attempt ends in one event that numbers it; the unrouted
        // file's event says attempt 0, as its name and `reporter list` do:
        // no request went out.
        for event in out.events() {
            if event.receiver.is_some() {
                assert!(event.attempt > 0, "{event:?}");
                events += 1;
            } else {
                assert_eq!(event.attempt, 0, "{event:?}");
                unrouted_events += 1;
            }
        }
        spool.count(State::Done) == 4
    });
    assert!(done, "{:?}", spool.census());
    // Four files, one of them tried twice; the stray one never tried.
    assert_eq!((attempts, no_route), (5, 1));
    assert_eq!(attempts, events);
    assert_eq!(unrouted_events, 1);
    assert_eq!(
        reason_of(&spool.find(State::Error, "stray.txt")).attempts,
        0
    );
}

#[test]
fn a_file_over_1_gib_is_streamed_with_bounded_memory() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let size: u64 = (1 << 30) + 12345;
    let staging = spool.root.join("tmp").join("big");
    let file = std::fs::File::create(&staging).unwrap();
    file.set_len(size).unwrap(); // sparse: reads as zeros
    // A little real data at both ends, so truncation would show.
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"head", 0).unwrap();
    file.write_all_at(b"tail", size - 4).unwrap();
    drop(file);
    std::fs::rename(&staging, spool.dir(State::Incoming).join("big.bin")).unwrap();

    let out = run(
        sender(&spool).args(["--once", "--gzip-level", "1", "--url", &rx.url("/")]),
        Duration::from_secs(600),
    );
    out.assert_success();
    let r = &rx.received()[0];
    assert_eq!(r.body_len, size);
    let mut crc = flate2::Crc::new();
    crc.update(b"head");
    let zeros = vec![0u8; 1 << 20];
    let mut left = size - 8;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        crc.update(&zeros[..n]);
        left -= n as u64;
    }
    crc.update(b"tail");
    assert_eq!(r.body_crc, crc.sum(), "the body is the file, byte for byte");
    assert!(out.peak_rss_kib > 0, "RSS was sampled");
    assert!(
        out.peak_rss_kib < 64 * 1024,
        "peak RSS {} KiB for a {} MiB file",
        out.peak_rss_kib,
        size >> 20
    );
    spool.find(State::Done, "big.bin");
}

#[test]
fn tls_certificates_are_verified_by_default_and_ca_file_adds_trust() {
    let (rx, pem) = Receiver::start_tls();
    let spool = TestSpool::new();
    let ca = spool.side("etc").join("test-ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let write = |ca_line: &str| {
        config(
            &spool,
            &format!(
                "[receivers.r]\nurl = \"{}\"\n{ca_line}\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
                rx.url("/secure")
            ),
        )
    };
    spool.put("a.json", b"over tls");

    // A self-signed certificate nobody vouched for: refused, retried later.
    let cfg = write("");
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    assert!(
        out.events()[0]
            .error
            .as_ref()
            .unwrap()
            .contains("certificate"),
        "{}",
        out.stdout
    );
    let name = SpoolName::parse(OsStr::from_bytes(&spool.names(State::Incoming)[0]));
    assert_eq!(name.last_reason.as_deref(), Some("tls"));
    assert_eq!(rx.count(), 0, "no request got through");

    // Trusted through ca_file: delivered. (The retry wait is skipped by
    // moving the file back under a fresh name.)
    let waiting = spool
        .dir(State::Incoming)
        .join(OsStr::from_bytes(&spool.names(State::Incoming)[0]));
    std::fs::rename(&waiting, spool.dir(State::Incoming).join("a.json")).unwrap();
    let cfg = write(&format!("ca_file = \"{}\"", path_str(&ca)));
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    )
    .assert_success();
    assert_eq!(rx.received()[0].body, b"over tls");
    spool.find(State::Done, "a.json");
}

#[test]
fn a_successful_probe_releases_the_waiting_files_at_once() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = config(
        &spool,
        &format!(
            r#"
[sender]
breaker_failures = 1
breaker_open_initial = "1s"
breaker_open_max = "1s"
backoff_initial = "100ms"
backoff_max = "100ms"
rescan_interval = "1h"
[receivers.r]
url = "{}"
concurrency = 1
[[routes]]
glob = "*"
receiver = "r"
"#,
            rx.url("/in")
        ),
    );
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

/// A port on loopback that nothing listens on: connections are refused.
fn refusing_url(path: &str) -> (std::net::SocketAddr, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    (addr, format!("http://{addr}{path}"))
}

/// The circuits the live senders publish, merged as the reporter reads them.
fn circuits_of(spool: &TestSpool) -> spoolpost_protocol::circuits::Circuits {
    let s = spoolpost_protocol::spool::Spool::open(&spool.root).unwrap();
    spoolpost_protocol::circuits::read_all(&s)
}

/// A backoff of 60 s (and open periods as given): a file that waited for either would
/// show as seconds of delay, far above the bounds the tests assert.
fn endpoints_config(
    spool: &TestSpool,
    urls: &[&str],
    open: &str,
    extra: &str,
) -> std::path::PathBuf {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    config(
        spool,
        &format!(
            r#"
[sender]
backoff_initial = "60s"
backoff_max = "60s"
breaker_failures = 2
breaker_open_initial = "{open}"
breaker_open_max = "{open}"
[receivers.r]
urls = [{urls}]
{extra}
[[routes]]
glob = "*"
receiver = "r"
"#,
            urls = urls.join(", "),
        ),
    )
}

#[test]
fn two_endpoints_with_one_refusing_deliver_everything_at_once_and_its_circuit_opens() {
    let rx = Receiver::start();
    let (_, down) = refusing_url("/in");
    let up = rx.url("/in");
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&down, &up], "60s", "");
    for i in 0..60 {
        spool.put(format!("f{i}"), format!("body {i}").as_bytes());
    }
    let started = std::time::Instant::now();
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(
        eventually(MINUTE, || spool.count(State::Done) == 60),
        "{:?}",
        spool.census()
    );
    let took = started.elapsed();
    // The down endpoint's circuit is open, the receiver's closed: the
    // sender publishes both while it runs, and the reporter shows them.
    let circuits = circuits_of(&spool);
    let r = &circuits["r"];
    let label = |u: &str| u.to_string();
    assert_eq!(r.state, spoolpost_protocol::circuits::CircuitState::Closed);
    assert_eq!(
        r.endpoints[&label(&down)].state,
        spoolpost_protocol::circuits::CircuitState::Open,
        "{circuits:?}"
    );
    assert_eq!(
        r.endpoints[&label(&up)].state,
        spoolpost_protocol::circuits::CircuitState::Closed
    );
    let prom = run(reporter(&spool).args(["--format", "prometheus"]), MINUTE);
    prom.assert_success();
    let line = format!(
        "spoolpost_endpoint_circuit_state{{receiver=\"r\",endpoint=\"{down}\",state=\"open\"}} 1"
    );
    assert!(prom.stdout.contains(&line), "{}", prom.stdout);
    let table = run(&mut reporter(&spool), MINUTE);
    assert!(
        table
            .stdout
            .contains(&format!("endpoint {down} of r: open")),
        "{}",
        table.stdout
    );
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    // Nothing waited for a backoff or the open period (60 s each): every
    // file went on its first attempt, those that met the refusing endpoint
    // straight on to the other.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let events = out.events();
    let delivered: Vec<_> = events
        .iter()
        .filter(|e| e.event == EventKind::Delivered)
        .collect();
    assert_eq!(delivered.len(), 60);
    assert!(delivered.iter().all(|e| e.attempt == 1));
    assert!(
        delivered
            .iter()
            .all(|e| e.endpoint.as_deref() == Some(up.as_str()))
    );
    let failed_over: Vec<_> = delivered
        .iter()
        .filter(|e| !e.failed_over.is_empty())
        .collect();
    // Two refusals open its circuit; at most the requests granted before
    // that met it too.
    assert!(!failed_over.is_empty());
    for e in &failed_over {
        assert_eq!(e.failed_over.len(), 1, "{e:?}");
        assert!(
            e.failed_over[0].starts_with(&format!("{down}: ")),
            "{:?}",
            e.failed_over
        );
    }
    // The same key went to both endpoints: one key per file.
    assert_eq!(rx.count(), 60);
    assert_eq!(spool.claim_folders(), 0);
}

#[test]
fn an_endpoint_answering_503_is_failed_over_and_used_again_once_it_recovers() {
    let rx = Receiver::start();
    rx.answer_path("/a", Reply::status(503));
    let (a, b) = (rx.url("/a"), rx.url("/b"));
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&a, &b], "1s", "");
    for i in 0..20 {
        spool.put(format!("first-{i}"), b"x");
    }
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(
        eventually(MINUTE, || spool.count(State::Done) == 20),
        "{:?}",
        spool.census()
    );
    // Each 503 went on to b at once, with the same key.
    let received = rx.received();
    let key_of = |p: &str| -> BTreeSet<String> {
        received
            .iter()
            .filter(|r| r.path == p)
            .map(|r| r.header("idempotency-key").unwrap().to_string())
            .collect()
    };
    let (keys_a, keys_b) = (key_of("/a"), key_of("/b"));
    assert!(!keys_a.is_empty());
    assert!(
        keys_a.is_subset(&keys_b),
        "{keys_a:?} not all in {keys_b:?}"
    );
    assert_eq!(spool.count(State::Incoming), 0, "{:?}", spool.census());
    assert!(eventually(
        Duration::from_secs(5),
        || circuits_of(&spool)["r"].endpoints[&a].state
            == spoolpost_protocol::circuits::CircuitState::Open
    ));
    // a recovers: its probe (after the 1 s open period) closes its circuit
    // and files go to it again.
    rx.answer_path("/a", Reply::ok());
    let answered_by_a = rx.count_path("/a");
    let mut i = 0;
    assert!(
        eventually(Duration::from_secs(20), || {
            spool.put(format!("later-{i}"), b"y");
            i += 1;
            std::thread::sleep(Duration::from_millis(20));
            rx.received()
                .iter()
                .filter(|r| r.path == "/a" && r.answered == 200)
                .count()
                >= 3
        }),
        "a was not used again: {} requests after {answered_by_a}",
        rx.count_path("/a")
    );
    assert!(eventually(
        Duration::from_secs(5),
        || circuits_of(&spool)["r"].endpoints[&a].state
            == spoolpost_protocol::circuits::CircuitState::Closed
    ));
    assert!(eventually(MINUTE, || spool.count(State::Done) == 20 + i));
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
}

#[test]
fn when_every_endpoint_fails_the_receiver_waits_as_one_open_circuit() {
    let rx = Receiver::start();
    rx.answer(Reply::status(503));
    let (a, b) = (rx.url("/a"), rx.url("/b"));
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&a, &b], "60s", "concurrency = 1");
    for i in 0..30 {
        spool.put(format!("f{i}"), b"x");
    }
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    // Two failures open each endpoint's circuit; then the files wait,
    // with their attempts untouched, instead of being tried 30 times.
    let requests = rx.count();
    assert!((4..=6).contains(&requests), "{requests} requests");
    assert_eq!(spool.count(State::Incoming), 30, "{:?}", spool.census());
    let retries: Vec<_> = out
        .events()
        .into_iter()
        .filter(|e| e.event == EventKind::Retry)
        .collect();
    // The attempt that met both endpoints failing says so: b answered
    // last, after a (or the other way round).
    assert!(retries.iter().any(|e| e.failed_over.len() == 1
        && e.endpoint.is_some()
        && e.failed_over[0].ends_with("status 503")));
}

#[test]
fn zstd_bodies_are_decoded_by_the_receiver_and_none_sends_identity() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let cfg = |compression: &str, path: &str| {
        config(
            &spool,
            &format!(
                "[receivers.r]\nurl = \"{}\"\n{compression}\n[[routes]]\nglob = \"*\"\nreceiver = \"r\"\n",
                rx.url(path)
            ),
        )
    };
    let zstd = cfg("compression = \"zstd\"\ncompression_level = 5", "/zstd");
    spool.put("small.json", b"{\"small\": true}");
    spool.put("big.bin", &big);
    run(
        sender(&spool).arg("--once").arg("--config").arg(&zstd),
        MINUTE,
    )
    .assert_success();
    let none = cfg("compression = \"none\"", "/none");
    spool.put("plain.json", b"plain body");
    run(
        sender(&spool).arg("--once").arg("--config").arg(&none),
        MINUTE,
    )
    .assert_success();
    assert_eq!(spool.count(State::Done), 3, "{:?}", spool.census());
    let received = rx.received();
    let got = |path: &str, len: u64| {
        received
            .iter()
            .find(|r| r.path == path && r.body_len == len)
            .unwrap_or_else(|| panic!("nothing of {len} bytes at {path}"))
            .clone()
    };
    let small = got("/zstd", 15);
    assert_eq!(small.header("content-encoding"), Some("zstd"));
    assert_eq!(small.body, b"{\"small\": true}");
    let big_rx = got("/zstd", big.len() as u64);
    assert_eq!(big_rx.header("content-encoding"), Some("zstd"));
    assert_eq!(big_rx.body_crc, {
        let mut crc = flate2::Crc::new();
        crc.update(&big);
        crc.sum()
    });
    assert!(
        big_rx.wire_len < big.len() as u64 / 4,
        "{}",
        big_rx.wire_len
    );
    let plain = got("/none", 10);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, b"plain body");
    assert_eq!(plain.wire_len, 10);
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
