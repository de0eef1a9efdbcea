//! The protocol crate stays something a third party can depend on: it never
//! depends on the operations crate, nor on an async runtime, a command-line
//! parser, TLS or a terminal UI, directly or through another crate. Checked
//! on the resolved dependency tree (`cargo tree`) and on the source.

use std::path::Path;
use std::process::Command;

/// Crates the protocol must not pull in, by package name.
const KEPT_OUT: &[&str] = &[
    "spoolpost-ops",
    "tokio",
    "clap",
    "rustls",
    "indicatif",
    "reqwest",
    "hyper",
];

fn kept_out(name: &str) -> bool {
    KEPT_OUT.contains(&name)
}

// The host's tree, not `--target all`: offline, cargo has only the packages
// this machine builds with, and none of the kept-out crates is
// platform-specific.
#[test]
fn the_protocol_depends_on_no_runtime_cli_tls_or_operations_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--package",
            env!("CARGO_PKG_NAME"),
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        packages.contains(&env!("CARGO_PKG_NAME")),
        "the tree lists the crate itself: {tree}"
    );
    let found: Vec<&&str> = packages.iter().filter(|p| kept_out(p)).collect();
    assert!(found.is_empty(), "the protocol crate depends on {found:?}");
}

#[test]
fn the_protocol_source_names_no_operations_or_runtime_crate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "layout_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for name in KEPT_OUT {
                let as_path = format!("{}::", name.replace('-', "_"));
                assert!(
                    !code.contains(&as_path),
                    "{}:{}: the protocol crate uses {name}: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked > 10,
        "only {checked} files read in {}",
        dir.display()
    );
}
