//! A claim folder left by a dead sender of any implementation, built by hand
//! the way docs/spool.md says one is made: assembled in `tmp/`, its `.lock`
//! held by a real process, renamed into `sending/`, and the process then
//! killed, so only the kernel's release of the flock says it is dead.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use spoolpost_protocol::lock::{self, Kind};
use spoolpost_tests::harness::{command, eventually};

/// A key for hand-made spool names: 24 lowercase hex digits.
pub fn key(n: u32) -> String {
    format!("{:024x}", 0xdead_0000_0000_0000_0000u128 + n as u128)
}

/// Whether some process holds an exclusive lock on `path`: a flock, or
/// an fcntl lock when spoolpost uses those (`SPOOLPOST_LOCK=fcntl`).
pub fn is_locked(path: &Path) -> bool {
    if lock::kind() == Kind::Fcntl {
        // This process holds no lock on it, so a refusal is another's.
        return lock::is_held(path).unwrap_or(false);
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

/// A process holding an exclusive flock on `path` until it is killed. The
/// shell takes the lock on its own descriptor and then becomes `sleep`, so
/// killing that one process frees the lock.
/// With fcntl locks, which util-linux cannot take, a small helper does.
pub fn hold_lock(path: &Path) -> Child {
    let child = if lock::kind() == Kind::Fcntl {
        command("hold-lock")
            .arg(path)
            .spawn()
            .expect("the hold-lock helper")
    } else {
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$0"; flock -x 9; exec sleep 600"#)
            .arg(path)
            .spawn()
            .expect("sh and util-linux flock")
    };
    assert!(
        eventually(Duration::from_secs(10), || is_locked(path)),
        "the helper never took the lock"
    );
    child
}

/// Builds `sending/ID/` holding `files` (spool names and bodies), owned by a
/// live process, as any implementation would. Returns the folder and its
/// owner; kill the owner to make the folder a dead instance's.
pub fn live_claim(root: &Path, id: &str, files: &[(String, Vec<u8>)]) -> (PathBuf, Child) {
    let staging = root.join("tmp").join(format!("claim-{id}"));
    fs::create_dir(&staging).unwrap();
    let lock = staging.join(".lock");
    fs::write(&lock, b"").unwrap();
    let owner = hold_lock(&lock);
    for (name, body) in files {
        fs::write(staging.join(name), body).unwrap();
    }
    let dir = root.join("sending").join(id);
    fs::rename(&staging, &dir).unwrap();
    (dir, owner)
}

/// Kills a lock holder with SIGKILL and reaps it.
pub fn kill(mut owner: Child) {
    owner.kill().unwrap();
    owner.wait().unwrap();
}
