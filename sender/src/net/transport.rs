//! What a failed request's error was: classified into a
//! [`Transport`] failure for the rules, and turned into a text for events,
//! logs and reason records. Error texts leave the sender only through
//! [`error_text`], which takes the URL out of reqwest's errors and redacts
//! any other.

use std::io;

use crate::rules::outcome::Transport;

pub fn classify_error(e: &reqwest::Error) -> Transport {
    if e.is_timeout() {
        return Transport::Timeout;
    }
    let chain = || causes(e);
    // A TLS error anywhere in the chain is the cause, even under a hyper
    // error that says the connection ended: a receiver that refuses our
    // certificate sends its alert and closes, and which of the two the
    // client notices first is a race.
    if chain().any(|err| err.is::<rustls::Error>()) {
        return Transport::Tls;
    }
    for err in chain() {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return Transport::Reset;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => return Transport::Reset,
                io::ErrorKind::TimedOut => return Transport::Timeout,
                _ => {}
            }
        }
    }
    if e.is_connect() {
        Transport::Connect
    } else {
        Transport::Other
    }
}

/// `e` and every error under it.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| next_cause(*err))
}

/// The next error in a chain. `io::Error::source()` skips the error it
/// wraps (TLS errors arrive wrapped that way, sometimes twice), so an
/// `io::Error` is looked into rather than past.
fn next_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
        Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
        None => err.source(),
    }
}

/// The text of a request's error for events, logs and reason records: its
/// whole chain, without the URL reqwest puts in its own text, and with any
/// URL a cause quotes redacted (user info and query may hold secrets).
pub fn error_text(e: reqwest::Error) -> String {
    spoolpost_ops::redact::text(&error_chain(&e.without_url()))
}

/// Whether a tunnel failed on the proxy's 407. hyper-util's tunnel error
/// type is not public, so its text is what tells.
pub fn proxy_refused_credentials(e: &reqwest::Error) -> bool {
    e.is_connect() && error_chain(e).contains("proxy authorization required")
}

/// An error and its causes on one line, as reqwest's Display shows only the
/// outermost ("error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = next_cause(e);
    while let Some(err) = cause {
        let more = err.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = next_cause(err);
    }
    text
}
