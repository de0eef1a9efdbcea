//! What the fault tests need from the system: running a binary as an
//! unprivileged user, and small tmpfs mounts that fill up.
//!
//! CI runs as root, so these tests mount and drop privileges themselves
//! (`mount`, `setpriv` from util-linux; `.ci/run` makes sure they are
//! there). Not as root, they fail with a message saying what they need,
//! unless `SPOOLPOST_TEST_TMPFS` names a prepared small tmpfs to use
//! instead: a skipped fault test would hide the fault it is there for.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Panics with what the test needs unless it runs as root.
#[track_caller]
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test must run as root ({why}); CI does: run it with sudo or as root"
    );
}

/// `cmd`, run as `nobody` through `setpriv` (so a spool's permissions
/// apply even where the tests run as root).
pub fn as_nobody(cmd: &Command) -> Command {
    require_root("it drops to nobody with setpriv");
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(reachable_copy(Path::new(cmd.get_program())))
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

/// A copy of a binary that `nobody` can run: the build folder may sit
/// under a home folder others cannot enter.
///
/// The copies live in one fixed folder, named after the build they copy
/// (its inode and modification time), so every test process of a run and
/// every later run of the same build share one copy; a copy of an older
/// build is removed when a newer one is made (a folder per process that
/// nothing removed filled /tmp with 142 MB per test binary and run).
fn reachable_copy(program: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join("spoolpost-tests-as-nobody");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    open_path_to_others(&dir);
    let name = program.file_name().unwrap().to_string_lossy().into_owned();
    let meta = std::fs::metadata(program).unwrap();
    let copy = dir.join(format!("{name}-{}-{}", meta.ino(), meta.mtime()));
    if copy.exists() {
        return copy;
    }
    // A unique part name: other test processes may copy at the same time.
    // cp writes it, not this process: a descriptor open for writing here
    // would be inherited by any child another test thread forks meanwhile,
    // and exec of the copy fails with ETXTBSY while that child lives.
    let part = dir.join(format!(".{name}.{}.part", std::process::id()));
    let copied = Command::new("cp").arg(program).arg(&part).status().unwrap();
    assert!(
        copied.success(),
        "cp {} {}",
        program.display(),
        part.display()
    );
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&part, &copy).unwrap();
    remove_older_copies(&dir, &name, &copy);
    copy
}

/// Removes copies of `name` other than `keep` that are over an hour old
/// (a younger one may be another build's, in use by a parallel run).
fn remove_older_copies(dir: &Path, name: &str, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{name}-");
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600));
        let ours = entry.file_name().to_string_lossy().starts_with(&prefix);
        if ours && old && path != keep {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Lets others into `path` and every folder above it (the temporary
/// folders tests make are 0700), so `nobody` can reach a spool.
pub fn open_path_to_others(path: &Path) {
    for dir in path.ancestors() {
        if dir == Path::new("/") || dir.as_os_str().is_empty() {
            break;
        }
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o005 != 0o005 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o005)).unwrap();
        }
    }
}

/// `chmod -R a-w`.
pub fn remove_write_permission(root: &Path) {
    let status = Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A mounted filesystem, unmounted (lazily, so a process still in it does
/// not keep it) when dropped.
pub struct Mount {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
    mounted: bool,
    _prepared: Option<MutexGuard<'static, ()>>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Tests in one binary share the prepared tmpfs one at a time.
static PREPARED: Mutex<()> = Mutex::new(());

/// A tmpfs of `size` (as for mount: `1m`) and `inodes` inodes. As root it
/// is mounted here; otherwise `SPOOLPOST_TEST_TMPFS` must name a prepared
/// small tmpfs (emptied first), and the caller fills it up itself.
pub fn tmpfs(size: &str, inodes: u32) -> Mount {
    if let Some(path) = std::env::var_os("SPOOLPOST_TEST_TMPFS") {
        let guard = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
        let path = PathBuf::from(path);
        for entry in std::fs::read_dir(&path).expect("SPOOLPOST_TEST_TMPFS is not readable") {
            let p = entry.unwrap().path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
        return Mount {
            path,
            _dir: None,
            mounted: false,
            _prepared: Some(guard),
        };
    }
    assert!(
        is_root(),
        "this test needs a small tmpfs: run it as root (it mounts one itself, as CI does) \
         or set SPOOLPOST_TEST_TMPFS to a prepared tmpfs it may empty and fill"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size},nr_inodes={inodes},mode=0755"))
        .arg("tmpfs")
        .arg(dir.path())
        .status()
        .expect("cannot run mount (util-linux)");
    assert!(status.success(), "mount -t tmpfs failed");
    Mount {
        path: dir.path().to_path_buf(),
        _dir: Some(dir),
        mounted: true,
        _prepared: None,
    }
}

/// A read-only bind mount of `dir` onto itself, undone when dropped.
pub fn read_only_bind(dir: &Path) -> Mount {
    require_root("it makes a read-only bind mount");
    let run = |args: &[&str]| {
        let status = Command::new("mount")
            .args(args)
            .arg(dir)
            .arg(dir)
            .status()
            .expect("cannot run mount (util-linux)");
        assert!(status.success(), "mount {args:?} failed");
    };
    run(&["--bind"]);
    let mount = Mount {
        path: dir.to_path_buf(),
        _dir: None,
        mounted: true,
        _prepared: None,
    };
    run(&["-o", "remount,bind,ro"]);
    mount
}

/// Fills a filesystem's blocks: one file grown until ENOSPC.
pub fn fill_blocks(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            // A partial last block may still be free: fill it byte by byte.
            while f.write_all(&[0]).is_ok() {}
            return;
        }
    }
}

/// Uses every free inode: empty files until ENOSPC.
pub fn fill_inodes(dir: &Path) {
    let dir = dir.join("inodes");
    std::fs::create_dir(&dir).unwrap();
    for i in 0.. {
        if let Err(e) = std::fs::File::create(dir.join(i.to_string())) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            return;
        }
    }
}
