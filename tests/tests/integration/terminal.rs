//! A person at a terminal: the real binaries run in a real
//! pseudo-terminal (a private tmux server) and the test reads the screen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const LIMIT: Duration = Duration::from_secs(60);

/// One tmux server on a private socket, running one command in a
/// `WIDTH`x40 window; killed when dropped.
struct Screen {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

const WIDTH: usize = 120;

impl Screen {
    /// Runs `line` (a shell command) on a terminal; when it ends, the
    /// screen shows `[exit CODE]` and the pane stays open to be read.
    fn run(line: &str) -> Screen {
        Screen::run_sized(line, 40)
    }

    /// [`Screen::run`] on a terminal `rows` tall.
    fn run_sized(line: &str, rows: usize) -> Screen {
        Screen::run_at(line, WIDTH, rows)
    }

    /// [`Screen::run`] on a `cols` x `rows` terminal.
    fn run_at(line: &str, cols: usize, rows: usize) -> Screen {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let script = format!("{line}; echo \"[exit $?]\"; exec cat");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .args(["sh", "-c", &script])
            .env_remove("NO_COLOR")
            .env_remove("TMUX")
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success());
        Screen { socket, _dir: dir }
    }

    /// Everything the terminal showed that is still there, history included.
    fn text(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-J", "-S", "-", "-E", "-"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the terminal shows now, its history left out.
    fn visible(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str) -> String {
        let mut text = String::new();
        let seen = eventually(LIMIT, || {
            text = self.text();
            text.contains(what)
        });
        assert!(seen, "{what:?} never appeared on the screen:\n{text}");
        text
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

fn shell(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The numbers of the summary's row for the one receiver:
/// delivered, rejected, waiting, expired.
fn summary_row(text: &str) -> Vec<u64> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("receiver "));
    lines.next().expect("a summary header");
    let row = lines.next().expect("a summary row");
    row.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

fn spool_with(files: usize) -> TestSpool {
    let spool = TestSpool::new();
    for i in 0..files {
        spool.put(format!("f{i:03}.log"), b"some data\n");
    }
    spool
}

#[test]
fn sender_on_a_terminal_shows_progress_and_a_summary_instead_of_event_lines() {
    let spool = spool_with(12);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok().hold_after(0));
    receiver.answer(Reply::stall(Duration::from_millis(150)));
    receiver.script("/in", [Reply::status(400), Reply::status(400)]);
    let mut cmd = sender(&spool);
    cmd.args([
        "--url",
        &receiver.url("/in"),
        "--once",
        "--concurrency",
        "1",
    ]);
    let screen = Screen::run(&shell(&cmd));
    let running = screen.wait_for("files/s");
    assert!(running.contains("/12 files"), "{running}");
    let text = screen.wait_for("[exit 0]");
    assert!(!text.contains("{\""), "event lines on the screen:\n{text}");
    assert!(text.contains("sender: 12 files"), "{text}");
    assert_eq!(summary_row(&text), vec![10, 2, 0, 0], "{text}");
    assert!(
        text.contains(&format!("{}/error/", spool.root.display())),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|l| !l.contains("files/s  ") || !l.contains("ETA")),
        "the progress line was left on the screen:\n{text}"
    );
    assert_eq!(spool.count(State::Error), 2);
}

#[test]
fn sender_into_a_pipe_still_writes_every_event_line_and_no_progress() {
    let spool = spool_with(7);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let mut cmd = sender(&spool);
    cmd.args(["--url", &receiver.url("/in"), "--once"]);
    let screen = Screen::run(&format!(
        "{} | grep -c '\"event\":\"delivered\"'",
        shell(&cmd)
    ));
    let text = screen.wait_for("[exit 0]");
    assert!(text.lines().any(|l| l.trim() == "7"), "{text}");
    assert!(!text.contains("files/s"), "{text}");
}

#[test]
fn events_dash_forces_event_lines_onto_the_terminal() {
    let spool = spool_with(3);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let mut cmd = sender(&spool);
    cmd.args(["--url", &receiver.url("/in"), "--once", "--events", "-"]);
    let text = Screen::run(&shell(&cmd)).wait_for("[exit 0]");
    assert_eq!(text.matches("\"event\":\"delivered\"").count(), 3, "{text}");
    assert!(!text.contains("files/s"), "{text}");
}

#[test]
fn no_progress_keeps_event_lines_on_the_terminal() {
    let spool = spool_with(2);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let mut cmd = sender(&spool);
    cmd.args(["--url", &receiver.url("/in"), "--once", "--no-progress"]);
    let text = Screen::run(&shell(&cmd)).wait_for("[exit 0]");
    assert_eq!(text.matches("\"event\":\"delivered\"").count(), 2, "{text}");
}

#[test]
fn a_dumb_terminal_gets_the_summary_only() {
    let spool = spool_with(4);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let mut cmd = sender(&spool);
    cmd.args(["--url", &receiver.url("/in"), "--once"]);
    let text = Screen::run(&format!("TERM=dumb {}", shell(&cmd))).wait_for("[exit 0]");
    assert!(!text.contains("{\""), "{text}");
    assert!(!text.contains("ETA"), "{text}");
    assert_eq!(summary_row(&text), vec![4, 0, 0, 0], "{text}");
}

#[test]
fn collector_on_a_terminal_prints_a_summary_instead_of_event_lines() {
    let spool = TestSpool::new();
    let source = spool.side("source");
    for i in 0..5 {
        std::fs::write(source.join(format!("c{i}.log")), b"x").unwrap();
    }
    let mut cmd = collector(&spool);
    cmd.arg("--source")
        .arg(&source)
        .args(["--once", "--settle", "0s"]);
    let text = Screen::run(&shell(&cmd)).wait_for("[exit 0]");
    assert!(!text.contains("{\""), "{text}");
    assert!(text.contains("collector: 5 files"), "{text}");
    assert_eq!(spool.count(State::Incoming), 5);
}

#[test]
fn the_reporter_table_fits_80_columns() {
    let spool = spool_with(6);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    receiver.script("/in", [Reply::status(503), Reply::status(400)]);
    let events = spool.side("log").join("events.jsonl");
    let mut send = sender(&spool);
    send.args(["--url", &receiver.url("/in"), "--once", "--events"])
        .arg(&events);
    run(&mut send, LIMIT).assert_success();
    spool.put("waiting.log", b"late\n");
    let table = run(reporter(&spool).arg("--events").arg(&events), LIMIT);
    table.assert_success();
    assert!(table.stdout.contains("BACKLOG AGE"), "{}", table.stdout);
    assert!(table.stdout.contains("LATENCY"), "{}", table.stdout);
    let wide: Vec<&str> = table
        .stdout
        .lines()
        .filter(|l| l.chars().count() > 80)
        .collect();
    assert!(wide.is_empty(), "lines wider than 80 columns: {wide:#?}");
}

/// `extra` with a receiver `orders` at `url` that takes every file its
/// routes leave.
fn watched_config(spool: &TestSpool, url: &str, extra: ConfigFile) -> PathBuf {
    extra
        .receiver("orders", url, "")
        .route_all("orders")
        .write(spool)
}

/// The last screen's TRENDS row for `name`.
fn trend_row(text: &str, name: &str) -> Option<String> {
    let from = text.rfind("TRENDS")?;
    text[from..]
        .lines()
        .find(|l| l.starts_with(&format!("  {name} ")))
        .map(str::to_string)
}

const BARS: &str = "▁▂▃▄▅▆▇█";

#[test]
fn reporter_watch_redraws_one_report_in_place_with_trends_that_follow_deliveries() {
    let spool = spool_with(0);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let cfg = watched_config(&spool, &receiver.url("/in"), ConfigFile::new());
    let events = spool.side("log").join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let mut watch = reporter(&spool);
    watch
        .arg("--config")
        .arg(&cfg)
        .arg("--events")
        .arg(&events)
        .args(["--watch", "1"]);
    let screen = Screen::run(&format!("{} 2>/dev/null", shell(&watch)));
    screen.wait_for("  orders ");
    let idle = trend_row(&screen.text(), "orders").unwrap();
    assert!(!idle.contains(|c| BARS.contains(c)), "{idle}");

    for i in 0..8 {
        spool.put(format!("o{i}.log"), b"x\n");
    }
    let mut send = sender(&spool);
    send.arg("--config")
        .arg(&cfg)
        .arg("--once")
        .arg("--events")
        .arg(&events);
    run(&mut send, LIMIT).assert_success();
    let mut row = String::new();
    let moved = eventually(LIMIT, || {
        row = trend_row(&screen.text(), "orders").unwrap_or_default();
        row.contains('█')
    });
    assert!(moved, "the trend never showed the deliveries: {row}");

    // Many refreshes later the screen, history included, holds one report.
    let text = screen.text();
    let headings = text.lines().filter(|l| l.starts_with("spool ")).count();
    assert_eq!(headings, 1, "reports stacked up:\n{text}");
    assert_eq!(text.matches("STATES").count(), 1, "{text}");
    let wide: Vec<&str> = text.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(wide.is_empty(), "lines wider than 80 columns: {wide:#?}");
}

#[test]
fn reporter_watch_into_a_pipe_prints_whole_reports_one_after_another() {
    let spool = spool_with(1);
    let mut watch = reporter(&spool);
    watch.args(["--watch", "1"]);
    let screen = Screen::run(&format!(
        "{} | head -n 400 | grep -c '^STATES'",
        shell(&watch)
    ));
    let text = screen.wait_for("[exit 0]");
    let count: usize = text
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("a count");
    assert!(count >= 2, "{text}");
    assert!(!text.contains("TRENDS"), "{text}");
}

#[test]
fn reporter_watch_rereads_its_config_on_sighup_and_a_broken_one_keeps_it_running() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let spool = spool_with(0);
    let cfg = watched_config(&spool, "http://127.0.0.1:9/", ConfigFile::new());
    let side = spool.side("watch");
    let (pid_file, err_file) = (side.join("pid"), side.join("stderr"));
    let mut watch = reporter(&spool);
    watch.arg("--config").arg(&cfg).args(["--watch", "1"]);
    // In the background so that its pid can be known; `wait` gives its status.
    let screen = Screen::run(&format!(
        "{} 2>{} & echo $! > {}; wait $!",
        shell(&watch),
        path_str(&err_file),
        path_str(&pid_file)
    ));
    screen.wait_for("  orders ");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let hup = || kill(Pid::from_raw(pid), Signal::SIGHUP).unwrap();

    let audit = ConfigFile::new()
        .receiver("audit", "http://127.0.0.1:9/", "")
        .route(r#"glob = "*.audit""#, "audit");
    watched_config(&spool, "http://127.0.0.1:9/", audit);
    hup();
    screen.wait_for("  audit ");
    screen.wait_for("configuration reloaded");

    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}bogus = 1\n")).unwrap();
    hup();
    screen.wait_for("reload refused");
    let mut log = String::new();
    assert!(eventually(LIMIT, || {
        log = std::fs::read_to_string(&err_file).unwrap();
        log.contains("refused")
    }));
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(refusals[0].contains("spoolpost.toml:11"), "{log}");

    // Still running and redrawing, still routing by the last good
    // configuration: a new .audit file counts against audit.
    spool.put("late.audit", b"x\n");
    let mut text = String::new();
    assert!(
        eventually(LIMIT, || {
            text = screen.text();
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq(["audit", "1"]))
        }),
        "{text}"
    );
    assert!(!text.contains("[exit"), "{text}");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    screen.wait_for("[exit 0]");
}

/// The last screen's delivered count for `name` in OUTCOMES AND LATENCY.
fn delivered_row(text: &str, name: &str) -> Option<u64> {
    let from = text.rfind("OUTCOMES AND LATENCY")?;
    text[from..]
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[test]
fn reporter_watch_draws_from_a_pipe_while_the_sender_still_runs() {
    let spool = spool_with(0);
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    // A quick rescan: the test is about the reporter, not the sender's
    // notifications.
    let cfg = watched_config(
        &spool,
        &receiver.url("/in"),
        ConfigFile::new().sender("rescan_interval = \"1s\""),
    );
    for i in 0..5 {
        spool.put(format!("a{i}.log"), b"x\n");
    }
    // The README's live view: a sender that keeps running, so the pipe
    // never ends while the test looks.
    let mut send = sender(&spool);
    send.arg("--config").arg(&cfg).args(["--events", "-"]);
    let mut watch = reporter(&spool);
    watch
        .arg("--config")
        .arg(&cfg)
        .args(["--events", "-", "--watch", "1"]);
    let screen = Screen::run_sized(
        &format!(
            "{} 2>/dev/null | {} 2>/dev/null",
            shell(&send),
            shell(&watch)
        ),
        120,
    );
    let mut text = String::new();
    let first = eventually(LIMIT, || {
        text = screen.text();
        delivered_row(&text, "orders") == Some(5)
    });
    assert!(
        first,
        "no frame counted the 5 deliveries from the pipe:\n{text}"
    );
    for i in 0..7 {
        spool.put(format!("b{i}.log"), b"x\n");
    }
    let rose = eventually(LIMIT, || {
        text = screen.text();
        delivered_row(&text, "orders") == Some(12)
    });
    assert!(rose, "the count never rose to 12:\n{text}");
    assert!(!text.contains("[exit"), "the pipe ended:\n{text}");
}

/// The command the sender's summary tells a person to run next.
fn hint(text: &str) -> Option<String> {
    let at = text.find("list them with: ")? + "list them with: ".len();
    Some(text[at..].lines().next()?.trim().to_string())
}

#[test]
fn issue_29_5_the_senders_hint_for_rejected_files_works_as_written() {
    let spool = spool_with(3);
    let receiver = Receiver::start();
    receiver.answer(Reply::status(400));
    let mut cmd = sender(&spool);
    cmd.args(["--url", &receiver.url("/in"), "--once"]);
    let text = Screen::run(&shell(&cmd)).wait_for("[exit 0]");
    let hint = hint(&text).unwrap_or_else(|| panic!("no hint:\n{text}"));
    // As a person would type it: `reporter` from the PATH.
    let dir = bin("reporter").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let out = run(
        Command::new("sh").args(["-c", &hint]).env("PATH", path),
        LIMIT,
    );
    out.assert_success();
    assert_eq!(
        out.stdout.matches(".log").count(),
        3,
        "{hint}: {}",
        out.stdout
    );
}

/// A spool with something in every section: two receivers, one held (a
/// coloured cell), rejected files, a file waiting, event lines.
fn busy_spool() -> (TestSpool, Receiver, PathBuf, PathBuf) {
    let spool = TestSpool::new();
    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    receiver.answer_path("/audit", Reply::status(422));
    let cfg = ConfigFile::new()
        .receiver("orders", &receiver.url("/in"), "")
        .receiver("audit", &receiver.url("/audit"), "")
        .route(r#"glob = "audit-*""#, "audit")
        .route_all("orders")
        .write(&spool);
    for i in 0..4 {
        spool.put(format!("o{i}.log"), b"x\n");
        spool.put(format!("audit-{i}.log"), b"x\n");
    }
    let events = spool.side("log").join("events.jsonl");
    let mut send = sender(&spool);
    send.arg("--config")
        .arg(&cfg)
        .args(["--once", "--events"])
        .arg(&events);
    run(&mut send, LIMIT).assert_success();
    run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["hold", "orders"]),
        LIMIT,
    )
    .assert_success();
    spool.put("waiting.log", b"late\n");
    (spool, receiver, cfg, events)
}

/// The live view on a real `cols` x `rows` terminal, once it has drawn.
fn watch_at(spool: &TestSpool, cfg: &Path, events: &Path, cols: usize, rows: usize) -> String {
    let mut watch = reporter(spool);
    watch
        .arg("--config")
        .arg(cfg)
        .arg("--events")
        .arg(events)
        .args(["--watch", "1"]);
    let screen = Screen::run_at(&format!("{} 2>/dev/null", shell(&watch)), cols, rows);
    let mut text = String::new();
    let drawn = eventually(LIMIT, || {
        text = screen.visible();
        text.contains("  orders ") && text.contains("HELD")
    });
    assert!(drawn, "no frame:\n{text}");
    // A second frame: the first may still be half drawn.
    std::thread::sleep(Duration::from_millis(1500));
    screen.visible()
}

/// Issue 29.2: the live view fits the terminal. On 80x24 the receivers,
/// the trends and the errors show whole and the last row names the
/// sections left out; on 120x40 everything shows. A coloured cell (a red
/// `open`, a yellow `HELD`) keeps its column in line.
#[test]
fn issue_29_2_the_live_view_fits_80x24_and_120x40() {
    let (spool, _receiver, cfg, events) = busy_spool();

    let small = watch_at(&spool, &cfg, &events, 80, 24);
    let lines: Vec<&str> = small.lines().collect();
    assert!(lines.len() <= 24, "{small}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{small}");
    for section in ["TRENDS", "RECEIVERS", "ERRORS"] {
        assert!(
            lines.iter().any(|l| l.starts_with(section)),
            "{section}:\n{small}"
        );
    }
    assert!(!small.contains("more lines"), "a section was cut:\n{small}");
    let last = lines.iter().rev().find(|l| !l.is_empty()).unwrap();
    assert!(last.starts_with("hidden for want of rows: "), "{small}");
    assert!(last.contains("RATES"), "{small}");

    // The held receiver's yellow cell lines up with its heading.
    let header = lines
        .iter()
        .find(|l| l.trim_start().starts_with("receiver ") && l.ends_with("held"))
        .unwrap_or_else(|| panic!("{small}"));
    let held = lines
        .iter()
        .find(|l| l.ends_with("HELD"))
        .unwrap_or_else(|| panic!("{small}"));
    assert_eq!(header.chars().count(), held.chars().count(), "{small}");

    let large = watch_at(&spool, &cfg, &events, 120, 40);
    let lines: Vec<&str> = large.lines().collect();
    assert!(lines.len() <= 40, "{large}");
    for section in [
        "TRENDS",
        "STATES",
        "RECEIVERS",
        "BACKLOG AGE",
        "ERRORS",
        "RATES",
        "OUTCOMES AND LATENCY",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(section)),
            "{section}:\n{large}"
        );
    }
    assert!(!large.contains("hidden for want of rows"), "{large}");
    assert!(!large.contains("more lines"), "{large}");
}
