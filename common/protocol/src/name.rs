//! Spool file names: how a file carries its identity and retry state.
//!
//! A file's whole state lives in its name (plus its mtime, see below), so a
//! single atomic rename moves the file *and* its state together; there is no
//! sidecar to get out of step with the data after a crash.
//!
//! ```text
//! spool-name = original [ "~sp" 1*( "." field ) ]
//! field      = "k" key        ; 24 lowercase hex digits, the idempotency key
//!            / "n" length     ; the original is `length` bytes long and kept
//!                             ; whole in `names/KEY`; the name holds its start
//!            / "u" uniq       ; 1-8 lowercase hex digits, added only on a name clash
//!            / "t" seconds    ; unix time of the first attempt
//!            / "a" attempts   ; attempts made so far (decimal)
//!            / "r" reason     ; last retry reason, [a-z0-9-]{1,32}
//! ```
//!
//! Fields appear at most once, in the order above. A name whose tail after the
//! last `~sp.` does not parse completely is taken to be an original name as a
//! whole, so producers can use any name; names ending in a well-formed `~sp.`
//! suffix are reserved. When a retried file waits in `incoming/`, its mtime is
//! the time of its next attempt (as Postfix does for its deferred queue); the
//! mtime of a file that has no attempts yet means nothing to the sender.
//!
//! **Long names.** A file name holds at most 255 bytes, and the suffix can
//! grow to [`MAX_SUFFIX`] bytes over a file's life. An original longer than
//! [`SHORT_MAX`] bytes is written into names cut to its first `SHORT_MAX`
//! bytes (at a character boundary when it is UTF-8) with an `n` field giving
//! its full length; the whole original is kept in `SPOOL/names/KEY` (see
//! `fullname`). In memory, [`SpoolName::original`] is the whole original
//! once resolved, and writing the name out cuts it again the same way.
//!
//! **Keys.** The sender draws a random key at a file's first claim; the
//! collector fixes it at admission from the source file's identity
//! ([`Key::of_source`]), so a file admitted twice after a crash is one file
//! to a receiver.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::{Duration, SystemTime};

const MARKER: &[u8] = b"~sp.";

/// The longest file name the spool's filesystems take (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest suffix a name can reach: `~sp`, `.k` and 24 digits, `.n255`,
/// `.u` and 8 digits, `.t` and 20 digits, `.a` and 10 digits, `.r` and 32.
pub const MAX_SUFFIX: usize = 3 + 26 + 5 + 10 + 22 + 12 + 34;
/// The longest original kept whole in the name itself.
pub const SHORT_MAX: usize = NAME_MAX - MAX_SUFFIX;

/// A stable, random identifier given to a file when it is first claimed. It is
/// sent as `Idempotency-Key` on every attempt, so receivers can drop duplicates
/// that at-least-once delivery may produce after a crash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 12]);

impl Key {
    pub fn random() -> Key {
        let mut bytes = [0u8; 12];
        fastrand::fill(&mut bytes);
        Key(bytes)
    }

    /// The key of a source file, from what identifies it on its filesystem:
    /// the same file admitted twice (after a crash, or by a second collector)
    /// gets the same key, while two files that merely share a name do not.
    /// A source renamed within its filesystem keeps all of these.
    pub fn of_source(dev: u64, ino: u64, size: u64, mtime_ns: i128, name: &OsStr) -> Key {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"spoolpost-source-key-v1\0");
        ctx.update(&dev.to_le_bytes());
        ctx.update(&ino.to_le_bytes());
        ctx.update(&size.to_le_bytes());
        ctx.update(&mtime_ns.to_le_bytes());
        ctx.update(name.as_bytes());
        let digest = ctx.finish();
        let mut bytes = [0u8; 12];
        bytes.copy_from_slice(&digest.as_ref()[..12]);
        Key(bytes)
    }

    fn parse(hex: &[u8]) -> Option<Key> {
        if hex.len() != 24 {
            return None;
        }
        let mut bytes = [0u8; 12];
        for (i, pair) in hex.chunks(2).enumerate() {
            bytes[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Key(bytes))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of the whole text: a key is formatted several times per
        // file, and byte-by-byte `{:02x}` was a measurable part of the
        // sender's CPU.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 24];
        for (i, b) in self.0.iter().enumerate() {
            text[2 * i] = HEX[usize::from(b >> 4)];
            text[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        f.write_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A parsed spool file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolName {
    /// The name the producer gave the file: used for routing and sent as
    /// `X-Filename`. Any bytes but `/` and NUL, not necessarily UTF-8.
    pub original: OsString,
    pub key: Option<Key>,
    /// The `n` field: the original's full length when the name holds only
    /// its start (see "Long names" above). Set by `parse`; [`Self::is_cut`]
    /// says whether `original` still needs the whole name looked up.
    pub full_len: Option<u32>,
    pub uniq: Option<u32>,
    /// Unix time (seconds) of the first attempt.
    pub first_attempt: Option<u64>,
    pub attempts: u32,
    pub last_reason: Option<String>,
}

impl SpoolName {
    /// A name for a file that has never been attempted.
    pub fn fresh(original: impl Into<OsString>) -> SpoolName {
        SpoolName {
            original: original.into(),
            key: None,
            full_len: None,
            uniq: None,
            first_attempt: None,
            attempts: 0,
            last_reason: None,
        }
    }

    pub fn parse(name: &OsStr) -> SpoolName {
        let bytes = name.as_bytes();
        if let Some(at) = rfind(bytes, MARKER)
            && at > 0
            && let Some(parsed) = parse_fields(&bytes[at + MARKER.len()..])
        {
            return SpoolName {
                original: OsStr::from_bytes(&bytes[..at]).to_os_string(),
                ..parsed
            };
        }
        SpoolName::fresh(name)
    }

    pub fn to_os_string(&self) -> OsString {
        use std::fmt::Write;
        let mut fields = String::with_capacity(64);
        // Writing to a String cannot fail.
        if let Some(key) = self.key {
            let _ = write!(fields, ".k{key}");
        }
        let original = self.original.as_bytes();
        let (original, full_len) = if original.len() > SHORT_MAX {
            (cut(original), Some(original.len()))
        } else {
            (original, self.full_len.map(|n| n as usize))
        };
        if let Some(n) = full_len {
            let _ = write!(fields, ".n{n}");
        }
        if let Some(uniq) = self.uniq {
            let _ = write!(fields, ".u{uniq:x}");
        }
        if let Some(t) = self.first_attempt {
            let _ = write!(fields, ".t{t}");
        }
        if self.attempts > 0 {
            let _ = write!(fields, ".a{}", self.attempts);
        }
        if let Some(reason) = &self.last_reason {
            let _ = write!(fields, ".r{reason}");
        }
        let mut out = Vec::with_capacity(original.len() + 3 + fields.len());
        out.extend_from_slice(original);
        if !fields.is_empty() {
            out.extend_from_slice(b"~sp");
            out.extend_from_slice(fields.as_bytes());
        }
        OsString::from_vec(out)
    }

    /// Whether the name is too long to be written whole: it needs a key, and
    /// its whole original kept in `names/KEY`.
    pub fn is_long(&self) -> bool {
        self.original.len() > SHORT_MAX || self.full_len.is_some()
    }

    /// Whether `original` holds only the start of the producer's name (as
    /// parsed from a long name, not yet resolved).
    pub fn is_cut(&self) -> bool {
        self.full_len
            .is_some_and(|n| n as usize != self.original.len())
    }

    /// The original name for logs and JSON, with invalid UTF-8 replaced.
    pub fn display_original(&self) -> String {
        self.original.to_string_lossy().into_owned()
    }
}

/// The first [`SHORT_MAX`] bytes of a long original, ending on a character
/// boundary when the cut would split a UTF-8 character, so a cut name stays
/// readable. Deterministic: the same original is always cut the same way.
fn cut(original: &[u8]) -> &[u8] {
    let mut end = SHORT_MAX.min(original.len());
    if std::str::from_utf8(&original[..end]).is_err() {
        // Back off over continuation bytes (at most 3) if that makes it valid.
        let mut e = end;
        while e > end.saturating_sub(3) && e > 0 && original[e] & 0xC0 == 0x80 {
            e -= 1;
        }
        if std::str::from_utf8(&original[..e]).is_ok() {
            end = e;
        }
    }
    &original[..end]
}

/// How long a file waiting in `incoming/` must still wait before its next
/// attempt, or `None` when it is due now. `attempts`, `mtime` (the next
/// attempt time a retry wrote) and `ctime` (when it was last put there) come
/// from the file; `cap` is the longest wait any retry can ask for
/// (`backoff_max`, which also caps `Retry-After`).
///
/// An mtime further out than `cap` after the file was put back (a
/// producer's mtime in 2099, a copy's) counts only up to `ctime + cap`;
/// a ctime in the future means the clock was set back since, and then the
/// file is due at once: an early retry costs one request, a parked file
/// costs the file.
pub fn retry_wait(
    attempts: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    now: SystemTime,
    cap: Duration,
) -> Option<Duration> {
    if attempts == 0 || ctime > now {
        return None;
    }
    let due = mtime.min(ctime + cap);
    due.duration_since(now).ok().filter(|w| !w.is_zero())
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn parse_fields(tail: &[u8]) -> Option<SpoolName> {
    let mut name = SpoolName::fresh(OsString::new());
    let mut last_order = 0;
    for field in tail.split(|&b| b == b'.') {
        let (&tag, value) = field.split_first()?;
        if value.is_empty() {
            return None;
        }
        let order = match tag {
            b'k' => {
                name.key = Some(Key::parse(value)?);
                1
            }
            b'n' => {
                let n = u32::try_from(decimal(value)?).ok()?;
                if n as usize <= SHORT_MAX || n as usize > 4096 {
                    return None;
                }
                name.full_len = Some(n);
                2
            }
            b'u' => {
                if value.len() > 8 || !value.iter().all(|&c| hex_digit(c).is_some()) {
                    return None;
                }
                name.uniq = Some(u32::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()?);
                3
            }
            b't' => {
                name.first_attempt = Some(decimal(value)?);
                4
            }
            b'a' => {
                name.attempts = u32::try_from(decimal(value)?).ok()?;
                5
            }
            b'r' => {
                let valid = value.len() <= 32
                    && value
                        .iter()
                        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
                if !valid {
                    return None;
                }
                name.last_reason = Some(String::from_utf8(value.to_vec()).ok()?);
                6
            }
            _ => return None,
        };
        if order <= last_order {
            return None;
        }
        last_order = order;
    }
    // A cut name is useless without the key that finds its whole original.
    if name.full_len.is_some() && name.key.is_none() {
        return None;
    }
    Some(name)
}

fn decimal(value: &[u8]) -> Option<u64> {
    if value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SpoolName {
        SpoolName::parse(OsStr::new(s))
    }

    #[test]
    fn plain_names_are_fresh() {
        for s in ["a.json", "x~sp", "x~sp.", "~sp.a1", "x~sp.zz", "x~sp.a1.k0"] {
            let n = parse(s);
            assert_eq!(n, SpoolName::fresh(s), "{s}");
            assert_eq!(n.to_os_string(), OsString::from(s), "{s}");
        }
    }

    #[test]
    fn keys_print_as_24_hex_digits_in_byte_order() {
        let key = Key([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x00, 0x0f, 0xf0, 0xff,
        ]);
        assert_eq!(key.to_string(), "0123456789abcdef000ff0ff");
        assert_eq!(Key::parse(key.to_string().as_bytes()), Some(key));
    }

    #[test]
    fn full_state_round_trips() {
        let name = SpoolName {
            original: "orders-1.json".into(),
            key: Some(Key([0xab; 12])),
            full_len: None,
            uniq: Some(0x1f),
            first_attempt: Some(1_700_000_000),
            attempts: 3,
            last_reason: Some("http-503".into()),
        };
        let text = name.to_os_string();
        assert_eq!(
            text,
            OsString::from(
                "orders-1.json~sp.kabababababababababababab.u1f.t1700000000.a3.rhttp-503"
            )
        );
        assert_eq!(SpoolName::parse(&text), name);
    }

    #[test]
    fn fields_out_of_order_or_repeated_are_not_state() {
        for s in ["f~sp.a1.t5", "f~sp.a1.a2", "f~sp.rX", "f~sp.u123456789"] {
            assert_eq!(parse(s).original, OsString::from(s), "{s}");
        }
    }

    #[test]
    fn the_last_marker_wins_and_earlier_ones_stay_in_the_original() {
        let n = parse("a~sp.a1~sp.a2");
        assert_eq!(n.original, OsString::from("a~sp.a1"));
        assert_eq!(n.attempts, 2);
    }

    #[test]
    fn non_utf8_and_newlines_survive() {
        let raw = OsStr::from_bytes(b"caf\xe9\nline.json").to_os_string();
        let mut n = SpoolName::fresh(raw.clone());
        n.attempts = 1;
        let parsed = SpoolName::parse(&n.to_os_string());
        assert_eq!(parsed.original, raw);
        assert_eq!(parsed.attempts, 1);
    }

    #[test]
    fn long_originals_are_cut_with_their_length_and_the_worst_suffix_still_fits() {
        for (fill, len) in [("a", 144), ("a", 255), ("é", 230), ("é", 255)] {
            let mut text = fill.repeat(len / fill.len());
            while text.len() < len {
                text.push('x');
            }
            let mut n = SpoolName::fresh(text.clone());
            n.key = Some(Key([1; 12]));
            n.uniq = Some(u32::MAX);
            n.first_attempt = Some(u64::MAX);
            n.attempts = u32::MAX;
            n.last_reason = Some("x".repeat(32));
            let written = n.to_os_string();
            assert!(written.len() <= NAME_MAX, "{len}: {}", written.len());
            assert!(
                std::str::from_utf8(written.as_bytes()).is_ok(),
                "cut on a boundary"
            );
            let parsed = SpoolName::parse(&written);
            assert!(parsed.is_cut());
            assert_eq!(parsed.full_len, Some(len as u32));
            assert!(text.as_bytes().starts_with(parsed.original.as_bytes()));
            // Written out again (as recovery and requeue do), it is the same name.
            assert_eq!(parsed.to_os_string(), written);
        }
        let short = SpoolName::fresh("a".repeat(SHORT_MAX));
        assert!(!short.is_long());
        assert_eq!(short.to_os_string().len(), SHORT_MAX);
    }

    #[test]
    fn a_length_field_without_a_key_or_for_a_short_name_is_not_state() {
        for s in ["f~sp.n200", "f~sp.kabababababababababababab.n12"] {
            assert_eq!(parse(s).original, OsString::from(s), "{s}");
        }
    }

    #[test]
    fn source_keys_depend_on_every_part_of_the_identity() {
        let k = |dev, ino, size, mtime, name: &str| {
            Key::of_source(dev, ino, size, mtime, OsStr::new(name))
        };
        let base = k(1, 2, 3, 4, "a");
        assert_eq!(base, k(1, 2, 3, 4, "a"));
        for other in [
            k(9, 2, 3, 4, "a"),
            k(1, 9, 3, 4, "a"),
            k(1, 2, 9, 4, "a"),
            k(1, 2, 3, 9, "a"),
            k(1, 2, 3, 4, "b"),
        ] {
            assert_ne!(base, other);
        }
    }

    /// The key of a source file is part of the protocol (docs/spool.md): a
    /// collector of another version, or on a machine of the other byte
    /// order, must mint the same key for the same file, or a redelivery
    /// after a crash would reach the receiver under a key it cannot match.
    #[test]
    fn a_source_key_is_pinned_across_versions_and_byte_orders() {
        let key = Key::of_source(
            0x0102_0304_0506_0708,
            0x1112_1314_1516_1718,
            1024,
            1_700_000_000_123_456_789,
            OsStr::new("orders-1.json"),
        );
        // The same value docs/spool.md gives, worked out independently.
        assert_eq!(key.to_string(), "a9708f483b0306c9c8a2e1a0");
    }

    /// The bytes hashed, spelled out: each number little-endian whatever
    /// the host's order. Run on big-endian POWER under qemu in CI
    /// (docs/platforms.md), where a native-order encoding would differ.
    #[test]
    fn a_source_key_hashes_little_endian_bytes_on_every_host() {
        let mut preimage = b"spoolpost-source-key-v1\0".to_vec();
        preimage.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]); // dev
        preimage.extend_from_slice(&[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]); // ino
        preimage.extend_from_slice(&[0, 4, 0, 0, 0, 0, 0, 0]); // size 1024
        // mtime_ns 1_700_000_000_123_456_789 = 0x1797_9cfe_3d85_cd15, as 16 bytes.
        preimage.extend_from_slice(&[0x15, 0xcd, 0x85, 0x3d, 0xfe, 0x9c, 0x97, 0x17]);
        preimage.extend_from_slice(&[0; 8]);
        preimage.extend_from_slice(b"orders-1.json");
        let digest = ring::digest::digest(&ring::digest::SHA256, &preimage);
        let key = Key::of_source(
            0x0102_0304_0506_0708,
            0x1112_1314_1516_1718,
            1024,
            1_700_000_000_123_456_789,
            OsStr::new("orders-1.json"),
        );
        assert_eq!(key.0, digest.as_ref()[..12]);
        assert_eq!(key.to_string(), "a9708f483b0306c9c8a2e1a0");
    }

    #[test]
    fn retry_waits_are_capped_and_a_clock_set_back_makes_the_file_due() {
        let s = Duration::from_secs;
        let now = SystemTime::UNIX_EPOCH + s(1_000_000);
        let cap = s(300);
        // No attempts yet: due whatever the times.
        assert_eq!(retry_wait(0, now + s(9999), now, now, cap), None);
        // An ordinary retry waits for its mtime.
        assert_eq!(retry_wait(1, now + s(10), now, now, cap), Some(s(10)));
        assert_eq!(retry_wait(1, now - s(1), now - s(5), now, cap), None);
        // An mtime in 2099 waits at most `cap` from when it was put back.
        assert_eq!(
            retry_wait(1, now + s(1 << 40), now - s(100), now, cap),
            Some(s(200))
        );
        assert_eq!(
            retry_wait(1, now + s(1 << 40), now - s(300), now, cap),
            None
        );
        // A ctime ahead of the clock: the clock went back; due now.
        assert_eq!(retry_wait(3, now + s(3600), now + s(3000), now, cap), None);
    }
}
