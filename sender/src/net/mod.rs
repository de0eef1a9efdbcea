//! The I/O around the rules: opening a claimed file, making a body of it,
//! sending it over each receiver's HTTP client, and turning what came back
//! into an answer for the rules. Imports from `rules` only.

pub mod body;
pub mod client;
pub mod encode;
pub mod exchange;
pub mod file;
pub mod headers;
pub mod multipart;
pub mod parts;
pub mod probe;
pub mod s3;
pub mod send;
pub mod target;
pub mod transport;
