//! Running as a service: `--check` and `--probe`, sd_notify
//! messages read from a real datagram socket, and the collector's SIGHUP.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::{
    TestSpool, collector, config, eventually, path_str, reporter, run, sender, spawn,
};
use spoolpost_tests::receiver::Receiver;
use spoolpost_tests::system::{as_nobody, open_path_to_others};

const LIMIT: Duration = Duration::from_secs(20);

/// Runs `--check` and returns (exit code, stdout, stderr).
fn check(cmd: &mut Command) -> (i32, String, String) {
    let out = run(cmd.arg("--check"), LIMIT);
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

fn sender_config(spool: &TestSpool, receiver: &str) -> std::path::PathBuf {
    config(
        spool,
        &format!(
            "spool = {:?}\n[receivers.main]\nurl = \"http://127.0.0.1:9/\"\n{receiver}\n[[routes]]\nglob = \"*\"\nreceiver = \"main\"\n",
            path_str(&spool.root)
        ),
    )
}

#[test]
fn check_passes_a_good_setup_with_plain_flags_and_creates_nothing() {
    let spool = TestSpool::new();
    let (code, out, err) = check(sender(&spool).args(["--url", "http://127.0.0.1:9/"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok:"), "{out}");
    let fresh = spool.side("not-yet").join("spool");
    let (code, _, err) = check(
        spoolpost_tests::harness::command("collector")
            .arg("--spool")
            .arg(&fresh)
            .arg("--create-spool")
            .arg("--source")
            .arg(spool.side("in")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!fresh.exists(), "--check must create nothing");
}

#[test]
fn check_names_the_line_of_bad_toml_and_unknown_keys() {
    let spool = TestSpool::new();
    let bad = config(&spool, "[sender]\nconcurrency = \n");
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&bad));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("spoolpost.toml:2:"), "{err}");
    let unknown = sender_config(&spool, "colour = \"red\"");
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&unknown));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("spoolpost.toml:4:") && err.contains("colour"),
        "{err}"
    );
    let (code, _, err) = check(collector(&spool).arg("--config").arg(&bad));
    assert_eq!(code, 78, "{err}");
}

#[test]
fn check_reports_every_secret_that_does_not_resolve() {
    let spool = TestSpool::new();
    let cfg = sender_config(
        &spool,
        "headers = { A = { env = \"SPOOLPOST_LIFECYCLE_UNSET\" }, B = { file = \"/nonexistent/token\" } }",
    );
    let (code, _, err) = check(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .env_remove("SPOOLPOST_LIFECYCLE_UNSET"),
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("SPOOLPOST_LIFECYCLE_UNSET"), "{err}");
    assert!(
        err.contains("/nonexistent/token"),
        "both problems, not the first only: {err}"
    );
    assert!(err.contains("spoolpost.toml:4:"), "{err}");
}

#[test]
fn check_as_another_user_finds_an_unreadable_secret_and_an_unwritable_spool() {
    let spool = TestSpool::new();
    let token = spool.side("etc").join("token");
    std::fs::write(&token, "s3cret").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = sender_config(
        &spool,
        &format!("headers = {{ A = {{ file = {:?} }} }}", path_str(&token)),
    );
    open_path_to_others(&spool.root);
    open_path_to_others(&cfg);
    let (code, _, err) = check(&mut as_nobody(sender(&spool).arg("--config").arg(&cfg)));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("cannot read") && err.contains("token"),
        "{err}"
    );
    let (code, _, err) = check(&mut as_nobody(
        sender(&spool).args(["--url", "http://127.0.0.1:9/"]),
    ));
    assert_eq!(code, 74, "{err}");
    assert!(err.contains("not writable"), "{err}");
}

#[test]
fn check_refuses_a_missing_or_certificate_less_ca_file() {
    let spool = TestSpool::new();
    let cfg = sender_config(&spool, "ca_file = \"/nonexistent/ca.pem\"");
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&cfg));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("ca.pem"), "{err}");
    let empty = spool.side("etc").join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let cfg = sender_config(&spool, &format!("ca_file = {:?}", path_str(&empty)));
    let (code, _, err) = check(sender(&spool).arg("--config").arg(&cfg));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("empty.pem"), "{err}");
}

#[test]
fn check_refuses_a_source_inside_the_spool_and_a_one_shot_run_s_missing_source() {
    let spool = TestSpool::new();
    let (code, _, err) = check(
        collector(&spool)
            .arg("--source")
            .arg(spool.dir(State::Done)),
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("inside the spool"), "{err}");
    let cfg = config(
        &spool,
        "[[collector.sources]]\npath = \"/nonexistent/drop\"\n",
    );
    let (code, _, err) = check(collector(&spool).arg("--config").arg(&cfg).arg("--once"));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("spoolpost.toml:2:") && err.contains("/nonexistent/drop"),
        "{err}"
    );
    // The daemon keeps looking for a missing source: its check warns, at
    // the same line, and passes, so a unit can start.
    let (code, _, err) = check(collector(&spool).arg("--config").arg(&cfg));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("spoolpost.toml:2:")
            && err.contains("/nonexistent/drop"),
        "{err}"
    );
}

#[test]
fn probe_reports_a_closed_port_an_untrusted_certificate_and_a_good_receiver() {
    let spool = TestSpool::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/");
    let (code, _, err) = check(sender(&spool).args(["--url", &url, "--probe"]));
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("connect") && err.contains(&port.to_string()),
        "{err}"
    );

    let (tls, ca) = Receiver::start_tls();
    let url = tls.url("/in");
    let (code, _, err) = check(sender(&spool).args(["--url", &url, "--probe"]));
    assert_eq!(code, 75, "an untrusted certificate: {err}");
    assert!(err.contains("TLS handshake"), "{err}");

    let ca_path = spool.side("etc").join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let cfg = config(
        &spool,
        &format!(
            "[receivers.main]\nurl = {url:?}\nca_file = {:?}\n[[routes]]\nglob = \"*\"\nreceiver = \"main\"\n",
            path_str(&ca_path)
        ),
    );
    let (code, out, err) = check(sender(&spool).arg("--config").arg(&cfg).arg("--probe"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("probe main") && out.contains("ok in"), "{out}");
    assert_eq!(tls.count(), 0, "a probe sends no request");
}

/// A bound datagram socket and a way to wait for a message on it.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new(spool: &TestSpool) -> NotifySocket {
        let path = spool.side("run").join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        NotifySocket { socket, path }
    }

    /// Reads messages until one contains `want`.
    fn expect(&self, want: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            // Tests share this process, and a signal one of them causes
            // can interrupt the wait: that is no answer, so wait again.
            let n = match self.socket.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                got => got.unwrap_or_else(|e| panic!("no {want:?} message: {e}")),
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains(want) {
                return text;
            }
        }
    }
}

#[test]
fn the_collector_notifies_ready_watchdog_and_stopping() {
    let spool = TestSpool::new();
    let notify = NotifySocket::new(&spool);
    let proc = spawn(
        collector(&spool)
            .arg("--source")
            .arg(spool.side("in"))
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "200000"),
    );
    let ready = notify.expect("READY=1");
    assert!(ready.contains("STATUS="), "{ready}");
    notify.expect("WATCHDOG=1");
    notify.expect("WATCHDOG=1");
    proc.signal(Signal::SIGTERM);
    notify.expect("STOPPING=1");
    proc.wait(LIMIT).assert_success();
}

#[test]
fn the_sender_notifies_ready_and_stopping_through_an_abstract_socket() {
    let spool = TestSpool::new();
    let name = format!("spoolpost-test-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            &name,
        )
        .unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let receiver = Receiver::start();
    let proc = spawn(
        sender(&spool)
            .args(["--url", &receiver.url("/in")])
            .env("NOTIFY_SOCKET", format!("@{name}")),
    );
    let notify = NotifySocket {
        socket,
        path: Default::default(),
    };
    notify.expect("READY=1");
    spool.put("a", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    notify.expect("STATUS=0 in flight, 0 waiting, 0 circuits open");
    proc.signal(Signal::SIGHUP);
    notify.expect("RELOADING=1");
    notify.expect("READY=1");
    proc.signal(Signal::SIGTERM);
    notify.expect("STOPPING=1");
    proc.wait(LIMIT).assert_success();
}

fn write_ready(dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}"));
    std::fs::write(&tmp, name).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

#[test]
fn sighup_reopens_the_events_file_and_takes_up_a_changed_source() {
    let spool = TestSpool::new();
    let (a, b) = (spool.side("a"), spool.side("b"));
    let events = spool.side("log").join("events.jsonl");
    let cfg = config(
        &spool,
        &format!(
            "[[collector.sources]]\npath = {:?}\nsettle = \"50ms\"\n",
            path_str(&a)
        ),
    );
    let proc = spawn(
        collector(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    write_ready(&a, "one");
    assert!(eventually(LIMIT, || spool.count(State::Incoming) == 1));
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(|s| s.contains("\"one\""))));
    let rotated = events.with_extension("1");
    std::fs::rename(&events, &rotated).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[[collector.sources]]\npath = {:?}\nsettle = \"50ms\"\n",
            path_str(&b)
        ),
    )
    .unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(
            |s| s.contains("\"reload\"") && s.contains("\"ok\":true")
        )));
    write_ready(&b, "two");
    assert!(
        eventually(LIMIT, || spool.count(State::Incoming) == 2),
        "the new source is collected"
    );
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(|s| s.contains("\"two\""))));
    write_ready(&a, "three");
    proc.signal(Signal::SIGTERM);
    let out = proc.wait(LIMIT);
    out.assert_success();
    assert!(
        a.join("three").exists(),
        "the old source is no longer collected"
    );
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("\"two\"")
    );
}

#[test]
fn a_broken_reload_is_refused_and_collecting_goes_on() {
    let spool = TestSpool::new();
    let a = spool.side("a");
    let events = spool.side("log").join("events.jsonl");
    let good = format!(
        "[[collector.sources]]\npath = {:?}\nsettle = \"50ms\"\n",
        path_str(&a)
    );
    let cfg = config(&spool, &good);
    let proc = spawn(
        collector(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    write_ready(&a, "one");
    assert!(eventually(LIMIT, || spool.count(State::Incoming) == 1));
    std::fs::write(&cfg, format!("{good}bogus = 1\n")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || std::fs::read_to_string(&events)
        .is_ok_and(
            |s| s.contains("\"reload\"") && s.contains("\"ok\":false")
        )));
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(
        log.contains("spoolpost.toml:4:"),
        "the refusal names the line: {log}"
    );
    write_ready(&a, "two");
    assert!(
        eventually(LIMIT, || spool.count(State::Incoming) == 2),
        "the old configuration keeps collecting"
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

/// A sender config with one receiver at `url` whose Authorization header
/// comes from `token`; `extra` goes into `[sender]`.
fn token_config(spool: &TestSpool, url: &str, token: &Path, extra: &str) -> std::path::PathBuf {
    config(
        spool,
        &format!(
            "spool = {:?}\n[sender]\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\nbreaker_open_initial = \"200ms\"\nbreaker_open_max = \"500ms\"\nmax_attempts = 2\n{extra}\n[receivers.main]\nurl = {url:?}\n[receivers.main.headers]\nAuthorization = {{ file = {:?} }}\n[[routes]]\nglob = \"*\"\nreceiver = \"main\"\n",
            path_str(&spool.root),
            path_str(token)
        ),
    )
}

#[test]
fn a_401_keeps_files_waiting_and_a_rewritten_token_file_releases_them() {
    let rx = Receiver::start();
    rx.require_header(
        "authorization",
        "Bearer new",
        spoolpost_tests::receiver::Reply::status(401),
    );
    let spool = TestSpool::new();
    let token = spool.side("secret").join("token");
    std::fs::write(&token, "Bearer old\n").unwrap();
    let cfg = token_config(&spool, &rx.url("/in"), &token, "");
    for i in 0..5 {
        spool.put(format!("f{i}"), b"x");
    }
    let proc = spawn(sender(&spool).arg("--config").arg(&cfg));
    // Refused again and again, past max_attempts = 2: still waiting.
    assert!(eventually(LIMIT, || rx.count() >= 4));
    assert_eq!(spool.count(State::Error), 0, "{:?}", spool.census());
    // The circuit says why, for the reporter.
    let report = run(
        spoolpost_tests::harness::reporter(&spool).args(["--format", "json"]),
        LIMIT,
    );
    assert!(report.stdout.contains("auth"), "{}", report.stdout);
    std::fs::write(&token, "Bearer new\n").unwrap();
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 5),
        "{:?}",
        spool.census()
    );
    assert_eq!(spool.count(State::Error), 0);
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

fn events_have(path: &Path, want: &[&str]) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| want.iter().all(|w| s.contains(w)))
}

#[test]
fn the_sender_reopens_a_moved_events_file_on_sighup() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let log = spool.side("log");
    let events = log.join("events.jsonl");
    let proc = spawn(
        sender(&spool)
            .args(["--url", &rx.url("/in"), "--events"])
            .arg(&events),
    );
    spool.put("before", b"x");
    assert!(eventually(LIMIT, || events_have(&events, &["\"before\""])));
    let moved = log.join("events.jsonl.1");
    std::fs::rename(&events, &moved).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(&events, &["\"reload\""])));
    spool.put("after", b"x");
    assert!(eventually(LIMIT, || events_have(&events, &["\"after\""])));
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(!old.contains("\"after\""), "{old}");
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

#[test]
fn a_broken_sender_reload_is_refused_and_delivery_goes_on_with_new_headers_after_a_good_one() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let token = spool.side("secret").join("token");
    std::fs::write(&token, "Bearer one").unwrap();
    let events = spool.side("log").join("events.jsonl");
    let cfg = token_config(&spool, &rx.url("/in"), &token, "");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    spool.put("one", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    std::fs::write(&cfg, format!("{good}bogus = 1\n")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(
        &events,
        &["\"reload\"", "\"ok\":false", "spoolpost.toml:"]
    )));
    spool.put("two", b"x");
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 2),
        "the old configuration keeps sending"
    );
    // A good reload swaps a literal header in, and names what needs a restart.
    let changed = good
        .replace(
            "[receivers.main.headers]\n",
            "[receivers.main.headers]\nX-Tag = \"two\"\n",
        )
        .replace("[sender]\n", "[sender]\ngrace = \"7s\"\n");
    std::fs::write(&cfg, changed).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(
        &events,
        &["\"ok\":true", "\"restart_needed\":[\"[sender]\"]"]
    )));
    spool.put("three", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 3));
    let last = rx.received().into_iter().last().unwrap();
    assert_eq!(last.header("x-tag"), Some("two"));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
}

#[test]
fn sighup_during_many_requests_in_flight_loses_and_duplicates_nothing() {
    let rx = Receiver::start();
    rx.answer(spoolpost_tests::receiver::Reply::stall(
        Duration::from_millis(300),
    ));
    let spool = TestSpool::new();
    let n = 300;
    for i in 0..n {
        spool.put(format!("f{i:03}"), b"x");
    }
    let token = spool.side("secret").join("token");
    std::fs::write(&token, "Bearer t").unwrap();
    let cfg = token_config(&spool, &rx.url("/in"), &token, "concurrency = 256");
    // Many in flight at once, from the start: a pinned limit, not the
    // adaptive one that starts low and grows.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[receivers.main.headers]",
        "adaptive = false\n[receivers.main.headers]",
    );
    std::fs::write(&cfg, text).unwrap();
    let proc = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(eventually(LIMIT, || spool.names(State::Sending).len() >= 50));
    for _ in 0..3 {
        proc.signal(Signal::SIGHUP);
    }
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == n),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    let mut names: Vec<String> = rx
        .received()
        .iter()
        .filter_map(|r| r.header("x-filename").map(str::to_owned))
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(
        (before, names.len()),
        (n, n),
        "each file delivered exactly once"
    );
}

/// A daemon sender with two receivers, `a` and `b`; `route` names the one
/// every file goes to, `sender` goes into `[sender]`.
fn two_receivers(spool: &TestSpool, a: &str, b: &str, route: &str, sender: &str) -> String {
    format!(
        "spool = {:?}\n[sender]\n{sender}\n[receivers.a]\nurl = {a:?}\n[receivers.b]\nurl = {b:?}\n[[routes]]\nglob = \"*\"\nreceiver = {route:?}\n",
        path_str(&spool.root)
    )
}

#[test]
fn a_reload_that_changes_a_route_or_a_url_sends_new_files_to_the_new_receiver() {
    let (one, two, three) = (Receiver::start(), Receiver::start(), Receiver::start());
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let (a, b) = (one.url("/in"), two.url("/in"));
    let cfg = config(&spool, &two_receivers(&spool, &a, &b, "a", ""));
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    spool.put("first", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 1));
    std::fs::write(&cfg, two_receivers(&spool, &a, &b, "b", "")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(&events, &["\"ok\":true"])));
    spool.put("second", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 2));
    // Receiver a keeps its name and takes a new URL.
    std::fs::write(&cfg, two_receivers(&spool, &three.url("/in"), &b, "a", "")).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || {
        std::fs::read_to_string(&events).is_ok_and(|s| s.matches("\"ok\":true").count() == 2)
    }));
    spool.put("third", b"x");
    assert!(eventually(LIMIT, || spool.count(State::Done) == 3));
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!((one.count(), two.count(), three.count()), (1, 1, 1));
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(!log.contains("restart_needed"), "{log}");
}

#[test]
fn a_reload_that_shortens_the_backoff_lets_a_waiting_retry_go_promptly() {
    let rx = Receiver::start();
    rx.script("/in", [spoolpost_tests::receiver::Reply::status(503)]);
    let spool = TestSpool::new();
    let events = spool.side("log").join("events.jsonl");
    let url = rx.url("/in");
    let slow = "backoff_initial = \"1h\"\nbackoff_max = \"2h\"";
    let cfg = config(&spool, &two_receivers(&spool, &url, &url, "a", slow));
    let proc = spawn(
        sender(&spool)
            .arg("--config")
            .arg(&cfg)
            .arg("--events")
            .arg(&events),
    );
    spool.put("waits", b"x");
    assert!(eventually(LIMIT, || rx.count() == 1
        && spool.count(State::Incoming) == 1));
    let fast = "backoff_initial = \"100ms\"\nbackoff_max = \"2h\"";
    std::fs::write(&cfg, two_receivers(&spool, &url, &url, "a", fast)).unwrap();
    proc.signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || events_have(&events, &["\"ok\":true"])));
    assert!(
        eventually(LIMIT, || spool.count(State::Done) == 1),
        "{:?}",
        spool.census()
    );
    proc.signal(Signal::SIGTERM);
    proc.wait(LIMIT).assert_success();
    assert_eq!(rx.count(), 2);
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
    const CONFIG: &[u8] =
        b"[receivers.orders]\nurl = \"http://127.0.0.1:9/\"\n[[routes]]\nglob = \"*\"\nreceiver = \"orders\"\n";
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
    // A reader killed by the signals is reported below, not here.
    let _ = reading.write_all(CONFIG);
    drop(reading);
    // The held SIGHUPs are one reload, which reads the file again: a
    // plain one by then.
    let plain = spool.side("cfg").join("plain.toml");
    std::fs::write(&plain, CONFIG).unwrap();
    std::fs::rename(&plain, &fifo).unwrap();
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

#[test]
fn issue_29_4_check_lists_every_problem_it_finds_not_just_the_first() {
    let spool = TestSpool::new();
    let cfg = config(
        &spool,
        "[receivers.a]\nurl = \"http://127.0.0.1:9/\"\nconcurrency = 0\n\
         [receivers.b]\nurl = \"http://127.0.0.1:9/\"\ngzip_level = 12\n\
         [[routes]]\nglob = \"*.x\"\nreceiver = \"nosuch\"\n\
         [[routes]]\nglob = \"[\"\nreceiver = \"a\"\n",
    );
    let typo = spool.side("t").join("spooool");
    let (code, _, err) = check(
        spoolpost_tests::harness::command("sender")
            .arg("--spool")
            .arg(&typo)
            .arg("--config")
            .arg(&cfg),
    );
    assert_eq!(code, 78, "{err}");
    for what in [
        "receiver a: concurrency",
        "receiver b: gzip_level",
        "\"nosuch\"",
        "bad glob",
        path_str(&typo),
    ] {
        assert!(err.contains(what), "{what:?} is not among:\n{err}");
    }
    let (one, two) = (
        spool.side("t").join("nosuch1"),
        spool.side("t").join("nosuch2"),
    );
    let collector = |once: bool| {
        let mut cmd = spoolpost_tests::harness::command("collector");
        cmd.arg("--spool")
            .arg(&typo)
            .arg("--source")
            .arg(&one)
            .arg("--source")
            .arg(&two);
        if once {
            cmd.arg("--once");
        }
        check(&mut cmd)
    };
    // A one-shot run refuses missing sources (78); the daemon keeps looking
    // for them, so its check names them as warnings and only
    // the mistyped spool fails it (74).
    for (once, code_wanted) in [(true, 78), (false, 74)] {
        let (code, _, err) = collector(once);
        assert_eq!(code, code_wanted, "--once {once}: {err}");
        for what in [path_str(&one), path_str(&two), path_str(&typo)] {
            assert!(err.contains(what), "{what:?} is not among:\n{err}");
        }
        assert_eq!(
            err.matches("warning: source").count(),
            if once { 0 } else { 2 },
            "{err}"
        );
    }
    assert!(!typo.exists(), "--check must create nothing");
}
