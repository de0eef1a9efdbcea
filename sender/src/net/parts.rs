//! A body cut into parts of a known length, for an S3-compatible store,
//! which wants each request's length before its body: read from the file
//! (and compressed, if the receiver compresses) one part at a time, so an
//! upload holds at most one part in memory, on a blocking thread.
//!
//! As with a streamed body, the last part is only handed out once the file
//! was verified to be what was claimed ([`crate::net::file::verify`]), so a
//! store never completes an object from a file that changed.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::net::body::Local;
use crate::net::encode::{Encoder, Encoding};
use crate::net::file::verify;
use crate::rules::change::{Change, Stat};

/// Bytes read from the file at a time.
const READ: usize = 256 * 1024;

pub(super) struct Parts {
    file: File,
    claimed: Stat,
    path: PathBuf,
    encoder: Option<Encoder>,
    part_size: usize,
    /// Body bytes not yet handed out: less than a part and a read.
    pending: Vec<u8>,
    /// The file was read to its end and verified.
    ended: bool,
    /// Bytes read from the file.
    pub(super) read: u64,
}

impl Parts {
    pub(super) fn new(
        file: File,
        claimed: Stat,
        path: &Path,
        encoding: Encoding,
        part_size: u64,
    ) -> Result<Parts, Local> {
        let encoder = Encoder::new(encoding, READ)
            .map_err(|e| Local::Read(format!("cannot set up compression: {e}")))?;
        Ok(Parts {
            file,
            claimed,
            path: path.to_path_buf(),
            encoder,
            part_size: part_size as usize,
            pending: Vec::new(),
            ended: false,
            read: 0,
        })
    }

    /// Whether every part has been handed out.
    pub(super) fn done(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    /// The next part: `part_size` bytes, or fewer for the last one; `None`
    /// once all were handed out. A part is handed out only when more of
    /// the body follows it or the file was verified, so after the last
    /// part [`Parts::done`] is true.
    pub(super) fn next_part(&mut self) -> Result<Option<Vec<u8>>, Local> {
        let read_error = |e: io::Error| Local::Read(format!("cannot read the file: {e}"));
        let mut buf = vec![0u8; READ];
        loop {
            if self.pending.len() > self.part_size {
                // Only the small rest is kept: the next part's buffer is
                // made when it is filled, after this part was sent and
                // freed, so one part's memory serves them all.
                let rest = self.pending[self.part_size..].to_vec();
                self.pending.truncate(self.part_size);
                return Ok(Some(std::mem::replace(&mut self.pending, rest)));
            }
            // Made once at its full size: grown by doubling, a part would
            // leave a buffer of up to twice its size in the allocator.
            // A small file's body needs no part-sized buffer.
            let body = self.claimed.len + self.claimed.len / 1000 + 64 * 1024;
            let full = (self.part_size as u64).min(body) as usize + 2 * READ;
            if !self.ended && self.pending.capacity() < full {
                self.pending.reserve_exact(full - self.pending.len());
            }
            if self.ended {
                return Ok((!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending)));
            }
            let n = match self.file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            if n == 0 {
                verify(&self.file, &self.path, self.claimed, self.read).map_err(Local::Changed)?;
                if let Some(enc) = self.encoder.take() {
                    self.pending
                        .extend_from_slice(&enc.finish().map_err(read_error)?);
                }
                self.ended = true;
                continue;
            }
            self.read += n as u64;
            if self.read > self.claimed.len {
                return Err(Local::Changed(Change::Grew {
                    claimed: self.claimed.len,
                }));
            }
            match self.encoder.as_mut() {
                None => self.pending.extend_from_slice(&buf[..n]),
                Some(enc) => {
                    enc.write_all(&buf[..n]).map_err(read_error)?;
                    self.pending.append(enc.out());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(data: &[u8], encoding: Encoding, part: u64) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let (file, stat) = crate::net::file::open(&path).unwrap();
        let mut parts = Parts::new(file, stat, &path, encoding, part).unwrap();
        let mut out = Vec::new();
        while let Some(p) = parts.next_part().unwrap() {
            assert!(p.len() as u64 <= part);
            out.push(p);
        }
        assert!(parts.done());
        out
    }

    #[test]
    fn an_unencoded_body_is_cut_into_whole_parts_and_a_short_last_one() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let parts = parts_of(&data, Encoding::Identity, 300_000);
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, [300_000, 300_000, 300_000, 100_000]);
        assert_eq!(parts.concat(), data);
        // A body of exactly one part is one part.
        assert_eq!(
            parts_of(&data[..300_000], Encoding::Identity, 300_000).len(),
            1
        );
    }

    #[test]
    fn a_compressed_body_s_parts_make_one_gzip_stream() {
        // Bytes that barely compress (xorshift), so the body needs parts.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let parts = parts_of(&data, Encoding::Gzip(flate2::Compression::new(1)), 200_000);
        assert!(parts.len() > 1, "{}", parts.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&parts.concat()[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_file_that_changed_is_refused_before_its_last_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 500_000]).unwrap();
        let (file, mut stat) = crate::net::file::open(&path).unwrap();
        stat.len = 600_000;
        let mut parts = Parts::new(file, stat, &path, Encoding::Identity, 200_000).unwrap();
        assert_eq!(parts.next_part().unwrap().unwrap().len(), 200_000);
        assert_eq!(parts.next_part().unwrap().unwrap().len(), 200_000);
        match parts.next_part() {
            Err(Local::Changed(Change::Truncated { .. })) => {}
            other => panic!("{:?}", other.map(|p| p.map(|p| p.len()))),
        }
    }
}
