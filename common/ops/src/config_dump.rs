//! `--print-config`: the configuration in effect as TOML, every setting
//! with its default filled in, as `postconf` and `vector config` show it.
//!
//! The text reads back as the same settings (a dump of a dump is the
//! dump), except where a secret was redacted: a literal value of a header
//! that carries credentials, and the user info and query string of a URL
//! (the same rule as the logs, [`crate::redact`]). Secrets given as
//! `{ env = ... }` or `{ file = ... }` are shown as written: the name of a
//! variable or a file is not the secret. A comment at the top names every
//! value redacted, so nobody mistakes the dump for a working copy of them.

use std::io::{self, Write};

use crate::config::{Config, HeaderValue};
use crate::exit::Failure;
use crate::redact;

/// What stands in for a header's secret value.
pub const REDACTED: &str = "<redacted>";

/// Header names whose literal value is a credential, by the words they
/// hold (`Authorization`, `X-Api-Key`, `Cookie`, `X-Auth-Token`, ...).
const SECRET_HEADER_WORDS: [&str; 7] = [
    "auth", "token", "key", "secret", "password", "cookie", "session",
];

/// `config` as TOML for `program`'s `--print-config`, secrets redacted.
pub fn dump(program: &str, config: &Config) -> Result<String, String> {
    let mut shown = Config {
        spool: config.spool.clone(),
        create_spool: config.create_spool,
        sender: config.sender.clone(),
        receivers: config.receivers.clone(),
        routes: config.routes.clone(),
        collector: config.collector.clone(),
        reporter: config.reporter.clone(),
    };
    let redacted = redact_secrets(&mut shown);
    let cannot = |e: &dyn std::fmt::Display| format!("cannot write the configuration as TOML: {e}");
    let mut table = toml::Table::try_from(&shown).map_err(|e| cannot(&e))?;
    leave_out_the_other_forms(&mut table);
    let body = toml::to_string_pretty(&table).map_err(|e| cannot(&e))?;
    let mut text =
        format!("# The configuration in effect for {program}: every setting, defaults included.\n");
    if !redacted.is_empty() {
        text.push_str("# Redacted (not the real values): ");
        text.push_str(&redacted.join(", "));
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&body);
    Ok(text)
}

/// A receiver takes `url` or `urls`, and `compression` or the older
/// `gzip`/`gzip_level`, never both (`config_check`): the form not in use
/// is left out, so the dump reads back.
fn leave_out_the_other_forms(table: &mut toml::Table) {
    let Some(toml::Value::Table(receivers)) = table.get_mut("receivers") else {
        return;
    };
    for (_, receiver) in receivers.iter_mut() {
        let Some(receiver) = receiver.as_table_mut() else {
            continue;
        };
        if receiver.get("url").and_then(toml::Value::as_str) == Some("") {
            receiver.remove("url");
        }
        if receiver
            .get("urls")
            .and_then(toml::Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            receiver.remove("urls");
        }
        if receiver.contains_key("compression") {
            receiver.remove("gzip");
            receiver.remove("gzip_level");
        }
    }
}

/// Writes [`dump`] to stdout; a closed pipe (`| head`) is no error.
pub fn print(program: &str, config: &Config) -> Result<(), Failure> {
    let text = dump(program, config).map_err(Failure::config)?;
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Failure::io),
    }
}

/// Replaces every secret in `config`; returns where each was.
fn redact_secrets(config: &mut Config) -> Vec<String> {
    let mut redacted = Vec::new();
    for (name, receiver) in config.receivers.iter_mut() {
        let receiver = receiver.get_mut();
        if has_secret_part(&receiver.url) {
            receiver.url = redact::redact_template(&receiver.url);
            redacted.push(format!("receivers.{name}.url"));
        }
        for (i, url) in receiver.urls.iter_mut().enumerate() {
            if has_secret_part(url) {
                *url = redact::redact_template(url);
                redacted.push(format!("receivers.{name}.urls[{i}]"));
            }
        }
        for (header, value) in receiver.headers.iter_mut() {
            if let HeaderValue::Literal(text) = value
                && is_secret_header(header)
                && text != REDACTED
            {
                *text = REDACTED.into();
                redacted.push(format!("receivers.{name}.headers.{header}"));
            }
        }
        if let Some(HeaderValue::Literal(proxy)) = &mut receiver.proxy
            && has_secret_part(proxy)
        {
            *proxy = redact::url_value(proxy);
            redacted.push(format!("receivers.{name}.proxy"));
        }
        if let Some(s3) = &mut receiver.s3 {
            // The key id names the key; the secret and the token are it.
            let secrets = [
                ("secret_access_key", Some(&mut s3.secret_access_key)),
                ("session_token", s3.session_token.as_mut()),
            ];
            for (key, value) in secrets {
                if let Some(HeaderValue::Literal(text)) = value
                    && text != REDACTED
                {
                    *text = REDACTED.into();
                    redacted.push(format!("receivers.{name}.s3.{key}"));
                }
            }
        }
    }
    redacted
}

/// Whether a header's literal value is a credential, by its name.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADER_WORDS.iter().any(|word| name.contains(word))
}

/// Whether a URL (or URL template) has user info or a query string, the
/// parts that may carry credentials.
fn has_secret_part(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@') || rest.contains('?')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_load::parse;
    use std::path::Path;

    const WHOLE: &str = r#"
spool = "/var/spool/spoolpost"

[sender]
concurrency = 64
max_age = "36h"

[receivers.orders]
urls = ["https://a.example/{tenant}/in", "https://b.example/{tenant}/in"]
headers = { Authorization = { env = "ORDERS_TOKEN" }, X-Static = "yes" }
rate_limit = "200/s"
compression = "zstd"
tls_min_version = "1.3"

[receivers.archive]
url = "http://127.0.0.1:9/archive"
method = "PUT"
proxy = "none"

[[routes]]
regex = '^(?<tenant>[a-z]+)-'
receiver = "orders"

[[routes]]
glob = "*"
receiver = "archive"

[[collector.sources]]
path = "/var/log/app"
ready = "close-write"

[collector]
max_incoming_bytes = "1.5 GiB"
min_free_space = 123456789
"#;

    fn dumped(text: &str) -> String {
        let loaded = parse(Path::new("test.toml"), text.to_string()).unwrap();
        dump("sender", &loaded.config).unwrap()
    }

    #[test]
    fn a_dump_reads_back_as_the_same_settings_defaults_included() {
        let once = dumped(WHOLE);
        let twice = dumped(&once);
        assert_eq!(once, twice, "a dump of the dump is the dump");
        // Defaults are written out, and what the file set is kept.
        for line in [
            "concurrency = 64",
            "max_age = \"1day 12h\"",
            "threads = 1",
            "backoff_max = \"5m\"",
            "rate_limit = \"200/s\"",
            "tls_min_version = \"1.3\"",
            "method = \"PUT\"",
            "timeout = \"30s\"",
            "ready = \"close-write\"",
            "settle = \"1s\"",
            "min_free_space = 123456789",
            // 1.5 GiB exactly, not the "1.5 GiB" that might round.
            "max_incoming_bytes = 1610612736",
        ] {
            assert!(once.contains(line), "{line} missing from:\n{once}");
        }
        assert!(!once.contains("Redacted"), "{once}");
    }

    #[test]
    fn secrets_are_redacted_and_said_to_be_and_the_rest_still_parses() {
        let text = r#"
[receivers.r]
url = "https://user:PASSWORD@h.example/in?api_key=QUERYSECRET"
headers = { Authorization = "Bearer LITERALSECRET", X-Api-Key = "KEYSECRET", X-Static = "yes", Cookie = { file = "/etc/cookie" } }
proxy = "http://proxyuser:PROXYSECRET@proxy.example:3128"
[[routes]]
glob = "*"
receiver = "r"
"#;
        let once = dumped(text);
        for secret in [
            "PASSWORD",
            "QUERYSECRET",
            "LITERALSECRET",
            "KEYSECRET",
            "PROXYSECRET",
        ] {
            assert!(!once.contains(secret), "{secret} shown:\n{once}");
        }
        assert!(once.contains("X-Static = \"yes\""), "{once}");
        assert!(once.contains("/etc/cookie"), "a file's name is no secret");
        assert!(
            once.contains(
                "# Redacted (not the real values): receivers.r.url, \
                 receivers.r.headers.Authorization, receivers.r.headers.X-Api-Key, receivers.r.proxy"
            ),
            "{once}"
        );
        parse(Path::new("dump.toml"), once).expect("a redacted dump still parses");
    }

    #[test]
    fn an_s3_receiver_s_secret_key_and_token_are_redacted_its_key_id_kept() {
        let text = r#"
[receivers.lake]
url = "http://127.0.0.1:9000"
s3 = { bucket = "b", access_key_id = "AKIDKEPT", secret_access_key = "S3SECRET", session_token = "TOKENSECRET" }
[[routes]]
glob = "*"
receiver = "lake"
"#;
        let once = dumped(text);
        assert!(
            !once.contains("S3SECRET") && !once.contains("TOKENSECRET"),
            "{once}"
        );
        assert!(once.contains("AKIDKEPT"), "{once}");
        assert!(
            once.contains("receivers.lake.s3.secret_access_key, receivers.lake.s3.session_token"),
            "{once}"
        );
        assert!(once.contains("key = \"{key}-{filename}\""), "{once}");
        parse(Path::new("dump.toml"), once).expect("a redacted dump still parses");
    }

    #[test]
    fn credentials_are_told_by_the_header_name() {
        for secret in ["Authorization", "X-Api-Key", "x-auth-token", "Cookie"] {
            assert!(is_secret_header(secret), "{secret}");
        }
        for plain in ["Content-Type", "X-Static", "Accept"] {
            assert!(!is_secret_header(plain), "{plain}");
        }
    }
}
