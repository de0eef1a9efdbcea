//! The configuration reference, `docs/configuration.md`: its one home is
//! that file, and this module keeps it true and ships it.
//!
//! - [`sections`] reads every key off the configuration types themselves
//!   (the field names serde is given), so the tests below fail when a key
//!   is added to a type without a row in the reference, when a row names a
//!   key that no longer exists, and when a row's default is not what
//!   `--print-config` ([`crate::config_dump`]) shows for an empty section.
//! - [`man`] renders the same text as the `spoolpost.toml(5)` man page
//!   (`--generate config-man`), the way the programs' own pages are made
//!   from their flags: the package installs what the repository shows.

use std::fmt;
use std::io::{self, Write};

use roff::{Inline, Roff, bold, italic, roman};
use serde::Deserialize;
use serde::de::{self, Visitor};

use crate::config::{
    CollectorSection, Config, ReceiverConfig, RouteConfig, S3Config, SenderSection, SourceConfig,
};

/// `docs/configuration.md`, built in so that every binary can write the
/// man page from the text the repository shows.
pub const REFERENCE: &str = include_str!("../../../docs/configuration.md");

/// Where installed documents are (what the package and install.sh put
/// under share/doc), for the reference's links to its neighbours.
const DOC_DIR: &str = "/usr/share/doc/spoolpost/";

/// Each section of the file as the reference heads it, with the keys its
/// type takes, in the type's order.
pub fn sections() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("Top level", fields_of::<Config>()),
        ("[sender]", fields_of::<SenderSection>()),
        ("[collector]", fields_of::<CollectorSection>()),
        ("[[collector.sources]]", fields_of::<SourceConfig>()),
        ("[receivers.NAME]", fields_of::<ReceiverConfig>()),
        ("[receivers.NAME.s3]", fields_of::<S3Config>()),
        ("[[routes]]", fields_of::<RouteConfig>()),
    ]
}

/// The field names a derived `Deserialize` hands to `deserialize_struct`:
/// every key the type takes, whatever its default.
fn fields_of<T: Deserialize<'static>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Caught(Some(fields))) => fields,
        _ => panic!("{} is not a struct", std::any::type_name::<T>()),
    }
}

/// A deserializer that answers nothing but remembers the struct's fields.
struct FieldNames;

#[derive(Debug)]
struct Caught(Option<&'static [&'static str]>);

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("only a struct's field names are read")
    }
}

impl std::error::Error for Caught {}

impl de::Error for Caught {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Caught(None)
    }
}

impl<'de> de::Deserializer<'de> for FieldNames {
    type Error = Caught;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Caught> {
        Err(Caught(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Caught> {
        Err(Caught(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// One row of a key table: `| `key` | type | default | what it does |`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The `##` heading it stands under, backticks taken off.
    pub section: String,
    pub key: String,
    pub kind: String,
    pub default: String,
    pub meaning: String,
}

/// The cells of a table line, without the outer bars.
fn cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(str::trim).collect()
}

/// The section a `## ` heading names: what is between its backticks, or
/// the heading itself.
fn section_of(heading: &str) -> String {
    match heading.split('`').nth(1) {
        Some(code) => code.to_string(),
        None => heading.trim().to_string(),
    }
}

/// Every row of the key tables (those headed `| Key | Type | Default |
/// What it does |`) in `text`, with the section each stands in.
pub fn rows(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut section = String::new();
    let mut in_table = false;
    for (n, line) in text.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = section_of(heading);
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = cells(line);
        if cells.first() == Some(&"Key") {
            if cells != ["Key", "Type", "Default", "What it does"] {
                return Err(format!("line {}: a key table's head is {line}", n + 1));
            }
            in_table = true;
            continue;
        }
        if !in_table || cells.iter().all(|c| c.chars().all(|c| c == '-')) {
            continue;
        }
        let [key, kind, default, meaning] = cells[..] else {
            return Err(format!(
                "line {}: a row has {} cells, not 4",
                n + 1,
                cells.len()
            ));
        };
        let Some(key) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            return Err(format!("line {}: the key {key} is not in backticks", n + 1));
        };
        rows.push(Row {
            section: section.clone(),
            key: key.into(),
            kind: kind.into(),
            default: default.into(),
            meaning: meaning.into(),
        });
    }
    Ok(rows)
}

/// `text`'s inline markdown as roff: `code` and **strong** bold, *emphasis*
/// italic, and a link as its text, with where an installed document is.
fn inline(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    let flush = |plain: &mut String, out: &mut Vec<Inline>| {
        if !plain.is_empty() {
            out.push(roman(std::mem::take(plain)));
        }
    };
    while let Some(c) = rest.chars().next() {
        let delimited = |open: &str, close: &str| -> Option<(String, usize)> {
            let body = rest.strip_prefix(open)?;
            let end = body.find(close)?;
            Some((body[..end].to_string(), open.len() + end + close.len()))
        };
        if let Some((code, len)) = delimited("`", "`") {
            flush(&mut plain, &mut out);
            out.push(bold(code));
            rest = &rest[len..];
        } else if let Some((strong, len)) = delimited("**", "**") {
            flush(&mut plain, &mut out);
            out.extend(inline(&strong).into_iter().map(|i| match i {
                Inline::Roman(t) => bold(t),
                other => other,
            }));
            rest = &rest[len..];
        } else if let Some((words, len)) = delimited("*", "*").filter(|(w, _)| !w.contains(' ')) {
            flush(&mut plain, &mut out);
            out.push(italic(words));
            rest = &rest[len..];
        } else if let Some((label, len)) = delimited("[", "](") {
            let after = &rest[len..];
            let Some(end) = after.find(')') else {
                plain.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            };
            let target = &after[..end];
            plain.push_str(&label);
            if !target.contains("://") {
                let file = target.rsplit('/').next().unwrap_or(target);
                let file = file.split('#').next().unwrap_or(file);
                plain.push_str(&format!(" ({DOC_DIR}{file})"));
            }
            rest = &after[end + 1..];
        } else {
            plain.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    flush(&mut plain, &mut out);
    out
}

/// Writes the reference as the `spoolpost.toml(5)` man page.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render_man(REFERENCE).as_bytes())?;
    out.flush()
}

/// A block of the markdown: what the page is made of.
enum Block<'a> {
    Heading(usize, &'a str),
    Paragraph(String),
    Bullet(String),
    Code(Vec<&'a str>),
    /// A row of a key table (key, type, default, what it does).
    Row(Vec<&'a str>),
    /// A row of any other table, as its cells.
    Cells(Vec<&'a str>),
}

fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    let mut key_table = false;
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("```") {
            let mut code = Vec::new();
            for line in lines.by_ref() {
                if line.starts_with("```") {
                    break;
                }
                code.push(line);
            }
            blocks.push(Block::Code(code));
        } else if let Some(level) = line
            .find(' ')
            .filter(|&n| line[..n].chars().all(|c| c == '#'))
        {
            blocks.push(Block::Heading(level, line[level..].trim()));
        } else if line.starts_with('|') {
            let cells = cells(line);
            let rule = cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|c| c == '-' || c == ':'));
            if rule {
                continue;
            }
            // A head row is the one a rule follows.
            if lines
                .peek()
                .is_some_and(|next| next.starts_with("|-") || next.starts_with("| -"))
            {
                // Its words are column names, not an entry.
                key_table = cells[..] == ["Key", "Type", "Default", "What it does"];
                continue;
            }
            blocks.push(if key_table && cells.len() == 4 {
                Block::Row(cells)
            } else {
                Block::Cells(cells)
            });
        } else {
            let bullet = line.starts_with("- ");
            let mut joined = line.trim_start_matches("- ").trim().to_string();
            while let Some(next) = lines.peek() {
                let ends = next.trim().is_empty()
                    || next.starts_with("- ")
                    || next.starts_with('#')
                    || next.starts_with('|')
                    || next.starts_with("```");
                if ends {
                    break;
                }
                joined.push(' ');
                joined.push_str(next.trim());
                lines.next();
            }
            blocks.push(if bullet {
                Block::Bullet(joined)
            } else {
                Block::Paragraph(joined)
            });
        }
    }
    blocks
}

fn render_man(text: &str) -> String {
    let mut roff = Roff::new();
    let version = concat!("spoolpost ", env!("CARGO_PKG_VERSION"));
    roff.control("TH", ["SPOOLPOST.TOML", "5", "", version, "spoolpost"]);
    let mut named = false;
    for block in blocks(text) {
        match block {
            Block::Heading(1, title) => {
                let what = title.split_once(": ").map_or(title, |(_, what)| what);
                roff.control("SH", ["NAME"]);
                roff.text([roman(format!("spoolpost.toml - {what}"))]);
                roff.control("SH", ["DESCRIPTION"]);
                named = true;
            }
            Block::Heading(2, title) => {
                let title = title.replace('`', "").to_uppercase();
                roff.control("SH", [title.as_str()]);
            }
            Block::Heading(_, title) => {
                let title = title.replace('`', "");
                roff.control("SS", [title.as_str()]);
            }
            Block::Paragraph(text) => {
                roff.control("PP", []);
                roff.text(inline(&text));
            }
            Block::Bullet(text) => {
                roff.control("IP", ["\\(bu", "2"]);
                roff.text(inline(&text));
            }
            Block::Code(lines) => {
                roff.control("PP", []);
                roff.control("RS", ["4"]);
                roff.control("nf", []);
                for line in lines {
                    roff.text([roman(line)]);
                }
                roff.control("fi", []);
                roff.control("RE", []);
            }
            Block::Row(cells) => {
                let [key, kind, default, meaning] = cells[..] else {
                    unreachable!("a key row has four cells");
                };
                roff.control("TP", []);
                roff.text(inline(key));
                let mut about = inline(&format!("{kind}; default: {default}. "));
                about.extend(inline(meaning));
                roff.text(about);
            }
            Block::Cells(cells) => {
                roff.control("TP", []);
                roff.text(inline(cells.first().copied().unwrap_or_default()));
                roff.text(inline(&cells[1.min(cells.len())..].join("; ")));
            }
        }
    }
    debug_assert!(named, "the reference has no # title");
    roff.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_dump::dump;
    use crate::config_load::parse;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The least a file needs for every section to be dumped: a receiver,
    /// a route and a source, each with only what is required.
    const LEAST: &str = r#"
[receivers.r]
url = "http://127.0.0.1:9/in"
[[routes]]
glob = "*"
receiver = "r"
[[collector.sources]]
path = "/var/lib/app"
"#;

    /// [`LEAST`] with its receiver an S3 bucket, for the defaults of
    /// `[receivers.NAME.s3]`, whose table needs its required keys.
    const LEAST_S3: &str = r#"
[receivers.r]
url = "http://127.0.0.1:9"
s3 = { bucket = "b", access_key_id = "id", secret_access_key = { env = "S" } }
[[routes]]
glob = "*"
receiver = "r"
[[collector.sources]]
path = "/var/lib/app"
"#;

    /// Where a section's keys are in a file parsed as a TOML table.
    fn path_of(section: &str) -> Vec<&'static str> {
        match section {
            "Top level" => vec![],
            "[sender]" => vec!["sender"],
            "[collector]" => vec!["collector"],
            "[[collector.sources]]" => vec!["collector", "sources", "0"],
            "[receivers.NAME]" => vec!["receivers", "r"],
            "[receivers.NAME.s3]" => vec!["receivers", "r", "s3"],
            "[[routes]]" => vec!["routes", "0"],
            other => panic!("no such section {other}"),
        }
    }

    /// The table at `path` in `root`, made when missing; a number steps
    /// into an array.
    fn at<'a>(root: &'a mut toml::Value, path: &[&str]) -> &'a mut toml::Table {
        let mut here = root;
        for step in path {
            here = match (step.parse::<usize>(), here) {
                (Ok(i), toml::Value::Array(items)) => &mut items[i],
                (_, toml::Value::Table(table)) => table
                    .entry(step.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new())),
                (_, other) => panic!("{step} of {other}"),
            };
        }
        here.as_table_mut().expect("a section is a table")
    }

    fn dumped(file: &toml::Value) -> toml::Value {
        let text = toml::to_string(file).unwrap();
        let loaded =
            parse(Path::new("test.toml"), text.clone()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let text = dump("sender", &loaded.config).unwrap();
        toml::Value::Table(toml::from_str(&text).unwrap())
    }

    /// What `--print-config` shows for `key` in `section` of `file`.
    fn shown(file: &toml::Value, section: &str, key: &str) -> Option<toml::Value> {
        let mut shown = dumped(file);
        at(&mut shown, &path_of(section)).get(key).cloned()
    }

    #[test]
    fn every_key_of_the_configuration_types_has_a_row_and_every_row_a_key() {
        let rows = rows(REFERENCE).unwrap();
        let sections = sections();
        for (section, fields) in &sections {
            let typed: BTreeSet<&str> = fields.iter().copied().collect();
            let written: BTreeSet<&str> = rows
                .iter()
                .filter(|r| r.section == *section)
                .map(|r| r.key.as_str())
                .collect();
            let missing: Vec<_> = typed.difference(&written).collect();
            let stale: Vec<_> = written.difference(&typed).collect();
            assert!(
                missing.is_empty(),
                "docs/configuration.md, section {section}: no row for {missing:?}"
            );
            assert!(
                stale.is_empty(),
                "docs/configuration.md, section {section}: rows for keys that are not \
                 in the configuration types: {stale:?}"
            );
        }
        for row in &rows {
            // A key holding a table of settings has a section of its own
            // here, so its keys are held to the reference too; [reporter]
            // takes none, and headers are named by the operator.
            let holds_settings = row.kind == "table"
                || row.kind.ends_with("of tables")
                    && !["reporter", "headers"].contains(&row.key.as_str());
            if holds_settings && row.key != "reporter" {
                let k = row.key.as_str();
                let its_own = |s: &str| {
                    s == format!("[{k}]")
                        || s == format!("[[{k}]]")
                        || s.starts_with(&format!("[{k}."))
                        || s.ends_with(&format!(".{k}]]"))
                        || s.ends_with(&format!(".{k}]"))
                };
                assert!(
                    sections.iter().any(|(s, _)| its_own(s)),
                    "{} {} holds settings but sections() has no section for it",
                    row.section,
                    row.key
                );
            }
            assert!(
                sections.iter().any(|(s, _)| *s == row.section),
                "a key table under a heading that is no section: {}",
                row.section
            );
            assert!(!row.meaning.is_empty(), "{}: says nothing", row.key);
        }
    }

    /// A row's default is a TOML value in backticks, which the program must
    /// read as the value it uses when the key is not written; or "unset"
    /// (the dump leaves the key out), "required", or, for a table, "every
    /// key at its default".
    #[test]
    fn every_default_in_the_reference_is_the_one_print_config_shows() {
        let least_http = toml::Value::Table(toml::from_str(LEAST).unwrap());
        let least_s3 = toml::Value::Table(toml::from_str(LEAST_S3).unwrap());
        for row in rows(REFERENCE).unwrap() {
            let (section, key) = (row.section.as_str(), row.key.as_str());
            let least = if section == "[receivers.NAME.s3]" {
                &least_s3
            } else {
                &least_http
            };
            let baseline = shown(least, section, key);
            let container =
                row.kind.starts_with("table") || row.kind.starts_with("array of tables");
            let said = &row.default;
            if said.starts_with("required") {
                continue;
            } else if said.starts_with("unset") {
                assert_eq!(baseline, None, "{section} {key}: the reference says unset");
            } else if said == "every key at its default" {
                assert!(container && baseline.is_some(), "{section} {key}");
            } else if let Some(literal) = said.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
                let written: toml::Table = toml::from_str(&format!("v = {literal}"))
                    .unwrap_or_else(|e| panic!("{section} {key}: default {said}: {e}"));
                let baseline = baseline
                    .unwrap_or_else(|| panic!("{section} {key}: --print-config leaves it out"));
                if container {
                    continue; // their contents are their own sections' rows
                }
                let mut file = least.clone();
                at(&mut file, &path_of(section)).insert(key.into(), written["v"].clone());
                assert_eq!(
                    shown(&file, section, key),
                    Some(baseline.clone()),
                    "{section} {key}: the reference says the default is {said}, \
                     --print-config shows {baseline}"
                );
                let kind_fits = match &baseline {
                    toml::Value::Boolean(_) => row.kind == "boolean",
                    toml::Value::Integer(_) => row.kind == "integer" || row.kind == "size",
                    toml::Value::String(_) => {
                        ["string", "duration", "path", "secret"].contains(&row.kind.as_str())
                    }
                    toml::Value::Array(_) => row.kind.starts_with("array of"),
                    toml::Value::Table(_) => row.kind.starts_with("table"),
                    _ => false,
                };
                assert!(
                    kind_fits,
                    "{section} {key}: type {} but {baseline}",
                    row.kind
                );
            } else {
                panic!("{section} {key}: a default the test cannot read: {said}");
            }
        }
    }

    #[test]
    fn the_man_page_has_every_key_and_the_page_sections() {
        let page = render_man(REFERENCE);
        assert!(page.contains(".TH SPOOLPOST.TOML 5"), "{page}");
        assert!(page.contains(".SH NAME\nspoolpost.toml"), "{page}");
        for (_, fields) in sections() {
            for key in fields {
                let shown = format!("\\fB{key}\\fR");
                assert!(page.contains(&shown), "{key} missing");
            }
        }
        for heading in [".SH [SENDER]", ".SS Proxies", ".SH \"SEE ALSO\""] {
            assert!(page.contains(heading), "{heading} missing from\n{page}");
        }
        assert!(!page.contains("```"), "a code fence left in");
        assert!(!page.contains("]("), "a link left as markdown");
        // Links to neighbours name where the package puts them.
        assert!(page.contains("/usr/share/doc/spoolpost/spool.md"));
    }

    #[test]
    fn the_example_in_the_reference_is_a_file_the_programs_take() {
        let examples: Vec<&str> = REFERENCE
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert!(!examples.is_empty(), "the reference shows no example");
        // The certificate files it names are read when the file is, and
        // this host has none of them: those lines are left out.
        let reads_a_file = ["ca_file", "client_cert", "client_key"];
        for example in examples {
            let example: String = example
                .lines()
                .filter(|l| !reads_a_file.iter().any(|k| l.starts_with(k)))
                .map(|l| format!("{l}\n"))
                .collect();
            parse(Path::new("example.toml"), example.clone())
                .unwrap_or_else(|e| panic!("{e}\n{example}"));
        }
    }

    #[test]
    fn a_table_that_is_not_a_key_table_keeps_every_row() {
        let page = render_man(
            "# t: a page\n\n## S\n\n| Code | Meaning | Fix |\n|---|---|---|\n| `74` | no spool | make it |\n",
        );
        assert!(page.contains("\\fB74\\fR"), "{page}");
        assert!(page.contains("no spool; make it"), "{page}");
        assert!(!page.contains("Code"), "the head row is no entry: {page}");
    }

    #[test]
    fn markdown_inlines_become_fonts_and_links_their_text() {
        let got = inline("a `key` and **strong** see [spool.md](spool.md#x) or [w](https://e.x)");
        assert_eq!(
            got,
            vec![
                roman("a "),
                bold("key"),
                roman(" and "),
                bold("strong"),
                roman(" see spool.md (/usr/share/doc/spoolpost/spool.md) or w"),
            ]
        );
    }
}
