//! Everything that speaks HTTP: the pooled clients, the request for one file
//! and how its body is made, and turning what came back into an [`Answer`].
//!
//! Bodies are gzip-compressed as they are read. Files up to [`INLINE_MAX`]
//! are read and compressed in one go (the common case, and the cheapest);
//! larger ones are streamed from a blocking thread through a small bounded
//! channel, so memory stays flat whatever the file size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, FlushCompress, Status};
use percent_encoding::{AsciiSet, CONTROLS, percent_encode};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use spoolpost_common::config::Method;
use spoolpost_common::fsops::open_nofollow;
use spoolpost_common::route::Receiver;

use crate::outcome::{Answer, Transport};

/// Files up to this size are compressed in memory in one step.
pub const INLINE_MAX: u64 = 64 * 1024;
/// Read size and channel item size when streaming.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reading thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 2;
/// Bytes of an error answer's body kept for the reason record.
const KEEP_BODY: usize = spoolpost_common::reason::MAX_BODY + 1;
/// `timeout` covers a request of up to this many bytes per second beyond
/// its fixed part, so a large file is not cut off for being large.
const MIN_RATE: u64 = 1024 * 1024;

/// `X-Filename` carries the original name percent-encoded where a header
/// cannot hold it as is: control bytes, non-ASCII bytes, and `%` itself.
const FILENAME_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// Per-receiver request settings, resolved once at start-up.
struct Target {
    client: reqwest::Client,
    method: reqwest::Method,
    headers: HeaderMap,
    gzip: Option<Compression>,
    timeout: Duration,
}

pub struct Http {
    targets: Vec<Target>,
}

/// The result of sending one file.
#[derive(Debug)]
pub struct Sent {
    pub answer: Answer,
    /// The start of the answer body (non-2xx only).
    pub body: Vec<u8>,
    pub error: Option<String>,
    pub bytes_read: u64,
    pub bytes_sent: u64,
    pub latency: Duration,
}

/// Why a file cannot be sent at all: it goes to `error/`.
#[derive(Debug)]
pub struct Unsendable(pub String);

impl Http {
    /// Builds the clients. Receivers that share TLS roots and connect
    /// timeout share one client and its connection pool.
    pub fn new(receivers: &[Receiver]) -> Result<Http, String> {
        // The process-wide rustls provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut clients: HashMap<(Option<PathBuf>, Duration), reqwest::Client> = HashMap::new();
        let mut targets = Vec::new();
        for r in receivers {
            let c = &r.config;
            let key = (c.ca_file.clone(), c.connect_timeout);
            let max_idle = receivers
                .iter()
                .map(|r| r.config.concurrency)
                .max()
                .unwrap_or(1);
            let client = match clients.get(&key) {
                Some(client) => client.clone(),
                None => {
                    let client = build_client(c.ca_file.as_deref(), c.connect_timeout, max_idle)
                        .map_err(|e| format!("receiver {}: {e}", r.name))?;
                    clients.insert(key, client.clone());
                    client
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_str(&c.content_type).map_err(|_| {
                    format!(
                        "receiver {}: content_type {:?} is not a valid header value",
                        r.name, c.content_type
                    )
                })?,
            );
            if c.gzip {
                headers.insert(
                    reqwest::header::CONTENT_ENCODING,
                    HeaderValue::from_static("gzip"),
                );
            }
            for (name, value) in &c.headers {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    format!("receiver {}: {name:?} is not a valid header name", r.name)
                })?;
                let text = value
                    .resolve()
                    .map_err(|e| format!("receiver {}: header {name}: {e}", r.name))?;
                let mut value = HeaderValue::from_str(&text).map_err(|_| {
                    format!(
                        "receiver {}: header {name} has a value that is not a valid header value",
                        r.name
                    )
                })?;
                value.set_sensitive(true);
                headers.insert(header, value);
            }
            targets.push(Target {
                client,
                method: match c.method {
                    Method::Post => reqwest::Method::POST,
                    Method::Put => reqwest::Method::PUT,
                },
                headers,
                gzip: c.gzip.then(|| Compression::new(c.gzip_level)),
                timeout: c.timeout,
            });
        }
        Ok(Http { targets })
    }

    /// Opens the file safely: never through a symlink, never blocking on a
    /// FIFO, and only if it is a regular file.
    pub fn open(path: &Path) -> Result<(File, u64), OpenError> {
        let file = open_nofollow(path).map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => {
                OpenError::Unsendable(Unsendable(
                    "the file is a symlink; spoolpost does not follow symlinks in the spool".into(),
                ))
            }
            _ if e.kind() == io::ErrorKind::NotFound => OpenError::Vanished,
            _ if e.kind() == io::ErrorKind::PermissionDenied => OpenError::Unsendable(Unsendable(
                format!("cannot read the file ({e}); fix its permissions and requeue it"),
            )),
            _ => OpenError::Io(e),
        })?;
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::Unsendable(Unsendable(
                "not a regular file".into(),
            )));
        }
        Ok((file, meta.len()))
    }

    /// Sends one file to receiver `receiver` at `url`.
    pub async fn send(
        &self,
        receiver: usize,
        url: &reqwest::Url,
        file: File,
        size: u64,
        key: &str,
        original: &[u8],
    ) -> Sent {
        let target = &self.targets[receiver];
        let started = Instant::now();
        let read = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let read_failed = Arc::new(AtomicBool::new(false));
        let body = match make_body(file, size, target.gzip, &read, &sent, &read_failed) {
            Ok(body) => body,
            Err(e) => {
                return Sent {
                    answer: Answer::Failed(Transport::LocalRead),
                    body: Vec::new(),
                    error: Some(format!("cannot read the file: {e}")),
                    bytes_read: read.load(Ordering::Relaxed),
                    bytes_sent: 0,
                    latency: started.elapsed(),
                };
            }
        };
        let filename = percent_encode(original, FILENAME_ESCAPES).to_string();
        let request = target
            .client
            .request(target.method.clone(), url.clone())
            .headers(target.headers.clone())
            .header("Idempotency-Key", key)
            .header(
                "X-Filename",
                HeaderValue::from_str(&filename).unwrap_or(HeaderValue::from_static("unnamed")),
            )
            .timeout(target.timeout + Duration::from_secs(size / MIN_RATE))
            .body(body);
        let result = request.send().await;
        let (answer, body, error) = match result {
            Ok(response) => {
                let code = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = read_answer_body(response, (200..300).contains(&code)).await;
                (Answer::Status { code, retry_after }, body, None)
            }
            Err(e) => {
                let transport = if read_failed.load(Ordering::Relaxed) {
                    Transport::LocalRead
                } else {
                    classify_error(&e)
                };
                (Answer::Failed(transport), Vec::new(), Some(error_chain(&e)))
            }
        };
        Sent {
            answer,
            body,
            error,
            bytes_read: read.load(Ordering::Relaxed),
            bytes_sent: sent.load(Ordering::Relaxed),
            latency: started.elapsed(),
        }
    }
}

#[derive(Debug)]
pub enum OpenError {
    /// The file is gone from the claim folder (someone removed it).
    Vanished,
    Unsendable(Unsendable),
    Io(io::Error),
}

fn build_client(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
    max_idle: usize,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("spoolpost-sender/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "ca_file {} holds no usable PEM certificate: {e}",
                path.display()
            )
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

fn make_body(
    mut file: File,
    size: u64,
    gzip: Option<Compression>,
    read: &Arc<AtomicU64>,
    sent: &Arc<AtomicU64>,
    read_failed: &Arc<AtomicBool>,
) -> io::Result<reqwest::Body> {
    if size <= INLINE_MAX {
        // The size is known from the open: read exactly that much. (A plain
        // read_to_end would stat and seek the file again and read once more
        // to find the end; spool files do not change.)
        let mut data = Vec::with_capacity(size as usize);
        (&mut file).take(size).read_to_end(&mut data)?;
        read.store(data.len() as u64, Ordering::Relaxed);
        let body = match gzip {
            Some(level) => gzip_small(&data, level)?,
            None => data,
        };
        sent.store(body.len() as u64, Ordering::Relaxed);
        return Ok(reqwest::Body::from(body));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let (read, sent, read_failed) = (read.clone(), sent.clone(), read_failed.clone());
    tokio::task::spawn_blocking(move || {
        let result = stream_file(&mut file, gzip, &tx, &read, &sent);
        if let Err(e) = result {
            read_failed.store(true, Ordering::Relaxed);
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

thread_local! {
    /// One reusable compressor per level on each runtime thread. A deflate
    /// state is a few hundred KiB to allocate and clear, far more work than
    /// compressing a 1 KiB file, so small files reuse one (`reset`) instead.
    static COMPRESSORS: std::cell::RefCell<Vec<(u32, Compress)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gzips a small body in one go with a reused compressor.
fn gzip_small(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
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

/// Reads, compresses and hands over chunks until the file ends. Returns
/// early without error when the request was dropped (the receiver answered
/// or the connection failed), which the caller learns from the response.
fn stream_file(
    file: &mut File,
    gzip: Option<Compression>,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    read: &AtomicU64,
    sent: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut encoder = gzip.map(|level| GzEncoder::new(Vec::with_capacity(CHUNK + 1024), level));
    let hand_over = |chunk: Vec<u8>| {
        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
    };
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        read.fetch_add(n as u64, Ordering::Relaxed);
        let chunk = match encoder.as_mut() {
            None => buf[..n].to_vec(),
            Some(enc) => {
                enc.write_all(&buf[..n])?;
                if enc.get_ref().len() < CHUNK {
                    continue;
                }
                std::mem::replace(enc.get_mut(), Vec::with_capacity(CHUNK + 1024))
            }
        };
        if !hand_over(chunk) {
            return Ok(());
        }
    }
    if let Some(enc) = encoder {
        let rest = enc.finish()?;
        hand_over(rest);
    }
    Ok(())
}

/// Reads the answer body: all of it for a 2xx (so the connection can be
/// reused), a bounded start of it otherwise (for the reason record).
async fn read_answer_body(mut response: reqwest::Response, success: bool) -> Vec<u8> {
    let mut kept = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if !success && kept.len() < KEEP_BODY {
            let room = KEEP_BODY - kept.len();
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if !success && kept.len() >= KEEP_BODY {
            break;
        }
    }
    kept
}

fn classify_error(e: &reqwest::Error) -> Transport {
    if e.is_timeout() {
        return Transport::Timeout;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.is::<rustls::Error>() {
            return Transport::Tls;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return Transport::Reset;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => return Transport::Reset,
                io::ErrorKind::TimedOut => return Transport::Timeout,
                _ => {}
            }
        }
        cause = next_cause(err);
    }
    if e.is_connect() {
        Transport::Connect
    } else {
        Transport::Other
    }
}

/// The next error in a chain. `io::Error::source()` skips the error it
/// wraps (TLS errors arrive wrapped that way, sometimes twice), so an
/// `io::Error` is looked into rather than past.
fn next_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
        Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
        None => err.source(),
    }
}

/// An error and its causes on one line, as reqwest's Display shows only the
/// outermost ("error sending request").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = next_cause(e);
    while let Some(err) = cause {
        let more = err.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = next_cause(err);
    }
    text
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
}
