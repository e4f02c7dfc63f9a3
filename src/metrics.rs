//! Prometheus metrics through `prometheus-client`, exposed in the text format 0.0.4. Counters and histograms live
//! in a registry here; gauges (jobs per store, pool occupancy) are read at scrape time from their owners and
//! encoded from a registry made for that scrape. Every name is prefixed `apsched_`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::delivery::http::Attempt;
use crate::executor::PoolStatus;
use crate::job::RunStatus;

/// Every series name starts with it (the registry adds the `_`).
const PREFIX: &str = "apsched";
/// Lateness (actual start − scheduled time): from "on time" (a few ms) to "held up for minutes".
const LATENESS_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// One attempt's HTTP call: fast internal hooks to the 30 s default timeout and a little beyond.
const DURATION_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// One label with a value known in advance (a status, an outcome, an answer class).
type FixedLabel = [(&'static str, &'static str); 1];
/// One label naming something configured (a store, a pool).
type NameLabel = [(&'static str, String); 1];
/// A gauge of a count read at scrape time.
type Count = Gauge<u64, AtomicU64>;

/// A pool gauge: its name (after the prefix), its help and how to read it from a pool's status.
type PoolGauge = (&'static str, &'static str, fn(&PoolStatus) -> usize);

/// The counters and histograms the scheduler and deliveries update, rendered for `/metrics`.
// Help texts are given without their final period: the registry adds it. Counter names are given without
// `_total`, which the encoder adds (so `fires` is scraped as `apsched_fires_total`).
pub struct Metrics {
    registry: Registry,
    /// Ledger rows created by claims and run-now, by status at creation (pending, missed, skipped, coalesced).
    fires: Family<FixedLabel, Counter>,
    /// HTTP attempts by the class of their answer (`2xx`…`5xx`, or `none` when no answer came).
    attempts: Family<FixedLabel, Counter>,
    /// Runs whose delivery ended, by outcome (succeeded, failed).
    deliveries: Family<FixedLabel, Counter>,
    retries: Counter,
    pruned: Counter,
    lateness: Histogram,
    duration: Histogram,
    /// Notification attempts, by type and outcome (delivered, retry, failed).
    notifications: Family<[(&'static str, &'static str); 2], Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let fires = Family::default();
        registry.register("fires", "Fires recorded in the run ledger, by status", fires.clone());
        let attempts = Family::default();
        registry.register(
            "delivery_attempts",
            "HTTP attempts, by the class of their answer (none: no complete answer)",
            attempts.clone(),
        );
        let deliveries = Family::default();
        registry.register("deliveries", "Runs whose delivery ended, by outcome", deliveries.clone());
        let retries = Counter::default();
        registry.register("retries", "Attempts scheduled again after a retryable failure", retries.clone());
        let pruned = Counter::default();
        registry.register("runs_pruned", "Finished runs deleted by retention", pruned.clone());
        let lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register_with_unit(
            "delivery_lateness",
            "Actual start of a run's first attempt minus its scheduled time",
            Unit::Seconds,
            lateness.clone(),
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "delivery_duration",
            "Duration of one HTTP attempt",
            Unit::Seconds,
            duration.clone(),
        );
        let notifications = Family::default();
        registry.register(
            "notifications",
            "Notification attempts, by type and outcome (delivered, retry, failed)",
            notifications.clone(),
        );
        Metrics { registry, fires, attempts, deliveries, retries, pruned, lateness, duration, notifications }
    }
}

fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

/// Gauges read at scrape time.
pub struct Snapshot<'a> {
    /// Jobs per store; a store that could not be counted is left out.
    pub jobs: &'a [(String, u64)],
    /// Executors' occupancy, by name.
    pub pools: &'a BTreeMap<String, PoolStatus>,
}

impl Snapshot<'_> {
    /// A registry of this scrape's gauges, encoded after the long-lived metrics.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        let jobs = Family::<NameLabel, Count>::default();
        for (store, count) in self.jobs {
            jobs.get_or_create(&[("jobstore", store.clone())]).set(*count);
        }
        registry.register("jobs", "Jobs per job store", jobs);
        let pool_gauges: [PoolGauge; 4] = [
            ("executor_max_workers", "Size of each delivery pool", |p| p.max_workers),
            ("executor_running", "Deliveries holding a worker", |p| p.running),
            ("executor_queued", "Deliveries waiting for a worker", |p| p.queued),
            ("executor_retrying", "Runs waiting between two attempts (holding no worker)", |p| p.retrying),
        ];
        for (name, help, read) in pool_gauges {
            let gauge = Family::<NameLabel, Count>::default();
            for (pool, status) in self.pools {
                gauge.get_or_create(&[("executor", pool.clone())]).set(read(status) as u64);
            }
            registry.register(name, help, gauge);
        }
        registry
    }
}

impl Metrics {
    /// One notification attempt of `kind` (`failure`, …) came to `outcome` (`delivered`, `retry`, `failed`).
    pub fn notification(&self, kind: &'static str, outcome: &'static str) {
        self.notifications.get_or_create(&[("type", kind), ("outcome", outcome)]).inc();
    }

    /// A ledger row created, with its status at creation.
    pub fn fire(&self, status: RunStatus) {
        self.fires.get_or_create(&[("status", status.as_str())]).inc();
    }

    /// One attempt: its answer class and how long the call took.
    pub fn attempt(&self, attempt: &Attempt) {
        // A 2xx whose body was cut short got no complete answer.
        let class = if attempt.transport_failed { "none" } else { status_class(attempt.http_status) };
        self.attempts.get_or_create(&[("status_class", class)]).inc();
        self.duration.observe(attempt.duration.as_secs_f64());
    }

    /// A run scheduled for another attempt.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// A run's delivery ended (succeeded or failed).
    pub fn delivered(&self, status: RunStatus) {
        self.deliveries.get_or_create(&[("outcome", status.as_str())]).inc();
    }

    /// Actual start − scheduled time of a run's first attempt; an early start (a clock step) counts as on time.
    pub fn lateness(&self, late: chrono::TimeDelta) {
        self.lateness.observe(late.to_std().unwrap_or(Duration::ZERO).as_secs_f64());
    }

    /// Runs deleted by retention.
    pub fn pruned(&self, runs: u64) {
        self.pruned.inc_by(runs);
    }

    /// The exposition text (`prometheus_text::CONTENT_TYPE`).
    pub fn render(&self, snapshot: &Snapshot<'_>) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, nor can encoding these metric types.
        prometheus_text::encode(&mut out, &self.registry).expect("metrics encode into a string");
        prometheus_text::encode(&mut out, &snapshot.registry()).expect("gauges encode into a string");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let metrics = Metrics::default();
        metrics.lateness(chrono::TimeDelta::milliseconds(3));
        metrics.lateness(chrono::TimeDelta::milliseconds(700));
        metrics.lateness(chrono::TimeDelta::seconds(-1));
        metrics.lateness(chrono::TimeDelta::hours(1));
        metrics.fire(RunStatus::Pending);
        metrics.fire(RunStatus::Pending);
        metrics.fire(RunStatus::Missed);
        let pools = BTreeMap::from([(
            "default".to_string(),
            PoolStatus { max_workers: 10, running: 1, queued: 2, retrying: 3 },
        )]);
        let text = metrics.render(&Snapshot { jobs: &[("a\"b".to_string(), 4)], pools: &pools });
        for line in [
            "apsched_delivery_lateness_seconds_bucket{le=\"0.005\"} 2",
            "apsched_delivery_lateness_seconds_bucket{le=\"1\"} 3",
            "apsched_delivery_lateness_seconds_bucket{le=\"300\"} 3",
            "apsched_delivery_lateness_seconds_bucket{le=\"+Inf\"} 4",
            "apsched_delivery_lateness_seconds_count 4",
            "apsched_fires_total{status=\"pending\"} 2",
            "apsched_fires_total{status=\"missed\"} 1",
            "apsched_jobs{jobstore=\"a\\\"b\"} 4",
            "apsched_executor_retrying{executor=\"default\"} 3",
            "apsched_retries_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}

#[cfg(test)]
mod notification_tests {
    use super::*;

    #[test]
    fn notifications_are_counted_by_type_and_outcome() {
        let metrics = Metrics::default();
        metrics.notification("failure", "retry");
        metrics.notification("failure", "delivered");
        metrics.notification("failure", "delivered");
        metrics.notification("auto_paused", "failed");
        let text = metrics.render(&Snapshot { jobs: &[], pools: &BTreeMap::new() });
        for line in [
            "apsched_notifications_total{type=\"failure\",outcome=\"delivered\"} 2",
            "apsched_notifications_total{type=\"failure\",outcome=\"retry\"} 1",
            "apsched_notifications_total{type=\"auto_paused\",outcome=\"failed\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
