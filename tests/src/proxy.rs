//! A forward proxy on 127.0.0.1 for the tests: `CONNECT host:port` opens a
//! tunnel (HTTPS through a proxy), a request in absolute form (plain HTTP
//! through a proxy) is passed on to its host with the rest of the
//! connection. It counts both, keeps each `Proxy-Authorization` it saw,
//! and can demand one (407 otherwise), as corporate proxies do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    tunnels: Vec<String>,
    forwarded: Vec<String>,
    auth_seen: Vec<String>,
    require: Option<String>,
    refused: u64,
}

/// A running proxy. Stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let state = Arc::new(Mutex::new(State::default()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = state.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = accept(listener, serving) => {}
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        Proxy {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers 407 to every request without this `Proxy-Authorization`.
    pub fn require_auth(&self, value: &str) -> &Proxy {
        self.state.lock().unwrap().require = Some(value.into());
        self
    }

    /// The targets of the tunnels opened (`host:port`).
    pub fn tunnels(&self) -> Vec<String> {
        self.state.lock().unwrap().tunnels.clone()
    }

    /// The absolute-form targets of the plain-HTTP connections passed on.
    pub fn forwarded(&self) -> Vec<String> {
        self.state.lock().unwrap().forwarded.clone()
    }

    /// Every `Proxy-Authorization` value seen.
    pub fn auth_seen(&self) -> Vec<String> {
        self.state.lock().unwrap().auth_seen.clone()
    }

    /// Requests answered 407.
    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = serve(stream, state).await;
        });
    }
}

async fn serve(mut client: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    // The request head, byte by byte up to the blank line: small, and
    // nothing after it is read before we know where it goes.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if client.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_string());
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let refuse = {
        let mut s = state.lock().unwrap();
        if let Some(a) = &auth {
            s.auth_seen.push(a.clone());
        }
        let refuse = s.require.as_ref().is_some_and(|r| Some(r) != auth.as_ref());
        s.refused += u64::from(refuse);
        refuse
    };
    {
        if refuse {
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    if method == "CONNECT" {
        let mut upstream = TcpStream::connect(target).await?;
        state.lock().unwrap().tunnels.push(target.to_string());
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return Ok(());
    }
    // Absolute form: http://host:port/path. The origin server takes the
    // absolute form too, so the head goes on as it came.
    let authority = target
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let mut upstream = TcpStream::connect(authority.as_str()).await?;
    state.lock().unwrap().forwarded.push(target.to_string());
    upstream.write_all(&head).await?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}
