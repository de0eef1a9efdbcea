//! Receivers that misbehave: never answer, garbage, connections closed mid
//! headers, 1xx/3xx/4xx/5xx, 429 with every Retry-After form, huge answer
//! bodies, slow answers, early answers, TLS that cannot be trusted.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::raw::{Act, RawServer};
use spoolpost_tests::receiver::{Receiver, Reply};

const MINUTE: Duration = Duration::from_secs(60);

/// One small file sent once to `url`; returns the run.
fn send_one(spool: &TestSpool, url: &str, extra: &[&str]) -> Finished {
    spool.put("a.json", b"{\"n\":1}");
    let out = run(
        sender(spool).args(["--once", "--url", url]).args(extra),
        MINUTE,
    );
    out.assert_success();
    out
}

/// The file is back in `incoming/` to wait, with this retry reason.
#[track_caller]
fn assert_waits_with(spool: &TestSpool, out: &Finished, reason: &str) {
    let names = spool.names(State::Incoming);
    assert_eq!(names.len(), 1, "{}", out.stderr);
    let name = SpoolName::parse(OsStr::from_bytes(&names[0]));
    assert_eq!(name.last_reason.as_deref(), Some(reason), "{}", out.stdout);
    assert_eq!(out.events()[0].event, EventKind::Retry);
}

/// How long until the waiting file is due.
fn wait_left(spool: &TestSpool) -> Duration {
    let path = spool
        .dir(State::Incoming)
        .join(OsStr::from_bytes(&spool.names(State::Incoming)[0]));
    let due = std::fs::metadata(path).unwrap().modified().unwrap();
    due.duration_since(SystemTime::now()).unwrap_or_default()
}

#[test]
fn a_receiver_that_never_answers_times_out_and_the_file_waits() {
    let raw = RawServer::start(Act::Silent);
    let spool = TestSpool::new();
    let out = send_one(&spool, &raw.url("/"), &["--timeout", "1s"]);
    assert_waits_with(&spool, &out, "timeout");
}

#[test]
fn garbage_instead_of_http_is_a_network_failure_and_the_file_waits() {
    let raw = RawServer::start(Act::Write(
        b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff garbage\r\n\r\n".to_vec(),
    ));
    let spool = TestSpool::new();
    let out = send_one(&spool, &raw.url("/"), &[]);
    assert_waits_with(&spool, &out, "network");
}

#[test]
fn a_connection_closed_mid_headers_is_not_a_delivery() {
    let raw = RawServer::start(Act::Write(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()));
    let spool = TestSpool::new();
    let out = send_one(&spool, &raw.url("/"), &[]);
    assert_eq!(spool.count(State::Done), 0);
    let reason = SpoolName::parse(OsStr::from_bytes(&spool.names(State::Incoming)[0])).last_reason;
    assert!(
        matches!(reason.as_deref(), Some("reset" | "network")),
        "{reason:?}: {}",
        out.stdout
    );
}

#[test]
fn a_1xx_before_the_final_answer_is_skipped() {
    let raw = RawServer::start(Act::Write(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ));
    let spool = TestSpool::new();
    let out = send_one(&spool, &raw.url("/"), &[]);
    assert_eq!(
        out.events()[0].event,
        EventKind::Delivered,
        "{}",
        out.stdout
    );
    assert_eq!(out.events()[0].status, Some(200));
    spool.find(State::Done, "a.json");
}

#[test]
fn a_redirect_is_rejected_not_followed() {
    let rx = Receiver::start();
    rx.answer_path("/moved", Reply::status(308).body("see /new"));
    let spool = TestSpool::new();
    let out = send_one(&spool, &rx.url("/moved"), &[]);
    assert_eq!(rx.count(), 1, "the Location was not followed");
    let reason = reason_of(&spool.find(State::Error, "a.json"));
    assert_eq!(reason.class, ErrorClass::Rejected);
    assert!(reason.message.contains("redirect"), "{}", reason.message);
    assert_eq!(out.events()[0].event, EventKind::Rejected);
}

#[test]
fn a_4xx_rejects_the_file_with_the_answer_s_body() {
    let rx = Receiver::start();
    rx.answer(Reply::status(422).body("field x is missing"));
    let spool = TestSpool::new();
    send_one(&spool, &rx.url("/"), &[]);
    let reason = reason_of(&spool.find(State::Error, "a.json"));
    assert_eq!(
        (reason.class, reason.status),
        (ErrorClass::Rejected, Some(422))
    );
    assert_eq!(reason.body.as_deref(), Some("field x is missing"));
}

#[test]
fn a_5xx_puts_the_file_back_to_wait() {
    let rx = Receiver::start();
    rx.answer(Reply::status(503));
    let spool = TestSpool::new();
    let out = send_one(&spool, &rx.url("/"), &[]);
    assert_waits_with(&spool, &out, "http-503");
}

/// 429 with `Retry-After: value`; returns how long the file waits (the
/// default backoff is 1 s halved by jitter at most, capped at 5 min).
fn wait_after_429(value: &str) -> Duration {
    let rx = Receiver::start();
    rx.answer(Reply::status(429).retry_after(value));
    let spool = TestSpool::new();
    let out = send_one(&spool, &rx.url("/"), &[]);
    assert_waits_with(&spool, &out, "http-429");
    wait_left(&spool)
}

#[test]
fn retry_after_in_seconds_is_honoured() {
    let w = wait_after_429("120");
    assert!(
        w > Duration::from_secs(100) && w <= Duration::from_secs(120),
        "{w:?}"
    );
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
    let w = wait_after_429(&at);
    assert!(
        w > Duration::from_secs(70) && w <= Duration::from_secs(90),
        "{w:?}"
    );
}

#[test]
fn retry_after_in_the_past_means_the_normal_backoff() {
    let w = wait_after_429("Sun, 06 Nov 1994 08:49:37 GMT");
    assert!(w <= Duration::from_secs(1), "{w:?}");
}

#[test]
fn retry_after_garbage_is_ignored() {
    let w = wait_after_429("soon, maybe");
    assert!(w <= Duration::from_secs(1), "{w:?}");
}

#[test]
fn a_huge_retry_after_is_capped_at_backoff_max() {
    for value in ["999999999999", "99999999999999999999999"] {
        let w = wait_after_429(value);
        assert!(w <= Duration::from_secs(300), "{value}: {w:?}");
    }
}

#[test]
fn a_1_gib_answer_body_is_cut_at_4096_bytes_in_bounded_memory() {
    let raw = RawServer::start(Act::Endless(
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 1073741824\r\n\r\n".to_vec(),
    ));
    let spool = TestSpool::new();
    let out = send_one(&spool, &raw.url("/"), &[]);
    let reason = reason_of(&spool.find(State::Error, "a.json"));
    assert_eq!(reason.status, Some(400));
    assert_eq!(reason.body.as_deref().map(str::len), Some(4096));
    assert!(reason.body_truncated);
    assert!(out.peak_rss_kib < 64 * 1024, "{} KiB", out.peak_rss_kib);
    assert!(
        raw.body_bytes() < 1 << 30,
        "the sender stopped reading long before the end"
    );
}

#[test]
fn a_slowloris_answer_is_cut_off_by_the_timeout() {
    let raw = RawServer::start(Act::Dribble(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        Duration::from_millis(300),
    ));
    let spool = TestSpool::new();
    let out = send_one(&spool, &raw.url("/"), &["--timeout", "1s"]);
    assert_waits_with(&spool, &out, "timeout");
}

fn tls_config(spool: &TestSpool, url: &str, ca: Option<&str>) -> std::path::PathBuf {
    let ca_line = ca.map(|pem| {
        let path = spool.side("etc").join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        format!("ca_file = \"{}\"", path_str(&path))
    });
    ConfigFile::to("r", url)
        .with(&ca_line.unwrap_or_default())
        .write(spool)
}

/// One small file sent once with the config at `cfg`.
fn send_with(spool: &TestSpool, cfg: &std::path::Path, extra: &[&str]) -> Finished {
    spool.put("a.json", b"{\"n\":1}");
    let out = run(
        sender(spool)
            .arg("--once")
            .arg("--config")
            .arg(cfg)
            .args(extra),
        MINUTE,
    );
    out.assert_success();
    out
}

#[test]
fn tls_with_an_untrusted_certificate_is_refused_and_the_file_waits() {
    let (rx, _pem) = Receiver::start_tls();
    let spool = TestSpool::new();
    let out = send_with(&spool, &tls_config(&spool, &rx.url("/"), None), &[]);
    assert_waits_with(&spool, &out, "tls");
    assert_eq!(rx.count(), 0);
}

#[test]
fn tls_with_a_certificate_for_another_name_is_refused() {
    let (rx, pem) = Receiver::start_tls_for(&["spoolpost.invalid"]);
    let spool = TestSpool::new();
    let out = send_with(&spool, &tls_config(&spool, &rx.url("/"), Some(&pem)), &[]);
    assert_waits_with(&spool, &out, "tls");
    let error = out.events()[0].error.clone().unwrap_or_default();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(rx.count(), 0);
}

#[test]
fn tls_to_a_plain_http_port_fails_and_the_file_waits() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let url = rx.url("/").replace("http://", "https://");
    let out = send_with(&spool, &tls_config(&spool, &url, None), &[]);
    assert_waits_with(&spool, &out, "tls");
    assert_eq!(rx.received().len(), 0);
}

/// Every output a run can leave: event lines, diagnostics, reason records.
fn every_output(spool: &TestSpool, out: &Finished) -> String {
    let mut all = format!("{}\n{}\n", out.stdout, out.stderr);
    for e in std::fs::read_dir(spool.dir(State::Error)).unwrap() {
        let path = e.unwrap().path();
        if path.to_string_lossy().ends_with(".reason.json") {
            all.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    all
}

#[test]
fn issue_13_4_credentials_in_the_url_never_reach_events_logs_or_reasons() {
    let rx = Receiver::start();
    rx.answer_path("/reset", Reply::reset());
    rx.answer_path("/r4", Reply::status(403).body("no"));
    rx.answer_path("/r5", Reply::status(503).body("later"));
    rx.answer_path("/slow", Reply::stall(Duration::from_secs(30)));
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = refused.local_addr().unwrap().port();
    drop(refused);
    let secret_url =
        |host: String, path: &str| format!("http://u:pw-hunter2@{host}{path}?token=tok-sekrit");
    let mut text = String::from("[sender]\nmax_attempts = 1\n");
    let kinds = ["refused", "reset", "r4", "r5", "slow"];
    for kind in kinds {
        let host = if kind == "refused" {
            format!("127.0.0.1:{refused_port}")
        } else {
            rx.addr().to_string()
        };
        text.push_str(&format!(
            "[receivers.{kind}]\nurl = \"{}\"\ntimeout = \"1s\"\n",
            secret_url(host, &format!("/{kind}"))
        ));
    }
    for kind in kinds {
        text.push_str(&format!(
            "[[routes]]\nglob = \"{kind}-*\"\nreceiver = \"{kind}\"\n"
        ));
    }
    for format in ["text", "json"] {
        let spool = TestSpool::new();
        let cfg = config(&spool, &text);
        for kind in kinds {
            spool.put(format!("{kind}-1.json"), b"{}");
        }
        let out = run(
            sender(&spool)
                .args(["--once", "-v", "--log-format", format, "--config"])
                .arg(&cfg),
            MINUTE,
        );
        out.assert_success();
        assert_eq!(spool.count(State::Error), kinds.len(), "{}", out.stderr);
        let all = every_output(&spool, &out);
        for kind in ["refused", "reset", "403", "503", "timed out"] {
            assert!(
                all.contains(kind) || kind == "reset",
                "no {kind} failure in:\n{all}"
            );
        }
        // Markers with a hyphen: a temporary folder's random name (letters
        // and digits) once held "PW", and the test took it for the password.
        assert!(!all.contains("pw-hunter2"), "the password leaked:\n{all}");
        assert!(!all.contains("tok-sekrit"), "the token leaked:\n{all}");
    }
    // Kept out of sight, the credentials still reach the receiver, as
    // Basic authentication ("u:pw-hunter2").
    let r4: Vec<_> = rx
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/r4"))
        .collect();
    assert!(!r4.is_empty());
    for r in &r4 {
        assert_eq!(
            r.header("authorization"),
            Some("Basic dTpwdy1odW50ZXIy"),
            "{r:?}"
        );
    }
}

/// A file too large for loopback's socket buffers to swallow whole: a body
/// the receiver does not read cannot be sent in full, so an answer to it
/// is early however the machine is loaded.
fn large_file(spool: &TestSpool, name: &str) -> u64 {
    let mut data = vec![0u8; 40 << 20];
    fastrand::Rng::with_seed(17).fill(&mut data);
    spool.put(name, &data);
    data.len() as u64
}

#[test]
fn issue_17_an_early_2xx_to_a_large_file_is_not_a_delivery() {
    let rx = Receiver::start();
    rx.answer(Reply::early());
    let spool = TestSpool::new();
    let size = large_file(&spool, "big.bin");
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/stub")]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(spool.count(State::Done), 0, "{}", out.stdout);
    let reason = reason_of(&spool.find(State::Error, "big.bin"));
    assert_eq!(reason.class, ErrorClass::EarlyAnswer, "{reason:?}");
    assert_eq!(reason.status, Some(200));
    assert!(
        reason.message.contains(&format!("of {size}")),
        "{}",
        reason.message
    );
    assert!(reason.message.contains("200"), "{}", reason.message);
    assert_eq!(out.events()[0].event, EventKind::Rejected);
    // The reporter's error groups show early answers per receiver.
    let report = run(reporter(&spool).args(["--format", "json"]), MINUTE);
    report.assert_success();
    assert!(
        report.stdout.contains("\"early_answer\""),
        "{}",
        report.stdout
    );
}

#[test]
fn issue_17_an_early_2xx_to_a_small_file_is_a_delivery_of_the_whole_file() {
    // A small body goes out with the request head in one write, so it is
    // wholly sent before any answer can come: the event must say so.
    let rx = Receiver::start();
    rx.answer(Reply::early());
    let spool = TestSpool::new();
    spool.put("small.json", b"{\"small\":true}");
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/stub")]),
        MINUTE,
    );
    out.assert_success();
    let events = out.events();
    assert_eq!(events[0].event, EventKind::Delivered, "{}", out.stdout);
    assert_eq!(events[0].bytes_read, 14);
}

#[test]
fn issue_17_a_receiver_that_reads_everything_before_answering_is_unaffected() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let size = large_file(&spool, "big.bin");
    let out = run(
        sender(&spool).args(["--once", "--no-gzip", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();
    let events = out.events();
    assert_eq!(events[0].event, EventKind::Delivered, "{}", out.stdout);
    assert_eq!(events[0].bytes_read, size, "the whole file was read");
    assert_eq!(rx.received()[0].body_len, size);
    spool.find(State::Done, "big.bin");
}

#[test]
fn issue_17_accept_early_answer_restores_delivery_on_an_early_2xx() {
    let rx = Receiver::start();
    rx.answer(Reply::early());
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("stub", &rx.url("/stub"))
        .with("accept_early_answer = true")
        .write(&spool);
    large_file(&spool, "big.bin");
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(
        out.events()[0].event,
        EventKind::Delivered,
        "{}",
        out.stdout
    );
    spool.find(State::Done, "big.bin");
}

#[test]
fn issue_17_an_early_4xx_keeps_its_class() {
    let rx = Receiver::start();
    rx.answer(Reply {
        early: true,
        ..Reply::status(413).body("too large")
    });
    let spool = TestSpool::new();
    large_file(&spool, "big.bin");
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();
    let reason = reason_of(&spool.find(State::Error, "big.bin"));
    assert_eq!(
        (reason.class, reason.status),
        (ErrorClass::Rejected, Some(413))
    );
}

#[test]
fn issue_17_early_answers_count_against_the_receiver_s_circuit() {
    let rx = Receiver::start();
    rx.answer(Reply::early());
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("stub", &rx.url("/stub"))
        .sender("breaker_failures = 2")
        .with("concurrency = 1")
        .write(&spool);
    for name in ["a.bin", "b.bin", "c.bin"] {
        large_file(&spool, name);
    }
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    assert!(out.stderr.contains("circuit opened"), "{}", out.stderr);
    // One URL has no other endpoints to send to.
    assert!(!out.stderr.contains("other endpoints"), "{}", out.stderr);
    // Which of the later files still go depends on the scheduler (a file
    // that passed the circuit check may go once a slot frees); that the
    // circuit opened on early answers alone is the point.
    assert_eq!(spool.count(State::Done), 0);
}

#[test]
fn an_early_answer_from_a_receiver_that_then_stops_reading_does_not_hang_the_sender() {
    let raw = RawServer::start(Act::WriteAndStall(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ));
    let spool = TestSpool::new();
    large_file(&spool, "big.bin");
    let out = run(
        sender(&spool).args(["--once", "--no-gzip", "--url", &raw.url("/")]),
        Duration::from_secs(30),
    );
    out.assert_success();
    let reason = reason_of(&spool.find(State::Error, "big.bin"));
    assert_eq!(reason.class, ErrorClass::EarlyAnswer);
}
