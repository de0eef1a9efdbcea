//! What an attempt's result means: one pure function from an HTTP answer, a
//! transport failure or a file that changed under the request to delivered /
//! rejected / retry / vanished, with the reason and what it says about the
//! receiver (for its circuit). It is the first step of
//! [`crate::rules::judge`], which the rest of the sender calls.
//!
//! The rules:
//! - 2xx after the whole body was sent: delivered.
//! - 2xx before the whole body was sent (an early answer): not a delivery,
//!   the receiver may never have seen the file; to `error/` as
//!   `early_answer`, counted as a failure of the receiver. A receiver's
//!   `accept_early_answer` makes it a delivery. An early 4xx/5xx is judged
//!   like any other.
//! - the file changed while being sent (truncated, grew, replaced): to
//!   `error/` as `unsendable`, whatever the receiver said; removed: nothing
//!   is left to move. Neither says anything about the receiver.
//! - 401, 407: our credentials are refused, which is no fault of the file:
//!   it waits (never to `error/`), and the receiver's circuit opens at once
//!   with reason `auth` until a probe gets through (a rotated secret). So
//!   does an S3 store's 400 or 403 whose error code is about credentials
//!   (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `ExpiredToken`, …:
//!   [`crate::rules::s3_error`]), which reaches here as
//!   [`Answer::CredentialsRefused`].
//! - 408, 425, 429: retried, honouring `Retry-After` (seconds or HTTP date).
//! - any other 4xx: rejected, the file itself is the problem.
//! - a receiver's `retry_statuses` and `reject_statuses` move any code
//!   either way (a code in both is retried).
//! - 3xx: rejected; redirects are not followed, because re-sending a body to
//!   another place is a decision for the operator (fix the URL).
//! - 5xx and every transport failure (refused, reset, timeout, TLS): retried,
//!   with `Retry-After` honoured where a 5xx gives it.
//! - a failure to read the local file mid-request: retried, but not held
//!   against the receiver, whose circuit it must not open.

use std::time::{Duration, SystemTime};

use spoolpost_protocol::reason::ErrorClass;

use crate::rules::change::Change;

/// How an attempt failed without an HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Connect,
    Timeout,
    Reset,
    Tls,
    /// Some other network or protocol failure.
    Other,
}

impl Transport {
    /// The short token kept in the file name as its last retry reason.
    pub fn token(self) -> &'static str {
        match self {
            Transport::Connect => "connect",
            Transport::Timeout => "timeout",
            Transport::Reset => "reset",
            Transport::Tls => "tls",
            Transport::Other => "network",
        }
    }
}

/// What came back from one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Status {
        code: u16,
        retry_after: Option<String>,
        /// Set when the answer came before the whole body was sent.
        early: Option<Early>,
    },
    Failed(Transport),
    /// An S3-compatible store refused our credentials with answer `code`
    /// and error `store_code` (the table in [`crate::rules::s3_error`]):
    /// judged as a 401 is.
    CredentialsRefused {
        code: u16,
        store_code: String,
    },
    /// The file changed while it was being sent; the request was aborted.
    Changed(Change),
    /// The file cannot be sent at all (not a regular file, unreadable, its
    /// route gives no valid URL).
    Unsendable(String),
    /// No routing rule matches the file's name.
    NoRoute,
    /// Reading the file here failed: a local problem, not the receiver's.
    LocalRead,
}

/// How far a body had got when the answer came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Early {
    /// Bytes of the file read so far: an upper bound on what was sent.
    pub read: u64,
    /// The file's size when claimed.
    pub size: u64,
}

/// What an attempt says about the endpoint, for its circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitSignal {
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
pub enum Outcome {
    Delivered,
    /// To `error/` now, with this class.
    Rejected {
        class: ErrorClass,
        why: String,
        receiver: CircuitSignal,
    },
    Retry {
        /// Token for the file name, e.g. `http-503` or `timeout`.
        reason: String,
        /// The receiver's requested wait, if it gave one.
        retry_after: Option<Duration>,
        /// Whether this counts as the receiver failing (for its circuit).
        receiver_failed: bool,
    },
    /// The file is gone: nothing to send or move.
    Vanished {
        why: String,
    },
    /// The receiver refuses our credentials (401, 407): the file waits and
    /// the receiver's circuit opens with reason `auth`.
    Refused {
        /// Token for the file name, e.g. `http-401`.
        reason: String,
    },
}

/// A receiver's settings that the rules depend on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules<'a> {
    /// `retry_statuses`: codes retried as well as the standard ones.
    pub extra_retry: &'a [u16],
    /// `reject_statuses`: codes sent to `error/` whatever the table says.
    pub extra_reject: &'a [u16],
    pub accept_early_answer: bool,
    /// Requests are conditional creations (an S3 receiver's PUT with
    /// `If-None-Match: *`): a 412 says the object is already there, put
    /// by an earlier attempt whose answer was lost, so the file is
    /// delivered, never stored twice.
    pub create_only: bool,
}

/// Classifies one attempt. `now` anchors `Retry-After` dates.
pub fn classify(answer: &Answer, rules: Rules<'_>, now: SystemTime) -> Outcome {
    let extra_retry = rules.extra_retry;
    let rejected = |why: String| Outcome::Rejected {
        class: ErrorClass::Rejected,
        why,
        receiver: CircuitSignal::Works,
    };
    match answer {
        // Whenever it came: a store checks the condition before the body.
        Answer::Status { code: 412, .. } if rules.create_only => Outcome::Delivered,
        Answer::CredentialsRefused { code, .. } => Outcome::Refused {
            reason: format!("http-{code}"),
        },
        Answer::Failed(transport) => Outcome::Retry {
            reason: transport.token().to_string(),
            retry_after: None,
            receiver_failed: true,
        },
        Answer::LocalRead => Outcome::Retry {
            reason: "read".to_string(),
            retry_after: None,
            receiver_failed: false,
        },
        Answer::NoRoute => Outcome::Rejected {
            class: ErrorClass::NoRoute,
            why: "no route: no routing rule matches this file name; add a [[routes]] rule and requeue it".into(),
            receiver: CircuitSignal::Silent,
        },
        Answer::Changed(Change::Removed) => Outcome::Vanished {
            why: Change::Removed.to_string(),
        },
        Answer::Unsendable(why) => Outcome::Rejected {
            class: ErrorClass::Unsendable,
            why: why.clone(),
            receiver: CircuitSignal::Silent,
        },
        Answer::Changed(change) => Outcome::Rejected {
            class: ErrorClass::Unsendable,
            why: change.to_string(),
            receiver: CircuitSignal::Silent,
        },
        Answer::Status {
            code,
            early: Some(early),
            ..
        } if (200..300).contains(code) && !rules.accept_early_answer => Outcome::Rejected {
            class: ErrorClass::EarlyAnswer,
            why: format!(
                "HTTP {code} came before the whole file was sent (at most {} of {} bytes): the receiver may never have seen it; check that its url takes files, or set accept_early_answer = true if it ignores bodies",
                early.read, early.size
            ),
            receiver: CircuitSignal::Fails { retry_after: None },
        },
        Answer::Status {
            code, retry_after, ..
        } => {
            let code = *code;
            let retry = || Outcome::Retry {
                reason: format!("http-{code}"),
                retry_after: retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, now)),
                receiver_failed: true,
            };
            match code {
                200..=299 => Outcome::Delivered,
                _ if extra_retry.contains(&code) => retry(),
                _ if rules.extra_reject.contains(&code) => rejected(format!(
                    "HTTP {code}: the receiver refused this file (reject_statuses)"
                )),
                401 | 407 => Outcome::Refused {
                    reason: format!("http-{code}"),
                },
                408 | 425 | 429 | 500..=599 => retry(),
                300..=399 => rejected(format!(
                    "HTTP {code}: redirects are not followed; point the receiver's url at the final location"
                )),
                400..=499 => rejected(format!("HTTP {code}: the receiver refused this file")),
                _ => rejected(format!(
                    "HTTP {code}: not a final answer a receiver should give"
                )),
            }
        }
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 10.2.3).
/// A date in the past means "now"; anything unparsable is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
            early: None,
        }
    }

    fn early(code: u16) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
            early: Some(Early {
                read: 65536,
                size: 1 << 30,
            }),
        }
    }

    fn rules(extra_retry: &[u16]) -> Rules<'_> {
        Rules {
            extra_retry,
            ..Rules::default()
        }
    }

    fn kind(o: &Outcome) -> &'static str {
        match o {
            Outcome::Delivered => "delivered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Retry { .. } => "retry",
            Outcome::Vanished { .. } => "vanished",
            Outcome::Refused { .. } => "refused",
        }
    }

    #[test]
    fn status_table() {
        let now = SystemTime::UNIX_EPOCH;
        let table = [
            (200, "delivered"),
            (201, "delivered"),
            (204, "delivered"),
            (299, "delivered"),
            (301, "rejected"),
            (302, "rejected"),
            (304, "rejected"),
            (400, "rejected"),
            (401, "refused"),
            (407, "refused"),
            (403, "rejected"),
            (404, "rejected"),
            (409, "rejected"),
            (413, "rejected"),
            (422, "rejected"),
            (408, "retry"),
            (425, "retry"),
            (429, "retry"),
            (500, "retry"),
            (502, "retry"),
            (503, "retry"),
            (504, "retry"),
            (599, "retry"),
            (100, "rejected"),
            (600, "rejected"),
        ];
        for (code, want) in table {
            assert_eq!(
                kind(&classify(&status(code), rules(&[]), now)),
                want,
                "HTTP {code}"
            );
        }
    }

    #[test]
    fn retry_statuses_turn_chosen_4xx_into_retries() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(kind(&classify(&status(409), rules(&[409]), now)), "retry");
        assert_eq!(
            kind(&classify(&status(404), rules(&[409]), now)),
            "rejected"
        );
    }

    #[test]
    fn reject_statuses_send_chosen_codes_to_error_and_retry_statuses_win() {
        let now = SystemTime::UNIX_EPOCH;
        let both = |retry: &'static [u16], reject: &'static [u16]| Rules {
            extra_retry: retry,
            extra_reject: reject,
            accept_early_answer: false,
            create_only: false,
        };
        assert_eq!(
            kind(&classify(&status(503), both(&[], &[503]), now)),
            "rejected"
        );
        assert_eq!(
            kind(&classify(&status(401), both(&[], &[401]), now)),
            "rejected"
        );
        assert_eq!(
            kind(&classify(&status(401), both(&[401], &[]), now)),
            "retry"
        );
        assert_eq!(
            kind(&classify(&status(409), both(&[409], &[409]), now)),
            "retry"
        );
        // 2xx is a delivery whatever the lists say.
        assert_eq!(
            kind(&classify(&status(200), both(&[], &[200]), now)),
            "delivered"
        );
    }

    #[test]
    fn transport_failures_retry_and_only_local_reads_spare_the_receiver() {
        let now = SystemTime::UNIX_EPOCH;
        for t in [
            Transport::Connect,
            Transport::Timeout,
            Transport::Reset,
            Transport::Tls,
            Transport::Other,
        ] {
            let o = classify(&Answer::Failed(t), rules(&[]), now);
            assert!(
                matches!(
                    o,
                    Outcome::Retry {
                        receiver_failed: true,
                        ..
                    }
                ),
                "{t:?}"
            );
        }
        let o = classify(&Answer::LocalRead, rules(&[]), now);
        assert_eq!(
            o,
            Outcome::Retry {
                reason: "read".into(),
                retry_after: None,
                receiver_failed: false
            }
        );
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let answer = Answer::Status {
            code: 429,
            retry_after: Some("120".into()),
            early: None,
        };
        assert!(matches!(
            classify(&answer, rules(&[]), now),
            Outcome::Retry { retry_after: Some(d), ref reason, .. } if d == Duration::from_secs(120) && reason == "http-429"
        ));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn an_early_2xx_is_a_failure_of_the_receiver_unless_accepted() {
        let now = SystemTime::UNIX_EPOCH;
        match classify(&early(200), rules(&[]), now) {
            Outcome::Rejected {
                class: ErrorClass::EarlyAnswer,
                why,
                receiver: CircuitSignal::Fails { retry_after: None },
            } => assert!(why.contains("65536 of 1073741824 bytes"), "{why}"),
            other => panic!("{other:?}"),
        }
        let accept = Rules {
            accept_early_answer: true,
            ..Rules::default()
        };
        assert_eq!(classify(&early(204), accept, now), Outcome::Delivered);
        // An early refusal is judged like any other answer.
        assert_eq!(kind(&classify(&early(413), rules(&[]), now)), "rejected");
        assert!(matches!(
            classify(&early(413), rules(&[]), now),
            Outcome::Rejected {
                class: ErrorClass::Rejected,
                ..
            }
        ));
        assert_eq!(kind(&classify(&early(503), rules(&[]), now)), "retry");
    }

    #[test]
    fn a_changed_file_is_unsendable_and_a_removed_one_vanished_whatever_the_receiver() {
        let now = SystemTime::UNIX_EPOCH;
        let changed = classify(
            &Answer::Changed(Change::Grew { claimed: 5 }),
            rules(&[]),
            now,
        );
        assert!(matches!(
            changed,
            Outcome::Rejected {
                class: ErrorClass::Unsendable,
                receiver: CircuitSignal::Silent,
                ..
            }
        ));
        assert_eq!(
            kind(&classify(
                &Answer::Changed(Change::Removed),
                rules(&[]),
                now
            )),
            "vanished"
        );
    }
}
