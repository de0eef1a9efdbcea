//! The metrics endpoint's rules, apart from any socket: which addresses it
//! may listen on and what it answers to a request. [`crate::endpoint`]
//! does the I/O.
//!
//! The endpoint has no authentication and no TLS, and what it shows (the
//! receivers' names, the backlog, the errors) is the operator's business:
//! so it listens on a loopback address unless the operator says, with
//! `--metrics-allow-remote`, that a network address is meant (a firewall or
//! a proxy in front is then theirs to provide), as node_exporter's users
//! would put one. A literal IP address is asked for, not a host name, so
//! what is checked is what is bound.

use std::net::SocketAddr;

/// The media type Prometheus scrapes: its text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The one path served.
pub const PATH: &str = "/metrics";

/// `--metrics-listen`'s value: `IP:PORT`, e.g. `127.0.0.1:9464` or `[::1]:9464`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{text:?} is not IP:PORT; give an address and a port, e.g. 127.0.0.1:9464 or [::1]:9464 \
             (a host name is not taken: the address bound must be the one checked)"
        )
    })
}

/// Loopback only, unless `allow_remote`.
pub fn check_scope(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if allow_remote || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--metrics-listen {addr} is not a loopback address: the endpoint has no authentication \
         or TLS, so it serves 127.0.0.1 or ::1 only; give --metrics-allow-remote to serve the \
         network (behind a firewall or a proxy of yours)"
    ))
}

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the latest report (no body for HEAD).
    Metrics,
    /// 404: only [`PATH`] is served.
    NotFound,
    /// 405 with `Allow: GET, HEAD`: the endpoint changes nothing.
    MethodNotAllowed,
}

/// The answer to `method` on `path` (the query string is ignored, as
/// Prometheus may add parameters).
pub fn answer(method: &str, path: &str) -> Answer {
    if path != PATH {
        Answer::NotFound
    } else if method == "GET" || method == "HEAD" {
        Answer::Metrics
    } else {
        Answer::MethodNotAllowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_ip_and_port() {
        assert_eq!(
            parse_listen("127.0.0.1:9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert!(parse_listen("[::1]:9464").is_ok());
        for bad in ["localhost:9464", "127.0.0.1", ":9464", "9464", "", "[::1]"] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("IP:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_loopback_unless_allowed() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_scope(at("127.0.0.1:1"), false).is_ok());
        assert!(check_scope(at("127.8.9.10:1"), false).is_ok());
        assert!(check_scope(at("[::1]:1"), false).is_ok());
        for remote in ["0.0.0.0:1", "[::]:1", "192.168.1.2:1", "[fe80::1]:1"] {
            let e = check_scope(at(remote), false).unwrap_err();
            assert!(e.contains("--metrics-allow-remote"), "{e}");
            assert!(check_scope(at(remote), true).is_ok());
        }
    }

    #[test]
    fn get_or_head_on_metrics_only() {
        assert_eq!(answer("GET", "/metrics"), Answer::Metrics);
        assert_eq!(answer("HEAD", "/metrics"), Answer::Metrics);
        assert_eq!(answer("POST", "/metrics"), Answer::MethodNotAllowed);
        assert_eq!(answer("DELETE", "/metrics"), Answer::MethodNotAllowed);
        assert_eq!(answer("GET", "/"), Answer::NotFound);
        assert_eq!(answer("GET", "/metrics/"), Answer::NotFound);
        assert_eq!(answer("GET", "/metricsx"), Answer::NotFound);
        assert_eq!(answer("POST", "/other"), Answer::NotFound);
    }
}
