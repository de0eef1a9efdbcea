//! The operators' holds (`reporter hold RECEIVER`): which receivers' files
//! wait in `incoming/` whatever their circuits say, read again from the
//! spool at most every [`HOLD_REFRESH`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use spoolpost_protocol::circuits;
use spoolpost_protocol::spool::Spool;

/// How often the holds are read again.
pub const HOLD_REFRESH: Duration = Duration::from_secs(1);

/// Which receivers an operator put on hold, by name (a reload that adds
/// or removes receivers moves no hold to another), read again at most
/// every [`HOLD_REFRESH`].
#[derive(Default)]
pub struct Holds {
    held: BTreeSet<String>,
    /// The receivers the last read looked at.
    known: BTreeSet<String>,
    read: Option<Instant>,
}

impl Holds {
    /// Rereads the holds if they are older than [`HOLD_REFRESH`]. Returns
    /// true when a hold was lifted: its files are waiting in `incoming/`.
    pub fn refresh(&mut self, spool: &Spool, names: &[&str], now: Instant) -> bool {
        // A receiver a reload just added is read at once: its hold, made
        // before it came, must keep its first file.
        let new_name = names.iter().any(|n| !self.known.contains(*n));
        if !new_name
            && self
                .read
                .is_some_and(|t| now.saturating_duration_since(t) < HOLD_REFRESH)
        {
            return false;
        }
        self.known = names.iter().map(|n| n.to_string()).collect();
        self.read = Some(now);
        let on_hold = circuits::held(spool);
        let mut lifted = false;
        let mut held = BTreeSet::new();
        for name in names {
            let now_held = on_hold.iter().any(|h| h == name);
            let was_held = self.held.contains(*name);
            if was_held && !now_held {
                tracing::info!(receiver = %name, "hold released");
                lifted = true;
            } else if !was_held && now_held {
                tracing::info!(receiver = %name, "on hold: its files wait");
            }
            if now_held {
                held.insert(name.to_string());
            }
        }
        self.held = held;
        lifted
    }

    pub fn is_held(&self, receiver: &str) -> bool {
        self.held.contains(receiver)
    }
}
