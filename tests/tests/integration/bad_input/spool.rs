//! The spool itself under stress: permissions, read-only mounts, a full disk,
//! no inodes left, a source folder inside the spool, signals, and two
//! instances of each program at once.
//!
//! What the programs do about a full disk (documented in the README, exit
//! codes): a long-running sender or collector keeps going and loses
//! nothing (the collector leaves files at their source and takes them once
//! there is room; the sender only renames); a one-shot run (`--once`,
//! `--stdin`) that had to leave files behind because the disk was full,
//! or could not start for it, exits 75 so cron runs it again later.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_common::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;
use spoolpost_tests::system::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A spool under `dir` (a mount point), with its folders.
fn spool_in(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("spool");
    spoolpost_common::spool::Spool::open(&root).unwrap();
    root
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn put(root: &Path, name: &str) {
    std::fs::write(root.join("incoming").join(name), name).unwrap();
}

#[test]
fn a_spool_nobody_may_write_is_exit_74_for_sender_and_collector() {
    let spool = TestSpool::new();
    spool.put("a.json", b"a");
    let source = spool.side("source");
    std::fs::write(source.join("b.json"), b"b").unwrap();
    open_path_to_others(&spool.root.join("incoming"));
    open_path_to_others(&source);
    remove_write_permission(&spool.root);
    let out = run(
        &mut as_nobody(sender(&spool).args(["--once", "--url", "http://127.0.0.1:9/"])),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
    assert!(
        out.stderr.contains("Permission denied") && out.stderr.contains(path_str(&spool.root)),
        "{}",
        out.stderr
    );
    let out = run(
        &mut as_nobody(
            collector(&spool)
                .arg("--source")
                .arg(&source)
                .args(["--once", "--settle", "0s"]),
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
    assert_eq!(spool.count(State::Incoming), 1);
    assert!(source.join("b.json").exists());
}

#[test]
fn a_read_only_mount_is_exit_74_for_writers_and_readable_by_the_reporter() {
    let spool = TestSpool::new();
    spool.put("a.json", b"a");
    let source = spool.side("source");
    std::fs::write(source.join("b.json"), b"b").unwrap();
    let _ro = read_only_bind(&spool.root);
    let out = run(
        sender(&spool).args(["--once", "--url", "http://127.0.0.1:9/"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(&source)
            .args(["--once", "--settle", "0s"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
    let out = run(
        reporter(&spool).args(["--fail-if", "backlog_files > 1"]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(spool.count(State::Incoming), 1);
    assert!(source.join("b.json").exists());
}

#[test]
fn a_full_disk_does_not_stop_the_sender_which_only_renames() {
    let rx = Receiver::start();
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    for i in 0..5 {
        put(&root, &format!("f{i}"));
    }
    fill_blocks(&fs.path);
    let out = run(
        Command::new(bin("sender")).arg("--spool").arg(&root).args([
            "--once",
            "--url",
            &rx.url("/"),
        ]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(count(&root.join("done")), 5, "{}", out.stderr);
    assert_eq!(rx.count(), 5);
}

#[test]
fn regression_13_a_full_disk_is_exit_75_for_a_one_shot_collector_and_loses_nothing() {
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    // The source is on another filesystem, so the collector must copy.
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("big.json"), vec![b'x'; 200_000]).unwrap();
    fill_blocks(&fs.path);
    let out = run(
        Command::new(bin("collector"))
            .arg("--spool")
            .arg(&root)
            .arg("--source")
            .arg(source.path())
            .args(["--once", "--settle", "0s"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{}", out.stderr);
    assert!(out.stderr.contains("disk is full"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(source.path().join("big.json")).unwrap().len(),
        200_000
    );
    assert_eq!(count(&root.join("incoming")), 0);
}

#[test]
fn a_full_disk_pauses_a_long_running_collector_which_resumes_when_there_is_room() {
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("big.json"), vec![b'x'; 200_000]).unwrap();
    fill_blocks(&fs.path);
    // stderr to a file read while it runs: the test waits for the warning.
    let log = source.path().join("..").join(format!(
        "collector-{}.log",
        source.path().file_name().unwrap().to_string_lossy()
    ));
    let mut daemon = Command::new(bin("collector"))
        .arg("--spool")
        .arg(&root)
        .arg("--source")
        .arg(source.path())
        .args(["--settle", "0s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(LIMIT, || stderr().contains("No space left")),
        "{}",
        stderr()
    );
    assert!(source.path().join("big.json").exists());
    assert!(daemon.try_wait().unwrap().is_none(), "it keeps running");
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    assert!(
        eventually(LIMIT, || count(&root.join("incoming")) == 1),
        "{}",
        stderr()
    );
    assert!(!source.path().join("big.json").exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(daemon.wait().unwrap().success(), "{}", stderr());
    let _ = std::fs::remove_file(&log);
}

#[test]
fn regression_13_no_inodes_left_is_exit_75_and_loses_nothing() {
    let fs = tmpfs("4m", 64);
    let root = spool_in(&fs.path);
    put(&root, "a.json");
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("b.json"), b"b").unwrap();
    fill_inodes(&fs.path);
    let out = run(
        Command::new(bin("sender")).arg("--spool").arg(&root).args([
            "--once",
            "--url",
            "http://127.0.0.1:9/",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{}", out.stderr);
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    let out = run(
        Command::new(bin("collector"))
            .arg("--spool")
            .arg(&root)
            .arg("--source")
            .arg(source.path())
            .args(["--once", "--settle", "0s"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{}", out.stderr);
    assert!(root.join("incoming").join("a.json").exists());
    assert!(source.path().join("b.json").exists());
}

#[test]
fn spool_folders_on_different_filesystems_lose_no_file() {
    // incoming/ is its own mount: every claim rename crosses filesystems
    // (EXDEV). Today the sender reports it and leaves the file waiting.
    let spool = TestSpool::new();
    spool.put("a.json", b"a");
    let fs = tmpfs("1m", 100);
    // Bind the tmpfs over done/: delivering would cross filesystems.
    let status = Command::new("mount")
        .arg("--bind")
        .arg(&fs.path)
        .arg(spool.dir(State::Done))
        .status()
        .unwrap();
    assert!(status.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let done = spool.dir(State::Done);
    let _guard = Unmount(&done);
    let rx = Receiver::start();
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/")]),
        LIMIT,
    );
    // Whatever the exit, the file is in exactly one place.
    let places = spool.count(State::Incoming)
        + spool.count(State::Done)
        + spool.count(State::Error)
        + spool.names(State::Sending).len();
    assert_eq!(places, 1, "{}\n{:?}", out.stderr, spool.census());
}

#[test]
fn sigterm_and_sigint_stop_the_sender_cleanly_and_log_it_once() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let spool = TestSpool::new();
        let daemon = spawn(sender(&spool).args(["--url", "http://127.0.0.1:9/"]));
        assert!(eventually(LIMIT, || spool.claim_folders() == 1));
        daemon.signal(sig);
        let out = daemon.wait(LIMIT);
        out.assert_success();
        assert_eq!(
            out.stderr.matches("finishing work in hand").count(),
            1,
            "{}",
            out.stderr
        );
        assert_eq!(
            spool.claim_folders(),
            0,
            "the claim folder is removed on a clean stop"
        );
    }
}

#[test]
fn sighup_does_not_stop_the_sender_and_the_request_in_flight_finishes() {
    // SIGHUP reloads (issue 9): the request it interrupts ends as it began.
    let rx = Receiver::start();
    rx.answer(spoolpost_tests::receiver::Reply::stall(
        Duration::from_millis(1500),
    ));
    let spool = TestSpool::new();
    spool.put("a.json", b"a");
    let daemon = spawn(sender(&spool).args(["--url", &rx.url("/")]));
    assert!(eventually(LIMIT, || spool.names(State::Sending).len() == 1));
    daemon.signal(Signal::SIGHUP);
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 1),
        "{:?}",
        spool.census()
    );
    // A dead child stays a zombie until waited for: its state says so.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
    let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
    assert_ne!(state, Some('Z'), "SIGHUP ended the sender");
    assert_eq!(rx.count(), 1, "sent once");
    daemon.signal(Signal::SIGTERM);
    daemon.wait(LIMIT).assert_success();
}

#[test]
fn a_closed_stdout_sigpipe_does_not_stop_delivery() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    for i in 0..20 {
        spool.put(format!("f{i}"), b"x");
    }
    let mut child = sender(&spool)
        .args(["--once", "--url", &rx.url("/")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(spool.count(State::Done), 20);
}

#[test]
fn two_reporters_at_once_both_write_a_whole_report() {
    let spool = TestSpool::new();
    for i in 0..200 {
        spool.put(format!("f{i}"), b"x");
    }
    let out = spool.side("out").join("r.prom");
    let a = spawn(
        reporter(&spool)
            .args(["--format", "prometheus", "--output"])
            .arg(&out),
    );
    let b = spawn(
        reporter(&spool)
            .args(["--format", "prometheus", "--output"])
            .arg(&out),
    );
    a.wait(LIMIT).assert_success();
    b.wait(LIMIT).assert_success();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("spoolpost_files{state=\"incoming\"} 200"),
        "{text}"
    );
    assert_eq!(count(out.parent().unwrap()), 1, "no temporary file left");
}

#[test]
fn two_senders_once_at_once_deliver_every_file_exactly_once() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    for i in 0..300 {
        spool.put(format!("f{i}"), b"x");
    }
    let a = spawn(sender(&spool).args(["--once", "--url", &rx.url("/")]));
    let b = spawn(sender(&spool).args(["--once", "--url", &rx.url("/")]));
    a.wait(LIMIT).assert_success();
    b.wait(LIMIT).assert_success();
    assert_eq!(spool.count(State::Done), 300, "{:?}", spool.census());
    assert_eq!(rx.count(), 300);
    assert_eq!(spool.claim_folders(), 0);
}
