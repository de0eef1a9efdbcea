//! The integration-test harness: a temporary spool, the real binaries built
//! once per test run, and helpers to run them, wait for them and measure
//! their peak memory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::config_file::ConfigFile;
pub use crate::notify::{NotifySocket, spawn_ready};
use spoolpost_protocol::event::Event;
use spoolpost_protocol::spool::{State, is_reason_name};

/// The path of a workspace binary, built (once per test process) with the
/// same profile as the tests; or, with `SPOOLPOST_BIN_DIR` set, the one in
/// that folder, not built (to run the tests or the benchmark against
/// another build, such as the static one: docs/platforms.md).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    // The S3 server is left out: the cross-built runs (.ci/platforms) build
    // the binaries for another system, and never start it.
    let dir = BUILT.get_or_init(|| {
        build(
            &["--workspace", "--exclude", "spoolpost-test-s3"],
            "SPOOLPOST_BIN_DIR",
        )
    });
    dir.join(name)
}

/// `test-s3`, the S3-compatible server (tests/s3-server), built for this
/// machine when a test first asks for it; or the one in
/// `SPOOLPOST_S3_BIN_DIR`, not built.
pub fn s3_server_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| build(&["-p", "spoolpost-test-s3"], "SPOOLPOST_S3_BIN_DIR"));
    dir.join("test-s3")
}

/// Builds `packages`' binaries with the tests' profile and returns their
/// folder, or the folder `env` names without building.
fn build(packages: &[&str], env: &str) -> PathBuf {
    {
        if let Some(dir) = std::env::var_os(env) {
            return PathBuf::from(dir);
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build").args(packages).args(["--bins", "--quiet"]);
        // cargo sets these for the test process. Build scripts that watch
        // them (ring's watches CARGO_MANIFEST_DIR) would see a change and
        // rebuild half the tree here, and again in the next plain build.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&name.as_ref())
            {
                cmd.env_remove(name.as_ref());
            }
        }
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("cannot run cargo to build the binaries");
        assert!(status.success(), "building the binaries failed");
        // Tests run from target/<profile>/deps/, binaries such as the
        // benchmark from target/<profile>/.
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap();
        if dir.ends_with("deps") {
            dir.parent().unwrap()
        } else {
            dir
        }
        .to_path_buf()
    }
}

/// A spool in a temporary folder, removed when dropped.
pub struct TestSpool {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Default for TestSpool {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSpool {
    pub fn new() -> TestSpool {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        spoolpost_protocol::spool::Spool::open(&root).unwrap();
        TestSpool { _dir: dir, root }
    }

    pub fn dir(&self, state: State) -> PathBuf {
        self.root.join(state.dir_name())
    }

    /// A folder beside the spool, for config files, sources and the like.
    pub fn side(&self, name: &str) -> PathBuf {
        let p = self.root.parent().unwrap().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Puts a complete file into `incoming/` the way the protocol says:
    /// written under `tmp/`, then renamed in.
    pub fn put(&self, name: impl AsRef<OsStr>, body: &[u8]) {
        let tmp = self.root.join("tmp").join(".put");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, self.dir(State::Incoming).join(name.as_ref())).unwrap();
    }

    /// Names of the data files in a state (for `sending/`: in every claim
    /// folder; for `error/`: without the reason records).
    pub fn names(&self, state: State) -> Vec<Vec<u8>> {
        let mut names = Vec::new();
        let dir = self.dir(state);
        let dirs: Vec<PathBuf> = if state == State::Sending {
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        } else {
            vec![dir]
        };
        for d in dirs {
            for e in std::fs::read_dir(&d).unwrap() {
                let name = e.unwrap().file_name();
                if name.as_bytes().starts_with(b".")
                    || (state == State::Error && is_reason_name(&name))
                {
                    continue;
                }
                names.push(name.as_bytes().to_vec());
            }
        }
        names.sort();
        names
    }

    pub fn count(&self, state: State) -> usize {
        self.names(state).len()
    }

    /// Counts per state, for assertions that say where everything is.
    pub fn census(&self) -> BTreeMap<&'static str, usize> {
        State::ALL
            .iter()
            .map(|s| (s.dir_name(), self.count(*s)))
            .collect()
    }

    /// Claim folders left in `sending/`.
    pub fn claim_folders(&self) -> usize {
        std::fs::read_dir(self.dir(State::Sending)).unwrap().count()
    }

    /// The one file in `state` whose original name is `original`.
    pub fn find(&self, state: State, original: &str) -> PathBuf {
        let found: Vec<_> = self
            .names(state)
            .into_iter()
            .filter(|n| n.starts_with(original.as_bytes()))
            .collect();
        assert_eq!(found.len(), 1, "{original} in {state:?}: {found:?}");
        self.dir(state).join(OsStr::from_bytes(&found[0]))
    }
}

/// A running binary with its output captured.
pub struct Running {
    pub child: Child,
    peak_rss_kib: u64,
}

/// What a finished binary left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub peak_rss_kib: u64,
}

impl Finished {
    pub fn events(&self) -> Vec<Event> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}"))
            })
            .collect()
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Finished {
        assert!(
            self.status.success(),
            "exit {:?}\nstderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// A command running the workspace binary `name`, through the runner
/// prefix in `SPOOLPOST_TEST_RUNNER` if that is set (words split at
/// whitespace), as cargo runs the test binary itself through a target's
/// `runner`: e.g. `qemu-ppc64-static -L /usr/powerpc64-linux-gnu` to run a
/// big-endian POWER build under emulation (docs/platforms.md).
pub fn command(name: &str) -> Command {
    let runner = std::env::var("SPOOLPOST_TEST_RUNNER").unwrap_or_default();
    with_runner(&runner, bin(name))
}

fn with_runner(runner: &str, program: PathBuf) -> Command {
    let mut words = runner.split_whitespace();
    match words.next() {
        None => Command::new(program),
        Some(first) => {
            let mut cmd = Command::new(first);
            cmd.args(words).arg(program);
            cmd
        }
    }
}

/// Starts a command with stdout and stderr captured to files (pipes could
/// fill up and block a long run).
pub fn spawn(cmd: &mut Command) -> Running {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .env_remove("SPOOLPOST_LOG")
        .spawn()
        .expect("cannot start binary");
    OUTPUTS.with(|o| o.borrow_mut().insert(child.id(), (out, err)));
    Running {
        child,
        peak_rss_kib: 0,
    }
}

thread_local! {
    static OUTPUTS: std::cell::RefCell<std::collections::HashMap<u32, (std::fs::File, std::fs::File)>> = Default::default();
}

impl Running {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    /// What the process has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.output_so_far(|(_, err)| err)
    }

    /// What the process has written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.output_so_far(|(out, _)| out)
    }

    fn output_so_far(
        &self,
        which: impl Fn(&(std::fs::File, std::fs::File)) -> &std::fs::File,
    ) -> String {
        use std::os::unix::fs::FileExt;
        OUTPUTS.with(|o| {
            let outputs = o.borrow();
            let Some(files) = outputs.get(&self.child.id()) else {
                return String::new();
            };
            let file = which(files);
            let mut text = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = file.read_at(&mut buf, text.len() as u64) {
                text.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    }

    fn sample_rss(&mut self) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())) {
            for line in status.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    self.peak_rss_kib = self.peak_rss_kib.max(kib);
                }
            }
        }
    }

    /// Waits for exit, sampling peak RSS; kills and panics after `limit`.
    pub fn wait(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            self.sample_rss();
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (_, err) = self.take_output();
                panic!("binary did not finish within {limit:?}; stderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = self.take_output();
        Finished {
            status,
            stdout,
            stderr,
            peak_rss_kib: self.peak_rss_kib,
        }
    }

    fn take_output(&self) -> (String, String) {
        use std::io::{Read, Seek};
        let files = OUTPUTS.with(|o| o.borrow_mut().remove(&self.child.id()));
        let Some((mut out, mut err)) = files else {
            return Default::default();
        };
        let read = |f: &mut std::fs::File| {
            let mut s = String::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_string(&mut s).unwrap();
            s
        };
        (read(&mut out), read(&mut err))
    }
}

/// The proxy variables the sender honours: removed from every sender the
/// tests start, so a developer's own proxy never carries loopback tests.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// `sender` with `--spool` set, quiet logs and no proxy variables.
pub fn sender(spool: &TestSpool) -> Command {
    let mut cmd = command("sender");
    cmd.arg("--spool").arg(&spool.root);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// `collector` with `--spool` set.
pub fn collector(spool: &TestSpool) -> Command {
    let mut cmd = command("collector");
    cmd.arg("--spool").arg(&spool.root);
    cmd
}

/// `reporter` with `--spool` set.
pub fn reporter(spool: &TestSpool) -> Command {
    let mut cmd = command("reporter");
    cmd.arg("--spool").arg(&spool.root);
    cmd
}

/// Runs a command to completion within `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Finished {
    spawn(cmd).wait(limit)
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The reason record beside a file in `error/` (or waiting with a reason).
pub fn reason_of(data: &Path) -> spoolpost_protocol::reason::ReasonRecord {
    let mut name = data.file_name().unwrap().to_os_string();
    name.push(".reason.json");
    let text = std::fs::read(data.with_file_name(name)).expect("reason record beside the file");
    serde_json::from_slice(&text).unwrap()
}

/// Writes a config file beside the spool and returns its path.
pub fn config(spool: &TestSpool, text: &str) -> PathBuf {
    let path = spool.side("etc").join("spoolpost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Undoes the sender's percent-encoding of `X-Filename`.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_prefix_goes_before_the_program_and_its_arguments() {
        let plain = with_runner("  ", PathBuf::from("/t/sender"));
        assert_eq!(plain.get_program(), "/t/sender");
        assert_eq!(plain.get_args().count(), 0);
        let mut emulated = with_runner(
            "qemu-ppc64-static -L /usr/powerpc64-linux-gnu",
            PathBuf::from("/t/sender"),
        );
        emulated.arg("--once");
        assert_eq!(emulated.get_program(), "qemu-ppc64-static");
        let args: Vec<_> = emulated.get_args().collect();
        assert_eq!(
            args,
            ["-L", "/usr/powerpc64-linux-gnu", "/t/sender", "--once"]
        );
    }
}
