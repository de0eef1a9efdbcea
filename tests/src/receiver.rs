//! The test receiver: a real HTTP/1.1 server on 127.0.0.1 that answers as it
//! is told and records what it got.
//!
//! Answers are chosen per request: first from a script queued for the path
//! (consumed one per request), then from a rule for the path prefix, then
//! the default. An answer can carry `Retry-After`, wait before answering
//! (a stall), reset the connection instead of answering, answer before
//! reading the body (an early answer), or stop reading the body part way
//! until the test releases it (so a test can change a file mid-request and
//! know the change lands mid-body). Bodies are
//! gunzipped when sent with `Content-Encoding: gzip` (unzstd'd with `zstd`)
//! and recorded (the first
//! [`KEEP_BODY`] bytes, with the full length and CRC-32 for large ones). In
//! `fast` mode bodies are read and thrown away, for benchmarks; every mode
//! but the early answer reads the whole body before answering. A body cut
//! short is counted ([`Receiver::broken`]) and never recorded as received.
//!
//! In capacity mode ([`Receiver::capacity`]) it works on at most K requests
//! at once, each for T, and answers 503 at once (after reading the body) to
//! any beyond, as a service with a fixed worker pool does; it counts the
//! 503s and the most requests it ever had open at once. In queueing mode
//! ([`Receiver::queueing`]) it turns nobody away but each request takes
//! longer the more are open, as a service that shares its workers does.
//!
//! HTTP/2 ([`Receiver::start_h2`], [`Tls::http2`]) serves both versions
//! (prior knowledge on plain TCP, ALPN over TLS) and records the version
//! of each request. Over TLS ([`Receiver::start_tls_with`]) it can require
//! a client certificate from a CA of the test's ([`Pki`]) and speak only
//! TLS 1.2; handshakes it refused are counted ([`Receiver::tls_refused`]).
//!
//! Misbehaviour below HTTP (garbage, 1xx, slowloris, silence) is [`raw`].

pub mod raw;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Decompressed bytes of each body kept for inspection.
pub const KEEP_BODY: usize = 1 << 20;

/// How to answer one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
    /// Wait this long before reading the body and answering.
    pub delay: Duration,
    /// Reset the connection instead of answering.
    pub reset: bool,
    /// Answer at once, without reading the body.
    pub early: bool,
    /// Stop reading the body once this many bytes came over the wire, until
    /// [`Receiver::release`].
    pub hold_after: Option<u64>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: String::new(),
            delay: Duration::ZERO,
            reset: false,
            early: false,
            hold_after: None,
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// Answers 200 only after `delay`.
    pub fn stall(delay: Duration) -> Reply {
        Reply {
            delay,
            ..Reply::ok()
        }
    }

    pub fn reset() -> Reply {
        Reply {
            reset: true,
            ..Reply::ok()
        }
    }

    /// Answers 200 at once, before reading any of the body, as stub
    /// endpoints and some proxies do.
    pub fn early() -> Reply {
        Reply {
            early: true,
            ..Reply::ok()
        }
    }

    /// Stops reading the body after `bytes` on the wire until released.
    pub fn hold_after(mut self, bytes: u64) -> Reply {
        self.hold_after = Some(bytes);
        self
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.into());
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.into();
        self
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The decompressed body, up to [`KEEP_BODY`] bytes.
    pub body: Vec<u8>,
    pub body_len: u64,
    pub body_crc: u32,
    /// Bytes on the wire (before decompression).
    pub wire_len: u64,
    /// The answer given (0 for a reset).
    pub answered: u16,
    /// False for an early answer: the body was not read.
    pub body_read: bool,
    pub at: Instant,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Plan {
    default: Option<Reply>,
    prefixes: Vec<(String, Reply)>,
    scripts: HashMap<String, VecDeque<Reply>>,
    /// Requests without this header value get this answer first.
    require: Option<(String, String, Reply)>,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    count: u64,
    wire_bytes: u64,
    /// Bodies the client cut short.
    broken: u64,
    /// Requests waiting in a hold.
    held: u64,
    /// TLS handshakes that failed (no client certificate, a version
    /// refused, an untrusted server certificate).
    tls_refused: u64,
}

/// Capacity mode's state.
#[derive(Default)]
struct Load {
    capacity: Option<(usize, Duration)>,
    /// Queueing mode: `base` plus `per_open` for each request open.
    queueing: Option<(Duration, Duration)>,
    /// Requests being worked on.
    busy: usize,
    /// Requests open (being worked on or being turned away).
    open: usize,
    peak_open: usize,
    overloaded: u64,
    /// Faults mode ([`Receiver::faults`]): the share of requests answered
    /// 503 whatever the load, and the share never answered.
    faults: Option<(f64, f64)>,
    /// 503s faults mode gave, and requests it left hanging.
    noise_503: u64,
    hung: u64,
    /// The share of requests whose connection is reset instead of an
    /// answer ([`Receiver::resets`]), and how many were.
    resets: f64,
    reset: u64,
}

/// Counts a request as open until dropped.
struct Open(Arc<Inner>, bool);

impl Drop for Open {
    fn drop(&mut self) {
        let mut load = self.0.load.lock().unwrap();
        load.open -= 1;
        if self.1 {
            load.busy -= 1;
        }
    }
}

struct Inner {
    load: Mutex<Load>,
    fast: bool,
    /// Serve HTTP/2 as well as HTTP/1.1.
    http2: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
    plan: Mutex<Plan>,
    log: Mutex<Log>,
    changed: Condvar,
    released: tokio::sync::watch::Sender<bool>,
    /// Added to every answer once its whole body was read ([`Receiver::answer_after`]).
    answer_after: Mutex<Duration>,
}

/// A running test receiver. Stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    scheme: &'static str,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything and recording bodies.
    pub fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), false, 1)
            .expect("cannot start the test receiver")
    }

    /// Starts a receiver on `addr` (port 0 picks a free one). `fast` skips
    /// recording bodies; `threads` sizes its runtime.
    pub fn start_on(addr: SocketAddr, fast: bool, threads: usize) -> io::Result<Receiver> {
        Receiver::start_inner(addr, fast, threads, None, false)
    }

    /// As [`Receiver::start_on`], speaking HTTP/2 (prior knowledge) as
    /// well as HTTP/1.1 when `http2`.
    pub fn start_serving(
        addr: SocketAddr,
        fast: bool,
        threads: usize,
        http2: bool,
    ) -> io::Result<Receiver> {
        Receiver::start_inner(addr, fast, threads, None, http2)
    }

    /// A plain-HTTP receiver that speaks HTTP/2 (prior knowledge) as well
    /// as HTTP/1.1.
    pub fn start_h2() -> Receiver {
        Receiver::start_inner("127.0.0.1:0".parse().unwrap(), false, 1, None, true).unwrap()
    }

    /// An HTTPS receiver set up as `tls` says. Returns it with its
    /// certificate's PEM.
    pub fn start_tls_with(tls: Tls) -> (Receiver, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(tls.names.clone()).unwrap();
        let pem = cert.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match &tls.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        if tls.http2 {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rx = Receiver::start_inner(
            "127.0.0.1:0".parse().unwrap(),
            false,
            1,
            Some(acceptor),
            tls.http2,
        )
        .unwrap();
        (rx, pem)
    }

    /// Starts an HTTPS receiver with a new self-signed certificate for
    /// `localhost` and 127.0.0.1. Returns it with the certificate's PEM,
    /// which a client must be told to trust.
    pub fn start_tls() -> (Receiver, String) {
        Receiver::start_tls_for(&["localhost", "127.0.0.1"])
    }

    /// An HTTPS receiver on 127.0.0.1 whose certificate names only `names`.
    pub fn start_tls_for(names: &[&str]) -> (Receiver, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let pem = cert.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rx = Receiver::start_inner(
            "127.0.0.1:0".parse().unwrap(),
            false,
            1,
            Some(acceptor),
            false,
        )
        .unwrap();
        (rx, pem)
    }

    /// An HTTPS receiver in fast mode (bodies read and thrown away) on
    /// `threads` runtime threads, for benchmarks; as [`Receiver::start_tls`]
    /// otherwise.
    pub fn start_tls_fast(threads: usize) -> io::Result<(Receiver, String)> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let cert = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .map_err(io::Error::other)?;
        // Both protocols, as a real HTTPS service offers them.
        let mut config = config;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rx = Receiver::start_inner(
            "127.0.0.1:0".parse().unwrap(),
            true,
            threads,
            Some(acceptor),
            true,
        )?;
        Ok((rx, cert.cert.pem()))
    }

    fn start_inner(
        addr: SocketAddr,
        fast: bool,
        threads: usize,
        tls: Option<tokio_rustls::TlsAcceptor>,
        http2: bool,
    ) -> io::Result<Receiver> {
        let scheme_is_tls = tls.is_some();
        let inner = Arc::new(Inner {
            load: Mutex::new(Load::default()),
            fast,
            http2,
            tls,
            plan: Mutex::new(Plan::default()),
            log: Mutex::new(Log::default()),
            changed: Condvar::new(),
            released: tokio::sync::watch::Sender::new(false),
            answer_after: Mutex::new(Duration::ZERO),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = inner.clone();
        let thread = std::thread::Builder::new()
            .name("test-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = accept_loop(listener, serving) => {}
                        _ = stop_rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Receiver {
            addr,
            scheme: if scheme_is_tls { "https" } else { "http" },
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or https) followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// The answer for requests no rule or script covers.
    pub fn answer(&self, reply: Reply) -> &Receiver {
        self.inner.plan.lock().unwrap().default = Some(reply);
        self
    }

    /// The answer for paths starting with `prefix` (later rules win).
    pub fn answer_path(&self, prefix: &str, reply: Reply) -> &Receiver {
        self.inner
            .plan
            .lock()
            .unwrap()
            .prefixes
            .insert(0, (prefix.into(), reply));
        self
    }

    /// Answers `otherwise` (say a 401) to every request whose header
    /// `name` is not `value`, like a receiver checking a token.
    pub fn require_header(&self, name: &str, value: &str, otherwise: Reply) -> &Receiver {
        self.inner.plan.lock().unwrap().require = Some((name.into(), value.into(), otherwise));
        self
    }

    /// Answers for the next requests to exactly `path`, one each, before
    /// the rules apply again.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) -> &Receiver {
        self.inner
            .plan
            .lock()
            .unwrap()
            .scripts
            .entry(path.into())
            .or_default()
            .extend(replies);
        self
    }

    /// Everything recorded so far (empty in fast mode).
    pub fn received(&self) -> Vec<Received> {
        self.inner.log.lock().unwrap().received.clone()
    }

    /// Requests seen, answered or not.
    pub fn count(&self) -> u64 {
        self.inner.log.lock().unwrap().count
    }

    pub fn count_path(&self, prefix: &str) -> usize {
        self.inner
            .log
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    /// Bodies the client cut short (never recorded as received).
    pub fn broken(&self) -> u64 {
        self.inner.log.lock().unwrap().broken
    }

    /// Requests that reached their `hold_after` and wait to be released.
    pub fn held(&self) -> u64 {
        self.inner.log.lock().unwrap().held
    }

    /// Lets held requests read on, now and from now on.
    pub fn release(&self) {
        self.inner.released.send_replace(true);
    }

    /// TLS handshakes that failed.
    pub fn tls_refused(&self) -> u64 {
        self.inner.log.lock().unwrap().tls_refused
    }

    pub fn wire_bytes(&self) -> u64 {
        self.inner.log.lock().unwrap().wire_bytes
    }

    /// Waits `delay` before every answer, after the whole body was read,
    /// as a remote receiver adds its round trip and its own work; the
    /// request is counted once answered.
    pub fn answer_after(&self, delay: Duration) -> &Receiver {
        *self.inner.answer_after.lock().unwrap() = delay;
        self
    }

    /// Capacity mode: at most `k` requests at once, each taking `work`;
    /// any beyond is answered 503 at once.
    pub fn capacity(&self, k: usize, work: Duration) -> &Receiver {
        self.inner.load.lock().unwrap().capacity = Some((k, work));
        self
    }

    /// Queueing mode: every request is served, taking `base + per_open ×
    /// the requests open when it arrived (itself included)`.
    pub fn queueing(&self, base: Duration, per_open: Duration) -> &Receiver {
        self.inner.load.lock().unwrap().queueing = Some((base, per_open));
        self
    }

    /// Faults mode, as a load balancer with one bad backend out of ten:
    /// `p503` of requests are answered 503 at once (after their body was
    /// read) and `hang` of them are never answered, whatever the load.
    pub fn faults(&self, p503: f64, hang: f64) -> &Receiver {
        self.inner.load.lock().unwrap().faults = Some((p503, hang));
        self
    }

    /// Resets that share of requests' connections, whatever the load,
    /// after reading the body: a backend that dies mid-request behind a
    /// load balancer. Counted apart from [`Receiver::faults`]' shares.
    pub fn resets(&self, share: f64) -> &Receiver {
        self.inner.load.lock().unwrap().resets = share;
        self
    }

    /// Connections [`Receiver::resets`] reset.
    pub fn reset_count(&self) -> u64 {
        self.inner.load.lock().unwrap().reset
    }

    /// 503s faults mode gave, and requests it left hanging.
    pub fn faulted(&self) -> (u64, u64) {
        let load = self.inner.load.lock().unwrap();
        (load.noise_503, load.hung)
    }

    /// Requests capacity mode turned away with a 503.
    pub fn overloaded(&self) -> u64 {
        self.inner.load.lock().unwrap().overloaded
    }

    /// The most requests that were open at once in capacity or queueing
    /// mode.
    pub fn peak_open(&self) -> usize {
        self.inner.load.lock().unwrap().peak_open
    }

    /// Waits until at least `n` requests were seen; false on timeout.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = self.inner.log.lock().unwrap();
        while log.count < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            log = self.inner.changed.wait_timeout(log, left).unwrap().0;
        }
        true
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // A reset must be a real RST, not an orderly close.
        let _ = stream.set_zero_linger();
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        tokio::spawn(async move {
            let tls = inner.tls.clone();
            let http2 = inner.http2;
            let counted = inner.clone();
            match tls {
                None => serve(TokioIo::new(stream), inner, http2).await,
                Some(acceptor) => match acceptor.accept(stream).into_fallible().await {
                    Ok(stream) => serve(TokioIo::new(stream), inner, http2).await,
                    // A client that refused our certificate, or that we
                    // refused: nothing to serve.
                    Err((_, mut stream)) => {
                        {
                            let mut log = counted.log.lock().unwrap();
                            log.tls_refused += 1;
                            counted.changed.notify_all();
                        }
                        // A lingering close, as real servers make: the
                        // client reads our alert before the connection
                        // goes, instead of a reset that would take the
                        // alert (and the reason) with it.
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let _ = stream.shutdown().await;
                        let mut sink = [0u8; 4096];
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                        })
                        .await;
                    }
                },
            }
        });
    }
}

/// Serves one connection: HTTP/1.1 only, or (`http2`) whichever of
/// HTTP/1.1 and HTTP/2 the client speaks.
async fn serve<I>(io: TokioIo<I>, inner: Arc<Inner>, http2: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(inner.clone(), req));
    if http2 {
        let auto =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        let _ = auto.serve_connection(io, service).await;
    } else {
        let _ = http1::Builder::new().serve_connection(io, service).await;
    }
}

/// How [`Receiver::start_tls_with`] sets up TLS.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The names the certificate is for.
    pub names: Vec<String>,
    /// Require a client certificate issued by this CA (PEM).
    pub client_ca: Option<String>,
    /// Speak TLS 1.2 only.
    pub tls12_only: bool,
    /// Offer h2 by ALPN, and serve it.
    pub http2: bool,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            names: vec!["localhost".into(), "127.0.0.1".into()],
            client_ca: None,
            tls12_only: false,
            http2: false,
        }
    }
}

/// A test CA and a client certificate it issued, as PEM.
pub struct Pki {
    pub ca: String,
    pub client_cert: String,
    /// PKCS#8.
    pub client_key: String,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::issuing(|_| {})
    }

    /// A CA whose client certificate expired yesterday.
    pub fn expired() -> Pki {
        Pki::issuing(|params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
            params.not_after = yesterday.into();
        })
    }

    /// A CA and a client certificate whose parameters `adjust` sets.
    fn issuing(adjust: impl FnOnce(&mut rcgen::CertificateParams)) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // A name of its own, as real CAs have: a verifier finds the issuer
        // by name, so two test CAs must not look alike.
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("spoolpost test CA {:016x}", fastrand::u64(..)),
        );
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        adjust(&mut params);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pki {
            ca: ca.pem(),
            client_cert: cert.pem(),
            client_key: key.serialize_pem(),
        }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

fn choose(plan: &mut Plan, path: &str, headers: &hyper::HeaderMap) -> Reply {
    if let Some((name, value, otherwise)) = &plan.require
        && headers
            .get(name.as_str())
            .is_none_or(|v| v.as_bytes() != value.as_bytes())
    {
        return otherwise.clone();
    }
    if let Some(reply) = plan.scripts.get_mut(path).and_then(VecDeque::pop_front) {
        return reply;
    }
    if let Some((_, reply)) = plan
        .prefixes
        .iter()
        .find(|(p, _)| path.starts_with(p.as_str()))
    {
        return reply.clone();
    }
    plan.default.clone().unwrap_or_else(Reply::ok)
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, io::Error> {
    let mut _open = None;
    let resets = inner.load.lock().unwrap().resets;
    if resets > 0.0 && fastrand::f64() < resets {
        inner.load.lock().unwrap().reset += 1;
        let _ = req.into_body().collect().await;
        return Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by the resets fault",
        ));
    }
    let faults = inner.load.lock().unwrap().faults;
    if let Some((p503, hang)) = faults {
        let draw = fastrand::f64();
        if draw < hang {
            inner.load.lock().unwrap().hung += 1;
            let _ = req.into_body().collect().await;
            // Never answered: the client's timeout ends it.
            let never: std::convert::Infallible = std::future::pending().await;
            match never {}
        } else if draw < hang + p503 {
            inner.load.lock().unwrap().noise_503 += 1;
            let _ = req.into_body().collect().await;
            return Ok(Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .expect("valid response"));
        }
    }
    let queueing = inner.load.lock().unwrap().queueing;
    if let Some((base, per_open)) = queueing {
        let open = {
            let mut load = inner.load.lock().unwrap();
            load.open += 1;
            load.peak_open = load.peak_open.max(load.open);
            load.open
        };
        _open = Some(Open(inner.clone(), false));
        tokio::time::sleep(base + per_open * open as u32).await;
    }
    let capacity = inner.load.lock().unwrap().capacity;
    if let Some((k, work)) = capacity {
        let admitted = {
            let mut load = inner.load.lock().unwrap();
            load.open += 1;
            load.peak_open = load.peak_open.max(load.open);
            let admitted = load.busy < k;
            if admitted {
                load.busy += 1;
            } else {
                load.overloaded += 1;
            }
            admitted
        };
        let open = Open(inner.clone(), admitted);
        if !admitted {
            // Read the body so the connection stays usable, as a real
            // service's front end would.
            let _ = req.into_body().collect().await;
            drop(open);
            return Ok(Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .expect("valid response"));
        }
        tokio::time::sleep(work).await;
        _open = Some(open);
    }
    let path = req.uri().path().to_string();
    let reply = choose(&mut inner.plan.lock().unwrap(), &path, req.headers());
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let encoding = req.headers().get("content-encoding").cloned();
    if reply.reset {
        record(&inner, None, 0);
        return Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "told to reset",
        ));
    }
    if reply.early {
        let received = Received {
            method,
            path,
            headers,
            body: Vec::new(),
            body_len: 0,
            body_crc: 0,
            wire_len: 0,
            answered: reply.status,
            body_read: false,
            at: Instant::now(),
            version,
        };
        record(&inner, Some(received), 0);
        // The answer goes first; the unread body is then read and thrown
        // away, as nginx's lingering close does. Closing at once instead
        // raced the client: its next write could fail (EPIPE) before it
        // read the answer, which made the early answer a transport error.
        let mut body = req.into_body();
        tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        return Ok(Response::builder()
            .status(reply.status)
            .body(Full::new(Bytes::from(reply.body)))
            .expect("valid response"));
    }
    let mut body = req.into_body();
    let mut hold_after = reply.hold_after;
    let mut sink = Sink::new(!inner.fast);
    let mut decoder = match inner.fast {
        true => None,
        false => Decoder::for_encoding(encoding.as_ref())?,
    };
    let mut wire_len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The client went away mid-body: nothing was delivered.
            let mut log = inner.log.lock().unwrap();
            log.broken += 1;
            inner.changed.notify_all();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body cut short",
            ));
        };
        if let Some(data) = frame.data_ref() {
            wire_len += data.len() as u64;
            if hold_after.is_some_and(|n| wire_len >= n) {
                hold_after = None;
                hold(&inner).await;
            }
            if !inner.fast {
                match decoder.as_mut() {
                    Some(d) => d.write_all(data)?,
                    None => sink.write_all(data)?,
                }
            }
        }
    }
    if let Some(d) = decoder {
        sink = d.finish()?;
    }
    let received = Received {
        method,
        path,
        headers,
        body: sink.kept,
        body_len: sink.len,
        body_crc: sink.crc.sum(),
        wire_len,
        answered: reply.status,
        body_read: true,
        at: Instant::now(),
        version,
    };
    let answer_after = *inner.answer_after.lock().unwrap();
    if !answer_after.is_zero() {
        tokio::time::sleep(answer_after).await;
    }
    record(&inner, (!inner.fast).then_some(received), wire_len);
    let mut response = Response::builder().status(reply.status);
    if let Some(retry_after) = &reply.retry_after {
        response = response.header("retry-after", retry_after);
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body)))
        .expect("valid response"))
}

/// A body's decompression on its way to the [`Sink`], by its
/// `Content-Encoding`.
#[allow(clippy::large_enum_variant)] // one per request, on the stack
enum Decoder {
    Gzip(flate2::write::GzDecoder<Sink>),
    Zstd(zstd::stream::write::Decoder<'static, Sink>),
}

impl Decoder {
    /// `None` for an identity body.
    fn for_encoding(encoding: Option<&hyper::header::HeaderValue>) -> io::Result<Option<Decoder>> {
        let is = |name: &str| {
            encoding.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        };
        Ok(if is("gzip") {
            Some(Decoder::Gzip(flate2::write::GzDecoder::new(Sink::new(
                true,
            ))))
        } else if is("zstd") {
            Some(Decoder::Zstd(zstd::stream::write::Decoder::new(
                Sink::new(true),
            )?))
        } else {
            None
        })
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Zstd(d) => d.write_all(data),
        }
    }

    fn finish(self) -> io::Result<Sink> {
        match self {
            Decoder::Gzip(d) => d.finish(),
            Decoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

/// Waits, counted as held, until the test releases held requests.
async fn hold(inner: &Inner) {
    {
        let mut log = inner.log.lock().unwrap();
        log.held += 1;
        inner.changed.notify_all();
    }
    let mut released = inner.released.subscribe();
    let _ = released.wait_for(|r| *r).await;
    let mut log = inner.log.lock().unwrap();
    log.held -= 1;
}

fn record(inner: &Inner, received: Option<Received>, wire_len: u64) {
    let mut log = inner.log.lock().unwrap();
    log.count += 1;
    log.wire_bytes += wire_len;
    if let Some(r) = received {
        log.received.push(r);
    }
    inner.changed.notify_all();
}

/// Counts and checksums what is written, keeping the first bytes.
struct Sink {
    keep: bool,
    kept: Vec<u8>,
    len: u64,
    crc: flate2::Crc,
}

impl Sink {
    fn new(keep: bool) -> Sink {
        Sink {
            keep,
            kept: Vec::new(),
            len: 0,
            crc: flate2::Crc::new(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.len += buf.len() as u64;
        self.crc.update(buf);
        if self.keep && self.kept.len() < KEEP_BODY {
            let room = KEEP_BODY - self.kept.len();
            self.kept.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
