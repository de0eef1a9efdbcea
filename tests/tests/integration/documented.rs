//! Every command the documentation shows (README, docs/, the man pages'
//! EXAMPLES) parses with the program's own command-line definitions, so a
//! renamed flag or subcommand cannot leave a stale example behind (issue
//! 29.5: `reporter ... list error` was shown where `list --state error` is
//! right). The hints the programs print are run for real where they are
//! printed (terminal.rs); the commands of the README, docs/operations.md,
//! docs/reporter.md and the man pages are run as written in first_hour.rs.

use std::path::Path;

use clap::Parser;
use clap::error::ErrorKind;

const PROGRAMS: [&str; 3] = ["collector", "sender", "reporter"];

/// Shell words, with '…' and "…" quoting and `\` escapes; `#` starts a
/// comment at the start of a word. Enough for documentation examples.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The spoolpost commands in a shell snippet: lines joined at a trailing
/// `\`, split at `|`, `&&`, `||`, `;` and `&`, leading `VAR=value` words and
/// `sudo` dropped, a path before the program's name ignored.
pub(crate) fn commands(snippet: &str) -> Vec<Vec<String>> {
    let joined = snippet.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let mut current: Vec<String> = Vec::new();
        let mut segments = Vec::new();
        for w in words(line) {
            if ["|", "&&", "||", ";", "&"].contains(&w.as_str()) {
                segments.push(std::mem::take(&mut current));
            } else {
                current.push(w);
            }
        }
        segments.push(current);
        for seg in segments {
            let mut seg: Vec<String> = seg
                .into_iter()
                .skip_while(|w| w == "sudo" || (w.contains('=') && !w.starts_with('-')))
                .collect();
            let Some(first) = seg.first_mut() else {
                continue;
            };
            let name = first.rsplit('/').next().unwrap_or_default().to_string();
            if PROGRAMS.contains(&name.as_str()) {
                *first = name;
                out.push(seg);
            }
        }
    }
    out
}

/// The ```sh (or ```console, ```bash) blocks of a Markdown text.
pub(crate) fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (None, true) => {
                let lang = line.trim_start().trim_start_matches('`').trim();
                if ["sh", "bash", "console", "shell"].contains(&lang) {
                    current = Some(String::new());
                }
            }
            (Some(_), true) => blocks.extend(current.take()),
            (Some(text), false) => {
                text.push_str(line.trim_start_matches("$ "));
                text.push('\n');
            }
            (None, false) => {}
        }
    }
    blocks
}

/// Parses one command with its program's definitions; `Err` says why not.
fn parse(cmd: &[String]) -> Result<(), String> {
    let result = match cmd[0].as_str() {
        "collector" => spoolpost_collector::cli::Args::try_parse_from(cmd).map(drop),
        "sender" => spoolpost_sender::cli::Args::parse_from_iter(cmd).map(drop),
        "reporter" => spoolpost_reporter::Args::try_parse_from(cmd).map(drop),
        _ => unreachable!(),
    };
    match result {
        Err(e) if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Err(e.to_string())
        }
        _ => Ok(()),
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_parser_finds_the_commands_in_a_snippet() {
    let found = commands(
        "FOO=1 sudo /usr/bin/sender --spool 'a b' \\\n  --once   # cron\n\
         find . -print0 | collector --stdin -0 && echo done\n",
    );
    assert_eq!(
        found,
        vec![
            vec!["sender", "--spool", "a b", "--once"],
            vec!["collector", "--stdin", "-0"],
        ]
    );
    assert!(parse(&found[0]).is_ok());
    let wrong = commands("reporter --spool S list error");
    assert!(parse(&wrong[0]).is_err(), "the old hint must not parse");
}

#[test]
fn issue_29_5_every_command_in_the_readme_docs_and_man_pages_parses() {
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for block in shell_blocks(&text) {
            sources.push((doc.display().to_string(), block));
        }
    }
    use spoolpost_ops::generate::{COLLECTOR, REPORTER, SENDER};
    for facts in [COLLECTOR, SENDER, REPORTER] {
        for (example, _) in facts.examples {
            sources.push(("a man page's EXAMPLES".into(), example.to_string()));
        }
    }
    let mut seen = 0;
    let mut wrong = Vec::new();
    for (from, snippet) in &sources {
        for cmd in commands(snippet) {
            seen += 1;
            if let Err(e) = parse(&cmd) {
                wrong.push(format!("{from}: {}\n{e}", cmd.join(" ")));
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} commands found: is the parser right?"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
