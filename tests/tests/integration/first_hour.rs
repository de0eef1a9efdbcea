//! An operator's first hour, as found by running the programs the way the
//! README shows: numbers one program prints that another contradicts.
//! Each test is a defect found that way, on real processes.

use std::process::Command;
use std::time::Duration;

use spoolpost_protocol::spool::State;
use spoolpost_tests::config_file::ConfigFile;
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

/// PATH with the workspace's programs first, as an installed host has them.
fn programs_on_path() -> String {
    format!(
        "{}:{}",
        bin("reporter").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs a command a program printed as a person would paste it: through a
/// shell, from a folder of its own, with the programs on the PATH and no
/// SPOOLPOST_* variables to help it.
fn paste(command: &str, spool: &TestSpool) -> Finished {
    let ran = run(
        Command::new("sh")
            .args(["-c", command])
            .current_dir(spool.side("elsewhere"))
            .env("PATH", programs_on_path())
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
    let out = crate::support::setups::unrouted_run(&spool, 3);
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

/// A host set up as the package sets one up, for running documented
/// commands as written: a configuration (one receiver, `orders`, taking
/// every file) where the commands expect it, a spool with files in it, a
/// source folder, and only the host's paths, URLs and fixed port swapped
/// for the test's by [`Host::place`]. A line with neither --config nor
/// --spool gets the configuration through SPOOLPOST_CONFIG, which is when
/// the packaged /etc/spoolpost.toml is read (config_load::or_installed).
struct Host {
    spool: TestSpool,
    receiver: Receiver,
    cfg: std::path::PathBuf,
    sources: std::path::PathBuf,
    data: std::path::PathBuf,
    out: std::path::PathBuf,
    events: std::path::PathBuf,
    /// The folder commands run from; `spoolpost.toml` there is `cfg`.
    here: std::path::PathBuf,
    path: String,
}

impl Host {
    fn new() -> Host {
        let spool = TestSpool::new();
        let receiver = Receiver::start();
        let sources = spool.side("app-events");
        let data = spool.side("data");
        std::fs::write(data.join("a.json"), b"{}").unwrap();
        let cfg = ConfigFile::to("orders", &receiver.url("/orders"))
            .spool(&spool.root)
            .source(&sources, "")
            .write(&spool);
        let here = spool.side("elsewhere");
        std::fs::copy(&cfg, here.join("spoolpost.toml")).unwrap();
        let out = spool.side("out");
        let events = out.join("sender-main-events.jsonl");
        let path = programs_on_path();
        Host {
            spool,
            receiver,
            cfg,
            sources,
            data,
            out,
            events,
            here,
            path,
        }
    }

    /// A delivered history for the commands that read one (`show`, the
    /// event log), and files waiting for those that act on one.
    fn with_history(self) -> Host {
        self.spool.put("orders-17.json", b"{}");
        self.spool.put("orders-18.json", b"{}");
        run(
            sender(&self.spool)
                .arg("--config")
                .arg(&self.cfg)
                .arg("--once")
                .arg("--events")
                .arg(&self.events),
            LIMIT,
        )
        .assert_success();
        self.spool.put("orders-17.json", b"{}");
        self.spool.put("orders-19.json", b"{}");
        self
    }

    /// Puts `name` in the spool and gives it a key: one attempt at a
    /// receiver that is not there leaves it waiting for a retry, its key
    /// in its name, as `reporter list` shows it to an operator.
    fn waiting_with_a_key(&self, name: &str) -> String {
        self.spool.put(name, b"{}");
        run(
            sender(&self.spool).args(["--url", "http://127.0.0.1:9/", "--once"]),
            LIMIT,
        );
        let listed = run(
            reporter(&self.spool).args(["list", "--state", "retry", "--format", "json"]),
            LIMIT,
        );
        listed.assert_success();
        listed
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["name"] == name)
            .and_then(|v| v["key"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("{name} waits with no key:\n{}", listed.stdout))
    }

    /// The documented line with this host's paths, URLs and port.
    fn place(&self, line: &str) -> String {
        let cfg = path_str(&self.cfg);
        let mut line = line
            .replace("/etc/spoolpost.toml", cfg)
            .replace("/etc/default/spoolpost", path_str(&self.out.join("env")))
            .replace("/var/spool/spoolpost", path_str(&self.spool.root))
            .replace("/var/lib/app/events", path_str(&self.sources))
            .replace("find /data ", &format!("find {} ", self.data.display()))
            .replace("https://example.com/in", &self.receiver.url("/in"))
            .replace(
                "https://ingest.example.com/events",
                &self.receiver.url("/events"),
            )
            .replace(
                "/var/lib/node_exporter/textfile/spoolpost.prom",
                path_str(&self.out.join("spoolpost.prom")),
            )
            .replace(
                "/var/log/spoolpost/sender-main-events.jsonl",
                path_str(&self.events),
            )
            .replace(
                " sender-events.jsonl ",
                &format!(" {} ", self.events.display()),
            )
            .replace("127.0.0.1:9464", "127.0.0.1:0");
        // docs/reporter.md writes F for the configuration file.
        line = line.replace("--config F ", &format!("--config {cfg} "));
        line
    }

    /// Each command of `line` with neither --config nor --spool reads the
    /// packaged configuration: pointed at this host's by SPOOLPOST_CONFIG
    /// for that command alone (another in the same pipe may name its own).
    fn installed_config(&self, line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while !rest.is_empty() {
            let (segment, sep, after) = match [" | ", " && ", "; "]
                .iter()
                .filter_map(|sep| rest.find(sep).map(|at| (at, *sep)))
                .min()
            {
                Some((at, sep)) => (&rest[..at], sep, &rest[at + sep.len()..]),
                None => (rest, "", ""),
            };
            let runs_ours = !crate::documented::commands(segment).is_empty();
            if runs_ours && !segment.contains("--config") && !segment.contains("--spool") {
                let program_at = segment.len() - segment.trim_start().len();
                out.push_str(&segment[..program_at]);
                out.push_str(&format!("env SPOOLPOST_CONFIG={} ", self.cfg.display()));
                out.push_str(&segment[program_at..]);
            } else {
                out.push_str(segment);
            }
            out.push_str(sep);
            rest = after;
        }
        out
    }

    /// Runs one documented line through a shell, from `here`, with the
    /// programs on the PATH; panics unless it does what it says. A line
    /// that runs a service (no --once, --check or --stdin; a `&` at its
    /// end is the shell's, and dropped) must come up, then is stopped with
    /// SIGTERM and must end with 0: a configuration it refused would have
    /// ended it first.
    fn run_as_written(&self, documented: &str) {
        let without_comment = match documented.find(" #") {
            Some(at) => &documented[..at],
            None => documented,
        };
        let written = without_comment.trim().trim_end_matches('&').trim_end();
        let line = self.installed_config(&self.place(written));
        let piped = line.contains('|') || line.contains('(');
        // The last command of a plain line runs in the shell's place, so a
        // signal reaches it; in a pipe, each command is signalled.
        let script = if piped {
            line.clone()
        } else {
            format!("exec {line}")
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .current_dir(&self.here)
            .env("PATH", &self.path)
            .env_remove("SPOOLPOST_CONFIG")
            .env_remove("SPOOLPOST_SPOOL");
        let watch = line.contains("--watch");
        let service = watch
            || line.contains("--metrics-listen")
            || !["--once", "--check", "--stdin", "reporter "]
                .iter()
                .any(|w| line.contains(w));
        let ran = if service {
            let notify_path = self
                .spool
                .side("notify")
                .join(format!("{}.sock", fastrand::u64(..)));
            let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
            notify.set_read_timeout(Some(LIMIT)).unwrap();
            cmd.env("NOTIFY_SOCKET", &notify_path);
            let running = spawn(&mut cmd);
            // Up when it says so: a live view has drawn, an endpoint has
            // logged its address, a daemon has sent READY=1 as systemd
            // hears it.
            if watch {
                assert!(
                    eventually(LIMIT, || !running.stdout_so_far().trim().is_empty()),
                    "{documented}: the live view drew nothing; {}",
                    running.stderr_so_far()
                );
            } else if line.contains("--metrics-listen") {
                assert!(
                    eventually(LIMIT, || running
                        .stderr_so_far()
                        .contains("serving metrics")),
                    "{documented}: {}",
                    running.stderr_so_far()
                );
            } else {
                let ready = std::iter::from_fn(|| {
                    let mut buf = [0u8; 512];
                    let n = notify.recv(&mut buf).ok()?;
                    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
                })
                .any(|message| message.contains("READY=1"));
                assert!(
                    ready,
                    "{documented}: no READY=1; {}",
                    running.stderr_so_far()
                );
            }
            let stop = nix::sys::signal::Signal::SIGTERM;
            if piped {
                for child in children_of(running.pid().as_raw()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), stop);
                }
            } else {
                running.signal(stop);
            }
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
            "{documented}\nran as: {line}\nexit {:?}\n{}",
            ran.status, ran.stderr
        );
    }
}

/// The processes whose parent is `pid` (the commands of a shell's pipe).
fn children_of(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        if after.split_whitespace().nth(1) == Some(pid.to_string().as_str())
            && let Ok(child) = entry.file_name().to_string_lossy().parse()
        {
            found.push(child);
        }
    }
    found
}

/// The man pages' EXAMPLES, run as written on a [`Host`]. The parse of
/// every documented command is documented.rs; this runs them.
#[test]
fn issue_29_5_the_man_pages_examples_run_as_written() {
    let host = Host::new().with_history();
    use spoolpost_ops::generate::{COLLECTOR, REPORTER, SENDER};
    let examples: Vec<&str> = [COLLECTOR, SENDER, REPORTER]
        .iter()
        .flat_map(|facts| facts.examples.iter().map(|(line, _)| *line))
        .collect();
    assert!(examples.len() >= 14, "{examples:?}");
    for example in examples {
        host.run_as_written(example);
    }
    // What they did, where it shows.
    assert!(host.out.join("spoolpost.prom").is_file());
    assert!(
        host.spool
            .root
            .join("hold")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
    assert!(
        !host.data.join("a.json").exists(),
        "the find | collector example took it"
    );
}

/// Every line of the README's and the operator's documents' shell blocks
/// that runs a spoolpost program, run as written on a [`Host`], in the
/// order a reader meets them. docs/performance.md is left out: its lines
/// run the programs under perf, valgrind and strace from a profiling
/// build (S and URL are placeholders there), which is not an operator's
/// command.
#[test]
fn issue_29_5_every_command_in_the_readme_and_the_operators_docs_runs_as_written() {
    let host = Host::new().with_history();
    std::fs::write(host.out.join("env"), "SPOOLPOST_EXAMPLE=1\n").unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut ran = 0;
    for doc in ["README.md", "docs/operations.md", "docs/reporter.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for block in crate::documented::shell_blocks(&text) {
            let joined = block.replace("\\\n", " ");
            for line in joined.lines() {
                if crate::documented::commands(line).is_empty() {
                    continue;
                }
                // The file the docs act on by name waits, as it would on
                // the reader's host, whatever the lines before did with it.
                if !host
                    .spool
                    .names(State::Incoming)
                    .iter()
                    .any(|n| n.starts_with(b"orders-17.json"))
                {
                    host.spool.put("orders-17.json", b"{}");
                }
                // A key written in the docs stands for a file's key: the
                // one of a file this spool has waiting.
                let line = if line.contains(DOCUMENTED_KEY) {
                    line.replace(DOCUMENTED_KEY, &host.waiting_with_a_key("orders-gone.json"))
                } else {
                    line.to_string()
                };
                host.run_as_written(&line);
                ran += 1;
            }
        }
    }
    assert!(ran >= 25, "only {ran} documented commands found");
    // What they did, where it shows: the README's one-shot sender
    // delivered to the URL it names, the prometheus line wrote its file,
    // `delete` removed the file by its key.
    assert!(host.receiver.count_path("/events") > 0);
    assert!(host.out.join("spoolpost.prom").is_file());
    assert!(
        !host
            .spool
            .names(State::Incoming)
            .iter()
            .any(|n| n.starts_with(b"orders-gone"))
    );
}

/// The key docs/reporter.md writes in its `delete` example.
const DOCUMENTED_KEY: &str = "3f9c0a1e55d2b7c4e8a09f1d";
