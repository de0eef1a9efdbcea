//! `bench`: spoolpost's benchmark. Builds the release binaries, sets up
//! everything on loopback (the test receiver in fast mode, which reads and
//! discards bodies), measures the raw request ceiling of that receiver with
//! the same payload and connection count, then runs each case and prints a
//! table (or `--json`). Figures are meant to be read as ratios within one
//! run; absolute numbers move with the machine.
//!
//! With `--repeat N` every selected case runs N times and each row shows
//! the median and the spread (min–max), so one noisy run cannot pass for a
//! result. A scenario's default row then states its median against the
//! best of the fixed contenders' medians (each run's own ratio beside it):
//! the best of five single runs that each vary by 10–15% is biased upward.
//!
//! Every receiver here reads each whole body before it answers:
//! the fast mode of the test receiver drains the body frame by frame and
//! only then builds its answer, and the raw-ceiling client (`load::blast`)
//! sends a whole `Full` body and reads the whole answer. So no figure is
//! flattered by answers that come before the body went (which the sender
//! would now refuse as `early_answer` anyway).
//!
//! Run: `cargo run --release -p spoolpost-tests --bin bench [-- --json] [-- --quick]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::Signal;
use serde::Serialize;
use spoolpost_tests::harness::{bin, spawn};
use spoolpost_tests::load::blast;
use spoolpost_tests::receiver::Receiver;

#[path = "bench/remote.rs"]
mod remote;
#[path = "bench/scenarios.rs"]
mod scenarios;

#[derive(Parser)]
#[command(about = "spoolpost's benchmark (see docs/performance.md)")]
struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Smaller cases (10x fewer files, 64 MiB instead of 1 GiB), for a quick look.
    #[arg(long)]
    quick: bool,
    /// Where to build spools (default: the system's temporary folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only these cases (the ceiling is always measured).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Case>,
    /// Run every selected case N times; rows show the median and min–max.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    /// 100,000 files of 1 KiB, one sender.
    Small,
    /// 10,000 files of 64 KiB, one sender.
    Large,
    /// 2 and 4 senders on one spool.
    Parallel,
    /// One 1 GiB file at gzip 1, 6 and uncompressed.
    Big,
    /// The collector on one filesystem.
    Collector,
    /// 1,000,000 waiting files: reporter, first request, sustained rate.
    Backlog,
    /// End-to-end latency at 1,000 files/s.
    EndToEnd,
    /// A remote-like receiver: TLS and plain HTTP, 20 ms per answer,
    /// against the design bounds and `curl -Z`.
    Remote,
    /// The scenario matrix: the default against fixed concurrencies
    /// on receivers that are capacity-limited, remote, flaky or shared.
    Scenarios,
    /// The small case with the limit pinned (`adaptive = false`) at several
    /// concurrencies, against which the adaptive default is read.
    Fixed,
}

impl Args {
    fn wants(&self, case: Case) -> bool {
        self.only.is_empty() || self.only.contains(&case)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
struct Row {
    case: String,
    files: u64,
    seconds: f64,
    files_per_second: f64,
    mb_per_second: f64,
    cpu_seconds_per_10k_files: Option<f64>,
    cpu_us_per_file: Option<f64>,
    peak_rss_mib: Option<f64>,
    /// files/s as a share of the raw request ceiling of the same run.
    of_ceiling: Option<f64>,
    note: String,
    /// How many runs the figures above are the median of.
    runs: u32,
    /// min–max of files/s over the runs.
    files_per_second_spread: Option<[f64; 2]>,
    /// min–max of CPU µs per file over the runs.
    cpu_us_per_file_spread: Option<[f64; 2]>,
}

/// The median of each figure over runs (the mean of the middle two for an
/// even count); the note is the one of the run nearest the median rate.
fn summarise(runs: &[Row]) -> Row {
    fn median(mut v: Vec<f64>) -> Option<f64> {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }
    fn spread(v: &[f64]) -> Option<[f64; 2]> {
        let min = v.iter().copied().reduce(f64::min)?;
        Some([min, v.iter().copied().fold(min, f64::max)])
    }
    let all = |f: fn(&Row) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let some = |f: fn(&Row) -> Option<f64>| runs.iter().filter_map(f).collect::<Vec<f64>>();
    let rate = median(all(|r| r.files_per_second)).unwrap_or(0.0);
    let typical = runs
        .iter()
        .min_by(|a, b| {
            (a.files_per_second - rate)
                .abs()
                .total_cmp(&(b.files_per_second - rate).abs())
        })
        .expect("at least one run");
    Row {
        case: typical.case.clone(),
        files: median(all(|r| r.files as f64)).unwrap_or(0.0) as u64,
        seconds: median(all(|r| r.seconds)).unwrap_or(0.0),
        files_per_second: rate,
        mb_per_second: median(all(|r| r.mb_per_second)).unwrap_or(0.0),
        cpu_seconds_per_10k_files: median(some(|r| r.cpu_seconds_per_10k_files)),
        cpu_us_per_file: median(some(|r| r.cpu_us_per_file)),
        peak_rss_mib: median(some(|r| r.peak_rss_mib)),
        of_ceiling: median(some(|r| r.of_ceiling)),
        note: typical.note.clone(),
        runs: runs.len() as u32,
        files_per_second_spread: spread(&all(|r| r.files_per_second)),
        cpu_us_per_file_spread: spread(&some(|r| r.cpu_us_per_file)),
    }
}

/// CPU seconds (user + system) of children waited for so far.
fn children_cpu() -> f64 {
    cpu_of(UsageWho::RUSAGE_CHILDREN)
}

/// CPU seconds (user + system) of this process so far.
fn own_cpu() -> f64 {
    cpu_of(UsageWho::RUSAGE_SELF)
}

fn cpu_of(who: UsageWho) -> f64 {
    let u = getrusage(who).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// Runs a command to completion, measuring wall time, CPU and peak RSS.
fn measure(cmd: &mut Command) -> (Duration, f64, f64, String) {
    let cpu0 = children_cpu();
    let started = Instant::now();
    let out = spawn(cmd).wait(Duration::from_secs(3600));
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "benchmark step failed:\n{}",
        out.stderr
    );
    (
        wall,
        children_cpu() - cpu0,
        out.peak_rss_kib as f64 / 1024.0,
        out.stderr,
    )
}

fn one_kib_json(i: u64) -> Vec<u8> {
    let mut line =
        format!("{{\"seq\":{i},\"host\":\"web-17\",\"event\":\"order.created\",\"payload\":\"");
    while line.len() < 1021 {
        line.push_str("abcdefghij");
    }
    line.truncate(1021);
    line.push_str("\"}\n");
    line.into_bytes()
}

fn fill(dir: &Path, n: u64, size: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = 0;
    for i in 0..n {
        let mut body = one_kib_json(i);
        body.resize(size, b' ');
        std::fs::write(dir.join(format!("ev-{i:07}.json")), &body).unwrap();
        bytes += body.len() as u64;
    }
    bytes
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn row(
    case: &str,
    files: u64,
    bytes: u64,
    wall: Duration,
    cpu: Option<f64>,
    rss: Option<f64>,
) -> Row {
    let s = wall.as_secs_f64();
    Row {
        case: case.into(),
        files,
        seconds: s,
        files_per_second: files as f64 / s,
        mb_per_second: bytes as f64 / 1e6 / s,
        cpu_seconds_per_10k_files: cpu.map(|c| c / files as f64 * 10_000.0),
        cpu_us_per_file: cpu.map(|c| c / files as f64 * 1e6),
        peak_rss_mib: rss,
        runs: 1,
        ..Row::default()
    }
}

fn main() {
    let args = Args::parse();
    eprintln!("bench: building release binaries");
    let sender = bin("sender");
    let collector = bin("collector");
    let reporter = bin("reporter");
    let work = match &args.dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), true, 1).unwrap();
    let bins = Bins {
        sender,
        collector,
        reporter,
    };
    let runs: Vec<Vec<Row>> = (1..=args.repeat)
        .map(|i| {
            if args.repeat > 1 {
                eprintln!("bench: run {i} of {}", args.repeat);
            }
            run_once(&args, &bins, work.path(), &rx)
        })
        .collect();
    // Every run has the same cases in the same order.
    let mut rows: Vec<Row> = (0..runs[0].len())
        .map(|at| summarise(&runs.iter().map(|r| r[at].clone()).collect::<Vec<_>>()))
        .collect();
    scenarios::restate(&runs, &mut rows);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap());
    } else {
        print_table(&rows);
    }
}

struct Bins {
    sender: PathBuf,
    collector: PathBuf,
    reporter: PathBuf,
}

/// Every selected case once, the ceiling and the floors first.
fn run_once(args: &Args, bins: &Bins, work: &Path, rx: &Receiver) -> Vec<Row> {
    let scale = if args.quick { 10 } else { 1 };
    let Bins {
        sender,
        collector,
        reporter,
    } = bins;
    let url = rx.url("/bench");
    let mut rows = Vec::new();
    let concurrency = 256;

    // The ceiling: the receiver's raw rate with the sender's payload and
    // connection count.
    let n = 100_000 / scale;
    let payload = Bytes::from(gzip(&one_kib_json(0), 6));
    eprintln!("bench: raw ceiling ({n} requests, {concurrency} connections)");
    let blasted = blast(rx.addr(), payload.clone(), concurrency, n);
    let mut ceiling = row(
        CEILING,
        n,
        n * 1024,
        blasted.wall,
        Some(blasted.cpu.as_secs_f64()),
        None,
    );
    ceiling.note = format!(
        "{} B gzipped body; CPU is the bare client's (one thread)",
        payload.len()
    );
    let ceiling_rate = ceiling.files_per_second;
    rows.push(ceiling);
    if [Case::Small, Case::Large, Case::Parallel]
        .iter()
        .any(|&c| args.wants(c))
    {
        rows.push(file_floor(work, 100_000 / scale));
        rows.push(file_floor_two_threads(work, 100_000 / scale));
        rows.push(gzip_floor(100_000 / scale, GZIP_LEVEL));
    }

    let sender_case = |name: &str,
                       files: u64,
                       size: usize,
                       senders: usize,
                       extra: &[&str],
                       rows: &mut Vec<Row>| {
        let spool = work.join(format!("spool-{}", rows.len()));
        eprintln!("bench: {name}: writing {files} files");
        let bytes = fill(&spool.join("incoming"), files, size);
        let before = rx.count();
        let cpu0 = children_cpu();
        let started = Instant::now();
        let running: Vec<_> = (0..senders)
            .map(|_| {
                let mut cmd = Command::new(sender);
                cmd.arg("--spool").arg(&spool).arg("--once");
                // A case with its own configuration names its receiver there.
                if !extra.contains(&"--config") {
                    cmd.args(["--url", &url]);
                }
                cmd.arg("--concurrency")
                    .arg(concurrency.to_string())
                    .args(extra)
                    .arg("--events")
                    .arg("/dev/null");
                spawn(&mut cmd)
            })
            .collect();
        let rss = running
            .into_iter()
            .map(|r| r.wait(Duration::from_secs(3600)))
            .map(|o| {
                assert!(o.status.success(), "{}", o.stderr);
                o.peak_rss_kib as f64 / 1024.0
            })
            .fold(0.0, f64::max);
        let wall = started.elapsed();
        assert_eq!(
            rx.count() - before,
            files,
            "every file reached the receiver"
        );
        let mut r = row(
            name,
            files,
            bytes,
            wall,
            Some(children_cpu() - cpu0),
            Some(rss),
        );
        r.of_ceiling = Some(r.files_per_second / ceiling_rate);
        if senders > 1 {
            r.note = format!("{senders} processes; RSS is the largest one's");
        }
        rows.push(r);
        let _ = std::fs::remove_dir_all(&spool);
    };

    if args.wants(Case::Small) {
        sender_case(SMALL_DEFAULT, 100_000 / scale, 1024, 1, &[], &mut rows);
        let measured = rows.last().expect("just measured");
        if let Some(note) = against_floors(&rows, measured) {
            rows.last_mut().expect("just measured").note = note;
        }
        sender_case(
            "sender --once --threads 1, 1 KiB files",
            100_000 / scale,
            1024,
            1,
            &["--threads", "1"],
            &mut rows,
        );
    }
    if args.wants(Case::Scenarios) {
        scenarios::run(sender, work, scale, &mut rows);
    }
    if args.wants(Case::Fixed) {
        let adaptive = rows.iter().rposition(|r| r.case == SMALL_DEFAULT);
        let mut best: Option<f64> = None;
        for pinned in [16, 64, 256] {
            let cfg = work.join(format!("fixed-{pinned}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[receivers.bench]\nurl = \"{url}\"\nconcurrency = {pinned}\nadaptive = false\n[[routes]]\nglob = \"*\"\nreceiver = \"bench\"\n"
                ),
            )
            .unwrap();
            sender_case(
                &format!("sender --once, 1 KiB files, fixed concurrency {pinned}"),
                100_000 / scale,
                1024,
                1,
                &["--config", cfg.to_str().unwrap()],
                &mut rows,
            );
            let rate = rows.last().unwrap().files_per_second;
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        }
        if let (Some(i), Some(best)) = (adaptive, best) {
            let r = &mut rows[i];
            let ratio = r.files_per_second / best;
            let adaptive = format!("adaptive: {ratio:.2}× the best fixed concurrency's files/s");
            r.note = if r.note.is_empty() {
                adaptive
            } else {
                format!("{}; {adaptive}", r.note)
            };
        }
    }
    if args.wants(Case::Large) {
        sender_case(
            "sender --once, 64 KiB files",
            10_000 / scale,
            64 * 1024,
            1,
            &[],
            &mut rows,
        );
    }
    for senders in [2, 4].into_iter().filter(|_| args.wants(Case::Parallel)) {
        sender_case(
            &format!("{senders} senders on one spool, 1 KiB files"),
            100_000 / scale,
            1024,
            senders,
            &[],
            &mut rows,
        );
    }

    // One big file at three gzip settings.
    let big_size: u64 = if args.quick { 64 << 20 } else { 1 << 30 };
    for (label, flags) in [
        ("gzip 1", vec!["--gzip-level", "1"]),
        // Named, not the default: the row keeps its meaning across runs.
        ("gzip 6", vec!["--gzip-level", "6"]),
        ("uncompressed", vec!["--no-gzip"]),
    ]
    .into_iter()
    .filter(|_| args.wants(Case::Big))
    {
        let spool = work.join("spool-big");
        std::fs::create_dir_all(spool.join("incoming")).unwrap();
        let path = spool.join("incoming").join("big.json");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut written = 0u64;
        let mut i = 0;
        let mut rng = fastrand::Rng::with_seed(5);
        while written < big_size {
            let line = spoolpost_tests::payload::varied_json(i, &mut rng);
            f.write_all(&line).unwrap();
            written += line.len() as u64;
            i += 1;
        }
        drop(f);
        eprintln!("bench: one {} MiB file, {label}", big_size >> 20);
        let (wall, cpu, rss, _) = measure(
            Command::new(sender)
                .arg("--spool")
                .arg(&spool)
                .args(["--once", "--url", &url, "--events", "/dev/null"])
                .args(&flags),
        );
        let mut r = row(
            &format!("one {} MiB file, {label}", big_size >> 20),
            1,
            written,
            wall,
            Some(cpu),
            Some(rss),
        );
        r.cpu_seconds_per_10k_files = None;
        r.cpu_us_per_file = None;
        r.note = format!("{cpu:.2} CPU s");
        rows.push(r);
        let _ = std::fs::remove_dir_all(&spool);
    }

    if args.wants(Case::Collector) {
        collector_case(collector, work, 100_000 / scale, &mut rows);
    }
    if args.wants(Case::Backlog) {
        backlog_case(
            sender,
            reporter,
            work,
            rx,
            &url,
            concurrency,
            ceiling_rate,
            args.quick,
            &mut rows,
        );
    }
    if args.wants(Case::Remote) {
        remote::run(sender, work, scale, &mut rows);
    }
    if args.wants(Case::EndToEnd) {
        rows.push(end_to_end(
            collector,
            sender,
            work,
            if args.quick { 3 } else { 10 },
        ));
    }

    rows
}

/// The file work the sender cannot avoid, without HTTP, on one thread: for
/// each file the claim rename, open, stat, read, close, and the rename to
/// `done/`. With the ceiling's client CPU it is the floor under the
/// sender's CPU per file on this machine and filesystem.
fn file_floor(work: &Path, files: u64) -> Row {
    let spool = work.join("spool-floor");
    eprintln!("bench: file-work floor: writing {files} files");
    let bytes = fill(&spool.join("incoming"), files, 1024);
    let (claim, done) = (spool.join("sending/floor"), spool.join("done"));
    std::fs::create_dir_all(&claim).unwrap();
    std::fs::create_dir_all(&done).unwrap();
    let mut buf = vec![0u8; 1024];
    let r = floor_row(
        FILE_FLOOR,
        "the sender",
        &spool.join("incoming"),
        bytes,
        |from, name| file_work(from, &claim, &done, name, &mut buf),
    );
    let _ = std::fs::remove_dir_all(&spool);
    r
}

/// The same file work on two threads, each with its own claim folder as
/// two senders' threads would have: the most files/s the spool's folders
/// allow the sender's two runtime threads, which the kernel's directory
/// locks keep well under twice one thread's rate on a disk.
fn file_floor_two_threads(work: &Path, files: u64) -> Row {
    let spool = work.join("spool-floor2");
    eprintln!("bench: two-thread file-work floor: writing {files} files");
    let bytes = fill(&spool.join("incoming"), files, 1024);
    let done = spool.join("done");
    std::fs::create_dir_all(&done).unwrap();
    let incoming = spool.join("incoming");
    let names = names_in(&incoming);
    let (cpu0, started) = (own_cpu(), Instant::now());
    std::thread::scope(|scope| {
        for (t, half) in names.chunks(names.len().div_ceil(2)).enumerate() {
            let (incoming, done) = (&incoming, &done);
            let claim = spool.join(format!("sending/floor{t}"));
            std::fs::create_dir_all(&claim).unwrap();
            scope.spawn(move || {
                let mut buf = vec![0u8; 1024];
                for name in half {
                    file_work(&incoming.join(name), &claim, done, name, &mut buf);
                }
            });
        }
    });
    let mut r = row(
        "file-work floor, two threads",
        names.len() as u64,
        bytes,
        started.elapsed(),
        Some(own_cpu() - cpu0),
        None,
    );
    r.note =
        "two threads, a claim folder each: the files/s the sender's two threads could reach".into();
    let _ = std::fs::remove_dir_all(&spool);
    r
}

/// Rows other rows are read against, named once.
const CEILING: &str = "raw HTTP ceiling (load generator, no files)";
const FILE_FLOOR: &str = "file-work floor (renames + read, no HTTP)";
/// The default sender on 1 KiB files, which the floors and the fixed
/// concurrencies are read against.
const SMALL_DEFAULT: &str = "sender --once, 1 KiB files";

/// A 1 KiB sender row's CPU per file against the floors of the same run:
/// the bare HTTP exchange (the ceiling's client) plus the one-thread file
/// work, and those plus gzip.
fn against_floors(rows: &[Row], sender: &Row) -> Option<String> {
    let cpu = |is: &dyn Fn(&str) -> bool| {
        rows.iter()
            .find(|r| is(&r.case))
            .and_then(|r| r.cpu_us_per_file)
    };
    let http = cpu(&|case| case == CEILING)?;
    let files = cpu(&|case| case == FILE_FLOOR)?;
    // Its name carries the level.
    let gzip = cpu(&|case| case.starts_with("gzip floor"))?;
    let own = sender.cpu_us_per_file?;
    Some(format!(
        "CPU {:.1}× HTTP + file-work floors, {:.1}× with gzip's",
        own / (http + files),
        own / (http + files + gzip)
    ))
}

/// The names in `dir`, read before a floor's clock starts.
fn names_in(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

/// One file's unavoidable spool work: claim, open, stat, read, close, done.
fn file_work(from: &Path, claim: &Path, done: &Path, name: &std::ffi::OsStr, buf: &mut Vec<u8>) {
    let claimed = claim.join(name);
    std::fs::rename(from, &claimed).unwrap();
    let mut f = std::fs::File::open(&claimed).unwrap();
    let size = f.metadata().unwrap().len() as usize;
    buf.resize(size, 0);
    std::io::Read::read_exact(&mut f, buf).unwrap();
    drop(f);
    std::fs::rename(&claimed, done.join(name)).unwrap();
}

/// The sender's default gzip level (`--gzip-level`, `gzip_level`).
const GZIP_LEVEL: u32 = spoolpost_ops::config::default_gzip_level();

/// Compressing the small-file cases' 1 KiB payload on its own, as the sender
/// does for each small file (one compressor, reset per file), on one thread:
/// gzip's share of the sender's CPU per file.
fn gzip_floor(files: u64, level: u32) -> Row {
    use flate2::{Compress, Compression, FlushCompress, Status};
    eprintln!("bench: gzip floor ({files} files, level {level})");
    let bodies: Vec<Vec<u8>> = (0..files).map(one_kib_json).collect();
    let mut c = Compress::new_gzip(Compression::new(level), 15);
    let mut out = Vec::with_capacity(2048);
    let mut bytes = 0;
    let (cpu0, started) = (own_cpu(), Instant::now());
    for body in &bodies {
        c.reset();
        out.clear();
        let status = c
            .compress_vec(body, &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd, "1 KiB fits the output buffer");
        bytes += body.len() as u64;
    }
    let mut r = row(
        &format!("gzip floor (1 KiB payload, level {level}, no files, no HTTP)"),
        files,
        bytes,
        started.elapsed(),
        Some(own_cpu() - cpu0),
        None,
    );
    r.note = format!("one thread; {} B out per file", out.len());
    r
}

/// Times `each` over every file in `dir` on this thread, as a row: the
/// floor under what `who` does per file.
fn floor_row(
    case: &str,
    who: &str,
    dir: &Path,
    bytes: u64,
    mut each: impl FnMut(&Path, &std::ffi::OsStr),
) -> Row {
    let names = names_in(dir);
    let (cpu0, started) = (own_cpu(), Instant::now());
    for name in &names {
        each(&dir.join(name), name);
    }
    let mut r = row(
        case,
        names.len() as u64,
        bytes,
        started.elapsed(),
        Some(own_cpu() - cpu0),
        None,
    );
    r.note = format!("one thread; {who} cannot do less per file");
    r
}

/// The collector moving files within one filesystem.
fn collector_case(collector: &Path, work: &Path, files: u64, rows: &mut Vec<Row>) {
    let source = work.join("source");
    eprintln!("bench: rename floor: writing {files} files");
    let bytes = fill(&source, files, 1024);
    // The floor: one rename per file from one folder to another, nothing
    // else. The collector cannot do less, and renames between the same two
    // folders are serialised by the kernel's directory locks, so more
    // threads would not raise it either.
    let moved = work.join("renamed");
    std::fs::create_dir_all(&moved).unwrap();
    let floor = floor_row(
        "rename floor (one folder to another, no other work)",
        "the collector",
        &source,
        bytes,
        |from, name| std::fs::rename(from, moved.join(name)).unwrap(),
    );
    let floor_rate = floor.files_per_second;
    rows.push(floor);
    std::fs::remove_dir(&source).unwrap();
    std::fs::rename(&moved, &source).unwrap();

    eprintln!("bench: collector");
    let spool = work.join("spool-collect");
    let (wall, cpu, rss, _) = measure(
        Command::new(collector)
            .arg("--spool")
            .arg(&spool)
            .arg("--source")
            .arg(&source)
            .args(["--once", "--settle", "0s", "--events", "/dev/null"]),
    );
    let mut r = row(
        "collector --once, same filesystem",
        files,
        bytes,
        wall,
        Some(cpu),
        Some(rss),
    );
    r.note = format!(
        "{:.0}% of the rename floor's rate",
        r.files_per_second / floor_rate * 100.0
    );
    rows.push(r);
    let _ = std::fs::remove_dir_all(&spool);
    let _ = std::fs::remove_dir_all(&source);
}

/// A deep backlog: the reporter over it, then the time to the first request
/// and the rate that follows.
#[allow(clippy::too_many_arguments)]
fn backlog_case(
    sender: &Path,
    reporter: &Path,
    work: &Path,
    rx: &Receiver,
    url: &str,
    concurrency: usize,
    ceiling_rate: f64,
    quick: bool,
    rows: &mut Vec<Row>,
) {
    let files = if quick { 100_000 } else { 1_000_000 };
    let spool = work.join("spool-deep");
    eprintln!("bench: deep backlog: writing {files} files");
    let bytes = fill(&spool.join("incoming"), files, 1024);
    let (wall, cpu, rss, _) = measure(
        Command::new(reporter)
            .arg("--spool")
            .arg(&spool)
            .args(["--format", "json"]),
    );
    let mut r = row(
        &format!("reporter over {files} waiting files"),
        files,
        bytes,
        wall,
        Some(cpu),
        Some(rss),
    );
    r.note = "one pass, no per-file memory".into();
    rows.push(r);
    let before = rx.count();
    let started = Instant::now();
    let daemon = spawn(
        Command::new(sender)
            .arg("--spool")
            .arg(&spool)
            .args(["--url", url, "--events", "/dev/null", "--concurrency"])
            .arg(concurrency.to_string()),
    );
    while rx.count() == before && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = started.elapsed();
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let at_first = rx.count();
    std::thread::sleep(window);
    let sent = rx.count() - at_first;
    daemon.signal(Signal::SIGTERM);
    let out = daemon.wait(Duration::from_secs(120));
    let mut r = row(
        &format!("sender, {files} waiting: rate over {}s", window.as_secs()),
        sent,
        sent * 1024,
        window,
        None,
        Some(out.peak_rss_kib as f64 / 1024.0),
    );
    r.of_ceiling = Some(r.files_per_second / ceiling_rate);
    r.note = format!("first request after {:.0} ms", first.as_secs_f64() * 1000.0);
    rows.push(r);
    let _ = std::fs::remove_dir_all(&spool);
}

/// Steady production of 1,000 files/s into a source folder (write to a
/// dot-name, rename into place), collector and sender running, the test
/// receiver recording arrivals: latency from rename to the receiver.
fn end_to_end(collector: &Path, sender: &Path, work: &Path, seconds: u64) -> Row {
    eprintln!("bench: end to end at 1,000 files/s for {seconds}s");
    let rx = Receiver::start();
    let source = work.join("e2e-source");
    let spool = work.join("e2e-spool");
    std::fs::create_dir_all(&source).unwrap();
    let col = spawn(
        Command::new(collector)
            .arg("--spool")
            .arg(&spool)
            .arg("--source")
            .arg(&source)
            .args(["--ready", "close-write", "--events", "/dev/null"]),
    );
    let snd = spawn(Command::new(sender).arg("--spool").arg(&spool).args([
        "--url",
        &rx.url("/e2e"),
        "--events",
        "/dev/null",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    let total = seconds * 1000;
    let mut made = std::collections::HashMap::new();
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1000);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let name = format!("e{i:07}.json");
        let tmp = source.join(format!(".{name}"));
        std::fs::write(&tmp, one_kib_json(i)).unwrap();
        std::fs::rename(&tmp, source.join(&name)).unwrap();
        made.insert(name, Instant::now());
    }
    let producing = started.elapsed();
    rx.wait_for(total, Duration::from_secs(60));
    col.signal(Signal::SIGTERM);
    snd.signal(Signal::SIGTERM);
    let (c, s) = (
        col.wait(Duration::from_secs(60)),
        snd.wait(Duration::from_secs(60)),
    );
    let mut latencies: Vec<f64> = rx
        .received()
        .iter()
        .filter_map(|r| {
            let name = r.header("x-filename")?;
            Some(r.at.duration_since(*made.get(name)?).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            [((p / 100.0 * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let mut r = row(
        "end to end at 1,000 files/s",
        latencies.len() as u64,
        latencies.len() as u64 * 1024,
        producing,
        None,
        Some((c.peak_rss_kib.max(s.peak_rss_kib)) as f64 / 1024.0),
    );
    r.note = format!(
        "p50 {:.1} ms, p99 {:.1} ms (file renamed in -> receiver has it)",
        pct(50.0),
        pct(99.0)
    );
    r
}

/// `median (min–max)` when there was more than one run.
fn with_spread(median: f64, spread: Option<[f64; 2]>) -> String {
    match spread {
        Some([min, max]) if min != max || median != min => {
            format!("{median:.0} ({min:.0}–{max:.0})")
        }
        _ => format!("{median:.0}"),
    }
}

fn print_table(rows: &[Row]) {
    if let Some(r) = rows.first().filter(|r| r.runs > 1) {
        println!("median of {} runs (min–max)", r.runs);
    }
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let mut table = vec![
        [
            "case",
            "files",
            "files/s",
            "MB/s",
            "CPU s/10k",
            "CPU µs/file",
            "peak RSS MiB",
            "of ceiling",
            "note",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        table.push(vec![
            r.case.clone(),
            r.files.to_string(),
            with_spread(r.files_per_second, r.files_per_second_spread),
            format!("{:.1}", r.mb_per_second),
            f(r.cpu_seconds_per_10k_files, 2),
            r.cpu_us_per_file
                .map_or("-".into(), |v| with_spread(v, r.cpu_us_per_file_spread)),
            f(r.peak_rss_mib, 1),
            r.of_ceiling
                .map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
            r.note.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap())
        .collect();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 || c == 8 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: f64, cpu: Option<f64>, note: &str) -> Row {
        Row {
            case: "c".into(),
            files_per_second: rate,
            cpu_us_per_file: cpu,
            note: note.into(),
            runs: 1,
            ..Row::default()
        }
    }

    #[test]
    fn repeated_runs_give_the_median_and_the_spread() {
        let r = summarise(&[
            run(300.0, Some(30.0), "slow"),
            run(100.0, Some(10.0), "fast"),
            run(200.0, Some(20.0), "typical"),
        ]);
        assert_eq!(r.files_per_second, 200.0);
        assert_eq!(r.files_per_second_spread, Some([100.0, 300.0]));
        assert_eq!(r.cpu_us_per_file, Some(20.0));
        assert_eq!(r.cpu_us_per_file_spread, Some([10.0, 30.0]));
        assert_eq!((r.runs, r.note.as_str()), (3, "typical"));
        assert_eq!(
            with_spread(200.0, r.files_per_second_spread),
            "200 (100–300)"
        );
    }

    #[test]
    fn repeated_scenarios_state_the_defaults_median_against_the_best_fixed_median() {
        let case = |who: &str, rate: f64, note: &str| Row {
            case: format!("scenario: s: {who}"),
            ..run(rate, None, note)
        };
        // The best fixed of each run is whichever was lucky in it; the
        // default's median (95) is stated against fixed 16's (100).
        let runs = vec![
            vec![
                case(
                    "default",
                    90.0,
                    "0.90× the best fixed (fixed 16); 1.0% of requests answered 503",
                ),
                case("fixed 16", 100.0, ""),
                case("fixed 64", 95.0, ""),
            ],
            vec![
                case(
                    "default",
                    100.0,
                    "1.25× the best fixed (fixed 64); 2.0% of requests answered 503",
                ),
                case("fixed 16", 70.0, ""),
                case("fixed 64", 80.0, ""),
            ],
            vec![
                case(
                    "default",
                    95.0,
                    "0.79× the best fixed (fixed 16); 3.0% of requests answered 503",
                ),
                case("fixed 16", 120.0, ""),
                case("fixed 64", 90.0, ""),
            ],
        ];
        let mut rows: Vec<Row> = (0..3)
            .map(|at| summarise(&runs.iter().map(|r| r[at].clone()).collect::<Vec<_>>()))
            .collect();
        scenarios::restate(&runs, &mut rows);
        assert_eq!(
            rows[0].note,
            "0.95× the best fixed's median (fixed 16); by run 0.90, 1.25, 0.79; \
             3.0% of requests answered 503"
        );
        assert_eq!(rows[1].note, "");
        // One run: the run's own note stands.
        let mut one = runs[0].clone();
        scenarios::restate(&runs[..1], &mut one);
        assert_eq!(one[0].note, runs[0][0].note);
    }

    #[test]
    fn an_even_count_takes_the_middle_two_and_missing_figures_stay_missing() {
        let r = summarise(&[run(100.0, None, ""), run(200.0, None, "")]);
        assert_eq!(r.files_per_second, 150.0);
        assert_eq!((r.cpu_us_per_file, r.cpu_us_per_file_spread), (None, None));
    }

    #[test]
    fn answer_after_holds_each_answer_until_the_delay_passed() {
        let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), true, 1).unwrap();
        rx.answer_after(Duration::from_millis(100));
        // One connection: three answers one after another.
        let b = blast(rx.addr(), Bytes::from_static(b"body"), 1, 3);
        assert!(b.wall >= Duration::from_millis(300), "{:?}", b.wall);
        assert_eq!(rx.count(), 3);
    }

    #[test]
    fn a_sender_row_is_read_against_the_floors_of_its_run() {
        let named = |case: &str, cpu: f64| Row {
            case: case.into(),
            cpu_us_per_file: Some(cpu),
            ..Row::default()
        };
        let rows = [
            named(CEILING, 10.0),
            named(FILE_FLOOR, 16.0),
            named("file-work floor, two threads", 17.0),
            named(
                "gzip floor (1 KiB payload, level 6, no files, no HTTP)",
                8.0,
            ),
        ];
        let sender = named(SMALL_DEFAULT, 68.0);
        assert_eq!(
            against_floors(&rows, &sender).as_deref(),
            Some("CPU 2.6× HTTP + file-work floors, 2.0× with gzip's")
        );
        assert_eq!(against_floors(&rows[1..], &sender), None, "no ceiling");
    }

    #[test]
    fn one_run_shows_no_spread() {
        let r = summarise(&[run(100.0, Some(5.0), "")]);
        assert_eq!(
            with_spread(r.files_per_second, r.files_per_second_spread),
            "100"
        );
    }
}
