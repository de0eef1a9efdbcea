//! Writing a report: how it looks (colour, redrawing in place), its text in
//! the chosen form, and where it goes (`--output FILE`, replaced whole, or
//! stdout).

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::Path;

use spoolpost_ops::exit::Failure;
use spoolpost_protocol::spool::annotate;

use crate::cli::{Args, Format};
use crate::report::Report;
use crate::{prometheus, table};

/// How the output should look, decided apart from any terminal so that it
/// can be tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    pub colour: bool,
    /// Redraw in place rather than print report after report.
    pub redraw: bool,
}

impl Look {
    /// `TERM=dumb` cannot move the cursor or colour; `NO_COLOR` (set and
    /// not empty, as no-color.org has it) turns colour off only.
    pub fn decide(terminal: bool, term: Option<&OsStr>, no_color: Option<&OsStr>) -> Look {
        let able = terminal && term.is_none_or(|t| t != "dumb");
        Look {
            colour: able && no_color.is_none_or(OsStr::is_empty),
            redraw: able,
        }
    }

    /// For this process: a report to stdout, not to `--output FILE`.
    pub fn here(args: &Args) -> Look {
        Look::decide(
            args.output.is_none() && std::io::stdout().is_terminal(),
            std::env::var_os("TERM").as_deref(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }
}

/// The report in the chosen form.
pub fn render(format: Format, report: &Report, colour: bool) -> String {
    match format {
        Format::Table => table::to_table(report, colour),
        Format::Json => report.to_json(),
        Format::Prometheus => prometheus::to_prometheus(report),
    }
}

/// Writes the report to `--output` or stdout; false when stdout was
/// closed (`| head`), which is not an error but ends a watch.
pub fn emit(args: &Args, report: &Report, colour: bool) -> Result<bool, Failure> {
    let text = render(args.format, report, colour);
    match &args.output {
        Some(path) => write_atomically(path, text.as_bytes())
            .map_err(|e| Failure::io(annotate(e, "cannot write the report to", path)))?,
        None => {
            let mut out = std::io::stdout().lock();
            return Ok(out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_ok());
        }
    }
    Ok(true)
}

/// Writes `data` to `path` so readers see the old or the new file, never
/// half of one (node_exporter's textfile collector reads at any moment).
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn a_terminal_redraws_unless_dumb_and_colours_unless_no_color() {
        let look = |t, term, nc| Look::decide(t, term, nc);
        let both = Look {
            colour: true,
            redraw: true,
        };
        let plain = Look {
            colour: false,
            redraw: false,
        };
        assert_eq!(look(true, os("xterm-256color"), None), both);
        assert_eq!(look(true, None, None), both);
        assert_eq!(look(true, os("xterm"), os("")), both);
        assert_eq!(
            look(true, os("xterm"), os("1")),
            Look {
                colour: false,
                redraw: true
            }
        );
        assert_eq!(look(true, os("dumb"), None), plain);
        assert_eq!(look(false, os("xterm"), None), plain);
    }
}
