//! The configuration file a test runs the programs with, built in code:
//! one builder instead of a TOML text typed into each test, so a test says
//! only what is particular to it (a receiver's timeout, a short backoff)
//! and the catch-all route is written in one place.
//!
//! ```ignore
//! let cfg = ConfigFile::to("r", &rx.url("/in"))
//!     .sender(r#"backoff_initial = "200ms""#)
//!     .with(r#"timeout = "500ms""#)
//!     .write(&spool);
//! ```

use std::path::{Path, PathBuf};

use crate::harness::{TestSpool, config};

/// A configuration file being built; [`ConfigFile::write`] puts it beside
/// the spool, as [`config`] does with a text.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    top: Vec<String>,
    sender: Vec<String>,
    collector: Vec<String>,
    /// Whole `[[collector.sources]]`, `[receivers.NAME]` and `[[routes]]`
    /// blocks, in the order written.
    tables: Vec<String>,
    routes: Vec<String>,
}

impl ConfigFile {
    pub fn new() -> ConfigFile {
        ConfigFile::default()
    }

    /// One receiver, `name` at `url`, that every file is routed to: the
    /// configuration most tests need.
    pub fn to(name: &str, url: &str) -> ConfigFile {
        ConfigFile::new().receiver(name, url, "").route_all(name)
    }

    /// `spool = "ROOT"` (for programs run without `--spool`).
    pub fn spool(mut self, root: &Path) -> ConfigFile {
        self.top
            .push(format!("spool = {:?}", root.to_str().unwrap()));
        self
    }

    /// Lines at the top, before any table (`create_spool = true`).
    pub fn top(mut self, lines: &str) -> ConfigFile {
        self.top.push(lines.into());
        self
    }

    /// Lines in `[sender]`.
    pub fn sender(mut self, lines: &str) -> ConfigFile {
        self.sender.push(lines.into());
        self
    }

    /// Lines in `[collector]`.
    pub fn collector(mut self, lines: &str) -> ConfigFile {
        self.collector.push(lines.into());
        self
    }

    /// A `[[collector.sources]]` at `path`, with `lines` besides.
    pub fn source(mut self, path: &Path, lines: &str) -> ConfigFile {
        let head = format!("[[collector.sources]]\npath = {:?}", path.to_str().unwrap());
        self.tables.push(head);
        self.add_to_last(lines)
    }

    /// `[receivers.NAME]` at `url`, with `lines` besides (which may end
    /// with the receiver's `[receivers.NAME.headers]` table).
    pub fn receiver(mut self, name: &str, url: &str, lines: &str) -> ConfigFile {
        self.tables
            .push(format!("[receivers.{name}]\nurl = {url:?}"));
        self.add_to_last(lines)
    }

    /// `[receivers.NAME]` with several endpoints (`urls`).
    pub fn receiver_urls(mut self, name: &str, urls: &[&str], lines: &str) -> ConfigFile {
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        self.tables
            .push(format!("[receivers.{name}]\nurls = [{}]", urls.join(", ")));
        self.add_to_last(lines)
    }

    /// Lines added to the receiver written last.
    pub fn with(self, lines: &str) -> ConfigFile {
        assert!(
            self.tables.iter().any(|t| t.starts_with("[receivers.")),
            "with() follows a receiver"
        );
        let at = (self.tables.iter())
            .rposition(|t| t.starts_with("[receivers."))
            .unwrap();
        let mut this = self;
        if !lines.is_empty() {
            this.tables[at].push('\n');
            this.tables[at].push_str(lines.trim_end_matches('\n'));
        }
        this
    }

    /// `lines` at the end of the table written last; nothing for none, so
    /// that every key keeps the line a test may expect in a message.
    fn add_to_last(mut self, lines: &str) -> ConfigFile {
        let last = self.tables.last_mut().expect("a table was written");
        if !lines.is_empty() {
            last.push('\n');
            last.push_str(lines.trim_end_matches('\n'));
        }
        self
    }

    /// A rule sending every file to `receiver`.
    pub fn route_all(self, receiver: &str) -> ConfigFile {
        self.route(r#"glob = "*""#, receiver)
    }

    /// A rule (`glob = "..."` or `regex = '...'`) sending what it matches
    /// to `receiver`. Rules are tried in the order written.
    pub fn route(mut self, matcher: &str, receiver: &str) -> ConfigFile {
        self.routes
            .push(format!("[[routes]]\n{matcher}\nreceiver = {receiver:?}"));
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.top {
            text.push_str(line);
            text.push('\n');
        }
        let mut table = |name: &str, lines: &[String]| {
            if !lines.is_empty() {
                text.push_str(&format!("[{name}]\n{}\n", lines.join("\n")));
            }
        };
        let sender: Vec<String> = self
            .sender
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect();
        table("sender", &sender);
        table("collector", &self.collector);
        for block in self.tables.iter().chain(&self.routes) {
            text.push_str(block);
            text.push('\n');
        }
        text
    }

    /// Writes the file beside `spool` and returns its path.
    pub fn write(&self, spool: &TestSpool) -> PathBuf {
        config(spool, &self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoolpost_ops::config::HeaderValue;
    use spoolpost_ops::config_load::parse;
    use std::time::Duration;

    fn read(file: &ConfigFile) -> spoolpost_ops::config::Config {
        let text = file.text();
        parse(Path::new("built.toml"), text.clone())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .config
    }

    #[test]
    fn a_built_file_is_what_the_programs_read() {
        let config = read(
            &ConfigFile::to("r", "http://127.0.0.1:9/in")
                .spool(Path::new("/s"))
                .sender(r#"backoff_initial = "200ms""#)
                .with(r#"timeout = "500ms""#),
        );
        assert_eq!(config.spool.as_deref(), Some(Path::new("/s")));
        assert_eq!(config.sender.backoff_initial, Duration::from_millis(200));
        let r = config.receivers["r"].get_ref();
        assert_eq!(r.url, "http://127.0.0.1:9/in");
        assert_eq!(r.timeout, Duration::from_millis(500));
        assert_eq!(config.routes.len(), 1);
        let route = config.routes[0].get_ref();
        assert_eq!(route.glob.as_deref(), Some("*"));
        assert_eq!(route.receiver.get_ref(), "r");
    }

    #[test]
    fn headers_sources_and_several_endpoints_read_back() {
        let config = read(
            &ConfigFile::new()
                .receiver_urls("m", &["http://a/", "http://b/"], "")
                .receiver(
                    "main",
                    "http://c/",
                    "[receivers.main.headers]\nAuthorization = { env = \"T\" }",
                )
                .route(r#"glob = "m-*""#, "m")
                .route_all("main")
                .source(Path::new("/in"), r#"settle = "0s""#)
                .collector(r#"rescan_interval = "200ms""#),
        );
        assert_eq!(config.receivers["m"].get_ref().urls.len(), 2);
        let headers = &config.receivers["main"].get_ref().headers;
        assert!(matches!(&headers["Authorization"], HeaderValue::Env { env } if env == "T"));
        assert_eq!(config.routes[0].get_ref().receiver.get_ref(), "m");
        assert_eq!(config.collector.sources[0].path, Path::new("/in"));
        assert_eq!(config.collector.sources[0].settle, Duration::ZERO);
        assert_eq!(config.collector.rescan_interval, Duration::from_millis(200));
    }

    #[test]
    fn a_receiver_s_lines_follow_its_url_with_no_blank_line_between() {
        // Tests assert the line a refusal names: the third here.
        let text = ConfigFile::to("q", "http://127.0.0.1:9/")
            .with("rate_limit = \"50/day\"")
            .text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "[receivers.q]",
                "url = \"http://127.0.0.1:9/\"",
                "rate_limit = \"50/day\""
            ]
        );
    }
}
