//! When a hung request is taken for lost, so that its place under the
//! receiver's `concurrency` goes to a file that can be delivered.
//!
//! A request unanswered past the lapse time already stops counting against
//! the adaptive limit ([`crate::rules::adaptive::Controller::lapse_after`]),
//! but it still holds its place under `concurrency` until its own timeout.
//! Behind a load balancer that never answers 1% of requests, the places
//! fill with such requests (`concurrency / (0.01 × timeout)` files per
//! second is all a sender could then deliver) while the receiver answers
//! every other request at once.
//!
//! TCP meets the same question for a segment: rather than wait for the
//! retransmission timeout, it takes a segment for lost once three segments
//! sent after it were acknowledged (fast retransmit, RFC 5681). Here a
//! request is *overtaken* by the requests sent after it that ended (were
//! answered or failed) while it was still waiting; once [`OVERTAKEN_BY`] of
//! them did, the receiver is plainly working and this one request is lost.
//! Such a request is cut only when its place is wanted: when every place
//! under `concurrency` is taken and a file waits for one. Its file is
//! retried as after a timeout, with the same idempotency key, so a receiver
//! that was only slow to answer it dedupes the second copy.
//!
//! A large file's request is given the time its body takes to go out
//! before it may be taken for lost ([`lost_after`]), as the request timeout
//! is: requests of small files sent after it are answered first whatever
//! the receiver's health.
//!
//! Which requests ended after another was sent is not recorded request by
//! request: a [`Mark`] keeps, at a request's start, how many requests had
//! ended and how many were in flight. Of the requests that ended since, at
//! most those in flight then were sent before it, so the rest overtook it.
//! That errs on the side of keeping a request: it never counts an earlier
//! request as overtaking. A receiver that answers every request slowly, in
//! the order sent, overtakes none, so nothing of it is cut; one that
//! answers none overtakes none either, and its requests wait out their
//! timeout as before.

use std::time::Duration;

use crate::rules::endpoint::DEADLINE_BODY_RATE;

/// Requests sent after a hung one that must have ended before it is taken
/// for lost: TCP's duplicate-acknowledgement threshold.
pub const OVERTAKEN_BY: u64 = 3;

/// How long after its start a request of `size` bytes may be taken for
/// lost, given the time after which its receiver's requests count as hung:
/// that, and the same allowance for the body as the request timeout has.
pub fn lost_after(hung_after: Duration, size: u64) -> Duration {
    hung_after.saturating_add(Duration::from_secs(size / DEADLINE_BODY_RATE))
}

/// What was known at a request's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Requests to the receiver that had ended.
    pub ended: u64,
    /// Requests to the receiver in flight, not counting this one.
    pub in_flight: u64,
}

/// How many requests sent after the one marked `mark` have ended, at
/// least, now that `ended` have in all.
pub fn overtaken(mark: Mark, ended: u64) -> u64 {
    ended
        .saturating_sub(mark.ended)
        .saturating_sub(mark.in_flight)
}

/// Whether the request marked `mark` is lost, now that `ended` requests
/// to the receiver have ended in all.
pub fn is_lost(mark: Mark, ended: u64) -> bool {
    overtaken(mark, ended) >= OVERTAKEN_BY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_at_the_start_never_count_as_overtaking() {
        // Ten in flight when it started: the first ten to end may all have
        // been sent before it.
        let mark = Mark {
            ended: 100,
            in_flight: 10,
        };
        #[rustfmt::skip]
        let table = [
            // ended in all, overtaken, lost
            (100, 0, false),
            (110, 0, false),
            (112, 2, false),
            (113, 3, true),
            (500, 390, true),
        ];
        for (ended, overtaken_by, lost) in table {
            assert_eq!(overtaken(mark, ended), overtaken_by, "{ended}");
            assert_eq!(is_lost(mark, ended), lost, "{ended}");
        }
    }

    #[test]
    fn a_count_from_before_the_mark_is_no_overtaking() {
        // A count that went back (a fresh pace after a reload) says
        // nothing: not lost.
        let mark = Mark {
            ended: 100,
            in_flight: 0,
        };
        assert_eq!(overtaken(mark, 50), 0);
        assert!(!is_lost(mark, 50));
    }

    #[test]
    fn a_large_body_is_given_its_time_to_go_out() {
        let hung = Duration::from_millis(250);
        assert_eq!(lost_after(hung, 0), hung);
        assert_eq!(lost_after(hung, 1024 * 1024 - 1), hung);
        assert_eq!(
            lost_after(hung, 100 * 1024 * 1024),
            hung + Duration::from_secs(100)
        );
        assert_eq!(lost_after(Duration::MAX, 1 << 40), Duration::MAX);
    }

    #[test]
    fn the_first_request_is_lost_after_three_answers_of_later_ones() {
        let mark = Mark {
            ended: 0,
            in_flight: 0,
        };
        assert!(!is_lost(mark, 2));
        assert!(is_lost(mark, 3));
    }
}
