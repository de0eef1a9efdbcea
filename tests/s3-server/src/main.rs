//! `test-s3`: a real S3-compatible server on loopback for the object-storage
//! tests and the benchmark: s3s-fs (objects as files under ROOT/BUCKET/KEY)
//! behind s3s's SigV4 authentication. Prints `listening on http://ADDR` on
//! stdout once it accepts connections, then serves until killed.
//!
//! Buckets are folders: `--bucket NAME` creates one before serving.

use std::net::SocketAddr;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::host::MultiDomain;
use s3s::service::S3ServiceBuilder;

struct Args {
    listen: SocketAddr,
    root: PathBuf,
    access_key: String,
    secret_key: String,
    domains: Vec<String>,
    buckets: Vec<String>,
}

const USAGE: &str = "usage: test-s3 --root DIR --access-key KEY --secret-key SECRET \
[--listen ADDR] [--domain NAME]... [--bucket NAME]...";

fn fail(message: &str) -> ! {
    eprintln!("test-s3: {message}\n{USAGE}");
    std::process::exit(2);
}

fn parse() -> Args {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut root, mut access_key, mut secret_key) = (None, None, None);
    let (mut domains, mut buckets) = (Vec::new(), Vec::new());
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
    let service = builder.build();
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
