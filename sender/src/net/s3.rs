//! An S3-compatible receiver's side of a request: the object key taken back
//! out of the routed URL (routing fills the key template's captures as it
//! fills a URL's), the file's idempotency key put in it, and the PUT signed
//! with SigV4 as a presigned URL by `rusty-s3`, which signs without owning
//! the HTTP client, so the receiver's pooled client, TLS settings, proxies
//! and adaptive limit all apply. The body is streamed unsigned
//! (`UNSIGNED-PAYLOAD`), as any presigned upload is.
//!
//! Creation is conditional (`If-None-Match: *`, signed): a redelivery after
//! a crash finds the object there, the store answers 412, and the answer
//! table counts that as delivered (`rules::outcome`).
//!
//! The credentials are secrets like a header's: values from `{ file = … }`
//! are read again at most once every [`RECHECK`], and at once after a 403
//! (a refused signature may be a rotated key).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, HeadObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use spoolpost_ops::config::{
    self, BodyEncoding, ReceiverConfig, S3Addressing, S3Compressed, S3Config,
};
use spoolpost_ops::route::S3_KEY_MARKER;

use crate::net::headers::RECHECK;

/// How long a signature is good for: a request's whole life, however
/// long its body takes, with room for a clock a little behind.
const VALID_FOR: Duration = Duration::from_secs(3600);

/// What a single PUT may carry: S3 refuses larger ones, so
/// `multipart_above` may not be more.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// The user metadata every object carries, as `x-amz-meta-*`.
pub const META_KEY: &str = "x-amz-meta-idempotency-key";
pub const META_NAME: &str = "x-amz-meta-original-name";
pub const META_HOST: &str = "x-amz-meta-source-host";

pub struct S3Target {
    receiver: String,
    bucket: Bucket,
    multipart_above: u64,
    part_size: u64,
    /// The routed URL's path up to the object key: the endpoint's path
    /// and `/`.
    prefix: String,
    /// `.gz` or `.zst` when a compressed body is stored under a suffix.
    suffix: &'static str,
    storage_class: Option<String>,
    host: String,
    secrets: Mutex<Secrets>,
}

struct Secrets {
    config: [Option<config::HeaderValue>; 3],
    current: Credentials,
    checked: Instant,
    stale: bool,
}

/// One signed request: its URL and the headers that were signed with it.
pub struct Signed {
    pub url: reqwest::Url,
    pub headers: HeaderMap,
}

impl S3Target {
    pub fn new(receiver: &str, c: &ReceiverConfig, s3: &S3Config) -> Result<S3Target, String> {
        let at = |e: String| format!("receiver {receiver}: {e}");
        if c.server_name.is_some() {
            return Err(at(
                "server_name cannot be used with s3: the signature covers the host the URL names"
                    .into(),
            ));
        }
        let mut endpoint: reqwest::Url = c
            .url
            .parse()
            .map_err(|e| at(format!("url {:?}: {e}", c.url)))?;
        // Keys are joined to the endpoint as relative URLs: without the
        // final `/` its last path segment would be replaced.
        if !endpoint.path().ends_with('/') {
            let path = format!("{}/", endpoint.path());
            endpoint.set_path(&path);
        }
        let style = match s3.addressing {
            S3Addressing::Path => UrlStyle::Path,
            S3Addressing::VirtualHost => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(
            endpoint.clone(),
            style,
            s3.bucket.clone(),
            s3.region.clone(),
        )
        .map_err(|e| at(format!("s3.bucket {:?}: {e}", s3.bucket)))?;
        let suffix = match (s3.compressed_as, c.encoding()) {
            (S3Compressed::Suffix, BodyEncoding::Gzip(_)) => ".gz",
            (S3Compressed::Suffix, BodyEncoding::Zstd(_)) => ".zst",
            _ => "",
        };
        if let Some(class) = &s3.storage_class
            && !is_token(class)
        {
            return Err(at(format!(
                "s3.storage_class {class:?} is not a storage class (letters, digits and _)"
            )));
        }
        let config = [
            Some(s3.access_key_id.clone()),
            Some(s3.secret_access_key.clone()),
            s3.session_token.clone(),
        ];
        let current = credentials(&config).map_err(at)?;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| config::is_header_value(h))
            .unwrap_or_default();
        let (multipart_above, part_size) = (s3.multipart_above(), s3.part_size());
        if !(config::S3_MIN_PART..=config::S3_MAX_PART).contains(&part_size) {
            return Err(at(format!(
                "s3.part_size {part_size} is not between 5 MiB and 5 GiB, the part sizes S3 takes"
            )));
        }
        if multipart_above > MAX_SINGLE_PUT {
            return Err(at(format!(
                "s3.multipart_above {multipart_above} is over 5 GiB, the most S3 takes in one PUT"
            )));
        }
        Ok(S3Target {
            receiver: receiver.to_string(),
            bucket,
            multipart_above,
            part_size,
            prefix: endpoint.path().to_string(),
            suffix,
            storage_class: s3.storage_class.clone(),
            host,
            secrets: Mutex::new(Secrets {
                config,
                current,
                checked: Instant::now(),
                stale: false,
            }),
        })
    }

    /// The encoding header this receiver sends: none when a compressed
    /// body is stored under a suffix.
    pub fn sends_content_encoding(&self) -> bool {
        self.suffix.is_empty()
    }

    /// The content type of the stored object: what the body is.
    pub fn content_type(&self) -> Option<HeaderValue> {
        match self.suffix {
            ".gz" => Some(HeaderValue::from_static("application/gzip")),
            ".zst" => Some(HeaderValue::from_static("application/zstd")),
            _ => None,
        }
    }

    /// The store refused us: read the secrets again before the next request.
    pub fn mark_stale(&self) {
        self.secrets.lock().unwrap().stale = true;
    }

    /// The signed conditional PUT of one file routed to `url`, with
    /// idempotency key `key` and original name `filename` (as `X-Filename`
    /// carries it).
    pub fn sign(
        &self,
        url: &reqwest::Url,
        key: &str,
        filename: &str,
        now: Instant,
    ) -> Result<Signed, String> {
        let object = self.object(url, key)?;
        let credentials = self.credentials(now);
        let mut action = self.bucket.put_object(Some(&credentials), &object);
        let mut headers = HeaderMap::new();
        self.add_create_headers(action.headers_mut(), &mut headers, key, filename);
        add(action.headers_mut(), &mut headers, "if-none-match", "*");
        let url = action.sign(VALID_FOR);
        self.within_bucket(&object, url)
            .map(|url| Signed { url, headers })
    }

    /// The object key file `key` routed to `url` is stored under, checked
    /// to stay in this bucket.
    pub fn object(&self, url: &reqwest::Url, key: &str) -> Result<String, String> {
        let object = object_key(&self.prefix, url.path(), key, self.suffix)?;
        let probe = self.bucket.object_url(&object).map_err(|e| e.to_string())?;
        self.within_bucket(&object, probe)?;
        Ok(object)
    }

    /// However the key was made, the request goes to this bucket and
    /// nowhere else.
    fn within_bucket(&self, object: &str, url: reqwest::Url) -> Result<reqwest::Url, String> {
        if !url.as_str().starts_with(self.bucket.base_url().as_str()) {
            return Err(format!(
                "the object key made from this file's name, {object:?}, would leave the bucket's URL; rename the file or change s3.key"
            ));
        }
        Ok(url)
    }

    /// The headers that go with creating an object (a PUT or a multipart
    /// upload's start): its metadata and storage class, signed.
    fn add_create_headers<'a>(
        &'a self,
        signed: &mut rusty_s3::Map<'a>,
        headers: &mut HeaderMap,
        key: &str,
        filename: &str,
    ) {
        add(signed, headers, META_KEY, key);
        add(signed, headers, META_NAME, filename);
        if !self.host.is_empty() {
            add(signed, headers, META_HOST, &self.host);
        }
        if let Some(class) = &self.storage_class {
            add(signed, headers, "x-amz-storage-class", class);
        }
    }

    /// `object`'s URL in this bucket, unsigned: where an operator finds it.
    pub fn object_url(&self, object: &str) -> Option<reqwest::Url> {
        self.bucket.object_url(object).ok()
    }

    /// The start of a multipart upload of `object`.
    pub fn sign_create(&self, object: &str, key: &str, filename: &str, now: Instant) -> Signed {
        let credentials = self.credentials(now);
        let mut action = CreateMultipartUpload::new(&self.bucket, Some(&credentials), object);
        let mut headers = HeaderMap::new();
        self.add_create_headers(action.headers_mut(), &mut headers, key, filename);
        Signed {
            url: action.sign(VALID_FOR),
            headers,
        }
    }

    /// Part `number` (from 1) of upload `id`.
    pub fn sign_part(&self, object: &str, number: u16, id: &str, now: Instant) -> reqwest::Url {
        let credentials = self.credentials(now);
        UploadPart::new(&self.bucket, Some(&credentials), object, number, id).sign(VALID_FOR)
    }

    /// The completion of upload `id` from the parts' `etags`, conditional
    /// like a PUT: the XML body and the signed request.
    pub fn sign_complete(
        &self,
        object: &str,
        id: &str,
        etags: &[String],
        now: Instant,
    ) -> (String, Signed) {
        let credentials = self.credentials(now);
        let mut action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&credentials),
            object,
            id,
            etags.iter().map(String::as_str),
        );
        let mut headers = HeaderMap::new();
        add(action.headers_mut(), &mut headers, "if-none-match", "*");
        let url = action.sign(VALID_FOR);
        (action.body(), Signed { url, headers })
    }

    /// The abort of upload `id`, which frees its parts.
    pub fn sign_abort(&self, object: &str, id: &str, now: Instant) -> reqwest::Url {
        let credentials = self.credentials(now);
        AbortMultipartUpload::new(&self.bucket, Some(&credentials), object, id).sign(VALID_FOR)
    }

    /// A `HEAD` of `object`: whether it is there already.
    pub fn sign_head(&self, object: &str, now: Instant) -> reqwest::Url {
        let credentials = self.credentials(now);
        HeadObject::new(&self.bucket, Some(&credentials), object).sign(VALID_FOR)
    }

    /// The receiver's name, for the spool's record of its uploads.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The parts' settings: above how many body bytes, and how large.
    pub fn multipart(&self) -> (u64, u64) {
        (self.multipart_above, self.part_size)
    }

    /// A signed `HEAD` of the bucket, for `--probe`: it answers 200 when
    /// the bucket exists and the store takes our signature.
    pub fn head_bucket(&self, now: Instant) -> reqwest::Url {
        let credentials = self.credentials(now);
        self.bucket.head_bucket(Some(&credentials)).sign(VALID_FOR)
    }

    pub fn bucket_name(&self) -> &str {
        self.bucket.name()
    }

    fn credentials(&self, now: Instant) -> Credentials {
        let config = {
            let mut s = self.secrets.lock().unwrap();
            let files = s
                .config
                .iter()
                .flatten()
                .any(|v| matches!(v, config::HeaderValue::File { .. }));
            if !files || (!s.stale && now.saturating_duration_since(s.checked) < RECHECK) {
                return s.current.clone();
            }
            s.checked = now;
            s.stale = false;
            s.config.clone()
        };
        let fresh = credentials(&config);
        let mut s = self.secrets.lock().unwrap();
        match fresh {
            Ok(c) => s.current = c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an s3 credential again; keeping its last value")
            }
        }
        s.current.clone()
    }
}

/// Adds a header to be signed (`signed`) and sent (`headers`).
fn add<'a>(
    signed: &mut rusty_s3::Map<'a>,
    headers: &mut HeaderMap,
    name: &'static str,
    value: &str,
) {
    signed.insert(name, value.to_string());
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn credentials(config: &[Option<config::HeaderValue>; 3]) -> Result<Credentials, String> {
    let read = |i: usize, what: &str| -> Result<Option<String>, String> {
        config[i]
            .as_ref()
            .map(|v| v.resolve_header().map_err(|e| format!("s3.{what}: {e}")))
            .transpose()
    };
    let id = read(0, "access_key_id")?.unwrap_or_default();
    let secret = read(1, "secret_access_key")?.unwrap_or_default();
    if id.is_empty() || secret.is_empty() {
        return Err("s3.access_key_id and s3.secret_access_key may not be empty".into());
    }
    Ok(match read(2, "session_token")? {
        Some(token) => Credentials::new_with_token(id, secret, token),
        None => Credentials::new(id, secret),
    })
}

/// Letters, digits and `_`: what a storage class's name is made of.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The object key from a routed URL's `path`: what follows `prefix`
/// (the endpoint's path), percent-decoded (routing encoded the captures),
/// with the idempotency key where the template had `{key}`, and `suffix`.
pub fn object_key(prefix: &str, path: &str, key: &str, suffix: &str) -> Result<String, String> {
    let encoded = path
        .strip_prefix(prefix)
        .ok_or_else(|| format!("the routed path {path:?} is not under the endpoint {prefix:?}"))?;
    let decoded = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| "this file's name makes an object key that is not UTF-8; S3 keys must be; rename the file or change s3.key".to_string())?;
    let object = format!("{}{suffix}", decoded.replace(S3_KEY_MARKER, key));
    // Joined to the bucket's URL, a key starting with `/` would name
    // another bucket (or, with `//`, another host), and `.` or `..`
    // segments would be resolved away: a capture must not do either.
    if object.starts_with('/') || object.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "the object key made from this file's name, {object:?}, starts with / or has a . or .. segment, which would send it elsewhere than its key; rename the file or change s3.key"
        ));
    }
    if object.len() > 1024 {
        return Err(format!(
            "the object key made from this file's name is {} bytes; S3 takes at most 1024; shorten s3.key or the name",
            object.len()
        ));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_back_out_of_the_path_decoded_with_the_idempotency_key() {
        assert_eq!(
            object_key("/", "/in/@key@-a%20b.json", "0a1b", "").unwrap(),
            "in/0a1b-a b.json"
        );
        assert_eq!(
            object_key("/base/", "/base/t%2Fx/@key@", "ff", ".gz").unwrap(),
            "t/x/ff.gz",
            "a capture's / is part of the key, not a way out of the endpoint"
        );
        assert!(object_key("/base/", "/other/x", "ff", "").is_err());
    }

    #[test]
    fn a_capture_cannot_make_a_key_that_leaves_the_bucket() {
        // An empty capture first, a capture of "//host/…", "..": each
        // would have the request go to another bucket, host or key.
        for path in [
            "/%2F@key@",
            "/%2F%2Fevil.example%2Fx-@key@",
            "/a%2F..%2F@key@",
        ] {
            let e = object_key("/", path, "k", "").unwrap_err();
            assert!(e.contains("elsewhere"), "{path}: {e}");
        }
        let t = target("https://s3.example", S3Addressing::Path, "none");
        let routed: reqwest::Url = "https://s3.example/%2F%2Fevil.example%2F@key@"
            .parse()
            .unwrap();
        assert!(t.sign(&routed, "k", "x", Instant::now()).is_err());
    }

    #[test]
    fn a_key_that_is_not_utf8_or_too_long_is_refused_with_a_reason() {
        let e = object_key("/", "/%FF@key@", "k", "").unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
        let long = format!("/{}@key@", "a".repeat(1100));
        let e = object_key("/", &long, "k", "").unwrap_err();
        assert!(e.contains("1024"), "{e}");
    }

    fn target(url: &str, addressing: S3Addressing, compression: &str) -> S3Target {
        let mut c = ReceiverConfig::for_url(url);
        c.compression = Some(match compression {
            "gzip" => config::CompressionKind::Gzip,
            _ => config::CompressionKind::None,
        });
        let s3 = S3Config {
            bucket: "landing".into(),
            region: "eu-west-1".into(),
            addressing,
            key: "{key}-{filename}".into(),
            access_key_id: config::HeaderValue::Literal("AKID".into()),
            secret_access_key: config::HeaderValue::Literal("SECRET".into()),
            session_token: None,
            compressed_as: S3Compressed::Suffix,
            storage_class: None,
            multipart_above: config::default_multipart_above(),
            part_size: config::default_part_size(),
        };
        S3Target::new("r", &c, &s3).unwrap()
    }

    #[test]
    fn the_signed_put_names_bucket_and_key_in_either_addressing_and_signs_the_condition() {
        let routed: reqwest::Url = "https://s3.example/base/@key@-a.json".parse().unwrap();
        let now = Instant::now();
        let path = target("https://s3.example/base", S3Addressing::Path, "none")
            .sign(&routed, "k1", "a.json", now)
            .unwrap();
        assert_eq!(path.url.host_str(), Some("s3.example"));
        assert_eq!(path.url.path(), "/base/landing/k1-a.json");
        let virtual_host = target("https://s3.example/base", S3Addressing::VirtualHost, "gzip")
            .sign(&routed, "k1", "a.json", now)
            .unwrap();
        assert_eq!(virtual_host.url.host_str(), Some("landing.s3.example"));
        assert_eq!(virtual_host.url.path(), "/base/k1-a.json.gz");
        let query = virtual_host.url.query().unwrap();
        assert!(query.contains("X-Amz-Credential=AKID%2F"), "{query}");
        assert!(query.contains("eu-west-1"), "{query}");
        assert!(
            query.contains("if-none-match"),
            "the condition is signed: {query}"
        );
        assert_eq!(virtual_host.headers["if-none-match"], "*");
        assert_eq!(virtual_host.headers[META_KEY], "k1");
    }

    #[test]
    fn storage_classes_are_plain_tokens() {
        assert!(is_token("STANDARD_IA"));
        assert!(!is_token("A B"));
        assert!(!is_token(""));
    }
}
