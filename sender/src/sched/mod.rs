//! The scheduling: which file goes when and to which endpoint, within
//! each receiver's circuits and pace, and the one place that moves a file
//! on once its answer is judged. Builds on `rules` and `net`.

pub mod circuits;
pub mod clock;
pub mod dispatch;
pub mod holds;
pub mod job;
pub mod pace;
pub mod settle;
pub mod shared;
pub mod shared_rate;
pub mod stranded;
