//! Dead senders, start-up races and odd things in `sending/`: recovery runs
//! on its own clock, many senders may start at once, the link+unlink
//! fallback never sends one file under two keys, and nothing put into
//! `sending/` by hand sits there unseen.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

use crate::support::dead_claim::{key, kill, live_claim};

const MINUTE: Duration = Duration::from_secs(60);

/// Issue 16: recovery ran only between passes over `incoming/`, so with a
/// backlog a dead instance's files waited until the backlog was read
/// through (53 s in the report) instead of the documented 5 s.
#[test]
fn a_dead_claim_is_recovered_within_the_interval_while_a_backlog_is_sent() {
    let rx = Receiver::start();
    // Answers come sooner than the dispatcher's patience for a busy
    // receiver (50 ms), so one pass reads the whole backlog without skipping.
    rx.answer(Reply::stall(Duration::from_millis(30)));
    let spool = TestSpool::new();
    let backlog = 5_000;
    for i in 0..backlog {
        spool.put(format!("b{i:05}.json"), b"{}");
    }
    // 8 in flight at 30 ms each: reading the backlog through takes 20 s.
    let busy = spawn(sender(&spool).args(["--concurrency", "8", "--url", &rx.url("/")]));
    assert!(rx.wait_for(16, MINUTE), "the sender never got going");

    let files: Vec<_> = (0..3)
        .map(|i| {
            (
                format!("dead{i}.json~sp.k{}.t1795382151", key(i)),
                b"{}".to_vec(),
            )
        })
        .collect();
    let (dir, owner) = live_claim(&spool.root, "4242-deadbeef", &files);
    kill(owner);
    let killed = Instant::now();
    let recovered = eventually(Duration::from_secs(8), || !dir.exists());
    let took = killed.elapsed();
    busy.signal(Signal::SIGTERM);
    busy.wait(MINUTE).assert_success();
    assert!(
        recovered,
        "the dead claim folder is still there after {took:?}"
    );
    assert!(took < Duration::from_millis(6500), "recovery took {took:?}");
    let census = spool.census();
    assert_eq!(census["sending"], 0, "{census:?}");
    assert_eq!(
        census["incoming"] + census["done"],
        backlog + 3,
        "{census:?}"
    );
    let mut names = spool.names(State::Incoming);
    names.extend(spool.names(State::Done));
    for (name, _) in &files {
        assert!(
            names.iter().any(|n| n.starts_with(name.as_bytes())),
            "{name} kept its name and key"
        );
    }
}

/// Issue 16: a `tmp/claim-*` folder without `.lock` yet was removed at once,
/// though it can be another sender's claim folder in the making; one of 240
/// senders started together exited 74.
#[test]
fn a_hundred_and_twenty_senders_started_at_once_all_succeed() {
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), false, 2).unwrap();
    let spool = TestSpool::new();
    let total = 600;
    for i in 0..total {
        spool.put(format!("s{i:04}.json"), b"{}");
    }
    let senders: Vec<_> = (0..120)
        .map(|_| {
            spawn(sender(&spool).args([
                "--once",
                "--threads",
                "1",
                "--concurrency",
                "4",
                "--url",
                &rx.url("/"),
            ]))
        })
        .collect();
    for s in senders {
        s.wait(Duration::from_secs(120)).assert_success();
    }
    assert_eq!(spool.count(State::Done), total, "{:?}", spool.census());
    assert_eq!(spool.claim_folders(), 0);
    assert_eq!(rx.count(), total as u64, "each file sent once");
}

/// Issue 16: with `link` + `unlink`, a sender whose `unlink(source)` failed
/// because another sender had claimed the file kept its own link, so the
/// file went out twice under two keys. The claim folder itself, a folder,
/// cannot be linked at all.
#[test]
fn forced_link_fallback_sends_no_file_under_two_keys() {
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), false, 2).unwrap();
    let spool = TestSpool::new();
    let total = 5_000;
    for i in 0..total {
        spool.put(format!("l{i:05}.json"), b"{}");
    }
    let senders: Vec<_> = (0..4)
        .map(|_| {
            spawn(sender(&spool).env("SPOOLPOST_RENAME", "link").args([
                "--once",
                "--concurrency",
                "32",
                "--url",
                &rx.url("/"),
            ]))
        })
        .collect();
    for s in senders {
        s.wait(Duration::from_secs(180)).assert_success();
    }
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rx.received() {
        keys.entry(r.header("x-filename").unwrap().into())
            .or_default()
            .insert(r.header("idempotency-key").unwrap().into());
    }
    let twice: Vec<_> = keys.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{} files under two keys: {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert_eq!(keys.len(), total, "every file reached the receiver");
    assert_eq!(spool.count(State::Done), total, "{:?}", spool.census());
    assert_eq!(spool.claim_folders(), 0);
}

/// Issue 13 (8): a file put straight into `sending/`, outside any claim
/// folder, was never looked at again.
#[test]
fn a_loose_file_in_sending_goes_back_to_incoming_and_is_sent() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    fs::write(spool.dir(State::Sending).join("loose.json"), b"{}").unwrap();
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/")]),
        MINUTE,
    )
    .assert_success();
    assert_eq!(rx.count(), 1);
    assert_eq!(spool.count(State::Done), 1, "{:?}", spool.census());
    assert_eq!(fs::read_dir(spool.dir(State::Sending)).unwrap().count(), 0);
}

/// A folder in `sending/` that was never a claim folder (no `.lock`) is
/// unowned: its files go back to `incoming/`. A folder inside it is not a
/// spool file and is left where it is, never deleted.
#[test]
fn a_lockless_folder_in_sending_is_recovered_and_its_subfolders_kept() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let odd = spool.dir(State::Sending).join("not-a-claim");
    fs::create_dir_all(odd.join("sub")).unwrap();
    fs::write(odd.join("x.json"), b"{}").unwrap();
    fs::write(odd.join("sub").join("y.json"), b"{}").unwrap();
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/")]),
        MINUTE,
    )
    .assert_success();
    assert_eq!(rx.count(), 1);
    assert!(
        odd.join("sub").join("y.json").exists(),
        "a folder is never deleted"
    );
    assert_eq!(fs::read_dir(spool.dir(State::Incoming)).unwrap().count(), 0);
}

/// A symlink in `sending/` is not followed: recovery must not read another
/// folder through it and move that folder's files into the spool.
#[test]
fn a_symlink_in_sending_is_not_followed() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let outside = spool.side("outside");
    fs::write(outside.join("private.json"), b"{}").unwrap();
    std::os::unix::fs::symlink(&outside, spool.dir(State::Sending).join("link")).unwrap();
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/")]),
        MINUTE,
    )
    .assert_success();
    assert!(outside.join("private.json").exists(), "left where it was");
    assert_eq!(rx.count(), 0);
}
