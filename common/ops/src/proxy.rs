//! Which proxy a request goes through: a receiver's `proxy` setting, or,
//! without one, the proxy environment variables read the way curl reads
//! them. Pure rules (the environment comes in as a lookup function), so
//! every case is a row in a unit table; the sender turns the answer into
//! its HTTP client's proxy.
//!
//! The rules, as docs/configuration.md's "Proxies" section states them:
//! - `proxy = "none"`: never a proxy. `proxy = URL`: always that proxy,
//!   whatever the environment says (NO_PROXY included): it is set per
//!   receiver, so setting it is the decision.
//! - Otherwise an `https://` receiver uses `https_proxy`, else
//!   `HTTPS_PROXY`, else `all_proxy`, else `ALL_PROXY`; an `http://` one
//!   `http_proxy`, else `HTTP_PROXY`, else the `ALL_PROXY` pair. The
//!   lower-case name wins, as in curl. Unlike curl (which ignores an upper
//!   case `HTTP_PROXY` because a CGI script's environment can set it from a
//!   request header), `HTTP_PROXY` is honoured: a sender is no CGI script.
//!   An empty variable counts as unset.
//! - `no_proxy`, else `NO_PROXY`, exempts hosts: entries are separated by
//!   commas and/or white space; the whole value `*` exempts every host; a
//!   name entry (one leading and one trailing dot ignored, case ignored)
//!   matches that name and every name under it (`example.com` and
//!   `.example.com` both match `example.com` and `a.example.com`, never
//!   `notexample.com`); an address entry (`10.1.2.3`, `::1`, `[::1]`) or a
//!   CIDR block (`10.0.0.0/8`, `fd00::/8`) matches a URL whose host is
//!   such an address. Names are never resolved: `localhost` does not
//!   exempt `127.0.0.1`, nor `127.0.0.1` `localhost`.
//!
//! reqwest's own environment handling differs from curl's in ways that
//! change where requests go (the upper-case name wins, `*` anywhere in a
//! list exempts everything, entries are split on commas only, trailing
//! dots are not ignored, and nothing is proxied when `REQUEST_METHOD` is
//! set), so the sender switches it off and uses these rules.

use std::net::IpAddr;

/// A proxy to send through: `http://host:port/`, credentials apart.
/// Its `Debug` shows no password, so no log line can carry one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    /// `http://host:port` without user info.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ProxyUrl {
    /// The URL with its credentials, as the HTTP client takes it.
    pub fn with_credentials(&self) -> String {
        match &self.user {
            None => self.url.clone(),
            Some(user) => {
                let rest = self.url.strip_prefix("http://").unwrap_or(&self.url);
                let enc = |s: &str| {
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                };
                match &self.password {
                    Some(p) => format!("http://{}:{}@{rest}", enc(user), enc(p)),
                    None => format!("http://{}@{rest}", enc(user)),
                }
            }
        }
    }
}

/// A receiver's `proxy` value: `"none"` (`Ok(None)`) or
/// `http://[user:pass@]host:port`. Error texts never quote credentials.
pub fn parse_setting(text: &str) -> Result<Option<ProxyUrl>, String> {
    let text = text.trim();
    if text == "none" {
        return Ok(None);
    }
    parse(text, false).map(Some)
}

/// A proxy URL; `bare_ok` takes `host:port` as `http://host:port`, as curl
/// does for the environment variables.
fn parse(text: &str, bare_ok: bool) -> Result<ProxyUrl, String> {
    let with_scheme;
    let text = if bare_ok && !text.contains("://") {
        with_scheme = format!("http://{text}");
        &with_scheme
    } else {
        text
    };
    // Only a URL can be shown without its credentials, and a malformed
    // one only as far as nothing of its user info comes with it.
    let shown = crate::redact::url_value(text);
    let url = url::Url::parse(text).map_err(|e| {
        format!("proxy {shown}: not a URL ({e}); expected http://[user:pass@]host:port or \"none\"")
    })?;
    if url.scheme() != "http" {
        return Err(format!(
            "proxy {shown}: scheme {}: is not supported; expected http://[user:pass@]host:port or \"none\"",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("proxy {shown}: no host"))?;
    let port = url
        .port()
        .ok_or_else(|| format!("proxy {shown}: give the port (http://host:port)"))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("proxy {shown}: a proxy URL has no path or query"));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok(ProxyUrl {
        url: format!("http://{host}:{port}"),
        user: (!url.username().is_empty()).then(|| decode(url.username())),
        password: url.password().map(decode),
    })
}

/// The proxy environment, read once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EnvProxies {
    http: Option<ProxyUrl>,
    https: Option<ProxyUrl>,
    no: NoProxy,
}

impl EnvProxies {
    /// Reads the variables through `get` (`std::env::var(..).ok()` in the
    /// sender). A variable whose value is not a usable proxy is an error
    /// naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<EnvProxies, String> {
        let first = |names: &[&'static str]| {
            names
                .iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        let proxy = |names: &[&'static str]| -> Result<Option<ProxyUrl>, String> {
            match first(names) {
                None => Ok(None),
                Some((name, value)) => parse(value.trim(), true)
                    .map(Some)
                    .map_err(|e| format!("environment variable {name}: {e}")),
            }
        };
        let all = proxy(&["all_proxy", "ALL_PROXY"])?;
        Ok(EnvProxies {
            http: proxy(&["http_proxy", "HTTP_PROXY"])?.or_else(|| all.clone()),
            https: proxy(&["https_proxy", "HTTPS_PROXY"])?.or(all),
            no: NoProxy::parse(&first(&["no_proxy", "NO_PROXY"]).map_or(String::new(), |v| v.1)),
        })
    }

    /// The proxy for a request to `scheme://host`, if any.
    pub fn for_target(&self, scheme: &str, host: &str) -> Option<&ProxyUrl> {
        let proxy = match scheme {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        (!self.no.exempts(host)).then_some(proxy)
    }

    /// Whether any variable names a proxy.
    pub fn any(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }
}

/// `NO_PROXY`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoProxy {
    all: bool,
    names: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    pub fn parse(value: &str) -> NoProxy {
        let mut no = NoProxy {
            all: value.trim() == "*",
            ..NoProxy::default()
        };
        for entry in value.split(|c: char| c == ',' || c.is_whitespace()) {
            if entry.is_empty() {
                continue;
            }
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, b.parse::<u8>().ok()),
                None => (entry, None),
            };
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                no.nets.push((ip, bits.unwrap_or(max).min(max)));
                continue;
            }
            let name = entry.strip_suffix('.').unwrap_or(entry);
            let name = name.strip_prefix('.').unwrap_or(name);
            if !name.is_empty() {
                no.names.push(name.to_ascii_lowercase());
            }
        }
        no
    }

    /// Whether a URL host (a name, an IPv4 address or a bracketed IPv6
    /// address) goes without a proxy.
    pub fn exempts(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits));
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        self.names.iter().any(|name| {
            host == *name
                || (host.len() > name.len()
                    && host.ends_with(name.as_str())
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.')
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_as_curl_does() {
        // (NO_PROXY, host, exempt)
        let table = [
            ("example.com", "example.com", true),
            ("example.com", "a.b.example.com", true),
            ("example.com", "EXAMPLE.com", true),
            ("example.com", "notexample.com", false),
            ("example.com", "example.com.evil", false),
            (".example.com", "example.com", true),
            (".example.com", "www.example.com", true),
            ("example.com.", "www.example.com", true),
            ("example.com", "www.example.com.", true),
            ("a.com b.com", "b.com", true),
            ("a.com, ,b.com", "b.com", true),
            ("*", "anything.at.all", true),
            ("*", "10.0.0.1", true),
            (" * ", "x", true),
            // A `*` in a list is a name that matches nothing (curl).
            ("a.com,*", "b.com", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.0/24", "192.168.1.77", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("::1", "[::1]", true),
            ("[::1]", "[::1]", true),
            ("fd00::/8", "[fd12::1]", true),
            ("fd00::/8", "[fe80::1]", false),
            ("10.0.0.0/8", "[::1]", false),
            // Names are never resolved.
            ("localhost", "127.0.0.1", false),
            ("127.0.0.1", "localhost", false),
            ("", "example.com", false),
        ];
        for (value, host, exempt) in table {
            assert_eq!(
                NoProxy::parse(value).exempts(host),
                exempt,
                "NO_PROXY={value:?} host {host}"
            );
        }
    }

    fn env(vars: &[(&str, &str)]) -> Result<EnvProxies, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvProxies::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn chosen(e: &EnvProxies, scheme: &str, host: &str) -> Option<String> {
        e.for_target(scheme, host).map(|p| p.url.clone())
    }

    #[test]
    fn environment_variables_choose_as_curl_does() {
        let e = env(&[
            ("HTTPS_PROXY", "http://up:1"),
            ("https_proxy", "http://low:2"),
        ])
        .unwrap();
        assert_eq!(chosen(&e, "https", "h").as_deref(), Some("http://low:2"));
        assert_eq!(chosen(&e, "http", "h"), None);
        let e = env(&[("HTTP_PROXY", "up:3"), ("ALL_PROXY", "http://all:4")]).unwrap();
        assert_eq!(chosen(&e, "http", "h").as_deref(), Some("http://up:3"));
        assert_eq!(chosen(&e, "https", "h").as_deref(), Some("http://all:4"));
        let e = env(&[("https_proxy", ""), ("all_proxy", "http://all:4")]).unwrap();
        assert_eq!(chosen(&e, "https", "h").as_deref(), Some("http://all:4"));
        let e = env(&[
            ("all_proxy", "http://all:4"),
            ("NO_PROXY", "example.com"),
            ("no_proxy", "other.org"),
        ])
        .unwrap();
        assert_eq!(chosen(&e, "https", "other.org"), None);
        assert!(chosen(&e, "https", "example.com").is_some());
        assert!(!env(&[]).unwrap().any());
        let err = env(&[("HTTPS_PROXY", "socks5://u:SECRET@h:1")]).unwrap_err();
        assert!(
            err.contains("HTTPS_PROXY") && err.contains("socks5"),
            "{err}"
        );
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn proxy_settings_parse_and_never_show_credentials() {
        assert_eq!(parse_setting("none").unwrap(), None);
        let p = parse_setting("http://us%40er:p%3Ass@proxy.corp:3128")
            .unwrap()
            .unwrap();
        assert_eq!(p.url, "http://proxy.corp:3128");
        assert_eq!(p.user.as_deref(), Some("us@er"));
        assert_eq!(p.password.as_deref(), Some("p:ss"));
        assert!(!format!("{p:?}").contains("p:ss"), "{p:?}");
        assert_eq!(
            p.with_credentials(),
            "http://us%40er:p%3Ass@proxy.corp:3128"
        );
        for bad in [
            "proxy.corp:3128",
            "https://u:SECRET@proxy.corp:3128",
            "socks5://proxy.corp:1080",
            "http://u:SECRET@proxy.corp",
            "http://u:SECRET@proxy.corp:3128/path",
            "",
            "u:SECRET@proxy.corp:3128",
        ] {
            let err = parse_setting(bad).unwrap_err();
            assert!(!err.contains("SECRET"), "{bad}: {err}");
        }
    }

    /// A regression: a malformed proxy URL from a setting or the environment
    /// printed its password from the first `"`, `'`, `>`, `)` or `]` on.
    /// Literal cases first, then random passwords in many shapes.
    #[test]
    fn no_error_shows_any_part_of_a_proxy_password() {
        let mut cases: Vec<String> = ['"', '\'', '>', ')', ']', ' ', '/', '?', '#', '@', '<']
            .iter()
            .flat_map(|c| {
                [
                    format!("http://user:pa{c}SECRET@proxy.corp:3128"),
                    format!("http://user:pa{c}SECRET@proxy.corp"),
                    format!("socks5://user:pa{c}SECRET@proxy.corp:1080"),
                    format!("user:pa{c}SECRET@proxy.corp:3128"),
                    format!("http://user:pa{c}SECRET@proxy.corp:3128/x"),
                ]
            })
            .collect();
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let odd: Vec<char> = " \t\"'<>()[]{}/\\?#@:;,=&%+!*$~^`|é".chars().collect();
        for i in 0..2000 {
            let mut password = String::from("SECRET");
            for _ in 0..rng.usize(1..6) {
                password.push(odd[rng.usize(..odd.len())]);
                password.push_str("SECRET");
            }
            let host = ["proxy.corp:3128", "proxy.corp", "[::1]:8080", "h:1/p?q"][i % 4];
            let scheme = ["http://", "https://", "socks5://", ""][(i / 4) % 4];
            cases.push(format!("{scheme}user:{password}@{host}"));
        }
        for value in &cases {
            let mut errors = Vec::new();
            errors.extend(parse_setting(value).err());
            for name in ["https_proxy", "HTTP_PROXY", "all_proxy"] {
                errors.extend(env(&[(name, value)]).err());
            }
            for err in errors {
                // "SECRET" is every other piece of the password: any two
                // characters of it in a row hold part of one.
                assert!(
                    !["SE", "EC", "CR", "RE", "ET"]
                        .iter()
                        .any(|p| err.contains(p)),
                    "{value:?} (seed {seed}): {err}"
                );
            }
        }
    }
}
