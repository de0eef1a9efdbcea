//! A receiver's request headers, and keeping their secrets current: values
//! from `{ file = … }` are read again at most once every [`RECHECK`], at
//! once after the receiver refused our credentials (so the probe of an
//! `auth` circuit carries the newest secret), and on SIGHUP, when a new
//! configuration may replace them all. A rotated token thus lets waiting
//! files through without a restart. A secret that cannot be read keeps
//! its last good value, with a warning.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, CONTROLS, percent_encode};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use spoolpost_ops::config::{self, BodyEncoding, ReceiverConfig};

/// The least time between two reads of a receiver's secret files.
pub const RECHECK: Duration = Duration::from_secs(1);

pub struct Headers {
    receiver: String,
    state: Mutex<State>,
}

struct State {
    /// Content type and encoding: fixed for the receiver's configuration.
    fixed: HeaderMap,
    configured: Arc<Vec<(HeaderName, config::HeaderValue)>>,
    /// Whether any value comes from a file, the only kind that changes.
    has_files: bool,
    current: Arc<HeaderMap>,
    checked: Instant,
    /// Read again before the next request, whatever the time.
    stale: bool,
}

impl Headers {
    pub fn new(receiver: &str, c: &ReceiverConfig, now: Instant) -> Result<Headers, String> {
        Ok(Headers {
            receiver: receiver.to_owned(),
            state: Mutex::new(State::new(receiver, c, now)?),
        })
    }

    /// The headers for a request starting now.
    pub fn current(&self, now: Instant) -> Arc<HeaderMap> {
        let (configured, fixed) = {
            let mut state = self.state.lock().unwrap();
            if !state.has_files
                || (!state.stale && now.saturating_duration_since(state.checked) < RECHECK)
            {
                return state.current.clone();
            }
            state.checked = now;
            state.stale = false;
            (state.configured.clone(), state.fixed.clone())
        };
        // Read outside the lock: a slow file system delays one request,
        // not every request to this receiver.
        let fresh = resolve(&self.receiver, fixed, &configured);
        let mut state = self.state.lock().unwrap();
        match fresh {
            // A reload may have replaced the configuration meanwhile.
            Ok(map) if Arc::ptr_eq(&state.configured, &configured) => {
                if *state.current != map {
                    tracing::info!(receiver = %self.receiver, "a header secret changed; sending the new value");
                    state.current = Arc::new(map);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(receiver = %self.receiver, error = %e, "cannot read a header secret again; keeping its last value")
            }
        }
        state.current.clone()
    }

    /// The receiver refused our credentials: read the secrets again before
    /// the next request.
    pub fn mark_stale(&self) {
        self.state.lock().unwrap().stale = true;
    }

    /// Takes a new configuration's headers (SIGHUP), for requests that
    /// start from now on.
    pub fn replace(&self, c: &ReceiverConfig, now: Instant) -> Result<(), String> {
        let fresh = State::new(&self.receiver, c, now)?;
        *self.state.lock().unwrap() = fresh;
        Ok(())
    }
}

impl State {
    fn new(receiver: &str, c: &ReceiverConfig, now: Instant) -> Result<State, String> {
        let mut fixed = HeaderMap::new();
        fixed.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_str(&c.content_type).map_err(|_| {
                format!(
                    "receiver {receiver}: content_type {:?} is not a valid header value",
                    c.content_type
                )
            })?,
        );
        if let Some(s3) = &c.s3
            && s3.compressed_as == config::S3Compressed::Suffix
        {
            match c.encoding() {
                BodyEncoding::Gzip(_) => fixed.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/gzip"),
                ),
                BodyEncoding::Zstd(_) => fixed.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/zstd"),
                ),
                BodyEncoding::Identity => None,
            };
        }
        // An S3 receiver storing a compressed body under a suffix stores
        // the compressed file as what it is, not as an encoding of it.
        let stored_as_file =
            c.s3.as_ref()
                .is_some_and(|s3| s3.compressed_as == config::S3Compressed::Suffix);
        let encoding = match c.encoding() {
            _ if stored_as_file => None,
            BodyEncoding::Identity => None,
            BodyEncoding::Gzip(_) => Some("gzip"),
            BodyEncoding::Zstd(_) => Some("zstd"),
        };
        if let Some(encoding) = encoding {
            fixed.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding),
            );
        }
        let configured = c
            .headers
            .iter()
            .map(|(name, value)| {
                HeaderName::from_bytes(name.as_bytes())
                    .map(|h| (h, value.clone()))
                    .map_err(|_| {
                        format!("receiver {receiver}: {name:?} is not a valid header name")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let current = resolve(receiver, fixed.clone(), &configured)?;
        Ok(State {
            has_files: configured
                .iter()
                .any(|(_, v)| matches!(v, config::HeaderValue::File { .. })),
            fixed,
            configured: Arc::new(configured),
            current: Arc::new(current),
            checked: now,
            stale: false,
        })
    }
}

/// What `X-Filename` escapes wherever it is: control bytes, non-ASCII
/// bytes, and `%` itself.
const FILENAME_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// `X-Filename` for an original name: percent-encoded where a header cannot
/// hold it as is. Besides [`FILENAME_ESCAPES`], spaces at either end are
/// encoded (`%20`): HTTP strips white space around a header value, so
/// `" a.json"` would arrive as `"a.json"` and collide with another file.
/// Spaces inside the name stay as they are, readable.
pub fn x_filename(original: &[u8]) -> HeaderValue {
    // Most names need no escape: copied straight into the value, one
    // allocation, where encoding builds a string and copies it again.
    let plain = |b: &u8| (b' '..=b'~').contains(b) && *b != b'%';
    if original.iter().all(plain)
        && original.first() != Some(&b' ')
        && original.last() != Some(&b' ')
        && let Ok(value) = HeaderValue::from_bytes(original)
    {
        return value;
    }
    HeaderValue::from_str(&x_filename_encoded(original))
        .unwrap_or(HeaderValue::from_static("unnamed"))
}

fn x_filename_encoded(original: &[u8]) -> String {
    let start = original.iter().take_while(|b| **b == b' ').count();
    let end = original.len()
        - original[start..]
            .iter()
            .rev()
            .take_while(|b| **b == b' ')
            .count();
    let mut out = "%20".repeat(start);
    out.extend(percent_encode(&original[start..end], FILENAME_ESCAPES));
    out.push_str(&"%20".repeat(original.len() - end));
    out
}

fn resolve(
    receiver: &str,
    mut map: HeaderMap,
    configured: &[(HeaderName, config::HeaderValue)],
) -> Result<HeaderMap, String> {
    for (name, value) in configured {
        let text = value
            .resolve_header()
            .map_err(|e| format!("receiver {receiver}: header {name}: {e}"))?;
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            format!(
                "receiver {receiver}: header {name} has a value that is not a valid header value"
            )
        })?;
        value.set_sensitive(true);
        map.insert(name.clone(), value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(secret: &std::path::Path) -> ReceiverConfig {
        let mut c = ReceiverConfig::for_url("http://127.0.0.1:1/");
        c.headers.insert(
            "Authorization".into(),
            config::HeaderValue::File {
                file: secret.to_path_buf(),
            },
        );
        c
    }

    fn auth(h: &Headers, now: Instant) -> String {
        h.current(now)["authorization"].to_str().unwrap().to_owned()
    }

    #[test]
    fn x_filename_encodes_what_a_header_would_lose_or_cannot_hold() {
        let table: &[(&[u8], &str)] = &[
            (b"a.json", "a.json"),
            (b" a.json", "%20a.json"),
            (b"a.json ", "a.json%20"),
            (b"  a b.json  ", "%20%20a b.json%20%20"),
            (b" ", "%20"),
            (b"   ", "%20%20%20"),
            (b"", ""),
            (b"100%.json", "100%25.json"),
            (b"new\nline\t.json", "new%0Aline%09.json"),
            (b"caf\xe9.json", "caf%E9.json"),
            (b"a b~{}.json", "a b~{}.json"),
            (b"del\x7f.json", "del%7F.json"),
        ];
        for (name, want) in table {
            let got = x_filename(name);
            // Whatever the name, the value is a valid header value that
            // keeps every byte of it, whether it took the quick way or not.
            assert_eq!(got.to_str().unwrap(), *want, "{name:?}");
            assert_eq!(x_filename_encoded(name), *want, "{name:?}");
        }
    }

    #[test]
    fn a_rewritten_secret_file_is_read_at_most_once_a_second_or_at_once_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "old\n").unwrap();
        let t0 = Instant::now();
        let h = Headers::new("r", &receiver(&secret), t0).unwrap();
        assert_eq!(auth(&h, t0), "old");
        std::fs::write(&secret, "new\n").unwrap();
        assert_eq!(auth(&h, t0 + RECHECK / 2), "old", "read again too soon");
        assert_eq!(auth(&h, t0 + RECHECK), "new");
        std::fs::write(&secret, "newer").unwrap();
        h.mark_stale();
        assert_eq!(auth(&h, t0 + RECHECK), "newer", "stale: read at once");
        // Unreadable: the last good value stays.
        std::fs::remove_file(&secret).unwrap();
        assert_eq!(auth(&h, t0 + RECHECK * 3), "newer");
    }

    #[test]
    fn a_reload_replaces_the_headers_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "one").unwrap();
        let t0 = Instant::now();
        let h = Headers::new("r", &receiver(&secret), t0).unwrap();
        let mut c = ReceiverConfig::for_url("http://127.0.0.1:1/");
        c.headers
            .insert("X-New".into(), config::HeaderValue::Literal("v".into()));
        h.replace(&c, t0).unwrap();
        let map = h.current(t0);
        assert_eq!(map["x-new"], "v");
        assert!(map.get("authorization").is_none());
        let bad = receiver(&dir.path().join("missing"));
        assert!(h.replace(&bad, t0).unwrap_err().contains("missing"));
        assert_eq!(h.current(t0)["x-new"], "v");
    }
}
