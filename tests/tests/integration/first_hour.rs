//! An operator's first hour, as found by running the programs the way the
//! README shows: numbers one program prints that another contradicts.
//! Each test is a defect found that way, on real processes.

use std::process::Command;
use std::time::Duration;

use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` on a pseudo-terminal (util-linux `script`), as a person
/// would, and returns what the terminal showed, escape codes removed.
fn on_a_terminal(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let line = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    let finished = run(&mut script, LIMIT);
    finished.assert_success();
    strip_escapes(&finished.stdout)
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Runs a command a program printed as a person would paste it: through a
/// shell, from a folder of its own, with the programs on the PATH and no
/// SPOOLPOST_* variables to help it.
fn paste(command: &str, spool: &TestSpool) -> Finished {
    let programs = bin("reporter");
    let path = format!(
        "{}:{}",
        programs.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ran = run(
        Command::new("sh")
            .args(["-c", command])
            .current_dir(spool.side("elsewhere"))
            .env("PATH", path)
            .env_remove("SPOOLPOST_CONFIG")
            .env_remove("SPOOLPOST_SPOOL"),
        LIMIT,
    );
    assert!(
        ran.status.success(),
        "{command}: exit {:?}\n{}",
        ran.status,
        ran.stderr
    );
    ran
}

/// The summary's numbers for `receiver`: delivered, rejected, waiting, expired.
fn summary_row(text: &str, receiver: &str) -> Vec<u64> {
    let header = text
        .rfind("  receiver ")
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    text[header..]
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(receiver)).then(|| words.map(|n| n.parse().unwrap()).collect())
        })
        .unwrap_or_else(|| panic!("no row for {receiver}:\n{text}"))
}

/// A run's summary said "1 files wait" while 10 did: the files a previous
/// run had retried were delivered by this one, and each of their later
/// attempts was taken to end a wait this run had counted.
#[test]
fn issue_29_6_the_summary_counts_the_files_that_wait_whatever_an_earlier_run_did() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    let cfg = config(
        &spool,
        &format!(
            r#"
[sender]
backoff_initial = "1ms"
backoff_max = "1ms"
[receivers.web]
url = "{}"
[[routes]]
glob = "*"
receiver = "web"
"#,
            receiver.url("/in/{filename}")
        ),
    );
    let once = || {
        let mut cmd = sender(&spool);
        cmd.arg("--config").arg(&cfg).arg("--once");
        cmd
    };
    for i in 0..5 {
        spool.put(format!("old-{i}.log"), b"x\n");
    }
    receiver.answer(Reply::status(503));
    let first = on_a_terminal(&once());
    assert_eq!(summary_row(&first, "web"), vec![0, 0, 5, 0], "{first}");

    // The next run delivers those five and has three new ones retried.
    receiver.answer(Reply::ok());
    receiver.answer_path("/in/new-", Reply::status(503));
    for i in 0..3 {
        spool.put(format!("new-{i}.log"), b"x\n");
    }
    let second = on_a_terminal(&once());
    assert_eq!(summary_row(&second, "web"), vec![5, 0, 3, 0], "{second}");
    assert!(second.contains("sender: 8 files"), "{second}");
    assert!(
        second.contains("3 files wait in"),
        "the summary says how many wait:\n{second}"
    );
    assert_eq!(spool.count(State::Incoming), 3);
    assert_eq!(spool.count(State::Done), 5);
}

/// `collector --once` right after files were written said `files=0` and
/// nothing else: to someone trying the README it read as a fault.
#[test]
fn a_one_shot_collector_says_how_many_files_it_left_for_a_later_run() {
    let spool = TestSpool::new();
    let source = spool.side("src");
    std::fs::write(source.join("young.json"), b"{}").unwrap();
    let out = run(
        collector(&spool)
            .arg("--source")
            .arg(&source)
            .args(["--settle", "1h", "--once"]),
        LIMIT,
    );
    out.assert_success();
    assert!(out.stderr.contains("files=0 not_ready=1"), "{}", out.stderr);
    assert!(
        out.stderr.contains("not complete yet by its ready rule"),
        "{}",
        out.stderr
    );
    assert!(source.join("young.json").exists());
    assert_eq!(spool.count(State::Incoming), 0);
}

/// `--check` promises every problem, but an unknown key stopped it: the
/// semantic problems after it, and any other unknown key, went unsaid.
#[test]
fn issue_29_4_check_goes_on_past_unknown_keys_in_every_program() {
    let spool = TestSpool::new();
    let cfg = config(
        &spool,
        &format!(
            "spool = \"{}\"\n[sender]\nconcurrency = 0\nbogus = 1\n[collector]\nmax_incoming_filez = 3\n",
            spool.root.display()
        ),
    );
    for program in ["sender", "collector", "reporter"] {
        let mut cmd = spoolpost_tests::harness::command(program);
        let out = run(cmd.arg("--config").arg(&cfg).arg("--check"), LIMIT);
        assert_eq!(out.status.code(), Some(78), "{program}: {}", out.stderr);
        for (line, what) in [
            (":3:", "concurrency must be at least 1"),
            (":4:", "unknown field `bogus`"),
            (":6:", "unknown field `max_incoming_filez`"),
        ] {
            assert!(
                out.stderr
                    .lines()
                    .any(|l| l.contains(line) && l.contains(what)),
                "{program} did not say {what:?} at {line}:\n{}",
                out.stderr
            );
        }
    }
}

/// The unrouted-files warning said `reporter requeue --class no_route`,
/// which fails (no spool named) wherever the configuration is not the
/// packaged one, as in the README's quick start.
#[test]
fn issue_29_5_the_unrouted_warnings_command_runs_as_written() {
    let spool = TestSpool::new();
    for i in 0..3 {
        spool.put(format!("f{i}.unrouted"), b"x\n");
    }
    let cfg = config(
        &spool,
        "[receivers.a]\nurl = \"http://127.0.0.1:9/\"\n[[routes]]\nglob = \"*.json\"\nreceiver = \"a\"\n",
    );
    let out = run(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["--once", "--events", "-"]),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(spool.count(State::Error), 3);
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("no routing rule matches"))
        .unwrap_or_else(|| panic!("no warning:\n{}", out.stderr));
    let command = warning
        .split("then=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no command in {warning}"));
    assert!(command.starts_with("reporter "), "{command}");
    let ran = paste(command, &spool);
    assert_eq!(spool.count(State::Incoming), 3, "{}", ran.stderr);
    assert_eq!(spool.count(State::Error), 0);
}

/// `reporter hold --file` said `reporter release --file KEY gives it back`,
/// which fails (no spool named) unless the configuration is the packaged one.
#[test]
fn issue_29_5_the_command_hold_file_prints_gives_the_file_back_as_written() {
    let spool = TestSpool::new();
    spool.put("one file.json", b"{}");
    let held = run(
        reporter(&spool).args(["hold", "--file", "one file.json"]),
        LIMIT,
    );
    held.assert_success();
    let said = format!("{}{}", held.stdout, held.stderr);
    let command = said
        .split("; ")
        .nth(1)
        .and_then(|rest| rest.split(" gives it back").next())
        .unwrap_or_else(|| panic!("no command in {said:?}"));
    assert_eq!(spool.count(State::Incoming), 0);
    let ran = paste(command, &spool);
    assert_eq!(spool.count(State::Incoming), 1, "{command}: {}", ran.stderr);
}

/// The man pages' EXAMPLES, run as written on a host set up as the
/// package sets it up: the configuration where the examples expect it
/// (through SPOOLPOST_CONFIG for a line with neither --config nor --spool,
/// which is when the packaged /etc/spoolpost.toml is read), and only the host's paths, URL and fixed
/// port swapped for the test's. The parse of every documented command is
/// documented.rs; this runs them. A service is stopped with SIGTERM and
/// must end with 0 (a configuration it refused would have ended it first).
#[test]
fn issue_29_5_the_man_pages_examples_run_as_written() {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    let sources = spool.side("app-events");
    let data = spool.side("data");
    std::fs::write(data.join("a.json"), b"{}").unwrap();
    let cfg = config(
        &spool,
        &format!(
            "spool = \"{}\"\n[[collector.sources]]\npath = \"{}\"\n\
             [receivers.orders]\nurl = \"{}\"\n[[routes]]\nglob = \"*\"\nreceiver = \"orders\"\n",
            spool.root.display(),
            sources.display(),
            receiver.url("/orders")
        ),
    );
    let out = spool.side("out");
    let events = out.join("sender-main-events.jsonl");
    spool.put("orders-17.json", b"{}");
    spool.put("orders-18.json", b"{}");
    run(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--once")
            .arg("--events")
            .arg(&events),
        LIMIT,
    )
    .assert_success();
    spool.put("orders-19.json", b"{}");
    let programs = bin("reporter");
    let path = format!(
        "{}:{}",
        programs.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    use spoolpost_ops::generate::{COLLECTOR, REPORTER, SENDER};
    let examples: Vec<&str> = [COLLECTOR, SENDER, REPORTER]
        .iter()
        .flat_map(|facts| facts.examples.iter().map(|(line, _)| *line))
        .collect();
    assert!(examples.len() >= 14, "{examples:?}");
    for example in examples {
        let line = example
            .replace("/etc/spoolpost.toml", path_str(&cfg))
            .replace("/var/spool/spoolpost", path_str(&spool.root))
            .replace("/var/lib/app/events", path_str(&sources))
            .replace("find /data ", &format!("find {} ", data.display()))
            .replace("https://example.com/in", &receiver.url("/in"))
            .replace(
                "/var/lib/node_exporter/textfile/spoolpost.prom",
                path_str(&out.join("spoolpost.prom")),
            )
            .replace(
                "/var/log/spoolpost/sender-main-events.jsonl",
                path_str(&events),
            )
            .replace("127.0.0.1:9464", "127.0.0.1:0");
        // The last command of a pipe runs in the shell's place, so a
        // signal reaches it.
        let script = if line.contains('|') {
            line.clone()
        } else {
            format!("exec {line}")
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .current_dir(spool.side("elsewhere"))
            .env("PATH", &path)
            .env_remove("SPOOLPOST_CONFIG")
            .env_remove("SPOOLPOST_SPOOL");
        // The packaged file is read when neither --config nor --spool is
        // given (config_load::or_installed): the same rule, pointed here.
        if !line.contains("--config") && !line.contains("--spool") {
            cmd.env("SPOOLPOST_CONFIG", &cfg);
        }
        let service = !["--once", "--check", "--stdin", "reporter "]
            .iter()
            .any(|w| line.contains(w))
            || line.contains("--metrics-listen");
        let ran = if service {
            // Stopped once it says it is up: READY=1, as systemd hears it
            // (the reporter's endpoint: its log line).
            let notify_path = spool
                .side("notify")
                .join(format!("{}.sock", fastrand::u64(..)));
            let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
            notify.set_read_timeout(Some(LIMIT)).unwrap();
            cmd.env("NOTIFY_SOCKET", &notify_path);
            let running = spawn(&mut cmd);
            if line.contains("--metrics-listen") {
                assert!(
                    eventually(LIMIT, || running
                        .stderr_so_far()
                        .contains("serving metrics")),
                    "{example}: {}",
                    running.stderr_so_far()
                );
            } else {
                let ready = std::iter::from_fn(|| {
                    let mut buf = [0u8; 512];
                    let n = notify.recv(&mut buf).ok()?;
                    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
                })
                .any(|message| message.contains("READY=1"));
                assert!(ready, "{example}: no READY=1; {}", running.stderr_so_far());
            }
            running.signal(nix::sys::signal::Signal::SIGTERM);
            running.wait(LIMIT)
        } else {
            run(&mut cmd, LIMIT)
        };
        let fine = match ran.status.code() {
            Some(0) => true,
            // A health check that holds says so with 3, as documented.
            Some(3) => line.contains("--fail-if"),
            _ => false,
        };
        assert!(
            fine,
            "{example}\nran as: {line}\nexit {:?}\n{}",
            ran.status, ran.stderr
        );
    }
    // What they did, where it shows.
    assert!(out.join("spoolpost.prom").is_file());
    assert!(
        spool
            .root
            .join("hold")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
    assert!(
        !data.join("a.json").exists(),
        "the find | collector example took it"
    );
}
