//! The collector's plan: the command line and the configuration file turned
//! into settings, once, in one place. Start-up, `--check` and a SIGHUP
//! reload all come here, so a reload refuses what start-up would and
//! `--check` reports what either would refuse.
//!
//! [`Plan::from_args`] merges the flags over the file; [`Plan::source`]
//! judges one source (the rule start-up, reload and `--check` share);
//! [`Plan::settings`] gives the sources and limits the collector runs with.

use std::path::PathBuf;

use spoolpost_ops::config::{CollectorSection, Loaded, SourceConfig};
use spoolpost_ops::config_load;
use spoolpost_ops::exit::Failure;
use spoolpost_ops::progress::ProgressFlags;

use crate::cli::Args;
use crate::collect::Source;
use crate::gate::{Gate, Limits};
use crate::overlap::refuse_overlap;

/// The resolved settings.
pub struct Plan {
    pub spool: PathBuf,
    /// Whether a missing spool root may be created.
    pub create_spool: bool,
    pub section: CollectorSection,
    pub once: bool,
    pub stdin: Option<bool>,
    pub events: Option<PathBuf>,
    pub progress: ProgressFlags,
    /// The file read, if any: its sources come first in
    /// `section.sources`, and errors about them name their line.
    pub loaded: Option<Loaded>,
}

/// What the collector runs with: the sources, checked, and the gate on
/// `incoming/`.
pub struct Settings {
    pub sources: Vec<Source>,
    pub gate: Gate,
}

/// A source that can be used.
pub struct Usable {
    pub source: Source,
    /// `false`: the folder is not there yet; a long-running collector
    /// keeps looking for it (a `--once` run refuses it instead).
    pub exists: bool,
}

impl Plan {
    pub fn from_args(args: &Args) -> Result<Plan, Failure> {
        let loaded = match &args.config {
            Some(path) => Some(config_load::load(path).map_err(Failure::config)?),
            None => None,
        };
        let spool = args
            .spool
            .clone()
            .or_else(|| loaded.as_ref().and_then(|l| l.config.spool.clone()))
            .ok_or_else(|| Failure::usage("give --spool DIR (or `spool` in the config file)"))?;
        let create_spool =
            args.create_spool || loaded.as_ref().is_some_and(|l| l.config.create_spool);
        let mut section = loaded
            .as_ref()
            .map(|l| l.config.collector.clone())
            .unwrap_or_default();
        for path in &args.sources {
            let mut source = SourceConfig::for_path(path);
            source.ready = args.ready;
            source.settle = args.settle;
            source.include = args.include.clone();
            if !args.exclude.is_empty() {
                source.exclude = args.exclude.clone();
            }
            source.recursive = args.recursive;
            section.sources.push(source);
        }
        if let Some(n) = args.max_incoming_files {
            section.max_incoming_files = Some(n);
        }
        if let Some(n) = args.max_incoming_bytes {
            section.max_incoming_bytes = Some(n);
        }
        if let Some(n) = args.min_free_space {
            section.min_free_space = Some(n);
        }
        if section.sources.is_empty() && !args.stdin {
            return Err(Failure::usage(
                "give --source DIR, --stdin, or [[collector.sources]] in the config file",
            ));
        }
        Ok(Plan {
            spool,
            create_spool,
            section,
            once: args.once,
            stdin: args.stdin.then_some(args.null),
            events: args.events.clone(),
            progress: args.progress.clone(),
            loaded,
        })
    }

    /// `--print-config`: the file as this run takes it, the flags applied.
    pub fn print_config(self) -> Result<(), Failure> {
        let mut config = self.loaded.map(|l| l.config).unwrap_or_default();
        config.collector = self.section;
        config.spool = Some(self.spool);
        config.create_spool = self.create_spool;
        spoolpost_ops::config_dump::print("collector", &config)
    }

    /// Judges the `i`th source: refused when it overlaps the spool, has a
    /// bad glob, or, for a one-shot run, is missing. A one-shot run looks
    /// once: a missing source there is a mistake to report (exit 78), not
    /// a "keep looking" that then exits 0 having looked nowhere. The error
    /// names the line of a source that came from the file.
    pub fn source(&self, i: usize) -> Result<Usable, String> {
        let config = &self.section.sources[i];
        let usable = refuse_overlap(&self.spool, &config.path, config.recursive)
            .and_then(|()| Source::new(config.clone()))
            .and_then(|source| {
                let exists = config.path.is_dir();
                if !exists && self.once {
                    return Err(format!(
                        "source {} does not exist or is not a folder",
                        config.path.display()
                    ));
                }
                Ok(Usable { source, exists })
            });
        usable.map_err(|e| self.at_source(i, e))
    }

    /// `message` about the `i`th source, at its line when it came from the
    /// file (the file's sources come first, then `--source` ones).
    pub fn at_source(&self, i: usize, message: String) -> String {
        match &self.loaded {
            Some(l) if i < l.config.collector.sources.len() => l
                .error_at_key(&["collector", "sources", &i.to_string(), "path"], message)
                .to_string(),
            _ => message,
        }
    }

    /// The sources and limits, checked: at start and on every reload.
    pub fn settings(&self) -> Result<Settings, Failure> {
        let mut sources = Vec::with_capacity(self.section.sources.len());
        for i in 0..self.section.sources.len() {
            let usable = self.source(i).map_err(Failure::config)?;
            if !usable.exists {
                tracing::warn!(source = %usable.source.config.path.display(), "source folder is missing; will keep looking for it");
            }
            sources.push(usable.source);
        }
        let gate = Gate::new(Limits {
            max_files: self.section.max_incoming_files,
            max_bytes: self.section.max_incoming_bytes.map(|b| b.as_u64()),
            min_free: self.section.min_free_space.map(|b| b.as_u64()),
        });
        Ok(Settings { sources, gate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let args = Args::try_parse_from([&["collector"], args].concat()).unwrap();
        Plan::from_args(&args).unwrap()
    }

    #[test]
    fn a_missing_source_is_waited_for_by_the_daemon_and_refused_by_a_one_shot_run() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let missing = dir.path().join("later");
        let (spool, missing) = (spool.to_str().unwrap(), missing.to_str().unwrap());
        let daemon = plan(&["--spool", spool, "--source", missing]);
        assert!(!daemon.source(0).unwrap().exists);
        assert_eq!(daemon.settings().unwrap().sources.len(), 1);
        let once = plan(&["--spool", spool, "--source", missing, "--once"]);
        let refused = once.source(0).err().unwrap();
        assert!(refused.contains("does not exist"), "{refused}");
        assert_eq!(once.settings().err().unwrap().message, refused);
    }

    #[test]
    fn a_source_inside_the_spool_is_refused_at_its_line_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let config = dir.path().join("spoolpost.toml");
        std::fs::write(
            &config,
            format!(
                "spool = {:?}\n\n[[collector.sources]]\npath = {:?}\n",
                spool,
                spool.join("incoming")
            ),
        )
        .unwrap();
        let from_file = plan(&["--config", config.to_str().unwrap()]);
        let refused = from_file.source(0).err().unwrap();
        assert!(refused.contains("inside the spool"), "{refused}");
        assert!(refused.contains("spoolpost.toml:4"), "{refused}");
    }
}
