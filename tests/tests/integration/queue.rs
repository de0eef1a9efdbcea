//! The queue tools: `reporter list`, `flush`, `requeue`, `hold`/`release`
//! and `reporter --check`, run as real binaries over real spools, with real
//! senders and the test receiver where files must move.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

use crate::reporting::{json, routes};
use nix::sys::signal::Signal;
use serde_json::Value;
use spoolpost_protocol::name::SpoolName;
const MINUTE: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(20);

fn code(cmd: &mut Command) -> (i32, String, String) {
    let out = run(cmd, LIMIT);
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// A config routing everything to `main` at `url`, with `sender` settings.
fn one_receiver(spool: &TestSpool, url: &str, sender: &str) -> std::path::PathBuf {
    ConfigFile::to("main", url)
        .spool(&spool.root)
        .sender(sender)
        .write(spool)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn flush_wakes_a_sender_waiting_an_hour_and_the_retries_go_at_once_under_their_keys() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    receiver.script("/in", [Reply::status(503), Reply::status(503)]);
    // An hour's backoff, and no rescan that could find the files anyway:
    // only the flush can make them go within the test's few seconds.
    let cfg = one_receiver(
        &spool,
        &receiver.url("/in"),
        "backoff_initial = \"1h\"\nbackoff_max = \"2h\"\nrescan_interval = \"1h\"",
    );
    let running = spawn(sender(&spool).arg("--config").arg(&cfg));
    spool.put("a.json", b"a");
    spool.put("b.json", b"b");
    assert!(
        eventually(LIMIT, || {
            let names = spool.names(State::Incoming);
            names.len() == 2 && names.iter().all(|n| n.ends_with(b".a1.rhttp-503"))
        }),
        "both files wait after a 503: {:?}",
        spool.census()
    );
    let out = run(
        reporter(&spool).arg("--config").arg(&cfg).arg("flush"),
        LIMIT,
    );
    out.assert_success();
    assert!(out.stderr.contains("flushed 2"), "{}", out.stderr);
    assert!(
        eventually(Duration::from_secs(5), || spool.count(State::Done) == 2),
        "delivered within seconds of the flush: {:?}",
        spool.census()
    );
    let got = receiver.received();
    assert_eq!(got.len(), 4, "one 503 and one 200 each");
    for file in ["a.json", "b.json"] {
        let keys: Vec<_> = got
            .iter()
            .filter(|r| r.header("x-filename") == Some(file))
            .map(|r| r.header("idempotency-key").unwrap().to_string())
            .collect();
        assert_eq!(keys.len(), 2, "{file}");
        assert_eq!(keys[0], keys[1], "{file}: a flush keeps the key");
    }
    running.signal(nix::sys::signal::Signal::SIGTERM);
    running.wait(LIMIT).assert_success();
}

#[test]
fn flush_leaves_other_receivers_and_files_not_yet_tried_alone() {
    let spool = TestSpool::new();
    let cfg = ConfigFile::new()
        .spool(&spool.root)
        .receiver("a", "http://127.0.0.1:9/", "")
        .receiver("b", "http://127.0.0.1:9/", "")
        .route(r#"glob = "a*""#, "a")
        .route_all("b")
        .write(&spool);
    let later = SystemTime::now() + Duration::from_secs(3600);
    let retry = |name: &str| {
        spool.put(name, b"x");
        let f = std::fs::File::open(spool.dir(State::Incoming).join(name)).unwrap();
        f.set_modified(later).unwrap();
    };
    retry("a1~sp.k000000000000000000000001.t1700000000.a1.rconnect");
    retry("b1~sp.k000000000000000000000002.t1700000000.a3.rhttp-503");
    spool.put("a2", b"fresh");
    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["flush", "--receiver", "a"]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(out.stdout, "a1\n");
    let mut names: Vec<String> = spool
        .names(State::Incoming)
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names[0].starts_with("a1~sp.k000000000000000000000001.u")
            && names[0].ends_with(".t1700000000.a1.rconnect"),
        "{names:?}"
    );
    assert_eq!(names[1], "a2", "a file never tried is left as it is");
    assert_eq!(
        names[2], "b1~sp.k000000000000000000000002.t1700000000.a3.rhttp-503",
        "another receiver's retry keeps waiting"
    );
    let (c, _, err) = code(reporter(&spool).args(["flush", "--receiver", "a"]));
    assert_eq!(c, 2, "--receiver without routes would match nothing: {err}");
}

#[test]
fn list_shows_each_state_with_whole_names_escaped_and_as_json_lines() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    receiver.answer(Reply::status(422));
    let long = format!("{}.json", "l".repeat(200));
    let hostile: &[u8] = b"evil\x1b[2J\nname\xff.json";
    spool.put(&long, b"1");
    spool.put(OsStr::from_bytes(hostile), b"2");
    run(
        sender(&spool).args(["--once", "--url", &receiver.url("/in")]),
        LIMIT,
    )
    .assert_success();
    assert_eq!(spool.count(State::Error), 2);
    spool.put("fresh.json", b"3");
    let name = "later.json~sp.k3f9c0a1e55d2b7c4e8a09f1d.t1700000000.a2.rhttp-503";
    spool.put(name, b"4");
    // Within backoff_max (5 min by default), which caps any wait.
    let next = SystemTime::now() + Duration::from_secs(120);
    std::fs::File::open(spool.dir(State::Incoming).join(name))
        .unwrap()
        .set_modified(next)
        .unwrap();

    let out = run(reporter(&spool).args(["list", "--format", "json"]), LIMIT);
    out.assert_success();
    let mut rows = json_lines(&out.stdout);
    rows.sort_by_key(|r| r["name"].as_str().unwrap().to_string());
    assert_eq!(rows.len(), 4, "{}", out.stdout);
    let by = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(by("fresh.json")["state"], "waiting");
    assert_eq!(by("fresh.json")["attempts"], 0);
    let later = by("later.json");
    assert_eq!(
        (&later["state"], &later["attempts"], &later["reason"]),
        (&"retry".into(), &2.into(), &"http-503".into())
    );
    assert_eq!(later["key"], "3f9c0a1e55d2b7c4e8a09f1d");
    assert_eq!(later["first_seen"], "2023-11-14T22:13:20.000Z");
    let due = later["next_attempt"].as_str().unwrap();
    assert!(
        due > spoolpost_protocol::event::rfc3339(next - Duration::from_secs(2)).as_str(),
        "the next attempt is the file's mtime: {due}"
    );
    let whole = by(&long);
    assert_eq!(
        whole["state"], "error",
        "the whole long name, not the cut one"
    );
    assert!(whole["reason"].as_str().unwrap().contains("422"), "{whole}");
    let evil = rows.iter().find(|r| r.get("name_hex").is_some()).unwrap();
    assert_eq!(
        evil["name_hex"],
        hostile
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );

    let table = run(reporter(&spool).arg("list"), LIMIT);
    table.assert_success();
    assert_eq!(
        table.stdout.lines().count(),
        5,
        "a header and one line each"
    );
    assert!(!table.stdout.contains('\x1b'), "no raw control bytes");
    assert!(
        table.stdout.contains("evil\\u{1b}[2J\\nname\\xff.json"),
        "{}",
        table.stdout
    );
    let retries = run(reporter(&spool).args(["list", "--state", "retry"]), LIMIT);
    assert_eq!(retries.stdout.lines().count(), 2, "{}", retries.stdout);
    assert!(
        retries
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(" later.json")
    );
}

/// Peak resident memory of `pid` so far, from the kernel's high-water mark.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line[6..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Lists `spool` through a pipe the test reads slowly, so the reporter is
/// alive (blocked on a full pipe) while its peak memory is read. Returns
/// (lines, peak KiB).
fn list_through_pipe(spool: &TestSpool) -> (usize, u64) {
    let mut child = reporter(spool)
        .args(["list", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let mut lines = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        line.unwrap();
        lines += 1;
        if lines % 100 == 1 {
            peak = peak.max(peak_kib(pid).unwrap_or(0));
        }
    }
    assert!(child.wait().unwrap().success());
    (lines, peak)
}

#[test]
fn list_streams_a_hundred_thousand_files_in_flat_memory() {
    let spool = TestSpool::new();
    let incoming = spool.dir(State::Incoming);
    // Enough lines to fill the pipe, so the small listing is alive to be
    // measured too.
    for i in 0..2_000 {
        std::fs::write(incoming.join(format!("orders-{i:08}.json")), "").unwrap();
    }
    let (lines, small) = list_through_pipe(&spool);
    assert_eq!(lines, 2_000);
    for i in 2_000..100_000 {
        std::fs::write(incoming.join(format!("orders-{i:08}.json")), "").unwrap();
    }
    let (lines, large) = list_through_pipe(&spool);
    assert_eq!(lines, 100_000);
    assert!(small > 0 && large > 0, "the peak was read");
    eprintln!("reporter list peak: {small} KiB for 2,000 files, {large} KiB for 100,000");
    // Holding 100,000 names and rows would take well over 10 MiB; a
    // stream needs no more for them than for 2,000.
    assert!(
        large < small + 4096,
        "peak {large} KiB for 100,000 files against {small} KiB for 2,000"
    );
}

#[test]
fn check_passes_a_readable_spool_and_names_what_is_wrong() {
    let spool = TestSpool::new();
    let (c, out, err) = code(reporter(&spool).arg("--check"));
    assert_eq!(c, 0, "{err}");
    assert!(out.starts_with("reporter: ok:"), "{out}");

    let missing = spool.side("nowhere").join("spool");
    let (c, _, err) = code(
        spoolpost_tests::harness::command("reporter")
            .arg("--spool")
            .arg(&missing)
            .arg("--check"),
    );
    assert_eq!(c, 74, "{err}");
    assert!(!missing.exists(), "--check creates nothing");

    let bad = config(&spool, "spool = 3\n");
    let (c, _, err) = code(reporter(&spool).arg("--config").arg(&bad).arg("--check"));
    assert_eq!(c, 78, "{err}");
    assert!(err.contains("spoolpost.toml:1"), "{err}");

    let (c, _, err) = code(reporter(&spool).args(["--check", "--fail-if", "errors >"]));
    assert_eq!(c, 2, "{err}");
}

#[test]
fn check_as_another_user_finds_a_spool_it_cannot_read() {
    spoolpost_tests::system::require_root("drops to nobody");
    let spool = TestSpool::new();
    spoolpost_tests::system::open_path_to_others(&spool.root);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        spool.dir(State::Error),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let mut cmd = spoolpost_tests::system::as_nobody(reporter(&spool).arg("--check"));
    let (c, _, err) = code(&mut cmd);
    assert_eq!(c, 74, "{err}");
    assert!(err.contains("error is not readable"), "{err}");
}

#[test]
fn list_does_not_hang_on_a_fifo_posing_as_a_reason_record() {
    let spool = TestSpool::new();
    let error = spool.dir(State::Error);
    std::fs::write(error.join("x.json"), "x").unwrap();
    nix::unistd::mkfifo(
        &error.join("x.json.reason.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = run(reporter(&spool).args(["list", "--format", "json"]), LIMIT);
    out.assert_success();
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["reason"].is_null());
}

/// Issue 29.6: `reporter list` counts a file's attempts as the sender's
/// events do. A file refused at its first try was `"attempt":1` in the
/// event and 0 in the list, since its name in error/ still counts only the
/// tries before its last; the reason record counts that one too.
#[test]
fn issue_29_6_list_counts_attempts_as_the_events_do() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    receiver.answer_path("/bad", Reply::status(422));
    receiver.script("/retry", [Reply::status(503), Reply::status(400)]);
    let cfg = ConfigFile::new()
        .sender("backoff_initial = \"100ms\"\nbackoff_max = \"200ms\"")
        .receiver("bad", &receiver.url("/bad"), "")
        .receiver("retry", &receiver.url("/retry"), "")
        .route(r#"glob = "a*""#, "bad")
        .route_all("retry")
        .write(&spool);
    spool.put("a.json", b"1");
    spool.put("b.json", b"2");
    let events = spool.side("log").join("events.jsonl");
    let done = eventually(LIMIT, || {
        let mut send = sender(&spool);
        send.arg("--config")
            .arg(&cfg)
            .args(["--once", "--events"])
            .arg(&events);
        run(&mut send, LIMIT).assert_success();
        spool.count(State::Error) == 2
    });
    assert!(done, "{:?}", spool.census());
    let text = std::fs::read_to_string(&events).unwrap();
    let rejected: Vec<(String, u64)> = json_lines(&text)
        .into_iter()
        .filter(|e| e["event"] == "rejected")
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_string(),
                e["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["list", "--state", "error", "--format", "json"]),
        LIMIT,
    );
    out.assert_success();
    let mut listed: Vec<(String, u64)> = json_lines(&out.stdout)
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    let mut from_events = rejected.clone();
    from_events.sort();
    assert_eq!(
        listed,
        vec![("a.json".to_string(), 1), ("b.json".to_string(), 2)],
        "{}",
        out.stdout
    );
    assert_eq!(listed, from_events, "{text}");
}

/// Issue 29 (per-file operations, as `postcat -q`): `reporter show` finds
/// one file by its name or its key wherever it is, and says why it is in
/// `error/` (the reason record) and what happened to it (its event lines).
#[test]
fn show_tells_where_one_file_is_and_why_by_name_or_key() {
    let rx = Receiver::start();
    // Every file but `good` is refused.
    rx.require_header(
        "X-Filename",
        "good",
        Reply::status(422).body("field x is missing"),
    );
    let spool = TestSpool::new();
    let cfg = one_receiver(&spool, &rx.url("/in"), "max_attempts = 1");
    spool.put("bad", b"b");
    spool.put("good", b"g");
    let sent = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    );
    sent.assert_success();
    let events = spool.side("log").join("events.jsonl");
    std::fs::write(&events, &sent.stdout).unwrap();

    let show = |which: &str| {
        code(
            reporter(&spool)
                .arg("--config")
                .arg(&cfg)
                .arg("--events")
                .arg(&events)
                .args(["show", which]),
        )
    };
    let (status, out, err) = show("bad");
    assert_eq!(status, 0, "{err}");
    for want in [
        "state          error",
        "receiver       main",
        "class          rejected",
        "status         422",
        "answer body    field x is missing",
        "history",
        " rejected  attempt 1 status 422",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }

    let good = spool.find(State::Done, "good");
    let key = spoolpost_protocol::name::SpoolName::parse(good.file_name().unwrap())
        .key
        .unwrap()
        .to_string();
    let (status, out, _) = show(&key);
    assert_eq!(status, 0);
    assert!(out.contains("state          done"), "{out}");
    assert!(out.contains("name           good"), "{out}");
    assert!(out.contains(" delivered attempt 1 status 200"), "{out}");

    let (status, _, err) = show("nosuch");
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("no file named \"nosuch\""), "{err}");
}

/// Issue 29 (as `postsuper -d`): `reporter delete` removes exactly one
/// file, with its reason record; a name two files share is refused with
/// their keys, and a file a live sender holds is refused (exit 75).
#[test]
fn delete_removes_one_file_and_refuses_what_is_ambiguous_or_being_sent() {
    use spoolpost_protocol::name::{Key, SpoolName};
    use spoolpost_protocol::spool::{ClaimFolder, Spool, reason_name};
    let spool = TestSpool::new();
    let keyed = |original: &str| {
        let mut n = SpoolName::fresh(original);
        let key = Key::random();
        n.key = Some(key);
        (n.to_os_string(), key.to_string())
    };
    let (bad, _) = keyed("bad");
    std::fs::write(spool.dir(State::Error).join(&bad), b"x").unwrap();
    std::fs::write(spool.dir(State::Error).join(reason_name(&bad)), b"{}").unwrap();
    let (dup1, key1) = keyed("daily.json");
    let (dup2, key2) = keyed("daily.json");
    spool.put(&dup1, b"1");
    spool.put(&dup2, b"2");
    let live = ClaimFolder::create(&Spool::open(&spool.root).unwrap()).unwrap();
    let (busy, busy_key) = keyed("busy");
    std::fs::write(live.path().join(&busy), b"z").unwrap();

    let (status, _, err) = code(reporter(&spool).args(["delete", "bad"]));
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("deleted bad from error/"), "{err}");
    assert_eq!(
        std::fs::read_dir(spool.dir(State::Error)).unwrap().count(),
        0,
        "the reason record went with it"
    );

    let (status, _, err) = code(reporter(&spool).args(["delete", "daily.json"]));
    assert_eq!(status, 2, "{err}");
    assert!(err.contains(&key1) && err.contains(&key2), "{err}");
    assert_eq!(spool.count(State::Incoming), 2, "nothing deleted");
    let (status, _, err) = code(reporter(&spool).args(["delete", &key2]));
    assert_eq!(status, 0, "{err}");
    let left = spool.names(State::Incoming);
    assert_eq!(
        left,
        [dup1.as_bytes().to_vec()],
        "only the other one is left"
    );

    let (status, _, err) = code(reporter(&spool).args(["delete", &busy_key]));
    assert_eq!(status, 75, "{err}");
    assert!(err.contains("being sent"), "{err}");
    assert!(live.path().join(&busy).exists());

    let (status, _, _) = code(reporter(&spool).args(["delete", "bad"]));
    assert_eq!(status, 1, "already gone");
}

/// Issue 29 (as `postsuper -h`/`-H`): `reporter hold --file` puts one
/// waiting file aside in `held/`, where senders do not look; the report
/// counts it; `release --file` gives it back and a sender delivers it.
#[test]
fn hold_file_puts_one_waiting_file_aside_until_it_is_released() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = one_receiver(&spool, &rx.url("/in"), "");
    spool.put("keep-back", b"k");
    spool.put("send-now", b"s");

    let (status, _, err) = code(reporter(&spool).args(["hold", "--file", "keep-back"]));
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("held keep-back"), "{err}");
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    )
    .assert_success();
    let sent: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.header("X-Filename").unwrap().to_string())
        .collect();
    assert_eq!(sent, ["send-now"], "the held file stays put");
    assert!(spool.root.join("held").join("keep-back").exists());

    let (status, out, _) = code(reporter(&spool).args(["--format", "json"]));
    assert_eq!(status, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["states"]["held"]["files"], 1, "{out}");
    assert_eq!(report["unexpected"]["entries"], 0, "{out}");
    let (_, out, _) = code(reporter(&spool).args(["show", "keep-back"]));
    assert!(out.contains("state          held"), "{out}");
    let (_, out, _) = code(reporter(&spool).args(["list", "--state", "held"]));
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("held ") && lines[0].ends_with(" keep-back"),
        "{out}"
    );

    let (status, _, err) = code(reporter(&spool).args(["hold", "--file", "send-now"]));
    assert_eq!(status, 1, "only a waiting file can be held: {err}");
    let (status, _, err) = code(reporter(&spool).args(["hold", "main", "--file", "keep-back"]));
    assert_eq!(status, 2, "a receiver or a file, not both: {err}");

    let (status, _, err) = code(reporter(&spool).args(["release", "--file", "keep-back"]));
    assert_eq!(status, 0, "{err}");
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    )
    .assert_success();
    assert_eq!(rx.count(), 2);
    assert_eq!(spool.count(State::Done), 2);
}

#[test]
fn requeue_moves_exactly_the_selected_files_and_the_sender_delivers_them() {
    let rx = Receiver::start();
    rx.script(
        "/orders",
        [Reply::status(503), Reply::status(503), Reply::status(422)],
    );
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("orders", &rx.url("/orders"))
        .sender("max_attempts = 1")
        .write(&spool);
    for i in 0..3 {
        spool.put(format!("orders-{i}"), format!("{i}").as_bytes());
    }
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    )
    .assert_success();
    assert_eq!(spool.count(State::Error), 3, "{:?}", spool.census());

    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["requeue", "--status", "503"]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(out.stderr.contains("requeued 2 files"));
    assert_eq!(spool.count(State::Error), 1, "the 422 stays");
    assert_eq!(spool.count(State::Incoming), 2);
    let reasons = std::fs::read_dir(spool.dir(State::Error)).unwrap().count();
    assert_eq!(reasons, 2, "the remaining file and its reason record only");
    for name in spool.names(State::Incoming) {
        let n = SpoolName::parse(OsStr::new(std::str::from_utf8(&name).unwrap()));
        assert_eq!((n.attempts, n.first_attempt), (0, None), "a fresh start");
        assert!(n.key.is_some(), "the key stays");
    }

    let out = run(reporter(&spool).args(["requeue"]), MINUTE);
    assert_eq!(
        out.status.code(),
        Some(2),
        "requeue without a selector is refused"
    );

    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    )
    .assert_success();
    assert_eq!(spool.count(State::Done), 2);
}

#[test]
fn holds_keep_a_receiver_s_files_waiting_and_circuits_show_through_the_spool() {
    let rx = Receiver::start();
    rx.answer_path("/audit", Reply::status(503));
    let spool = TestSpool::new();
    let cfg = routes(&spool, &rx.url(""));
    run(reporter(&spool).args(["hold", "orders"]), MINUTE).assert_success();
    for i in 0..5 {
        spool.put(format!("orders-{i}"), b"o");
        spool.put(format!("audit-{i}"), b"a");
    }
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(MINUTE, || rx.count_path("/audit") >= 2));
    let report = || {
        let out = run(
            reporter(&spool)
                .arg("--config")
                .arg(&cfg)
                .args(["--format", "json"]),
            MINUTE,
        );
        out.assert_success();
        json(&out)
    };
    assert!(eventually(
        Duration::from_secs(10),
        || report()["receivers"]["audit"]["circuit"]["state"] == "open"
    ));
    let r = report();
    assert_eq!(r["receivers"]["orders"]["held"], true);
    assert_eq!(r["receivers"]["orders"]["circuit"]["state"], "closed");
    assert_eq!(rx.count_path("/orders"), 0, "held");
    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["--fail-if", "open_circuits > 0"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(3));

    run(reporter(&spool).args(["release", "orders"]), MINUTE).assert_success();
    assert!(
        eventually(Duration::from_secs(10), || rx.count_path("/orders") == 5),
        "released"
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
    assert_eq!(
        report()["receivers"]["audit"].get("circuit"),
        Some(&Value::Null),
        "gone with its sender"
    );
}
