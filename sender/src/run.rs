//! The sender's life: recover what dead senders left, claim a folder, then
//! either drain what is ready and exit (`--once`) or keep sending until
//! SIGTERM/SIGINT, when it stops claiming, lets in-flight requests finish
//! within the grace period and returns every unsent claim to `incoming/`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spoolpost_ops::config::SenderSection;
use spoolpost_ops::exit::Failure;
use spoolpost_ops::progress::{self, Role};
use spoolpost_ops::route::Router;
use spoolpost_protocol::spool::{ClaimFolder, Spool, State, recover_dead_claims};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::net::send::Http;
use crate::plan::{Plan, breaker_config, retry_policy};
use crate::reload::Reloader;
use crate::sched::circuits::Circuits;
use crate::sched::dispatch::Dispatcher;
use crate::sched::pace::Pace;
use crate::sched::shared::{Config, ReceiverSlots, Shared};
use spoolpost_ops::signals::Hangups;
use spoolpost_ops::watch::{Pacer, Watcher, next_of};

/// How often the service manager's status line is brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// `STATUS=` for the service manager: requests in flight, files waiting
/// in `incoming/`, circuits not closed. Counting `incoming/` reads the
/// folder, so it is done only when a service manager listens, and on the
/// blocking pool: a backlog of a million names takes most of a second to
/// read, which on the runtime's one thread would hold every answer. A
/// count still under way when the next is due is not doubled (`counting`).
fn send_status(shared: &Shared, concurrency: usize, counting: &mut Option<JoinHandle<()>>) {
    let notifier = spoolpost_ops::notify::global();
    if !notifier.is_active() || counting.as_ref().is_some_and(|c| !c.is_finished()) {
        return;
    }
    let config = shared.config();
    let in_flight: usize = config
        .receivers
        .iter()
        .zip(config.router.receivers())
        .map(|(s, r)| {
            // Each receiver's semaphore holds this many permits (see run).
            r.config
                .concurrency
                .min(concurrency)
                .saturating_sub(s.permits.available_permits())
        })
        .sum();
    let open = shared.circuits.not_closed();
    let spool = shared.spool.clone();
    *counting = Some(tokio::task::spawn_blocking(move || {
        let waiting = progress::count_incoming(&spool).unwrap_or(0);
        notifier.status(&format!(
            "{in_flight} in flight, {waiting} waiting, {open} circuits open"
        ));
    }));
}

/// How often dead senders' claim folders are looked for while running.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Rescan interval when inotify is not available.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The least time between two full rescans that timers or freed slots ask
/// for, so a busy spool is not read over and over.
const MIN_RESCAN_GAP: Duration = Duration::from_millis(100);

/// `stop` ends the run gently (finish in-flight requests within the grace
/// period); `cut_now`, after it, cuts them short at once. `hangups` is
/// SIGHUP, listened for since before recovery: one that came while starting is a
/// reload once serving (`--once` never reads it: nothing to reload).
pub async fn run(
    plan: Plan,
    stop: CancellationToken,
    cut_now: CancellationToken,
    hangups: Hangups,
) -> Result<(), Failure> {
    let Plan {
        spool,
        router,
        settings,
        once,
        events,
        progress,
        config,
        loaded,
    } = plan;
    let reloader = Reloader::new(
        config,
        events.clone(),
        loaded.as_ref(),
        settings.concurrency,
    );
    raise_open_file_limit(settings.concurrency);
    let recovered = recover_dead_claims(&spool)?;
    if recovered > 0 {
        tracing::info!(
            files = recovered,
            "returned files of dead senders to incoming/"
        );
    }
    let http = Http::new(router.receivers())
        .map_err(Failure::config)?
        .with_spool(spool.root());
    // Only a --once run knows how many files it has to do.
    let events = progress::sink(events.as_deref(), &progress, Role::Sender, &spool, || {
        once.then(|| progress::count_incoming(&spool)).flatten()
    })?;
    let claims = ClaimFolder::create(&spool)?;
    let shared = Arc::new(shared_state(
        spool.clone(),
        claims,
        router,
        http,
        &settings,
        events,
        Arc::new(crate::net::exchange::Network),
    ));
    tracing::info!(
        spool = %spool.root().display(),
        claim = shared.claims.id(),
        receivers = shared.config().receivers.len(),
        mode = if once { "once" } else { "daemon" },
        "sender started"
    );
    shared.circuits.publish();
    spoolpost_ops::notify::global().ready("sending");
    let recovery = tokio::spawn(recover_periodically(shared.clone(), stop.clone()));
    let stranded = tokio::spawn(retry_stranded(shared.clone(), stop.clone()));
    // The receivers a reload leaves in place, each time they are wanted.
    let paces = {
        let shared = shared.clone();
        move || -> Vec<Arc<Pace>> {
            (shared.config().receivers.iter())
                .map(|s| s.pace.clone())
                .collect()
        }
    };
    let publishing = tokio::spawn(crate::sched::pace::publish(
        shared.claims.path().to_path_buf(),
        paces.clone(),
        stop.clone(),
    ));
    let quieting = tokio::spawn(crate::sched::pace::quiet_moments(paces, stop.clone()));
    let mut dispatcher = Dispatcher::new(shared.clone(), settings.concurrency.max(1), stop.clone());
    let result = if once {
        drain_once(&mut dispatcher).await
    } else {
        serve(&mut dispatcher, &settings, &reloader, hangups, &stop).await
    };
    if stop.is_cancelled() {
        spoolpost_ops::notify::global().stopping();
    }
    let cut = dispatcher.drain_within(settings.grace, &cut_now).await;
    if cut > 0 {
        tracing::warn!(
            requests = cut,
            "grace period over; cut in-flight requests short"
        );
    }
    // A cut job's move may still be under way on the blocking pool; it
    // must end before unsent claims go back to incoming/.
    shared.moves.close();
    shared.moves.wait().await;
    drop(dispatcher);
    recovery.abort();
    let _ = recovery.await;
    stranded.abort();
    let _ = stranded.await;
    // One last try for files whose move failed; what is still stranded
    // goes back to incoming/ with close (a delivered file stays marked
    // delivered in the claim folder, for recovery to move to done/).
    crate::sched::settle::retry_stranded(&shared, true);
    let (stranded, disk_full) = shared.stranded.left();
    // Files a full disk kept from being claimed were left behind too.
    let unclaimed = shared.counts.refused_disk_full.load(Ordering::Relaxed);
    if stranded > 0 {
        tracing::error!(
            files = stranded,
            disk_full,
            "files could not be moved out of sending/"
        );
    }
    let result = match result {
        // A one-shot run says so in its exit status; a daemon that stops
        // has logged each file, and its next start takes them up.
        Ok(()) if once && (stranded > 0 || unclaimed > 0) => {
            Err(left_behind(stranded, unclaimed, disk_full))
        }
        other => other,
    };
    publishing.abort();
    let _ = publishing.await;
    quieting.abort();
    let _ = quieting.await;
    let shared = Arc::into_inner(shared).expect("every job has ended");
    let returned = shared.claims.close()?;
    if returned > 0 {
        tracing::info!(files = returned, "returned unsent claims to incoming/");
    }
    // Named for what they count: `files=` here was the claims
    // made, one per attempt and none for an unrouted file, beside a
    // summary that counts files by outcome.
    tracing::info!(
        attempts = shared.counts.started.load(Ordering::Relaxed),
        no_route = shared.counts.no_route.load(Ordering::Relaxed),
        lost_races = shared.counts.lost.load(Ordering::Relaxed),
        "sender stopped"
    );
    shared.events.finish();
    result
}

/// What the scheduler and its jobs share, built from the configuration:
/// each receiver's slots and pace, the circuits, the first snapshot.
pub(crate) fn shared_state(
    spool: Spool,
    claims: ClaimFolder,
    router: Router,
    http: Http,
    settings: &SenderSection,
    events: spoolpost_protocol::event::EventSink,
    exchange: Arc<dyn crate::net::exchange::Exchange>,
) -> Shared {
    let receivers = router
        .receivers()
        .iter()
        .map(|r| ReceiverSlots::new(&spool, r, settings.concurrency))
        .collect();
    let circuits = Circuits::new(
        router
            .receivers()
            .iter()
            .map(|r| (r.name.clone(), r.endpoint_labels().to_vec()))
            .collect(),
        breaker_config(settings),
        claims.path().to_path_buf(),
        crate::sched::clock::now(),
    );
    let snapshot = Config {
        router: Arc::new(router),
        http: Arc::new(http),
        receivers,
        policy: retry_policy(settings),
        rejudge_before: None,
        superseded: None,
        left: Vec::new(),
    };
    Shared::new(
        spool,
        claims,
        snapshot,
        settings.delete_delivered,
        events,
        circuits,
        exchange,
    )
}

/// Looks for dead instances' claim folders every [`RECOVERY_INTERVAL`], on
/// its own task: a pass over a long backlog can take minutes, and a dead
/// instance's files, already late, must not wait for it to end.
async fn recover_periodically(shared: Arc<Shared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(RECOVERY_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let spool = shared.spool.clone();
        match tokio::task::spawn_blocking(move || recover_dead_claims(&spool)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(files = n, "returned files of a dead sender to incoming/");
                // inotify reports the returns; without it, and in --once
                // mode, a rescan finds them.
                shared.recovered.store(true, Ordering::Release);
                shared.wake.notify_one();
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot look for dead senders' claims"),
            Err(e) => tracing::warn!(error = %e, "the search for dead senders' claims failed"),
        }
    }
}

/// The failure of a run that had to leave files behind: `stranded` it
/// could not move out of `sending/` (returned to `incoming/` unsettled, or
/// if delivered kept for `done/`), and `unclaimed` claims a full disk
/// refused. 75 when the disk was full, as the README promises, so cron
/// runs it again later; 74 otherwise.
fn left_behind(stranded: usize, unclaimed: u64, disk_full: bool) -> Failure {
    let disk_full = disk_full || unclaimed > 0;
    let mut what = Vec::new();
    if stranded > 0 {
        what.push(format!(
            "{stranded} file(s) could not be moved out of sending/ (they wait in incoming/, or, if delivered, in their claim folder for done/)"
        ));
    }
    if unclaimed > 0 {
        what.push(format!(
            "{unclaimed} claim(s) were refused (the files wait in incoming/)"
        ));
    }
    let why = if disk_full {
        "the spool's disk is full"
    } else {
        "the spool refused the move"
    };
    Failure {
        code: if disk_full {
            spoolpost_ops::exit::TEMPORARY
        } else {
            spoolpost_ops::exit::IO_ERROR
        },
        message: format!("{why}: {}", what.join("; ")),
    }
}

/// Tries the moves of stranded files again as each falls due, on its own
/// task so a long pass does not delay them.
async fn retry_stranded(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let due = shared.stranded.next_due();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.stranded.added.notified() => continue,
            _ = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        crate::sched::settle::retry_stranded(&shared, false);
    }
}

/// `--once`: passes over `incoming/` until one finds nothing it had to skip
/// and no dead instance's files came back meanwhile, then waits for what is in flight.
pub(crate) async fn drain_once(dispatcher: &mut Dispatcher) -> Result<(), Failure> {
    let mut leap_passes = 0;
    loop {
        let pass = dispatcher.pass().await?;
        let recovered = dispatcher.shared.recovered.swap(false, Ordering::AcqRel);
        if !pass.skipped && !recovered {
            if !pass.leapt {
                break;
            }
            // Another pass, at once, for what the other senders left of
            // the names leapt over. While they keep taking new files every
            // pass would leap again, so after a few the run stops leaping
            // and its last pass offers every name it reads.
            leap_passes += 1;
            if leap_passes == LEAP_PASSES {
                dispatcher.stop_leaping();
            }
            continue;
        }
        let wake = dispatcher.shared.clone();
        tokio::select! {
            _ = wake.wake.notified() => {}
            // A rate limit's next token may come sooner than a second.
            _ = tokio::time::sleep_until(next_pass(dispatcher).into()) => {}
        }
    }
    dispatcher.drain().await;
    Ok(())
}

/// How many passes a `--once` run makes for names it leapt over before it
/// stops leaping.
const LEAP_PASSES: usize = 4;

/// When a `--once` pass that had to skip files tries again at the latest.
fn next_pass(dispatcher: &Dispatcher) -> Instant {
    let second = crate::sched::clock::now() + Duration::from_secs(1);
    dispatcher.next_wake().map_or(second, |at| at.min(second))
}

/// Long-running mode: react to new files until stopped.
async fn serve(
    dispatcher: &mut Dispatcher,
    settings: &SenderSection,
    reloader: &Reloader,
    mut hangups: Hangups,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    let spool = dispatcher.shared.spool.clone();
    // Watch before the first pass, so no file can arrive unseen between them.
    let watcher = match Watcher::new(&spool.dir(State::Incoming)) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, interval = ?POLL_INTERVAL, "inotify unavailable; polling incoming/ instead");
            None
        }
    };
    let rescan_every = if watcher.is_some() {
        settings.rescan_interval
    } else {
        POLL_INTERVAL
    };
    let events = Events {
        watcher: watcher.as_ref(),
        rescan_every,
        hangups: &mut hangups,
        reloader,
        concurrency: settings.concurrency,
    };
    schedule(dispatcher, events, stop).await
}

/// What wakes the long-running scheduler besides its own timers.
pub(crate) struct Events<'a> {
    /// New names in `incoming/`; without it, only rescans find them.
    pub watcher: Option<&'a Watcher>,
    /// The longest between two full rescans.
    pub rescan_every: Duration,
    pub hangups: &'a mut Hangups,
    pub reloader: &'a Reloader,
    /// `[sender] concurrency`, for the status line.
    pub concurrency: usize,
}

/// The scheduler's loop: a pass when a timer (retry due, circuit may
/// close, rescan interval) or a wake-up asks for one, new names as inotify
/// reports them, holds reread every [`crate::sched::holds::HOLD_REFRESH`].
/// Every deadline is on tokio's clock, so paused time drives it in tests.
pub(crate) async fn schedule(
    dispatcher: &mut Dispatcher,
    events: Events<'_>,
    stop: &CancellationToken,
) -> Result<(), Failure> {
    let Events {
        watcher,
        rescan_every,
        hangups,
        reloader,
        concurrency,
    } = events;
    let mut holds = tokio::time::interval(crate::sched::holds::HOLD_REFRESH);
    let mut pacer = Pacer::new(MIN_RESCAN_GAP);
    let mut rescan = true;
    let mut watchdog = spoolpost_ops::notify::global().watchdog();
    let mut status = tokio::time::interval(STATUS_EVERY);
    let mut counting = None;
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if rescan {
            pacer.ready().await;
            rescan = dispatcher.pass().await?.leapt;
        }
        let wake_at = dispatcher
            .next_wake()
            .unwrap_or_else(|| crate::sched::clock::now() + rescan_every)
            .min(pacer.last() + rescan_every);
        let shared = dispatcher.shared.clone();
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            batch = next_of(watcher) => match batch {
                Ok(batch) => {
                    let leapt = dispatcher.offer_seen(batch.seen.into_iter().map(|s| s.name)).await;
                    rescan = batch.overflow || leapt;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inotify failed; rescanning");
                    rescan = true;
                }
            },
            _ = shared.wake.notified() => rescan = true,
            _ = tokio::time::sleep_until(wake_at.into()) => rescan = true,
            _ = holds.tick() => dispatcher.refresh_holds(),
            _ = watchdog.tick(spoolpost_ops::notify::global()) => {}
            () = hangups.next() => {
                let notifier = spoolpost_ops::notify::global();
                notifier.reloading();
                tracing::info!("SIGHUP: reopening the events file and reloading");
                // A new backoff or route can make waiting files due now.
                rescan = reloader.apply(&shared);
                notifier.ready("sending");
            }
            _ = status.tick() => send_status(&shared, concurrency, &mut counting),
        }
    }
}

/// Each request in flight holds a socket and its file open: with the
/// default bound of 1,024 that is more than the soft limit many systems
/// start a process with (1,024). Raise the soft limit towards the hard
/// one, as Go's runtime and most servers do; an operator's lower hard
/// limit stays the word, with a warning if it is short.
fn raise_open_file_limit(concurrency: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Two per request, and room for the spool's folders, logs and pool.
    // rlim_t is u64 on Linux, i64 on FreeBSD (found by .ci/platforms).
    let want = (concurrency as u64).saturating_mul(2).saturating_add(256) as nix::libc::rlim_t;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    let new = want.min(hard);
    if new > soft && setrlimit(Resource::RLIMIT_NOFILE, new, hard).is_err() {
        return;
    }
    if new < want {
        tracing::warn!(
            limit = new,
            wanted = want,
            concurrency,
            "the open-file limit is below what the concurrency may need; lower [sender] concurrency or raise LimitNOFILE"
        );
    }
}
