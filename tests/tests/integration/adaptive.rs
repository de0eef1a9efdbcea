//! Issue 12: each receiver's in-flight limit adapts to what it can take,
//! run as real senders against the test receiver's capacity mode.

use std::time::{Duration, Instant};

use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const FILES: usize = 600;
const CAPACITY: usize = 8;
const WORK: Duration = Duration::from_millis(5);
const LIMIT: Duration = Duration::from_secs(120);

/// Retries come back soon, so a 503 costs the run a little, not a second:
/// the comparison is between schedulers, not backoff settings.
const SETTINGS: &str =
    "backoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\nbreaker_failures = 1000000";

struct Run {
    took: Duration,
    requests: u64,
    overloaded: u64,
    peak_open: usize,
    finished: Finished,
}

/// Sends FILES files through a receiver of capacity 8 with `receiver`
/// appended to its config section and `args` on the command line.
fn run_through_capacity(receiver: &str, args: &[&str]) -> Run {
    run_senders(1, FILES, receiver, args)
}

/// [`run_through_capacity`] with `senders` senders on one spool and `files`
/// files; `finished` is the first sender's.
fn run_senders(senders: usize, files: usize, receiver: &str, args: &[&str]) -> Run {
    let rx = Receiver::start();
    rx.capacity(CAPACITY, WORK);
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("busy", &rx.url("/in"))
        .sender(SETTINGS)
        .with(receiver)
        .write(&spool);
    for i in 0..files {
        spool.put(format!("f-{i}"), b"x");
    }
    // Built before the clock starts: the first use builds the binaries.
    let mut commands: Vec<_> = (0..senders)
        .map(|_| {
            let mut cmd = sender(&spool);
            cmd.arg("--config").arg(&cfg).args(args);
            cmd
        })
        .collect();
    let started = Instant::now();
    // Daemons, not --once: a --once run leaves files whose retry is not
    // yet due in incoming/, and the point is how long all of them take.
    let daemons: Vec<_> = commands.iter_mut().map(spawn).collect();
    let all = eventually(LIMIT, || {
        spool.count(State::Incoming) == 0 && rx.count() >= files as u64
    });
    let took = started.elapsed();
    let mut finished: Vec<Finished> = daemons
        .into_iter()
        .map(|d| {
            d.signal(nix::sys::signal::Signal::SIGTERM);
            d.wait(LIMIT)
        })
        .collect();
    let stderr = || {
        finished
            .iter()
            .map(|f| f.stderr.as_str())
            .collect::<String>()
    };
    assert!(all, "{} delivered\n{}", rx.count(), stderr());
    let delivered: usize = finished
        .iter()
        .map(|f| {
            f.events()
                .iter()
                .filter(|e| e.event == EventKind::Delivered)
                .count()
        })
        .sum();
    assert_eq!(delivered, files, "{}", stderr());
    Run {
        took,
        requests: rx.count() + rx.overloaded(),
        overloaded: rx.overloaded(),
        peak_open: rx.peak_open(),
        finished: finished.swap_remove(0),
    }
}

#[test]
fn by_default_the_limit_finds_a_busy_receivers_capacity() {
    let tuned = run_through_capacity("", &["--concurrency", "8"]);
    let adaptive = run_through_capacity("", &[]);
    let rejected = adaptive.overloaded as f64 / adaptive.requests as f64;
    let ratio = adaptive.took.as_secs_f64() / tuned.took.as_secs_f64();
    eprintln!(
        "tuned {:?} ({} 503s), adaptive {:?} ({} of {} answered 503, peak {} open)",
        tuned.took,
        tuned.overloaded,
        adaptive.took,
        adaptive.overloaded,
        adaptive.requests,
        adaptive.peak_open
    );
    assert!(rejected <= 0.05, "{rejected:.3} of requests answered 503");
    assert!(ratio <= 1.3, "took {ratio:.2}× the hand-tuned run");
    // Event lines say what the limit was, and it stays within the bound.
    let limits: Vec<usize> = adaptive
        .finished
        .events()
        .iter()
        .filter(|e| matches!(e.event, EventKind::Delivered | EventKind::Retry))
        .map(|e| e.limit.expect("delivered and retry events carry the limit"))
        .collect();
    assert_eq!(limits.len() as u64, adaptive.requests);
    assert!(limits.iter().all(|l| (1..=64).contains(l)), "{limits:?}");
}

#[test]
fn adaptive_false_pins_the_limit_at_concurrency() {
    let pinned = run_through_capacity("adaptive = false\nconcurrency = 32\n", &[]);
    assert!(
        pinned.peak_open > CAPACITY,
        "peak {} open",
        pinned.peak_open
    );
    assert!(
        pinned.overloaded as f64 / pinned.requests as f64 > 0.2,
        "{} of {} answered 503",
        pinned.overloaded,
        pinned.requests
    );
    let limits: Vec<usize> = pinned
        .finished
        .events()
        .iter()
        .filter_map(|e| e.limit)
        .collect();
    assert!(limits.iter().all(|l| *l == 32), "{limits:?}");
}

#[test]
fn a_restarted_sender_starts_from_the_remembered_limit() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("r", &rx.url("/in")).write(&spool);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let pace = spool.root.join("pace");
    std::fs::create_dir_all(&pace).unwrap();
    std::fs::write(
        pace.join("r.json"),
        format!("{{\"limit\":23,\"baseline_ms\":3.0,\"written\":{now}}}"),
    )
    .unwrap();
    spool.put("one", b"x");
    let done = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    );
    done.assert_success();
    assert_eq!(done.events()[0].limit, Some(23));
    // A stale record is ignored: the limit starts low again.
    std::fs::write(
        pace.join("r.json"),
        format!("{{\"limit\":23,\"written\":{}}}", now - 7200),
    )
    .unwrap();
    spool.put("two", b"x");
    let done = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    );
    done.assert_success();
    assert_eq!(done.events()[0].limit, Some(4));
}

/// A spool holding `files` files for one receiver, `quota`, with `rate_limit`
/// set to `rate`, and its config.
fn quota_spool(rx: &Receiver, rate: &str, files: usize) -> (TestSpool, std::path::PathBuf) {
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("quota", &rx.url("/in"))
        .with(&format!("rate_limit = \"{rate}\""))
        .write(&spool);
    for i in 0..files {
        spool.put(format!("f-{i}"), b"x");
    }
    (spool, cfg)
}

/// The most requests the receiver got within any one second, and the time
/// from its first request to its last.
fn arrivals_per_second(rx: &Receiver) -> (usize, Duration) {
    let mut at: Vec<Instant> = rx.received().iter().map(|r| r.at).collect();
    at.sort();
    let busiest = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t < at[i] + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let span = match (at.first(), at.last()) {
        (Some(first), Some(last)) => last.duration_since(*first),
        _ => Duration::ZERO,
    };
    (busiest, span)
}

/// `rate_limit = "50/s"`: a bucket of 5 (a tenth of the rate) refilled at
/// 50 a second. 200 files need at least (200 - 5) / 50 = 3.9 s, and no
/// second of the receiver's arrivals holds more than 5 + 50.
#[test]
fn a_rate_limit_paces_requests_to_the_receiver() {
    const RATE_FILES: usize = 200;
    let rx = Receiver::start();
    let (spool, cfg) = quota_spool(&rx, "50/s", RATE_FILES);
    // Built before the clock starts: the first use builds the binaries.
    let mut cmd = sender(&spool);
    cmd.arg("--once").arg("--config").arg(&cfg);
    let started = Instant::now();
    let done = run(&mut cmd, LIMIT);
    let took = started.elapsed();
    done.assert_success();
    assert_eq!(spool.count(State::Done), RATE_FILES, "{}", done.stderr);
    assert!(took >= Duration::from_millis(3500), "took {took:?}");
    // A --once pass that waited a second per burst would take 40 s.
    assert!(took <= Duration::from_secs(20), "took {took:?}: too slow");
    // Arrivals are stamped as each body is read, so scheduling jitter can
    // pull one request into the window of its neighbour: one of slack.
    let most = 5 + 50 + 1;
    let (busiest, _) = arrivals_per_second(&rx);
    assert!(busiest <= most, "{busiest} requests within 1 s");
    eprintln!("200 files at 50/s took {took:?}");
}

/// Issue 31.2: a receiver's `rate_limit` is the receiver's, whatever the
/// number of senders. Three senders on one spool share `200/s` (a burst of
/// 20, batches of 4): the receiver's arrivals, counted per second, stay
/// within the shared bucket's bound, `burst + rate + senders × (batch − 1)`
/// (sender/src/rules/shared_rate.rs), plus one per sender for arrivals
/// stamped as bodies are read; with a bucket each they would come at up to
/// 600/s. The lower bound is loose (half the rate) because the machine may
/// be busy: it shows the quota is not cut into thirds.
#[test]
fn three_senders_on_one_spool_share_one_rate_limit() {
    const SHARED_FILES: usize = 700;
    const RATE: usize = 200;
    const SENDERS: usize = 3;
    let rx = Receiver::start();
    let (spool, cfg) = quota_spool(&rx, &format!("{RATE}/s"), SHARED_FILES);
    let senders: Vec<Running> = (0..SENDERS)
        .map(|_| spawn(sender(&spool).arg("--once").arg("--config").arg(&cfg)))
        .collect();
    let finished: Vec<Finished> = senders.into_iter().map(|s| s.wait(LIMIT)).collect();
    for f in &finished {
        f.assert_success();
    }
    assert_eq!(
        spool.count(State::Done),
        SHARED_FILES,
        "{:?}",
        spool.census()
    );
    let per_sender: Vec<usize> = finished
        .iter()
        .map(|f| {
            f.events()
                .iter()
                .filter(|e| e.event == EventKind::Delivered)
                .count()
        })
        .collect();
    // All three sent while the others did: with a bucket each, that alone
    // would have let up to three times the rate through. (The shares are
    // uneven: whoever's wake-up comes first takes the next batch.)
    assert!(
        per_sender.iter().all(|n| *n > 0),
        "every sender sent: {per_sender:?}"
    );

    let (burst, batch) = (RATE / 10, 4);
    let most = burst + RATE + SENDERS * (batch - 1) + SENDERS;
    let (busiest, span) = arrivals_per_second(&rx);
    assert!(
        busiest <= most,
        "{busiest} requests within 1 s, at most {most}"
    );
    let span = span.as_secs_f64();
    let overall = (SHARED_FILES - burst) as f64 / span;
    assert!(
        overall <= RATE as f64 * 1.05 && overall >= RATE as f64 * 0.5,
        "{overall:.1} requests/s overall"
    );
    eprintln!(
        "three senders, {RATE}/s shared: {overall:.1}/s overall, busiest second {busiest}, per sender {per_sender:?}"
    );
}

#[test]
fn a_rate_limit_that_is_not_a_rate_is_a_config_error_naming_its_line() {
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("quota", "http://127.0.0.1:9/")
        .with("rate_limit = \"50/day\"")
        .write(&spool);
    for check in [true, false] {
        let mut cmd = sender(&spool);
        cmd.arg("--config").arg(&cfg).arg("--once");
        if check {
            cmd.arg("--check");
        }
        let out = run(&mut cmd, LIMIT);
        assert_eq!(out.status.code(), Some(78), "{}", out.stderr);
        assert!(out.stderr.contains(":3:"), "{}", out.stderr);
        assert!(out.stderr.contains("N/s, N/m or N/h"), "{}", out.stderr);
    }
}

/// The reporter shows each receiver's pace as the live senders publish it
/// in their claim folders: limits and in-flight summed over senders, each
/// sender's own under `senders`; a killed sender's numbers drop out at
/// once (its lock is free), not when its claims are recovered.
#[test]
fn the_reporter_shows_the_pace_of_live_senders_only() {
    let rx = Receiver::start();
    rx.capacity(CAPACITY, Duration::from_millis(20));
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("busy", &rx.url("/in"))
        .sender(SETTINGS)
        .write(&spool);
    for i in 0..3000 {
        spool.put(format!("f-{i}"), b"x");
    }
    let a = spawn(sender(&spool).arg("--config").arg(&cfg));
    let b = spawn(sender(&spool).arg("--config").arg(&cfg));
    let report = |format: &str| {
        let out = run(
            reporter(&spool)
                .arg("--config")
                .arg(&cfg)
                .args(["--format", format]),
            LIMIT,
        );
        out.assert_success();
        out.stdout
    };
    let pace = || -> serde_json::Value {
        let r: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
        r["receivers"]["busy"]["pace"].clone()
    };
    let mut seen = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            seen = pace();
            seen["senders"].as_object().is_some_and(|s| s.len() == 2)
                && seen["in_flight"].as_u64() > Some(0)
                // The first window of answers sets it.
                && seen["baseline_ms"].is_f64()
        }),
        "{seen}"
    );
    let senders = seen["senders"].as_object().unwrap();
    let sum = |field: &str| -> u64 { senders.values().map(|s| s[field].as_u64().unwrap()).sum() };
    assert_eq!(seen["limit"].as_u64(), Some(sum("limit")), "{seen}");
    assert_eq!(seen["in_flight"].as_u64(), Some(sum("in_flight")), "{seen}");
    assert!(
        seen["baseline_ms"].as_f64().is_some_and(|b| b >= 20.0),
        "{seen}"
    );
    let text = report("prometheus");
    for family in [
        "spoolpost_receiver_pace_limit{receiver=\"busy\"} ",
        "spoolpost_receiver_in_flight{receiver=\"busy\"} ",
        "spoolpost_receiver_latency_baseline_milliseconds{receiver=\"busy\"} ",
        "spoolpost_receiver_pace_senders{receiver=\"busy\"} 2",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(report("table").contains("PACE"));

    a.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = a.wait(LIMIT);
    assert!(
        eventually(Duration::from_secs(10), || {
            seen = pace();
            seen["senders"].as_object().is_some_and(|s| s.len() == 1)
        }),
        "{seen}"
    );
    b.signal(nix::sys::signal::Signal::SIGTERM);
    b.wait(LIMIT).assert_success();
    assert_eq!(pace(), serde_json::Value::Null, "gone with its sender");
}

/// Issue 12: three senders on one spool, each adapting from its own
/// answers, together take 3,000 files through capacity 8 in at most 1.3×
/// the time one hand-tuned `--concurrency 8` sender takes, with at most 5%
/// of requests answered 503.
#[test]
fn three_senders_together_converge_on_the_capacity() {
    passes_once_in_two(three_senders_converge);
}

fn three_senders_converge() -> Result<(), String> {
    let tuned = run_senders(1, 3000, "", &["--concurrency", "8"]);
    let three = run_senders(3, 3000, "", &[]);
    let rejected = three.overloaded as f64 / three.requests as f64;
    let ratio = three.took.as_secs_f64() / tuned.took.as_secs_f64();
    eprintln!(
        "tuned {:?}; three senders {:?} ({ratio:.2}×), {} of {} answered 503 ({:.1}%), peak {} open",
        tuned.took,
        three.took,
        three.overloaded,
        three.requests,
        rejected * 100.0,
        three.peak_open
    );
    if rejected > 0.05 {
        return Err(format!("{rejected:.3} of requests answered 503"));
    }
    if ratio > 1.3 {
        return Err(format!("took {ratio:.2}× the hand-tuned run"));
    }
    Ok(())
}

/// Runs a test of pace once more if its first run missed, and fails if
/// the second misses too. Among the whole suite on CI's two cores, a debug
/// sender can be its own bottleneck for a whole run, or three senders can
/// meet a rare start (docs/performance.md, "The capacity test's flake");
/// the benchmark, not these tests, measures pace. Both runs' figures are
/// printed.
fn passes_once_in_two(test: fn() -> Result<(), String>) {
    if let Err(first) = test() {
        eprintln!("missed once ({first}); running again");
        if let Err(second) = test() {
            panic!("missed twice: {first}; then {second}");
        }
    }
}

/// Issue 12's second receiver: one whose latency grows with the requests
/// it holds (40 ms + 4 ms per request open) and that never says 503. Its
/// throughput, `open / (40 ms + open × 4 ms)`, still rises past 10 open
/// (125/s) towards 250/s, ever more slowly. (At 10 ms + 1 ms, four times
/// the rate, a debug sender among the whole suite on CI's two cores could
/// not keep 40 in flight once, and its limit, never reached, stayed at
/// 39; at 20 ms + 2 ms it settled at a median of 37 in one CI run, at 104
/// to 137 alone: the busy sender, not the receiver, was then the
/// bottleneck, and its own queue the latency. The knee is where it was,
/// the files a second it takes a quarter.) The limit aims for goodput:
/// it goes past where latency first moved (about 10) and settles where
/// 25% more in flight buys less than 2.5% more files a second (the
/// elasticity `10 / (10 + open)` falls below a tenth at about 90; the
/// estimate lags the climb a little), never near the bound of 1,024 where
/// latency would be a second for 1% more goodput.
#[test]
fn against_a_receiver_that_slows_with_load_the_limit_settles_near_the_knee() {
    passes_once_in_two(settles_near_the_knee);
}

fn settles_near_the_knee() -> Result<(), String> {
    let rx = Receiver::start();
    rx.queueing(Duration::from_millis(40), Duration::from_millis(4));
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("shared", &rx.url("/in")).write(&spool);
    for i in 0..2000 {
        spool.put(format!("f-{i}"), b"x");
    }
    let done = run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    );
    done.assert_success();
    assert_eq!(spool.count(State::Done), 2000);
    let mut limits: Vec<usize> = done.events().iter().filter_map(|e| e.limit).collect();
    // The second half, after the climb from the start.
    let mut tail = limits.split_off(limits.len() / 2);
    tail.sort_unstable();
    let (low, median, high) = (tail[0], tail[tail.len() / 2], tail[tail.len() - 1]);
    eprintln!(
        "limit {low}..{high}, median {median}; peak {} open",
        rx.peak_open()
    );
    if !((40..=200).contains(&median) && high <= 300) {
        return Err(format!("limit {low}..{high}, median {median}"));
    }
    if rx.peak_open() > 300 {
        return Err(format!("peak {} open", rx.peak_open()));
    }
    Ok(())
}

/// A receiver's `Retry-After` still decides when a file is tried again,
/// whatever the rate limit would allow.
#[test]
fn a_rate_limit_still_honours_retry_after() {
    let rx = Receiver::start();
    rx.script("/in", [Reply::status(429).retry_after("3")]);
    let spool = TestSpool::new();
    let cfg = ConfigFile::to("quota", &rx.url("/in"))
        .sender("backoff_initial = \"20ms\"\nbackoff_max = \"10s\"")
        .with("rate_limit = \"1000/s\"")
        .write(&spool);
    spool.put("a", b"x");
    let before = std::time::SystemTime::now();
    run(
        sender(&spool).arg("--once").arg("--config").arg(&cfg),
        LIMIT,
    )
    .assert_success();
    let waiting = spool.find(State::Incoming, "a");
    let due = std::fs::metadata(&waiting).unwrap().modified().unwrap();
    let wait = due.duration_since(before).unwrap();
    assert!(wait >= Duration::from_millis(2900), "{wait:?}");
    assert_eq!(rx.count(), 1);
}

/// A request that never answers stops counting against the limit after its
/// lapse (1 s while no latency is known yet), and the files waiting for
/// its room go then. Before, a dispatcher that had passed the receiver
/// over for want of room waited for a job to end: with every request in
/// flight hung, that was their timeout (or the next rescan), and three
/// senders behind a load balancer that never answers 1% of requests sat
/// idle for seconds at a time.
#[test]
fn files_behind_requests_that_hang_go_once_the_hung_ones_stop_counting() {
    let rx = Receiver::start();
    // The first four requests (the starting limit) never answer.
    rx.script(
        "/hang",
        (0..4).map(|_| Reply::stall(Duration::from_secs(600))),
    );
    let spool = TestSpool::new();
    for i in 0..20 {
        spool.put(format!("f{i:02}.json"), b"{}");
    }
    let cfg = ConfigFile::to("r", &rx.url("/hang"))
        .sender(r#"grace = "1s""#)
        .with(r#"timeout = "90s""#)
        .write(&spool);
    let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
    // Well before the hung requests' timeout and the sender's rescan (30 s).
    let delivered = eventually(Duration::from_secs(15), || spool.count(State::Done) == 16);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let out = daemon.wait(LIMIT);
    assert!(delivered, "{:?}\n{}", spool.census(), out.stderr);
    out.assert_success();
    assert_eq!(spool.count(State::Done), 16);
    assert_eq!(
        spool.count(State::Incoming),
        4,
        "the hung four wait to go again"
    );
}

/// Every other request never answers: without more, the hung ones took
/// every place under `concurrency` (8 here) and the rest of the files
/// waited for their timeout. Each is overtaken by the answered ones sent
/// after it, so past its answer deadline (a second here; four with a
/// pinned limit) it is taken for lost when a file wants its place, and
/// its file goes again under the same key. Hung ones whose place no file
/// wants any more wait for their timeout as before. Checked both ways:
/// adaptive and pinned (a pinned limit frees no room at the lapse time,
/// but its requests hang all the same).
#[test]
fn hung_requests_overtaken_by_answered_ones_give_their_places_to_waiting_files() {
    for adaptive in [true, false] {
        let rx = Receiver::start();
        // The first 16 requests: 8 hung, 8 answered; then every one answered.
        rx.script(
            "/lb",
            (0..16).map(|i| {
                if i % 2 == 0 {
                    Reply::stall(Duration::from_secs(600))
                } else {
                    Reply::ok()
                }
            }),
        );
        let spool = TestSpool::new();
        for i in 0..40 {
            spool.put(format!("f{i:02}.json"), b"{}");
        }
        let cfg = ConfigFile::to("r", &rx.url("/lb"))
            .sender("grace = \"1s\"\nbackoff_initial = \"50ms\"\nbackoff_max = \"100ms\"")
            .with(&format!(
                "timeout = \"90s\"\nconcurrency = 8\nadaptive = {adaptive}"
            ))
            .write(&spool);
        let daemon = spawn(sender(&spool).arg("--config").arg(&cfg));
        // Well before the hung requests' timeout: the 32 files that never
        // hung, and those cut, delivered; the rest hung still.
        let settled = eventually(Duration::from_secs(20), || {
            let (done, sending) = (spool.count(State::Done), spool.count(State::Sending));
            done >= 32 && spool.count(State::Incoming) == 0 && done + sending == 40
        });
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
        let out = daemon.wait(LIMIT);
        assert!(
            settled,
            "adaptive = {adaptive}: {:?}\n{}",
            spool.census(),
            out.stderr
        );
        out.assert_success();
        let events = out.events();
        let cut = (events.iter())
            .filter(|e| {
                e.event == EventKind::Retry
                    && (e.error.as_deref()).is_some_and(|why| why.contains("cut to free its place"))
            })
            .count();
        let delivered = (events.iter())
            .filter(|e| e.event == EventKind::Delivered)
            .count();
        assert!(
            (1..=8).contains(&cut) && delivered > 32 && delivered <= 32 + cut,
            "adaptive = {adaptive}: {cut} cut, {delivered} delivered"
        );
        assert_eq!(delivered, spool.count(State::Done));
        let served: Vec<_> = (rx.received().into_iter())
            .filter(|r| r.answered == 200)
            .map(|r| r.header("idempotency-key").unwrap().to_string())
            .collect();
        let keys: std::collections::BTreeSet<_> = served.iter().collect();
        assert_eq!(
            (served.len(), keys.len()),
            (delivered, delivered),
            "adaptive = {adaptive}: each file served once, under one key, cut or not"
        );
    }
}
