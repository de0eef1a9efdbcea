//! The sender's wings, held to their rule by reading the source: `rules/`
//! imports nothing from the other two and does no I/O, `net/` imports only
//! from `rules/` (see the README's development section).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/WING`, with its text.
fn sources(wing: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(wing);
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path, text));
            }
        }
    }
    assert!(!files.is_empty(), "no sources in {wing}/");
    files
}

/// The lines of code (not comments) before the file's tests.
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.starts_with("//"))
}

/// The top-level module of each `crate::` path on a line.
fn wings_named(line: &str) -> Vec<&str> {
    line.split("crate::")
        .skip(1)
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

fn imports_only(wing: &str, allowed: &[&str]) {
    for (path, text) in sources(wing) {
        for (n, line) in code(&text) {
            for named in wings_named(line) {
                assert!(
                    allowed.contains(&named),
                    "{}:{n}: {wing}/ may import only from {allowed:?}: {line}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn rules_import_nothing_from_net_or_sched() {
    imports_only("rules", &["rules"]);
}

#[test]
fn net_imports_only_from_rules() {
    imports_only("net", &["rules", "net"]);
}

#[test]
fn rules_do_no_io_and_never_wait() {
    for (path, text) in sources("rules") {
        for (n, line) in code(&text) {
            for io in ["tokio", "reqwest", "std::fs", "std::net", "hyper"] {
                assert!(
                    !line.contains(io),
                    "{}:{n}: rules/ is pure, without {io}: {line}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn the_check_sees_a_path_into_another_wing() {
    assert_eq!(
        wings_named("use crate::sched::clock::now; let x = crate::net::send::Sent;"),
        ["sched", "net"]
    );
    assert!(wings_named("use std::time::Duration;").is_empty());
}
