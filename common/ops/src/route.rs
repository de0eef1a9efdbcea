//! Routing: which receiver gets a file, decided from its original name by the
//! first matching rule, and the URL it is sent to.
//!
//! Both the sender (to send) and the reporter (to break the backlog down by
//! receiver) route with this one implementation, so they always agree.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use regex::bytes::Regex;
use url::Url;

use crate::config::{ConfigError, Loaded, ReceiverConfig, RouteConfig, S3Config};
use crate::redact::{redact_template, redact_url};
use toml::Spanned;

/// Characters left as they are when a capture is put into a URL: the RFC 3986
/// unreserved set. Everything else is percent-encoded, so a capture can never
/// add a path segment or a query.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A receiver as routing knows it.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: String,
    pub config: ReceiverConfig,
    /// One per URL (`url`, or each of `urls`), in the configured order.
    endpoints: Vec<Endpoint>,
    labels: Vec<String>,
    /// Every endpoint's URL when none has a placeholder (the common case),
    /// made once and shared by every file's route instead of copied for
    /// each: two allocations per file fewer.
    fixed_urls: Option<Arc<[Url]>>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    template: Vec<Piece>,
    /// The URL, parsed once, when the template has no placeholders (the
    /// common case): a URL parse per request was a measurable share of
    /// the sender's CPU.
    fixed_url: Option<Url>,
    /// How many `/` the parsed URL's path has when every capture is a
    /// plain word. Fewer means a capture of `.` or `..` made a segment that
    /// URL parsing resolved away (percent-encoding does not stop that).
    path_slashes: usize,
}

/// One route checked against the receivers that could be made. `None`
/// when its receiver is in the file but was refused: that problem is
/// already reported, and "there is no [receivers.x]" would be wrong.
fn rule_of(
    loaded: &Loaded,
    spanned: &Spanned<RouteConfig>,
    receivers: &[Receiver],
) -> Result<Option<Rule>, ConfigError> {
    let rule = spanned.get_ref();
    let at = |m: String| loaded.error_at(spanned.span(), m);
    let wanted = rule.receiver.get_ref();
    let receiver = receivers.iter().position(|r| &r.name == wanted);
    if receiver.is_none() && !loaded.config.receivers.contains_key(wanted) {
        return Err(loaded.error_at(
            rule.receiver.span(),
            format!("route names receiver {wanted:?}, but there is no [receivers.{wanted}]"),
        ));
    }
    let (matcher, groups): (Matcher, Vec<String>) = match (&rule.glob, &rule.regex) {
        (Some(glob), None) => {
            let glob = GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| at(format!("bad glob: {e}")))?;
            (Matcher::Glob(glob.compile_matcher()), Vec::new())
        }
        (None, Some(re)) => {
            let re = Regex::new(re).map_err(|e| at(format!("bad regex: {e}")))?;
            let groups = re.capture_names().flatten().map(String::from).collect();
            (Matcher::Regex(re), groups)
        }
        _ => return Err(at("a route needs exactly one of glob or regex".into())),
    };
    let Some(receiver) = receiver else {
        return Ok(None);
    };
    for name in receivers[receiver].captures() {
        if name != "filename" && !groups.iter().any(|g| g == name) {
            return Err(at(format!(
                "receiver {wanted}'s url uses {{{name}}}, which this route's pattern does not capture (use a regex with (?<{name}>...))"
            )));
        }
    }
    Ok(Some(Rule { matcher, receiver }))
}

impl Endpoint {
    /// Checks the URL with every capture a plain word, and keeps what the
    /// check parsed.
    fn new(template: Vec<Piece>) -> Result<Endpoint, String> {
        let sample = check_url(&render(&template, |_| Some(b"x".as_slice()), b"x"))?;
        let path_slashes = slashes(sample.path());
        let fixed_url = captures_of(&template).next().is_none().then_some(sample);
        Ok(Endpoint {
            template,
            fixed_url,
            path_slashes,
        })
    }
}

impl Receiver {
    fn new(name: String, config: ReceiverConfig) -> Result<Receiver, String> {
        let endpoints: Vec<Endpoint> = match &config.s3 {
            Some(s3) => vec![Endpoint::new(s3_template(&config.url, &config.urls, s3)?)?],
            None => config
                .endpoints()
                .into_iter()
                .map(|url| parse_template(url).and_then(Endpoint::new))
                .collect::<Result<_, _>>()?,
        };
        let labels = config
            .endpoints()
            .into_iter()
            .map(redact_template)
            .collect();
        let fixed_urls = (endpoints.iter())
            .map(|e| e.fixed_url.clone())
            .collect::<Option<Arc<[Url]>>>();
        Ok(Receiver {
            name,
            config,
            endpoints,
            labels,
            fixed_urls,
        })
    }

    /// Its endpoints as logs, events, reason records, the circuit file and
    /// the reporter name them: each URL template without credentials or
    /// query, in the configured order.
    pub fn endpoint_labels(&self) -> &[String] {
        &self.labels
    }

    /// The placeholders any of its URLs uses.
    fn captures(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().flat_map(|e| captures_of(&e.template))
    }
}

/// Stands for `{key}` in an S3 receiver's routed URL, for the sender to
/// replace with the file's idempotency key: text that a capture (always
/// percent-encoded, `@` included) can never produce.
pub const S3_KEY_MARKER: &str = "@key@";

/// An S3 receiver's URL template: the endpoint, then the object key's
/// template, so that routing fills and checks its captures as it does a
/// URL's. The sender takes the key back out of the path and signs it.
fn s3_template(url: &str, urls: &[String], s3: &S3Config) -> Result<Vec<Piece>, String> {
    use crate::config::S3_KEY_PLACEHOLDER;
    if !urls.is_empty() || url.is_empty() {
        return Err("an s3 receiver takes its endpoint in url (not urls)".into());
    }
    if url.contains('{') {
        return Err(format!(
            "an s3 receiver's url {url:?} is its endpoint and takes no placeholders; put them in s3.key"
        ));
    }
    if !s3.key.contains(S3_KEY_PLACEHOLDER) {
        return Err(format!(
            "s3.key {:?} has no {S3_KEY_PLACEHOLDER}: without the file's idempotency key two files of one name would be one object, and the second would count as delivered",
            s3.key
        ));
    }
    if s3.key.starts_with('/') || s3.key.contains(S3_KEY_MARKER) {
        return Err(format!(
            "s3.key {:?} may not start with / or hold {S3_KEY_MARKER:?}",
            s3.key
        ));
    }
    let endpoint = check_url(url)?;
    if endpoint.query().is_some() {
        return Err(format!("an s3 receiver's url {url:?} may not have a query"));
    }
    let key = s3.key.replace(S3_KEY_PLACEHOLDER, S3_KEY_MARKER);
    let mut pieces = parse_template(&key)?;
    pieces.insert(0, Piece::Text(format!("{}/", url.trim_end_matches('/'))));
    Ok(pieces)
}

fn slashes(path: &str) -> usize {
    path.bytes().filter(|&b| b == b'/').count()
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Capture(String),
}

#[derive(Debug)]
enum Matcher {
    Glob(GlobMatcher),
    Regex(Regex),
}

#[derive(Debug)]
struct Rule {
    matcher: Matcher,
    receiver: usize,
}

/// The compiled routing rules.
#[derive(Debug)]
pub struct Router {
    rules: Vec<Rule>,
    receivers: Vec<Receiver>,
}

/// Where one file goes.
#[derive(Debug, PartialEq)]
pub struct Route {
    pub receiver: usize,
    /// The URL of each of the receiver's endpoints, in its configured
    /// order, or why one made from this file's name is not valid (a
    /// capture can make a bad host, for example).
    pub urls: Result<Arc<[Url]>, String>,
}

pub const SINGLE_RECEIVER: &str = "default";

impl Router {
    /// Every file to one receiver, as `sender --url` does.
    pub fn single(config: ReceiverConfig) -> Result<Router, String> {
        let receiver = Receiver::new(SINGLE_RECEIVER.into(), config)?;
        if let Some(name) = receiver.captures().find(|n| *n != "filename") {
            return Err(format!(
                "--url has a placeholder {{{name}}} that only a routing rule can fill"
            ));
        }
        Ok(Router {
            rules: vec![Rule {
                matcher: Matcher::Glob(GlobBuilder::new("*").build().unwrap().compile_matcher()),
                receiver: 0,
            }],
            receivers: vec![receiver],
        })
    }

    /// Compiles `[receivers]` and `[[routes]]`, checking that every rule
    /// names a receiver, every pattern compiles and every URL placeholder
    /// is filled by every rule that uses it.
    pub fn from_config(loaded: &Loaded) -> Result<Router, ConfigError> {
        Router::from_config_all(loaded).map_err(|mut all| all.swap_remove(0))
    }

    /// [`Router::from_config`] with every problem of the receivers and
    /// routes, in file order, not only the first: `--check` promises to
    /// list them all. Never an empty list.
    pub fn from_config_all(loaded: &Loaded) -> Result<Router, Vec<ConfigError>> {
        let config = &loaded.config;
        let mut problems = Vec::new();
        let mut receivers = Vec::new();
        for (name, spanned) in &config.receivers {
            let rc = spanned.get_ref();
            let at = |m: String| loaded.error_at(spanned.span(), format!("receiver {name}: {m}"));
            match Receiver::new(name.clone(), rc.clone()) {
                Err(e) => problems.push(at(e.to_string())),
                Ok(_) if rc.concurrency == 0 => {
                    problems.push(at("concurrency must be at least 1".into()))
                }
                Ok(_) if rc.gzip_level > 9 => problems.push(at("gzip_level must be 0 to 9".into())),
                Ok(receiver) => receivers.push(receiver),
            }
        }
        if config.routes.is_empty() {
            problems.push(loaded.error_at_key(
                &["routes"],
                "no [[routes]]: add at least one rule, e.g. glob = \"*\" with a receiver",
            ));
        }
        let mut rules = Vec::new();
        for spanned in &config.routes {
            match rule_of(loaded, spanned, &receivers) {
                Ok(Some(rule)) => rules.push(rule),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(Router { rules, receivers })
        } else {
            Err(problems)
        }
    }

    pub fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// The receiver a name routes to, without building its URL.
    pub fn receiver_of(&self, original: &OsStr) -> Option<usize> {
        self.rules
            .iter()
            .find(|r| r.matches(original))
            .map(|r| r.receiver)
    }

    /// The receiver and URL for a file, or `None` when no rule matches.
    pub fn route(&self, original: &OsStr) -> Option<Route> {
        let rule = self.rules.iter().find(|r| r.matches(original))?;
        let receiver = &self.receivers[rule.receiver];
        let urls = match &receiver.fixed_urls {
            Some(urls) => Ok(urls.clone()),
            None => receiver
                .endpoints
                .iter()
                .map(|endpoint| endpoint.url_for(&rule.matcher, original.as_bytes()))
                .collect(),
        };
        Some(Route {
            receiver: rule.receiver,
            urls,
        })
    }
}

impl Endpoint {
    /// This endpoint's URL for a file that `matcher` matched.
    fn url_for(&self, matcher: &Matcher, bytes: &[u8]) -> Result<Url, String> {
        if let Some(url) = &self.fixed_url {
            return Ok(url.clone());
        }
        let text = match matcher {
            Matcher::Glob(_) => render(&self.template, |_| None, bytes),
            Matcher::Regex(re) => {
                let caps = re.captures(bytes);
                render(
                    &self.template,
                    |name| caps.as_ref()?.name(name).map(|m| m.as_bytes()),
                    bytes,
                )
            }
        };
        match Url::parse(&text) {
            Ok(url) if slashes(url.path()) == self.path_slashes => Ok(url),
            Ok(_) => Err(
                "this file's name puts a path segment of \".\" or \"..\" in its receiver's URL, which URLs resolve away; rename the file or change the route".into(),
            ),
            Err(e) => Err(format!(
                "the URL made from this file's name, {:?}, is not valid: {e}",
                redact_url(&text)
            )),
        }
    }
}

impl Rule {
    fn matches(&self, original: &OsStr) -> bool {
        match &self.matcher {
            Matcher::Glob(g) => g.is_match(original),
            Matcher::Regex(re) => re.is_match(original.as_bytes()),
        }
    }
}

fn parse_template(url: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in url {url:?}"))?;
        let name = &rest[open + 1..open + close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad placeholder {{{name}}} in url {url:?}"));
        }
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].into()));
        }
        pieces.push(Piece::Capture(name.into()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.into()));
    }
    Ok(pieces)
}

fn captures_of(template: &[Piece]) -> impl Iterator<Item = &str> {
    template.iter().filter_map(|p| match p {
        Piece::Capture(name) => Some(name.as_str()),
        Piece::Text(_) => None,
    })
}

fn render<'a>(
    template: &[Piece],
    capture: impl Fn(&str) -> Option<&'a [u8]>,
    filename: &[u8],
) -> String {
    let mut url = String::new();
    for piece in template {
        match piece {
            Piece::Text(text) => url.push_str(text),
            Piece::Capture(name) => {
                let value =
                    capture(name).unwrap_or(if name == "filename" { filename } else { b"" });
                url.extend(percent_encode(value, SEGMENT));
            }
        }
    }
    url
}

fn check_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("bad url {url:?}: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(format!(
            "url {url:?} has scheme {other}; only http and https are supported"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_load::parse;
    use std::path::Path;

    fn router(text: &str) -> Result<Router, ConfigError> {
        Router::from_config(&parse(Path::new("t.toml"), text.to_string()).unwrap())
    }

    const CONFIG: &str = r#"
[receivers.orders]
url = "http://o.example/{tenant}/in"
[receivers.rest]
url = "https://r.example/files/{filename}"

[[routes]]
regex = '^(?<tenant>[^-]+)-orders'
receiver = "orders"
[[routes]]
glob = "*.json"
receiver = "rest"
"#;

    #[test]
    fn an_s3_receiver_routes_to_its_key_with_the_idempotency_key_marked() {
        let s3 = |key: &str, url: &str| {
            format!(
                "[receivers.lake]\nurl = {url:?}\n[receivers.lake.s3]\nbucket = \"b\"\nkey = {key:?}\n\
                 access_key_id = \"id\"\nsecret_access_key = \"s\"\n\
                 [[routes]]\nregex = '^(?<tenant>[^-]+)-'\nreceiver = \"lake\"\n"
            )
        };
        let r = router(&s3("{tenant}/{key}-{filename}", "http://s3.example:9000/")).unwrap();
        let route = r.route(OsStr::new("acme x-1.json")).unwrap();
        assert_eq!(
            route.urls.unwrap()[0].as_str(),
            "http://s3.example:9000/acme%20x/@key@-acme%20x-1.json"
        );
        let refused = |text: String| router(&text).unwrap_err().to_string();
        assert!(refused(s3("{filename}", "http://h/")).contains("has no {key}"));
        assert!(refused(s3("{key}", "http://h/{tenant}")).contains("takes no placeholders"));
        assert!(refused(s3("/{key}", "http://h/")).contains("may not start with /"));
    }

    #[test]
    fn every_problem_of_receivers_and_routes_is_listed_in_file_order() {
        let text = "[receivers.a]\nurl = \"http://h/\"\nconcurrency = 0\n\
                    [receivers.b]\nurl = \"http://h/\"\ngzip_level = 12\n\
                    [[routes]]\nglob = \"*.x\"\nreceiver = \"nosuch\"\n\
                    [[routes]]\nglob = \"[\"\nreceiver = \"a\"\n";
        // parse() would stop at the file's own first check: take the file
        // as parsed, to see the router's view of every receiver.
        let (loaded, _) =
            crate::config_load::parse_all(Path::new("t.toml"), text.to_string()).unwrap();
        let all: Vec<String> = Router::from_config_all(&loaded)
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(all.len(), 4, "{all:#?}");
        assert!(all[0].contains("receiver a: concurrency"), "{all:#?}");
        assert!(all[1].contains("receiver b: gzip_level"), "{all:#?}");
        assert!(all[2].contains("\"nosuch\""), "{all:#?}");
        assert!(all[3].contains("bad glob"), "{all:#?}");
        assert_eq!(
            Router::from_config(&loaded).err().unwrap().to_string(),
            all[0],
            "start-up refuses with the first"
        );
    }

    #[test]
    fn first_matching_rule_wins_and_captures_fill_the_url() {
        let r = router(CONFIG).unwrap();
        let route = r.route(OsStr::new("acme-orders-1.json")).unwrap();
        assert_eq!(r.receivers()[route.receiver].name, "orders");
        assert_eq!(route.urls.unwrap()[0].as_str(), "http://o.example/acme/in");
        let route = r.route(OsStr::new("x y.json")).unwrap();
        assert_eq!(
            route.urls.unwrap()[0].as_str(),
            "https://r.example/files/x%20y.json"
        );
        assert_eq!(r.route(OsStr::new("x.txt")), None);
    }

    #[test]
    fn captures_cannot_escape_their_segment() {
        let r = router(CONFIG).unwrap();
        let route = r.route(OsStr::new("a?b=1#/..-orders")).unwrap();
        assert_eq!(
            route.urls.unwrap()[0].as_str(),
            "http://o.example/a%3Fb%3D1%23%2F../in"
        );
        // A segment of "." or ".." cannot be sent as such, however it is
        // encoded: URL parsing resolves it away ("/../in" is "/in").
        for dots in ["..-orders", ".-orders"] {
            let why = r.route(OsStr::new(dots)).unwrap().urls.unwrap_err();
            assert!(why.contains("resolve away"), "{why}");
        }
        let route = r.route(OsStr::new("...-orders")).unwrap();
        assert_eq!(route.urls.unwrap()[0].as_str(), "http://o.example/.../in");
    }

    #[test]
    fn a_capture_that_makes_a_bad_host_is_an_error_for_that_file() {
        let r = router(
            r#"
[receivers.tenant]
url = "http://{tenant}.example/in"
[[routes]]
regex = '^(?<tenant>[^-]+)-orders'
receiver = "tenant"
"#,
        )
        .unwrap();
        let good = r.route(OsStr::new("acme-orders")).unwrap();
        assert_eq!(good.urls.unwrap()[0].as_str(), "http://acme.example/in");
        let bad = r.route(OsStr::new("a%00b-orders")).unwrap();
        assert_eq!(bad.receiver, 0);
        let why = bad.urls.unwrap_err();
        assert!(why.contains("not valid"), "{why}");
    }

    #[test]
    fn non_utf8_names_route() {
        let r = router(CONFIG).unwrap();
        let name = OsStr::from_bytes(b"caf\xe9.json");
        assert_eq!(
            r.route(name).unwrap().urls.unwrap()[0].as_str(),
            "https://r.example/files/caf%E9.json"
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        let err = router(
            "[receivers.a]\nurl = \"http://x\"\n[[routes]]\nglob = \"*\"\nreceiver = \"b\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("no [receivers.b]"), "{err}");

        let err = router(
            "[receivers.a]\nurl = \"http://x/{t}\"\n[[routes]]\nglob = \"*\"\nreceiver = \"a\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("does not capture"), "{err}");

        let err = router(
            "[receivers.a]\nurl = \"ftp://x\"\n[[routes]]\nglob = \"*\"\nreceiver = \"a\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("only http and https"), "{err}");

        let err = router("[receivers.a]\nurl = \"http://x\"\n").unwrap_err();
        assert!(err.message.contains("no [[routes]]"), "{err}");

        let err = router("[receivers.a]\nurl = \"http://x\"\n[[routes]]\nreceiver = \"a\"\n")
            .unwrap_err();
        assert!(
            err.message.contains("exactly one of glob or regex"),
            "{err}"
        );
    }

    #[test]
    fn single_receiver_takes_everything() {
        let r = Router::single(ReceiverConfig::for_url("http://127.0.0.1:1/in")).unwrap();
        assert_eq!(r.route(OsStr::new(".odd\nname")).unwrap().receiver, 0);
        assert!(Router::single(ReceiverConfig::for_url("http://x/{t}")).is_err());
    }

    #[test]
    fn every_endpoint_gets_its_url_and_the_captures_of_all_are_checked() {
        let r = router(
            r#"
[receivers.a]
urls = ["http://one.example/{t}", "http://two.example/{t}"]
[[routes]]
regex = '^(?<t>[a-z]+)-'
receiver = "a"
"#,
        )
        .unwrap();
        let urls = r.route(OsStr::new("acme-1")).unwrap().urls.unwrap();
        let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://one.example/acme", "http://two.example/acme"]);
        let err = router(
            "[receivers.a]\nurls = [\"http://x/\", \"http://y/{t}\"]\n[[routes]]\nglob = \"*\"\nreceiver = \"a\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("does not capture"), "{err}");
    }
}
