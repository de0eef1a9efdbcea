//! The spool protocol's conformance suite: checks a sender implementation
//! against `docs/spool.md` ("Rules for implementations") and nothing else.
//!
//! ```sh
//! cargo test -p spoolpost-tests --test integration conformance::                    # the project's sender
//! SPOOLPOST_CONFORMANCE_SENDER='python3 my_sender.py' \
//!     cargo test -p spoolpost-tests --test integration conformance::                # any other
//! ```
//!
//! The implementation is run only through the documented interface:
//! `CMD --spool DIR --url URL [--once]`, SIGTERM, SIGKILL and its exit
//! status, against a real HTTP receiver on 127.0.0.1. What is checked is
//! only what the document promises: where files go, what their names say
//! (key, first attempt, attempts, reason), the mtime of a waiting file,
//! the headers and reason records, and what happens to claim folders of dead
//! instances of any implementation (built here by hand: a real process holds
//! the flock and is then killed). Names are parsed here from the document's
//! grammar, not with the project's code.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

use crate::support::dead_claim::{key, kill, live_claim};

const LIMIT: Duration = Duration::from_secs(60);

/// The implementation under test, with `--spool` set.
fn implementation(spool: &TestSpool) -> Command {
    let mut cmd = match std::env::var("SPOOLPOST_CONFORMANCE_SENDER") {
        Ok(line) if !line.trim().is_empty() => {
            let mut words = line.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words);
            cmd
        }
        _ => command("sender"),
    };
    cmd.arg("--spool").arg(&spool.root);
    cmd
}

fn once(spool: &TestSpool, rx: &Receiver) -> Finished {
    let out = run(
        implementation(spool).args(["--url", &rx.url("/in"), "--once"]),
        LIMIT,
    );
    out.assert_success();
    out
}

/// A spool name taken apart by the grammar in docs/spool.md.
#[derive(Debug, Default, PartialEq)]
struct Name {
    original: Vec<u8>,
    key: Option<String>,
    uniq: Option<String>,
    t: Option<u64>,
    a: u32,
    r: Option<String>,
}

fn parse(name: &[u8]) -> Name {
    let whole = Name {
        original: name.to_vec(),
        ..Name::default()
    };
    let Some(at) = name.windows(4).rposition(|w| w == b"~sp.") else {
        return whole;
    };
    let Ok(fields) = std::str::from_utf8(&name[at + 4..]) else {
        return whole;
    };
    let mut n = Name {
        original: name[..at].to_vec(),
        ..Name::default()
    };
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let mut order = 0;
    for field in fields.split('.') {
        let (tag, value) = field.split_at(field.len().min(1));
        let rank = "kutar".find(tag).map(|i| i + 1).unwrap_or(99);
        if rank <= order || value.is_empty() {
            return whole;
        }
        order = rank;
        match tag {
            "k" if value.len() == 24 && hex(value) => n.key = Some(value.into()),
            "u" if value.len() <= 8 && hex(value) => n.uniq = Some(value.into()),
            "t" if value.bytes().all(|b| b.is_ascii_digit()) => n.t = value.parse().ok(),
            "a" if value.bytes().all(|b| b.is_ascii_digit()) => match value.parse() {
                Ok(a) => n.a = a,
                Err(_) => return whole,
            },
            "r" if value.len() <= 32
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                n.r = Some(value.into())
            }
            _ => return whole,
        }
    }
    n
}

fn only(spool: &TestSpool, state: State) -> (Vec<u8>, Name) {
    let names = spool.names(state);
    assert_eq!(names.len(), 1, "{state:?}: {names:?}");
    let parsed = parse(&names[0]);
    (names[0].clone(), parsed)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn nothing_left_in_sending(spool: &TestSpool) {
    let left: Vec<_> = fs::read_dir(spool.dir(State::Sending))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "sending/ after exit: {left:?}");
}

/// A first claim gives the file a key and first-attempt time; the request
/// carries the key and the original name; a 2xx moves it to `done/`.
#[test]
fn a_delivered_file_is_in_done_under_its_claimed_name() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let before = unix_now();
    spool.put("orders-1.json", b"{\"n\":1}");
    once(&spool, &rx);
    let (_, done) = only(&spool, State::Done);
    assert_eq!(done.original, b"orders-1.json");
    let key = done.key.expect("a key from the first claim");
    let t = done.t.expect("a first-attempt time from the first claim");
    assert!(t >= before && t <= unix_now(), "t={t}");
    assert_eq!(done.a, 0, "no failed attempt");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("idempotency-key"), Some(key.as_str()));
    assert_eq!(got[0].header("x-filename"), Some("orders-1.json"));
    assert_eq!(got[0].body, b"{\"n\":1}");
    assert_eq!(spool.count(State::Incoming), 0);
    nothing_left_in_sending(&spool);
}

/// A 5xx puts the file back in `incoming/` with one attempt more, its
/// reason, the same key, and the next attempt time (Retry-After) as mtime;
/// it is not tried again before then.
#[test]
fn a_retry_waits_in_incoming_with_its_state_in_the_name_and_mtime() {
    let rx = Receiver::start();
    rx.answer(Reply::status(503).retry_after("30"));
    let spool = TestSpool::new();
    spool.put("r.json", b"{}");
    let before = SystemTime::now();
    once(&spool, &rx);
    let (name, waiting) = only(&spool, State::Incoming);
    assert_eq!(waiting.a, 1);
    assert_eq!(waiting.r.as_deref(), Some("http-503"));
    assert!(waiting.t.is_some());
    assert_eq!(
        rx.received()[0].header("idempotency-key"),
        waiting.key.as_deref()
    );
    let due = fs::metadata(spool.dir(State::Incoming).join(OsStr::from_bytes(&name)))
        .unwrap()
        .modified()
        .unwrap();
    let wait = due.duration_since(before).unwrap_or_default();
    assert!(
        wait >= Duration::from_secs(29) && wait <= Duration::from_secs(3600),
        "next attempt in {wait:?}"
    );
    rx.answer(Reply::ok());
    once(&spool, &rx);
    assert_eq!(rx.count(), 1, "not tried before its time");
    nothing_left_in_sending(&spool);
}

/// A 4xx moves the file to `error/` beside its reason record.
#[test]
fn a_rejected_file_is_in_error_with_its_reason_record() {
    let rx = Receiver::start();
    rx.answer(Reply::status(422).body("field x is missing"));
    let spool = TestSpool::new();
    spool.put("bad.json", b"{}");
    once(&spool, &rx);
    let (name, rejected) = only(&spool, State::Error);
    let mut record_name = name.clone();
    record_name.extend_from_slice(b".reason.json");
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(
            spool
                .dir(State::Error)
                .join(OsStr::from_bytes(&record_name)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["class"], "rejected");
    assert_eq!(record["status"], 422);
    assert_eq!(record["file"], "bad.json");
    assert_eq!(record["key"].as_str(), rejected.key.as_deref());
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["body"], "field x is missing");
    assert_eq!(
        fs::read_dir(spool.dir(State::Error)).unwrap().count(),
        2,
        "data and record only"
    );
    nothing_left_in_sending(&spool);
}

/// A claim folder of a dead instance (of any implementation) goes back to
/// `incoming/` under its names: key and attempts kept, so the resend
/// carries the same key. A live one's is left alone.
#[test]
fn a_dead_instance_s_claims_are_sent_with_their_keys_and_a_live_one_s_kept() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let files = |tag: &str, n: u32| -> Vec<(String, Vec<u8>)> {
        (0..2)
            .map(|i| {
                (
                    format!("{tag}{i}.json~sp.k{}.t1795382151.a1.rhttp-503", key(n + i)),
                    b"{}".to_vec(),
                )
            })
            .collect()
    };
    let (dead_dir, dead) = live_claim(&spool.root, "1-other-impl", &files("dead", 0));
    kill(dead);
    let (live_dir, live) = live_claim(&spool.root, "2-other-impl", &files("live", 10));
    once(&spool, &rx);
    assert!(!dead_dir.exists(), "the dead claim folder is gone");
    assert_eq!(
        fs::read_dir(&live_dir).unwrap().count(),
        3,
        "live: untouched"
    );
    let sent: BTreeSet<_> = rx
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(sent, BTreeSet::from([key(0), key(1)]));
    for name in spool.names(State::Done) {
        let done = parse(&name);
        assert_eq!(done.a, 1, "the interrupted attempt is not counted");
        assert_eq!(done.t, Some(1795382151));
    }
    kill(live);
}

/// A running instance looks for dead claim folders every 5 seconds.
#[test]
fn a_running_instance_recovers_a_claim_folder_that_dies_within_the_interval() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let instance = spawn(implementation(&spool).args(["--url", &rx.url("/in")]));
    spool.put("first.json", b"{}");
    assert!(rx.wait_for(1, LIMIT), "the instance is running");
    let name = format!("late.json~sp.k{}.t1795382151", key(50));
    let (dir, owner) = live_claim(&spool.root, "5-other-impl", &[(name, b"{}".to_vec())]);
    kill(owner);
    let died = std::time::Instant::now();
    let recovered = eventually(Duration::from_secs(10), || rx.count() == 2);
    let took = died.elapsed();
    instance.signal(Signal::SIGTERM);
    instance.wait(LIMIT).assert_success();
    assert!(recovered && !dir.exists(), "not recovered");
    assert!(
        took < Duration::from_millis(6500),
        "recovered after {took:?}"
    );
    assert_eq!(
        rx.received()[1].header("idempotency-key"),
        Some(key(50).as_str())
    );
}

/// A claim folder whose start-up was cut short (in `tmp/`, lock free) and a
/// file put loose into `sending/` never stop an instance, and the loose
/// file is sent.
#[test]
fn leftovers_in_tmp_and_sending_do_not_stop_an_instance() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let half_built = spool.root.join("tmp").join("claim-3-cutshort");
    fs::create_dir(&half_built).unwrap();
    fs::write(spool.dir(State::Sending).join("loose.json"), b"{}").unwrap();
    once(&spool, &rx);
    assert_eq!(rx.count(), 1);
    assert_eq!(parse(&only(&spool, State::Done).0).original, b"loose.json");
    nothing_left_in_sending(&spool);
}

/// A taken name in `done/` or `error/` is never overwritten: the arriving
/// file gets a `u` field. In `error/` the data name takes the suffix even
/// when only the record's name is taken, so the two stay paired.
#[test]
fn clashes_add_a_uniq_field_and_never_overwrite() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let done_name = format!("c.json~sp.k{}.t1795382151", key(20));
    fs::write(spool.dir(State::Done).join(&done_name), b"older").unwrap();
    spool.put(&done_name, b"newer");
    once(&spool, &rx);
    rx.answer(Reply::status(400));
    let err_name = format!("rej.json~sp.k{}.t1795382151", key(21));
    fs::write(
        spool
            .dir(State::Error)
            .join(format!("{err_name}.reason.json")),
        b"{}",
    )
    .unwrap();
    spool.put(&err_name, b"{}");
    once(&spool, &rx);
    let done = spool.names(State::Done);
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(
        fs::read(spool.dir(State::Done).join(&done_name)).unwrap(),
        b"older"
    );
    let clashed = done.iter().find(|n| **n != done_name.as_bytes()).unwrap();
    let clashed = parse(clashed);
    assert!(clashed.uniq.is_some(), "{clashed:?}");
    assert_eq!(clashed.key, Some(key(20)), "key kept");
    let (data, rejected) = only(&spool, State::Error);
    assert!(rejected.uniq.is_some(), "{rejected:?}");
    let mut record = data.clone();
    record.extend_from_slice(b".reason.json");
    assert!(
        spool
            .dir(State::Error)
            .join(OsStr::from_bytes(&record))
            .exists()
    );
    assert_eq!(
        fs::read(
            spool
                .dir(State::Error)
                .join(format!("{err_name}.reason.json"))
        )
        .unwrap(),
        b"{}",
        "the old record is untouched"
    );
}

/// `hold/default` (the receiver's name in `--url` mode) keeps its files in
/// `incoming/` unclaimed and without an attempt; removing it lets them go.
#[test]
fn a_hold_leaves_files_waiting_without_attempts() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    fs::create_dir_all(spool.root.join("hold")).unwrap();
    fs::write(spool.root.join("hold").join("default"), b"").unwrap();
    spool.put("h.json", b"{}");
    once(&spool, &rx);
    assert_eq!(rx.count(), 0);
    assert_eq!(spool.names(State::Incoming), [b"h.json".to_vec()]);
    fs::remove_file(spool.root.join("hold").join("default")).unwrap();
    once(&spool, &rx);
    assert_eq!(rx.count(), 1);
}

/// A requeued file (key, no `t`, `a` or `r`) is sent with its key, and its
/// claim is a first claim: it gets a new first-attempt time.
#[test]
fn a_requeued_file_keeps_its_key_and_starts_afresh() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    spool.put(format!("q.json~sp.k{}", key(30)), b"{}");
    let before = unix_now();
    once(&spool, &rx);
    assert_eq!(
        rx.received()[0].header("idempotency-key"),
        Some(key(30).as_str())
    );
    let done = only(&spool, State::Done).1;
    assert_eq!(done.key, Some(key(30)));
    assert!(done.t.is_some_and(|t| t >= before), "{done:?}");
    assert_eq!(done.a, 0);
}

/// The link+unlink fallback's crash state: one file under two names, in a
/// dead claim folder and in `incoming/`. Both are sent (a duplicate is
/// allowed, a loss is not) and nothing is left behind.
#[test]
fn a_file_left_in_two_places_by_the_fallback_is_sent_not_lost() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let claimed = format!("two.json~sp.k{}.t1795382151", key(40));
    let (dir, owner) = live_claim(
        &spool.root,
        "4-linking",
        &[(claimed.clone(), b"{}".to_vec())],
    );
    fs::hard_link(
        dir.join(&claimed),
        spool.dir(State::Incoming).join("two.json"),
    )
    .unwrap();
    kill(owner);
    once(&spool, &rx);
    let names: BTreeSet<_> = rx
        .received()
        .iter()
        .map(|r| r.header("x-filename").unwrap().to_string())
        .collect();
    assert_eq!(names, BTreeSet::from(["two.json".to_string()]));
    assert!(
        rx.received()
            .iter()
            .any(|r| r.header("idempotency-key") == Some(key(40).as_str()))
    );
    assert_eq!(spool.count(State::Incoming), 0);
    nothing_left_in_sending(&spool);
}

/// Instances on one spool, started together (with the rename fallback
/// forced where the implementation supports `SPOOLPOST_RENAME=link`): each
/// file is sent under one key, none is lost, and SIGTERM ends each cleanly.
#[test]
fn instances_on_one_spool_share_the_work_and_stop_cleanly() {
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), false, 2).unwrap();
    let spool = TestSpool::new();
    let total = 1_000;
    for i in 0..total {
        spool.put(format!("m{i:04}.json"), b"{}");
    }
    let instances: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = implementation(&spool);
            if i % 2 == 1 {
                cmd.env("SPOOLPOST_RENAME", "link");
            }
            spawn(cmd.args(["--url", &rx.url("/in")]))
        })
        .collect();
    assert!(eventually(LIMIT, || spool.count(State::Done) == total));
    for i in &instances {
        i.signal(Signal::SIGTERM);
    }
    for i in instances {
        i.wait(LIMIT).assert_success();
    }
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rx.received() {
        keys.entry(r.header("x-filename").unwrap().into())
            .or_default()
            .insert(r.header("idempotency-key").unwrap().into());
    }
    assert_eq!(keys.len(), total);
    assert!(keys.values().all(|k| k.len() == 1), "a file under two keys");
    nothing_left_in_sending(&spool);
}

/// SIGKILL mid-delivery: the next instance sends what the dead one had
/// claimed, under the keys it had given them.
#[test]
fn after_sigkill_the_next_instance_resends_with_the_same_keys() {
    let rx = Receiver::start();
    rx.answer(Reply::stall(Duration::from_secs(10)));
    let spool = TestSpool::new();
    for i in 0..20 {
        spool.put(format!("k{i:02}.json"), b"{}");
    }
    let victim = spawn(implementation(&spool).args(["--url", &rx.url("/in")]));
    // How many files an implementation claims at once is its own affair
    // (ours starts at a small adaptive limit): one claimed file is enough
    // to see its key reused.
    assert!(
        eventually(LIMIT, || spool.count(State::Sending) >= 1),
        "claimed: {:?}",
        spool.census()
    );
    victim.signal(Signal::SIGKILL);
    victim.wait(LIMIT);
    let claimed: BTreeMap<Vec<u8>, String> = spool
        .names(State::Sending)
        .iter()
        .map(|n| {
            let n = parse(n);
            (n.original, n.key.expect("a claimed file has a key"))
        })
        .collect();
    rx.answer(Reply::ok());
    once(&spool, &rx);
    assert_eq!(spool.count(State::Done), 20, "{:?}", spool.census());
    let sent = rx.received();
    assert_eq!(sent.len(), 20);
    assert!(!claimed.is_empty());
    for r in sent {
        let name = r.header("x-filename").unwrap();
        if let Some(key) = claimed.get(name.as_bytes()) {
            assert_eq!(r.header("idempotency-key"), Some(key.as_str()), "{name}");
        }
    }
    nothing_left_in_sending(&spool);
}

#[test]
fn the_grammar_parser_here_follows_the_document() {
    let n = parse(b"a.json~sp.k3f9c0a1e55d2b7c4e8a09f1d.t1795382151.a2.rhttp-503");
    assert_eq!(n.original, b"a.json");
    assert_eq!(
        (n.t, n.a, n.r.as_deref()),
        (Some(1795382151), 2, Some("http-503"))
    );
    assert_eq!(
        parse(b"x~sp.a1.k0").original,
        b"x~sp.a1.k0",
        "order and form"
    );
}

/// Rule 17: `X-Filename` decodes to the original name, spaces at either end
/// included (HTTP would strip them from a plain header value).
#[test]
fn x_filename_decodes_to_the_original_name_spaces_at_either_end_included() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let names = [" lead.json", "trail.json ", "in side.json", "100%.json"];
    for n in names {
        spool.put(n, n.as_bytes());
    }
    once(&spool, &rx);
    let got: BTreeSet<Vec<u8>> = rx
        .received()
        .iter()
        .map(|r| percent_decode(r.header("x-filename").unwrap()))
        .collect();
    let want: BTreeSet<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
    assert_eq!(
        got, want,
        "rule 17: X-Filename, %XX decoded, must be each file's original name"
    );
}
