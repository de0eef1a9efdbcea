//! `test-receiver`: the test receiver as a process, for the README demo and
//! the benchmark. Prints `listening on http://ADDR` on stdout, then serves
//! until killed, printing a one-line summary of what it got on SIGTERM/SIGINT.

use std::net::SocketAddr;

use clap::Parser;
use spoolpost_tests::receiver::{Receiver, Reply};

#[derive(Parser)]
#[command(version, about = "An HTTP receiver for trying and measuring spoolpost")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Status for every request not covered by --path.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// 'PREFIX=STATUS': answer STATUS for paths starting with PREFIX (repeatable).
    #[arg(long = "path", value_name = "PREFIX=STATUS")]
    paths: Vec<String>,
    /// Read and discard bodies without decompressing or recording them.
    #[arg(long)]
    fast: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Speak HTTP/2 (prior knowledge, h2c) as well as HTTP/1.1, for a
    /// sender with `http_version = "2"`.
    #[arg(long)]
    http2: bool,
    /// Add this long to every answer, as a receiver that far away would.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    answer_after: Option<std::time::Duration>,
    /// 'K,DURATION': work on at most K requests at once, each for DURATION,
    /// and answer 503 at once to any beyond.
    #[arg(long, value_name = "K,DURATION")]
    capacity: Option<String>,
    /// 'P503,PHANG': answer that share of requests 503 and never answer
    /// that share, whatever the load (a load balancer's bad backend).
    #[arg(long, value_name = "P503,PHANG")]
    faults: Option<String>,
    /// Reset the connection of this share of requests instead of
    /// answering, whatever the load (a backend dying mid-request).
    #[arg(long, value_name = "SHARE")]
    resets: Option<f64>,
}

fn pair<T: std::str::FromStr>(flag: &str, value: &str) -> (T, String) {
    let parsed = value
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.to_string())));
    parsed.unwrap_or_else(|| {
        eprintln!("test-receiver: {flag} wants two values separated by a comma, got {value:?}");
        std::process::exit(2);
    })
}

fn main() {
    let args = Args::parse();
    let receiver = Receiver::start_serving(args.listen, args.fast, args.threads, args.http2)
        .unwrap_or_else(|e| {
            eprintln!("test-receiver: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        });
    receiver.answer(Reply::status(args.status).body("answered by test-receiver"));
    for rule in &args.paths {
        let Some((prefix, status)) = rule.split_once('=') else {
            eprintln!("test-receiver: --path wants PREFIX=STATUS, got {rule:?}");
            std::process::exit(2);
        };
        let status: u16 = status.parse().unwrap_or_else(|_| {
            eprintln!("test-receiver: bad status in {rule:?}");
            std::process::exit(2);
        });
        receiver.answer_path(
            prefix,
            Reply::status(status).body(&format!("test-receiver answers {status} for {prefix}")),
        );
    }
    if let Some(after) = args.answer_after {
        receiver.answer_after(after);
    }
    if let Some(value) = &args.capacity {
        let (k, work) = pair::<usize>("--capacity", value);
        let work = humantime::parse_duration(&work).unwrap_or_else(|e| {
            eprintln!("test-receiver: --capacity {value:?}: {e}");
            std::process::exit(2);
        });
        receiver.capacity(k, work);
    }
    if let Some(value) = &args.faults {
        let (p503, hang) = pair::<f64>("--faults", value);
        let hang: f64 = hang.parse().unwrap_or_else(|_| {
            eprintln!("test-receiver: --faults {value:?}: not a share");
            std::process::exit(2);
        });
        receiver.faults(p503, hang);
    }
    if let Some(share) = args.resets {
        if !(0.0..=1.0).contains(&share) {
            eprintln!("test-receiver: --resets wants a share from 0 to 1, got {share}");
            std::process::exit(2);
        }
        receiver.resets(share);
    }
    println!("listening on {}", receiver.url(""));
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.thread_block().unwrap();
    let _ = signals.wait();
    eprintln!(
        "test-receiver: {} requests, {} body bytes on the wire, {} turned away at capacity, {:?} (503, hung) by faults, {} reset",
        receiver.count(),
        receiver.wire_bytes(),
        receiver.overloaded(),
        receiver.faulted(),
        receiver.reset_count()
    );
}
