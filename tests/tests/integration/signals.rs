//! Signals: SIGTERM/SIGINT stop cleanly (in-flight requests finish for the
//! grace period, a second signal cuts them), and no signal that comes
//! while a program starts, or in a one-shot run, ends it the wrong way.

use nix::sys::signal::Signal;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;
const LIMIT: Duration = Duration::from_secs(20);
const MINUTE: Duration = Duration::from_secs(60);

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

/// An operator who presses Ctrl-C twice (or a script that signals twice)
/// wants the program gone now, not after the grace period. The sender cuts
/// its requests short and returns their files to `incoming/`; nothing is
/// lost and nothing is counted as an attempt.
#[test]
fn a_second_signal_stops_the_sender_at_once_and_returns_its_claims() {
    let rx = Receiver::start();
    rx.answer(spoolpost_tests::receiver::Reply::stall(
        Duration::from_secs(60),
    ));
    let spool = TestSpool::new();
    for i in 0..3 {
        spool.put(format!("{i}"), b"x");
    }
    let daemon = spawn(sender(&spool).args(["--grace", "60s", "--url", &rx.url("/")]));
    assert!(eventually(LIMIT, || spool.count(State::Sending) == 3));
    daemon.signal(Signal::SIGINT);
    assert!(eventually(LIMIT, || daemon
        .stderr_so_far()
        .contains("finishing work in hand")));
    assert_eq!(spool.count(State::Sending), 3, "the grace period is on");
    daemon.signal(Signal::SIGINT);
    let out = daemon.wait(LIMIT);
    out.assert_success();
    assert!(out.stderr.contains("second signal"), "{}", out.stderr);
    assert_eq!(spool.count(State::Incoming), 3, "{:?}", spool.census());
    assert_eq!(spool.claim_folders(), 0);
}

/// The collector's work in hand can be a long copy across filesystems,
/// where no task of it runs: a second signal ends it through the kernel's
/// default action, and the next run takes the claimed file over whole.
#[test]
fn a_second_signal_stops_the_collector_mid_copy_and_the_next_run_takes_the_file() {
    let shm = Path::new("/dev/shm");
    let spool = TestSpool::new();
    let src = tempfile::tempdir_in(shm).unwrap();
    let big = src.path().join("big.bin");
    let size: u64 = 2 << 30;
    std::fs::File::create(&big).unwrap().set_len(size).unwrap();
    let copier = spawn(
        collector(&spool)
            .arg("--source")
            .arg(src.path())
            .args(["--settle", "0s"]),
    );
    let copying = || {
        std::fs::read_dir(spool.root.join("tmp")).is_ok_and(|mut d| {
            d.any(|e| {
                e.is_ok_and(|e| {
                    std::fs::read_dir(e.path()).is_ok_and(|mut f| {
                        f.any(|f| f.is_ok_and(|f| f.metadata().is_ok_and(|m| m.len() > 0)))
                    })
                })
            })
        })
    };
    assert!(eventually(LIMIT, copying), "the copy started");
    copier.signal(Signal::SIGTERM);
    assert!(eventually(LIMIT, || copier
        .stderr_so_far()
        .contains("finishing work in hand")));
    assert!(
        copying(),
        "still copying: the first signal finishes work in hand"
    );
    copier.signal(Signal::SIGTERM);
    let out = copier.wait(LIMIT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(Signal::SIGTERM as i32),
        "{}",
        out.stderr
    );
    assert!(
        !spool
            .names(State::Incoming)
            .iter()
            .any(|n| n.starts_with(b"big.bin")),
        "no partial file in incoming/"
    );
    run(
        collector(&spool)
            .arg("--source")
            .arg(src.path())
            .args(["--once", "--settle", "0s"]),
        Duration::from_secs(300),
    )
    .assert_success();
    let taken = spool.find(State::Incoming, "big.bin");
    assert_eq!(std::fs::metadata(taken).unwrap().len(), size);
}

/// Sends SIGHUP to `proc` every 200 µs until `done` holds or it exits;
/// returns how many were sent.
fn hammer_hup(proc: &mut spoolpost_tests::harness::Running, done: impl Fn() -> bool) -> u32 {
    let deadline = std::time::Instant::now() + LIMIT;
    let mut sent = 0;
    while std::time::Instant::now() < deadline && !done() {
        if proc.child.try_wait().unwrap().is_some() {
            break;
        }
        // The process may just have died: a failed kill is not the test's.
        if nix::sys::signal::kill(proc.pid(), Signal::SIGHUP).is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sent
}

/// Issue 27, defect 3: the sender set up its SIGHUP handler only after
/// recovering dead senders' claims, making its clients and even READY=1, so
/// a SIGHUP while it started (logrotate's `systemctl kill --signal=HUP`)
/// ended it with status 129, which systemd counts as a clean exit. Here
/// SIGHUPs rain from the moment recovery of a large dead claim folder shows
/// (the first file back in `incoming/`) until every file is delivered: the
/// sender lives through them, delivers everything, and still stops cleanly.
#[test]
fn issue_27_sighup_while_the_sender_starts_is_never_a_death() {
    use crate::support::dead_claim::{key, kill, live_claim};
    const FILES: u32 = 3000;
    let spool = TestSpool::new();
    let files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|n| (format!("f{n}.json~sp.k{}", key(n)), b"x".to_vec()))
        .collect();
    let (_dir, owner) = live_claim(&spool.root, "dead", &files);
    kill(owner);
    let receiver = Receiver::start();
    let mut proc = spawn(sender(&spool).args(["--url", &receiver.url("/in")]));
    // Recovery under way: past main, inside the slow part of start-up.
    assert!(
        eventually(LIMIT, || spool.count(State::Incoming) > 0
            || spool.count(State::Done) > 0),
        "recovery never began"
    );
    let sent = hammer_hup(&mut proc, || spool.count(State::Done) == FILES as usize);
    let status = proc.child.try_wait().unwrap();
    assert!(
        status.is_none(),
        "the sender died of SIGHUP number {sent} or before: {status:?}\n{}",
        proc.stderr_so_far()
    );
    assert!(sent > 0);
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == FILES as usize),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!(spool.claim_folders(), 0);
}

/// Issue 27, defect 3, the collector's window (about a millisecond, between
/// opening its events file and listening for SIGHUP): SIGHUPs from the moment
/// the events file exists, over many starts, never end it; it collects.
#[test]
fn issue_27_sighup_while_the_collector_starts_is_never_a_death() {
    for round in 0..20 {
        let spool = TestSpool::new();
        let src = spool.side("src");
        std::fs::write(src.join("a.json"), "a").unwrap();
        let events = spool.side("log").join("events.jsonl");
        let mut proc = spawn(
            collector(&spool)
                .arg("--source")
                .arg(&src)
                .args(["--settle", "0s", "--events"])
                .arg(&events),
        );
        // Past main and into start-up; no sleep between the polls, so the
        // first SIGHUP follows as closely as this machine allows.
        let deadline = std::time::Instant::now() + LIMIT;
        while !events.exists() && std::time::Instant::now() < deadline {
            std::hint::spin_loop();
        }
        let sent = hammer_hup(&mut proc, || spool.count(State::Incoming) == 1);
        let status = proc.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "round {round}: the collector died of SIGHUP number {sent} or before: {status:?}\n{}",
            proc.stderr_so_far()
        );
        assert_eq!(spool.count(State::Incoming), 1, "round {round}");
        proc.signal(Signal::SIGTERM);
        proc.wait(LIMIT).assert_success();
    }
}

/// The reporter's `--watch` holds SIGHUP from its first line, as the other
/// programs do: its configuration is a named pipe, so the test knows when
/// the reporter is inside start-up (reading it) and sends SIGHUPs then. They
/// wait for the watch's listener and become one reload instead of ending
/// it; SIGTERM still ends the watch with exit 0.
#[test]
fn sighup_while_the_reporter_watch_starts_is_never_a_death() {
    use std::io::Write;
    let config = ConfigFile::to("orders", "http://127.0.0.1:9/").text();
    let spool = TestSpool::new();
    let fifo = spool.side("cfg").join("spoolpost.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut proc = spawn(
        reporter(&spool)
            .arg("--config")
            .arg(&fifo)
            .args(["--watch", "1", "--format", "json"]),
    );
    let mut reading =
        open_when_read(&fifo, &mut proc).expect("the reporter reads its configuration");
    for _ in 0..20 {
        proc.signal(Signal::SIGHUP);
    }
    // The held SIGHUPs are one reload, which reads the file again: a
    // plain one, put in the pipe's place before the reporter can finish
    // start-up (it holds the pipe open; a reload that opened the pipe
    // again would wait for a writer for ever).
    let plain = spool.side("cfg").join("plain.toml");
    std::fs::write(&plain, &config).unwrap();
    std::fs::rename(&plain, &fifo).unwrap();
    // A reader killed by the signals is reported below, not here.
    let _ = reading.write_all(config.as_bytes());
    drop(reading);
    let mut log = String::new();
    assert!(
        eventually(LIMIT, || {
            log = proc.stderr_so_far();
            log.contains("reloaded the configuration") || proc.child.try_wait().unwrap().is_some()
        }),
        "{log}"
    );
    let status = proc.child.try_wait().unwrap();
    assert!(
        status.is_none(),
        "a SIGHUP while starting ended the watch: {status:?}\n{log}"
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

/// The pipe `fifo` opened for writing once `proc` has it open for reading
/// (a pipe opened without blocking has no writer before it has a reader);
/// `None` when `proc` ends first.
fn open_when_read(
    fifo: &Path,
    proc: &mut spoolpost_tests::harness::Running,
) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut writer = None;
    let opened = eventually(LIMIT, || {
        writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
            .ok();
        writer.is_some() || proc.child.try_wait().unwrap().is_some()
    });
    assert!(opened, "{} was never opened for reading", fifo.display());
    writer
}

/// Issue 27, defect 3, the other signal: a SIGTERM while the sender recovers
/// a large dead claim folder is a clean stop (exit 0, every file back in
/// `incoming/` or delivered, no claim folder left), not a death.
#[test]
fn issue_27_sigterm_while_the_sender_starts_is_a_clean_stop() {
    use crate::support::dead_claim::{key, kill, live_claim};
    const FILES: u32 = 3000;
    let spool = TestSpool::new();
    let files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|n| (format!("f{n}.json~sp.k{}", key(n)), b"x".to_vec()))
        .collect();
    let (_dir, owner) = live_claim(&spool.root, "dead", &files);
    kill(owner);
    let receiver = Receiver::start();
    let proc = spawn(sender(&spool).args(["--url", &receiver.url("/in")]));
    assert!(
        eventually(LIMIT, || spool.count(State::Incoming) > 0
            || spool.count(State::Done) > 0),
        "recovery never began"
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!(spool.claim_folders(), 0);
    assert_eq!(
        spool.count(State::Incoming) + spool.count(State::Done),
        FILES as usize,
        "{:?}",
        spool.census()
    );
}

/// Found attacking the fix for SIGHUP at start-up: one-shot runs had no
/// SIGHUP handler at all, so a SIGHUP (a closing terminal, a careless
/// `pkill -HUP collector`) ended a `collector --stdin` mid-input and a
/// `sender --once` mid-drain. Now it is ignored: nothing to reload.
#[test]
fn issue_27_sighup_never_ends_a_one_shot_run() {
    use std::io::Write;
    let spool = TestSpool::new();
    let src = spool.side("src");
    let (first, second) = (src.join("first.json"), src.join("second.json"));
    std::fs::write(&first, "1").unwrap();
    std::fs::write(&second, "2").unwrap();
    // The harness's spawn gives no stdin; this run needs a pipe.
    let mut stdin_run = collector(&spool)
        .arg("--stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(stdin_run.id() as i32);
    let mut input = stdin_run.stdin.take().unwrap();
    writeln!(input, "{}", first.display()).unwrap();
    // Past start-up, in the loop over its input.
    assert!(eventually(LIMIT, || spool.count(State::Incoming) == 1));
    let mut sent = 0;
    let sent_enough = eventually(LIMIT, || {
        if stdin_run.try_wait().unwrap().is_some() {
            return true;
        }
        nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
        sent += 1;
        sent >= 50
    });
    assert!(sent_enough);
    let status = stdin_run.try_wait().unwrap();
    assert!(
        status.is_none(),
        "SIGHUP ended collector --stdin: {status:?}"
    );
    writeln!(input, "{}", second.display()).unwrap();
    drop(input);
    assert!(stdin_run.wait().unwrap().success());
    assert_eq!(spool.count(State::Incoming), 2);

    // sender --once, SIGHUPs from its first delivery until it ends.
    let receiver = Receiver::start();
    for n in 0..2000 {
        spool.put(format!("f{n}"), b"x");
    }
    let mut once = spawn(sender(&spool).args(["--url", &receiver.url("/in"), "--once"]));
    assert!(eventually(LIMIT, || spool.count(State::Done) > 0
        || once.child.try_wait().unwrap().is_some()));
    hammer_hup(&mut once, || false);
    let out = once.wait(LIMIT);
    out.assert_success();
    // The 2000 and the collector's two.
    assert_eq!(spool.count(State::Done), 2002, "{:?}", spool.census());
}
