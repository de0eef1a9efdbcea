//! Secrets in URLs never leave the process: a receiver's URL may carry a
//! password (user info) or a token (query string), and error texts from the
//! HTTP stack quote URLs. Every error text bound for an event line, a log or
//! a reason record goes through [`text`]; a URL on its own through
//! [`crate::route::redact_url`], which [`text`] applies to each URL it finds.

use crate::route::redact_url;

/// `text` with every URL in it stripped of user info and query string.
/// A URL runs from its scheme to the next space, quote, bracket or `>`.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let scheme_start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[sep..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
            .map_or(rest.len(), |i| sep + i);
        out.push_str(&rest[..scheme_start]);
        if scheme_start == sep {
            // "://" with no scheme before it: not a URL, but it may still
            // hold "user:password@": drop everything up to the end.
            out.push_str("<unparsable url>");
        } else {
            out.push_str(&redact_url(&rest[scheme_start..end]));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_and_query_wherever_they_are() {
        let table = [
            (
                "error sending request for url (http://u:PW@127.0.0.1:9/x?token=SECRET): refused",
                "error sending request for url (http://127.0.0.1:9/x): refused",
            ),
            (
                "see https://h/p?a=SECRET and ftp://u:PW@h/",
                "see https://h/p and ftp://h/",
            ),
            ("no url here", "no url here"),
            ("odd ://u:PW@h?SECRET tail", "odd <unparsable url> tail"),
            ("bad http://[::1?SECRET", "bad <unparsable url>"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(text(input), want, "{input}");
        }
    }
}
