//! The metrics endpoint (`--metrics-listen`): the latest report's
//! Prometheus text over HTTP, for those who scrape rather than read
//! node_exporter's textfile. What it may bind and answer is
//! [`crate::endpoint_rules`]; HTTP itself is hyper's.
//!
//! It serves on a thread of its own with its own runtime, from a copy of
//! the text the watch loop ([`crate::watch`]) leaves after each report: a
//! scrape reads no spool and takes no lock the loop waits on for longer
//! than a copy of a pointer, and a slow or stuck scraper delays nothing
//! but itself.

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use spoolpost_ops::exit::{Failure, TEMPORARY};
use tokio::sync::Semaphore;

use crate::endpoint_rules::{self, Answer};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// A client that has not sent its request's headers by then is dropped,
/// so idle connections cannot hold every place.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The text the latest report gave, shared by the watch loop and the server.
#[derive(Default)]
pub struct Latest(Mutex<Bytes>);

impl Latest {
    pub fn set(&self, text: String) {
        // A poisoned lock only means a panic elsewhere; the value is whole.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Bytes::from(text);
    }

    fn get(&self) -> Bytes {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A bound, not yet serving, endpoint: binding comes first so that a port in
/// use ends the program before it does anything else.
pub struct Endpoint {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
}

/// Binds `addr` (loopback only unless `allow_remote`).
pub fn bind(addr: SocketAddr, allow_remote: bool) -> Result<Endpoint, Failure> {
    endpoint_rules::check_scope(addr, allow_remote).map_err(Failure::usage)?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| bind_failure(addr, &e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| bind_failure(addr, &e))?;
    let addr = listener.local_addr().unwrap_or(addr);
    Ok(Endpoint { listener, addr })
}

fn bind_failure(addr: SocketAddr, e: &std::io::Error) -> Failure {
    let (code, what) = match e.kind() {
        // Another program holds it: one that may stop, so a service
        // manager's restart may succeed later.
        ErrorKind::AddrInUse => (
            TEMPORARY,
            "the port is in use (by another `reporter --metrics-listen` or another program); \
             stop that one or choose another port"
                .to_string(),
        ),
        ErrorKind::PermissionDenied => (
            spoolpost_ops::exit::USAGE,
            "permission denied (ports below 1024 need privileges); choose a port of 1024 or above"
                .to_string(),
        ),
        ErrorKind::AddrNotAvailable => (
            spoolpost_ops::exit::USAGE,
            "no interface of this host has that address".to_string(),
        ),
        _ => (1, e.to_string()),
    };
    Failure {
        code,
        message: format!("cannot serve metrics on {addr}: {what}"),
    }
}

impl Endpoint {
    /// Serves `latest` on a thread of its own until the process ends.
    pub fn start(self, latest: Arc<Latest>) -> Result<(), Failure> {
        let failed = |e: std::io::Error| Failure {
            code: 1,
            message: format!("cannot start the metrics endpoint: {e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        let Endpoint { listener, addr } = self;
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || runtime.block_on(serve(listener, latest)))
            .map_err(failed)?;
        tracing::info!(url = %format!("http://{addr}{}", endpoint_rules::PATH), "serving metrics");
        Ok(())
    }
}

async fn serve(listener: std::net::TcpListener, latest: Arc<Latest>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the metrics endpoint cannot serve");
            return;
        }
    };
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "the metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = respond(&req, &latest);
                async move { Ok::<_, Infallible>(answer) }
            });
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(place);
        });
    }
}

fn respond(req: &Request<Incoming>, latest: &Latest) -> Response<Full<Bytes>> {
    let (status, body) = match endpoint_rules::answer(req.method().as_str(), req.uri().path()) {
        Answer::Metrics => (StatusCode::OK, latest.get()),
        Answer::NotFound => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found: the metrics are at /metrics\n"),
        ),
        Answer::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"only GET and HEAD are answered\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if status == StatusCode::OK {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(endpoint_rules::CONTENT_TYPE),
        );
    } else {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}
