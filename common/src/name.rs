//! Spool file names: how a file carries its identity and retry state.
//!
//! A file's whole state lives in its name (plus its mtime, see below), so a
//! single atomic rename moves the file *and* its state together; there is no
//! sidecar to get out of step with the data after a crash.
//!
//! ```text
//! spool-name = original [ "~sp" 1*( "." field ) ]
//! field      = "k" key        ; 24 lowercase hex digits, the idempotency key
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

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

const MARKER: &[u8] = b"~sp.";

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
        let original = self.original.as_bytes();
        let mut out = Vec::with_capacity(original.len() + 3 + fields.len());
        out.extend_from_slice(original);
        if !fields.is_empty() {
            out.extend_from_slice(b"~sp");
            out.extend_from_slice(fields.as_bytes());
        }
        OsString::from_vec(out)
    }

    /// The original name for logs and JSON, with invalid UTF-8 replaced.
    pub fn display_original(&self) -> String {
        self.original.to_string_lossy().into_owned()
    }
}

/// Turns any text into a valid reason token: lowercase ASCII letters, digits
/// and dashes, at most 32 of them.
pub fn reason_token(text: &str) -> String {
    let mut token: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if token.is_empty() {
        token.push('-');
    }
    token
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
            b'u' => {
                if value.len() > 8 || !value.iter().all(|&c| hex_digit(c).is_some()) {
                    return None;
                }
                name.uniq = Some(u32::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()?);
                2
            }
            b't' => {
                name.first_attempt = Some(decimal(value)?);
                3
            }
            b'a' => {
                name.attempts = u32::try_from(decimal(value)?).ok()?;
                4
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
                5
            }
            _ => return None,
        };
        if order <= last_order {
            return None;
        }
        last_order = order;
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
    fn reason_tokens_are_always_valid() {
        assert_eq!(reason_token("HTTP 503"), "http-503");
        assert_eq!(reason_token(""), "-");
        assert_eq!(reason_token(&"x".repeat(50)).len(), 32);
        let mut n = SpoolName::fresh("f");
        n.last_reason = Some(reason_token("connection reset by peer"));
        assert_eq!(SpoolName::parse(&n.to_os_string()), n);
    }
}
