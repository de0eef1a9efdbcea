//! `sender --check --probe`: resolve, connect and complete the TLS
//! handshake with each receiver, with the trust the sender itself uses,
//! and send nothing.
//!
//! reqwest cannot stop after a handshake, so this speaks rustls over a
//! plain `TcpStream`, verifying with `rustls-platform-verifier` plus the
//! receiver's `ca_file`: the same verifier reqwest builds for the sender
//! (`tls_certs_merge` becomes `Verifier::new_with_extra_roots`).

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use spoolpost_common::config::ReceiverConfig;

/// What a probe of one endpoint (`url`, one of the receiver's) found: the
/// time to a connection (and handshake).
pub fn probe(config: &ReceiverConfig, url: &str) -> Result<Duration, String> {
    let url = reqwest::Url::parse(url)
        .map_err(|_| "its host depends on a route's captures: not probed".to_string())?;
    let host = url.host_str().ok_or("the url has no host")?.to_string();
    let port = url.port_or_known_default().ok_or("the url has no port")?;
    let started = Instant::now();
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}: {e}"))?
        .collect();
    let mut last = format!("resolve {host}: no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    let mut tcp = tcp.ok_or(last)?;
    if url.scheme() == "https" {
        handshake(&mut tcp, &host, config)?;
    }
    Ok(started.elapsed())
}

fn handshake(tcp: &mut TcpStream, host: &str, config: &ReceiverConfig) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match &config.ca_file {
        None => rustls_platform_verifier::Verifier::new(provider.clone()),
        Some(path) => {
            let extra = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        }
    }
    .map_err(|e| format!("cannot set up TLS trust: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(tls), name)
        .map_err(|e| format!("cannot start TLS: {e}"))?;
    let _ = tcp.set_read_timeout(Some(config.timeout));
    let _ = tcp.set_write_timeout(Some(config.timeout));
    while conn.is_handshaking() {
        conn.complete_io(tcp)
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
    }
    Ok(())
}
