//! How a body goes into an S3-compatible store: in one PUT or as a
//! multipart upload, and how large its parts are.
//!
//! - An unencoded body is the file: larger than `multipart_above`, parts.
//! - A compressed body's size is known only once compressed, and a store
//!   wants each request's length up front, so it is compressed a part at a
//!   time into memory: if it ends within the first part and is no larger
//!   than `multipart_above`, it goes in one PUT with that length; otherwise
//!   in parts. Memory per upload is one part whichever way.
//! - Parts are `part_size`, grown (to a whole MiB) when a file would need
//!   more than S3's 10,000 parts; a compressed body is planned on its file's
//!   size with room for gzip's or zstd's worst-case growth.

use spoolpost_ops::config::{S3_MAX_PART, S3_MIN_PART};

/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// The part size for a body from a file of `size` bytes, `compressed` or
/// not, with `part_size` configured (already at least 5 MiB): the
/// configured size, or the least whole MiB that fits the body in 10,000
/// parts. `Err` when no part size does (over S3's 5 TiB object limit).
pub fn part_size(size: u64, compressed: bool, part_size: u64) -> Result<u64, String> {
    // Worst-case growth of incompressible input: gzip adds 5 bytes per
    // 16 KiB block, zstd less; 1/1000 and a MiB cover both.
    let body = if compressed {
        size + size / 1000 + (1 << 20)
    } else {
        size
    };
    if body > MAX_OBJECT {
        return Err(format!(
            "the file is {size} bytes; an S3 object is at most {MAX_OBJECT} (5 TiB)"
        ));
    }
    let least = body.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    Ok(part_size.max(least).clamp(S3_MIN_PART, S3_MAX_PART))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_configured_part_size_is_kept_while_10000_parts_suffice() {
        assert_eq!(part_size(100 * MIB, false, 16 * MIB).unwrap(), 16 * MIB);
        assert_eq!(
            part_size(156 * 1024 * MIB, false, 16 * MIB).unwrap(),
            16 * MIB
        );
        assert_eq!(part_size(0, true, 5 * MIB).unwrap(), 5 * MIB);
    }

    #[test]
    fn a_file_too_large_for_10000_parts_gets_larger_whole_mib_parts() {
        let size = 200 * 1024 * MIB;
        let part = part_size(size, false, 16 * MIB).unwrap();
        assert_eq!(part % MIB, 0);
        assert!(size.div_ceil(part) <= MAX_PARTS, "{part}");
        assert!(size.div_ceil(part - MIB) > MAX_PARTS, "the least that fits");
        // Compressed, room is left for a body larger than the file.
        let c = part_size(size, true, 16 * MIB).unwrap();
        assert!((size + size / 1000).div_ceil(c) <= MAX_PARTS);
    }

    #[test]
    fn over_5_tib_is_refused_with_the_limit_named() {
        let e = part_size(MAX_OBJECT + 1, false, 16 * MIB).unwrap_err();
        assert!(e.contains("5 TiB"), "{e}");
        assert!(part_size(MAX_OBJECT, false, 16 * MIB).is_ok());
    }
}
