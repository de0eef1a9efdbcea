//! Files that change, vanish or are not regular while the programs work on
//! them: deleted, truncated or grown while sent, sockets, FIFOs, symlinks.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spoolpost_protocol::event::EventKind;
use spoolpost_protocol::reason::ErrorClass;
use spoolpost_protocol::spool::State;
use spoolpost_tests::harness::*;
use spoolpost_tests::receiver::{Receiver, Reply};

const MINUTE: Duration = Duration::from_secs(60);
/// Large enough that the receiver's hold lands mid-body with more of the
/// file still unread by the sender than loopback's socket buffers hold.
const BIG: usize = 20 << 20;
/// Where the receiver stops reading until the test made its change.
const HOLD_AT: u64 = 1 << 20;

/// The path of the one claimed file whose original name is `original`.
fn claimed(spool: &TestSpool, original: &str) -> Option<PathBuf> {
    for folder in std::fs::read_dir(spool.dir(State::Sending)).ok()? {
        let folder = folder.ok()?.path();
        for e in std::fs::read_dir(&folder).ok()? {
            let e = e.ok()?;
            if e.file_name().as_bytes().starts_with(original.as_bytes()) {
                return Some(e.path());
            }
        }
    }
    None
}

fn noise(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(13);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Sends a 20 MB file to a receiver that stops reading after 1 MB, makes
/// `change` to the claimed file while the request is held mid-body, lets
/// the receiver read on, and returns what the sender said.
fn change_mid_request(change: impl FnOnce(&Path)) -> (TestSpool, Receiver, Finished) {
    let rx = Receiver::start();
    rx.answer(Reply::ok().hold_after(HOLD_AT));
    let spool = TestSpool::new();
    spool.put("big.bin", &noise(BIG));
    let sender = spawn(sender(&spool).args(["--once", "--no-gzip", "--url", &rx.url("/in")]));
    assert!(
        eventually(MINUTE, || rx.held() == 1),
        "the request never reached the hold"
    );
    change(&claimed(&spool, "big.bin").expect("the file is claimed while held"));
    rx.release();
    let out = sender.wait(MINUTE);
    out.assert_success();
    assert!(
        eventually(MINUTE, || rx.broken() == 1),
        "the receiver must see the body cut short, not a clean end"
    );
    assert!(
        rx.received().is_empty(),
        "no complete body may reach the receiver: {:?}",
        rx.received().iter().map(|r| r.body_len).collect::<Vec<_>>()
    );
    assert_eq!(spool.count(State::Done), 0, "nothing was delivered");
    (spool, rx, out)
}

/// The change is named in the reason record of the file in `error/`.
fn assert_in_error_saying(spool: &TestSpool, out: &Finished, words: &str) {
    let reason = reason_of(&spool.find(State::Error, "big.bin"));
    assert_eq!(reason.class, ErrorClass::Unsendable, "{reason:?}");
    assert!(reason.message.contains(words), "{}", reason.message);
    let events = out.events();
    assert_eq!(events.len(), 1, "{}", out.stdout);
    assert_eq!(events[0].event, EventKind::Rejected);
    assert!(events[0].error.as_deref().unwrap_or("").contains(words));
}

#[test]
fn issue_13_1_a_file_truncated_while_sent_is_not_delivered_cut_short() {
    let (spool, _rx, out) = change_mid_request(|path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(1000)
            .unwrap();
    });
    assert_in_error_saying(&spool, &out, "truncated");
}

#[test]
fn issue_13_1_a_file_grown_while_sent_is_not_delivered() {
    let (spool, _rx, out) = change_mid_request(|path| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(&[b'+'; 1 << 20]).unwrap();
    });
    assert_in_error_saying(&spool, &out, "grew");
}

#[test]
fn issue_13_1_a_file_replaced_while_sent_is_not_delivered() {
    let (spool, _rx, out) = change_mid_request(|path| {
        let other = path.with_file_name(".replacement");
        std::fs::write(&other, b"another file").unwrap();
        std::fs::rename(&other, path).unwrap();
    });
    assert_in_error_saying(&spool, &out, "replaced");
    let kept = spool.find(State::Error, "big.bin");
    assert_eq!(
        std::fs::read(kept).unwrap(),
        b"another file",
        "the file now at the claimed name is kept, not lost"
    );
}

#[test]
fn issue_13_1_a_file_unlinked_while_sent_is_not_delivered_and_says_so() {
    let (spool, _rx, out) = change_mid_request(|path| std::fs::remove_file(path).unwrap());
    assert_eq!(spool.count(State::Error), 0);
    let events = out.events();
    assert_eq!(
        events.len(),
        1,
        "an event says what became of it: {}",
        out.stdout
    );
    assert_eq!(events[0].event, EventKind::Vanished);
    let error = events[0].error.as_deref().unwrap_or("");
    assert!(error.contains("removed"), "{error}");
    assert!(
        !out.stderr.contains("sent again"),
        "a removed file cannot be sent again: {}",
        out.stderr
    );
}

#[test]
fn issue_13_7_a_unix_socket_in_incoming_goes_to_error_as_unsendable() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let _socket =
        std::os::unix::net::UnixListener::bind(spool.dir(State::Incoming).join("sock.json"))
            .unwrap();
    spool.put("ok.json", b"fine");
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();
    let reason = reason_of(&spool.find(State::Error, "sock.json"));
    assert_eq!(reason.class, ErrorClass::Unsendable);
    assert!(reason.message.contains("socket"), "{}", reason.message);
    assert_eq!(spool.count(State::Incoming), 0, "{}", out.stderr);
    assert_eq!(rx.count(), 1, "only the regular file was sent");
    assert!(
        !out.stderr.contains("cannot put the file back"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_fifo_goes_to_error_as_unsendable_without_blocking() {
    let spool = TestSpool::new();
    nix::unistd::mkfifo(
        &spool.dir(State::Incoming).join("fifo.json"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let out = run(
        sender(&spool).args(["--once", "--url", "http://127.0.0.1:9/"]),
        MINUTE,
    );
    out.assert_success();
    let reason = reason_of(&spool.find(State::Error, "fifo.json"));
    assert_eq!(reason.class, ErrorClass::Unsendable);
    assert!(reason.message.contains("FIFO"), "{}", reason.message);
}

#[test]
fn a_symlink_goes_to_error_and_its_target_is_not_read() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    let target = spool.side("outside").join("secret");
    std::fs::write(&target, "do not send").unwrap();
    std::os::unix::fs::symlink(&target, spool.dir(State::Incoming).join("link.json")).unwrap();
    run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    )
    .assert_success();
    let reason = reason_of(&spool.find(State::Error, "link.json"));
    assert_eq!(reason.class, ErrorClass::Unsendable);
    assert!(reason.message.contains("symlink"), "{}", reason.message);
    assert_eq!(rx.count(), 0);
}

#[test]
fn an_empty_file_is_delivered_as_an_empty_body() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    spool.put("empty.json", b"");
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(rx.received().len(), 1);
    assert_eq!(rx.received()[0].body_len, 0);
    assert_eq!(out.events()[0].event, EventKind::Delivered);
    spool.find(State::Done, "empty.json");
}

#[test]
fn a_file_deleted_before_its_claim_is_no_error() {
    let rx = Receiver::start();
    let spool = TestSpool::new();
    spool.put("gone.json", b"x");
    std::fs::remove_file(spool.dir(State::Incoming).join("gone.json")).unwrap();
    let out = run(
        sender(&spool).args(["--once", "--url", &rx.url("/in")]),
        MINUTE,
    );
    out.assert_success();
    assert_eq!(rx.count(), 0);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(spool.count(State::Error), 0);
}

/// Root reads a `chmod 000` file anyway, so as root the sender runs as
/// `nobody` over a spool it may write, and the file stays root's, mode 000.
#[test]
fn an_unreadable_file_goes_to_error_as_unsendable() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let rx = Receiver::start();
    let spool = TestSpool::new();
    spool.put("secret.json", b"x");
    let file = spool.dir(State::Incoming).join("secret.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = sender(&spool);
    cmd.args(["--once", "--url", &rx.url("/in")]);
    // The file's owner is whoever runs the test; root reads a 000 file
    // anyway, so as root the sender runs as nobody.
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&file).unwrap()) == 0 {
        let open = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        open(spool.root.parent().unwrap(), 0o755);
        open(&spool.root, 0o777);
        for state in State::ALL {
            open(&spool.dir(state), 0o777);
        }
        open(&spool.root.join("tmp"), 0o777);
        cmd.uid(65534).gid(65534);
    }
    let as_nobody = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&file).unwrap()) == 0;
    let out = run(&mut cmd, MINUTE);
    out.assert_success();
    assert_eq!(rx.count(), 0);
    if as_nobody && std::env::var_os("SPOOLPOST_RENAME").is_some_and(|v| v == "link") {
        // With the link + unlink fallback forced, Linux's protected_hardlinks
        // refuses to link a file the sender neither owns nor may read: the
        // claim's link check fails, and the file must stay where it was,
        // untouched (docs/platforms.md says a sender must own the files it
        // moves). A claim by rename alone took it, and it could then leave
        // the claim neither for error/ nor for incoming/.
        assert_eq!(spool.names(State::Incoming), [b"secret.json".to_vec()]);
        assert_eq!(spool.count(State::Error), 0);
        return;
    }
    let reason = reason_of(&spool.find(State::Error, "secret.json"));
    assert_eq!(reason.class, ErrorClass::Unsendable);
    assert!(reason.message.contains("permission"), "{}", reason.message);
}
