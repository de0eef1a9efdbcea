//! Defects found in earlier rounds outside the fault catalogue's families
//! (the catalogue, `bad_input`, keeps its own defect cases beside the faults
//! they belong to), each failing on the code as it was before the fix.
//!
//! One naming convention for every regression test, here and in the
//! behaviour files: `issue_N_ITEM_` (or `issue_N_` for a whole report), the
//! report and item that found the defect, then the behaviour the test
//! holds, as any test is named: `issue_13_10_a_zero_timeout_is_refused`. A
//! defect found without a report is named by its behaviour alone; its
//! commit says what it was.

use std::time::Duration;

use spoolpost_protocol::spool::{ClaimFolder, Spool, State};
use spoolpost_tests::harness::*;

use spoolpost_tests::receiver::{Receiver, Reply};

use crate::reporting::{json, put_aged, routes};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn issue_13_11_a_mistyped_spool_is_exit_74_for_the_reporter_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    let commands: [&[&str]; 5] = [
        &["--fail-if", "backlog_files > 100"],
        &["--format", "json"],
        &["hold", "orders"],
        &["release", "orders"],
        &["requeue", "--all"],
    ];
    for args in commands {
        let out = run(
            spoolpost_tests::harness::command("reporter")
                .arg("--spool")
                .arg(&typo)
                .args(args),
            MINUTE,
        );
        assert_eq!(out.status.code(), Some(74), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(path_str(&typo)) && out.stderr.contains("not a spool"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
}

#[test]
fn issue_13_11_a_read_only_spool_works_for_every_read_only_reporter_command() {
    use spoolpost_tests::system::*;
    let spool = TestSpool::new();
    let cfg = routes(&spool, "http://127.0.0.1:9");
    put_aged(&spool, State::Incoming, "orders-1", 10, MINUTE);
    put_aged(&spool, State::Error, "audit-1", 10, MINUTE);
    let events = spool.side("events").join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let out_dir = spool.side("out");
    open_path_to_others(&spool.root.join("incoming"));
    open_path_to_others(&cfg);
    open_path_to_others(&events);
    remove_write_permission(&spool.root);
    std::fs::set_permissions(
        &out_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let prom = out_dir.join("spoolpost.prom");
    let commands: [Vec<&str>; 6] = [
        vec![],
        vec!["--format", "json"],
        vec!["--format", "prometheus"],
        vec!["--fail-if", "backlog_files > 100"],
        vec!["--events", path_str(&events)],
        vec!["--format", "prometheus", "--output", path_str(&prom)],
    ];
    for args in commands {
        let out = run(
            &mut as_nobody(reporter(&spool).arg("--config").arg(&cfg).args(&args)),
            MINUTE,
        );
        out.assert_success();
        if args.is_empty() {
            assert!(out.stdout.contains("orders"), "{}", out.stdout);
        }
    }
    assert!(
        std::fs::read_to_string(&prom)
            .unwrap()
            .contains("spoolpost_files")
    );
    // Acting on the spool needs write access: a clear 74, nothing half done.
    let out = run(
        &mut as_nobody(reporter(&spool).args(["requeue", "--all"])),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
    // With the link + unlink fallback (SPOOLPOST_RENAME=link), Linux's
    // protected_hardlinks refuses the link first: EPERM, not EACCES.
    assert!(
        out.stderr.contains("ermission denied") || out.stderr.contains("not permitted"),
        "{}",
        out.stderr
    );
    assert_eq!(spool.count(State::Error), 1);
}

#[test]
fn issue_13_8_entries_no_program_handles_are_counted_and_shown() {
    let spool = TestSpool::new();
    let live = ClaimFolder::create(&Spool::open(&spool.root).unwrap()).unwrap();
    std::fs::write(
        live.path().join("orders-9~sp.k0123456789abcdef01234567.t1"),
        b"x",
    )
    .unwrap();
    spool.put("orders-1", b"x");
    std::fs::write(spool.dir(State::Incoming).join(".dot.json"), b"x").unwrap();
    std::fs::write(spool.dir(State::Sending).join("loose.json"), b"x").unwrap();
    std::fs::create_dir(spool.dir(State::Done).join("sub")).unwrap();
    std::fs::write(spool.root.join("stray.json"), b"x").unwrap();
    std::fs::create_dir_all(spool.root.join("hold")).unwrap();
    std::fs::write(spool.root.join("hold").join("a\nb"), b"").unwrap();

    let out = run(reporter(&spool).args(["--format", "json"]), MINUTE);
    out.assert_success();
    let report = json(&out);
    assert_eq!(
        report["unexpected"]["entries"], 5,
        "{:#}",
        report["unexpected"]
    );
    let examples = report["unexpected"]["examples"].to_string();
    for e in [
        "incoming/.dot.json",
        "sending/loose.json",
        "done/sub",
        "stray.json",
        "hold/a\\\\nb",
    ] {
        assert!(examples.contains(e), "{e} in {examples}");
    }
    // The backlog still counts what the programs do handle, and a hold
    // that no receiver can have is not shown as one.
    assert_eq!(report["states"]["incoming"]["files"], 1);
    assert_eq!(report["states"]["sending"]["files"], 1);
    assert!(
        report["receivers"].get("a\nb").is_none(),
        "{:#}",
        report["receivers"]
    );

    let table = run(&mut reporter(&spool), MINUTE);
    let row = table
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("unexpected"));
    assert!(row.is_some_and(|r| r.contains('5')), "{}", table.stdout);
    assert!(table.stdout.contains("e.g. "), "{}", table.stdout);
    assert!(
        table.stdout.lines().all(|l| !l.starts_with('b')),
        "a name broke the table:\n{}",
        table.stdout
    );

    let prom = run(reporter(&spool).args(["--format", "prometheus"]), MINUTE);
    assert!(
        prom.stdout.contains("\nspoolpost_unexpected_entries 5\n"),
        "{}",
        prom.stdout
    );

    let check = run(
        reporter(&spool).args(["--fail-if", "unexpected > 0"]),
        MINUTE,
    );
    assert_eq!(check.status.code(), Some(3), "{}", check.stderr);
    assert!(
        check.stderr.contains("unexpected > 0 (now 5)"),
        "{}",
        check.stderr
    );
    drop(live);
}

#[test]
fn issue_13_hold_of_a_name_that_cannot_be_a_receiver_is_bad_input() {
    let spool = TestSpool::new();
    for name in ["../x", "a\nb", ".x", "a/b", ""] {
        let out = run(reporter(&spool).args(["hold", name]), MINUTE);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("is not a receiver name"),
            "{}",
            out.stderr
        );
        let out = run(reporter(&spool).args(["release", name]), MINUTE);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", out.stderr);
    }
    assert!(!spool.root.join("x").exists());
    assert_eq!(
        std::fs::read_dir(spool.root.join("hold")).map_or(0, |d| d.count()),
        0
    );
}

#[test]
fn issue_13_10_hold_of_a_receiver_the_config_lacks_is_a_config_error() {
    let spool = TestSpool::new();
    let cfg = routes(&spool, "http://127.0.0.1:9");
    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["hold", "ordres"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with(&format!("reporter: {}:6: ", cfg.display()))
            && out.stderr.contains("ordres")
            && out.stderr.contains("orders"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(spool.root.join("hold")).map_or(0, |d| d.count()),
        0
    );
    run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["hold", "orders"]),
        MINUTE,
    )
    .assert_success();
}

#[test]
fn issue_13_the_reporter_s_output_errors_name_the_path() {
    let spool = TestSpool::new();
    let target = spool
        .root
        .parent()
        .unwrap()
        .join("no-such-dir")
        .join("x.prom");
    let out = run(
        reporter(&spool)
            .args(["--format", "prometheus", "--output"])
            .arg(&target),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(74), "{}", out.stderr);
    assert!(out.stderr.contains(path_str(&target)), "{}", out.stderr);
}

/// A name cut to fit (its whole original kept in `names/KEY`) is counted
/// under the receiver its whole name routes to, and `names/` is one of the
/// spool's own folders, not an unexpected entry.
#[test]
fn issue_13_3_a_cut_name_is_routed_by_its_whole_name_and_names_is_expected() {
    let rx = Receiver::start();
    rx.answer(Reply::status(503));
    let spool = TestSpool::new();
    let cfg = ConfigFile::new()
        .sender("backoff_initial = \"1h\"")
        .receiver("orders", &rx.url("/orders"), "")
        .receiver("audit", &rx.url("/audit"), "")
        .route(r#"glob = "*-audit""#, "audit")
        .route_all("orders")
        .write(&spool);
    // Only the tail, which the cut removes, says "audit".
    let name = format!("{}-audit", "x".repeat(249));
    assert_eq!(name.len(), 255);
    spool.put(&name, b"x");
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    )
    .assert_success();
    let waiting = spool.names(State::Incoming);
    assert_eq!(waiting.len(), 1);
    assert!(
        !waiting[0].ends_with(b"-audit"),
        "the name was cut: {waiting:?}"
    );
    assert!(spool.root.join("names").is_dir());

    let report = json(&run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["--format", "json"]),
        MINUTE,
    ));
    assert_eq!(
        report["unexpected"]["entries"], 0,
        "{:#}",
        report["unexpected"]
    );
    assert_eq!(
        report["receivers"]["audit"]["backlog"]["files"], 1,
        "{:#}",
        report["receivers"]
    );
}

/// A FIFO posing as a reason record in `error/` must not hang any reader of
/// the records: the census behind every report and `requeue --class` read
/// them too, not only `list` (which was fixed first). One reader in common,
/// `ReasonRecord::read`, now serves all three.
#[test]
fn a_fifo_named_like_a_reason_record_hangs_no_reporter_command() {
    let spool = TestSpool::new();
    std::fs::write(spool.dir(State::Error).join("stuck.json"), b"x").unwrap();
    nix::unistd::mkfifo(
        &spool.dir(State::Error).join("stuck.json.reason.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let limit = Duration::from_secs(20);
    let report = json(&run(reporter(&spool).args(["--format", "json"]), limit));
    assert_eq!(report["states"]["error"]["files"], 1, "{report:#}");
    let out = run(
        reporter(&spool).args(["requeue", "--class", "rejected"]),
        limit,
    );
    out.assert_success();
    let out = run(reporter(&spool).args(["list", "--state", "error"]), limit);
    out.assert_success();
    assert!(out.stdout.contains("stuck.json"), "{}", out.stdout);
}

#[test]
fn issue_29_4_a_mistyped_spool_is_exit_74_for_sender_and_collector_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("spooool");
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let mut send = spoolpost_tests::harness::command("sender");
    send.arg("--spool")
        .arg(&typo)
        .args(["--url", "http://127.0.0.1:9/in", "--once"]);
    let mut collect = spoolpost_tests::harness::command("collector");
    collect
        .arg("--spool")
        .arg(&typo)
        .arg("--source")
        .arg(&source)
        .arg("--once");
    for cmd in [&mut send, &mut collect] {
        let out = run(cmd, MINUTE);
        assert_eq!(out.status.code(), Some(74), "{cmd:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(path_str(&typo)) && out.stderr.contains("--create-spool"),
            "{cmd:?}: {}",
            out.stderr
        );
        assert!(!typo.exists(), "{cmd:?} created {}", typo.display());
    }
}

#[test]
fn issue_29_4_create_spool_makes_a_new_spool_from_the_flag_or_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = run(
        spoolpost_tests::harness::command("sender")
            .arg("--spool")
            .arg(&a)
            .args(["--url", "http://127.0.0.1:9/in", "--once", "--create-spool"]),
        MINUTE,
    );
    out.assert_success();
    assert!(a.join("incoming").is_dir());
    let cfg = dir.path().join("spoolpost.toml");
    std::fs::write(
        &cfg,
        format!("spool = {:?}\ncreate_spool = true\n", path_str(&b)),
    )
    .unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let out = run(
        spoolpost_tests::harness::command("collector")
            .arg("--config")
            .arg(&cfg)
            .arg("--source")
            .arg(&source)
            .arg("--once"),
        MINUTE,
    );
    out.assert_success();
    assert!(b.join("incoming").is_dir());
}

#[test]
fn issue_29_4_a_one_shot_collector_with_a_missing_source_is_exit_78() {
    let spool = TestSpool::new();
    let nosuch = spool.side("x").join("nosuch");
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(&nosuch)
            .args(["--once", "--settle", "0s"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
    assert!(out.stderr.contains(path_str(&nosuch)), "{}", out.stderr);
    assert!(!out.stderr.contains("keep looking"), "{}", out.stderr);
}

#[test]
fn issue_29_6_latency_ms_in_event_lines_is_whole_microseconds() {
    let spool = TestSpool::new();
    for i in 0..30 {
        spool.put(format!("f{i}.log"), b"x\n");
    }
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let out = run(
        sender(&spool).args(["--url", &receiver.url("/in"), "--once", "--events", "-"]),
        MINUTE,
    );
    out.assert_success();
    let mut seen = 0;
    for line in out.stdout.lines() {
        let Some(at) = line.find("\"latency_ms\":") else {
            continue;
        };
        let value: String = line[at + 13..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        seen += 1;
        let decimals = value.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "float noise: {value} in {line}");
    }
    assert_eq!(seen, 30, "{}", out.stdout);
}

#[test]
fn issue_29_6_unrouted_files_get_one_warning_per_batch_not_one_each() {
    let spool = TestSpool::new();
    let out = crate::support::setups::unrouted_run(&spool, 30);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("moved to error/"))
        .collect();
    // One line for the batch, saying how many, not one (or two) per file.
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("files=30"), "{}", warnings[0]);
    // Every file still has its event line.
    assert_eq!(out.stdout.matches("\"event\":\"rejected\"").count(), 30);
}
