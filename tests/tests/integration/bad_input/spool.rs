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
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;
use spoolpost_tests::system::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A spool under `dir` (a mount point), with its folders.
fn spool_in(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("spool");
    spoolpost_protocol::spool::Spool::open(&root).unwrap();
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
        command("sender")
            .arg("--spool")
            .arg(&root)
            .args(["--once", "--url", &rx.url("/")]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(count(&root.join("done")), 5, "{}", out.stderr);
    assert_eq!(rx.count(), 5);
}

#[test]
fn issue_13_a_full_disk_is_exit_75_for_a_one_shot_collector_and_loses_nothing() {
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    // The source is on another filesystem, so the collector must copy.
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("big.json"), vec![b'x'; 200_000]).unwrap();
    fill_blocks(&fs.path);
    let out = run(
        command("collector")
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
    let mut daemon = command("collector")
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
fn issue_13_no_inodes_left_is_exit_75_and_loses_nothing() {
    let fs = tmpfs("4m", 64);
    let root = spool_in(&fs.path);
    put(&root, "a.json");
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("b.json"), b"b").unwrap();
    fill_inodes(&fs.path);
    let out = run(
        command("sender").arg("--spool").arg(&root).args([
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
        command("collector")
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
    // Whatever the exit, the file is in exactly one place: delivered, it
    // waits in its claim folder's .delivered/ for done/.
    let places = spool.count(State::Incoming)
        + spool.count(State::Done)
        + spool.count(State::Error)
        + spool.names(State::Sending).len()
        + marked_delivered(&spool.root);
    assert_eq!(marked_delivered(&spool.root), 1, "{}", out.stderr);
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
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
    // SIGHUP reloads: the request it interrupts ends as it began.
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

/// Data files in the claim folders of `sending/` (not their `.delivered/`).
fn claimed(root: &Path) -> usize {
    claimed_in(root, |_| true)
}

/// Data files anywhere under `sending/` whose folder passes `keep`.
fn claimed_in(root: &Path, keep: impl Fn(&Path) -> bool) -> usize {
    let mut n = 0;
    let mut dirs = vec![root.join("sending")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else if !name.to_string_lossy().starts_with('.') && keep(&dir) {
                n += 1;
            }
        }
    }
    n
}

/// Data files under `sending/*/.delivered/`.
fn marked_delivered(root: &Path) -> usize {
    claimed_in(root, |dir| dir.ends_with(".delivered"))
}

/// Files with their reason records in `error/`: (data, records).
fn in_error(root: &Path) -> (usize, usize) {
    let names: Vec<String> = std::fs::read_dir(root.join("error"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let records = names.iter().filter(|n| n.ends_with(".reason.json")).count();
    (names.len() - records, records)
}

/// Issue 27.10: a one-shot run whose rejected files could not go to
/// `error/` (no room for their reason records) returned them to
/// `incoming/` and exited 0; the README promises 75.
#[test]
fn issue_27_10_a_once_run_that_left_files_for_a_full_disk_exits_75() {
    let rx = Receiver::start();
    rx.answer(spoolpost_tests::receiver::Reply::status(400));
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    for i in 0..3 {
        put(&root, &format!("f{i}"));
    }
    fill_blocks(&fs.path);
    let out = run(
        command("sender")
            .arg("--spool")
            .arg(&root)
            .args(["--once", "--url", &rx.url("/")]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{}", out.stderr);
    assert!(out.stderr.contains("disk is full"), "{}", out.stderr);
    assert_eq!(rx.count(), 3);
    // Nothing lost, nothing in two places: back to wait, no half records.
    assert_eq!(count(&root.join("incoming")), 3, "{}", out.stderr);
    assert_eq!(in_error(&root), (0, 0));
    assert_eq!(claimed(&root), 0);
    // With room again the next run finishes the job.
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    let out = run(
        command("sender")
            .arg("--spool")
            .arg(&root)
            .args(["--once", "--url", &rx.url("/")]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(in_error(&root), (3, 3));
}

/// Issue 27.2: a daemon whose rejected files could not go to `error/` for
/// a full disk kept them in `sending/` until it stopped (10 of 10 still
/// there 20 s after space came back). They move once there is room, each
/// sent once, and the reporter counts them as being sent meanwhile.
#[test]
fn issue_27_2_a_daemon_moves_files_it_could_not_move_once_space_returns() {
    let rx = Receiver::start();
    rx.answer(spoolpost_tests::receiver::Reply::status(400));
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    for i in 0..10 {
        put(&root, &format!("f{i}"));
    }
    fill_blocks(&fs.path);
    let daemon = spawn(
        command("sender")
            .arg("--spool")
            .arg(&root)
            .args(["--url", &rx.url("/")]),
    );
    assert!(
        eventually(LIMIT, || rx.count() == 10 && claimed(&root) == 10),
        "{}",
        daemon.stderr_so_far()
    );
    assert_eq!(in_error(&root), (0, 0));
    // Tried again and again meanwhile, leaving no drafts of reason records
    // behind (each would take an inode until the disk is out of them).
    assert!(
        eventually(LIMIT, || daemon.stderr_so_far().matches("tries=3").count()
            >= 10),
        "{}",
        daemon.stderr_so_far()
    );
    let drafts = std::fs::read_dir(root.join("sending"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".reason-")
        })
        .count();
    assert_eq!(drafts, 0, "drafts of reason records left behind");
    let report = run(
        command("reporter")
            .arg("--spool")
            .arg(&root)
            .args(["--fail-if", "backlog_files < 10"]),
        LIMIT,
    );
    report.assert_success();
    std::fs::remove_file(fs.path.join("filler")).unwrap();
    assert!(
        eventually(LIMIT, || in_error(&root) == (10, 10)),
        "{:?} in error/, {} claimed\n{}",
        in_error(&root),
        claimed(&root),
        daemon.stderr_so_far()
    );
    assert_eq!(claimed(&root), 0);
    assert_eq!(count(&root.join("incoming")), 0);
    assert_eq!(rx.count(), 10, "each sent once");
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(LIMIT);
    out.assert_success();
    let rejected = out
        .events()
        .iter()
        .filter(|e| e.event == spoolpost_protocol::event::EventKind::Rejected)
        .count();
    assert_eq!(rejected, 10, "an event line for each, once moved");
}

/// A bind mount of a fresh tmpfs over `dir`, undone when dropped.
struct BindOver {
    dir: std::path::PathBuf,
    _fs: Mount,
}

impl BindOver {
    fn new(dir: &Path) -> BindOver {
        let fs = tmpfs("1m", 100);
        let status = Command::new("mount")
            .arg("--bind")
            .arg(&fs.path)
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
        BindOver {
            dir: dir.to_path_buf(),
            _fs: fs,
        }
    }
}

impl Drop for BindOver {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Issue 27.2: a delivered file that cannot be moved to `done/` (here
/// `done/` is another filesystem) stayed claimed and was sent again at
/// shutdown. It is moved once `done/` takes it, and never sent again:
/// not after SIGTERM, not after SIGKILL, not by another sender's run.
#[test]
fn issue_27_2_a_delivered_file_that_cannot_reach_done_is_never_sent_again() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let root = spool.root.clone();
    let done = spool.dir(State::Done);
    let daemon = || spawn(sender(&spool).args(["--url", &rx.url("/")]));
    // Sent while done/ is another filesystem; moved once it is not.
    let mount = BindOver::new(&done);
    let first = daemon();
    spool.put("a.json", b"a");
    assert!(
        eventually(LIMIT, || rx.count() == 1 && claimed(&root) == 1),
        "{}",
        first.stderr_so_far()
    );
    drop(mount);
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 1),
        "{}",
        first.stderr_so_far()
    );
    assert_eq!(claimed(&root), 0);
    // At shutdown, and at a crash, with done/ refusing it still; after
    // each, another sender's run sends nothing again.
    let mount = BindOver::new(&done);
    let once = || {
        run(
            sender(&spool).args(["--once", "--url", &rx.url("/")]),
            LIMIT,
        )
    };
    spool.put("b.json", b"b");
    assert!(
        eventually(LIMIT, || rx.count() == 2 && marked_delivered(&root) == 1),
        "{}",
        first.stderr_so_far()
    );
    first.signal(Signal::SIGTERM);
    first.wait(LIMIT).assert_success();
    let out = once();
    assert_eq!(rx.count(), 2, "sent again after SIGTERM: {}", out.stderr);
    assert_eq!(spool.count(State::Incoming), 0, "{:?}", spool.census());
    // The reporter counts it with the files being sent, as nothing odd.
    run(
        reporter(&spool).args([
            "--fail-if",
            "backlog_files < 1",
            "--fail-if",
            "backlog_files > 1",
            "--fail-if",
            "unexpected > 0",
        ]),
        LIMIT,
    )
    .assert_success();
    let second = daemon();
    spool.put("c.json", b"c");
    assert!(
        eventually(LIMIT, || rx.count() == 3 && marked_delivered(&root) == 2),
        "{}",
        second.stderr_so_far()
    );
    second.signal(Signal::SIGKILL);
    let _ = second.wait(LIMIT);
    let out = once();
    assert_eq!(rx.count(), 3, "sent again after SIGKILL: {}", out.stderr);
    assert_eq!(spool.count(State::Incoming), 0, "{:?}", spool.census());
    drop(mount);
    // With done/ usable, the next run moves them on.
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/")]),
        LIMIT,
    )
    .assert_success();
    assert_eq!(spool.count(State::Done), 3, "{:?}", spool.census());
    assert_eq!(claimed(&root), 0);
    assert_eq!(rx.count(), 3, "each sent once");
}

/// Issue 27.10, the claim side: a long name needs its full-name record
/// written at its first claim, which a full disk refuses; the file stays
/// in `incoming/`, and a one-shot run that left it there exits 75.
#[test]
fn issue_27_10_a_once_run_that_could_not_claim_for_a_full_disk_exits_75() {
    let rx = Receiver::start();
    let fs = tmpfs("1m", 1000);
    let root = spool_in(&fs.path);
    let long = format!("{}.json", "n".repeat(245));
    put(&root, &long);
    fill_blocks(&fs.path);
    let out = run(
        command("sender")
            .arg("--spool")
            .arg(&root)
            .args(["--once", "--url", &rx.url("/")]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{}", out.stderr);
    assert!(root.join("incoming").join(&long).exists(), "{}", out.stderr);
    assert_eq!(rx.count(), 0);
}
