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

use spoolpost_protocol::circuits::CircuitState;

/// What the choice needs to know of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub state: CircuitState,
    pub in_flight: usize,
}

/// The closed endpoint with the fewest requests in flight, leaving out
/// `tried` (the endpoints this attempt already had); of equals, the first
/// at or after `cursor` going round. `None` when no closed endpoint is
/// left.
pub fn pick(views: &[View], tried: &[usize], cursor: usize) -> Option<usize> {
    let n = views.len();
    (0..n)
        .map(|i| (cursor + i) % n.max(1))
        .filter(|i| views[*i].state == CircuitState::Closed && !tried.contains(i))
        .min_by_key(|i| views[*i].in_flight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CircuitState::*;

    fn v(state: CircuitState, in_flight: usize) -> View {
        View { state, in_flight }
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
        ];
        for (what, views, tried, cursor, want) in table {
            assert_eq!(pick(views, tried, *cursor), *want, "{what}");
        }
    }
}
