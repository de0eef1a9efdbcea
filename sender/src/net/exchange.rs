//! What the scheduler and its jobs need from outside the spool: the wall
//! clock and the network. [`Exchange`] is that boundary, so the timing of
//! the scheduler (backoff, Retry-After, probes, holds, grace) can be driven
//! in unit tests with paused tokio time and scripted answers, while the
//! spool, claims, judgements, settling and circuits stay the real ones.
//!
//! [`Network`] is the production side: the system clock, and the HTTP
//! clients of the configuration a job runs under.

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::SystemTime;

use crate::net::send::{Http, Sent};
use crate::rules::change::Stat;

/// One request, ready to go: the claimed file already open.
pub struct Request<'a> {
    /// The HTTP clients of the configuration the job runs under.
    pub http: &'a Http,
    pub receiver: usize,
    pub url: &'a reqwest::Url,
    pub file: File,
    /// What the file was when it was opened, to notice it changing.
    pub opened: Stat,
    pub path: &'a Path,
    pub key: &'a str,
    /// The producer's name for the file.
    pub original: &'a [u8],
}

/// A boxed future: the one allocation per request the boundary costs.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Sent> + Send + 'a>>;

pub trait Exchange: Send + Sync + 'static {
    /// The time retry waits, claims and judgements are reckoned in.
    fn wall_clock(&self) -> SystemTime;

    /// Sends one request and says what came of it.
    fn send<'a>(&'a self, request: Request<'a>) -> Sending<'a>;
}

/// The system clock and the real HTTP clients.
pub struct Network;

impl Exchange for Network {
    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn send<'a>(&'a self, r: Request<'a>) -> Sending<'a> {
        Box::pin(async move {
            let sent = r
                .http
                .send(
                    r.receiver, r.url, r.file, r.opened, r.path, r.key, r.original,
                )
                .await;
            // Let the connection go back to the pool before this slot goes
            // to the next file: the pool takes it back in a task of its
            // own, and a file that finds no idle connection opens another.
            tokio::task::yield_now().await;
            sent
        })
    }
}
