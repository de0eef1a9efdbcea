//! Delivery: every file reaches its receiver once, gzipped, with its name
//! and key, or goes to `error/` with a reason (4xx, 3xx, no route); files
//! are found by inotify and rescans, streamed however large, and left by a
//! killed sender for the next one; several senders on one spool share the
//! work without sending a file twice.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

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
fn a_long_running_sender_picks_up_new_files_and_stops_cleanly() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("r", &rx.url("/in"))
        .sender("rescan_interval = \"1h\"")
        .write(&spool);
    // One file there at start: once it is delivered, the first pass has
    // read incoming/ and the watch is set, whatever the machine's speed.
    spool.put("first", b"x");
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(MINUTE, || rx.count() == 1), "the first file");
    for i in 0..20 {
        spool.put(format!("late-{i}"), b"x");
    }
    // With an hour between rescans, only inotify can have found them.
    assert!(
        eventually(Duration::from_secs(10), || rx.count() >= 21),
        "got {}",
        rx.count()
    );
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert_eq!(out.events().len(), 21);
    assert_eq!(spool.count(State::Done), 21);
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

/// `threads = 1` runs the whole sender on its main thread (a current-thread
/// runtime), so no answer wakes another thread to be handled; `threads = N`
/// adds N worker threads beside it. Counted as threads of the running
/// process, between two senders that differ only in `--threads`.
#[test]
fn one_thread_is_the_main_thread_and_more_are_workers_beside_it() {
    let rx = Receiver::start();
    let mut counts = Vec::new();
    for threads in ["1", "2"] {
        let spool = TestSpool::new();
        spool.put("a.json", b"x");
        let daemon = spawn(sender(&spool).args(["--threads", threads, "--url", &rx.url("/")]));
        assert!(eventually(MINUTE, || spool.count(State::Done) == 1));
        let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
            .unwrap()
            .count();
        counts.push(tasks);
        daemon.signal(Signal::SIGTERM);
        daemon.wait(MINUTE).assert_success();
    }
    assert_eq!(
        counts[1],
        counts[0] + 2,
        "threads of --threads 1 and 2: {counts:?}"
    );
}

/// With `--fsync`, answered files are moved on the blocking pool (a
/// folder's fsync must not hold the runtime's thread). Every fate still
/// ends in its one place, on one thread and on two: delivered to done/,
/// rejected to error/ beside its reason, turned away back to incoming/.
#[test]
fn with_fsync_every_fate_is_moved_to_its_one_place() {
    let rx = Receiver::start();
    rx.answer_path("/bad", Reply::status(422).body("no"));
    rx.answer_path("/busy", Reply::status(503));
    let mut busy_before = 0;
    for threads in ["1", "2"] {
        let spool = TestSpool::new();
        let cfg = ConfigFile::new()
            .receiver("good", &rx.url("/good"), "")
            .receiver("bad", &rx.url("/bad"), "")
            .receiver("busy", &rx.url("/busy"), "")
            .route(r#"glob = "good-*""#, "good")
            .route(r#"glob = "bad-*""#, "bad")
            .route(r#"glob = "busy-*""#, "busy")
            .write(&spool);
        for i in 0..200 {
            spool.put(format!("good-{i}.json"), b"{}");
        }
        for i in 0..20 {
            spool.put(format!("bad-{i}.json"), b"{}");
            spool.put(format!("busy-{i}.json"), b"{}");
        }
        let out = run(
            sender(&spool)
                .args(["--once", "--fsync", "--threads", threads, "--config"])
                .arg(&cfg),
            MINUTE,
        );
        out.assert_success();
        let census = spool.census();
        assert_eq!(census["done"], 200, "--threads {threads}: {census:?}");
        assert_eq!(census["error"], 20, "--threads {threads}: {census:?}");
        // Each rejected file has its reason record beside it.
        let reason = reason_of(&spool.find(State::Error, "bad-7.json"));
        assert_eq!(reason.status, Some(422));
        assert_eq!(
            std::fs::read_dir(spool.dir(State::Error)).unwrap().count(),
            40
        );
        assert_eq!(census["incoming"], 20, "--threads {threads}: {census:?}");
        assert_eq!(census["sending"], 0, "--threads {threads}: {census:?}");
        assert_eq!(spool.claim_folders(), 0);
        let events = out.events();
        let count = |kind| events.iter().filter(|e| e.event == kind).count();
        assert_eq!(count(EventKind::Delivered), 200);
        assert_eq!(count(EventKind::Rejected), 20);
        // Its circuit opens after a few 503s; the rest wait unsent.
        let busy = rx.received().iter().filter(|r| r.path == "/busy").count();
        assert!(count(EventKind::Retry) >= 1);
        assert_eq!(count(EventKind::Retry), busy - busy_before);
        busy_before = busy;
    }
}

/// Moves made on the blocking pool (with `--fsync`) are waited for when
/// the grace period cuts the requests short: a job cut while its move was
/// queued or running must not leave the move racing the return of unsent
/// claims to incoming/, nor the sender's end.
#[test]
fn with_fsync_a_cut_short_stop_waits_for_the_moves_under_way() {
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), true, 2).unwrap();
    for round in 0..3 {
        let spool = TestSpool::new();
        let files = 3000;
        for i in 0..files {
            spool.put(format!("f{i:05}.json"), b"{}");
        }
        let cfg = ConfigFile::to("r", &rx.url("/in"))
            .sender("grace = \"0s\"\nfsync = true")
            .write(&spool);
        let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
        assert!(eventually(MINUTE, || spool.count(State::Done) >= 300));
        daemon.signal(Signal::SIGTERM);
        let out = daemon.wait(MINUTE);
        out.assert_success();
        let census = spool.census();
        assert_eq!(
            census["done"] + census["incoming"],
            files,
            "round {round}: {census:?}\n{}",
            out.stderr
        );
        assert_eq!(census["sending"], 0, "round {round}");
    }
}
