//! Secrets in URLs never leave the process: a receiver's URL may carry a
//! password (user info) or a token (query string), and error texts from the
//! HTTP stack quote URLs. Every error text bound for an event line, a log or
//! a reason record goes through [`text`]; a URL on its own through
//! [`redact_url`], which [`text`] applies to each URL it finds;
//! a value that is meant to be one URL and may be malformed (a proxy
//! setting) through [`url_value`].
//!
//! The user info of a malformed URL may hold any character: a quote, a
//! bracket, `>`, white space, `/`, another `://` or `@`. No rule that ends
//! a URL at such a character can tell where its user info ends, and one
//! such rule printed a password from its first `"`, `'`, `>`, `)` or `]` on. So
//! whatever follows a `://` up to the last `@` of the text is taken as user
//! info, and never shown: where that span is not plain user info, the URL
//! is shown as `<unparsable url>`. Too much is hidden at times (a later
//! `@` in the same text hides the text between); never too little.

use url::Url;

/// What stands in for a URL that cannot be shown in part.
const UNPARSABLE: &str = "<unparsable url>";

/// `text` with every URL in it stripped of user info and query string.
/// A URL runs from its scheme to the last `@` of the text, if any, then to
/// the next space, quote, bracket or `>`.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let scheme_start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = sep + 3;
        // Everything from here to the last '@' may be user info.
        let (user_info, host_start) = match rest[after..].rfind('@') {
            Some(at) => (Some(&rest[after..after + at]), after + at + 1),
            None => (None, after),
        };
        let end = rest[host_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
            .map_or(rest.len(), |i| host_start + i);
        out.push_str(&rest[..scheme_start]);
        let plain = user_info.is_none_or(is_plain_user_info);
        if scheme_start == sep || !plain {
            // "://" with no scheme before it, or user info no URL can have:
            // not a URL, but it may still hold "user:password@".
            out.push_str(UNPARSABLE);
        } else {
            // Rebuilt without the user info, so the parser never sees it
            // and nothing of it can come back in its answer.
            let scheme = &rest[scheme_start..sep];
            out.push_str(&redact_url(&format!(
                "{scheme}://{}",
                &rest[host_start..end]
            )));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A value meant as one URL (a proxy setting, from a file, the environment
/// or the configuration), as it may be shown: [`text`] of it when it
/// starts with a scheme and `://`, else `value`, since without a scheme
/// nothing says where its user info starts.
pub fn url_value(value: &str) -> String {
    let value = value.trim();
    let scheme_end = value
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(value.len());
    let starts_as_url = scheme_end > 0
        && value.as_bytes()[0].is_ascii_alphabetic()
        && value[scheme_end..].starts_with("://");
    if starts_as_url {
        text(value)
    } else {
        "value".into()
    }
}

/// Whether `s` can be the user info of a well-formed URL (RFC 3986:
/// unreserved, percent-encoded, sub-delims and `:`; non-ASCII as parsers
/// take it), so the URL after it is a URL of its own.
fn is_plain_user_info(s: &str) -> bool {
    s.chars().all(|c| {
        !c.is_ascii()
            || c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '_'
                    | '~'
                    | '%'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | ':'
            )
    }) && !s.chars().any(char::is_whitespace)
}

/// A URL as it may appear in logs and reason records: no user info and no
/// query string, either of which may carry credentials.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<unparsable url>".into(),
    }
}

/// A URL template as it may be shown: [`redact_url`] where it parses, and
/// where placeholders keep it from parsing, the same by hand (user info
/// and query cut out).
pub fn redact_template(template: &str) -> String {
    if !template.contains('{')
        && let Ok(url) = Url::parse(template)
        && url.host_str().is_some()
    {
        return redact_url(template);
    }
    let template = template.split(['?', '#']).next().unwrap_or_default();
    match template.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let host = match rest[..authority_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{scheme}://{host}")
        }
        None => "<unparsable url>".into(),
    }
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
                "see https://h/p?a=SECRET and ftp://h/",
                "see https://h/p and ftp://h/",
            ),
            // A later '@' might end the first URL's user info: both hidden.
            (
                "see https://h/p?a=SECRET and ftp://u:PW@h/",
                "see <unparsable url>",
            ),
            ("no url here", "no url here"),
            ("odd ://u:PW@h?SECRET tail", "odd <unparsable url> tail"),
            ("bad http://[::1?SECRET", "bad <unparsable url>"),
            ("", ""),
            // Characters that end a URL in text, inside a
            // password.
            (
                "proxy http://u:pa\"SECRET@h:1: bad",
                "proxy <unparsable url> bad",
            ),
            ("proxy http://u:pa'SECRET@h:1 x", "proxy http://h:1/ x"),
            ("proxy http://u:pa)SECRET@h:1 x", "proxy http://h:1/ x"),
            ("proxy http://u:pa>SECRET@h:1 x", "proxy <unparsable url> x"),
            ("proxy http://u:pa]SECRET@h:1 x", "proxy <unparsable url> x"),
            (
                "proxy (http://u:pa SECRET@h:1) x",
                "proxy (<unparsable url>) x",
            ),
            (
                "proxy http://u:pa://SECRET@h:1 x",
                "proxy <unparsable url> x",
            ),
            ("proxy http://u:pa@SECRET@h:1 x", "proxy <unparsable url> x"),
        ];
        for (input, want) in table {
            assert_eq!(text(input), want, "{input}");
        }
    }

    #[test]
    fn a_url_value_without_a_scheme_is_not_shown() {
        assert_eq!(url_value("u:a://SECRET@h:1"), "value");
        assert_eq!(url_value("://SECRET@h:1"), "value");
        assert_eq!(url_value("SECRET"), "value");
        assert_eq!(url_value(" http://u:SECRET@h:1 "), "http://h:1/");
        assert_eq!(url_value("1http://SECRET@h"), "value");
    }

    /// Marker letters: every password and user name below is built so
    /// that any two characters of it in a row include one, and nothing
    /// else in the texts checked has them. An output without any of them
    /// shows no part of the user info longer than one character.
    const MARKERS: &[char] = &['Q', 'Z', 'J', 'W', 'K'];
    /// What a malformed password may hold: every ASCII punctuation mark,
    /// white space, and a non-ASCII letter.
    const ODD: &str = " \t\"'<>()[]{}/\\?#@:;,=&%+!*$~^`|-._é";

    fn random_secret(rng: &mut fastrand::Rng) -> String {
        let odd: Vec<char> = ODD.chars().collect();
        let mut s = String::new();
        s.push(MARKERS[rng.usize(..MARKERS.len())]);
        for _ in 0..rng.usize(0..8) {
            match rng.u8(..4) {
                0 => s.push_str("://"),
                1 => s.push_str(&format!("%{:02X}", rng.u8(..))),
                _ => s.push(odd[rng.usize(..odd.len())]),
            }
            s.push(MARKERS[rng.usize(..MARKERS.len())]);
        }
        s
    }

    pub(crate) fn assert_hidden(shown: &str, what: &str) {
        assert!(
            !shown.contains(MARKERS),
            "part of the user info is shown: {shown:?} (from {what:?})"
        );
    }

    /// The same as a property: random passwords and user names in many
    /// URL shapes, alone and quoted in text, never show.
    #[test]
    fn no_part_of_random_user_info_is_ever_shown() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let shapes = [
            "http://{u}:{p}@proxy.corp:3128",
            "http://{u}:{p}@proxy.corp:3128/",
            "http://{u}:{p}@proxy.corp",
            "http://{u}:{p}@proxy.corp:3128/path?q=1#f",
            "https://{u}:{p}@[::1]:3128",
            "socks5://{u}:{p}@10.0.0.1:1080",
            "http://{p}@proxy.corp:3128",
            "http://{u}:{p}@",
            "http://{u}:{p}@@proxy.corp:1",
            "HTTP://{u}:{p}@proxy.corp:3128",
        ];
        let wrappers = [
            "{url}",
            "error for url ({url}): refused",
            "\"{url}\"",
            "'{url}'",
            "<{url}>",
            "[{url}]",
            "proxy {url}: not a URL",
            "a {url} b https://h/x c",
        ];
        for round in 0..3000 {
            let (u, p) = (random_secret(&mut rng), random_secret(&mut rng));
            let shape = shapes[round % shapes.len()];
            let url = shape.replace("{u}", &u).replace("{p}", &p);
            for wrapper in wrappers {
                let input = wrapper.replace("{url}", &url);
                let what = format!("{input} (seed {seed})");
                assert_hidden(&text(&input), &what);
            }
            assert_hidden(&url_value(&url), &url);
        }
    }

    #[test]
    fn templates_are_redacted_even_where_they_do_not_parse() {
        assert_eq!(
            redact_template("https://u:p@{tenant}.example/in/{x}?t=1"),
            "https://{tenant}.example/in/{x}"
        );
        assert_eq!(
            redact_template("http://u:p@h.example:8080/in?t=1"),
            "http://h.example:8080/in"
        );
    }

    #[test]
    fn redaction_drops_credentials() {
        assert_eq!(
            redact_url("https://user:pw@h.example/p?token=abc"),
            "https://h.example/p"
        );
    }
}
