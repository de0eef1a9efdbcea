//! The record written beside every file in `error/` as `NAME.reason.json`,
//! saying why the file was given up on. The reporter groups error files by
//! these fields, so the shape is part of the spool protocol.

use serde::{Deserialize, Serialize};

/// The largest response body kept in a reason record, in bytes.
pub const MAX_BODY: usize = 4096;

/// Why a file ended in `error/`, grouped by what an operator does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The receiver answered 4xx (or 3xx): the file itself is the problem.
    Rejected,
    /// Retries ran out (max attempts or max age); the last reason says why.
    Expired,
    /// No routing rule matched the file name.
    NoRoute,
    /// The file could not be sent as claimed: a symlink, not a regular
    /// file, unreadable, or changed (truncated, grown, replaced) while it
    /// was being sent.
    Unsendable,
    /// The receiver answered 2xx before it was sent the whole body: it may
    /// never have seen the file (a stub endpoint, a misconfigured proxy).
    EarlyAnswer,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Rejected => "rejected",
            ErrorClass::Expired => "expired",
            ErrorClass::NoRoute => "no_route",
            ErrorClass::Unsendable => "unsendable",
            ErrorClass::EarlyAnswer => "early_answer",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReasonRecord {
    pub class: ErrorClass,
    /// One line for people: what happened and what to do.
    pub message: String,
    /// The original file name (invalid UTF-8 replaced).
    pub file: String,
    pub key: Option<String>,
    pub receiver: Option<String>,
    /// The URL without user info or query string, which may carry secrets.
    pub url: Option<String>,
    pub status: Option<u16>,
    /// The start of the response body, at most [`MAX_BODY`] bytes.
    pub body: Option<String>,
    pub body_truncated: bool,
    /// The error text for failures that were not an HTTP answer.
    pub error: Option<String>,
    pub attempts: u32,
    /// RFC 3339 times.
    pub first_attempt: Option<String>,
    pub last_attempt: String,
}

/// Keeps at most [`MAX_BODY`] bytes of a response body, cut on a character
/// boundary. Returns the text and whether it was cut.
/// The largest reason record a reader will load; real ones hold at most
/// [`MAX_BODY`] bytes of body and a few fields.
pub const RECORD_MAX: u64 = 1 << 20;

impl ReasonRecord {
    /// Reads the record at `path` if it is one: only a plain file (not
    /// followed through a link) of sensible size is opened, since a FIFO
    /// under a record's name would block the reader for ever and a huge
    /// file would undo a streaming reader's flat memory. Anything else, or
    /// text that does not parse, is `None`.
    pub fn read(path: &std::path::Path) -> Option<ReasonRecord> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_file() || meta.len() > RECORD_MAX {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

pub fn truncate_body(body: &[u8]) -> (String, bool) {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_BODY)]);
    let mut text = text.into_owned();
    let truncated = body.len() > MAX_BODY;
    if truncated && text.ends_with('\u{fffd}') {
        text.pop();
    }
    (text, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_bounded() {
        let (text, cut) = truncate_body(&vec![b'x'; MAX_BODY + 10]);
        assert_eq!(text.len(), MAX_BODY);
        assert!(cut);
        let (text, cut) = truncate_body(b"short");
        assert_eq!((text.as_str(), cut), ("short", false));
    }

    #[test]
    fn class_names_are_snake_case_in_json() {
        for class in [
            ErrorClass::Rejected,
            ErrorClass::Expired,
            ErrorClass::NoRoute,
            ErrorClass::Unsendable,
            ErrorClass::EarlyAnswer,
        ] {
            assert_eq!(
                serde_json::to_string(&class).unwrap(),
                format!("\"{}\"", class.as_str())
            );
        }
    }
}
