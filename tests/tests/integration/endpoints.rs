//! A receiver with several endpoints (`urls`): least-in-flight spreading,
//! failover within an attempt, a circuit per endpoint, and the receiver
//! waiting as one open circuit when every endpoint is down.

use crate::support::setups::*;
use nix::sys::signal::Signal;
use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};
use std::collections::BTreeSet;
use std::time::Duration;
const MINUTE: Duration = Duration::from_secs(60);

/// A port on loopback that nothing listens on: connections are refused.
fn refusing_url(path: &str) -> (std::net::SocketAddr, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    (addr, format!("http://{addr}{path}"))
}

#[test]
fn two_endpoints_with_one_refusing_deliver_everything_at_once_and_its_circuit_opens() {
    let rx = Receiver::start();
    let (_, down) = refusing_url("/in");
    let up = rx.url("/in");
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&down, &up], "60s", "");
    for i in 0..60 {
        spool.put(format!("f{i}"), format!("body {i}").as_bytes());
    }
    let started = std::time::Instant::now();
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(
        eventually(MINUTE, || spool.count(State::Done) == 60),
        "{:?}",
        spool.census()
    );
    let took = started.elapsed();
    // The down endpoint's circuit is open, the receiver's closed: the
    // sender publishes both while it runs, and the reporter shows them.
    let circuits = circuits_of(&spool);
    let r = &circuits["r"];
    let label = |u: &str| u.to_string();
    assert_eq!(r.state, spoolpost_protocol::circuits::CircuitState::Closed);
    assert_eq!(
        r.endpoints[&label(&down)].state,
        spoolpost_protocol::circuits::CircuitState::Open,
        "{circuits:?}"
    );
    assert_eq!(
        r.endpoints[&label(&up)].state,
        spoolpost_protocol::circuits::CircuitState::Closed
    );
    let prom = run(reporter(&spool).args(["--format", "prometheus"]), MINUTE);
    prom.assert_success();
    let line = format!(
        "spoolpost_endpoint_circuit_state{{receiver=\"r\",endpoint=\"{down}\",state=\"open\"}} 1"
    );
    assert!(prom.stdout.contains(&line), "{}", prom.stdout);
    let table = run(&mut reporter(&spool), MINUTE);
    assert!(
        table
            .stdout
            .contains(&format!("endpoint {down} of r: open")),
        "{}",
        table.stdout
    );
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(MINUTE);
    out.assert_success();
    // Nothing waited for a backoff or the open period (60 s each): every
    // file went on its first attempt, those that met the refusing endpoint
    // straight on to the other.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let events = out.events();
    let delivered: Vec<_> = events
        .iter()
        .filter(|e| e.event == EventKind::Delivered)
        .collect();
    assert_eq!(delivered.len(), 60);
    assert!(delivered.iter().all(|e| e.attempt == 1));
    assert!(
        delivered
            .iter()
            .all(|e| e.endpoint.as_deref() == Some(up.as_str()))
    );
    let failed_over: Vec<_> = delivered
        .iter()
        .filter(|e| !e.failed_over.is_empty())
        .collect();
    // Two refusals open its circuit; at most the requests granted before
    // that met it too.
    assert!(!failed_over.is_empty());
    for e in &failed_over {
        assert_eq!(e.failed_over.len(), 1, "{e:?}");
        assert!(
            e.failed_over[0].starts_with(&format!("{down}: ")),
            "{:?}",
            e.failed_over
        );
    }
    // The same key went to both endpoints: one key per file.
    assert_eq!(rx.count(), 60);
    assert_eq!(spool.claim_folders(), 0);
}

#[test]
fn an_endpoint_answering_503_is_failed_over_and_used_again_once_it_recovers() {
    let rx = Receiver::start();
    rx.answer_path("/a", Reply::status(503));
    let (a, b) = (rx.url("/a"), rx.url("/b"));
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&a, &b], "1s", "");
    for i in 0..20 {
        spool.put(format!("first-{i}"), b"x");
    }
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    assert!(
        eventually(MINUTE, || spool.count(State::Done) == 20),
        "{:?}",
        spool.census()
    );
    // Each 503 went on to b at once, with the same key.
    let received = rx.received();
    let key_of = |p: &str| -> BTreeSet<String> {
        received
            .iter()
            .filter(|r| r.path == p)
            .map(|r| r.header("idempotency-key").unwrap().to_string())
            .collect()
    };
    let (keys_a, keys_b) = (key_of("/a"), key_of("/b"));
    assert!(!keys_a.is_empty());
    assert!(
        keys_a.is_subset(&keys_b),
        "{keys_a:?} not all in {keys_b:?}"
    );
    assert_eq!(spool.count(State::Incoming), 0, "{:?}", spool.census());
    assert!(eventually(
        Duration::from_secs(5),
        || circuits_of(&spool)["r"].endpoints[&a].state
            == spoolpost_protocol::circuits::CircuitState::Open
    ));
    // a recovers: its probe (after the 1 s open period) closes its circuit
    // and files go to it again.
    rx.answer_path("/a", Reply::ok());
    let answered_by_a = rx.count_path("/a");
    let mut i = 0;
    assert!(
        eventually(Duration::from_secs(20), || {
            spool.put(format!("later-{i}"), b"y");
            i += 1;
            std::thread::sleep(Duration::from_millis(20));
            rx.received()
                .iter()
                .filter(|r| r.path == "/a" && r.answered == 200)
                .count()
                >= 3
        }),
        "a was not used again: {} requests after {answered_by_a}",
        rx.count_path("/a")
    );
    assert!(eventually(
        Duration::from_secs(5),
        || circuits_of(&spool)["r"].endpoints[&a].state
            == spoolpost_protocol::circuits::CircuitState::Closed
    ));
    assert!(eventually(MINUTE, || spool.count(State::Done) == 20 + i));
    daemon.signal(Signal::SIGTERM);
    daemon.wait(MINUTE).assert_success();
}

#[test]
fn when_every_endpoint_fails_the_receiver_waits_as_one_open_circuit() {
    let rx = Receiver::start();
    rx.answer(Reply::status(503));
    let (a, b) = (rx.url("/a"), rx.url("/b"));
    let spool = TestSpool::new();
    let cfg = endpoints_config(&spool, &[&a, &b], "60s", "concurrency = 1");
    for i in 0..30 {
        spool.put(format!("f{i}"), b"x");
    }
    let out = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        MINUTE,
    );
    out.assert_success();
    // Two failures open each endpoint's circuit; then the files wait,
    // with their attempts untouched, instead of being tried 30 times.
    let requests = rx.count();
    assert!((4..=6).contains(&requests), "{requests} requests");
    assert_eq!(spool.count(State::Incoming), 30, "{:?}", spool.census());
    let retries: Vec<_> = out
        .events()
        .into_iter()
        .filter(|e| e.event == EventKind::Retry)
        .collect();
    // The attempt that met both endpoints failing says so: b answered
    // last, after a (or the other way round).
    assert!(retries.iter().any(|e| e.failed_over.len() == 1
        && e.endpoint.is_some()
        && e.failed_over[0].ends_with("status 503")));
}
