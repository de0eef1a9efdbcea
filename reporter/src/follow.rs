//! `--watch --events -`: event lines read from a pipe as they arrive.
//!
//! A pipe has no end while its writer runs (`sender | reporter --events -
//! --watch 2`), so a watch that read it to end of input before drawing
//! showed nothing until the sender stopped. A thread reads
//! the pipe as it flows and keeps what it has read; each refresh analyses
//! the complete lines so far, just as it reads an events file afresh, so a
//! pipe and a file give the same figures.

use std::io::{ErrorKind, Read};
use std::sync::{Arc, Mutex, PoisonError};

/// What a reader thread has read so far from one input.
#[derive(Clone)]
pub struct Follow {
    read: Arc<Mutex<Vec<u8>>>,
}

impl Follow {
    /// Starts a thread reading `input` until its end; the thread ends
    /// with the input (or with the process, being detached).
    pub fn start(mut input: impl Read + Send + 'static) -> Follow {
        let read = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&read);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => lock(&shared).extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // At the end a last line without its newline is complete too.
            let mut all = lock(&shared);
            if all.last().is_some_and(|&b| b != b'\n') {
                all.push(b'\n');
            }
        });
        Follow { read }
    }

    /// The complete lines read so far: a line still being written waits
    /// for its newline, so it is never counted as unreadable half-way.
    pub fn lines(&self) -> Vec<u8> {
        let all = lock(&self.read);
        let end = all.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        all[..end].to_vec()
    }
}

/// The reader thread cannot panic while holding the lock, but if it ever
/// did the bytes already read are still good.
fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    fn until(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }

    #[test]
    fn lines_show_while_the_writer_is_still_writing() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let follow = Follow::start(reader);
        writer.write_all(b"one\ntw").unwrap();
        assert!(until(|| follow.lines() == b"one\n"));
        writer.write_all(b"o\n").unwrap();
        assert!(until(|| follow.lines() == b"one\ntwo\n"));
        // Still open: nothing waits for the end of input.
        writer.write_all(b"three").unwrap();
        drop(writer);
        assert!(until(|| follow.lines() == b"one\ntwo\nthree\n"));
    }
}
