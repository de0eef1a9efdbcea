//! How far a sender leaps ahead in `incoming/` after losing a claim race.
//!
//! Several senders on one spool read `incoming/` in the same directory
//! order. Left alone they all offer the same file at the same moment, and
//! every file costs each loser the work of offering it and a failed rename:
//! four senders on a backlog made about three failed claims per delivered
//! file. After a lost race a sender skips a random number of the names that
//! follow, so the senders scatter over the folder and each works a stretch
//! of its own until it runs into another's. The names it skipped are
//! offered again in the next pass; by then most are gone, sent by the
//! others. One sender alone never loses a race and never leaps.

/// The most names skipped after a first loss.
const FIRST_LEAP: usize = 32;
/// Losses in a row each double the leap, up to this many names.
const LONGEST_LEAP: usize = 1024;

#[derive(Debug)]
pub struct Leap {
    rng: fastrand::Rng,
    /// Losses since the last claim this sender won.
    losses: u32,
}

impl Leap {
    pub fn new(rng: fastrand::Rng) -> Leap {
        Leap { rng, losses: 0 }
    }

    /// Another sender claimed the name first: how many of the names that
    /// follow to skip. A loss right after another means this sender landed
    /// in a stretch another is working, so it leaps further.
    pub fn after_loss(&mut self) -> usize {
        let most = FIRST_LEAP
            .saturating_mul(1 << self.losses.min(10))
            .min(LONGEST_LEAP);
        self.losses = self.losses.saturating_add(1);
        self.rng.usize(1..=most)
    }

    /// This sender claimed a name: its next loss is a first one again.
    pub fn after_win(&mut self) {
        self.losses = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_loss_skips_a_few_names_and_more_losses_in_a_row_skip_more() {
        let mut leap = Leap::new(fastrand::Rng::with_seed(1));
        let firsts: Vec<usize> = (0..200)
            .map(|_| {
                let n = leap.after_loss();
                leap.after_win();
                n
            })
            .collect();
        assert!(firsts.iter().all(|&n| (1..=FIRST_LEAP).contains(&n)));
        // Random, so senders that lost the same race go different ways.
        assert!(
            firsts
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 16
        );

        let in_a_row: Vec<usize> = (0..20).map(|_| leap.after_loss()).collect();
        for (i, &n) in in_a_row.iter().enumerate() {
            let most = (FIRST_LEAP << i.min(10)).min(LONGEST_LEAP);
            assert!((1..=most).contains(&n), "loss {i}: {n} > {most}");
        }
        assert!(in_a_row[10..].iter().any(|&n| n > FIRST_LEAP * 4));
    }

    #[test]
    fn a_win_resets_the_leap() {
        let mut leap = Leap::new(fastrand::Rng::with_seed(2));
        for _ in 0..12 {
            leap.after_loss();
        }
        leap.after_win();
        for _ in 0..100 {
            assert!(leap.after_loss() <= FIRST_LEAP);
            leap.after_win();
        }
    }
}
