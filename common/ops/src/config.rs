//! The configuration file: one TOML file read by all three binaries, each
//! taking its own section, with the receivers and routing rules shared.
//!
//! Errors name the file and line and say what to change. Secrets in header
//! values are read from an environment variable or a file at start-up, so
//! the configuration itself can be world-readable.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The whole file. Unknown keys are errors, so a typo never silently turns
/// into a default.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Spool root, used when `--spool` is not given.
    pub spool: Option<PathBuf>,
    /// Let the sender and collector create a spool root that does not
    /// exist (`--create-spool`); otherwise a missing one is exit 74.
    #[serde(default)]
    pub create_spool: bool,
    #[serde(default)]
    pub sender: SenderSection,
    #[serde(default)]
    pub receivers: BTreeMap<String, Spanned<ReceiverConfig>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
    #[serde(default)]
    pub collector: CollectorSection,
    /// Read by the reporter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<toml::Table>,
}

impl Config {
    /// Puts `receiver`, named `name`, in place of the file's receivers and
    /// routes, with one rule that sends it every file: what `sender --url`
    /// runs with.
    pub fn set_single_receiver(&mut self, name: &str, receiver: ReceiverConfig) {
        // Spans locate errors in a file; these come from flags.
        self.receivers = BTreeMap::from([(name.to_string(), Spanned::new(0..0, receiver))]);
        self.routes = vec![Spanned::new(
            0..0,
            RouteConfig {
                glob: Some("*".into()),
                regex: None,
                receiver: Spanned::new(0..0, name.to_string()),
            },
        )];
    }
}

/// `[sender]`: how the sender schedules, retries and stores.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderSection {
    /// Requests in flight at once, over all receivers.
    pub concurrency: usize,
    /// Threads that read, compress and send. One (the default) runs it all
    /// on the program's one thread, for the least CPU per file and memory;
    /// two deliver a little more where there are cores to spare
    /// (docs/performance.md, "One thread by default").
    pub threads: usize,
    /// Give up on a file after this many attempts (0: no limit).
    pub max_attempts: u32,
    /// Give up on a file this long after its first attempt.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Consecutive failures that open a receiver's circuit.
    pub breaker_failures: u32,
    #[serde(with = "humantime_serde")]
    pub breaker_open_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub breaker_open_max: Duration,
    /// Delete delivered files instead of moving them to `done/`.
    pub delete_delivered: bool,
    /// fsync folders after each transition (see docs/spool.md).
    pub fsync: bool,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Full rescan of `incoming/` as a safety net for missed notifications.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
}

impl Default for SenderSection {
    fn default() -> Self {
        SenderSection {
            concurrency: 1024,
            threads: 1,
            max_attempts: 0,
            max_age: Duration::from_secs(24 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            breaker_failures: 5,
            breaker_open_initial: Duration::from_secs(5),
            breaker_open_max: Duration::from_secs(300),
            delete_delivered: false,
            fsync: false,
            grace: Duration::from_secs(10),
            rescan_interval: Duration::from_secs(30),
        }
    }
}

/// `[collector]`: where files come from and when to stop taking them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorSection {
    pub sources: Vec<SourceConfig>,
    /// Pause while `incoming/` holds more files than this.
    pub max_incoming_files: Option<u64>,
    /// Pause while `incoming/` holds more bytes than this.
    #[serde(serialize_with = "bytes_exactly")]
    pub max_incoming_bytes: Option<bytesize::ByteSize>,
    /// Pause while the spool's filesystem has less free space than this.
    #[serde(serialize_with = "bytes_exactly")]
    pub min_free_space: Option<bytesize::ByteSize>,
    /// Full rescan of the sources as a safety net for missed notifications.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
}

/// A size as its number of bytes: bytesize writes `"1.4 GiB"`, which does
/// not read back as the size it was.
fn bytes_exactly<S: serde::Serializer>(
    size: &Option<bytesize::ByteSize>,
    out: S,
) -> Result<S::Ok, S::Error> {
    match size {
        Some(size) => out.serialize_some(&size.as_u64()),
        None => out.serialize_none(),
    }
}

impl Default for CollectorSection {
    fn default() -> Self {
        CollectorSection {
            sources: Vec::new(),
            max_incoming_files: None,
            max_incoming_bytes: None,
            min_free_space: None,
            rescan_interval: Duration::from_secs(5),
        }
    }
}

/// When a file in a source folder is complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReadyRule {
    /// Size and times unchanged for `settle`.
    #[default]
    Settle,
    /// inotify saw the writer close it (or rename it in).
    CloseWrite,
    /// A companion file NAME + one of `markers` exists.
    Marker,
}

/// `[[collector.sources]]`: one folder producers write into.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub path: PathBuf,
    /// Globs on the file name; empty takes every file.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default)]
    pub ready: ReadyRule,
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    #[serde(default = "default_markers")]
    pub markers: Vec<String>,
}

pub fn default_exclude() -> Vec<String> {
    [".*", "*.tmp", "*.part", "*.swp"]
        .map(String::from)
        .to_vec()
}
pub fn default_settle() -> Duration {
    Duration::from_secs(1)
}
pub fn default_markers() -> Vec<String> {
    [".ready", ".done"].map(String::from).to_vec()
}

impl SourceConfig {
    /// A source with every setting at its default.
    pub fn for_path(path: impl Into<PathBuf>) -> SourceConfig {
        SourceConfig {
            path: path.into(),
            include: Vec::new(),
            exclude: default_exclude(),
            recursive: false,
            ready: ReadyRule::Settle,
            settle: default_settle(),
            markers: default_markers(),
        }
    }
}

/// The request method: one type for the config file and `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Post,
    Put,
}

/// `[receivers.NAME]`: one receiving service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// May hold `{name}` placeholders filled from a regex route's named
    /// captures (percent-encoded), and `{filename}` for the original name.
    /// Empty when the receiver has `urls` instead (exactly one of the two is
    /// written; `config_check` says so otherwise).
    #[serde(default)]
    pub url: String,
    #[serde(default = "default_method")]
    pub method: Method,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default = "yes")]
    pub gzip: bool,
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The most requests in flight at once to this receiver: the upper
    /// bound of its adaptive limit, or the limit itself when `adaptive` is
    /// off.
    #[serde(default = "default_receiver_concurrency")]
    pub concurrency: usize,
    /// Find the receiver's pace from its answers (an adaptive limit up to
    /// `concurrency`); `false` pins the limit at `concurrency`.
    #[serde(default = "yes")]
    pub adaptive: bool,
    /// At most this many requests started per period (`"200/s"`, `"N/m"`,
    /// `"N/h"`), shared by the senders on the spool, for receivers with a quota.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Status codes retried in addition to 408, 425, 429 and every 5xx.
    #[serde(default)]
    pub retry_statuses: Vec<u16>,
    /// Status codes that send the file to `error/` although the default
    /// table retries them (say 401, or 503). `retry_statuses` wins where a
    /// code is in both.
    #[serde(default)]
    pub reject_statuses: Vec<u16>,
    /// Extra CA certificates (PEM) to trust, e.g. an internal CA.
    pub ca_file: Option<PathBuf>,
    /// Take a 2xx that comes before the whole body was sent as delivery,
    /// for receivers that legitimately ignore the body.
    #[serde(default)]
    pub accept_early_answer: bool,
    /// Our certificate (PEM, with any intermediates), for receivers that
    /// require one; `client_key` holds its key. Both or neither.
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// The oldest TLS version spoken to this receiver.
    #[serde(default)]
    pub tls_min_version: TlsVersion,
    /// The name the receiver's certificate is verified against (and sent
    /// as SNI and `Host`), for a receiver reached by another name or by
    /// address; the connection still goes where `url` points.
    pub server_name: Option<String>,
    /// Accept any certificate. Warned about at every start, reload and
    /// `--check`; the reporter marks the receiver insecure.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `"http://[user:pass@]host:port"`, `"none"`, or the URL from a secret
    /// (`{ env }`, `{ file }`). Unset: the proxy environment variables.
    pub proxy: Option<HeaderValue>,
    /// The HTTP version spoken to this receiver.
    #[serde(default)]
    pub http_version: HttpVersion,

    // Several endpoints and the body's compression.
    /// Several endpoints of one receiver, instead of `url`: each with its
    /// own circuit, requests spread over the healthy ones (`sender`'s
    /// `endpoint` module). The same placeholders as `url`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The body's compression; when unset, `gzip`/`gzip_level` decide.
    pub compression: Option<CompressionKind>,
    /// Level for `compression`: gzip 0 to 9 (default 6), zstd 1 to 22
    /// (default 3).
    pub compression_level: Option<i32>,
    /// `[receivers.NAME.s3]`: the receiver is an S3-compatible bucket and
    /// `url` its endpoint; each file is one object, created once.
    pub s3: Option<S3Config>,
}

/// `[receivers.NAME.s3]`: where and how objects are created.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// `"path"` (`ENDPOINT/BUCKET/KEY`) or `"virtual-host"`
    /// (`BUCKET.ENDPOINT/KEY`).
    #[serde(default)]
    pub addressing: S3Addressing,
    /// The object key: routing captures, `{filename}`, and `{key}` (the
    /// file's idempotency key, required so that two files of one name are
    /// two objects).
    #[serde(default = "default_object_key")]
    pub key: String,
    pub access_key_id: HeaderValue,
    pub secret_access_key: HeaderValue,
    pub session_token: Option<HeaderValue>,
    /// How a compressed body is stored: under the key with `.gz`/`.zst`
    /// added (`"suffix"`), or as `Content-Encoding` (`"content-encoding"`).
    #[serde(default)]
    pub compressed_as: S3Compressed,
    pub storage_class: Option<String>,
    /// Bodies larger than this go as a multipart upload (S3 takes at most
    /// 5 GiB in one PUT); default [`S3_MULTIPART_ABOVE`].
    #[serde(default = "default_multipart_above", serialize_with = "byte_count")]
    pub multipart_above: bytesize::ByteSize,
    /// The size of each part of a multipart upload, and what one upload
    /// holds in memory; default [`S3_PART_SIZE`], at least 5 MiB.
    #[serde(default = "default_part_size", serialize_with = "byte_count")]
    pub part_size: bytesize::ByteSize,
}

/// `multipart_above`'s default: a body up to 64 MiB goes in one PUT, one
/// request whose failure costs a minute at most on a slow link; above it,
/// parts, so a failure costs one part and not the whole file.
pub const S3_MULTIPART_ABOVE: u64 = 64 * 1024 * 1024;
/// `part_size`'s default: 16 MiB parts, held in memory one at a time per
/// upload, make 10,000 parts (S3's most) reach 156 GiB; a larger file's
/// parts grow to fit.
pub const S3_PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3's smallest part (all but the last), and its largest.
pub const S3_MIN_PART: u64 = 5 * 1024 * 1024;
pub const S3_MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

pub fn default_multipart_above() -> bytesize::ByteSize {
    bytesize::ByteSize::b(S3_MULTIPART_ABOVE)
}
pub fn default_part_size() -> bytesize::ByteSize {
    bytesize::ByteSize::b(S3_PART_SIZE)
}

/// A size as its number of bytes (see [`bytes_exactly`]).
fn byte_count<S: serde::Serializer>(size: &bytesize::ByteSize, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_u64(size.as_u64())
}

impl S3Config {
    pub fn multipart_above(&self) -> u64 {
        self.multipart_above.as_u64()
    }
    pub fn part_size(&self) -> u64 {
        self.part_size.as_u64()
    }
}

/// `addressing`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum S3Addressing {
    #[default]
    Path,
    VirtualHost,
}

/// `compressed_as`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum S3Compressed {
    #[default]
    Suffix,
    ContentEncoding,
}

/// The placeholder in an object key that the file's idempotency key fills.
pub const S3_KEY_PLACEHOLDER: &str = "{key}";

fn default_region() -> String {
    "us-east-1".into()
}
fn default_object_key() -> String {
    "{key}-{filename}".into()
}

/// `tls_min_version`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// `http_version`: `"auto"` offers h2 and http/1.1 by ALPN over TLS and
/// speaks 1.1 on plain HTTP; `"2"` on plain HTTP is prior knowledge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum HttpVersion {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "1.1")]
    Http1,
    #[serde(rename = "2")]
    Http2,
}

/// `compression = "gzip" | "zstd" | "none"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    Gzip,
    Zstd,
    None,
}

/// How a receiver's bodies are encoded, from `compression` or the older
/// `gzip`/`gzip_level` (the two are never written together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Gzip(u32),
    Zstd(i32),
}

pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl ReceiverConfig {
    /// Its endpoints' URL templates: `urls`, or the one `url`.
    pub fn endpoints(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }

    /// The body encoding its settings ask for.
    pub fn encoding(&self) -> BodyEncoding {
        match self.compression {
            Some(CompressionKind::None) => BodyEncoding::Identity,
            Some(CompressionKind::Gzip) => BodyEncoding::Gzip(
                self.compression_level
                    .map_or(default_gzip_level(), |l| l.clamp(0, 9) as u32),
            ),
            Some(CompressionKind::Zstd) => {
                BodyEncoding::Zstd(self.compression_level.unwrap_or(DEFAULT_ZSTD_LEVEL))
            }
            None if self.gzip => BodyEncoding::Gzip(self.gzip_level),
            None => BodyEncoding::Identity,
        }
    }
}

/// A header value: literal text, or a secret read at start-up.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

fn default_method() -> Method {
    Method::Post
}
fn default_content_type() -> String {
    "application/octet-stream".into()
}
fn yes() -> bool {
    true
}
/// 4, not gzip's customary 6: the same bytes on small event files, and
/// about half the CPU of 6 on large ones for 3% more bytes
/// (docs/configuration.md, "Compression").
pub const fn default_gzip_level() -> u32 {
    4
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
/// 1,024 in flight covers the bandwidth-delay product of a receiver
/// 100 ms away at 10,000 files/s; the adaptive limit finds how much of it a
/// receiver takes, so the bound only caps what a request that hangs, or a
/// receiver that takes everything, may cost: about 44 KiB of memory and two
/// descriptors (socket, file) per request in flight (docs/performance.md).
/// At the old 64, a receiver 100 ms away was capped at 640 files/s
/// whatever the controller did.
pub fn default_receiver_concurrency() -> usize {
    1024
}

impl ReceiverConfig {
    /// A receiver with every setting at its default.
    pub fn for_url(url: impl Into<String>) -> ReceiverConfig {
        ReceiverConfig {
            url: url.into(),
            method: default_method(),
            headers: BTreeMap::new(),
            content_type: default_content_type(),
            gzip: true,
            gzip_level: default_gzip_level(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            concurrency: default_receiver_concurrency(),
            adaptive: true,
            rate_limit: None,
            retry_statuses: Vec::new(),
            reject_statuses: Vec::new(),
            ca_file: None,
            accept_early_answer: false,
            client_cert: None,
            client_key: None,
            tls_min_version: TlsVersion::V1_2,
            server_name: None,
            insecure_skip_verify: false,
            proxy: None,
            http_version: HttpVersion::Auto,
            urls: Vec::new(),
            compression: None,
            compression_level: None,
            s3: None,
        }
    }
}

/// A receiver's `rate_limit`: `count` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<RateLimit, String> {
        let wrong = || {
            format!(
                "rate_limit {text:?} is not a rate: write N/s, N/m or N/h with N from 1 to 1000000, e.g. \"200/s\""
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let per = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(wrong()),
        };
        if !(1..=1_000_000).contains(&count) {
            return Err(wrong());
        }
        Ok(RateLimit {
            count,
            per: Duration::from_secs(per),
        })
    }
}

impl TryFrom<String> for RateLimit {
    type Error = String;
    fn try_from(text: String) -> Result<RateLimit, String> {
        text.parse()
    }
}

impl From<RateLimit> for String {
    fn from(rate: RateLimit) -> String {
        rate.to_string()
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            60 => "m",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// `[[routes]]`: files whose original name matches go to `receiver`. Rules
/// are tried in order; the first match wins.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub glob: Option<String>,
    pub regex: Option<String>,
    pub receiver: Spanned<String>,
}

/// A configuration problem, with the file and line where it is.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A parsed file and its text, for turning spans into line numbers.
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    pub(crate) text: String,
}

impl Loaded {
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            line: Some(line_of(&self.text, span.start)),
            message: message.into(),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            line: None,
            message: message.into(),
        }
    }
}

/// The configuration the package installs.
pub const INSTALLED: &str = "/etc/spoolpost.toml";

impl Loaded {
    /// The span of a key, by its path of table keys and array indexes
    /// (`["collector", "sources", "0", "settle"]`); `None` if the file
    /// does not set it.
    pub fn key_span(&self, path: &[&str]) -> Option<Range<usize>> {
        use toml::de::{DeTable, DeValue};
        // Parsed again per lookup: only errors look keys up.
        let root = DeValue::Table(DeTable::parse(&self.text).ok()?.into_inner());
        let mut value = &root;
        let mut span = None;
        for key in path {
            let next = match value {
                DeValue::Table(table) => {
                    let (k, v) = table.iter().find(|(k, _)| k.get_ref() == key)?;
                    span = Some(k.span());
                    v
                }
                DeValue::Array(items) => {
                    let item = items.get(key.parse::<usize>().ok()?)?;
                    span = Some(item.span());
                    item
                }
                _ => return None,
            };
            value = next.get_ref();
        }
        span
    }

    /// An error at a key, or, when the file does not have it, at the end
    /// of the file, where it would be added.
    pub fn error_at_key(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        let span = self
            .key_span(path)
            .unwrap_or(self.text.len()..self.text.len());
        self.error_at(span, message)
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl HeaderValue {
    /// The value to send, reading secrets from the environment or a file.
    /// Trailing newlines of a secret file are dropped.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            HeaderValue::Literal(s) => Ok(s.clone()),
            HeaderValue::Env { env } => std::env::var(env)
                .map_err(|_| format!("environment variable {env} is not set (or not UTF-8)")),
            HeaderValue::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", file.display())),
        }
    }

    /// [`HeaderValue::resolve`] for a header: the value must also be one
    /// an HTTP header can carry (a secret with CR or LF inside would end
    /// the header early). Start-up, `--check` and every later re-read of a
    /// secret file call this one function, so none accepts what another
    /// refuses. The error never quotes the value: it is a secret.
    pub fn resolve_header(&self) -> Result<String, String> {
        let text = self.resolve()?;
        if !is_header_value(&text) {
            return Err(
                "the value is not a valid header value (a control character such as CR or LF, \
                 or a byte that is not ASCII)"
                    .to_string(),
            );
        }
        Ok(text)
    }
}

/// Visible ASCII, spaces and tabs: what every HTTP stack accepts.
pub fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}
