//! Sending one file: the request for it (the receiver's headers, the
//! `Idempotency-Key` and `X-Filename`, a timeout that grows with the
//! file), its body ([`crate::net::body`]), and turning what came back into
//! an [`Answer`] for the rules. An answer that comes before the body
//! reached its end is marked early ([`Early`]).
//!
//! Each receiver's client and settings come from [`crate::net::target`];
//! a failed request's error is classified by [`crate::net::transport`].

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use spoolpost_ops::proxy::EnvProxies;
use spoolpost_ops::route::Receiver;

use crate::net::body::{INLINE_MAX, Local, Progress, make_body};
use crate::net::parts::Parts;
use crate::net::target::{Target, env_proxies};
use crate::net::transport::{classify_error, error_text, proxy_refused_credentials};
use crate::rules::change::Stat;
use crate::rules::outcome::{Answer, Early, Transport};
use crate::rules::{multipart, s3_error};

/// Bytes of an error answer's body kept for the reason record.
pub(super) const KEEP_BODY: usize = spoolpost_protocol::reason::MAX_BODY + 1;
/// `timeout` covers a request of up to this many bytes per second beyond
/// its fixed part, so a large file is not cut off for being large.
pub(super) const MIN_RATE: u64 = 1024 * 1024;

/// The headers every request carries besides the receiver's own.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_FILENAME: HeaderName = HeaderName::from_static("x-filename");

pub struct Http {
    targets: Vec<Target>,
    /// The spool root, where S3 receivers record their multipart uploads.
    spool: Option<std::path::PathBuf>,
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
    /// Where the file went when that is not the routed URL: an S3
    /// object's own URL (bucket, key with the file's idempotency key in
    /// it, suffix), unsigned, for the reason record and event line.
    pub location: Option<reqwest::Url>,
}

impl Sent {
    /// A request given up on before any answer came, after `latency`, for
    /// the reason `why`: as if its timeout had come.
    pub fn unanswered(why: String, latency: Duration) -> Sent {
        Sent {
            answer: Answer::Failed(Transport::Timeout),
            body: Vec::new(),
            error: Some(why),
            bytes_read: 0,
            bytes_sent: 0,
            latency,
            location: None,
        }
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
                    spoolpost_ops::preflight::insecure_warning(&r.name)
                );
            }
            targets.push(Target::new(r, receivers, &env, &mut clients)?);
        }
        Ok(Http {
            targets,
            spool: None,
        })
    }

    /// Where multipart uploads are recorded: the spool at `root`. Without
    /// it (`--check`), a file that needs one is not sent.
    pub fn with_spool(mut self, root: &Path) -> Http {
        self.spool = Some(root.to_path_buf());
        self
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

    /// `--probe` of an S3 receiver (`receiver`, an index): a signed HEAD of
    /// its bucket through the receiver's own client. `None` for a receiver
    /// that is not a bucket. Whether the credentials may write is not
    /// proven: only a write would, and a probe writes nothing.
    pub async fn probe_bucket(&self, receiver: usize) -> Option<Result<String, String>> {
        let target = &self.targets[receiver];
        let s3 = target.s3.as_ref()?;
        let now = Instant::now();
        let bucket = s3.bucket_name();
        let request = target
            .client
            .current(now)
            .head(s3.head_bucket(now))
            .timeout(target.timeout);
        Some(match request.send().await {
            Ok(answer) => match answer.status().as_u16() {
                code @ 200..=299 => Ok(format!(
                    "bucket {bucket} exists and the store takes our signature (HEAD {code})"
                )),
                404 => Err(format!("bucket {bucket}: no such bucket (HEAD 404)")),
                403 => Err(format!(
                    "bucket {bucket}: the store refused our signature or its policy refuses us (HEAD 403); check the keys and the region"
                )),
                code => Err(format!("bucket {bucket}: HEAD answered {code}")),
            },
            Err(e) => Err(format!("bucket {bucket}: {}", error_text(e))),
        })
    }

    /// Sends one file, open as `file` and claimed as `claimed` at `path`,
    /// to receiver `receiver` at `url`.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        receiver: usize,
        url: &reqwest::Url,
        file: File,
        claimed: Stat,
        path: &Path,
        key: &str,
        original: &[u8],
    ) -> Sent {
        let mut sent = self
            .send_to(receiver, url, file, claimed, path, key, original)
            .await;
        if let Some(s3) = &self.targets[receiver].s3 {
            sent.location = s3.object(url, key).ok().and_then(|o| s3.object_url(&o));
        }
        sent
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_to(
        &self,
        receiver: usize,
        url: &reqwest::Url,
        file: File,
        claimed: Stat,
        path: &Path,
        key: &str,
        original: &[u8],
    ) -> Sent {
        let target = &self.targets[receiver];
        let started = Instant::now();
        let size = claimed.len;
        let filename = crate::net::headers::x_filename(original);
        let signed = match &target.s3 {
            None => None,
            // The header's text: visible ASCII, escaped where it was not.
            Some(s3) => match s3.sign(url, key, filename.to_str().unwrap_or("unnamed"), started) {
                Ok(signed) => Some(signed),
                Err(why) => return unsendable(started, why),
            },
        };
        let progress = Arc::new(Progress::default());
        // An S3 store wants a body's length first: a compressed body is
        // compressed a part at a time, and goes in one PUT with its length
        // if it fits, in parts otherwise; so does an unencoded one above
        // `multipart_above`.
        let mut prepared = None;
        let mut file = Some(file);
        if let Some(s3) = &target.s3 {
            let (above, part_size) = s3.multipart();
            let unencoded = matches!(target.encoding, crate::net::encode::Encoding::Identity);
            if (unencoded && size > above) || (!unencoded && size > INLINE_MAX) {
                let part_size = match multipart::part_size(size, !unencoded, part_size) {
                    Ok(p) => p,
                    Err(why) => return unsendable(started, why),
                };
                let (parts, first) = match first_part(
                    file.take().expect("the file is read once"),
                    claimed,
                    path,
                    target.encoding,
                    part_size,
                )
                .await
                {
                    Ok(read) => read,
                    Err(local) => return local_failure(started, local, &progress),
                };
                progress.read.store(parts.read, Ordering::Relaxed);
                if parts.done() && first.len() as u64 <= above {
                    prepared = Some(first);
                } else {
                    let Some(spool) = &self.spool else {
                        return unsendable(
                            started,
                            "no spool to record a multipart upload in".into(),
                        );
                    };
                    let object = match s3.object(url, key) {
                        Ok(o) => o,
                        Err(why) => return unsendable(started, why),
                    };
                    let job = crate::net::multipart::Job {
                        target,
                        s3,
                        object,
                        key,
                        filename: filename.to_str().unwrap_or("unnamed"),
                        spool,
                    };
                    return job.upload(first, parts, &progress).await;
                }
            }
        }
        let prepared_len = prepared.as_ref().map(|p| p.len() as u64);
        let body = match prepared {
            Some(data) => {
                progress.sent.store(data.len() as u64, Ordering::Relaxed);
                progress.whole.store(true, Ordering::Release);
                reqwest::Body::from(data)
            }
            None => match make_body(
                file.take().expect("the file is read once"),
                claimed,
                path,
                target.encoding,
                &progress,
            ) {
                Ok(body) => body,
                Err(local) => return local_failure(started, local, &progress),
            },
        };
        let mut url = match &signed {
            Some(signed) => signed.url.clone(),
            None => url.clone(),
        };
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
                headers.insert(X_FILENAME, filename);
                if let Some(signed) = &signed {
                    for (name, value) in &signed.headers {
                        headers.insert(name.clone(), value.clone());
                    }
                    // A store needs the length of a PUT up front; an
                    // unencoded body has the file's, which the body's
                    // checks hold it to; a compressed one was made first.
                    if let Some(len) = prepared_len {
                        headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
                    } else if matches!(target.encoding, crate::net::encode::Encoding::Identity) {
                        headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(size));
                    }
                }
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
                if code == 403
                    && let Some(s3) = &target.s3
                {
                    s3.mark_stale();
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
                let answer = match target
                    .s3
                    .as_ref()
                    .and(s3_error::credentials_refused(code, &body))
                {
                    Some(store_code) => Answer::CredentialsRefused {
                        code,
                        store_code: store_code.to_string(),
                    },
                    None => Answer::Status {
                        code,
                        retry_after,
                        early,
                    },
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
            location: None,
        }
    }
}

/// The body's first part, read off the runtime, and the reader for the rest.
async fn first_part(
    file: File,
    claimed: Stat,
    path: &Path,
    encoding: crate::net::encode::Encoding,
    part_size: u64,
) -> Result<(Parts, Vec<u8>), Local> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut parts = Parts::new(file, claimed, &path, encoding, part_size)?;
        let first = parts.next_part()?.unwrap_or_default();
        Ok((parts, first))
    })
    .await
    .map_err(|e| Local::Read(format!("reading the file failed: {e}")))?
}

/// A failure on the local side before anything was sent.
fn local_failure(started: Instant, local: Local, progress: &Progress) -> Sent {
    let (answer, error) = local.answer();
    Sent {
        answer,
        body: Vec::new(),
        error: Some(error),
        bytes_read: progress.read.load(Ordering::Relaxed),
        bytes_sent: 0,
        latency: started.elapsed(),
        location: None,
    }
}

/// A file this receiver cannot take, found before anything was sent.
fn unsendable(started: Instant, why: String) -> Sent {
    Sent {
        answer: Answer::Unsendable(why.clone()),
        body: Vec::new(),
        error: Some(why),
        bytes_read: 0,
        bytes_sent: 0,
        latency: started.elapsed(),
        location: None,
    }
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
