//! A raw HTTP load generator: the ceiling the benchmark compares the sender
//! with. It sends the same gzipped payload over the same number of
//! keep-alive connections as the sender would, with nothing else to do (no
//! files, no spool), so the ratio between the two is what spoolpost costs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Sends `total` POSTs of `body` (sent with `Content-Encoding: gzip`) to
/// `addr` over `connections` connections; returns the time it took.
pub fn blast(addr: SocketAddr, body: Bytes, connections: usize, total: u64) -> Duration {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let issued = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (issued, body) = (issued.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).unwrap();
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    let req = Request::post("/ceiling")
                        .header("host", addr.to_string())
                        .header("content-encoding", "gzip")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    let resp = send.send_request(req).await.expect("request");
                    let _ = resp.into_body().collect().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        started.elapsed()
    })
}
