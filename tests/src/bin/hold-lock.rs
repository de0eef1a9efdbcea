//! Holds an exclusive lock on a file until killed, of the kind spoolpost
//! takes here (`fcntl` with `SPOOLPOST_LOCK=fcntl`, else `flock`): a dead
//! claim folder's owner in tests, when util-linux `flock` cannot stand in.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: hold-lock FILE");
        std::process::exit(2);
    };
    // The test polls whether the lock is held by trying to take it for an
    // instant (fcntl has no other portable test), so the first try here can
    // meet the test's own probe: try again until the lock is ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let _held = loop {
        match spoolpost_protocol::lock::create(path.as_ref()) {
            Ok(held) => break held,
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::EWOULDBLOCK as i32)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => {
                eprintln!("cannot lock {}: {e}", path.to_string_lossy());
                std::process::exit(1);
            }
        }
    };
    loop {
        std::thread::park();
    }
}
