//! What several modules share beyond the harness in `spoolpost_tests`.

pub mod dead_claim;
pub mod setups;
