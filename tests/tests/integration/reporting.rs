//! Reporting: the reporter's counts, ages, rates, percentiles and
//! Prometheus metrics, checked against spools and event logs built by the
//! tests and against a live sender.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use spoolpost_protocol::event::{Event, EventKind, rfc3339};
use spoolpost_protocol::name::{Key, SpoolName};
use spoolpost_protocol::spool::{ClaimFolder, Spool, State};
use spoolpost_tests::harness::*;

const MINUTE: Duration = Duration::from_secs(60);

pub(crate) fn routes(spool: &TestSpool, url: &str) -> std::path::PathBuf {
    config(
        spool,
        &format!(
            r#"
[sender]
breaker_failures = 2
breaker_open_initial = "1h"
backoff_initial = "1h"
[receivers.orders]
url = "{url}/orders"
[receivers.audit]
url = "{url}/audit"
[[routes]]
glob = "orders-*"
receiver = "orders"
[[routes]]
glob = "audit-*"
receiver = "audit"
"#
        ),
    )
}

pub(crate) fn put_aged(spool: &TestSpool, state: State, name: &str, size: usize, age: Duration) {
    let path = spool.dir(state).join(name);
    std::fs::write(&path, vec![b'x'; size]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

pub(crate) fn json(out: &Finished) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
}

fn approx(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 5.0)
}

#[test]
fn counts_bytes_ages_and_errors_match_the_spool() {
    // Build the binaries before the clock starts on the files' ages.
    bin("reporter");
    let spool = TestSpool::new();
    let cfg = routes(&spool, "http://127.0.0.1:9");
    put_aged(
        &spool,
        State::Incoming,
        "orders-1",
        100,
        Duration::from_secs(30),
    );
    put_aged(
        &spool,
        State::Incoming,
        "orders-2",
        200,
        Duration::from_secs(3000),
    );
    put_aged(
        &spool,
        State::Incoming,
        "audit-1",
        50,
        Duration::from_secs(5),
    );
    put_aged(&spool, State::Incoming, "stray", 7, Duration::from_secs(5));
    // A retried file: its age counts from its first attempt, not its mtime.
    let mut retried = SpoolName::fresh("orders-3");
    retried.key = Some(Key::random());
    retried.first_attempt = Some(spoolpost_protocol::spool::unix_seconds(SystemTime::now()) - 7200);
    retried.attempts = 3;
    retried.last_reason = Some("http-503".into());
    put_aged(
        &spool,
        State::Incoming,
        retried.to_os_string().to_str().unwrap(),
        10,
        Duration::ZERO,
    );
    // One file being sent by a live sender.
    let live = ClaimFolder::create(&Spool::open(&spool.root).unwrap()).unwrap();
    let t = spoolpost_protocol::spool::unix_seconds(SystemTime::now()) - 10;
    std::fs::write(
        live.path()
            .join(format!("audit-2~sp.kabababababababababababab.t{t}")),
        "yy",
    )
    .unwrap();
    put_aged(
        &spool,
        State::Done,
        "orders-0",
        1000,
        Duration::from_secs(60),
    );
    for (name, class, status) in [
        ("orders-e1", "rejected", Some(422)),
        ("orders-e2", "rejected", Some(422)),
        ("audit-e1", "expired", Some(503)),
    ] {
        put_aged(&spool, State::Error, name, 1, Duration::from_secs(1));
        let reason = serde_json::json!({
            "class": class, "message": "m", "file": name, "key": null, "receiver": null, "url": null,
            "status": status, "body": null, "body_truncated": false, "error": null, "attempts": 1,
            "first_attempt": null, "last_attempt": "2026-01-01T00:00:00Z"
        });
        std::fs::write(
            spool.dir(State::Error).join(format!("{name}.reason.json")),
            reason.to_string(),
        )
        .unwrap();
    }

    let out = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["--format", "json"]),
        MINUTE,
    );
    out.assert_success();
    let r = json(&out);
    assert_eq!(r["states"]["incoming"]["files"], 5);
    assert_eq!(r["states"]["incoming"]["bytes"], 367);
    assert!(
        approx(&r["states"]["incoming"]["oldest_age_seconds"], 7200.0),
        "{}",
        r["states"]["incoming"]
    );
    assert_eq!(r["states"]["sending"]["files"], 1);
    assert_eq!(r["states"]["done"]["bytes"], 1000);
    assert_eq!(
        r["states"]["error"]["files"], 3,
        "reason records are not counted as files"
    );

    let orders = &r["receivers"]["orders"];
    assert_eq!(orders["backlog"]["files"], 3);
    assert_eq!(orders["backlog"]["bytes"], 310);
    assert_eq!(orders["retrying"], 1);
    assert!(approx(&orders["backlog"]["oldest_age_seconds"], 7200.0));
    let buckets: Vec<Option<u64>> = serde_json::from_value(r["age_buckets"].clone()).unwrap();
    let ages: Vec<u64> = serde_json::from_value(orders["ages"].clone()).unwrap();
    let bucket = |secs: u64| {
        buckets
            .iter()
            .position(|b| b.is_none_or(|b| secs <= b))
            .unwrap()
    };
    assert_eq!(ages[bucket(30)], 1);
    assert_eq!(ages[bucket(3000)], 1);
    assert_eq!(ages[bucket(7200)], 1);
    assert_eq!(ages.iter().sum::<u64>(), 3);
    assert_eq!(
        r["receivers"]["audit"]["backlog"]["files"], 2,
        "one waiting, one being sent"
    );
    assert_eq!(r["receivers"]["(no route)"]["backlog"]["files"], 1);

    let errors = r["errors"].as_array().unwrap();
    let find = |rec: &str, class: &str| {
        errors
            .iter()
            .find(|e| e["receiver"] == rec && e["class"] == class)
            .unwrap_or_else(|| panic!("{rec}/{class} in {errors:?}"))
            .clone()
    };
    assert_eq!(find("orders", "rejected")["files"], 2);
    assert_eq!(find("orders", "rejected")["status"], 422);
    assert_eq!(find("audit", "expired")["files"], 1);

    // The same numbers in the table, for people.
    let table = run(reporter(&spool).arg("--config").arg(&cfg), MINUTE);
    table.assert_success();
    assert!(
        table.stdout.contains("RECEIVERS") && table.stdout.contains("orders"),
        "{}",
        table.stdout
    );
    assert!(
        !table.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    // Health checks exit 3 with one line saying why.
    let out = run(
        reporter(&spool).args(["--fail-if", "backlog_age > 1h", "--format", "json"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("backlog_age > 1h"), "{}", out.stderr);
    let out = run(
        reporter(&spool).args(["--fail-if", "backlog_age > 3h", "--fail-if", "errors > 5"]),
        MINUTE,
    );
    out.assert_success();
    let out = run(
        reporter(&spool).args(["--fail-if", "backlog_ag > 3h"]),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(2));
    drop(live);
}

#[test]
fn prometheus_output_is_well_formed_and_written_atomically() {
    let spool = TestSpool::new();
    put_aged(&spool, State::Incoming, "a", 10, Duration::from_secs(20));
    let spool_handle = Spool::open(&spool.root).unwrap();
    spoolpost_protocol::circuits::hold(&spool_handle, "orders.eu-1").unwrap();
    // A hold no receiver can have: counted as unexpected, never
    // a label that could break the format.
    std::fs::write(spool.root.join("hold").join("we\"ird\\name\n"), b"").unwrap();
    let prom = spool.side("textfile").join("spoolpost.prom");
    run(
        reporter(&spool)
            .args(["--format", "prometheus", "--output"])
            .arg(&prom),
        MINUTE,
    )
    .assert_success();
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        std::fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left"
    );

    let sample = regex_lite(&text);
    let mut declared = std::collections::HashSet::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(declared.insert(name.to_string()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().unwrap();
            assert_eq!(words.next(), Some("gauge"));
            assert!(declared.contains(name), "TYPE before HELP for {name}");
            typed.insert(name.to_string());
        } else {
            let name = sample(line);
            assert!(typed.contains(&name), "sample before its TYPE: {line}");
        }
    }
    assert!(
        text.contains("spoolpost_files{state=\"incoming\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("spoolpost_receiver_held{receiver=\"orders.eu-1\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("\nspoolpost_unexpected_entries 1\n"),
        "{text}"
    );
    assert!(!text.contains("ird"), "{text}");
}

/// Checks one sample line of the text format and returns its metric name:
/// `name{label="value",...} number`, label values escaped.
fn regex_lite(_: &str) -> impl Fn(&str) -> String {
    |line: &str| {
        let (name_and_labels, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in {line}"
        );
        let name = name_and_labels.split('{').next().unwrap();
        assert!(
            name.starts_with("spoolpost_")
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "bad metric name in {line}"
        );
        if let Some(labels) = name_and_labels.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("braces");
            let mut chars = inner.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "label name in {line}"
                );
                assert_eq!(chars.next(), Some('"'), "quote in {line}");
                loop {
                    match chars.next() {
                        Some('\\') => assert!(
                            matches!(chars.next(), Some('\\' | '"' | 'n')),
                            "escape in {line}"
                        ),
                        Some('"') => break,
                        Some('\n') | None => panic!("unterminated label in {line}"),
                        Some(_) => {}
                    }
                }
                if chars.peek() == Some(&',') {
                    chars.next();
                }
            }
        }
        name.to_string()
    }
}

fn event(
    kind: EventKind,
    at: SystemTime,
    receiver: Option<&str>,
    latency: Option<f64>,
    spool_name: &str,
    key: Option<&str>,
) -> String {
    serde_json::to_string(&Event {
        time: rfc3339(at),
        event: kind,
        file: spool_name.split("~sp").next().unwrap().into(),
        spool_name: spool_name.into(),
        key: key.map(String::from),
        receiver: receiver.map(String::from),
        status: Some(200),
        bytes_read: 1,
        bytes_sent: 1,
        latency_ms: latency,
        attempt: 1,
        error: None,
        source: None,
        limit: None,
        endpoint: None,
        failed_over: Vec::new(),
    })
    .unwrap()
}

#[test]
fn rates_and_percentiles_from_an_event_log_with_known_answers() {
    let spool = TestSpool::new();
    let now = SystemTime::now();
    let mut lines = Vec::new();
    // 120 files collected 30 s ago; 60 of them delivered 100 ms later with
    // attempt latencies 1..=60 ms, and 100 more delivered 4 minutes ago.
    for i in 0..120 {
        let collected = now - Duration::from_secs(30);
        lines.push(event(
            EventKind::Collected,
            collected,
            None,
            None,
            &format!("f{i}"),
            None,
        ));
        if i < 60 {
            let key = format!("{:024x}", i);
            let spooled = format!("f{i}~sp.k{key}.t1");
            lines.push(event(
                EventKind::Delivered,
                collected + Duration::from_millis(100),
                Some("r"),
                Some(f64::from(i + 1)),
                &spooled,
                Some(&key),
            ));
        }
    }
    for i in 0..100 {
        let at = now - Duration::from_secs(240);
        lines.push(event(
            EventKind::Delivered,
            at,
            Some("r"),
            Some(1.0),
            &format!("old{i}~sp.k{:024x}.t1", 1000 + i),
            Some(&format!("{:024x}", 1000 + i)),
        ));
    }
    // One redelivery of a key seen before, and two retries.
    lines.push(event(
        EventKind::Delivered,
        now - Duration::from_secs(20),
        Some("r"),
        Some(1.0),
        "f0~sp.k000000000000000000000000.t1",
        Some(&format!("{:024x}", 0)),
    ));
    lines.push(event(
        EventKind::Retry,
        now - Duration::from_secs(20),
        Some("r"),
        Some(1.0),
        "x",
        None,
    ));
    lines.push(event(
        EventKind::Retry,
        now - Duration::from_secs(20),
        Some("r"),
        Some(1.0),
        "y",
        None,
    ));
    lines.push("not json".into());
    let log = spool.side("logs").join("events.jsonl");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let out = run(
        reporter(&spool)
            .args(["--format", "json", "--events"])
            .arg(&log),
        MINUTE,
    );
    out.assert_success();
    let ev = &json(&out)["events"];
    assert_eq!(ev["unreadable_lines"], 1);
    let rate = |minutes: u64| {
        ev["rates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["window_minutes"] == minutes)
            .unwrap()
            .clone()
    };
    let one = rate(1);
    assert_eq!(one["collected_per_second"], 2.0, "120 in 60 s");
    assert_eq!(one["delivered_per_second"], 61.0 / 60.0);
    assert_eq!(one["delivery_ratio"], 61.0 / 120.0);
    let five = rate(5);
    assert_eq!(five["delivered_per_second"], 161.0 / 300.0);
    let r = &ev["receivers"]["r"];
    assert_eq!(r["delivered"], 161);
    assert_eq!(r["redeliveries"], 1);
    assert_eq!(r["retries"], 2);
    assert_eq!(r["end_to_end_ms"]["count"], 61);
    assert!(
        (r["end_to_end_ms"]["p50"].as_f64().unwrap() - 100.0).abs() < 1.0,
        "{}",
        r["end_to_end_ms"]
    );
    // 163 latencies: 60 of 1..=60, 103 of 1.0 -> p50 = 1, p99 = 59 (rank 162 of 163).
    assert_eq!(r["attempt_latency_ms"]["count"], 163);
    assert_eq!(r["attempt_latency_ms"]["p50"], 1.0);
    assert_eq!(r["attempt_latency_ms"]["p99"], 59.0);

    // The same through a pipe: `... | reporter --events -`.
    let mut child = reporter(&spool)
        .args(["--format", "json", "--events", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    let piped: Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!(piped["events"]["receivers"]["r"]["delivered"], 161);
}

#[test]
fn a_clean_spool_with_a_live_sender_has_nothing_unexpected() {
    let spool = TestSpool::new();
    let live = ClaimFolder::create(&Spool::open(&spool.root).unwrap()).unwrap();
    spoolpost_protocol::circuits::write(live.path(), &Default::default()).unwrap();
    spool.put("a", b"x");
    run(reporter(&spool).args(["hold", "orders"]), MINUTE).assert_success();
    let out = run(
        reporter(&spool).args(["--fail-if", "unexpected > 0"]),
        MINUTE,
    );
    out.assert_success();
    drop(live);
}

/// A receiver's shared rate limit as the reporter shows it while two
/// senders share it: the configured limit, the bucket's tokens (within its
/// burst) and both senders among those who took from it.
#[test]
fn the_reporter_shows_a_shared_rate_its_tokens_and_who_takes_from_it() {
    let rx = spoolpost_tests::receiver::Receiver::start();
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("quota", &rx.url("/in"))
        .with("rate_limit = \"20/s\"")
        .write(&spool);
    // Ten seconds of work at 20/s for two senders together.
    for i in 0..200 {
        spool.put(format!("f-{i:03}"), b"x");
    }
    let senders: Vec<Running> = (0..2)
        .map(|_| spawn(sender(&spool).arg("--config").arg(&cfg)))
        .collect();
    let pids: Vec<i64> = senders.iter().map(|s| s.pid().as_raw().into()).collect();
    let mut rate = Value::Null;
    let both_seen = eventually(MINUTE, || {
        let out = run(
            reporter(&spool)
                .arg("--config")
                .arg(&cfg)
                .args(["--format", "json"]),
            MINUTE,
        );
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        rate = report["receivers"]["quota"]["rate"].clone();
        let takers: Vec<i64> = (rate["takers"].as_array().into_iter().flatten())
            .filter_map(|t| t["pid"].as_i64())
            .collect();
        pids.iter().all(|p| takers.contains(p))
    });
    assert!(both_seen, "{rate}");
    assert_eq!(rate["limit"], "20/s", "{rate}");
    assert_eq!(rate["burst"], 2, "{rate}");
    assert!(rate["tokens"].as_u64().is_some_and(|t| t <= 2), "{rate}");
    for t in rate["takers"].as_array().unwrap() {
        assert_eq!(t["limit"], "20/s", "{rate}");
        assert!(
            t["last_take_seconds_ago"].as_u64().is_some_and(|s| s < 60),
            "{rate}"
        );
    }
    let table = run(reporter(&spool).arg("--config").arg(&cfg), MINUTE);
    let row = table
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("RATE"))
        .find(|l| l.trim_start().starts_with("quota"))
        .unwrap_or_else(|| panic!("no rate row:\n{}", table.stdout))
        .to_string();
    assert!(row.contains("20/s"), "{row}");
    for p in &pids {
        assert!(row.contains(&format!("{p}@")), "{row}");
    }
    let prom = run(
        reporter(&spool)
            .arg("--config")
            .arg(&cfg)
            .args(["--format", "prometheus"]),
        MINUTE,
    );
    assert!(
        prom.stdout
            .contains("spoolpost_receiver_rate_limit_per_second{receiver=\"quota\"} 20\n"),
        "{}",
        prom.stdout
    );
    for s in senders {
        s.signal(nix::sys::signal::Signal::SIGTERM);
        s.wait(MINUTE).assert_success();
    }
}
