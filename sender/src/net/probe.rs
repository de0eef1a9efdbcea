//! `sender --check --probe`: resolve, connect and complete the TLS
//! handshake with each receiver, with the trust the sender itself uses,
//! wait for the receiver's verdict on our client certificate (see
//! [`await_verdict`]), and send no request.
//!
//! reqwest cannot stop after a handshake, so this speaks rustls over a
//! plain `TcpStream`, verifying with `rustls-platform-verifier` plus the
//! receiver's `ca_file`: the same verifier reqwest builds for the sender
//! (`tls_certs_merge` becomes `Verifier::new_with_extra_roots`), under
//! `server_name` when one is set, with `tls_min_version` and the client
//! certificate. A receiver behind a proxy is reached through it (a
//! `CONNECT` tunnel, for either scheme). With `insecure_skip_verify` only
//! the connection is probed: the sender would accept any certificate.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use spoolpost_ops::config::{ReceiverConfig, TlsVersion};
use spoolpost_ops::proxy::{self, EnvProxies, ProxyUrl};

/// What a probe of one endpoint (`url`, one of the receiver's) found: the
/// time to a connection (and handshake).
pub fn probe(config: &ReceiverConfig, url: &str) -> Result<Duration, String> {
    let url = reqwest::Url::parse(url)
        .map_err(|_| "its host depends on a route's captures: not probed".to_string())?;
    let host = url.host_str().ok_or("the url has no host")?.to_string();
    let port = url.port_or_known_default().ok_or("the url has no port")?;
    let started = Instant::now();
    let env = EnvProxies::from_lookup(|name| std::env::var(name).ok())?;
    let verify_as = config.server_name.clone().unwrap_or_else(|| host.clone());
    let via = match &config.proxy {
        None => env.for_target(url.scheme(), &verify_as).cloned(),
        Some(value) => proxy::parse_setting(&value.resolve()?)?,
    };
    let (connect_host, connect_port) = match &via {
        None => (host.clone(), port),
        Some(p) => {
            let u = reqwest::Url::parse(&p.url).map_err(|e| format!("proxy: {e}"))?;
            (
                u.host_str().unwrap_or_default().to_string(),
                u.port().unwrap_or(80),
            )
        }
    };
    let addrs: Vec<_> = (connect_host.as_str(), connect_port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}: {e}"))?
        .collect();
    let host = connect_host;
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
    if let Some(p) = &via {
        let target_host = url.host_str().unwrap_or_default();
        let target_host = if config.server_name.is_some() {
            &verify_as
        } else {
            target_host
        };
        tunnel(
            &mut tcp,
            p,
            &format!("{target_host}:{port}"),
            config.timeout,
        )?;
    }
    if url.scheme() == "https" && !config.insecure_skip_verify {
        handshake(&mut tcp, &verify_as, config)?;
    }
    Ok(started.elapsed())
}

/// Asks the proxy for a tunnel to `target` and reads its answer.
fn tunnel(
    tcp: &mut TcpStream,
    p: &ProxyUrl,
    target: &str,
    timeout: Duration,
) -> Result<(), String> {
    use std::io::{Read, Write};
    let _ = tcp.set_read_timeout(Some(timeout));
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(user) = &p.user {
        use base64::Engine;
        let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let pair = format!("{user}:{}", p.password.as_deref().unwrap_or_default());
        head.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            encode(pair.as_bytes())
        ));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes())
        .map_err(|e| format!("proxy {}: {e}", p.url))?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") && answer.len() < 16 * 1024 {
        match tcp.read(&mut byte) {
            Ok(1) => answer.push(byte[0]),
            Ok(_) => return Err(format!("proxy {}: closed the connection", p.url)),
            Err(e) => return Err(format!("proxy {}: {e}", p.url)),
        }
    }
    let status = String::from_utf8_lossy(&answer);
    let line = status.lines().next().unwrap_or_default();
    if line.split(' ').nth(1) != Some("200") {
        return Err(format!("proxy {} refused the tunnel: {line}", p.url));
    }
    Ok(())
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
    let versions: &[&rustls::SupportedProtocolVersion] = match config.tls_min_version {
        TlsVersion::V1_2 => rustls::DEFAULT_VERSIONS,
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let tls = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client_cert and client_key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(tls), name)
        .map_err(|e| format!("cannot start TLS: {e}"))?;
    let _ = tcp.set_read_timeout(Some(config.timeout));
    let _ = tcp.set_write_timeout(Some(config.timeout));
    while conn.is_handshaking() {
        conn.complete_io(tcp)
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
    }
    await_verdict(&mut conn, tcp, host)
}

/// Waits for the receiver's verdict on the handshake. Under TLS 1.3 the
/// client's side ends with its Finished, before the server has judged the
/// client certificate: a refusal (`UnknownCA`, `CertificateExpired`) comes
/// after, as an alert (a probe that stopped at the handshake said "ok",
/// and the sender then parked every file). So the probe asks to close (close_notify, no
/// request) and reads until the receiver closes too: a refusal arrives
/// first, as it answers the client's flight before it reads the close.
/// A receiver that says nothing within the timeout has refused nothing.
fn await_verdict(
    conn: &mut rustls::ClientConnection,
    tcp: &mut TcpStream,
    host: &str,
) -> Result<(), String> {
    use std::io::ErrorKind;
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(tcp)
            .map_err(|e| format!("TLS with {host}: {e}"))?;
    }
    // And end our side of the TCP stream, for a receiver that waits for
    // that rather than for close_notify before it closes.
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    loop {
        match conn.read_tls(tcp) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "TLS with {host}: {e} right after the handshake (a refused client certificate?)"
                ));
            }
        }
        match conn.process_new_packets() {
            Ok(state) if state.peer_has_closed() => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("{host} refused the handshake: {e}")),
        }
    }
}
