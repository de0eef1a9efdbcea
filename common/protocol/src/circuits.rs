//! Circuit-breaker states made visible through the spool, and operators'
//! holds on receivers.
//!
//! Each sender instance rewrites `sending/ID/.circuits.json` (write to a
//! temporary name, rename over) whenever one of its circuits changes state.
//! The file lives and dies with the claim folder, so a dead sender's states
//! vanish when its claims are recovered; readers also skip folders whose
//! lock is free. With several senders, a receiver's state is the worst one
//! reported (open, then half-open, then closed), since the earliest time.
//!
//! A receiver with several endpoints (`urls`) has a circuit per endpoint,
//! published under `endpoints` by the endpoint's redacted URL; the
//! receiver's own state is then the best of them (closed while any endpoint
//! takes files), since that is what its backlog sees.
//!
//! A hold is an empty file `hold/RECEIVER`: senders leave that receiver's
//! files waiting in `incoming/`, without using up attempts, until the file
//! is removed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spool::Spool;

pub const CIRCUITS_FILE: &str = ".circuits.json";
const HOLD_DIR: &str = "hold";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    pub state: CircuitState,
    /// RFC 3339: when the circuit entered this state.
    pub since: String,
    /// Why it opened, when the sender knows more than "failing": `auth`
    /// (the receiver refuses our credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each endpoint's own circuit, by redacted URL, for a receiver with
    /// several (`urls`); empty for one with a single `url`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, Circuit>,
}

/// The worse of two reports of one circuit: open, then half-open, then
/// closed; of equal states the earlier.
fn worse<'a>(a: &'a Circuit, b: &'a Circuit) -> &'a Circuit {
    if (a.state, &b.since) >= (b.state, &a.since) {
        a
    } else {
        b
    }
}

/// One sender's circuits, by receiver name.
pub type Circuits = BTreeMap<String, Circuit>;

/// Rewrites a claim folder's circuit file atomically.
pub fn write(claim_folder: &Path, circuits: &Circuits) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(circuits).map_err(io::Error::other)?;
    crate::spool::write_claim_record(claim_folder, CIRCUITS_FILE, ".circuits.tmp", &bytes)
}

/// The circuits of every live sender, merged: per receiver the worst state.
pub fn read_all(spool: &Spool) -> Circuits {
    let mut merged = Circuits::new();
    for (_, circuits) in crate::spool::live_claim_records::<Circuits>(spool, CIRCUITS_FILE) {
        for (receiver, circuit) in circuits {
            let merged_circuit = match merged.remove(&receiver) {
                None => circuit,
                Some(have) => {
                    let mut endpoints = have.endpoints.clone();
                    for (label, e) in &circuit.endpoints {
                        let keep = match endpoints.get(label) {
                            Some(old) => worse(old, e).clone(),
                            None => e.clone(),
                        };
                        endpoints.insert(label.clone(), keep);
                    }
                    Circuit {
                        endpoints,
                        ..worse(&have, &circuit).clone()
                    }
                }
            };
            merged.insert(receiver, merged_circuit);
        }
    }
    merged
}

/// Puts a hold on a receiver's backlog.
pub fn hold(spool: &Spool, receiver: &str) -> io::Result<()> {
    let dir = spool.root().join(HOLD_DIR);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(hold_file_name(receiver)?), b"")
}

/// Releases a hold; releasing a receiver that is not held is not an error.
pub fn release(spool: &Spool, receiver: &str) -> io::Result<()> {
    match fs::remove_file(spool.root().join(HOLD_DIR).join(hold_file_name(receiver)?)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The receivers on hold.
pub fn held(spool: &Spool) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(spool.root().join(HOLD_DIR))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                // Anything else is counted by the reporter as unexpected.
                .filter(|n| crate::receiver::check_receiver_name(n).is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn hold_file_name(receiver: &str) -> io::Result<&str> {
    crate::receiver::check_receiver_name(receiver)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::ClaimFolder;

    fn circuit(state: CircuitState, since: &str) -> Circuit {
        Circuit {
            state,
            since: since.into(),
            reason: None,
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn the_worst_state_of_live_senders_wins_and_dead_ones_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let a = ClaimFolder::create(&spool).unwrap();
        let b = ClaimFolder::create(&spool).unwrap();
        let dead = ClaimFolder::create(&spool).unwrap();
        write(
            a.path(),
            &Circuits::from([(
                "r".into(),
                circuit(CircuitState::Closed, "2026-01-01T00:00:00Z"),
            )]),
        )
        .unwrap();
        write(
            b.path(),
            &Circuits::from([(
                "r".into(),
                circuit(CircuitState::Open, "2026-01-02T00:00:00Z"),
            )]),
        )
        .unwrap();
        write(
            dead.path(),
            &Circuits::from([(
                "s".into(),
                circuit(CircuitState::Open, "2026-01-03T00:00:00Z"),
            )]),
        )
        .unwrap();
        let dead_path = dead.path().to_path_buf();
        drop(dead);
        assert!(dead_path.exists());
        let merged = read_all(&spool);
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert_eq!(merged["r"].state, CircuitState::Open);
    }

    #[test]
    fn endpoints_merge_per_endpoint_worst_first() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let a = ClaimFolder::create(&spool).unwrap();
        let b = ClaimFolder::create(&spool).unwrap();
        let with = |e1: CircuitState, e2: CircuitState| {
            let mut c = circuit(CircuitState::Closed, "2026-01-01T00:00:00Z");
            c.endpoints = [
                (
                    "http://e1/".to_string(),
                    circuit(e1, "2026-01-01T00:00:00Z"),
                ),
                (
                    "http://e2/".to_string(),
                    circuit(e2, "2026-01-01T00:00:00Z"),
                ),
            ]
            .into();
            Circuits::from([("r".to_string(), c)])
        };
        write(a.path(), &with(CircuitState::Open, CircuitState::Closed)).unwrap();
        write(
            b.path(),
            &with(CircuitState::Closed, CircuitState::HalfOpen),
        )
        .unwrap();
        let merged = read_all(&spool);
        let e = &merged["r"].endpoints;
        assert_eq!(e["http://e1/"].state, CircuitState::Open);
        assert_eq!(e["http://e2/"].state, CircuitState::HalfOpen);
        assert_eq!(merged["r"].state, CircuitState::Closed);
    }

    #[test]
    fn holds_come_and_go() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        assert!(held(&spool).is_empty());
        hold(&spool, "orders").unwrap();
        hold(&spool, "audit").unwrap();
        assert_eq!(held(&spool), ["audit", "orders"]);
        release(&spool, "orders").unwrap();
        release(&spool, "orders").unwrap();
        assert_eq!(held(&spool), ["audit"]);
        assert!(hold(&spool, "../x").is_err());
    }
}
