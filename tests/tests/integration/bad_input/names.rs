//! File names a producer may choose: spaces, newlines, non-UTF-8, a leading
//! `-`, `%`, 255 bytes, reserved `~sp.` suffixes, dot-names.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;

const MINUTE: Duration = Duration::from_secs(60);

/// Every request the receiver got: (X-Filename decoded, Idempotency-Key, path).
pub(crate) fn deliveries(rx: &Receiver) -> Vec<(Vec<u8>, String, String)> {
    rx.received()
        .iter()
        .map(|r| {
            (
                percent_decode(r.header("x-filename").unwrap()),
                r.header("idempotency-key").unwrap().to_string(),
                r.path.clone(),
            )
        })
        .collect()
}

/// The keys each original name arrived under.
pub(crate) fn keys_by_name(rx: &Receiver) -> BTreeMap<Vec<u8>, BTreeSet<String>> {
    let mut map: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for (name, key, _) in deliveries(rx) {
        map.entry(name).or_default().insert(key);
    }
    map
}

fn collect_once(spool: &TestSpool, src: &Path) {
    run(
        collector(spool)
            .arg("--source")
            .arg(src)
            .args(["--once", "--settle", "0s"]),
        MINUTE,
    )
    .assert_success();
}

fn send_once(spool: &TestSpool, rx: &Receiver) {
    run(
        sender(spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    )
    .assert_success();
}

/// A source folder on another filesystem than the spool (tmpfs), so the
/// collector copies rather than renames.
pub(crate) fn foreign_source(spool: &TestSpool) -> tempfile::TempDir {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    assert_ne!(
        std::fs::metadata(shm).unwrap().dev(),
        std::fs::metadata(&spool.root).unwrap().dev(),
        "these tests need /dev/shm on another filesystem than the temporary folder"
    );
    tempfile::tempdir_in(shm).unwrap()
}

fn odd_names() -> Vec<Vec<u8>> {
    vec![
        b"with space.json".to_vec(),
        b"new\nline.json".to_vec(),
        b"caf\xe9-latin1.json".to_vec(),
        b"-leading-dash.json".to_vec(),
        b"100%25-percent%.json".to_vec(),
    ]
}

fn long_names() -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    for len in [200usize, 230, 255] {
        names.push(ascii_name(len, "a"));
        // Multi-byte UTF-8: 'é' is two bytes; end on a full character.
        let mut s = String::new();
        while s.len() + 2 <= len - 5 {
            s.push('é');
        }
        while s.len() < len - 5 {
            s.push('x');
        }
        s.push_str(".json");
        assert_eq!(s.len(), len);
        names.push(s.into_bytes());
    }
    names
}

fn ascii_name(len: usize, fill: &str) -> Vec<u8> {
    let mut s = fill.repeat(len - 5);
    s.push_str(".json");
    s.into_bytes()
}

fn assert_each_delivered_once(rx: &Receiver, names: &[Vec<u8>]) {
    let got = keys_by_name(rx);
    let want: BTreeSet<&Vec<u8>> = names.iter().collect();
    let have: BTreeSet<&Vec<u8>> = got.keys().collect();
    assert_eq!(have, want, "X-Filename is each original name");
    for (name, keys) in &got {
        assert_eq!(
            keys.len(),
            1,
            "{:?} under one key",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn odd_names_from_the_collector_arrive_with_their_own_x_filename() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let src = spool.side("src");
    let names = odd_names();
    for n in &names {
        std::fs::write(src.join(OsStr::from_bytes(n)), n).unwrap();
    }
    collect_once(&spool, &src);
    send_once(&spool, &rx);
    assert_each_delivered_once(&rx, &names);
    assert_eq!(spool.count(State::Done), names.len());
}

#[test]
fn odd_names_put_straight_into_incoming_arrive_with_their_own_x_filename() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let names = odd_names();
    for n in &names {
        spool.put(OsStr::from_bytes(n), n);
    }
    send_once(&spool, &rx);
    assert_each_delivered_once(&rx, &names);
}

/// Issue 13.3: names too long for the spool's suffixes were stuck forever.
#[test]
fn issue_13_3_long_names_put_straight_into_incoming_are_delivered_under_their_full_name() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let names = long_names();
    for n in &names {
        spool.put(OsStr::from_bytes(n), n);
    }
    send_once(&spool, &rx);
    assert_each_delivered_once(&rx, &names);
    assert_eq!(spool.count(State::Incoming), 0, "{:?}", spool.census());
}

#[test]
fn issue_13_3_long_names_collected_on_one_filesystem_are_delivered_under_their_full_name() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let src = spool.side("src");
    let names = long_names();
    for n in &names {
        std::fs::write(src.join(OsStr::from_bytes(n)), n).unwrap();
    }
    collect_once(&spool, &src);
    assert_eq!(std::fs::read_dir(&src).unwrap().count(), 0, "all collected");
    send_once(&spool, &rx);
    assert_each_delivered_once(&rx, &names);
}

#[test]
fn issue_13_3_long_names_copied_from_another_filesystem_are_delivered_under_their_full_name() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let src = foreign_source(&spool);
    let names = long_names();
    for n in &names {
        std::fs::write(src.path().join(OsStr::from_bytes(n)), n).unwrap();
    }
    collect_once(&spool, src.path());
    send_once(&spool, &rx);
    assert_each_delivered_once(&rx, &names);
    // The body is the file's, so the name the receiver saw belongs to it.
    for r in rx.received() {
        assert_eq!(percent_decode(r.header("x-filename").unwrap()), r.body);
    }
}

#[test]
fn issue_13_3_a_long_name_is_routed_on_its_full_name_and_survives_retries() {
    let rx = Receiver::start();
    rx.script("/tail", [spoolpost_tests::receiver::Reply::status(503)]);
    let spool = TestSpool::new();
    let cfg = ConfigFile::new()
        .sender("backoff_initial = \"100ms\"\nbackoff_max = \"200ms\"")
        .receiver("tail", &rx.url("/tail"), "")
        .receiver("other", &rx.url("/other"), "")
        .route(r#"glob = "*-the-tail-decides.json""#, "tail")
        .route_all("other")
        .write(&spool);
    let mut name = "r".repeat(230);
    name.push_str("-the-tail-decides.json");
    assert_eq!(name.len(), 252);
    spool.put(&name, b"x");
    for _ in 0..50 {
        run(
            sender(&spool).arg("--once").arg("--config").arg(&cfg),
            MINUTE,
        )
        .assert_success();
        if spool.count(State::Done) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = deliveries(&rx);
    assert_eq!(got.len(), 2, "one 503, then delivered: {got:?}");
    for (n, _, path) in &got {
        assert_eq!(n, name.as_bytes());
        assert_eq!(path, "/tail");
    }
    assert_eq!(got[0].1, got[1].1, "the retry keeps the key");
}

/// Issue 13.5: a producer's name ending in a well-formed suffix chose the key.
#[test]
fn issue_13_5_a_name_with_a_key_suffix_does_not_choose_the_key() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let name = "inj1.json~sp.k0123456789abcdef01234567";
    for i in 0..3 {
        let src = spool.side(&format!("src{i}"));
        std::fs::write(src.join(name), format!("body {i}")).unwrap();
        collect_once(&spool, &src);
    }
    send_once(&spool, &rx);
    let got = deliveries(&rx);
    assert_eq!(got.len(), 3);
    let keys: BTreeSet<&String> = got.iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys.len(), 3, "three files, three keys: {got:?}");
    assert!(!keys.contains(&"0123456789abcdef01234567".to_string()));
    for (n, _, _) in &got {
        assert_eq!(
            n,
            name.as_bytes(),
            "X-Filename is the producer's whole name"
        );
    }
}

#[test]
fn issue_13_5_a_name_with_retry_state_does_not_expire_a_collected_file() {
    let rx = Receiver::start();
    rx.script("/in", [spoolpost_tests::receiver::Reply::status(503)]);
    let spool = TestSpool::new();
    let src = spool.side("src");
    let name = "exp.json~sp.k0123456789abcdef01234567.t1000000000";
    std::fs::write(src.join(name), "x").unwrap();
    collect_once(&spool, &src);
    let cfg = ConfigFile::to("r", &rx.url("/in"))
        .sender("backoff_initial = \"100ms\"\nbackoff_max = \"100ms\"\nmax_age = \"1h\"")
        .write(&spool);
    for _ in 0..50 {
        run(
            sender(&spool).arg("--once").arg("--config").arg(&cfg),
            MINUTE,
        )
        .assert_success();
        if spool.count(State::Done) + spool.count(State::Error) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(spool.count(State::Done), 1, "{:?}", spool.census());
}

/// Issue 13.5: a waiting file whose mtime lies in the far future (a
/// producer's, or a clock set back) must not be parked past backoff_max.
#[test]
fn issue_13_5_a_future_mtime_does_not_park_a_waiting_file_past_backoff_max() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let name = "late.json~sp.k0123456789abcdef01234567.t1700000000.a1.rhttp-503";
    spool.put(name, b"x");
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(4_070_908_800); // 2099
    std::fs::File::options()
        .write(true)
        .open(spool.dir(State::Incoming).join(name))
        .unwrap()
        .set_modified(far)
        .unwrap();
    let cfg = ConfigFile::to("r", &rx.url("/in"))
        .sender("backoff_max = \"1s\"\nmax_age = \"3650d\"")
        .write(&spool);
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    let delivered = eventually(Duration::from_secs(10), || spool.count(State::Done) == 1);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait(MINUTE);
    assert!(delivered, "parked: {:?}", spool.census());
}

/// Issue 13.8: `--exclude` replaced the default `.*`, so dot-names entered
/// `incoming/`, where the sender never looks.
#[test]
fn issue_13_8_a_dot_name_is_never_admitted_as_is_whatever_the_excludes() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    std::fs::write(src.join(".dot.json"), "hidden").unwrap();
    std::fs::write(src.join("seen.json"), "seen").unwrap();
    run(
        collector(&spool).arg("--source").arg(&src).args([
            "--once",
            "--settle",
            "0s",
            "--exclude",
            "*.tmp",
        ]),
        MINUTE,
    )
    .assert_success();
    let all: Vec<_> = std::fs::read_dir(spool.dir(State::Incoming))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(!all[0].as_bytes().starts_with(b"."), "{all:?}");
    assert!(src.join(".dot.json").exists(), "left to its producer");
}

/// Issue 27.7: HTTP drops the white space around a header value, so
/// `" a.json"` arrived as `"a.json"` and two files collided at the
/// receiver. Each of these must arrive under its own name.
#[test]
fn issue_27_7_leading_and_trailing_spaces_survive_in_x_filename() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let names: Vec<Vec<u8>> = [" a.json", "a.json", "a.json ", "  a.json  ", "a b.json"]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    for n in &names {
        spool.put(OsStr::from_bytes(n), n);
    }
    send_once(&spool, &rx);
    assert_each_delivered_once(&rx, &names);
    for r in rx.received() {
        let raw = r.header("x-filename").unwrap();
        assert_eq!(percent_decode(raw), r.body, "the name is the file's own");
        // Inner spaces stay readable; only the ones HTTP would drop are
        // encoded.
        if r.body == b"a b.json" {
            assert_eq!(raw, "a b.json");
        }
    }
}
