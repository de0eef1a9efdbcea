//! A file into an S3-compatible store in parts (a multipart upload), and a
//! compressed body in one PUT with its length: both read the body a part
//! at a time ([`crate::net::parts`]). [`crate::rules::multipart`] says
//! which way a body goes and how large its parts are.
//!
//! An upload, step by step:
//! 1. An upload recorded for this file and receiver in the spool
//!    (`uploads/KEY.RECEIVER.json`, left by a sender that died or could
//!    not abort) is aborted, and its record removed.
//! 2. `HEAD` of the object: there already (an earlier attempt completed
//!    it, its answer lost) is answered as the conditional PUT's 412 would
//!    be, delivered, without sending the file again. A 403 goes on (a
//!    write-only policy may not read): the start's answer says more.
//! 3. The upload is started, and recorded in the spool before any part is
//!    sent, so a crash from here on leaves a record for step 1.
//! 4. Each part is a signed PUT with its length.
//! 5. The upload is completed with `If-None-Match: *`, so a store that
//!    checks conditions never makes a second object; its record removed.
//!
//! Any failure after step 3 (an answer that is not 2xx, a broken
//! connection, a file that changed) aborts the upload, so no parts are
//! left behind, and its answer is judged as a PUT's would be.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, ETAG, HeaderMap, HeaderValue};
use spoolpost_protocol::uploads::{self, Upload};

use crate::net::body::{Local, Progress};
use crate::net::parts::Parts;
use crate::net::s3::S3Target;
use crate::net::send::{KEEP_BODY, MIN_RATE, Sent};
use crate::net::target::Target;
use crate::net::transport::{classify_error, error_text};
use crate::rules::outcome::Answer;
use crate::rules::s3_error::{self, Completion};

/// What went wrong in one step, as the answer to judge.
struct Failed {
    answer: Answer,
    body: Vec<u8>,
    error: Option<String>,
}

impl Failed {
    fn local(local: Local) -> Failed {
        let (answer, error) = local.answer();
        Failed {
            answer,
            body: Vec::new(),
            error: Some(error),
        }
    }

    fn status(code: u16, retry_after: Option<String>, body: Vec<u8>, doing: &str) -> Failed {
        let answer = match s3_error::credentials_refused(code, &body) {
            Some(store_code) => Answer::CredentialsRefused {
                code,
                store_code: store_code.to_string(),
            },
            None => Answer::Status {
                code,
                retry_after,
                early: None,
            },
        };
        Failed {
            answer,
            body,
            error: Some(format!("{doing}: HTTP {code}")),
        }
    }
}

/// One request's answer: its code, headers and (a bounded start of) body.
struct Reply {
    code: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// What one upload needs to know.
pub(super) struct Job<'a> {
    pub target: &'a Target,
    pub s3: &'a S3Target,
    pub object: String,
    pub key: &'a str,
    pub filename: &'a str,
    pub spool: &'a Path,
}

impl Job<'_> {
    /// Sends one request, with the configured headers when `configured`.
    async fn request(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        signed: &HeaderMap,
        body: Option<Bytes>,
        configured: bool,
    ) -> Result<Reply, Failed> {
        let now = Instant::now();
        let client = self.target.client.current(now);
        let mut request = client
            .request(method, url)
            .build()
            .map_err(|e| transport(e, self.target))?;
        let headers = request.headers_mut();
        if configured {
            for (name, value) in self.target.headers.current(now).iter() {
                headers.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in signed {
            headers.insert(name.clone(), value.clone());
        }
        let len = body.as_ref().map_or(0, |b| b.len() as u64);
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        *request.timeout_mut() = Some(self.target.timeout + Duration::from_secs(len / MIN_RATE));
        if let Some(body) = body {
            *request.body_mut() = Some(reqwest::Body::from(body));
        }
        let mut response = client
            .execute(request)
            .await
            .map_err(|e| transport(e, self.target))?;
        let code = response.status().as_u16();
        if code == 403 {
            self.s3.mark_stale();
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        // An answer cut short is a broken exchange, not an answer: a
        // completion's result comes last. Leading whitespace is not kept
        // (AWS sends it while it assembles the parts, before the result).
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(e, self.target))?
        {
            let chunk = if body.is_empty() {
                chunk.trim_ascii_start()
            } else {
                &chunk[..]
            };
            let room = KEEP_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(Reply {
            code,
            headers,
            body,
        })
    }

    /// Aborts upload `id` of `object`. Its record is removed when the
    /// upload is gone (aborted, or unknown to the store: 404
    /// `NoSuchUpload`, as for an upload completed just before a crash) or
    /// when the store refuses for any other reason than our credentials or
    /// its own trouble (s3s-fs answers 403 `AccessDenied` for an id it does
    /// not know): kept, the record would stop the file for good. It is
    /// kept after a 5xx, a broken connection or a refusal of our
    /// credentials, which the next attempt gets past.
    async fn abort(&self, object: &str, id: &str) -> Result<(), Failed> {
        let url = self.s3.sign_abort(object, id, Instant::now());
        let reply = self
            .request(reqwest::Method::DELETE, url, &HeaderMap::new(), None, false)
            .await;
        let kept = match reply {
            Ok(r) if (200..300).contains(&r.code) || r.code == 404 => None,
            Ok(r) if s3_error::abort_refused_for_good(r.code, &r.body) => {
                tracing::warn!(%object, upload = id, status = r.code, code = s3_error::error_code(&r.body).unwrap_or(""), "the store would not abort an upload; it is left to the bucket's lifecycle rule");
                None
            }
            Ok(r) => Some(Failed::status(
                r.code,
                retry_after(&r.headers),
                r.body,
                "aborting an upload",
            )),
            Err(f) => Some(f),
        };
        match kept {
            None => {
                if let Err(e) = uploads::remove(self.spool, self.key, self.s3.receiver()) {
                    tracing::warn!(%object, error = %e, "cannot remove the record of an aborted upload");
                }
                Ok(())
            }
            Some(f) => {
                tracing::warn!(%object, upload = id, "cannot abort a multipart upload; the next attempt of this file tries again");
                Err(f)
            }
        }
    }

    /// Step 1: an upload an earlier attempt left is aborted, under the
    /// key it was started with (the key template may have changed since).
    async fn abort_left_over(&self) -> Result<(), Failed> {
        let earlier = match uploads::read(self.spool, self.key, self.s3.receiver()) {
            Ok(earlier) => earlier,
            // Garbled, it names no upload that could be aborted; kept, it
            // would stop the file for good.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "an upload record that cannot be read is removed; its upload, if any, is left to the bucket's lifecycle rule");
                let _ = uploads::remove(self.spool, self.key, self.s3.receiver());
                None
            }
            Err(e) => {
                return Err(Failed {
                    answer: Answer::LocalRead,
                    body: Vec::new(),
                    error: Some(format!("cannot read the record of an earlier upload: {e}")),
                });
            }
        };
        let Some(earlier) = earlier else {
            return Ok(());
        };
        if earlier.bucket != self.s3.bucket_name() {
            // The receiver now names another bucket, whose store may not
            // be the same: left to that bucket's lifecycle rule.
            tracing::warn!(bucket = %earlier.bucket, object = %earlier.object, upload = %earlier.upload_id, "an earlier upload of this file was into another bucket; not aborted");
            let _ = uploads::remove(self.spool, self.key, self.s3.receiver());
            return Ok(());
        }
        self.abort(&earlier.object, &earlier.upload_id).await?;
        tracing::info!(object = %earlier.object, upload = %earlier.upload_id, "ended the multipart upload an earlier attempt left");
        Ok(())
    }

    /// Sends `first` and the parts that `parts` gives after it as one
    /// upload: the answer that ended it (the completion's, 412 for an
    /// object found there already, or the failure that aborted it).
    pub(super) async fn upload(
        &self,
        first: Vec<u8>,
        parts: Parts,
        progress: &Arc<Progress>,
    ) -> Sent {
        let started = Instant::now();
        let result = self.upload_steps(first, parts, progress).await;
        let (answer, body, error) = match result {
            Ok(code) => (
                Answer::Status {
                    code,
                    retry_after: None,
                    early: None,
                },
                Vec::new(),
                None,
            ),
            Err(f) => (f.answer, f.body, f.error),
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

    async fn upload_steps(
        &self,
        first: Vec<u8>,
        parts: Parts,
        progress: &Arc<Progress>,
    ) -> Result<u16, Failed> {
        self.abort_left_over().await?;
        let now = Instant::now();
        let head = self
            .request(
                reqwest::Method::HEAD,
                self.s3.sign_head(&self.object, now),
                &HeaderMap::new(),
                None,
                false,
            )
            .await?;
        match head.code {
            // There already: as a conditional PUT's 412.
            200..=299 => return Ok(412),
            // Not there; or a write-only policy that may not read: the
            // upload's start will say whether we may write, with an XML
            // error a HEAD's answer has no body for.
            404 | 403 => {}
            code => return Err(Failed::status(code, None, head.body, "HEAD of the object")),
        }
        let signed = self
            .s3
            .sign_create(&self.object, self.key, self.filename, now);
        let created = self
            .request(
                reqwest::Method::POST,
                signed.url,
                &signed.headers,
                None,
                true,
            )
            .await?;
        if created.code != 200 {
            return Err(Failed::status(
                created.code,
                retry_after(&created.headers),
                created.body,
                "starting a multipart upload",
            ));
        }
        let id = upload_id(&created.body).ok_or_else(|| Failed {
            answer: Answer::Status {
                code: 502,
                retry_after: None,
                early: None,
            },
            body: created.body.clone(),
            error: Some("the store's answer to starting an upload has no UploadId".into()),
        })?;
        let record = Upload {
            bucket: self.s3.bucket_name().to_string(),
            object: self.object.clone(),
            upload_id: id.clone(),
        };
        if let Err(e) = uploads::write(self.spool, self.key, self.s3.receiver(), &record) {
            let _ = self.abort(&self.object, &id).await;
            return Err(Failed {
                answer: Answer::LocalRead,
                body: Vec::new(),
                error: Some(format!("cannot record the upload in the spool: {e}")),
            });
        }
        match self.parts_and_complete(&id, first, parts, progress).await {
            Ok(code) => {
                if let Err(e) = uploads::remove(self.spool, self.key, self.s3.receiver()) {
                    tracing::warn!(object = %self.object, error = %e, "cannot remove the record of a completed upload");
                }
                Ok(code)
            }
            Err(failed) => {
                let _ = self.abort(&self.object, &id).await;
                Err(failed)
            }
        }
    }

    async fn parts_and_complete(
        &self,
        id: &str,
        first: Vec<u8>,
        parts: Parts,
        progress: &Arc<Progress>,
    ) -> Result<u16, Failed> {
        let mut etags = Vec::new();
        let mut part = Some(first);
        let mut reader = Some(parts);
        while let Some(data) = part.take() {
            let number = etags.len() as u16 + 1;
            let len = data.len() as u64;
            let url = self.s3.sign_part(&self.object, number, id, Instant::now());
            let reply = self
                .request(
                    reqwest::Method::PUT,
                    url,
                    &HeaderMap::new(),
                    Some(Bytes::from(data)),
                    false,
                )
                .await?;
            if !(200..300).contains(&reply.code) {
                return Err(Failed::status(
                    reply.code,
                    retry_after(&reply.headers),
                    reply.body,
                    &format!("part {number}"),
                ));
            }
            let etag = reply
                .headers
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Failed {
                    answer: Answer::Status {
                        code: 502,
                        retry_after: None,
                        early: None,
                    },
                    body: Vec::new(),
                    error: Some(format!("the store's answer to part {number} has no ETag")),
                })?;
            etags.push(etag.to_string());
            progress.sent.fetch_add(len, Ordering::Relaxed);
            // The next part, read off the runtime.
            let mut r = reader.take().expect("the reader is put back");
            let (r, next) = tokio::task::spawn_blocking(move || {
                let next = r.next_part();
                (r, next)
            })
            .await
            .map_err(|e| Failed::local(Local::Read(format!("reading the file failed: {e}"))))?;
            progress.read.store(r.read, Ordering::Relaxed);
            part = next.map_err(Failed::local)?;
            reader = Some(r);
        }
        let (xml, signed) = self
            .s3
            .sign_complete(&self.object, id, &etags, Instant::now());
        let done = self
            .request(
                reqwest::Method::POST,
                signed.url,
                &signed.headers,
                Some(Bytes::from(xml)),
                false,
            )
            .await?;
        match s3_error::completion(done.code, &done.body) {
            Completion::Done => Ok(done.code),
            Completion::AlreadyThere => {
                // The object was there before (a completion whose answer
                // was lost, a second copy of the file): this upload's
                // parts are nobody's. Its record goes with the success.
                let _ = self.abort(&self.object, id).await;
                Ok(412)
            }
            Completion::Failed(code) => Err(Failed::status(
                code,
                retry_after(&done.headers),
                done.body,
                "completing the upload",
            )),
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<String> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

fn transport(e: reqwest::Error, target: &Target) -> Failed {
    let t = classify_error(&e);
    if t == crate::rules::outcome::Transport::Tls {
        target.client.mark_stale();
    }
    Failed {
        answer: Answer::Failed(t),
        body: Vec::new(),
        error: Some(error_text(e)),
    }
}

/// The `UploadId` of a `CreateMultipartUpload` answer.
fn upload_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    rusty_s3::actions::CreateMultipartUpload::parse_response(text)
        .ok()
        .map(|r| r.upload_id().to_string())
        .filter(|id| !id.is_empty())
}
