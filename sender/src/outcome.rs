//! What an attempt's result means: one pure function from an HTTP answer or a
//! transport failure to delivered / rejected / retry, with the reason.
//!
//! The rules:
//! - 2xx: delivered.
//! - 408, 425, 429: retried, honouring `Retry-After` (seconds or HTTP date).
//! - any other 4xx: rejected, the file itself is the problem;
//!   a receiver's `retry_statuses` can turn chosen codes into retries.
//! - 3xx: rejected; redirects are not followed, because re-sending a body to
//!   another place is a decision for the operator (fix the URL).
//! - 5xx and every transport failure (refused, reset, timeout, TLS): retried,
//!   with `Retry-After` honoured where a 5xx gives it.
//! - a failure to read the local file mid-request: retried, but not held
//!   against the receiver, whose circuit it must not open.

use std::time::{Duration, SystemTime};

/// How an attempt failed without an HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Connect,
    Timeout,
    Reset,
    Tls,
    /// Some other network or protocol failure.
    Other,
    /// Reading the file failed while sending it.
    LocalRead,
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
            Transport::LocalRead => "read",
        }
    }
}

/// What came back from one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    Failed(Transport),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Rejected {
        why: String,
    },
    Retry {
        /// Token for the file name, e.g. `http-503` or `timeout`.
        reason: String,
        /// The receiver's requested wait, if it gave one.
        retry_after: Option<Duration>,
        /// Whether this counts as the receiver failing (for its circuit).
        receiver_failed: bool,
    },
}

/// Classifies one attempt. `extra_retry` holds the receiver's
/// `retry_statuses`; `now` anchors `Retry-After` dates.
pub fn classify(answer: &Answer, extra_retry: &[u16], now: SystemTime) -> Outcome {
    match answer {
        Answer::Failed(transport) => Outcome::Retry {
            reason: transport.token().to_string(),
            retry_after: None,
            receiver_failed: *transport != Transport::LocalRead,
        },
        Answer::Status { code, retry_after } => {
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
                408 | 425 | 429 | 500..=599 => retry(),
                300..=399 => Outcome::Rejected {
                    why: format!(
                        "HTTP {code}: redirects are not followed; point the receiver's url at the final location"
                    ),
                },
                400..=499 => Outcome::Rejected {
                    why: format!("HTTP {code}: the receiver refused this file"),
                },
                _ => Outcome::Rejected {
                    why: format!("HTTP {code}: not a final answer a receiver should give"),
                },
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
        }
    }

    fn kind(o: &Outcome) -> &'static str {
        match o {
            Outcome::Delivered => "delivered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Retry { .. } => "retry",
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
            (401, "rejected"),
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
                kind(&classify(&status(code), &[], now)),
                want,
                "HTTP {code}"
            );
        }
    }

    #[test]
    fn retry_statuses_turn_chosen_4xx_into_retries() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(kind(&classify(&status(409), &[409], now)), "retry");
        assert_eq!(kind(&classify(&status(404), &[409], now)), "rejected");
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
            let o = classify(&Answer::Failed(t), &[], now);
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
        let o = classify(&Answer::Failed(Transport::LocalRead), &[], now);
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
        };
        assert!(matches!(
            classify(&answer, &[], now),
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
}
