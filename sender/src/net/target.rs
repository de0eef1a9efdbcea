//! Each receiver's request settings, resolved once when the configuration
//! is read: its client (shared with receivers of equal settings), method,
//! headers, body encoding and timeout. Every start-up refusal of a
//! receiver is made here, so `--check` and a reload refuse what start-up
//! refuses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spoolpost_ops::config::Method;
use spoolpost_ops::proxy::EnvProxies;
use spoolpost_ops::route::Receiver;

use crate::net::client::{Client, ClientSettings};
use crate::net::encode::Encoding;
use crate::net::headers::Headers;
use crate::net::s3::S3Target;

/// Per-receiver request settings, resolved once at start-up.
pub struct Target {
    pub(super) client: Client,
    /// `server_name`: the URL's host is replaced by it, and the client
    /// resolves it to where the URL pointed.
    pub(super) server_name: Option<String>,
    pub(super) method: reqwest::Method,
    pub(super) headers: Headers,
    pub(super) encoding: Encoding,
    pub(super) timeout: Duration,
    /// An S3-compatible receiver's bucket, credentials and object rules.
    pub(super) s3: Option<S3Target>,
}

/// The proxy environment as start-up reads it; installs the process-wide
/// rustls provider first (a second install is harmless).
pub fn env_proxies() -> Result<EnvProxies, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    EnvProxies::from_lookup(|name| std::env::var(name).ok())
}

impl Target {
    /// Receiver `r`'s client (shared through `clients` with receivers of
    /// equal settings) and headers: every start-up refusal of a receiver
    /// is made here.
    pub fn new(
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
        let s3 =
            c.s3.as_ref()
                .map(|s3| S3Target::new(&r.name, c, s3))
                .transpose()?;
        Ok(Target {
            client,
            server_name: c.server_name.clone(),
            method: match c.method {
                _ if s3.is_some() => reqwest::Method::PUT,
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
            },
            headers,
            encoding: c.encoding().into(),
            timeout: c.timeout,
            s3,
        })
    }
}
