//! The remote-like receiver case: the sender against a receiver
//! that answers 20 ms after it read each whole body, as a remote service
//! does with its round trip and its own work, over TLS and over plain HTTP
//! in the same run, 1 KiB files, the receiver's default concurrency.
//!
//! Each row is read against two bounds: what the concurrency allows
//! (`concurrency / RTT`, the target being 0.8 of it) and what the seed's
//! design could reach there (4 threads, one connection per request: at most
//! `4 / RTT`). `curl -Z` with the same parallelism over the same files is
//! the comparison row of a well-known client. TLS and plain rows share one
//! run so "TLS costs at most 1.3× the CPU per file of plain HTTP" can be
//! read off.
//!
//! The ways of reaching the receiver are a table ([`WAYS`]): HTTP/1.1 and
//! HTTP/2 over TLS, and HTTP/1.1 plain, each with its sender setting and
//! curl flag.
//!
//! The sender's in-flight limit is adaptive and starts low, so each way
//! first runs warm-up batches on the same spool until the limit reached the
//! concurrency; the measured run starts from the limit it remembered
//! (`pace/`), as a long-running sender would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use spoolpost_tests::harness::spawn;
use spoolpost_tests::receiver::Receiver;

use super::{Row, children_cpu, fill, row};

/// Added to each answer after the whole body was read.
const ANSWER_AFTER: Duration = Duration::from_millis(20);
/// A receiver's default `concurrency` (`[receivers.*]`).
const CONCURRENCY: usize = 64;
/// Files per warm-up batch, and the most batches: the limit starts at 4
/// and grows by one per window of answers, about 2,000 answers to 64.
const WARM_UP: u64 = 1_000;
const WARM_UP_BATCHES: usize = 8;
/// The seed's design: 4 threads, each one request on its own connection.
const SEED_THREADS: f64 = 4.0;

/// One way of reaching the receiver.
struct Way {
    label: &'static str,
    tls: bool,
    /// Lines added to the receiver's section of the sender's config.
    config: &'static str,
    /// Flags that make `curl` speak the same way.
    curl: &'static [&'static str],
}

/// The receiver over TLS offers h2 and http/1.1 by ALPN, so each way says
/// which it speaks.
const WAYS: &[Way] = &[
    Way {
        label: "HTTP/1.1 over TLS",
        tls: true,
        config: "http_version = \"1.1\"\n",
        curl: &["--http1.1"],
    },
    Way {
        label: "HTTP/2 over TLS",
        tls: true,
        config: "http_version = \"2\"\n",
        curl: &["--http2"],
    },
    Way {
        label: "HTTP/1.1 plain",
        tls: false,
        config: "",
        curl: &["--http1.1"],
    },
];

pub fn run(sender: &Path, work: &Path, scale: u64, rows: &mut Vec<Row>) {
    // Enough for the measured batch to last seconds at ~3,000 files/s.
    let files = if scale > 1 { 5_000 } else { 30_000 };
    let bound = CONCURRENCY as f64 / ANSWER_AFTER.as_secs_f64();
    let seed = SEED_THREADS / ANSWER_AFTER.as_secs_f64();
    let curl = curl_available();
    let mut plain_cpu = None;
    let mut tls_cpu = None;
    for way in WAYS {
        let (rx, pem) = if way.tls {
            Receiver::start_tls_fast(2).expect("cannot start the TLS receiver")
        } else {
            let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), true, 2)
                .expect("cannot start the receiver");
            (rx, String::new())
        };
        rx.answer_after(ANSWER_AFTER);
        let dir = work.join(format!("remote-{}", rows.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &pem).unwrap();
        let config = dir.join("sender.toml");
        let ca_line = if way.tls {
            format!("ca_file = {:?}\n", ca.to_str().unwrap())
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "[receivers.remote]\nurl = {:?}\n{ca_line}{}[[routes]]\nglob = \"*\"\nreceiver = \"remote\"\n",
                rx.url("/remote"),
                way.config,
            ),
        )
        .unwrap();
        let spool = dir.join("spool");
        let send = |n: u64| -> (Duration, f64, f64) {
            fill(&spool.join("incoming"), n, 1024);
            let before = rx.count();
            let cpu0 = children_cpu();
            let started = Instant::now();
            let out = spawn(
                Command::new(sender)
                    .arg("--spool")
                    .arg(&spool)
                    .arg("--config")
                    .arg(&config)
                    .args(["--once", "--events", "/dev/null"]),
            )
            .wait(Duration::from_secs(3600));
            let wall = started.elapsed();
            assert!(out.status.success(), "{}", out.stderr);
            assert_eq!(rx.count() - before, n, "every file reached the receiver");
            (
                wall,
                children_cpu() - cpu0,
                out.peak_rss_kib as f64 / 1024.0,
            )
        };
        // Warm up until the adaptive limit reached the concurrency, for at
        // most WARM_UP_BATCHES batches; the note says where it got.
        let mut limit = None;
        for batch in 1..=WARM_UP_BATCHES {
            eprintln!(
                "bench: {}: warm-up batch {batch}, {WARM_UP} files",
                way.label
            );
            send(WARM_UP);
            // The measured batch reuses the warm-up's names.
            for f in std::fs::read_dir(spool.join("done")).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
            limit = learned_limit(&spool);
            if limit.is_some_and(|l| l >= CONCURRENCY) {
                break;
            }
        }
        let limit = limit.map_or("?".into(), |l| l.to_string());
        eprintln!("bench: {}: {files} files", way.label);
        let (wall, cpu, rss) = send(files);
        let mut r = row(
            &format!("sender, {}, 20 ms answers, 1 KiB", way.label),
            files,
            files * 1024,
            wall,
            Some(cpu),
            Some(rss),
        );
        r.note = format!(
            "{:.2}× concurrency/RTT ({bound:.0}/s), {:.0}× the seed's 4/RTT ({seed:.0}/s); limit {limit} after warm-up",
            r.files_per_second / bound,
            r.files_per_second / seed,
        );
        // TLS's cost is read between the two HTTP/1.1 ways.
        match (way.tls, way.label.starts_with("HTTP/1.1")) {
            (true, true) => tls_cpu = r.cpu_us_per_file,
            (false, true) => plain_cpu = r.cpu_us_per_file,
            _ => {}
        }
        rows.push(r);

        if curl {
            rows.push(curl_row(way, &rx, &dir, &ca, files, bound));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let (Some(tls), Some(plain), Some(r)) = (
        tls_cpu,
        plain_cpu,
        rows.iter_mut()
            .rev()
            .find(|r| r.case.starts_with("sender") && r.case.contains("HTTP/1.1 over TLS")),
    ) {
        r.note
            .push_str(&format!("; {:.2}× plain HTTP's CPU per file", tls / plain));
    }
}

/// The limit the sender's pace record holds.
fn learned_limit(spool: &Path) -> Option<usize> {
    let record = std::fs::read(spool.join("pace/remote.json")).ok()?;
    let value = serde_json::from_slice::<serde_json::Value>(&record).ok()?;
    value.get("limit")?.as_u64().map(|l| l as usize)
}

/// curl is only a comparison row: installed through apt if missing, and
/// left out (with a message) if that fails.
fn curl_available() -> bool {
    let works = || {
        Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return true;
    }
    eprintln!("bench: curl is missing; installing it with apt-get for the comparison row");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "curl"])
        .status();
    works() || {
        eprintln!("bench: no curl; the curl -Z rows are left out");
        false
    }
}

/// `curl -Z` POSTing the same number of 1 KiB files with the sender's
/// concurrency as `--parallel-max`, one URL per file, from a config file
/// (a command line would be too long). curl sends the files as they are,
/// uncompressed, and does no spool work: it is a client's floor, not a
/// like-for-like sender.
fn curl_row(way: &Way, rx: &Receiver, dir: &Path, ca: &Path, files: u64, bound: f64) -> Row {
    let source = dir.join("curl-files");
    let bytes = fill(&source, files, 1024);
    let mut list = String::new();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        list.push_str(&format!(
            "url = {:?}\nupload-file = {:?}\noutput = \"/dev/null\"\n",
            rx.url(&format!("/curl/{name}")),
            path.to_str().unwrap()
        ));
    }
    let list_file = dir.join("curl.conf");
    std::fs::write(&list_file, list).unwrap();
    eprintln!("bench: {}: curl -Z, {files} files", way.label);
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--fail", "-Z", "--parallel-max"])
        .arg(CONCURRENCY.to_string())
        .args(["-X", "POST", "-H", "Expect:"])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(way.curl);
    if way.tls {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.arg("--config").arg(&list_file);
    let before = rx.count();
    let cpu0 = children_cpu();
    let started = Instant::now();
    let out = spawn(&mut cmd).wait(Duration::from_secs(3600));
    let wall = started.elapsed();
    assert!(out.status.success(), "curl failed: {}", out.stderr);
    assert_eq!(rx.count() - before, files, "curl sent every file");
    let mut r = row(
        &format!("curl -Z --parallel-max {CONCURRENCY}, {}", way.label),
        files,
        bytes,
        wall,
        Some(children_cpu() - cpu0),
        Some(out.peak_rss_kib as f64 / 1024.0),
    );
    r.note = format!(
        "{:.2}× concurrency/RTT; uncompressed bodies, no spool work",
        r.files_per_second / bound
    );
    let _ = std::fs::remove_dir_all(&source);
    r
}
