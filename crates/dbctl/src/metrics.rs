//! `dbctl metrics`: the health checks and the pool's own metrics, once, in the Prometheus text
//! format, for a script or the textfile collector of the Prometheus node exporter
//! (`dbctl metrics > /var/lib/node_exporter/textfile/attendance.prom.tmp && mv …`).
//!
//! The checks run over a pool of one connection, so the pool and statement metrics printed
//! beside them (`db_client_*`, see `database::metrics`) are those of this run. A service
//! exposes its own pool's the same way, from `Database::metrics_collector`.

use std::fmt;
use std::io::Write as _;

use database::Database;
use ops::health::{CheckResult, HealthReport, Unit};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::health::{HealthArgs, configure};

/// Prints the metrics; returns the exit code: 0 when they were printed (whatever the checks
/// found: their status is in `dbctl_health_check_status`), 3 on a bad configuration or usage.
pub fn run(arguments: &HealthArgs) -> u8 {
    let (config, health) = match configure(arguments) {
        Ok(configured) => configured,
        Err(problem) => {
            tracing::error!("{problem}");
            return 3;
        }
    };
    let mut registry = Registry::default();
    // A missing SQLite file is reported by the checks, not created by a pool.
    let missing_file = config.target.backend() == database::Backend::Sqlite
        && !config.target.is_in_memory()
        && config
            .target
            .connection_string()
            .is_ok_and(|path| !std::path::Path::new(path.expose()).exists());
    let mut pool_config = config.clone();
    pool_config.pool.max_size = 1;
    let pooled = if missing_file {
        None
    } else {
        Database::connect(pool_config).ok()
    };
    let report = match &pooled {
        Some(database) => match database.get() {
            Ok(mut connection) => ops::health::run_over(&mut connection, &config, &health),
            Err(_) => ops::health::run(&config, &health),
        },
        None => ops::health::run(&config, &health),
    };
    let report = match report {
        Ok(report) => report,
        Err(ops::health::HealthError::Usage(problem)) => {
            tracing::error!("{problem}");
            return 3;
        }
    };
    registry.register_collector(Box::new(HealthMetrics(report)));
    if let Some(database) = &pooled {
        registry.register_collector(Box::new(database.metrics_collector()));
    }
    let mut text = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).is_err() {
        tracing::error!("the metrics could not be written");
        return 3;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        return 3;
    }
    0
}

/// A health report as gauges.
#[derive(Debug)]
struct HealthMetrics(HealthReport);

fn unit_label(unit: Unit) -> &'static str {
    match unit {
        Unit::Percent => "percent",
        Unit::PercentPerDay => "percent_per_day",
        Unit::Seconds => "seconds",
        Unit::Bytes => "bytes",
        Unit::Count => "count",
    }
}

impl Collector for HealthMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let checks: &[CheckResult] = &self.0.checks;
        let mut family = encoder.encode_descriptor(
            "dbctl_health_check_status",
            "Status of each health check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the Nagios codes)",
            None,
            MetricType::Gauge,
        )?;
        for check in checks {
            let labels = [("check", check.name.as_str())];
            ConstGauge::new(i64::from(check.status.exit_code())).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "dbctl_health_check_observed",
            "The value each health check observed, in the unit its label names (absent when it could not measure)",
            None,
            MetricType::Gauge,
        )?;
        for check in checks {
            if let Some(value) = check.observed {
                let labels = [("check", check.name.as_str()), ("unit", unit_label(check.unit))];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "dbctl_health_check_threshold",
            "The warning and critical thresholds of each health check, in its unit",
            None,
            MetricType::Gauge,
        )?;
        for check in checks {
            for (level, value) in [
                ("warning", check.thresholds.warning),
                ("critical", check.thresholds.critical),
            ] {
                if let Some(value) = value {
                    let labels = [
                        ("check", check.name.as_str()),
                        ("level", level),
                        ("unit", unit_label(check.unit)),
                    ];
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "dbctl_health_perfdata",
            "Each performance datum of the checks (one per replica for replication_lag)",
            None,
            MetricType::Gauge,
        )?;
        for check in checks {
            for datum in &check.perfdata {
                let labels = [
                    ("check", check.name.as_str()),
                    ("label", datum.label.as_str()),
                    ("subject", datum.subject.as_deref().unwrap_or("")),
                    ("unit", unit_label(datum.unit)),
                ];
                ConstGauge::new(datum.value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
