//! `test-s3`: a real S3-compatible server on loopback for the object-storage
//! tests and the benchmark: s3s-fs (objects as files under ROOT/BUCKET/KEY)
//! behind s3s's SigV4 authentication. Prints `listening on http://ADDR` on
//! stdout once it accepts connections, then serves until killed.
//!
//! Buckets are folders: `--bucket NAME` creates one before serving.
//!
//! Faults and a record, for the tests of multipart uploads: `--fail-part N`
//! answers the first upload of part N with a 500 (`InternalError`),
//! `--stall-part N` never answers the first upload of part N (until the
//! client goes away), and `--log FILE` appends a line per request:
//! `METHOD PATH?QUERY content-length=LEN` (`-` without one).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::host::MultiDomain;
use s3s::service::{S3Service, S3ServiceBuilder};

struct Args {
    listen: SocketAddr,
    root: PathBuf,
    access_key: String,
    secret_key: String,
    domains: Vec<String>,
    buckets: Vec<String>,
    fail_part: Option<String>,
    stall_part: Option<String>,
    log: Option<PathBuf>,
}

const USAGE: &str = "usage: test-s3 --root DIR --access-key KEY --secret-key SECRET \
[--listen ADDR] [--domain NAME]... [--bucket NAME]... [--fail-part N] [--stall-part N] [--log FILE]";

fn fail(message: &str) -> ! {
    eprintln!("test-s3: {message}\n{USAGE}");
    std::process::exit(2);
}

fn parse() -> Args {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut root, mut access_key, mut secret_key) = (None, None, None);
    let (mut domains, mut buckets) = (Vec::new(), Vec::new());
    let (mut fail_part, mut stall_part, mut log) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            fail(&format!("{flag} wants a value"))
        };
        match flag.as_str() {
            "--listen" => {
                listen = value
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("--listen {value:?} is not an address")))
            }
            "--root" => root = Some(PathBuf::from(value)),
            "--access-key" => access_key = Some(value),
            "--secret-key" => secret_key = Some(value),
            "--domain" => domains.push(value),
            "--bucket" => buckets.push(value),
            "--fail-part" => fail_part = Some(value),
            "--stall-part" => stall_part = Some(value),
            "--log" => log = Some(PathBuf::from(value)),
            _ => fail(&format!("unknown flag {flag:?}")),
        }
    }
    Args {
        listen,
        root: root.unwrap_or_else(|| fail("--root is required")),
        access_key: access_key.unwrap_or_else(|| fail("--access-key is required")),
        secret_key: secret_key.unwrap_or_else(|| fail("--secret-key is required")),
        domains,
        buckets,
        fail_part,
        stall_part,
        log,
    }
}

/// The S3 service with the faults and the record `--fail-part`,
/// `--stall-part` and `--log` ask for.
#[derive(Clone)]
struct Faulty {
    inner: S3Service,
    fail_part: Option<String>,
    stall_part: Option<String>,
    /// Whether each fault has been used.
    failed: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    log: Option<Arc<Mutex<std::fs::File>>>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Faulty {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let query = req.uri().query().unwrap_or("").to_string();
        if let Some(log) = &self.log {
            let length = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let line = format!(
                "{} {}?{query} content-length={length}\n",
                req.method(),
                req.uri().path()
            );
            let _ = log.lock().unwrap().write_all(line.as_bytes());
        }
        let part = query
            .split('&')
            .find_map(|p| p.strip_prefix("partNumber="))
            .map(String::from);
        let is = |fault: &Option<String>, used: &AtomicBool| {
            part.is_some() && *fault == part && !used.swap(true, Ordering::SeqCst)
        };
        if is(&self.fail_part, &self.failed) {
            return Box::pin(async {
                let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>test-s3 --fail-part</Message></Error>";
                Ok(hyper::Response::builder()
                    .status(500)
                    .body(s3s::Body::from(xml.to_string()))
                    .unwrap())
            });
        }
        let stall = is(&self.stall_part, &self.stalled);
        let inner = self.inner.clone();
        Box::pin(async move {
            if stall {
                // Until the client goes away, which drops this future.
                std::future::pending::<()>().await;
            }
            hyper::service::Service::call(&inner, req).await
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse();
    for bucket in &args.buckets {
        std::fs::create_dir_all(args.root.join(bucket))
            .unwrap_or_else(|e| fail(&format!("cannot create bucket {bucket:?}: {e}")));
    }
    let fs = s3s_fs::FileSystem::new(&args.root)
        .unwrap_or_else(|e| fail(&format!("cannot serve {}: {e:?}", args.root.display())));
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(args.access_key, args.secret_key));
    if !args.domains.is_empty() {
        let host = MultiDomain::new(&args.domains)
            .unwrap_or_else(|e| fail(&format!("bad --domain: {e:?}")));
        builder.set_host(host);
    }
    let log = args.log.as_ref().map(|path| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| fail(&format!("cannot open --log {}: {e}", path.display())));
        Arc::new(Mutex::new(file))
    });
    let service = Faulty {
        inner: builder.build(),
        fail_part: args.fail_part.clone(),
        stall_part: args.stall_part.clone(),
        failed: Arc::default(),
        stalled: Arc::default(),
        log,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {}: {e}", args.listen)));
    let addr = listener.local_addr().unwrap();
    println!("listening on http://{addr}");
    let server = ConnBuilder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let conn = server
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
