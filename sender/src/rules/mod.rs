//! The pure core: what an answer means and what follows from it. Nothing
//! here does I/O or waits: no tokio, no reqwest, no file system; each rule
//! takes the clock and the settings it needs as arguments, and is tested
//! with tables beside it. Nothing here imports from `net` or `sched`.

pub mod adaptive;
pub mod backoff;
pub mod breaker;
pub mod change;
pub mod endpoint;
pub mod judge;
pub mod leap;
pub mod lost;
pub mod multipart;
pub mod outcome;
pub mod rate;
pub mod s3_error;
pub mod shared_rate;
