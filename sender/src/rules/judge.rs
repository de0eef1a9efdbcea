//! A file's fate after one attempt, decided in one pure function: what came
//! back ([`classify`]), the attempts made, the file's age, the retry policy
//! and the jitter give Deliver, Retry at a time, Reject with a class,
//! Expire or Vanished, together with what the attempt says about the
//! receiver for its circuit. [`crate::sched::settle`] is the one place that acts
//! on it.

use std::time::{Duration, SystemTime};

use spoolpost_common::reason::ErrorClass;

use crate::rules::backoff::{Limit, Next, RetryPolicy};
use crate::rules::outcome::{Answer, Health, Outcome, Rules, classify};

/// What an attempt says about the receiver, for its circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Works,
    Fails {
        retry_after: Option<Duration>,
    },
    /// Our credentials are refused: the circuit opens at once, reason
    /// `auth`, since every other file would meet the same answer.
    Refuses,
    /// Nothing (a local problem); a probe it carried is given back.
    Silent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    /// Back to `incoming/`, due at `at`; `reason` is the file name's token.
    Retry {
        at: SystemTime,
        wait: Duration,
        reason: String,
    },
    /// To `error/` now.
    Reject {
        class: ErrorClass,
        why: String,
    },
    /// To `error/`: a retry limit was reached.
    Expire {
        why: String,
    },
    /// The file is gone: nothing to move.
    Vanished {
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub fate: Fate,
    pub receiver: Signal,
}

/// Where the file stands as this attempt ends.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// This attempt's number, 1 for the first.
    pub number: u32,
    /// Time since the first attempt.
    pub age: Duration,
    pub now: SystemTime,
    /// A random number in [0, 1) that spreads the retry wait.
    pub jitter: f64,
}

pub fn verdict(answer: &Answer, rules: Rules<'_>, policy: &RetryPolicy, at: Attempt) -> Verdict {
    match classify(answer, rules, at.now) {
        Outcome::Delivered => Verdict {
            fate: Fate::Deliver,
            receiver: Signal::Works,
        },
        Outcome::Vanished { why } => Verdict {
            fate: Fate::Vanished { why },
            receiver: Signal::Silent,
        },
        Outcome::Refused { reason } => {
            // No limit applies: the file is not at fault, so it waits for
            // a rotated secret however long that takes.
            let unlimited = RetryPolicy {
                max_attempts: 0,
                max_age: Duration::MAX,
                ..*policy
            };
            let wait = match unlimited.next(at.number, at.age, None, at.jitter) {
                Next::RetryIn(wait) => wait,
                Next::GiveUp(_) => policy.max,
            };
            Verdict {
                fate: Fate::Retry {
                    at: at.now + wait,
                    wait,
                    reason,
                },
                receiver: Signal::Refuses,
            }
        }
        Outcome::Rejected {
            class,
            why,
            receiver,
        } => Verdict {
            fate: Fate::Reject { class, why },
            receiver: match receiver {
                Health::Answered => Signal::Works,
                Health::Failed => Signal::Fails { retry_after: None },
                Health::Unknown => Signal::Silent,
            },
        },
        Outcome::Retry {
            reason,
            retry_after,
            receiver_failed,
        } => {
            let fate = match policy.next(at.number, at.age, retry_after, at.jitter) {
                Next::RetryIn(wait) => Fate::Retry {
                    at: at.now + wait,
                    wait,
                    reason,
                },
                Next::GiveUp(Limit::Attempts) => Fate::Expire {
                    why: format!("gave up after {} attempts; last: {reason}", at.number),
                },
                Next::GiveUp(Limit::Age) => Fate::Expire {
                    why: format!(
                        "gave up after {} since the first attempt; last: {reason}",
                        humantime::format_duration(Duration::from_secs(at.age.as_secs()))
                    ),
                },
            };
            Verdict {
                fate,
                receiver: if receiver_failed {
                    Signal::Fails { retry_after }
                } else {
                    Signal::Silent
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::change::Change;
    use crate::rules::outcome::{Early, Transport};

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: S(1),
            max: S(60),
            max_attempts: 5,
            max_age: S(3600),
        }
    }

    fn status(code: u16, retry_after: Option<&str>) -> Answer {
        Answer::Status {
            code,
            retry_after: retry_after.map(Into::into),
            early: None,
        }
    }

    fn attempt(number: u32, age: u64) -> Attempt {
        Attempt {
            number,
            age: S(age),
            now: SystemTime::UNIX_EPOCH + S(1_000_000),
            jitter: 0.0,
        }
    }

    /// Jitter 0 waits half the backoff: 1 s doubling, so 500 ms first.
    fn retry(wait_ms: u64, reason: &str) -> Fate {
        let wait = Duration::from_millis(wait_ms);
        Fate::Retry {
            at: SystemTime::UNIX_EPOCH + S(1_000_000) + wait,
            wait,
            reason: reason.into(),
        }
    }

    fn reject(class: ErrorClass) -> impl Fn(&Fate) -> bool {
        move |f| matches!(f, Fate::Reject { class: c, .. } if *c == class)
    }

    #[test]
    fn the_table() {
        let works = Signal::Works;
        let fails = Signal::Fails { retry_after: None };
        let silent = Signal::Silent;
        let early = Answer::Status {
            code: 200,
            retry_after: None,
            early: Some(Early { read: 1, size: 2 }),
        };
        type Check = Box<dyn Fn(&Fate) -> bool>;
        let is = |want: Fate| -> Check { Box::new(move |f| *f == want) };
        let table: Vec<(&str, Answer, Attempt, Check, Signal)> = vec![
            (
                "2xx",
                status(204, None),
                attempt(1, 0),
                is(Fate::Deliver),
                works,
            ),
            (
                "first 503",
                status(503, None),
                attempt(1, 0),
                is(retry(500, "http-503")),
                fails,
            ),
            (
                "third 503",
                status(503, None),
                attempt(3, 9),
                is(retry(2000, "http-503")),
                fails,
            ),
            (
                "503 asking for 30s",
                status(503, Some("30")),
                attempt(1, 0),
                is(retry(30_000, "http-503")),
                Signal::Fails {
                    retry_after: Some(S(30)),
                },
            ),
            (
                "429 asking past the cap",
                status(429, Some("86400")),
                attempt(1, 0),
                is(retry(60_000, "http-429")),
                Signal::Fails {
                    retry_after: Some(S(86400)),
                },
            ),
            (
                "reset",
                Answer::Failed(Transport::Reset),
                attempt(2, 1),
                is(retry(1000, "reset")),
                fails,
            ),
            (
                "local read",
                Answer::LocalRead,
                attempt(1, 0),
                is(retry(500, "read")),
                silent,
            ),
            (
                "fifth 503: attempts used up",
                status(503, None),
                attempt(5, 30),
                is(Fate::Expire {
                    why: "gave up after 5 attempts; last: http-503".into(),
                }),
                fails,
            ),
            (
                "an hour old",
                Answer::Failed(Transport::Connect),
                attempt(2, 3600),
                is(Fate::Expire {
                    why: "gave up after 1h since the first attempt; last: connect".into(),
                }),
                fails,
            ),
            (
                "401 waits and refuses",
                status(401, None),
                attempt(1, 0),
                is(retry(500, "http-401")),
                Signal::Refuses,
            ),
            (
                "407 past every limit still waits",
                status(407, None),
                attempt(9, 7200),
                is(retry(30_000, "http-407")),
                Signal::Refuses,
            ),
            (
                "404",
                status(404, None),
                attempt(1, 0),
                reject_box(ErrorClass::Rejected),
                works,
            ),
            (
                "301",
                status(301, None),
                attempt(1, 0),
                reject_box(ErrorClass::Rejected),
                works,
            ),
            (
                "early 200",
                early,
                attempt(1, 0),
                reject_box(ErrorClass::EarlyAnswer),
                fails,
            ),
            (
                "grew while sent",
                Answer::Changed(Change::Grew { claimed: 1 }),
                attempt(1, 0),
                reject_box(ErrorClass::Unsendable),
                silent,
            ),
            (
                "not a regular file",
                Answer::Unsendable("a fifo".into()),
                attempt(1, 0),
                reject_box(ErrorClass::Unsendable),
                silent,
            ),
            (
                "no route",
                Answer::NoRoute,
                attempt(1, 0),
                reject_box(ErrorClass::NoRoute),
                silent,
            ),
            (
                "removed",
                Answer::Changed(Change::Removed),
                attempt(1, 0),
                Box::new(|f| matches!(f, Fate::Vanished { .. })),
                silent,
            ),
        ];
        for (case, answer, at, fate, signal) in table {
            let v = verdict(&answer, Rules::default(), &policy(), at);
            assert!(fate(&v.fate), "{case}: {:?}", v.fate);
            assert_eq!(v.receiver, signal, "{case}");
        }
    }

    fn reject_box(class: ErrorClass) -> Box<dyn Fn(&Fate) -> bool> {
        Box::new(reject(class))
    }

    #[test]
    fn jitter_spreads_the_wait_over_its_upper_half() {
        let mut at = attempt(3, 0);
        at.jitter = 0.5;
        let v = verdict(&status(500, None), Rules::default(), &policy(), at);
        assert_eq!(v.fate, retry(3000, "http-500"));
    }

    #[test]
    fn reject_statuses_move_a_default_retry_or_auth_to_error() {
        for code in [401, 503] {
            let rules = Rules {
                extra_reject: &[401, 503],
                ..Rules::default()
            };
            let v = verdict(&status(code, None), rules, &policy(), attempt(1, 0));
            assert!(
                reject(ErrorClass::Rejected)(&v.fate),
                "{code}: {:?}",
                v.fate
            );
            assert_eq!(v.receiver, Signal::Works, "{code}");
        }
    }
}
