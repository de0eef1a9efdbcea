//! A receiver's HTTP client: made from its connection settings (trust,
//! client certificate, TLS version, `server_name`, proxy, HTTP version),
//! shared by receivers whose settings are equal, and made anew when its
//! client certificate or key file changes (checked at most once every
//! [`RECHECK`], and at once after a TLS failure), so a rotated
//! certificate is used without a restart, as a rotated header secret is.
//! A pair that cannot be used (half-written, or a key that is not the
//! certificate's) keeps the last good client, with a warning.
//!
//! reqwest's own reading of the proxy environment is switched off: which
//! proxy a request takes is `spoolpost_ops::proxy`'s rule, given to
//! reqwest as a custom proxy.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spoolpost_ops::config::{HttpVersion, ReceiverConfig, TlsVersion};
use spoolpost_ops::proxy::{self, EnvProxies, ProxyUrl};

use crate::net::headers::RECHECK;
use crate::net::transport::error_text;

/// A receiver's client, kept current with its certificate files.
pub struct Client {
    settings: ClientSettings,
    max_idle: usize,
    state: Mutex<State>,
}

struct State {
    client: reqwest::Client,
    /// The certificate files as they were when `client` was made.
    stamp: Option<Stamp>,
    checked: Instant,
    stale: bool,
}

/// What tells a rewritten file: size, modification and change times,
/// inode (a file renamed into place).
type Stamp = Vec<(u64, i64, i64, i64, i64, u64)>;

impl Client {
    /// A client for `settings`, sharing `client` (already made for equal
    /// settings) when given.
    pub fn new(
        settings: ClientSettings,
        max_idle: usize,
        shared: Option<reqwest::Client>,
    ) -> Result<Client, String> {
        let stamp = settings.stamp();
        let client = match shared {
            Some(client) => client,
            None => build_client(&settings, max_idle)?,
        };
        Ok(Client {
            settings,
            max_idle,
            state: Mutex::new(State {
                client,
                stamp,
                checked: Instant::now(),
                stale: false,
            }),
        })
    }

    /// The client for a request starting now.
    pub fn current(&self, now: Instant) -> reqwest::Client {
        if self.settings.identity.is_none() {
            return self.state.lock().unwrap().client.clone();
        }
        {
            let mut state = self.state.lock().unwrap();
            if !state.stale && now.saturating_duration_since(state.checked) < RECHECK {
                return state.client.clone();
            }
            state.checked = now;
            state.stale = false;
            let stamp = self.settings.stamp();
            if stamp == state.stamp {
                return state.client.clone();
            }
            // Whatever comes of it, this version of the files is judged
            // once: a bad pair warns once, not every second.
            state.stamp = stamp;
        }
        // Made outside the lock: reading and parsing the files delays one
        // request, not every request to this receiver.
        let fresh = build_client(&self.settings, self.max_idle);
        let mut state = self.state.lock().unwrap();
        match fresh {
            Ok(client) => {
                tracing::info!("a client certificate or key changed; new connections use it");
                state.client = client;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot use the changed client certificate or key; keeping the last good one")
            }
        }
        state.client.clone()
    }

    /// A TLS handshake failed: look at the certificate files before the
    /// next request.
    pub fn mark_stale(&self) {
        self.state.lock().unwrap().stale = true;
    }
}

/// What a receiver's client is made from; receivers with equal settings
/// share a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    ca_file: Option<PathBuf>,
    connect_timeout: Duration,
    identity: Option<(PathBuf, PathBuf)>,
    tls_min_version: TlsVersion,
    /// `server_name` and the URL host it stands for.
    alias: Option<(String, String)>,
    insecure: bool,
    proxy: Proxying,
    http_version: HttpVersion,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Proxying {
    None,
    Fixed(ProxyUrl),
    Env(EnvProxies),
}

impl ClientSettings {
    pub fn of(c: &ReceiverConfig, env: &EnvProxies) -> Result<ClientSettings, String> {
        let proxy = match &c.proxy {
            None if env.any() => Proxying::Env(env.clone()),
            None => Proxying::None,
            Some(value) => match proxy::parse_setting(&value.resolve()?)? {
                None => Proxying::None,
                Some(url) => Proxying::Fixed(url),
            },
        };
        let alias = match &c.server_name {
            None => None,
            Some(name) => {
                let url = reqwest::Url::parse(&c.url)
                    .map_err(|e| format!("server_name: the url does not parse: {e}"))?;
                let host = url.host_str().ok_or("server_name: the url has no host")?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((name.to_ascii_lowercase(), host.to_string()))
            }
        };
        Ok(ClientSettings {
            ca_file: c.ca_file.clone(),
            connect_timeout: c.connect_timeout,
            identity: c.client_cert.clone().zip(c.client_key.clone()),
            tls_min_version: c.tls_min_version,
            alias,
            insecure: c.insecure_skip_verify,
            proxy,
            http_version: c.http_version,
        })
    }

    /// The certificate files' stamp, `None` without them (or when they
    /// cannot be looked at: the next look compares again).
    fn stamp(&self) -> Option<Stamp> {
        let (cert, key) = self.identity.as_ref()?;
        [cert, key]
            .iter()
            .map(|p| {
                std::fs::metadata(p).ok().map(|m| {
                    (
                        m.len(),
                        m.mtime(),
                        m.mtime_nsec(),
                        m.ctime(),
                        m.ctime_nsec(),
                        m.ino(),
                    )
                })
            })
            .collect()
    }
}

fn build_client(s: &ClientSettings, max_idle: usize) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("spoolpost-sender/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(s.connect_timeout)
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        // The environment is read by our own rules, below.
        .no_proxy();
    if let Some(path) = &s.ca_file {
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
    if let Some((cert, key)) = &s.identity {
        let mut pem = std::fs::read(cert)
            .map_err(|e| format!("cannot read client_cert {}: {e}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(
            std::fs::read(key)
                .map_err(|e| format!("cannot read client_key {}: {e}", key.display()))?,
        );
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "client_cert {} and client_key {}: {}",
                cert.display(),
                key.display(),
                error_text(e)
            )
        })?;
        builder = builder.identity(identity);
    }
    if s.tls_min_version == TlsVersion::V1_3 {
        builder = builder.tls_version_min(reqwest::tls::Version::TLS_1_3);
    }
    if s.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some((name, host)) = &s.alias {
        builder = builder.dns_resolver(Arc::new(Alias {
            name: name.clone(),
            host: host.clone(),
        }));
    }
    match &s.proxy {
        Proxying::None => {}
        Proxying::Fixed(url) => {
            let proxy = reqwest::Proxy::all(url.with_credentials())
                .map_err(|e| format!("proxy {}: {}", url.url, error_text(e)))?;
            builder = builder.proxy(proxy);
        }
        Proxying::Env(env) => {
            let env = env.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                env.for_target(url.scheme(), url.host_str()?)
                    .map(ProxyUrl::with_credentials)
            }));
        }
    }
    builder = match s.http_version {
        HttpVersion::Auto => builder,
        HttpVersion::Http1 => builder.http1_only(),
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
    };
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_text(e)))
}

/// `server_name`'s resolver: the name resolves to the addresses of the
/// URL's own host (an address resolves to itself), every other name as
/// usual.
struct Alias {
    name: String,
    host: String,
}

impl reqwest::dns::Resolve for Alias {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.host.clone()
        } else {
            name.as_str().to_string()
        };
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((target.as_str(), 0))
                .await?
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cert: &str, key: &str) -> ClientSettings {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/ops/testdata");
        let mut c = ReceiverConfig::for_url("https://h/");
        c.client_cert = Some(data.join(cert));
        c.client_key = Some(data.join(key));
        ClientSettings::of(&c, &EnvProxies::default()).unwrap()
    }

    #[test]
    fn sec1_and_pkcs1_keys_make_clients_and_a_wrong_key_does_not() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        build_client(&settings("ec.pem", "ec-sec1.key"), 1).unwrap();
        build_client(&settings("rsa.pem", "rsa-pkcs1.key"), 1).unwrap();
        assert!(build_client(&settings("rsa.pem", "ec-sec1.key"), 1).is_err());
    }
}
