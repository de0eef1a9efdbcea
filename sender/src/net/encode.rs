//! How a body is compressed: gzip, zstd or not at all, as the receiver's
//! `compression` says. A small body is compressed in one go with a
//! compressor reused on its thread; a streamed one through an `Encoder`
//! over the chunk being filled.

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::{Compress, Compression, FlushCompress, Status};
use spoolpost_ops::config::BodyEncoding;

/// How a body is compressed, resolved from the receiver's settings.
#[derive(Clone, Copy, Debug)]
pub enum Encoding {
    Identity,
    Gzip(Compression),
    Zstd(i32),
}

impl From<BodyEncoding> for Encoding {
    fn from(e: BodyEncoding) -> Self {
        match e {
            BodyEncoding::Identity => Encoding::Identity,
            BodyEncoding::Gzip(level) => Encoding::Gzip(Compression::new(level)),
            BodyEncoding::Zstd(level) => Encoding::Zstd(level),
        }
    }
}

thread_local! {
    /// One reusable compressor per level on each runtime thread. A deflate
    /// state is a few hundred KiB to allocate and clear, far more work than
    /// compressing a 1 KiB file, so small files reuse one (`reset`) instead.
    static COMPRESSORS: std::cell::RefCell<Vec<(u32, Compress)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gzips a small body in one go with a reused compressor.
pub(super) fn gzip_small(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    COMPRESSORS.with_borrow_mut(|cache| {
        let at = match cache.iter().position(|(l, _)| *l == level.level()) {
            Some(at) => at,
            None => {
                cache.push((level.level(), Compress::new_gzip(level, 15)));
                cache.len() - 1
            }
        };
        let c = &mut cache[at].1;
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let consumed = c.total_in() as usize;
            match c.compress_vec(&data[consumed..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    })
}

thread_local! {
    /// One reusable zstd context per level on each runtime thread, for the
    /// same reason as [`COMPRESSORS`]: a context's tables cost more to set
    /// up than a small file costs to compress.
    static ZSTD_CONTEXTS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Compresses a small body to one zstd frame with a reused context.
pub(super) fn zstd_small(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    ZSTD_CONTEXTS.with_borrow_mut(|cache| {
        let at = match cache.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                cache.push((level, zstd::bulk::Compressor::new(level)?));
                cache.len() - 1
            }
        };
        // A frame that says its size, so a receiver can allocate once.
        let c = &mut cache[at].1;
        c.include_contentsize(true)?;
        c.compress(data)
    })
}

/// A streaming compressor over the chunk being filled.
pub(super) enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder whose output buffer holds a chunk of `chunk` bytes
    /// without growing.
    pub(super) fn new(encoding: Encoding, chunk: usize) -> io::Result<Option<Encoder>> {
        let buf = Vec::with_capacity(chunk + 1024);
        Ok(match encoding {
            Encoding::Identity => None,
            Encoding::Gzip(level) => Some(Encoder::Gzip(GzEncoder::new(buf, level))),
            Encoding::Zstd(level) => Some(Encoder::Zstd(zstd::stream::write::Encoder::new(
                buf, level,
            )?)),
        })
    }

    pub(super) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// The compressed bytes so far.
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    pub(super) fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn reused_compressors_make_valid_independent_gzip_streams() {
        for (i, text) in [
            &b"first body"[..],
            b"",
            b"second, longer body".repeat(500).as_slice(),
        ]
        .iter()
        .enumerate()
        {
            let level = Compression::new(if i == 1 { 1 } else { 6 });
            let gz = gzip_small(text, level).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back, text);
        }
    }

    #[test]
    fn reused_zstd_contexts_make_valid_independent_frames() {
        for (i, text) in [
            &b"first body"[..],
            b"",
            b"second, longer body".repeat(500).as_slice(),
            b"first body",
        ]
        .iter()
        .enumerate()
        {
            let level = if i == 1 { 1 } else { 3 };
            let z = zstd_small(text, level).unwrap();
            assert_eq!(&zstd::decode_all(&z[..]).unwrap(), text);
        }
    }
}
