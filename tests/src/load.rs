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

/// What a blast took.
pub struct Blast {
    pub wall: Duration,
    /// CPU (user + system) of the client thread: what a bare HTTP client
    /// costs per request on this machine, the floor under the sender's.
    pub cpu: Duration,
}

/// Sends `total` POSTs of `body` (sent with `Content-Encoding: gzip`) to
/// `addr` over `connections` connections from one thread. The connections
/// are made before the clock starts: 256 connects at once can overflow a
/// listen queue, and one SYN sent again a second later made the ceiling of
/// a 10,000-request run a tenth of what it was in the next run.
pub fn blast(addr: SocketAddr, body: Bytes, connections: usize, total: u64) -> Blast {
    std::thread::spawn(move || blast_here(addr, body, connections, total))
        .join()
        .expect("load generator thread")
}

fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let d = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    d(u.user_time()) + d(u.system_time())
}

fn blast_here(addr: SocketAddr, body: Bytes, connections: usize, total: u64) -> Blast {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut senders = Vec::new();
        for _ in 0..connections {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            senders.push(send);
        }
        let issued = Arc::new(AtomicU64::new(0));
        let (cpu0, started) = (thread_cpu(), Instant::now());
        let mut tasks = Vec::new();
        for mut send in senders {
            let (issued, body) = (issued.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
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
        Blast {
            wall: started.elapsed(),
            cpu: thread_cpu() - cpu0,
        }
    })
}
