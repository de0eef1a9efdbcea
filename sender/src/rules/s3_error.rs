//! Which refusals of an S3-compatible store are of our credentials, read
//! from the error code in its XML answer (`<Error><Code>…</Code>`). Such a
//! refusal is no fault of the file: like an HTTP receiver's 401, the file
//! waits (never to `error/`) and the receiver's circuit opens with reason
//! `auth` until a probe gets through, so a key rotated in the wrong order
//! (the old key revoked before the new one is in place, the id and the
//! secret changed one at a time) costs a delay, not files in `error/`.
//!
//! | code | status | why it waits |
//! |---|---|---|
//! | `InvalidAccessKeyId` | 403 | the key id is unknown: revoked, or not yet the one in place |
//! | `SignatureDoesNotMatch` | 403 | the secret does not belong to the id |
//! | `ExpiredToken`, `TokenRefreshRequired` | 400 | a session token ran out |
//! | `InvalidToken` | 400 | the session token is malformed or revoked |
//! | `InvalidSecurity` | 403 | the credentials are not valid |
//! | `RequestTimeTooSkewed` | 403 | this host's clock: every file would meet it |
//! | `AccountProblem` | 403 | the account (billing, suspension): every file would meet it |
//!
//! Every other code, `AccessDenied` among them, stays a rejection: a
//! policy may refuse some keys and allow others (a prefix, object lock, an
//! encryption key), so one refused file must not stop the receiver's
//! others, as an open circuit would; such files go to `error/` with the
//! store's XML and are requeued with `reporter replay` once fixed.

/// The text of the first `<Code>` element of an S3 error answer.
pub fn error_code(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].trim())
}

/// The store's error code when answer `status` with `body` refuses our
/// credentials (the table above), `None` for any other answer.
pub fn credentials_refused(status: u16, body: &[u8]) -> Option<&str> {
    if !matches!(status, 400 | 403) {
        return None;
    }
    let code = error_code(body)?;
    matches!(
        code,
        "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "InvalidToken"
            | "InvalidSecurity"
            | "RequestTimeTooSkewed"
            | "AccountProblem"
    )
    .then_some(code)
}

/// What a store's answer to completing a multipart upload says.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// The object exists: the answer is 2xx and holds
    /// `<CompleteMultipartUploadResult>`.
    Done,
    /// The object was there before (412 to `If-None-Match: *`).
    AlreadyThere,
    /// Not done, or not known to be: the status to judge it by (a 2xx
    /// without the result counts as the store's own trouble, 500, so the
    /// file is tried again, never moved to `done/` on a guess).
    Failed(u16),
}

/// Judges the answer to a completion. AWS answers 200 at once, then sends
/// whitespace while it assembles the parts, then the result or an
/// `<Error>`: the status alone says nothing, and an answer cut short (its
/// connection lost, its timeout reached) may hold neither. Only the
/// result element proves the object exists.
pub fn completion(status: u16, body: &[u8]) -> Completion {
    let text = String::from_utf8_lossy(body);
    match status {
        200..=299
            if text.contains("<CompleteMultipartUploadResult") && !text.contains("<Error>") =>
        {
            Completion::Done
        }
        200..=299 => Completion::Failed(500),
        412 => Completion::AlreadyThere,
        // ConditionalRequestConflict: another write to the key was under
        // way; AWS says to start the upload again. A 409 elsewhere is a
        // rejection, so it is judged here as the store's passing trouble.
        409 if error_code(body) == Some("ConditionalRequestConflict") => Completion::Failed(500),
        code => Completion::Failed(code),
    }
}

/// Whether a refusal to abort an upload (4xx) is for good: the store will
/// not abort it whatever we do, so its record goes and the bucket's
/// lifecycle rule is left to clean its parts. A refusal of our
/// credentials, a request timeout (408), too early (425), a throttle (429)
/// or a conflict (409) is not: the next attempt may get through.
pub fn abort_refused_for_good(status: u16, body: &[u8]) -> bool {
    (400..500).contains(&status)
        && !matches!(status, 408 | 409 | 425 | 429)
        && credentials_refused(status, body).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_done_only_when_its_answer_holds_the_result() {
        let result = b"<?xml version=\"1.0\"?>\n<CompleteMultipartUploadResult><Location>l</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"e-3\"</ETag></CompleteMultipartUploadResult>";
        assert_eq!(completion(200, result), Completion::Done);
        // AWS's keep-alive whitespace, then the result or an error.
        let mut late = b"          ".to_vec();
        late.extend_from_slice(result);
        assert_eq!(completion(200, &late), Completion::Done);
        assert_eq!(
            completion(200, &error("InternalError")),
            Completion::Failed(500)
        );
        // Cut short after the status: nothing proves the object exists.
        assert_eq!(completion(200, b"      "), Completion::Failed(500));
        assert_eq!(completion(200, b""), Completion::Failed(500));
        assert_eq!(
            completion(412, &error("PreconditionFailed")),
            Completion::AlreadyThere
        );
        assert_eq!(completion(503, &error("SlowDown")), Completion::Failed(503));
        // A write to the same key under way: tried again, not rejected.
        assert_eq!(
            completion(409, &error("ConditionalRequestConflict")),
            Completion::Failed(500)
        );
        assert_eq!(
            completion(409, &error("InvalidRequest")),
            Completion::Failed(409)
        );
    }

    #[test]
    fn an_abort_refused_for_a_passing_reason_is_tried_again() {
        assert!(abort_refused_for_good(403, &error("AccessDenied")));
        assert!(abort_refused_for_good(400, &error("InvalidRequest")));
        for passing in [408, 409, 425, 429] {
            assert!(
                !abort_refused_for_good(passing, &error("Whatever")),
                "{passing}"
            );
        }
        assert!(!abort_refused_for_good(
            403,
            &error("SignatureDoesNotMatch")
        ));
        assert!(!abort_refused_for_good(503, &error("SlowDown")));
        assert!(!abort_refused_for_good(500, b""));
    }

    fn error(code: &str) -> Vec<u8> {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>m</Message><RequestId>r</RequestId></Error>").into_bytes()
    }

    #[test]
    fn refusals_of_our_credentials_wait_others_are_rejections() {
        for (status, code, waits) in [
            (403, "InvalidAccessKeyId", true),
            (403, "SignatureDoesNotMatch", true),
            (400, "ExpiredToken", true),
            (400, "TokenRefreshRequired", true),
            (400, "InvalidToken", true),
            (403, "InvalidSecurity", true),
            (403, "RequestTimeTooSkewed", true),
            (403, "AccountProblem", true),
            (403, "AccessDenied", false),
            (403, "AllAccessDisabled", false),
            (400, "InvalidStorageClass", false),
            (400, "EntityTooSmall", false),
            (404, "NoSuchBucket", false),
            // The code counts only with a status that refuses.
            (500, "InvalidAccessKeyId", false),
        ] {
            assert_eq!(
                credentials_refused(status, &error(code)).is_some(),
                waits,
                "{status} {code}"
            );
        }
    }

    #[test]
    fn an_answer_without_a_code_is_not_taken_for_a_credential_problem() {
        assert_eq!(
            credentials_refused(403, b""),
            None,
            "a HEAD's 403 has no body"
        );
        assert_eq!(credentials_refused(403, b"<Error><Code>"), None);
        assert_eq!(credentials_refused(403, &[0xff, 0xfe]), None);
        assert_eq!(
            error_code(b"<Error><Code> SignatureDoesNotMatch </Code>"),
            Some("SignatureDoesNotMatch")
        );
    }
}
