//! A report as monitoring systems read it: Nagios text (a status line with performance data,
//! then a table for people) and draft-inadarei health JSON with the Nagios names beside.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{CheckResult, Direction, HealthReport, PerfData, Unit};

/// A number for perfdata and tables: whole numbers without a fraction, others to 3 decimals
/// without trailing zeros.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A threshold for people, in the suffixes `--warning` takes: `26h`, `64MiB`, `80`.
fn human(value: f64, unit: Unit) -> String {
    let whole = |step: f64| value >= step && (value / step).fract() == 0.0;
    let scaled = |step: f64, suffix: &str| format!("{}{suffix}", number(value / step));
    match unit {
        Unit::Seconds if whole(86_400.0) => scaled(86_400.0, "d"),
        Unit::Seconds if whole(3600.0) => scaled(3600.0, "h"),
        Unit::Seconds if whole(60.0) => scaled(60.0, "min"),
        Unit::Seconds => scaled(1.0, "s"),
        Unit::Bytes if whole(1_073_741_824.0) => scaled(1_073_741_824.0, "GiB"),
        Unit::Bytes if whole(1_048_576.0) => scaled(1_048_576.0, "MiB"),
        Unit::Bytes if whole(1024.0) => scaled(1024.0, "KiB"),
        Unit::Percent | Unit::PercentPerDay => scaled(1.0, "%"),
        Unit::Bytes | Unit::Count => number(value),
    }
}

/// One line: a multi-line message (libpq's) joined with spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A threshold as a monitoring-plugins range: `80` (alert above 80) or `99:` (alert below 99).
fn range(threshold: Option<f64>, direction: Direction) -> String {
    threshold.map_or_else(String::new, |value| match direction {
        Direction::Above => number(value),
        Direction::Below => format!("{}:", number(value)),
    })
}

/// One perfdata value: `'label'=value[UOM];warn;crit;min;max`.
fn perfdata_item(data: &PerfData) -> String {
    let thresholds = data.thresholds.unwrap_or(super::Thresholds::new(None, None));
    let text = format!(
        "'{}'={}{};{};{};{};{}",
        data.label.replace('\'', "''"),
        number(data.value),
        data.unit.perfdata_uom(),
        range(thresholds.warning, data.direction),
        range(thresholds.critical, data.direction),
        data.min.map(number).unwrap_or_default(),
        data.max.map(number).unwrap_or_default(),
    );
    text.trim_end_matches(';').to_owned()
}

/// Every check's performance data, space-separated.
#[must_use]
pub fn perfdata_line(report: &HealthReport) -> String {
    report
        .checks
        .iter()
        .flat_map(|check| check.perfdata.iter().map(perfdata_item))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The observed value with its unit, for the table.
fn observed(check: &CheckResult) -> String {
    check.observed.map_or_else(
        || "-".to_owned(),
        |value| match check.unit {
            Unit::Percent => format!("{} %", number((value * 100.0).round() / 100.0)),
            Unit::PercentPerDay => format!("{} %/d", number((value * 100.0).round() / 100.0)),
            Unit::Seconds => format!("{} s", number((value * 10.0).round() / 10.0)),
            Unit::Bytes => format!("{} B", number(value)),
            Unit::Count => number(value),
        },
    )
}

/// The Nagios text: `HEALTH <STATUS> - <counts> | <perfdata>` on the first line, then one line
/// per check (name, status, observed value, thresholds, summary).
#[must_use]
pub fn to_text(report: &HealthReport) -> String {
    let count = |status| report.checks.iter().filter(|check| check.status == status).count();
    let mut problems: Vec<String> = report
        .checks
        .iter()
        .filter(|check| check.status != super::Status::Ok)
        .map(|check| format!("{} {}", check.name, check.status))
        .collect();
    if problems.is_empty() {
        problems.push(format!("{} checks OK", report.checks.len()));
    }
    let mut text = format!(
        "HEALTH {} - {} ({} critical, {} warning, {} unknown of {} checks on {})",
        report.status(),
        problems.join(", "),
        count(super::Status::Critical),
        count(super::Status::Warning),
        count(super::Status::Unknown),
        report.checks.len(),
        report.backend
    );
    let perfdata = perfdata_line(report);
    if !perfdata.is_empty() {
        text.push_str(" | ");
        text.push_str(&perfdata);
    }
    text.push('\n');
    let _ = writeln!(
        text,
        "{:<20} {:<8} {:>16} {:>12} {:>12}  SUMMARY",
        "CHECK", "STATUS", "OBSERVED", "WARNING", "CRITICAL"
    );
    for check in &report.checks {
        let direction = check.name.direction();
        let threshold = |value: Option<f64>| {
            value.map_or_else(
                || "-".to_owned(),
                |value| {
                    let text = human(value, check.unit);
                    if direction == Direction::Below {
                        format!("<{text}")
                    } else {
                        text
                    }
                },
            )
        };
        let _ = writeln!(
            text,
            "{:<20} {:<8} {:>16} {:>12} {:>12}  {}",
            check.name.as_str(),
            check.status.nagios_name(),
            observed(check),
            threshold(check.thresholds.warning),
            threshold(check.thresholds.critical),
            one_line(&check.summary)
        );
    }
    text
}

/// The draft-inadarei health JSON: `status` (`pass`, `warn`, `fail`), `nagiosStatus` and
/// `exitCode`, and `checks` keyed `component:measurement`, each a list of observations (one per
/// replica for `replication_lag`) with `observedValue`, `observedUnit`, `status`, `time`,
/// `output`, the thresholds and the perfdata.
#[must_use]
pub fn to_json(report: &HealthReport) -> Value {
    let time = report.at.to_rfc3339();
    let mut checks = serde_json::Map::new();
    for check in &report.checks {
        let mut entries = vec![json!({
            "componentId": check.name.as_str(),
            "componentType": "datastore",
            "observedValue": check.observed,
            "observedUnit": check.unit.json_name(),
            "status": check.status.health_json_name(),
            "nagiosStatus": check.status.nagios_name(),
            "time": time,
            "output": one_line(&check.summary),
            "thresholds": {
                "warning": check.thresholds.warning,
                "critical": check.thresholds.critical,
                "direction": check.name.direction(),
            },
            "perfdata": check.perfdata.iter().map(perfdata_item).collect::<Vec<_>>(),
        })];
        for data in check.perfdata.iter().filter(|data| data.subject.is_some()) {
            entries.push(json!({
                "componentId": data.subject,
                "componentType": "datastore",
                "observedValue": data.value,
                "observedUnit": data.unit.json_name(),
                "time": time,
                "output": data.label,
            }));
        }
        checks.insert(check.name.json_key().to_owned(), Value::Array(entries));
    }
    let status = report.status();
    json!({
        "status": status.health_json_name(),
        "nagiosStatus": status.nagios_name(),
        "exitCode": status.exit_code(),
        "description": format!("health of the {} database {}", report.backend, report.target),
        "time": time,
        "checks": checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{CheckName, Thresholds};

    #[track_caller]
    fn check_item(data: &PerfData, expected: &str) {
        assert_eq!(perfdata_item(data), expected);
    }

    #[test]
    fn perfdata_has_the_plugin_format() {
        let connections = CheckResult::measured(
            CheckName::Connections,
            Thresholds::new(Some(80.0), Some(90.0)),
            85.714_28,
            "",
        );
        check_item(&connections.perfdata[0], "'connections'=85.714%;80;90;0;100");
        let cache = CheckResult::measured(CheckName::CacheHit, Thresholds::new(Some(99.0), Some(95.0)), 97.0, "");
        check_item(&cache.perfdata[0], "'cache_hit'=97%;99:;95:;0;100");
        let unused = CheckResult::measured(CheckName::UnusedIndexes, Thresholds::new(Some(1.0), None), 2.0, "");
        check_item(&unused.perfdata[0], "'unused_indexes'=2;1;;0");
        let growth = CheckResult::measured(CheckName::Growth, Thresholds::new(Some(10.0), Some(25.0)), -1.5, "");
        check_item(&growth.perfdata[0], "'growth'=-1.5%;10;25");
    }
}
