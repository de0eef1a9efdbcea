//! Each live sender's pace per receiver, made visible through the spool for
//! the reporter: the adaptive limit, the requests in flight and the latency
//! baseline.
//!
//! Each sender instance rewrites `sending/ID/.pace.json` (written to
//! `.pace.tmp` in the same claim folder, then renamed over) about once a
//! second while it runs, as it publishes `.circuits.json`. The file lives
//! and dies with the claim folder, so a crashed sender's numbers vanish
//! when its claims are recovered, and readers skip folders whose lock is
//! free before then: a dead sender's numbers are never summed in, and a
//! process ID that was reused revives nothing.
//!
//! With several senders, a receiver's limit and in-flight are the sums
//! over live senders (what the receiver may get and gets, all together),
//! and the baseline is the lowest of theirs; each sender's own numbers are
//! kept too ([`ReceiverPace::senders`]).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spool::Spool;

pub const PACE_FILE: &str = ".pace.json";
const PACE_TMP: &str = ".pace.tmp";

/// One sender's pace towards one receiver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pace {
    /// Requests this sender may have in flight to the receiver now.
    pub limit: usize,
    pub in_flight: usize,
    /// The latency the sender's controller takes as the receiver's normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ms: Option<f64>,
}

/// One sender's paces, by receiver name.
pub type Paces = BTreeMap<String, Pace>;

/// A receiver's pace over every live sender.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReceiverPace {
    /// The sum of the senders' limits.
    pub limit: usize,
    /// The sum of the senders' requests in flight.
    pub in_flight: usize,
    /// The lowest of the senders' baselines.
    pub baseline_ms: Option<f64>,
    /// Each live sender's own numbers, by claim folder ID.
    pub senders: BTreeMap<String, Pace>,
}

/// Rewrites a claim folder's pace file atomically.
pub fn write(claim_folder: &Path, paces: &Paces) -> io::Result<()> {
    let bytes = serde_json::to_vec(paces).map_err(io::Error::other)?;
    crate::spool::write_claim_record(claim_folder, PACE_FILE, PACE_TMP, &bytes)
}

/// The paces of every live sender, merged per receiver.
pub fn read_all(spool: &Spool) -> BTreeMap<String, ReceiverPace> {
    let mut merged: BTreeMap<String, ReceiverPace> = BTreeMap::new();
    for (id, paces) in crate::spool::live_claim_records::<Paces>(spool, PACE_FILE) {
        for (receiver, pace) in paces {
            let r = merged.entry(receiver).or_default();
            r.limit += pace.limit;
            r.in_flight += pace.in_flight;
            r.baseline_ms = match (r.baseline_ms, pace.baseline_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            r.senders.insert(id.clone(), pace);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::ClaimFolder;

    fn pace(limit: usize, in_flight: usize, baseline_ms: Option<f64>) -> Pace {
        Pace {
            limit,
            in_flight,
            baseline_ms,
        }
    }

    #[test]
    fn live_senders_are_summed_and_dead_ones_ignored() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let a = ClaimFolder::create(&spool).unwrap();
        let b = ClaimFolder::create(&spool).unwrap();
        let dead = ClaimFolder::create(&spool).unwrap();
        write(
            a.path(),
            &Paces::from([
                ("r".into(), pace(5, 3, Some(4.0))),
                ("s".into(), pace(2, 0, None)),
            ]),
        )
        .unwrap();
        write(
            b.path(),
            &Paces::from([("r".into(), pace(7, 7, Some(6.5)))]),
        )
        .unwrap();
        write(
            dead.path(),
            &Paces::from([("r".into(), pace(50, 50, Some(1.0)))]),
        )
        .unwrap();
        let dead_path = dead.path().to_path_buf();
        drop(dead);
        assert!(dead_path.join(PACE_FILE).exists());
        let merged = read_all(&spool);
        let r = &merged["r"];
        assert_eq!((r.limit, r.in_flight, r.baseline_ms), (12, 10, Some(4.0)));
        assert_eq!(r.senders.len(), 2);
        assert_eq!(r.senders[a.id()], pace(5, 3, Some(4.0)));
        assert_eq!(merged["s"].baseline_ms, None);
        // No temporary file is left beside the published one.
        assert!(!a.path().join(PACE_TMP).exists());
    }

    #[test]
    fn an_unreadable_pace_file_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path()).unwrap();
        let a = ClaimFolder::create(&spool).unwrap();
        std::fs::write(a.path().join(PACE_FILE), "{\"r\":").unwrap();
        assert!(read_all(&spool).is_empty());
    }
}
