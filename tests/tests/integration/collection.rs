//! Collection: the collector takes complete files (settle, close-write,
//! markers) from producers' folders into the spool once each, copies across
//! filesystems without a partial file, filters by name, pauses at its
//! limits, and finds folders created later; run as a real process over real
//! folders.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;

const MINUTE: Duration = Duration::from_secs(60);

fn originals(spool: &TestSpool) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = spool
        .names(State::Incoming)
        .iter()
        .map(|n| {
            SpoolName::parse(OsStr::from_bytes(n))
                .original
                .as_bytes()
                .to_vec()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_slowly_written_file_is_taken_only_when_complete() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    let daemon = spawn(
        collector(&spool)
            .arg("--source")
            .arg(&src)
            .args(["--settle", "1s"]),
    );
    let path = src.join("slow.json");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut written = Vec::new();
    for i in 0..15 {
        let chunk = format!("{{\"line\":{i}}}\n");
        file.write_all(chunk.as_bytes()).unwrap();
        written.extend_from_slice(chunk.as_bytes());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            spool.count(State::Incoming),
            0,
            "taken while still being written (after {i} chunks)"
        );
    }
    drop(file);
    assert!(eventually(Duration::from_secs(10), || spool
        .count(State::Incoming)
        == 1));
    let taken = spool.find(State::Incoming, "slow.json");
    assert_eq!(std::fs::read(taken).unwrap(), written);
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    let events = out.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].bytes_read, written.len() as u64);
    assert_eq!(events[0].source.as_deref(), Some(path.to_str().unwrap()));
}

#[test]
fn a_hundred_thousand_files_all_arrive_once() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    let total = 100_000;
    for i in 0..total {
        std::fs::write(src.join(format!("e{i:06}.json")), format!("{i}")).unwrap();
    }
    let started = Instant::now();
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(&src)
            .args(["--once", "--settle", "0s"]),
        MINUTE * 5,
    );
    out.assert_success();
    eprintln!("collected {total} files in {:?}", started.elapsed());
    let names = originals(&spool);
    assert_eq!(names.len(), total);
    let unique: BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), total, "no duplicates");
    assert_eq!(
        std::fs::read_dir(&src).unwrap().count(),
        0,
        "none left behind"
    );
    assert_eq!(out.events().len(), total);
}

#[test]
fn cross_filesystem_moves_copy_completely_and_a_kill_mid_copy_leaves_no_partial_file() {
    let shm = std::path::Path::new("/dev/shm");
    let spool = TestSpool::new();
    assert_ne!(
        std::fs::metadata(shm).unwrap().dev(),
        std::fs::metadata(&spool.root).unwrap().dev(),
        "this test needs /dev/shm on another filesystem than the temporary folder"
    );
    let src = tempfile::tempdir_in(shm).unwrap();
    let small: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(src.path().join("small.bin"), &small).unwrap();
    run(
        collector(&spool)
            .arg("--source")
            .arg(src.path())
            .args(["--once", "--settle", "0s"]),
        MINUTE,
    )
    .assert_success();
    assert_eq!(
        std::fs::read(spool.find(State::Incoming, "small.bin")).unwrap(),
        small
    );
    assert!(
        !src.path().join("small.bin").exists(),
        "the source is removed after the copy"
    );

    // A large file (sparse in tmpfs, real on disk) and a kill while it is copied.
    let big = src.path().join("big.bin");
    let size: u64 = 2 << 30;
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(50));
    let victim = spawn(
        collector(&spool)
            .arg("--source")
            .arg(src.path())
            .args(["--once", "--settle", "0s"]),
    );
    let copying = eventually(MINUTE, || {
        std::fs::read_dir(spool.root.join("tmp"))
            .unwrap()
            .flatten()
            .any(|d| {
                std::fs::read_dir(d.path())
                    .map(|files| {
                        files.flatten().any(|f| {
                            f.file_name() != ".lock" && f.metadata().is_ok_and(|m| m.len() > 0)
                        })
                    })
                    .unwrap_or(false)
            })
    });
    assert!(copying, "the copy started");
    victim.signal(Signal::SIGKILL);
    victim.wait(MINUTE);
    assert!(
        spool
            .names(State::Incoming)
            .iter()
            .all(|n| !n.starts_with(b"big.bin")),
        "no partial big.bin in incoming/"
    );
    // The source is intact: claimed into the dead collector's claim folder
    // beside it, which the next scan takes over.
    let claimed: Vec<_> = std::fs::read_dir(src.path())
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().as_bytes().starts_with(b".spoolpost-claim-"))
        .map(|d| d.path().join("big.bin"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(claimed.len(), 1, "big.bin is claimed, not lost");
    assert_eq!(
        std::fs::metadata(&claimed[0]).unwrap().len(),
        size,
        "the source is intact"
    );

    // The next run sweeps the partial copy away and takes the file whole.
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(src.path())
            .args(["--once", "--settle", "0s"]),
        MINUTE * 5,
    );
    out.assert_success();
    let taken = spool.find(State::Incoming, "big.bin");
    assert_eq!(std::fs::metadata(&taken).unwrap().len(), size);
    assert!(!big.exists());
    let left: Vec<_> = std::fs::read_dir(src.path()).unwrap().collect();
    assert!(left.is_empty(), "the dead claim folder is gone: {left:?}");
    let leftovers: Vec<_> = std::fs::read_dir(spool.root.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "tmp/ is clean: {leftovers:?}");
    std::fs::remove_file(taken).unwrap();
}

#[test]
fn stdin_takes_nul_separated_paths_with_spaces_and_newlines() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    let names: [&[u8]; 4] = [
        b"plain.json",
        b"with space.json",
        b"with\nnewline.json",
        b"caf\xe9.json",
    ];
    let mut input = Vec::new();
    for name in names {
        let path = src.join(OsStr::from_bytes(name));
        std::fs::write(&path, name).unwrap();
        input.extend_from_slice(path.as_os_str().as_bytes());
        input.push(0);
    }
    input.extend_from_slice(src.join("missing").as_os_str().as_bytes());
    input.push(0);
    let mut child = collector(&spool)
        .args(["--stdin", "-0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    let mut want: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    want.sort();
    assert_eq!(originals(&spool), want);
    for spooled in spool.names(State::Incoming) {
        let original = SpoolName::parse(OsStr::from_bytes(&spooled)).original;
        let body =
            std::fs::read(spool.dir(State::Incoming).join(OsStr::from_bytes(&spooled))).unwrap();
        assert_eq!(body, original.as_bytes(), "each file's content is its own");
    }
}

#[test]
fn same_names_from_two_sources_both_arrive_and_filters_apply() {
    let spool = TestSpool::new();
    let (a, b) = (spool.side("a"), spool.side("b"));
    for (dir, body) in [(&a, "from a"), (&b, "from b")] {
        std::fs::write(dir.join("same.json"), body).unwrap();
        std::fs::write(dir.join("skip.tmp"), "x").unwrap();
        std::fs::write(dir.join(".hidden"), "x").unwrap();
        std::fs::write(dir.join("other.txt"), "x").unwrap();
    }
    std::os::unix::fs::symlink("/etc/hostname", a.join("link.json")).unwrap();
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(&a)
            .arg("--source")
            .arg(&b)
            .args(["--once", "--settle", "0s", "--include", "*.json"]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(
        originals(&spool),
        [b"same.json".to_vec(), b"same.json".to_vec()]
    );
    let bodies: BTreeSet<Vec<u8>> = spool
        .names(State::Incoming)
        .iter()
        .map(|n| std::fs::read(spool.dir(State::Incoming).join(OsStr::from_bytes(n))).unwrap())
        .collect();
    assert_eq!(
        bodies,
        BTreeSet::from([b"from a".to_vec(), b"from b".to_vec()])
    );
    assert!(
        a.join("skip.tmp").exists() && a.join(".hidden").exists() && a.join("other.txt").exists()
    );
    assert!(a.join("link.json").exists(), "symlinks stay");
    assert!(
        out.stderr.contains("symlinks are not followed"),
        "{}",
        out.stderr
    );
}

#[test]
fn marker_files_say_when_a_file_is_complete() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    std::fs::write(src.join("a.json"), "a").unwrap();
    std::fs::write(src.join("b.json"), "b").unwrap();
    std::fs::write(src.join("b.json.ready"), "").unwrap();
    std::fs::write(src.join("gone.json.done"), "").unwrap();
    let cmd = || {
        let mut c = collector(&spool);
        c.arg("--source")
            .arg(&src)
            .args(["--once", "--ready", "marker"]);
        c
    };
    run(&mut cmd(), MINUTE).assert_success();
    assert_eq!(originals(&spool), [b"b.json".to_vec()]);
    assert!(src.join("a.json").exists(), "no marker, not taken");
    assert!(
        !src.join("b.json.ready").exists(),
        "the marker goes with its file"
    );
    assert!(
        !src.join("gone.json.done").exists(),
        "a marker whose file is gone is cleared"
    );
}

#[test]
fn close_write_takes_a_file_as_soon_as_its_writer_closes_it() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    // Polling (SPOOLPOST_WATCH=poll, and off Linux) cannot see the close:
    // there close-write falls back to settle, which this then proves.
    let polling = std::env::var_os("SPOOLPOST_WATCH").is_some_and(|v| v == "poll");
    let settle = if polling { "1s" } else { "1h" };
    // READY=1: the source is watched, so the writer's close is seen.
    let daemon = spawn_ready(
        &spool,
        collector(&spool).arg("--source").arg(&src).args([
            "--ready",
            "close-write",
            "--settle",
            settle,
        ]),
    );
    let mut file = std::fs::File::create(src.join("e.json")).unwrap();
    file.write_all(b"partial").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        spool.count(State::Incoming),
        0,
        "open for writing: not taken"
    );
    file.write_all(b" and complete").unwrap();
    drop(file);
    // With a settle time of an hour, only the close event can explain it.
    assert!(eventually(Duration::from_secs(10), || spool
        .count(State::Incoming)
        == 1));
    assert_eq!(
        std::fs::read(spool.find(State::Incoming, "e.json")).unwrap(),
        b"partial and complete"
    );
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
}

#[test]
fn back_pressure_pauses_at_the_limit_and_says_so_once() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    for i in 0..20 {
        std::fs::write(src.join(format!("{i}.json")), "x").unwrap();
    }
    let out = run(
        collector(&spool).arg("--source").arg(&src).args([
            "--once",
            "--settle",
            "0s",
            "--max-incoming-files",
            "5",
        ]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(spool.count(State::Incoming), 5);
    assert_eq!(
        out.stderr.matches("pausing collection").count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(&src).unwrap().count(), 15);
}

#[test]
fn a_source_folder_created_later_is_picked_up() {
    let spool = TestSpool::new();
    let src = spool.side("parent").join("late");
    let cfg = config(
        &spool,
        &format!(
            "[collector]\nrescan_interval = \"200ms\"\n[[collector.sources]]\npath = \"{}\"\nsettle = \"0s\"\n",
            src.display()
        ),
    );
    // READY=1 comes after the first scan, which found no folder.
    let daemon = spawn_ready(&spool, collector(&spool).arg("--config").arg(&cfg));
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("x.json"), "x").unwrap();
    assert!(eventually(Duration::from_secs(10), || spool
        .count(State::Incoming)
        == 1));
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert!(out.stderr.contains("missing"), "{}", out.stderr);
}

/// Writes `name` in `dir` with its mtime `ahead` of now (a producer whose
/// clock is wrong, or a copy that kept such a stamp).
fn write_stamped_ahead(dir: &std::path::Path, name: &str, ahead: Duration) {
    let path = dir.join(name);
    std::fs::write(&path, name).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() + ahead)
        .unwrap();
}

const TEN_YEARS: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Issue 27, defect 4: a file whose mtime is ahead of the clock stayed at its
/// source for as long, silently (`--once` exited 0). It is judged by its
/// ctime instead, and said once.
#[test]
fn issue_27_a_file_stamped_ten_years_ahead_is_collected_by_once() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    write_stamped_ahead(&src, "future.json", TEN_YEARS);
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(&src)
            .args(["--once", "--settle", "0s"]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(
        originals(&spool),
        vec![b"future.json".to_vec()],
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("ahead of this host's clock").count(),
        1,
        "warned once, with the file:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("future.json"), "{}", out.stderr);
}

/// The same for the long-running collector, with a settle time that still
/// counts (from the ctime): the file is collected, and the warning is said
/// once however many scans see it first.
#[test]
fn issue_27_a_file_stamped_ten_years_ahead_is_collected_by_the_daemon() {
    let spool = TestSpool::new();
    let src = spool.side("src");
    let mut daemon = spawn(
        collector(&spool)
            .arg("--source")
            .arg(&src)
            .args(["--settle", "300ms"]),
    );
    write_stamped_ahead(&src, "future.json", TEN_YEARS);
    write_stamped_ahead(&src, "tomorrow.json", Duration::from_secs(24 * 3600));
    assert!(
        eventually(MINUTE, || spool.count(State::Incoming) == 2),
        "{:?}\n{}",
        spool.census(),
        daemon.stderr_so_far()
    );
    assert!(daemon.child.try_wait().unwrap().is_none());
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    assert_eq!(
        out.stderr.matches("ahead of this host's clock").count(),
        2,
        "once per file:\n{}",
        out.stderr
    );
}
