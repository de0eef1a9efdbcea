//! A file's body, read as it is sent. Files up to [`INLINE_MAX`] are read
//! and compressed in one go (the common case, and the cheapest); larger
//! ones are streamed from a blocking thread through a small bounded
//! channel, so memory stays flat whatever the file size.
//!
//! A body is only ever complete if the file stayed what was claimed
//! ([`crate::net::file::verify`] after the last read): an inline body is
//! checked before the request is made, a streamed one before its last
//! bytes go, and a change ends the stream with an error so the receiver
//! sees a broken body, never a clean end. How far the body got is kept in
//! `Progress`, from which the request marks an answer early.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::net::encode::{Encoder, Encoding, gzip_small, zstd_small};
use crate::net::file::{change_error, verify};
use crate::rules::change::{Change, Stat};
use crate::rules::outcome::Answer;

/// Files up to this size are compressed in memory in one step.
pub const INLINE_MAX: u64 = 64 * 1024;
/// Read size and channel item size when streaming.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reading thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 2;
/// What a body's making shares with the request: how far it got, and
/// what went wrong on the local side.
#[derive(Default)]
pub(super) struct Progress {
    /// Bytes read from the file.
    pub(super) read: AtomicU64,
    /// Body bytes the connection took.
    pub(super) sent: AtomicU64,
    /// The body reached its end: all of it was handed to the connection.
    pub(super) whole: AtomicBool,
    pub(super) local: Mutex<Option<Local>>,
}

/// A failure on the local side while making the body.
#[derive(Debug)]
pub(super) enum Local {
    Read(String),
    Changed(Change),
}

impl Local {
    /// What the answer table makes of it, and the text for the reason.
    pub(super) fn answer(self) -> (Answer, String) {
        match self {
            Local::Read(text) => (Answer::LocalRead, text),
            Local::Changed(change) => (Answer::Changed(change), change.to_string()),
        }
    }
}

impl Progress {
    fn fail(&self, local: Local) {
        self.local.lock().unwrap().get_or_insert(local);
    }
}

pub(super) fn make_body(
    mut file: File,
    claimed: Stat,
    path: &Path,
    encoding: Encoding,
    progress: &Arc<Progress>,
) -> Result<reqwest::Body, Local> {
    let size = claimed.len;
    if size <= INLINE_MAX {
        // Exactly the claimed bytes, without a read to see the end: a file
        // that grew shows in `verify`'s fstat, one that shrank as a short
        // read.
        let mut data = vec![0u8; size as usize];
        let read = read_up_to(&mut file, &mut data)
            .map_err(|e| Local::Read(format!("cannot read the file: {e}")))?;
        data.truncate(read);
        progress.read.store(data.len() as u64, Ordering::Relaxed);
        verify(&file, path, claimed, data.len() as u64).map_err(Local::Changed)?;
        let body = match encoding {
            Encoding::Gzip(level) => gzip_small(&data, level),
            Encoding::Zstd(level) => zstd_small(&data, level),
            Encoding::Identity => Ok(data),
        }
        .map_err(|e| Local::Read(format!("cannot compress the file: {e}")))?;
        // Small enough to go out with the request head in one write: it is
        // wholly sent before any answer can come.
        progress.sent.store(body.len() as u64, Ordering::Relaxed);
        progress.whole.store(true, Ordering::Release);
        return Ok(reqwest::Body::from(body));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let (path, producer) = (path.to_path_buf(), progress.clone());
    tokio::task::spawn_blocking(move || {
        if let Err(local) = stream_file(&mut file, claimed, &path, encoding, &tx, &producer) {
            let error = match &local {
                Local::Changed(change) => change_error(*change),
                Local::Read(text) => io::Error::other(text.clone()),
            };
            // Recorded before the stream fails, so the request's error is
            // read with its cause at hand.
            producer.fail(local);
            let _ = tx.blocking_send(Err(error));
        }
    });
    let consumer = progress.clone();
    let unencoded = matches!(encoding, Encoding::Identity);
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let progress = consumer.clone();
        async move {
            match rx.recv().await {
                Some(Ok(chunk)) => {
                    let sent = progress
                        .sent
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed)
                        + chunk.len() as u64;
                    // The claimed size, unencoded, comes only after the
                    // file was verified (stream_file): the body is whole
                    // even if its reader, knowing the length, never asks
                    // for the end.
                    if unencoded && sent == size {
                        progress.whole.store(true, Ordering::Release);
                    }
                    Some((Ok(chunk), rx))
                }
                Some(Err(e)) => Some((Err(e), rx)),
                // The producer ended without error: the body is complete.
                None => {
                    progress.whole.store(true, Ordering::Release);
                    None
                }
            }
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads, compresses and hands over chunks until the file ends, then
/// checks that the file is still what was claimed before the last bytes
/// go. Returns early without error when the request was dropped (the
/// receiver answered or the connection failed), which the caller learns
/// from the response.
fn stream_file(
    file: &mut File,
    claimed: Stat,
    path: &Path,
    encoding: Encoding,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    progress: &Progress,
) -> Result<(), Local> {
    let read_error = |e: io::Error| Local::Read(format!("cannot read the file: {e}"));
    let mut buf = vec![0u8; CHUNK];
    let mut encoder = Encoder::new(encoding, CHUNK)
        .map_err(|e| Local::Read(format!("cannot set up compression: {e}")))?;
    let hand_over = |chunk: Vec<u8>| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
    let mut total = 0u64;
    // Unencoded, the last bytes are held until the file is verified: a
    // body sent with its length (an S3 PUT) is read only up to that
    // length, so the end of the stream, where a failed check would show,
    // is never reached, and the last byte out must mean a checked file.
    let mut held: Option<Vec<u8>> = None;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        total += n as u64;
        progress.read.fetch_add(n as u64, Ordering::Relaxed);
        if total > claimed.len {
            return Err(Local::Changed(Change::Grew {
                claimed: claimed.len,
            }));
        }
        let chunk = match encoder.as_mut() {
            None => match held.replace(buf[..n].to_vec()) {
                Some(earlier) => earlier,
                None => continue,
            },
            Some(enc) => {
                enc.write_all(&buf[..n]).map_err(read_error)?;
                if enc.out().len() < CHUNK {
                    continue;
                }
                std::mem::replace(enc.out(), Vec::with_capacity(CHUNK + 1024))
            }
        };
        if !hand_over(chunk) {
            return Ok(());
        }
    }
    verify(file, path, claimed, total).map_err(Local::Changed)?;
    if let Some(enc) = encoder {
        hand_over(enc.finish().map_err(read_error)?);
    } else if let Some(last) = held {
        hand_over(last);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inline body reads exactly the claimed bytes; a file longer or
    /// shorter than claimed is refused all the same.
    #[test]
    fn an_inline_body_refuses_a_file_that_is_not_its_claimed_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        for (claimed, change) in [
            (5, Change::Grew { claimed: 5 }),
            (
                20,
                Change::Truncated {
                    claimed: 20,
                    read: 10,
                },
            ),
        ] {
            let (file, mut snapshot) = crate::net::file::open(&path).unwrap();
            snapshot.len = claimed;
            let progress = Arc::new(Progress::default());
            match make_body(file, snapshot, &path, Encoding::Identity, &progress) {
                Err(Local::Changed(got)) => assert_eq!(got, change),
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("a file of 10 bytes went out as {claimed}"),
            }
        }
        let (file, snapshot) = crate::net::file::open(&path).unwrap();
        let progress = Arc::new(Progress::default());
        assert!(make_body(file, snapshot, &path, Encoding::Identity, &progress).is_ok());
        assert_eq!(progress.read.load(Ordering::Relaxed), 10);
    }
}
