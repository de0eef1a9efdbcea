//! Everything that speaks HTTP: the pooled clients, the request for one file
//! and how its body is made, and turning what came back into an [`Answer`].
//!
//! Bodies are compressed (gzip or zstd, or not at all) as they are read. Files up to [`INLINE_MAX`]
//! are read and compressed in one go (the common case, and the cheapest);
//! larger ones are streamed from a blocking thread through a small bounded
//! channel, so memory stays flat whatever the file size.
//!
//! A body is only ever complete if the file stayed what was claimed
//! ([`crate::net::file::verify`] after the last read): an inline body is checked
//! before the request is made, a streamed one before its last bytes go, and
//! a change ends the stream with an error so the receiver sees a broken
//! body, never a clean end. An answer that comes before the stream reached
//! its end is marked early ([`Early`]).
//!
//! Error texts leave this module only through [`error_text`], which takes
//! the URL out of reqwest's errors and redacts any other.
//!
//! Each receiver's client comes from [`crate::net::client`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, FlushCompress, Status};
use reqwest::header::{HeaderName, HeaderValue};
use spoolpost_common::config::{BodyEncoding, Method};
use spoolpost_common::proxy::EnvProxies;
use spoolpost_common::route::Receiver;

use crate::net::client::{Client, ClientSettings};
use crate::net::file::{Change, Snapshot, change_error, verify};
use crate::net::headers::Headers;
use crate::rules::outcome::{Answer, Early, Transport};

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

/// The headers every request carries besides the receiver's own.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_FILENAME: HeaderName = HeaderName::from_static("x-filename");

/// Per-receiver request settings, resolved once at start-up.
struct Target {
    client: Client,
    /// `server_name`: the URL's host is replaced by it, and the client
    /// resolves it to where the URL pointed.
    server_name: Option<String>,
    method: reqwest::Method,
    headers: Headers,
    encoding: Encoding,
    timeout: Duration,
}

/// The proxy environment as start-up reads it; installs the process-wide
/// rustls provider first (a second install is harmless).
fn env_proxies() -> Result<EnvProxies, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    EnvProxies::from_lookup(|name| std::env::var(name).ok())
}

impl Target {
    /// Receiver `r`'s client (shared through `clients` with receivers of
    /// equal settings) and headers: every start-up refusal of a receiver
    /// is made here.
    fn new(
        r: &Receiver,
        all: &[Receiver],
        env: &EnvProxies,
        clients: &mut HashMap<ClientSettings, reqwest::Client>,
    ) -> Result<Target, String> {
        let c = &r.config;
        let key = ClientSettings::of(c, env).map_err(|e| format!("receiver {}: {e}", r.name))?;
        let max_idle = all.iter().map(|r| r.config.concurrency).max().unwrap_or(1);
        let client = Client::new(key.clone(), max_idle, clients.get(&key).cloned())
            .map_err(|e| format!("receiver {}: {e}", r.name))?;
        clients
            .entry(key)
            .or_insert_with(|| client.current(Instant::now()));
        let headers = Headers::new(&r.name, c, Instant::now())?;
        Ok(Target {
            client,
            server_name: c.server_name.clone(),
            method: match c.method {
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
            },
            headers,
            encoding: c.encoding().into(),
            timeout: c.timeout,
        })
    }
}

/// How a body is compressed, resolved from the receiver's settings.
#[derive(Clone, Copy, Debug)]
enum Encoding {
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

/// What a body's making shares with the request: how far it got, and
/// what went wrong on the local side.
#[derive(Default)]
struct Progress {
    /// Bytes read from the file.
    read: AtomicU64,
    /// Body bytes the connection took.
    sent: AtomicU64,
    /// The body reached its end: all of it was handed to the connection.
    whole: AtomicBool,
    local: Mutex<Option<Local>>,
}

/// A failure on the local side while making the body.
#[derive(Debug)]
enum Local {
    Read(String),
    Changed(Change),
}

impl Progress {
    fn fail(&self, local: Local) {
        self.local.lock().unwrap().get_or_insert(local);
    }
}

impl Http {
    /// Builds the clients. Receivers that share TLS roots and connect
    /// timeout share one client and its connection pool.
    pub fn new(receivers: &[Receiver]) -> Result<Http, String> {
        let env = env_proxies()?;
        let mut clients = HashMap::new();
        let mut targets = Vec::new();
        for r in receivers {
            if r.config.insecure_skip_verify {
                tracing::warn!(
                    receiver = %r.name,
                    "{}",
                    spoolpost_common::preflight::insecure_warning(&r.name)
                );
            }
            targets.push(Target::new(r, receivers, &env, &mut clients)?);
        }
        Ok(Http { targets })
    }

    /// Every refusal [`Http::new`] would make, not only the first, for
    /// `--check`: made by the very steps start-up takes (the proxy
    /// environment, then each receiver's client and headers), so `--check`
    /// cannot pass what start-up refuses. Nothing connects.
    /// Each refusal names its receiver, `None` for the proxy environment.
    pub fn refusals(receivers: &[Receiver]) -> Vec<(Option<&str>, String)> {
        let mut refused = Vec::new();
        let env = env_proxies().unwrap_or_else(|e| {
            refused.push((None, e));
            EnvProxies::default()
        });
        let mut clients = HashMap::new();
        for r in receivers {
            if let Err(e) = Target::new(r, receivers, &env, &mut clients) {
                refused.push((Some(r.name.as_str()), e));
            }
        }
        refused
    }

    /// Sends one file, open as `file` and claimed as `claimed` at `path`,
    /// to receiver `receiver` at `url`.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        receiver: usize,
        url: &reqwest::Url,
        file: File,
        claimed: Snapshot,
        path: &Path,
        key: &str,
        original: &[u8],
    ) -> Sent {
        let target = &self.targets[receiver];
        let started = Instant::now();
        let size = claimed.len;
        let progress = Arc::new(Progress::default());
        let body = match make_body(file, claimed, path, target.encoding, &progress) {
            Ok(body) => body,
            Err(local) => {
                let (answer, error) = match local {
                    Local::Read(text) => (Answer::LocalRead, text),
                    Local::Changed(change) => (Answer::Changed(change), change.to_string()),
                };
                return Sent {
                    answer,
                    body: Vec::new(),
                    error: Some(error),
                    bytes_read: progress.read.load(Ordering::Relaxed),
                    bytes_sent: 0,
                    latency: started.elapsed(),
                };
            }
        };
        let filename = crate::net::headers::x_filename(original);
        let mut url = url.clone();
        if let Some(name) = &target.server_name {
            // Checked at start: a DNS name, so the URL takes it.
            let _ = url.set_host(Some(name));
        }
        let now = Instant::now();
        let client = target.client.current(now);
        // The builder moves credentials in the URL into a sensitive
        // Authorization header (and out of the URL, where hyper's pool and
        // logs would show them); the rest is set on the request itself,
        // which costs less than the builder copying headers one by one and
        // parsing the names of ours on every request.
        let result = match client.request(target.method.clone(), url).build() {
            Ok(mut request) => {
                let headers = request.headers_mut();
                let configured = target.headers.current(now);
                if headers.is_empty() {
                    *headers = (*configured).clone();
                } else {
                    // As the builder's `headers`: a configured header
                    // replaces one the URL gave.
                    for name in configured.keys() {
                        headers.remove(name);
                    }
                    for (name, value) in configured.iter() {
                        headers.append(name.clone(), value.clone());
                    }
                }
                headers.insert(
                    IDEMPOTENCY_KEY,
                    HeaderValue::from_str(key).expect("a key is hex digits"),
                );
                headers.insert(
                    X_FILENAME,
                    HeaderValue::from_str(&filename).unwrap_or(HeaderValue::from_static("unnamed")),
                );
                *request.timeout_mut() =
                    Some(target.timeout + Duration::from_secs(size / MIN_RATE));
                *request.body_mut() = Some(body);
                client.execute(request).await
            }
            Err(e) => Err(e),
        };
        let local = progress.local.lock().unwrap().take();
        let (answer, body, error) = match (local, result) {
            // Whatever the receiver said, it did not get the claimed file.
            (Some(Local::Changed(change)), _) => (
                Answer::Changed(change),
                Vec::new(),
                Some(change.to_string()),
            ),
            (Some(Local::Read(text)), Err(_)) => (Answer::LocalRead, Vec::new(), Some(text)),
            (_, Ok(response)) => {
                let code = response.status().as_u16();
                if matches!(code, 401 | 407) {
                    target.headers.mark_stale();
                }
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let early = (!progress.whole.load(Ordering::Acquire)).then(|| Early {
                    read: progress.read.load(Ordering::Relaxed),
                    size,
                });
                let delivered = (200..300).contains(&code) && early.is_none();
                let body = read_answer_body(response, delivered).await;
                let answer = Answer::Status {
                    code,
                    retry_after,
                    early,
                };
                (answer, body, None)
            }
            // A proxy that refused our credentials for a tunnel answers
            // 407 before any receiver is reached; reqwest reports it as a
            // failed connect, but it is our credentials that are wrong.
            (_, Err(e)) if proxy_refused_credentials(&e) => (
                Answer::Status {
                    code: 407,
                    retry_after: None,
                    early: None,
                },
                Vec::new(),
                Some(format!(
                    "the proxy refused our credentials (407): {}",
                    error_text(e)
                )),
            ),
            (_, Err(e)) => {
                let transport = classify_error(&e);
                if transport == Transport::Tls {
                    target.client.mark_stale();
                }
                (Answer::Failed(transport), Vec::new(), Some(error_text(e)))
            }
        };
        Sent {
            answer,
            body,
            error,
            bytes_read: progress.read.load(Ordering::Relaxed),
            bytes_sent: progress.sent.load(Ordering::Relaxed),
            latency: started.elapsed(),
        }
    }
}

fn make_body(
    mut file: File,
    claimed: Snapshot,
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
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let progress = consumer.clone();
        async move {
            match rx.recv().await {
                Some(Ok(chunk)) => {
                    progress
                        .sent
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
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

thread_local! {
    /// One reusable zstd context per level on each runtime thread, for the
    /// same reason as [`COMPRESSORS`]: a context's tables cost more to set
    /// up than a small file costs to compress.
    static ZSTD_CONTEXTS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Compresses a small body to one zstd frame with a reused context.
fn zstd_small(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
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
enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(encoding: Encoding) -> io::Result<Option<Encoder>> {
        let buf = Vec::with_capacity(CHUNK + 1024);
        Ok(match encoding {
            Encoding::Identity => None,
            Encoding::Gzip(level) => Some(Encoder::Gzip(GzEncoder::new(buf, level))),
            Encoding::Zstd(level) => Some(Encoder::Zstd(zstd::stream::write::Encoder::new(
                buf, level,
            )?)),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// The compressed bytes so far.
    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// Reads, compresses and hands over chunks until the file ends, then
/// checks that the file is still what was claimed before the last bytes
/// go. Returns early without error when the request was dropped (the
/// receiver answered or the connection failed), which the caller learns
/// from the response.
fn stream_file(
    file: &mut File,
    claimed: Snapshot,
    path: &Path,
    encoding: Encoding,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    progress: &Progress,
) -> Result<(), Local> {
    let read_error = |e: io::Error| Local::Read(format!("cannot read the file: {e}"));
    let mut buf = vec![0u8; CHUNK];
    let mut encoder = Encoder::new(encoding)
        .map_err(|e| Local::Read(format!("cannot set up compression: {e}")))?;
    let hand_over = |chunk: Vec<u8>| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
    let mut total = 0u64;
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
            None => buf[..n].to_vec(),
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
    let chain = || causes(e);
    // A TLS error anywhere in the chain is the cause, even under a hyper
    // error that says the connection ended: a receiver that refuses our
    // certificate sends its alert and closes, and which of the two the
    // client notices first is a race.
    if chain().any(|err| err.is::<rustls::Error>()) {
        return Transport::Tls;
    }
    for err in chain() {
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
    }
    if e.is_connect() {
        Transport::Connect
    } else {
        Transport::Other
    }
}

/// `e` and every error under it.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| next_cause(*err))
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

/// The text of a request's error for events, logs and reason records: its
/// whole chain, without the URL reqwest puts in its own text, and with any
/// URL a cause quotes redacted (user info and query may hold secrets).
pub fn error_text(e: reqwest::Error) -> String {
    spoolpost_common::redact::text(&error_chain(&e.without_url()))
}

/// Whether a tunnel failed on the proxy's 407. hyper-util's tunnel error
/// type is not public, so its text is what tells.
fn proxy_refused_credentials(e: &reqwest::Error) -> bool {
    e.is_connect() && error_chain(e).contains("proxy authorization required")
}

/// An error and its causes on one line, as reqwest's Display shows only the
/// outermost ("error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
