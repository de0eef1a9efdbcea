//! Reading the configuration file: which file a run reads, and turning its
//! text into a checked [`Loaded`]. Kept apart from the types (`config.rs`)
//! and the checks (`config_check.rs`) so that the checks can use the types
//! and the reading can use both, with no circle between them.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, Loaded, line_of};
use crate::config_check::check_all;

/// The configuration file a run reads: the one given (`--config` or
/// `SPOOLPOST_CONFIG`), else `installed` when it exists and the command
/// line gives no spool either, so the README's `reporter hold orders` works
/// on a packaged host as written. With `--spool` and no
/// `--config` nothing is read: a run on plain flags stays on plain flags.
pub fn or_installed(
    given: Option<PathBuf>,
    spool_given: bool,
    installed: &Path,
) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path),
        None if !spool_given && installed.is_file() => Some(installed.to_path_buf()),
        None => None,
    }
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    parse(path, read(path)?)
}

/// Parses configuration text; `path` is only used in messages.
pub fn parse(path: &Path, text: String) -> Result<Loaded, ConfigError> {
    let (loaded, problems) = parse_all(path, text)?;
    match problems.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(loaded),
    }
}

/// [`load`] for `--check`: a file that parses, with every problem
/// [`check_all`] finds in it rather than the first; `Err` with every
/// problem found when it cannot be read as a configuration at all.
///
/// An unknown key stops serde at the first; `--check` promises every
/// problem, so each unknown key that has a line of its own is reported,
/// blanked out (line numbers stay) and the file read again, as a compiler
/// goes on past an error. A key whose removal would leave the file broken
/// (a value over several lines, a key inside an inline table) ends the
/// search there rather than report what its removal caused.
pub fn load_all(path: &Path) -> Result<(Loaded, Vec<ConfigError>), Vec<ConfigError>> {
    let mut text = read(path).map_err(|e| vec![e])?;
    let mut unknown = Vec::new();
    // Each round blanks one line: no more rounds than lines.
    for _ in 0..=text.lines().count() {
        let e = match parse_all(path, text.clone()) {
            Ok((loaded, problems)) => {
                // Serde meets the sections in its own order: list top to bottom.
                unknown.sort_by_key(|e: &ConfigError| e.line);
                unknown.extend(problems);
                return Ok((loaded, unknown));
            }
            Err(e) => e,
        };
        let blank = toml::from_str::<Config>(&text)
            .err()
            .and_then(|raw| unknown_key_line(&text, &raw));
        unknown.push(e);
        match blank {
            Some(line) => text.replace_range(line, ""),
            None => break,
        }
    }
    unknown.sort_by_key(|e| e.line);
    Err(unknown)
}

/// The line to blank out for an "unknown field" error: the key's own
/// line, when blanking it leaves valid TOML.
fn unknown_key_line(text: &str, e: &toml::de::Error) -> Option<std::ops::Range<usize>> {
    let key = e
        .message()
        .strip_prefix("unknown field `")?
        .split('`')
        .next()?;
    let at = e.span()?.start.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let own_line = text[start..end]
        .trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='));
    let mut rest = text.to_string();
    rest.replace_range(start..end, "");
    (own_line && rest.parse::<toml::Table>().is_ok()).then_some(start..end)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read configuration: {e}"),
    })
}

/// [`parse`], keeping the semantic problems apart; a file that is not
/// TOML or has unknown keys is still one error.
pub fn parse_all(path: &Path, text: String) -> Result<(Loaded, Vec<ConfigError>), ConfigError> {
    match toml::from_str::<Config>(&text) {
        Ok(config) => {
            let loaded = Loaded {
                config,
                path: path.to_path_buf(),
                text,
            };
            let problems = check_all(&loaded);
            Ok((loaded, problems))
        }
        Err(e) => Err(ConfigError {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(&text, s.start)),
            message: match e.span().and_then(|span| key_at(&text, span)) {
                // serde names the type it wanted, not the key: with several
                // sections on screen, `receivers.s3.s3.part_size` says
                // which value to fix.
                Some(key) => format!("{key}: {}", e.message()),
                None => e.message().to_string(),
            },
        }),
    }
}

/// The dotted path of the key whose value is exactly `span` in `text`
/// (`receivers.s3.s3.part_size`, `routes[2].glob`), as toml's own spanned
/// reading of the document places it; none for a span that is not one
/// value's (an unknown key, a whole table, text that is not TOML).
fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn find(value: &DeValue<'_>, span: &std::ops::Range<usize>, path: &mut String) -> bool {
        let mark = path.len();
        match value {
            DeValue::Table(table) => {
                for (key, value) in table {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key.get_ref());
                    if value.span() == *span || find(value.get_ref(), span, path) {
                        return true;
                    }
                    path.truncate(mark);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    if item.span() == *span || find(item.get_ref(), span, path) {
                        return true;
                    }
                    path.truncate(mark);
                }
            }
            _ => {}
        }
        false
    }
    let document = DeTable::parse(text).ok()?;
    let mut path = String::new();
    find(&DeValue::Table(document.into_inner()), &span, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use std::time::Duration;

    #[test]
    fn the_installed_config_is_read_when_neither_config_nor_spool_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let installed = dir.path().join("spoolpost.toml");
        let given = Some(PathBuf::from("/x.toml"));
        assert_eq!(or_installed(None, false, &installed), None, "absent");
        std::fs::write(&installed, "").unwrap();
        assert_eq!(
            or_installed(None, false, &installed),
            Some(installed.clone())
        );
        assert_eq!(or_installed(None, true, &installed), None, "--spool given");
        assert_eq!(or_installed(given.clone(), false, &installed), given);
    }

    fn load_all_str(text: &str) -> Result<(Loaded, Vec<ConfigError>), Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        load_all(&path)
    }

    /// The problems of a file that cannot be read as a configuration.
    fn unreadable(text: &str) -> Vec<ConfigError> {
        match load_all_str(text) {
            Ok(_) => panic!("read as a configuration: {text}"),
            Err(problems) => problems,
        }
    }

    fn lines(problems: &[ConfigError]) -> Vec<(Option<usize>, &str)> {
        problems
            .iter()
            .map(|e| (e.line, e.message.split(',').next().unwrap()))
            .collect()
    }

    #[test]
    fn check_reports_every_unknown_key_and_the_problems_past_them() {
        let (_, problems) = load_all_str(
            "spool = \"/x\"\n[sender]\nconcurrency = 0\nbogus = 1\n[receivers.a]\nurl = \"ftp://x\"\nalso_bogus = \"y\"\n",
        )
        .unwrap();
        let found = lines(&problems);
        assert_eq!(found[0], (Some(4), "unknown field `bogus`"), "{found:?}");
        assert_eq!(found[1].0, Some(7), "{found:?}");
        assert!(
            found[1].1.starts_with("unknown field `also_bogus`"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == Some(3) && m.contains("concurrency")),
            "{found:?}"
        );
        // A run (not --check) still stops at the first.
        assert!(parse_str("[sender]\nbogus = 1\n").is_err());
    }

    #[test]
    fn an_unknown_key_that_cannot_be_blanked_alone_ends_the_search() {
        // Over several lines: blanking its first would break the file.
        let problems = unreadable("[sender]\nbogus = [\n  1,\n]\nconcurrency = 0\n");
        assert_eq!(lines(&problems), vec![(Some(2), "unknown field `bogus`")]);
        // Inside an inline table: blanking the line would take the receiver's url too.
        let problems = unreadable("[receivers]\na = { url = \"http://x\", bogus = 1 }\n");
        assert_eq!(problems.len(), 1, "{:?}", lines(&problems));
        // A value of the wrong type ends the search (nothing is guessed past
        // it); the unknown keys around it are each still reported.
        let problems = unreadable("[sender]\nmax_age = \"soon\"\nbogus = 1\nalso = 2\n");
        let at: Vec<_> = problems.iter().map(|e| e.line).collect();
        assert_eq!(at, [Some(2), Some(3), Some(4)], "{:?}", lines(&problems));
        assert!(
            problems[0].message.contains("duration"),
            "{:?}",
            lines(&problems)
        );
    }

    fn parse_str(text: &str) -> Result<Loaded, ConfigError> {
        parse(Path::new("test.toml"), text.to_string())
    }

    #[test]
    fn a_full_file_parses_with_defaults_filled_in() {
        let loaded = parse_str(
            r#"
spool = "/var/spool/spoolpost"
[sender]
concurrency = 32
max_age = "2h"

[receivers.orders]
url = "https://example.com/in/{tenant}"
method = "PUT"
headers = { Authorization = { env = "TOKEN" }, X-Host = "h1" }

[[routes]]
regex = '^(?<tenant>[a-z]+)-'
receiver = "orders"
"#,
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.sender.concurrency, 32);
        assert_eq!(c.sender.max_age, Duration::from_secs(7200));
        assert_eq!(c.sender.backoff_max, Duration::from_secs(300));
        let orders = c.receivers["orders"].get_ref();
        assert_eq!(orders.method, Method::Put);
        assert!(orders.gzip);
        assert!(matches!(
            orders.headers["Authorization"],
            HeaderValue::Env { .. }
        ));
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn collector_sources_parse_with_defaults() {
        let c = parse_str(
            r#"
[collector]
max_incoming_files = 1000
min_free_space = "2 GiB"
[[collector.sources]]
path = "/data/a"
ready = "close-write"
[[collector.sources]]
path = "/data/b"
include = ["*.json"]
"#,
        )
        .unwrap()
        .config
        .collector;
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[0].ready, ReadyRule::CloseWrite);
        assert_eq!(c.sources[1].exclude, default_exclude());
        assert_eq!(c.min_free_space.unwrap().as_u64(), 2 << 30);
        let err = parse_str("[[collector.sources]]\npath = \"/x\"\nready = \"soon\"\n")
            .err()
            .unwrap();
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_str("[sender]\nconcurrency = 1\nconcurency = 2\n")
            .err()
            .unwrap();
        assert_eq!(err.line, Some(3));
        assert!(err.to_string().starts_with("test.toml:3: "), "{err}");
        assert!(err.message.contains("concurency"), "{err}");

        let err = parse_str("[sender]\nmax_age = \"soon\"\n").err().unwrap();
        assert_eq!(err.line, Some(2), "{err}");
    }

    /// A value of the wrong kind is named by its key, not only its line:
    /// serde's own words name the type it wanted ("expected parsable
    /// string" for a size).
    #[test]
    fn a_bad_value_names_its_key() {
        let err = parse_str(
            "[receivers.r]\nurl = \"http://127.0.0.1:9/in\"\ntimeout = \"soon\"\n\
             [receivers.s3]\nurl = \"http://127.0.0.1:9/b\"\n\
             [receivers.s3.s3]\nregion = \"x\"\npart_size = \"lots\"\n",
        )
        .err()
        .unwrap();
        assert!(
            err.message.starts_with("receivers.r.timeout: ")
                || err.message.starts_with("receivers.s3.s3.part_size: "),
            "{err}"
        );
        let err = parse_str(
            "[receivers.s3]\nurl = \"http://127.0.0.1:9/b\"\n\
             [receivers.s3.s3]\nregion = \"x\"\npart_size = \"lots\"\n",
        )
        .err()
        .unwrap();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(
            err.message.starts_with("receivers.s3.s3.part_size: "),
            "{err}"
        );
        let err = parse_str(
            "[receivers.r]\nurl = \"http://127.0.0.1:9/in\"\n\
             [[routes]]\nglob = \"*\"\nreceiver = \"r\"\n\
             [[routes]]\nglob = 7\nreceiver = \"r\"\n",
        )
        .err()
        .unwrap();
        assert!(err.message.starts_with("routes[1].glob: "), "{err}");
        // An unknown key is named by serde already, and not a value.
        let err = parse_str("[sender]\nconcurency = 2\n").err().unwrap();
        assert!(err.message.starts_with("unknown field"), "{err}");
    }

    #[test]
    fn rate_limits_are_n_per_second_minute_or_hour() {
        let ok = [
            ("200/s", 200, 1),
            ("5/m", 5, 60),
            (" 7 / h ", 7, 3600),
            ("1000000/s", 1_000_000, 1),
        ];
        for (text, count, secs) in ok {
            let r: RateLimit = text.parse().unwrap();
            assert_eq!(
                (r.count, r.per),
                (count, Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!("5/m".parse::<RateLimit>().unwrap().to_string(), "5/m");
        for bad in [
            "",
            "200",
            "0/s",
            "-1/s",
            "1.5/s",
            "200/d",
            "200/sec",
            "/s",
            "2000000/s",
        ] {
            let err = bad.parse::<RateLimit>().unwrap_err();
            assert!(err.contains("N/s, N/m or N/h"), "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_come_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let v = HeaderValue::File { file };
        assert_eq!(v.resolve().unwrap(), "s3cret");
        let v = HeaderValue::Env {
            env: "SPOOLPOST_SURELY_UNSET_VAR".into(),
        };
        assert!(
            v.resolve()
                .unwrap_err()
                .contains("SPOOLPOST_SURELY_UNSET_VAR")
        );
    }

    #[test]
    fn a_header_secret_with_a_line_break_inside_is_refused_without_being_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "abc\r\nX-Evil: 1\n").unwrap();
        let v = HeaderValue::File { file: file.clone() };
        assert!(v.resolve().is_ok(), "as a plain secret it resolves");
        let e = v.resolve_header().unwrap_err();
        assert!(e.contains("not a valid header value"), "{e}");
        assert!(!e.contains("abc") && !e.contains("Evil"), "quoted: {e}");
        // Trailing line ends of a file are still dropped, not refused.
        std::fs::write(&file, "abc\r\n").unwrap();
        assert_eq!(v.resolve_header().unwrap(), "abc");
    }
}
