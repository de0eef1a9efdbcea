//! `--fail-if` health checks: `METRIC OP VALUE`, e.g. `backlog_age > 10m`,
//! `errors > 0`, `open_circuits >= 1`. A pure parser and evaluator; which
//! metrics exist and what they read is [`crate::report::METRICS`].
//!
//! Also `reporter --check` ([`preflight`]): whether this command line would
//! run, without reading the spool's files. Its rules are the ops crate's
//! (`preflight`, `config`, `route`); this is only the reporter's selection.

use std::time::Duration;

use spoolpost_ops::exit::Failure;
use spoolpost_ops::preflight;
use spoolpost_ops::route::Router;

use crate::cli::Args;
use crate::report::{METRICS, Metric, Report};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub text: String,
    pub metric: &'static Metric,
    pub op: Op,
    /// Seconds for ages, plain numbers otherwise.
    pub value: f64,
}

pub fn parse(text: &str) -> Result<Check, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [metric, op, value] = words[..] else {
        return Err(format!(
            "{text:?}: expected METRIC OP VALUE, e.g. 'backlog_age > 10m'"
        ));
    };
    let metric = METRICS.iter().find(|m| m.name == metric).ok_or_else(|| {
        let names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        format!(
            "{text:?}: unknown metric {metric:?}; one of {}",
            names.join(", ")
        )
    })?;
    let op = match op {
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        "<=" => Op::Le,
        "==" | "=" => Op::Eq,
        other => {
            return Err(format!(
                "{text:?}: unknown comparison {other:?}; use > >= < <= =="
            ));
        }
    };
    let value = if metric.duration {
        humantime::parse_duration(value)
            .map(|d: Duration| d.as_secs_f64())
            .or_else(|_| value.parse::<f64>())
            .map_err(|_| format!("{text:?}: {value:?} is not a duration like 10m"))?
    } else {
        value
            .parse::<f64>()
            .map_err(|_| format!("{text:?}: {value:?} is not a number"))?
    };
    Ok(Check {
        text: text.to_string(),
        metric,
        op,
        value,
    })
}

impl Check {
    pub fn fails(&self, actual: f64) -> bool {
        match self.op {
            Op::Gt => actual > self.value,
            Op::Ge => actual >= self.value,
            Op::Lt => actual < self.value,
            Op::Le => actual <= self.value,
            Op::Eq => actual == self.value,
        }
    }
}

/// The first check that holds, as the one line that explains it, e.g.
/// `check failed: backlog_age > 10m (now 1h 2m)`.
pub fn first_failure(report: &Report, checks: &[Check]) -> Option<String> {
    checks.iter().find_map(|c| {
        let actual = (c.metric.value)(report);
        c.fails(actual).then(|| {
            let shown = if c.metric.duration {
                humantime::format_duration(Duration::from_secs(actual as u64)).to_string()
            } else {
                actual.to_string()
            };
            format!("check failed: {} (now {shown})", c.text)
        })
    })
}

/// `reporter --check`: the --fail-if checks parse (else exit 2, as a run
/// would), the configuration loads and its routes build, and the spool is
/// there and readable. The reporter only reads, so it needs no more.
/// A `--metrics-listen` address is held to loopback as a run would hold
/// it, but not bound: the service being checked may hold it already.
pub fn preflight(args: &Args) -> Result<(), Failure> {
    for c in &args.fail_if {
        parse(c).map_err(Failure::usage)?;
    }
    if let Some(addr) = args.metrics_listen {
        crate::endpoint_rules::check_scope(addr, args.metrics_allow_remote)
            .map_err(Failure::usage)?;
    }
    let mut report = preflight::Report::default();
    let loaded = match &args.config {
        Some(path) => match preflight::config(path, &mut report) {
            Some(loaded) => {
                match Router::from_config(&loaded) {
                    Ok(_) => report.passed("routes are valid"),
                    // Unless the file's problems listed include it.
                    Err(e) => {
                        let e = e.to_string();
                        if !report.problems.iter().any(|(_, p)| *p == e) {
                            report.config(e);
                        }
                    }
                }
                Some(loaded)
            }
            None => return report.finish("reporter"),
        },
        None => None,
    };
    let root = args
        .spool
        .clone()
        .or_else(|| loaded.as_ref().and_then(|l| l.config.spool.clone()))
        .ok_or_else(|| Failure::usage("give --spool DIR (or `spool` in the config file)"))?;
    preflight::spool_readable(&root, &mut report);
    report.finish("reporter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let c = parse("backlog_age > 10m").unwrap();
        assert_eq!(
            (c.metric.name, c.op, c.value),
            ("backlog_age", Op::Gt, 600.0)
        );
        assert!(c.fails(601.0) && !c.fails(600.0));
        let c = parse("errors >= 1").unwrap();
        assert!(c.fails(1.0) && !c.fails(0.0));
        assert!(parse("open_circuits == 0").unwrap().fails(0.0));
    }

    #[test]
    fn every_metric_can_be_checked_and_says_its_value() {
        let r = crate::report::tests::sample();
        for m in METRICS {
            let c = parse(&format!("{} > 0", m.name)).unwrap();
            let line = first_failure(&r, std::slice::from_ref(&c)).expect("sample is non-zero");
            assert!(
                line.starts_with(&format!("check failed: {} > 0 (now ", m.name)),
                "{line}"
            );
        }
        let age = parse("backlog_age > 10s").unwrap();
        assert_eq!(
            first_failure(&r, &[age]).unwrap(),
            "check failed: backlog_age > 10s (now 1m)"
        );
        assert_eq!(first_failure(&r, &[parse("errors > 1").unwrap()]), None);
    }

    #[test]
    fn mistakes_say_what_is_expected() {
        assert!(
            parse("backlog_age >")
                .unwrap_err()
                .contains("METRIC OP VALUE")
        );
        assert!(parse("backlog > 1").unwrap_err().contains("unknown metric"));
        assert!(
            parse("errors ~ 1")
                .unwrap_err()
                .contains("unknown comparison")
        );
        assert!(
            parse("backlog_age > soon")
                .unwrap_err()
                .contains("duration")
        );
    }
}
