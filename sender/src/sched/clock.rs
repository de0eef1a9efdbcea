//! The scheduler's clock, one for every timer of the sender: tokio's, so
//! tests drive the scheduler, circuits and paces with paused time.

use std::time::Instant;

/// The scheduler's clock: tokio's, so tests drive it with paused time
/// (`tokio::time::pause`); unpaused it is the system's monotonic clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
