//! The paths other Unixes take, forced on Linux by the environment switches
//! (docs/platforms.md): polling instead of inotify, `link` + `unlink`
//! instead of `renameat2`, `fcntl` locks instead of `flock`, and folders
//! that cannot be fsynced. The whole suite runs a second time
//! with all of them forced (`.ci/run`); the cases here are the ones that
//! are about the switches themselves.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const MINUTE: Duration = Duration::from_secs(60);

/// Every switch that makes Linux take the path another Unix would.
const FORCED: [(&str, &str); 4] = [
    ("SPOOLPOST_WATCH", "poll"),
    ("SPOOLPOST_RENAME", "link"),
    ("SPOOLPOST_LOCK", "fcntl"),
    ("SPOOLPOST_DIR_FSYNC", "unsupported"),
];

/// The calls that exist only on Linux (or, for `flock`, that are not the
/// native lock everywhere): with the switches forced, none may be made.
const LINUX_ONLY: [&str; 5] = [
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "renameat2",
    "flock",
];

fn forced(cmd: &mut Command) -> &mut Command {
    cmd.envs(FORCED)
}

/// `cmd` run under `strace -f`, tracing the Linux-only calls and, as a
/// witness that tracing works, the portable ones that replace them.
fn straced(cmd: &Command, log: &Path) -> Command {
    let found = Command::new("strace").arg("-V").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test needs strace (apt-get install strace; .ci/run installs it)"
    );
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-o"])
        .arg(log)
        .arg("-e")
        .arg(format!("trace={},linkat,link,fcntl", LINUX_ONLY.join(",")))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        );
    traced
}

/// The traced program: strace's child, once it runs `program` (before
/// its exec the child is still a copy of strace).
fn tracee(strace: &Running, program: &Path) -> nix::unistd::Pid {
    let children = format!("/proc/{0}/task/{0}/children", strace.child.id());
    let mut pid = None;
    let found = eventually(Duration::from_secs(20), || {
        pid = fs::read_to_string(&children)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok())
            .filter(|p| fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == program));
        pid.is_some()
    });
    assert!(found, "strace never ran {}", program.display());
    nix::unistd::Pid::from_raw(pid.unwrap())
}

fn calls_in(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_else(|e| panic!("no strace log {}: {e}", log.display()))
}

/// Issue 15: with every switch forced, a sender and a collector doing
/// their whole work (watching, admitting, claiming, delivering, recovery)
/// make no call that exists only on Linux, so the portable paths are the
/// ones the suite tests.
#[test]
fn with_every_portable_path_forced_no_linux_only_call_is_made() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let source = spool.side("source");
    let logs = spool.side("strace");
    let cfg = ConfigFile::to("r", &rx.url("/in"))
        .sender("rescan_interval = \"1h\"")
        .write(&spool);
    let mut send = sender(&spool);
    forced(send.arg("--config").arg(&cfg));
    let mut collect = collector(&spool);
    forced(
        collect
            .arg("--source")
            .arg(&source)
            .args(["--settle", "0s", "--ready", "close-write"]),
    );
    let send_log = logs.join("sender");
    let collect_log = logs.join("collector");
    let sending = spawn(&mut straced(&send, &send_log));
    let collecting = spawn(&mut straced(&collect, &collect_log));
    let sender_pid = tracee(&sending, &bin("sender"));
    let collector_pid = tracee(&collecting, &bin("collector"));
    // Let both pass start-up (and a sender's first recovery) before files
    // arrive, so that only their watchers can find them.
    assert!(
        eventually(MINUTE, || spool.claim_folders() == 1),
        "the sender never made its claim folder"
    );
    for i in 0..5 {
        fs::write(source.join(format!(".w{i}")), b"{}").unwrap();
        fs::rename(
            source.join(format!(".w{i}")),
            source.join(format!("e{i}.json")),
        )
        .unwrap();
    }
    let delivered = eventually(MINUTE, || spool.count(State::Done) == 5);
    for pid in [sender_pid, collector_pid] {
        // Either may have exited already: its output says why.
        if let Err(e) = nix::sys::signal::kill(pid, Signal::SIGTERM) {
            eprintln!("cannot signal {pid}: {e}");
        }
    }
    let (sent, collected) = (sending.wait(MINUTE), collecting.wait(MINUTE));
    assert!(
        delivered,
        "census {:?}\nsender:\n{}\ncollector:\n{}",
        spool.census(),
        sent.stderr,
        collected.stderr
    );
    assert_eq!(rx.count(), 5);
    for (who, log) in [("sender", &send_log), ("collector", &collect_log)] {
        let calls = calls_in(log);
        for call in LINUX_ONLY {
            let made: Vec<&str> = calls
                .lines()
                .filter(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|c| c.starts_with(&format!("{call}(")))
                })
                .collect();
            assert!(made.is_empty(), "the {who} called {call}: {made:#?}");
        }
        assert!(
            calls.contains("link"),
            "the {who} moved files without link: is strace tracing it?\n{calls}"
        );
        assert!(
            calls.contains("F_SETLK"),
            "the {who} took no fcntl lock:\n{calls}"
        );
    }
}

/// Issue 15: `fcntl` locks belong to the process, so the process that
/// holds one can take it again. A sender's recovery, which every 5 s takes
/// the lock of each claim folder it can, took back its own live claim
/// folder (and sent the files in flight a second time).
#[test]
fn under_fcntl_locks_a_sender_never_takes_back_its_own_live_claims() {
    let rx = Receiver::start();
    // Longer than the recovery interval (5 s): the files are claimed
    // while recovery runs.
    rx.answer(Reply::stall(Duration::from_millis(6500)));
    let spool = TestSpool::new();
    for i in 0..3 {
        spool.put(format!("f{i}.json"), b"{}");
    }
    let daemon = spawn(
        sender(&spool)
            .env("SPOOLPOST_LOCK", "fcntl")
            .args(["--url", &rx.url("/")]),
    );
    let done = eventually(MINUTE, || spool.count(State::Done) == 3);
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert!(done, "census {:?}\n{}", spool.census(), out.stderr);
    assert!(
        !out.stderr.contains("returned a dead sender"),
        "the sender took back its own claims:\n{}",
        out.stderr
    );
    assert_eq!(rx.count(), 3, "each file sent once");
}

/// Issue 15: on AIX `fsync` of a folder fails with EBADF. The collector's
/// copy from another filesystem then failed after admitting the copy, so
/// the source was never removed and was copied again on every scan. Such a
/// system's folders count as synced (one warning).
#[test]
fn a_copy_across_filesystems_completes_where_folders_cannot_be_fsynced() {
    let spool = TestSpool::new();
    let source = crate::bad_input::names::foreign_source(&spool);
    for i in 0..3 {
        fs::write(source.path().join(format!("c{i}.json")), b"{}").unwrap();
    }
    let once = |spool: &TestSpool| {
        run(
            collector(spool)
                .env("SPOOLPOST_DIR_FSYNC", "unsupported")
                .arg("--source")
                .arg(source.path())
                .args(["--settle", "0s", "--once"]),
            MINUTE,
        )
    };
    let out = once(&spool);
    out.assert_success();
    assert_eq!(spool.count(State::Incoming), 3, "{}", out.stderr);
    assert_eq!(
        entries(source.path()),
        Vec::<PathBuf>::new(),
        "the sources are removed once copied"
    );
    assert_eq!(
        out.stderr.matches("cannot fsync a folder").count(),
        1,
        "one warning:\n{}",
        out.stderr
    );
    once(&spool).assert_success();
    assert_eq!(spool.count(State::Incoming), 3, "nothing copied twice");
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Issue 15: polling cannot see a writer close a file; `close-write` then
/// waits for the file to settle, and says so once at start.
#[test]
fn polling_takes_close_write_files_when_they_settle_and_warns_once() {
    let spool = TestSpool::new();
    let source = spool.side("source");
    let daemon = spawn(
        collector(&spool)
            .env("SPOOLPOST_WATCH", "poll")
            .arg("--source")
            .arg(&source)
            .args(["--ready", "close-write", "--settle", "1s"]),
    );
    fs::write(source.join("a.json"), b"{}").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || spool.count(State::Incoming)
            == 1),
        "the file was never taken"
    );
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert_eq!(
        out.stderr
            .matches("close-write readiness falls back to settle")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

/// Issue 15: a file moved by `link` + `unlink` appears to inotify as
/// created, not renamed in, so a sender watching `incoming/` for renames
/// never saw what a collector admitted that way, and left it until its
/// next full rescan (an hour here; on NFS or FUSE without
/// RENAME_NOREPLACE, the same).
#[test]
fn files_moved_by_link_are_seen_by_a_watching_sender() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let source = spool.side("source");
    let cfg = ConfigFile::to("r", &rx.url("/in"))
        .sender("rescan_interval = \"1h\"")
        .write(&spool);
    let sending = spawn(
        sender(&spool)
            .env("SPOOLPOST_RENAME", "link")
            .arg("--config")
            .arg(&cfg),
    );
    assert!(eventually(MINUTE, || spool.claim_folders() == 1));
    // After the sender's first pass, so only its watcher can find them.
    for i in 0..3 {
        fs::write(source.join(format!("l{i}.json")), b"{}").unwrap();
    }
    let collected = run(
        collector(&spool)
            .env("SPOOLPOST_RENAME", "link")
            .arg("--source")
            .arg(&source)
            .args(["--settle", "0s", "--once"]),
        MINUTE,
    );
    collected.assert_success();
    assert_eq!(
        spool.count(State::Incoming) + spool.count(State::Done) + spool.count(State::Sending),
        3
    );
    let delivered = eventually(Duration::from_secs(20), || rx.count() == 3);
    sending.signal(Signal::SIGTERM);
    let out = sending.wait(MINUTE);
    out.assert_success();
    assert!(delivered, "census {:?}\n{}", spool.census(), out.stderr);
}

/// A sender killed between the `link` and the `unlink` of a move. Its first
/// claims once moved that way: the file stayed in `incoming/` under its
/// name without a key, the claim held it under a key, and the next sender
/// sent both, under two keys (a CI run found one in 2,000 after a SIGKILL).
/// Claims now rename into the sender's own folder, so the first `link` +
/// `unlink` is the move to `done/`, after the file was sent: a crash there
/// may send the file again, but under the key it had.
#[test]
fn a_crash_between_link_and_unlink_never_gives_a_file_a_second_key() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let names: Vec<String> = (0..4).map(|i| format!("f{i}.json")).collect();
    for n in &names {
        spool.put(n, b"{}");
    }
    let killed = run(
        forced(&mut sender(&spool))
            .args(["--once", "--concurrency", "1", "--url", &rx.url("/in")])
            .env("SPOOLPOST_TEST_CRASH_AT", "between-link-and-unlink"),
        MINUTE,
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "the sender raised SIGKILL on itself:\n{}",
        killed.stderr
    );
    run(
        forced(&mut sender(&spool)).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    )
    .assert_success();
    let got = super::names::keys_by_name(&rx);
    assert_eq!(got.len(), names.len(), "every file delivered: {got:?}");
    for (name, keys) in &got {
        assert_eq!(
            keys.len(),
            1,
            "{} was sent under {keys:?}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(
        spool.count(State::Incoming) + spool.count(State::Sending),
        0,
        "{:?}",
        spool.census()
    );
}
