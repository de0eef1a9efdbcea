//! `gzip-levels`: the CPU and the ratio of gzip at each level 1 to 9 on
//! event data of 1 KiB, 64 KiB and 1 MiB, the figures behind the default
//! `gzip_level` (docs/configuration.md, "Compression").
//!
//! The data is JSON event lines as `spoolpost_tests::payload::varied_json` makes them
//! (random identifiers, amounts and timestamps, a few words from a small
//! set), which compress about 3:1 as event data does; repeated text would
//! compress 10:1 and flatter every level. Each body is compressed as the
//! sender compresses one, with one `flate2` compressor (zlib-rs) reset
//! between bodies, and the time is this process's user + system CPU from
//! `getrusage`, not the wall clock, so a busy machine moves it little.
//!
//! Run: `cargo run --release -p spoolpost-tests --bin gzip-levels [-- --mib 64]`

use clap::Parser;
use flate2::{Compress, Compression, FlushCompress, Status};
use nix::sys::resource::{UsageWho, getrusage};

#[derive(Parser)]
#[command(about = "gzip's CPU and ratio at levels 1 to 9 on event data (see docs/performance.md)")]
struct Args {
    /// MiB of input compressed per size and level (more is steadier).
    #[arg(long, default_value_t = 32)]
    mib: usize,
    /// Repeat each measurement N times and print the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// JSON event lines as the benchmark makes them
/// ([`spoolpost_tests::payload::varied_json`]), `size` bytes in all.
fn events(size: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 256);
    let mut i = 0u64;
    while out.len() < size {
        out.extend_from_slice(&spoolpost_tests::payload::varied_json(i, rng));
        i += 1;
    }
    out.truncate(size);
    out
}

fn gzip(c: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> usize {
    c.reset();
    out.clear();
    loop {
        let consumed = c.total_in() as usize;
        match c.compress_vec(&data[consumed..], out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return out.len(),
            Ok(_) => out.reserve(out.capacity().max(64)),
            Err(e) => panic!("gzip failed: {e}"),
        }
    }
}

fn cpu() -> std::time::Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |v: nix::sys::time::TimeVal| {
        std::time::Duration::new(v.tv_sec() as u64, v.tv_usec() as u32 * 1000)
    };
    t(usage.user_time()) + t(usage.system_time())
}

fn main() {
    let args = Args::parse();
    let mut rng = fastrand::Rng::with_seed(33);
    println!("| size | level | bytes out | ratio | µs CPU per body | MiB/s of CPU |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in [1024, 64 * 1024, 1024 * 1024] {
        // Distinct bodies, so no level profits from one body's cache.
        let bodies: Vec<Vec<u8>> = (0..16).map(|_| events(size, &mut rng)).collect();
        let count = (args.mib * 1024 * 1024 / size).max(16);
        for level in 1..=9 {
            let mut c = Compress::new_gzip(Compression::new(level), 15);
            let mut out = Vec::with_capacity(size + 1024);
            let bytes_out: usize = bodies.iter().map(|b| gzip(&mut c, b, &mut out)).sum();
            let mut per_body: Vec<f64> = (0..args.repeat)
                .map(|_| {
                    let start = cpu();
                    for i in 0..count {
                        std::hint::black_box(gzip(&mut c, &bodies[i % bodies.len()], &mut out));
                    }
                    (cpu() - start).as_secs_f64() * 1e6 / count as f64
                })
                .collect();
            per_body.sort_by(f64::total_cmp);
            let us = per_body[per_body.len() / 2];
            let out_per_body = bytes_out as f64 / bodies.len() as f64;
            println!(
                "| {} | {level} | {:.0} | {:.2} | {us:.1} | {:.0} |",
                match size {
                    1024 => "1 KiB".to_string(),
                    s if s < 1024 * 1024 => format!("{} KiB", s / 1024),
                    s => format!("{} MiB", s / 1024 / 1024),
                },
                out_per_body,
                size as f64 / out_per_body,
                size as f64 / us / 1.048576,
            );
        }
    }
}
