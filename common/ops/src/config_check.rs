//! What a configuration must be, beyond its shape, to work: every number
//! and duration in its valid range, receiver names safe as file names and
//! table cells, a `ca_file` that holds a certificate, globs that compile.
//!
//! Serde checks the shape and this module the sense, so that a file that
//! cannot work is refused at start (exit 78) with the line to fix, instead
//! of being found out at the first request (`timeout = "0s"` times every
//! request out at once, forever). Routing rules are checked where they are
//! compiled, in `route.rs`.

use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use spoolpost_protocol::receiver::check_receiver_name;

use crate::config::{
    CompressionKind, ConfigError, HeaderValue, Loaded, ReadyRule, ReceiverConfig, is_header_value,
};

/// The longest duration any setting takes. Longer ones are typos (and
/// would overflow clock arithmetic).
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The most runtime threads a sender takes, from its configuration or
/// its command line (`--threads`).
pub const MAX_THREADS: usize = 1024;

/// Checks a parsed file; the first problem found is the error.
pub fn check(loaded: &Loaded) -> Result<(), ConfigError> {
    match check_all(loaded).into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// The first problem of each part (the top level, `[sender]`, each
/// receiver, `[collector]`), in that order: what `--check` lists, where
/// start-up stops at the first.
pub fn check_all(loaded: &Loaded) -> Vec<ConfigError> {
    let c = Checker { loaded };
    let mut all: Vec<ConfigError> = [c.top(), c.sender()]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    all.extend(c.receivers());
    all.extend(c.collector().err());
    all
}

struct Checker<'a> {
    loaded: &'a Loaded,
}

impl Checker<'_> {
    fn fail(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        self.loaded.error_at_key(path, message)
    }

    /// A duration must be more than zero (unless `zero_ok`) and at most
    /// ten years.
    fn duration(&self, path: &[&str], d: Duration, zero_ok: bool) -> Result<(), ConfigError> {
        let key = path.last().copied().unwrap_or_default();
        if d.is_zero() && !zero_ok {
            return Err(self.fail(path, format!("{key} must be more than 0s")));
        }
        if d > MAX_DURATION {
            return Err(self.fail(path, format!("{key} must be at most 3650 days")));
        }
        Ok(())
    }

    fn at_least(&self, path: &[&str], value: u64, least: u64) -> Result<(), ConfigError> {
        if value < least {
            let key = path.last().copied().unwrap_or_default();
            return Err(self.fail(path, format!("{key} must be at least {least}")));
        }
        Ok(())
    }

    fn top(&self) -> Result<(), ConfigError> {
        let config = &self.loaded.config;
        if config
            .spool
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(self.fail(&["spool"], "spool must not be empty"));
        }
        // The reporter takes no settings yet; a key here would be ignored.
        if let Some(key) = config.reporter.as_ref().and_then(|t| t.keys().next()) {
            return Err(self.fail(
                &["reporter", key],
                format!("unknown field `{key}`: [reporter] takes no settings"),
            ));
        }
        Ok(())
    }

    fn sender(&self) -> Result<(), ConfigError> {
        let s = &self.loaded.config.sender;
        let at = |key: &'static str| ["sender", key];
        self.at_least(&at("concurrency"), s.concurrency as u64, 1)?;
        self.at_least(&at("threads"), s.threads as u64, 1)?;
        if s.threads > MAX_THREADS {
            return Err(self.fail(
                &at("threads"),
                format!("threads must be at most {MAX_THREADS}"),
            ));
        }
        self.at_least(&at("breaker_failures"), s.breaker_failures.into(), 1)?;
        self.duration(&at("max_age"), s.max_age, false)?;
        self.duration(&at("backoff_initial"), s.backoff_initial, false)?;
        self.duration(&at("backoff_max"), s.backoff_max, false)?;
        self.duration(&at("breaker_open_initial"), s.breaker_open_initial, false)?;
        self.duration(&at("breaker_open_max"), s.breaker_open_max, false)?;
        // No grace is a choice: cut requests at once on SIGTERM.
        self.duration(&at("grace"), s.grace, true)?;
        self.duration(&at("rescan_interval"), s.rescan_interval, false)?;
        // Only when both are written: an initial wait above the default
        // maximum is capped by it, which is what such a file asks for.
        let written = |a: &str, b: &str| {
            self.loaded.key_span(&["sender", a]).is_some()
                && self.loaded.key_span(&["sender", b]).is_some()
        };
        if s.backoff_max < s.backoff_initial && written("backoff_initial", "backoff_max") {
            return Err(self.fail(
                &at("backoff_max"),
                "backoff_max must be at least backoff_initial",
            ));
        }
        if s.breaker_open_max < s.breaker_open_initial
            && written("breaker_open_initial", "breaker_open_max")
        {
            return Err(self.fail(
                &at("breaker_open_max"),
                "breaker_open_max must be at least breaker_open_initial",
            ));
        }
        Ok(())
    }

    /// Each receiver's first problem: a receiver is checked whatever the
    /// ones before it had, so `--check` can list them all.
    fn receivers(&self) -> Vec<ConfigError> {
        self.loaded
            .config
            .receivers
            .iter()
            .filter_map(|(name, spanned)| self.receiver(name, spanned.get_ref()).err())
            .collect()
    }

    fn receiver(&self, name: &String, r: &ReceiverConfig) -> Result<(), ConfigError> {
        {
            let at = |key: &'static str| ["receivers", name.as_str(), key];
            check_receiver_name(name).map_err(|e| self.fail(&["receivers", name], e))?;
            let prefix = |e: String| format!("receiver {name}: {e}");
            self.duration(&at("timeout"), r.timeout, false)
                .map_err(|e| ConfigError {
                    message: prefix(e.message),
                    ..e
                })?;
            self.duration(&at("connect_timeout"), r.connect_timeout, false)
                .map_err(|e| ConfigError {
                    message: prefix(e.message),
                    ..e
                })?;
            if r.concurrency == 0 {
                return Err(self.fail(
                    &at("concurrency"),
                    prefix("concurrency must be at least 1".into()),
                ));
            }
            self.endpoints_and_compression(name, r)?;
            if r.gzip_level > 9 {
                return Err(self.fail(
                    &at("gzip_level"),
                    prefix("gzip_level must be 0 to 9".into()),
                ));
            }
            for key in ["retry_statuses", "reject_statuses"] {
                let codes = if key == "retry_statuses" {
                    &r.retry_statuses
                } else {
                    &r.reject_statuses
                };
                if let Some(s) = codes.iter().find(|s| !(300..=599).contains(*s)) {
                    return Err(self.fail(
                        &at(key),
                        prefix(format!("{key}: {s} is not an HTTP status from 300 to 599")),
                    ));
                }
            }
            if r.content_type.is_empty() || !is_header_value(&r.content_type) {
                return Err(self.fail(
                    &at("content_type"),
                    prefix(format!(
                        "content_type {:?} is not a valid header value",
                        r.content_type
                    )),
                ));
            }
            for (header, value) in &r.headers {
                let path = ["receivers", name.as_str(), "headers", header.as_str()];
                if !is_header_name(header) {
                    return Err(self.fail(
                        &path,
                        prefix(format!("{header:?} is not a valid header name")),
                    ));
                }
                if let HeaderValue::Literal(v) = value
                    && !is_header_value(v)
                {
                    return Err(self.fail(
                        &path,
                        prefix(format!(
                            "header {header} has a value that is not a valid header value"
                        )),
                    ));
                }
            }
            if let Some(ca) = &r.ca_file {
                check_ca_file(ca).map_err(|e| self.fail(&at("ca_file"), prefix(e)))?;
            }
            match (&r.client_cert, &r.client_key) {
                (Some(_), None) => {
                    return Err(self.fail(
                        &at("client_cert"),
                        prefix("client_cert needs client_key (the key of the certificate)".into()),
                    ));
                }
                (None, Some(_)) => {
                    return Err(self.fail(
                        &at("client_key"),
                        prefix("client_key needs client_cert (the certificate of the key)".into()),
                    ));
                }
                _ => {}
            }
            if let Some(server_name) = &r.server_name {
                check_server_name(server_name, &r.url)
                    .map_err(|e| self.fail(&at("server_name"), prefix(e)))?;
            }
            if let Some(HeaderValue::Literal(proxy)) = &r.proxy {
                crate::proxy::parse_setting(proxy)
                    .map_err(|e| self.fail(&at("proxy"), prefix(e)))?;
            }
        }
        Ok(())
    }

    /// `url` or `urls` (exactly one), and `compression` or the older
    /// `gzip`/`gzip_level` (never both).
    fn endpoints_and_compression(&self, name: &str, r: &ReceiverConfig) -> Result<(), ConfigError> {
        let written = |key: &str| self.loaded.key_span(&["receivers", name, key]).is_some();
        let at = |key: &str| ["receivers", name, key].map(str::to_owned);
        let fail = |key: &str, message: String| {
            let path = at(key);
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            self.fail(&path, format!("receiver {name}: {message}"))
        };
        match (written("url"), written("urls")) {
            (true, true) => {
                return Err(fail(
                    "urls",
                    "has both url and urls: write one (urls for several endpoints)".into(),
                ));
            }
            (false, false) => {
                return Err(self.fail(
                    &["receivers", name],
                    format!("receiver {name}: needs url (or urls for several endpoints)"),
                ));
            }
            (false, true) if r.urls.is_empty() => {
                return Err(fail("urls", "urls is empty: list at least one URL".into()));
            }
            _ => {}
        }
        // Endpoints are known by their redacted URLs (circuit file,
        // reporter), so two must differ in more than credentials or query.
        let labels: Vec<String> = r
            .urls
            .iter()
            .map(|u| crate::redact::redact_template(u))
            .collect();
        if let Some(dup) = labels
            .iter()
            .enumerate()
            .find(|(i, l)| labels[..*i].contains(l))
        {
            return Err(fail(
                "urls",
                format!("urls lists {} twice (credentials and query aside)", dup.1),
            ));
        }
        if (r.compression.is_some() || r.compression_level.is_some())
            && let Some(old) = ["gzip", "gzip_level"].into_iter().find(|k| written(k))
        {
            let new = if r.compression.is_some() {
                "compression"
            } else {
                "compression_level"
            };
            return Err(fail(
                old,
                format!("has both {old} and {new}: write compression and compression_level only"),
            ));
        }
        let level = r.compression_level;
        match (r.compression, level) {
            (None, Some(_)) => Err(fail(
                "compression_level",
                "compression_level needs compression = \"gzip\" or \"zstd\"".into(),
            )),
            (Some(CompressionKind::Gzip), Some(l)) if !(0..=9).contains(&l) => Err(fail(
                "compression_level",
                "compression_level for gzip must be 0 to 9".into(),
            )),
            (Some(CompressionKind::Zstd), Some(l)) if !(1..=22).contains(&l) => Err(fail(
                "compression_level",
                "compression_level for zstd must be 1 to 22".into(),
            )),
            (Some(CompressionKind::None), Some(_)) => Err(fail(
                "compression_level",
                "compression = \"none\" takes no compression_level".into(),
            )),
            _ => Ok(()),
        }
    }

    fn collector(&self) -> Result<(), ConfigError> {
        let c = &self.loaded.config.collector;
        let at = |key: &'static str| ["collector", key];
        self.duration(&at("rescan_interval"), c.rescan_interval, false)?;
        if let Some(n) = c.max_incoming_files {
            self.at_least(&at("max_incoming_files"), n, 1)?;
        }
        if c.max_incoming_bytes.is_some_and(|b| b.as_u64() == 0) {
            return Err(self.fail(
                &at("max_incoming_bytes"),
                "max_incoming_bytes must be more than 0 (leave it out for no limit)",
            ));
        }
        for (i, source) in c.sources.iter().enumerate() {
            let i = i.to_string();
            let at = |key: &'static str| ["collector", "sources", i.as_str(), key];
            if source.path.as_os_str().is_empty() {
                return Err(self.fail(&at("path"), "a source's path must not be empty"));
            }
            // 0s is allowed: producers that rename complete files into
            // place need no settling.
            self.duration(&at("settle"), source.settle, true)?;
            if source.ready == ReadyRule::Marker && source.markers.is_empty() {
                return Err(self.fail(
                    &at("markers"),
                    "ready = \"marker\" needs at least one marker",
                ));
            }
            if let Some(m) = source
                .markers
                .iter()
                .find(|m| m.is_empty() || m.contains('/'))
            {
                return Err(self.fail(&at("markers"), format!("{m:?} is not a marker suffix")));
            }
            for (key, globs) in [("include", &source.include), ("exclude", &source.exclude)] {
                for g in globs {
                    globset::Glob::new(g)
                        .map_err(|e| self.fail(&at(key), format!("bad glob {g:?}: {e}")))?;
                }
            }
        }
        Ok(())
    }
}

/// A `ca_file` must hold at least one certificate, all well formed: a file
/// with none (empty, or only a key) would silently trust nothing extra.
fn check_ca_file(path: &Path) -> Result<(), String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| {
            format!(
                "ca_file {} holds a malformed PEM block: {e}",
                path.display()
            )
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "ca_file {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(())
}

/// `server_name` must be a DNS name, for an `https://` URL whose host is
/// fixed (a host from a route's captures could not be mapped to it).
fn check_server_name(name: &str, url: &str) -> Result<(), String> {
    match rustls_pki_types::ServerName::try_from(name) {
        Ok(rustls_pki_types::ServerName::DnsName(_)) => {}
        _ => return Err(format!("server_name {name:?} is not a DNS name")),
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(
            "server_name needs an https:// url (it names the certificate to expect)".into(),
        );
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('{') {
        return Err(
            "server_name needs a url whose host does not come from a route's captures".into(),
        );
    }
    Ok(())
}

/// A receiver's client certificate and key (sender only: the key is a
/// secret other programs may not be able to read): both readable, the
/// certificate file holding certificates, the key file one key of a kind
/// rustls takes, and the key the certificate's. The error names the key
/// (`client_cert` or `client_key`) to point at.
pub fn client_identity(r: &ReceiverConfig) -> Result<(), (&'static str, String)> {
    let (Some(cert), Some(key)) = (&r.client_cert, &r.client_key) else {
        return Ok(());
    };
    let c = |e: String| ("client_cert", e);
    let k = |e: String| ("client_key", e);
    let pem = std::fs::read(cert)
        .map_err(|e| c(format!("cannot read client_cert {}: {e}", cert.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            c(format!(
                "client_cert {} holds a malformed PEM block: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(c(format!(
            "client_cert {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            cert.display()
        )));
    }
    let pem = std::fs::read(key)
        .map_err(|e| k(format!("cannot read client_key {}: {e}", key.display())))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        k(format!(
            "client_key {} holds no private key (expected PEM: PKCS#8, PKCS#1 or SEC1)",
            key.display()
        ))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, der, &provider).map_err(|e| {
        k(format!(
            "client_key {} is not the key of client_cert {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    Ok(())
}

/// A `proxy` value from a secret resolves to a usable proxy setting.
pub fn proxy(value: &HeaderValue) -> Result<(), String> {
    let text = value.resolve()?;
    crate::proxy::parse_setting(&text).map(|_| ())
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Loaded {
    /// Resolves every header secret, so a missing variable or an unreadable
    /// file stops the sender at start with the line that names it, not at
    /// the first request. Only the sender calls this: the other programs
    /// never send, and may run where the secrets are not.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        for (name, receiver) in &self.config.receivers {
            let r = receiver.get_ref();
            client_identity(r).map_err(|(key, e)| {
                self.error_at_key(&["receivers", name, key], format!("receiver {name}: {e}"))
            })?;
            if let Some(setting) = &r.proxy {
                proxy(setting).map_err(|e| {
                    self.error_at_key(
                        &["receivers", name, "proxy"],
                        format!("receiver {name}: {e}"),
                    )
                })?;
            }
            for (header, value) in &r.headers {
                value.resolve_header().map_err(|e| {
                    self.error_at_key(
                        &["receivers", name, "headers", header],
                        format!("receiver {name}: header {header}: {e}"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rules() {
        assert!(is_header_name("X-Api-Key"));
        assert!(!is_header_name("X Api") && !is_header_name(""));
        assert!(is_header_value("Bearer abc\t1"));
        assert!(!is_header_value("a\nb"));
    }

    /// Every error a file can have names its line: (text, line, words).
    #[test]
    fn every_config_error_names_its_line() {
        let r = "[receivers.r]\nurl = \"http://h/\"\n";
        let cases: Vec<(String, usize, &str)> = vec![
            ("spool = \"\"\n".into(), 1, "spool must not be empty"),
            ("[reporter]\nx = 1\n".into(), 2, "takes no settings"),
            ("[sender]\nconcurrency = 0\n".into(), 2, "concurrency must be at least 1"),
            ("[sender]\nthreads = 0\n".into(), 2, "threads must be at least 1"),
            ("[sender]\nthreads = 5000\n".into(), 2, "at most 1024"),
            ("[sender]\nbreaker_failures = 0\n".into(), 2, "at least 1"),
            ("[sender]\nmax_age = \"0s\"\n".into(), 2, "max_age must be more than 0s"),
            ("[sender]\nbackoff_initial = \"0s\"\n".into(), 2, "more than 0s"),
            ("[sender]\n\nbackoff_max = \"0s\"\n".into(), 3, "more than 0s"),
            ("[sender]\nbackoff_max = \"1s\"\nbackoff_initial = \"2s\"\n".into(), 2, "at least backoff_initial"),
            ("[sender]\nbreaker_open_initial = \"0s\"\n".into(), 2, "more than 0s"),
            ("[sender]\nbreaker_open_max = \"1s\"\nbreaker_open_initial = \"2s\"\n".into(), 2, "at least breaker_open_initial"),
            ("[sender]\nrescan_interval = \"0s\"\n".into(), 2, "more than 0s"),
            ("[sender]\nmax_age = \"20000d\"\n".into(), 2, "at most 3650 days"),
            (format!("{r}timeout = \"0s\"\n"), 3, "receiver r: timeout must be more than 0s"),
            (format!("{r}connect_timeout = \"0ms\"\n"), 3, "connect_timeout must be more than 0s"),
            (format!("{r}concurrency = 0\n"), 3, "concurrency must be at least 1"),
            (format!("{r}gzip_level = 10\n"), 3, "0 to 9"),
            (format!("{r}\nrate_limit = \"200/d\"\n"), 4, "is not a rate"),
            (format!("{r}rate_limit = 200\n"), 3, "invalid type"),
            (format!("{r}retry_statuses = [200]\n"), 3, "200 is not an HTTP status"),
            (format!("{r}content_type = \"a\\nb\"\n"), 3, "content_type"),
            (format!("{r}headers = {{ \"X Y\" = \"v\" }}\n"), 3, "not a valid header name"),
            (format!("{r}[receivers.r.headers]\nX = \"a\\u0001\"\n"), 4, "not a valid header value"),
            (format!("{r}ca_file = \"/nonexistent/ca.pem\"\n"), 3, "cannot read ca_file"),
            (format!("{r}client_cert = \"/c.pem\"\n"), 3, "client_cert needs client_key"),
            (format!("{r}\nclient_key = \"/k.pem\"\n"), 4, "client_key needs client_cert"),
            (format!("{r}tls_min_version = \"1.1\"\n"), 3, "unknown variant"),
            (format!("{r}http_version = \"3\"\n"), 3, "unknown variant"),
            (format!("{r}server_name = \"a b\"\n"), 3, "not a DNS name"),
            (format!("{r}server_name = \"h.example\"\n"), 3, "needs an https:// url"),
            ("[receivers.r]\nurl = \"https://{h}.x/\"\nserver_name = \"h.example\"\n".into(), 3, "route's captures"),
            (format!("{r}proxy = \"socks5://p:1080\"\n"), 3, "not supported"),
            (format!("{r}proxy = \"http://u:SECRET@p\"\n"), 3, "give the port"),
            ("spool = \"/s\"\n[receivers.\"a\\nb\"]\nurl = \"http://h/\"\n".into(), 2, "is not a receiver name"),
            ("[receivers.\"../x\"]\nurl = \"http://h/\"\n".into(), 1, "is not a receiver name"),
            ("[collector]\nrescan_interval = \"0s\"\n".into(), 2, "more than 0s"),
            ("[collector]\nmax_incoming_files = 0\n".into(), 2, "at least 1"),
            ("[collector]\nmax_incoming_bytes = \"0 B\"\n".into(), 2, "more than 0"),
            ("[[collector.sources]]\npath = \"\"\n".into(), 2, "must not be empty"),
            ("[[collector.sources]]\npath = \"/a\"\n[[collector.sources]]\npath = \"/b\"\nready = \"marker\"\nmarkers = []\n".into(), 6, "needs at least one marker"),
            ("[[collector.sources]]\npath = \"/a\"\nmarkers = [\"a/b\"]\n".into(), 3, "not a marker suffix"),
            ("[[collector.sources]]\npath = \"/a\"\ninclude = [\"[a\"]\n".into(), 3, "bad glob"),
            ("[[collector.sources]]\npath = \"/a\"\nsettle = \"20000d\"\n".into(), 3, "at most"),
            // The shape, checked by serde.
            ("[sender\n".into(), 1, ""),
            ("\n[sender]\nconcurency = 1\n".into(), 3, "concurency"),
            ("[sender]\nconcurrency = \"many\"\n".into(), 2, "invalid type"),
            ("[receivers.r]\nmethod = \"PUT\"\n".into(), 1, "needs url (or urls"),
            ("[receivers.r]\nurl = \"http://a/\"\nurls = [\"http://b/\"]\n".into(), 3, "both url and urls"),
            ("[receivers.r]\nurls = []\n".into(), 2, "urls is empty"),
            ("[receivers.r]\nurls = [\"http://a/?t=1\", \"http://u:p@a/\"]\n".into(), 2, "http://a/ twice"),
            (format!("{r}gzip = true\ncompression = \"zstd\"\n"), 3, "both gzip and compression"),
            (format!("{r}compression_level = 3\n"), 3, "needs compression"),
            (format!("{r}compression = \"zstd\"\ncompression_level = 23\n"), 4, "1 to 22"),
            (format!("{r}compression = \"gzip\"\ncompression_level = 10\n"), 4, "0 to 9"),
            (format!("{r}compression = \"none\"\ncompression_level = 1\n"), 4, "takes no compression_level"),
            (format!("{r}compression = \"brotli\"\n"), 3, "unknown variant"),
        ];
        for (text, line, words) in cases {
            let err = crate::config_load::parse(Path::new("t.toml"), text.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert_eq!(err.line, Some(line), "{text}\n{err}");
            assert!(
                err.to_string().starts_with(&format!("t.toml:{line}: ")),
                "{err}"
            );
            assert!(err.message.contains(words), "{text}\n{err}");
        }
    }

    /// Keys in every PEM form a client key comes in (made with openssl,
    /// for these tests only): SEC1 (`EC PRIVATE KEY`) and PKCS#1 (`RSA
    /// PRIVATE KEY`); PKCS#8 is what the integration tests use.
    #[test]
    fn client_keys_in_sec1_and_pkcs1_match_their_certificates_and_not_others() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let pair = |cert: &str, key: &str| {
            let mut r = ReceiverConfig::for_url("https://h/");
            r.client_cert = Some(data.join(cert));
            r.client_key = Some(data.join(key));
            client_identity(&r)
        };
        pair("ec.pem", "ec-sec1.key").unwrap();
        pair("rsa.pem", "rsa-pkcs1.key").unwrap();
        let (key, e) = pair("ec.pem", "rsa-pkcs1.key").unwrap_err();
        assert_eq!(key, "client_key");
        assert!(e.contains("is not the key of client_cert"), "{e}");
        let (key, e) = pair("ec-sec1.key", "ec-sec1.key").unwrap_err();
        assert_eq!(key, "client_cert");
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn zero_grace_and_zero_settle_are_choices_not_mistakes() {
        let text = "[sender]\ngrace = \"0s\"\nbackoff_initial = \"1h\"\n[[collector.sources]]\npath = \"/a\"\nsettle = \"0s\"\n";
        crate::config_load::parse(Path::new("t.toml"), text.into()).unwrap();
    }
}
