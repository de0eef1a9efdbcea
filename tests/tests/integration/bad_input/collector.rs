//! The collector under faults: killed at each step of a copy, several
//! instances on one source, sources that are part of the spool, and what a
//! copy across filesystems must keep.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::Receiver;

use super::names::{foreign_source, keys_by_name};

const MINUTE: Duration = Duration::from_secs(60);

/// Issue 18: a collector killed after its copy entered `incoming/` but
/// before the source was removed copied the file again under a new key.
#[test]
fn issue_18_a_collector_killed_at_any_step_of_a_copy_delivers_each_file_under_one_key() {
    for step in ["after-claim", "after-copy", "after-admit"] {
        let rx = Receiver::start();
        let spool = TestSpool::new();
        let src = foreign_source(&spool);
        let names: Vec<String> = (0..3).map(|i| format!("{step}-{i}.json")).collect();
        for n in &names {
            std::fs::write(src.path().join(n), n).unwrap();
        }
        let killed = run(
            collector(&spool)
                .arg("--source")
                .arg(src.path())
                .args(["--once", "--settle", "0s"])
                .env("SPOOLPOST_TEST_CRASH_AT", step),
            MINUTE,
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&killed.status),
            Some(9),
            "{step}: the collector raised SIGKILL on itself"
        );
        // The next run finishes the job, and a sender delivers everything.
        run(
            collector(&spool)
                .arg("--source")
                .arg(src.path())
                .args(["--once", "--settle", "0s"]),
            MINUTE,
        )
        .assert_success();
        run(
            sender(&spool).args(["--once", "--url", &rx.url("/in")]),
            MINUTE,
        )
        .assert_success();
        let got = keys_by_name(&rx);
        assert_eq!(
            got.len(),
            names.len(),
            "{step}: every file arrives: {got:?}"
        );
        for (name, keys) in &got {
            assert_eq!(
                keys.len(),
                1,
                "{step}: {} under one key",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(
            spool.count(State::Done),
            names.len(),
            "{step}: no second copy: {:?}",
            spool.census()
        );
        assert_eq!(std::fs::read_dir(src.path()).unwrap().count(), 0, "{step}");
    }
}

fn collectors_share_a_foreign_source(instances: usize) {
    let spool = TestSpool::new();
    let src = foreign_source(&spool);
    let total = 3000;
    for i in 0..total {
        std::fs::write(src.path().join(format!("f{i:05}.json")), format!("{i}")).unwrap();
    }
    let running: Vec<_> = (0..instances)
        .map(|_| {
            spawn(
                collector(&spool)
                    .arg("--source")
                    .arg(src.path())
                    .args(["--once", "--settle", "0s"]),
            )
        })
        .collect();
    for r in running {
        r.wait(MINUTE).assert_success();
    }
    let names = spool.names(State::Incoming);
    let with_uniq = names
        .iter()
        .filter(|n| {
            spoolpost_protocol::name::SpoolName::parse(OsStr::from_bytes(n))
                .uniq
                .is_some()
        })
        .count();
    assert_eq!(
        (names.len(), with_uniq),
        (total, 0),
        "{instances} collectors: exactly one copy of each"
    );
    let left: Vec<_> = std::fs::read_dir(src.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing left in the source: {left:?}");
}

/// Issue 13.2: two collectors on one source across filesystems duplicated.
#[test]
fn issue_13_2_two_collectors_on_one_foreign_source_copy_each_file_once() {
    collectors_share_a_foreign_source(2);
}

#[test]
fn issue_13_2_four_collectors_on_one_foreign_source_copy_each_file_once() {
    collectors_share_a_foreign_source(4);
}

/// Issue 13.6: a copy across filesystems arrived as 0644 whatever the source.
#[test]
fn issue_13_6_a_copy_across_filesystems_keeps_mode_and_owner() {
    let spool = TestSpool::new();
    let src = foreign_source(&spool);
    let path = src.path().join("secret.json");
    std::fs::write(&path, "s").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    if root {
        std::os::unix::fs::chown(&path, Some(4321), Some(8765)).unwrap();
    }
    run(
        collector(&spool)
            .arg("--source")
            .arg(src.path())
            .args(["--once", "--settle", "0s"]),
        MINUTE,
    )
    .assert_success();
    let meta = std::fs::metadata(spool.find(State::Incoming, "secret.json")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (4321, 8765));
    }
}

/// Issue 13.9: a source inside the spool renamed files onto themselves
/// forever, the name growing each time.
#[test]
fn issue_13_9_a_source_that_is_or_is_inside_the_spool_is_refused_at_start() {
    let spool = TestSpool::new();
    let outside = spool.side("src");
    for (source, recursive) in [
        (spool.dir(State::Incoming), false),
        (spool.root.clone(), false),
        (spool.root.join("tmp/../incoming"), false),
        (spool.root.join("not-yet/sub"), false),
        (spool.root.parent().unwrap().to_path_buf(), true),
    ] {
        let mut cmd = collector(&spool);
        cmd.arg("--source")
            .arg(&source)
            .args(["--once", "--settle", "0s"]);
        if recursive {
            cmd.arg("--recursive");
        }
        let out = run(&mut cmd, MINUTE);
        assert_eq!(out.status.code(), Some(78), "{source:?}: {}", out.stderr);
        assert!(out.stderr.contains("spool"), "{}", out.stderr);
    }
    // A sibling folder, or a non-recursive parent, is fine.
    std::fs::write(outside.join("ok.json"), "x").unwrap();
    for source in [outside.clone(), spool.root.parent().unwrap().to_path_buf()] {
        run(
            collector(&spool)
                .arg("--source")
                .arg(&source)
                .args(["--once", "--settle", "0s"]),
            MINUTE,
        )
        .assert_success();
    }
    assert_eq!(spool.count(State::Incoming), 1);
}

/// Runs `collector --stdin` with `paths` (one per line) on its input.
fn collect_from_stdin(
    spool: &TestSpool,
    paths: &[&std::path::Path],
    env: &[(&str, &str)],
) -> Finished {
    use std::io::Write;
    let mut cmd = collector(spool);
    cmd.arg("--stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = Vec::new();
    for p in paths {
        input.extend_from_slice(p.as_os_str().as_bytes());
        input.push(b'\n');
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_rss_kib: 0,
    }
}

/// A regression: a `--stdin` collector killed mid-copy left the file
/// in its claim folder beside the source, and only a collector scanning that
/// folder would ever take it over; a host that feeds collectors from `find`
/// alone stranded it for good.
#[test]
fn a_stdin_collector_takes_over_a_dead_collector_s_claim_in_the_folders_it_is_given() {
    let spool = TestSpool::new();
    let src = foreign_source(&spool);
    let stranded = src.path().join("stranded.json");
    std::fs::write(&stranded, "stranded").unwrap();
    let killed = collect_from_stdin(
        &spool,
        &[&stranded],
        &[("SPOOLPOST_TEST_CRASH_AT", "after-claim")],
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "killed at the crash point: {}",
        killed.stderr
    );
    assert!(!stranded.exists(), "claimed into the claim folder");

    let next = src.path().join("next.json");
    std::fs::write(&next, "next").unwrap();
    collect_from_stdin(&spool, &[&next], &[]).assert_success();
    let mut got: Vec<Vec<u8>> = spool
        .names(State::Incoming)
        .into_iter()
        .map(|n| std::fs::read(spool.dir(State::Incoming).join(OsStr::from_bytes(&n))).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, [b"next".to_vec(), b"stranded".to_vec()]);
    let left: Vec<_> = std::fs::read_dir(src.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "the dead claim folder is gone: {left:?}");
}

/// Issue 27, defect 1: `collector --stdin` took files from inside the spool
/// (`done/`, `error/`, `incoming/`, a live sender's `sending/ID/`) again under
/// new keys, with exit 0. Each such path, however it is spelt (directly,
/// relative, through `..`, through a symlinked folder), is refused, named on
/// stderr and counted; the other paths are still taken; the run exits 78, as
/// `--source` inside the spool does.
#[test]
fn issue_27_stdin_refuses_every_path_inside_the_spool_however_spelt() {
    use super::super::support::dead_claim::{key, kill, live_claim};
    use std::io::Write;
    use std::path::PathBuf;
    let spool = TestSpool::new();
    let src = foreign_source(&spool);
    let name = |n: u32| format!("f{n}.json~sp.k{}", key(n));
    let done = spool.dir(State::Done).join(name(1));
    let error = spool.dir(State::Error).join(name(2));
    let incoming = spool.dir(State::Incoming).join(name(3));
    for (p, body) in [(&done, "done"), (&error, "error"), (&incoming, "incoming")] {
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(
        spool.dir(State::Error).join(format!("{}.reason", name(2))),
        "{}",
    )
    .unwrap();
    let (claim, owner) = live_claim(&spool.root, "live", &[(name(4), b"claimed".to_vec())]);
    let claimed = claim.join(name(4));
    // The same files by other spellings.
    let side = spool.side("side");
    let link = side.join("spool-link");
    std::os::unix::fs::symlink(&spool.root, &link).unwrap();
    let via_link = link.join("done").join(name(1));
    let via_dotdot = side.join("..").join("spool").join("error").join(name(2));
    let relative = PathBuf::from("spool").join("incoming").join(name(3));
    // And one file that is the caller's to give.
    let outside = src.path().join("outside.json");
    std::fs::write(&outside, "outside").unwrap();
    let refused: Vec<PathBuf> = vec![
        done.clone(),
        error.clone(),
        incoming.clone(),
        claimed.clone(),
        via_link,
        via_dotdot,
        relative,
    ];
    let before = spool.census();

    let mut cmd = collector(&spool);
    cmd.arg("--stdin")
        .current_dir(spool.root.parent().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = Vec::new();
    for p in refused.iter().chain([&outside]) {
        input.extend_from_slice(p.as_os_str().as_bytes());
        input.push(b'\n');
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    kill(owner);

    assert_eq!(out.status.code(), Some(78), "stderr:\n{stderr}");
    for p in &refused {
        assert!(
            stderr.contains(&p.display().to_string()),
            "{} is not named on stderr:\n{stderr}",
            p.display()
        );
    }
    assert!(stderr.contains("7 path(s) refused"), "counted:\n{stderr}");
    for p in [&done, &error, &incoming, &claimed] {
        assert!(p.exists(), "{} was moved", p.display());
    }
    let mut after = before.clone();
    *after.get_mut("incoming").unwrap() += 1;
    assert_eq!(spool.census(), after, "only the outside file entered");
    assert!(!outside.exists(), "the outside file was taken");
}
