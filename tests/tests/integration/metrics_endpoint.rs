//! The metrics endpoint, `reporter --metrics-listen`: the report's
//! Prometheus text over HTTP for those who scrape rather than read
//! node_exporter's textfile. Real reporters on real ports of 127.0.0.1
//! (port 0: the address bound is read from the reporter's log), scraped
//! over real sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use nix::sys::signal::Signal;
use spoolpost_tests::harness::*;

const LIMIT: Duration = Duration::from_secs(20);

/// A reporter that is killed if the test ends without stopping it.
struct Serving(Option<Running>);

impl Serving {
    fn start(cmd: &mut std::process::Command) -> (Serving, SocketAddr) {
        let running = spawn(cmd);
        let mut addr = None;
        let found = eventually(LIMIT, || {
            addr = listening_at(&running.stderr_so_far());
            addr.is_some()
        });
        assert!(
            found,
            "no `serving metrics` line; stderr:\n{}",
            running.stderr_so_far()
        );
        (Serving(Some(running)), addr.unwrap())
    }

    fn running(&self) -> &Running {
        self.0.as_ref().unwrap()
    }

    /// SIGTERM, then what it left.
    fn stop(mut self) -> Finished {
        let running = self.0.take().unwrap();
        running.signal(Signal::SIGTERM);
        running.wait(LIMIT)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(r) = &mut self.0 {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// The address in the reporter's `serving metrics url=http://IP:PORT/metrics` line.
fn listening_at(stderr: &str) -> Option<SocketAddr> {
    let line = stderr.lines().find(|l| l.contains("serving metrics"))?;
    let url = line.split("url=http://").nth(1)?;
    url.split('/').next()?.parse().ok()
}

/// One request on a connection of its own: status, headers (lower-cased
/// names), body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, head, body) = request(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    body
}

/// The families of a Prometheus text, by their `# TYPE` lines.
fn families(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("# TYPE ")).collect()
}

#[test]
fn a_scrape_gets_the_same_families_as_the_textfile_and_stdout_stays_quiet() {
    let spool = TestSpool::new();
    spool.put("a.json", b"{}");
    spool.put("b.json", b"{}");
    let textfile = run(reporter(&spool).args(["--format", "prometheus"]), LIMIT);
    textfile.assert_success();
    let (serving, addr) =
        Serving::start(reporter(&spool).args(["--metrics-listen", "127.0.0.1:0"]));
    let body = scrape(addr);
    assert!(
        body.contains("spoolpost_files{state=\"incoming\"} 2\n"),
        "{body}"
    );
    assert_eq!(families(&body), families(&textfile.stdout));
    // HEAD: the headers of GET, no body.
    let (status, head, body) = request(addr, "HEAD", "/metrics");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    let finished = serving.stop();
    finished.assert_success();
    assert_eq!(
        finished.stdout, "",
        "--metrics-listen alone writes no report to stdout"
    );
}

#[test]
fn only_get_and_head_on_metrics_are_answered() {
    let spool = TestSpool::new();
    let (serving, addr) =
        Serving::start(reporter(&spool).args(["--metrics-listen", "127.0.0.1:0"]));
    for path in ["/", "/metrics/", "/metricsx", "/favicon.ico"] {
        let (status, _, body) = request(addr, "GET", path);
        assert_eq!(status, 404, "{path}: {body}");
    }
    for method in ["POST", "PUT", "DELETE"] {
        let (status, head, _) = request(addr, method, "/metrics");
        assert_eq!(status, 405, "{method}");
        assert!(head.contains("allow: get, head"), "{head}");
    }
    // A query string is not a different path: Prometheus may add one.
    assert!(scrape_at(addr, "/metrics?name[]=spoolpost_files").contains("spoolpost_files"));
    serving.stop().assert_success();
}

fn scrape_at(addr: SocketAddr, path: &str) -> String {
    let (status, head, body) = request(addr, "GET", path);
    assert_eq!(status, 200, "{head}");
    body
}

#[test]
fn the_endpoint_follows_the_spool_and_outlives_a_reload() {
    let spool = TestSpool::new();
    spool.put("a.json", b"{}");
    let report = spool.side("out").join("report.prom");
    let (serving, addr) = Serving::start(reporter(&spool).args([
        "--watch",
        "1",
        "--format",
        "prometheus",
        "--output",
        path_str(&report),
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    assert!(scrape(addr).contains("spoolpost_files{state=\"incoming\"} 1\n"));
    spool.put("b.json", b"{}");
    spool.put("c.json", b"{}");
    assert!(
        eventually(LIMIT, || scrape(addr)
            .contains("spoolpost_files{state=\"incoming\"} 3\n")),
        "{}",
        scrape(addr)
    );
    // With --watch, the --output file goes on being written as well.
    assert!(eventually(LIMIT, || std::fs::read_to_string(&report)
        .is_ok_and(
            |t| t.contains("spoolpost_files{state=\"incoming\"} 3\n")
        )));
    serving.running().signal(Signal::SIGHUP);
    assert!(eventually(LIMIT, || serving
        .running()
        .stderr_so_far()
        .contains("reload")));
    assert!(scrape(addr).contains("spoolpost_files{state=\"incoming\"} 3\n"));
    serving.stop().assert_success();
}

#[test]
fn a_stalled_scraper_delays_neither_the_reports_nor_other_scrapers() {
    let spool = TestSpool::new();
    let report = spool.side("out").join("report.prom");
    let (serving, addr) = Serving::start(reporter(&spool).args([
        "--watch",
        "1",
        "--format",
        "prometheus",
        "--output",
        path_str(&report),
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    // Half a request, never finished, held open for the whole test.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"GET /metr").unwrap();
    spool.put("late.json", b"{}");
    assert!(
        eventually(LIMIT, || std::fs::read_to_string(&report).is_ok_and(
            |t| t.contains("spoolpost_files{state=\"incoming\"} 1\n")
        )),
        "the reports stopped while a scraper stalled: {:?}",
        std::fs::read_to_string(&report)
    );
    assert!(eventually(LIMIT, || scrape(addr)
        .contains("spoolpost_files{state=\"incoming\"} 1\n")));
    drop(stalled);
    serving.stop().assert_success();
}

#[test]
fn clients_that_never_send_their_request_are_dropped_in_time() {
    let spool = TestSpool::new();
    let (serving, addr) =
        Serving::start(reporter(&spool).args(["--metrics-listen", "127.0.0.1:0"]));
    // More silent connections than the endpoint serves at once: a scrape
    // gets its turn when the silent ones time out, not never.
    let silent: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let started = std::time::Instant::now();
    let body = scrape(addr);
    assert!(body.contains("spoolpost_files"), "{body}");
    assert!(
        started.elapsed() < LIMIT,
        "a scrape waited {:?}",
        started.elapsed()
    );
    drop(silent);
    serving.stop().assert_success();
}

#[test]
fn a_non_loopback_address_is_refused_unless_allowed() {
    let spool = TestSpool::new();
    let refused = run(
        reporter(&spool).args(["--metrics-listen", "0.0.0.0:0"]),
        LIMIT,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not a loopback address")
            && refused.stderr.contains("--metrics-allow-remote"),
        "{}",
        refused.stderr
    );
    // --check says the same, before the service is started.
    let check = run(
        reporter(&spool).args(["--check", "--metrics-listen", "[::]:9464"]),
        LIMIT,
    );
    assert_eq!(check.status.code(), Some(2), "{}", check.stderr);
    assert!(
        check.stderr.contains("--metrics-allow-remote"),
        "{}",
        check.stderr
    );
    // A host name is not taken: the address checked is the address bound.
    let named = run(
        reporter(&spool).args(["--metrics-listen", "localhost:9464"]),
        LIMIT,
    );
    assert_eq!(named.status.code(), Some(2), "{}", named.stderr);
    assert!(named.stderr.contains("IP:PORT"), "{}", named.stderr);

    let (serving, addr) = Serving::start(reporter(&spool).args([
        "--metrics-listen",
        "0.0.0.0:0",
        "--metrics-allow-remote",
    ]));
    assert!(addr.ip().is_unspecified(), "{addr}");
    let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    assert!(scrape(local).contains("spoolpost_files"));
    serving.stop().assert_success();
}

#[test]
fn a_second_reporter_on_the_same_port_is_exit_75_before_doing_anything() {
    let spool = TestSpool::new();
    let (serving, addr) =
        Serving::start(reporter(&spool).args(["--metrics-listen", "127.0.0.1:0"]));
    let report = spool.side("out").join("second.prom");
    let second = run(
        reporter(&spool).args([
            "--metrics-listen",
            &addr.to_string(),
            "--watch",
            "1",
            "--output",
            path_str(&report),
        ]),
        LIMIT,
    );
    assert_eq!(second.status.code(), Some(75), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("cannot serve metrics on {addr}"))
            && second.stderr.contains("in use"),
        "{}",
        second.stderr
    );
    assert!(!report.exists(), "the second reporter wrote a report");
    // The first goes on serving.
    assert!(scrape(addr).contains("spoolpost_files"));
    serving.stop().assert_success();
}

#[test]
fn an_action_does_not_take_the_endpoint() {
    let spool = TestSpool::new();
    let list = run(
        reporter(&spool).args(["--metrics-listen", "127.0.0.1:0", "list"]),
        LIMIT,
    );
    assert_eq!(list.status.code(), Some(2), "{}", list.stderr);
    assert!(list.stderr.contains("--metrics-listen"), "{}", list.stderr);
}

#[test]
fn without_the_flag_a_watch_serves_nothing() {
    let spool = TestSpool::new();
    let report = spool.side("out").join("report.prom");
    let watch = spawn(reporter(&spool).args([
        "--watch",
        "1",
        "--format",
        "prometheus",
        "--output",
        path_str(&report),
    ]));
    assert!(eventually(LIMIT, || report.exists()));
    let stderr = watch.stderr_so_far();
    watch.signal(Signal::SIGTERM);
    watch.wait(LIMIT).assert_success();
    assert!(!stderr.contains("serving metrics"), "{stderr}");
}

/// A spool removed under a running endpoint was reported as an empty,
/// healthy one (a missing folder counts as empty) for as long as it ran:
/// the endpoint goes away with exit 74 instead, which a scrape sees.
#[test]
fn a_spool_gone_ends_the_endpoint_instead_of_reporting_it_empty() {
    let spool = TestSpool::new();
    spool.put("a.json", b"{}");
    let (serving, addr) =
        Serving::start(reporter(&spool).args(["--watch", "1", "--metrics-listen", "127.0.0.1:0"]));
    assert!(scrape(addr).contains("spoolpost_files{state=\"incoming\"} 1\n"));
    let away = spool.root.with_file_name("spool-moved-away");
    std::fs::rename(&spool.root, &away).unwrap();
    let mut running = serving;
    let finished = running.0.take().unwrap().wait(LIMIT);
    assert_eq!(finished.status.code(), Some(74), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("not a spool"),
        "{}",
        finished.stderr
    );
    assert!(TcpStream::connect(addr).is_err(), "still served");
}
