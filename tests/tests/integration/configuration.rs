//! The one configuration file the three programs share: every program's
//! `--check` lists the problems of every section of it.

use std::time::Duration;

use spoolpost_tests::harness::{TestSpool, config, path_str, run};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn every_program_s_check_lists_the_problems_of_every_section() {
    let spool = TestSpool::new();
    let source = spool.side("in");
    let cfg = config(
        &spool,
        &format!(
            "spool = {:?}\n\
             [sender]\nconcurrency = 0\n\
             [receivers.a]\nurl = \"http://127.0.0.1:9/\"\ntimeout = \"0s\"\n\
             [[routes]]\nglob = \"*\"\nreceiver = \"a\"\n\
             [collector]\nrescan_interval = \"0s\"\n\
             [[collector.sources]]\npath = {:?}\n",
            path_str(&spool.root),
            path_str(&source)
        ),
    );
    for program in ["sender", "collector", "reporter"] {
        let mut cmd = spoolpost_tests::harness::command(program);
        let out = run(cmd.arg("--config").arg(&cfg).arg("--check"), LIMIT);
        assert_eq!(out.status.code(), Some(78), "{program}: {}", out.stderr);
        // [sender], [receivers.a] and [collector], whichever program checks.
        for line in [3, 6, 11] {
            assert!(
                out.stderr.contains(&format!("spoolpost.toml:{line}: ")),
                "{program} does not report line {line}:\n{}",
                out.stderr
            );
        }
    }
}
