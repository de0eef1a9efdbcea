//! Which of a receiver's endpoints (`urls`) takes the next request: a pure
//! rule over each endpoint's circuit state and requests in flight, kept
//! apart from [`crate::sched::circuits`], which holds that state and acts on it.
//!
//! Least-in-flight, not round robin: an endpoint that answers slowly (or
//! hangs until the timeout) keeps its requests longer, so it is given fewer
//! new ones, where round robin would keep feeding it its equal share and
//! let it hold up that share of the backlog. Ties (the common case at low
//! load, where every endpoint has none in flight) go round from a cursor
//! that moves on with every pick, so light traffic is still spread.
//!
//! A hung endpoint (one with a request that has gone unanswered past its
//! lapse time: the receiver's, [`crate::rules::adaptive::Controller::lapse_after`],
//! or the endpoint's own [`Latency::lapse`] if it answers more slowly)
//! gets no new file while another closed endpoint has none hung: an
//! endpoint that accepts connections and never answers would otherwise
//! keep taking files until its circuit opens, each of them waiting out the
//! whole request timeout. And a request to it that is still unanswered at
//! its [`answer_deadline`] is cut and fails over, when another endpoint
//! can take the file, instead of waiting for the timeout. A half-open
//! circuit's probe is never cut: its answer, however slow, is how an
//! endpoint that is slow but alive gets its own latency known, and with it
//! a deadline of its own.

use std::time::Duration;

use spoolpost_protocol::circuits::CircuitState;

/// What the choice needs to know of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub state: CircuitState,
    pub in_flight: usize,
    /// Its requests unanswered past the lapse time.
    pub hung: usize,
}

/// The closed endpoint with the fewest requests in flight, leaving out
/// `tried` (the endpoints this attempt already had) and, while another
/// has none, endpoints with hung requests; of equals, the first at or
/// after `cursor` going round. `None` when no closed endpoint is left.
pub fn pick(views: &[View], tried: &[usize], cursor: usize) -> Option<usize> {
    let n = views.len();
    (0..n)
        .map(|i| (cursor + i) % n.max(1))
        .filter(|i| views[*i].state == CircuitState::Closed && !tried.contains(i))
        .min_by_key(|i| (views[*i].hung > 0, views[*i].in_flight))
}

/// Whether an endpoint not in `tried` (this attempt's, the current one
/// last) could take a file now: closed, and with no request hung.
pub fn another_ready(views: &[View], tried: &[usize]) -> bool {
    views
        .iter()
        .enumerate()
        .any(|(i, v)| !tried.contains(&i) && v.state == CircuitState::Closed && v.hung == 0)
}

/// An endpoint's own smoothed answer time and its deviation, as TCP keeps
/// for its retransmission timeout (RFC 6298), from the answers it gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency(Option<(Duration, Duration)>);

impl Latency {
    pub fn sample(&mut self, took: Duration) {
        self.0 = Some(match self.0 {
            None => (took, took / 2),
            Some((srtt, var)) => {
                let dev = srtt.abs_diff(took);
                (srtt * 7 / 8 + took / 8, var * 3 / 4 + dev / 4)
            }
        });
    }

    /// Twice the smoothed time plus four deviations, as the receiver's
    /// lapse time is reckoned; `None` before any answer.
    pub fn lapse(&self) -> Option<Duration> {
        self.0.map(|(srtt, var)| srtt * 2 + var * 4)
    }
}

/// How many lapse times a request may go unanswered before it is cut for
/// another endpoint: a lapse time is already late (twice the smoothed
/// latency plus four deviations), and a cut request may have been taken,
/// so the file is sent twice; this many are rare for an endpoint that
/// answers at all.
pub const DEADLINE_LAPSES: u32 = 4;
/// The least answer deadline, so a receiver that answers in a millisecond
/// does not have its requests cut by a scheduling hiccup.
pub const DEADLINE_FLOOR: Duration = Duration::from_secs(1);
/// The body rate the deadline allows for on top, as the request timeout
/// does: a large file takes its time to go out before any answer can come.
pub const DEADLINE_BODY_RATE: u64 = 1024 * 1024;

/// When a request of `size` bytes still unanswered is cut for another
/// endpoint, given the receiver's lapse time; `None` when that would be no
/// sooner than its own `timeout`, which ends it anyway.
pub fn answer_deadline(lapse: Duration, size: u64, timeout: Duration) -> Option<Duration> {
    let deadline = lapse.saturating_mul(DEADLINE_LAPSES).max(DEADLINE_FLOOR);
    // The timeout has the same allowance for the body on top.
    (deadline < timeout)
        .then(|| deadline.saturating_add(Duration::from_secs(size / DEADLINE_BODY_RATE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use CircuitState::*;

    fn v(state: CircuitState, in_flight: usize) -> View {
        View {
            state,
            in_flight,
            hung: 0,
        }
    }

    fn hung(in_flight: usize) -> View {
        View {
            hung: 1,
            ..v(Closed, in_flight)
        }
    }

    /// What, the endpoints, those tried, the cursor, and the pick.
    type Case<'a> = (&'a str, &'a [View], &'a [usize], usize, Option<usize>);

    #[test]
    fn the_table() {
        #[rustfmt::skip]
        let table: &[Case] = &[
            ("one endpoint", &[v(Closed, 9)], &[], 0, Some(0)),
            ("fewest in flight", &[v(Closed, 3), v(Closed, 1), v(Closed, 2)], &[], 0, Some(1)),
            ("ties from the cursor", &[v(Closed, 0), v(Closed, 0), v(Closed, 0)], &[], 1, Some(1)),
            ("ties go round", &[v(Closed, 0), v(Closed, 0), v(Closed, 0)], &[], 5, Some(2)),
            ("open ones left out", &[v(Open, 0), v(Closed, 7)], &[], 0, Some(1)),
            ("half-open ones left out", &[v(HalfOpen, 0), v(Closed, 7)], &[], 0, Some(1)),
            ("tried ones left out", &[v(Closed, 0), v(Closed, 7)], &[0], 0, Some(1)),
            ("all tried", &[v(Closed, 0), v(Closed, 0)], &[0, 1], 0, None),
            ("none closed", &[v(Open, 0), v(HalfOpen, 0)], &[], 0, None),
            ("none at all", &[], &[], 3, None),
            ("a hung one left out", &[hung(1), v(Closed, 7)], &[], 0, Some(1)),
            ("hung ones when nothing else", &[hung(3), hung(1), v(Open, 0)], &[], 0, Some(1)),
            ("a hung one when the other was tried", &[hung(1), v(Closed, 0)], &[1], 0, Some(0)),
        ];
        for (what, views, tried, cursor, want) in table {
            assert_eq!(pick(views, tried, *cursor), *want, "{what}");
        }
    }

    #[test]
    fn an_endpoints_latency_is_smoothed_and_its_lapse_follows_it() {
        const MS: fn(u64) -> Duration = Duration::from_millis;
        let mut l = Latency::default();
        assert_eq!(l.lapse(), None);
        l.sample(MS(1000));
        assert_eq!(l.lapse(), Some(MS(4000)), "2 x 1 s + 4 x 0.5 s");
        for _ in 0..50 {
            l.sample(MS(1000));
        }
        assert!(l.lapse().unwrap() < MS(2100), "{:?}", l.lapse());
        assert!(l.lapse().unwrap() >= MS(2000));
    }

    #[test]
    fn another_endpoint_is_ready_when_closed_and_not_hung() {
        assert!(another_ready(&[hung(1), v(Closed, 5)], &[0]));
        assert!(!another_ready(&[hung(1), hung(1)], &[0]));
        assert!(!another_ready(&[hung(1), v(Open, 0)], &[0]));
        assert!(!another_ready(&[hung(1)], &[0]));
        assert!(another_ready(&[v(Closed, 0), hung(1)], &[1]));
        assert!(
            !another_ready(&[hung(1), v(Closed, 0)], &[1, 0]),
            "tried already"
        );
    }

    #[test]
    fn the_answer_deadline_is_lapses_with_a_floor_plus_the_body_and_below_the_timeout() {
        const MS: fn(u64) -> Duration = Duration::from_millis;
        const S: fn(u64) -> Duration = Duration::from_secs;
        assert_eq!(answer_deadline(MS(250), 0, S(30)), Some(S(1)));
        assert_eq!(answer_deadline(MS(100), 0, S(30)), Some(S(1)), "the floor");
        assert_eq!(answer_deadline(S(2), 0, S(30)), Some(S(8)));
        assert_eq!(answer_deadline(MS(250), 10 << 20, S(30)), Some(S(11)));
        assert_eq!(
            answer_deadline(S(2), 0, S(8)),
            None,
            "the timeout ends it first"
        );
        assert_eq!(answer_deadline(Duration::MAX, 0, S(8)), None);
    }
}
