//! `pace-plot`: how the adaptive limit converges, drawn. Runs `--senders`
//! default senders on one spool against the test receiver: in capacity
//! mode (`--capacity` requests at once, `--work` ms each, 503 beyond), and
//! or instead (`--capacity 0`) `--answer-after` ms away with `--faults`
//! (a share answered 503 and a share never answered, whatever the load)
//! and `--resets` (a share of connections reset). With `--kill-every`,
//! one sender in turn is SIGKILLed and started again that often, as the
//! benchmark's chaos row does. Reads their event lines and writes the
//! limit, goodput and attempt latency over time as CSV and as an SVG
//! (hand-written: three panels, a few polylines and ticks, no plotting
//! crate).
//!
//! Run: `cargo run -p spoolpost-tests --bin pace-plot -- --svg docs/pace.svg --csv pace.csv`
//! or, a load balancer with a sick backend 40 ms away:
//! `pace-plot --senders 1 --files 20000 --capacity 0 --answer-after 40 --faults 0.1,0.01 --svg docs/pace-remote.svg`
//! or the chaos row:
//! `pace-plot --senders 4 --files 100000 --capacity 0 --faults 0.1,0 --resets 0.01 --kill-every 700 --csv chaos.csv`

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use spoolpost_protocol::event::{Event, EventKind};
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::{TestSpool, config, eventually, sender, spawn};
use spoolpost_tests::receiver::Receiver;

#[derive(Parser)]
#[command(about = "Plot the adaptive limit and latency of senders against a busy receiver")]
struct Args {
    #[arg(long, default_value_t = 3)]
    senders: usize,
    #[arg(long, default_value_t = 3000)]
    files: usize,
    /// Requests the receiver works on at once; it answers 503 to any beyond
    /// (0: no capacity).
    #[arg(long, default_value_t = 8)]
    capacity: usize,
    /// Milliseconds each request takes in capacity mode.
    #[arg(long, default_value_t = 5)]
    work: u64,
    /// Milliseconds added to every answer, as a receiver that far away.
    #[arg(long, default_value_t = 0)]
    answer_after: u64,
    /// 'P503,PHANG': that share answered 503, that share never answered.
    #[arg(long, value_name = "P503,PHANG")]
    faults: Option<String>,
    /// Reset the connection of this share of requests instead of answering.
    #[arg(long, default_value_t = 0.0)]
    resets: f64,
    /// SIGKILL one sender in turn and start it again every this many ms.
    #[arg(long, value_name = "MS")]
    kill_every: Option<u64>,
    /// 'FROM,UNTIL,MS': from FROM until UNTIL ms after the senders start,
    /// every answer comes MS later (on top of --answer-after), as the
    /// benchmark's "turns 40 ms slower" row: 1000,3000,40.
    #[arg(long, value_name = "FROM,UNTIL,MS")]
    slower: Option<String>,
    /// Pin every sender at this concurrency instead of the adaptive
    /// default: the same run's latencies at a fixed limit, to compare.
    #[arg(long, value_name = "N")]
    fixed: Option<usize>,
    #[arg(long)]
    csv: Option<PathBuf>,
    #[arg(long)]
    svg: Option<PathBuf>,
}

/// One attempt as plotted.
struct Point {
    seconds: f64,
    sender: usize,
    limit: usize,
    latency_ms: f64,
    overloaded: bool,
    delivered: bool,
}

fn main() {
    let args = Args::parse();
    let rx = Receiver::start_on("127.0.0.1:0".parse().unwrap(), true, 2)
        .expect("cannot start the receiver");
    let mut receiver = vec![];
    if args.capacity > 0 {
        rx.capacity(args.capacity, Duration::from_millis(args.work));
        receiver.push(format!(
            "capacity {} ({} ms each)",
            args.capacity, args.work
        ));
    }
    if args.answer_after > 0 {
        rx.answer_after(Duration::from_millis(args.answer_after));
        receiver.push(format!("{} ms away", args.answer_after));
    }
    if let Some(faults) = &args.faults {
        let shares: Vec<f64> = faults
            .split(',')
            .map(|v| v.parse().expect("--faults wants P503,PHANG"))
            .collect();
        let [p503, hang] = shares[..] else {
            panic!("--faults wants P503,PHANG, got {faults:?}");
        };
        rx.faults(p503, hang);
        receiver.push(format!(
            "{:.0}% 503, {:.0}% never answered",
            p503 * 100.0,
            hang * 100.0
        ));
    }
    if args.resets > 0.0 {
        rx.resets(args.resets);
        receiver.push(format!("{:.0}% of connections reset", args.resets * 100.0));
    }
    let spool = TestSpool::new();
    // Hung requests end at a 2 s timeout, so the run's tail is not the
    // default's minutes.
    let pin = match args.fixed {
        Some(n) => format!("concurrency = {n}\nadaptive = false\n"),
        None => String::new(),
    };
    let cfg = config(
        &spool,
        &format!(
            "[sender]\nbackoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\nbreaker_failures = 1000000\n[receivers.busy]\nurl = \"{}\"\ntimeout = \"2s\"\n{pin}[[routes]]\nglob = \"*\"\nreceiver = \"busy\"\n",
            rx.url("/in")
        ),
    );
    for i in 0..args.files {
        spool.put(format!("f-{i}"), b"x");
    }
    let start = || spawn(sender(&spool).arg("--config").arg(&cfg));
    let slower = args.slower.as_deref().map(|v| {
        let ms: Vec<u64> = v
            .split(',')
            .map(|n| n.parse().expect("--slower wants FROM,UNTIL,MS"))
            .collect();
        let [from, until, extra] = ms[..] else {
            panic!("--slower wants FROM,UNTIL,MS, got {v:?}");
        };
        receiver.push(format!(
            "{extra} ms slower from {:.1} s to {:.1} s",
            from as f64 / 1e3,
            until as f64 / 1e3
        ));
        let ms = Duration::from_millis;
        (ms(from), ms(until), ms(args.answer_after + extra))
    });
    let mut daemons: Vec<_> = (0..args.senders).map(|_| start()).collect();
    let started = Instant::now();
    let mut events: Vec<Vec<Event>> = vec![vec![]; args.senders];
    // When the next sender is killed, and how often.
    let mut kills = (args.kill_every)
        .map(Duration::from_millis)
        .map(|every| (started + every, every));
    let mut victim = 0;
    let all = eventually(Duration::from_secs(600), || {
        if let Some((from, until, slow)) = slower {
            let now = started.elapsed();
            let usual = Duration::from_millis(args.answer_after);
            rx.answer_after(if now >= from && now < until {
                slow
            } else {
                usual
            });
        }
        match kills {
            Some((at, every)) => {
                if Instant::now() >= at {
                    let killed = std::mem::replace(&mut daemons[victim], start());
                    killed.signal(nix::sys::signal::Signal::SIGKILL);
                    // Its last line may be cut short by the kill.
                    let finished = killed.wait(Duration::from_secs(10));
                    events[victim].extend(
                        finished
                            .stdout
                            .lines()
                            .filter_map(|l| serde_json::from_str::<Event>(l).ok()),
                    );
                    victim = (victim + 1) % args.senders;
                    kills = Some((at + every, every));
                }
                // A killed sender's requests are answered but its files
                // not moved, so the receiver's count says nothing: done/
                // does.
                spool.count(State::Done) >= args.files
            }
            None => spool.count(State::Incoming) == 0 && rx.count() >= args.files as u64,
        }
    });
    for (n, d) in daemons.into_iter().enumerate() {
        d.signal(nix::sys::signal::Signal::SIGTERM);
        events[n].extend(d.wait(Duration::from_secs(60)).events());
    }
    assert!(
        all,
        "only {} of {} delivered",
        spool.count(State::Done),
        args.files
    );
    let points = points(&events);
    let requests = rx.count() + rx.overloaded() + rx.faulted().0 + rx.reset_count();
    let title = format!(
        "{} senders, {} files, receiver {}: {} of {} requests answered 503",
        args.senders,
        args.files,
        receiver.join(", "),
        rx.overloaded() + rx.faulted().0,
        requests
    );
    eprintln!("{title}");
    if let Some(path) = &args.csv {
        let mut csv = String::from("seconds,sender,limit,latency_ms,overloaded,delivered\n");
        for p in &points {
            let _ = writeln!(
                csv,
                "{:.3},{},{},{:.2},{},{}",
                p.seconds, p.sender, p.limit, p.latency_ms, p.overloaded, p.delivered
            );
        }
        std::fs::write(path, csv).expect("cannot write the CSV");
    }
    if let Some(path) = &args.svg {
        let svg = svg(&points, args.senders, args.capacity, &title);
        std::fs::write(path, svg).expect("cannot write the SVG");
    }
}

/// Every attempt that carries a limit, in time order, with seconds since
/// the first.
fn points(events: &[Vec<Event>]) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    for (sender, events) in events.iter().enumerate() {
        for e in events {
            let (Some(limit), Some(latency_ms)) = (e.limit, e.latency_ms) else {
                continue;
            };
            let Ok(at) = humantime::parse_rfc3339_weak(&e.time) else {
                continue;
            };
            let at = at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            points.push(Point {
                seconds: at,
                sender,
                limit,
                latency_ms,
                overloaded: e.event == EventKind::Retry && e.status == Some(503),
                delivered: e.event == EventKind::Delivered,
            });
        }
    }
    points.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let start = points.first().map_or(0.0, |p| p.seconds);
    points.iter_mut().for_each(|p| p.seconds -= start);
    points
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
];
const W: f64 = 860.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 200.0;

/// A step to label an axis of `span` with about five ticks.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Three panels over one time axis: each sender's limit and their sum
/// (with the receiver's capacity dashed if it has one, 503s as red ticks),
/// files delivered per second, and each attempt's latency.
fn svg(points: &[Point], senders: usize, capacity: usize, title: &str) -> String {
    let t_max = points.last().map_or(1.0, |p| p.seconds).max(0.001);
    let bins = 100;
    let bin_seconds = t_max / bins as f64;
    let mut goodput = vec![0.0; bins];
    for p in points.iter().filter(|p| p.delivered) {
        let b = ((p.seconds / t_max * bins as f64) as usize).min(bins - 1);
        goodput[b] += 1.0 / bin_seconds;
    }
    let goodput_max = goodput.iter().copied().fold(1.0, f64::max) * 1.1;
    let sum_max = if capacity > 0 {
        (capacity * 2) as f64
    } else {
        // The highest sum of the senders' limits, and a margin.
        let mut current = vec![0usize; senders];
        let mut most = 1usize;
        for p in points {
            current[p.sender] = p.limit;
            most = most.max(current.iter().sum());
        }
        most as f64 * 1.1
    };
    let lat_max = {
        let mut l: Vec<f64> = points
            .iter()
            .filter(|p| !p.overloaded)
            .map(|p| p.latency_ms)
            .collect();
        l.sort_by(f64::total_cmp);
        // The 99th percentile: one stray attempt should not flatten the rest.
        l.get(l.len() * 99 / 100).copied().unwrap_or(1.0).max(1.0) * 1.2
    };
    let plot_w = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let top1 = 40.0;
    let top_g = top1 + PANEL + 50.0;
    let top2 = top_g + PANEL + 50.0;
    let h = top2 + PANEL + 50.0;
    let y1 = |v: f64| top1 + PANEL - v.min(sum_max) / sum_max * PANEL;
    let y_g = |v: f64| top_g + PANEL - v.min(goodput_max) / goodput_max * PANEL;
    let y2 = |v: f64| top2 + PANEL - v.min(lat_max) / lat_max * PANEL;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="13">{}</text>"#,
        escape(title)
    );
    // Axes, grid and labels.
    for (top, max, label) in [
        (top1, sum_max, "in-flight limit"),
        (top_g, goodput_max, "files delivered per second"),
        (top2, lat_max, "attempt latency (ms)"),
    ] {
        let step = tick_step(max);
        let mut v = 0.0;
        while v <= max + 1e-9 {
            let y = top + PANEL - v / max * PANEL;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                v
            );
            v += step;
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/><text x="{}" y="{}">{label}</text>"##,
            LEFT + 4.0,
            top - 6.0
        );
        let step = tick_step(t_max);
        let mut t = 0.0;
        while t <= t_max + 1e-9 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x(t),
                top + PANEL + 16.0,
                (t * 100.0).round() / 100.0
            );
            t += step;
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#,
        LEFT + plot_w / 2.0,
        h - 8.0
    );
    // The receiver's capacity.
    if capacity > 0 {
        let c = y1(capacity as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{c:.1}" y2="{c:.1}" stroke="#d62728" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#d62728" text-anchor="end">capacity {capacity}</text>"##,
            W - RIGHT,
            W - RIGHT - 4.0,
            c - 4.0,
        );
    }
    // Goodput per bin of a hundredth of the run.
    let line: String = goodput
        .iter()
        .enumerate()
        .map(|(b, g)| {
            let t = (b as f64 + 0.5) * bin_seconds;
            format!("{:.1},{:.1} ", x(t), y_g(*g))
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" points="{line}"/>"##
    );
    // Each sender's limit, and their sum, as steps: a point where a value
    // changes, at the old value and at the new.
    let mut current = vec![None::<usize>; senders];
    let mut lines = vec![String::new(); senders + 1];
    let step = |line: &mut String, at: f64, old: Option<usize>, new: usize| {
        if old == Some(new) {
            return;
        }
        if let Some(old) = old {
            let _ = write!(line, "{:.1},{:.1} ", x(at), y1(old as f64));
        }
        let _ = write!(line, "{:.1},{:.1} ", x(at), y1(new as f64));
    };
    for p in points {
        let before: Option<usize> = current
            .iter()
            .any(Option::is_some)
            .then(|| current.iter().flatten().sum());
        step(&mut lines[p.sender], p.seconds, current[p.sender], p.limit);
        current[p.sender] = Some(p.limit);
        let sum = current.iter().flatten().sum();
        step(&mut lines[senders], p.seconds, before, sum);
    }
    for (i, value) in current.iter().enumerate() {
        if let Some(v) = value {
            let _ = write!(lines[i], "{:.1},{:.1} ", x(t_max), y1(*v as f64));
        }
    }
    let sum: usize = current.iter().flatten().sum();
    let _ = write!(lines[senders], "{:.1},{:.1} ", x(t_max), y1(sum as f64));
    for (i, line) in lines.iter().enumerate() {
        let (colour, width) = if i == senders {
            ("#222", 2.0)
        } else {
            (COLOURS[i % COLOURS.len()], 1.2)
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{line}"/>"#
        );
    }
    // 503s: short red ticks along the top of the limit panel.
    for p in points.iter().filter(|p| p.overloaded) {
        let _ = writeln!(
            s,
            r##"<line x1="{a:.1}" x2="{a:.1}" y1="{top1}" y2="{}" stroke="#d62728"/>"##,
            top1 + 8.0,
            a = x(p.seconds)
        );
    }
    // Latency of served attempts: median and 90th percentile per bin of a
    // hundredth of the run.
    let mut binned = vec![Vec::new(); bins];
    for p in points.iter().filter(|p| !p.overloaded) {
        let b = ((p.seconds / t_max * bins as f64) as usize).min(bins - 1);
        binned[b].push(p.latency_ms);
    }
    let (mut p50, mut p90) = (String::new(), String::new());
    for (b, l) in binned.iter_mut().enumerate() {
        if l.is_empty() {
            continue;
        }
        l.sort_by(f64::total_cmp);
        let t = (b as f64 + 0.5) / bins as f64 * t_max;
        let _ = write!(p50, "{:.1},{:.1} ", x(t), y2(l[l.len() / 2]));
        let _ = write!(p90, "{:.1},{:.1} ", x(t), y2(l[l.len() * 9 / 10]));
    }
    for (line, colour, dash) in [(p50, "#222", ""), (p90, "#888", "4 3")] {
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}" points="{line}"/>"#
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}">median (solid), 90th percentile (dashed) per 1/100 of the run</text>"##,
        LEFT + 200.0,
        top2 - 6.0
    );
    // Legend.
    let mut lx = LEFT + 200.0;
    for i in 0..=senders {
        let (colour, name) = if i == senders {
            ("#222".to_string(), "sum of limits".to_string())
        } else {
            (
                COLOURS[i % COLOURS.len()].to_string(),
                format!("sender {}", i + 1),
            )
        };
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="3" fill="{colour}"/><text x="{}" y="{}">{name}</text>"#,
            top1 - 10.0,
            lx + 16.0,
            top1 - 6.0
        );
        lx += 110.0;
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" fill="#d62728">| 503</text>"##,
        lx,
        top1 - 6.0
    );
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
