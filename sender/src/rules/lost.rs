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
//! request is *overtaken* by the requests sent after it that the receiver
//! answered (with any status) while it was still waiting; once
//! [`OVERTAKEN_BY`] of them were, the receiver is plainly working and this
//! one request is lost. Requests on separate connections may be answered
//! in any order, so a request is first given the answer deadline that a
//! hung endpoint's requests get before they fail over
//! ([`crate::rules::endpoint::answer_deadline`]: four lapse times, at least
//! a second, and the request timeout's allowance of a second per MiB of
//! body): only then may it be taken for lost. A half-open circuit's probe
//! never is, for the same reason it is never cut for another endpoint.
//!
//! Such a request is cut only when its place is wanted: when every place
//! under `concurrency` is taken and a file waits for one. Its file is
//! retried as after a timeout, with the same idempotency key, so a receiver
//! that took it after all and keeps keys can drop the second copy. The
//! controller hears nothing of the cut (the rule holds the receiver to be
//! working), and the file does not fail over: the place is what it is cut
//! for.
//!
//! Which requests were answered after another was sent is not recorded
//! request by request: a [`Mark`] keeps, at a request's start, how many
//! requests had been answered and how many were in flight. Of the answers
//! since, at most those in flight then were to requests sent before it, so
//! the rest overtook it. That errs on the side of keeping a request: it
//! never counts an earlier request as overtaking. A receiver that answers
//! every request slowly, in the order sent, overtakes none, so nothing of
//! it is cut; one that answers none overtakes none either, and its requests
//! wait out their timeout as before.

/// Requests sent after a hung one that must have been answered before it
/// is taken for lost: TCP's duplicate-acknowledgement threshold.
pub const OVERTAKEN_BY: u64 = 3;

/// What was known at a request's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Requests to the receiver that had been answered.
    pub answered: u64,
    /// Requests to the receiver in flight, not counting this one.
    pub in_flight: u64,
}

/// How many requests sent after the one marked `mark` have been answered,
/// at least, now that `answered` have been in all.
pub fn overtaken(mark: Mark, answered: u64) -> u64 {
    answered
        .saturating_sub(mark.answered)
        .saturating_sub(mark.in_flight)
}

/// Whether the request marked `mark` is lost, now that `answered` requests
/// to the receiver have been answered in all.
pub fn is_lost(mark: Mark, answered: u64) -> bool {
    overtaken(mark, answered) >= OVERTAKEN_BY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_at_the_start_never_count_as_overtaking() {
        // Ten in flight when it started: the first ten answered may all have
        // been sent before it.
        let mark = Mark {
            answered: 100,
            in_flight: 10,
        };
        #[rustfmt::skip]
        let table = [
            // answered in all, overtaken, lost
            (100, 0, false),
            (110, 0, false),
            (112, 2, false),
            (113, 3, true),
            (500, 390, true),
        ];
        for (answered, overtaken_by, lost) in table {
            assert_eq!(overtaken(mark, answered), overtaken_by, "{answered}");
            assert_eq!(is_lost(mark, answered), lost, "{answered}");
        }
    }

    #[test]
    fn the_first_request_is_lost_after_three_answers_of_later_ones() {
        let mark = Mark {
            answered: 0,
            in_flight: 0,
        };
        assert!(!is_lost(mark, 2));
        assert!(is_lost(mark, 3));
    }
}
