//! Set-ups that several behaviour files share: configurations built with
//! the harness's `ConfigFile`, and small readers of what a run left.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spoolpost_protocol::name::SpoolName;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;

const MINUTE: Duration = Duration::from_secs(60);

/// One receiver `r` at `url` taking every file, with `extra` lines in its
/// table, and retries 100 to 200 ms apart.
pub fn one_receiver(spool: &TestSpool, url: &str, extra: &str) -> PathBuf {
    ConfigFile::to("r", url)
        .sender("backoff_initial = \"100ms\"\nbackoff_max = \"200ms\"")
        .with(extra)
        .write(spool)
}

/// One receiver `main` at `url` whose Authorization header comes from the
/// file `token`, with short retries and open periods and two attempts;
/// `extra` goes into `[sender]`.
pub fn token_config(spool: &TestSpool, url: &str, token: &Path, extra: &str) -> PathBuf {
    ConfigFile::to("main", url)
        .spool(&spool.root)
        .sender(
            "backoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\nbreaker_open_initial = \"200ms\"\n\
             breaker_open_max = \"500ms\"\nmax_attempts = 2",
        )
        .sender(extra)
        .with(&format!(
            "[receivers.main.headers]\nAuthorization = {{ file = {:?} }}",
            path_str(token)
        ))
        .write(spool)
}

/// Receiver `r` with the endpoints `urls`, a backoff of 60 s (and open
/// periods as given): a file that waited for either would show as seconds
/// of delay, far above the bounds the tests assert. `extra` goes into the
/// receiver's table.
pub fn endpoints_config(spool: &TestSpool, urls: &[&str], open: &str, extra: &str) -> PathBuf {
    ConfigFile::new()
        .sender(&format!(
            "backoff_initial = \"60s\"\nbackoff_max = \"60s\"\nbreaker_failures = 2\n\
             breaker_open_initial = \"{open}\"\nbreaker_open_max = \"{open}\""
        ))
        .receiver_urls("r", urls, extra)
        .route_all("r")
        .write(spool)
}

/// The circuits the live senders publish, merged as the reporter reads them.
pub fn circuits_of(spool: &TestSpool) -> spoolpost_protocol::circuits::Circuits {
    let s = spoolpost_protocol::spool::Spool::open(&spool.root).unwrap();
    spoolpost_protocol::circuits::read_all(&s)
}

/// Writes `text` beside the spool as `name`; returns its path.
pub fn side_file(spool: &TestSpool, name: &str, text: &str) -> PathBuf {
    let path = spool.side("etc").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// One `sender --once` run with the config at `cfg`, which must succeed.
pub fn once(spool: &TestSpool, cfg: &PathBuf) -> Finished {
    let out = run(sender(spool).arg("--once").arg("--config").arg(cfg), MINUTE);
    out.assert_success();
    out
}

/// The one waiting file's last reason.
pub fn waiting_reason(spool: &TestSpool) -> Option<String> {
    let names = spool.names(State::Incoming);
    assert_eq!(names.len(), 1, "{:?}", spool.census());
    SpoolName::parse(OsStr::from_bytes(&names[0])).last_reason
}

/// `n` files no route takes (`f0.unrouted` …), beside a receiver `a` that
/// takes only `*.json`, and one `sender --once --events -` over them,
/// which must succeed: each file goes to error/ as `no_route`.
pub fn unrouted_run(spool: &TestSpool, n: usize) -> Finished {
    for i in 0..n {
        spool.put(format!("f{i}.unrouted"), b"x\n");
    }
    let cfg = spoolpost_tests::config_file::ConfigFile::new()
        .receiver("a", "http://127.0.0.1:9/", "")
        .route("glob = \"*.json\"", "a")
        .write(spool);
    let out = run(
        sender(spool)
            .arg("--config")
            .arg(&cfg)
            .args(["--once", "--events", "-"]),
        Duration::from_secs(60),
    );
    out.assert_success();
    assert_eq!(spool.count(State::Error), n, "{}", out.stderr);
    out
}
