//! What `--check` validates beyond what start-up does, and how it reports:
//! every problem found (not only the first), one line each with the file
//! and line where there is one, then exit 78 (configuration), 74 (spool)
//! or 75 (a receiver `--probe` could not reach: it may come back), or a
//! short summary and 0.
//!
//! The rules themselves keep their homes: the configuration's shape and
//! sense are `config`/`config_check`, routes and URL templates are `route`,
//! a source inside the spool is the collector's. This module adds the
//! checks that start-up leaves to the first use (header secrets, the
//! spool's permissions and filesystem) and the report that collects them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{AccessFlags, access};

use crate::config::Loaded;
use crate::exit::{CONFIG, Failure, IO_ERROR, TEMPORARY};
use spoolpost_protocol::spool::State;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Config,
    Spool,
    /// A receiver that `--probe` could not reach: may clear by itself.
    Receiver,
}

/// The problems found so far and what was checked.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<(Kind, String)>,
    pub checked: Vec<String>,
    /// Not problems, but said every time (`insecure_skip_verify`).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn config(&mut self, problem: impl std::fmt::Display) {
        self.problems.push((Kind::Config, problem.to_string()));
    }

    pub fn receiver(&mut self, problem: impl std::fmt::Display) {
        self.problems.push((Kind::Receiver, problem.to_string()));
    }

    pub fn spool(&mut self, problem: impl std::fmt::Display) {
        self.problems.push((Kind::Spool, problem.to_string()));
    }

    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// Notes something that passed, for the summary.
    pub fn passed(&mut self, what: impl Into<String>) {
        self.checked.push(what.into());
    }

    /// The exit code the problems call for: configuration first, since a
    /// spool path may come from a broken file.
    pub fn code(&self) -> Option<u8> {
        let has = |k| self.problems.iter().any(|(kind, _)| *kind == k);
        if has(Kind::Config) {
            Some(CONFIG)
        } else if has(Kind::Spool) {
            Some(IO_ERROR)
        } else if has(Kind::Receiver) {
            Some(TEMPORARY)
        } else {
            None
        }
    }

    /// Prints one line per problem on stderr, or the summary on stdout.
    pub fn finish(self, program: &str) -> Result<(), Failure> {
        for warning in &self.warnings {
            eprintln!("{program}: warning: {warning}");
        }
        for (_, problem) in &self.problems {
            eprintln!("{program}: {problem}");
        }
        match self.code() {
            Some(code) => Err(Failure {
                code,
                message: format!("--check found {} problem(s)", self.problems.len()),
            }),
            None => {
                println!("{program}: ok: {}", self.checked.join("; "));
                Ok(())
            }
        }
    }
}

/// Reads the configuration file for any program's `--check`, reporting
/// every problem of every section (`[sender]`, `[receivers]`, `[[routes]]`,
/// `[collector]`, `[reporter]`), not only those of the program checking:
/// one file serves all three, and a mistake in any part of it stops one
/// of them. `None` when the file cannot be read or parsed at all.
pub fn config(path: &Path, report: &mut Report) -> Option<Loaded> {
    match crate::config_load::load_all(path) {
        Ok((loaded, problems)) => {
            if problems.is_empty() {
                report.passed("configuration parses and every section checks");
            }
            problems.into_iter().for_each(|e| report.config(e));
            Some(loaded)
        }
        Err(problems) => {
            problems.into_iter().for_each(|e| report.config(e));
            None
        }
    }
}

/// Resolves every header secret, client certificate and proxy secret,
/// reporting each that does not resolve, and warns of every receiver whose
/// certificate is not verified.
pub fn secrets(loaded: &Loaded, report: &mut Report) {
    let mut n = 0;
    for (name, receiver) in &loaded.config.receivers {
        let r = receiver.get_ref();
        if r.insecure_skip_verify {
            report.warn(insecure_warning(name));
        }
        if r.client_cert.is_some() {
            match crate::config_check::client_identity(r) {
                Ok(()) => {
                    report.passed(format!("receiver {name}: client certificate and key match"))
                }
                Err((key, e)) => report.config(
                    loaded.error_at_key(&["receivers", name, key], format!("receiver {name}: {e}")),
                ),
            }
        }
        if let Some(proxy) = &r.proxy
            && let Err(e) = crate::config_check::proxy(proxy)
        {
            report.config(loaded.error_at_key(
                &["receivers", name, "proxy"],
                format!("receiver {name}: {e}"),
            ));
        }
        for (header, value) in &r.headers {
            n += 1;
            if let Err(e) = value.resolve_header() {
                report.config(loaded.error_at_key(
                    &["receivers", name, "headers", header],
                    format!("receiver {name}: header {header}: {e}"),
                ));
            }
        }
    }
    if n > 0 {
        report.passed(format!("{n} header value(s) resolve"));
    }
}

/// What is said of a receiver with `insecure_skip_verify = true` at every
/// start, reload and `--check`.
pub fn insecure_warning(receiver: &str) -> String {
    format!(
        "receiver {receiver}: insecure_skip_verify = true: its certificate is not verified, so anyone on the path can read and change what is sent"
    )
}

/// The folders a spool has (`names/` and `hold/` appear on first use).
fn folders() -> impl Iterator<Item = &'static str> {
    State::ALL
        .iter()
        .map(|s| s.dir_name())
        .chain(["tmp", "hold", "names"])
}

/// The spool exists or can be created, this user may write in it and its
/// folders, and they are all on one filesystem (renames between them must
/// be atomic). Checks without creating anything.
pub fn spool(root: &Path, create: bool, report: &mut Report) {
    let writable = |p: &Path| access(p, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
    let root_meta = match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return report.spool(format!("spool {} is not a folder", root.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = root
                .ancestors()
                .skip(1)
                .find(|p| p.as_os_str().is_empty() || p.exists())
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    }
                });
            match parent {
                // Start-up would refuse it, so --check does.
                _ if !create => report.spool(format!(
                    "no spool at {}: it does not exist (mistyped? --create-spool or \
                     `create_spool = true` in the config makes a new one)",
                    root.display()
                )),
                Some(p) if writable(p) => report.passed(format!(
                    "spool {} will be created in {}",
                    root.display(),
                    p.display()
                )),
                Some(p) => report.spool(format!(
                    "spool {} does not exist and this user cannot create it in {}",
                    root.display(),
                    p.display()
                )),
                None => report.spool(format!("spool {} cannot be created", root.display())),
            }
            return;
        }
        Err(e) => return report.spool(format!("spool {}: {e}", root.display())),
    };
    let mut ok = true;
    if !writable(root) {
        ok = false;
        report.spool(format!(
            "spool {} is not writable by this user (uid {})",
            root.display(),
            euid()
        ));
    }
    for name in folders() {
        let dir = root.join(name);
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            ok = false;
            report.spool(format!("{} is not a folder", dir.display()));
        } else if meta.dev() != root_meta.dev() {
            ok = false;
            report.spool(format!(
                "{} is on another filesystem than the spool root: renames into it cannot be atomic",
                dir.display()
            ));
        } else if !writable(&dir) {
            ok = false;
            report.spool(format!(
                "{} is not writable by this user (uid {})",
                dir.display(),
                euid()
            ));
        }
    }
    if ok {
        report.passed(format!(
            "spool {} is writable and on one filesystem",
            root.display()
        ));
    }
}

/// For readers (the reporter): the spool exists, creating nothing, and
/// this user may list every folder it has.
pub fn spool_readable(root: &Path, report: &mut Report) {
    if let Err(e) = spoolpost_protocol::spool::Spool::existing(root) {
        return report.spool(e);
    }
    let mut ok = true;
    for dir in std::iter::once(root.to_path_buf()).chain(folders().map(|n| root.join(n))) {
        if dir.is_dir() && access(&dir, AccessFlags::R_OK | AccessFlags::X_OK).is_err() {
            ok = false;
            report.spool(format!(
                "{} is not readable by this user (uid {})",
                dir.display(),
                euid()
            ));
        }
    }
    if ok {
        report.passed(format!("spool {} is readable", root.display()));
    }
}

/// This process's effective user, for messages (`/proc/self` belongs to it).
fn euid() -> String {
    std::fs::metadata("/proc/self").map_or_else(|_| "?".into(), |m| m.uid().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_problems_outrank_spool_problems() {
        let mut r = Report::default();
        assert_eq!(r.code(), None);
        r.spool("x");
        assert_eq!(r.code(), Some(IO_ERROR));
        r.config("y");
        assert_eq!(r.code(), Some(CONFIG));
    }

    #[test]
    fn a_spool_on_one_filesystem_passes_and_a_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let mut r = Report::default();
        spool(&root, true, &mut r);
        assert_eq!(r.code(), None, "{r:?}");
        spoolpost_protocol::spool::Spool::open(&root).unwrap();
        spool(&root, true, &mut r);
        assert_eq!(r.code(), None, "{r:?}");
        std::fs::remove_dir(root.join("done")).unwrap();
        std::fs::write(root.join("done"), "").unwrap();
        spool(&root, true, &mut r);
        assert_eq!(r.code(), Some(IO_ERROR), "{r:?}");
    }
}
