//! What `dist/package` writes, checked as an operator would use it: the
//! checksums, the `.deb` unpacked into a scratch root and the shipped
//! example run end to end from there, the `.rpm`'s file list against the
//! `.deb`'s, and the tarball's `install.sh` into a scratch prefix.
//!
//! The packages take minutes to build, so these tests check a built
//! OUTDIR named by `SPOOLPOST_PACKAGE_DIR`, and are ignored (with that
//! reason shown) unless asked for: `.ci/run` builds the packages and runs
//! them with `--include-ignored`. Asked for without the variable, they fail:
//! none passes without having checked a package.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const LIMIT: Duration = Duration::from_secs(60);
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a package test is ignored by default.
const NEEDS_PACKAGES: &str = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR and --include-ignored (.ci/run does)";

/// The built OUTDIR; a test run without one fails.
fn packages() -> PathBuf {
    match std::env::var_os("SPOOLPOST_PACKAGE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!("SPOOLPOST_PACKAGE_DIR is not set: {NEEDS_PACKAGES}"),
    }
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn one(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{prefix}*{suffix} in {}: {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

fn deb(dir: &Path) -> PathBuf {
    one(dir, &format!("spoolpost_{VERSION}-"), ".deb")
}

fn rpm(dir: &Path) -> PathBuf {
    one(dir, &format!("spoolpost-{VERSION}-"), ".rpm")
}

fn tarball(dir: &Path) -> PathBuf {
    one(dir, &format!("spoolpost-{VERSION}-"), ".tar.gz")
}

fn ok(cmd: &mut Command) -> String {
    let done = run(cmd, LIMIT);
    assert!(
        done.status.success(),
        "{cmd:?}: exit {:?}\n{}{}",
        done.status,
        done.stdout,
        done.stderr
    );
    done.stdout.clone()
}

#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn sha256sums_covers_the_three_artifacts_and_matches() {
    let dir = packages();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let named: BTreeSet<String> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    let wanted: BTreeSet<String> = [deb(&dir), rpm(&dir), tarball(&dir)]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(named, wanted);
    ok(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&dir));
}

/// The target dist/package builds by default: this processor, with musl.
fn static_target() -> String {
    let host = ok(Command::new("rustc").arg("-vV"));
    let host = host.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
    format!("{}-unknown-linux-musl", host.split('-').next().unwrap())
}

/// The tarball is named for the version and the static target.
#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn the_tarball_is_named_for_version_and_target() {
    let dir = packages();
    let target = static_target();
    assert!(
        dir.join(format!("spoolpost-{VERSION}-{target}.tar.gz"))
            .is_file(),
        "no spoolpost-{VERSION}-{target}.tar.gz in {}",
        dir.display()
    );
}

/// The programs in the tarball, the .deb and the .rpm are static: they
/// load no shared library, so they run whatever the host's libc (and
/// however old: docs/platforms.md). The .deb then depends on no libc.
#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn every_packaged_program_is_static() {
    let dir = packages();
    let unpacked = tempfile::tempdir().unwrap();
    let root = unpacked.path();
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(tarball(&dir))
        .arg("-C")
        .arg(root));
    ok(Command::new("dpkg")
        .arg("-x")
        .arg(deb(&dir))
        .arg(root.join("deb")));
    // The .rpm's programs are the tarball's, byte for byte (its digests).
    let dump = ok(Command::new("rpm").args(["-qp", "--dump"]).arg(rpm(&dir)));
    let tar_bin = root.join(format!("spoolpost-{VERSION}-{}/bin", static_target()));
    for program in ["collector", "sender", "reporter"] {
        for file in [
            tar_bin.join(program),
            root.join("deb/usr/bin").join(program),
        ] {
            let done = run(Command::new("ldd").arg(&file), LIMIT);
            let said = format!("{}{}", done.stdout, done.stderr);
            assert!(
                said.contains("not a dynamic executable") || said.contains("statically linked"),
                "{}: ldd says\n{said}",
                file.display()
            );
        }
        // cargo-deb strips its copy once more; the .rpm and the tarball
        // carry the built file as it is.
        let sum = ok(Command::new("sha256sum").arg(tar_bin.join(program)));
        let sum = sum.split_whitespace().next().unwrap();
        let line = dump
            .lines()
            .find(|l| l.starts_with(&format!("/usr/bin/{program} ")))
            .unwrap_or_else(|| panic!("the .rpm has no /usr/bin/{program}:\n{dump}"));
        assert_eq!(
            line.split_whitespace().nth(3),
            Some(sum),
            "the .rpm's {program} is not the tarball's"
        );
    }
    let info = ok(Command::new("dpkg-deb").arg("--info").arg(deb(&dir)));
    assert!(
        !info.contains("libc6"),
        "the .deb depends on libc6:\n{info}"
    );
}

/// `dpkg-deb --info` and the control archive: the maintainer scripts are
/// there, create the user and the spool, and enable nothing.
#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn the_deb_control_and_maintainer_scripts_are_sane() {
    let dir = packages();
    let deb = deb(&dir);
    let info = ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for field in [
        "Package: spoolpost",
        &format!("Version: {VERSION}-"),
        "Architecture: amd64",
        "Maintainer: ",
        "Depends: ",
        "passwd",
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
    ] {
        assert!(
            info.contains(field),
            "dpkg-deb --info lacks {field:?}:\n{info}"
        );
    }
    let control = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(control.path().join("DEBIAN")));
    let control = control.path().join("DEBIAN");
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    for file in ["/etc/spoolpost.toml", "/etc/logrotate.d/spoolpost"] {
        assert!(
            conffiles.lines().any(|l| l == file),
            "{file}: not a conffile"
        );
    }
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        ok(Command::new("sh").arg("-n").arg(&path));
        // Installed, never enabled or started: the only systemctl calls
        // are a daemon-reload, and in prerm a stop.
        let text = std::fs::read_to_string(&path).unwrap();
        for call in text
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("systemctl"))
        {
            assert!(
                call.starts_with("systemctl daemon-reload")
                    || (script == "prerm" && call.starts_with("systemctl stop")),
                "{script}: {call}"
            );
        }
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for needed in [
        "useradd --system",
        "systemd-tmpfiles --create",
        "install -d -m \"$mode\" -o \"$user\" -g \"$group\"",
    ] {
        assert!(postinst.contains(needed), "postinst lacks {needed:?}");
    }
}

/// The files a package ships, as absolute paths (folders left out).
fn deb_files(deb: &Path) -> BTreeSet<String> {
    ok(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let path = l.split_whitespace().nth(5).unwrap();
            path.trim_start_matches('.').to_string()
        })
        .collect()
}

/// The .deb unpacked into a scratch root, and the example it ships run
/// from there: the installed collector takes the application's files, the
/// installed sender delivers them to the test receiver by the example's
/// routes, the installed reporter counts them.
#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn the_deb_unpacked_runs_its_shipped_example_end_to_end() {
    let dir = packages();
    let root = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg")
        .arg("-x")
        .arg(deb(&dir))
        .arg(root.path()));
    let root = root.path();
    for file in deb_files(&deb(&dir)) {
        assert!(root.join(&file[1..]).exists(), "{file} not unpacked");
    }
    let installed = |p: &str| root.join("usr/bin").join(p);

    let receiver = Receiver::start();
    receiver.answer(Reply::ok());
    let spool = TestSpool::new();
    let source = spool.side("app-events");
    let example = std::fs::read_to_string(root.join("etc/spoolpost.toml")).unwrap();
    let adapted = example
        .replace("/var/spool/spoolpost", path_str(&spool.root))
        .replace("/var/lib/app/events", path_str(&source))
        .replace("https://orders.example.com", &receiver.url(""))
        .replace("https://archive.example.com", &receiver.url(""));
    assert!(!adapted.contains("example.com"), "a receiver left unmapped");
    let cfg = config(&spool, &adapted);

    for (name, body) in [
        ("orders-eu-1.json", r#"{"order":1}"#),
        ("orders-us-2.json", r#"{"order":2}"#),
        ("audit-3.json", r#"{"who":"x"}"#),
        ("notes.txt", "not *.json: the example's collector leaves it"),
    ] {
        std::fs::write(source.join(name), body).unwrap();
    }
    let service = |program: &str| {
        let mut cmd = Command::new(installed(program));
        cmd.arg("--config")
            .arg(&cfg)
            .env_remove("SPOOLPOST_SPOOL")
            .env_remove("SPOOLPOST_CONFIG")
            .env("ORDERS_TOKEN", "Bearer from-the-unit");
        cmd
    };
    let collector = spawn(&mut service("collector"));
    let sender = spawn(&mut service("sender"));
    let delivered = eventually(LIMIT, || receiver.count() >= 3);
    collector.signal(nix::sys::signal::Signal::SIGTERM);
    sender.signal(nix::sys::signal::Signal::SIGTERM);
    let collected = collector.wait(LIMIT);
    let sent = sender.wait(LIMIT);
    assert!(
        delivered,
        "receiver got {}\n{}",
        receiver.count(),
        sent.stderr
    );
    collected.assert_success();
    sent.assert_success();

    let mut paths: Vec<(String, Option<String>)> = receiver
        .received()
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.header("authorization").map(str::to_string),
            )
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            ("/store/audit-3.json".to_string(), None),
            (
                "/v1/eu/events".to_string(),
                Some("Bearer from-the-unit".to_string())
            ),
            (
                "/v1/us/events".to_string(),
                Some("Bearer from-the-unit".to_string())
            ),
        ]
    );
    assert!(source.join("notes.txt").exists());

    let report = ok(service("reporter").args(["--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["states"]["done"]["files"], 3, "{report}");
    assert_eq!(report["states"]["error"]["files"], 0, "{report}");
}

/// The .rpm ships what the .deb ships; only the zsh completions go where
/// each family's zsh looks.
#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn the_rpm_ships_the_same_files_as_the_deb() {
    let dir = packages();
    let from_rpm: BTreeSet<String> = ok(Command::new("rpm").arg("-qlp").arg(rpm(&dir)))
        .lines()
        .map(|l| {
            l.replace(
                "/usr/share/zsh/site-functions/",
                "/usr/share/zsh/vendor-completions/",
            )
        })
        .collect();
    let mut from_deb = deb_files(&deb(&dir));
    // Debian's copyright file (cargo-deb writes it from the license
    // field); an rpm carries the license as a header tag instead.
    assert!(from_deb.remove("/usr/share/doc/spoolpost/copyright"));
    assert_eq!(from_rpm, from_deb);
    let scripts = ok(Command::new("rpm")
        .args(["-qp", "--scripts"])
        .arg(rpm(&dir)));
    for part in [
        "postinstall",
        "preuninstall",
        "postuninstall",
        "useradd --system",
    ] {
        assert!(
            scripts.contains(part),
            "rpm scripts lack {part:?}:\n{scripts}"
        );
    }
    let config = ok(Command::new("rpm").args(["-qcp"]).arg(rpm(&dir)));
    assert!(
        config.lines().any(|l| l == "/etc/spoolpost.toml"),
        "{config}"
    );
}

/// The tarball's install.sh into a scratch prefix (DESTDIR), then the
/// installed sender runs from there; a second install keeps the
/// operator's configuration.
#[test]
#[ignore = "needs built packages: dist/package OUTDIR, then SPOOLPOST_PACKAGE_DIR=OUTDIR (.ci/run)"]
fn the_tarball_install_script_installs_under_a_prefix() {
    let dir = packages();
    let unpacked = tempfile::tempdir().unwrap();
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(tarball(&dir))
        .arg("-C")
        .arg(unpacked.path()));
    let top = std::fs::read_dir(unpacked.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for part in [
        "bin/sender",
        "man/man1/sender.1.gz",
        "man/man5/spoolpost.toml.5.gz",
        "doc/configuration.md",
        "completions/bash/sender",
        "dist/systemd",
        "spoolpost.toml",
        "install.sh",
    ] {
        assert!(top.join(part).exists(), "tarball lacks {part}");
    }

    let destdir = tempfile::tempdir().unwrap();
    let install = || {
        ok(Command::new(top.join("install.sh"))
            .args(["--prefix", "/opt/spoolpost"])
            .env("DESTDIR", destdir.path()))
    };
    let said = install();
    let staged = |p: &str| destdir.path().join(p);
    for file in [
        "opt/spoolpost/bin/collector",
        "opt/spoolpost/bin/sender",
        "opt/spoolpost/bin/reporter",
        "opt/spoolpost/share/man/man1/sender.1.gz",
        "opt/spoolpost/share/man/man5/spoolpost.toml.5.gz",
        "opt/spoolpost/share/doc/spoolpost/configuration.md",
        "opt/spoolpost/share/bash-completion/completions/sender",
        "etc/systemd/system/spoolpost-sender@.service",
        "etc/tmpfiles.d/spoolpost.conf",
        "etc/spoolpost.toml",
    ] {
        assert!(staged(file).is_file(), "{file} not installed");
        assert!(
            said.contains(&format!("installed {}", staged(file).display())),
            "install.sh did not say it wrote {file}:\n{said}"
        );
    }
    let unit =
        std::fs::read_to_string(staged("etc/systemd/system/spoolpost-sender@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/spoolpost/bin/sender "),
        "{unit}"
    );
    assert!(!unit.contains("/usr/bin/sender"), "{unit}");

    let sender = staged("opt/spoolpost/bin/sender");
    let version = ok(Command::new(&sender).arg("--version"));
    assert!(version.contains(VERSION), "{version}");
    let spool = TestSpool::new();
    let source = spool.side("app-events");
    let edited = std::fs::read_to_string(staged("etc/spoolpost.toml"))
        .unwrap()
        .replace("/var/spool/spoolpost", path_str(&spool.root))
        .replace("/var/lib/app/events", path_str(&source));
    std::fs::write(staged("etc/spoolpost.toml"), &edited).unwrap();
    ok(Command::new(&sender)
        .arg("--check")
        .arg("--config")
        .arg(staged("etc/spoolpost.toml"))
        .env_remove("SPOOLPOST_SPOOL")
        .env("ORDERS_TOKEN", "Bearer example"));

    let again = install();
    assert_eq!(
        std::fs::read_to_string(staged("etc/spoolpost.toml")).unwrap(),
        edited,
        "a second install replaced the operator's configuration"
    );
    assert!(staged("etc/spoolpost.toml.new").is_file(), "{again}");

    // A prefix with characters sed would take for its own reaches the
    // units as written; --no-system writes nothing under /etc.
    let odd = tempfile::tempdir().unwrap();
    ok(Command::new(top.join("install.sh"))
        .args(["--prefix", "/opt/a&b#c"])
        .env("DESTDIR", odd.path()));
    let unit = std::fs::read_to_string(
        odd.path()
            .join("etc/systemd/system/spoolpost-collector.service"),
    )
    .unwrap();
    assert!(
        unit.contains("ExecStart=/opt/a&b#c/bin/collector "),
        "{unit}"
    );
    let bare = tempfile::tempdir().unwrap();
    ok(Command::new(top.join("install.sh"))
        .args(["--prefix", "/usr/local", "--no-system"])
        .env("DESTDIR", bare.path()));
    assert!(bare.path().join("usr/local/bin/sender").is_file());
    assert!(!bare.path().join("etc").exists());

    let refused = run(
        Command::new(top.join("install.sh")).args(["--prefix", "relative/dir"]),
        LIMIT,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
}
