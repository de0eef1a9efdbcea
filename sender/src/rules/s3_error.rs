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

#[cfg(test)]
mod tests {
    use super::*;

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
