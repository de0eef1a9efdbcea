//! `--fail-if` health checks: `METRIC OP VALUE`, e.g. `backlog_age > 10m`,
//! `errors > 0`, `open_circuits >= 1`. A pure parser and evaluator; the
//! metrics come from the report.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Age of the oldest backlog file (incoming + sending).
    BacklogAge,
    BacklogFiles,
    BacklogBytes,
    /// Files in error/.
    Errors,
    OpenCircuits,
    HeldReceivers,
    /// Entries in the spool that no program handles.
    Unexpected,
}

const METRICS: [(&str, Metric); 7] = [
    ("backlog_age", Metric::BacklogAge),
    ("backlog_files", Metric::BacklogFiles),
    ("backlog_bytes", Metric::BacklogBytes),
    ("errors", Metric::Errors),
    ("open_circuits", Metric::OpenCircuits),
    ("held_receivers", Metric::HeldReceivers),
    ("unexpected", Metric::Unexpected),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub text: String,
    pub metric: Metric,
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
    let metric = METRICS
        .iter()
        .find(|(n, _)| *n == metric)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
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
    let value = if metric == Metric::BacklogAge {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let c = parse("backlog_age > 10m").unwrap();
        assert_eq!(
            (c.metric, c.op, c.value),
            (Metric::BacklogAge, Op::Gt, 600.0)
        );
        assert!(c.fails(601.0) && !c.fails(600.0));
        let c = parse("errors >= 1").unwrap();
        assert!(c.fails(1.0) && !c.fails(0.0));
        assert!(parse("open_circuits == 0").unwrap().fails(0.0));
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
