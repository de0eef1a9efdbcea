//! The scheduler's timing, driven with paused tokio time: backoff,
//! Retry-After, probe release, hold release, grace on SIGTERM, and the
//! limits on requests in flight.
//!
//! Only the network and the wall clock are replaced (by [`Scripted`], an
//! [`Exchange`]); the spool on a temporary folder, the claims, judgements,
//! settling, circuits and the scheduler's loop are the real ones.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use spoolpost_ops::config_load;
use spoolpost_ops::route::Router;
use spoolpost_ops::signals::Hangups;
use spoolpost_ops::watch::Watcher;
use spoolpost_protocol::event::EventSink;
use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::{ClaimFolder, Spool, State};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::exchange::{Exchange, Request, Sending};
use crate::net::send::{Http, Sent};
use crate::reload::Reloader;
use crate::rules::outcome::{Answer, Transport};
use crate::run::{Events, drain_once, schedule, shared_state};
use crate::sched::dispatch::Dispatcher;
use crate::sched::shared::Shared;

/// What the fake receiver does with one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// This status after this long, with `Retry-After` seconds if given.
    Status(u16, Duration, Option<u32>),
    /// A refused connection after this long.
    Refused(Duration),
}

/// One request the scheduler made.
#[derive(Clone, Debug)]
struct Call {
    /// Since the fixture was made, on tokio's clock.
    at: Duration,
    file: String,
    attempt: u32,
    /// The endpoint it went to.
    url: String,
}

type Script = dyn Fn(&Call, usize) -> Reply + Send + Sync;

/// The network and the wall clock, scripted. Its wall clock runs on
/// tokio's clock from a base ahead of the real one, so the ctimes that
/// real renames write are always in its past (a ctime in the future
/// reads as a clock set back, and the file would be due at once).
struct Scripted {
    base: SystemTime,
    start: Instant,
    /// The reply to each call, from the call and how many came before it.
    script: Box<Script>,
    calls: Mutex<Vec<Call>>,
    in_flight: Vec<AtomicUsize>,
    most_in_flight: Vec<AtomicUsize>,
    total_in_flight: AtomicUsize,
    most_in_flight_total: AtomicUsize,
}

impl Scripted {
    fn new(
        receivers: usize,
        script: impl Fn(&Call, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Scripted {
            base: SystemTime::now() + Duration::from_secs(10),
            start: Instant::now(),
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            in_flight: (0..receivers).map(|_| AtomicUsize::new(0)).collect(),
            most_in_flight: (0..receivers).map(|_| AtomicUsize::new(0)).collect(),
            total_in_flight: AtomicUsize::new(0),
            most_in_flight_total: AtomicUsize::new(0),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn elapsed(&self) -> Duration {
        Instant::now() - self.start
    }
}

/// Counts one request in flight while it lives.
struct InFlight<'a>(&'a Scripted, usize);

impl<'a> InFlight<'a> {
    fn new(net: &'a Scripted, receiver: usize) -> Self {
        let now = net.in_flight[receiver].fetch_add(1, Ordering::SeqCst) + 1;
        net.most_in_flight[receiver].fetch_max(now, Ordering::SeqCst);
        let total = net.total_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        net.most_in_flight_total.fetch_max(total, Ordering::SeqCst);
        InFlight(net, receiver)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight[self.1].fetch_sub(1, Ordering::SeqCst);
        self.0.total_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Exchange for Scripted {
    fn wall_clock(&self) -> SystemTime {
        self.base + self.elapsed()
    }

    fn send<'a>(&'a self, request: Request<'a>) -> Sending<'a> {
        let claimed = SpoolName::parse(request.path.file_name().unwrap());
        let call = Call {
            at: self.elapsed(),
            file: claimed.original.to_string_lossy().into_owned(),
            attempt: claimed.attempts + 1,
            url: request.url.to_string(),
        };
        let reply = {
            let mut calls = self.calls.lock().unwrap();
            let reply = (self.script)(&call, calls.len());
            calls.push(call);
            reply
        };
        let counted = InFlight::new(self, request.receiver);
        Box::pin(async move {
            let _counted = counted;
            let (after, answer) = match reply {
                Reply::Status(code, after, retry_after) => (
                    after,
                    Answer::Status {
                        code,
                        retry_after: retry_after.map(|s| s.to_string()),
                        early: None,
                    },
                ),
                Reply::Refused(after) => (after, Answer::Failed(Transport::Connect)),
            };
            tokio::time::sleep(after).await;
            let error = matches!(answer, Answer::Failed(_)).then(|| "refused".to_string());
            Sent {
                answer,
                body: Vec::new(),
                error,
                bytes_read: 1,
                bytes_sent: 1,
                latency: after,
                location: None,
            }
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    spool: Spool,
    shared: Arc<Shared>,
    net: Arc<Scripted>,
    concurrency: usize,
    rescan_every: Duration,
}

const ONE_RECEIVER: &str = "\
[receivers.r]
url = \"http://127.0.0.1:9/\"
adaptive = false
[[routes]]
glob = \"*\"
receiver = \"r\"
";

/// One receiver that takes one request at a time.
const ONE_AT_A_TIME: &str = "\
[receivers.r]
url = \"http://127.0.0.1:9/\"
adaptive = false
concurrency = 1
[[routes]]
glob = \"*\"
receiver = \"r\"
";

/// A sender on a fresh spool under `config` (a whole configuration file),
/// answering by `script`.
fn fixture(
    config: &str,
    script: impl Fn(&Call, usize) -> Reply + Send + Sync + 'static,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let loaded = config_load::parse(Path::new("test.toml"), config.to_string()).unwrap();
    let router = Router::from_config(&loaded).unwrap();
    let settings = loaded.config.sender.clone();
    let spool = Spool::open(dir.path().join("spool")).unwrap();
    let claims = ClaimFolder::create(&spool).unwrap();
    let http = Http::new(router.receivers()).unwrap();
    let events = EventSink::open(Some(&dir.path().join("events.jsonl"))).unwrap();
    let net = Arc::new(Scripted::new(router.receivers().len(), script));
    let shared = shared_state(
        spool.clone(),
        claims,
        router,
        http,
        &settings,
        events,
        net.clone(),
    );
    Fixture {
        _dir: dir,
        spool,
        shared: Arc::new(shared),
        net,
        concurrency: settings.concurrency,
        rescan_every: settings.rescan_interval,
    }
}

impl Fixture {
    fn put(&self, name: &str) {
        std::fs::write(self.spool.dir(State::Incoming).join(name), b"{}").unwrap();
    }

    fn count(&self, state: State) -> usize {
        std::fs::read_dir(self.spool.dir(state)).unwrap().count()
    }

    fn dispatcher(&self, stop: &CancellationToken) -> Dispatcher {
        Dispatcher::new(self.shared.clone(), self.concurrency, stop.clone())
    }

    /// Runs the long-running scheduler (inotify on `incoming/`, as in
    /// production, and no SIGHUP) until
    /// `until` holds, checked as paused time moves on, or `limit` passes.
    async fn serve_until(&self, limit: Duration, until: impl Fn(&Fixture) -> bool) {
        let stop = CancellationToken::new();
        let mut dispatcher = self.dispatcher(&stop);
        let reloader = Reloader::new(None, None, None, 1);
        // Put-back retries are found by their inotify event, as in production.
        let watcher = Watcher::new(&self.spool.dir(State::Incoming)).unwrap();
        let events = Events {
            watcher: Some(&watcher),
            rescan_every: self.rescan_every,
            hangups: &mut Hangups::none(),
            reloader: &reloader,
            concurrency: self.concurrency,
        };
        let deadline = Instant::now() + limit;
        let watch = async {
            while !until(self) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
        };
        let (served, ()) = tokio::join!(schedule(&mut dispatcher, events, &stop), watch);
        served.unwrap();
        dispatcher.drain().await;
    }

    fn attempts_of(&self, file: &str) -> Vec<Duration> {
        let calls = self.net.calls();
        calls
            .iter()
            .filter(|c| c.file == file)
            .map(|c| c.at)
            .collect()
    }
}

/// The pass that finds a file due may start up to this late: full rescans
/// are kept [`crate::run`]'s 100 ms apart.
const SLACK: Duration = Duration::from_millis(150);

fn ok() -> Reply {
    Reply::Status(200, Duration::ZERO, None)
}

#[tokio::test(start_paused = true)]
async fn a_503_is_tried_again_after_its_backoff_woken_by_the_timer() {
    // The rescan interval is an hour: only the retry's own timer can wake
    // the scheduler in time.
    let config =
        format!("[sender]\nbackoff_initial = \"4s\"\nrescan_interval = \"1h\"\n{ONE_RECEIVER}");
    let f = fixture(&config, |call, _| match call.attempt {
        1 => Reply::Status(503, Duration::ZERO, None),
        _ => ok(),
    });
    f.put("a.json");
    f.serve_until(Duration::from_secs(60), |f| f.count(State::Done) == 1)
        .await;
    let at = f.attempts_of("a.json");
    assert_eq!(at.len(), 2, "{at:?}");
    let waited = at[1] - at[0];
    // Equal jitter: the wait is within [backoff/2, backoff].
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert!(
        waited <= Duration::from_secs(4) + SLACK,
        "retried after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_out_then_the_file_goes_at_once() {
    let config =
        format!("[sender]\nbackoff_initial = \"1s\"\nrescan_interval = \"1h\"\n{ONE_RECEIVER}");
    let f = fixture(&config, |call, _| match call.attempt {
        1 => Reply::Status(503, Duration::ZERO, Some(30)),
        _ => ok(),
    });
    f.put("a.json");
    f.serve_until(Duration::from_secs(120), |f| f.count(State::Done) == 1)
        .await;
    let at = f.attempts_of("a.json");
    assert_eq!(at.len(), 2, "{at:?}");
    let waited = at[1] - at[0];
    assert!(
        waited >= Duration::from_secs(30),
        "retried after {waited:?}"
    );
    assert!(
        waited <= Duration::from_secs(30) + SLACK,
        "retried after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_lets_one_probe_through_whose_success_releases_the_rest() {
    let config = format!(
        "[sender]\nconcurrency = 4\nbreaker_failures = 2\nbreaker_open_initial = \"5s\"\n\
         backoff_initial = \"1s\"\nrescan_interval = \"1h\"\n{ONE_RECEIVER}"
    );
    // The first batch fails at once and opens the circuit; after that the
    // receiver works, slowly.
    let f = fixture(&config, |call, _| {
        if call.at < Duration::from_secs(1) {
            Reply::Refused(Duration::ZERO)
        } else {
            Reply::Status(200, Duration::from_secs(2), None)
        }
    });
    for i in 0..6 {
        f.put(&format!("f{i}.json"));
    }
    f.serve_until(Duration::from_secs(60), |f| f.count(State::Done) == 6)
        .await;
    let calls = f.net.calls();
    let failed = calls
        .iter()
        .filter(|c| c.at < Duration::from_secs(1))
        .count();
    assert!(
        failed >= 2,
        "enough failures to open the circuit: {calls:?}"
    );
    let later: Vec<_> = calls
        .iter()
        .filter(|c| c.at >= Duration::from_secs(1))
        .collect();
    let probe = later[0];
    assert!(
        probe.at >= Duration::from_secs(5),
        "nothing goes before the circuit's open time: {calls:?}"
    );
    assert!(probe.at <= Duration::from_secs(5) + SLACK, "{calls:?}");
    let released = probe.at + Duration::from_secs(2);
    assert!(
        later[1..].iter().all(|c| c.at >= released),
        "one probe alone while it is in flight: {calls:?}"
    );
    assert!(
        later[1].at <= released + SLACK,
        "the probe's success releases the rest at once: {calls:?}"
    );
    assert_eq!(f.count(State::Incoming), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hold_keeps_files_waiting_until_it_is_released() {
    let config = format!("[sender]\nrescan_interval = \"1h\"\n{ONE_RECEIVER}");
    let f = fixture(&config, |_, _| ok());
    spoolpost_protocol::circuits::hold(&f.spool, "r").unwrap();
    f.put("a.json");
    f.put("b.json");
    let lift_at = Duration::from_secs(10);
    let lift = async {
        tokio::time::sleep(lift_at).await;
        assert!(f.net.calls().is_empty(), "a held receiver gets no request");
        spoolpost_protocol::circuits::release(&f.spool, "r").unwrap();
    };
    let serve = f.serve_until(Duration::from_secs(60), |f| f.count(State::Done) == 2);
    tokio::join!(serve, lift);
    let calls = f.net.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert!(c.at >= lift_at, "{calls:?}");
        assert!(
            c.at <= lift_at + crate::sched::holds::HOLD_REFRESH + SLACK,
            "released within a hold refresh: {calls:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn grace_lets_short_requests_finish_and_cuts_the_rest_when_it_ends() {
    let config = format!("[sender]\nconcurrency = 4\n{ONE_RECEIVER}");
    let f = fixture(&config, |call, _| {
        let takes = if call.file.starts_with("slow") { 60 } else { 1 };
        Reply::Status(200, Duration::from_secs(takes), None)
    });
    for name in ["slow1.json", "slow2.json", "quick.json"] {
        f.put(name);
    }
    let stop = CancellationToken::new();
    let mut dispatcher = f.dispatcher(&stop);
    dispatcher.pass().await.unwrap();
    // The jobs start on this thread once the test lets them run.
    for _ in 0..100 {
        if f.net.calls().len() == 3 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(f.net.calls().len(), 3);
    stop.cancel();
    let grace = Duration::from_secs(3);
    let started = Instant::now();
    let cut = dispatcher
        .drain_within(grace, &CancellationToken::new())
        .await;
    assert_eq!(
        Instant::now() - started,
        grace,
        "the grace period, no more, no less"
    );
    assert_eq!(cut, 2);
    assert_eq!(f.count(State::Done), 1, "the quick one was settled");
    drop(dispatcher);
    let shared = Arc::into_inner(f.shared).expect("every job has ended");
    assert_eq!(shared.claims.close().unwrap(), 2);
    let mut back: Vec<_> = std::fs::read_dir(f.spool.dir(State::Incoming))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name();
            SpoolName::parse(OsStr::new(&name))
                .original
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    back.sort();
    assert_eq!(back, ["slow1.json", "slow2.json"]);
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_stay_within_the_global_and_each_receivers_limit() {
    let config = "\
[sender]
concurrency = 3
rescan_interval = \"1h\"
[receivers.a]
url = \"http://127.0.0.1:9/a\"
adaptive = false
concurrency = 2
[receivers.b]
url = \"http://127.0.0.1:9/b\"
adaptive = false
concurrency = 8
[[routes]]
glob = \"a*\"
receiver = \"a\"
[[routes]]
glob = \"*\"
receiver = \"b\"
";
    let f = fixture(config, |_, _| {
        Reply::Status(200, Duration::from_secs(1), None)
    });
    for i in 0..8 {
        f.put(&format!("a{i}.json"));
        f.put(&format!("b{i}.json"));
    }
    f.serve_until(Duration::from_secs(60), |f| f.count(State::Done) == 16)
        .await;
    let most: HashMap<usize, usize> = (0..2)
        .map(|r| (r, f.net.most_in_flight[r].load(Ordering::SeqCst)))
        .collect();
    assert_eq!(f.net.most_in_flight_total.load(Ordering::SeqCst), 3);
    assert_eq!(most[&0], 2, "receiver a's own limit");
    assert!(most[&1] <= 3, "{most:?}");
    assert_eq!(f.net.calls().len(), 16);
}

/// Once a request to an endpoint is late past the lapse time, no new file
/// goes there, and the late ones fail over at the answer deadline: a
/// second, not the hour the hanging endpoint would keep them.
#[tokio::test(start_paused = true)]
async fn files_leave_a_hanging_endpoint_for_the_other_at_its_first_late_request() {
    let config = "\
[receivers.r]
urls = [\"http://127.0.0.1:9/hangs\", \"http://127.0.0.1:9/works\"]
timeout = \"2h\"
[[routes]]
glob = \"*\"
receiver = \"r\"
";
    let f = fixture(config, |call, _| {
        if call.url.ends_with("/hangs") {
            Reply::Status(200, Duration::from_secs(3600), None)
        } else {
            Reply::Status(200, Duration::from_millis(50), None)
        }
    });
    for i in 0..400 {
        f.put(&format!("f{i:03}.json"));
    }
    let stop = CancellationToken::new();
    let mut dispatcher = f.dispatcher(&stop);
    let started = Instant::now();
    drain_once(&mut dispatcher).await.unwrap();
    let took = Instant::now() - started;
    assert_eq!(f.count(State::Done), 400);
    let to_hang: Vec<Duration> = (f.net.calls().iter())
        .filter(|c| c.url.ends_with("/hangs"))
        .map(|c| c.at)
        .collect();
    assert!(!to_hang.is_empty(), "a took its first files");
    // The first requests are late after the initial lapse time (1 s) at
    // the latest; nothing new went to a after that, though b was busy
    // with the rest for a while longer.
    let last = *to_hang.iter().max().unwrap();
    assert!(last <= crate::rules::adaptive::LAPSE_INITIAL, "{to_hang:?}");
    // Each was cut at its deadline: four lapse times, the lapse time
    // being what b's answers taught by then (the floor, 250 ms), so 1 s.
    assert!(took <= Duration::from_secs(2), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn once_comes_back_for_files_a_busy_receiver_made_it_skip() {
    let f = fixture(ONE_AT_A_TIME, |_, _| {
        Reply::Status(200, Duration::from_secs(1), None)
    });
    for i in 0..5 {
        f.put(&format!("f{i}.json"));
    }
    let stop = CancellationToken::new();
    let mut dispatcher = f.dispatcher(&stop);
    let started = Instant::now();
    drain_once(&mut dispatcher).await.unwrap();
    let took = Instant::now() - started;
    assert_eq!(
        f.count(State::Done),
        5,
        "every file, not only the first pass's"
    );
    assert_eq!(f.net.most_in_flight[0].load(Ordering::SeqCst), 1);
    // One at a time, each next one started as soon as the slot is free.
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(took <= Duration::from_secs(5) + SLACK, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_sender_alone_loses_no_race_to_itself_and_one_beside_another_does() {
    let f = fixture(ONE_RECEIVER, |_, _| {
        Reply::Status(200, Duration::from_secs(1), None)
    });
    let stop = CancellationToken::new();
    let mut dispatcher = f.dispatcher(&stop);
    f.put("a.json");
    dispatcher.pass().await.unwrap();
    // A new file's inotify event comes after the pass that already
    // claimed it, and a second new file follows in the same batch.
    f.put("b.json");
    let leapt = dispatcher
        .offer_seen(["a.json".into(), "b.json".into()])
        .await;
    assert_eq!(f.shared.counts.lost.load(Ordering::Relaxed), 0);
    assert!(!leapt, "b.json is offered, not leapt over");
    assert_eq!(f.shared.counts.started.load(Ordering::Relaxed), 2);

    // Another live sender takes c.json between its name being read and
    // the claim: that is a race, and it is lost.
    let other = ClaimFolder::create(&f.spool).unwrap();
    f.put("c.json");
    std::fs::rename(
        f.spool.dir(State::Incoming).join("c.json"),
        other.path().join("c.json"),
    )
    .unwrap();
    dispatcher.offer_seen(["c.json".into()]).await;
    assert_eq!(f.shared.counts.lost.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn once_ends_while_another_sender_keeps_taking_new_files() {
    // With every request this sender makes, another sender takes two
    // files it has read the names of, and a producer adds three, so the
    // backlog stays as it is: every pass loses races and so leaps, and
    // there are always new files.
    let folders: Arc<std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)>> =
        Default::default();
    let world = folders.clone();
    let f = fixture(ONE_AT_A_TIME, move |_, n| {
        if let Some((incoming, taken)) = world.get() {
            let names: Vec<_> = std::fs::read_dir(incoming)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let mut rng = fastrand::Rng::with_seed(n as u64);
            for _ in 0..2.min(names.len()) {
                let name = &names[rng.usize(..names.len())];
                let _ = std::fs::rename(incoming.join(name), taken.join(name));
            }
            for i in 0..3 {
                std::fs::write(incoming.join(format!("new-{n}-{i}.json")), b"{}").unwrap();
            }
        }
        Reply::Status(200, Duration::from_millis(10), None)
    });
    for i in 0..200 {
        f.put(&format!("f{i:03}.json"));
    }
    // The other sender is a live one, with its claim folder in sending/.
    let other = ClaimFolder::create(&f.spool).unwrap();
    let taken = other.path().to_path_buf();
    folders
        .set((f.spool.dir(State::Incoming), taken.clone()))
        .unwrap();
    let stop = CancellationToken::new();
    let mut dispatcher = f.dispatcher(&stop);
    tokio::time::timeout(Duration::from_secs(120), drain_once(&mut dispatcher))
        .await
        .expect("the --once run ended")
        .unwrap();
    let lost = f.shared.counts.lost.load(Ordering::Relaxed);
    assert!(lost > 0, "the other sender won some races");
    let made = 200 + 3 * f.net.calls().len();
    let taken = std::fs::read_dir(&taken)
        .unwrap()
        .filter(|e| spoolpost_protocol::spool::is_data_name(&e.as_ref().unwrap().file_name()))
        .count();
    assert_eq!(
        f.count(State::Done) + f.count(State::Incoming) + taken,
        made,
        "every file is somewhere"
    );
}
