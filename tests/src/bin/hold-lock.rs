//! Holds an exclusive lock on a file until killed, of the kind spoolpost
//! takes here (`fcntl` with `SPOOLPOST_LOCK=fcntl`, else `flock`): a dead
//! claim folder's owner in tests, when util-linux `flock` cannot stand in.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: hold-lock FILE");
        std::process::exit(2);
    };
    let _held = match spoolpost_common::lock::create(path.as_ref()) {
        Ok(held) => held,
        Err(e) => {
            eprintln!("cannot lock {}: {e}", path.to_string_lossy());
            std::process::exit(1);
        }
    };
    loop {
        std::thread::park();
    }
}
