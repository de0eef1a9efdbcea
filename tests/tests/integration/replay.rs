//! `reporter replay`: files delivered to a receiver that lost
//! them go from `done/` back to `incoming/`, picked by receiver, name and
//! delivery time, under the same idempotency key, and a real sender
//! delivers them again to the test receiver.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use spoolpost_protocol::event::rfc3339;
use spoolpost_protocol::name::{Key, SpoolName};
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;

use crate::reporting::routes;

const MINUTE: Duration = Duration::from_secs(60);

fn parsed(name: &[u8]) -> SpoolName {
    SpoolName::parse(OsStr::from_bytes(name))
}

/// Each file's key, by original name, as the receiver was sent them (the
/// last request for a name wins).
fn keys_received(rx: &Receiver) -> BTreeMap<String, String> {
    rx.received()
        .iter()
        .map(|r| {
            (
                r.header("X-Filename").unwrap().to_string(),
                r.header("Idempotency-Key").unwrap().to_string(),
            )
        })
        .collect()
}

/// The keys of the data files in `state`.
fn keys_in(spool: &TestSpool, state: State) -> Vec<String> {
    spool
        .names(state)
        .iter()
        .map(|n| {
            parsed(n)
                .key
                .expect("every file here has a key")
                .to_string()
        })
        .collect()
}

fn deliver(spool: &TestSpool, cfg: &std::path::Path) {
    run(sender(spool).arg("--once").arg("--config").arg(cfg), MINUTE).assert_success();
}

#[test]
fn a_replay_sends_the_picked_files_again_under_their_keys_and_a_dry_run_moves_nothing() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = routes(&spool, &rx.url(""));
    for i in 0..4 {
        spool.put(format!("orders-{i}"), b"o");
    }
    for i in 0..2 {
        spool.put(format!("audit-{i}"), b"aa");
    }
    deliver(&spool, &cfg);
    assert_eq!(spool.count(State::Done), 6, "{:?}", spool.census());
    let first = keys_received(&rx);
    let done_before = spool.names(State::Done);

    let dry = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["replay", "--receiver", "orders", "--name", "orders-[01]"])
            .arg("--dry-run"),
        MINUTE,
    );
    dry.assert_success();
    let listed: Vec<&str> = dry.stdout.lines().collect();
    assert_eq!(listed.len(), 2, "{}", dry.stdout);
    assert!(listed.iter().all(|l| l.contains(" orders ")), "{listed:?}");
    assert!(listed[0].ends_with("orders-0") || listed[1].ends_with("orders-0"));
    assert!(
        dry.stderr.contains("would replay 2 files, 2 bytes"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        spool.names(State::Done),
        done_before,
        "a dry run moves nothing"
    );
    assert_eq!(spool.count(State::Incoming), 0);

    let out = run(
        reporter(&spool).arg("--config").arg(&cfg).args([
            "replay",
            "--receiver",
            "orders",
            "--name",
            "orders-[01]",
        ]),
        MINUTE,
    );
    out.assert_success();
    assert!(
        out.stderr.contains("replayed 2 files, 2 bytes"),
        "{}",
        out.stderr
    );
    assert_eq!(spool.count(State::Done), 4);
    for name in spool.names(State::Incoming) {
        let n = parsed(&name);
        assert_eq!(
            (n.attempts, n.first_attempt, n.last_reason),
            (0, None, None),
            "a new delivery starts afresh"
        );
        let original = n.original.to_str().unwrap();
        assert_eq!(
            n.key.unwrap().to_string(),
            first[original],
            "{original} keeps its key"
        );
    }

    deliver(&spool, &cfg);
    assert_eq!(rx.count(), 8, "the two replayed files were sent again");
    let again: Vec<_> = rx.received()[6..]
        .iter()
        .map(|r| {
            let name = r.header("X-Filename").unwrap().to_string();
            let key = r.header("Idempotency-Key").unwrap().to_string();
            assert_eq!(key, first[&name], "{name} is sent under its first key");
            name
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(again, ["orders-0", "orders-1"]);
    assert_eq!(spool.count(State::Done), 6);

    // --new-keys: the receiver sees new data.
    run(
        reporter(&spool).args(["replay", "--name", "audit-0", "--new-keys"]),
        MINUTE,
    )
    .assert_success();
    deliver(&spool, &cfg);
    let last = rx.received().pop().unwrap();
    assert_eq!(last.header("X-Filename"), Some("audit-0"));
    assert_ne!(last.header("Idempotency-Key").unwrap(), first["audit-0"]);
}

#[test]
fn a_replay_picks_by_delivery_time() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = routes(&spool, &rx.url(""));
    for i in 0..3 {
        spool.put(format!("orders-early-{i}"), b"e");
    }
    deliver(&spool, &cfg);
    let ctime = |path: std::path::PathBuf| {
        spoolpost_protocol::fsops::ctime(&std::fs::symlink_metadata(path).unwrap())
    };
    let latest_early = spool
        .names(State::Done)
        .into_iter()
        .map(|n| ctime(spool.dir(State::Done).join(OsStr::from_bytes(&n))))
        .max()
        .unwrap();
    // The split: the next whole millisecond after the last early delivery
    // (times on the command line are given to the millisecond).
    let since_epoch = latest_early.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let split = SystemTime::UNIX_EPOCH + Duration::from_millis(since_epoch.as_millis() as u64 + 1);
    // The file system's clock may lag the process's by a tick: wait until
    // it has passed the split before the late files are delivered.
    let probe = spool.side("probe").join("tick");
    assert!(eventually(MINUTE, || {
        std::fs::write(&probe, b"").unwrap();
        ctime(probe.clone()) > split
    }));
    for i in 0..2 {
        spool.put(format!("orders-late-{i}"), b"l");
    }
    deliver(&spool, &cfg);
    assert_eq!(spool.count(State::Done), 5);

    let dry = |args: &[&str]| {
        let out = run(
            reporter(&spool).args(["replay", "--dry-run"]).args(args),
            MINUTE,
        );
        out.assert_success();
        let mut names: Vec<String> = out
            .stdout
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let split = rfc3339(split);
    assert_eq!(
        dry(&["--delivered-before", &split]),
        ["orders-early-0", "orders-early-1", "orders-early-2"]
    );
    assert_eq!(
        dry(&["--delivered-after", &split]),
        ["orders-late-0", "orders-late-1"]
    );
    assert_eq!(dry(&["--delivered-after", "1h"]).len(), 5, "a duration ago");
    assert!(dry(&["--delivered-before", "1h"]).is_empty());

    // A replay of everything since the split, with a sender delivering as
    // it goes: the replayed files come back into done/ and the replay ends,
    // having sent each once.
    let running = spawn(sender(&spool).arg("--config").arg(&cfg));
    let out = run(
        reporter(&spool).args(["replay", "--delivered-after", &split, "--rate", "5"]),
        MINUTE,
    );
    out.assert_success();
    assert!(out.stderr.contains("replayed 2 files"), "{}", out.stderr);
    assert!(rx.wait_for(7, MINUTE), "sent {}", rx.count());
    running.signal(Signal::SIGTERM);
    running.wait(MINUTE).assert_success();
    assert_eq!(spool.count(State::Done), 5, "{:?}", spool.census());
}

#[test]
fn a_replay_killed_midway_leaves_every_file_in_one_place_and_the_next_run_finishes_it() {
    let spool = TestSpool::new();
    let mut keys = BTreeSet::new();
    for i in 0..60 {
        let mut name = SpoolName::fresh(format!("m-{i:02}"));
        let key = Key::random();
        keys.insert(key.to_string());
        name.key = Some(key);
        name.first_attempt = Some(1_795_382_151);
        name.attempts = 1;
        std::fs::write(spool.dir(State::Done).join(name.to_os_string()), b"m").unwrap();
    }

    let replay = spawn(reporter(&spool).args(["replay", "--all", "--rate", "20"]));
    assert!(eventually(MINUTE, || spool.count(State::Incoming) >= 5));
    replay.signal(Signal::SIGKILL);
    let killed = replay.wait(MINUTE);
    assert_eq!(killed.status.signal(), Some(9));
    let (waiting, delivered) = (
        keys_in(&spool, State::Incoming),
        keys_in(&spool, State::Done),
    );
    assert!(
        !delivered.is_empty(),
        "killed before the end: {:?}",
        spool.census()
    );
    let mut everywhere = waiting.clone();
    everywhere.extend(delivered);
    everywhere.sort();
    assert_eq!(
        everywhere,
        keys.iter().cloned().collect::<Vec<_>>(),
        "every file once, in done/ or incoming/"
    );

    run(
        reporter(&spool).args(["replay", "--all", "--rate", "1000"]),
        MINUTE,
    )
    .assert_success();
    assert_eq!(spool.count(State::Done), 0);

    let rx = Receiver::start();
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    )
    .assert_success();
    let sent: BTreeSet<String> = keys_received(&rx).into_values().collect();
    assert_eq!(sent, keys, "each file delivered again under its own key");
    assert_eq!(rx.count(), 60);
}

#[test]
fn a_replay_refuses_bad_input_with_a_clear_error_and_moves_nothing() {
    let spool = TestSpool::new();
    let mut name = SpoolName::fresh("x");
    name.key = Some(Key::random());
    std::fs::write(spool.dir(State::Done).join(name.to_os_string()), b"x").unwrap();
    for (args, says) in [
        (&["replay"][..], "give --all or a selector"),
        (&["replay", "--all", "--rate", "0"], "--rate"),
        (
            &["replay", "--delivered-after", "yesterday"],
            "neither a time",
        ),
        (&["replay", "--name", "a["], "is not a glob"),
        (&["replay", "--receiver", "orders"], "needs --config"),
    ] {
        let out = run(reporter(&spool).args(args), MINUTE);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let rx = Receiver::start();
    let cfg = routes(&spool, &rx.url(""));
    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["replay", "--receiver", "ordres"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
    assert!(
        out.stderr.contains("no receiver \"ordres\""),
        "{}",
        out.stderr
    );
    assert_eq!(spool.count(State::Done), 1);
    assert_eq!(spool.count(State::Incoming), 0);
}

/// The replays another `reporter --json` sees in the spool.
fn replays_seen(spool: &TestSpool) -> Vec<serde_json::Value> {
    let out = run(reporter(spool).args(["--format", "json"]), MINUTE);
    out.assert_success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    report["replays"].as_array().cloned().unwrap_or_default()
}

/// A replay under its rate cap runs a long time: another reporter shows it
/// (who, what, how far, how fast), marks it dead once it is SIGKILLed
/// (not running forever), and the next replay clears the dead one away.
#[test]
fn a_replay_in_progress_is_seen_by_another_reporter_and_a_killed_one_is_marked_dead() {
    let spool = TestSpool::new();
    for i in 0..40 {
        let name = SpoolName::fresh(format!("m-{i:02}"));
        std::fs::write(
            spool.dir(State::Done).join(name.to_os_string()),
            b"0123456789",
        )
        .unwrap();
    }
    assert!(replays_seen(&spool).is_empty(), "no replay yet");
    let replay = spawn(reporter(&spool).args(["replay", "--name", "m-*", "--rate", "4"]));
    let pid = replay.pid().as_raw();
    let mut seen = serde_json::Value::Null;
    assert!(
        eventually(MINUTE, || {
            seen = replays_seen(&spool).pop().unwrap_or_default();
            seen["files"].as_u64().is_some_and(|n| n >= 2)
        }),
        "{seen}"
    );
    assert_eq!(seen["running"], true, "{seen}");
    assert_eq!(seen["pid"], pid, "{seen}");
    assert_eq!(seen["rate"], 4, "{seen}");
    assert_eq!(seen["total_files"], 40, "{seen}");
    assert_eq!(seen["total_bytes"], 400, "{seen}");
    assert!(
        seen["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{seen}"
    );
    assert!(
        seen["selection"]
            .as_str()
            .is_some_and(|s| s.starts_with("name m-*, delivered before ")),
        "{seen}"
    );
    assert!(seen["started"].as_str().is_some(), "{seen}");
    let table = run(&mut reporter(&spool), MINUTE);
    assert!(
        table
            .stdout
            .contains(&format!("REPLAYS\n  running  pid {pid} on ")),
        "{}",
        table.stdout
    );

    replay.signal(Signal::SIGKILL);
    assert_eq!(replay.wait(MINUTE).status.signal(), Some(9));
    let dead = replays_seen(&spool);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["running"], false, "a killed replay is not running");
    assert!(
        dead[0]["files"].as_u64().is_some_and(|n| n >= 2),
        "{dead:?}"
    );
    let table = run(&mut reporter(&spool), MINUTE);
    assert!(
        table.stdout.contains(&format!("  DEAD  pid {pid} on ")),
        "{}",
        table.stdout
    );

    // The next replay clears the dead one's leftovers, and leaves nothing
    // behind when it ends.
    run(
        reporter(&spool).args(["replay", "--all", "--rate", "1000"]),
        MINUTE,
    )
    .assert_success();
    assert!(
        replays_seen(&spool).is_empty(),
        "{:?}",
        replays_seen(&spool)
    );
    assert!(
        std::fs::read_dir(spool.root.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp/ is empty"
    );
}
