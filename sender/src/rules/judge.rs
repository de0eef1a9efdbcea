//! One answer, one judgement: everything the sender does with what came
//! back from an attempt is decided here, in one pure function, [`judge`],
//! which is the README's answer table in code. From the answer (what it
//! means is [`classify`]'s table), the attempts made, the file's age, the
//! retry policy and the jitter it gives:
//!
//! - the file's **fate**: Deliver, Retry at a time, Reject with a class,
//!   Expire or Vanished ([`crate::sched::settle`] is the one place that
//!   acts on it);
//! - the **circuit** signal: what the answer says about the endpoint, for
//!   its breaker (a refusal of our credentials opens it at once);
//! - the **load** signal: what it says about the receiver's capacity, for
//!   its adaptive limit ([`load`]);
//! - **failover**: whether another endpoint of the receiver may do better
//!   at once than this file waiting out its backoff.

use std::time::{Duration, SystemTime};

use spoolpost_protocol::reason::ErrorClass;

use crate::rules::adaptive::Signal;
use crate::rules::backoff::{Limit, Next, RetryPolicy};
pub use crate::rules::outcome::CircuitSignal;
use crate::rules::outcome::{Answer, Outcome, Rules, Transport, classify};

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

/// Everything one answer decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub fate: Fate,
    pub circuit: CircuitSignal,
    pub load: Signal,
    /// Another closed endpoint of the receiver should have the file now.
    pub failover: bool,
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
    /// How long the answer took to come.
    pub latency: Duration,
}

/// Judges one attempt's answer under the receiver's `rules` and the retry
/// `policy`.
pub fn judge(answer: &Answer, rules: Rules<'_>, policy: &RetryPolicy, at: Attempt) -> Judgement {
    let (fate, circuit) = fate(answer, rules, policy, at);
    Judgement {
        failover: failover(&fate, circuit),
        fate,
        circuit,
        load: load(answer, at.latency),
    }
}

/// What one answer says about the receiver's capacity.
pub fn load(answer: &Answer, latency: Duration) -> Signal {
    match answer {
        Answer::Status {
            code: 429 | 503, ..
        } => Signal::Overload,
        Answer::Status { code, .. } if (200..300).contains(code) => Signal::Good(latency),
        Answer::Failed(Transport::Connect | Transport::Timeout | Transport::Reset) => {
            Signal::Overload
        }
        // A rejection, a TLS or protocol failure, a file that changed or
        // could not be read: nothing about how busy the receiver is.
        _ => Signal::Neutral,
    }
}

/// Whether another endpoint may do better than the one that answered: it
/// failed as a receiver (not the file, not our credentials), and the file
/// would otherwise wait for a retry or be given up on for its limits.
fn failover(fate: &Fate, circuit: CircuitSignal) -> bool {
    matches!(circuit, CircuitSignal::Fails { .. })
        && matches!(fate, Fate::Retry { .. } | Fate::Expire { .. })
}

/// The file's fate and what the answer says about the endpoint.
fn fate(
    answer: &Answer,
    rules: Rules<'_>,
    policy: &RetryPolicy,
    at: Attempt,
) -> (Fate, CircuitSignal) {
    match classify(answer, rules, at.now) {
        Outcome::Delivered => (Fate::Deliver, CircuitSignal::Works),
        Outcome::Vanished { why } => (Fate::Vanished { why }, CircuitSignal::Silent),
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
            let fate = Fate::Retry {
                at: at.now + wait,
                wait,
                reason,
            };
            (fate, CircuitSignal::Refuses)
        }
        Outcome::Rejected {
            class,
            why,
            receiver,
        } => (Fate::Reject { class, why }, receiver),
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
            let circuit = if receiver_failed {
                CircuitSignal::Fails { retry_after }
            } else {
                CircuitSignal::Silent
            };
            (fate, circuit)
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
            latency: Duration::ZERO,
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
        let works = CircuitSignal::Works;
        let fails = CircuitSignal::Fails { retry_after: None };
        let silent = CircuitSignal::Silent;
        let early = Answer::Status {
            code: 200,
            retry_after: None,
            early: Some(Early { read: 1, size: 2 }),
        };
        type Check = Box<dyn Fn(&Fate) -> bool>;
        let is = |want: Fate| -> Check { Box::new(move |f| *f == want) };
        let table: Vec<(&str, Answer, Attempt, Check, CircuitSignal)> = vec![
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
                CircuitSignal::Fails {
                    retry_after: Some(S(30)),
                },
            ),
            (
                "429 asking past the cap",
                status(429, Some("86400")),
                attempt(1, 0),
                is(retry(60_000, "http-429")),
                CircuitSignal::Fails {
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
                CircuitSignal::Refuses,
            ),
            (
                "407 past every limit still waits",
                status(407, None),
                attempt(9, 7200),
                is(retry(30_000, "http-407")),
                CircuitSignal::Refuses,
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
            let v = judge(&answer, Rules::default(), &policy(), at);
            assert!(fate(&v.fate), "{case}: {:?}", v.fate);
            assert_eq!(v.circuit, signal, "{case}");
        }
    }

    fn reject_box(class: ErrorClass) -> Box<dyn Fn(&Fate) -> bool> {
        Box::new(reject(class))
    }

    #[test]
    fn jitter_spreads_the_wait_over_its_upper_half() {
        let mut at = attempt(3, 0);
        at.jitter = 0.5;
        let v = judge(&status(500, None), Rules::default(), &policy(), at);
        assert_eq!(v.fate, retry(3000, "http-500"));
    }

    #[test]
    fn an_s3_store_s_answers_412_is_there_403_404_rejected_503_overload() {
        let s3 = Rules {
            create_only: true,
            ..Rules::default()
        };
        let there = judge(&status(412, None), s3, &policy(), attempt(2, 5));
        assert_eq!(there.fate, Fate::Deliver, "the conditional PUT found it");
        let early_412 = Answer::Status {
            code: 412,
            retry_after: None,
            early: Some(Early { read: 1, size: 2 }),
        };
        assert_eq!(
            judge(&early_412, s3, &policy(), attempt(1, 0)).fate,
            Fate::Deliver
        );
        // Without a conditional create, a 412 is the receiver's refusal.
        let http = judge(
            &status(412, None),
            Rules::default(),
            &policy(),
            attempt(1, 0),
        );
        assert!(reject(ErrorClass::Rejected)(&http.fate), "{http:?}");
        for code in [403, 404] {
            let v = judge(&status(code, None), s3, &policy(), attempt(1, 0));
            assert!(reject(ErrorClass::Rejected)(&v.fate), "{code}: {v:?}");
        }
        let slow = judge(&status(503, None), s3, &policy(), attempt(1, 0));
        assert!(matches!(slow.fate, Fate::Retry { .. }), "{slow:?}");
        assert_eq!(slow.load, Signal::Overload);
        // A refusal of our credentials waits as a 401 does, past every
        // limit, and opens the circuit at once.
        let refused = Answer::CredentialsRefused {
            code: 403,
            store_code: "InvalidAccessKeyId".into(),
        };
        let v = judge(&refused, s3, &policy(), attempt(1000, 1_000_000));
        assert!(
            matches!(&v.fate, Fate::Retry { reason, .. } if reason == "http-403"),
            "{v:?}"
        );
        assert_eq!(v.circuit, CircuitSignal::Refuses);
        assert_eq!(v.load, Signal::Neutral);
    }

    #[test]
    fn reject_statuses_move_a_default_retry_or_auth_to_error() {
        for code in [401, 503] {
            let rules = Rules {
                extra_reject: &[401, 503],
                ..Rules::default()
            };
            let v = judge(&status(code, None), rules, &policy(), attempt(1, 0));
            assert!(
                reject(ErrorClass::Rejected)(&v.fate),
                "{code}: {:?}",
                v.fate
            );
            assert_eq!(v.circuit, CircuitSignal::Works, "{code}");
        }
    }

    /// The README's answer table, row by row, with what each answer also
    /// tells the adaptive limit and whether the file fails over.
    #[test]
    fn the_readme_answer_table() {
        use Fate::*;
        const LATENCY: Duration = Duration::from_millis(7);
        let fails = CircuitSignal::Fails { retry_after: None };
        let good = Signal::Good(LATENCY);
        let early = |code| Answer::Status {
            code,
            retry_after: None,
            early: Some(Early { read: 1, size: 2 }),
        };
        let kind = |fate: &Fate| match fate {
            Deliver => "done",
            Retry { .. } => "waits",
            Reject { class, .. } => class.as_str(),
            Expire { .. } => "expired",
            Vanished { .. } => "vanished",
        };
        let reject = &[409][..];
        let (works, refuses, silent) = (
            CircuitSignal::Works,
            CircuitSignal::Refuses,
            CircuitSignal::Silent,
        );
        let (neutral, overload) = (Signal::Neutral, Signal::Overload);
        let changed = Answer::Changed(Change::Grew { claimed: 1 });
        // answer, the file, the endpoint's circuit, the receiver's limit, fails over
        #[rustfmt::skip]
        let table: Vec<(&str, Answer, &str, CircuitSignal, Signal, bool)> = vec![
            ("2xx after the whole body",  status(200, None),                  "done",         works,   good,     false),
            ("2xx before the whole body", early(200),                         "early_answer", fails,   good,     false),
            ("401",                       status(401, None),                  "waits",        refuses, neutral,  false),
            ("407",                       status(407, None),                  "waits",        refuses, neutral,  false),
            ("408",                       status(408, None),                  "waits",        fails,   neutral,  true),
            ("425",                       status(425, None),                  "waits",        fails,   neutral,  true),
            ("429",                       status(429, None),                  "waits",        fails,   overload, true),
            ("500",                       status(500, None),                  "waits",        fails,   neutral,  true),
            ("503",                       status(503, None),                  "waits",        fails,   overload, true),
            ("connect",                   Answer::Failed(Transport::Connect), "waits",        fails,   overload, true),
            ("reset",                     Answer::Failed(Transport::Reset),   "waits",        fails,   overload, true),
            ("timeout",                   Answer::Failed(Transport::Timeout), "waits",        fails,   overload, true),
            ("TLS",                       Answer::Failed(Transport::Tls),     "waits",        fails,   neutral,  true),
            ("301",                       status(301, None),                  "rejected",     works,   neutral,  false),
            ("404",                       status(404, None),                  "rejected",     works,   neutral,  false),
            ("100",                       status(100, None),                  "rejected",     works,   neutral,  false),
            ("600",                       status(600, None),                  "rejected",     works,   neutral,  false),
            ("in reject_statuses",        status(409, None),                  "rejected",     works,   neutral,  false),
            ("changed while sent",        changed,                            "unsendable",   silent,  neutral,  false),
            ("no route",                  Answer::NoRoute,                    "no_route",     silent,  neutral,  false),
            ("local read",                Answer::LocalRead,                  "waits",        silent,  neutral,  false),
        ];
        let rules = Rules {
            extra_reject: reject,
            ..Rules::default()
        };
        for (case, answer, fate, circuit, load, failover) in table {
            let mut at = attempt(1, 0);
            at.latency = LATENCY;
            let j = judge(&answer, rules, &policy(), at);
            assert_eq!(kind(&j.fate), fate, "{case}: {:?}", j.fate);
            assert_eq!(j.circuit, circuit, "{case}");
            assert_eq!(j.load, load, "{case}");
            assert_eq!(j.failover, failover, "{case}");
        }
    }

    #[test]
    fn a_failing_endpoint_fails_over_even_when_the_file_runs_out_of_attempts() {
        let j = judge(
            &status(503, None),
            Rules::default(),
            &policy(),
            attempt(5, 30),
        );
        assert!(matches!(j.fate, Fate::Expire { .. }), "{:?}", j.fate);
        assert!(j.failover);
    }
}
