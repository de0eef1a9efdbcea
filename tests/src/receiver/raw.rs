//! A server that misbehaves below HTTP: it reads a request (head and a
//! `Content-Length` body) and then does exactly what it was told, byte for
//! byte, which no well-behaved HTTP library can be made to do: answer with
//! garbage, close mid-headers, send a 1xx first, dribble the answer one byte
//! at a time, stream an endless answer body, or never answer at all.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do once a request was read.
#[derive(Clone, Debug)]
pub enum Act {
    /// Write these bytes, then close.
    Write(Vec<u8>),
    /// Write these bytes one at a time, `gap` apart (slowloris).
    Dribble(Vec<u8>, Duration),
    /// Write `head`, then an endless body of `x` until the client leaves.
    Endless(Vec<u8>),
    /// Keep the connection open and say nothing.
    Silent,
    /// Write these bytes, then keep the connection open reading nothing
    /// more (an early answer from a receiver that stops reading).
    WriteAndStall(Vec<u8>),
}

/// A running raw server. Stops when dropped.
pub struct RawServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    body_bytes: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    pub fn start(act: Act) -> RawServer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("cannot bind the raw server");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (req, sent) = (requests.clone(), body_bytes.clone());
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (act, req, sent) = (act.clone(), req.clone(), sent.clone());
                        tokio::spawn(async move {
                            let _ = serve(stream, act, &req, &sent).await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        RawServer {
            addr,
            requests,
            body_bytes,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests read in full so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Answer body bytes written by [`Act::Endless`].
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    act: Act,
    requests: &AtomicU64,
    body_bytes: &AtomicU64,
) -> io::Result<()> {
    read_request(&mut stream).await?;
    requests.fetch_add(1, Ordering::Relaxed);
    match act {
        Act::Write(bytes) => stream.write_all(&bytes).await?,
        Act::Dribble(bytes, gap) => {
            for b in bytes {
                stream.write_all(&[b]).await?;
                tokio::time::sleep(gap).await;
            }
        }
        Act::Endless(head) => {
            stream.write_all(&head).await?;
            let chunk = vec![b'x'; 64 * 1024];
            loop {
                stream.write_all(&chunk).await?;
                body_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        Act::Silent => {
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
        }
        Act::WriteAndStall(bytes) => {
            stream.write_all(&bytes).await?;
            std::future::pending::<()>().await;
        }
    }
    stream.shutdown().await
}

/// Reads a request head and its `Content-Length` body (the sender sends
/// small files that way; a chunked body, a large file's, is left unread).
async fn read_request(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(())
}
